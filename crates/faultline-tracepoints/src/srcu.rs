//! Sleepable read-copy-update for probe arrays: readers never lock or wait; updaters publish a
//! new immutable array, wait for a grace period, then free the old one.
//!
//! # Two read-side flavours
//! * **rseq** (the default when available): a reader counts itself in and out with per-CPU
//!   increments done by rseq critical sections (`faultline_rseq::percpu_inc`: the CS reads
//!   `rseq->cpu_id` and commits with one non-locked `add qword ptr [slot], 1`; the kernel
//!   restarts it if the thread is preempted, migrated or signalled before the `add`). No
//!   locked instruction and no fence: only compiler barriers. The ordering a reader no longer
//!   pays for is paid by the updater, once per grace period, with
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (the asymmetric fence of liburcu's
//!   membarrier flavour; `faultline_rseq::membarrier_private_expedited`).
//! * **atomic** (the default, and the fallback): `lock xadd` increments (a `SeqCst` RMW in, a `Release` RMW
//!   out), paired with a `SeqCst` fence in the updater. Used when glibc did not register rseq,
//!   when membarrier is unavailable (kernel, seccomp), for a CPU id beyond the slot array, unless
//!   `FAULTLINE_SRCU=rseq` asks for the rseq flavour, or as chosen with [`Srcu::set_flavour`] /
//!   `faultline_tracepoints::set_srcu_flavour`.
//!
//! [`Srcu::read_lock_fast`] (the recording fast path's fallback read side; its usual one is the
//! hazard record of `hazard.rs`) uses the rseq flavour
//! whenever it has been set up ([`Srcu::enable_rseq_readers`], or the rseq flavour chosen:
//! bit 2 of `ctl`), whatever the flavour [`Srcu::read_lock`] readers use; it is the same
//! protocol, since readers of both flavours may already be inside together and every grace
//! period after the set-up issues the membarrier (`tests/loom.rs` checks it, and that a grace
//! period without the membarrier is caught).
//!
//! The flavour is a bit of the domain's `ctl` word that each reader reads as it enters; it can
//! be changed at any time, with readers of both flavours inside, because the two flavours count
//! on separate words, every grace period sums both, and once the rseq flavour has been enabled
//! every later grace period issues the membarrier.
//!
//! Why `percpu_inc` rather than `faultline_rseq::addv`: reading the CPU inside the CS
//! removes the "wrong CPU, retry" outcome and the separate `cpu_id` read before it, and the
//! single-instruction commit needs no load/add/store sequence; the abort path is out of line.
//!
//! # Data
//! A domain ([`Srcu`]) has a `ctl` word (bit 0: the counter index new readers use, the
//! *phase*; bit 1: readers use the rseq flavour) and, per CPU slot (128-byte aligned, so the
//! adjacent-line prefetcher does not couple two slots), eight counters: `lock[0..2]`,
//! `unlock[0..2]` (atomic flavour) and `rlock[0..2]`, `runlock[0..2]` (rseq flavour).
//! Protected data is reached through an `AtomicPtr<T>` to an immutable `T` (never written
//! after publication).
//!
//! # Who writes what
//! * Readers (any thread, any number, may nest, may run in signal handlers, may block for ever
//!   in a page fault): increment a lock counter of index `i` and later the matching unlock
//!   counter of index `i`.
//!   - atomic flavour: atomic RMWs on *some* slot (the CPU's, as a hint).
//!   - rseq flavour: `rlock`/`runlock` of slot `c` are written **only** by rseq critical
//!     sections that ran on CPU `c` (the CS reads the CPU id inside itself), so the
//!     non-locked read-modify-write cannot lose a concurrent update: on one CPU the CS is
//!     atomic (a preemption or a signal handler before the commit restarts it; the commit is
//!     one instruction, which an interrupt cannot split), and no other CPU writes that word. A CPU id `>= slots` (not expected: slots cover every possible CPU) falls back to
//!     the atomic counters for that increment.
//! * Updaters (serialized by `gp_lock`): swap the pointer, issue the fences, flip the phase,
//!   read counters. Only updaters write `ctl`, under `gp_lock`.
//!
//! # Protocol
//! ```text
//! reader (rseq flavour):                      updater (retiring P_old):
//!   c = ctl (Acquire); i = c & 1                P_old = ptr.swap(P_new)        (SeqCst)
//!   rlock[cpu][i] += 1   (rseq commit)   R1     fence(SeqCst)                   U1
//!   compiler barrier                            membarrier(PRIVATE_EXPEDITED)   M
//!   p = ptr              (SeqCst = mov)  R2     wait_drain(!(phase & 1))  // stragglers
//!   ... use *p, may block, may migrate ...      phase += 1
//!   compiler barrier                            wait_drain(old phase & 1) // current readers
//!   runlock[cpu'][i] += 1 (rseq commit)  R3     free(P_old)
//!
//! reader (atomic flavour): R1 = lock[s][i].fetch_add(1, SeqCst), R3 = unlock[s][i]
//!   .fetch_add(1, Release); R2 as above.
//!
//! wait_drain(j): loop { u = Σ_slots unlock[j] + runlock[j]  (Acquire)
//!                       l = Σ_slots lock[j] + rlock[j]      (SeqCst)
//!                       if l == u { return } backoff() }
//! ```
//! `M` is issued only by domains on which the rseq flavour was ever enabled (then by every
//! later grace period, whatever the current flavour). If it fails (it cannot after a
//! successful registration, short of memory exhaustion) the grace period retries it with
//! backoff: it never proceeds without it.
//!
//! # Why it is safe
//! Claim: if a reader obtained `p == P_old`, its R3 happens-before `free(P_old)`.
//!
//! 1. *The updater counts the reader in, or the reader sees `P_new`.* This is the
//!    store-buffering pattern (reader: store R1, load R2; updater: store swap, load counters)
//!    and needs a full barrier on both sides.
//!    - atomic flavour: R1 is a `SeqCst` RMW and R2 a `SeqCst` load; the swap, U1 and the
//!      counter loads are `SeqCst`: the single total order forbids both loads missing the
//!      other side's store.
//!    - rseq flavour: R1 is a plain store and only a compiler barrier separates it from R2, so
//!      the CPU may perform R2 before R1 is visible. `M` supplies the reader's barrier: when
//!      it returns, every thread of the process has executed a full barrier at some point
//!      `B` of its execution after the swap (running threads take an IPI; others pass through
//!      the scheduler before running again). If `B` is after R1 in the reader's program
//!      order, R1 is visible to the updater's counter loads (they follow `M`). If `B` is
//!      before R1, it is before R2, and R2 sees the swap (which precedes `M`). `B` cannot
//!      fall "inside" R1: the only effect of the rseq critical section is its commit store,
//!      one instruction. So `M` replaces, for every reader at once, the `SeqCst` RMW the
//!      reader no longer executes.
//!
//!    Either way, since the reader saw `P_old`, the updater's counter loads (in whichever
//!    `wait_drain` scans index `i`: the two waits scan *both* indices, and both follow U1 and
//!    `M`) see its lock increment.
//! 2. *In `wait_drain`, every unlock that is counted has its lock counted too*: the Acquire
//!    load that saw the unlock synchronizes with R3 (a `Release` RMW; or, in the rseq flavour,
//!    the commit store: on x86-TSO every store is a release store and the asm block is a
//!    compiler barrier), and the reader's R1 precedes R3, so the later lock loads see R1.
//!    Hence `l - u` = number of counted readers whose unlock was not counted, and `l == u`
//!    means every counted reader, ours included, has done R3. R3 being a release, all the
//!    reader's uses of `*p` happen-before the Acquire load and so before the free. (A
//!    weakly-ordered architecture would need a release fence before the commit store, or a
//!    second `M` after the drain as liburcu does; the rseq flavour exists on x86_64 only.)
//!
//! So *safety* needs `M` (rseq flavour) and both indices scanned after the swap. The phase
//! flip is for *progress*: new readers use the other index, so the one being drained only has
//! readers that were already inside (or stragglers that read `ctl` before a flip), and a
//! constant stream of readers cannot keep it busy for ever. Which index a reader uses, and
//! whether the flip is visible to it yet, does not matter for safety.
//!
//! *Migration* between R1 and R3 (the reader blocks, is moved to another CPU, unlocks there)
//! is fine: only the sums over all slots are compared, and a lock on slot `a` with an unlock
//! on slot `b` contributes one to each sum. Each increment is still done by a CS running on
//! its slot's CPU.
//!
//! *Nesting and signals*: a reader interrupted (between R1 and R3) by a signal handler that
//! itself reads adds a balanced pair; a handler interrupting an rseq CS makes the kernel
//! restart that CS after the handler returns (before its commit store, so nothing is counted
//! twice). Nothing on the read side allocates, locks or waits.
//!
//! `tests/loom.rs` model-checks this file (compiled unchanged against loom): per-CPU critical
//! sections and `M` are modelled with per-CPU mutexes; loom finds the use-after-free when the
//! updater skips `M` or either wait, and none for the real protocol, in both flavours.
//!
//! # Costs and properties
//! Read side, rseq flavour: a load of `ctl` and of the rseq offset (same line), then twice (in
//! and out) one rseq critical section (a store of the CS descriptor pointer, a load of
//! `cpu_id`, a bounds check, a non-locked `add` on the CPU's own line): no locked instruction,
//! no fence. Atomic flavour: two `lock xadd`. Measured on the 2-vCPU AMD EPYC VM
//! (`benches/tracepoints.rs`, medians, same run): a bare enter+leave costs ~2.3-3.3 ns
//! (rseq) vs ~4.8 ns (atomic); but inside `Tracepoint::fire` around a no-op probe call the two
//! are within a few tenths of a nanosecond (~5.2-5.7 ns of dispatch overhead), because on this
//! CPU an uncontended `lock xadd` on an L1-resident line with an empty store buffer is cheap
//! when it overlaps other work; the atomic flavour is therefore the default. The rseq flavour
//! is expected to pay off where a locked instruction is expensive (a probe leaving many stores
//! in flight, which the `lock` must drain; CPUs with costlier atomics) — not shown on this
//! machine; select it with `FAULTLINE_SRCU=rseq` and measure. Update side: the rseq flavour
//! adds one `membarrier` system call per grace period (a few microseconds: IPIs to the CPUs
//! running this process's threads); the first one also registers the process.
//!
//! No reader ever waits. A reader blocked for a long time (page fault, `userfaultfd`) delays
//! grace periods of its own domain only; `M` does not wait for it (a thread that is not
//! running needs no IPI). This is why faultable and non-faultable probes use separate
//! domains. A thread that dies inside a read-side section (e.g. `pthread_exit` from a probe)
//! leaves its counter unbalanced and every later grace period of that domain hangs: use the
//! deferred reclaimer, which never blocks the caller. Calling `synchronize` from inside a
//! read-side section of the same domain deadlocks.

use crate::sync::{compiler_fence, fence, lock, sc_fence_for_model, wait_backoff};
use crate::sync::{membarrier, percpu_available, percpu_inc};
use crate::sync::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering};

/// `ctl` bit: the counter index new readers use.
const IDX: usize = 1;
/// `ctl` bit: readers use the rseq flavour.
const RSEQ: usize = 2;
/// `ctl` bit: the rseq flavour is set up (glibc's offset stored, every grace period issues the
/// membarrier), so [`Srcu::read_lock_fast`] readers may use it whatever the chosen flavour.
const RSEQ_OK: usize = 4;

/// One CPU slot: reader counters for both phases and both flavours, alone on their cache lines
/// (128 bytes, so the adjacent-line prefetcher does not couple two slots).
#[repr(align(128))]
struct Slot {
    /// Atomic flavour: atomic RMWs from any CPU.
    lock: [AtomicU64; 2],
    unlock: [AtomicU64; 2],
    /// rseq flavour: written only by rseq critical sections running on this slot's CPU; read
    /// by updaters with atomic loads.
    rlock: [AtomicU64; 2],
    runlock: [AtomicU64; 2],
}

/// How readers count themselves in and out (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `lock xadd` increments; the updater pairs them with a `SeqCst` fence.
    Atomic,
    /// Per-CPU increments in rseq critical sections; the updater pairs them with `membarrier`.
    Rseq,
}

/// Updater-side state, under `gp_lock`.
struct GpState {
    /// The rseq flavour was enabled at some point: readers may have plain increments in
    /// flight, so every grace period must issue the membarrier.
    rseq_ever: bool,
}

/// A sleepable-RCU domain.
pub struct Srcu {
    /// Bit 0: counter index for new readers; bit 1: rseq flavour. Written only under `gp_lock`.
    ctl: AtomicUsize,
    /// glibc's rseq offset, valid when the rseq bit is set (kept next to `ctl`, on its line).
    rseq_off: AtomicIsize,
    slots: Box<[Slot]>,
    /// Serializes grace periods and flavour changes (never taken by readers).
    gp_lock: Mutex<GpState>,
    /// Number of drain polls that found readers still inside (diagnostics and tests).
    busy_polls: AtomicU64,
}

/// Proof of being inside a read-side critical section; leaving it (drop) marks the reader done.
pub struct ReadGuard<'a> {
    srcu: &'a Srcu,
    /// Slot of the atomic lock increment (unused for the rseq flavour).
    slot: usize,
    /// Counter index (bit 0) and whether the lock increment used the rseq counters (bit 1).
    tag: usize,
}

/// Which step a deliberately broken grace period leaves out (loom tests only).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum Broken {
    /// Do not wait for stragglers on the inactive index before flipping.
    SkipInactiveWait,
    /// Flip but do not wait for the readers of the index that was active.
    SkipActiveWait,
    /// Do not issue the membarrier (rseq readers' increments may be missed).
    OmitMembarrier,
}

impl Srcu {
    /// A domain with `slots` CPU slots (rounded up to a power of two, at least 1), in the
    /// atomic flavour (see [`Srcu::set_flavour`]).
    pub fn new(slots: usize) -> Self {
        let n = slots.clamp(1, 1 << 12).next_power_of_two();
        let z = || [AtomicU64::new(0), AtomicU64::new(0)];
        let slots = (0..n)
            .map(|_| Slot {
                lock: z(),
                unlock: z(),
                rlock: z(),
                runlock: z(),
            })
            .collect();
        Srcu {
            ctl: AtomicUsize::new(0),
            rseq_off: AtomicIsize::new(0),
            slots,
            gp_lock: Mutex::new(GpState { rseq_ever: false }),
            busy_polls: AtomicU64::new(0),
        }
    }

    /// Choose how new readers count themselves; returns the flavour in effect (the rseq
    /// flavour needs rseq and membarrier: without them the domain stays atomic). Safe at any
    /// time, with readers of either flavour inside. Waits for a running grace period.
    pub fn set_flavour(&self, want: Flavour) -> Flavour {
        let mut st = lock(&self.gp_lock);
        // Relaxed: only updaters write ctl, and we hold gp_lock.
        let ctl = self.ctl.load(Ordering::Relaxed);
        let off = if want == Flavour::Rseq {
            percpu_available()
        } else {
            None
        };
        if let Some(off) = off {
            // Relaxed: published by the Release store of ctl below.
            self.rseq_off.store(off, Ordering::Relaxed);
            // From now on every grace period issues the membarrier (set before any reader can
            // see the bit: readers only see it after we release it below, and grace periods
            // read rseq_ever under gp_lock).
            st.rseq_ever = true;
            // Release: pairs with the Acquire load of ctl in read_lock: a reader that sees the
            // bit also sees what percpu_available() set up (glibc's rseq offset).
            self.ctl.store(ctl | RSEQ | RSEQ_OK, Ordering::Release);
            Flavour::Rseq
        } else {
            // Release: see above (keeps ctl's stores uniformly Release).
            self.ctl.store(ctl & !RSEQ, Ordering::Release);
            Flavour::Atomic
        }
    }

    /// The flavour new readers use.
    pub fn flavour(&self) -> Flavour {
        // Relaxed: a snapshot for diagnostics.
        if self.ctl.load(Ordering::Relaxed) & RSEQ != 0 {
            Flavour::Rseq
        } else {
            Flavour::Atomic
        }
    }

    /// Enter a read-side critical section.
    #[inline(always)]
    pub fn read_lock(&self) -> ReadGuard<'_> {
        // Acquire: pairs with the Release stores of ctl in set_flavour / synchronize_with, so
        // that a reader seeing the rseq bit sees the rseq set-up (a plain load on x86). The
        // phase bit is only a hint (both indices are drained after every pointer swap).
        let ctl = self.ctl.load(Ordering::Acquire);
        let idx = ctl & IDX;
        // Relaxed: written before the Release store of ctl that set the bit we saw.
        if ctl & RSEQ != 0
            && percpu_inc(self.rseq_off.load(Ordering::Relaxed), &self.slots, |s| {
                &s.rlock[idx]
            })
        {
            // R1 (rseq flavour) is done. Compiler barrier: the pointer load R2 and every use of
            // the protected data stay after the increment in program order; the hardware may
            // still reorder R1 (a store) after R2 (a load), which the updater's membarrier M
            // accounts for (module doc, point 1). (The asm is already a compiler barrier.)
            compiler_fence(Ordering::SeqCst);
            return ReadGuard {
                srcu: self,
                slot: 0,
                tag: idx | RSEQ,
            };
        }
        self.read_lock_atomic(crate::sync::cpu_hint(), idx)
    }

    /// Set up the rseq flavour for [`read_lock_fast`](Self::read_lock_fast) readers without
    /// changing the flavour [`read_lock`](Self::read_lock) readers use: from now on every grace
    /// period issues the membarrier. Returns whether it is available (rseq and membarrier).
    /// Updaters only (may make system calls); waits for a running grace period.
    pub fn enable_rseq_readers(&self) -> bool {
        // Relaxed: a hint; the answer is re-read under gp_lock. Once set the bit stays set.
        if self.ctl.load(Ordering::Relaxed) & RSEQ_OK != 0 {
            return true;
        }
        let mut st = lock(&self.gp_lock);
        // Relaxed: only updaters write ctl, and we hold gp_lock.
        let ctl = self.ctl.load(Ordering::Relaxed);
        if ctl & RSEQ_OK != 0 {
            return true;
        }
        let Some(off) = percpu_available() else {
            return false;
        };
        // Relaxed: published by the Release store of ctl below.
        self.rseq_off.store(off, Ordering::Relaxed);
        // As in set_flavour: set before any reader can see the bit.
        st.rseq_ever = true;
        // Release: pairs with the Acquire load of ctl in read_lock_fast.
        self.ctl.store(ctl | RSEQ_OK, Ordering::Release);
        true
    }

    /// Enter a read-side critical section with the rseq flavour if it is set up
    /// ([`enable_rseq_readers`](Self::enable_rseq_readers) or the rseq flavour chosen), the
    /// atomic one otherwise. The same protocol as [`read_lock`](Self::read_lock) (readers of
    /// both flavours may be inside together; see the module doc): only the condition that
    /// picks the rseq counters differs. For the tracing fast path, which must not pay for two
    /// locked instructions per event.
    #[inline(always)]
    pub fn read_lock_fast(&self) -> ReadGuard<'_> {
        // Acquire: pairs with the Release stores of ctl in enable_rseq_readers / set_flavour
        // (a reader that sees RSEQ_OK sees glibc's offset and every later grace period issues
        // the membarrier, since rseq_ever was set first under gp_lock).
        let ctl = self.ctl.load(Ordering::Acquire);
        let idx = ctl & IDX;
        // Relaxed: written before the Release store of ctl that set the bit we saw.
        if ctl & RSEQ_OK != 0
            && percpu_inc(self.rseq_off.load(Ordering::Relaxed), &self.slots, |s| {
                &s.rlock[idx]
            })
        {
            // R1 (rseq flavour) is done; see read_lock.
            compiler_fence(Ordering::SeqCst);
            return ReadGuard {
                srcu: self,
                slot: 0,
                tag: idx | RSEQ,
            };
        }
        self.read_lock_atomic(crate::sync::cpu_hint(), idx)
    }

    /// Enter a read-side critical section with the atomic flavour, using slot `cpu` (modulo
    /// the slot count). Any slot is correct; the CPU's own slot avoids sharing cache lines.
    #[inline(always)]
    pub fn read_lock_on(&self, cpu: usize) -> ReadGuard<'_> {
        // Relaxed: the phase only steers new readers away from the index being drained.
        let idx = self.ctl.load(Ordering::Relaxed) & IDX;
        self.read_lock_atomic(cpu, idx)
    }

    #[inline(always)]
    fn read_lock_atomic(&self, cpu: usize, idx: usize) -> ReadGuard<'_> {
        let slot = cpu & (self.slots.len() - 1);
        // SeqCst (R1, atomic flavour): pairs with the updater's SeqCst swap + fence U1 + SeqCst
        // counter loads (store-buffering: either the updater sees this increment or we see the
        // new pointer).
        self.slots[slot].lock[idx].fetch_add(1, Ordering::SeqCst);
        sc_fence_for_model();
        ReadGuard {
            srcu: self,
            slot,
            tag: idx,
        }
    }

    /// Wait until every read-side critical section that might have observed a pointer value
    /// replaced before this call has ended. Never call it inside a read-side section of this
    /// domain.
    pub fn synchronize(&self) {
        self.synchronize_with([true, true], true);
    }

    /// A grace period with one of its steps left out: **unsafe**, for the model checker to
    /// demonstrate that each step is needed.
    #[allow(dead_code)]
    pub fn synchronize_broken(&self, broken: Broken) {
        match broken {
            Broken::SkipInactiveWait => self.synchronize_with([false, true], true),
            Broken::SkipActiveWait => self.synchronize_with([true, false], true),
            Broken::OmitMembarrier => self.synchronize_with([true, true], false),
        }
    }

    fn synchronize_with(&self, waits: [bool; 2], use_membarrier: bool) {
        // Held to the end: grace periods and flavour changes are serialized.
        let st = lock(&self.gp_lock);
        // SeqCst fence (U1): pairs with the atomic-flavour readers' SeqCst lock increment (R1)
        // and pointer load (R2): orders the caller's pointer swap before the counter loads.
        fence(Ordering::SeqCst);
        if st.rseq_ever && use_membarrier {
            // M: pairs with the rseq-flavour readers' lock commit store (R1) and pointer load
            // (R2), standing in for the full barrier they do not execute (module doc, point 1).
            let mut polls = 0u32;
            while !membarrier() {
                polls = polls.saturating_add(1);
                wait_backoff(polls.saturating_add(32));
            }
        }
        // Relaxed: only updaters write ctl, and they hold gp_lock.
        let ctl = self.ctl.load(Ordering::Relaxed);
        let active = ctl & IDX;
        if waits[0] {
            self.wait_drain(active ^ 1);
        }
        // Release: keeps the release sequence headed by set_flavour's store (readers' Acquire
        // load of ctl); the phase itself only affects progress.
        self.ctl.store(ctl ^ IDX, Ordering::Release);
        if waits[1] {
            self.wait_drain(active);
        }
    }

    fn wait_drain(&self, idx: usize) {
        let mut polls = 0u32;
        loop {
            let mut unlocks = 0u64;
            for s in self.slots.iter() {
                // Acquire: pairs with the unlock increment R3 (the Release RMW in
                // ReadGuard::drop, or the rseq commit store, a release store on x86), so a
                // counted unlock brings its reader's lock increment and uses of the data.
                unlocks = unlocks
                    .wrapping_add(s.unlock[idx].load(Ordering::Acquire))
                    .wrapping_add(s.runlock[idx].load(Ordering::Acquire));
            }
            let mut locks = 0u64;
            for s in self.slots.iter() {
                // SeqCst: pairs with the atomic readers' SeqCst lock increment R1 through the
                // single total order (store-buffering with the pointer swap, fence U1), and
                // comes after the membarrier M that orders the rseq readers' R1 (module doc).
                locks = locks
                    .wrapping_add(s.lock[idx].load(Ordering::SeqCst))
                    .wrapping_add(s.rlock[idx].load(Ordering::SeqCst));
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
        let idx = self.tag & IDX;
        let slots = &self.srcu.slots;
        if self.tag & RSEQ != 0 {
            // Compiler barrier: every use of the protected data stays before the commit store
            // below in program order; x86-TSO keeps earlier loads and stores before a later
            // store, which makes the commit store R3 a release store (module doc, point 2).
            compiler_fence(Ordering::SeqCst);
            // Relaxed: the guard's read_lock saw the rseq bit (Acquire), which published it.
            let off = self.srcu.rseq_off.load(Ordering::Relaxed);
            if percpu_inc(off, slots, |s| &s.runlock[idx]) {
                return;
            }
            // CPU beyond the slots: count the unlock on the atomic counters (only the sums
            // over both flavours are compared).
        }
        // Release (R3): pairs with the Acquire unlock loads in wait_drain; every use of data
        // read under this guard happens-before the updater's free.
        slots[self.slot].unlock[idx].fetch_add(1, Ordering::Release);
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
    // acquire of the published T's contents). A plain `mov` on x86.
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
    // store-buffering pattern with R1 (followed by fence U1 and membarrier M in synchronize).
    p.swap(new, Ordering::SeqCst)
}
