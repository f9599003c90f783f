//! The one place where `faultline export` and `faultline timeline` read a trace.
//!
//! Both commands see a trace as two streams of items handed to callbacks:
//!
//! 1. [`PacketMark`]s, one per packet of each selected CPU in file order, carrying the losses
//!    counted in that packet (the deltas of the packet context's cumulative counters and the
//!    `packet_seq_num` gap before it, as [`faultline_ctf::PacketInfo`] computes them), from
//!    [`packets`], which reads the packet headers only (one small read per packet).
//! 2. [`Ev`]s from [`events`], the events merged across CPUs in timestamp order, borrowed from the reader's
//!    packet buffer (no allocation per event); fields are decoded on the fly by [`Fields`].
//!
//! Memory is bounded by the largest packet, whatever the trace size. Everything else in the
//! two commands depends only on the types of this module, so a change of the reader's API
//! touches this file alone.
//!
//! The selection ([`SelectArgs`]) has the same meaning as in `faultline view`: `--event` globs,
//! `--cpu` list, `--from`/`--to` times relative to the trace start (its first event) or
//! `@TICKS`. A packet is kept when its CPU is selected and its `[timestamp_begin,
//! timestamp_end]` meets the time range (the `--event` globs do not apply to packets).

use crate::view::{one_line, open_trace, trace_start, CmdError, TimePoint};
use faultline_ctf::{glob_match, AnyTrace, Filter, Trace};
use faultline_schema::FieldValue;
use std::path::Path;

/// Which part of a trace a command reads (the filters of `faultline view`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Only events whose `provider:name` matches this glob (`*` any run, `?` one character);
    /// repeatable, an event matching any of them is kept
    #[arg(long = "event", short = 'e', value_name = "GLOB")]
    pub events: Vec<String>,
    /// Only this CPU; repeatable
    #[arg(long = "cpu", short = 'c', value_name = "N")]
    pub cpus: Vec<u32>,
    /// Only events at or after this time: nanoseconds since the trace start (units ns, us, ms,
    /// s allowed) or @TICKS (absolute clock value)
    #[arg(long, value_name = "TIME")]
    pub from: Option<TimePoint>,
    /// Only events at or before this time (same forms as --from)
    #[arg(long, value_name = "TIME")]
    pub to: Option<TimePoint>,
}

/// An opened trace and what was selected of it.
pub struct Input {
    pub trace: Trace,
    /// The trace start: timestamp of the first event over all CPUs (0 without events).
    pub start: u64,
    filter: Filter,
}

impl Input {
    /// Open the trace in `dir` and resolve the selection. `cmd` names the command in notes.
    pub fn open(dir: &Path, sel: &SelectArgs, cmd: &str) -> Result<Input, CmdError> {
        let trace = match open_trace(dir)? {
            AnyTrace::Faultline(t) => t,
            AnyTrace::Ctf(_) => {
                return Err(CmdError::Trace(format!(
                    "{}: not a faultline trace: `faultline {cmd}` reads faultline's own traces \
                     (`faultline view` and `stats` read any CTF 1.8 trace)",
                    dir.display()
                )))
            }
        };
        let start = trace_start(&trace)?;
        let at = |p: TimePoint| match p {
            TimePoint::Ticks(t) => t,
            TimePoint::SinceStart(ns) => start.saturating_add(trace.ns_to_ticks(ns)),
        };
        let mut filter = Filter::default().time(sel.from.map(at), sel.to.map(at));
        for g in &sel.events {
            if !trace.schema().events.iter().any(|e| glob_match(g, &e.name)) {
                eprintln!(
                    "faultline {cmd}: note: no event of this trace matches `{}`",
                    one_line(g)
                );
            }
            filter = filter.name(g);
        }
        if !sel.cpus.is_empty() {
            filter = filter.cpus(sel.cpus.iter().copied());
        }
        Ok(Input {
            trace,
            start,
            filter,
        })
    }

    /// The CPUs that have a stream file and are selected, ascending.
    pub fn cpus(&self) -> Vec<u32> {
        self.trace
            .streams()
            .iter()
            .map(|s| s.cpu)
            .filter(|c| self.filter.cpus.as_ref().is_none_or(|s| s.contains(c)))
            .collect()
    }

    /// Clock ticks to nanoseconds, as a float (for display).
    pub fn ticks_to_ns_f64(&self, ticks: i128) -> f64 {
        ticks as f64 * 1e9 / self.trace.clock().freq_hz.max(1) as f64
    }
}

/// The losses counted in one packet (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketMark {
    pub cpu: u32,
    pub seq: u64,
    /// Clock ticks.
    pub ts_begin: u64,
    pub ts_end: u64,
    pub lost_full: u64,
    pub lost_stalled: u64,
    pub lost_too_big: u64,
    /// Packets missing (by `packet_seq_num`) just before this one.
    pub lost_packets: u64,
    /// REMOTE commits (writers migrated between reserve and commit) counted on this CPU
    /// between the previous packet's close and this one's (0 in traces without the field).
    pub remote_commits: u64,
}

impl PacketMark {
    /// Events lost, all causes.
    pub fn lost_events(&self) -> u64 {
        self.lost_full
            .saturating_add(self.lost_stalled)
            .saturating_add(self.lost_too_big)
    }

    /// Whether anything was lost.
    pub fn has_losses(&self) -> bool {
        self.lost_events() != 0 || self.lost_packets != 0
    }
}

/// One event, borrowed until the callback returns.
pub struct Ev<'a> {
    /// Clock ticks.
    pub ts: u64,
    pub cpu: u32,
    /// `provider:name`.
    pub name: &'a str,
    pub fields: Fields<'a>,
}

/// The `(name, value)` fields of an [`Ev`] in declaration order, decoded on demand
/// (clone it to walk them again).
#[derive(Clone)]
pub struct Fields<'a>(faultline_ctf::reader::EventFields<'a, 'a>);

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// Hand every selected packet's [`PacketMark`] to `on_packet`, CPU by CPU in file order
/// (packet headers only). An error of the callback stops the reading and is returned.
pub fn packets(
    input: &Input,
    mut on_packet: impl FnMut(&PacketMark) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let trace = &input.trace;
    let f = &input.filter;
    for s in trace.streams() {
        if f.cpus.as_ref().is_some_and(|c| !c.contains(&s.cpu)) {
            continue;
        }
        for p in trace.packets(s) {
            let p = p?;
            let h = &p.header;
            if f.ts_min.is_some_and(|m| h.timestamp_end < m)
                || f.ts_max.is_some_and(|m| h.timestamp_begin > m)
            {
                continue;
            }
            on_packet(&PacketMark {
                cpu: p.cpu,
                seq: h.packet_seq_num,
                ts_begin: h.timestamp_begin,
                ts_end: h.timestamp_end,
                lost_full: p.discarded.lost_full,
                lost_stalled: p.discarded.lost_stalled,
                lost_too_big: p.discarded.lost_too_big,
                lost_packets: p.lost_packets,
                remote_commits: p.remote_commits,
            })?;
        }
    }
    Ok(())
}

/// Hand every selected event to `on_event`, merged across CPUs in timestamp order. An error of
/// the callback stops the reading and is returned.
pub fn events(
    input: &Input,
    mut on_event: impl FnMut(&Ev<'_>) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let mut events = input.trace.events(&input.filter);
    while let Some(ev) = events.next_ref() {
        let ev = ev?;
        on_event(&Ev {
            ts: ev.ts,
            cpu: ev.cpu,
            name: ev.name,
            fields: Fields(ev.fields()),
        })?;
    }
    Ok(())
}

/// Whether the event has a `<name>_faulted` field with a non-zero value: a raw pointer field
/// that could not be read completely (its bytes were recorded zero-filled).
pub fn is_faulted(ev: &Ev<'_>) -> bool {
    ev.fields.clone().any(|(n, v)| {
        n.ends_with("_faulted") && matches!(v, FieldValue::U(1..) | FieldValue::I(1..))
    })
}

/// The field names that identify the thread an event was emitted by, in order of preference:
/// the first integer field with one of these names is the thread.
pub const THREAD_FIELDS: [&str; 3] = ["tid", "thread_id", "thread"];

/// The thread of an event, when one of its fields names it ([`THREAD_FIELDS`]).
pub fn thread_of(ev: &Ev<'_>) -> Option<u64> {
    // One pass: the best-ranked integer field among THREAD_FIELDS.
    let mut best: Option<(usize, u64)> = None;
    for (n, v) in ev.fields.clone() {
        let Some(rank) = THREAD_FIELDS.iter().position(|t| *t == n) else {
            continue;
        };
        let x = match v {
            FieldValue::U(x) => x,
            FieldValue::I(x) => match u64::try_from(x) {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ => continue,
        };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, x));
        }
    }
    best.map(|(_, x)| x)
}
