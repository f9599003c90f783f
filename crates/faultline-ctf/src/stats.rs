//! Trace statistics (`faultline stats`).
//!
//! [`stats`] reads every stream once, in file order (no merge needed), checking everything the
//! event iterator checks, and sums: events per name and per CPU, first/last timestamp, losses.
//! Loss totals are the **last** packet's cumulative counters of each CPU, summed over CPUs
//! (`lost_total` = sum of final `events_discarded`); `lost_packets` sums the
//! `packet_seq_num` gaps. [`Stats`] serializes to JSON with the keys `events_total`,
//! `lost_total`, `lost_full`, `lost_stalled`, `lost_too_big`, `lost_packets`, `packets`,
//! `events` (name → count), `cpus` (cpu as a string → count), `per_cpu`, `first_ts`,
//! `last_ts`, `span_ns`, `bytes_on_disk`.

use crate::error::Result;
use crate::reader::{Losses, StreamItem, Trace};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Per-CPU summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Events read from this CPU's stream.
    pub events: u64,
    /// Packets read from this CPU's stream.
    pub packets: u64,
    /// Packets missing according to `packet_seq_num`.
    pub lost_packets: u64,
    /// Final cumulative loss counters.
    pub lost: Losses,
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
    /// Packets missing according to the packet sequence numbers.
    pub lost_packets: u64,
    /// Packets read, all CPUs.
    pub packets: u64,
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
        ..Stats::default()
    };
    // Counted by id, named at the end: no per-event allocation for the name.
    let mut by_id: HashMap<u32, u64> = HashMap::new();
    for s in trace.streams() {
        let mut cs = CpuStats {
            bytes: s.len,
            ..CpuStats::default()
        };
        for item in trace.stream_events(s) {
            match item? {
                StreamItem::Packet(p) => {
                    cs.packets += 1;
                    cs.lost_packets = cs.lost_packets.saturating_add(p.lost_packets);
                    cs.lost = Losses {
                        events_discarded: p.header.events_discarded,
                        lost_full: p.header.lost_full,
                        lost_stalled: p.header.lost_stalled,
                        lost_too_big: p.header.lost_too_big,
                    };
                }
                StreamItem::Event(e) => {
                    cs.events += 1;
                    *by_id.entry(e.id).or_insert(0) += 1;
                    st.first_ts = Some(st.first_ts.map_or(e.ts, |t| t.min(e.ts)));
                    st.last_ts = Some(st.last_ts.map_or(e.ts, |t| t.max(e.ts)));
                }
            }
        }
        st.events_total += cs.events;
        st.packets += cs.packets;
        st.lost_packets = st.lost_packets.saturating_add(cs.lost_packets);
        st.lost_total = st.lost_total.saturating_add(cs.lost.events_discarded);
        st.lost_full = st.lost_full.saturating_add(cs.lost.lost_full);
        st.lost_stalled = st.lost_stalled.saturating_add(cs.lost.lost_stalled);
        st.lost_too_big = st.lost_too_big.saturating_add(cs.lost.lost_too_big);
        st.cpus.insert(s.cpu, cs.events);
        st.per_cpu.insert(s.cpu, cs);
    }
    for (id, n) in by_id {
        if let Some(ev) = trace.event_schema(id) {
            *st.events.entry(ev.name.clone()).or_insert(0) += n;
        }
    }
    if let (Some(a), Some(b)) = (st.first_ts, st.last_ts) {
        st.span_ns = trace.ticks_to_ns(b - a).min(u64::MAX as u128) as u64;
    }
    Ok(st)
}
