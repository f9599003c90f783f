//! Cheap "which CPU am I on" hint for spreading reader counters over cache lines, and the
//! per-CPU increment of the SRCU read side.
//!
//! glibc's rseq registration is found by `faultline-rseq` (`Registration`, one `dlsym` lookup
//! per process); [`current`] reads the kernel-maintained CPU id through it, falling back to
//! `sched_getcpu()` without rseq. The value is only a hint: the thread may migrate right after.
//!
//! [`percpu_inc`] is the one rseq critical section of this crate: the SRCU read side's per-CPU
//! counter increment (see `srcu.rs`). It reads the CPU id inside the section, so its only
//! failure is a kernel restart (or a CPU id beyond the counter array).

/// The CPU the calling thread was last seen on by the kernel.
#[inline(always)]
pub(crate) fn current() -> usize {
    faultline_rseq::current_cpu() as usize
}

/// glibc's rseq offset if rseq is registered.
pub(crate) fn rseq_offset() -> Option<isize> {
    faultline_rseq::Registration::get().map(|r| r.offset)
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
