//! faultline: sessions that record a program's tracepoints into a CTF trace, alone or under
//! `faultline record`, and the consumer that drains the ring buffers.
pub mod drain;
pub mod schema_pipe;
pub mod session;

pub use session::{Session, SessionBuilder, SessionError, Summary};
