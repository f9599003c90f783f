//! The consumer loop: ring-buffer sub-buffers in, CTF packets out.
//!
//! # Protocol
//! [`Drain`] is the single consumer of a channel (it owns `consumed` through
//! [`Consumer::next_packet`]); it runs in a thread of the traced program (embedded session) or
//! as the `faultline record` process. Each [`Drain::poll`]:
//! 1. takes complete sub-buffers of the active CPUs **round-robin, at most
//!    [`DrainConfig::batch`] per CPU per call**, copying each out (the consumer validates
//!    everything it reads from shared memory). A CPU whose writers fill sub-buffers as fast as
//!    they are taken therefore cannot keep the others (or the periodic flush, checked at the
//!    start of every poll) waiting: one poll handles at most `batch` × CPUs packets;
//! 2. walks the packet's record headers once (16 bytes per record, no payload access) to count
//!    events per `(cpu, id)` and find records with id [`DISCARDED_RECORD_ID`] or
//!    [`PENDING_RECORD_ID`] (abandoned reservations, prefault-restart retries, resized records,
//!    records of dead writers). Only when there are some is the packet compacted into a scratch
//!    copy (kept records moved down, `content_size` fixed); otherwise it goes out as is;
//! 3. hands the whole packet to [`TraceWriter::write_packet`] (one `write`).
//!
//! # Event classes that appear while draining
//! With a [`ClassSource`] ([`Drain::set_class_source`]: tracepoints registered at run time,
//! in this process or, under `faultline record`, announced over the schema pipe), the drain
//! asks the source for new classes at the start of every poll and **after taking each packet,
//! before writing it**, and declares them to the trace writer (which rewrites the metadata).
//! A class is published before any record of it is committed, and the packet was taken after
//! that commit, so its classes are known by then; a record of an id still unknown makes the
//! writer reject the packet (counted), it is never written under a wrong description.
//!
//! Every `flush_interval` (default 200 ms) it also flushes quiet buffers
//! ([`Channel::flush_all`], helpers pinned to each CPU), so events of a CPU that writes little
//! reach the disk within about one interval. Between polls it sleeps in [`Consumer::wait`]
//! (futex, woken by the committer that completes a sub-buffer while the consumer waits; always
//! with a timeout, which is also the delivery backstop).
//!
//! [`Drain::finish`] flushes every buffer (including ones holding only a header, so the final
//! loss counters reach a packet), drains until nothing is left, and if a CPU's loss counters
//! still moved after its last packet (events lost after the final flush) appends a synthetic
//! empty packet carrying the final counters, so the trace's `events_discarded` equals the
//! channel's loss count exactly.
//!
//! # Errors never block writers
//! A packet that cannot be written (ENOSPC, EACCES, EIO) is counted (`packets_failed`,
//! `events_failed`), its error is kept (first and last message, plus a count) and reported once
//! on stderr when `verbose`, and draining goes on: the sub-buffer is released anyway, so writers
//! keep going (discard mode keeps discarding only what it must).
//!
//! # Damaged shared memory
//! The traced program can write anything into the shared buffers. Two checks catch damage: the
//! consumer's (positions, commit counters, packet header, record chain; the CPU buffer is then
//! no longer read — its writers lose events as "full" in discard mode) and the trace writer's
//! (packet continuity, record ids and timestamps, payloads that decode exactly; the packet is
//! dropped, counted in `packets_rejected`, and later packets of that CPU are still checked and
//! kept when valid). Sums of values read from shared memory (loss counters, sequence numbers)
//! are checked too: an overflow counts as damage and nothing is written from it (never a
//! wrapped total). Either way the packets already written stay, and the first problem of each
//! CPU buffer is reported **once**, on one stderr line naming the buffer (when `verbose`) and in
//! [`DrainStats::corrupt`]; later problems of the same buffer are only counted.

use crate::schema_pipe::ClassSource;
use faultline_ctf::{CtfError, EnvValue, TraceWriter, WriterCounters};
use faultline_ringbuf::wire::Records;
use faultline_ringbuf::{
    Channel, Consumer, FlushError, PacketInfo, ReadError, DISCARDED_RECORD_ID, PENDING_RECORD_ID,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HDR: usize = faultline_ringbuf::wire::PACKET_HEADER_SIZE;
const REC_HDR: usize = faultline_ringbuf::wire::RECORD_HEADER_SIZE;
/// Byte offset of `content_size` (bits) in the packet header.
const OFF_CONTENT_SIZE: usize = 40;

/// Drain options.
#[derive(Debug, Clone, Copy)]
pub struct DrainConfig {
    /// How often quiet buffers are flushed.
    pub flush_interval: Duration,
    /// Longest sleep between polls.
    pub wait_timeout: Duration,
    /// Print disk and shared-memory errors on stderr when they first happen.
    pub verbose: bool,
    /// Most packets taken from one CPU per poll (round-robin fairness, module docs).
    pub batch: u32,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            flush_interval: Duration::from_millis(200),
            wait_timeout: Duration::from_millis(100),
            verbose: true,
            batch: 4,
        }
    }
}

/// What the drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainStats {
    /// Packets written to the trace (synthetic final packets included).
    pub packets_written: u64,
    /// Events in those packets.
    pub events_written: u64,
    /// Bytes written to stream files.
    pub stream_bytes: u64,
    /// Packets taken from the ring buffer.
    pub packets_taken: u64,
    /// Discarded/abandoned records removed from packets before writing.
    pub discarded_records_removed: u64,
    /// Packets (and their events) not written because of an I/O error.
    pub packets_failed: u64,
    /// Events in those packets.
    pub events_failed: u64,
    /// Packets (and their events) the trace writer rejected as invalid.
    pub packets_rejected: u64,
    /// Events in those packets.
    pub events_rejected: u64,
    /// Number of write errors, first and last message.
    pub write_errors: u64,
    /// The first write error.
    pub first_write_error: Option<String>,
    /// The last write error.
    pub last_write_error: Option<String>,
    /// Shared-memory validation errors (the CPU is no longer read).
    pub read_errors: Vec<String>,
    /// Flushes that could not run on a CPU.
    pub flush_errors: Vec<String>,
    /// Empty packets appended at the end to carry the final loss counters.
    pub synthetic_packets: u64,
    /// Events written per CPU and event id.
    pub events: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Event classes declared while draining (id -> `provider:name`).
    pub late_events: BTreeMap<u32, String>,
    /// Classes that could not be declared (bad names, clashes), one message each.
    pub class_errors: Vec<String>,
    /// CPU buffers found damaged (module docs), by CPU.
    pub corrupt: BTreeMap<u32, CorruptBuffer>,
}

/// A CPU buffer whose shared memory was found damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CorruptBuffer {
    /// The first problem found.
    pub first_error: String,
    /// The consumer gave up on the buffer (it is no longer read).
    pub abandoned: bool,
    /// Packets of this buffer the trace writer rejected.
    pub packets_rejected: u64,
    /// Packets of this buffer written to the trace (all of them valid).
    pub packets_kept: u64,
}

impl CorruptBuffer {
    /// The one line that reports it.
    pub fn line(&self, cpu: u32) -> String {
        format!(
            "CPU buffer {cpu}: shared memory damaged by the traced program: {}; {}",
            self.first_error,
            if self.abandoned {
                "this buffer is no longer read, the packets taken from it before were valid and \
                 are kept"
            } else {
                "that packet is dropped, later packets of this buffer are checked and kept when \
                 valid"
            }
        )
    }
}

/// The consumer loop (module docs).
pub struct Drain {
    chan: Arc<Channel>,
    writer: TraceWriter,
    cfg: DrainConfig,
    packet: Vec<u8>,
    scratch: Vec<u8>,
    /// counts[cpu][id], ids are dense.
    counts: Vec<Vec<u64>>,
    /// Per-id counts of the packet being handled (pass 1), added to `counts` once written.
    pending: Vec<u64>,
    n_ids: usize,
    stats: DrainStats,
    last_flush: Instant,
    broken: BTreeSet<u32>,
    /// Last packet header taken per CPU (sequence, end timestamp, cumulative losses).
    last: BTreeMap<u32, faultline_ringbuf::PacketHeader>,
    /// Packets written per CPU (for the damage report).
    kept: BTreeMap<u32, u64>,
    /// Where the next round-robin pass starts (index into the active CPUs).
    next: usize,
    classes: Option<Box<dyn ClassSource>>,
    /// Clock reading taken just before the last periodic flush, until a poll finds nothing
    /// left: then everything older has been written ([`TraceWriter::flushed`]).
    flush_mark: Option<u64>,
}

impl Drain {
    /// `n_ids`: event ids are `0..n_ids` (the writer rejects any other).
    pub fn new(chan: Arc<Channel>, writer: TraceWriter, n_ids: usize, cfg: DrainConfig) -> Drain {
        let ncpu = chan.num_cpus() as usize;
        Drain {
            chan,
            writer,
            cfg,
            packet: Vec::new(),
            scratch: Vec::new(),
            counts: vec![Vec::new(); ncpu],
            pending: vec![0; n_ids],
            n_ids,
            stats: DrainStats::default(),
            last_flush: Instant::now(),
            broken: BTreeSet::new(),
            last: BTreeMap::new(),
            kept: BTreeMap::new(),
            next: 0,
            classes: None,
            flush_mark: None,
        }
    }

    /// Declare the classes `source` publishes as they appear (module docs).
    pub fn set_class_source(&mut self, source: Box<dyn ClassSource>) {
        self.classes = Some(source);
    }

    /// Read the class source now (its other messages too), without taking a packet.
    pub fn poll_classes(&mut self) {
        self.refresh_classes();
    }

    /// Ask the class source for new classes and declare them.
    fn refresh_classes(&mut self) {
        let Some(src) = self.classes.as_mut() else {
            return;
        };
        let new = src.poll();
        for e in src.take_errors() {
            if self.stats.class_errors.len() < 64 {
                self.stats.class_errors.push(e);
            }
        }
        if new.is_empty() {
            return;
        }
        if self.writer.add_events(&new).is_err() {
            // One at a time, so one bad class does not keep the others out.
            for ev in &new {
                if let Err(e) = self.writer.add_events(std::slice::from_ref(ev)) {
                    if self.stats.class_errors.len() < 64 {
                        self.stats.class_errors.push(e.to_string());
                    }
                }
            }
        }
        for (id, d) in new {
            if self.writer.has_event(id) {
                self.n_ids = self.n_ids.max(id as usize + 1);
                self.stats.late_events.insert(id, d.full_name());
            }
        }
        if self.pending.len() < self.n_ids {
            self.pending.resize(self.n_ids, 0);
        }
    }

    /// The channel drained.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.chan
    }

    /// `timestamp_end` of the last packet written for `cpu` (0 if none): the time floor for
    /// [`Channel::recover_dead_writers_after`].
    pub fn last_timestamp_end(&self, cpu: u32) -> u64 {
        self.writer.last_timestamp_end(cpu).unwrap_or(0)
    }

    /// Stats so far (event counts are filled in by [`Drain::finish`]).
    pub fn stats(&self) -> &DrainStats {
        &self.stats
    }

    /// Events written so far, all CPUs.
    pub fn events_written(&self) -> u64 {
        self.stats.events_written
    }

    /// Flush quiet buffers when the interval has passed, then take and write complete
    /// sub-buffers, at most [`DrainConfig::batch`] per CPU, round-robin (module docs). Returns
    /// the number of packets taken: call it again while that is not 0.
    pub fn poll(&mut self) -> u64 {
        self.refresh_classes();
        if self.last_flush.elapsed() >= self.cfg.flush_interval {
            let now = faultline_ringbuf::clock::now(self.chan.clock().kind);
            self.flush(false);
            self.flush_mark = Some(now);
        }
        let n = self.take_round(self.cfg.batch.max(1));
        if n == 0 {
            if let Some(t) = self.flush_mark.take() {
                self.writer.flushed(t);
            }
        }
        n
    }

    /// Sleep until a sub-buffer is delivered or the timeout passes.
    pub fn wait(&self) {
        let t = self.cfg.wait_timeout.min(self.cfg.flush_interval);
        Consumer::new(&self.chan).wait(t);
    }

    /// Poll and wait until `stop` is set (then return without the final drain).
    pub fn run_until(&mut self, stop: &AtomicBool) {
        // Acquire: pairs with the release store of whoever stops us.
        while !stop.load(Ordering::Acquire) {
            if self.poll() == 0 {
                self.wait();
            }
        }
    }

    fn flush(&mut self, include_empty: bool) {
        self.last_flush = Instant::now();
        for e in self.chan.flush_all(include_empty) {
            if let FlushError::Corrupt(cpu, what) = e {
                // Damage, reported like the consumer's (module docs); no longer read.
                self.broken.insert(cpu);
                self.damaged(cpu, what, true);
                continue;
            }
            let msg = e.to_string();
            if self.stats.flush_errors.len() < 16 && !self.stats.flush_errors.contains(&msg) {
                if self.cfg.verbose {
                    eprintln!("faultline: flush: {msg}");
                }
                self.stats.flush_errors.push(msg);
            }
        }
    }

    /// One round-robin pass: up to `batch` packets from each active CPU in turn, starting one
    /// CPU further than the previous pass.
    fn take_round(&mut self, batch: u32) -> u64 {
        let mut n = 0;
        let chan = self.chan.clone();
        let consumer = Consumer::new(&chan);
        let cpus: Vec<u32> = consumer
            .active_cpus()
            .into_iter()
            .filter(|c| !self.broken.contains(c))
            .collect();
        if cpus.is_empty() {
            return 0;
        }
        let start = self.next % cpus.len();
        self.next = start + 1;
        for &cpu in cpus[start..].iter().chain(&cpus[..start]) {
            for _ in 0..batch {
                let mut buf = std::mem::take(&mut self.packet);
                let r = consumer.next_packet(cpu, &mut buf);
                match r {
                    Ok(Some(info)) => {
                        // Classes of the records in this packet were published before the
                        // records were committed, so before this take (module docs).
                        self.refresh_classes();
                        self.handle(&buf, &info);
                        self.packet = buf;
                        n += 1;
                    }
                    Ok(None) => {
                        self.packet = buf;
                        break;
                    }
                    Err(e) => {
                        self.packet = buf;
                        let what = match e {
                            ReadError::Corrupt { what, .. } => what,
                            e => e.to_string(),
                        };
                        self.stats
                            .read_errors
                            .push(format!("{e}; no longer reading CPU {cpu}", e = what));
                        self.broken.insert(cpu);
                        self.damaged(cpu, what, true);
                        break;
                    }
                }
            }
        }
        n
    }

    /// Take everything there is, fairly, until a pass finds nothing.
    fn take_all(&mut self) -> u64 {
        let mut n = 0;
        loop {
            let k = self.take_round(self.cfg.batch.max(1));
            if k == 0 {
                return n;
            }
            n += k;
        }
    }

    /// Record damage found in `cpu`'s buffer; report it once per buffer (module docs).
    fn damaged(&mut self, cpu: u32, what: String, abandoned: bool) {
        let kept = self.kept.get(&cpu).copied().unwrap_or(0);
        let verbose = self.cfg.verbose;
        let c = self.stats.corrupt.entry(cpu).or_insert_with(|| {
            let c = CorruptBuffer {
                first_error: what,
                abandoned,
                ..CorruptBuffer::default()
            };
            if verbose {
                eprintln!("faultline: {}", c.line(cpu));
            }
            c
        });
        c.abandoned |= abandoned;
        c.packets_kept = kept;
        if !abandoned {
            c.packets_rejected += 1;
        }
    }

    fn handle(&mut self, packet: &[u8], info: &PacketInfo) {
        let cpu = info.cpu;
        self.stats.packets_taken += 1;
        self.last.insert(cpu, info.header);
        let content = info.content_len.min(packet.len());
        // Pass 1: record headers only.
        let mut kept = 0u64;
        let mut dropped = 0u64;
        let mut bad_id = false;
        // The shared walk (faultline_wire); the consumer validated the chain.
        for r in Records::new(&packet[..content]) {
            let Ok(r) = r else { break };
            if r.id == DISCARDED_RECORD_ID || r.id == PENDING_RECORD_ID {
                dropped += 1;
            } else {
                kept += 1;
                match self.pending.get_mut(r.id as usize) {
                    Some(c) => *c += 1,
                    None => bad_id = true,
                }
            }
        }
        let compacted = (dropped > 0).then(|| {
            self.compact(packet, content);
            std::mem::take(&mut self.scratch)
        });
        let out: &[u8] = compacted.as_deref().unwrap_or(packet);
        self.stats.discarded_records_removed += dropped;
        match self.writer.write_packet(cpu, out) {
            Ok(_) => {
                if !bad_id {
                    if let Some(row) = self.counts.get_mut(cpu as usize) {
                        row.resize(row.len().max(self.n_ids), 0);
                        for (r, p) in row.iter_mut().zip(&self.pending) {
                            *r += p;
                        }
                    }
                }
                let c = self.writer.counters();
                self.stats.packets_written = c.packets;
                self.stats.events_written = c.events;
                self.stats.stream_bytes = c.stream_bytes;
                *self.kept.entry(cpu).or_insert(0) += 1;
                if let Some(c) = self.stats.corrupt.get_mut(&cpu) {
                    c.packets_kept += 1;
                }
            }
            Err(e @ CtfError::Io { .. }) => {
                self.stats.packets_failed += 1;
                self.stats.events_failed += kept;
                self.write_error(e.to_string());
            }
            Err(e) => {
                self.stats.packets_rejected += 1;
                self.stats.events_rejected += kept;
                let what = match e {
                    CtfError::Packet { offset, msg, .. } => {
                        format!(
                            "packet {} rejected: {msg} (byte {offset})",
                            info.header.packet_seq_num
                        )
                    }
                    e => format!("packet {} rejected: {e}", info.header.packet_seq_num),
                };
                self.damaged(cpu, what, false);
            }
        }
        if let Some(c) = compacted {
            self.scratch = c;
        }
        self.pending.fill(0);
    }

    /// A shared-memory value failed a check: report it once, keep it in the stats.
    /// A shared-memory problem of `cpu`'s buffer found at the end (module docs).
    fn read_error(&mut self, cpu: u32, msg: String) {
        self.stats.read_errors.push(msg.clone());
        self.damaged(cpu, msg, false);
    }

    fn write_error(&mut self, msg: String) {
        self.stats.write_errors += 1;
        if self.stats.first_write_error.is_none() {
            if self.cfg.verbose {
                eprintln!(
                    "faultline: cannot write the trace: {msg} (events are counted as not \
                     written; tracing goes on)"
                );
            }
            self.stats.first_write_error = Some(msg.clone());
        }
        self.stats.last_write_error = Some(msg);
    }

    /// Copy `packet` into `scratch` without its discarded records.
    fn compact(&mut self, packet: &[u8], content: usize) {
        let s = &mut self.scratch;
        s.clear();
        s.resize(packet.len(), 0);
        s[..HDR].copy_from_slice(&packet[..HDR]);
        let mut to = HDR;
        let mut end = HDR;
        for r in Records::new(&packet[..content]) {
            let Ok(r) = r else { break };
            if r.id != DISCARDED_RECORD_ID && r.id != PENDING_RECORD_ID {
                let len = REC_HDR + r.payload.len();
                s[to..to + len].copy_from_slice(&packet[r.offset..r.offset + len]);
                end = to + len;
                to = (end + 7) & !7;
            }
        }
        s[OFF_CONTENT_SIZE..OFF_CONTENT_SIZE + 8].copy_from_slice(&(end as u64 * 8).to_le_bytes());
    }

    /// Final flush and drain, synthetic packets for late losses, then finish the trace
    /// (fsync). Returns the stats and the writer's final counters (or its error).
    pub fn finish(self) -> (DrainStats, Result<WriterCounters, CtfError>) {
        self.finish_with_env(Vec::new())
    }

    /// [`Drain::finish`], adding `env` entries to the trace's metadata (values known only at
    /// the end, such as the recorder counters; see [`TraceWriter::finish_with_env`]).
    pub fn finish_with_env(
        mut self,
        env: Vec<(String, EnvValue)>,
    ) -> (DrainStats, Result<WriterCounters, CtfError>) {
        self.flush(true);
        self.refresh_classes();
        // Drain until a whole pass finds nothing (the flush above completed everything that
        // had content; a few passes cover a delivery that raced with it).
        let mut idle = 0;
        while idle < 2 {
            if self.take_all() == 0 {
                idle += 1;
            } else {
                idle = 0;
            }
        }
        self.synthesize_final();
        for (cpu, row) in self.counts.iter().enumerate() {
            let m: BTreeMap<u32, u64> = row
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(id, &n)| (id as u32, n))
                .collect();
            if !m.is_empty() {
                self.stats.events.insert(cpu as u32, m);
            }
        }
        let c = self.writer.counters();
        self.stats.packets_written = c.packets;
        self.stats.events_written = c.events;
        self.stats.stream_bytes = c.stream_bytes;
        let fin = self.writer.finish_with_env(env);
        (self.stats, fin)
    }

    /// For each CPU whose loss counters (or REMOTE commit count) moved after its last packet,
    /// write an empty packet carrying the final counters (module docs).
    fn synthesize_final(&mut self) {
        for cpu in 0..self.chan.num_cpus() {
            if self.broken.contains(&cpu) {
                continue;
            }
            let Some(st) = self.chan.cpu_stats(cpu) else {
                continue;
            };
            let last = self.last.get(&cpu).copied();
            let (lf, ls, lb) =
                last.map_or((0, 0, 0), |h| (h.lost_full, h.lost_stalled, h.lost_too_big));
            // REMOTE commits counted after the last packet was closed (a migrated writer
            // committing into a packet already closed) also get the final packet, so the
            // trace's cumulative count is the channel's.
            let lr = last.map_or(0, |h| h.remote_commits);
            if (st.lost_full, st.lost_stalled, st.lost_too_big) == (lf, ls, lb)
                && st.remote_commits <= lr
            {
                continue;
            }
            // Checked: the counters and the last header come from shared memory.
            let total = match st.checked_lost_total() {
                Ok(t) => t,
                Err(e) => {
                    self.read_error(cpu, format!("{e}; no final packet for CPU {cpu}"));
                    continue;
                }
            };
            let seq = match last.map_or(Some(0), |h| h.packet_seq_num.checked_add(1)) {
                Some(s) => s,
                None => {
                    self.read_error(
                        cpu,
                        format!(
                        "CPU {cpu} buffer corrupted: last packet sequence number at its maximum; \
                         no final packet"
                    ),
                    );
                    continue;
                }
            };
            let ts = last.map_or(0, |h| h.timestamp_end);
            let h = faultline_ctf::PacketHeader {
                magic: faultline_ctf::layout::MAGIC,
                uuid: self.chan.uuid(),
                stream_id: 0,
                timestamp_begin: ts,
                timestamp_end: ts,
                content_size: HDR as u64 * 8,
                packet_size: HDR as u64 * 8,
                packet_seq_num: seq,
                events_discarded: total,
                cpu_id: cpu,
                flags: 0,
                lost_full: st.lost_full,
                lost_stalled: st.lost_stalled,
                lost_too_big: st.lost_too_big,
                // Never below the last header's snapshot (shared memory: clamp, not trust).
                remote_commits: st.remote_commits.max(lr),
                reserved: [0; 2],
            };
            let bytes = h.encode();
            match self.writer.write_packet(cpu, &bytes) {
                Ok(_) => self.stats.synthetic_packets += 1,
                Err(e @ CtfError::Io { .. }) => {
                    self.stats.packets_failed += 1;
                    self.write_error(e.to_string());
                }
                Err(e) => {
                    self.stats.packets_rejected += 1;
                    self.damaged(cpu, format!("final loss counters rejected: {e}"), false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_ctf::{ClockDesc, EnvDesc, TraceDesc};
    use faultline_ringbuf::{ChannelConfig, Mode, SyncMode};
    use faultline_schema::{EventDesc, FieldDesc, FieldType};

    const EV: EventDesc = EventDesc {
        provider: "t",
        name: "n",
        fields: &[FieldDesc {
            name: "v",
            ty: FieldType::U64,
        }],
    };

    /// Complete `packets` sub-buffers on `cpu` (the calling thread is moved there).
    fn fill(ch: &Channel, cpu: u32, packets: u64) -> bool {
        if faultline_rseq::pin_to_cpu(cpu).is_err() {
            return false;
        }
        std::thread::yield_now();
        // 4096-byte sub-buffers: 128-byte header, 24-byte records padded to 24.
        let per = (4096 - 128) / 24 + 1;
        for i in 0..packets * per {
            let Ok(mut r) = ch.reserve(0, 8) else {
                return false;
            };
            if r.cpu() != cpu {
                return false;
            }
            r.payload().copy_from_slice(&i.to_le_bytes());
            r.commit();
        }
        true
    }

    /// A CPU with a long backlog (a busy CPU) does not starve another: one poll takes at most
    /// `batch` packets from it and serves the other CPU in the same poll.
    #[test]
    fn busy_cpu_does_not_starve_another() {
        if faultline_rseq::possible_cpus() < 2 {
            eprintln!("skipped: one CPU");
            return;
        }
        let ch = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf: 32,
                mode: Mode::Discard,
                sync: SyncMode::Atomic,
                num_cpus: Some(2),
                ..ChannelConfig::default()
            })
            .unwrap(),
        );
        // The second CPU gets one packet, the first a backlog of 20.
        let ok = std::thread::scope(|s| {
            s.spawn(|| fill(&ch, 1, 1)).join().unwrap()
                && s.spawn(|| fill(&ch, 0, 20)).join().unwrap()
        });
        if !ok {
            eprintln!("skipped: cannot run on CPUs 0 and 1");
            return;
        }
        let dir = std::env::temp_dir().join(format!("faultline-drain-fair-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let desc = TraceDesc {
            uuid: ch.uuid(),
            clock: ClockDesc {
                name: "c".into(),
                freq_hz: 1_000_000_000,
                offset_s: 0,
                offset_ticks: 0,
                description: "c".into(),
            },
            env: EnvDesc {
                hostname: "h".into(),
                procname: "p".into(),
                tracer_major: 0,
                tracer_minor: 1,
                extra: vec![],
            },
            events: vec![(0, EV)],
        };
        let w = TraceWriter::create(&dir, &desc).unwrap();
        let cfg = DrainConfig {
            verbose: false,
            flush_interval: Duration::from_secs(3600),
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch.clone(), w, 1, cfg);
        let n = d.poll();
        assert_eq!(
            d.kept.get(&1),
            Some(&1),
            "CPU 1 was served in the first poll"
        );
        assert_eq!(d.kept.get(&0), Some(&4), "CPU 0 gave at most a batch");
        assert_eq!(n, 5);
        // The rest comes in later polls, 4 at a time.
        let mut polls = 1;
        while d.poll() > 0 {
            polls += 1;
        }
        assert_eq!(d.kept.get(&0), Some(&20));
        assert_eq!(polls, 5);
        let (st, fin) = d.finish();
        fin.unwrap();
        assert!(st.corrupt.is_empty() && st.packets_rejected == 0, "{st:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
