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
//! the reservation is exactly the summed length), commits, and bumps a per-thread event
//! counter. The encoding is generated per tracepoint (`Fields` is monomorphized for its
//! argument types) and is byte for byte the budgeted encoding of [`crate::payload`]. Without a
//! slot it takes the generic path ([`Tracepoint::fire`]: the probe arrays, one virtual call
//! per probe).
//!
//! # One inlined path
//! `__fire` inlines one reserve path: the ring buffer's fast path for a channel of the common
//! configuration (rseq, TSC, per-CPU buffers: [`Channel::cpu_rseq`], a property of the
//! channel fixed at creation, tested once per call), and, after it, the encoding and commit
//! in two copies, one per record header form (compact or extended), so that the payload
//! offset and the id store are constants in each. Everything else is out of line: the
//! channel's general path (sub-buffer switch, loss, aborted section: `record_general`), every
//! other channel configuration (atomic, monotonic clock, per concurrency id, abort injection:
//! `record_any`, through [`Channel::reserve`]), a thread without a hazard record yet, and a
//! call nested in a signal handler (`fire_fields_other`).
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
//! without destructor: inlined into the caller's crate it is one `%fs`-relative load); the
//! per-thread counter cache below lives in the same thread-local.
//!
//! # Statistics
//! Off the fast path: a committed event bumps one per-thread counter the owner handed out
//! ([`Probe::fast_counter`], cached per thread by owner id, a relaxed load and store, no
//! read-modify-write); REMOTE commits and losses (rare) are reported through
//! [`Probe::fast_unusual`], out of line.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use faultline_ringbuf::{Channel, CommitKind, CpuRseqReservation, Lost, Reservation};

use crate::hazard::{Hazards, Record};
use crate::payload::{Fields, FieldsPayload};
use crate::probe::{Probe, ProbeKind};
use crate::registry::{Tracepoint, DOMAINS};
use crate::srcu::rcu_load;

/// What a probe hands the tracepoint layer to record an event without calling it.
pub struct FastTarget {
    /// The channel the events go to.
    pub chan: Arc<Channel>,
    /// The event id recorded (normally the tracepoint's id).
    pub id: u32,
    /// Identifies the owner for the per-thread counter cache; unique per owner for the life
    /// of the process (never reused), and non-zero (events of an owner 0 are not counted).
    pub owner_id: u64,
}

/// An immutable fast slot as published to call sites.
pub(crate) struct FastSlot {
    /// Raw copy of `target.chan` (kept alive by it): one load less on the fast path.
    chan: *const Channel,
    id: u32,
    owner_id: u64,
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
            owner,
            _target: target,
        }
    }
}

/// This thread's fast-path state: its hazard record and the counter cache.
pub(crate) struct ThreadState {
    /// Its hazard record; null: not taken yet; [`NO_RECORD`]: none (use the SRCU read side).
    /// Both are at most `NO_RECORD` as integers (one comparison on the fast path); a record
    /// is a heap address, above it.
    rec: Cell<*const Record>,
    /// `(owner id, this thread's event counter of that owner)`: the last counter used. Never
    /// a null counter ([`UNCOUNTED`] when the owner counts nothing), so the fast path does
    /// not test it.
    counter: Cell<(u64, *const AtomicU64)>,
}

/// [`ThreadState::rec`] when the thread has no hazard record and never will (no membarrier in
/// this process, or the thread is past its thread-local destructors).
const NO_RECORD: *const Record = std::ptr::dangling();

/// Where events of an owner that counts nothing ([`Probe::fast_counter`] null) are added:
/// written by every such thread (relaxed load and store: lost updates are fine), never read.
static UNCOUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            rec: Cell::new(std::ptr::null()),
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
            if r != NO_RECORD && !r.is_null() {
                // SAFETY: records are never freed (hazard.rs); this thread held it.
                HAZARDS.give_back(unsafe { &*r });
            }
        });
    }
}

/// The hazard domain of every fast slot.
pub(crate) static HAZARDS: LazyLock<Hazards> = LazyLock::new(Hazards::new);

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
fn take_record() -> *const Record {
    // SAFETY: the thread's own thread-local, used on this thread only.
    let st = unsafe { &*state() };
    let r = st.rec.get();
    if !r.is_null() {
        return r;
    }
    // Relaxed: set after a membarrier succeeded, before any slot was published (registry.rs);
    // a stale false only sends this call to the SRCU read side.
    let r = if HAZARDS_OK.load(Ordering::Relaxed) && GIVE_BACK.try_with(|_| ()).is_ok() {
        HAZARDS.take() as *const Record
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

#[cold]
#[inline(never)]
fn unusual(slot: &FastSlot, tp: &'static Tracepoint, what: Result<CommitKind, Lost>) {
    if what.is_ok() {
        count(slot);
    }
    slot.owner.fast_unusual(tp, what);
}

/// Reserve, encode, commit and count one event into the slot's channel (the caller protects
/// the slot). Inline: only the channel's fast path of the common configuration
/// ([`Channel::cpu_rseq`]: rseq, TSC, per-CPU buffers), with the encoding and commit in two
/// copies, compact and extended header, each with constant offsets. Out of line: the general
/// path of such a channel ([`record_general`]) and every other configuration ([`record_any`]).
#[inline(always)]
fn record<F: Fields>(slot: &FastSlot, tp: &'static Tracepoint, fields: F) {
    // SAFETY: `slot.chan` points into the Arc the slot holds (`_target`).
    let chan = unsafe { &*slot.chan };
    let Some(chan) = chan.cpu_rseq() else {
        record_any(slot, tp, fields);
        return;
    };
    // No raw field: the sizes cannot change between here and the write.
    let (len, lens) = fields.exact_lens();
    match chan.try_reserve(slot.id, len) {
        Some(res) if res.is_compact() => write_commit_count(slot, tp, fields, len, lens, Ok(res)),
        Some(res) => write_commit_count(slot, tp, fields, len, lens, Ok(res)),
        None => record_general(slot, tp, fields),
    }
}

/// [`record`] when the channel's fast path did not apply (nothing reserved): its general path.
#[cold]
#[inline(never)]
fn record_general<F: Fields>(slot: &FastSlot, tp: &'static Tracepoint, fields: F) {
    // SAFETY: as in `record`.
    let chan = unsafe { &*slot.chan };
    let (len, lens) = fields.exact_lens();
    let res = match chan.cpu_rseq() {
        Some(chan) => chan.reserve_general(slot.id, len),
        // Not reached (the caller checked), but correct anyway.
        None => {
            record_any(slot, tp, fields);
            return;
        }
    };
    write_commit_count(slot, tp, fields, len, lens, res);
}

/// [`record`] into a channel of any configuration ([`Channel::reserve`] chooses its path per
/// call).
#[inline(never)]
fn record_any<F: Fields>(slot: &FastSlot, tp: &'static Tracepoint, fields: F) {
    // SAFETY: as in `record`.
    let chan = unsafe { &*slot.chan };
    let (len, lens) = fields.exact_lens();
    write_commit_count(slot, tp, fields, len, lens, chan.reserve(slot.id, len));
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
fn write_commit_count<F: Fields, R: Reserved>(
    slot: &FastSlot,
    tp: &'static Tracepoint,
    fields: F,
    len: usize,
    lens: F::Lens,
    res: Result<R, Lost>,
) {
    match res {
        Ok(mut res) => {
            let dst = res.payload();
            debug_assert_eq!(dst.len(), len);
            // SAFETY: the reservation's payload is exactly `len` bytes (a saturated `len`
            // cannot be reserved), which `exact_lens` of this raw-free list computed.
            unsafe { fields.write_exact(lens, dst.as_mut_ptr()) };
            match res.commit() {
                CommitKind::Local => count(slot),
                // Counted out of line (one inlined copy of `count`).
                kind => unusual(slot, tp, Ok(kind)),
            }
        }
        Err(why) => unusual(slot, tp, Err(why)),
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
        // Relaxed: a first look; Record::protect_first re-reads it after the announcement.
        let seen = self.fast.load(Ordering::Relaxed);
        if !F::RAW && !seen.is_null() {
            // SAFETY: the thread's own thread-local, used on this thread only.
            let st = unsafe { &*state() };
            let rec = st.rec.get();
            // Null (not taken yet) and NO_RECORD in one comparison (ThreadState::rec).
            if rec as usize > NO_RECORD as usize {
                // SAFETY: records are never freed; this thread holds this one.
                let rec = unsafe { &*rec };
                // The first hazard word only: a call nested in a signal handler (first word
                // taken) or a slot that changed goes to fire_fields_other, out of line.
                if let Some(slot) = rec.protect_first(&self.fast, seen) {
                    // SAFETY: `fast` only holds null or leaked `Box<FastSlot>`s published with
                    // rcu_swap, freed only after a hazard wait that started after they were
                    // swapped out (probe.rs: reclaim_now), and the slot is announced in this
                    // thread's record until `release_first`.
                    record(unsafe { &*slot }, self, fields);
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
        if rec as usize <= NO_RECORD as usize {
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
            // SAFETY: as in fire_fields, until `release`.
            record(unsafe { &*slot }, self, fields);
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
            let guard = domains[ProbeKind::Faultable as usize].read_lock_fast();
            // SAFETY: `fast` only holds null or leaked `Box<FastSlot>`s published with
            // rcu_swap, freed only after a grace period of the faultable domain (probe.rs:
            // publish / reclaim_now), and we hold a read-side section of it.
            if let Some(slot) = unsafe { rcu_load(&self.fast, &guard) } {
                record(slot, self, fields);
                return;
            }
        }
        self.fire(&FieldsPayload(fields));
    }
}
