//! Per-CPU counter increment: one rseq critical section that reads the CPU id inside itself.
//!
//! [`percpu_inc`] adds 1 to `base[c * 16]` (a 128-byte stride), `c` being the CPU the thread
//! runs on when the section commits. The commit is a single non-locked
//! `add qword ptr [..], 1`; the CPU id is read inside the section, so there is no "wrong CPU"
//! outcome: if the thread migrates, is preempted or takes a signal before the `add` retires,
//! the kernel restarts it at the abort label and nothing was done ([`PercpuInc::Aborted`]; the
//! caller retries). A CPU id beyond the array gives [`PercpuInc::OutOfRange`], nothing done.
//!
//! # Who writes what
//! Word `c` is written only by this critical section running on CPU `c` (any thread of the
//! process). Other threads may read it with atomic loads at any time: an aligned 8-byte `add`
//! is single-copy atomic on x86, so a reader never sees a torn value, and a plain store is a
//! release store under x86-TSO (the asm block is a compiler barrier, so earlier accesses of
//! the caller stay before it in program order).
//!
//! It is the read side of the tracepoint layer's SRCU domains (a reader counts itself in and
//! out without a locked instruction; the updater pays with `membarrier`).

/// Outcome of [`percpu_inc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercpuInc {
    /// The word of the calling thread's CPU was incremented.
    Done,
    /// The kernel aborted the critical section (preemption, migration, signal): nothing done.
    Aborted,
    /// The CPU id is `>= n`: nothing done.
    OutOfRange,
}

/// Stride between two CPUs' words, in `u64`s (128 bytes: the adjacent-line prefetcher does not
/// couple two CPUs' words).
pub const PERCPU_STRIDE: usize = 16;

/// One rseq critical section: `c = rseq->cpu_id; if c >= n { OutOfRange } base[c * 16] += 1`,
/// the add being the single commit instruction (no `lock`). See the module docs.
///
/// # Safety
/// rseq must be registered for the calling thread and `off` must be glibc's `__rseq_offset`
/// ([`Registration::get`](crate::Registration::get)); `base.add(c * PERCPU_STRIDE)` must be a
/// valid, 8-aligned `u64` for every `c < n`, written only by this function running on CPU `c`
/// (and read only with atomic loads).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn percpu_inc(off: isize, base: *mut u64, n: usize) -> PercpuInc {
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

/// Without x86_64 rseq support there is no critical section: always
/// [`PercpuInc::OutOfRange`] (nothing done; callers use atomics).
///
/// # Safety
/// None needed; the signature matches the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub unsafe fn percpu_inc(_off: isize, _base: *mut u64, _n: usize) -> PercpuInc {
    PercpuInc::OutOfRange
}
