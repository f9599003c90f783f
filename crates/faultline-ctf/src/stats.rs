//! Trace statistics (`faultline stats`).
//!
//! [`stats`] reads every stream once, in file order (no merge needed), checking everything the
//! event iterator checks, and sums: events per name and per CPU, first/last timestamp, losses.
//! Loss totals are the **last** packet's cumulative counters of each CPU, summed over CPUs
//! (`lost_total` = sum of final `events_discarded`).
//!
//! # Lost packets
//! `lost_packets` counts the packets missing **between** two packets of a stream: a
//! `packet_seq_num` step from `a` to `b` means `b - a - 1` packets were lost (overwritten in
//! flight-recorder mode before the consumer read them). This is what CTF readers report as
//! discarded packets (babeltrace2 gives the same count: it needs a previous packet to place a
//! gap). Packets produced before a stream's *first* packet in the trace (its `packet_seq_num`,
//! non-zero when a flight recorder overwrote the oldest packets before they were read) are
//! not a gap in the recorded window; they are counted apart, as `packets_before_first`.
//!
//! # Truncated raw buffers
//! `truncated_events` counts events with at least one raw buffer field that was not recorded
//! whole (a non-zero `<name>_truncated` count, see [`faultline_schema::truncation_count_of`]),
//! `truncated_bytes` the bytes left out, summed over those fields.
//!
//! # JSON
//! [`Stats`] serializes to JSON with the keys `events_total`, `lost_total`, `lost_full`,
//! `lost_stalled`, `lost_too_big`, `lost_packets`, `packets_before_first`, `packets`,
//! `remote_commits` (REMOTE commits: writers that migrated between reserve and commit, the last
//! packet's cumulative count of each CPU summed over CPUs; 0 for traces older than the field),
//! `truncated_events`, `truncated_bytes`,
//! `events` (name → count), `cpus` (cpu as a string → count), `per_cpu`, `first_ts`,
//! `last_ts`, `span_ns`, `bytes_on_disk`, and `recorder` ([`RecorderCounts`], `null` when the
//! trace does not carry them).
//!
//! # The recorder's counters in the trace
//! The counters of the recorder probe of the traced program (events per copy strategy,
//! restarts, fallbacks, faulted events) are not visible in the streams. The trace carries them
//! in the metadata `env` block, written when the trace is finished
//! ([`crate::TraceWriter::finish_with_env`]), under keys starting with [`RECORDER_ENV_PREFIX`]:
//! `faultline_recorder_source` (string: where the numbers come from), `_events`, `_faulted`,
//! `_faulted_bytes`, `_resized`, and per strategy `_strategy_<name>_events`, `_restarts`,
//! `_fallbacks` (the strategy name with `-` written `_`). [`RecorderCounts::to_env`] and
//! [`RecorderCounts::from_env`] are the one definition of that format.

use crate::desc::EnvValue;
use crate::error::Result;
use crate::reader::{Losses, StreamItem, Trace};
use faultline_schema::{truncation_count_of, Value};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Per-CPU summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Events read from this CPU's stream.
    pub events: u64,
    /// Packets read from this CPU's stream.
    pub packets: u64,
    /// Packets missing between two packets of the stream (`packet_seq_num` gaps).
    pub lost_packets: u64,
    /// `packet_seq_num` of the stream's first packet: packets produced before it and not in
    /// the trace (overwritten before they were read).
    pub packets_before_first: u64,
    /// Final cumulative loss counters.
    pub lost: Losses,
    /// Final cumulative REMOTE commit count (the last packet's `remote_commits`).
    pub remote_commits: u64,
    /// Bytes of this CPU's stream file.
    pub bytes: u64,
}

/// Whole-trace statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events read, all CPUs.
    pub events_total: u64,
    /// Events lost, all causes and CPUs (from the packets' cumulative counters).
    pub lost_total: u64,
    /// Events lost because the buffer was full (discard mode, consumer behind).
    pub lost_full: u64,
    /// Events lost to a stalled (or dead) writer.
    pub lost_stalled: u64,
    /// Events lost because they were larger than a sub-buffer.
    pub lost_too_big: u64,
    /// Packets missing between two packets of a stream, summed over streams (module docs).
    pub lost_packets: u64,
    /// Packets produced before each stream's first packet, summed over streams.
    pub packets_before_first: u64,
    /// Packets read, all CPUs.
    pub packets: u64,
    /// REMOTE commits (writers migrated between reserve and commit), all CPUs (module docs).
    pub remote_commits: u64,
    /// Events with a raw buffer not recorded whole (module docs).
    pub truncated_events: u64,
    /// Bytes of raw buffers not recorded.
    pub truncated_bytes: u64,
    /// `provider:name` → count (only events that occur).
    pub events: BTreeMap<String, u64>,
    /// CPU → event count (JSON keys are strings).
    pub cpus: BTreeMap<u32, u64>,
    /// Per-CPU details.
    pub per_cpu: BTreeMap<u32, CpuStats>,
    /// Clock ticks.
    pub first_ts: Option<u64>,
    /// Clock ticks.
    pub last_ts: Option<u64>,
    /// `last_ts - first_ts` in nanoseconds.
    pub span_ns: u64,
    /// Bytes of the trace directory's files.
    pub bytes_on_disk: u64,
    /// The traced program's recorder counters, when the trace carries them (module docs).
    pub recorder: Option<RecorderCounts>,
}

/// Prefix of the `env` keys holding [`RecorderCounts`].
pub const RECORDER_ENV_PREFIX: &str = "faultline_recorder_";

/// Counters of one copy strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StrategyCounts {
    /// Events committed with this strategy.
    pub events: u64,
    /// Abandoned attempts (prefault-restart).
    pub restarts: u64,
    /// Events that fell back to another way of copying.
    pub fallbacks: u64,
}

/// The recorder's own counters as carried by a trace (module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecorderCounts {
    /// Where they come from, e.g. "final report of the program".
    pub source: String,
    /// Events the recorder committed.
    pub events: u64,
    /// Of those, events with at least one field read from bad memory (zero-filled).
    pub faulted: u64,
    /// Bytes that could not be read.
    pub faulted_bytes: u64,
    /// Records re-reserved because their encoding came out shorter than sized.
    pub resized: u64,
    /// Per copy strategy (`reserve-copy-commit`, `bounce`, `prefault-restart`).
    pub strategies: BTreeMap<String, StrategyCounts>,
}

impl RecorderCounts {
    /// The `env` entries (module docs). Counts above `i64::MAX` (CTF integers are signed
    /// here) are written as `i64::MAX`.
    pub fn to_env(&self) -> Vec<(String, EnvValue)> {
        let int = |v: u64| EnvValue::Int(v.min(i64::MAX as u64) as i64);
        let key = |k: &str| format!("{RECORDER_ENV_PREFIX}{k}");
        let mut v = vec![
            (key("source"), EnvValue::Str(self.source.clone())),
            (key("events"), int(self.events)),
            (key("faulted"), int(self.faulted)),
            (key("faulted_bytes"), int(self.faulted_bytes)),
            (key("resized"), int(self.resized)),
        ];
        for (name, s) in &self.strategies {
            let n: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            v.push((key(&format!("strategy_{n}_events")), int(s.events)));
            v.push((key(&format!("strategy_{n}_restarts")), int(s.restarts)));
            v.push((key(&format!("strategy_{n}_fallbacks")), int(s.fallbacks)));
        }
        v
    }

    /// Read them back from a trace's `env` entries; `None` when there are none. Entries of the
    /// wrong type or with negative values are ignored.
    pub fn from_env(env: &[(String, EnvValue)]) -> Option<RecorderCounts> {
        let mut r = RecorderCounts::default();
        let mut any = false;
        for (k, v) in env {
            let Some(k) = k.strip_prefix(RECORDER_ENV_PREFIX) else {
                continue;
            };
            let n = match v {
                EnvValue::Str(s) if k == "source" => {
                    r.source = s.clone();
                    any = true;
                    continue;
                }
                EnvValue::Int(i) if *i >= 0 => *i as u64,
                _ => continue,
            };
            any = true;
            match k {
                "events" => r.events = n,
                "faulted" => r.faulted = n,
                "faulted_bytes" => r.faulted_bytes = n,
                "resized" => r.resized = n,
                _ => {
                    let Some(rest) = k.strip_prefix("strategy_") else {
                        continue;
                    };
                    for (suffix, field) in [("_events", 0), ("_restarts", 1), ("_fallbacks", 2)] {
                        if let Some(name) = rest.strip_suffix(suffix) {
                            let s = r.strategies.entry(name.replace('_', "-")).or_default();
                            match field {
                                0 => s.events = n,
                                1 => s.restarts = n,
                                _ => s.fallbacks = n,
                            }
                        }
                    }
                }
            }
        }
        any.then_some(r)
    }
}

impl Stats {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Read the whole trace and compute [`Stats`].
pub fn stats(trace: &Trace) -> Result<Stats> {
    let mut st = Stats {
        bytes_on_disk: trace.bytes_on_disk(),
        recorder: RecorderCounts::from_env(&trace.schema().env),
        ..Stats::default()
    };
    // Counted by id, named at the end (no per-event allocation for the name). Per event id:
    // its count and the indices of its raw buffers' truncation counts (usually
    // none), looked up once per event.
    let mut by_id: HashMap<u32, (u64, Vec<usize>)> = HashMap::new();
    for s in trace.streams() {
        let mut cs = CpuStats {
            bytes: s.len,
            ..CpuStats::default()
        };
        for item in trace.stream_events(s) {
            match item? {
                StreamItem::Packet(p) => {
                    // The reader reports the first packet's `packet_seq_num` as its gap.
                    if cs.packets == 0 {
                        cs.packets_before_first = p.header.packet_seq_num;
                    } else {
                        cs.lost_packets = cs.lost_packets.saturating_add(p.lost_packets);
                    }
                    cs.packets += 1;
                    cs.lost = Losses {
                        events_discarded: p.header.events_discarded,
                        lost_full: p.header.lost_full,
                        lost_stalled: p.header.lost_stalled,
                        lost_too_big: p.header.lost_too_big,
                    };
                    cs.remote_commits = p.header.remote_commits;
                }
                StreamItem::Event(e) => {
                    cs.events += 1;
                    let (n, idx) = by_id.entry(e.id).or_insert_with(|| {
                        let f = trace.event_schema(e.id).map_or(&[][..], |s| &s.fields[..]);
                        let idx = f
                            .windows(2)
                            .enumerate()
                            .filter(|(_, w)| {
                                truncation_count_of(&w[0].name, w[0].ty, &w[1].name, w[1].ty)
                                    .is_some()
                            })
                            .map(|(i, _)| i)
                            .collect();
                        (0, idx)
                    });
                    *n += 1;
                    let mut cut = 0u64;
                    for &i in idx.iter() {
                        if let Some((_, Value::U(c))) = e.fields.get(i) {
                            cut = cut.saturating_add(*c);
                        }
                    }
                    if cut > 0 {
                        st.truncated_events += 1;
                        st.truncated_bytes = st.truncated_bytes.saturating_add(cut);
                    }
                    st.first_ts = Some(st.first_ts.map_or(e.ts, |t| t.min(e.ts)));
                    st.last_ts = Some(st.last_ts.map_or(e.ts, |t| t.max(e.ts)));
                }
            }
        }
        st.events_total += cs.events;
        st.packets += cs.packets;
        st.lost_packets = st.lost_packets.saturating_add(cs.lost_packets);
        st.packets_before_first = st
            .packets_before_first
            .saturating_add(cs.packets_before_first);
        st.lost_total = st.lost_total.saturating_add(cs.lost.events_discarded);
        st.lost_full = st.lost_full.saturating_add(cs.lost.lost_full);
        st.lost_stalled = st.lost_stalled.saturating_add(cs.lost.lost_stalled);
        st.lost_too_big = st.lost_too_big.saturating_add(cs.lost.lost_too_big);
        st.remote_commits = st.remote_commits.saturating_add(cs.remote_commits);
        st.cpus.insert(s.cpu, cs.events);
        st.per_cpu.insert(s.cpu, cs);
    }
    for (id, (n, _)) in by_id {
        if let Some(ev) = trace.event_schema(id) {
            *st.events.entry(ev.name.clone()).or_insert(0) += n;
        }
    }
    if let (Some(a), Some(b)) = (st.first_ts, st.last_ts) {
        st.span_ns = trace.ticks_to_ns(b - a).min(u64::MAX as u128) as u64;
    }
    Ok(st)
}
