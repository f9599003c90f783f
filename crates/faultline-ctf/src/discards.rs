//! What the tracer says it lost, as notices in time order: discarded events (the delta of a
//! packet context's `events_discarded` counter from the previous packet of the same stream)
//! and discarded packets (a gap in `packet_seq_num`).
//!
//! A notice covers a time range in clock ticks of its trace:
//!
//! - discarded events: from the end of the previous packet of the stream to the end of the
//!   packet that counted them (`timestamp_end`): the counter is a snapshot at packet end;
//! - discarded packets: from the end of the previous packet to the beginning of this one;
//! - a stream's first packet whose counter is already non-zero: the tracer *may* have
//!   discarded events before or during that packet, count unknown (the counter may have started
//!   before the trace did), over that packet's range. A first packet's `packet_seq_num` above 0
//!   gives no notice (a flight recorder's first packets were overwritten, not lost).
//!
//! These are the rules babeltrace2 2.0 applies; `faultline view` prints the notices among the
//! events, at the beginning of their range, as babeltrace2 does. [`Discards`] merges the
//! notices of all stream files in order of their beginning, reading packet headers only (one
//! packet header per stream at a time: memory does not grow with the trace).

use crate::any::AnyTrace;
use crate::error::Result;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::path::Path;

/// What a [`Discard`] notice reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardKind {
    /// `count` events were discarded.
    Events,
    /// `count` packets were discarded.
    Packets,
    /// Events may have been discarded before the stream's first packet ended; count unknown.
    MaybeEvents,
}

/// One notice (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// What was lost.
    pub kind: DiscardKind,
    /// How many (0 for [`DiscardKind::MaybeEvents`]).
    pub count: u64,
    /// Beginning of the range, clock ticks (the notice's place in the event stream).
    pub begin: u64,
    /// End of the range, clock ticks.
    pub end: u64,
    /// CPU of the stream (its `cpu_id`, or the stream file index without one).
    pub cpu: u32,
    /// Index of the stream file in the trace's stream list.
    pub stream: usize,
}

/// The loss information of one packet, whichever reader read it.
#[derive(Debug, Clone, Copy)]
struct Pkt {
    cpu: u32,
    begin: Option<u64>,
    end: Option<u64>,
    counter: Option<u64>,
    delta: u64,
    lost_packets: u64,
}

type PktIter<'t> = Box<dyn Iterator<Item = Result<Pkt>> + 't>;

struct Stream<'t> {
    packets: PktIter<'t>,
    /// `timestamp_end` of the previous packet; `None` before the first packet.
    prev_end: Option<Option<u64>>,
    queue: VecDeque<Discard>,
    done: bool,
}

/// Notices of a trace in order of [`Discard::begin`] (see [`AnyTrace::discards`]).
pub struct Discards<'t> {
    streams: Vec<Stream<'t>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    cpus: Option<BTreeSet<u32>>,
    ts_min: Option<u64>,
    ts_max: Option<u64>,
    started: bool,
    failed: bool,
}

impl AnyTrace {
    /// The discarded-events and discarded-packets notices of the stream files whose CPU is in
    /// `cpus` (all when `None`) and whose range meets `[ts_min, ts_max]` (ticks), merged in
    /// order of their beginning.
    pub fn discards(
        &self,
        cpus: Option<BTreeSet<u32>>,
        ts_min: Option<u64>,
        ts_max: Option<u64>,
    ) -> Discards<'_> {
        let streams: Vec<PktIter<'_>> = match self {
            AnyTrace::Faultline(t) => t
                .streams()
                .iter()
                .map(|s| {
                    Box::new(t.packets(s).map(|p| {
                        p.map(|p| Pkt {
                            cpu: p.cpu,
                            begin: Some(p.header.timestamp_begin),
                            end: Some(p.header.timestamp_end),
                            counter: Some(p.header.events_discarded),
                            delta: p.discarded.events_discarded,
                            lost_packets: p.lost_packets,
                        })
                    })) as PktIter<'_>
                })
                .collect(),
            AnyTrace::Ctf(t) => (0..t.streams().len())
                .map(|i| {
                    Box::new(t.packets(i).map(|p| {
                        p.map(|p| Pkt {
                            cpu: p.cpu,
                            begin: p.ts_begin,
                            end: p.ts_end,
                            counter: p.events_discarded,
                            delta: p.discarded,
                            lost_packets: p.lost_packets,
                        })
                    })) as PktIter<'_>
                })
                .collect(),
        };
        Discards {
            streams: streams
                .into_iter()
                .map(|packets| Stream {
                    packets,
                    prev_end: None,
                    queue: VecDeque::new(),
                    done: false,
                })
                .collect(),
            heap: BinaryHeap::new(),
            cpus,
            ts_min,
            ts_max,
            started: false,
            failed: false,
        }
    }
}

impl Discards<'_> {
    fn keep(&self, d: &Discard) -> bool {
        self.cpus.as_ref().is_none_or(|c| c.contains(&d.cpu))
            && self.ts_min.is_none_or(|m| d.end >= m)
            && self.ts_max.is_none_or(|m| d.begin <= m)
    }

    /// Read packets of stream `i` until it has a notice queued (or ends); push its head.
    fn fill(&mut self, i: usize) -> Result<()> {
        loop {
            let Some(s) = self.streams.get_mut(i) else {
                return Ok(());
            };
            if let Some(d) = s.queue.front() {
                self.heap.push(Reverse((d.begin, i)));
                return Ok(());
            }
            if s.done {
                return Ok(());
            }
            let Some(p) = s.packets.next() else {
                s.done = true;
                return Ok(());
            };
            let p = p?;
            let mut new = Vec::with_capacity(2);
            match s.prev_end {
                None => {
                    if p.counter.is_some_and(|c| c > 0) {
                        let begin = p.begin.unwrap_or(0);
                        new.push(Discard {
                            kind: DiscardKind::MaybeEvents,
                            count: 0,
                            begin,
                            end: p.end.unwrap_or(begin),
                            cpu: p.cpu,
                            stream: i,
                        });
                    }
                }
                Some(prev) => {
                    let from = prev.or(p.begin).unwrap_or(0);
                    if p.delta > 0 {
                        new.push(Discard {
                            kind: DiscardKind::Events,
                            count: p.delta,
                            begin: from,
                            end: p.end.unwrap_or(from).max(from),
                            cpu: p.cpu,
                            stream: i,
                        });
                    }
                    if p.lost_packets > 0 {
                        new.push(Discard {
                            kind: DiscardKind::Packets,
                            count: p.lost_packets,
                            begin: from,
                            end: p.begin.unwrap_or(from).max(from),
                            cpu: p.cpu,
                            stream: i,
                        });
                    }
                }
            }
            s.prev_end = Some(p.end);
            for d in new {
                if self.keep(&d) {
                    self.streams[i].queue.push_back(d);
                }
            }
        }
    }

    fn start(&mut self) -> Result<()> {
        if !self.started {
            self.started = true;
            for i in 0..self.streams.len() {
                self.fill(i)?;
            }
        }
        Ok(())
    }

    /// The beginning of the next notice, without taking it; `Ok(None)` at the end.
    pub fn peek_begin(&mut self) -> Result<Option<u64>> {
        if self.failed {
            return Ok(None);
        }
        if let Err(e) = self.start() {
            self.failed = true;
            return Err(e);
        }
        Ok(self.heap.peek().map(|Reverse((b, _))| *b))
    }
}

impl Iterator for Discards<'_> {
    type Item = Result<Discard>;

    fn next(&mut self) -> Option<Result<Discard>> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.start() {
            self.failed = true;
            return Some(Err(e));
        }
        let Reverse((_, i)) = self.heap.pop()?;
        let d = self.streams.get_mut(i)?.queue.pop_front()?;
        if let Err(e) = self.fill(i) {
            self.failed = true;
            return Some(Err(e));
        }
        Some(Ok(d))
    }
}

/// The path of a notice's stream file.
pub fn discard_stream_path<'a>(trace: &'a AnyTrace, d: &Discard) -> &'a Path {
    match trace {
        AnyTrace::Faultline(t) => t
            .streams()
            .get(d.stream)
            .map_or(Path::new(""), |s| s.path.as_path()),
        AnyTrace::Ctf(t) => t
            .streams()
            .get(d.stream)
            .map_or(Path::new(""), |s| s.path.as_path()),
    }
}
