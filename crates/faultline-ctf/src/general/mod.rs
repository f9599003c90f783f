//! The general CTF 1.8 reader: any trace a CTF 1.8 producer writes (LTTng-UST, LTTng-modules,
//! barectf, the CTF test suite's traces, faultline's own).
//!
//! - [`meta`]: metadata file (plain or packetized) → TSDL text → declarations and types.
//! - [`layout`]: types → a decoding plan (node tree per scope, tags and lengths resolved).
//! - [`decode`]: the bit-level decoder (both byte orders, bit fields, alignment).
//! - [`read`]: the trace ([`CtfTrace`]), per-stream packet readers, the merged event iterator
//!   ([`CtfEvents`]), per-stream packet/event iteration for statistics ([`StreamItems`]).
//! - [`format`]: one-line rendering in babeltrace2's value syntax.
//!
//! Invariant: nothing here panics, loops without bound or allocates without bound on file
//! content. Every malformed input is a [`crate::CtfError`] naming the file and the byte offset
//! (for packetized metadata, the offset in the file, not in the unpacked text). Limits:
//! metadata ≤ 64 MiB, nesting ≤ 300 (metadata) and 320 (expanded types), ≤ 2 Mi fields in the
//! expanded plan, ≤ 4 Mi values per event, packets ≤ 256 MiB.

pub mod decode;
pub mod format;
pub mod layout;
pub mod lex;
pub mod meta;
pub mod read;
pub mod stats;

pub use decode::Item;
pub use format::push_ctf_event;
pub use read::{
    CtfEvent, CtfEvents, CtfPacket, CtfPackets, CtfStreamFile, CtfStreamItem, CtfTrace, CtfValue,
    EventClass, EventScope, StreamClass, StreamItems,
};
