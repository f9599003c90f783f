//! The consumer loop: ring-buffer sub-buffers in, CTF packets out.
//!
//! # Protocol
//! [`Drain`] is the single consumer of a channel (it owns `consumed` through
//! [`Consumer::take_in_place`] / [`Consumer::next_packet`]); it runs in a thread of the traced
//! program (embedded session) or as the `faultline record` process. Each [`Drain::poll`]:
//! 1. takes complete sub-buffers of the active buffers **round-robin, at most
//!    [`DrainConfig::batch`] per buffer per call** (a buffer is named by its index: a CPU, or
//!    whatever the channel indexes its buffers by). A buffer whose writers fill sub-buffers as
//!    fast as they are taken therefore cannot keep the others (or the periodic flush, checked
//!    at the start of every poll) waiting: one poll handles at most `batch` × buffers packets;
//! 2. **the common path (discard mode)**: the complete sub-buffers of a buffer (up to the
//!    batch) are taken in place — positions and commit counters checked, each 128-byte
//!    packet header copied and checked, nothing else read — and
//!    [`TraceWriter::write_packets_raw`] checks the header copies against the trace and the
//!    buffer's previous packet and writes the packets **straight from the mapping**: with
//!    direct I/O ([`DrainConfig::direct_io`], where the file system takes it) all of them in
//!    one `pwritev` that the device reads from the mapping (only each packet's first 4 KiB
//!    block is copied, to put the checked header in front; packets are padded to 4 KiB on
//!    disk), otherwise one buffered `pwritev` each (header copy, content, zero padding to 8
//!    bytes). The records are neither copied out nor walked. Then the sub-buffers are released
//!    in order, untouched (`faultline_ringbuf::consumer`, "Nothing is zeroed"). In overwrite mode the sub-buffer is copied out
//!    instead (the copy and the re-check after it are what detect a sub-buffer overwritten
//!    while it was read) and written from the copy;
//! 3. **the verification pass**, only with [`DrainConfig::verify`] (on for a bare drain and
//!    for `faultline record`, whose traced program is another process that may damage its
//!    records; off in a [`crate::Session`]): at the end ([`Drain::finish`]) the trace writer
//!    ([`TraceWriter::verify`]) re-reads every packet written this way and not verified yet
//!    (the owner may verify earlier, between polls: [`Drain::verify_written`]) from the page cache,
//!    checks its records (chain, declared ids, payloads that decode exactly, timestamps),
//!    counts them per `(buffer, id)` and removes packets that fail from the trace (damage,
//!    below); a stream is rewritten only when it holds such a packet. This is the one walk of
//!    every record, and it runs on the consumer thread: tens of ns per event. Without it
//!    nothing reads the records: the owner counts the events it committed and
//!    [`Drain::finish_counted`] reports them as written less the events of packets that could
//!    not be written (those packets alone are walked, to count them), and a packet whose
//!    records the traced program damaged stays in the trace, where readers report it
//!    (`faultline stats` walks, checks and counts a trace's records after the fact).
//!    Abandoned reservations (prefault-restart retries, resized records,
//!    records of dead writers after recovery) are padding records of the wire format
//!    (`faultline_wire`), which stay in their packet and which every reader skips; nothing is
//!    compacted. A pending (uncommitted) record in a complete packet is damage.
//!
//! # Cost
//! The consumer's CPU time per event is what handing the packets to the kernel costs: with
//! direct I/O, the submission and completion of one write per batch (a fixed cost of tens to
//! a hundred µs per write in a VM, more than the per-byte cost up to a few MiB: hence
//! "Gathering", below), with
//! buffered writes the kernel's copy into the page cache (nothing is zeroed on release:
//! `faultline_ringbuf::consumer`, "Nothing is zeroed"); plus, with [`DrainConfig::verify`], the verification pass. [`DrainStats::consumer_cpu_ns`]
//! measures all of it (the thread's `getrusage(RUSAGE_THREAD)` from its first poll to the end
//! of the final drain, verification included: it runs on the same thread),
//! [`DrainStats::verify_cpu_ns`] the verification's share. `copy_file_range` from the
//! memfd would avoid the mapping but fails across file systems (EXDEV from tmpfs to the
//! trace's); `splice` through a pipe copies into the page cache all the same, with two system
//! calls more.
//!
//! # Gathering
//! A direct write costs about the same CPU whatever its size, so the drain writes a buffer's
//! sub-buffers several at a time: in discard mode, a buffer's complete sub-buffers are left in
//! the ring (checked, not released) until [`DrainConfig::gather`] of them are complete (at
//! most `batch`, at most (sub-buffers − 1) / 2: while they are written, the writers have at
//! least as many free sub-buffers as the write holds, so a write that takes as long per byte
//! as the writers take to fill does not make them lose events), and
//! [`Drain::wait`] sleeps until some buffer has that many. A buffer whose first complete
//! sub-buffer has waited `flush_interval` is written as it is, as is everything after a
//! periodic flush (until a poll finds nothing: only then does [`TraceWriter::flushed`] say
//! that everything older is written) and in the final drain. So a complete sub-buffer reaches
//! the disk within about one `flush_interval`, as a partial one does through the periodic
//! flush.
//!
//! # When the device lags
//! A direct write waits for the device. When the device lags (a slow moment of a virtual
//! disk, other I/O) the writers keep filling sub-buffers while the consumer waits, and once
//! every sub-buffer is complete they lose events. So before it writes a buffer's packets the
//! drain counts the buffer's complete sub-buffers (those it took and the complete ones after
//! them, [`Consumer::ready_run`]); from [`DrainConfig::cache_mark`] of them (by default half
//! the sub-buffers, at least one more than a gathered write holds) that write goes through
//! the page cache ([`TraceWriter::set_through_cache`]: the same bytes and layout), which
//! returns once the kernel has copied them, and the kernel writes them back in the
//! background, many writes in flight. The next write of a buffer back under the mark goes
//! direct again. A buffered write costs the consumer a copy (about as much CPU per byte as
//! the rest of its work), so it is only taken while the buffer is behind. **Off by default**
//! (`cache_mark` `u32::MAX`): on the virtual machine this was measured on, writes through the
//! page cache were the slower ones (252 MB/s for 4 MiB writes against 558-904 MB/s by direct
//! I/O, single writer; 20-116 ms for one cached write of 3-4 sub-buffers, against at most
//! 12 ms direct) and the fallback lost more events than direct I/O alone: turn it on where
//! the page cache absorbs bursts faster than the device.
//! [`DrainStats::cache_packets`] counts the packets written that way,
//! [`DrainStats::write_ns_max`] the longest write and [`DrainStats::backlog_max`] the most
//! complete sub-buffers found waiting. A stall that starts during a direct write still
//! holds its sub-buffers until the device answers; the sub-buffers left free cover it.
//!
//! # Where the consumer runs
//! The consumer thread takes CPU time from whatever runs where it runs. Left to the
//! scheduler it tends to stay on one CPU, so with busy writers on every CPU it slows the
//! writer of that CPU alone, by the consumer's cost of *all* CPUs' events; a program that
//! waits for its slowest thread loses about twice the consumer's share. With
//! [`DrainConfig::follow_cpus`] (a [`crate::Session`] sets it) the drain moves its thread to a
//! per-CPU buffer's CPU (`sched_setaffinity`) before it writes and releases that buffer's
//! sub-buffers, so each CPU pays for its own events, and the sub-buffer's zeroing leaves its
//! cache lines in the cache of the CPU whose writers reuse them. It does so only while every
//! CPU the thread may run on has written a packet within the last `flush_interval`. While
//! some have not, it keeps the thread on those CPUs without writers instead (asleep too), so
//! that the writers lose nothing to it (a single traced thread keeps its CPU, and the
//! consumer runs on another one even when the scheduler would have put it on the writer's).
//! Pinned to a busy buffer's CPU, it gives the thread its original allowed CPUs back before
//! sleeping ([`Drain::wait`]), so an idle consumer is never kept on a busy CPU; at the end it
//! gives them back in any case. A move costs a system call and a migration per
//! write (a write carries up to [`DrainConfig::gather`] sub-buffers) while every CPU is busy;
//! none when the thread is already there. Buffers indexed by concurrency id, or a CPU outside the thread's allowed
//! CPUs, are written from wherever the thread runs. [`DrainStats::cpu_moves`] counts the moves.
//!
//! # Event classes that appear while draining
//! With a [`ClassSource`] ([`Drain::set_class_source`]: tracepoints registered at run time,
//! in this process or, under `faultline record`, announced over the schema pipe), the drain
//! asks the source for new classes at the start of every poll and **after taking each packet,
//! before writing it**, and declares them to the trace writer (which rewrites the metadata).
//! A class is published before any record of it is committed, and the packet was taken after
//! that commit, so its classes are known by then; a record of an id still unknown at the end
//! makes the verification pass reject the packet (counted), it never stays in the trace under
//! a wrong description.
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
//! A packet that cannot be written (ENOSPC, EACCES, EIO) is counted (`packets_failed`, and
//! `events_failed` by walking that packet's record chain: the only walk on the draining side,
//! on this rare path), its error is kept (first and last message, plus a count) and reported once
//! on stderr when `verbose`, and draining goes on: the sub-buffer is released anyway, so writers
//! keep going (discard mode keeps discarding only what it must).
//!
//! # Damaged shared memory: what is validated where
//! The traced program can write anything into the shared buffers, at any time — also while
//! the kernel copies a packet out of them. Three checks catch damage:
//! - the consumer's, on the shared words it acts on (positions, commit counters) and on its
//!   copy of the packet header (magic, sequence number, buffer, content size inside the
//!   sub-buffer): a failure means the buffer is no longer read (its writers lose events as
//!   "full" in discard mode);
//! - the trace writer's, on the same header copy when the packet is written (trace uuid,
//!   sizes, continuity with the buffer's previous packet, loss counters): the packet is
//!   dropped, counted in `packets_rejected`, and later packets of that buffer are still
//!   checked and kept when valid. The header on disk is always that checked copy, never the
//!   shared bytes, so the stream's packet boundaries cannot be forged;
//! - with [`DrainConfig::verify`], the verification pass, on the records as they are **on
//!   disk** (so a change made after the header check is caught as well): a packet whose
//!   records do not pass is removed from its stream, counted in `packets_rejected` / `events_rejected`, and reported
//!   like the writer's rejections. With a relay sink ([`TraceWriter::set_sink`]) such a
//!   packet was already sent when it was written: `packets_rejected_after_send` counts those.
//!   A relay-only writer (no files) checks the records before sending instead.
//!
//! So a trace the drain finished with the verification pass holds only packets whose records
//! passed every check; without it, or until then (a `faultline record` killed before it
//! finishes, a reader following the trace live)
//! a stream may hold a damaged packet, which the readers detect (they bounds-check every
//! record and report, never crash). Sums of values read from shared memory (loss counters,
//! sequence numbers) are checked too: an overflow counts as damage and nothing is written from
//! it (never a wrapped total). Either way the packets already written stay, and the first
//! problem of each buffer is reported **once**, on one stderr line naming the buffer (when
//! `verbose`) and in [`DrainStats::corrupt`]; later problems of the same buffer are only
//! counted.

use crate::schema_pipe::ClassSource;
use faultline_ctf::{CtfError, EnvValue, RawPacket, TraceWriter, WriterCounters};
use faultline_ringbuf::{
    Channel, Consumer, FlushError, InPlacePacket, Mode, PacketInfo, ReadError,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HDR: usize = faultline_ringbuf::wire::PACKET_HEADER_SIZE;

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
    /// Complete sub-buffers of a buffer written together (module docs, "Gathering"): a
    /// buffer's complete sub-buffers wait until this many are complete (capped at `batch` and
    /// at (sub-buffers − 1) / 2), at most `flush_interval`. 1 writes each sub-buffer as soon
    /// as it is complete. Default 4 (3 with the default 8 sub-buffers).
    pub gather: u32,
    /// Write streams by direct I/O where the file system takes it (module docs, "Protocol"
    /// and "Cost"; `TraceWriter::set_direct_io`). On by default.
    pub direct_io: bool,
    /// Run the verification pass (module docs, "Verification"): every record of every packet
    /// re-read, checked and counted per `(buffer, id)`, failing packets removed. On by default
    /// for a bare drain (its only way to count events); a [`crate::Session`] turns it off and
    /// counts events at its recorder instead ([`Drain::finish_counted`]).
    pub verify: bool,
    /// Write each per-CPU buffer's packets from that CPU (module docs, "Where the consumer
    /// runs"): before writing and releasing a buffer's sub-buffers the consumer thread moves
    /// itself to the buffer's CPU (when its allowed CPUs include it) and it gives its
    /// original allowed CPUs back at the end of the pass. Only for buffers indexed by CPU;
    /// it changes the calling thread's affinity, so it is off by default and a
    /// [`crate::Session`] (whose drain has a thread of its own) turns it on.
    pub follow_cpus: bool,
    /// Complete sub-buffers of one buffer from which its packets are written through the page
    /// cache instead of by direct I/O (module docs, "When the device lags"): 0 picks half the
    /// buffer's sub-buffers (at least one more than [`DrainConfig::gather`]); `u32::MAX`
    /// (the default) never does.
    pub cache_mark: u32,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            flush_interval: Duration::from_millis(200),
            wait_timeout: Duration::from_millis(100),
            verbose: true,
            batch: 4,
            gather: 4,
            direct_io: true,
            verify: true,
            follow_cpus: false,
            cache_mark: u32::MAX,
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
    /// Bytes of packet content (header, records, alignment; not the padding after it) of the
    /// packets taken.
    pub content_bytes: u64,
    /// Times the consumer thread moved to a buffer's CPU ([`DrainConfig::follow_cpus`]).
    pub cpu_moves: u64,
    /// Packets written through the page cache because their buffer had
    /// [`DrainConfig::cache_mark`] complete sub-buffers waiting (module docs, "When the device
    /// lags").
    pub cache_packets: u64,
    /// Writes of packets taken in place (one per batch of a buffer), and the longest one, in
    /// nanoseconds of wall time (a device stall shows here).
    pub writes: u64,
    /// The longest of those writes, ns.
    pub write_ns_max: u64,
    /// Most complete sub-buffers one buffer had waiting when the consumer wrote it (the
    /// writers lose events once every sub-buffer is complete).
    pub backlog_max: u64,
    /// Padding records (abandoned reservations, kept in the trace; readers skip them) in the
    /// verified packets.
    pub padding_records: u64,
    /// Packets (and their events) not written because of an I/O error.
    pub packets_failed: u64,
    /// Events in those packets.
    pub events_failed: u64,
    /// Packets (and their events) the trace writer rejected as invalid.
    pub packets_rejected: u64,
    /// Events in those packets.
    pub events_rejected: u64,
    /// Of `packets_rejected`: packets the verification pass removed from the local trace after
    /// they had gone to the writer's sink (a relay) when written (module docs, "Damaged shared memory").
    pub packets_rejected_after_send: u64,
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
    /// Events written per CPU and event id (counted by the verification pass; empty without
    /// it, [`DrainStats::verified`]).
    pub events: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Event classes declared while draining (id -> `provider:name`).
    pub late_events: BTreeMap<u32, String>,
    /// Classes that could not be declared (bad names, clashes), one message each.
    pub class_errors: Vec<String>,
    /// CPU buffers found damaged (module docs), by CPU.
    pub corrupt: BTreeMap<u32, CorruptBuffer>,
    /// CPU time (user + system, `getrusage(RUSAGE_THREAD)`) of the consumer thread from its
    /// first poll to the end of its final drain (verification pass included, when it runs:
    /// it runs on this thread), in nanoseconds. [`DrainStats::consumer_ns_per_event`] divides
    /// it by the events written.
    pub consumer_cpu_ns: u64,
    /// Of `consumer_cpu_ns`: the verification pass (module docs; at the end, plus whatever
    /// [`Drain::verify_written`] did earlier), in nanoseconds; 0 without it.
    pub verify_cpu_ns: u64,
    /// Whether the verification pass ran ([`DrainConfig::verify`]). Without it `events` and
    /// `padding_records` are empty (nothing walked the records) and `events_written` is the
    /// owner's count ([`Drain::finish_counted`]).
    pub verified: bool,
}

impl DrainStats {
    /// Consumer CPU time per event written ([`DrainStats::consumer_cpu_ns`] /
    /// `events_written`), `None` when nothing was written.
    pub fn consumer_ns_per_event(&self) -> Option<f64> {
        (self.events_written > 0).then(|| self.consumer_cpu_ns as f64 / self.events_written as f64)
    }
}

/// Restrict the calling thread to `cpus` (`sched_setaffinity`); whether that worked.
fn set_affinity(cpus: &[u32]) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET with indices checked against CPU_SETSIZE;
    // sched_setaffinity(0) applies to the calling thread (the drain's: it is only polled from
    // its own thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if (c as usize) < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c as usize, &mut set);
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPU time (user + system) of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a struct rusage into a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded and initialised it (zeroed before anyway).
    let ru = unsafe { ru.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// A CPU buffer whose shared memory was found damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CorruptBuffer {
    /// The first problem found.
    pub first_error: String,
    /// The consumer gave up on the buffer (it is no longer read), at the first problem or
    /// later.
    pub abandoned: bool,
    /// The consumer gave up on the buffer at the first problem: what its one line says (a
    /// buffer rejected first and abandoned later keeps the line it was reported with).
    pub abandoned_first: bool,
    /// Packets of this buffer the trace writer rejected.
    pub packets_rejected: u64,
    /// Packets of this buffer written to the trace (all of them valid).
    pub packets_kept: u64,
}

impl CorruptBuffer {
    /// The one line that reports it: the same when the buffer is abandoned after its first
    /// problem (the line was printed then; [`CorruptBuffer::abandoned`] has the final state).
    pub fn line(&self, cpu: u32) -> String {
        format!(
            "CPU buffer {cpu}: shared memory damaged by the traced program: {}; {}",
            self.first_error,
            if self.abandoned_first {
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
    stats: DrainStats,
    /// The consumer thread and its CPU time when it first polled (`consumer_cpu_ns`).
    cpu_base: Option<(std::thread::ThreadId, u64)>,
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
    /// Buffers whose complete sub-buffers are waiting for more (module docs, "Gathering"),
    /// and since when.
    held_since: BTreeMap<u32, Instant>,
    /// Write whatever is complete, gathering or not: from a periodic flush until a poll finds
    /// nothing, and in the final drain.
    force: bool,
    /// [`DrainConfig::follow_cpus`]: the CPUs the consumer thread was allowed to run on when
    /// it first moved (read then), and the CPU it is pinned to now, if any.
    home: Option<Vec<u32>>,
    pinned: std::cell::RefCell<Vec<u32>>,
    /// `pinned` holds the CPUs without writers (kept while the thread sleeps), not a busy
    /// buffer's CPU (given back before it sleeps).
    pinned_idle: std::cell::Cell<bool>,
    /// When packets of each buffer were last written ([`Drain::follow`]: are writers busy on
    /// every CPU?).
    last_taken: BTreeMap<u32, Instant>,
}

impl Drain {
    /// A drain of `chan` into `writer` (whose declared events are the ids it accepts).
    pub fn new(chan: Arc<Channel>, mut writer: TraceWriter, cfg: DrainConfig) -> Drain {
        writer.set_direct_io(cfg.direct_io);
        writer.set_verify_later(cfg.verify);
        Drain {
            chan,
            writer,
            cfg,
            packet: Vec::new(),
            stats: DrainStats::default(),
            cpu_base: None,
            last_flush: Instant::now(),
            broken: BTreeSet::new(),
            last: BTreeMap::new(),
            kept: BTreeMap::new(),
            next: 0,
            classes: None,
            flush_mark: None,
            held_since: BTreeMap::new(),
            force: false,
            home: None,
            pinned: std::cell::RefCell::new(Vec::new()),
            pinned_idle: std::cell::Cell::new(false),
            last_taken: BTreeMap::new(),
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
                self.stats.late_events.insert(id, d.full_name());
            }
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

    /// Stats so far (event counts are filled in by [`Drain::finish`], which verifies and
    /// counts the records: the hot path does not look at them, module docs).
    pub fn stats(&self) -> &DrainStats {
        &self.stats
    }

    /// Flush quiet buffers when the interval has passed, then take and write complete
    /// sub-buffers, at most [`DrainConfig::batch`] per CPU, round-robin (module docs). Returns
    /// the number of packets taken: call it again while that is not 0.
    pub fn poll(&mut self) -> u64 {
        if self.cpu_base.is_none() {
            self.cpu_base = Some((std::thread::current().id(), thread_cpu_ns()));
        }
        self.refresh_classes();
        if self.last_flush.elapsed() >= self.cfg.flush_interval {
            let now = faultline_ringbuf::clock::now(self.chan.clock().kind);
            self.flush(false);
            self.flush_mark = Some(now);
            // What the flush completed goes out now, gathered or not.
            self.force = true;
        }
        let n = self.take_round(self.cfg.batch.max(1));
        if n == 0 {
            self.force = false;
            if self.held_since.is_empty() {
                if let Some(t) = self.flush_mark.take() {
                    self.writer.flushed(t);
                }
            }
        }
        n
    }

    /// Complete sub-buffers a buffer gathers before they are written (module docs,
    /// "Gathering").
    fn gather(&self) -> u32 {
        // Fewer than half the sub-buffers: while they are written, the writers have at least
        // as many free ones as the write takes.
        let cap = (self.chan.num_subbuf().saturating_sub(1) / 2).min(u32::MAX as u64) as u32;
        self.cfg.gather.min(self.cfg.batch).min(cap).max(1)
    }

    /// Complete sub-buffers from which a buffer is written through the page cache
    /// ([`DrainConfig::cache_mark`]; module docs, "When the device lags").
    fn cache_mark(&self) -> u32 {
        match self.cfg.cache_mark {
            0 => {
                let half = (self.chan.num_subbuf() / 2).min(u32::MAX as u64) as u32;
                half.max(self.gather() + 1)
            }
            m => m,
        }
    }

    /// Run the verification pass (point 3 of the module docs) now over the packets written
    /// since the last one, instead of leaving them all to [`Drain::finish`]: `faultline record`
    /// calls it when a poll found nothing to take, so that the end of a run (which the user
    /// waits for) only verifies the last packets. Counts and removals are the same. Nothing
    /// without [`DrainConfig::verify`].
    pub fn verify_written(&mut self) {
        if self.cfg.verify {
            self.verify();
        }
    }

    /// Sleep until a buffer has enough complete sub-buffers to write (module docs,
    /// "Gathering"), a gathering buffer's time is up, or the timeout passes.
    pub fn wait(&self) {
        // Asleep, the thread may be woken wherever the scheduler likes, unless it keeps to
        // the CPUs without writers ("Where the consumer runs").
        if !self.pinned_idle.get() {
            self.go_home();
        }
        let mut t = self.cfg.wait_timeout.min(self.cfg.flush_interval);
        if let Some(first) = self.held_since.values().min() {
            t = t.min(self.cfg.flush_interval.saturating_sub(first.elapsed()));
        }
        let gather = self.gather();
        let consumer = Consumer::new(&self.chan);
        consumer.wait_for(t, |cpu| {
            !self.broken.contains(&cpu) && consumer.ready_run(cpu, gather) >= gather
        });
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
        let in_place = self.chan.mode() == Mode::Discard;
        for &cpu in cpus[start..].iter().chain(&cpus[..start]) {
            if in_place {
                n += self.take_in_place(&consumer, cpu, batch);
                continue;
            }
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
                        self.abandon(cpu, e);
                        break;
                    }
                }
            }
        }
        n
    }

    /// The consumer found `cpu`'s buffer damaged: stop reading it (module docs).
    fn abandon(&mut self, cpu: u32, e: ReadError) {
        let what = match e {
            ReadError::Corrupt { what, .. } => what,
            e => e.to_string(),
        };
        self.stats
            .read_errors
            .push(format!("{e}; no longer reading CPU {cpu}", e = what));
        self.broken.insert(cpu);
        self.damaged(cpu, what, true);
    }

    /// The common path (module docs): up to `batch` consecutive complete sub-buffers of `cpu`
    /// taken in place and written from the mapping together (one `pwritev` with direct I/O),
    /// then released in order. Returns the number taken.
    fn take_in_place(&mut self, consumer: &Consumer<'_>, cpu: u32, batch: u32) -> u64 {
        let mut taken: Vec<InPlacePacket> = Vec::with_capacity(batch as usize);
        let mut error = None;
        while taken.len() < batch as usize {
            let r = match taken.last() {
                None => consumer.take_in_place(cpu),
                Some(prev) => consumer.take_in_place_after(prev),
            };
            match r {
                Ok(Some(p)) => taken.push(p),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if !taken.is_empty()
            && error.is_none()
            && (taken.len() as u32) < self.gather()
            && !self.force
        {
            let since = *self.held_since.entry(cpu).or_insert_with(Instant::now);
            if since.elapsed() < self.cfg.flush_interval {
                // Gathering: not released, so they stay complete in the ring and are taken
                // again (the same checks) by a later poll.
                return 0;
            }
        }
        self.held_since.remove(&cpu);
        let n = taken.len() as u64;
        if !taken.is_empty() {
            // Classes of the records in these packets were published before the records were
            // committed, so before these takes (module docs).
            self.refresh_classes();
            if self.cfg.follow_cpus {
                self.last_taken.insert(cpu, Instant::now());
            }
            self.follow(cpu);
            // How far behind its writers this buffer is ("When the device lags"): the
            // sub-buffers taken plus the complete ones after them.
            let max = self.chan.num_subbuf().min(u32::MAX as u64) as u32;
            let backlog = consumer.ready_run(cpu, max).max(taken.len() as u32);
            self.stats.backlog_max = self.stats.backlog_max.max(backlog as u64);
            let cached = backlog >= self.cache_mark();
            if cached {
                self.stats.cache_packets += taken.len() as u64;
            }
            self.writer.set_through_cache(cached);
            let t0 = Instant::now();
            self.write_in_place(consumer, cpu, taken);
            self.stats.writes += 1;
            self.stats.write_ns_max = self
                .stats
                .write_ns_max
                .max(t0.elapsed().as_nanos().min(u64::MAX as u128) as u64);
        }
        if let Some(e) = error {
            self.abandon(cpu, e);
        }
        n
    }

    /// [`DrainConfig::follow_cpus`] (module docs, "Where the consumer runs"), before the
    /// consumer writes and releases sub-buffers of `cpu`'s buffer: while every CPU the thread
    /// may run on wrote a packet within `flush_interval`, move it to `cpu` (nothing when it
    /// already runs there); otherwise keep it on the CPUs that wrote none. Nothing when its
    /// allowed CPUs do not include `cpu` or hold only one, or when buffers are not per CPU.
    fn follow(&mut self, cpu: u32) {
        if !self.cfg.follow_cpus || self.chan.buffer_index() != faultline_ringbuf::BufferIndex::Cpu
        {
            return;
        }
        let home = self.home.get_or_insert_with(faultline_rseq::allowed_cpus);
        if home.len() < 2 || !home.contains(&cpu) {
            return;
        }
        let window = self.cfg.flush_interval;
        let idle: Vec<u32> = home
            .iter()
            .copied()
            .filter(|c| self.last_taken.get(c).is_none_or(|t| t.elapsed() >= window))
            .collect();
        let (target, is_idle) = if idle.is_empty() {
            (vec![cpu], false)
        } else {
            (idle, true)
        };
        if *self.pinned.borrow() == target {
            return;
        }
        if !is_idle && self.pinned.borrow().is_empty() && faultline_rseq::current_cpu() == cpu {
            // Already there: no system call (the scheduler may still move it; harmless).
            return;
        }
        if set_affinity(&target) {
            *self.pinned.borrow_mut() = target;
            self.pinned_idle.set(is_idle);
            self.stats.cpu_moves += 1;
        }
    }

    /// Give the consumer thread its original allowed CPUs back after [`Drain::follow`].
    fn go_home(&self) {
        if self.pinned.borrow().is_empty() {
            return;
        }
        self.pinned.borrow_mut().clear();
        self.pinned_idle.set(false);
        if let Some(home) = self.home.as_ref() {
            // A failure leaves the thread pinned, which only costs scheduling freedom.
            set_affinity(home);
        }
    }

    /// Write packets of `cpu` taken in place (consecutive, in order), account for each, and
    /// release them in order.
    fn write_in_place(&mut self, consumer: &Consumer<'_>, cpu: u32, taken: Vec<InPlacePacket>) {
        let available = self.chan.subbuf_size() as usize;
        let raw: Vec<RawPacket> = taken
            .iter()
            .map(|p| RawPacket {
                header: p.header_bytes,
                data: p.as_ptr(),
                available,
            })
            .collect();
        // SAFETY: each packet lies in the channel's mapping, `available` (one sub-buffer)
        // bytes from its start, and stays mapped and taken (no writer reuses it) until the
        // releases below; the writer only hands them to the kernel (and copies their first
        // block for direct I/O).
        let results = unsafe { self.writer.write_packets_raw(cpu, &raw) };
        for (p, r) in taken.into_iter().zip(results) {
            self.stats.packets_taken += 1;
            self.stats.content_bytes += p.info.content_len as u64;
            self.last.insert(cpu, p.info.header);
            let records = if r.is_err() {
                // Rare: count what the packet held (a copy, then a bounded walk).
                self.count_records(&p)
            } else {
                0
            };
            self.written(cpu, &p.info, r, records);
            consumer.release(p);
        }
    }
    /// Records of a packet taken in place (only for packets that could not be written).
    fn count_records(&mut self, p: &InPlacePacket) -> u64 {
        let len = p.info.content_len;
        self.packet.clear();
        self.packet.resize(len, 0);
        // SAFETY: content_len < sub-buffer size bytes from the packet start are inside the
        // mapping, still taken by us (not released yet).
        unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.packet.as_mut_ptr(), len) };
        faultline_ringbuf::records(&self.packet, len)
            .filter(|r| r.is_ok())
            .count() as u64
    }

    /// Account for one packet handed to the trace writer.
    fn written(&mut self, cpu: u32, info: &PacketInfo, r: Result<u64, CtfError>, records: u64) {
        match r {
            Ok(_) => {
                let c = self.writer.counters();
                self.stats.packets_written = c.packets;
                self.stats.stream_bytes = c.stream_bytes;
                *self.kept.entry(cpu).or_insert(0) += 1;
                if let Some(c) = self.stats.corrupt.get_mut(&cpu) {
                    c.packets_kept += 1;
                }
            }
            Err(e @ CtfError::Io { .. }) => {
                self.stats.packets_failed += 1;
                self.stats.events_failed += records;
                self.write_error(e.to_string());
            }
            Err(e) => {
                self.stats.packets_rejected += 1;
                self.stats.events_rejected += records;
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
                abandoned_first: abandoned,
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

    /// Overwrite mode: the packet was copied out (the copy is what makes an overwritten
    /// sub-buffer detectable, `faultline_ringbuf::consumer`); it goes to its stream from the
    /// copy.
    fn handle(&mut self, packet: &[u8], info: &PacketInfo) {
        let cpu = info.cpu;
        self.stats.packets_taken += 1;
        self.stats.content_bytes += info.content_len as u64;
        self.last.insert(cpu, info.header);
        let mut hdr = [0u8; faultline_ctf::layout::PACKET_HEADER_SIZE];
        hdr.copy_from_slice(&packet[..HDR]);
        // SAFETY: `packet` is our own buffer of `packet.len()` bytes, alive for the call.
        let r = unsafe {
            self.writer
                .write_packet_raw(cpu, &hdr, packet.as_ptr(), packet.len())
        };
        let records = if r.is_err() {
            faultline_ringbuf::records(packet, info.content_len)
                .filter(|r| r.is_ok())
                .count() as u64
        } else {
            0
        };
        self.written(cpu, info, r, records);
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

    /// The end of a recording whose writers are all gone (the owner proved that nobody else
    /// holds the channel): the shared buffers cannot change any more, so the packets still to
    /// be written go through the page cache ([`TraceWriter::stop_direct_io`]) and neither
    /// their write nor the verification's read-back waits for the device. Without
    /// [`TraceWriter::set_sync`] the trace is then complete in the page cache when the drain
    /// finishes (written back by the kernel later); with it, [`Drain::finish`] syncs it.
    pub fn writers_gone(&mut self) {
        self.writer.stop_direct_io();
    }

    /// Replace the trace's clock (a frequency measured over the whole recording; see
    /// [`TraceWriter::set_clock`]).
    pub fn set_clock(&mut self, clock: faultline_ctf::ClockDesc) -> Result<(), CtfError> {
        self.writer.set_clock(clock)
    }

    /// Final flush and drain, synthetic packets for late losses, then finish the trace
    /// (fsync). Returns the stats and the writer's final counters (or its error).
    pub fn finish(self) -> (DrainStats, Result<WriterCounters, CtfError>) {
        self.finish_with_env(Vec::new())
    }

    /// [`Drain::finish`], adding `env` entries to the trace's metadata (values known only at
    /// the end, such as the recorder counters; see [`TraceWriter::finish_with_env`]).
    pub fn finish_with_env(
        self,
        env: Vec<(String, EnvValue)>,
    ) -> (DrainStats, Result<WriterCounters, CtfError>) {
        self.finish_counted(env, None)
    }

    /// [`Drain::finish_with_env`] for an owner that counted the events committed into the
    /// channel itself (a [`crate::Session`]'s recorder): without the verification pass
    /// ([`DrainConfig::verify`] off) `events_written` is `committed` less the events of the
    /// packets that could not be written (counted by walking those packets only). With the
    /// verification pass, or without `committed`, the records are counted as they are
    /// verified (`committed` is not used), and without either `events_written` stays 0.
    pub fn finish_counted(
        mut self,
        env: Vec<(String, EnvValue)>,
        committed: Option<u64>,
    ) -> (DrainStats, Result<WriterCounters, CtfError>) {
        self.flush(true);
        self.force = true;
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
        self.go_home();
        if self.cfg.verify {
            self.verify();
        }
        // After the verification pass: it ran on this thread, so it is consumer time too.
        self.consumer_cpu();
        let c = self.writer.counters();
        self.stats.packets_written = c.packets;
        self.stats.stream_bytes = c.stream_bytes;
        self.stats.verified = self.cfg.verify;
        self.stats.events_written = match committed {
            Some(n) if !self.cfg.verify => n
                .saturating_sub(self.stats.events_failed)
                .saturating_sub(self.stats.events_rejected),
            _ => c.events,
        };
        let fin = self.writer.finish_with_env(env);
        (self.stats, fin)
    }

    /// The consumer's CPU time so far ([`DrainStats::consumer_cpu_ns`]), verification
    /// included (it runs on this thread).
    fn consumer_cpu(&mut self) {
        let now = thread_cpu_ns();
        self.stats.consumer_cpu_ns = match self.cpu_base {
            Some((t, base)) if t == std::thread::current().id() => now.saturating_sub(base),
            _ => now,
        };
    }

    /// The verification pass (module docs): check and count the records of every packet
    /// written, drop the packets that fail, remove discarded and pending records.
    fn verify(&mut self) {
        // This thread's CPU clock, not `thread_cpu_ns`: getrusage's value for the running
        // thread moves only at ticks and switches, too coarse for the short passes of
        // `verify_written` (which add up).
        let cpu_now = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid out-pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let t0 = cpu_now();
        match self.writer.verify() {
            Ok(v) => {
                for (cpu, row) in v.events {
                    let m = self.stats.events.entry(cpu).or_default();
                    for (id, n) in row {
                        *m.entry(id).or_insert(0) += n;
                    }
                }
                self.stats.padding_records += v.padding;
                self.stats.packets_rejected_after_send += v.rejected_sent;
                for (cpu, seq, e, records) in v.rejected {
                    self.stats.packets_rejected += 1;
                    self.stats.events_rejected += records;
                    if let Some(k) = self.kept.get_mut(&cpu) {
                        *k = k.saturating_sub(1);
                    }
                    let what = match e {
                        CtfError::Packet { offset, msg, .. } => {
                            format!("packet {seq} rejected: {msg} (byte {offset})")
                        }
                        e => format!("packet {seq} rejected: {e}"),
                    };
                    self.damaged(cpu, what, false);
                    if let Some(c) = self.stats.corrupt.get_mut(&cpu) {
                        c.packets_kept = self.kept.get(&cpu).copied().unwrap_or(0);
                    }
                }
            }
            Err(e) => self.write_error(format!("verifying the trace: {e}")),
        }
        self.stats.verify_cpu_ns = self
            .stats
            .verify_cpu_ns
            .saturating_add(cpu_now().saturating_sub(t0));
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
    use faultline_ringbuf::{ChannelConfig, SyncMode};
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
        // 4096-byte sub-buffers: 128-byte header, 23-byte records (atomic mode: 15-byte
        // extended headers, packed).
        let per = (4096 - 128) / 23 + 1;
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

    /// The channel `fill` writes into: 4096-byte sub-buffers, discard mode, atomic commits
    /// (so the record size does not depend on rseq), `num_cpus` buffers (`None`: every CPU).
    fn discard_channel(num_subbuf: u64, num_cpus: Option<u32>) -> Arc<Channel> {
        Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf,
                mode: Mode::Discard,
                sync: SyncMode::Atomic,
                num_cpus,
                ..ChannelConfig::default()
            })
            .unwrap(),
        )
    }

    fn trace_desc(ch: &Channel) -> TraceDesc {
        TraceDesc {
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
        }
    }

    /// A buffer whose packet was rejected and which is abandoned later keeps the line it was
    /// reported with on stderr, so `record`'s report lists the same line; the final state is in
    /// `abandoned`.
    #[test]
    fn a_buffer_abandoned_after_a_rejection_keeps_its_reported_line() {
        let ch = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf: 4,
                num_cpus: Some(1),
                ..ChannelConfig::default()
            })
            .unwrap(),
        );
        let tmp = faultline_testkit::TmpDir::new("drain-reported");
        let dir = tmp.join("trace");
        let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
        let cfg = DrainConfig {
            verbose: false,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch, w, cfg);
        d.damaged(0, "packet 3 rejected: bad sequence".into(), false);
        let reported = d.stats.corrupt[&0].line(0);
        d.damaged(0, "commit counter out of range".into(), true);
        let c = &d.stats.corrupt[&0];
        assert_eq!(c.line(0), reported);
        assert!(c.abandoned && !c.abandoned_first);
        assert_eq!(c.packets_rejected, 1);
        drop(d);
    }

    /// The consumer writes packets without looking at their records; the verification pass
    /// at the end drops the packet whose record does not decode (damage reported once, the
    /// other packets kept and counted exactly); a dropped reservation stays as a padding record.
    #[test]
    fn bad_record_is_dropped_at_verification_and_the_rest_is_counted() {
        bad_record_case(false);
    }

    /// The same, verifying between polls ([`Drain::verify_written`], one packet per poll):
    /// the bad packet is removed mid-run, the packet written after the removal is kept, and
    /// the counts are those of the verification at the end.
    #[test]
    fn verifying_between_polls_counts_and_drops_the_same() {
        bad_record_case(true);
    }

    /// Without the verification pass the consumer never reads the records: the damaged
    /// packet goes to the trace as it is (readers report it), nothing is rejected or counted
    /// per id, and `events_written` is the owner's count.
    #[test]
    fn without_verification_packets_go_as_they_are_and_the_owner_counts() {
        bad_record_case_with(false, false);
    }

    fn bad_record_case(between: bool) {
        bad_record_case_with(between, true);
    }

    fn bad_record_case_with(between: bool, verify: bool) {
        let ch = discard_channel(8, Some(1));
        if faultline_rseq::pin_to_cpu(0).is_err() {
            eprintln!("skipped: cannot run on CPU 0");
            return;
        }
        let per: u64 = (4096 - 128) / 23 + 1; // records (23 bytes) that complete one sub-buffer
        let mut committed = 0u64;
        for i in 0..3 * per {
            // In the second packet: one record with a 4-byte payload (the event has a u64),
            // and one reservation dropped without commit (a discarded record).
            let bad = i == per + 10;
            let mut r = ch.reserve(0, if bad { 4 } else { 8 }).unwrap();
            assert_eq!(r.cpu(), 0);
            if bad {
                r.payload().copy_from_slice(&[1, 2, 3, 4]);
            } else {
                r.payload().copy_from_slice(&i.to_le_bytes());
            }
            if i == 2 * per + 5 {
                drop(r);
                continue;
            }
            r.commit();
            committed += 1;
        }
        let tmp = faultline_testkit::TmpDir::new(&format!("drain-bad-{between}-{verify}"));
        let dir = tmp.join("trace");
        let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
        let cfg = DrainConfig {
            verbose: false,
            batch: if between {
                1
            } else {
                DrainConfig::default().batch
            },
            verify,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch.clone(), w, cfg);
        let mut polls = 0;
        while d.poll() > 0 {
            polls += 1;
            if between {
                d.verify_written();
            }
        }
        if between {
            assert!(polls >= 3, "one packet per poll: {polls}");
        }
        let (st, fin) = d.finish_counted(Vec::new(), Some(committed));
        fin.unwrap();
        assert_eq!(st.verified, verify);
        if !verify {
            assert_eq!(st.packets_rejected, 0, "{st:?}");
            assert!(st.corrupt.is_empty() && st.events.is_empty(), "{st:?}");
            assert_eq!((st.padding_records, st.verify_cpu_ns), (0, 0));
            assert_eq!(st.events_written, committed);
            // The readers find the damaged record (and stop that stream there).
            let errors = faultline_ctf::Trace::open(&dir)
                .unwrap()
                .events(&faultline_ctf::Filter::default())
                .filter(|e| e.is_err())
                .count();
            assert!(errors > 0, "the damaged record reached the trace unnoticed");
            return;
        }
        assert_eq!(st.packets_rejected, 1, "{st:?}");
        let c = &st.corrupt[&0];
        assert!(
            c.first_error.starts_with("packet 1 rejected: event id 0:"),
            "{}",
            c.first_error
        );
        assert!(!c.abandoned);
        assert_eq!(st.padding_records, 1);
        // Everything but the second packet's records.
        let in_bad = st.events_rejected;
        assert!(in_bad > 100 && in_bad <= per, "{in_bad}");
        assert_eq!(st.events_written + in_bad, committed);
        assert_eq!(st.events[&0][&0], st.events_written);
        let read = faultline_ctf::Trace::open(&dir)
            .unwrap()
            .events(&faultline_ctf::Filter::default())
            .inspect(|e| assert!(e.is_ok(), "{e:?}"))
            .count() as u64;
        assert_eq!(read, st.events_written);
    }

    /// A CPU with a long backlog (a busy CPU) does not starve another: one poll takes at most
    /// `batch` packets from it and serves the other CPU in the same poll.
    #[test]
    fn busy_cpu_does_not_starve_another() {
        if faultline_rseq::possible_cpus() < 2 {
            eprintln!("skipped: one CPU");
            return;
        }
        let ch = discard_channel(32, Some(2));
        // The second CPU gets one packet, the first a backlog of 20.
        let ok = std::thread::scope(|s| {
            s.spawn(|| fill(&ch, 1, 1)).join().unwrap()
                && s.spawn(|| fill(&ch, 0, 20)).join().unwrap()
        });
        if !ok {
            eprintln!("skipped: cannot run on CPUs 0 and 1");
            return;
        }
        let tmp = faultline_testkit::TmpDir::new("drain-fair");
        let dir = tmp.join("trace");
        let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
        let cfg = DrainConfig {
            verbose: false,
            flush_interval: Duration::from_secs(3600),
            gather: 1,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch.clone(), w, cfg);
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
    }

    /// Gathering (module docs): complete sub-buffers wait in the ring until `gather` of them
    /// are complete, then go out together; fewer go out when their time is up, and the
    /// final drain writes the rest.
    /// Sets the calling thread's allowed CPUs.
    fn set_allowed(cpus: &[u32]) {
        // SAFETY: plain cpu_set_t, indices below CPU_SETSIZE (allowed_cpus' own output);
        // applies to the calling (test) thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cpus {
                libc::CPU_SET(c as usize, &mut set);
            }
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }

    /// With follow_cpus the drain writes a buffer's packets from that buffer's CPU while
    /// every CPU has writers, not while one has none, and gives the thread its allowed CPUs
    /// back before it sleeps; without follow_cpus it never moves.
    #[test]
    fn follow_cpus_writes_from_the_buffer_cpu_then_gives_the_cpus_back() {
        let allowed = faultline_rseq::allowed_cpus();
        if allowed.len() != 2 {
            eprintln!("skipped: needs exactly 2 allowed CPUs");
            return;
        }
        let (a, b) = (allowed[0], allowed[1]);
        for follow in [true, false] {
            let ch = discard_channel(8, None);
            let tmp = faultline_testkit::TmpDir::new(&format!("drain-follow-{follow}"));
            let dir = tmp.join("trace");
            let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
            let cfg = DrainConfig {
                verbose: false,
                gather: 1,
                wait_timeout: Duration::from_millis(1),
                flush_interval: Duration::from_secs(60),
                follow_cpus: follow,
                ..DrainConfig::default()
            };
            let mut d = Drain::new(ch.clone(), w, cfg);
            let mut moved = 0;
            // Rounds 0..3: writers on `b` only (the consumer keeps to `a`); then on both
            // CPUs (it moves to each buffer's CPU to write it).
            for round in 0..8 {
                let both = round >= 3;
                if !fill(&ch, b, 1)
                    || (both && !fill(&ch, a, 1))
                    || faultline_rseq::pin_to_cpu(a).is_err()
                {
                    eprintln!("skipped: cannot run on CPUs {a} and {b}");
                    return;
                }
                std::thread::yield_now();
                // Allowed everywhere again (not while the drain keeps the thread on `a`: it
                // is the only one that changes its thread's CPUs); the thread stays on `a`
                // unless the scheduler moves it meanwhile.
                if !(follow && !both && round > 0) {
                    set_allowed(&allowed);
                }
                let before = d.stats.cpu_moves;
                assert_eq!(d.poll(), 1 + both as u64);
                if d.stats.cpu_moves > before {
                    assert!(follow, "moved in round {round}");
                    moved += 1;
                }
                let now = faultline_rseq::allowed_cpus();
                if follow && !both {
                    // Only `b` has writers: the consumer keeps to `a`, asleep too.
                    assert_eq!(now, vec![a], "round {round}");
                    d.wait();
                    assert_eq!(faultline_rseq::allowed_cpus(), vec![a], "round {round}");
                } else {
                    assert!(now == allowed || (follow && now.len() == 1), "{now:?}");
                    d.wait();
                    assert_eq!(faultline_rseq::allowed_cpus(), allowed, "given back");
                }
            }
            assert_eq!(moved > 0, follow, "moves: {moved}");
            assert!(!follow || d.stats.cpu_moves >= 2, "{}", d.stats.cpu_moves);
            let (st, fin) = d.finish();
            fin.unwrap();
            assert!(st.corrupt.is_empty() && st.packets_rejected == 0, "{st:?}");
            assert!(st.content_bytes >= 13 * 4000, "{st:?}");
            assert_eq!(faultline_rseq::allowed_cpus(), allowed);
        }
    }

    /// "When the device lags": a buffer found with `cache_mark` complete sub-buffers is
    /// written through the page cache, one under the mark by direct I/O again; the stream
    /// mixes both, keeps its layout, and every event is read back and counted.
    #[test]
    fn a_buffer_behind_is_written_through_the_cache_then_direct_again() {
        let ch = discard_channel(8, Some(1));
        if !fill(&ch, 0, 6) {
            eprintln!("skipped: cannot run on CPU 0");
            return;
        }
        let tmp = faultline_testkit::TmpDir::new("drain-cache-mark");
        let dir = tmp.join("trace");
        let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
        let cfg = DrainConfig {
            verbose: false,
            flush_interval: Duration::from_secs(3600),
            cache_mark: 0,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch.clone(), w, cfg);
        assert_eq!((d.gather(), d.cache_mark()), (3, 4));
        // Six complete: past the mark, a batch of four goes through the cache.
        assert_eq!(d.poll(), 4);
        assert_eq!(d.stats.cache_packets, 4);
        assert_eq!(d.stats.backlog_max, 6);
        // Two left: held (gathering); one more makes three, under the mark: direct.
        assert_eq!(d.poll(), 0);
        assert!(fill(&ch, 0, 1));
        assert_eq!(d.poll(), 3);
        assert_eq!(d.stats.cache_packets, 4);
        assert_eq!(d.stats.writes, 2);
        let (st, fin) = d.finish();
        fin.unwrap();
        let per: u64 = (4096 - 128) / 23 + 1; // as in fill(): 23-byte records
        assert_eq!(st.events_written, 7 * per, "{st:?}");
        assert!(st.corrupt.is_empty() && st.packets_rejected == 0, "{st:?}");
        let read = faultline_ctf::Trace::open(&dir)
            .unwrap()
            .events(&faultline_ctf::Filter::default())
            .inspect(|e| assert!(e.is_ok(), "{e:?}"))
            .count() as u64;
        assert_eq!(read, 7 * per);
        // The default never writes through the cache.
        assert_eq!(DrainConfig::default().cache_mark, u32::MAX);
    }

    #[test]
    fn sub_buffers_are_gathered_then_written_together() {
        let ch = discard_channel(8, Some(1));
        if !fill(&ch, 0, 2) {
            eprintln!("skipped: cannot run on CPU 0");
            return;
        }
        let tmp = faultline_testkit::TmpDir::new("drain-gather");
        let dir = tmp.join("trace");
        let w = TraceWriter::create(&dir, &trace_desc(&ch)).unwrap();
        let hold = Duration::from_millis(1000);
        let wait = Duration::from_millis(200);
        let cfg = DrainConfig {
            verbose: false,
            flush_interval: hold,
            wait_timeout: wait,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch.clone(), w, cfg);
        assert_eq!(d.gather(), 3);
        // Two complete: held (and the wait does not return at once for them).
        assert_eq!(d.poll(), 0);
        assert_eq!(d.kept.get(&0), None);
        let t0 = Instant::now();
        d.wait();
        assert!(
            t0.elapsed() >= wait / 2,
            "woke for 2 of 3: {:?}",
            t0.elapsed()
        );
        // The third completes them: all three in one poll.
        assert!(fill(&ch, 0, 1));
        assert_eq!(d.poll(), 3);
        assert_eq!(d.kept.get(&0), Some(&3));
        // One more: held until its time is up (the periodic flush has run by then too).
        assert!(fill(&ch, 0, 1));
        assert_eq!(d.poll(), 0);
        std::thread::sleep(hold);
        let k = d.poll();
        assert!(k >= 1);
        assert_eq!(d.kept.get(&0), Some(&(3 + k)));
        assert!(fill(&ch, 0, 2));
        let (st, fin) = d.finish();
        fin.unwrap();
        let per: u64 = (4096 - 128) / 23 + 1; // as in fill(): 23-byte records
        assert_eq!(st.events_written, 6 * per, "{st:?}");
        assert!(st.corrupt.is_empty() && st.packets_rejected == 0, "{st:?}");
    }
}
