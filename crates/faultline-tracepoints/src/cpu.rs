//! Cheap "which CPU am I on" hint for spreading reader counters over cache lines, and glibc's
//! rseq offset for the SRCU read side.
//!
//! glibc's rseq registration is found by `faultline-rseq` (`Registration`, one `dlsym` lookup
//! per process); [`current`] reads the kernel-maintained CPU id through it, falling back to
//! `sched_getcpu()` without rseq. The value is only a hint: the thread may migrate right after.
//!
//! The SRCU read side's per-CPU increment is `faultline_rseq::percpu_inc` (every rseq critical
//! section lives in `faultline-rseq`).

/// The CPU the calling thread was last seen on by the kernel.
#[inline(always)]
pub(crate) fn current() -> usize {
    faultline_rseq::current_cpu() as usize
}

/// glibc's rseq offset if rseq is registered.
pub(crate) fn rseq_offset() -> Option<isize> {
    faultline_rseq::Registration::get().map(|r| r.offset)
}
