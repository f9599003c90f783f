//! CTF 1.8 trace writing and reading for faultline.
//!
//! A trace is a directory holding a `metadata` file (CTF 1.8 TSDL text) and one stream file
//! `stream_<cpu>` per CPU. A stream file is a sequence of packets; one packet is one ring-buffer
//! sub-buffer, truncated on disk to its content rounded up to 8 bytes. The exact binary layout
//! is documented in [`layout`]; the TSDL that describes it in [`desc`].
//!
//! - Writing: [`TraceWriter`] (whole packets from the consumer, validated, one write each).
//! - Metadata: [`metadata`] (generation), [`tsdl`] (parsing the subset we generate).
//! - Reading faultline's traces: [`Trace`] (streaming k-way merge of the CPU streams, filters,
//!   packet/loss info), strict about faultline's exact layout.
//! - Reading any CTF 1.8 trace (LTTng, barectf, the CTF test suite, faultline's): [`general`]
//!   ([`general::CtfTrace`], events with typed values, packets with discarded/lost counts).
//! - [`AnyTrace`]: opens a directory with the reader that fits it (see [`any`]).
//! - [`stats()`] and [`format_event`] / [`push_event_ref`] for `faultline stats` / `faultline view`.
//!
//! Invariant: nothing in this crate panics on file content; every malformed input gives a
//! [`CtfError`] naming the file and the byte offset (metadata errors also give the line).
//! babeltrace2 reads the traces written here (see the `babeltrace` integration test), and the
//! general reader prints what babeltrace2 prints for foreign traces (`tests/general.rs`).

pub mod any;
pub mod desc;
pub mod discards;
pub mod error;
pub mod format;
pub mod general;
pub mod layout;
pub mod reader;
pub mod stats;
pub mod tsdl;
pub mod writer;

pub use any::{find_traces, AnyTrace};
pub use desc::{metadata, uuid_string, ClockDesc, EnvDesc, EnvValue, TraceDesc};
pub use discards::{discard_stream_path, Discard, DiscardKind, Discards};
pub use error::{CtfError, Result};
pub use format::{format_event, push_event_ref, TimeMode};
pub use layout::{PacketBuilder, PacketHeader};
pub use reader::{
    glob_match, Event, EventRef, Events, Filter, Losses, PacketInfo, StreamItem, Trace,
};
pub use stats::{stats, CpuStats, RecorderCounts, Stats, StrategyCounts, RECORDER_ENV_PREFIX};
pub use tsdl::{EventSchema, FieldSchema, Schema};
pub use writer::{PacketSink, RawPacket, TraceWriter, WriterCounters, DIRECT_ALIGN};

/// Fuzzing entry point: open the trace in `dir`, read every event (merged) in both iterator
/// forms ([`Iterator::next`] and the borrowed [`Events::next_ref`]), render each one in every
/// [`TimeMode`], walk the packet headers and compute the stats. Returns the number of events
/// read, or the first error. Never panics, whatever the directory holds.
pub fn fuzz_read(dir: &std::path::Path) -> Result<u64> {
    let trace = Trace::open(dir)?;
    let mut n = 0u64;
    for ev in trace.events(&Filter::default()) {
        let ev = ev?;
        let _ = format_event(&trace, &ev, TimeMode::Wall);
        n += 1;
    }
    let mut line = String::new();
    let mut events = trace.events(&Filter::default().name("*:*"));
    while let Some(ev) = events.next_ref() {
        let ev = ev?;
        line.clear();
        push_event_ref(&mut line, &trace, &ev, TimeMode::RelativeTo(0));
        push_event_ref(&mut line, &trace, &ev, TimeMode::Ticks);
    }
    for s in trace.streams() {
        for p in trace.packets(s) {
            p?;
        }
    }
    stats(&trace)?;
    Ok(n)
}

/// Fuzzing entry point of the general reader: open the trace in `dir` with
/// [`general::CtfTrace`], read every event (merged), render each one in two [`TimeMode`]s and
/// as owned values, and compute the stats. Returns the number of events read, or the first
/// error. Never panics, whatever the directory holds.
pub fn fuzz_read_general(dir: &std::path::Path) -> Result<u64> {
    use general::{push_ctf_event, CtfTrace, EventScope};
    let trace = CtfTrace::open(dir)?;
    let mut n = 0u64;
    let mut line = String::new();
    let mut events = trace.events(&Filter::default());
    while let Some(ev) = events.next_event() {
        let ev = ev?;
        line.clear();
        push_ctf_event(&mut line, &trace, &ev, TimeMode::Wall);
        push_ctf_event(&mut line, &trace, &ev, TimeMode::RelativeTo(u64::MAX));
        for s in [EventScope::Header, EventScope::Context, EventScope::Payload] {
            let _ = ev.value(s);
        }
        n += 1;
    }
    let mut events = trace.events(&Filter::default().name("*:*").cpus([0]).time(Some(1), None));
    while let Some(ev) = events.next_event() {
        ev?;
    }
    general::stats::ctf_stats(&trace)?;
    Ok(n)
}
