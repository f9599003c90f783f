//! Cheap "which CPU am I on" hint for spreading reader counters over cache lines.
//!
//! glibc >= 2.35 registers a `struct rseq` per thread at `thread_pointer + __rseq_offset`; its
//! first word, `cpu_id_start`, is kept up to date by the kernel (0 before registration). We find
//! `__rseq_offset`/`__rseq_size` with `dlsym` once (so an older glibc means "no rseq", never a
//! link error) and then read that word with one thread-pointer-relative load. Without rseq we
//! fall back to `sched_getcpu()`. The value is only a hint: the thread may migrate right after.
//!
//! [`percpu_inc`] is the one rseq critical section of this crate: the SRCU read side's per-CPU
//! counter increment (see `srcu.rs`). It reads the CPU id inside the section, so its only
//! failure is a kernel restart (or a CPU id beyond the counter array).

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

/// glibc's rseq offset if rseq is registered (looking it up on first call).
pub(crate) fn rseq_offset() -> Option<isize> {
    // Relaxed: a process constant (see `current`).
    let mut off = RSEQ_OFFSET.load(Ordering::Relaxed);
    if off == UNKNOWN {
        off = lookup();
        RSEQ_OFFSET.store(off, Ordering::Relaxed);
    }
    (off > NO_RSEQ).then_some(off)
}

/// Outcome of [`percpu_inc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PercpuInc {
    Done,
    /// The kernel aborted the critical section (preemption, migration, signal): nothing done.
    Aborted,
    /// The CPU id is `>= n`: nothing done.
    OutOfRange,
}

/// One rseq critical section: `c = rseq->cpu_id; if c >= n { OutOfRange } base[c * 16] += 1`
/// (a 128-byte stride), the add being the single commit instruction (`add qword ptr [..], 1`,
/// no `lock`). The CPU is read inside the section, so no mismatch is possible: if the thread
/// migrates (or is preempted, or takes a signal) before the add retires, the kernel restarts
/// it at the abort label.
///
/// # Safety
/// rseq must be registered ([`rseq_offset`] returned `off`); `base.add(c * 16)` must be a
/// valid, aligned `u64` for every `c < n`, written only by rseq critical sections running on
/// CPU `c`.
#[inline(always)]
pub(crate) unsafe fn percpu_inc(off: isize, base: *mut u64, n: usize) -> PercpuInc {
    let status: u32;
    // SAFETY: per the caller, fs:[off] is this thread's registered struct rseq (cpu_id at +4,
    // rseq_cs at +8) and the words are valid and CPU-owned. The section follows the kernel's
    // rules: descriptor (version 0, flags 0, start, post-commit offset, abort) in a data
    // section, the descriptor pointer stored immediately before the start label, the commit
    // as the last instruction before the post-commit label, and the 4-byte signature glibc
    // registered (0x53053053) right before the abort label.
    unsafe {
        std::arch::asm!(
            ".pushsection __rseq_cs, \"aw\"",
            ".balign 32",
            "3:",
            ".long 0, 0",
            ".quad 4f, (5f - 4f), 6f",
            ".popsection",
            ".pushsection __rseq_cs_ptr_array, \"aw\"",
            ".quad 3b",
            ".popsection",
            "xor {status:e}, {status:e}",
            "lea {tmp}, [rip + 3b]",
            "mov qword ptr fs:[{off} + 8], {tmp}",
            "4:",
            "mov {cpu:e}, dword ptr fs:[{off} + 4]",
            "cmp {cpu}, {n}",
            "jae 7f",
            "shl {cpu}, 7",
            "add qword ptr [{base} + {cpu}], 1",
            "5:",
            // Abort and out-of-range paths out of line (the fast path falls through).
            ".pushsection __rseq_failure, \"ax\"",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long 0x53053053",
            "6:",
            "mov {status:e}, 1",
            "jmp 9f",
            "7:",
            "mov {status:e}, 2",
            "jmp 9f",
            ".popsection",
            "9:",
            off = in(reg) off,
            base = in(reg) base,
            n = in(reg) n,
            cpu = out(reg) _,
            tmp = out(reg) _,
            status = out(reg) status,
            options(nostack),
        );
    }
    match status {
        0 => PercpuInc::Done,
        1 => PercpuInc::Aborted,
        _ => PercpuInc::OutOfRange,
    }
}
