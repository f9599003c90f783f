//! Interruption windows: "was this thread preempted, migrated or signalled since I armed?"
//!
//! # Mechanism
//! The kernel handles `rseq->rseq_cs` lazily: on every return to user space after a preemption,
//! a migration or a signal delivery (the events that abort a critical section), it looks at
//! `rseq_cs`; if the interrupted instruction pointer is **outside** the descriptor's range, it
//! simply clears `rseq_cs` to 0. So storing the address of a valid descriptor whose range is a
//! few never-executed instructions ([`arm`]) and later finding `rseq_cs == 0`
//! ([`interrupted`]) proves that at least one such event happened in between; finding it
//! non-zero proves none did (the kernel only ever writes 0). Cost: one store and one load on
//! the thread's own rseq area, no system call.
//!
//! Any rseq critical section executed inside the window stores its own descriptor into
//! `rseq_cs`, which the kernel also clears on the next event outside its range; so the answer
//! stays "interrupted since the last arm *or* the last critical section started", which is the
//! property a caller needs after reserving (reserve is itself a critical section).
//!
//! The kernel validates the descriptor before looking at the instruction pointer (version 0,
//! addresses below `TASK_SIZE`, abort address outside the range, and the registered signature
//! in the 4 bytes before the abort address), so the dummy descriptor points to real code with
//! the signature, like every other critical section of this crate. A page fault that is
//! resolved without sleeping is not an interruption (nothing was rescheduled); one that sleeps
//! (major fault, `userfaultfd`) is.
//!
//! Without rseq, [`arm`] returns false and [`interrupted`] answers true (nothing is known).

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection __rseq_cs, \"aw\"",
    ".balign 32",
    ".globl faultline_rseq_window_cs",
    "faultline_rseq_window_cs:",
    ".long 0, 0",
    ".quad faultline_rseq_window_start, 1, faultline_rseq_window_abort",
    ".popsection",
    ".pushsection .text",
    "faultline_rseq_window_start:",
    "ud2",
    ".byte 0x0f, 0xb9, 0x3d",
    ".long 0x53053053",
    "faultline_rseq_window_abort:",
    "ud2",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    static faultline_rseq_window_cs: u8;
}

#[inline(always)]
fn window_descriptor() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // Only the address of the asm-defined descriptor is taken; it is never read from Rust.
        std::ptr::addr_of!(faultline_rseq_window_cs) as u64
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Open a window: returns false (and does nothing) when rseq is unavailable.
#[inline(always)]
pub fn arm() -> bool {
    if !crate::available() {
        return false;
    }
    // Compiler fences only: `rseq_cs` is read and cleared by the kernel on this thread (at
    // preemption, migration, signal delivery), never by another CPU, so no hardware fence
    // pairs with anything; these keep the caller's accesses from moving across the store.
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: rseq is available, so area() is this thread's registered rseq area; rseq_cs is
    // written only by this thread (and cleared by the kernel on its behalf).
    unsafe {
        std::ptr::write_volatile(
            std::ptr::addr_of_mut!((*crate::area()).rseq_cs),
            window_descriptor(),
        )
    };
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    true
}

/// Whether the thread was preempted, migrated or signalled since the last [`arm`] (or the
/// last critical section of this crate started). True when rseq is unavailable.
#[inline(always)]
pub fn interrupted() -> bool {
    if !crate::available() {
        return true;
    }
    // Compiler fences around the load, as in arm() (the kernel on this thread is the writer).
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: as in arm(); a volatile read of our own area.
    let v = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*crate::area()).rseq_cs)) };
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    v == 0
}
