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
//! 4. If we switched: write the old packet's end fields (end timestamp, content size, the
//!    loss snapshot) and commit its padding; write the new packet's header and commit it.
//!
//! Steps 2–3 for the common case (rseq mode, TSC clock, the record fits in the current
//! sub-buffer, the critical section commits at the first attempt) are inlined into the caller
//! ([`Channel::reserve`]); anything else — atomic mode, monotonic clock, a sub-buffer switch,
//! a loss, a retry after an abort or a lost race, a buffer's first use — falls back, having
//! reserved nothing, to the general out-of-line path, which runs all four steps. Both paths
//! apply the same strict-fit rule. Where the nanoseconds of the fast path go:
//! `docs/ringbuf-cost.md` and `examples/reserve_cost.rs`.
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
//! # Rules for the traced program
//! One process (one `mm`) writes a channel's buffers at a time for the membarrier fast
//! delivery; several processes still work (rseq serialises them per CPU) and delivery then
//! relies on the consumer's periodic check.

use crate::clock::{self, ClockInfo};
use crate::close::{self, CloseOps, LostCounts};
use crate::commit::{self, CommitCounters, CommitKind, NotOnCpu};
use crate::layout::*;
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
    /// Number of per-CPU buffers; default: possible CPUs.
    pub num_cpus: Option<u32>,
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
    /// The current CPU has no buffer (CPU id beyond the channel's CPU count).
    NoBuffer,
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
    pub(crate) geo: Geometry,
    /// Which reserve path to take: [`FAST_RSEQ`] (rseq sync and TSC clock: the inline fast
    /// path), [`FAST_RSEQ_INJECT`] (the same with abort injection, so the stress harness runs
    /// the fast path's code too) or [`GENERAL`].
    path: u8,
    inject_spins: u64,
    clock: ClockInfo,
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

const _: () = {
    // reserve_fast writes the record header as two u64 words (RecordHeader::words).
    assert!(faultline_wire::off::RECORD_ID == 8);
    assert!(faultline_wire::off::RECORD_LEN == 12);
};

const GENERAL: u8 = 0;
const FAST_RSEQ: u8 = 1;
const FAST_RSEQ_INJECT: u8 = 2;

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
    pub uuid: [u8; 16],
    pub max_record: u64,
    /// log2(subbuf_size), log2(buf_size): positions are split with shifts, not divisions.
    pub sb_shift: u32,
    pub buf_shift: u32,
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
            uuid: [0; 16],
            max_record: subbuf_size - PACKET_HEADER_SIZE - 1,
            sb_shift: subbuf_size.trailing_zeros(),
            buf_shift: buf_size.trailing_zeros(),
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
}

/// An exclusive slot in a CPU buffer, between reserve and commit. The payload may be written
/// from any thread state: faulting, blocking, migrating. Dropping it without
/// [`Reservation::commit`] commits it as a discarded record (id [`DISCARDED_RECORD_ID`]) so the
/// sub-buffer is never left unbalanced.
pub struct Reservation<'a> {
    chan: &'a Channel,
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
    /// The payload bytes (exactly the reserved length).
    #[inline(always)]
    pub fn payload(&mut self) -> &mut [u8] {
        let p = self
            .chan
            .data_ptr(self.cpu as u32, self.pos + RECORD_HEADER_SIZE);
        // SAFETY: [pos, pos + header + payload_len) lies inside one sub-buffer of this CPU's
        // data area (the reserve computation guarantees it from masked offsets) and is
        // exclusively ours until commit: no writer reserves it again before the sub-buffer's
        // commit sum is complete, and no reader copies it before then.
        unsafe { std::slice::from_raw_parts_mut(p, self.payload_len as usize) }
    }
    /// Publish the record.
    #[inline(always)]
    pub fn commit(self) -> CommitKind {
        // Committing consumes the reservation without running its Drop (which would commit it
        // a second time, as a discarded record): no drop flag to set and test.
        let r = std::mem::ManuallyDrop::new(self);
        let p = r
            .chan
            .data_ptr(r.cpu as u32, r.pos + faultline_wire::off::RECORD_ID as u64);
        // SAFETY: the record header lies in our exclusive reservation (see payload()). This
        // plain store precedes the commit counter update in program order; that update is a
        // release (x86 TSO store in the rseq section, whose asm clobbers memory, or an AcqRel
        // fetch_add), so the consumer's acquire load of the counters (commit_sum) that sees our
        // bytes also sees the real id.
        unsafe { std::ptr::write_unaligned(p as *mut u32, r.id as u32) };
        r.chan.commit_range(r.cpu as u32, r.pos, r.commit_len)
    }
}

impl Drop for Reservation<'_> {
    /// Only reached for a reservation that was not committed ([`Reservation::commit`] skips it).
    /// Inline, handing the fields to an out-of-line function in registers: an out-of-line
    /// `drop(&mut self)` makes the caller build the Reservation in memory, which LLVM does with
    /// 8-byte stores read back by 16-byte loads (failed store forwarding, ~18 ns measured).
    #[inline]
    fn drop(&mut self) {
        self.chan
            .discard(self.cpu as u32, self.pos, self.commit_len, self.payload_len);
    }
}

/// Counters of one sub-buffer in shared memory, with the operations of the commit protocol;
/// `RSEQ`: the channel's sync mode. Two pointers, so it is passed in registers.
#[derive(Clone, Copy)]
struct ShmCounters<'a, const RSEQ: bool> {
    c: &'a SubbufCounters,
    /// The header of the buffer holding `c` (for the membarrier count).
    b: &'a BufferHeader,
}

impl<const RSEQ: bool> CommitCounters for ShmCounters<'_, RSEQ> {
    #[inline(always)]
    fn local_add(&self, cpu: u32, n: u64) -> Result<u64, NotOnCpu> {
        if !RSEQ {
            return Err(NotOnCpu);
        }
        loop {
            // SAFETY: rseq is available (the channel was created/opened in rseq mode only if
            // so); `local` of CPU `cpu` is written only by rseq critical sections on `cpu`.
            match unsafe { faultline_rseq::addv(cpu, self.c.local.as_ptr(), n) } {
                Ok(v) => return Ok(v),
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
        if !faultline_rseq::membarrier_rseq_cpu(cpu) {
            // No membarrier: fall back to a local full fence; the consumer's periodic check
            // is then the delivery backstop (see commit.rs).
            fence(Ordering::SeqCst);
        }
    }
}

/// One CPU buffer of a channel, as [`close::reserve_closing`] sees it.
struct BufOps<'a> {
    chan: &'a Channel,
    cpu: u32,
}

impl CloseOps for BufOps<'_> {
    #[inline(always)]
    fn try_reserve(&self, old: u64, new: u64) -> Option<u64> {
        let w = &self.chan.buf(self.cpu).write_offset;
        self.chan.cas_offset(self.cpu, w, old, new)
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
            h.clock_freq = clock.freq;
            h.clock_ref_ticks = clock.ref_ticks;
            h.clock_ref_unix_ns = clock.ref_unix_ns;
            h.uuid = cfg.uuid;
            for cpu in 0..ncpu {
                let b = base.add((geo.buffers_offset + cpu as u64 * geo.stride) as usize)
                    as *mut BufferHeader;
                (*b).cpu = cpu;
            }
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
        geo.uuid = h[96..112].try_into().unwrap();
        let clock = ClockInfo {
            kind: geo.clock,
            freq: u64_at(72).max(1),
            ref_ticks: u64_at(80),
            ref_unix_ns: u64_at(88),
        };
        Ok(Channel {
            base,
            geo,
            path: match (geo.sync, geo.clock, inject_spins) {
                (SyncMode::Rseq, ClockKind::Tsc, 0) => FAST_RSEQ,
                (SyncMode::Rseq, ClockKind::Tsc, _) => FAST_RSEQ_INJECT,
                _ => GENERAL,
            },
            inject_spins,
            clock,
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
    /// rseq or atomic commit path.
    pub fn sync_mode(&self) -> SyncMode {
        self.geo.sync
    }
    /// Number of per-CPU buffers.
    pub fn num_cpus(&self) -> u32 {
        self.geo.num_cpus
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
        (self.geo.max_record - RECORD_HEADER_SIZE) as usize
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
        unsafe {
            &*(self
                .base
                .add((self.geo.buffers_offset + cpu as u64 * self.geo.stride) as usize)
                as *const BufferHeader)
        }
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
            self.base.add(
                (self.geo.buffers_offset
                    + cpu as u64 * self.geo.stride
                    + self.geo.data_offset
                    + (pos & self.geo.buf_mask)) as usize,
            )
        }
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

    #[inline(always)]
    fn current_cpu(&self) -> u32 {
        faultline_rseq::current_cpu()
    }

    /// Make sure `cpu`'s buffer is marked in use.
    #[inline(always)]
    fn activate(&self, cpu: u32) -> &BufferHeader {
        let b = self.buf(cpu);
        if b.active.load(Ordering::Relaxed) == 0 {
            // Release: pairs with the consumer's acquire load of `active` (nothing else is
            // published with it; the buffer starts all zero).
            let _ = b
                .active
                .compare_exchange(0, 1, Ordering::Release, Ordering::Relaxed);
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
            FAST_RSEQ => self.reserve_fast::<false>(id, payload_len),
            FAST_RSEQ_INJECT => self.reserve_fast::<true>(id, payload_len),
            _ => None,
        };
        if let Some(r) = r {
            return Ok(r);
        }
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
        let hp = self.data_ptr(cpu, pos) as *const u64;
        // SAFETY: the record header at `pos` is in the reservation reserve_slow just made for
        // us (exclusively ours, 8-aligned); it wrote the timestamp there. The value is only
        // reported back, never used to form an address.
        let timestamp = unsafe { std::ptr::read(hp) };
        Ok(Reservation {
            chan: self,
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
    #[inline(always)]
    fn reserve_fast<const INJECT: bool>(
        &self,
        id: u32,
        payload_len: usize,
    ) -> Option<Reservation<'_>> {
        let g = &self.geo;
        // SAFETY: fast_rseq implies the channel is in rseq mode, which create/open allow only
        // when rseq is available in this process.
        let cpu = unsafe { faultline_rseq::cpu_id_unchecked() };
        if cpu >= g.num_cpus {
            return None;
        }
        let b = self.buf(cpu);
        // No activate() here: the fast path needs `old` inside a sub-buffer (sb_off != 0), and
        // the writer that first moved this buffer's write_offset off 0 went through the general
        // path, which marks the buffer active before its reservation.
        // Acquire (a plain load on x86, like Relaxed): pairs with the previous reservation's
        // offset store, so reservations form a happens-before chain (close.rs).
        let old = b.write_offset.load(Ordering::Acquire);
        let sb_off = old & g.sb_mask;
        let aligned = align_up(sb_off, RECORD_ALIGN);
        // Saturating: an absurd length must not wrap into a small one. `aligned <=
        // subbuf_size` (both multiples of 8, sb_off < subbuf_size), so the subtraction cannot
        // wrap, and `rec_len < subbuf_size - aligned` is the strict-fit rule
        // `aligned + rec_len < subbuf_size` of the general path. It also implies
        // rec_len <= max_record, since aligned >= PACKET_HEADER_SIZE when sb_off != 0.
        let rec_len = RECORD_HEADER_SIZE.saturating_add(payload_len as u64);
        if sb_off == 0 || rec_len >= g.subbuf_size - aligned {
            return None;
        }
        let pos = old - sb_off + aligned;
        let end = pos + rec_len;
        // SAFETY: rseq available (see above); write_offset of `cpu` is only written by rseq
        // critical sections on `cpu` in rseq mode.
        let ts = unsafe {
            let w = b.write_offset.as_ptr();
            if INJECT {
                faultline_rseq::cmpeqv_storev_tsc_delayed(cpu, w, old, end, self.inject_spins)
            } else {
                faultline_rseq::cmpeqv_storev_tsc(cpu, w, old, end)
            }
            .ok()?
        };
        // Release: as in reserve_slow (pairs with the overwrite-mode reader's acquire fence).
        fence(Ordering::Release);
        let hp = self.data_ptr(cpu, pos) as *mut u64;
        // The RecordHeader as two 8-byte stores (LLVM emits three for the struct): timestamp,
        // then id | payload len << 32, each little-endian as the wire format says
        // (`RecordHeader::words`). The id is PENDING_RECORD_ID until commit stores the real one.
        // SAFETY: [pos, end) is ours (see Reservation::payload); pos is 8-aligned, and the
        // header is 16 bytes: two u64 at offsets 0 and 8.
        unsafe {
            hp.write(ts.to_le());
            hp.add(1)
                .write((PENDING_RECORD_ID as u64 | (payload_len as u64) << 32).to_le());
        }
        Some(Reservation {
            chan: self,
            pos,
            timestamp: ts,
            commit_len: end - old,
            payload_len: payload_len as u64,
            cpu: cpu as u64,
            id: id as u64,
        })
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
        let rec_len = RECORD_HEADER_SIZE.saturating_add(payload_len as u64);
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
            // closer's loss snapshot comes after every earlier closer's (close.rs).
            let old = b.write_offset.load(Ordering::Acquire);
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
            let ops = BufOps { chan: self, cpu };
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
            let hp = self.data_ptr(cpu, pos);
            // SAFETY: [pos, end) is ours (see Reservation::payload); pos is 8-aligned.
            unsafe {
                std::ptr::write(
                    hp as *mut RecordHeader,
                    RecordHeader {
                        timestamp: ts,
                        id: PENDING_RECORD_ID,
                        // rec_len <= max_record < 1 GiB: the payload length fits.
                        len: (rec_len - RECORD_HEADER_SIZE) as u32,
                    },
                )
            };
            let commit_len = if switch { rec_len } else { end - old };
            return Ok((cpu, pos, commit_len));
        }
    }

    /// Compare-and-store `write_offset` on `cpu`, reading the timestamp; `None` = retry.
    #[inline(always)]
    fn cas_offset(&self, cpu: u32, w: &AtomicU64, old: u64, new: u64) -> Option<u64> {
        match (self.geo.sync, self.geo.clock) {
            (SyncMode::Rseq, ClockKind::Tsc) => {
                // SAFETY: rseq available (checked at create/open); write_offset of `cpu` is only
                // written by rseq critical sections on `cpu` in rseq mode.
                let r = unsafe {
                    if self.inject_spins == 0 {
                        faultline_rseq::cmpeqv_storev_tsc(cpu, w.as_ptr(), old, new)
                    } else {
                        faultline_rseq::cmpeqv_storev_tsc_delayed(
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
            (SyncMode::Rseq, ClockKind::Monotonic) => {
                let ts = clock::now(ClockKind::Monotonic);
                // SAFETY: as above.
                unsafe { faultline_rseq::cmpeqv_storev(cpu, w.as_ptr(), old, new) }
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
        // SAFETY: the header of this sub-buffer was written by its opener before the opener's
        // commit; the end fields are written only by the closer, i.e. us, inside a range no
        // reader may copy before our commit below. Field writes, not a whole-struct write,
        // so the opener's fields stay intact.
        unsafe {
            (*hp).timestamp_end = ts;
            (*hp).content_size = sb_off * 8;
            (*hp).lost_full = full;
            (*hp).lost_stalled = stalled;
            (*hp).lost_too_big = big;
            (*hp).remote_commits = remote;
            // Wrapping: the counters are shared memory; garbage must not panic here (the
            // consumer's trace writer rejects a header whose sum does not add up).
            (*hp).events_discarded = full.wrapping_add(stalled).wrapping_add(big);
        }
        self.commit_range(cpu, old, g.subbuf_size - sb_off);
    }

    /// Commit a reservation dropped without [`Reservation::commit`] as a padding record
    /// (`faultline_wire`): its id becomes [`DISCARDED_RECORD_ID`] and its payload zeros.
    #[cold]
    #[inline(never)]
    fn discard(&self, cpu: u32, pos: u64, commit_len: u64, payload_len: u64) {
        let p = self.data_ptr(cpu, pos + faultline_wire::off::RECORD_ID as u64);
        let payload = self.data_ptr(cpu, pos + RECORD_HEADER_SIZE);
        // SAFETY: the record header and its payload lie in the dropped reservation, inside one
        // sub-buffer, exclusively its owner's until this commit (see Reservation::payload).
        unsafe {
            std::ptr::write_unaligned(p as *mut u32, DISCARDED_RECORD_ID);
            std::ptr::write_bytes(payload, 0, payload_len as usize);
        }
        self.commit_range(cpu, pos, commit_len);
    }

    /// Commit `len` bytes at position `pos` of `cpu`'s buffer.
    #[inline(always)]
    pub(crate) fn commit_range(&self, cpu: u32, pos: u64, len: u64) -> CommitKind {
        let g = &self.geo;
        let (c, b) = (self.counters(cpu, g.idx(pos)), self.buf(cpu));
        let complete = g.complete(pos);
        let (kind, done) = if g.sync == SyncMode::Rseq {
            let r = commit::commit(&ShmCounters::<true> { c, b }, cpu, len, complete);
            if r.0 == CommitKind::Remote {
                b.remote_commits.fetch_add(1, Ordering::Relaxed);
            }
            r
        } else {
            commit::commit(&ShmCounters::<false> { c, b }, cpu, len, complete)
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
        if b.active.load(Ordering::Acquire) == 0 {
            return Ok(FlushOutcome::Nothing);
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
            if let Some((ts, lost)) = close::reserve_closing(&BufOps { chan: self, cpu }, old, new)
            {
                self.close_subbuf(cpu, old, ts, lost);
                return Ok(FlushOutcome::Closed);
            }
        }
    }

    /// Flush every active CPU buffer, each from a helper thread pinned to that CPU (rseq mode)
    /// or directly (atomic mode). Returns the CPUs that could not be flushed.
    pub fn flush_all(&self, include_empty: bool) -> Vec<FlushError> {
        let active: Vec<u32> = (0..self.geo.num_cpus)
            .filter(|&c| self.buf(c).active.load(Ordering::Acquire) != 0)
            .collect();
        if self.geo.sync == SyncMode::Atomic {
            return active
                .iter()
                .filter_map(|&c| self.flush_cpu(c, include_empty).err())
                .collect();
        }
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
        let b = self.buf(cpu);
        Some(CpuStats {
            cpu,
            // Acquire: pairs with the first writer's release CAS on `active`.
            active: b.active.load(Ordering::Acquire) != 0,
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
