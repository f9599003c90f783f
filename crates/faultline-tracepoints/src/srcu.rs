//! Sleepable read-copy-update for probe arrays: readers never lock or wait; updaters publish a
//! new immutable array, wait for a grace period, then free the old one.
//!
//! # Data
//! A domain ([`Srcu`]) has a `phase` counter and, per CPU slot (one cache line each), four
//! counters `lock[0..2]`, `unlock[0..2]`. Protected data is reached through an `AtomicPtr<T>`
//! to an immutable `T` (never written after publication).
//!
//! # Who writes what
//! * Readers (any thread, any number, may nest, may run in signal handlers, may block for ever
//!   in a page fault): increment `lock[i]` and later `unlock[i]` of *some* slot (the slot of the
//!   CPU they think they are on; migration does not matter, only sums are used).
//! * Updaters (serialized by `gp_lock`): swap the pointer, increment `phase`, read counters.
//!
//! # Protocol
//! ```text
//! reader:                                   updater (retiring P_old):
//!   i = phase & 1            (Relaxed)        P_old = ptr.swap(P_new)            (SeqCst)
//!   slot.lock[i] += 1        (SeqCst RMW) R1  fence(SeqCst)                       U1
//!   p = ptr                  (SeqCst)     R2  wait_drain(!(phase & 1))  // stragglers
//!   ... use *p, may block ...                 phase += 1
//!   slot.unlock[i] += 1      (Release)    R3  wait_drain(old phase & 1) // current readers
//!                                             free(P_old)
//! wait_drain(j): loop { u = Σ unlock[j] (Acquire); l = Σ lock[j] (SeqCst);
//!                       if l == u { return } backoff() }
//! ```
//!
//! # Why it is safe
//! Claim: if a reader obtained `p == P_old`, its R3 happens-before `free(P_old)`.
//! 1. R1/R2 against the updater's swap/U1/counter loads is the store-buffering pattern: since
//!    the reader's R2 did not see `P_new`, the updater's later loads of `lock[i]` (in whichever
//!    `wait_drain` scans index `i`; the two waits scan *both* indices) see the reader's
//!    increment.
//! 2. In `wait_drain`, every unlock that is counted has its lock counted too: the Acquire load
//!    that saw the unlock synchronizes with R3, and the reader's R1 precedes R3, so the later
//!    lock loads see R1. Hence `l - u` = number of counted readers whose unlock was not counted,
//!    and `l == u` means every counted reader, ours included, has done R3, whose Release makes
//!    all its uses of `*p` happen-before the Acquire load and so before the free.
//!
//! So *safety* needs both indices scanned after the swap. The phase flip is for *progress*:
//! new readers use the other index, so the one being drained only has readers that were
//! already inside (or stragglers that read `phase` before a flip), and a constant stream of
//! readers cannot keep it busy for ever. Skipping either wait is unsafe; `tests/loom.rs` shows
//! loom finding the use-after-free for both broken variants and none for the real one.
//!
//! # Costs and properties
//! Read side: one `lock xadd`, one plain load, one `lock xadd` (uncontended, per-CPU line).
//! No reader ever waits. A reader blocked for a long time (page fault, `userfaultfd`) delays
//! grace periods of its own domain only; this is why faultable and non-faultable probes use
//! separate domains. A thread that dies inside a read-side section (e.g. `pthread_exit` from a
//! probe) leaves its counter unbalanced and every later grace period of that domain hangs: use
//! the deferred reclaimer, which never blocks the caller. Calling `synchronize` from inside a
//! read-side section of the same domain deadlocks.

use crate::sync::{fence, lock, sc_fence_for_model, wait_backoff, AtomicPtr, AtomicU64};
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// One CPU slot: reader counters for both phases, alone on their cache lines (128 bytes, so the
/// adjacent-line prefetcher does not couple two slots).
#[repr(align(128))]
struct Slot {
    lock: [AtomicUsize; 2],
    unlock: [AtomicUsize; 2],
}

/// A sleepable-RCU domain.
pub struct Srcu {
    /// Low bit selects the counter index new readers use. Written by updaters under `gp_lock`.
    phase: AtomicUsize,
    slots: Box<[Slot]>,
    /// Serializes grace periods (never taken by readers).
    gp_lock: Mutex<()>,
    /// Number of drain polls that found readers still inside (diagnostics and tests).
    busy_polls: AtomicU64,
}

/// Proof of being inside a read-side critical section; leaving it (drop) marks the reader done.
pub struct ReadGuard<'a> {
    slot: &'a Slot,
    idx: usize,
}

/// Which wait a deliberately broken grace period leaves out (loom tests only).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum Broken {
    /// Do not wait for stragglers on the inactive index before flipping.
    SkipInactiveWait,
    /// Flip but do not wait for the readers of the index that was active.
    SkipActiveWait,
}

impl Srcu {
    /// A domain with `slots` CPU slots (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let n = slots.clamp(1, 1 << 12).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                lock: [AtomicUsize::new(0), AtomicUsize::new(0)],
                unlock: [AtomicUsize::new(0), AtomicUsize::new(0)],
            })
            .collect();
        Srcu {
            phase: AtomicUsize::new(0),
            slots,
            gp_lock: Mutex::new(()),
            busy_polls: AtomicU64::new(0),
        }
    }

    /// Enter a read-side critical section on the current CPU's slot.
    #[inline(always)]
    pub fn read_lock(&self) -> ReadGuard<'_> {
        self.read_lock_on(crate::sync::cpu_hint())
    }

    /// Enter a read-side critical section using slot `cpu` (modulo the slot count). Any slot is
    /// correct; the CPU's own slot avoids sharing cache lines.
    #[inline(always)]
    pub fn read_lock_on(&self, cpu: usize) -> ReadGuard<'_> {
        let slot = &self.slots[cpu & (self.slots.len() - 1)];
        // Relaxed: any value is safe (both indices are drained after every pointer swap); the
        // phase only steers new readers away from the index being drained.
        let idx = self.phase.load(Ordering::Relaxed) & 1;
        // SeqCst (R1): pairs with the updater's SeqCst swap + fence U1 + SeqCst counter loads
        // (store-buffering: either the updater sees this increment or we see the new pointer).
        slot.lock[idx].fetch_add(1, Ordering::SeqCst);
        sc_fence_for_model();
        ReadGuard { slot, idx }
    }

    /// Wait until every read-side critical section that might have observed a pointer value
    /// replaced before this call has ended. Never call it inside a read-side section of this
    /// domain.
    pub fn synchronize(&self) {
        self.synchronize_with([true, true]);
    }

    /// A grace period with one of its two waits left out: **unsafe**, for the model checker to
    /// demonstrate that both waits are needed.
    #[allow(dead_code)]
    pub fn synchronize_broken(&self, broken: Broken) {
        match broken {
            Broken::SkipInactiveWait => self.synchronize_with([false, true]),
            Broken::SkipActiveWait => self.synchronize_with([true, false]),
        }
    }

    fn synchronize_with(&self, waits: [bool; 2]) {
        let _g = lock(&self.gp_lock);
        // SeqCst fence (U1): pairs with the readers' SeqCst lock increment (R1) and pointer
        // load (R2): orders the caller's pointer swap before the counter loads below.
        fence(Ordering::SeqCst);
        // Relaxed: only updaters write `phase`, and they hold gp_lock.
        let phase = self.phase.load(Ordering::Relaxed);
        let active = phase & 1;
        if waits[0] {
            self.wait_drain(active ^ 1);
        }
        // Relaxed: see read_lock_on; visibility of the flip only affects progress.
        self.phase.store(phase.wrapping_add(1), Ordering::Relaxed);
        if waits[1] {
            self.wait_drain(active);
        }
    }

    fn wait_drain(&self, idx: usize) {
        let mut polls = 0u32;
        loop {
            let mut unlocks = 0usize;
            for s in self.slots.iter() {
                // Acquire: pairs with the Release unlock increment (R3) in ReadGuard::drop, so a
                // counted unlock brings its reader's lock increment and uses of the data with it.
                unlocks = unlocks.wrapping_add(s.unlock[idx].load(Ordering::Acquire));
            }
            let mut locks = 0usize;
            for s in self.slots.iter() {
                // SeqCst: pairs with the readers' SeqCst lock increment (R1) (store-buffering
                // with the pointer swap; see the module doc).
                locks = locks.wrapping_add(s.lock[idx].load(Ordering::SeqCst));
            }
            if locks == unlocks {
                return;
            }
            self.busy_polls.fetch_add(1, Ordering::Relaxed);
            polls = polls.saturating_add(1);
            wait_backoff(polls);
        }
    }

    /// Number of grace-period polls so far that found readers still inside.
    #[allow(dead_code)]
    pub fn busy_polls(&self) -> u64 {
        self.busy_polls.load(Ordering::Relaxed)
    }
}

impl Drop for ReadGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release (R3): pairs with the Acquire unlock loads in wait_drain; every use of data
        // read under this guard happens-before the updater's free.
        self.slot.unlock[self.idx].fetch_add(1, Ordering::Release);
    }
}

/// Load an RCU-protected pointer inside a read-side section. The reference lives no longer than
/// the guard, and the updater frees the target only after a grace period.
///
/// # Safety
/// `p` must only ever hold null or pointers to `T`s that are valid when published and are
/// freed only after [`Srcu::synchronize`] on `guard`'s domain, called after they were swapped
/// out of `p` with [`rcu_swap`].
#[inline(always)]
pub unsafe fn rcu_load<'g, T>(p: &AtomicPtr<T>, _guard: &'g ReadGuard<'_>) -> Option<&'g T> {
    // SeqCst (R2): pairs with the SeqCst swap in rcu_swap (store-buffering with R1, and
    // acquire of the published T's contents).
    let raw = p.load(Ordering::SeqCst);
    // SAFETY: per the contract, a non-null value is a live T until a grace period that started
    // after it was swapped out has ended, and that grace period waits for `_guard`.
    unsafe { raw.as_ref() }
}

/// Is the protected pointer currently null? A hint (no guard needed; nothing is dereferenced).
#[inline(always)]
pub fn rcu_is_null<T>(p: &AtomicPtr<T>) -> bool {
    p.load(Ordering::Relaxed).is_null()
}

/// Publish `new` in `p` and return the previous value, which must not be freed before a
/// [`Srcu::synchronize`] that starts after this call returns.
pub fn rcu_swap<T>(p: &AtomicPtr<T>, new: *mut T) -> *mut T {
    // SeqCst: publishes `*new` (release) to readers' SeqCst load R2, and takes part in the
    // store-buffering pattern with R1 (followed by fence U1 in synchronize).
    p.swap(new, Ordering::SeqCst)
}
