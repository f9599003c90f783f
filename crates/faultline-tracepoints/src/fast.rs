//! The recording fast path: `trace!` straight into a ring buffer, no dynamic dispatch.
//!
//! # When
//! A tracepoint whose only probe is a recorder (one [`ProbeKind::Faultable`] probe, no
//! non-faultable probe) that offers a [`FastTarget`] for it ([`Probe::fast_target`]: the
//! recorder does for events without raw fields recorded with reserve-copy-commit) gets a
//! *fast slot*: an immutable [`FastSlot`] (the channel, the event id, the owner's identity)
//! published in the tracepoint next to its probe arrays. The generated `__fire` of
//! [`tracepoint!`](crate::tracepoint) checks it first: with a slot it sizes the payload
//! (fixed-size fields are constants, so the size of an all-fixed event is a compile-time
//! constant after inlining), reserves, encodes field by field with constant-size copies
//! (the encoding is generated per tracepoint: `Fields` is monomorphized for its argument
//! types), commits, and bumps a per-thread event counter. Without a slot it takes the generic
//! path ([`Tracepoint::fire`]: the probe arrays, one virtual call per probe).
//!
//! The slot is a cache of the probe arrays, recomputed by every update that republishes them
//! (registering, unregistering, [`refresh_fast`]): the recorder stays in the faultable array,
//! so [`try_trace!`](crate::try_trace) (which asks each probe for a
//! [`TraceOutcome`](crate::TraceOutcome)) and every other probe-array user are unchanged.
//!
//! # Protection
//! The slot is protected like the arrays: by the faultable SRCU domain, read side entered
//! with [`Srcu::read_lock_fast`](crate::srcu::Srcu::read_lock_fast) (the rseq flavour, no
//! locked instruction, when rseq and membarrier are available — the fast slot is only
//! published then — the atomic one otherwise). A retired slot, with the `Arc` of its owner,
//! is freed only after a grace period of that domain, so [`unregister`](crate::unregister)
//! still returns only once no call can be inside the recorder (an encoder may fault and
//! sleep only for raw fields, which never take the fast path, but a writer may be preempted
//! for any time between reserve and commit).
//!
//! # Statistics
//! Off the fast path: a committed event bumps one per-thread counter the owner handed out
//! ([`Probe::fast_counter`], cached per thread by owner id, a relaxed load and store, no
//! read-modify-write); REMOTE commits and losses (rare) are reported through
//! [`Probe::fast_unusual`], out of line.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faultline_ringbuf::{Channel, CommitKind, Lost};

use crate::payload::{Fields, FieldsPayload, Writer};
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
    /// of the process (never reused).
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

thread_local! {
    /// `(owner id, this thread's event counter of that owner)`: the last counter used.
    static COUNTER: Cell<(u64, *const AtomicU64)> = const { Cell::new((0, std::ptr::null())) };
}

/// Count one committed event for the slot's owner on this thread. Out of line on purpose:
/// compiled in this crate, the thread-local is a direct `%fs`-relative access; inlined into
/// the caller's crate (where `fire_fields` is instantiated) it would be reached through the
/// `LocalKey` accessor, an indirect call.
#[inline(never)]
fn count(slot: &FastSlot) {
    let (id, p) = COUNTER.with(|c| c.get());
    let p = if id == slot.owner_id && !p.is_null() {
        p
    } else {
        counter_slow(slot)
    };
    if p.is_null() {
        return;
    }
    // SAFETY: `fast_counter`'s contract: the counter lives as long as this thread and is
    // written only by it.
    let c = unsafe { &*p };
    // Relaxed load and store: only this thread writes the counter (no read-modify-write).
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

#[cold]
#[inline(never)]
fn counter_slow(slot: &FastSlot) -> *const AtomicU64 {
    let p = slot.owner.fast_counter();
    if !p.is_null() {
        let _ = COUNTER.try_with(|c| c.set((slot.owner_id, p)));
    }
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
        if !F::RAW && !self.fast.load(Ordering::Relaxed).is_null() {
            if let Some(domains) = DOMAINS.get() {
                let guard = domains[ProbeKind::Faultable as usize].read_lock_fast();
                // SAFETY: `fast` only holds null or leaked `Box<FastSlot>`s published with
                // rcu_swap, freed only after a grace period of the faultable domain
                // (probe.rs: publish / reclaim_now), and we hold a read-side section of it.
                if let Some(slot) = unsafe { rcu_load(&self.fast, &guard) } {
                    // SAFETY: `slot.chan` points into the Arc the slot holds (`_target`).
                    let chan = unsafe { &*slot.chan };
                    let len = fields.size();
                    match chan.reserve(slot.id, len) {
                        Ok(mut res) => {
                            let mut w = Writer::new(res.payload());
                            fields.encode_exact(&mut w);
                            // No raw field: the encoding is exactly `len` bytes.
                            let _ = w.finish();
                            match res.commit() {
                                CommitKind::Local => count(slot),
                                // Counted out of line (one inlined copy of `count`).
                                kind => unusual(slot, self, Ok(kind)),
                            }
                        }
                        Err(why) => unusual(slot, self, Err(why)),
                    }
                    return;
                }
            }
        }
        self.fire(&FieldsPayload(fields));
    }
}
