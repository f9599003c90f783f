//! The primitives `srcu.rs` is written against, for the real build (std atomics).
//!
//! `tests/loom.rs` compiles the very same `srcu.rs` against a module with these names backed by
//! `loom`, so the model checker exercises the production protocol, not a copy of it.

pub(crate) use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
pub(crate) use std::sync::Mutex;

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

/// CPU the calling thread is probably running on (only a hint: the protocol is correct whatever
/// it returns, it only decides which cache line the reader's counters live on).
#[inline(always)]
pub(crate) fn cpu_hint() -> usize {
    crate::cpu::current()
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
