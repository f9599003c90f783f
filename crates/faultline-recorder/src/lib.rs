//! The ring-buffer recorder: the probe that turns tracepoint hits into records of a
//! [`Channel`], with the three copy strategies of the "Faultable tracepoints" thread.
//!
//! The recorder is one [`Probe`] among others, registered as [`ProbeKind::Faultable`] (it may
//! take page faults and sleep while copying raw user memory). [`attach`] registers it on the
//! tracepoints matching a glob; enabling them is separate ([`faultline_tracepoints::enable`]).
//!
//! # Copy strategies
//! Every event is encoded by [`Payload::write`], whose raw fields ([`faultline_tracepoints::
//! CStrPtr`], [`faultline_tracepoints::RawBuf`]) are read with the fault-tolerant copies: a bad
//! pointer never crashes, it yields a zero-filled field with its `_faulted` count set. What the
//! strategies change is *when* that possibly slow copy happens relative to the reservation:
//!
//! * [`Strategy::ReserveCopyCommit`] (the thread's design): size, reserve, encode straight into
//!   the reserved slot (may fault, sleep, migrate), commit — LOCAL with rseq when still on the
//!   reserving CPU, REMOTE (atomic) otherwise. One copy; the reservation is held across any
//!   fault, which holds back delivery of that sub-buffer (and, if the buffer wraps onto it,
//!   makes other writers of that CPU lose events as "stalled").
//! * [`Strategy::Bounce`]: encode into a thread-local scratch buffer first (faults and sleeps
//!   happen here, holding nothing), then reserve, `memcpy`, commit. Two copies; the
//!   reservation is only held for a short copy of resident memory. A nested event on the same
//!   thread (a signal handler tracing while the scratch buffer is in use) falls back to
//!   reserve-copy-commit for that event.
//! * [`Strategy::PrefaultRestart`]: size and touch every page of the raw sources while holding
//!   nothing ([`Payload::prefault`]), open an interruption window
//!   ([`faultline_rseq::interrupt`]), reserve, encode into the slot, and check the window: if
//!   the thread was preempted, migrated or signalled (e.g. a fault that slept) while holding
//!   the reservation, the reservation is abandoned (committed as a discarded record, skipped by
//!   readers) and the whole step restarts, at most [`RecorderConfig::max_restarts`] times;
//!   after that the last attempt is committed as is (the *fallback*: reserve-copy-commit
//!   semantics), so there is no livelock. Without rseq the window cannot be observed and the
//!   first attempt is always kept.
//!
//! # Default policy
//! [`Policy::Auto`] (the default) uses [`Strategy::Bounce`] for events that have raw fields
//! (memory the probe must treat as untrusted and possibly non-resident) and
//! [`Strategy::ReserveCopyCommit`] for the others (resident, trusted Rust values: a second
//! copy would only cost time). The measurements behind that choice are in `docs/BENCHMARKS.md`
//! (strategy study): with resident data all three cost about the same for small payloads and
//! bounce pays one extra copy for large ones, while during a held fault reserve-copy-commit
//! keeps the sub-buffer open for the whole stall. A strategy can be forced per channel
//! ([`Policy::Fixed`]) and per tracepoint ([`Recorder::set_strategy`]).
//!
//! # The fast path
//! For an event without raw fields recorded with reserve-copy-commit, the recorder offers the
//! tracepoint layer a fast target ([`Probe::fast_target`]): when the recorder is the event's
//! only probe, `trace!` reserves, encodes and commits itself, with the encoding generated for
//! the tracepoint's field types and no virtual call (`faultline_tracepoints::fast`). Events are
//! counted in the recorder's column of the threads' hazard records ([`FastCounts`], added to
//! the reserve-copy-commit events by [`Recorder::stats`]; a recorder that finds every column
//! taken offers no fast target), or, for a call without a hazard record, in the same
//! per-thread shard (the reserve-copy-commit event counter, handed out by
//! [`Probe::fast_counter`]); REMOTE commits and losses come back through
//! [`Probe::fast_unusual`]. [`Recorder::set_strategy`] recomputes it. `try_trace!` and every
//! other strategy call [`Recorder::record`].
//!
//! # Payload size changes
//! A C string may change between sizing and encoding. The encoder never writes past the slot
//! and always terminates strings; if the encoding came out shorter than reserved, the record is
//! re-reserved at its real size and the bytes moved (the first slot becomes a discarded
//! record), so every record's length is exactly its encoding — which CTF readers need.
//!
//! # Signal handlers
//! Recording is async-signal-safe once a thread's per-thread state exists: its statistics
//! shard and, for [`Strategy::Bounce`], a scratch buffer large enough for the events it
//! records. Both are allocated by the first event of the thread (and the scratch buffer grows
//! with the largest event), which uses the heap allocator. A program that traces from signal
//! handlers calls [`Recorder::prepare_thread`] on each thread first (or records one event of
//! the largest size outside the handler). A nested event finding the scratch buffer in use
//! falls back to reserve-copy-commit (no allocation).
//!
//! # Statistics
//! Counted per thread without atomic read-modify-writes (each thread owns its shard; the
//! reader sums shards under a mutex, and exiting threads fold theirs into a total): events per
//! strategy, faulted events and bytes, restarts, fallbacks, resized records, nested bounces,
//! and events lost per cause as seen by this recorder. Buffer-side counters (per-CPU losses,
//! REMOTE commits) are in [`Channel::cpu_stats`].

use faultline_ringbuf::{Channel, ClockKind, CommitKind, Lost, Reservation};
use faultline_tracepoints::__private::{Fields, FieldsPayload};
use faultline_tracepoints::{
    register_probe, FastCounts, FastTarget, LossCause, Payload, Probe, ProbeHandle, ProbeKind,
    RegisterError, TraceOutcome, Tracepoint,
};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// How a payload is copied into the ring buffer (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Size, reserve, encode into the slot, commit: one copy, the reservation held across faults.
    ReserveCopyCommit = 0,
    /// Encode into a per-thread scratch buffer first, then reserve, copy, commit: two copies,
    /// nothing held across faults.
    Bounce = 1,
    /// Touch the source pages first, then reserve and encode; restart if interrupted while holding
    /// the slot.
    PrefaultRestart = 2,
}

impl Strategy {
    /// Every strategy, in `Strategy as usize` order.
    pub const ALL: [Strategy; 3] = [
        Strategy::ReserveCopyCommit,
        Strategy::Bounce,
        Strategy::PrefaultRestart,
    ];

    /// The name used on the command line and in statistics.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::ReserveCopyCommit => "reserve-copy-commit",
            Strategy::Bounce => "bounce",
            Strategy::PrefaultRestart => "prefault-restart",
        }
    }

    #[inline(always)]
    fn from_u8(v: u8) -> Option<Strategy> {
        Strategy::ALL.get(v as usize).copied()
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A strategy name that is not one of [`Strategy::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown copy strategy {0:?} (expected reserve-copy-commit, bounce or prefault-restart)")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

/// Channel-wide strategy choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Bounce for events with raw (untrusted) fields, reserve-copy-commit for the others.
    #[default]
    Auto,
    /// The same strategy for every event.
    Fixed(Strategy),
}

impl FromStr for Policy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Policy::Auto);
        }
        s.parse().map(Policy::Fixed)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Auto => f.write_str("auto"),
            Policy::Fixed(s) => s.fmt(f),
        }
    }
}

/// Recorder options.
#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    /// Which strategy each event gets (default [`Policy::Auto`]).
    pub policy: Policy,
    /// Restarts allowed per event by [`Strategy::PrefaultRestart`] before it keeps the attempt
    /// it has (the fallback).
    pub max_restarts: u32,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            policy: Policy::Auto,
            max_restarts: 3,
        }
    }
}

/// Per-strategy counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyStats {
    /// Events committed with this strategy.
    pub events: u64,
    /// Abandoned attempts (prefault-restart only).
    pub restarts: u64,
    /// Events committed after exhausting the restarts (prefault-restart), or bounced events
    /// that fell back to reserve-copy-commit because the scratch buffer was in use (nesting).
    pub fallbacks: u64,
}

/// What a recorder did (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderStats {
    /// Events committed.
    pub recorded: u64,
    /// Committed events with at least one faulted raw field.
    pub faulted: u64,
    /// Bytes of raw fields that could not be read (zero-filled).
    pub faulted_bytes: u64,
    /// Records re-reserved because their encoding came out shorter than sized.
    pub resized: u64,
    /// Commits that went REMOTE (the writer had migrated since reserving).
    pub remote_commits: u64,
    /// Events lost because the buffer was full (discard mode, consumer behind).
    pub lost_full: u64,
    /// Events lost because the next sub-buffer was held by a stalled writer.
    pub lost_stalled: u64,
    /// Events lost because they were larger than a sub-buffer.
    pub lost_too_big: u64,
    /// Events lost because the thread's CPU had no buffer.
    pub lost_no_buffer: u64,
    /// Indexed by `Strategy as usize`.
    pub per_strategy: [StrategyStats; 3],
}

impl RecorderStats {
    /// Events lost, all causes together.
    pub fn lost_total(&self) -> u64 {
        self.lost_full + self.lost_stalled + self.lost_too_big + self.lost_no_buffer
    }
    /// The counters of strategy `s`.
    pub fn strategy(&self, s: Strategy) -> &StrategyStats {
        &self.per_strategy[s as usize]
    }

    /// Number of counters (the length of [`RecorderStats::counters`]).
    pub const N_COUNTERS: usize = 9 + 3 * 3;

    /// Every counter with a short name, in one fixed order: `recorded`, `faulted`,
    /// `faulted_bytes`, `resized`, `remote_commits`, the four `lost_*`, then per strategy
    /// (`rcc`, `bounce`, `prefault`) its `.events`, `.restarts`, `.fallbacks`.
    pub fn counters(&self) -> [(&'static str, u64); Self::N_COUNTERS] {
        let mut copy = *self;
        let v = copy.fields_mut().map(|(k, v)| (k, *v));
        v
    }

    /// `f(a, b)` counter by counter (in [`RecorderStats::counters`] order); `None` as soon as
    /// `f` gives `None` (an overflow, say).
    pub fn try_combine(
        &self,
        other: &RecorderStats,
        mut f: impl FnMut(u64, u64) -> Option<u64>,
    ) -> Option<RecorderStats> {
        let mut r = *self;
        let mut b = *other;
        for ((_, x), (_, y)) in r.fields_mut().into_iter().zip(b.fields_mut()) {
            *x = f(*x, *y)?;
        }
        Some(r)
    }

    /// `f(a, b)` counter by counter.
    pub fn combine(&self, other: &RecorderStats, mut f: impl FnMut(u64, u64) -> u64) -> Self {
        let mut r = *self;
        let mut b = *other;
        for ((_, x), (_, y)) in r.fields_mut().into_iter().zip(b.fields_mut()) {
            *x = f(*x, *y);
        }
        r
    }

    /// The one list of the counters (every other view is built on it).
    fn fields_mut(&mut self) -> [(&'static str, &mut u64); Self::N_COUNTERS] {
        let [rcc, bounce, prefault] = &mut self.per_strategy;
        [
            ("recorded", &mut self.recorded),
            ("faulted", &mut self.faulted),
            ("faulted_bytes", &mut self.faulted_bytes),
            ("resized", &mut self.resized),
            ("remote_commits", &mut self.remote_commits),
            ("lost_full", &mut self.lost_full),
            ("lost_stalled", &mut self.lost_stalled),
            ("lost_too_big", &mut self.lost_too_big),
            ("lost_no_buffer", &mut self.lost_no_buffer),
            ("rcc.events", &mut rcc.events),
            ("rcc.restarts", &mut rcc.restarts),
            ("rcc.fallbacks", &mut rcc.fallbacks),
            ("bounce.events", &mut bounce.events),
            ("bounce.restarts", &mut bounce.restarts),
            ("bounce.fallbacks", &mut bounce.fallbacks),
            ("prefault.events", &mut prefault.events),
            ("prefault.restarts", &mut prefault.restarts),
            ("prefault.fallbacks", &mut prefault.fallbacks),
        ]
    }
}

const N_COUNTERS: usize = 18;
const C_FAULTED: usize = 0;
const C_FAULTED_BYTES: usize = 1;
const C_RESIZED: usize = 2;
const C_REMOTE: usize = 3;
const C_LOST: usize = 4; // + Lost index (4)
const C_EVENTS: usize = 8; // + strategy (3)
const C_RESTARTS: usize = 11; // + strategy (3)
const C_FALLBACKS: usize = 14; // + strategy (3)

fn lost_index(l: Lost) -> usize {
    match l {
        Lost::Full => 0,
        Lost::Stalled => 1,
        Lost::TooBig => 2,
        Lost::NoBuffer => 3,
    }
}

/// One thread's counters for one recorder. Written only by the owning thread (relaxed load +
/// store, no read-modify-write); read by [`Recorder::stats`] with relaxed loads.
struct Shard {
    c: [AtomicU64; N_COUNTERS],
}

impl Shard {
    #[inline(always)]
    fn bump(&self, i: usize, by: u64) {
        // Only the owning thread writes this shard: a plain load and store suffice.
        let c = &self.c[i];
        c.store(
            c.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }
}

struct StatsRegistry {
    live: Vec<Arc<Shard>>,
    retired: [u64; N_COUNTERS],
}

/// Per-thread list of (recorder id, shard); folded into the recorders' totals at thread exit.
struct ThreadShards {
    list: Vec<(u64, Arc<Shard>, Arc<Mutex<StatsRegistry>>)>,
}

impl Drop for ThreadShards {
    fn drop(&mut self) {
        for (_, shard, reg) in self.list.drain(..) {
            let mut r = reg.lock().unwrap_or_else(|e| e.into_inner());
            for (i, c) in shard.c.iter().enumerate() {
                r.retired[i] += c.load(Ordering::Relaxed);
            }
            r.live.retain(|s| !Arc::ptr_eq(s, &shard));
        }
    }
}

thread_local! {
    static SHARDS: RefCell<ThreadShards> = const { RefCell::new(ThreadShards { list: Vec::new() }) };
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Single-entry cache of the last (recorder id, shard) used by this thread.
    static LAST: Cell<(u64, *const Shard)> = const { Cell::new((0, std::ptr::null())) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The recorder probe. See the module docs.
pub struct Recorder {
    id: u64,
    chan: Arc<Channel>,
    cfg: RecorderConfig,
    /// Effective strategy per tracepoint id (`Strategy as u8`): the policy's choice unless
    /// overridden with [`Recorder::set_strategy`]. Computed once so the hot path is one load.
    strategies: Box<[AtomicU8]>,
    stats: Arc<Mutex<StatsRegistry>>,
    /// The channel's clock (for [`Recorder::record_fields_stamped`]).
    clock: ClockKind,
    /// Where the recording fast path counts the events of calls with a hazard record
    /// (`None`: every column taken; then no fast target is offered).
    fast_counts: Option<FastCounts>,
}

impl Recorder {
    /// A recorder writing into `chan` with `cfg`; register it with [`attach`].
    pub fn new(chan: Arc<Channel>, cfg: RecorderConfig) -> Arc<Recorder> {
        let tps = faultline_tracepoints::tracepoints();
        let mut strategies: Vec<AtomicU8> = (0..tps.len()).map(|_| AtomicU8::new(0)).collect();
        for tp in tps {
            if let Some(s) = strategies.get_mut(tp.id() as usize) {
                *s.get_mut() = policy_choice(cfg.policy, tp) as u8;
            }
        }
        Arc::new(Recorder {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            clock: chan.clock().kind,
            chan,
            cfg,
            strategies: strategies.into_boxed_slice(),
            stats: Arc::new(Mutex::new(StatsRegistry {
                live: Vec::new(),
                retired: [0; N_COUNTERS],
            })),
            fast_counts: FastCounts::new(),
        })
    }

    /// The channel it writes into.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.chan
    }

    /// Its options.
    pub fn config(&self) -> RecorderConfig {
        self.cfg
    }

    /// Force `strategy` (or, with `None`, go back to the channel policy) for the tracepoints
    /// matching `glob`. Returns how many matched.
    pub fn set_strategy(&self, glob: &str, strategy: Option<Strategy>) -> usize {
        let tps = faultline_tracepoints::matching(glob);
        for tp in &tps {
            if let Some(o) = self.strategies.get(tp.id() as usize) {
                let s = strategy.unwrap_or_else(|| policy_choice(self.cfg.policy, tp));
                // Relaxed: a racing event may still use the previous strategy; either is valid.
                o.store(s as u8, Ordering::Relaxed);
            }
        }
        // The recording fast path is offered for reserve-copy-commit only: recompute it.
        let ids: Vec<u32> = tps.iter().map(|tp| tp.id()).collect();
        faultline_tracepoints::refresh_fast(&ids);
        tps.len()
    }

    /// The strategy used for `tp` now.
    #[inline(always)]
    pub fn strategy_for(&self, tp: &Tracepoint) -> Strategy {
        self.strategies
            .get(tp.id() as usize)
            .and_then(|o| Strategy::from_u8(o.load(Ordering::Relaxed)))
            .unwrap_or_else(|| policy_choice(self.cfg.policy, tp))
    }

    /// Totals over every thread that recorded through this recorder.
    pub fn stats(&self) -> RecorderStats {
        let r = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = r.retired;
        // The fast path's events counted in hazard records (the rest are in the shards).
        if let Some(f) = &self.fast_counts {
            c[C_EVENTS + Strategy::ReserveCopyCommit as usize] += f.total();
        }
        for s in &r.live {
            for (i, v) in s.c.iter().enumerate() {
                c[i] += v.load(Ordering::Relaxed);
            }
        }
        let mut st = RecorderStats {
            faulted: c[C_FAULTED],
            faulted_bytes: c[C_FAULTED_BYTES],
            resized: c[C_RESIZED],
            remote_commits: c[C_REMOTE],
            lost_full: c[C_LOST],
            lost_stalled: c[C_LOST + 1],
            lost_too_big: c[C_LOST + 2],
            lost_no_buffer: c[C_LOST + 3],
            ..RecorderStats::default()
        };
        for s in Strategy::ALL {
            let i = s as usize;
            st.per_strategy[i] = StrategyStats {
                events: c[C_EVENTS + i],
                restarts: c[C_RESTARTS + i],
                fallbacks: c[C_FALLBACKS + i],
            };
            st.recorded += c[C_EVENTS + i];
        }
        st
    }

    /// Allocate this thread's per-thread state (statistics shard, and a bounce scratch buffer
    /// of `max_payload` bytes) so that later events on this thread, including ones recorded
    /// from signal handlers, do not allocate. See the module docs.
    pub fn prepare_thread(&self, max_payload: usize) {
        self.with_shard(|_| ());
        let _ = SCRATCH.try_with(|cell| {
            if let Ok(mut buf) = cell.try_borrow_mut() {
                if buf.len() < max_payload {
                    buf.resize(max_payload, 0);
                }
            }
        });
    }

    /// This thread's shard (created on first use).
    #[inline(always)]
    fn with_shard<R>(&self, f: impl FnOnce(&Shard) -> R) -> R {
        let (id, p) = LAST.with(|l| l.get());
        if id == self.id && !p.is_null() {
            // SAFETY: LAST only holds a pointer to a shard owned (through an Arc) by this
            // thread's SHARDS list, which outlives every use on this thread; entries are only
            // removed at thread exit.
            return f(unsafe { &*p });
        }
        self.with_shard_slow(f)
    }

    #[cold]
    fn with_shard_slow<R>(&self, f: impl FnOnce(&Shard) -> R) -> R {
        let shard = SHARDS.try_with(|s| {
            let mut s = s.borrow_mut();
            if let Some((_, sh, _)) = s.list.iter().find(|(id, _, _)| *id == self.id) {
                return sh.clone();
            }
            let sh = Arc::new(Shard {
                c: std::array::from_fn(|_| AtomicU64::new(0)),
            });
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .live
                .push(sh.clone());
            s.list.push((self.id, sh.clone(), self.stats.clone()));
            sh
        });
        match shard {
            Ok(sh) => {
                LAST.with(|l| l.set((self.id, Arc::as_ptr(&sh))));
                f(&sh)
            }
            // Thread-local storage is being torn down (an event from a TLS destructor):
            // count into a shard that goes straight to the totals.
            Err(_) => {
                let sh = Shard {
                    c: std::array::from_fn(|_| AtomicU64::new(0)),
                };
                let r = f(&sh);
                let mut reg = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                for (i, c) in sh.c.iter().enumerate() {
                    reg.retired[i] += c.load(Ordering::Relaxed);
                }
                r
            }
        }
    }

    #[cold]
    fn lost(&self, why: Lost) -> Lost {
        self.with_shard(|s| s.bump(C_LOST + lost_index(why), 1));
        why
    }

    /// Commit `res`, whose first `written` bytes hold the encoding (`written <= len`).
    #[inline(always)]
    fn finish(
        &self,
        id: u32,
        mut res: Reservation<'_>,
        written: usize,
        faulted: usize,
    ) -> Result<CommitKind, Lost> {
        let len = res.payload().len();
        let kind = if written == len {
            res.commit()
        } else {
            self.resize(id, res, written)?
        };
        if kind == CommitKind::Remote || faulted != 0 {
            self.note_unusual(kind, faulted);
        }
        Ok(kind)
    }

    #[cold]
    fn note_unusual(&self, kind: CommitKind, faulted: usize) {
        self.with_shard(|s| {
            if kind == CommitKind::Remote {
                s.bump(C_REMOTE, 1);
            }
            if faulted != 0 {
                s.bump(C_FAULTED, 1);
                s.bump(C_FAULTED_BYTES, faulted as u64);
            }
        });
    }

    /// The encoding came out shorter than reserved: move it to a record of the right size.
    #[cold]
    fn resize(
        &self,
        id: u32,
        mut res: Reservation<'_>,
        written: usize,
    ) -> Result<CommitKind, Lost> {
        let bytes = res.payload()[..written].to_vec();
        drop(res); // committed as a discarded record
        self.with_shard(|s| s.bump(C_RESIZED, 1));
        match self.chan.reserve(id, written) {
            Ok(mut r) => {
                r.payload().copy_from_slice(&bytes);
                Ok(r.commit())
            }
            Err(why) => Err(self.lost(why)),
        }
    }

    #[inline(always)]
    fn record_rcc<P: Payload + ?Sized>(&self, id: u32, payload: &P) -> Result<CommitKind, Lost> {
        let len = payload.size();
        // Matched in place (no `map_err`/`?`): moving the reservation through extra
        // non-inlined frames costs store-forwarding stalls on the hot path.
        match self.chan.reserve(id, len) {
            Ok(mut res) => {
                let out = payload.write(res.payload());
                self.finish(id, res, out.written, out.faulted)
            }
            Err(why) => Err(self.lost(why)),
        }
    }

    /// `None`: the scratch buffer is in use (nested event) or gone (thread exiting).
    #[inline(always)]
    fn record_bounce<P: Payload + ?Sized>(
        &self,
        id: u32,
        payload: &P,
    ) -> Option<Result<CommitKind, Lost>> {
        let r = SCRATCH.try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return None;
            };
            let len = payload.size();
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let out = payload.write(&mut buf[..len]);
            let n = out.written;
            let mut res = match self.chan.reserve(id, n) {
                Ok(r) => r,
                Err(why) => return Some(Err(self.lost(why))),
            };
            res.payload().copy_from_slice(&buf[..n]);
            Some(self.finish(id, res, n, out.faulted))
        });
        r.ok().flatten()
    }

    fn record_prefault<P: Payload + ?Sized>(
        &self,
        id: u32,
        payload: &P,
    ) -> Result<CommitKind, Lost> {
        let mut attempt = 0u32;
        loop {
            let len = payload.prefault();
            let watching = faultline_rseq::interrupt::arm();
            let mut res = self.chan.reserve(id, len).map_err(|why| self.lost(why))?;
            let out = payload.write(res.payload());
            if watching && faultline_rseq::interrupt::interrupted() {
                if attempt < self.cfg.max_restarts {
                    attempt += 1;
                    drop(res); // abandoned: committed as a discarded record
                    self.with_shard(|s| s.bump(C_RESTARTS + Strategy::PrefaultRestart as usize, 1));
                    continue;
                }
                self.with_shard(|s| s.bump(C_FALLBACKS + Strategy::PrefaultRestart as usize, 1));
            }
            return self.finish(id, res, out.written, out.faulted);
        }
    }

    /// Record one event (id `id`, as a tracepoint's `id()`) with `strategy`: how it was
    /// committed, or why it was lost (also counted in [`Recorder::stats`]).
    pub fn record(
        &self,
        id: u32,
        strategy: Strategy,
        payload: &dyn Payload,
    ) -> Result<CommitKind, Lost> {
        self.record_with(id, strategy, payload)
    }

    /// [`Recorder::record_fields`] for an event with a field measured up to the event itself (a
    /// duration that ends with the event: the libc wrappers' `dur_ns`): `stamp(t)` is called
    /// once, with a time `t` in ticks of the channel's clock, right before the fields are
    /// encoded, and may set such a field (a `Cell` the list refers to); it must not change any
    /// field's size. With [`Strategy::ReserveCopyCommit`], `t` is the record's own timestamp
    /// (read inside the reservation: no clock read of its own — on CPUs where reading the TSC
    /// waits for every instruction before it, one read right after a system call returned was
    /// a large part of a wrapped call's cost); the other strategies encode before reserving,
    /// so `t` is a clock read just before encoding.
    #[inline(always)]
    pub fn record_fields_stamped<F: Fields>(
        &self,
        tp: &'static Tracepoint,
        fields: F,
        stamp: impl FnOnce(u64),
    ) -> Result<CommitKind, Lost> {
        let id = tp.id();
        let strategy = self.strategy_for(tp);
        let payload = FieldsPayload(fields);
        if strategy != Strategy::ReserveCopyCommit {
            stamp(faultline_ringbuf::clock::now(self.clock));
            return self.record_with(id, strategy, &payload);
        }
        // record_rcc, with the stamp taken from the reservation.
        let len = payload.size();
        let r = match self.chan.reserve(id, len) {
            Ok(mut res) => {
                stamp(res.timestamp());
                let out = payload.write(res.payload());
                self.finish(id, res, out.written, out.faulted)
            }
            Err(why) => Err(self.lost(why)),
        };
        if r.is_ok() {
            self.with_shard(|s| s.bump(C_EVENTS + Strategy::ReserveCopyCommit as usize, 1));
        }
        r
    }

    /// Record one event of `tp` from its typed field list (what `trace!` builds), with the
    /// strategy [`Recorder::strategy_for`] picks: the same strategies, statistics and outcome
    /// as [`Recorder::record`], but sized and encoded by code generated for the fields' types
    /// (no virtual call, no probe dispatch). For a caller that owns this recorder and knows it
    /// is the tracepoint's only probe (the libc preload library, whose tracepoints nothing
    /// else can reach), so that an event need not go through [`Tracepoint::fire`]. The caller
    /// checks [`Tracepoint::is_active`] first, as `trace!` does; the recorder must outlive the
    /// call (no SRCU section protects it here).
    #[inline(always)]
    pub fn record_fields<F: Fields>(
        &self,
        tp: &'static Tracepoint,
        fields: F,
    ) -> Result<CommitKind, Lost> {
        let payload = FieldsPayload(fields);
        self.record_with(tp.id(), self.strategy_for(tp), &payload)
    }

    /// [`Recorder::record`] for any payload type: `dyn Payload` from the probe dispatch, a
    /// concrete field list from [`Recorder::record_fields`] (then monomorphized and inlined).
    #[inline(always)]
    fn record_with<P: Payload + ?Sized>(
        &self,
        id: u32,
        strategy: Strategy,
        payload: &P,
    ) -> Result<CommitKind, Lost> {
        let r = match strategy {
            Strategy::ReserveCopyCommit => self.record_rcc(id, payload),
            Strategy::Bounce => match self.record_bounce(id, payload) {
                Some(r) => r,
                None => {
                    self.with_shard(|s| s.bump(C_FALLBACKS + Strategy::Bounce as usize, 1));
                    self.record_rcc(id, payload)
                }
            },
            Strategy::PrefaultRestart => self.record_prefault(id, payload),
        };
        if r.is_ok() {
            self.with_shard(|s| s.bump(C_EVENTS + strategy as usize, 1));
        }
        r
    }
}

impl Probe for Recorder {
    #[inline]
    fn call(&self, tp: &'static Tracepoint, payload: &dyn Payload) {
        let s = self.strategy_for(tp);
        let _ = self.record(tp.id(), s, payload);
    }

    /// The recording fast path (`faultline_tracepoints::fast`) for events without raw fields
    /// recorded with reserve-copy-commit: the tracepoint layer reserves, encodes and commits
    /// itself, and counts the event in this thread's shard ([`Probe::fast_counter`]).
    fn fast_target(&self, tp: &'static Tracepoint) -> Option<FastTarget> {
        let counts = self.fast_counts.as_ref()?;
        (!tp.has_raw_fields() && self.strategy_for(tp) == Strategy::ReserveCopyCommit).then(|| {
            FastTarget {
                chan: self.chan.clone(),
                id: tp.id(),
                owner_id: self.id,
                counts: counts.index(),
            }
        })
    }

    /// The reserve-copy-commit event counter of this thread's shard.
    fn fast_counter(&self) -> *const AtomicU64 {
        self.with_shard(|_| ());
        // Only a shard held by this thread's list (the one LAST caches) lives as long as the
        // thread; the stand-in shard of a thread being torn down does not.
        match LAST.try_with(|l| l.get()) {
            Ok((id, p)) if id == self.id && !p.is_null() => {
                // SAFETY: see with_shard: `p` is a shard owned by this thread's SHARDS list.
                &unsafe { &*p }.c[C_EVENTS + Strategy::ReserveCopyCommit as usize]
            }
            _ => std::ptr::null(),
        }
    }

    /// A REMOTE commit or a loss on the fast path, counted like [`Recorder::record`] does.
    fn fast_unusual(&self, _tp: &'static Tracepoint, what: Result<CommitKind, Lost>) {
        match what {
            Ok(kind) => self.note_unusual(kind, 0),
            Err(why) => {
                self.lost(why);
            }
        }
    }

    /// [`Recorder::record`]'s answer, for `try_trace!`.
    fn call_outcome(&self, tp: &'static Tracepoint, payload: &dyn Payload) -> TraceOutcome {
        let s = self.strategy_for(tp);
        match self.record(tp.id(), s, payload) {
            Ok(kind) => TraceOutcome::Committed {
                remote: kind == CommitKind::Remote,
            },
            Err(why) => TraceOutcome::Lost(loss_cause(why)),
        }
    }
}

/// The ring buffer's loss cause as the tracepoint layer names it.
pub fn loss_cause(why: Lost) -> LossCause {
    match why {
        Lost::Full => LossCause::Full,
        Lost::Stalled => LossCause::Stalled,
        Lost::TooBig => LossCause::TooBig,
        Lost::NoBuffer => LossCause::NoBuffer,
    }
}

/// What `policy` picks for `tp` (module docs, "Default policy").
fn policy_choice(policy: Policy, tp: &Tracepoint) -> Strategy {
    match policy {
        Policy::Fixed(s) => s,
        // The tracepoint macro puts a `<name>_faulted` field before every raw field.
        Policy::Auto if tp.has_raw_fields() => Strategy::Bounce,
        Policy::Auto => Strategy::ReserveCopyCommit,
    }
}

/// Register `recorder` (as a faultable probe) on every tracepoint matching `glob`. Does not
/// enable them.
pub fn attach(recorder: &Arc<Recorder>, glob: &str) -> Result<ProbeHandle, RegisterError> {
    register_probe(glob, recorder.clone(), ProbeKind::Faultable)
}
