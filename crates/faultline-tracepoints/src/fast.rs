//! The recording fast path: `trace!` straight into a ring buffer, no dynamic dispatch.
//!
//! # When
//! A tracepoint whose only probe is a recorder (one [`ProbeKind::Faultable`] probe, no
//! non-faultable probe) that offers a [`FastTarget`] for it ([`Probe::fast_target`]: the
//! recorder does for events without raw fields recorded with reserve-copy-commit) gets a
//! *fast slot*: an immutable [`FastSlot`] (the channel, the event id, the owner's identity)
//! published in the tracepoint next to its probe arrays. The generated `__fire` of
//! [`tracepoint!`](crate::tracepoint) checks it first: with a slot it sizes the payload once
//! (`Fields::exact_lens`: each field's length, a constant for fixed-size fields, so the size
//! of an all-fixed event is a compile-time constant after inlining; a string's NUL scan is a
//! few SSE2 compares), reserves, writes field by field straight into the reserved slot with
//! those lengths (`Fields::write_exact`: constant-size unaligned stores for fixed-size fields,
//! two overlapping copies for strings up to 32 bytes, no bounds checks and no `memcpy` call:
//! the reservation is exactly the summed length), commits, and counts the event in its
//! thread's hazard record (Statistics, below). The encoding is generated per tracepoint (`Fields` is monomorphized for its
//! argument types) and is byte for byte the budgeted encoding of [`crate::payload`]. Without a
//! slot it takes the generic path ([`Tracepoint::fire`]: the probe arrays, one virtual call
//! per probe).
//!
//! # One inlined path
//! `__fire` inlines one reserve path: the ring buffer's fast path for a channel of the common
//! configuration (rseq, TSC, per-CPU buffers, discard mode: [`Channel::cpu_rseq`], a property
//! of the channel fixed at creation, asked once when the slot is published: a slot of any
//! other channel is published with its high bit set, `NOT_CPU_RSEQ`, so the one test `word >
//! 0` as a signed integer sends a null and such a tagged slot out of the inline path
//! together), and, after it, the encoding and commit
//! in two copies, one per record header form (compact or extended), so that the payload
//! offset and the id store are constants in each. Everything else is out of line: the
//! channel's general path (sub-buffer switch, loss, aborted section: `record_general`), every
//! other channel configuration (overwrite mode, atomic, monotonic clock, per concurrency id,
//! abort injection: the tagged slot's branch of `fire_fields`, the same first-word protection
//! then `record_any`, through [`Channel::reserve`]), a thread without a hazard record yet,
//! and a call nested in a signal handler (`fire_fields_other`). A hazard announcement, the
//! retired-slot list and the hazard wait all hold the word as published (tagged or not); only
//! a dereference strips the tag (`slot_of`).
//!
//! The slot is a cache of the probe arrays, recomputed by every update that republishes them
//! (registering, unregistering, [`refresh_fast`]): the recorder stays in the faultable array,
//! so [`try_trace!`](crate::try_trace) (which asks each probe for a
//! [`TraceOutcome`](crate::TraceOutcome)) and every other probe-array user are unchanged.
//!
//! # Protection
//! The slot is protected by an asymmetric hazard pointer (the crate's `hazard` module, which
//! states the protocol and why it is safe): the call announces the slot in the first word of
//! its thread's hazard record (a plain store to a per-thread cache line: no locked
//! instruction, no fence, no rseq critical section), re-reads the tracepoint's slot word to
//! confirm it, and clears the announcement when it is done (after the commit and the count).
//! The inline path uses the first word only (`Record::protect_first`: the word is a constant,
//! nothing to keep across the record but the record itself); a call that finds it taken (a
//! signal handler tracing inside a trace) announces in a later word, out of line. A retired slot, with the `Arc` of its owner, is freed only after a grace period of
//! the faultable SRCU domain *and* a hazard wait (`Hazards::synchronize`:
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, then wait until no record announces it), so
//! [`unregister`](crate::unregister) still returns only once no call can be inside the
//! recorder (an encoder may fault and sleep only for raw fields, which never take the fast
//! path, but a writer may be preempted, or blocked reading an argument, for any time between
//! reserve and commit).
//!
//! Who writes what: the slot word of a tracepoint is written only by updaters (under the
//! registry lock, `rcu_swap`); a thread's hazard record only by that thread (and signal
//! handlers running on it, which nest one word deeper); updaters only read records.
//!
//! The call falls back to the SRCU read side ([`Srcu::read_lock_fast`](crate::srcu::Srcu::read_lock_fast),
//! the rseq flavour when available), with the same fast encoding, when the thread has no
//! record (the hazard domain is only used after a membarrier succeeded in this process; a
//! thread past its thread-local destructors), when calls nest deeper than `hazard::DEPTH`
//! (4), or when the slot changed under the announcement (twice: the out-of-line path retries
//! once with the new value).
//! The record is found through one thread-local pointer (a `const`-initialized thread-local
//! without destructor: inlined into the caller's crate it is one `%fs`-relative load). Before
//! the thread has a record, and when it never will, that pointer is the address of a lone
//! static hazard word that is never null (`NOT_YET`, `NO_RECORD`), not a null pointer: the
//! inline path's test that the first word is free sends such a thread out of line with no
//! test of its own (`Record::first_word_free`; `Record` is `repr(C)` with that word first).
//!
//! # Statistics
//! Off the fast path: a call protected by a hazard record adds a committed event to that
//! record's counter column of the slot's owner (one `inc` of the record the call already
//! holds in a register; `Record::extra` of the hazard domain, [`COUNT_COLUMNS`] columns).
//! An owner takes a column with [`FastCounts::new`] (passes [`FastCounts::index`] in
//! [`FastTarget::counts`]) and reads its total with [`FastCounts::total`]: the sum of its
//! column over every record (records are never freed and pass from exiting threads to new
//! ones with their counts), minus what the column held when it was handed out (a dropped
//! owner's leftover: its slots, which hold it alive, are freed only after the hazard wait, so
//! nothing adds to a column once it is free). Only the record's holder (and signal handlers on
//! its thread) writes a column: a relaxed load and store, no read-modify-write. Calls without
//! a record (the SRCU fallback) count in the per-thread counter the owner hands out
//! ([`Probe::fast_counter`], cached per thread by owner id). REMOTE commits and losses (rare)
//! are reported through [`Probe::fast_unusual`], out of line.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use faultline_ringbuf::{Channel, CommitKind, CpuRseq, CpuRseqReservation, Lost, Reservation};

use crate::hazard::{Hazards, Record};
use crate::payload::{Fields, FieldsPayload};
use crate::probe::{Probe, ProbeKind};
use crate::registry::{Tracepoint, DOMAINS};

/// What a probe hands the tracepoint layer to record an event without calling it.
pub struct FastTarget {
    /// The channel the events go to.
    pub chan: Arc<Channel>,
    /// The event id recorded (normally the tracepoint's id).
    pub id: u32,
    /// Identifies the owner for the per-thread counter cache; unique per owner for the life
    /// of the process (never reused), and non-zero (events of an owner 0 are not counted).
    pub owner_id: u64,
    /// Where calls protected by a hazard record count the events: [`FastCounts::index`] of a
    /// `FastCounts` the owner keeps (and reads with [`FastCounts::total`]) for as long as it
    /// lives. Calls without a hazard record count through [`Probe::fast_counter`].
    pub counts: u32,
}

/// Counters of committed fast-path events per owner (module docs, "Statistics"), one column
/// per owner in every thread's hazard record: [`COUNT_COLUMNS`] columns, column 0 never
/// handed out (events of a target whose column is out of range go there, uncounted).
#[derive(Debug)]
pub struct FastCounts {
    idx: u32,
    /// What the column held when it was handed out (left by its previous owner).
    base: u64,
}

/// Columns of event counters in a hazard record (one is never handed out).
pub const COUNT_COLUMNS: usize = 64;

/// Bit i: column i is handed out (bit 0 always set).
static COLUMNS_USED: AtomicU64 = AtomicU64::new(1);

/// The counters of a hazard record (`Record::extra`): written only by the thread holding the
/// record (relaxed load and store, no read-modify-write), read by [`FastCounts::total`].
pub(crate) struct Counts([AtomicU64; COUNT_COLUMNS]);

impl Default for Counts {
    fn default() -> Self {
        Counts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The hazard records of the fast path: with this thread's event counts.
type Rec = Record<Counts>;

impl FastCounts {
    /// A free column, or `None` if all [`COUNT_COLUMNS`]` - 1` are handed out.
    pub fn new() -> Option<FastCounts> {
        // Relaxed: the bitmap only hands out columns; the counts are read by sums (below).
        let mut used = COLUMNS_USED.load(Ordering::Relaxed);
        let idx = loop {
            let free = !used;
            if free == 0 {
                return None;
            }
            let i = free.trailing_zeros();
            // AcqRel: pairs with the Release in drop, so the previous owner's last counts
            // (written before its slots were freed, which happened before its drop) are seen
            // by the sum below.
            match COLUMNS_USED.compare_exchange_weak(
                used,
                used | (1 << i),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break i,
                Err(u) => used = u,
            }
        };
        Some(FastCounts {
            idx,
            base: column_sum(idx as usize),
        })
    }

    /// The column, for [`FastTarget::counts`].
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// Events counted in this column since it was handed out, over every thread (a
    /// snapshot: exact once the counting threads are joined, or have returned from calls
    /// that happen-before this read).
    pub fn total(&self) -> u64 {
        column_sum(self.idx as usize).wrapping_sub(self.base)
    }
}

impl Drop for FastCounts {
    fn drop(&mut self) {
        // Release: see new.
        COLUMNS_USED.fetch_and(!(1u64 << self.idx), Ordering::Release);
    }
}

/// The sum of column `idx` over every hazard record.
fn column_sum(idx: usize) -> u64 {
    let mut sum = 0u64;
    HAZARDS.for_each(|r| {
        if let Some(c) = r.extra.0.get(idx) {
            // Relaxed: a snapshot of a counter only its holder writes.
            sum = sum.wrapping_add(c.load(Ordering::Relaxed));
        }
    });
    sum
}

/// An immutable fast slot as published to call sites.
pub(crate) struct FastSlot {
    /// Raw copy of `target.chan` (kept alive by it): one load less on the fast path.
    chan: *const Channel,
    id: u32,
    owner_id: u64,
    /// The column of the hazard record's counters (below COUNT_COLUMNS).
    count_idx: usize,
    /// The probe that offered the target (answers the out-of-line hooks; kept alive until a
    /// grace period after the slot is retired).
    owner: Arc<dyn Probe>,
    _target: FastTarget,
}

impl FastSlot {
    pub(crate) fn new(owner: Arc<dyn Probe>, target: FastTarget) -> Self {
        FastSlot {
            chan: Arc::as_ptr(&target.chan),
            id: target.id,
            owner_id: target.owner_id,
            count_idx: match target.counts as usize {
                i if i < COUNT_COLUMNS => i,
                _ => 0,
            },
            owner,
            _target: target,
        }
    }
}

/// This thread's fast-path state: its hazard record and the counter cache.
pub(crate) struct ThreadState {
    /// Its hazard record; [`NOT_YET`]: not taken yet; [`NO_RECORD`]: none (use the SRCU read
    /// side). Both stand-ins are addresses of a lone hazard word that is never null, so the
    /// fast path's test of the first word sends them out of line with no test of their own
    /// (`Record::first_word_free`).
    rec: Cell<*const Rec>,
    /// `(owner id, this thread's event counter of that owner)`: the last counter used. Never
    /// a null counter ([`UNCOUNTED`] when the owner counts nothing), so the fast path does
    /// not test it.
    counter: Cell<(u64, *const AtomicU64)>,
}

/// The first hazard word of the two stand-in records: never null.
static NOT_YET_WORD: AtomicPtr<()> = AtomicPtr::new(std::ptr::dangling_mut());
static NO_RECORD_WORD: AtomicPtr<()> = AtomicPtr::new(std::ptr::dangling_mut());

/// [`ThreadState::rec`] before the thread's first fast-path call.
const NOT_YET: *const Rec = &NOT_YET_WORD as *const AtomicPtr<()> as *const Rec;

/// [`ThreadState::rec`] when the thread has no hazard record and never will (no membarrier in
/// this process, or the thread is past its thread-local destructors).
const NO_RECORD: *const Rec = &NO_RECORD_WORD as *const AtomicPtr<()> as *const Rec;

/// High bit of a fast slot word: the slot's channel is not of the configuration the inline
/// path handles ([`Channel::cpu_rseq`] is `None`), so calls go out of line. Never set in a
/// user-space address; the word is then not null and not positive as an `isize`, so the
/// inline path's one test (`> 0`) sends null and tagged slots away together.
const NOT_CPU_RSEQ: usize = 1 << 63;

/// The word to publish in [`Tracepoint::fast`] for `slot` (from `Box::into_raw`).
pub(crate) fn slot_word(slot: *mut FastSlot) -> *mut FastSlot {
    // SAFETY: `slot` is a live FastSlot (just boxed) holding its channel.
    let fast = unsafe { &*(*slot).chan }.cpu_rseq().is_some();
    if fast {
        slot
    } else {
        slot.map_addr(|a| a | NOT_CPU_RSEQ)
    }
}

/// The `FastSlot` pointer of a slot word (null stays null).
pub(crate) fn slot_of(word: *mut FastSlot) -> *mut FastSlot {
    word.map_addr(|a| a & !NOT_CPU_RSEQ)
}

/// Where events of an owner that counts nothing ([`Probe::fast_counter`] null) are added:
/// written by every such thread (relaxed load and store: lost updates are fine), never read.
static UNCOUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            rec: Cell::new(NOT_YET),
            // Owner ids are non-zero (FastTarget::owner_id): the first event looks it up.
            counter: Cell::new((0, &UNCOUNTED as *const AtomicU64)),
        }
    };
    /// Gives the record back when the thread exits (registered when the record is taken).
    static GIVE_BACK: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        let _ = STATE.try_with(|st| {
            let r = st.rec.replace(NO_RECORD);
            if r != NO_RECORD && r != NOT_YET {
                // SAFETY: records are never freed (hazard.rs); this thread held it.
                HAZARDS.give_back(unsafe { &*r });
            }
        });
    }
}

/// The hazard domain of every fast slot.
pub(crate) static HAZARDS: LazyLock<Hazards<Counts>> = LazyLock::new(Hazards::empty);

/// Set once a membarrier succeeded in this process (`registry::domains`): only then may
/// threads take hazard records (the updater's wait relies on it).
pub(crate) static HAZARDS_OK: AtomicBool = AtomicBool::new(false);

/// This thread's state. Inlined into the caller's crate (where `fire_fields` is instantiated)
/// the `const`-initialized, drop-free thread-local is a direct `%fs`-relative access (checked
/// in the disassembly of a `__fire`). The reference must not leave the thread (it is not
/// `Send`).
#[inline(always)]
fn state() -> *const ThreadState {
    STATE.with(|st| st as *const ThreadState)
}

/// This thread's hazard record, taken now if it has none yet; [`NO_RECORD`] if it has none
/// and never will.
#[cold]
#[inline(never)]
fn take_record() -> *const Rec {
    // SAFETY: the thread's own thread-local, used on this thread only.
    let st = unsafe { &*state() };
    let r = st.rec.get();
    if r != NOT_YET {
        return r;
    }
    // Relaxed: set after a membarrier succeeded, before any slot was published (registry.rs);
    // a stale false only sends this call to the SRCU read side.
    let r = if HAZARDS_OK.load(Ordering::Relaxed) && GIVE_BACK.try_with(|_| ()).is_ok() {
        HAZARDS.take() as *const Rec
    } else {
        NO_RECORD
    };
    st.rec.set(r);
    r
}

/// Count one committed event for the slot's owner on this thread.
#[inline(always)]
fn count(slot: &FastSlot) {
    // SAFETY: the thread's own thread-local, used on this thread only.
    let st = unsafe { &*state() };
    let (id, p) = st.counter.get();
    let p = if id == slot.owner_id {
        p
    } else {
        counter_slow(slot)
    };
    // SAFETY: `fast_counter`'s contract: the counter lives as long as this thread and is
    // written only by it; or UNCOUNTED, a static.
    let c = unsafe { &*p };
    // Relaxed load and store: only this thread writes the counter (no read-modify-write).
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// The counter of the slot's owner for this thread (cached), or [`UNCOUNTED`].
#[cold]
#[inline(never)]
fn counter_slow(slot: &FastSlot) -> *const AtomicU64 {
    let p = slot.owner.fast_counter();
    if p.is_null() {
        // Not cached: asked again next time (an owner that counts nothing is no fast target
        // of the recorder; a thread being torn down gets null once its shard is gone).
        return &UNCOUNTED;
    }
    // SAFETY: the thread's own thread-local, used on this thread only.
    unsafe { &*state() }.counter.set((slot.owner_id, p));
    p
}

/// How a call counts its committed events: in its hazard record, or (a call without one)
/// in the owner's per-thread counter.
trait Count: Copy {
    fn count(self, slot: &FastSlot);
}

/// In the column of the slot's owner of this hazard record (held by this thread).
#[derive(Clone, Copy)]
struct InRecord<'r>(&'r Rec);

impl Count for InRecord<'_> {
    #[inline(always)]
    fn count(self, slot: &FastSlot) {
        // SAFETY: FastSlot::new keeps count_idx below COUNT_COLUMNS, the length of the array.
        let c = unsafe { self.0.extra.0.get_unchecked(slot.count_idx) };
        // Relaxed load and store: only the thread holding the record (and its signal
        // handlers) writes it; no read-modify-write.
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// In the owner's counter for this thread ([`Probe::fast_counter`]).
#[derive(Clone, Copy)]
struct PerOwner;

impl Count for PerOwner {
    #[inline(always)]
    fn count(self, slot: &FastSlot) {
        count(slot)
    }
}

#[cold]
#[inline(never)]
fn unusual<C: Count>(
    slot: &FastSlot,
    tp: &'static Tracepoint,
    what: Result<CommitKind, Lost>,
    c: C,
) {
    if what.is_ok() {
        c.count(slot);
    }
    slot.owner.fast_unusual(tp, what);
}

/// Reserve, encode, commit and count one event into the slot's channel (the caller protects
/// the slot). Inline: only the channel's fast path of the common configuration
/// ([`Channel::cpu_rseq`]: rseq, TSC, per-CPU buffers), with the encoding and commit in two
/// copies, compact and extended header, each with constant offsets. Out of line: the general
/// path of such a channel ([`record_general`]) and every other configuration ([`record_any`]).
#[inline(always)]
fn record<F: Fields, C: Count>(slot: &FastSlot, tp: &'static Tracepoint, fields: F, c: C) {
    // SAFETY: `slot.chan` points into the Arc the slot holds (`_target`).
    let chan = unsafe { &*slot.chan };
    match chan.cpu_rseq() {
        Some(chan) => record_cpu_rseq(slot, chan, tp, fields, c),
        None => record_any(slot, tp, fields, c),
    }
}

/// [`record`] into a channel known to be of the common configuration.
#[inline(always)]
fn record_cpu_rseq<F: Fields, C: Count>(
    slot: &FastSlot,
    chan: CpuRseq<'_>,
    tp: &'static Tracepoint,
    fields: F,
    c: C,
) {
    // No raw field: the sizes cannot change between here and the write.
    let (len, lens) = fields.exact_lens();
    match chan.try_reserve(slot.id, len) {
        Some(res) if res.is_compact() => {
            write_commit_count(slot, tp, fields, len, lens, Ok(res), c)
        }
        Some(res) => write_commit_count(slot, tp, fields, len, lens, Ok(res), c),
        None => record_general(slot, tp, fields, c),
    }
}

/// [`record`] when the channel's fast path did not apply (nothing reserved): its general path.
#[cold]
#[inline(never)]
fn record_general<F: Fields, C: Count>(slot: &FastSlot, tp: &'static Tracepoint, fields: F, c: C) {
    // SAFETY: as in `record`.
    let chan = unsafe { &*slot.chan };
    let (len, lens) = fields.exact_lens();
    let res = match chan.cpu_rseq() {
        Some(chan) => chan.reserve_general(slot.id, len),
        // Not reached (the caller checked), but correct anyway.
        None => {
            record_any(slot, tp, fields, c);
            return;
        }
    };
    write_commit_count(slot, tp, fields, len, lens, res, c);
}

/// [`record`] into a channel of any configuration ([`Channel::reserve`] chooses its path per
/// call).
#[inline(never)]
fn record_any<F: Fields, C: Count>(slot: &FastSlot, tp: &'static Tracepoint, fields: F, c: C) {
    // SAFETY: as in `record`.
    let chan = unsafe { &*slot.chan };
    let (len, lens) = fields.exact_lens();
    write_commit_count(slot, tp, fields, len, lens, chan.reserve(slot.id, len), c);
}

/// A reservation of either kind ([`Reservation`], [`CpuRseqReservation`]).
trait Reserved {
    fn payload(&mut self) -> &mut [u8];
    fn commit(self) -> CommitKind;
}

impl Reserved for Reservation<'_> {
    #[inline(always)]
    fn payload(&mut self) -> &mut [u8] {
        Reservation::payload(self)
    }
    #[inline(always)]
    fn commit(self) -> CommitKind {
        Reservation::commit(self)
    }
}

impl Reserved for CpuRseqReservation<'_> {
    #[inline(always)]
    fn payload(&mut self) -> &mut [u8] {
        CpuRseqReservation::payload(self)
    }
    #[inline(always)]
    fn commit(self) -> CommitKind {
        CpuRseqReservation::commit(self)
    }
}

/// Encode `fields` (whose `exact_lens` are `len`, `lens`) into the reservation, commit it and
/// count the event (or report the loss).
#[inline(always)]
fn write_commit_count<F: Fields, R: Reserved, C: Count>(
    slot: &FastSlot,
    tp: &'static Tracepoint,
    fields: F,
    len: usize,
    lens: F::Lens,
    res: Result<R, Lost>,
    c: C,
) {
    match res {
        Ok(mut res) => {
            let dst = res.payload();
            debug_assert_eq!(dst.len(), len);
            // SAFETY: the reservation's payload is exactly `len` bytes (a saturated `len`
            // cannot be reserved), which `exact_lens` of this raw-free list computed.
            unsafe { fields.write_exact(lens, dst.as_mut_ptr()) };
            match res.commit() {
                CommitKind::Local => c.count(slot),
                // Counted out of line (one inlined copy of `count`).
                kind => unusual(slot, tp, Ok(kind), c),
            }
        }
        Err(why) => unusual(slot, tp, Err(why), c),
    }
}

impl Tracepoint {
    /// Whether hits of this tracepoint take the recording fast path now (module docs); a
    /// snapshot, for diagnostics and tests.
    pub fn has_fast_path(&self) -> bool {
        // Relaxed: a snapshot; nothing is dereferenced.
        !self.fast.load(Ordering::Relaxed).is_null()
    }

    /// What the generated `__fire` of [`tracepoint!`](crate::tracepoint) calls: the fast
    /// path (module docs) if this tracepoint has a fast slot, [`Tracepoint::fire`] otherwise.
    #[doc(hidden)]
    #[inline(always)]
    pub fn fire_fields<F: Fields>(&'static self, fields: F) {
        // Relaxed: a first look; Record::announce_first re-reads it after the announcement.
        let seen = self.fast.load(Ordering::Relaxed);
        if F::RAW {
            self.fire(&FieldsPayload(fields));
            return;
        }
        // Non-null and not tagged NOT_CPU_RSEQ, in one test.
        if seen as isize > 0 {
            // SAFETY: the thread's own thread-local, used on this thread only.
            let st = unsafe { &*state() };
            let rec = st.rec.get();
            // The first hazard word only: a thread without a record (NOT_YET, NO_RECORD: a
            // word never null), a call nested in a signal handler (first word taken) or a
            // slot that changed goes to fire_fields_other, out of line.
            // SAFETY: `rec` is a record or one of the two stand-ins (ThreadState::rec).
            if unsafe { Record::first_word_free(rec) } {
                // SAFETY: a record (the stand-ins' word is never null); records are never
                // freed; this thread holds this one.
                let rec = unsafe { &*rec };
                if rec.announce_first(&self.fast, seen) {
                    // SAFETY: `fast` only holds null or leaked `Box<FastSlot>`s published with
                    // rcu_swap (untagged: `seen > 0`), freed only after a hazard wait that
                    // started after they were swapped out (probe.rs: reclaim_now), and the
                    // slot is announced in this thread's record until `release_first`.
                    let slot = unsafe { &*seen };
                    // SAFETY: untagged: slot_word found the channel's cpu_rseq() Some, and
                    // the slot holds the channel (`_target`).
                    let chan = unsafe { CpuRseq::new_unchecked(&*slot.chan) };
                    record_cpu_rseq(slot, chan, self, fields, InRecord(rec));
                    rec.release_first();
                    return;
                }
            }
            self.fire_fields_other(fields);
            return;
        }
        if !seen.is_null() {
            // A slot tagged NOT_CPU_RSEQ (overwrite mode, the flight recorder, and every
            // other channel setup): the same first-word protection, then `record_any`.
            // SAFETY: the thread's own thread-local, used on this thread only.
            let st = unsafe { &*state() };
            let rec = st.rec.get();
            // SAFETY: as above.
            if unsafe { Record::first_word_free(rec) } {
                // SAFETY: as above.
                let rec = unsafe { &*rec };
                if rec.announce_first(&self.fast, seen) {
                    // SAFETY: as above; the slot is the word without its tag.
                    let slot = unsafe { &*slot_of(seen) };
                    record_any(slot, self, fields, InRecord(rec));
                    rec.release_first();
                    return;
                }
            }
            self.fire_fields_other(fields);
            return;
        }
        self.fire(&FieldsPayload(fields));
    }

    /// [`Tracepoint::fire_fields`] when the inline path did not apply: the thread has no
    /// hazard record yet (or never will), the first hazard word is taken (a signal handler
    /// tracing inside a trace: a later word), or the slot changed under the announcement.
    #[cold]
    #[inline(never)]
    fn fire_fields_other<F: Fields>(&'static self, fields: F) {
        // SAFETY: the thread's own thread-local, used on this thread only.
        let st = unsafe { &*state() };
        let mut rec = st.rec.get();
        if rec == NOT_YET || rec == NO_RECORD {
            rec = take_record();
            if rec == NO_RECORD {
                self.fire_fields_srcu(fields);
                return;
            }
        }
        // SAFETY: records are never freed; this thread holds this one.
        let rec = unsafe { &*rec };
        // Relaxed: a first look; protect re-reads it after the announcement.
        let seen = self.fast.load(Ordering::Relaxed);
        if let Some((slot, a)) = rec.protect_seen(&self.fast, seen) {
            // SAFETY: as in fire_fields, until `release` (the announced word may be tagged:
            // the slot is the word without its tag).
            record(
                unsafe { &*slot_of(slot as *mut FastSlot) },
                self,
                fields,
                InRecord(rec),
            );
            rec.release(a);
            return;
        }
        self.fire_fields_srcu(fields);
    }

    /// [`Tracepoint::fire_fields`] protected by the SRCU read side (module docs).
    #[cold]
    #[inline(never)]
    fn fire_fields_srcu<F: Fields>(&'static self, fields: F) {
        if let Some(domains) = DOMAINS.get() {
            let _guard = domains[ProbeKind::Faultable as usize].read_lock_fast();
            // SAFETY: `fast` only holds null or leaked `Box<FastSlot>`s (perhaps tagged,
            // slot_word) published with rcu_swap, freed only after a grace period of the
            // faultable domain (probe.rs: publish / reclaim_now), and we hold a read-side
            // section of it. SeqCst: rcu_load's load (R2, pairs with rcu_swap's SeqCst swap),
            // without its dereference (the word may be tagged).
            let word = self.fast.load(Ordering::SeqCst);
            // SAFETY: as above: the untagged word is null or a live slot.
            if let Some(slot) = unsafe { slot_of(word).as_ref() } {
                record(slot, self, fields, PerOwner);
                return;
            }
        }
        self.fire(&FieldsPayload(fields));
    }
}
