//! Restartable-sequence (rseq) primitives: the user-space stand-in for "preemption off".
//!
//! # What rseq gives us
//! glibc (>= 2.35) registers one `struct rseq` per thread with the kernel and publishes where it
//! lives: `__rseq_offset` (offset from the thread pointer), `__rseq_size` (0 = rseq disabled,
//! e.g. `GLIBC_TUNABLES=glibc.pthread.rseq=0`) and `__rseq_flags`. We look these symbols up with
//! `dlsym` at run time (so an older glibc simply means "no rseq", never a link error) and never
//! register a second area (the kernel would refuse it).
//!
//! A *critical section* (CS) is a short asm sequence described by a `struct rseq_cs` descriptor
//! (start, post-commit offset, abort address) that we store into `rseq->rseq_cs` before entering.
//! If the thread is preempted, migrated or receives a signal while its instruction pointer is in
//! `[start, start + post_commit_offset)`, the kernel moves it to the abort address instead of
//! resuming. The abort address must be preceded by the 4-byte signature glibc registered
//! (`0x53053053` on x86), which we encode as the displacement of a never-executed `ud1`, as
//! glibc and librseq do. Each CS ends with exactly one *commit* store; everything before it has
//! no visible side effect, so an aborted CS is as if it never ran (the few sections that also
//! store before their commit say so, and what makes those stores harmless).
//!
//! # Operations (all per-CPU, all x86_64 asm)
//! Each takes the id (CPU or concurrency id, below) the caller believes it runs on; the CS
//! first checks that field of the rseq area against it, so a caller that migrated since
//! reading its id gets [`RseqError::CpuMismatch`] instead of touching another CPU's data.
//!
//! * [`cmpeqv_storev_tsc_on`]: `if cpu_id != cpu { mismatch } if *v != expect { cmp-fail }
//!   tsc = rdtsc(); *v = newv /* commit */; return tsc` — the ring buffer's reserve: the
//!   timestamp is read inside the CS, so two reservations on one CPU are ordered by both
//!   offset and timestamp.
//! * [`cmpeqv_storev_tsc_pick_hdr_on`], [`cmpeqv_storev_tsc_hdr_on`],
//!   [`cmpeqv_storev_tsc_stores_on`]: the ring buffer's reserve in discard mode, which also
//!   writes the record header it builds from the timestamp (and, when it closes a sub-buffer,
//!   the closed packet's content size) **before** the commit store, so no reservation is ever
//!   visible without its header. Those stores survive an abort after the compare: they go to
//!   bytes the caller owns as long as the compared word is unchanged (see their docs).
//! * [`cmpeqv_storev_tsc_hdr_after_on`]: the ring buffer's reserve in overwrite mode, which
//!   writes the record header only after the commit store (in the same asm block, outside
//!   the section), so an aborted section stores nothing.
//! * [`cmpeqv_storev_on`]: the same without the timestamp.
//! * [`cmpeqv_trystorev_storev_on`]: `cmpeqv_storev_on` that stores a second word just before
//!   the commit (that store survives an abort after the compare: see its docs).
//! * [`addv_on`]: `if cpu_id != cpu { mismatch } n = *v + count; *v = n /* commit */; return
//!   n` — a CPU-local add, the "LOCAL commit" of the ring buffer.
//! * [`addv_sum_at`]: [`addv_on`] followed, after the section, by the load of a second word
//!   and the test `n + second >= complete`: the ring buffer's LOCAL commit with its
//!   completion test.
//! * [`percpu_inc`] ([`percpu`]): `c = cpu_id; if c >= n { out-of-range } base[c * 16] += 1
//!   /* commit */` — reads the CPU inside the CS (no mismatch outcome); the SRCU read side of
//!   the tracepoint layer.
//!
//! Every critical section keeps its abort, CPU-mismatch and compare-failed exits in a separate
//! `__rseq_failure` text section (as librseq does), so the committed case runs straight
//! through without a taken jump. Most set a status register there (preset to "committed" on
//! the straight path) that the caller tests; the ring buffer's fast-path sections
//! ([`cmpeqv_storev_tsc_pick_hdr_on`], [`cmpeqv_storev_tsc_hdr_on`],
//! [`cmpeqv_storev_tsc_hdr_after_on`], [`addv_sum_at`]) instead jump from their exits to
//! `asm!` label operands, so the straight path carries no status to set and test (stable
//! Rust allows labels only in asm blocks without outputs, so these return their timestamp
//! through a stack slot the asm writes after its commit, which costs nothing when unused).
//!
//! [`cpu_id_unchecked`] reads `rseq->cpu_id` with one `%fs`-relative load, for fast paths
//! that already know rseq is available (the ring buffer in rseq mode).
//!
//! # Keyed on the CPU or on the concurrency id
//! The `*_on::<S>` operations take the checked field as a type: [`Cpu`] (`rseq->cpu_id`) or
//! [`Cid`] (`mm_cid`, the *concurrency id*, kernel 6.3+ with
//! `AT_RSEQ_FEATURE_SIZE >= 28`, see [`Registration::has_mm_cid`]). The kernel gives every
//! thread of one process (one `mm`) that is running an id distinct from the other running
//! threads', smaller than both the process's thread count and the number of CPUs it may run on,
//! and updates the field before the thread returns to user space after being scheduled; a
//! critical section is aborted by the same events as with `cpu_id` (preemption, migration,
//! signal), so while a section keyed on `mm_cid == k` runs, no other thread of the process
//! holds `k`. That is the CPU argument with "CPU" replaced by "concurrency id", and it holds
//! **within one process only**: two processes each have a concurrency id 0, so a word keyed on
//! [`Cid`] must only be written by the threads of one process. [`slot_id_unchecked`] reads
//! either field with one load. The fence for [`Cid`]-keyed words is [`membarrier_rseq_all`]
//! (the holder of an id may run on any CPU).
//!
//! The `*_delayed` variants spin inside the CS before the commit to widen the window in which
//! the kernel aborts them; they exist for tests and the stress harness (abort injection, like
//! librseq's `param_test`) and are never used on the fast path.
//!
//! # Who may write what
//! A word written by these operations for CPU `k` must only ever be written by rseq critical
//! sections running on CPU `k` (any thread, any process mapping the memory): an rseq commit is
//! a plain store, which silently overwrites a concurrent atomic RMW from another CPU. Words
//! shared across CPUs use ordinary atomics instead. A word written for concurrency id `k` must only be written by
//! [`Cid`]-keyed sections holding `k`, in one process.
//!
//! # Fallback
//! When rseq is unavailable ([`Registration::get`] is `None`), callers use atomics (CAS /
//! fetch_add); [`current_cpu`] then falls back to `sched_getcpu()`. The choice is made by the
//! caller at run time so both paths can be measured in one process.
//!
//! # Asymmetric fence
//! [`membarrier_rseq_cpu`] issues `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
//! MEMBARRIER_CMD_FLAG_CPU, cpu)`: when it returns, every thread of this process that was
//! running on `cpu` has executed a full memory barrier and any rseq CS it was in was aborted.
//! It lets a rare slow path pair with plain accesses on a fast path.

#![cfg_attr(not(target_arch = "x86_64"), allow(unused))]

pub mod interrupt;
pub mod percpu;

pub use percpu::{percpu_inc, PercpuInc, PERCPU_STRIDE};

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

/// glibc's rseq signature on x86 (the 4 bytes before every abort handler).
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// Layout of the kernel's `struct rseq` (the prefix we use).
#[repr(C, align(32))]
pub struct RseqArea {
    /// CPU the thread last started running on; written by the kernel, always valid once registered.
    pub cpu_id_start: u32,
    /// Current CPU, or a negative value (as `u32`) when rseq is not registered; written by the
    /// kernel.
    pub cpu_id: u32,
    /// Pointer to the active `struct rseq_cs` descriptor, 0 outside critical sections; written by
    /// the thread (user space), cleared by the kernel on preemption, migration or signal delivery.
    pub rseq_cs: u64,
    /// Deprecated per-thread flags (kept 0).
    pub flags: u32,
    /// NUMA node of the current CPU; written by the kernel.
    pub node_id: u32,
    /// Concurrency id of the thread within its memory map (valid when the feature size covers it);
    /// written by the kernel.
    pub mm_cid: u32,
}
const _: () = {
    assert!(std::mem::size_of::<RseqArea>() == 32);
    assert!(std::mem::offset_of!(RseqArea, cpu_id_start) == 0);
    assert!(std::mem::offset_of!(RseqArea, cpu_id) == 4);
    assert!(std::mem::offset_of!(RseqArea, rseq_cs) == 8);
    assert!(std::mem::offset_of!(RseqArea, flags) == 16);
    assert!(std::mem::offset_of!(RseqArea, node_id) == 20);
    assert!(std::mem::offset_of!(RseqArea, mm_cid) == 24);
};

/// Why a critical section did not commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RseqError {
    /// The kernel aborted the CS (preemption, migration or signal).
    Aborted,
    /// The thread is not running on the CPU the caller named.
    CpuMismatch,
    /// `*v != expect` (someone on this CPU changed it first).
    CompareFailed,
}

/// glibc's rseq registration, as published by `__rseq_offset` / `__rseq_size` / `__rseq_flags`.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// Offset of the thread's `struct rseq` from the thread pointer (`__rseq_offset`).
    pub offset: isize,
    /// Size glibc registered (`__rseq_size`; 0 when glibc did not register rseq).
    pub size: u32,
    /// Registration flags (`__rseq_flags`).
    pub flags: u32,
    /// `getauxval(AT_RSEQ_FEATURE_SIZE)`: 28 or more means `mm_cid` is maintained.
    pub feature_size: u64,
}

static REGISTRATION: OnceLock<Option<Registration>> = OnceLock::new();
/// Cached `__rseq_offset` for the fast path (only meaningful when registration is `Some`).
static OFFSET: AtomicI64 = AtomicI64::new(0);
/// 0 = unknown, 1 = available, 2 = unavailable.
static STATE: AtomicU8 = AtomicU8::new(0);
static ABORTS: AtomicU64 = AtomicU64::new(0);

const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;

fn discover() -> Option<Registration> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names is always sound; a null result
    // means the symbol does not exist (glibc older than 2.35).
    let (off, size, flags) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_flags".as_ptr()),
        )
    };
    if off.is_null() || size.is_null() {
        return None;
    }
    // SAFETY: glibc defines these as `const ptrdiff_t __rseq_offset`, `const unsigned int
    // __rseq_size` and `const unsigned int __rseq_flags`; they are initialised before main.
    let reg = unsafe {
        Registration {
            offset: *(off as *const isize),
            size: *(size as *const u32),
            flags: if flags.is_null() {
                0
            } else {
                *(flags as *const u32)
            },
            feature_size: libc::getauxval(AT_RSEQ_FEATURE_SIZE) as u64,
        }
    };
    if reg.size == 0 {
        return None;
    }
    OFFSET.store(reg.offset as i64, Ordering::Relaxed);
    // The registration is per thread; check that this thread's area is live.
    let area = thread_area_at(reg.offset);
    // SAFETY: glibc guarantees the area at tp + __rseq_offset is this thread's struct rseq
    // whenever __rseq_size != 0; cpu_id is written by the kernel, read volatile.
    let cpu = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*area).cpu_id)) };
    if (cpu as i32) < 0 {
        return None;
    }
    Some(reg)
}

#[inline(always)]
fn thread_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86_64 Linux, %fs:0 holds the thread control block's self pointer (the
        // thread pointer) for every thread created by glibc.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        tp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

#[inline(always)]
fn thread_area_at(offset: isize) -> *mut RseqArea {
    thread_pointer().wrapping_add_signed(offset) as *mut RseqArea
}

impl Registration {
    /// glibc's registration, or `None` when rseq cannot be used in this process.
    pub fn get() -> Option<&'static Registration> {
        let r = REGISTRATION.get_or_init(discover).as_ref();
        STATE.store(if r.is_some() { 1 } else { 2 }, Ordering::Relaxed);
        r
    }

    /// Whether the kernel maintains `mm_cid` (concurrency id) in the area.
    pub fn has_mm_cid(&self) -> bool {
        self.feature_size >= 28
    }
}

/// True when rseq is usable (discovering it on first call).
#[inline]
pub fn available() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => Registration::get().is_some(),
    }
}

/// This thread's rseq area. Only meaningful when [`available`] returned true.
#[inline(always)]
pub fn area() -> *mut RseqArea {
    thread_area_at(OFFSET.load(Ordering::Relaxed) as isize)
}

/// The CPU this thread runs on now (it may change right after): rseq's `cpu_id` when rseq is
/// available, `sched_getcpu()` otherwise.
#[inline(always)]
pub fn current_cpu() -> u32 {
    if available() {
        // SAFETY: available() means the area is registered for every glibc thread; the kernel
        // updates cpu_id on return to user space, so a volatile read gives a recent value.
        unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*area()).cpu_id)) }
    } else {
        // SAFETY: sched_getcpu has no preconditions.
        let c = unsafe { libc::sched_getcpu() };
        c.max(0) as u32
    }
}

/// This thread's `rseq->cpu_id`, without checking that rseq is available: one load relative to
/// the thread pointer (plus the cached `__rseq_offset`). For fast paths that already know.
///
/// # Safety
/// [`available`] must have returned true in this process.
#[inline(always)]
pub unsafe fn cpu_id_unchecked() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let off = OFFSET.load(Ordering::Relaxed);
        let cpu: u32;
        // SAFETY: the caller guarantees rseq is registered, so fs:[__rseq_offset] is this
        // thread's struct rseq and cpu_id is at +4. One %fs-relative load, like the critical
        // sections' own check; not `pure`, so two calls are two reads (the kernel changes it).
        unsafe {
            core::arch::asm!(
                "mov {cpu:e}, dword ptr fs:[{off} + 4]",
                off = in(reg) off,
                cpu = lateout(reg) cpu,
                options(nostack, readonly, preserves_flags),
            )
        };
        cpu
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as documented, the caller guarantees a registered area.
        unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*area()).cpu_id)) }
    }
}

/// The concurrency id (`mm_cid`) when the kernel provides it.
pub fn current_mm_cid() -> Option<u32> {
    let reg = Registration::get()?;
    if !reg.has_mm_cid() {
        return None;
    }
    // SAFETY: registered area, and feature_size >= 28 says mm_cid is maintained.
    Some(unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*area()).mm_cid)) })
}

/// The per-thread id a critical section is keyed on: the field of the rseq area it compares
/// with the id the caller names (module docs, "Keyed on the CPU or on the concurrency id").
pub trait SlotId: sealed::Sealed {
    /// Offset of the field in [`RseqArea`].
    const FIELD: usize;
    /// Short name for messages and trace metadata (`"cpu"`, `"cid"`).
    const NAME: &'static str;
}

/// Critical sections keyed on `rseq->cpu_id`: the word belongs to a CPU.
#[derive(Debug, Clone, Copy)]
pub struct Cpu;
/// Critical sections keyed on `rseq->mm_cid`: the word belongs to a concurrency id of one
/// process.
#[derive(Debug, Clone, Copy)]
pub struct Cid;

impl SlotId for Cpu {
    const FIELD: usize = std::mem::offset_of!(RseqArea, cpu_id);
    const NAME: &'static str = "cpu";
}
impl SlotId for Cid {
    const FIELD: usize = std::mem::offset_of!(RseqArea, mm_cid);
    const NAME: &'static str = "cid";
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Cpu {}
    impl Sealed for super::Cid {}
}

/// This process's `__rseq_offset` (the same for every thread), for callers that keep it next
/// to their own data ([`offset`]): the sections and reads taking one address the area as
/// `fs:[offset + field]` without loading the cached offset from this crate's static (in a
/// position-independent executable, an address from the GOT and then the value: two dependent
/// loads per section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offset(i64);

/// This process's [`Offset`] when rseq is [`available`].
pub fn offset() -> Option<Offset> {
    available().then(|| Offset(OFFSET.load(Ordering::Relaxed)))
}

/// [`slot_id_unchecked`] with the offset the caller keeps ([`offset`]).
///
/// # Safety
/// As [`slot_id_unchecked`]; `off` must come from [`offset`].
#[inline(always)]
pub unsafe fn slot_id_at<S: SlotId>(off: Offset) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let id: u32;
        // SAFETY: as in cpu_id_unchecked; `off` is this process's __rseq_offset (caller).
        unsafe {
            core::arch::asm!(
                "mov {id:e}, dword ptr fs:[{off} + {field}]",
                off = in(reg) off.0,
                field = const S::FIELD,
                id = lateout(reg) id,
                options(nostack, readonly, preserves_flags),
            )
        };
        id
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = off;
        // SAFETY: as documented, the caller guarantees a registered area.
        unsafe { slot_id_unchecked::<S>() }
    }
}

/// This thread's id `S` (`rseq->cpu_id` or `rseq->mm_cid`) with one `%fs`-relative load, like
/// [`cpu_id_unchecked`].
///
/// # Safety
/// [`available`] must have returned true in this process; for [`Cid`],
/// [`Registration::has_mm_cid`] too (otherwise the field is not maintained and reads 0).
#[inline(always)]
pub unsafe fn slot_id_unchecked<S: SlotId>() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let off = OFFSET.load(Ordering::Relaxed);
        let id: u32;
        // SAFETY: as in cpu_id_unchecked; S::FIELD is the offset of a u32 field of the area.
        unsafe {
            core::arch::asm!(
                "mov {id:e}, dword ptr fs:[{off} + {field}]",
                off = in(reg) off,
                field = const S::FIELD,
                id = lateout(reg) id,
                options(nostack, readonly, preserves_flags),
            )
        };
        id
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as documented, the caller guarantees a registered area.
        unsafe { std::ptr::read_volatile((area() as *const u8).add(S::FIELD) as *const u32) }
    }
}

/// Number of kernel aborts observed by this crate's operations in this process.
pub fn abort_count() -> u64 {
    ABORTS.load(Ordering::Relaxed)
}

/// Out of line, so that no caller loads the counter's address on its straight path.
#[cold]
#[inline(never)]
fn note_abort() {
    ABORTS.fetch_add(1, Ordering::Relaxed);
}

#[inline(always)]
fn status_to_result(status: u32) -> Result<(), RseqError> {
    match status {
        0 => Ok(()),
        1 => {
            note_abort();
            Err(RseqError::Aborted)
        }
        2 => Err(RseqError::CpuMismatch),
        _ => Err(RseqError::CompareFailed),
    }
}

/// Read the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc is available on every x86_64 CPU and has no memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

// The shape shared by every critical section below:
//   status = 0
//   3: descriptor in __rseq_cs {version 0, flags 0, start 4f, post_commit (5f-4f), abort 6f}
//   store &descriptor into rseq->rseq_cs (offset 8 of the area, addressed through %fs)
//   4: ... CS body ... ; single commit store
//   5: (falls through to 9: the success path is straight-line code, no taken jump)
//   in section __rseq_failure (out of line, like librseq's abort handlers):
//      ud1 with RSEQ_SIG displacement (never executed)
//   6: status = 1 (aborted) ; jmp 9f
//   7: status = 2 (cpu mismatch) ; jmp 9f
//   8: status = 3 (compare failed) ; jmp 9f
//   9:
// `status` is an `out` (not `lateout`) operand, so it never shares a register with an input
// although it is written before the inputs are used.
macro_rules! rseq_cs_prologue {
    () => {
        concat!("xor {status:e}, {status:e}\n", rseq_cs_descriptor!())
    };
}
/// The descriptor part of `rseq_cs_prologue` (label 3), for a section that sets its status
/// itself (in a fixed register) instead of presetting it.
macro_rules! rseq_cs_descriptor {
    () => {
        concat!(
            ".pushsection __rseq_cs, \"aw\"\n",
            ".balign 32\n",
            "3:\n",
            ".long 0, 0\n",
            ".quad 4f, (5f - 4f), 6f\n",
            ".popsection\n",
            ".pushsection __rseq_cs_ptr_array, \"aw\"\n",
            ".quad 3b\n",
            ".popsection\n",
        )
    };
}
/// The failure exits of `rseq_cs_epilogue` (signature, labels 6-8 setting the status in the
/// named register, label 9), for a section that ends with its own label 5 and sets the
/// committed status itself.
macro_rules! rseq_cs_exits {
    ($status:literal) => {
        concat!(
            ".pushsection __rseq_failure, \"ax\"\n",
            ".byte 0x0f, 0xb9, 0x3d\n",
            ".long 0x53053053\n",
            "6:\n",
            "mov ",
            $status,
            ", 1\n",
            "jmp 9f\n",
            "7:\n",
            "mov ",
            $status,
            ", 2\n",
            "jmp 9f\n",
            "8:\n",
            "mov ",
            $status,
            ", 3\n",
            "jmp 9f\n",
            ".popsection\n",
            "9:\n",
        )
    };
}
macro_rules! rseq_cs_epilogue {
    () => {
        concat!("5:\n", rseq_cs_exits!("{status:e}"))
    };
}
/// Arms a section (after its descriptor, label 3): stores the descriptor's address, taken
/// through `$tmp`, into `rseq->rseq_cs`, opens the section (label 4) and leaves through label
/// 7 (CPU mismatch) when the area's id field (`{field}` of the area at `{off}`) is not `$id`.
macro_rules! rseq_cs_arm {
    ($tmp:literal, $id:literal) => {
        concat!(
            "lea ",
            $tmp,
            ", [rip + 3b]\n",
            "mov qword ptr fs:[{off} + 8], ",
            $tmp,
            "\n",
            "4:\n",
            "cmp dword ptr fs:[{off} + {field}], ",
            $id,
            "\n",
            "jne 7f\n",
        )
    };
}

/// `if id_S != id → CpuMismatch; if *v != expect → CompareFailed; tsc = rdtsc(); *v = newv`,
/// keyed on the id `S` ([`Cpu`] or [`Cid`]): the section checks that field of the rseq area
/// against `id`. Returns the timestamp read inside the critical section.
///
/// # Safety
/// rseq must be [`available`]; `v` must be valid for reads and writes of a `u64`, aligned, and
/// (see the module doc) only ever written by rseq critical sections keyed on `S` while holding
/// `id`; for [`Cid`], only by threads of one process, and [`Registration::has_mm_cid`] must be
/// true.
#[inline(always)]
pub unsafe fn cmpeqv_storev_tsc_on<S: SlotId>(
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Result<u64, RseqError> {
    // SAFETY: this function's contract is the implementation's; the caller upholds it.
    unsafe { cmpeqv_storev_tsc_impl::<false, S>(id, v, expect, newv, 0) }
}

/// [`cmpeqv_storev_tsc_on`] that spins `spins` iterations inside the critical section before
/// the commit (abort injection for tests and the stress harness).
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`].
#[inline(always)]
pub unsafe fn cmpeqv_storev_tsc_delayed_on<S: SlotId>(
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    spins: u64,
) -> Result<u64, RseqError> {
    // SAFETY: this function's contract is the implementation's; the caller upholds it.
    unsafe { cmpeqv_storev_tsc_impl::<true, S>(id, v, expect, newv, spins.max(1)) }
}

#[inline(always)]
unsafe fn cmpeqv_storev_tsc_impl<const DELAY: bool, S: SlotId>(
    cpu: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    spins: u64,
) -> Result<u64, RseqError> {
    let off = OFFSET.load(Ordering::Relaxed);
    let status: u32;
    let lo: u32;
    let hi: u32;
    if DELAY {
        // SAFETY: the caller guarantees rseq is registered (so fs:[off] is this thread's
        // struct rseq) and that `v` is a valid, rseq-owned word of `cpu`; the CS follows the
        // kernel's rules: descriptor in a data section, single final commit store, signature
        // before the abort label.
        unsafe {
            core::arch::asm!(
                rseq_cs_prologue!(),
                rseq_cs_arm!("{tmp}", "{cpu:e}"),
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                "2:",
                "dec {spins}",
                "jnz 2b",
                "rdtsc",
                "mov qword ptr [{v}], {newv}",
                rseq_cs_epilogue!(),
                off = in(reg) off,
                field = const S::FIELD,
                cpu = in(reg) cpu,
                v = in(reg) v,
                expect = in(reg) expect,
                newv = in(reg) newv,
                spins = inout(reg) spins => _,
                tmp = out(reg) _,
                status = out(reg) status,
                out("eax") lo,
                out("edx") hi,
                options(nostack),
            );
        }
    } else {
        let _ = spins;
        let ts: u64;
        // SAFETY: as above. Few registers, as in cmpeqv_storev_tsc_pick_on: `rdx` carries the
        // descriptor's address, then the timestamp's high half, then the status (0 set after
        // the section on the straight-through path, 1-3 by the exits); the timestamp is put
        // together after the commit store, which does not depend on it.
        unsafe {
            core::arch::asm!(
                rseq_cs_descriptor!(),
                rseq_cs_arm!("rdx", "{cpu:e}"),
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                "rdtsc",
                "mov qword ptr [{v}], {newv}",
                "5:",
                "shl rdx, 32",
                "or rax, rdx",
                "xor edx, edx",
                rseq_cs_exits!("edx"),
                off = in(reg) off,
                field = const S::FIELD,
                cpu = in(reg) cpu,
                v = in(reg) v,
                expect = in(reg) expect,
                newv = in(reg) newv,
                out("rax") ts,
                out("edx") status,
                options(nostack),
            );
        }
        status_to_result(status)?;
        return Ok(ts);
    }
    status_to_result(status)?;
    Ok(((hi as u64) << 32) | lo as u64)
}

/// The compact-header reserve: `if id_S != id → CpuMismatch; if *v != expect →
/// CompareFailed; tsc = rdtsc(); *v = if tsc - floor < window { newv_compact } else { newv }`.
/// Returns the timestamp read inside the critical section; the caller learns which value was
/// stored by repeating the (deterministic) comparison `tsc.wrapping_sub(floor) < window`.
///
/// The choice between the two record sizes is made after the timestamp is read and before the
/// single commit store, in the same section: the stored size always matches the header the
/// timestamp allows (a timestamp read before the section could be overtaken by a later
/// reservation on the same CPU; one read after it could not change the size any more).
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`].
#[inline(always)]
pub unsafe fn cmpeqv_storev_tsc_pick_on<S: SlotId>(
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    newv_compact: u64,
    floor: u64,
    window: u64,
) -> Result<u64, RseqError> {
    let off = OFFSET.load(Ordering::Relaxed);
    let status: u32;
    let ts: u64;
    // SAFETY: the caller guarantees rseq is registered (so fs:[off] is this thread's struct
    // rseq) and that `v` is a valid word only written by rseq critical sections keyed on `S`
    // holding `id`; the CS follows the kernel's rules: descriptor in a data section, single
    // final commit store (the `mov [v]`), signature before the abort label. The arithmetic
    // between the rdtsc and the store touches registers only, so an abort anywhere before the
    // store leaves memory unchanged. Few registers (this section is inlined into the ring
    // buffer's fast path, where each extra one is a spill and a reload): `rdx` carries the
    // descriptor's address, then the timestamp's high half and the distance to the floor, then
    // the status (0 set after the section on the straight-through path, 1-3 by the exits).
    unsafe {
        core::arch::asm!(
            rseq_cs_descriptor!(),
            rseq_cs_arm!("rdx", "{cpu:e}"),
            "cmp qword ptr [{v}], {expect}",
            "jne 8f",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov rdx, rax",
            "sub rdx, {floor}",
            "cmp rdx, {window}",
            "cmovb {newv}, {newc}",
            "mov qword ptr [{v}], {newv}",
            "5:",
            "xor edx, edx",
            rseq_cs_exits!("edx"),
            off = in(reg) off,
            field = const S::FIELD,
            cpu = in(reg) id,
            v = in(reg) v,
            expect = in(reg) expect,
            newv = inout(reg) newv => _,
            newc = in(reg) newv_compact,
            floor = in(reg) floor,
            window = in(reg) window,
            out("rax") ts,
            out("edx") status,
            options(nostack),
        );
    }
    status_to_result(status)?;
    Ok(ts)
}

/// The failure exits of a section that leaves through Rust labels instead of a status
/// register (`asm!` label operands: no status to set, test and branch on for the straight
/// path): the signature, then label 6 (aborted) jumping to `{aborted}`, 7 (id mismatch) to
/// `{mismatch}` and 8 (compare failed) to `{cmpfail}`, out of line in `__rseq_failure`.
macro_rules! rseq_cs_label_exits {
    () => {
        concat!(
            ".pushsection __rseq_failure, \"ax\"\n",
            ".byte 0x0f, 0xb9, 0x3d\n",
            ".long 0x53053053\n",
            "6:\n",
            "jmp {aborted}\n",
            "7:\n",
            "jmp {mismatch}\n",
            "8:\n",
            "jmp {cmpfail}\n",
            ".popsection\n",
        )
    };
}

/// The ring buffer's reserve with its record header written **inside** the critical section,
/// before the commit store: `if id_S != id → CpuMismatch; if *v != expect → CompareFailed;
/// tsc = rdtsc(); floor = *(v + FLOOR_AT); if tsc - floor < WINDOW { *hdr = (tsc << 5) as u32 |
/// compact_lo; *v = newv - SHRINK } else { *(hdr + 7) = tsc >> 16 | (compact_lo >> 32) << 48;
/// *hdr = tsc << 40 | EXT_LO; *v = newv }` (8-byte stores, unaligned), keyed on `S`; then,
/// after the commit (outside the section), `*(v + FLOOR_AT) = tsc`: the floor the next
/// reservation reads. Returns the timestamp and whether the record is compact (`tsc - floor <
/// WINDOW`).
///
/// The two header words are the ring buffer's record header with its id pending
/// (`faultline_wire`: the compact header's first word, whose 7th and 8th bytes, payload bytes,
/// are stored as zero, `compact_lo` its tag and the length in bits 32..48; or the extended
/// header's words at offsets 0 and 7, `EXT_LO` its tag and id bits, the same length in bits
/// 48..64 of the second). The ring buffer's tests compare the bytes with `faultline_wire`'s
/// encoders. The floor (`v + FLOOR_AT`, the buffer's last reservation time) is read inside
/// the section and written after its commit store, once the header it vouches for exists.
///
/// The choice is a branch inside the section (both paths end at the one commit store), not a
/// conditional move: the stored offset then does not depend on the `rdtsc`, so the next
/// reservation's load of `*v` does not wait for it, and the compact case (nearly every record)
/// does not compute the extended words. The section leaves through label operands: the
/// compact record jumps to its own continuation, the extended one falls through, and the
/// failures jump out of line, so the straight path tests no status register (the timestamp
/// comes back through a stack slot the section writes, free when the caller does not use it).
/// Few registers (the section is inlined into every tracepoint's fast path, where each extra
/// one is a spill and a reload).
///
/// Unlike the other sections, the header stores happen before the commit and survive an
/// abort after the compare succeeded: the caller must own `[hdr, hdr + 15)` whenever `*v ==
/// expect` holds on `id` (bytes no one has reserved yet, in a buffer only this section's
/// owner of `id` writes, and that no reader looks at before a later commit covers them). That
/// is what makes them worth having: a reservation is never visible without its header.
///
/// With `spins > 0` (abort injection for tests and the stress harness, `DELAY`), the section
/// spins that many iterations after the compare.
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`], and the ownership of `[hdr, hdr + 15)` above; `v + FLOOR_AT`
/// must be valid for reads and writes of a `u64`; `off` must come from [`offset`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn cmpeqv_storev_tsc_pick_hdr_on<
    S: SlotId,
    const DELAY: bool,
    const EXT_LO: u64,
    const WINDOW: u32,
    const SHRINK: u32,
    const FLOOR_AT: i32,
>(
    off: Offset,
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    hdr: *mut u8,
    compact_lo: u64,
    spins: u64,
) -> Result<(u64, bool), RseqError> {
    let off = off.0;
    let mut ts = std::mem::MaybeUninit::<u64>::uninit();
    let tsp = ts.as_mut_ptr();
    macro_rules! section {
        ($delay:literal $(, $spins:ident = $spin_op:expr)?) => {
            core::arch::asm!(
                rseq_cs_descriptor!(),
                rseq_cs_arm!("rdx", "{id:e}"),
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                $delay,
                "rdtsc",
                "shl rdx, 32",
                "or rax, rdx",
                // `id` is dead once compared: the distance to the floor.
                "mov {id}, rax",
                "sub {id}, qword ptr [{v} + {floor_at}]",
                "cmp {id}, {window}",
                "jb 22f",
                // Extended (a packet's first record, or a floor too old): both words; `clo`
                // becomes the length bits of the second, then `EXT_LO`.
                "shr {clo}, 32",
                "shl {clo}, 48",
                "mov rdx, rax",
                "shr rdx, 16",
                "or rdx, {clo}",
                "mov qword ptr [{hdr} + 7], rdx",
                "mov rdx, rax",
                "shl rdx, 40",
                "mov {clo}, {extlo}",
                "or rdx, {clo}",
                "mov qword ptr [{hdr}], rdx",
                "jmp 23f",
                // Compact: one word, (tsc << 5) mod 2^32 | compact_lo, and the shorter end.
                "22:",
                "mov edx, eax",
                "shl edx, 5",
                "or rdx, {clo}",
                "mov qword ptr [{hdr}], rdx",
                "lea {newv}, [{newv} - {shrink}]",
                "23:",
                "mov qword ptr [{v}], {newv}",
                "5:",
                // Committed. The floor, then the timestamp for the caller.
                "mov qword ptr [{v} + {floor_at}], rax",
                "mov qword ptr [{tsp}], rax",
                "cmp {id}, {window}",
                "jb {compact}",
                rseq_cs_label_exits!(),
                off = in(reg) off,
                field = const S::FIELD,
                id = inout(reg) id as u64 => _,
                v = in(reg) v,
                expect = in(reg) expect,
                newv = inout(reg) newv => _,
                hdr = in(reg) hdr,
                clo = inout(reg) compact_lo => _,
                tsp = in(reg) tsp,
                $($spins = inout(reg) $spin_op => _,)?
                extlo = const EXT_LO,
                window = const WINDOW,
                shrink = const SHRINK,
                floor_at = const FLOOR_AT,
                out("rax") _,
                out("rdx") _,
                compact = label {
                    // SAFETY: the section stored the timestamp into `ts` before jumping here.
                    let ts = unsafe { ts.assume_init() };
                    return Ok((ts, true));
                },
                aborted = label {
                    note_abort();
                    return Err(RseqError::Aborted);
                },
                mismatch = label { return Err(RseqError::CpuMismatch) },
                cmpfail = label { return Err(RseqError::CompareFailed) },
                options(nostack),
            )
        };
    }
    if DELAY {
        // SAFETY: the caller guarantees rseq is registered (so fs:[off] is this thread's
        // struct rseq), that `v` is only written by sections keyed on `S` holding `id` and
        // `v + FLOOR_AT` valid, and that `[hdr, hdr + 15)` is its own once the compare
        // succeeded (function docs); `tsp` is this frame's slot; CS layout as in the module
        // doc, the commit store last, the stores after label 5 outside the section.
        unsafe { section!("2:\ndec {spins}\njnz 2b\n", spins = spins.max(1)) }
    } else {
        let _ = spins;
        // SAFETY: as above. `rdx` carries the descriptor's address, the timestamp's high half,
        // then the header words; `id` is reused once compared.
        unsafe { section!("") }
    }
    // SAFETY: the straight path stored the timestamp into `ts` after its commit.
    Ok((unsafe { ts.assume_init() }, false))
}

/// [`cmpeqv_storev_tsc_pick_hdr_on`] without the choice: always the extended header
/// (`tsc << 40 | EXT_LO` at `hdr`, `tsc >> 16 | hi` at `hdr + 7`) and `*v = newv`, a value
/// that does not depend on the timestamp (so the next reservation's load of `*v` does not
/// wait for this `rdtsc`); after the commit, `*(v + FLOOR_AT) = tsc`. Returns the timestamp.
///
/// # Safety
/// As [`cmpeqv_storev_tsc_pick_hdr_on`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn cmpeqv_storev_tsc_hdr_on<
    S: SlotId,
    const DELAY: bool,
    const EXT_LO: u64,
    const FLOOR_AT: i32,
>(
    off: Offset,
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    hdr: *mut u8,
    hi: u64,
    spins: u64,
) -> Result<u64, RseqError> {
    let off = off.0;
    let mut ts = std::mem::MaybeUninit::<u64>::uninit();
    let tsp = ts.as_mut_ptr();
    macro_rules! section {
        ($delay:literal $(, $spins:ident = $spin_op:expr)?) => {
            core::arch::asm!(
                rseq_cs_descriptor!(),
                rseq_cs_arm!("rdx", "{id:e}"),
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                $delay,
                "rdtsc",
                "shl rdx, 32",
                "or rax, rdx",
                "mov rdx, rax",
                "shr rdx, 16",
                "or rdx, {hi}",
                "mov qword ptr [{hdr} + 7], rdx",
                "mov rdx, rax",
                "shl rdx, 40",
                "mov {id}, {extlo}",
                "or rdx, {id}",
                "mov qword ptr [{hdr}], rdx",
                "mov qword ptr [{v}], {newv}",
                "5:",
                "mov qword ptr [{v} + {floor_at}], rax",
                "mov qword ptr [{tsp}], rax",
                rseq_cs_label_exits!(),
                off = in(reg) off,
                field = const S::FIELD,
                id = inout(reg) id as u64 => _,
                v = in(reg) v,
                expect = in(reg) expect,
                newv = in(reg) newv,
                hdr = in(reg) hdr,
                hi = in(reg) hi,
                tsp = in(reg) tsp,
                $($spins = inout(reg) $spin_op => _,)?
                extlo = const EXT_LO,
                floor_at = const FLOOR_AT,
                out("rax") _,
                out("rdx") _,
                aborted = label {
                    note_abort();
                    return Err(RseqError::Aborted);
                },
                mismatch = label { return Err(RseqError::CpuMismatch) },
                cmpfail = label { return Err(RseqError::CompareFailed) },
                options(nostack),
            )
        };
    }
    if DELAY {
        // SAFETY: as in cmpeqv_storev_tsc_pick_hdr_on (the caller's contract).
        unsafe { section!("2:\ndec {spins}\njnz 2b\n", spins = spins.max(1)) }
    } else {
        let _ = spins;
        // SAFETY: as in cmpeqv_storev_tsc_pick_hdr_on (the caller's contract).
        unsafe { section!("") }
    }
    // SAFETY: the straight path stored the timestamp into `ts` after its commit.
    Ok(unsafe { ts.assume_init() })
}

/// The ring buffer's reserve in overwrite mode: `if id_S != id → CpuMismatch; if *v != expect
/// → CompareFailed; tsc = rdtsc(); *v = newv` (the commit), and only **after** it, outside the
/// section, the extended record header (`tsc << 40 | EXT_LO` at `hdr`, `tsc >> 16 | hi` at
/// `hdr + 7`, unaligned): no byte of the record becomes visible before the offset store, and
/// an aborted section stores nothing. Returns the timestamp. Leaves through label operands
/// like [`cmpeqv_storev_tsc_pick_hdr_on`] (no status register on the straight path).
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`]; `off` must come from [`offset`]; `[hdr, hdr + 15)` must be the
/// caller's once the commit store is done (the bytes it reserved).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn cmpeqv_storev_tsc_hdr_after_on<S: SlotId, const EXT_LO: u64>(
    off: Offset,
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    hdr: *mut u8,
    hi: u64,
) -> Result<u64, RseqError> {
    let off = off.0;
    let mut ts = std::mem::MaybeUninit::<u64>::uninit();
    let tsp = ts.as_mut_ptr();
    // SAFETY: the caller guarantees rseq is registered (so fs:[off] is this thread's struct
    // rseq), that `v` is only written by sections keyed on `S` holding `id`, and that the
    // header bytes are its own once the commit store is done; `tsp` is this frame's slot. CS
    // layout as in the module doc: the commit store last; the header stores follow label 5,
    // outside the section, in program order after the commit (x86 keeps stores in order).
    unsafe {
        core::arch::asm!(
            rseq_cs_descriptor!(),
            rseq_cs_arm!("rdx", "{id:e}"),
            "cmp qword ptr [{v}], {expect}",
            "jne 8f",
            "rdtsc",
            "mov qword ptr [{v}], {newv}",
            "5:",
            "shl rdx, 32",
            "or rax, rdx",
            "mov qword ptr [{tsp}], rax",
            "mov rdx, rax",
            "shr rdx, 16",
            "or rdx, {hi}",
            "mov qword ptr [{hdr} + 7], rdx",
            "shl rax, 40",
            "mov {id}, {extlo}",
            "or rax, {id}",
            "mov qword ptr [{hdr}], rax",
            rseq_cs_label_exits!(),
            off = in(reg) off,
            field = const S::FIELD,
            id = inout(reg) id as u64 => _,
            v = in(reg) v,
            expect = in(reg) expect,
            newv = in(reg) newv,
            hdr = in(reg) hdr,
            hi = in(reg) hi,
            tsp = in(reg) tsp,
            extlo = const EXT_LO,
            out("rax") _,
            out("rdx") _,
            aborted = label {
                note_abort();
                return Err(RseqError::Aborted);
            },
            mismatch = label { return Err(RseqError::CpuMismatch) },
            cmpfail = label { return Err(RseqError::CompareFailed) },
            options(nostack),
        );
    }
    // SAFETY: the straight path stored the timestamp into `ts` after its commit.
    Ok(unsafe { ts.assume_init() })
}

/// What [`cmpeqv_storev_tsc_stores_on`] stores before its commit, besides the offset. A null
/// pointer skips its stores.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ReserveStores {
    /// Where the extended record header goes (`tsc << 40 | EXT_LO` at `hdr`, `tsc >> 16 | hi`
    /// at `hdr + 7`), or null.
    pub hdr: *mut u8,
    /// The second header word's bits that are not the timestamp's (the length).
    pub hi: u64,
    /// Non-zero: stored at `hdr + 15` (8 bytes; the long length of a long header).
    pub long_len: u64,
    /// The packet header this reservation closes, or null: `content_bits` goes to `pkt + 40`
    /// (its `content_size`).
    pub pkt: *mut u8,
    /// The closed packet's content size in bits.
    pub content_bits: u64,
}
const _: () = {
    assert!(std::mem::offset_of!(ReserveStores, hdr) == 0);
    assert!(std::mem::offset_of!(ReserveStores, hi) == 8);
    assert!(std::mem::offset_of!(ReserveStores, long_len) == 16);
    assert!(std::mem::offset_of!(ReserveStores, pkt) == 24);
    assert!(std::mem::offset_of!(ReserveStores, content_bits) == 32);
};

/// [`cmpeqv_storev_tsc_on`] that also stores, after the timestamp and before the commit, what
/// `st` describes ([`ReserveStores`]): the ring buffer's general reserve, whose record header
/// (extended, id pending, `EXT_LO` its tag and id bits) and, when it closes a sub-buffer, the
/// closed packet's content size are written before the reservation is visible.
/// As with [`cmpeqv_storev_tsc_pick_hdr_on`], those stores survive an abort after the compare
/// succeeded. `spins > 0`: spin that many iterations after the compare (abort injection).
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`]; `off` must come from [`offset`]; every range `st` names (`[hdr, hdr + 15)`, `[hdr + 15, hdr +
/// 23)` when `long_len != 0`, `[pkt + 40, pkt + 48)`) must be the caller's whenever `*v ==
/// expect` holds on `id` (see [`cmpeqv_storev_tsc_pick_hdr_on`]).
#[inline(always)]
pub unsafe fn cmpeqv_storev_tsc_stores_on<S: SlotId, const EXT_LO: u64>(
    off: Offset,
    id: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
    st: &ReserveStores,
    spins: u64,
) -> Result<u64, RseqError> {
    let off = off.0;
    let status: u32;
    let ts: u64;
    // SAFETY: the caller guarantees rseq is registered, that `v` is only written by sections
    // keyed on `S` holding `id`, and that the ranges `st` names are its own once the compare
    // succeeded; `st` is a valid reference for the whole asm (read only). CS layout as in the
    // module doc, the commit store last; the spin loop is skipped when `spins` is 0.
    unsafe {
        core::arch::asm!(
            rseq_cs_descriptor!(),
            rseq_cs_arm!("rdx", "{id:e}"),
            "cmp qword ptr [{v}], {expect}",
            "jne 8f",
            "test {spins}, {spins}",
            "jz 12f",
            "2:",
            "dec {spins}",
            "jnz 2b",
            "12:",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov {id}, qword ptr [{st}]",
            "test {id}, {id}",
            "jz 13f",
            "mov rdx, rax",
            "shl rdx, 40",
            "mov {expect}, {extlo}",
            "or rdx, {expect}",
            "mov qword ptr [{id}], rdx",
            "mov rdx, rax",
            "shr rdx, 16",
            "or rdx, qword ptr [{st} + 8]",
            "mov qword ptr [{id} + 7], rdx",
            "mov rdx, qword ptr [{st} + 16]",
            "test rdx, rdx",
            "jz 13f",
            "mov qword ptr [{id} + 15], rdx",
            "13:",
            "mov {id}, qword ptr [{st} + 24]",
            "test {id}, {id}",
            "jz 14f",
            "mov rdx, qword ptr [{st} + 32]",
            "mov qword ptr [{id} + 40], rdx",
            "14:",
            "mov qword ptr [{v}], {newv}",
            "5:",
            "xor edx, edx",
            rseq_cs_exits!("edx"),
            off = in(reg) off,
            field = const S::FIELD,
            id = inout(reg) id as u64 => _,
            v = in(reg) v,
            expect = inout(reg) expect => _,
            newv = in(reg) newv,
            st = in(reg) st as *const ReserveStores,
            spins = inout(reg) spins => _,
            extlo = const EXT_LO,
            out("rax") ts,
            out("edx") status,
            options(nostack),
        );
    }
    status_to_result(status)?;
    Ok(ts)
}

/// `if id_S != id → CpuMismatch; if *v != expect → CompareFailed; *v = newv`, keyed on the id
/// `S`.
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`].
#[inline(always)]
pub unsafe fn cmpeqv_storev_on<S: SlotId>(
    cpu: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Result<(), RseqError> {
    let off = OFFSET.load(Ordering::Relaxed);
    let status: u32;
    // SAFETY: rseq registered (caller), `v` valid and rseq-owned by `cpu` (caller); CS layout
    // as documented in the module doc.
    unsafe {
        core::arch::asm!(
            rseq_cs_prologue!(),
            rseq_cs_arm!("{tmp}", "{cpu:e}"),
            "cmp qword ptr [{v}], {expect}",
            "jne 8f",
            "mov qword ptr [{v}], {newv}",
            rseq_cs_epilogue!(),
            off = in(reg) off,
            field = const S::FIELD,
            cpu = in(reg) cpu,
            v = in(reg) v,
            expect = in(reg) expect,
            newv = in(reg) newv,
            tmp = out(reg) _,
            status = out(reg) status,
            options(nostack),
        );
    }
    status_to_result(status)
}

/// `if id_field != id → CpuMismatch; if *v != expect → CompareFailed; *v2 = newv2; *v = newv`
/// — a compare-and-store that also stores a second word **before** the commit (librseq's
/// "try-store"). Keyed on `S` like [`cmpeqv_storev_on`].
///
/// Unlike every other section here, an aborted attempt may leave a side effect: `*v2` is
/// written once the compare succeeded, also when the section is aborted before its commit.
/// Only use it where that store is true as soon as the compare has succeeded on `id` (the
/// ring buffer's confirmation of a concurrency-id flush, whose acknowledgement word says
/// "a section holding this id saw the mark").
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`], for both `v` and `v2` (valid, aligned, and only ever written
/// by sections keyed on `S` holding `id`).
#[inline(always)]
pub unsafe fn cmpeqv_trystorev_storev_on<S: SlotId>(
    id: u32,
    v: *mut u64,
    expect: u64,
    v2: *mut u64,
    newv2: u64,
    newv: u64,
) -> Result<(), RseqError> {
    let off = OFFSET.load(Ordering::Relaxed);
    let status: u32;
    // SAFETY: rseq registered (caller), `v` and `v2` valid and owned by sections holding `id`
    // (caller); CS layout as documented in the module doc, the try-store before the single
    // commit store.
    unsafe {
        core::arch::asm!(
            rseq_cs_prologue!(),
            rseq_cs_arm!("{tmp}", "{id:e}"),
            "cmp qword ptr [{v}], {expect}",
            "jne 8f",
            "mov qword ptr [{v2}], {newv2}",
            "mov qword ptr [{v}], {newv}",
            rseq_cs_epilogue!(),
            off = in(reg) off,
            field = const S::FIELD,
            id = in(reg) id,
            v = in(reg) v,
            expect = in(reg) expect,
            v2 = in(reg) v2,
            newv2 = in(reg) newv2,
            newv = in(reg) newv,
            tmp = out(reg) _,
            status = out(reg) status,
            options(nostack),
        );
    }
    status_to_result(status)
}

/// `if id_S != id → CpuMismatch; n = *v + count; *v = n; return n` — a CPU-local add, keyed
/// on the id `S`.
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`].
#[inline(always)]
pub unsafe fn addv_on<S: SlotId>(id: u32, v: *mut u64, count: u64) -> Result<u64, RseqError> {
    // SAFETY: this function's contract is the implementation's; the caller upholds it.
    unsafe { addv_impl::<false, S>(OFFSET.load(Ordering::Relaxed), id, v, count, 0) }
}

/// [`addv_on`] with the offset the caller keeps ([`offset`]).
///
/// # Safety
/// As [`addv_on`]; `off` must come from [`offset`].
#[inline(always)]
pub unsafe fn addv_at<S: SlotId>(
    off: Offset,
    id: u32,
    v: *mut u64,
    count: u64,
) -> Result<u64, RseqError> {
    // SAFETY: this function's contract is the implementation's; the caller upholds it.
    unsafe { addv_impl::<false, S>(off.0, id, v, count, 0) }
}

/// [`addv_on`] spinning `spins` iterations between its load and its commit store.
///
/// # Safety
/// As [`cmpeqv_storev_tsc_on`].
#[inline(always)]
pub unsafe fn addv_delayed_on<S: SlotId>(
    id: u32,
    v: *mut u64,
    count: u64,
    spins: u64,
) -> Result<u64, RseqError> {
    // SAFETY: this function's contract is the implementation's; the caller upholds it.
    unsafe { addv_impl::<true, S>(OFFSET.load(Ordering::Relaxed), id, v, count, spins.max(1)) }
}

#[inline(always)]
unsafe fn addv_impl<const DELAY: bool, S: SlotId>(
    off: i64,
    cpu: u32,
    v: *mut u64,
    count: u64,
    spins: u64,
) -> Result<u64, RseqError> {
    let status: u32;
    let newv: u64;
    if DELAY {
        // SAFETY: rseq registered (caller), `v` valid and rseq-owned by `cpu` (caller).
        unsafe {
            core::arch::asm!(
                rseq_cs_prologue!(),
                rseq_cs_arm!("{tmp}", "{cpu:e}"),
                "mov {n}, qword ptr [{v}]",
                "add {n}, {count}",
                "2:",
                "dec {spins}",
                "jnz 2b",
                "mov qword ptr [{v}], {n}",
                rseq_cs_epilogue!(),
                off = in(reg) off,
                field = const S::FIELD,
                cpu = in(reg) cpu,
                v = in(reg) v,
                count = in(reg) count,
                spins = inout(reg) spins => _,
                n = out(reg) newv,
                tmp = out(reg) _,
                status = out(reg) status,
                options(nostack),
            );
        }
    } else {
        let _ = spins;
        // SAFETY: rseq registered (caller), `v` valid and rseq-owned by `cpu` (caller). `n`
        // carries the descriptor's address before it carries the sum (one register fewer).
        unsafe {
            core::arch::asm!(
                rseq_cs_prologue!(),
                rseq_cs_arm!("{n}", "{cpu:e}"),
                "mov {n}, qword ptr [{v}]",
                "add {n}, {count}",
                "mov qword ptr [{v}], {n}",
                rseq_cs_epilogue!(),
                off = in(reg) off,
                field = const S::FIELD,
                cpu = in(reg) cpu,
                v = in(reg) v,
                count = in(reg) count,
                n = out(reg) newv,
                status = out(reg) status,
                options(nostack),
            );
        }
    }
    status_to_result(status)?;
    Ok(newv)
}

/// The ring buffer's LOCAL commit with its completion test: `if id_S != id → CpuMismatch; n =
/// *v + count; *v = n` (the commit), then, after the section, `n + *(v + REMOTE_AT) >=
/// complete` (the word `REMOTE_AT` bytes from `v` loaded after the commit store, in program
/// order: a plain load, acquire on x86): whether the caller saw its sub-buffer complete. The
/// same accesses in the same order as [`addv_at`] followed by a load of the other word; the
/// section leaves through label operands (no status register on the straight path: the
/// completed case jumps to its own continuation, the common one falls through).
///
/// # Safety
/// As [`addv_at`]; `v + REMOTE_AT` must be valid for reads of a `u64` (any writer).
#[inline(always)]
pub unsafe fn addv_sum_at<S: SlotId, const REMOTE_AT: i32>(
    off: Offset,
    id: u32,
    v: *mut u64,
    count: u64,
    complete: u64,
) -> Result<bool, RseqError> {
    // SAFETY: rseq registered (caller), `v` valid and rseq-owned by `id` (caller), `v +
    // REMOTE_AT` readable (caller). `n` carries the descriptor's address before it carries
    // the sum. CS layout as in the module doc; the load and compare follow label 5, outside
    // the section.
    unsafe {
        core::arch::asm!(
            rseq_cs_descriptor!(),
            rseq_cs_arm!("{n}", "{id:e}"),
            "mov {n}, qword ptr [{v}]",
            "add {n}, {count}",
            "mov qword ptr [{v}], {n}",
            "5:",
            "add {n}, qword ptr [{v} + {remote_at}]",
            "cmp {n}, {complete}",
            "jae {done}",
            ".pushsection __rseq_failure, \"ax\"",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long 0x53053053",
            "6:",
            "jmp {aborted}",
            "7:",
            "jmp {mismatch}",
            ".popsection",
            off = in(reg) off.0,
            field = const S::FIELD,
            id = in(reg) id,
            v = in(reg) v,
            count = in(reg) count,
            complete = in(reg) complete,
            remote_at = const REMOTE_AT,
            n = out(reg) _,
            done = label { return Ok(true) },
            aborted = label {
                note_abort();
                return Err(RseqError::Aborted);
            },
            mismatch = label { return Err(RseqError::CpuMismatch) },
            options(nostack),
        );
    }
    Ok(false)
}

const MEMBARRIER_CMD_FLAG_CPU: libc::c_int = 1;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: libc::c_int = 1 << 7;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: libc::c_int = 1 << 8;

static MEMBARRIER: OnceLock<bool> = OnceLock::new();

/// Register this process for `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` (idempotent). Returns
/// whether the command can be used.
pub fn membarrier_register() -> bool {
    *MEMBARRIER.get_or_init(|| {
        // SAFETY: membarrier takes integer arguments only.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
                0,
                0,
            )
        };
        r == 0
    })
}

/// Full memory barrier on every thread of this process running on `cpu` (and abort of any rseq
/// CS there). Returns false when membarrier is unavailable; callers then rely on their fallback.
pub fn membarrier_rseq_cpu(cpu: u32) -> bool {
    if !membarrier_register() {
        return false;
    }
    // SAFETY: membarrier takes integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
            MEMBARRIER_CMD_FLAG_CPU,
            cpu as libc::c_int,
        )
    };
    r == 0
}

/// Full memory barrier on every thread of this process, wherever it runs, and abort of any rseq
/// critical section in progress (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0)`): the
/// fence of [`membarrier_rseq_cpu`] for words keyed on the concurrency id, whose holder may run
/// on any CPU. Returns false when membarrier is unavailable.
pub fn membarrier_rseq_all() -> bool {
    if !membarrier_register() {
        return false;
    }
    // SAFETY: membarrier takes integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
            0,
            0,
        )
    };
    r == 0
}

/// Pin the calling thread to one CPU (used by helpers that must run on a given CPU, and by
/// tests forcing migrations).
pub fn pin_to_cpu(cpu: u32) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET with an in-range index; sched_setaffinity(0)
    // applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Allow the calling thread on every CPU in `cpus`.
pub fn allow_cpus(cpus: &[u32]) -> std::io::Result<()> {
    // SAFETY: as in pin_to_cpu.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if (c as usize) < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c as usize, &mut set);
            }
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<u32> {
    // SAFETY: cpu_set_t is plain data filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![current_cpu()];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .map(|c| c as u32)
            .collect()
    }
}

/// Number of possible CPU ids (`_SC_NPROCESSORS_CONF`), the size of per-CPU arrays.
pub fn possible_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    n.clamp(1, 4096) as u32
}

/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: when it returns true, every thread of this
/// process has executed a full memory barrier at some point between the call's start and its
/// return (threads running on another CPU are interrupted by an IPI; threads not running pass
/// through the scheduler's barriers before they run again), and the caller's own accesses are
/// ordered with them as by `fence(SeqCst)` on both sides. It lets a rare updater pay for the
/// ordering that frequent readers then get with compiler barriers only. The process is
/// registered (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`) on first need, i.e. when the
/// command fails with `EPERM` (also after `fork`, whose child starts unregistered). Returns
/// false when the kernel does not support it (or a seccomp filter forbids it).
pub fn membarrier_private_expedited() -> bool {
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
    let issue = || {
        // SAFETY: membarrier takes integer arguments only.
        let r =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error())
        }
    };
    match issue() {
        Ok(()) => true,
        Err(Some(libc::EPERM)) => {
            // SAFETY: membarrier takes integer arguments only.
            let reg = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                    0,
                    0,
                )
            };
            reg == 0 && issue().is_ok()
        }
        Err(_) => false,
    }
}
