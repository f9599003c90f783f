//! [`crate::Stats`] of a general CTF trace, in one pass over each stream file.
//!
//! Same keys as for faultline's own traces: `lost_total` sums the discarded-event deltas of
//! every packet (the packet context's wrapping `events_discarded` counter), `lost_packets` the
//! `packet_seq_num` gaps; `lost_full`, `lost_stalled` and `lost_too_big` are faultline's loss
//! causes and stay 0 here. Per-CPU rows are keyed by the packets' `cpu_id` (the stream file
//! index when the packet context has none); `bytes` is the size of that CPU's packets.

use super::read::{CtfStreamItem, CtfTrace};
use crate::error::Result;
use crate::reader::Losses;
use crate::stats::Stats;
use std::collections::HashMap;

/// Read the whole trace and compute [`Stats`].
pub fn ctf_stats(trace: &CtfTrace) -> Result<Stats> {
    let mut st = Stats {
        bytes_on_disk: trace.bytes_on_disk(),
        ..Stats::default()
    };
    let mut by_class: HashMap<u32, u64> = HashMap::new();
    for i in 0..trace.streams().len() {
        let mut it = trace.stream_items(i);
        while let Some(item) = it.next_item() {
            match item? {
                CtfStreamItem::Packet(p) => {
                    let cs = st.per_cpu.entry(p.cpu).or_default();
                    cs.packets += 1;
                    cs.bytes = cs.bytes.saturating_add(p.packet_bytes);
                    cs.lost_packets = cs.lost_packets.saturating_add(p.lost_packets);
                    cs.lost = Losses {
                        events_discarded: cs.lost.events_discarded.saturating_add(p.discarded),
                        ..cs.lost
                    };
                    st.packets += 1;
                    st.lost_packets = st.lost_packets.saturating_add(p.lost_packets);
                    st.lost_total = st.lost_total.saturating_add(p.discarded);
                }
                CtfStreamItem::Event(e) => {
                    *by_class.entry(e.class).or_insert(0) += 1;
                    if let Some(cs) = st.per_cpu.get_mut(&e.cpu) {
                        cs.events += 1;
                    }
                    st.events_total += 1;
                    st.first_ts = Some(st.first_ts.map_or(e.ts, |t| t.min(e.ts)));
                    st.last_ts = Some(st.last_ts.map_or(e.ts, |t| t.max(e.ts)));
                }
            }
        }
    }
    for (c, n) in by_class {
        if let Some(ev) = trace.event_classes().get(c as usize) {
            *st.events.entry(ev.name.clone()).or_insert(0) += n;
        }
    }
    for (cpu, cs) in &st.per_cpu {
        st.cpus.insert(*cpu, cs.events);
    }
    if let (Some(a), Some(b)) = (st.first_ts, st.last_ts) {
        st.span_ns = trace.ticks_to_ns(b - a).min(u64::MAX as u128) as u64;
    }
    Ok(st)
}
