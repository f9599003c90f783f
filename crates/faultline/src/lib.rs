//! faultline: the command line's building blocks (stress harness, benchmarks).
pub mod bench;
pub mod demo;
pub mod drain;
pub mod export;
pub mod record;
pub mod session;
pub mod stats;
pub mod stress;
pub mod study;
pub mod timeline;
pub mod trace_input;
pub mod uffd;
pub mod view;

pub use session::{Session, SessionBuilder, SessionError, Summary};
