//! Held page faults (userfaultfd) for stress runs and the strategy study: see the
//! `faultline-uffd` crate.
pub use faultline_uffd::*;
