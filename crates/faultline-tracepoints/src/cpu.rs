//! Cheap "which CPU am I on" hint for spreading reader counters over cache lines.
//!
//! glibc >= 2.35 registers a `struct rseq` per thread at `thread_pointer + __rseq_offset`; its
//! first word, `cpu_id_start`, is kept up to date by the kernel (0 before registration). We find
//! `__rseq_offset`/`__rseq_size` with `dlsym` once (so an older glibc means "no rseq", never a
//! link error) and then read that word with one thread-pointer-relative load. Without rseq we
//! fall back to `sched_getcpu()`. The value is only a hint: the thread may migrate right after.

use std::sync::atomic::{AtomicIsize, Ordering};

/// `__rseq_offset`, or `NO_RSEQ` (rseq unavailable), or `UNKNOWN` (not looked up yet).
static RSEQ_OFFSET: AtomicIsize = AtomicIsize::new(UNKNOWN);
const UNKNOWN: isize = isize::MIN;
const NO_RSEQ: isize = isize::MIN + 1;

fn lookup() -> isize {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names; a null result means absent.
    let (off, size) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
        )
    };
    if off.is_null() || size.is_null() {
        return NO_RSEQ;
    }
    // SAFETY: glibc defines `const ptrdiff_t __rseq_offset` and `const unsigned int
    // __rseq_size`; the pointers returned by dlsym point at them.
    let (off, size) = unsafe { (*(off as *const isize), *(size as *const u32)) };
    if size == 0 {
        NO_RSEQ
    } else {
        off
    }
}

#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86_64 Linux/glibc `fs:0` holds the TCB's self pointer (the thread pointer);
    // reading it has no side effects.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
            options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// The CPU the calling thread was last seen on by the kernel.
#[inline(always)]
pub(crate) fn current() -> usize {
    // Relaxed: the offset is a constant of the process; any thread computing it gets the same.
    let off = RSEQ_OFFSET.load(Ordering::Relaxed);
    if off > NO_RSEQ {
        let area = thread_pointer().wrapping_add_signed(off) as *const u32;
        // SAFETY: glibc registered rseq (size != 0), so every thread's rseq area lives at
        // thread_pointer + __rseq_offset for the thread's lifetime; cpu_id_start (offset 0) is
        // always a valid CPU number. Volatile: the kernel updates it behind our back.
        return unsafe { std::ptr::read_volatile(area) } as usize;
    }
    slow(off)
}

#[cold]
fn slow(off: isize) -> usize {
    if off == UNKNOWN {
        // Relaxed: idempotent publication of a process constant.
        RSEQ_OFFSET.store(lookup(), Ordering::Relaxed);
        return current();
    }
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    if c < 0 {
        0
    } else {
        c as usize
    }
}
