//! A channel: one ring buffer per CPU in a memfd, and the writer side (reserve, commit, flush).
//!
//! # Offsets
//! Each CPU buffer has a free-running byte offset `write_offset` (u64, never wraps in
//! practice). Position `p` lives in sub-buffer `(p / subbuf_size) % num_subbuf`, lap
//! `p / buf_size`. A sub-buffer is filled as `[packet header][records...][padding]`; every
//! byte of it is reserved by exactly one writer and committed exactly once, so the sum of its
//! commit counters reaches `(lap + 1) * subbuf_size` exactly when every reservation in it has
//! been committed.
//!
//! # Reserve (per event)
//! 1. Compute the record length (header + payload) — preemptible, may fault.
//! 2. `cpu = current CPU`; read `write_offset` of that CPU's buffer; compute where the record
//!    goes. A record fits in the current sub-buffer only if it ends *strictly* before the
//!    sub-buffer end, so a sub-buffer is always closed by someone who writes its end fields.
//!    If it does not fit, the reservation also covers the padding that closes the current
//!    sub-buffer and the packet header of the next one — after checking that the next one is
//!    free: in discard mode the consumer must have taken its previous lap, in both modes its
//!    previous lap must be fully committed (a writer blocked between reserve and commit holds
//!    it: we drop rather than wrap onto it, hazard 4).
//! 3. One rseq critical section on `cpu`: compare `write_offset` with what we read, read the
//!    TSC, store the new offset (the commit). Aborted or raced: start again at 2.
//!    The timestamp is read inside the section, so per-buffer time order equals offset order
//!    (hazard 7). A reservation that closes a sub-buffer snapshots the loss counters just
//!    before this step, after the acquire load of step 2, so snapshots are taken in packet
//!    order and the cumulative counts in packet headers never decrease ([`crate::close`]).
//!    In discard mode on the rseq path with the TSC, the same section also writes the record
//!    header (and, when it closes a sub-buffer, the closed packet's content size) before its
//!    offset store (below, "Record headers inside the reserve section").
//! 4. If we switched: write the old packet's end fields (the loss snapshot, the content size,
//!    the end timestamp last) and commit its padding; write the new packet's header and
//!    commit it.
//!
//! Steps 2–3 for the common case (rseq mode, TSC clock, the record fits in the current
//! sub-buffer, the critical section commits at the first attempt) are inlined into the caller
//! ([`Channel::reserve`]); anything else — atomic mode, monotonic clock, a sub-buffer switch,
//! a loss, a retry after an abort or a lost race, a buffer's first use — falls back, having
//! reserved nothing, to the general out-of-line path, which runs all four steps. Both paths
//! apply the same strict-fit rule. Where the nanoseconds of the fast path go:
//! `docs/ringbuf-cost.md` and `examples/reserve_cost.rs`.
//!
//! # Compact headers
//! Records use the compact 6-byte header of `faultline_wire` (5-bit id, 27 timestamp bits,
//! u16 length) only on the inline fast path (rseq, TSC, discard mode;
//! [`Channel::compact_headers`]) and only when the reader can rebuild the timestamp exactly:
//! `ts - prev < 2^27` for the record `prev` right before it in the packet. The writer cannot
//! see `prev`; it uses a floor instead, `BufferHeader::last_ts`, which every reserver stores
//! (relaxed) **after its header store**, and a packet's opener resets to 0 **before** its
//! reservation. So a value read (after the acquire load of `write_offset`; the section reads
//! it after its compare) is 0 or the
//! timestamp of a reservation that precedes ours in offset order, in the same packet, with its
//! header written; timestamps follow offset order (read inside the reserve section), so
//! `floor <= prev <= ts` and `ts - floor < 2^27` implies the rebuild is exact. The decision is
//! made inside the reserve critical section (`faultline_rseq::cmpeqv_storev_tsc_pick_hdr_on`):
//! it reads the TSC, compares it with the floor, and stores the compact or the extended header
//! and end.
//! Deciding outside (from a timestamp read before the section) breaks it: a writer preempted
//! between the read and the section lands after later records with an older timestamp.
//! Everywhere else (atomic mode or the monotonic clock: the timestamp is read outside the
//! compare-and-store, so not in offset order; overwrite mode: recovery could not tell an older
//! lap's compact header from this lap's; a packet's first record) records get the 15-byte
//! extended header. A dropped or dead compact reservation is rewritten in place as compact
//! padding (10 bytes: it has at least 4 payload bytes), keeping its 27 timestamp bits.
//! Records are packed (`faultline_wire::RECORD_ALIGN` is 1): a record starts where the
//! previous one ends, so header stores are unaligned (plain stores, see
//! [`Reservation::commit`]).
//!
//! A writer of the previous packet preempted between its reserve section and its `last_ts`
//! store can store its (older) timestamp after the next packet's opener reset it. Later
//! records then decide against an older floor, which only makes them extended more often: the
//! rebuild starts from the packet's first record, which is extended (its opener's floor is 0)
//! and, its header being written inside the reserve section, always there for recovery.
//!
//! # Record headers inside the reserve section
//! In discard mode on the rseq path with the TSC ([`Channel::headers_in_reserve_section`]) no
//! reservation is ever visible without its record header: the reserve critical section reads
//! the TSC, stores the header (id pending, the timestamp, the length: compact or extended,
//! chosen in the same section) into the reserved bytes, and only then stores the new
//! `write_offset` (`faultline_rseq::cmpeqv_storev_tsc_pick_hdr_on`,
//! `cmpeqv_storev_tsc_hdr_on`; the general path's `cmpeqv_storev_tsc_stores_on`, which also
//! writes a long length, and a closing reservation's content size of the packet it closes,
//! flushes included). The header stores happen after the section's compare, so while the
//! bytes are still nobody's: `write_offset` equals `old` on this CPU, so no one has reserved
//! `[old, ...)`, nobody reads there (discard mode: the consumer looks only at complete
//! sub-buffers, readers never past `content_size`), and the next sub-buffer a switch writes
//! into was found free before the section and cannot be reserved by anyone else while the
//! offset stays `old`. An aborted section's stores are therefore harmless: whoever reserves
//! those bytes next (on this CPU, after us) writes its own header there. A [`BufferIndex::Cid`]
//! flush that marks the offset meanwhile aborts the section with its membarrier before it
//! closes the sub-buffer at `old`, and readers never look past that packet's content.
//!
//! What it buys: dead-writer recovery never meets a header-less reservation in these channels
//! (a writer dies before or after its section, never between it and its header), so the
//! consumer does not zero what it hands back (`consumer.rs`, "Nothing is zeroed"): a third of
//! its CPU per event, and the zeroed lines no longer sit in the consumer CPU's cache for the
//! writer to pull back (`docs/ringbuf-cost.md`). The closer's other end fields (loss snapshot,
//! end timestamp, written last) still follow the section; recovery trusts such a packet's
//! content size and rewrites the rest when the end timestamp is not this lap's.
//!
//! Overwrite mode keeps the header after the section, behind a release fence: its reader
//! copies a sub-buffer that writers may be re-entering and trusts the copy only if
//! `write_offset` did not move meanwhile, so no byte of a new record may become visible before
//! the offset store (a header stored inside the section could, and an aborted section's store
//! would never move the offset at all). Overwrite mode has extended headers only, told from
//! an older lap's by time (`recover.rs`).
//!
//! # Commit
//! The reservation remembers `(cpu, sub-buffer, lap)` from step 2 and commits there, LOCAL if
//! still on `cpu`, REMOTE otherwise ([`crate::commit`]). Never recomputed from the current CPU
//! (hazard 2).
//!
//! # Flush (quiet buffers) and teardown
//! Closing a partially filled sub-buffer writes `write_offset`, an rseq-owned word, so it must
//! run on the buffer's CPU (hazard 3): [`Channel::flush_all`] runs [`Channel::flush_cpu`] on a
//! short-lived helper thread pinned to each CPU, using the same rseq compare-and-store as
//! writers — the user-space analogue of an IPI. Nothing ever stores another CPU's rseq words
//! from the wrong CPU.
//!
//! # Nesting
//! A signal handler may trace while the interrupted code holds a reservation on the same
//! buffer (hazard 8): nothing here is a lock; the handler's reservation simply comes after
//! and both commits add to the sums.
//!
//! # Buffers per CPU or per concurrency id
//! [`ChannelConfig::index`] picks what buffer `k` belongs to; the header records it
//! ([`BufferIndex`], [`Channel::buffer_index`]) for consumers and readers.
//! * [`BufferIndex::Cpu`] (default): CPU `k`. Every rseq section is keyed on `rseq->cpu_id`.
//! * [`BufferIndex::Cid`]: concurrency id `k` (`rseq->mm_cid`) of the **writer process** named
//!   in the header (the creator). Everything above holds with "CPU" read as "concurrency id":
//!   the reserve and LOCAL-commit sections are the same code keyed on `mm_cid`
//!   (`faultline_rseq::SlotId`), so the timestamp is still read inside the reserve section
//!   keyed on the buffer's id (per-buffer time order = offset order), and a writer whose id
//!   changed between reserve and commit commits REMOTE into the buffer it reserved in. The
//!   kernel keeps concurrency ids below both the process's thread count and the number of CPUs
//!   it may run on, so a process with 3 threads, or pinned to 2 CPUs, touches at most 3 (2)
//!   buffers whatever the machine's CPU count; the memfd is sparse, so untouched buffers cost
//!   no memory ([`Channel::active_buffers`], [`Channel::resident_bytes`]).
//!
//!   Concurrency ids are per process: two processes both have an id 0. So only the writer
//!   process writes: any other process — a `fork` child (its cached process id is reset by a
//!   `pthread_atfork` handler), or one that opened the memfd — gets [`Lost::NoBuffer`] for
//!   every event and cannot flush. A child created by a raw `clone` system call without
//!   `CLONE_VM` skips the atfork handler and is not detected: do not trace from one into an
//!   inherited per-cid channel. Channels that several processes write (`faultline record`)
//!   stay per CPU.
//!
//!   The REMOTE commit's fence (hazard 1) is `membarrier` on every CPU running the process
//!   (the id's holder may run anywhere), not on one CPU.
//!
//! ## Flushing a concurrency-id buffer
//! No thread can choose its concurrency id, so the pinned-helper flush cannot work. Instead
//! the flusher, any thread of the writer process (one at a time, `cid_flush`), closes the
//! partially filled sub-buffers of all the buffers it flushes in one round:
//! 1. per buffer: `old = write_offset` (acquire), the loss snapshot, the end timestamp (read
//!    in order, `clock::now_ordered`), then compare-and-swap `old` -> `new | FLUSH_MARK`
//!    (`new` the next sub-buffer start; the marked value is sub-buffer aligned, so the fast
//!    path never builds on it);
//! 2. one `membarrier(PRIVATE_EXPEDITED_RSEQ)` for all of them: any critical section in
//!    progress has finished or was aborted when it returns. A section that compared `old`
//!    before the mark and stored after it has therefore already replaced the mark with its
//!    own reservation;
//! 3. per buffer: compare-and-swap `new | FLUSH_MARK` -> `new`. Success: nobody replaced the
//!    mark, `[old, new)` is the flusher's and it closes the sub-buffer as a writer would.
//!    Failure, but `flush_ack == new | FLUSH_MARK` (step 3'): a writer confirmed the mark
//!    (below), `[old, new)` is the flusher's as well. Otherwise a writer's reservation from
//!    `old` won, nothing was written, and the buffer goes into the next round.
//!
//! **Writers never wait for the flusher.** A writer whose general path reads a marked offset
//! confirms it in one critical section keyed on the buffer's id
//! (`faultline_rseq::cmpeqv_trystorev_storev_on`): compare the offset with the mark, store
//! `flush_ack = mark`, commit the offset unmarked; then it reserves as usual, after the
//! closed sub-buffer. While that section runs its thread holds the id, so no other section
//! of the id is between its compare and its store: in particular none that compared `old`
//! before the mark. So a section that saw the mark proves what the membarrier proves, and
//! from then on the mark can only be replaced by confirmations (all storing `new`) or the
//! flusher's step 3 (storing `new`); the acknowledgement, written after the compare, is true
//! even if the section is then aborted before its commit. Marks never repeat once confirmed
//! (`new` is a free-running position past the closed sub-buffer), so an old acknowledgement
//! never matches a later mark. The end timestamp is read before the mark because a writer
//! that confirmed may write the next sub-buffer before the flusher looks again.
//!
//! Formerly writers waited a few yields at a mark and then dropped the event as stalled, so
//! a flusher preempted inside its window (a loaded machine) cost every event written meanwhile
//! (`tests/cid_flush.rs`). `tests/loom_cid_flush.rs` model-checks the protocol; its broken
//! variants (no membarrier, the acknowledgement ignored, a confirmation outside a section of
//! the id, the timestamp read after the membarrier, a writer giving up at the mark) fail.
//! If the membarrier fails (not once the channel exists: `cid_supported`), an unconfirmed
//! mark is kept and resolved by a later flush.
//!
//! # Rules for the traced program
//! One process (one `mm`) writes a channel's buffers at a time for the membarrier fast
//! delivery; several processes still work (rseq serialises them per CPU) and delivery then
//! relies on the consumer's periodic check.

use crate::clock::{self, ClockInfo};
use crate::close::{self, CloseOps, LostCounts};
use crate::commit::{self, CommitCounters, CommitKind, NotOnCpu};
use crate::layout::*;
use faultline_rseq::{Cid, Cpu, SlotId};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use thiserror::Error;

/// Channel geometry and behaviour.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Bytes per sub-buffer (power of two, 256 B .. 1 GiB).
    pub subbuf_size: u64,
    /// Sub-buffers per CPU (power of two, 2 .. 65536).
    pub num_subbuf: u64,
    /// Discard new events or overwrite the oldest sub-buffers when the buffer is full.
    pub mode: Mode,
    /// Commit path: rseq critical sections, or atomics everywhere.
    pub sync: SyncMode,
    /// Timestamp clock.
    pub clock: ClockKind,
    /// Number of per-CPU buffers; default: possible CPUs (also the number of slots in
    /// [`BufferIndex::Cid`] mode: a concurrency id is always below the CPU count).
    pub num_cpus: Option<u32>,
    /// Buffers per CPU (default) or per concurrency id of the creating process (module docs).
    pub index: BufferIndex,
    /// Trace UUID written into every packet.
    pub uuid: [u8; 16],
    /// Abort injection: spin this many iterations inside the reserve critical section (0 = off).
    pub inject_spins: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            subbuf_size: 1024 * 1024,
            num_subbuf: 4,
            mode: Mode::Discard,
            sync: if faultline_rseq::available() {
                SyncMode::Rseq
            } else {
                SyncMode::Atomic
            },
            clock: clock::default_kind(),
            num_cpus: None,
            index: BufferIndex::Cpu,
            uuid: random_uuid(),
            inject_spins: 0,
        }
    }
}

/// A fresh random (v4) UUID.
pub fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    if rustix::rand::getrandom(&mut u, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = faultline_rseq::rdtsc().to_le_bytes();
        u[..8].copy_from_slice(&t);
        u[8..].copy_from_slice(&(std::process::id() as u64).to_le_bytes());
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Errors creating or opening a channel.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The configuration is not valid (the message says which value).
    #[error("invalid channel configuration: {0}")]
    Config(String),
    /// rseq was asked for but is not registered in this process.
    #[error("rseq requested but not available in this process (GLIBC_TUNABLES=glibc.pthread.rseq=0, glibc < 2.35, or not x86_64)")]
    NoRseq,
    /// Creating, sizing or mapping the memfd failed.
    #[error("shared memory: {0}")]
    Io(#[from] std::io::Error),
    /// The mapped file is not a valid faultline channel.
    #[error("not a faultline channel or corrupted: {0}")]
    Corrupt(String),
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Discard mode, no free sub-buffer: the consumer is behind.
    Full,
    /// The next sub-buffer still holds an uncommitted reservation (a stalled writer).
    Stalled,
    /// The record is larger than a sub-buffer can hold.
    TooBig,
    /// The current CPU has no buffer (CPU id beyond the channel's CPU count), or, in a
    /// [`BufferIndex::Cid`] channel, this process is not the channel's writer process.
    NoBuffer,
}

/// A mark [`Channel::flush_all`] put on a concurrency-id buffer: the range `[old, new)` it
/// closes if the mark is confirmed, with the end timestamp and loss snapshot for its header.
struct CidMark {
    slot: u32,
    old: u64,
    new: u64,
    ts: u64,
    lost: LostCounts,
}

/// Whether a flush had anything to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// A sub-buffer was closed (delivered to the consumer).
    Closed,
    /// There was nothing to close.
    Nothing,
}

/// Flushing failed for a CPU.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlushError {
    /// The flush ran on another CPU.
    #[error("flush of CPU {0} must run on that CPU (rseq-owned words)")]
    NotOnCpu(u32),
    /// A [`BufferIndex::Cid`] buffer can only be flushed by its writer process, with membarrier.
    #[error("concurrency-id buffer {0}: {1}")]
    Cid(u32, String),
    /// No helper thread could be pinned to the CPU (the error says why).
    #[error("cannot run a helper on CPU {0}: {1}")]
    Pin(u32, String),
    /// The channel has no buffer for that CPU.
    #[error("CPU {0} has no buffer")]
    NoBuffer(u32),
    /// A value read from the CPU's buffer failed a consistency check.
    #[error("CPU {0} buffer corrupted: {1}")]
    Corrupt(u32, String),
}

const SIZE_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// Seal the size of a memfd (shrink, grow) and the seals themselves.
fn seal_size(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own; no memory is passed.
    if unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_ADD_SEALS,
            SIZE_SEALS | libc::F_SEAL_SEAL,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the file's size can no longer change (both size seals present).
fn size_sealed(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl(F_GET_SEALS) on a descriptor we own; no memory is passed.
    let s = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    s >= 0 && s & SIZE_SEALS == SIZE_SEALS
}

/// One channel, mapped in this process. Writers and the consumer both use it.
pub struct Channel {
    base: *mut u8,
    /// `base + geo.buffers_offset`: buffer `k`'s region starts at `bufs + k * stride`.
    bufs: *mut u8,
    pub(crate) geo: Geometry,
    /// Which reserve path to take: [`FAST_RSEQ`] (rseq sync and TSC clock: the inline fast
    /// path), [`FAST_RSEQ_INJECT`] (the same with abort injection, so the stress harness runs
    /// the fast path's code too) or [`GENERAL`].
    path: u8,
    inject_spins: u64,
    /// Every reservation writes its header inside its reserve section
    /// ([`Channel::headers_in_reserve_section`]).
    hdr_in_cs: bool,
    /// This process's `__rseq_offset`, kept here so that the fast path's sections address the
    /// rseq area with one load of it (from this struct, already at hand) instead of a GOT load
    /// and a load per section (0, unused, when rseq is not available).
    rseq_off: faultline_rseq::Offset,
    /// The compact-header window of the fast path: [`faultline_wire::COMPACT_TS_WINDOW`] in
    /// discard mode, 0 (never compact) in overwrite mode (module docs).
    compact_window: u64,
    clock: ClockInfo,
    /// Serialises this process's flushes of [`BufferIndex::Cid`] buffers (the flush protocol
    /// allows one flusher per buffer; see `flush_cid`), and holds the marks a flush could not
    /// resolve (membarrier failed) for the next one.
    cid_flush: std::sync::Mutex<Vec<CidMark>>,
    map: memmap2::MmapRaw,
    file: File,
}

// SAFETY: all shared state behind `base` is accessed through atomics or through reservations
// that give exclusive ownership of byte ranges (the protocol in the module doc); the mapping
// lives as long as the Channel.
unsafe impl Send for Channel {}
// SAFETY: as above.
unsafe impl Sync for Channel {}

/// `reserve_slow`'s first word when it reserved nothing (positions are 8-aligned, so never
/// this odd value).
const SLOW_LOST: u64 = u64::MAX;

/// `Reservation::id` bit set when the record has a compact header.
const COMPACT_BIT: u64 = 1 << 32;

const GENERAL: u8 = 0;
const FAST_RSEQ: u8 = 1;
const FAST_RSEQ_INJECT: u8 = 2;
const FAST_CID: u8 = 3;
const FAST_CID_INJECT: u8 = 4;
const FAST_RSEQ_OW: u8 = 5;
const FAST_CID_OW: u8 = 6;

/// The extended header's first word without its timestamp bits, id pending
/// (`faultline_wire::extended_header_words`), for the sections that write it.
const EXT_LO: u64 = faultline_wire::extended_header_words(PENDING_RECORD_ID, 0, 0).0;
/// A compact record is this many bytes shorter than the extended one of the same payload.
const COMPACT_SHRINK: u32 =
    (faultline_wire::EXTENDED_HEADER_SIZE - faultline_wire::COMPACT_HEADER_SIZE) as u32;
const _: () = assert!(faultline_wire::COMPACT_TS_WINDOW <= i32::MAX as u64);
const COMPACT_WINDOW: u32 = faultline_wire::COMPACT_TS_WINDOW as u32;
/// Where `BufferHeader::last_ts` lies relative to `write_offset` (the picking reserve section
/// reads the floor from there).
const LAST_TS_FROM_OFFSET: i32 = (std::mem::offset_of!(BufferHeader, last_ts)
    - std::mem::offset_of!(BufferHeader, write_offset)) as i32;

/// Where `SubbufCounters::remote` lies relative to `local` (the LOCAL commit's fused load).
const REMOTE_FROM_LOCAL: i32 = (std::mem::offset_of!(SubbufCounters, remote)
    - std::mem::offset_of!(SubbufCounters, local)) as i32;

mod cpu_rseq;
pub use cpu_rseq::{CpuRseq, CpuRseqReservation};

/// Mark a [`BufferIndex::Cid`] flush puts into `write_offset` while it closes a sub-buffer
/// (`flush_cid`); never part of a real position (below `consumer::MAX_POSITION`, which it
/// equals). The marked value is sub-buffer aligned, so the fast path never builds on it.
pub(crate) const FLUSH_MARK: u64 = 1 << 62;

/// Offset in the header page of the active map: one bit per buffer (4096 bits), set by the
/// first writer of the buffer after its `active` word, so that finding the used buffers reads
/// one page instead of one page per possible buffer.
pub(crate) const ACTIVE_MAP_OFFSET: usize = 512;
const _: () = assert!(ACTIVE_MAP_OFFSET >= std::mem::size_of::<ChannelHeader>());
const _: () = assert!(ACTIVE_MAP_OFFSET + 4096 / 8 <= PAGE);

/// This process's id (thread group id), cached; 0 until first asked. Reset in a `fork` child
/// by a `pthread_atfork` handler, so a child never passes for its parent (module docs).
static PROCESS_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn forget_process_id() {
    PROCESS_ID.store(0, Ordering::Relaxed);
}

/// Whether this process can write [`BufferIndex::Cid`] buffers: rseq with `mm_cid` (Linux
/// 6.3+) and membarrier (the REMOTE commit's fence and the flush need it); `Err` says what is
/// missing.
pub fn cid_supported() -> Result<(), String> {
    match faultline_rseq::Registration::get() {
        None => Err("per-cid buffers need rseq (not registered in this process)".into()),
        Some(r) if !r.has_mm_cid() => Err(format!(
            "per-cid buffers need the kernel's rseq mm_cid (Linux 6.3+; rseq feature size {})",
            r.feature_size
        )),
        Some(_) if !faultline_rseq::membarrier_register() => {
            Err("per-cid buffers need membarrier(PRIVATE_EXPEDITED_RSEQ)".into())
        }
        Some(_) => Ok(()),
    }
}

/// This process's id, cached (see [`PROCESS_ID`]).
fn process_id() -> u32 {
    let p = PROCESS_ID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe, as
        // the child of a multithreaded fork requires).
        unsafe { libc::pthread_atfork(None, None, Some(forget_process_id)) };
    });
    let p = std::process::id();
    PROCESS_ID.store(p, Ordering::Relaxed);
    p
}

/// Geometry derived once from a validated header and never re-read from shared memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub num_cpus: u32,
    pub subbuf_size: u64,
    pub sb_mask: u64,
    pub num_subbuf: u64,
    pub buf_size: u64,
    pub buf_mask: u64,
    pub stride: u64,
    pub buffers_offset: u64,
    pub counters_offset: u64,
    pub data_offset: u64,
    pub total: u64,
    pub mode: Mode,
    pub sync: SyncMode,
    pub clock: ClockKind,
    pub index: BufferIndex,
    /// [`BufferIndex::Cid`]: the only process whose threads may write (0 otherwise).
    pub writer_pid: u32,
    pub uuid: [u8; 16],
    pub max_record: u64,
    /// log2(subbuf_size), log2(buf_size): positions are split with shifts, not divisions.
    pub sb_shift: u32,
    pub buf_shift: u32,
    /// log2(num_subbuf).
    pub nsb_shift: u32,
    /// `(pos & sb_idx_mask) >> ctr_shift` is the byte offset of the commit counters of the
    /// sub-buffer holding `pos` from the first counters (one shift instead of two).
    pub sb_idx_mask: u64,
    pub ctr_shift: u32,
}

impl Geometry {
    fn compute(num_cpus: u32, subbuf_size: u64, num_subbuf: u64) -> Result<Geometry, String> {
        if !subbuf_size.is_power_of_two() || !(256..=(1 << 30)).contains(&subbuf_size) {
            return Err(format!(
                "sub-buffer size {subbuf_size} must be a power of two between 256 B and 1 GiB"
            ));
        }
        if !num_subbuf.is_power_of_two() || !(2..=65536).contains(&num_subbuf) {
            return Err(format!(
                "sub-buffer count {num_subbuf} must be a power of two between 2 and 65536"
            ));
        }
        if num_cpus == 0 || num_cpus > 4096 {
            return Err(format!("CPU count {num_cpus} out of range 1..=4096"));
        }
        let buf_size = subbuf_size
            .checked_mul(num_subbuf)
            .filter(|&b| b <= 1 << 34)
            .ok_or("buffer larger than 16 GiB")?;
        let counters_offset = std::mem::size_of::<BufferHeader>() as u64;
        let data_offset = align_up(
            counters_offset + num_subbuf * std::mem::size_of::<SubbufCounters>() as u64,
            PAGE as u64,
        );
        let stride = align_up(data_offset + buf_size, PAGE as u64);
        let buffers_offset = PAGE as u64;
        let total = stride
            .checked_mul(num_cpus as u64)
            .and_then(|t| t.checked_add(buffers_offset))
            .filter(|&t| t <= 1 << 44)
            .ok_or("channel too large")?;
        Ok(Geometry {
            num_cpus,
            subbuf_size,
            sb_mask: subbuf_size - 1,
            num_subbuf,
            buf_size,
            buf_mask: buf_size - 1,
            stride,
            buffers_offset,
            counters_offset,
            data_offset,
            total,
            mode: Mode::Discard,
            sync: SyncMode::Rseq,
            clock: ClockKind::Tsc,
            index: BufferIndex::Cpu,
            writer_pid: 0,
            uuid: [0; 16],
            // Payloads up to faultline_wire::MAX_PAYLOAD, with the largest header.
            max_record: (subbuf_size - PACKET_HEADER_SIZE - 1)
                .min(RECORD_HEADER_SIZE + faultline_wire::MAX_PAYLOAD as u64),
            sb_shift: subbuf_size.trailing_zeros(),
            buf_shift: buf_size.trailing_zeros(),
            nsb_shift: num_subbuf.trailing_zeros(),
            sb_idx_mask: (buf_size - 1) & !(subbuf_size - 1),
            // subbuf_size >= 256 > size_of::<SubbufCounters>() (both powers of two).
            ctr_shift: subbuf_size.trailing_zeros() - SUBBUF_COUNTERS_SHIFT,
        })
    }

    #[inline(always)]
    pub fn idx(&self, pos: u64) -> u64 {
        (pos >> self.sb_shift) & (self.num_subbuf - 1)
    }
    #[inline(always)]
    pub fn lap(&self, pos: u64) -> u64 {
        pos >> self.buf_shift
    }
    /// Commit sum at which the sub-buffer holding `pos` is complete.
    #[inline(always)]
    pub fn complete(&self, pos: u64) -> u64 {
        (self.lap(pos) + 1) << self.sb_shift
    }
    /// [`Geometry::complete`] with one shift instead of two: `(lap + 1) * buf_size /
    /// num_subbuf`. Equal for every position below `2^64 - buf_size` (real positions stay
    /// below `consumer::MAX_POSITION`); wrapping beyond (a garbage offset in shared memory):
    /// then only a delivery is missed, which the consumer's periodic check covers.
    #[inline(always)]
    fn complete_own(&self, pos: u64) -> u64 {
        (pos | self.buf_mask).wrapping_add(1) >> self.nsb_shift
    }
    /// Byte offset, from the start of a buffer's region, of the commit counters of the
    /// sub-buffer holding `pos`.
    #[inline(always)]
    fn counters_off(&self, pos: u64) -> u64 {
        self.counters_offset + ((pos & self.sb_idx_mask) >> self.ctr_shift)
    }
}

/// log2 of `size_of::<SubbufCounters>()`.
const SUBBUF_COUNTERS_SHIFT: u32 = std::mem::size_of::<SubbufCounters>().trailing_zeros();
const _: () = assert!(1 << SUBBUF_COUNTERS_SHIFT == std::mem::size_of::<SubbufCounters>());
const _: () = assert!(std::mem::size_of::<SubbufCounters>() < 256);

/// An exclusive slot in a CPU buffer, between reserve and commit. The payload may be written
/// from any thread state: faulting, blocking, migrating. Dropping it without
/// [`Reservation::commit`] commits it as a discarded record (id [`DISCARDED_RECORD_ID`]) so the
/// sub-buffer is never left unbalanced.
pub struct Reservation<'a> {
    chan: &'a Channel,
    /// The record header in the mapping (`data_ptr(cpu, pos)`, computed once at reserve).
    rec: *mut u8,
    /// Position of the record header.
    pos: u64,
    timestamp: u64,
    /// Bytes to commit for this record (alignment padding before it included).
    commit_len: u64,
    payload_len: u64,
    /// The reserving CPU, widened: every field is 8 bytes so that no copy of a Reservation
    /// through the stack loads 8 bytes over a 4-byte store (a store-forwarding stall).
    cpu: u64,
    /// The event id (widened like `cpu`), written into the record header at commit (see
    /// [`PENDING_RECORD_ID`]).
    id: u64,
}

// SAFETY: `rec` points into the channel's mapping, into a byte range the reservation owns
// exclusively until it is committed or dropped (the same range `pos` names); the reservation
// may move to and be used from another thread as when it held only `pos`.
unsafe impl Send for Reservation<'_> {}
// SAFETY: `&Reservation` only reads its own fields (no method taking `&self` writes the record).
unsafe impl Sync for Reservation<'_> {}

/// Record id of a reservation dropped without commit: a padding record
/// ([`faultline_wire::PADDING_ID`]) that every reader skips; its payload is zeroed.
pub const DISCARDED_RECORD_ID: u32 = faultline_wire::PADDING_ID;

/// Record id of a reservation not committed (yet) ([`faultline_wire::PENDING_ID`]).
/// [`Channel::reserve`] writes the record header with this id and [`Reservation::commit`]
/// stores the real id just before its commit counter update, so a record whose writer died
/// between reserve and commit reads as pending: [`Channel::recover_dead_writers`] counts it and
/// turns it into a padding record. It can only be seen in a sub-buffer that recovery completed
/// before recovery's rewrite, never in a complete packet.
pub const PENDING_RECORD_ID: u32 = faultline_wire::PENDING_ID;

impl Reservation<'_> {
    /// The CPU whose buffer holds this reservation.
    pub fn cpu(&self) -> u32 {
        self.cpu as u32
    }
    /// Timestamp read inside the reserve critical section.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
    /// Bytes of the record header (compact or extended, `faultline_wire`; an extended one has
    /// a long length for a payload of `faultline_wire::LONG_LEN` bytes or more).
    #[inline(always)]
    fn header_len(&self) -> u64 {
        if self.id & COMPACT_BIT != 0 {
            faultline_wire::COMPACT_HEADER_SIZE as u64
        } else {
            faultline_wire::EXTENDED_HEADER_SIZE as u64
                + (self.payload_len >= faultline_wire::LONG_LEN as u64) as u64
                    * faultline_wire::LONG_LEN_EXTRA as u64
        }
    }
    /// Whether the record has a compact header.
    pub fn is_compact(&self) -> bool {
        self.id & COMPACT_BIT != 0
    }
    /// The payload bytes (exactly the reserved length).
    #[inline(always)]
    pub fn payload(&mut self) -> &mut [u8] {
        // SAFETY: `rec` is the record header (data_ptr(cpu, pos)); the payload follows it.
        // [pos, pos + header + payload_len) lies inside one sub-buffer of this CPU's
        // data area (the reserve computation guarantees it from masked offsets) and is
        // exclusively ours until commit: no writer reserves it again before the sub-buffer's
        // commit sum is complete, and no reader copies it before then.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.rec.add(self.header_len() as usize),
                self.payload_len as usize,
            )
        }
    }
    /// Publish the record.
    #[inline(always)]
    pub fn commit(self) -> CommitKind {
        // Committing consumes the reservation without running its Drop (which would commit it
        // a second time, as a discarded record): no drop flag to set and test.
        let r = std::mem::ManuallyDrop::new(self);
        r.store_id();
        r.chan.commit_range(r.cpu as u32, r.pos, r.commit_len)
    }

    /// The first half of [`Reservation::commit`]: the real id goes into the header.
    #[inline(always)]
    fn store_id(&self) {
        let r = self;
        // SAFETY: the record header (`rec`, at `pos`) lies in our exclusive reservation (see
        // payload()), and the bytes written (the first, or 4 at EXTENDED_ID_OFFSET) are within
        // its 6 or 15 (19) bytes, at any alignment (packed records), hence the unaligned
        // store; no other access to these bytes is atomic, so a plain store is all the format
        // needs. This plain store precedes the commit counter update in program order; that
        // update is a release (x86 TSO store in the rseq section, whose asm clobbers memory,
        // or an AcqRel fetch_add), so the consumer's acquire load of the counters
        // (commit_sum) that sees our bytes also sees the real id.
        unsafe {
            if r.id & COMPACT_BIT != 0 {
                // Compact: the first byte holds the tag (low 5 bits, PENDING_TAG as the
                // reserve section wrote it) and timestamp bits; flipping the tag's bits to the
                // id leaves the timestamp bits alone (`faultline_wire::compact_word`).
                const _: () = assert!(faultline_wire::PENDING_TAG < 32);
                const _: () = assert!(faultline_wire::MAX_COMPACT_ID < 32);
                *r.rec ^= (r.id as u32 ^ faultline_wire::PENDING_TAG) as u8;
            } else {
                std::ptr::write_unaligned(
                    r.rec.add(faultline_wire::EXTENDED_ID_OFFSET) as *mut u32,
                    r.id as u32,
                );
            }
        }
    }
}

impl Drop for Reservation<'_> {
    /// Only reached for a reservation that was not committed ([`Reservation::commit`] skips it).
    /// Inline, handing the fields to an out-of-line function in registers: an out-of-line
    /// `drop(&mut self)` makes the caller build the Reservation in memory, which LLVM does with
    /// 8-byte stores read back by 16-byte loads (failed store forwarding, ~18 ns measured).
    #[inline]
    fn drop(&mut self) {
        self.chan.discard(
            self.cpu as u32,
            self.pos,
            self.commit_len,
            self.payload_len,
            self.timestamp,
            self.id & COMPACT_BIT != 0,
        );
    }
}

/// Counters of one sub-buffer in shared memory, with the operations of the commit protocol;
/// `RSEQ`: the channel's sync mode; `S`: what its buffers are keyed on ([`Cpu`] or [`Cid`]).
/// Two pointers, so it is passed in registers.
#[derive(Clone, Copy)]
struct ShmCounters<'a, const RSEQ: bool, S> {
    c: &'a SubbufCounters,
    /// The header of the buffer holding `c` (for the membarrier count).
    b: &'a BufferHeader,
    /// The channel's `rseq_off`.
    off: faultline_rseq::Offset,
    _s: std::marker::PhantomData<S>,
}

impl<'a, const RSEQ: bool, S> ShmCounters<'a, RSEQ, S> {
    #[inline(always)]
    fn new(c: &'a SubbufCounters, b: &'a BufferHeader, off: faultline_rseq::Offset) -> Self {
        ShmCounters {
            c,
            b,
            off,
            _s: std::marker::PhantomData,
        }
    }
}

impl<const RSEQ: bool, S: SlotId + Copy> CommitCounters for ShmCounters<'_, RSEQ, S> {
    #[inline(always)]
    fn local_add(&self, cpu: u32, n: u64) -> Result<u64, NotOnCpu> {
        if !RSEQ {
            return Err(NotOnCpu);
        }
        loop {
            // SAFETY: rseq is available (the channel was created/opened in rseq mode only if
            // so, and then `off` is faultline_rseq::offset()); `local` of buffer `cpu` is
            // written only by rseq critical sections keyed on `S` holding `cpu` (for Cid: in the
            // writer process only, checked at reserve).
            match unsafe { faultline_rseq::addv_at::<S>(self.off, cpu, self.c.local.as_ptr(), n) } {
                Ok(v) => return Ok(v),
                Err(faultline_rseq::RseqError::CpuMismatch) => return Err(NotOnCpu),
                Err(_) => continue,
            }
        }
    }
    #[inline(always)]
    fn local_commit(&self, cpu: u32, n: u64, complete: u64) -> Result<bool, NotOnCpu> {
        if !RSEQ {
            return Err(NotOnCpu);
        }
        loop {
            // SAFETY: as in local_add; `remote` lies REMOTE_FROM_LOCAL bytes after `local` in
            // the same SubbufCounters (any writer: it is only read here). The load of `remote`
            // follows the commit store in the same asm block (the protocol's order).
            match unsafe {
                faultline_rseq::addv_sum_at::<S, REMOTE_FROM_LOCAL>(
                    self.off,
                    cpu,
                    self.c.local.as_ptr(),
                    n,
                    complete,
                )
            } {
                Ok(done) => return Ok(done),
                Err(faultline_rseq::RseqError::CpuMismatch) => return Err(NotOnCpu),
                Err(_) => continue,
            }
        }
    }
    #[inline(always)]
    fn remote_add(&self, n: u64) -> u64 {
        // AcqRel: release publishes the record bytes written before this commit to the consumer
        // (pairs with the consumer's acquire loads of the counters); acquire orders the
        // following load of `local`.
        self.c.remote.fetch_add(n, Ordering::AcqRel).wrapping_add(n)
    }
    #[inline(always)]
    fn load_local(&self) -> u64 {
        // Acquire: pairs with the LOCAL committer's commit store (a plain store, i.e. release on
        // x86) so that a delivery decision never precedes the data it covers.
        self.c.local.load(Ordering::Acquire)
    }
    #[inline(always)]
    fn load_remote(&self) -> u64 {
        // Acquire: pairs with remote_add's release.
        self.c.remote.load(Ordering::Acquire)
    }
    fn barrier_cpu(&self, cpu: u32) {
        if !RSEQ {
            // Atomic mode: every commit is a RMW on `remote`, whose result is the latest sum;
            // there is no plain LOCAL store to fence.
            return;
        }
        self.b.membarriers.fetch_add(1, Ordering::Relaxed);
        // Per CPU: fence that CPU. Per concurrency id: the holder of `cpu` (an id) may run on
        // any CPU, so fence every thread of the process.
        let fenced = if S::FIELD == Cid::FIELD {
            faultline_rseq::membarrier_rseq_all()
        } else {
            faultline_rseq::membarrier_rseq_cpu(cpu)
        };
        if !fenced {
            // No membarrier: fall back to a local full fence; the consumer's periodic check
            // is then the delivery backstop (see commit.rs).
            fence(Ordering::SeqCst);
        }
    }
}

/// One CPU buffer of a channel, as [`close::reserve_closing`] sees it; `st`: what the reserve
/// section stores besides the offset (channels with headers in the reserve section).
struct BufOps<'a> {
    chan: &'a Channel,
    cpu: u32,
    st: Option<&'a faultline_rseq::ReserveStores>,
}

impl CloseOps for BufOps<'_> {
    #[inline(always)]
    fn try_reserve(&self, old: u64, new: u64) -> Option<u64> {
        let w = &self.chan.buf(self.cpu).write_offset;
        self.chan.cas_offset(self.cpu, w, old, new, self.st)
    }
    #[inline(always)]
    fn load_lost(&self) -> LostCounts {
        let b = self.chan.buf(self.cpu);
        // Relaxed: ordered by the acquire load of `old` before and the release store of the
        // reservation after (close.rs).
        LostCounts {
            full: b.lost_full.load(Ordering::Relaxed),
            stalled: b.lost_stalled.load(Ordering::Relaxed),
            too_big: b.lost_too_big.load(Ordering::Relaxed),
            remote: b.remote_commits.load(Ordering::Relaxed),
        }
    }
}

impl Channel {
    /// Create a channel in a new memfd.
    pub fn create(cfg: &ChannelConfig) -> Result<Channel, ChannelError> {
        if cfg.sync == SyncMode::Rseq && !faultline_rseq::available() {
            return Err(ChannelError::NoRseq);
        }
        if cfg.clock == ClockKind::Tsc && !cfg!(target_arch = "x86_64") {
            return Err(ChannelError::Config("the TSC clock needs x86_64".into()));
        }
        let writer_pid = match cfg.index {
            BufferIndex::Cpu => 0,
            BufferIndex::Cid => {
                cid_supported().map_err(ChannelError::Config)?;
                if cfg.sync != SyncMode::Rseq {
                    return Err(ChannelError::Config(
                        "per-cid buffers need the rseq sync mode".into(),
                    ));
                }
                process_id()
            }
        };
        let ncpu = cfg.num_cpus.unwrap_or_else(faultline_rseq::possible_cpus);
        let geo = Geometry::compute(ncpu, cfg.subbuf_size, cfg.num_subbuf)
            .map_err(ChannelError::Config)?;
        let fd: OwnedFd = rustix::fs::memfd_create(
            "faultline-channel",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .map_err(std::io::Error::from)?;
        let file = File::from(fd);
        file.set_len(geo.total)?;
        // The size is final: whoever else gets the descriptor (the traced program inherits it)
        // can neither shrink it — which would turn our next access past the new end into
        // SIGBUS — nor grow it, nor remove the seals.
        seal_size(&file)?;
        let map = memmap2::MmapOptions::new()
            .len(geo.total as usize)
            .map_raw(&file)?;
        let clock = clock::info(cfg.clock);
        let base = map.as_mut_ptr();
        // SAFETY: the mapping is at least PAGE bytes, page aligned, freshly zeroed and not yet
        // shared with anyone; ChannelHeader is repr(C) plain data + atomics.
        unsafe {
            let h = &mut *(base as *mut ChannelHeader);
            h.version = LAYOUT_VERSION;
            h.num_cpus = ncpu;
            h.subbuf_size = cfg.subbuf_size;
            h.num_subbuf = cfg.num_subbuf;
            h.buffer_stride = geo.stride;
            h.buffers_offset = geo.buffers_offset;
            h.total_size = geo.total;
            h.mode = cfg.mode as u32;
            h.sync = cfg.sync as u32;
            h.clock = cfg.clock as u32;
            h.index = cfg.index as u32;
            h.writer_pid = writer_pid;
            h.clock_freq = clock.freq;
            h.clock_ref_ticks = clock.ref_ticks;
            h.clock_ref_unix_ns = clock.ref_unix_ns;
            h.uuid = cfg.uuid;
            // Nothing is written into the buffer regions: a page of the memfd is allocated on
            // first touch, so a buffer nobody uses costs no memory.
            // The magic goes last: a concurrent opener validating the header sees either no
            // magic or a complete header (it maps after we hand out the fd, so this is belt
            // and braces).
            std::ptr::write_volatile(&mut h.magic, CHANNEL_MAGIC);
        }
        Self::from_map(map, file, cfg.inject_spins)
    }

    /// Map an existing channel (e.g. a memfd inherited from `faultline record`), validating
    /// everything read from it.
    ///
    /// The memfd must be sealed against shrinking and growing (as [`Channel::create`] leaves
    /// it; seals are added here when the file still allows it): a mapping of a file that
    /// someone else may shrink faults with SIGBUS.
    pub fn open(file: File) -> Result<Channel, ChannelError> {
        if !size_sealed(&file) {
            // Best effort: a memfd created with sealing allowed and not sealed yet.
            let _ = seal_size(&file);
            if !size_sealed(&file) {
                return Err(ChannelError::Corrupt(
                    "the shared memory is not sealed against resizing (F_SEAL_SHRINK, \
                     F_SEAL_GROW): mapping it would let another process crash this one"
                        .into(),
                ));
            }
        }
        let len = file.metadata()?.len();
        if len < PAGE as u64 {
            return Err(ChannelError::Corrupt(format!(
                "shared memory is {len} bytes, smaller than a header"
            )));
        }
        let map = memmap2::MmapOptions::new()
            .len(len as usize)
            .map_raw(&file)?;
        Self::from_map(map, file, 0)
    }

    fn from_map(
        map: memmap2::MmapRaw,
        file: File,
        inject_spins: u64,
    ) -> Result<Channel, ChannelError> {
        let base = map.as_mut_ptr();
        let len = map.len() as u64;
        // SAFETY: the mapping is at least one page (checked by both callers); we copy the
        // plain-data fields out with volatile reads because another process may write them.
        let h = unsafe { std::ptr::read_volatile(base as *const [u8; 128]) };
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        if u64_at(0) != CHANNEL_MAGIC {
            return Err(ChannelError::Corrupt("bad magic".into()));
        }
        if u32_at(8) != LAYOUT_VERSION {
            return Err(ChannelError::Corrupt(format!(
                "layout version {} (expected {LAYOUT_VERSION})",
                u32_at(8)
            )));
        }
        let mut geo =
            Geometry::compute(u32_at(12), u64_at(16), u64_at(24)).map_err(ChannelError::Corrupt)?;
        if u64_at(32) != geo.stride
            || u64_at(40) != geo.buffers_offset
            || u64_at(48) != geo.total
            || geo.total > len
        {
            return Err(ChannelError::Corrupt(
                "geometry fields disagree with sizes".into(),
            ));
        }
        geo.mode = match u32_at(56) {
            0 => Mode::Discard,
            1 => Mode::Overwrite,
            m => return Err(ChannelError::Corrupt(format!("mode {m}"))),
        };
        geo.sync = match u32_at(60) {
            0 => SyncMode::Rseq,
            1 => SyncMode::Atomic,
            m => return Err(ChannelError::Corrupt(format!("sync mode {m}"))),
        };
        geo.clock = match u32_at(64) {
            0 => ClockKind::Tsc,
            1 => ClockKind::Monotonic,
            m => return Err(ChannelError::Corrupt(format!("clock {m}"))),
        };
        if geo.sync == SyncMode::Rseq && !faultline_rseq::available() {
            return Err(ChannelError::NoRseq);
        }
        geo.index = match u32_at(68) {
            0 => BufferIndex::Cpu,
            1 if geo.sync == SyncMode::Rseq => BufferIndex::Cid,
            1 => {
                return Err(ChannelError::Corrupt(
                    "per-cid buffers with the atomic sync mode".into(),
                ))
            }
            m => return Err(ChannelError::Corrupt(format!("buffer index {m}"))),
        };
        geo.writer_pid = match geo.index {
            BufferIndex::Cpu => 0,
            // 0 names no process: nobody may write.
            BufferIndex::Cid => u32_at(112),
        };
        geo.uuid = h[96..112].try_into().unwrap();
        let clock = ClockInfo {
            kind: geo.clock,
            freq: u64_at(72).max(1),
            ref_ticks: u64_at(80),
            ref_unix_ns: u64_at(88),
        };
        Ok(Channel {
            base,
            // SAFETY: buffers_offset < total <= len (validated above): inside the mapping.
            bufs: unsafe { base.add(geo.buffers_offset as usize) },
            geo,
            path: match (geo.sync, geo.clock, geo.index, geo.mode, inject_spins) {
                (SyncMode::Rseq, ClockKind::Tsc, BufferIndex::Cpu, Mode::Discard, 0) => FAST_RSEQ,
                (SyncMode::Rseq, ClockKind::Tsc, BufferIndex::Cpu, Mode::Discard, _) => {
                    FAST_RSEQ_INJECT
                }
                (SyncMode::Rseq, ClockKind::Tsc, BufferIndex::Cpu, Mode::Overwrite, 0) => {
                    FAST_RSEQ_OW
                }
                // Only the writer process takes a fast path (the general path refuses others),
                // and only if this process's kernel maintains mm_cid.
                (SyncMode::Rseq, ClockKind::Tsc, BufferIndex::Cid, m, i)
                    if geo.writer_pid == process_id() && cid_supported().is_ok() =>
                {
                    match (m, i) {
                        (Mode::Discard, 0) => FAST_CID,
                        (Mode::Discard, _) => FAST_CID_INJECT,
                        (Mode::Overwrite, 0) => FAST_CID_OW,
                        // Abort injection in overwrite mode: the general path (it injects too).
                        (Mode::Overwrite, _) => GENERAL,
                    }
                }
                _ => GENERAL,
            },
            rseq_off: faultline_rseq::offset().unwrap_or_default(),
            hdr_in_cs: geo.sync == SyncMode::Rseq
                && geo.clock == ClockKind::Tsc
                && geo.mode == Mode::Discard,
            inject_spins,
            compact_window: match geo.mode {
                Mode::Discard => faultline_wire::COMPACT_TS_WINDOW,
                Mode::Overwrite => 0,
            },
            clock,
            cid_flush: std::sync::Mutex::new(Vec::new()),
            map,
            file,
        })
    }

    /// The memfd, to hand to another process (inherit it or send it over a socket).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
    /// Discard or overwrite.
    pub fn mode(&self) -> Mode {
        self.geo.mode
    }
    /// Whether writers of this channel use compact record headers where they can
    /// (`faultline_wire`): the rseq fast path with the TSC, in discard mode (abort injection
    /// included). Otherwise every record has an extended header (module docs).
    pub fn compact_headers(&self) -> bool {
        matches!(
            self.path,
            FAST_RSEQ | FAST_CID | FAST_RSEQ_INJECT | FAST_CID_INJECT
        ) && self.compact_window != 0
    }

    /// Whether every reservation of this channel writes its record header inside its reserve
    /// critical section, before the offset store that makes it visible (module docs, "Record
    /// headers inside the reserve section"): rseq, the TSC and discard mode.
    pub fn headers_in_reserve_section(&self) -> bool {
        self.hdr_in_cs
    }
    /// rseq or atomic commit path.
    pub fn sync_mode(&self) -> SyncMode {
        self.geo.sync
    }
    /// Number of per-CPU buffers (buffer slots: per concurrency id in [`BufferIndex::Cid`]).
    pub fn num_cpus(&self) -> u32 {
        self.geo.num_cpus
    }
    /// Whether buffer `k` is CPU `k`'s or concurrency id `k`'s.
    pub fn buffer_index(&self) -> BufferIndex {
        self.geo.index
    }
    /// Number of buffers any writer has used so far (`active`), the ones whose pages are
    /// resident.
    pub fn active_buffers(&self) -> u32 {
        (0..self.geo.num_cpus)
            // Relaxed: a count for reports; nothing is read through it.
            .filter(|&c| self.is_active(c))
            .count() as u32
    }
    /// Bytes of this channel's mapping resident in memory now (`mincore`): the memory the
    /// channel costs, header included; `None` if the kernel refuses the query.
    pub fn resident_bytes(&self) -> Option<u64> {
        let pages = self.map.len().div_ceil(PAGE);
        let mut v = vec![0u8; pages];
        // SAFETY: the mapping [base, base + len) is ours and page aligned; `v` has one byte per
        // page as mincore requires.
        let r = unsafe {
            libc::mincore(
                self.base as *mut libc::c_void,
                self.map.len(),
                v.as_mut_ptr(),
            )
        };
        (r == 0).then(|| v.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE as u64)
    }
    /// Bytes per sub-buffer.
    pub fn subbuf_size(&self) -> u64 {
        self.geo.subbuf_size
    }
    /// Sub-buffers per CPU buffer.
    pub fn num_subbuf(&self) -> u64 {
        self.geo.num_subbuf
    }
    /// The trace UUID written into every packet.
    pub fn uuid(&self) -> [u8; 16] {
        self.geo.uuid
    }
    /// The clock of the timestamps and its reference point.
    pub fn clock(&self) -> ClockInfo {
        self.clock
    }
    /// Largest payload a record can carry.
    pub fn max_payload(&self) -> usize {
        // The header is 4 bytes longer from faultline_wire::LONG_LEN payload bytes on.
        let m = self.geo.max_record;
        let long = m.saturating_sub(RECORD_HEADER_SIZE);
        if long >= faultline_wire::LONG_LEN as u64 {
            long as usize
        } else {
            (m - faultline_wire::EXTENDED_HEADER_SIZE as u64)
                .min(faultline_wire::LONG_LEN as u64 - 1) as usize
        }
    }
    /// Bytes mapped (header and every CPU buffer).
    pub fn map_len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn header(&self) -> &ChannelHeader {
        // SAFETY: the mapping starts with a ChannelHeader (validated in from_map); its atomics
        // are the only fields written after creation.
        unsafe { &*(self.base as *const ChannelHeader) }
    }

    #[inline(always)]
    pub(crate) fn buf(&self, cpu: u32) -> &BufferHeader {
        debug_assert!(cpu < self.geo.num_cpus);
        // SAFETY: cpu < num_cpus (all callers check), so the region lies inside the mapping
        // (geometry validated against the mapping length).
        unsafe { &*(self.bufs.add(self.buf_off(cpu)) as *const BufferHeader) }
    }

    /// Offset of buffer `cpu`'s region from `bufs`.
    #[inline(always)]
    fn buf_off(&self, cpu: u32) -> usize {
        cpu as usize * self.geo.stride as usize
    }

    #[inline(always)]
    pub(crate) fn counters(&self, cpu: u32, idx: u64) -> &SubbufCounters {
        debug_assert!(idx < self.geo.num_subbuf);
        // SAFETY: cpu < num_cpus and idx < num_subbuf (callers mask idx), inside the region.
        unsafe {
            &*(self.base.add(
                (self.geo.buffers_offset
                    + cpu as u64 * self.geo.stride
                    + self.geo.counters_offset
                    + idx * std::mem::size_of::<SubbufCounters>() as u64) as usize,
            ) as *const SubbufCounters)
        }
    }

    /// Pointer to the data byte at free-running position `pos` of `cpu`'s buffer.
    #[inline(always)]
    pub(crate) fn data_ptr(&self, cpu: u32, pos: u64) -> *mut u8 {
        // SAFETY: pos is masked into the data area of an in-range CPU region.
        unsafe {
            self.bufs.add(
                self.buf_off(cpu) + (self.geo.data_offset + (pos & self.geo.buf_mask)) as usize,
            )
        }
    }

    /// Offset in the memfd of the data byte at free-running position `pos` of `cpu`'s buffer.
    #[inline(always)]
    pub(crate) fn data_offset(&self, cpu: u32, pos: u64) -> u64 {
        self.geo.buffers_offset
            + cpu as u64 * self.geo.stride
            + self.geo.data_offset
            + (pos & self.geo.buf_mask)
    }

    /// Sum of a sub-buffer's commit counters.
    #[inline(always)]
    pub(crate) fn commit_sum(&self, cpu: u32, idx: u64) -> u64 {
        let c = self.counters(cpu, idx);
        // Acquire: pairs with the committers' release (rseq plain store / fetch_add AcqRel) so
        // that the bytes covered by the sum are visible.
        c.local
            .load(Ordering::Acquire)
            .wrapping_add(c.remote.load(Ordering::Acquire))
    }

    /// The buffer this thread writes now: its CPU, or its concurrency id in a
    /// [`BufferIndex::Cid`] channel — `u32::MAX` (no buffer) in any process but the writer.
    #[inline(always)]
    fn current_cpu(&self) -> u32 {
        match self.geo.index {
            BufferIndex::Cpu => faultline_rseq::current_cpu(),
            BufferIndex::Cid => match faultline_rseq::current_mm_cid() {
                Some(cid) if process_id() == self.geo.writer_pid => cid,
                _ => u32::MAX,
            },
        }
    }

    /// Word and bit of buffer `cpu` in the active map ([`ACTIVE_MAP_OFFSET`]).
    #[inline(always)]
    fn active_bit(&self, cpu: u32) -> (&AtomicU64, u64) {
        debug_assert!(cpu < self.geo.num_cpus);
        // SAFETY: cpu < num_cpus <= 4096, so the word lies in [ACTIVE_MAP_OFFSET,
        // ACTIVE_MAP_OFFSET + 512) of the header page (buffers start at PAGE), 8-aligned.
        let w = unsafe {
            &*(self.base.add(ACTIVE_MAP_OFFSET + (cpu as usize / 64) * 8) as *const AtomicU64)
        };
        (w, 1u64 << (cpu % 64))
    }

    /// Whether any writer has used buffer `cpu`. Reads the active map in the header page
    /// first, so asking about a buffer nobody used touches none of its pages (a read fault on
    /// a shared memfd allocates the page).
    pub(crate) fn is_active(&self, cpu: u32) -> bool {
        if cpu >= self.geo.num_cpus {
            return false;
        }
        let (w, bit) = self.active_bit(cpu);
        // Acquire: pairs with activate's release fetch_or (and, below, its release CAS).
        w.load(Ordering::Acquire) & bit != 0 && self.buf(cpu).active.load(Ordering::Acquire) != 0
    }

    /// Make sure `cpu`'s buffer is marked in use (its `active` word, then the active map).
    #[inline(always)]
    fn activate(&self, cpu: u32) -> &BufferHeader {
        let b = self.buf(cpu);
        let (w, bit) = self.active_bit(cpu);
        if w.load(Ordering::Relaxed) & bit == 0 {
            // Release: pairs with the consumer's acquire load of `active` (nothing else is
            // published with it; the buffer starts all zero).
            let _ = b
                .active
                .compare_exchange(0, 1, Ordering::Release, Ordering::Relaxed);
            // Release: pairs with is_active's acquire load of the map; orders the `active`
            // store before the bit.
            w.fetch_or(bit, Ordering::Release);
        }
        b
    }

    #[cold]
    fn lose(&self, cpu: u32, why: Lost) -> Lost {
        if cpu < self.geo.num_cpus {
            let b = self.activate(cpu);
            let c = match why {
                Lost::Full => &b.lost_full,
                Lost::Stalled => &b.lost_stalled,
                Lost::TooBig => &b.lost_too_big,
                Lost::NoBuffer => return why,
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        why
    }

    /// Whether the sub-buffer starting at `sb` may be (re)used now; `Err` gives the loss cause.
    #[inline]
    fn subbuf_free(&self, cpu: u32, sb: u64) -> Result<(), Lost> {
        let g = &self.geo;
        let prev_complete = g.lap(sb) * g.subbuf_size;
        if g.mode == Mode::Discard {
            // Acquire: pairs with the consumer's release store of `consumed`, so its reads of
            // the old contents happen before we overwrite them.
            let consumed = self.buf(cpu).consumed.load(Ordering::Acquire);
            if sb.wrapping_add(g.subbuf_size).wrapping_sub(consumed) > g.buf_size {
                // Not consumed yet. Blame a stalled writer if the consumer is stuck on an
                // incomplete sub-buffer, a slow consumer otherwise.
                let cidx = g.idx(consumed);
                if self.commit_sum(cpu, cidx) < g.complete(consumed) {
                    return Err(Lost::Stalled);
                }
                return Err(Lost::Full);
            }
        }
        if self.commit_sum(cpu, g.idx(sb)) < prev_complete {
            return Err(Lost::Stalled);
        }
        Ok(())
    }

    /// Reserve a record with `payload_len` payload bytes for event `id`.
    ///
    /// The common case — rseq mode with the TSC, the record fits in the current sub-buffer, the
    /// critical section commits at the first attempt — is inlined into the caller; everything
    /// else (atomic mode, monotonic clock, abort injection, sub-buffer switch, loss, retry,
    /// first use of a buffer) goes to the out-of-line general path, which redoes the whole
    /// reservation from the start.
    #[inline(always)]
    pub fn reserve(&self, id: u32, payload_len: usize) -> Result<Reservation<'_>, Lost> {
        let r = match self.path {
            FAST_RSEQ => self.reserve_fast::<false, true, Cpu>(id, payload_len),
            FAST_RSEQ_OW => self.reserve_fast::<false, false, Cpu>(id, payload_len),
            FAST_RSEQ_INJECT => self.reserve_fast::<true, true, Cpu>(id, payload_len),
            FAST_CID => self.reserve_fast::<false, true, Cid>(id, payload_len),
            FAST_CID_OW => self.reserve_fast::<false, false, Cid>(id, payload_len),
            FAST_CID_INJECT => self.reserve_fast::<true, true, Cid>(id, payload_len),
            _ => None,
        };
        if let Some(r) = r {
            return Ok(r);
        }
        self.reserve_general_result(id, payload_len)
    }

    /// The general path of [`Channel::reserve`] as its result (the fast path reserved nothing).
    #[inline(always)]
    fn reserve_general_result(&self, id: u32, payload_len: usize) -> Result<Reservation<'_>, Lost> {
        // The general path returns two words in registers rather than a Reservation in
        // memory: with a memory return, LLVM merges the fast path's result into the same stack
        // slot and every reserve + commit pays a round trip of the whole struct through it.
        let (pos, meta) = self.reserve_slow(id, payload_len);
        if pos == SLOW_LOST {
            return Err(match meta {
                0 => Lost::Full,
                1 => Lost::Stalled,
                2 => Lost::TooBig,
                _ => Lost::NoBuffer,
            });
        }
        let cpu = (meta >> 32) as u32;
        let rec = self.data_ptr(cpu, pos);
        // SAFETY: the record header at `pos` is in the reservation reserve_slow just made for
        // us (exclusively ours); it wrote an extended header there, whose timestamp is the u64
        // at offset 5. The value is only reported back, never used to form an address.
        let timestamp = unsafe { std::ptr::read_unaligned(rec.add(5) as *const u64) };
        Ok(Reservation {
            chan: self,
            rec,
            pos,
            timestamp,
            commit_len: meta & u32::MAX as u64,
            payload_len: payload_len as u64,
            cpu: cpu as u64,
            id: id as u64,
        })
    }

    /// The inline fast path of [`Channel::reserve`]; `None` sends the caller to the general
    /// path (nothing was reserved). `INJECT`: spin `inject_spins` inside the critical section.
    /// `HDR`: the header is written inside the critical section (discard mode: module docs,
    /// "Record headers inside the reserve section"), compact where it can be; otherwise
    /// (overwrite mode) after it, always extended. `S`: the id the buffers are keyed on.
    #[inline(always)]
    fn reserve_fast<const INJECT: bool, const HDR: bool, S: SlotId>(
        &self,
        id: u32,
        payload_len: usize,
    ) -> Option<Reservation<'_>> {
        let g = &self.geo;
        if S::FIELD == Cid::FIELD && PROCESS_ID.load(Ordering::Relaxed) != g.writer_pid {
            // Not (known to be) the writer process: the general path decides.
            return None;
        }
        // SAFETY: the fast paths imply the channel is in rseq mode, which create/open allow
        // only when rseq is available in this process (so `rseq_off` is its offset); FAST_CID
        // also that mm_cid is maintained.
        let cpu = unsafe { faultline_rseq::slot_id_at::<S>(self.rseq_off) };
        if cpu >= g.num_cpus {
            return None;
        }
        let bp = self.bufs.wrapping_add(self.buf_off(cpu));
        // SAFETY: cpu < num_cpus: buffer `cpu`'s region (starting with its BufferHeader) lies
        // inside the mapping (geometry validated against the mapping length).
        let b = unsafe { &*(bp as *const BufferHeader) };
        // No activate() here: the fast path needs `old` inside a sub-buffer (sb_off != 0), and
        // the writer that first moved this buffer's write_offset off 0 went through the general
        // path, which marks the buffer active before its reservation.
        // Acquire (a plain load on x86, like Relaxed): pairs with the previous reservation's
        // offset store, so reservations form a happens-before chain (close.rs).
        let old = b.write_offset.load(Ordering::Acquire);
        let sb_off = old & g.sb_mask;
        let aligned = align_up(sb_off, RECORD_ALIGN);
        // Saturating: an absurd length must not wrap into a small one. `aligned <=
        // subbuf_size` (sb_off < subbuf_size, a multiple of RECORD_ALIGN), so the subtraction cannot
        // wrap, and `rec_len < subbuf_size - aligned` is the strict-fit rule
        // `aligned + rec_len < subbuf_size` of the general path.
        // The extended length decides whether the fast path applies: both sizes then fit.
        // A payload that needs a long length (64 KiB or more: the fast path writes the
        // 15-byte extended header only) is the general path's.
        let rec_len =
            (faultline_wire::EXTENDED_HEADER_SIZE as u64).saturating_add(payload_len as u64);
        // No `rec_len > max_record` test: `payload_len <= MAX_COMPACT_PAYLOAD` keeps the
        // payload below MAX_PAYLOAD, and the strict fit keeps the record inside this
        // sub-buffer (past its packet header in any buffer written by this protocol; a
        // garbage offset below it still stays inside the sub-buffer's bytes).
        if sb_off == 0
            || rec_len >= g.subbuf_size - aligned
            || payload_len > faultline_wire::MAX_COMPACT_PAYLOAD
        {
            return None;
        }
        let pos = old - sb_off + aligned;
        let end = pos + rec_len;
        // rec_len < subbuf_size: payload_len fits in u32 below.
        let may_compact = HDR
            && id <= faultline_wire::MAX_COMPACT_ID
            && (faultline_wire::MIN_COMPACT_PAYLOAD..=faultline_wire::MAX_COMPACT_PAYLOAD)
                .contains(&payload_len);
        let rec = bp.wrapping_add((g.data_offset + (pos & g.buf_mask)) as usize);
        let w = b.write_offset.as_ptr();
        let len = payload_len as u32;
        // The record header's second word without its timestamp bits (`faultline_wire`).
        let hi = faultline_wire::extended_header_words(PENDING_RECORD_ID, 0, len).1;
        let reservation = |ts: u64, end: u64, compact: bool| Reservation {
            chan: self,
            rec,
            pos,
            timestamp: ts,
            commit_len: end - old,
            payload_len: payload_len as u64,
            cpu: cpu as u64,
            id: id as u64 | if compact { COMPACT_BIT } else { 0 },
        };
        if HDR {
            let spins = if INJECT { self.inject_spins } else { 0 };
            // SAFETY: rseq available (see above); write_offset of buffer `cpu` is only written
            // by rseq critical sections keyed on `S` holding `cpu` (Cid: in the writer process
            // only, checked above), and `last_ts` (the floor, `LAST_TS_FROM_OFFSET` from it)
            // is a word of the same header. A FLUSH_MARK value has sb_off == 0 and was refused
            // above. The header stores: while write_offset == old on `cpu`, [pos, pos + 15) is
            // nobody's (discard mode: no reader looks past a packet's committed content, and the
            // current sub-buffer is not complete), inside this sub-buffer (the extended record
            // fits strictly), and ours once the section commits; an aborted section's stores
            // land there before anyone reserves it, so they are overwritten by its owner. Both
            // sections store the floor after their commit, after the header: a floor is always
            // the timestamp of a record whose header exists, so recovery can rebuild a compact
            // timestamp even after a writer that died right after its reservation (module
            // docs, "Compact headers").
            unsafe {
                if may_compact {
                    // The floor, `last_ts`, is read inside the section (a plain load): any
                    // value is the timestamp of a reservation whose section finished before,
                    // so of one before ours in offset order, hence at most the timestamp of
                    // the record right before ours (module docs, "Compact headers").
                    let clo =
                        faultline_wire::compact_header_word(faultline_wire::PENDING_TAG, 0, len);
                    let end_compact =
                        pos + faultline_wire::COMPACT_HEADER_SIZE as u64 + payload_len as u64;
                    match faultline_rseq::cmpeqv_storev_tsc_pick_hdr_on::<
                        S,
                        INJECT,
                        EXT_LO,
                        COMPACT_WINDOW,
                        COMPACT_SHRINK,
                        LAST_TS_FROM_OFFSET,
                    >(self.rseq_off, cpu, w, old, end, rec, clo, spins)
                    {
                        // The section stored the compact end and header.
                        Ok((ts, true)) => Some(reservation(ts, end_compact, true)),
                        Ok((ts, false)) => Some(reservation(ts, end, false)),
                        Err(_) => None,
                    }
                } else {
                    // An extended header whatever the timestamp: the section whose stored
                    // offset does not depend on the rdtsc (with the picking section's
                    // conditional move, the next reservation's load of write_offset waits for
                    // this rdtsc: about 3 ns per reservation measured on an Intel Xeon).
                    let ts = faultline_rseq::cmpeqv_storev_tsc_hdr_on::<
                        S,
                        INJECT,
                        EXT_LO,
                        LAST_TS_FROM_OFFSET,
                    >(self.rseq_off, cpu, w, old, end, rec, hi, spins)
                    .ok()?;
                    Some(reservation(ts, end, false))
                }
            }
        } else {
            // Overwrite mode: the header after the section (stored by the same asm, after its
            // commit store), so that a reader copying the previous lap sees the offset move
            // before any byte of the new record; extended headers only, and no floor (module
            // docs, "Compact headers").
            // SAFETY: as above; the header bytes [pos, pos + 15) are ours once the section
            // committed (see Reservation::payload), and the section stores nothing when it
            // does not commit.
            let ts = unsafe {
                faultline_rseq::cmpeqv_storev_tsc_hdr_after_on::<S, EXT_LO>(
                    self.rseq_off,
                    cpu,
                    w,
                    old,
                    end,
                    rec,
                    hi,
                )
            }
            .ok()?;
            Some(reservation(ts, end, false))
        }
    }

    /// The general path of [`Channel::reserve`]: `(pos, commit_len | cpu << 32)` of the
    /// reservation it made (its header, timestamp included, already written), or
    /// `(SLOW_LOST, cause)`.
    #[inline(never)]
    fn reserve_slow(&self, id: u32, payload_len: usize) -> (u64, u64) {
        match self.reserve_general(id, payload_len) {
            // commit_len < subbuf_size <= 1 GiB and cpu < 4096: both fit in 32 bits.
            Ok((cpu, pos, commit_len)) => (pos, commit_len | (cpu as u64) << 32),
            Err(why) => (
                SLOW_LOST,
                match why {
                    Lost::Full => 0,
                    Lost::Stalled => 1,
                    Lost::TooBig => 2,
                    Lost::NoBuffer => 3,
                },
            ),
        }
    }

    /// Reserve without any fast-path assumption; returns `(cpu, pos, commit_len)`. The header
    /// gets [`PENDING_RECORD_ID`]; the caller keeps the real id for the commit.
    #[inline(always)]
    fn reserve_general(&self, _id: u32, payload_len: usize) -> Result<(u32, u64, u64), Lost> {
        let g = &self.geo;
        let rec_len = faultline_wire::extended_record_len(payload_len as u64);
        if rec_len > g.max_record {
            return Err(self.lose(self.current_cpu(), Lost::TooBig));
        }
        loop {
            let cpu = self.current_cpu();
            if cpu >= g.num_cpus {
                return Err(Lost::NoBuffer);
            }
            let b = self.activate(cpu);
            // Acquire: pairs with the previous reservation's offset store (release), so that a
            // closer's loss snapshot comes after every earlier closer's (close.rs); and with
            // a Cid flush's unmarking store.
            let old = b.write_offset.load(Ordering::Acquire);
            if old & FLUSH_MARK != 0 {
                if g.index != BufferIndex::Cid {
                    // Only a concurrency-id flush marks an offset: damaged shared memory.
                    return Err(self.lose(cpu, Lost::Stalled));
                }
                // A flush is closing this buffer's sub-buffer (module docs, "Flushing a
                // concurrency-id buffer"): confirm it for the flusher, then reserve after it.
                // No wait and no loss, however long the flusher takes.
                self.confirm_flush(cpu, old);
                continue;
            }
            let sb_off = old & g.sb_mask;
            let aligned = align_up(sb_off, RECORD_ALIGN);
            let (pos, switch) = if sb_off != 0 && aligned + rec_len < g.subbuf_size {
                (old - sb_off + aligned, false)
            } else {
                let sb = if sb_off == 0 {
                    old
                } else {
                    old - sb_off + g.subbuf_size
                };
                if let Err(why) = self.subbuf_free(cpu, sb) {
                    return Err(self.lose(cpu, why));
                }
                (sb + PACKET_HEADER_SIZE, true)
            };
            let end = pos + rec_len;
            if switch {
                // A new packet: no compact header until a record of it has its header
                // written and stores its timestamp (module docs, "Compact headers"). Before
                // the reservation, so a writer that sees it reads 0 or a later store.
                b.last_ts.store(0, Ordering::Relaxed);
            }
            // rec_len <= max_record <= RECORD_HEADER_SIZE + MAX_PAYLOAD: the payload length
            // fits in 32 bits.
            let long = payload_len >= faultline_wire::LONG_LEN;
            let st = self.hdr_in_cs.then(|| faultline_rseq::ReserveStores {
                hdr: self.data_ptr(cpu, pos),
                hi: faultline_wire::extended_header_words(
                    PENDING_RECORD_ID,
                    0,
                    if long {
                        faultline_wire::LONG_LEN as u32
                    } else {
                        payload_len as u32
                    },
                )
                .1,
                long_len: if long { payload_len as u64 } else { 0 },
                pkt: if switch && sb_off != 0 {
                    self.data_ptr(cpu, old - sb_off)
                } else {
                    std::ptr::null_mut()
                },
                content_bits: sb_off * 8,
            });
            let ops = BufOps {
                chan: self,
                cpu,
                st: st.as_ref(),
            };
            let attempt = if switch && sb_off != 0 {
                // Closes the sub-buffer holding `old`: snapshot the loss counters before the
                // compare-and-store (close.rs).
                close::reserve_closing(&ops, old, end)
            } else {
                ops.try_reserve(old, end)
                    .map(|ts| (ts, LostCounts::default()))
            };
            let Some((ts, lost)) = attempt else {
                continue;
            };
            // Release: our reservation (the offset store) is ordered before the bytes we write
            // into it; pairs with the overwrite-mode reader's acquire fence before it re-reads
            // write_offset to validate its copy.
            fence(Ordering::Release);
            if switch {
                self.switch_subbuf(cpu, old, pos - PACKET_HEADER_SIZE, ts, lost);
            }
            if st.is_none() {
                let (hb, hl) = faultline_wire::extended_header_bytes(
                    PENDING_RECORD_ID,
                    ts,
                    payload_len as u32,
                );
                // SAFETY: [pos, end) is ours (see Reservation::payload); the header (15 or 19
                // bytes, `hl`) is its start (rec_len = hl + payload_len); packed records: any
                // alignment, a byte copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(hb.as_ptr(), self.data_ptr(cpu, pos), hl);
                }
            }
            // Relaxed, after the header store: see reserve_fast (the floor of later compact
            // decisions).
            b.last_ts.store(ts, Ordering::Relaxed);
            let commit_len = if switch { rec_len } else { end - old };
            return Ok((cpu, pos, commit_len));
        }
    }

    /// Confirm the flush mark `marked` found in buffer `slot`'s `write_offset`, in a critical
    /// section keyed on the concurrency id `slot` (module docs, "Flushing a concurrency-id
    /// buffer", step 3'): `flush_ack = marked`, then `write_offset = marked` unmarked. A
    /// failed or aborted attempt needs nothing more: the caller re-reads the offset.
    #[cold]
    #[inline(never)]
    fn confirm_flush(&self, slot: u32, marked: u64) {
        let b = self.buf(slot);
        // SAFETY: a Cid channel is in rseq mode with mm_cid maintained (create/open check
        // both); `slot` is the caller's current concurrency id in the writer process
        // (current_cpu), and buffer `slot`'s write_offset and flush_ack are written only by
        // sections keyed on that id, and by the flusher's compare-and-swaps, which never
        // race with this store: the flusher's mark is what we compare against, and its
        // unmark stores the same value we store (module docs).
        let _ = unsafe {
            faultline_rseq::cmpeqv_trystorev_storev_on::<Cid>(
                slot,
                b.write_offset.as_ptr(),
                marked,
                b.flush_ack.as_ptr(),
                marked,
                marked & !FLUSH_MARK,
            )
        };
    }

    /// Compare-and-store `write_offset` on `cpu`, reading the timestamp; `None` = retry. `st`
    /// (channels with headers in the reserve section only): what the section also stores
    /// before its commit.
    #[inline(always)]
    fn cas_offset(
        &self,
        cpu: u32,
        w: &AtomicU64,
        old: u64,
        new: u64,
        st: Option<&faultline_rseq::ReserveStores>,
    ) -> Option<u64> {
        match (self.geo.sync, self.geo.clock) {
            (SyncMode::Rseq, ClockKind::Tsc) if st.is_some() => {
                let st = st?;
                // SAFETY: rseq available (checked at create/open); write_offset of buffer
                // `cpu` is only written by rseq critical sections keyed on the channel's
                // index holding `cpu` (Cid: in the writer process, checked by current_cpu).
                // The ranges `st` names are ours while write_offset == old on `cpu` (discard
                // mode): the record header lies in [old, new) (at `old` rounded up, or after
                // the next sub-buffer's packet header, that sub-buffer found free before the
                // call, and nobody reserves it while the offset stays `old`), and the end
                // fields of the packet `old` lies in are written only by its closer, which is
                // this reservation if it commits (module docs, "Record headers inside the
                // reserve section").
                unsafe {
                    if self.geo.index == BufferIndex::Cpu {
                        faultline_rseq::cmpeqv_storev_tsc_stores_on::<Cpu, EXT_LO>(
                            self.rseq_off,
                            cpu,
                            w.as_ptr(),
                            old,
                            new,
                            st,
                            self.inject_spins,
                        )
                    } else {
                        faultline_rseq::cmpeqv_storev_tsc_stores_on::<Cid, EXT_LO>(
                            self.rseq_off,
                            cpu,
                            w.as_ptr(),
                            old,
                            new,
                            st,
                            self.inject_spins,
                        )
                    }
                }
                .ok()
            }
            (SyncMode::Rseq, ClockKind::Tsc) => {
                if self.geo.index == BufferIndex::Cpu {
                    self.cas_offset_tsc::<Cpu>(cpu, w, old, new)
                } else {
                    self.cas_offset_tsc::<Cid>(cpu, w, old, new)
                }
            }
            (SyncMode::Rseq, ClockKind::Monotonic) => {
                let ts = clock::now(ClockKind::Monotonic);
                // SAFETY: rseq available (checked at create/open); write_offset of buffer `cpu`
                // is only written by rseq critical sections keyed on the channel's index
                // holding `cpu` (Cid: in the writer process, checked by current_slot).
                unsafe {
                    if self.geo.index == BufferIndex::Cpu {
                        faultline_rseq::cmpeqv_storev_on::<Cpu>(cpu, w.as_ptr(), old, new)
                    } else {
                        faultline_rseq::cmpeqv_storev_on::<Cid>(cpu, w.as_ptr(), old, new)
                    }
                }
                .ok()
                .map(|_| ts)
            }
            (SyncMode::Atomic, kind) => {
                let ts = clock::now(kind);
                // AcqRel on success: orders our record writes after the reservation (see the
                // fence in reserve) and acquires the previous reserver's offset.
                w.compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                    .ok()
                    .map(|_| ts)
            }
        }
    }

    /// The TSC-reading compare-and-store of [`Channel::cas_offset`], keyed on `S`.
    #[inline(always)]
    fn cas_offset_tsc<S: SlotId>(
        &self,
        cpu: u32,
        w: &AtomicU64,
        old: u64,
        new: u64,
    ) -> Option<u64> {
        // SAFETY: rseq available (checked at create/open); write_offset of buffer `cpu` is only
        // written by rseq critical sections keyed on `S` holding `cpu` (Cid: in the writer
        // process, checked by current_slot).
        let r = unsafe {
            if self.inject_spins == 0 {
                faultline_rseq::cmpeqv_storev_tsc_on::<S>(cpu, w.as_ptr(), old, new)
            } else {
                faultline_rseq::cmpeqv_storev_tsc_delayed_on::<S>(
                    cpu,
                    w.as_ptr(),
                    old,
                    new,
                    self.inject_spins,
                )
            }
        };
        r.ok()
    }

    /// After a reservation that closed the sub-buffer holding `old` (unless `old` was at a
    /// boundary) and opened the one at `sb`.
    #[cold]
    fn switch_subbuf(&self, cpu: u32, old: u64, sb: u64, ts: u64, lost: LostCounts) {
        let g = &self.geo;
        let sb_off = old & g.sb_mask;
        if sb_off != 0 {
            self.close_subbuf(cpu, old, ts, lost);
        }
        let hp = self.data_ptr(cpu, sb) as *mut PacketHeader;
        // SAFETY: the header range [sb, sb + 128) is part of our reservation. We write only the
        // begin fields: the closer of this sub-buffer writes the end fields, possibly before we
        // get here (we may be preempted or migrated right after our reservation), so a
        // whole-struct write would erase them. Each field has exactly one writer per lap.
        unsafe {
            (*hp).magic = PACKET_MAGIC;
            (*hp).uuid = g.uuid;
            (*hp).stream_id = 0;
            (*hp).timestamp_begin = ts;
            (*hp).packet_size = g.subbuf_size * 8;
            (*hp).packet_seq_num = sb / g.subbuf_size;
            (*hp).cpu_id = cpu;
            (*hp).flags = 0;
            // Not `remote_commits`: an end field, written by the closer (maybe already).
            (*hp).reserved = [0; 2];
        }
        self.commit_range(cpu, sb, PACKET_HEADER_SIZE);
    }

    /// Write the end fields of the sub-buffer holding `old` (whose padding [old, end) we
    /// reserved, taking the loss snapshot `lost` before the reservation: close.rs) and commit
    /// the padding.
    fn close_subbuf(&self, cpu: u32, old: u64, ts: u64, lost: LostCounts) {
        let g = &self.geo;
        let sb_off = old & g.sb_mask;
        let start = old - sb_off;
        let LostCounts {
            full,
            stalled,
            too_big: big,
            remote,
        } = lost;
        let hp = self.data_ptr(cpu, start) as *mut PacketHeader;
        // `timestamp_end` last (a compiler fence keeps it there: a writer killed in between
        // leaves the other fields written): recovery takes the end fields as written only when
        // it is this lap's (`recover.rs`). `content_size` may already be there, from the
        // reserve section (module docs, "Record headers inside the reserve section").
        // SAFETY: the header of this sub-buffer was written by its opener before the opener's
        // commit; the end fields are written only by the closer, i.e. us, inside a range no
        // reader may copy before our commit below. Field writes, not a whole-struct write,
        // so the opener's fields stay intact.
        unsafe {
            (*hp).content_size = sb_off * 8;
            (*hp).lost_full = full;
            (*hp).lost_stalled = stalled;
            (*hp).lost_too_big = big;
            (*hp).remote_commits = remote;
            // Wrapping: the counters are shared memory; garbage must not panic here (the
            // consumer's trace writer rejects a header whose sum does not add up).
            (*hp).events_discarded = full.wrapping_add(stalled).wrapping_add(big);
            // Compiler-only: keeps the end timestamp the last of these plain stores in program
            // order (no CPU fence: the readers of these fields are ordered by the commit
            // counter's release in `commit_range` below, which they acquire); recovery takes end
            // fields as written only when `timestamp_end` is not older than the packet's begin
            // (recover.rs), so it must be stored after the other end fields.
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            (*hp).timestamp_end = ts;
        }
        self.commit_range(cpu, old, g.subbuf_size - sb_off);
    }

    /// Commit a reservation dropped without [`Reservation::commit`] as a padding record
    /// (`faultline_wire::fill_padding`), in place and with the reservation's timestamp: a
    /// compact record becomes compact padding (its payload's first 4 bytes take the padding
    /// id, so `len - 4` zero bytes follow), an extended one an extended padding record (a
    /// chain of them beyond `faultline_wire::MAX_PADDING_PAYLOAD` payload bytes); the payload
    /// is zeroed.
    #[cold]
    #[inline(never)]
    fn discard(
        &self,
        cpu: u32,
        pos: u64,
        commit_len: u64,
        payload_len: u64,
        ts: u64,
        compact: bool,
    ) {
        let form = if compact {
            faultline_wire::HeaderForm::Compact
        } else {
            faultline_wire::HeaderForm::Extended
        };
        let header = faultline_wire::header_size(form, payload_len as usize);
        // SAFETY: the record header and its payload lie in the dropped reservation, inside one
        // sub-buffer, exclusively its owner's until this commit (see Reservation::payload).
        let span = unsafe {
            std::slice::from_raw_parts_mut(self.data_ptr(cpu, pos), header + payload_len as usize)
        };
        // The span holds its own header (an extended one at least 15 bytes), and a compact
        // record has payload_len >= MIN_COMPACT_PAYLOAD (4), so the 10-byte padding header
        // fits in its 6 + payload_len bytes: this cannot fail.
        let _ = faultline_wire::fill_padding(span, ts, form);
        self.commit_range(cpu, pos, commit_len);
    }

    /// Commit `len` bytes at position `pos` of `cpu`'s buffer.
    #[inline(always)]
    pub(crate) fn commit_range(&self, cpu: u32, pos: u64, len: u64) -> CommitKind {
        self.commit_range_in(cpu, pos, len, self.geo.sync, self.geo.index)
    }

    /// [`Channel::commit_range`] with the channel's sync mode and buffer index passed in (a
    /// caller that knows them as constants gets one commit path).
    #[inline(always)]
    fn commit_range_in(
        &self,
        cpu: u32,
        pos: u64,
        len: u64,
        sync: SyncMode,
        index: BufferIndex,
    ) -> CommitKind {
        debug_assert!(sync == self.geo.sync && index == self.geo.index);
        let g = &self.geo;
        debug_assert!(cpu < g.num_cpus);
        let bp = self.bufs.wrapping_add(self.buf_off(cpu));
        // SAFETY: cpu < num_cpus (the reservation was made in that buffer): its region, header
        // and counters included, lies inside the mapping; counters_off(pos) is the counters of
        // the sub-buffer holding `pos` (masked into num_subbuf).
        let (c, b) = unsafe {
            (
                &*(bp.wrapping_add(g.counters_off(pos) as usize) as *const SubbufCounters),
                &*(bp as *const BufferHeader),
            )
        };
        let complete = g.complete_own(pos);
        let (kind, done) = if sync == SyncMode::Rseq {
            let r = if index == BufferIndex::Cpu {
                commit::commit(
                    &ShmCounters::<true, Cpu>::new(c, b, self.rseq_off),
                    cpu,
                    len,
                    complete,
                )
            } else {
                commit::commit(
                    &ShmCounters::<true, Cid>::new(c, b, self.rseq_off),
                    cpu,
                    len,
                    complete,
                )
            };
            if r.0 == CommitKind::Remote {
                b.remote_commits.fetch_add(1, Ordering::Relaxed);
            }
            r
        } else {
            commit::commit(
                &ShmCounters::<false, Cpu>::new(c, b, self.rseq_off),
                cpu,
                len,
                complete,
            )
        };
        if done {
            self.deliver(cpu);
        }
        kind
    }

    #[cold]
    fn deliver(&self, cpu: u32) {
        self.buf(cpu).deliveries.fetch_add(1, Ordering::Relaxed);
        let h = self.header();
        // SeqCst fence: pairs with the consumer's SeqCst fence between its store to
        // `consumer_waiting` and its scan of the commit counters (store-buffering again):
        // either we see it waiting, or it sees our completed sum.
        fence(Ordering::SeqCst);
        if h.consumer_waiting.load(Ordering::Relaxed) != 0 {
            // Release: pairs with the consumer's acquire load of wake_seq after waking.
            h.wake_seq.fetch_add(1, Ordering::Release);
            futex_wake(&h.wake_seq);
        }
    }

    /// Wake the consumer if it sleeps in [`crate::Consumer::wait`], as a delivery does, for a
    /// reason other than a delivery (the consumer's own process uses it when the traced
    /// program exits). The consumer re-reads every commit counter when it wakes, so a wake-up
    /// with nothing delivered only costs it one scan.
    pub fn wake_consumer(&self) {
        let h = self.header();
        // Release: pairs with the consumer's acquire load of wake_seq (as in `deliver`).
        h.wake_seq.fetch_add(1, Ordering::Release);
        futex_wake(&h.wake_seq);
    }

    /// Close the partially filled sub-buffer of `cpu` so the consumer can take it. Must run on
    /// `cpu` in rseq mode (see [`Channel::flush_all`]). With `include_empty`, a sub-buffer
    /// holding no record is closed too (used at teardown so the final lost counts reach a
    /// packet).
    pub fn flush_cpu(&self, cpu: u32, include_empty: bool) -> Result<FlushOutcome, FlushError> {
        let g = &self.geo;
        if cpu >= g.num_cpus {
            return Err(FlushError::NoBuffer(cpu));
        }
        let b = self.buf(cpu);
        // Acquire: pairs with the first writer's release CAS on `active` (its buffer's
        // initialisation is visible before we touch the buffer).
        if !self.is_active(cpu) {
            return Ok(FlushOutcome::Nothing);
        }
        if g.index == BufferIndex::Cid {
            return self
                .flush_cid(&[cpu], include_empty)
                .pop()
                .map_or(Ok(FlushOutcome::Nothing), |(_, r)| r);
        }
        loop {
            if g.sync == SyncMode::Rseq && self.current_cpu() != cpu {
                return Err(FlushError::NotOnCpu(cpu));
            }
            // Acquire: as in reserve_general (the loss snapshot, close.rs).
            let old = b.write_offset.load(Ordering::Acquire);
            // The consumer flushes buffers it does not trust: no sum below may overflow.
            if old >= crate::consumer::MAX_POSITION {
                return Err(FlushError::Corrupt(
                    cpu,
                    format!("write offset {old:#x} beyond any real position"),
                ));
            }
            let sb_off = old & g.sb_mask;
            if sb_off == 0 || (sb_off == PACKET_HEADER_SIZE && !include_empty) {
                return Ok(FlushOutcome::Nothing);
            }
            let new = old - sb_off + g.subbuf_size;
            // Channels with headers in the reserve section: the closed packet's content size is
            // stored in the section too (module docs).
            let st = self.hdr_in_cs.then(|| faultline_rseq::ReserveStores {
                hdr: std::ptr::null_mut(),
                hi: 0,
                long_len: 0,
                pkt: self.data_ptr(cpu, old - sb_off),
                content_bits: sb_off * 8,
            });
            let ops = BufOps {
                chan: self,
                cpu,
                st: st.as_ref(),
            };
            if let Some((ts, lost)) = close::reserve_closing(&ops, old, new) {
                self.close_subbuf(cpu, old, ts, lost);
                return Ok(FlushOutcome::Closed);
            }
        }
    }

    /// Flush [`BufferIndex::Cid`] buffers from any thread of the writer process, all with one
    /// `membarrier` (module docs, "Flushing a concurrency-id buffer"; model-checked in
    /// `tests/loom_cid_flush.rs`). One outcome per slot, in no particular order.
    fn flush_cid(
        &self,
        slots: &[u32],
        include_empty: bool,
    ) -> Vec<(u32, Result<FlushOutcome, FlushError>)> {
        let g = &self.geo;
        if process_id() != g.writer_pid {
            let why = format!(
                "only its writer process ({}) can flush it, not {}",
                g.writer_pid,
                process_id()
            );
            return slots
                .iter()
                .map(|&s| (s, Err(FlushError::Cid(s, why.clone()))))
                .collect();
        }
        // Serialised; holds the marks a flush could not resolve (membarrier failed).
        let mut carried = self.cid_flush.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(slots.len());
        let mut marked: Vec<CidMark> = std::mem::take(&mut *carried);
        let mut todo: Vec<u32> = slots
            .iter()
            .copied()
            .filter(|s| !marked.iter().any(|m| m.slot == *s))
            .collect();
        loop {
            // 1. Mark every buffer that has something to close.
            for slot in todo.drain(..) {
                match self.cid_mark(slot, include_empty) {
                    Ok(Some(m)) => marked.push(m),
                    Ok(None) => out.push((slot, Ok(FlushOutcome::Nothing))),
                    Err(e) => out.push((slot, Err(e))),
                }
            }
            if marked.is_empty() {
                break;
            }
            // 2. Every rseq critical section of this process in progress now is finished or
            // aborted when this returns (and ordered with us as by a full fence).
            let fenced = faultline_rseq::membarrier_rseq_all();
            // 3. Resolve each mark.
            for m in marked.drain(..) {
                let b = self.buf(m.slot);
                let mark = m.new | FLUSH_MARK;
                // Acquire: pairs with the release commit store of the section that confirmed
                // the mark, stored after flush_ack (3').
                if !fenced && b.flush_ack.load(Ordering::Acquire) != mark {
                    // Cannot happen once created (cid_supported). Nothing tells whether a
                    // section that compared `old` is still in flight, so the mark stays until
                    // a later flush (or a writer's confirmation) resolves it.
                    out.push((
                        m.slot,
                        Err(FlushError::Cid(m.slot, "membarrier failed".into())),
                    ));
                    carried.push(m);
                    continue;
                }
                // Fenced, or confirmed by a writer: no section that compared `old` before the
                // mark is still in flight. If none replaced the mark, [old, new) is ours:
                // unmark (a confirming writer stores the same value). AcqRel on success: the
                // unmarked offset publishes the reservation as a writer's rseq store does
                // (pairs with the next reserver's acquire load). Acquire on failure: pairs
                // with the release store that replaced the mark, so a confirming section's
                // flush_ack store, made before it, is visible below.
                let unmarked = b
                    .write_offset
                    .compare_exchange(mark, m.new, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                // 3'. Or a writer holding the id saw the mark in a section of that id and
                // confirmed it (confirm_flush): the range is ours as well. Relaxed: ordered
                // by the acquire above.
                if unmarked || b.flush_ack.load(Ordering::Relaxed) == mark {
                    self.close_subbuf(m.slot, m.old, m.ts, m.lost);
                    out.push((m.slot, Ok(FlushOutcome::Closed)));
                } else {
                    // A writer's reservation from `old` won: ours never happened, again.
                    todo.push(m.slot);
                }
            }
        }
        out
    }

    /// Step 1 of [`Channel::flush_cid`] for one buffer: `None` when there is nothing to close.
    fn cid_mark(&self, slot: u32, include_empty: bool) -> Result<Option<CidMark>, FlushError> {
        let g = &self.geo;
        let b = self.buf(slot);
        loop {
            // Acquire: as in reserve_general (the loss snapshot, close.rs).
            let old = b.write_offset.load(Ordering::Acquire);
            if old >= crate::consumer::MAX_POSITION {
                // FLUSH_MARK included: only this (serialised) flusher sets it and always
                // resolves it before returning.
                return Err(FlushError::Corrupt(
                    slot,
                    format!("write offset {old:#x} beyond any real position"),
                ));
            }
            let sb_off = old & g.sb_mask;
            if sb_off == 0 || (sb_off == PACKET_HEADER_SIZE && !include_empty) {
                return Ok(None);
            }
            let new = old - sb_off + g.subbuf_size;
            // The loss snapshot between the acquire load of `old` and the reservation (close.rs).
            let lost = BufOps {
                chan: self,
                cpu: slot,
                st: None,
            }
            .load_lost();
            // The end timestamp, read before the mark: not before any record below `old`
            // (stored before our load), not after any record of the next sub-buffer (reserved
            // after the mark is resolved, possibly by a writer's confirmation before we look
            // again).
            let ts = clock::now_ordered(g.clock);
            // Mark: AcqRel, pairs with the writers' release offset stores (acquire) and with
            // their acquire load of the offset that sees the mark (release).
            if b.write_offset
                .compare_exchange(old, new | FLUSH_MARK, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Some(CidMark {
                    slot,
                    old,
                    new,
                    ts,
                    lost,
                }));
            }
        }
    }

    /// Flush every active buffer: per CPU, each from a helper thread pinned to that CPU (rseq
    /// mode) or directly (atomic mode); per concurrency id, directly (`flush_cid`). Returns the
    /// buffers that could not be flushed.
    pub fn flush_all(&self, include_empty: bool) -> Vec<FlushError> {
        let active: Vec<u32> = (0..self.geo.num_cpus)
            .filter(|&c| self.is_active(c))
            .collect();
        if self.geo.index == BufferIndex::Cid {
            // Concurrency-id buffers: from this thread, all with one membarrier (flush_cid).
            return self
                .flush_cid(&active, include_empty)
                .into_iter()
                .filter_map(|(_, r)| r.err())
                .collect();
        }
        if self.geo.sync == SyncMode::Atomic {
            return active
                .iter()
                .filter_map(|&c| self.flush_cpu(c, include_empty).err())
                .collect();
        }
        // No pinned thread for a buffer that has nothing to close (flush_cpu's first check,
        // made from here: at the end of a run every buffer is often at a sub-buffer boundary,
        // and a thread pinned to a busy CPU waits for it). Relaxed: a hint; a writer that
        // opens a sub-buffer after this load is not covered by this flush either way.
        let active: Vec<u32> = active
            .into_iter()
            .filter(|&c| {
                let old = self.buf(c).write_offset.load(Ordering::Relaxed);
                let sb_off = old & self.geo.sb_mask;
                old >= crate::consumer::MAX_POSITION
                    || !(sb_off == 0 || (sb_off == PACKET_HEADER_SIZE && !include_empty))
            })
            .collect();
        std::thread::scope(|s| {
            let hs: Vec<_> = active
                .iter()
                .map(|&cpu| {
                    s.spawn(move || {
                        faultline_rseq::pin_to_cpu(cpu)
                            .map_err(|e| FlushError::Pin(cpu, e.to_string()))?;
                        // Pinning takes effect at the next scheduling point; retry briefly.
                        for _ in 0..1000 {
                            match self.flush_cpu(cpu, include_empty) {
                                Err(FlushError::NotOnCpu(_)) => std::thread::yield_now(),
                                r => return r,
                            }
                        }
                        Err(FlushError::NotOnCpu(cpu))
                    })
                })
                .collect();
            hs.into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or(Err(FlushError::NotOnCpu(u32::MAX)))
                        .err()
                })
                .collect()
        })
    }

    /// Per-CPU counters for reports.
    pub fn cpu_stats(&self, cpu: u32) -> Option<CpuStats> {
        if cpu >= self.geo.num_cpus {
            return None;
        }
        if !self.is_active(cpu) {
            // Unused: all zero, and its pages stay untouched (is_active).
            return Some(CpuStats {
                cpu,
                ..CpuStats::default()
            });
        }
        let b = self.buf(cpu);
        Some(CpuStats {
            cpu,
            active: true,
            write_offset: b.write_offset.load(Ordering::Relaxed),
            consumed: b.consumed.load(Ordering::Relaxed),
            lost_full: b.lost_full.load(Ordering::Relaxed),
            lost_stalled: b.lost_stalled.load(Ordering::Relaxed),
            lost_too_big: b.lost_too_big.load(Ordering::Relaxed),
            remote_commits: b.remote_commits.load(Ordering::Relaxed),
            deliveries: b.deliveries.load(Ordering::Relaxed),
            membarriers: b.membarriers.load(Ordering::Relaxed),
            overwritten_packets: b.overwritten_packets.load(Ordering::Relaxed),
        })
    }
}

/// Counters of one CPU buffer (a snapshot; numbers from shared memory, informational: sum them
/// with [`CpuStats::checked_lost_total`] or checked arithmetic, never `+`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// The CPU whose buffer this is.
    pub cpu: u32,
    /// Whether any writer ever reserved in this buffer.
    pub active: bool,
    /// Writers' current position (bytes reserved since the start, free-running).
    pub write_offset: u64,
    /// Consumer's position (bytes taken out, free-running).
    pub consumed: u64,
    /// Events lost: discard mode, no free sub-buffer.
    pub lost_full: u64,
    /// Events lost: the next sub-buffer held an uncommitted reservation.
    pub lost_stalled: u64,
    /// Events lost: larger than a sub-buffer.
    pub lost_too_big: u64,
    /// Commits done REMOTE (the writer had migrated since reserving).
    pub remote_commits: u64,
    /// Sub-buffers delivered to the consumer.
    pub deliveries: u64,
    /// Membarriers issued by REMOTE commits.
    pub membarriers: u64,
    /// Sub-buffers overwritten before the consumer took them (overwrite mode).
    pub overwritten_packets: u64,
}

impl CpuStats {
    /// `lost_full + lost_stalled + lost_too_big`, saturating at `u64::MAX` (only garbage in
    /// shared memory gets there; [`CpuStats::checked_lost_total`] says so).
    pub fn lost_total(&self) -> u64 {
        self.lost_full
            .saturating_add(self.lost_stalled)
            .saturating_add(self.lost_too_big)
    }

    /// `lost_full + lost_stalled + lost_too_big`, or the error naming the CPU buffer when the
    /// sum overflows (the counters are garbage).
    pub fn checked_lost_total(&self) -> Result<u64, crate::ReadError> {
        self.lost_full
            .checked_add(self.lost_stalled)
            .and_then(|s| s.checked_add(self.lost_too_big))
            .ok_or_else(|| crate::ReadError::Corrupt {
                cpu: self.cpu,
                what: format!(
                    "loss counters overflow: full {} + stalled {} + too big {}",
                    self.lost_full, self.lost_stalled, self.lost_too_big
                ),
            })
    }
}

pub(crate) fn futex_wake(w: &std::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned u32 in a (possibly shared) mapping; no private
    // flag because the waiter may be another process.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0,
            0,
            0,
        )
    };
}

pub(crate) fn futex_wait(
    w: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a valid aligned u32 with a valid relative timeout; returns on wake,
    // value mismatch, timeout or signal, all of which the caller handles by re-checking.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            0,
            0,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-shift forms the commit uses (`complete_own`, `counters_off`) agree with the
    /// two-shift definitions (`complete`, `idx`) for every geometry shape and positions up to
    /// `consumer::MAX_POSITION`.
    #[test]
    fn one_shift_geometry_matches_the_definitions() {
        let counters = std::mem::size_of::<SubbufCounters>() as u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for (sb, n) in [
            (256u64, 2u64),
            (4096, 4),
            (1 << 20, 4),
            (1 << 16, 65536),
            (1 << 30, 16),
        ] {
            let g = Geometry::compute(3, sb, n).unwrap();
            let mut positions = vec![0, 8, sb - 8, sb, sb + 8, g.buf_size - 8, g.buf_size];
            positions.push(crate::consumer::MAX_POSITION - 8);
            for _ in 0..1000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                positions.push((x >> 3) % crate::consumer::MAX_POSITION);
            }
            for pos in positions {
                assert_eq!(g.complete_own(pos), g.complete(pos), "{sb} x {n} at {pos}");
                assert_eq!(
                    g.counters_off(pos),
                    g.counters_offset + g.idx(pos) * counters,
                    "{sb} x {n} at {pos}"
                );
            }
        }
    }
}
