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

use crate::view::{one_line, open_trace, CmdError, TimePoint};
use faultline_ctf::general::format::push_item_value;
use faultline_ctf::general::layout::display_name;
use faultline_ctf::general::{CtfEvent, EventScope, Item};
use faultline_ctf::{glob_match, AnyTrace, Filter};
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

impl SelectArgs {
    /// The reader's filter for this selection, with `at` turning `--from`/`--to` into ticks.
    pub fn filter(&self, at: impl Fn(TimePoint) -> u64) -> Filter {
        let mut filter = Filter::default().time(self.from.map(&at), self.to.map(&at));
        for g in &self.events {
            filter = filter.name(g);
        }
        if !self.cpus.is_empty() {
            filter = filter.cpus(self.cpus.iter().copied());
        }
        filter
    }
}

/// An opened trace (faultline's or any CTF 1.8 trace: see [`AnyTrace`]) and what was
/// selected of it.
pub struct Input {
    pub trace: AnyTrace,
    /// The trace start: timestamp of the first event over all CPUs (0 without events).
    pub start: u64,
    filter: Filter,
}

impl Input {
    /// Open the trace in `dir` and resolve the selection. `cmd` names the command in notes.
    pub fn open(dir: &Path, sel: &SelectArgs, cmd: &str) -> Result<Input, CmdError> {
        let trace = open_trace(dir)?;
        let start = match &trace {
            AnyTrace::Faultline(t) => crate::view::trace_start(t)?,
            AnyTrace::Ctf(t) => crate::view::ctf_trace_start(t)?,
        };
        let at = |p: TimePoint| match p {
            TimePoint::Ticks(t) => t,
            TimePoint::SinceStart(ns) => start.saturating_add(trace.ns_to_ticks(ns)),
        };
        for g in &sel.events {
            if !trace.event_names().iter().any(|n| glob_match(g, n)) {
                eprintln!(
                    "faultline {cmd}: note: no event of this trace matches `{}`",
                    one_line(g)
                );
            }
        }
        let filter = sel.filter(at);
        Ok(Input {
            trace,
            start,
            filter,
        })
    }

    /// The CPUs that have a stream file and are selected, ascending (for a foreign trace, the
    /// `cpu_id` of each stream file's first packet, or the file's index without one).
    pub fn cpus(&self) -> Vec<u32> {
        let all: Vec<u32> = match &self.trace {
            AnyTrace::Faultline(t) => t.streams().iter().map(|s| s.cpu).collect(),
            AnyTrace::Ctf(t) => {
                let mut v: Vec<u32> = (0..t.streams().len())
                    .filter_map(|i| t.packets(i).next().and_then(|p| p.ok()).map(|p| p.cpu))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        all.into_iter()
            .filter(|c| self.filter.cpus.as_ref().is_none_or(|s| s.contains(c)))
            .collect()
    }

    /// Clock frequency of the timestamps.
    pub fn clock_freq_hz(&self) -> u64 {
        self.trace.clock_freq_hz()
    }

    /// Clock ticks to nanoseconds, as a float (for display).
    pub fn ticks_to_ns_f64(&self, ticks: i128) -> f64 {
        ticks as f64 * 1e9 / self.trace.clock_freq_hz().max(1) as f64
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

/// The `(name, value)` fields of an [`Ev`] in declaration order (clone it to walk them
/// again): decoded on demand for faultline's traces; for other CTF traces the top-level
/// payload fields, a struct, variant or array other than bytes as its text in babeltrace2's
/// syntax.
#[derive(Clone)]
pub struct Fields<'a>(FieldsInner<'a>);

#[derive(Clone)]
enum FieldsInner<'a> {
    Faultline(faultline_ctf::reader::EventFields<'a, 'a>),
    Ctf(std::slice::Iter<'a, (&'a str, FieldValue<'a>)>),
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            FieldsInner::Faultline(f) => f.next(),
            FieldsInner::Ctf(f) => f.next().copied(),
        }
    }
}

/// What a top-level payload field of a foreign event becomes (see [`ctf_fields`]).
enum CtfField {
    Value(FieldValue<'static>),
    Text(std::ops::Range<usize>),
    Str(std::ops::Range<usize>),
    Bytes(std::ops::Range<usize>),
}

/// The top-level payload fields of `ev` as (name, value); compound values are rendered into
/// `arena`, which the returned values borrow with the event.
fn ctf_fields<'a>(ev: &CtfEvent<'a>, arena: &mut String, spec: &mut Vec<(&'a str, CtfField)>) {
    arena.clear();
    spec.clear();
    let items = ev.scope_items(EventScope::Payload);
    let plan = ev.trace.plan();
    let name_of = |it: &Item| -> &'a str {
        it.node()
            .and_then(|n| ev.trace.plan().nodes.get(n as usize))
            .map_or("", |n| display_name(&n.name))
    };
    let mut i = 1; // past the payload struct's Begin
    while i < items.len() && items[i] != Item::End {
        let it = items[i];
        let name = name_of(&it);
        let field = match it {
            Item::U(_, v) => {
                i += 1;
                CtfField::Value(FieldValue::U(v))
            }
            Item::I(_, v) => {
                i += 1;
                CtfField::Value(FieldValue::I(v))
            }
            Item::F(_, v) => {
                i += 1;
                CtfField::Value(FieldValue::F(v))
            }
            Item::Str(_, a, b) => {
                i += 1;
                CtfField::Str(a as usize..b as usize)
            }
            Item::Ints(n, start, len)
                if start % 8 == 0
                    && ev.int_at(n, start, 0).is_none_or(|e| {
                        e.node()
                            .and_then(|e| plan.nodes.get(e as usize))
                            .is_some_and(|e| {
                                matches!(
                                    e.kind,
                                    faultline_ctf::general::layout::Kind::Int { size: 8, .. }
                                )
                            })
                    }) =>
            {
                i += 1;
                let a = (start / 8) as usize;
                CtfField::Bytes(a..a.saturating_add(len as usize))
            }
            _ => {
                let a = arena.len();
                push_item_value(arena, ev, items, &mut i);
                CtfField::Text(a..arena.len())
            }
        };
        spec.push((name, field));
    }
}

/// [`ctf_fields`] as borrowed [`FieldValue`]s.
fn ctf_values<'a>(
    ev: &CtfEvent<'a>,
    arena: &'a str,
    spec: &[(&'a str, CtfField)],
    out: &mut Vec<(&'a str, FieldValue<'a>)>,
) {
    out.clear();
    for (name, f) in spec {
        let v = match f {
            CtfField::Value(v) => *v,
            CtfField::Text(r) => FieldValue::Str(arena.get(r.clone()).unwrap_or("").as_bytes()),
            CtfField::Str(r) => FieldValue::Str(ev.text().get(r.clone()).unwrap_or(&[])),
            CtfField::Bytes(r) => FieldValue::Bytes(ev.packet().get(r.clone()).unwrap_or(&[])),
        };
        out.push((name, v));
    }
}

/// Hand every selected packet's [`PacketMark`] to `on_packet`, CPU by CPU in file order
/// (packet headers only). An error of the callback stops the reading and is returned.
pub fn packets(
    input: &Input,
    mut on_packet: impl FnMut(&PacketMark) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let f = &input.filter;
    let keep = |cpu: u32, b: u64, e: u64| {
        f.cpus.as_ref().is_none_or(|c| c.contains(&cpu))
            && f.ts_min.is_none_or(|m| e >= m)
            && f.ts_max.is_none_or(|m| b <= m)
    };
    match &input.trace {
        AnyTrace::Faultline(trace) => {
            for s in trace.streams() {
                if f.cpus.as_ref().is_some_and(|c| !c.contains(&s.cpu)) {
                    continue;
                }
                for p in trace.packets(s) {
                    let p = p?;
                    let h = &p.header;
                    if !keep(p.cpu, h.timestamp_begin, h.timestamp_end) {
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
        }
        AnyTrace::Ctf(trace) => {
            // Other tracers give no cause: their discarded events count as "buffer full" (the
            // only cause LTTng has in discard mode). A stream's first packet's sequence number
            // is not a loss (as for faultline traces and babeltrace2).
            for i in 0..trace.streams().len() {
                let mut first = true;
                for p in trace.packets(i) {
                    let p = p?;
                    let lost_packets = if first { 0 } else { p.lost_packets };
                    first = false;
                    let b = p.ts_begin.unwrap_or(0);
                    let e = p.ts_end.unwrap_or(b);
                    if !keep(p.cpu, b, e) {
                        continue;
                    }
                    on_packet(&PacketMark {
                        cpu: p.cpu,
                        seq: p.seq.unwrap_or(0),
                        ts_begin: b,
                        ts_end: e,
                        lost_full: p.discarded,
                        lost_stalled: 0,
                        lost_too_big: 0,
                        lost_packets,
                        remote_commits: 0,
                    })?;
                }
            }
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
    match &input.trace {
        AnyTrace::Faultline(trace) => {
            let mut events = trace.events(&input.filter);
            while let Some(ev) = events.next_ref() {
                let ev = ev?;
                on_event(&Ev {
                    ts: ev.ts,
                    cpu: ev.cpu,
                    name: ev.name,
                    fields: Fields(FieldsInner::Faultline(ev.fields())),
                })?;
            }
        }
        AnyTrace::Ctf(trace) => {
            let mut events = trace.events(&input.filter);
            let mut arena = String::new();
            while let Some(ev) = events.next_event() {
                let ev = ev?;
                // Per event (they borrow the event): small, the fields of one event.
                let mut spec = Vec::new();
                let mut values = Vec::new();
                ctf_fields(&ev, &mut arena, &mut spec);
                ctf_values(&ev, &arena, &spec, &mut values);
                on_event(&Ev {
                    ts: ev.ts,
                    cpu: ev.cpu,
                    name: ev.name,
                    fields: Fields(FieldsInner::Ctf(values.iter())),
                })?;
            }
        }
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
