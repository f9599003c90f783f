//! faultline: record a program's tracepoints into a CTF trace — the one crate a traced
//! program depends on.
//!
//! ```no_run
//! use faultline::{trace, tracepoint, Session};
//!
//! // At module level: provider, event name, typed fields.
//! tracepoint!(pub REQUEST, "myapp", "request", { id: u64, path: &str });
//!
//! fn main() -> Result<(), faultline::SessionError> {
//!     let session = Session::builder().output_dir("trace").start()?;
//!     trace!(REQUEST, 42, "/index.html");
//!     let summary = session.stop()?;
//!     summary.print();
//!     Ok(())
//! }
//! ```
//!
//! Alone, the program writes its own trace (an *embedded* session: a consumer thread drains
//! the per-CPU ring buffers into the output directory). Run as
//! `faultline record -o DIR -- ./prog`, the same `start()` attaches to the recorder's buffers
//! instead and the recorder writes the trace (see [`session`]). Either way the trace can also
//! (or only) be streamed to an `lttng-relayd`, LTTng's network collector, and watched live
//! ([`SessionBuilder::relay`], `faultline record --relay`; see [`relay`]).
//!
//! # What this crate re-exports
//! * Instrumenting: [`tracepoint!`], [`trace!`], [`try_trace!`] (which returns a
//!   [`TraceOutcome`]: committed, or lost and its [`LossCause`]), the raw field types
//!   [`CStrPtr`] and [`RawBuf`], and the layers behind them as [`tracepoints`] (enabling by
//!   glob, probes) and [`recorder`] (the ring-buffer probe and its copy strategies).
//! * Recording: [`Session`], [`SessionBuilder`], [`Summary`], and the settings they take —
//!   [`Mode`], [`ClockKind`], [`Policy`], [`Strategy`].
//! * Errors: [`SessionError`] and the errors it wraps, [`ChannelError`] and [`CtfError`];
//!   [`UnknownStrategy`] from parsing a [`Policy`] or [`Strategy`].
//!
//! # What ends up in the trace
//! The trace metadata declares exactly the tracepoints linked into the executable: the
//! program's own and those of libraries it links that declare tracepoints. This crate and
//! the layers below it declare none (the command line's `demo`, benchmark and study
//! tracepoints live in the `faultline-cli` crate). The ring buffer's own record ids (discarded
//! and pending slots) never reach the metadata: the consumer skips those records.

pub mod drain;
pub mod relay;
pub mod schema_pipe;
pub mod session;

pub use faultline_recorder as recorder;
pub use faultline_tracepoints as tracepoints;

pub use faultline_ctf::CtfError;
pub use faultline_recorder::{Policy, Strategy, UnknownStrategy};
pub use faultline_ringbuf::{BufferIndex, ChannelError, ClockKind, Mode};
pub use faultline_tracepoints::{
    trace, tracepoint, try_trace, CStrPtr, LossCause, RawBuf, TraceOutcome,
};
pub use session::{CpuSummary, Session, SessionBuilder, SessionError, Summary};
