//! faultline: the command line's building blocks (stress harness, benchmarks).
pub mod bench;
pub mod stress;
pub mod uffd;
