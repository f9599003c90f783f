//! Per-thread state (reentrancy guard, vfork-child flag, cached thread id), the cached process
//! id, the clock, `errno`, and [`traced`], the shape every wrapper shares.
//!
//! # Who writes what
//! * `STATE` is thread-local: only its thread reads and writes it — except in a `vfork` child,
//!   which runs on the parent thread's memory (and TLS) while that thread is suspended. The
//!   child sets [`VFORK_CHILD`] there; the parent clears it when it resumes (`vfork.rs`).
//! * `PID` is written by the constructor and by the `pthread_atfork` child handler (in the new
//!   process, before `fork` returns there); read by every event.
//! * The clock words are written once by the constructor before any tracepoint can be active.

use faultline_ringbuf::ClockKind;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Set while this thread runs tracer code: a wrapped call made now comes from faultline itself
/// (or from a signal handler interrupting it) and goes straight to libc.
pub(crate) const IN_TRACER: u8 = 1;
/// Set in a `vfork` child (shared TLS with the suspended parent thread): nothing is recorded.
pub(crate) const VFORK_CHILD: u8 = 2;

pub(crate) struct ThreadState {
    pub(crate) flags: Cell<u8>,
    tid: Cell<u32>,
    /// This thread's `errno` slot (`__errno_location()`, a thread-local address that never
    /// changes for the thread; a fork child's thread has the same one), cached by [`traced`]:
    /// null until its first recorded call.
    errno: Cell<*mut i32>,
}

impl ThreadState {
    /// This thread's `errno` slot (module docs of [`ThreadState::errno`]).
    #[inline(always)]
    fn errno_slot(&self) -> *mut i32 {
        let p = self.errno.get();
        if !p.is_null() {
            return p;
        }
        // SAFETY: __errno_location has no preconditions; it returns this thread's slot.
        let p = unsafe { libc::__errno_location() };
        self.errno.set(p);
        p
    }
}

thread_local! {
    pub(crate) static STATE: ThreadState = const {
        ThreadState { flags: Cell::new(0), tid: Cell::new(0), errno: Cell::new(std::ptr::null_mut()) }
    };
}

static PID: AtomicU32 = AtomicU32::new(0);
/// 0 = TSC, 1 = CLOCK_MONOTONIC (nanoseconds).
static CLOCK: AtomicU8 = AtomicU8::new(1);
/// Nanoseconds per tick, as a 32.32 fixed-point number.
static NS_PER_TICK: AtomicU64 = AtomicU64::new(1 << 32);

/// Record the clock of the channel (constructor).
pub(crate) fn set_clock(kind: ClockKind, freq: u64) {
    let mult = ((1_000_000_000u128 << 32) / freq.max(1) as u128).min(u64::MAX as u128) as u64;
    // Relaxed: written before any tracepoint is enabled (set_events publishes with SeqCst).
    NS_PER_TICK.store(mult, Ordering::Relaxed);
    CLOCK.store(
        match kind {
            ClockKind::Tsc => 0,
            ClockKind::Monotonic => 1,
        },
        Ordering::Relaxed,
    );
}

/// Clock ticks now.
#[inline(always)]
pub(crate) fn now() -> u64 {
    // Relaxed: constant after the constructor.
    if CLOCK.load(Ordering::Relaxed) == 0 {
        faultline_rseq::rdtsc()
    } else {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid out-pointer; CLOCK_MONOTONIC always exists (vDSO, no
        // interposed function is called).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}

/// Nanoseconds between two [`now`] values.
#[inline(always)]
pub(crate) fn ns(t0: u64, t1: u64) -> u64 {
    // Relaxed: constant after the constructor.
    let m = NS_PER_TICK.load(Ordering::Relaxed);
    ((t1.wrapping_sub(t0) as u128 * m as u128) >> 32) as u64
}

/// Refresh the cached process id (constructor, fork child).
pub(crate) fn reset_ids() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    // Relaxed: each process writes its own copy; the readers are its own threads, which see
    // their own thread's store (constructor, or the fork child before fork returns).
    PID.store(pid, Ordering::Relaxed);
    let _ = STATE.try_with(|s| s.tid.set(0));
}

/// This process's id.
#[inline(always)]
pub(crate) fn pid() -> u32 {
    // Relaxed: see `reset_ids`.
    PID.load(Ordering::Relaxed)
}

/// This thread's id (cached after the first call on the thread).
#[inline(always)]
pub(crate) fn tid() -> u32 {
    STATE
        .try_with(|s| {
            let t = s.tid.get();
            if t != 0 {
                return t;
            }
            // SAFETY: gettid has no preconditions.
            let t = unsafe { libc::gettid() } as u32;
            s.tid.set(t);
            t
        })
        .unwrap_or(0)
}

/// The calling thread's `errno`.
#[inline(always)]
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno`.
#[inline(always)]
pub(crate) fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Whether a wrapper may record on this thread now (no tracer code below us on the stack, not
/// a vfork child). Reading the flags never fails: `STATE` has no destructor.
#[inline(always)]
pub(crate) fn may_record() -> bool {
    STATE.try_with(|s| s.flags.get() == 0).unwrap_or(false)
}

/// Run `f` with the reentrancy guard set, keeping the caller's `errno`.
#[inline(always)]
pub(crate) fn in_tracer<R>(f: impl FnOnce() -> R) -> R {
    let saved = errno();
    let _ = STATE.try_with(|s| s.flags.set(s.flags.get() | IN_TRACER));
    let r = f();
    let _ = STATE.try_with(|s| s.flags.set(s.flags.get() & !IN_TRACER));
    set_errno(saved);
    r
}

/// What a wrapper knows after the real call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Done {
    /// `errno` if the call failed, else 0.
    pub errno: i32,
    /// The call's entry time, clock ticks ([`now`]): the `dur_ns` argument of its event,
    /// which records the nanoseconds from it to the event's own timestamp (`events::direct`).
    pub start: u64,
    pub pid: u32,
    pub tid: u32,
}

/// The shape of every returning wrapper: if `active` (the tracepoint's flag) and this thread
/// may record, note the entry time, call `real`, then call `record` with its result under the
/// reentrancy guard;
/// `errno` is what `real` left. `failed` says whether the result means failure (then `errno`
/// is recorded). One thread-local access for the whole call.
#[inline(always)]
pub(crate) fn traced<R: Copy>(
    active: bool,
    real: impl FnOnce() -> R,
    failed: impl FnOnce(R) -> bool,
    record: impl FnOnce(R, Done),
) -> R {
    if !active {
        return real();
    }
    let Ok(s) = STATE.try_with(|s| s as *const ThreadState) else {
        return real();
    };
    // SAFETY: `STATE` has no destructor, so it lives as long as this thread, and the reference
    // does not leave this call on this thread.
    let s = unsafe { &*s };
    if s.flags.get() != 0 {
        return real();
    }
    // One clock read: the call's end is the event's own timestamp (`events::direct`). A
    // second read here, right after the system call returned, waited for it to retire and
    // was ~40 ns of a ~200 ns wrapped call on an Intel Xeon VM.
    let t0 = now();
    let r = real();
    let slot = s.errno_slot();
    // SAFETY: this thread's errno slot, always valid.
    let e = unsafe { *slot };
    let mut t = s.tid.get();
    if t == 0 {
        // SAFETY: gettid has no preconditions.
        t = unsafe { libc::gettid() } as u32;
        s.tid.set(t);
    }
    let done = Done {
        errno: if failed(r) { e } else { 0 },
        start: t0,
        pid: pid(),
        tid: t,
    };
    s.flags.set(s.flags.get() | IN_TRACER);
    record(r, done);
    s.flags.set(s.flags.get() & !IN_TRACER);
    // SAFETY: as above.
    unsafe { *slot = e };
    r
}
