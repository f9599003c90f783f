//! Shared-memory layout of a channel. Everything here lives in a memfd mapped by the traced
//! program(s) and the consumer; it is `#[repr(C)]` with asserted sizes and offsets.
//!
//! ```text
//! [ChannelHeader, 256 B]
//! [CPU 0 region][CPU 1 region]...          each `buffer_stride` bytes, page aligned
//! ```
//! With [`BufferIndex::Cid`] the regions are indexed by concurrency id instead of CPU ("CPU k"
//! below then reads "the thread of the writer process holding concurrency id k"; see
//! `channel.rs`, "Buffers per CPU or per concurrency id").
//! ```text
//! CPU region:  [BufferHeader, 256 B][SubbufCounters x num_subbuf, 128 B each] (page pad)
//!              [data: num_subbuf x subbuf_size bytes]
//! ```
//! The memfd is sized for every possible CPU up front, but it is sparse: a CPU's pages become
//! resident only when a writer first touches that CPU's buffer ("allocated on first use"); its
//! `BufferHeader::active` word, and its bit in the *active map* (4096 bits at byte 512 of the
//! header page), tell the consumer which CPUs have ever been used. Scans read the map, so a
//! buffer nobody used keeps all its pages unallocated (even a read of a memfd page allocates
//! it).
//!
//! ## Who writes which word
//! | word | written by | how |
//! |---|---|---|
//! | `BufferHeader::write_offset` | writers on CPU k (and flushers pinned on CPU k) | rseq compare-and-store on CPU k (atomic CAS in atomic mode); per concurrency id also the flusher's mark and unmark (compare-and-swap from any thread of the writer process, `channel.rs`) |
//! | `BufferHeader::flush_ack` | per concurrency id only: writers holding id k that confirm a flush mark | plain store inside an rseq section keyed on id k, just before its commit |
//! | `SubbufCounters::local` | committers running on CPU k | rseq load-add-store on CPU k (never written in atomic mode) |
//! | `SubbufCounters::remote` | committers that migrated off CPU k; everyone in atomic mode | atomic fetch_add from any CPU |
//! | `BufferHeader::consumed` | the consumer only | release store |
//! | `BufferHeader::lost_*`, `remote_commits`, `deliveries` | writers on any CPU | atomic fetch_add (slow paths) |
//! | `BufferHeader::last_ts` | every reserver of buffer k, after its reserve section (the fast path's reserve asm stores it right after its commit store; overwrite mode's fast path, which never writes compact headers, skips it) | relaxed store (a plain store) |
//! | `BufferHeader::active` | first writer on CPU k | compare-exchange 0 -> 1 |
//! | active map bit k (header page, byte 512 + k / 8) | first writers on CPU k, after `active` | release fetch_or |
//! | `SubbufCounters::recovered` | dead-writer recovery only, when every writer is dead (`recover.rs`) | atomic fetch_add |
//! | `SubbufCounters::owner_*` | nobody yet (reserved) | — |
//! | packet headers and records in data | the writer that opened (begin fields) / closed (end fields) the sub-buffer, before its commit | plain stores inside its own reservation; the cumulative loss counts and `remote_commits` are the closer's snapshot taken before its reservation, so they never decrease along a CPU's packets (`close.rs`); in discard mode on the rseq path with the TSC, the record header and a closed packet's `content_size` are stored inside the reserve critical section, before the offset store (`channel.rs`, "Record headers inside the reserve section") |

use std::sync::atomic::{AtomicU32, AtomicU64};

/// First word of a channel's memfd: "FLTLCHN1".
pub const CHANNEL_MAGIC: u64 = u64::from_le_bytes(*b"FLTLCHN1");
/// Version of this layout; a channel with another version is refused (2: compact record
/// headers, `BufferHeader::last_ts`; 3: packed records with 6-byte compact headers,
/// `faultline_wire`; 4: in discard mode on the rseq path with the TSC, record headers and a
/// closed packet's content size are written inside the reserve critical section, and the
/// consumer zeroes nothing: a writer of layout 3 relies on a consumer that zeroes).
pub const LAYOUT_VERSION: u32 = 4;
/// Cache line size the layout aligns shared words to.
pub const CACHE_LINE: usize = 64;
/// Page size the CPU regions are aligned to.
pub const PAGE: usize = 4096;

// The packet and record layout is the wire format of `faultline-wire` (defined there once);
// these are its constants in the `u64` arithmetic of positions.
pub use faultline_wire::{PacketHeader, RecordHeader};
/// CTF packet magic, first word of every packet ([`faultline_wire::PACKET_MAGIC`]).
pub const PACKET_MAGIC: u32 = faultline_wire::PACKET_MAGIC;
/// Size of the packet header at the start of every sub-buffer.
pub const PACKET_HEADER_SIZE: u64 = faultline_wire::PACKET_HEADER_SIZE as u64;
/// Size of the record header in front of every event payload.
pub const RECORD_HEADER_SIZE: u64 = faultline_wire::RECORD_HEADER_SIZE as u64;
/// Records start at multiples of this (relative to the packet start).
pub const RECORD_ALIGN: u64 = faultline_wire::RECORD_ALIGN as u64;

/// Buffer mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// Writers never block; an event that finds no free sub-buffer is dropped and counted.
    Discard = 0,
    /// Flight recorder: the oldest sub-buffers are overwritten; the reader only ever takes
    /// consistent sub-buffers.
    Overwrite = 1,
}

/// How writers synchronise on the per-CPU words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SyncMode {
    /// rseq critical sections for reserve and LOCAL commit; atomics only for REMOTE commits.
    Rseq = 0,
    /// Atomics everywhere (no rseq available, or for comparison).
    Atomic = 1,
}

/// What a channel's buffers are indexed by (which id of the rseq area writers key their critical
/// sections on). Recorded in [`ChannelHeader::index`] so consumers and readers know whether
/// buffer `k` (and the `cpu_id` field of its packets) is CPU `k` or concurrency slot `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BufferIndex {
    /// One buffer per CPU, keyed on `rseq->cpu_id`: any number of processes may write.
    Cpu = 0,
    /// One buffer per concurrency id (`rseq->mm_cid`) of **one** process, the channel's
    /// `writer_pid`: at most min(threads, CPUs the process may run on) buffers are ever used.
    Cid = 1,
}

impl BufferIndex {
    /// `"cpu"` or `"cid"`: how a buffer is named in reports and trace metadata.
    pub fn name(self) -> &'static str {
        match self {
            BufferIndex::Cpu => "cpu",
            BufferIndex::Cid => "cid",
        }
    }
}

/// Clock source for timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ClockKind {
    /// `rdtsc`, read inside the reserve critical section.
    Tsc = 0,
    /// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds, read just before the reserve.
    Monotonic = 1,
}

/// First 256 bytes of a channel: its geometry, clock and the consumer's wake-up word. Written once
/// by the creator before the memfd is shared, except the second cache line.
#[repr(C, align(64))]
pub struct ChannelHeader {
    /// [`CHANNEL_MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// Number of per-CPU buffers.
    pub num_cpus: u32,
    /// Bytes per sub-buffer (power of two).
    pub subbuf_size: u64,
    /// Sub-buffers per CPU buffer (power of two).
    pub num_subbuf: u64,
    /// Bytes from one CPU region to the next (page aligned).
    pub buffer_stride: u64,
    /// Offset of CPU 0's region from the start of the memfd.
    pub buffers_offset: u64,
    /// Size of the memfd.
    pub total_size: u64,
    /// [`Mode`] as `u32`.
    pub mode: u32,
    /// [`SyncMode`] as `u32`.
    pub sync: u32,
    /// [`ClockKind`] as `u32`.
    pub clock: u32,
    /// [`BufferIndex`] as `u32` (0 = per CPU, as in channels made before the field existed).
    pub index: u32,
    /// Clock ticks per second.
    pub clock_freq: u64,
    /// A reference point: clock value `clock_ref_ticks` was wall-clock `clock_ref_unix_ns`.
    pub clock_ref_ticks: u64,
    /// Wall-clock time, in nanoseconds since the Unix epoch, at `clock_ref_ticks`.
    pub clock_ref_unix_ns: u64,
    /// Trace UUID, copied into every packet header.
    pub uuid: [u8; 16],
    /// [`BufferIndex::Cid`] only: the process (thread group id) whose threads may write; any
    /// other process's reservations are refused (concurrency ids are per process). 0 otherwise.
    pub writer_pid: u32,
    /// Padding to the second cache line.
    pub _pad1: [u32; 3],
    // Second cache line: consumer wake-up (futex word) and liveness.
    /// Futex word the consumer waits on; bumped (release) by whoever delivers a sub-buffer,
    /// and by the consumer's own process to interrupt its wait (`Channel::wake_consumer`).
    pub wake_seq: AtomicU32,
    /// Non-zero while the consumer sleeps on `wake_seq` (deliverers only wake it then).
    pub consumer_waiting: AtomicU32,
    /// Padding to the end of the second cache line.
    pub _pad2: [u64; 7],
    /// Reserved, zero.
    pub _reserved: [u64; 8],
}
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ChannelHeader>() == 256);
    assert!(offset_of!(ChannelHeader, total_size) == 48);
    assert!(offset_of!(ChannelHeader, mode) == 56);
    assert!(offset_of!(ChannelHeader, clock_freq) == 72);
    assert!(offset_of!(ChannelHeader, clock_ref_unix_ns) == 88);
    assert!(offset_of!(ChannelHeader, uuid) == 96);
    assert!(offset_of!(ChannelHeader, index) == 68);
    assert!(offset_of!(ChannelHeader, writer_pid) == 112);
    assert!(offset_of!(ChannelHeader, wake_seq) == 128);
};

/// Header of one CPU buffer (256 bytes): positions, consumer progress and loss counters, one cache
/// line per writer class (table in the module docs).
#[repr(C, align(64))]
pub struct BufferHeader {
    // Line 0: rseq-owned by the buffer's CPU.
    /// Writers' position: bytes reserved since the start (free-running); rseq-owned by the buffer's
    /// CPU.
    pub write_offset: AtomicU64,
    /// 1 once a writer has used this buffer (compare-exchange 0 -> 1).
    pub active: AtomicU32,
    /// Zero, never written (a buffer's number is its position; writing it at creation would
    /// allocate a page of every possible buffer).
    pub cpu: u32,
    /// Timestamp of some reservation of this buffer (the floor of the compact-header decision,
    /// `channel.rs`): stored (relaxed) by each reserver after its reserve critical section,
    /// so any value read is the timestamp of a reservation that precedes the reader's.
    pub last_ts: AtomicU64,
    /// Padding to the end of line 0.
    pub _pad0: [u64; 5],
    // Line 1: consumer-owned.
    /// Consumer's position: bytes taken out (free-running); written by the consumer only (release).
    pub consumed: AtomicU64,
    /// Sub-buffers the consumer found overwritten (overwrite mode); written by the consumer only.
    pub overwritten_packets: AtomicU64,
    /// Padding to the end of line 1.
    pub _pad1: [u64; 6],
    // Line 2: slow-path counters, atomic from any CPU.
    /// Events lost: discard mode, no free sub-buffer.
    pub lost_full: AtomicU64,
    /// Events lost: the next sub-buffer held an uncommitted reservation.
    pub lost_stalled: AtomicU64,
    /// Events lost: larger than a sub-buffer.
    pub lost_too_big: AtomicU64,
    /// Commits done REMOTE on this buffer.
    pub remote_commits: AtomicU64,
    /// Sub-buffers delivered to the consumer.
    pub deliveries: AtomicU64,
    /// Membarriers issued by REMOTE commits on this buffer.
    pub membarriers: AtomicU64,
    /// Padding to the end of line 2.
    pub _pad2: [u64; 2],
    // Line 3.
    /// [`BufferIndex::Cid`] only: the last flush mark a writer confirmed (the marked
    /// `write_offset` it saw); written only inside critical sections keyed on the buffer's
    /// concurrency id, read by the flusher (`Channel::flush_all`). Zero otherwise.
    pub flush_ack: AtomicU64,
    /// Reserved, zero.
    pub _reserved: [u64; 7],
}
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<BufferHeader>() == 256);
    assert!(offset_of!(BufferHeader, last_ts) == 16);
    assert!(offset_of!(BufferHeader, consumed) == 64);
    assert!(offset_of!(BufferHeader, lost_full) == 128);
    assert!(offset_of!(BufferHeader, flush_ack) == 192);
};

/// Commit counters of one sub-buffer: free-running byte sums. The sub-buffer at offset `p`
/// (lap `p / buf_size`) is complete when `local + remote == (lap + 1) * subbuf_size`.
#[repr(C, align(64))]
pub struct SubbufCounters {
    /// Line 0: rseq-owned by the buffer's CPU.
    pub local: AtomicU64,
    /// Padding to the end of line 0.
    pub _pad0: [u64; 7],
    /// Line 1: atomic, any CPU.
    pub remote: AtomicU64,
    /// Dead-writer recovery (hazard 5, `recover.rs`): `recovered` counts the bytes recovery
    /// committed on behalf of writers that died between reserve and commit (also added to
    /// `remote`). `owner_pid`/`owner_tid` are reserved (always zero).
    pub owner_pid: AtomicU32,
    /// Reserved (always zero).
    pub owner_tid: AtomicU32,
    /// Bytes committed by dead-writer recovery on behalf of dead writers.
    pub recovered: AtomicU64,
    /// Reserved, zero.
    pub _reserved: [u64; 4],
}
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<SubbufCounters>() == 128);
    assert!(offset_of!(SubbufCounters, remote) == 64);
};

/// `v` rounded up to a multiple of `a` (a power of two).
#[inline(always)]
pub const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}
