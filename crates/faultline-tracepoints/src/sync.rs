//! The primitives `srcu.rs` is written against, for the real build (std atomics, rseq,
//! membarrier).
//!
//! `tests/loom.rs` compiles the very same `srcu.rs` against a module with these names backed by
//! `loom`, so the model checker exercises the production protocol, not a copy of it.

pub(crate) use std::sync::atomic::{
    compiler_fence, fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
pub(crate) use std::sync::Mutex;

/// A store to a hazard word (`hazard.rs`) or a load of one, or of a slot, that the updater
/// orders with `membarrier` rather than the reader with a fence: a plain atomic access here.
/// The loom shim runs it inside the calling thread's "timeline" lock, which the model's
/// membarrier takes in turn (see `tests/loom.rs`).
#[inline(always)]
pub(crate) fn asym_store<T>(a: &AtomicPtr<T>, v: *mut T, o: Ordering) {
    a.store(v, o)
}

/// See [`asym_store`].
#[inline(always)]
pub(crate) fn asym_load<T>(a: &AtomicPtr<T>, o: Ordering) -> *mut T {
    a.load(o)
}

/// A `fence(SeqCst)` that only the loom build needs.
///
/// In the real build the reader's counter increment and its pointer load are both `SeqCst`
/// accesses, and the updater's pointer swap and counter loads are too: the C11 single total
/// order over `SeqCst` operations alone forbids the store-buffering outcome the protocol must
/// exclude (and on x86 the `lock xadd` is a full barrier anyway). loom models `SeqCst` accesses
/// as `AcqRel` but does model `fence(SeqCst)`, so the loom shim makes this a real fence to give
/// loom the same guarantee.
#[inline(always)]
pub(crate) fn sc_fence_for_model() {}

/// CPU the calling thread is probably running on (only a hint for the atomic flavour: the
/// protocol is correct whatever it returns, it only decides which cache line the reader's
/// counters live on).
#[inline(always)]
pub(crate) fn cpu_hint() -> usize {
    crate::cpu::current()
}

/// Can readers use the rseq flavour? Needs glibc's rseq registration (x86_64) and a working
/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (this issues one, registering the process).
/// Returns glibc's `__rseq_offset` (what [`percpu_inc`] needs). Called by updaters only (it
/// may initialize things and make system calls).
pub(crate) fn percpu_available() -> Option<isize> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let off = crate::cpu::rseq_offset()?;
    faultline_rseq::membarrier_private_expedited().then_some(off)
}

/// Add 1 to `word(&slots[cpu])`, where `cpu` is the CPU the calling thread runs on, with an
/// rseq critical section (`faultline_rseq::percpu_inc`: a non-locked `add` as the commit
/// instruction, restarted by the kernel if the thread is preempted, migrated or signalled
/// before it). Returns false, having done nothing, when the CPU id is `>= slots.len()` (the
/// caller then uses an atomic counter instead).
///
/// Only valid with `off` from [`percpu_available`], passed to this thread through a
/// release/acquire pair (the `ctl` word of the domain). `word(s)` must be the same field of
/// every `S`, and written only by this function running on the CPU of its slot (and read
/// with atomic loads).
#[inline(always)]
pub(crate) fn percpu_inc<S>(off: isize, slots: &[S], word: impl Fn(&S) -> &AtomicU64) -> bool {
    const { assert!(std::mem::size_of::<S>() == faultline_rseq::PERCPU_STRIDE * 8) };
    let Some(first) = slots.first() else {
        return false;
    };
    let base = word(first).as_ptr();
    loop {
        // SAFETY: rseq is registered and `off` is glibc's offset (percpu_available). The words
        // are 128 bytes apart (the const assertion and `word` picking the same field), live
        // (the caller borrows `slots`), aligned, and written only by critical sections on
        // their CPU, which the CS guarantees by reading the CPU id inside itself. The
        // non-locked `add` is single-copy atomic for an aligned word on x86, so the updater's
        // atomic loads never see a torn value.
        match unsafe { faultline_rseq::percpu_inc(off, base, slots.len()) } {
            faultline_rseq::PercpuInc::Done => return true,
            faultline_rseq::PercpuInc::Aborted => continue,
            faultline_rseq::PercpuInc::OutOfRange => return false,
        }
    }
}

/// The asymmetric fence `M` of a grace period (see `srcu.rs`): false if it failed.
pub(crate) fn membarrier() -> bool {
    faultline_rseq::membarrier_private_expedited()
}

/// Called by a grace-period wait each time it finds readers still inside. `polls` counts the
/// unsuccessful polls of this wait: spin briefly, then yield, then sleep with a growing delay
/// (a reader may be blocked in a page fault for a long time; the updater must not burn a CPU).
pub(crate) fn wait_backoff(polls: u32) {
    if polls < 16 {
        std::hint::spin_loop();
    } else if polls < 32 {
        std::thread::yield_now();
    } else {
        let shift = (polls - 32).min(10);
        std::thread::sleep(std::time::Duration::from_micros(10u64 << shift));
    }
}

/// Lock a mutex, ignoring poisoning (a panicking updater leaves consistent state: every
/// update is a single pointer swap).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
