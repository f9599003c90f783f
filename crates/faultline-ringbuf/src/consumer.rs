//! The consumer side: take the next complete sub-buffer of a CPU, copy it out, hand it back.
//!
//! The consumer owns `BufferHeader::consumed` (the position of the next sub-buffer to read) and
//! writes nothing else in the buffers. It trusts nothing it reads from shared memory (hazard
//! 9): the geometry was validated once when the channel was mapped and is never re-read;
//! offsets and counters read per call are checked for consistency (`consumed` aligned and not
//! ahead of `write_offset`, discard-mode distance at most one buffer, commit sums not beyond
//! their lap), and the packet header copied out is checked (magic, sequence number, CPU,
//! content size, record chain) before it is returned. Garbage yields [`ReadError::Corrupt`],
//! never a panic or an out-of-bounds access: every pointer it forms is masked into the data
//! area.
//!
//! Arithmetic on values read from shared memory is checked: positions at or beyond
//! [`MAX_POSITION`] (2^62 bytes, decades of writing at memory bandwidth) are rejected before
//! any sum is formed, and the sums themselves (`consumed + sub-buffer size`, `consumed +
//! buffer size`, the lapped reader's skip) use checked operations that turn an overflow into
//! the same one-line error. In a build with overflow checks nothing panics; in a release build
//! nothing wraps (a wrapped sum could make a forged sub-buffer look complete).
//!
//! ## In place (discard mode)
//! [`Consumer::take_in_place`] is the consumer's common path: it finds the next complete
//! sub-buffer with the same position and commit-counter checks, copies and checks only the
//! 128-byte packet header, and hands out the packet where it lies in the mapping, so the
//! caller can give its content to the kernel (`pwritev` from the mapping) without copying it
//! out or walking its records. Until [`Consumer::release`] the sub-buffer stays taken
//! (`consumed` has not moved), so no writer reuses it; release moves `consumed` (zeroing the
//! content first where compact headers are possible, see below).
//! [`Consumer::take_in_place_after`] takes the next complete sub-buffer while the previous one
//! is still held, so consecutive sub-buffers can go to the kernel in one call; they are
//! released in order. Because the records are not walked, nothing here vouches for them: the
//! traced program may have written anything (and may still be writing) inside the content, and
//! whoever reads them must check them (the trace writer's verification pass, the readers).
//!
//! ## Nothing is zeroed
//! Neither path writes anything into a sub-buffer before handing it back: in its next lap the
//! bytes no writer has written yet still hold the previous lap's. Readers never look past a
//! packet's `content_size`. Dead-writer recovery (`recover.rs`) tells a record of the current
//! lap from older bytes by its 64-bit timestamp where every header is extended (atomic mode,
//! the monotonic clock, overwrite mode). Where writers may use compact headers
//! ([`Channel::compact_headers`]) time cannot tell them apart (a compact header holds 27
//! timestamp bits, rebuilt from the record before it, so an older lap's compact header always
//! reads as plausible); there no reservation is ever visible without its header: discard-mode
//! channels on the rseq path with the TSC write the record header, and a closing reservation
//! the closed packet's end time and content size, inside the reserve critical section, before
//! the offset store ([`Channel::headers_in_reserve_section`], `channel.rs`). So every byte
//! recovery walks is this lap's. (Until that change the consumer zeroed what it handed back
//! in such channels: about a third of its CPU per event, and the zeroed cache lines were then
//! pulled back by the writer's CPU: `docs/ringbuf-cost.md`.)
//!
//! ## Consistency in overwrite mode
//! Writers may lap the reader. The reader copies a complete sub-buffer out, then (after an
//! acquire fence pairing with the writers' release fence after their reservation) re-reads
//! `write_offset`: if a writer reserved anything in that sub-buffer's next lap meanwhile, the
//! copy may be torn and is thrown away; the sub-buffers overwritten are counted as lost
//! packets (`overwritten_packets`). A sub-buffer is only ever returned whole.
//!
//! ## Waiting
//! [`Consumer::wait`] sleeps on the channel's futex word after announcing itself in
//! `consumer_waiting`; a committer that completes a sub-buffer wakes it (see
//! `Channel::deliver`). The wait always has a timeout, which is also the backstop of the
//! delivery protocol: the consumer re-reads the commit counters itself on every wake-up.

use crate::channel::{futex_wait, Channel, DISCARDED_RECORD_ID, PENDING_RECORD_ID};
use crate::layout::*;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;
use thiserror::Error;

/// Largest byte position a CPU buffer can really reach (module docs); larger ones are garbage.
pub const MAX_POSITION: u64 = 1 << 62;

/// Shared memory failed a consistency check.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// A value read from the CPU's buffer failed a consistency check (`what` says which).
    #[error("CPU {cpu} buffer corrupted: {what}")]
    Corrupt {
        /// The CPU buffer.
        cpu: u32,
        /// What was inconsistent.
        what: String,
    },
    /// The channel has no buffer for that CPU.
    #[error("no such CPU buffer: {0}")]
    NoSuchCpu(u32),
    /// [`Consumer::take_in_place`] on an overwrite-mode channel.
    #[error("packets are taken in place only in discard mode")]
    NotInPlace,
}

/// Information about one packet handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// CPU buffer the packet came from.
    pub cpu: u32,
    /// The packet header as validated.
    pub header: PacketHeader,
    /// Bytes of header + records (the rest is padding).
    pub content_len: usize,
    /// Packets overwritten (overwrite mode) just before this one.
    pub overwritten_before: u64,
}

/// A complete sub-buffer taken in place by [`Consumer::take_in_place`]; give it back with
/// [`Consumer::release`] (dropping it without release leaves the sub-buffer taken: the
/// writers of that CPU then lose events as "full").
#[derive(Debug)]
pub struct InPlacePacket {
    /// CPU, checked header and content length.
    pub info: PacketInfo,
    /// The consumer's copy of the packet header bytes (the ones checked).
    pub header_bytes: [u8; PACKET_HEADER_SIZE as usize],
    data: *mut u8,
    memfd_offset: u64,
    pos: u64,
    next: u64,
}

impl InPlacePacket {
    /// Address of the packet's first byte in the consumer's mapping; `info.content_len`
    /// bytes from it are the packet's content. Shared memory: the traced program may still
    /// write it, so read it only as raw bytes (hand it to the kernel, or copy it), never as a
    /// Rust reference, and check what you read.
    pub fn as_ptr(&self) -> *const u8 {
        self.data
    }

    /// Offset of the packet's first byte in the channel's memfd ([`Channel::fd`]).
    pub fn memfd_offset(&self) -> u64 {
        self.memfd_offset
    }
}

/// One record parsed out of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Timestamp in clock ticks.
    pub timestamp: u64,
    /// Event id (or a reserved id: discarded or pending record).
    pub id: u32,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// Byte offset of the record in its packet.
    pub offset: usize,
}

/// Iterate over the records of a packet copied out by the consumer (the `faultline_wire` walk);
/// an inconsistent record chain yields one `Err` and stops. Padding records (reservations
/// dropped uncommitted by their writer) and pending ones are skipped.
pub fn records(
    packet: &[u8],
    content_len: usize,
) -> impl Iterator<Item = Result<Record<'_>, String>> + '_ {
    let content = &packet[..content_len.min(packet.len())];
    faultline_wire::Records::new(content).filter_map(|r| match r {
        Ok(r) if r.id == DISCARDED_RECORD_ID || r.id == PENDING_RECORD_ID => None,
        Ok(r) => Some(Ok(Record {
            timestamp: r.timestamp,
            id: r.id,
            payload: r.payload,
            offset: r.offset,
        })),
        Err((at, what)) => Some(Err(format!("record at byte {at}: {what}"))),
    })
}

/// The single consumer of a channel.
pub struct Consumer<'a> {
    chan: &'a Channel,
}

impl<'a> Consumer<'a> {
    /// There must be at most one consumer per channel at a time.
    pub fn new(chan: &'a Channel) -> Self {
        Consumer { chan }
    }

    /// The channel consumed.
    pub fn channel(&self) -> &'a Channel {
        self.chan
    }

    /// CPUs whose buffers have been used.
    pub fn active_cpus(&self) -> Vec<u32> {
        (0..self.chan.geo.num_cpus)
            .filter(|&c| self.chan.is_active(c))
            .collect()
    }

    /// Whether `cpu` has a complete sub-buffer ready (cheap check, no copy).
    pub fn ready(&self, cpu: u32) -> bool {
        let g = &self.chan.geo;
        if cpu >= g.num_cpus {
            return false;
        }
        let c = self.chan.buf(cpu).consumed.load(Ordering::Relaxed);
        self.chan.commit_sum(cpu, g.idx(c)) >= g.complete(c)
    }

    /// How many consecutive sub-buffers of `cpu` are complete from `consumed` on, counting up
    /// to `max`: a hint for [`Consumer::wait_for`] (nothing is taken or checked beyond the
    /// positions and counters it reads, which may be garbage: a value out of range ends the
    /// count, and taking the sub-buffers reports it).
    pub fn ready_run(&self, cpu: u32, max: u32) -> u32 {
        let g = &self.chan.geo;
        if cpu >= g.num_cpus {
            return 0;
        }
        let b = self.chan.buf(cpu);
        let c = b.consumed.load(Ordering::Relaxed);
        // Acquire: pairs with writers' offset stores, as in take_at.
        let w = b.write_offset.load(Ordering::Acquire);
        let mut n = 0;
        let mut pos = c;
        while n < max && pos < w && w < MAX_POSITION {
            if self.chan.commit_sum(cpu, g.idx(pos)) < g.complete(pos) {
                break;
            }
            n += 1;
            match pos.checked_add(g.subbuf_size) {
                Some(p) => pos = p,
                None => break,
            }
        }
        n
    }

    /// Take the next complete sub-buffer of `cpu`: copy it into `out` (resized to the
    /// sub-buffer size), release it to the writers, and describe it. `Ok(None)` when nothing is
    /// complete yet.
    pub fn next_packet(
        &self,
        cpu: u32,
        out: &mut Vec<u8>,
    ) -> Result<Option<PacketInfo>, ReadError> {
        let g = &self.chan.geo;
        if cpu >= g.num_cpus {
            return Err(ReadError::NoSuchCpu(cpu));
        }
        let b = self.chan.buf(cpu);
        let corrupt = |what: String| ReadError::Corrupt { cpu, what };
        let mut overwritten = 0u64;
        // Bounded: each retry means writers lapped us; give up for now after a few.
        for _ in 0..64 {
            let mut c = b.consumed.load(Ordering::Relaxed);
            if c & g.sb_mask != 0 {
                return Err(corrupt(format!(
                    "consumed position {c:#x} not at a sub-buffer boundary"
                )));
            }
            // Acquire: pairs with writers' offset stores (rseq commit / CAS), so that what we
            // read of a reservation's sub-buffer is at least as new as the reservation.
            let w = b.write_offset.load(Ordering::Acquire);
            if w >= MAX_POSITION {
                return Err(corrupt(format!(
                    "write offset {w:#x} beyond any real position"
                )));
            }
            if w < c {
                return Err(corrupt(format!(
                    "write offset {w:#x} behind consumed position {c:#x}"
                )));
            }
            if w - c > g.buf_size {
                if g.mode == Mode::Discard {
                    return Err(corrupt(format!(
                        "write offset {w:#x} more than a buffer ahead of consumed {c:#x}"
                    )));
                }
                // Lapped: skip to the oldest sub-buffer that can still be intact.
                let nc = (w - g.buf_size)
                    .checked_next_multiple_of(g.subbuf_size)
                    .ok_or_else(|| corrupt(format!("write offset {w:#x} out of range")))?;
                let skipped = (nc - c) / g.subbuf_size;
                overwritten += skipped;
                b.overwritten_packets.fetch_add(skipped, Ordering::Relaxed);
                // Release: pairs with writers' acquire load of `consumed` (discard mode only;
                // harmless here).
                b.consumed.store(nc, Ordering::Release);
                c = nc;
            }
            let idx = g.idx(c);
            let sum = self.chan.commit_sum(cpu, idx);
            let complete = g.complete(c);
            if sum < complete {
                return Ok(None);
            }
            if sum > complete {
                if g.mode == Mode::Discard {
                    return Err(corrupt(format!(
                        "sub-buffer {idx} commit count {sum} beyond its lap ({complete})"
                    )));
                }
                continue; // being overwritten; re-read the write offset
            }
            out.resize(g.subbuf_size as usize, 0);
            let src = self.chan.data_ptr(cpu, c);
            // SAFETY: src..src+subbuf_size is one sub-buffer inside the mapping (masked
            // position, sub-buffer aligned). In discard mode no writer touches it until we
            // advance `consumed`; in overwrite mode a concurrent writer may be rewriting it —
            // a seqlock-style read whose result is discarded below if the write offset shows
            // the sub-buffer was re-entered.
            unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), g.subbuf_size as usize) };
            // Acquire fence: orders the copy before the re-read of write_offset; pairs with the
            // writers' release fence between their reservation and their stores into it.
            fence(Ordering::Acquire);
            // c <= w < MAX_POSITION, so neither sum can overflow; checked anyway (module docs).
            let lap_end = c
                .checked_add(g.buf_size)
                .ok_or_else(|| corrupt(format!("consumed position {c:#x} out of range")))?;
            let next = c
                .checked_add(g.subbuf_size)
                .ok_or_else(|| corrupt(format!("consumed position {c:#x} out of range")))?;
            if g.mode == Mode::Overwrite {
                let w2 = b.write_offset.load(Ordering::Relaxed);
                if w2 > lap_end {
                    continue;
                }
            }
            let header =
                PacketHeader::parse_slice(out).ok_or_else(|| corrupt("short packet".into()))?;
            let seq = c / g.subbuf_size;
            let content_len = self.check_header(cpu, seq, &header)?;
            if let Some(Err(e)) = records(out, content_len).find(|r| r.is_err()) {
                return Err(corrupt(format!("packet {seq}: {e}")));
            }
            // Release: our reads of the sub-buffer happen before writers may reuse it (they
            // acquire-load `consumed`).
            b.consumed.store(next, Ordering::Release);
            return Ok(Some(PacketInfo {
                cpu,
                header,
                content_len,
                overwritten_before: overwritten,
            }));
        }
        Ok(None)
    }

    /// Check a packet header taken at sub-buffer sequence `seq` (magic, sequence number, CPU,
    /// content size within the sub-buffer); returns the content length in bytes.
    fn check_header(&self, cpu: u32, seq: u64, header: &PacketHeader) -> Result<usize, ReadError> {
        let g = &self.chan.geo;
        let corrupt = |what: String| ReadError::Corrupt { cpu, what };
        if header.magic != PACKET_MAGIC {
            return Err(corrupt(format!(
                "packet {seq}: bad magic {:#x}",
                header.magic
            )));
        }
        if header.packet_seq_num != seq || header.cpu_id != cpu {
            return Err(corrupt(format!(
                "packet {seq}: header says sequence {} CPU {}",
                header.packet_seq_num, header.cpu_id
            )));
        }
        let content_bits = header.content_size;
        if !content_bits.is_multiple_of(8)
            || content_bits < PACKET_HEADER_SIZE * 8
            || content_bits >= g.subbuf_size * 8
        {
            return Err(corrupt(format!(
                "packet {seq}: content size {content_bits} bits out of range"
            )));
        }
        Ok((content_bits / 8) as usize)
    }

    /// Take the next complete sub-buffer of `cpu` **in place** (discard mode only; module
    /// docs, "In place"): nothing is copied but the 128-byte packet header, which is checked
    /// like [`Consumer::next_packet`] checks it; the record chain is not walked. The
    /// sub-buffer stays the consumer's (writers cannot reuse it) until
    /// [`Consumer::release`]. `Ok(None)` when nothing is complete yet. In overwrite mode this
    /// returns [`ReadError::NotInPlace`]: use [`Consumer::next_packet`], whose copy and
    /// re-check are what make an overwritten sub-buffer detectable.
    pub fn take_in_place(&self, cpu: u32) -> Result<Option<InPlacePacket>, ReadError> {
        let g = &self.chan.geo;
        if cpu >= g.num_cpus {
            return Err(ReadError::NoSuchCpu(cpu));
        }
        if g.mode != Mode::Discard {
            return Err(ReadError::NotInPlace);
        }
        let b = self.chan.buf(cpu);
        let c = b.consumed.load(Ordering::Relaxed);
        self.take_at(cpu, c, None)
    }

    /// Take the complete sub-buffer that follows `prev` (taken in place and not released yet)
    /// in place too, so that several consecutive sub-buffers can be written at once: the same
    /// checks as [`Consumer::take_in_place`]. Release them in the order they were taken.
    pub fn take_in_place_after(
        &self,
        prev: &InPlacePacket,
    ) -> Result<Option<InPlacePacket>, ReadError> {
        let cpu = prev.info.cpu;
        if cpu >= self.chan.geo.num_cpus {
            return Err(ReadError::NoSuchCpu(cpu));
        }
        if self.chan.geo.mode != Mode::Discard {
            return Err(ReadError::NotInPlace);
        }
        self.take_at(cpu, prev.next, Some(prev.pos))
    }

    /// [`Consumer::take_in_place`] of the sub-buffer at position `c`: `consumed`, or the one
    /// after the sub-buffer at `held` (still taken, so `consumed == held`).
    fn take_at(
        &self,
        cpu: u32,
        c: u64,
        held: Option<u64>,
    ) -> Result<Option<InPlacePacket>, ReadError> {
        let g = &self.chan.geo;
        let b = self.chan.buf(cpu);
        let corrupt = |what: String| ReadError::Corrupt { cpu, what };
        if c & g.sb_mask != 0 {
            return Err(corrupt(format!(
                "consumed position {c:#x} not at a sub-buffer boundary"
            )));
        }
        // Acquire: pairs with writers' offset stores, as in next_packet.
        let w = b.write_offset.load(Ordering::Acquire);
        if w >= MAX_POSITION {
            return Err(corrupt(format!(
                "write offset {w:#x} beyond any real position"
            )));
        }
        if let Some(h) = held {
            // Our own positions: `c` is one sub-buffer after the one we hold. Writers may not
            // have reached it yet (nothing to take); they cannot be a whole buffer past the
            // held one (discard mode: it is not released).
            if w <= c {
                return Ok(None);
            }
            if w - h > g.buf_size {
                return Err(corrupt(format!(
                    "write offset {w:#x} more than a buffer ahead of consumed {h:#x}"
                )));
            }
        }
        if w < c {
            return Err(corrupt(format!(
                "write offset {w:#x} behind consumed position {c:#x}"
            )));
        }
        if w - c > g.buf_size {
            return Err(corrupt(format!(
                "write offset {w:#x} more than a buffer ahead of consumed {c:#x}"
            )));
        }
        let idx = g.idx(c);
        // Acquire (inside commit_sum): pairs with the committers' release, so every byte the
        // commit sum covers is visible to the reads below and to the kernel's copy.
        let sum = self.chan.commit_sum(cpu, idx);
        let complete = g.complete(c);
        if sum < complete {
            return Ok(None);
        }
        if sum > complete {
            return Err(corrupt(format!(
                "sub-buffer {idx} commit count {sum} beyond its lap ({complete})"
            )));
        }
        // c <= w < MAX_POSITION: cannot overflow; checked anyway (module docs).
        let next = c
            .checked_add(g.subbuf_size)
            .ok_or_else(|| corrupt(format!("consumed position {c:#x} out of range")))?;
        let src = self.chan.data_ptr(cpu, c);
        let mut hdr = [0u8; PACKET_HEADER_SIZE as usize];
        // SAFETY: src..src+128 lies inside one sub-buffer of the mapping (masked position,
        // sub-buffer aligned, sub-buffers >= 256 bytes). Discard mode: no writer touches the
        // sub-buffer before we advance `consumed` (a hostile program may, which only gives us
        // garbage to check: the copy is ours from here on).
        unsafe { std::ptr::copy_nonoverlapping(src, hdr.as_mut_ptr(), hdr.len()) };
        let header = PacketHeader::parse(&hdr);
        let content_len = self.check_header(cpu, c / g.subbuf_size, &header)?;
        Ok(Some(InPlacePacket {
            info: PacketInfo {
                cpu,
                header,
                content_len,
                overwritten_before: 0,
            },
            header_bytes: hdr,
            data: src,
            memfd_offset: self.chan.data_offset(cpu, c),
            pos: c,
            next,
        }))
    }

    /// Hand a packet taken with [`Consumer::take_in_place`] back to the writers: `consumed`
    /// moves past it. Its bytes are left as they are (nothing is zeroed: module docs).
    pub fn release(&self, p: InPlacePacket) {
        let b = self.chan.buf(p.info.cpu);
        debug_assert_eq!(b.consumed.load(Ordering::Relaxed), p.pos);
        // Release: our reads of the sub-buffer (and the kernel's, which returned before this
        // call) happen before writers may reuse it (they acquire-load `consumed`).
        b.consumed.store(p.next, Ordering::Release);
    }

    /// Sleep until a writer delivers a sub-buffer or `timeout` passes. Returns early if one is
    /// already ready on any active CPU.
    pub fn wait(&self, timeout: Duration) {
        self.wait_for(timeout, |cpu| self.ready(cpu))
    }

    /// [`Consumer::wait`] with the caller's idea of an active buffer worth waking for
    /// (`enough(cpu)`, e.g. [`Consumer::ready_run`] reaching a count): returns early if it
    /// already holds for one, otherwise sleeps until a writer delivers a sub-buffer (any: the
    /// caller checks again and waits again) or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, enough: impl Fn(u32) -> bool) {
        let h = self.chan.header();
        // Acquire: pairs with the deliverer's release increment.
        let seq = h.wake_seq.load(Ordering::Acquire);
        h.consumer_waiting.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the deliverer's fence between its counter update and its
        // load of consumer_waiting (see Channel::deliver).
        fence(Ordering::SeqCst);
        if !self.active_cpus().into_iter().any(enough) {
            futex_wait(&h.wake_seq, seq, timeout);
        }
        h.consumer_waiting.store(0, Ordering::Relaxed);
    }
}
