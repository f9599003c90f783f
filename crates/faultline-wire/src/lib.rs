//! faultline's wire format, defined once: the bytes of a packet (a ring-buffer sub-buffer, and
//! a packet of a CTF stream file, which is the same thing truncated to its content), the record
//! header, the reserved record ids and the record-chain walk. The ring buffer (writer, consumer,
//! dead-writer recovery), the trace writer and the trace readers all use this crate; none of
//! them parses a header on its own.
//!
//! Everything is little-endian; offsets are bytes from the start of the packet.
//!
//! # Packet header (128 bytes)
//! CTF `trace.packet.header` is bytes 0..24, `stream.packet.context` bytes 24..128
//! ([`PacketHeader`], offsets in [`off`]):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u32 | `magic` = [`PACKET_MAGIC`] |
//! | 4 | 16 | `uuid` (trace UUID) |
//! | 20 | u32 | `stream_id` = 0 (single stream class) |
//! | 24 | u64 | `timestamp_begin` (clock ticks; the first record's timestamp) |
//! | 32 | u64 | `timestamp_end` (clock ticks; when the packet was closed) |
//! | 40 | u64 | `content_size` (**bits**, includes the 128-byte header) |
//! | 48 | u64 | `packet_size` (**bits**) |
//! | 56 | u64 | `packet_seq_num` (per CPU, 0, 1, 2, ...; a gap means lost packets) |
//! | 64 | u64 | `events_discarded` (cumulative = `lost_full + lost_stalled + lost_too_big`) |
//! | 72 | u32 | `cpu_id` |
//! | 76 | u32 | `flags` (0, reserved) |
//! | 80 | u64 | `lost_full` (cumulative) |
//! | 88 | u64 | `lost_stalled` (cumulative) |
//! | 96 | u64 | `lost_too_big` (cumulative) |
//! | 104 | u64 | `remote_commits` (cumulative) |
//! | 112 | 2 x u64 | reserved (zero) |
//!
//! # Records
//! Records follow at byte 128, back to back: a record starts at the byte where the previous
//! one ends ([`RECORD_ALIGN`] is 1). A record is a header of one of three forms, then its
//! payload. The first byte's low 5 bits are the **tag**; the form is chosen per record by the
//! writer:
//!
//! Every form ends with the record's **length** `len` (payload bytes): a u16, or, when the
//! payload has [`LONG_LEN`] (65535) bytes or more, the u16 65535 followed by the u32 length
//! ([`LONG_LEN_EXTRA`] more bytes). Writers use the long form only for payloads of
//! [`LONG_LEN`] bytes or more (always with the extended header), and at most [`MAX_PAYLOAD`].
//!
//! **Compact** (tag 0..=[`MAX_COMPACT_ID`], and [`PENDING_TAG`]), 6 bytes:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u32 | `tag` (bits 0..5) = event id, `timestamp` low 27 bits (bits 5..32) |
//! | 4 | u16 | `len` = **payload** bytes (at most [`MAX_COMPACT_PAYLOAD`]) |
//! | 6 | len | payload |
//!
//! **Compact padding** (tag [`PADDING_TAG`]), 10 bytes: the same 32-bit word, then the u32 id
//! [`PADDING_ID`] at 4, `len` (u16, at most [`MAX_PADDING_PAYLOAD`]) at 8, `len` zero bytes
//! from 10.
//!
//! **Extended** (tag [`EXTENDED_TAG`]; byte 0 is exactly 31), 15 bytes (19 with a long
//! length):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u8 | 31 |
//! | 1 | u32 | `id` (any id, reserved ones included) |
//! | 5 | u64 | `timestamp` (clock ticks, all 64 bits) |
//! | 13 | u16 | `len` (65535: the u32 length follows) |
//! | (15 | u32 | `len`, long form only) |
//! | 15 (19) | len | payload |
//!
//! A compact timestamp holds the low 27 bits of the full one; the full value is rebuilt from
//! the previous record's timestamp `prev` (the packet's `timestamp_begin` for the first
//! record), as CTF readers do for any integer mapped to a clock narrower than 64 bits: take
//! `prev` with its low 27 bits replaced, and add 2^27 when that is below `prev`
//! ([`rebuild_timestamp`]). It is exact when `prev <= timestamp < prev + 2^27`, so a writer
//! may use the compact form only then ([`compact_fits`]); otherwise (a gap of 2^27 ticks, an
//! event id above [`MAX_COMPACT_ID`], a payload below [`MIN_COMPACT_PAYLOAD`] or above
//! [`MAX_COMPACT_PAYLOAD`] bytes, or a writer that cannot prove the order, see the ring
//! buffer) it writes the extended form. Records that need none of that cost 6 header bytes
//! instead of 15: a record with one u64 is 14 bytes, a u64 + 32-byte string (33 with its NUL)
//! 47 — LTTng-UST's compact record for the same events (4-byte header) plus the length.
//!
//! The next record starts at `start + header + len`. `content_size / 8` is exactly the end of
//! the last record's payload, or 128 for an empty packet; bytes between `content_size` and
//! `packet_size` are padding. The walk ([`record_at`], [`Records`]) checks that the chain ends
//! exactly at the content end and that every record lies inside it.
//!
//! ## Why this layout
//! * **Byte-aligned records.** With records starting at multiples of 8, the u64 record cost
//!   16 bytes and the string record 48 whatever the header: the alignment bytes were as large
//!   as what a smaller header saves. LTTng's compact records are not aligned either. Nothing
//!   needs the alignment: payload fields are packed (every CTF type of a payload is
//!   byte-aligned), every header read is a byte copy (`get_u32`...), and the stores into
//!   headers — the writer's header store after its reservation, the commit's store of the
//!   real tag or id over the pending one, recovery's rewrites — are plain unaligned stores
//!   into memory their writer owns, published by the commit counter's release (no atomic
//!   access to a record byte exists, so nothing requires a naturally aligned address).
//! * **A length in every record.** It is what lets the ring buffer's dead-writer recovery, the
//!   trace writer's and the consumer's bounds checks and every reader step over any record
//!   without the schema (and over padding records, which have none).
//! * **16 bits, with an escape.** Events are small: 2 bytes of length cover them, and the
//!   rare payload of 64 KiB or more (up to [`MAX_PAYLOAD`], as before) pays 4 more bytes.
//!   The length is the same field in every form, after the header — in the CTF metadata it is
//!   `stream.event.context`, the one place a field can follow every header form (a
//!   babeltrace2 variant tag cannot name the header's tag from the context, and babeltrace2
//!   warns about any event-header field other than `id` and `timestamp`) — so the padding
//!   class's payload (a text sequence of `stream.event.context.len` bytes) refers to one field
//!   whatever the form. A padding record therefore never holds more than
//!   [`MAX_PADDING_PAYLOAD`] bytes (below the escape): writers cover a longer span with a
//!   chain of them ([`fill_padding`]).
//! * Not taken: no length for event classes of fixed size (2 more bytes saved) — recovery and
//!   the readers would then need the schema to step over a record, and a record damaged in
//!   shared memory could no longer be bounded on its own.
//!
//! In the CTF metadata the header is LTTng's compact/extended scheme: `stream.event.header` is
//! `struct { enum : uint5 { compact = 0 ... 29, padding = 30, extended = 31 } id; variant <id>
//! { struct { uint27 timestamp; } compact; struct { uint27 timestamp; uint32 id; } padding;
//! struct { uint32 id; uint64 timestamp; } extended; } v; } align(8)` (timestamps mapped to the
//! clock; the padding option's `id` is bit-aligned — an `align(8)` member would align the whole
//! option struct to a byte and move its timestamp to byte 1 — the extended one's
//! byte-aligned), and `stream.event.context` is `struct { enum : uint16 { small = 0 ...
//! 65534, large = 65535 } len; variant <len> { struct { } small; struct { uint32 len; } large;
//! } v; }` (byte-aligned). A CTF reader takes the event id from the last `id` integer it
//! decoded, so tag 30 reads as the padding class's id and tag 31 as the extended id.
//!
//! Traces written before this format are refused by faultline's strict reader with an error
//! that says so: the 8-byte aligned records with a 7-byte compact header and a u24 length
//! (layout 2), and the 16-byte header of u64 timestamp, u32 id, u32 len at every record
//! (layout 1). The general CTF reader and babeltrace2 still read them through their metadata.
//!
//! # Reserved record ids
//! * [`PADDING_ID`]: a **padding record** — a reservation abandoned or discarded by its writer
//!   (dropped without commit, a prefault-restart retry, a record re-reserved at another size),
//!   or an uncommitted one completed by dead-writer recovery. Written in place of the record
//!   it replaces, with the same timestamp ([`fill_padding`]): a compact record becomes compact
//!   padding (tag [`PADDING_TAG`]: the 4 bytes of the compact payload's start hold the id), an
//!   extended one an extended record with the padding id — several of them, back to back, when
//!   the span is longer than one padding record holds ([`MAX_PADDING_PAYLOAD`]). Its payload is
//!   `len` bytes of zeros (the writer or recovery zeroes them). Every reader skips it. In the
//!   CTF metadata it is the event class [`PADDING_EVENT_NAME`] whose payload is one text
//!   sequence of `stream.event.context.len` bytes, so babeltrace2 and any CTF reader step over
//!   it too (they show it as an event with an empty string).
//! * [`PENDING_ID`]: a reservation not committed (yet). A compact reservation is written with
//!   tag [`PENDING_TAG`], an extended one with this id; the writer stores the real tag/id just
//!   before its commit, and a record still reading pending after its writer died is turned into
//!   a padding record by recovery. A complete packet never holds one; readers reject it.
//!
//! Event ids are assigned by the tracepoint registry from 0 up; the reserved ids are the two
//! largest `u32` values, which no registry reaches.

/// `magic` of every packet (the CTF magic number).
pub const PACKET_MAGIC: u32 = 0xC1FC_1FC1;
/// Size of the packet header + context; the first record starts here.
pub const PACKET_HEADER_SIZE: usize = 128;
/// Size of the largest record header (the extended form with a long length); a payload is at
/// most this many bytes after its record's start.
pub const RECORD_HEADER_SIZE: usize = EXTENDED_HEADER_SIZE + LONG_LEN_EXTRA;
/// Size of the extended record header (tag, id, 64-bit timestamp, u16 payload length); 4 more
/// with a long length ([`LONG_LEN_EXTRA`]).
pub const EXTENDED_HEADER_SIZE: usize = 15;
/// The u16 length value that says the u32 length follows (module docs); payloads of this
/// many bytes or more have a long length.
pub const LONG_LEN: usize = u16::MAX as usize;
/// Bytes a long length adds to a header (the u32 after the u16 [`LONG_LEN`]).
pub const LONG_LEN_EXTRA: usize = 4;
/// Size of the compact record header (tag and 27 timestamp bits, payload length).
pub const COMPACT_HEADER_SIZE: usize = 6;
/// Size of the compact padding header (tag and 27 timestamp bits, id, payload length).
pub const COMPACT_PADDING_HEADER_SIZE: usize = 10;
/// Largest event id a compact header holds (tags 29..=31 have other meanings).
pub const MAX_COMPACT_ID: u32 = 28;
/// Tag of a compact reservation not committed yet ([`PENDING_ID`]).
pub const PENDING_TAG: u32 = 29;
/// Tag of a compact padding record ([`PADDING_ID`]).
pub const PADDING_TAG: u32 = 30;
/// Tag of an extended record header.
pub const EXTENDED_TAG: u32 = 31;
/// Bits of the timestamp in a compact header.
pub const COMPACT_TS_BITS: u32 = 27;
/// A compact timestamp is exact when the record's timestamp is below the previous one plus
/// this many ticks.
pub const COMPACT_TS_WINDOW: u64 = 1 << COMPACT_TS_BITS;
/// Smallest payload a compact record may have: room for the padding id when it is discarded.
pub const MIN_COMPACT_PAYLOAD: usize = COMPACT_PADDING_HEADER_SIZE - COMPACT_HEADER_SIZE;
/// Largest payload of a compact record (a short length).
pub const MAX_COMPACT_PAYLOAD: usize = LONG_LEN - 1;
/// Largest payload of one padding record, in either form: CTF readers step over a padding
/// record by `stream.event.context.len`, the u16, so its length is never long.
pub const MAX_PADDING_PAYLOAD: usize = LONG_LEN - 1;
/// Largest payload of any record (as in earlier layouts; sub-buffers are at most 1 GiB).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Records start at multiples of this (relative to the packet start): 1, records are packed
/// (module docs, "Why this layout").
pub const RECORD_ALIGN: usize = 1;
/// Packets on disk and in the relay are their content rounded up to a multiple of this.
pub const PACKET_ALIGN: usize = 8;

/// Record id of a padding record (module docs): every reader skips it.
pub const PADDING_ID: u32 = u32::MAX;
/// Record id of a reservation not committed yet (module docs); never in a complete packet.
pub const PENDING_ID: u32 = u32::MAX - 1;
/// Provider of the padding event class in the CTF metadata.
pub const PADDING_PROVIDER: &str = "faultline";
/// Name (within [`PADDING_PROVIDER`]) of the padding event class.
pub const PADDING_NAME: &str = "padding";
/// `provider:name` of the padding event class in the CTF metadata.
pub const PADDING_EVENT_NAME: &str = "faultline:padding";

/// Whether `id` is one of the reserved record ids ([`PADDING_ID`], [`PENDING_ID`]), which no
/// event may use.
pub const fn is_reserved_id(id: u32) -> bool {
    id >= PENDING_ID
}

/// Byte offsets of the packet header fields.
pub mod off {
    /// `magic` (u32).
    pub const MAGIC: usize = 0;
    /// `uuid` (16 bytes).
    pub const UUID: usize = 4;
    /// `stream_id` (u32).
    pub const STREAM_ID: usize = 20;
    /// `timestamp_begin` (u64).
    pub const TIMESTAMP_BEGIN: usize = 24;
    /// `timestamp_end` (u64).
    pub const TIMESTAMP_END: usize = 32;
    /// `content_size` in bits (u64).
    pub const CONTENT_SIZE: usize = 40;
    /// `packet_size` in bits (u64).
    pub const PACKET_SIZE: usize = 48;
    /// `packet_seq_num` (u64).
    pub const PACKET_SEQ_NUM: usize = 56;
    /// `events_discarded` (u64, cumulative).
    pub const EVENTS_DISCARDED: usize = 64;
    /// `cpu_id` (u32).
    pub const CPU_ID: usize = 72;
    /// `flags` (u32).
    pub const FLAGS: usize = 76;
    /// `lost_full` (u64, cumulative).
    pub const LOST_FULL: usize = 80;
    /// `lost_stalled` (u64, cumulative).
    pub const LOST_STALLED: usize = 88;
    /// `lost_too_big` (u64, cumulative).
    pub const LOST_TOO_BIG: usize = 96;
    /// `remote_commits` (u64, cumulative).
    pub const REMOTE_COMMITS: usize = 104;
    /// Two reserved u64 words.
    pub const RESERVED: usize = 112;
}

/// The packet header. `#[repr(C)]` with the offsets of the module docs (asserted), so the ring
/// buffer writes its fields in place; decode copies with [`PacketHeader::parse`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// [`PACKET_MAGIC`].
    pub magic: u32,
    /// Trace UUID.
    pub uuid: [u8; 16],
    /// CTF stream id (always 0: one stream class).
    pub stream_id: u32,
    /// Timestamp of the first record (written by the writer that opened the sub-buffer).
    pub timestamp_begin: u64,
    /// Timestamp when the sub-buffer was closed (written by the writer that closed it).
    pub timestamp_end: u64,
    /// Bits, header included.
    pub content_size: u64,
    /// Bits.
    pub packet_size: u64,
    /// Sequence number of the packet on its CPU (its lap number; gaps are lost packets).
    pub packet_seq_num: u64,
    /// Cumulative on this CPU: lost_full + lost_stalled + lost_too_big.
    pub events_discarded: u64,
    /// CPU buffer the packet comes from.
    pub cpu_id: u32,
    /// Packet flags (reserved, zero).
    pub flags: u32,
    /// Cumulative on this CPU: events lost because the buffer was full.
    pub lost_full: u64,
    /// Cumulative on this CPU: events lost to a stalled writer.
    pub lost_stalled: u64,
    /// Cumulative on this CPU: events larger than a sub-buffer.
    pub lost_too_big: u64,
    /// Cumulative on this CPU: REMOTE commits (a writer migrated between reserve and commit)
    /// counted by the time the packet was closed (0 in traces written before the field
    /// existed).
    pub remote_commits: u64,
    /// Reserved, zero.
    pub reserved: [u64; 2],
}
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<PacketHeader>() == PACKET_HEADER_SIZE);
    assert!(offset_of!(PacketHeader, uuid) == off::UUID);
    assert!(offset_of!(PacketHeader, stream_id) == off::STREAM_ID);
    assert!(offset_of!(PacketHeader, timestamp_begin) == off::TIMESTAMP_BEGIN);
    assert!(offset_of!(PacketHeader, timestamp_end) == off::TIMESTAMP_END);
    assert!(offset_of!(PacketHeader, content_size) == off::CONTENT_SIZE);
    assert!(offset_of!(PacketHeader, packet_size) == off::PACKET_SIZE);
    assert!(offset_of!(PacketHeader, packet_seq_num) == off::PACKET_SEQ_NUM);
    assert!(offset_of!(PacketHeader, events_discarded) == off::EVENTS_DISCARDED);
    assert!(offset_of!(PacketHeader, cpu_id) == off::CPU_ID);
    assert!(offset_of!(PacketHeader, flags) == off::FLAGS);
    assert!(offset_of!(PacketHeader, lost_full) == off::LOST_FULL);
    assert!(offset_of!(PacketHeader, lost_stalled) == off::LOST_STALLED);
    assert!(offset_of!(PacketHeader, lost_too_big) == off::LOST_TOO_BIG);
    assert!(offset_of!(PacketHeader, remote_commits) == off::REMOTE_COMMITS);
    assert!(offset_of!(PacketHeader, reserved) == off::RESERVED);
};

/// Read a little-endian u32 at `at` of `b`, `None` when out of bounds.
pub fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(s);
    Some(u32::from_le_bytes(w))
}

/// Read a little-endian u64 at `at` of `b`, `None` when out of bounds.
pub fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

impl PacketHeader {
    /// Decode the header (no validation; see [`check_header`]).
    pub fn parse(b: &[u8; PACKET_HEADER_SIZE]) -> Self {
        // In bounds: every offset + size <= 128.
        let u32_at = |o: usize| get_u32(b, o).unwrap_or(0);
        let u64_at = |o: usize| get_u64(b, o).unwrap_or(0);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[off::UUID..off::UUID + 16]);
        PacketHeader {
            magic: u32_at(off::MAGIC),
            uuid,
            stream_id: u32_at(off::STREAM_ID),
            timestamp_begin: u64_at(off::TIMESTAMP_BEGIN),
            timestamp_end: u64_at(off::TIMESTAMP_END),
            content_size: u64_at(off::CONTENT_SIZE),
            packet_size: u64_at(off::PACKET_SIZE),
            packet_seq_num: u64_at(off::PACKET_SEQ_NUM),
            events_discarded: u64_at(off::EVENTS_DISCARDED),
            cpu_id: u32_at(off::CPU_ID),
            flags: u32_at(off::FLAGS),
            lost_full: u64_at(off::LOST_FULL),
            lost_stalled: u64_at(off::LOST_STALLED),
            lost_too_big: u64_at(off::LOST_TOO_BIG),
            remote_commits: u64_at(off::REMOTE_COMMITS),
            reserved: [u64_at(off::RESERVED), u64_at(off::RESERVED + 8)],
        }
    }

    /// Decode the header from the first 128 bytes of `b`, `None` when `b` is shorter.
    pub fn parse_slice(b: &[u8]) -> Option<Self> {
        let h: &[u8; PACKET_HEADER_SIZE] = b.get(..PACKET_HEADER_SIZE)?.try_into().ok()?;
        Some(Self::parse(h))
    }

    /// Encode the header.
    pub fn encode(&self) -> [u8; PACKET_HEADER_SIZE] {
        let mut b = [0u8; PACKET_HEADER_SIZE];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(off::MAGIC, &self.magic.to_le_bytes());
        put(off::UUID, &self.uuid);
        put(off::STREAM_ID, &self.stream_id.to_le_bytes());
        put(off::TIMESTAMP_BEGIN, &self.timestamp_begin.to_le_bytes());
        put(off::TIMESTAMP_END, &self.timestamp_end.to_le_bytes());
        put(off::CONTENT_SIZE, &self.content_size.to_le_bytes());
        put(off::PACKET_SIZE, &self.packet_size.to_le_bytes());
        put(off::PACKET_SEQ_NUM, &self.packet_seq_num.to_le_bytes());
        put(off::EVENTS_DISCARDED, &self.events_discarded.to_le_bytes());
        put(off::CPU_ID, &self.cpu_id.to_le_bytes());
        put(off::FLAGS, &self.flags.to_le_bytes());
        put(off::LOST_FULL, &self.lost_full.to_le_bytes());
        put(off::LOST_STALLED, &self.lost_stalled.to_le_bytes());
        put(off::LOST_TOO_BIG, &self.lost_too_big.to_le_bytes());
        put(off::REMOTE_COMMITS, &self.remote_commits.to_le_bytes());
        for (i, r) in self.reserved.iter().enumerate() {
            put(off::RESERVED + 8 * i, &r.to_le_bytes());
        }
        b
    }

    /// `content_size` in bytes (meaningful after [`check_header`]).
    pub fn content_bytes(&self) -> u64 {
        self.content_size / 8
    }

    /// `packet_size` in bytes (meaningful after [`check_header`]).
    pub fn packet_bytes(&self) -> u64 {
        self.packet_size / 8
    }
}

/// A layout violation: byte offset relative to the packet start, and what is wrong.
pub type LayoutError = (u64, String);

/// Check the header fields that do not depend on context: magic, stream id, sizes.
/// `available` is how many bytes of the packet exist (in the caller's buffer or the file).
pub fn check_header(h: &PacketHeader, available: u64) -> Result<(), LayoutError> {
    if h.magic != PACKET_MAGIC {
        return Err((
            off::MAGIC as u64,
            format!(
                "bad magic {:#010x} (expected {PACKET_MAGIC:#010x})",
                h.magic
            ),
        ));
    }
    if h.stream_id != 0 {
        return Err((
            off::STREAM_ID as u64,
            format!("stream_id {} (expected 0)", h.stream_id),
        ));
    }
    if !h.content_size.is_multiple_of(8) || h.content_size < 8 * PACKET_HEADER_SIZE as u64 {
        return Err((
            off::CONTENT_SIZE as u64,
            format!(
                "content_size {} bits is not a whole number of bytes >= {}",
                h.content_size, PACKET_HEADER_SIZE
            ),
        ));
    }
    if !h.packet_size.is_multiple_of(8) {
        return Err((
            off::PACKET_SIZE as u64,
            format!(
                "packet_size {} bits is not a whole number of bytes",
                h.packet_size
            ),
        ));
    }
    if h.content_size > h.packet_size {
        return Err((
            off::CONTENT_SIZE as u64,
            format!(
                "content_size {} bits > packet_size {} bits",
                h.content_size, h.packet_size
            ),
        ));
    }
    if h.packet_bytes() > available {
        return Err((
            off::PACKET_SIZE as u64,
            format!(
                "packet_size {} bytes goes beyond the end of the data ({} bytes available)",
                h.packet_bytes(),
                available
            ),
        ));
    }
    Ok(())
}

/// Rebuild a full timestamp from its low 27 bits (a compact header) and the previous record's
/// timestamp `prev` (module docs). Wrapping: garbage never panics.
#[inline]
pub const fn rebuild_timestamp(prev: u64, low: u32) -> u64 {
    let mask = COMPACT_TS_WINDOW - 1;
    let low = low as u64 & mask;
    let t = (prev & !mask) | low;
    if low < prev & mask {
        t.wrapping_add(COMPACT_TS_WINDOW)
    } else {
        t
    }
}

/// Whether a record with this id, payload length and timestamp may use the compact header when
/// `floor` is at most the previous record's timestamp (module docs): `timestamp - floor <
/// 2^27` implies `timestamp - prev < 2^27`.
#[inline(always)]
pub const fn compact_fits(id: u32, payload_len: usize, floor: u64, timestamp: u64) -> bool {
    id <= MAX_COMPACT_ID
        && payload_len >= MIN_COMPACT_PAYLOAD
        && payload_len <= MAX_COMPACT_PAYLOAD
        && timestamp >= floor
        && timestamp - floor < COMPACT_TS_WINDOW
}

/// The first 32-bit word of a compact header: `tag | timestamp << 5`.
#[inline(always)]
pub const fn compact_word(tag: u32, timestamp: u64) -> u32 {
    (tag & 31) | (timestamp as u32) << 5
}

/// The first 8 bytes of a compact header as one little-endian word: the tag word, then `len`
/// (u16, at most [`MAX_COMPACT_PAYLOAD`]); the 7th and 8th bytes (the payload's first two,
/// written after it: a compact payload has at least [`MIN_COMPACT_PAYLOAD`] bytes) are zero.
#[inline(always)]
pub const fn compact_header_word(tag: u32, timestamp: u64, len: u32) -> u64 {
    compact_word(tag, timestamp) as u64 | ((len & 0xFFFF) as u64) << 32
}

/// The 15-byte extended header with a short length (`len` below [`LONG_LEN`]) as two
/// little-endian words that overlap by one byte: bytes 0..8 (tag, id, the timestamp's low 24
/// bits) and bytes 7..15 (the timestamp's bits 16..64, `len`). Both hold byte 7 (timestamp bits
/// 16..24), so they may be stored in either order.
#[inline(always)]
pub const fn extended_header_words(id: u32, timestamp: u64, len: u32) -> (u64, u64) {
    (
        EXTENDED_TAG as u64 | (id as u64) << 8 | (timestamp & 0xFF_FFFF) << 40,
        timestamp >> 16 | ((len & 0xFFFF) as u64) << 48,
    )
}

/// Offset of the second word of [`extended_header_words`].
pub const EXTENDED_SECOND_WORD: usize = 7;

/// The extended header for any length (15 bytes, 19 with a long length): the bytes and how
/// many of them are the header.
#[inline]
pub const fn extended_header_bytes(
    id: u32,
    timestamp: u64,
    len: u32,
) -> ([u8; RECORD_HEADER_SIZE], usize) {
    let long = len as usize >= LONG_LEN;
    let (w0, w1) = extended_header_words(id, timestamp, if long { LONG_LEN as u32 } else { len });
    let mut b = [0u8; RECORD_HEADER_SIZE];
    let (w0, w1, l) = (w0.to_le_bytes(), w1.to_le_bytes(), len.to_le_bytes());
    let mut i = 0;
    while i < 8 {
        b[i] = w0[i];
        b[EXTENDED_SECOND_WORD + i] = w1[i];
        if i < 4 {
            b[EXTENDED_HEADER_SIZE + i] = l[i];
        }
        i += 1;
    }
    (
        b,
        if long {
            RECORD_HEADER_SIZE
        } else {
            EXTENDED_HEADER_SIZE
        },
    )
}

/// Bytes of a record header of this form for a payload of `len` bytes (a long length from
/// [`LONG_LEN`] on).
#[inline(always)]
pub const fn header_size(form: HeaderForm, len: usize) -> usize {
    form.size() + if len >= LONG_LEN { LONG_LEN_EXTRA } else { 0 }
}

/// Bytes of an extended record (header and payload) with `len` payload bytes, saturating.
#[inline(always)]
pub const fn extended_record_len(len: u64) -> u64 {
    let h = EXTENDED_HEADER_SIZE as u64
        + if len >= LONG_LEN as u64 {
            LONG_LEN_EXTRA as u64
        } else {
            0
        };
    h.saturating_add(len)
}

/// Offset of the id in an extended header (a u32; the writer's commit stores the real id
/// there).
pub const EXTENDED_ID_OFFSET: usize = 1;

/// Which header a record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderForm {
    /// 6 bytes: 5-bit id, 27 timestamp bits, u16 length (pending: tag [`PENDING_TAG`]).
    Compact,
    /// 10 bytes: tag [`PADDING_TAG`], 27 timestamp bits, u32 id, u16 length.
    CompactPadding,
    /// 15 bytes: tag 31, u32 id, u64 timestamp, u16 length.
    Extended,
}

impl HeaderForm {
    /// Bytes of this header with a short length ([`header_size`] for any length).
    pub const fn size(self) -> usize {
        match self {
            HeaderForm::Compact => COMPACT_HEADER_SIZE,
            HeaderForm::CompactPadding => COMPACT_PADDING_HEADER_SIZE,
            HeaderForm::Extended => EXTENDED_HEADER_SIZE,
        }
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Full timestamp in clock ticks (rebuilt for the compact forms).
    pub timestamp: u64,
    /// Event id, or [`PADDING_ID`] / [`PENDING_ID`].
    pub id: u32,
    /// Payload bytes (the header not included).
    pub len: u32,
    /// The header's form.
    pub form: HeaderForm,
}

fn get_u16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(s[0] as u32 | (s[1] as u32) << 8)
}

/// The length field at `at` (module docs): the u16, or [`LONG_LEN`] then the u32, which must
/// be at least [`LONG_LEN`] (one encoding per length, so the header size follows from it).
fn get_len(b: &[u8], at: usize) -> Result<u32, String> {
    let short = || "record header crosses the end of the content".to_string();
    let lo = get_u16(b, at).ok_or_else(short)?;
    if lo as usize != LONG_LEN {
        return Ok(lo);
    }
    let len = get_u32(b, at + 2).ok_or_else(short)?;
    if (len as usize) < LONG_LEN {
        return Err(format!("long record length {len} below {LONG_LEN}"));
    }
    Ok(len)
}

/// Append the length field for `len` (module docs).
fn put_len(b: &mut Vec<u8>, len: u32) {
    if (len as usize) < LONG_LEN {
        b.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(LONG_LEN as u16).to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
    }
}

impl RecordHeader {
    /// Decode the header at `at` of `b`, the previous record's timestamp being `prev`; `Err`
    /// says what is wrong (it does not fit, a compact padding header without the padding id,
    /// a padding record longer than [`MAX_PADDING_PAYLOAD`], a long length below
    /// [`LONG_LEN`]).
    #[inline]
    pub fn parse_at(b: &[u8], at: usize, prev: u64) -> Result<RecordHeader, String> {
        let short = || "record header crosses the end of the content".to_string();
        let tag = *b.get(at).ok_or_else(short)? as u32 & 31;
        let h = Self::parse_fields(b, at, prev, tag)?;
        if h.id == PADDING_ID && h.len as usize > MAX_PADDING_PAYLOAD {
            return Err(format!(
                "padding record of {} payload bytes (at most {MAX_PADDING_PAYLOAD})",
                h.len
            ));
        }
        Ok(h)
    }

    #[inline(always)]
    fn parse_fields(b: &[u8], at: usize, prev: u64, tag: u32) -> Result<RecordHeader, String> {
        let short = || "record header crosses the end of the content".to_string();
        match tag {
            EXTENDED_TAG => {
                let first = b[at];
                if first as u32 != EXTENDED_TAG {
                    return Err(format!(
                        "extended record header starts with {first:#04x}, not 0x1f"
                    ));
                }
                let id = get_u32(b, at + 1).ok_or_else(short)?;
                let timestamp = get_u64(b, at + 5).ok_or_else(short)?;
                let len = get_len(b, at + 13)?;
                Ok(RecordHeader {
                    timestamp,
                    id,
                    len,
                    form: HeaderForm::Extended,
                })
            }
            PADDING_TAG => {
                let w = get_u32(b, at).ok_or_else(short)?;
                let id = get_u32(b, at + 4).ok_or_else(short)?;
                let len = get_len(b, at + 8)?;
                if id != PADDING_ID {
                    return Err(format!(
                        "compact padding record header with id {id} (expected {PADDING_ID})"
                    ));
                }
                Ok(RecordHeader {
                    timestamp: rebuild_timestamp(prev, w >> 5),
                    id,
                    len,
                    form: HeaderForm::CompactPadding,
                })
            }
            _ => {
                let w = get_u32(b, at).ok_or_else(short)?;
                let len = get_len(b, at + 4)?;
                Ok(RecordHeader {
                    timestamp: rebuild_timestamp(prev, w >> 5),
                    id: if tag == PENDING_TAG { PENDING_ID } else { tag },
                    len,
                    form: HeaderForm::Compact,
                })
            }
        }
    }

    /// Encode the header (at most [`RECORD_HEADER_SIZE`] bytes; the compact forms use the
    /// low 27 bits of `timestamp`). `len` must be at most [`MAX_PAYLOAD`], and at most
    /// [`MAX_COMPACT_PAYLOAD`] for the compact forms.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_HEADER_SIZE);
        match self.form {
            HeaderForm::Extended => {
                b.push(EXTENDED_TAG as u8);
                b.extend_from_slice(&self.id.to_le_bytes());
                b.extend_from_slice(&self.timestamp.to_le_bytes());
            }
            HeaderForm::CompactPadding => {
                b.extend_from_slice(&compact_word(PADDING_TAG, self.timestamp).to_le_bytes());
                b.extend_from_slice(&self.id.to_le_bytes());
            }
            HeaderForm::Compact => {
                let tag = if self.id == PENDING_ID {
                    PENDING_TAG
                } else {
                    self.id
                };
                b.extend_from_slice(&compact_word(tag, self.timestamp).to_le_bytes());
            }
        }
        put_len(&mut b, self.len);
        b
    }

    /// Bytes of this header ([`header_size`]).
    #[inline]
    pub fn header_len(&self) -> usize {
        header_size(self.form, self.len as usize)
    }

    /// Bytes of header + payload, `None` on overflow.
    #[inline]
    pub fn record_len(&self) -> Option<usize> {
        self.header_len().checked_add(self.len as usize)
    }
}

/// `x` rounded up to a multiple of 8 ([`PACKET_ALIGN`]), `None` on overflow.
pub const fn align8(x: usize) -> Option<usize> {
    match x.checked_add(PACKET_ALIGN - 1) {
        Some(v) => Some(v & !(PACKET_ALIGN - 1)),
        None => None,
    }
}

/// One record of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset of the record from the packet start.
    pub offset: usize,
    /// Timestamp in clock ticks (rebuilt for compact headers).
    pub timestamp: u64,
    /// Event id, or a reserved id ([`PADDING_ID`], [`PENDING_ID`]).
    pub id: u32,
    /// Bytes of the record header.
    pub header_len: usize,
    /// The `len` payload bytes.
    pub payload: &'a [u8],
}

impl RawRecord<'_> {
    /// Whether this is a padding record (readers skip it).
    pub fn is_padding(&self) -> bool {
        self.id == PADDING_ID
    }

    /// Offset of the payload from the packet start.
    pub fn payload_offset(&self) -> usize {
        self.offset + self.header_len
    }
}

/// Decode the record at offset `at` of a packet's content (`content` = bytes
/// `0..content_size/8` of the packet, header included), the previous record's timestamp being
/// `prev` (the packet's `timestamp_begin` for the first). Returns the record and the offset of
/// the next one (`None` when this record ends exactly at the end of the content). Every length
/// is checked against the content with checked arithmetic.
#[inline]
pub fn record_at(
    content: &[u8],
    at: usize,
    prev: u64,
) -> Result<(RawRecord<'_>, Option<usize>), LayoutError> {
    let end = content.len();
    let bad = |msg: String| (at as u64, msg);
    let h = RecordHeader::parse_at(content, at, prev)
        .map_err(|m| bad(format!("{m} ({end} bytes of content)")))?;
    let header_end = at + h.header_len(); // parse_at checked it fits
    let rec_end = header_end
        .checked_add(h.len as usize)
        .filter(|&e| e <= end)
        .ok_or_else(|| {
            bad(format!(
                "record payload of {} bytes crosses the end of the content ({end} bytes)",
                h.len
            ))
        })?;
    let payload = content.get(header_end..rec_end).unwrap_or(&[]);
    let next = (rec_end != end).then_some(rec_end);
    Ok((
        RawRecord {
            offset: at,
            timestamp: h.timestamp,
            id: h.id,
            header_len: h.header_len(),
            payload,
        },
        next,
    ))
}

/// Iterator over the record chain of one packet's content (see [`record_at`]), padding records
/// included, rebuilding compact timestamps from the packet's `timestamp_begin` on. Yields an
/// error (and then stops) at the first record that breaks the chain.
pub struct Records<'a> {
    content: &'a [u8],
    pos: Option<usize>,
    prev: u64,
}

impl<'a> Records<'a> {
    /// Records of `content` (a packet's first `content_size / 8` bytes, header included).
    pub fn new(content: &'a [u8]) -> Self {
        Records {
            content,
            pos: (content.len() > PACKET_HEADER_SIZE).then_some(PACKET_HEADER_SIZE),
            prev: get_u64(content, off::TIMESTAMP_BEGIN).unwrap_or(0),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RawRecord<'a>, LayoutError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let at = self.pos.take()?;
        Some(record_at(self.content, at, self.prev).map(|(r, next)| {
            self.pos = next;
            self.prev = r.timestamp;
            r
        }))
    }
}

/// Cover `span` (the bytes of an abandoned reservation, or of a stretch recovery completes)
/// exactly with padding records of the given form's family, all with `timestamp`: one record
/// when the payload fits in [`MAX_PADDING_PAYLOAD`] bytes, otherwise a chain of them (each
/// compact one rebuilt from the previous, so exact). `form` [`HeaderForm::Extended`] writes
/// extended padding records (15-byte headers), the compact forms compact padding (10 bytes; a
/// compact record's 27 timestamp bits are kept, so the caller must be allowed a compact header
/// at `timestamp`). Zeroes the payloads. Returns the number of records written, or an error
/// when `span` is shorter than one header.
pub fn fill_padding(span: &mut [u8], timestamp: u64, form: HeaderForm) -> Result<usize, String> {
    let form = match form {
        HeaderForm::Extended => HeaderForm::Extended,
        HeaderForm::Compact | HeaderForm::CompactPadding => HeaderForm::CompactPadding,
    };
    let h = form.size();
    if span.len() < h {
        return Err(format!(
            "{} bytes cannot hold a padding record ({h}-byte header)",
            span.len()
        ));
    }
    span.fill(0);
    let (mut at, mut n) = (0, 0);
    while at < span.len() {
        let rem = span.len() - at;
        let mut piece = rem.min(h + MAX_PADDING_PAYLOAD);
        if rem != piece && rem - piece < h {
            // Leave room for a whole header after this one: rem > h + MAX_PADDING_PAYLOAD
            // here, so the piece still holds its own header.
            piece = rem - h;
        }
        let hdr = RecordHeader {
            timestamp,
            id: PADDING_ID,
            len: (piece - h) as u32,
            form,
        }
        .encode();
        span[at..at + h].copy_from_slice(&hdr);
        at += piece;
        n += 1;
    }
    Ok(n)
}

/// Append one record to `buf` (a packet being built, header included) right after the last
/// one: the header, the payload. The header is compact when `prev` (the previous record's
/// timestamp, or the packet's `timestamp_begin`) is given and [`compact_fits`] allows it,
/// extended otherwise; a [`PADDING_ID`] record is compact padding when the timestamp allows
/// it, and covers its header and payload with zeros as [`fill_padding`] does (several records
/// when the payload is longer than [`MAX_PADDING_PAYLOAD`]; the payload's bytes are not
/// used). `payload` must be at most [`MAX_PAYLOAD`] bytes.
pub fn push_record(buf: &mut Vec<u8>, prev: Option<u64>, timestamp: u64, id: u32, payload: &[u8]) {
    let len = payload.len();
    let near = prev.is_some_and(|p| timestamp >= p && timestamp - p < COMPACT_TS_WINDOW);
    if id == PADDING_ID {
        let form = if near {
            HeaderForm::CompactPadding
        } else {
            HeaderForm::Extended
        };
        let start = buf.len();
        buf.resize(start + form.size() + len, 0);
        // The span holds at least one header.
        let _ = fill_padding(&mut buf[start..], timestamp, form);
        return;
    }
    let form = if prev.is_some_and(|p| compact_fits(id, len, p, timestamp)) {
        HeaderForm::Compact
    } else {
        HeaderForm::Extended
    };
    let h = RecordHeader {
        timestamp,
        id,
        len: len as u32,
        form,
    };
    buf.extend_from_slice(&h.encode());
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_offsets() {
        let mut h = PacketHeader {
            magic: PACKET_MAGIC,
            uuid: [7; 16],
            stream_id: 0,
            timestamp_begin: 0x1122,
            timestamp_end: 0x3344,
            content_size: 1024,
            packet_size: 4096,
            packet_seq_num: 5,
            events_discarded: 6,
            cpu_id: 9,
            flags: 0,
            lost_full: 1,
            lost_stalled: 2,
            lost_too_big: 3,
            remote_commits: 9,
            reserved: [0; 2],
        };
        let b = h.encode();
        assert_eq!(&b[0..4], &[0xC1, 0x1F, 0xFC, 0xC1]);
        assert_eq!(b[72], 9);
        assert_eq!(&b[104..112], &9u64.to_le_bytes());
        assert_eq!(&b[48..56], &4096u64.to_le_bytes());
        assert_eq!(PacketHeader::parse(&b), h);
        h.reserved[1] = 0xAB;
        assert_eq!(h.encode()[120], 0xAB);
        assert_eq!(PacketHeader::parse_slice(&b[..127]), None);
    }

    #[test]
    fn header_forms_encode_and_decode() {
        let ts = 0x0102_0304_0506_0708u64;
        for (form, id, size, len) in [
            (HeaderForm::Extended, 77, 19, 0xAB_CDEF),
            (HeaderForm::Extended, 77, 19, 0xFFFF),
            (HeaderForm::Extended, 77, 15, 0xFFFE),
            (HeaderForm::Extended, PENDING_ID, 19, 0xAB_CDEF),
            (HeaderForm::Extended, PADDING_ID, 15, 0xFFFE),
            (HeaderForm::Compact, 5, 6, 0xABCD),
            (HeaderForm::Compact, 5, 10, 0x1_0000),
            (HeaderForm::Compact, PENDING_ID, 6, 0xABCD),
            (HeaderForm::CompactPadding, PADDING_ID, 10, 0xABCD),
        ] {
            let h = RecordHeader {
                timestamp: ts,
                id,
                len,
                form,
            };
            let b = h.encode();
            assert_eq!((b.len(), h.header_len()), (size, size));
            // Decoded against a previous timestamp a little before.
            let got = RecordHeader::parse_at(&b, 0, ts - 1000).unwrap();
            assert_eq!(got, h);
            assert!(RecordHeader::parse_at(&b[..size - 1], 0, 0).is_err());
        }
        let (w0, w1) = extended_header_words(9, ts, 33);
        let mut b = w0.to_le_bytes().to_vec();
        b.truncate(EXTENDED_SECOND_WORD);
        b.extend_from_slice(&w1.to_le_bytes());
        assert_eq!(w0.to_le_bytes()[7], b[7], "the words agree on byte 7");
        assert_eq!(b.len(), EXTENDED_HEADER_SIZE);
        assert_eq!(b[0], 31);
        assert_eq!(get_u32(&b, EXTENDED_ID_OFFSET), Some(9));
        assert_eq!(get_u64(&b, 5), Some(ts));
        assert_eq!(&b[13..15], &[33, 0]);
        let enc = RecordHeader {
            timestamp: ts,
            id: 9,
            len: 33,
            form: HeaderForm::Extended,
        }
        .encode();
        assert_eq!(enc, b);
        assert_eq!(extended_header_bytes(9, ts, 33).0[..15], b[..]);
        assert_eq!(extended_header_bytes(9, ts, 33).1, 15);
        // Long lengths: 65535 then the u32, never below 65535.
        let long = RecordHeader {
            timestamp: ts,
            id: 9,
            len: 0x12_3456,
            form: HeaderForm::Extended,
        }
        .encode();
        assert_eq!(&long[13..19], &[0xFF, 0xFF, 0x56, 0x34, 0x12, 0]);
        assert_eq!(
            extended_header_bytes(9, ts, 0x12_3456),
            (long[..].try_into().unwrap(), 19)
        );
        let mut bad = long.clone();
        bad[15..19].copy_from_slice(&100u32.to_le_bytes());
        assert!(RecordHeader::parse_at(&bad, 0, 0)
            .unwrap_err()
            .contains("long record length 100"));
        // A padding record longer than CTF readers can step over is refused.
        let big = RecordHeader {
            timestamp: ts,
            id: PADDING_ID,
            len: 0xFFFF,
            form: HeaderForm::Extended,
        }
        .encode();
        assert!(RecordHeader::parse_at(&big, 0, 0)
            .unwrap_err()
            .contains("padding record of 65535"));
        let w = compact_header_word(3, ts, 41).to_le_bytes();
        assert_eq!(w[0] & 31, 3);
        assert_eq!(&w[4..8], &[41, 0, 0, 0]);
        // Compact padding must carry the padding id.
        let mut p = RecordHeader {
            timestamp: ts,
            id: PADDING_ID,
            len: 0,
            form: HeaderForm::CompactPadding,
        }
        .encode();
        p[4] = 0;
        assert!(RecordHeader::parse_at(&p, 0, 0).is_err());
        // Extended: the 3 bits above the tag must be zero.
        b[0] = 0xFF;
        assert!(RecordHeader::parse_at(&b, 0, 0).is_err());
        assert!(is_reserved_id(PADDING_ID) && is_reserved_id(PENDING_ID));
        assert!(!is_reserved_id(PENDING_ID - 1));
    }

    #[test]
    fn compact_timestamps_rebuild_across_the_27_bit_wrap() {
        let w = COMPACT_TS_WINDOW;
        for prev in [0, 5, w - 1, w, 3 * w + 17, u64::MAX / 2] {
            for d in [0, 1, w / 2, w - 1] {
                let t = prev + d;
                assert_eq!(rebuild_timestamp(prev, compact_word(0, t) >> 5), t);
                assert!(compact_fits(0, 8, prev, t));
            }
            assert!(!compact_fits(0, 8, prev, prev + w));
        }
        assert!(!compact_fits(MAX_COMPACT_ID + 1, 8, 0, 0));
        assert!(!compact_fits(0, MIN_COMPACT_PAYLOAD - 1, 0, 0));
        assert!(compact_fits(0, MAX_COMPACT_PAYLOAD, 0, 0));
        assert!(!compact_fits(0, MAX_COMPACT_PAYLOAD + 1, 0, 0));
        assert!(!compact_fits(0, 8, 10, 9));
    }

    #[test]
    fn record_chain() {
        let mut pk = vec![0u8; PACKET_HEADER_SIZE];
        pk[off::TIMESTAMP_BEGIN..off::TIMESTAMP_BEGIN + 8].copy_from_slice(&10u64.to_le_bytes());
        push_record(&mut pk, None, 10, 1, b"abcd");
        push_record(&mut pk, Some(10), 11, PADDING_ID, &[0; 5]);
        push_record(&mut pk, Some(11), 12, 3, &[9; 8]);
        push_record(&mut pk, Some(12), 12 + COMPACT_TS_WINDOW, 3, &[9; 8]);
        push_record(
            &mut pk,
            Some(12 + COMPACT_TS_WINDOW),
            13 + COMPACT_TS_WINDOW,
            3,
            &[7; 70_000],
        );
        // Packed: extended 15 + 4, compact padding 10 + 5, compact 6 + 8, extended 15 + 8,
        // extended with a long length 19 + 70000.
        assert_eq!(pk.len(), 128 + 19 + 15 + 14 + 23 + 19 + 70_000);
        let recs: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!((recs[0].offset, recs[0].payload), (128, &b"abcd"[..]));
        assert_eq!((recs[1].offset, recs[1].id), (147, PADDING_ID));
        assert!(recs[1].is_padding() && !recs[0].is_padding());
        assert_eq!((recs[2].offset, recs[2].timestamp), (162, 12));
        assert_eq!(recs[2].payload_offset(), 168);
        assert_eq!(
            (recs[3].offset, recs[3].timestamp),
            (176, 12 + COMPACT_TS_WINDOW)
        );
        assert_eq!((recs[4].offset, recs[4].header_len), (199, 19));
        assert_eq!(recs[4].payload, &[7; 70_000][..]);
        // content_size pointing into a record header is an error at that record.
        let err = Records::new(&pk[..150])
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 147);
        // ... and into a payload too.
        let err = Records::new(&pk[..170])
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 162);
        // A payload length beyond the content.
        let mut bad = pk.clone();
        bad[128 + 13..128 + 15].copy_from_slice(&[0xFF; 2]); // long: "abcd" as the u32
        let err = Records::new(&bad)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 128);
    }

    #[test]
    fn padding_chains_cover_any_span() {
        let h = [COMPACT_PADDING_HEADER_SIZE, EXTENDED_HEADER_SIZE];
        for (i, form) in [HeaderForm::CompactPadding, HeaderForm::Extended]
            .into_iter()
            .enumerate()
        {
            let max = h[i] + MAX_PADDING_PAYLOAD;
            for len in [
                h[i],
                h[i] + 1,
                max,
                max + 1,
                max + h[i] - 1,
                max + h[i],
                2 * max,
                2 * max + 3,
                300_000,
            ] {
                let ts = 5 * COMPACT_TS_WINDOW + 77;
                let mut pk = vec![0xAAu8; PACKET_HEADER_SIZE + len];
                pk[off::TIMESTAMP_BEGIN..off::TIMESTAMP_BEGIN + 8]
                    .copy_from_slice(&(ts - 3).to_le_bytes());
                let n = fill_padding(&mut pk[PACKET_HEADER_SIZE..], ts, form).unwrap();
                let recs: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
                assert_eq!(recs.len(), n, "{form:?} {len}");
                assert_eq!(n, len.div_ceil(max), "{form:?} {len}");
                for r in &recs {
                    assert!(r.is_padding() && r.timestamp == ts, "{r:?}");
                    assert!(r.payload.len() <= MAX_PADDING_PAYLOAD);
                    assert!(r.payload.iter().all(|&b| b == 0));
                    assert_eq!(r.header_len, h[i]);
                }
            }
            assert!(fill_padding(&mut vec![0; h[i] - 1], 0, form).is_err());
        }
        // push_record splits a long padding payload the same way.
        let mut pk = vec![0u8; PACKET_HEADER_SIZE];
        push_record(&mut pk, None, 9, PADDING_ID, &vec![1; 70_000]);
        let recs: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(pk.len(), PACKET_HEADER_SIZE + 15 + 70_000);
    }

    proptest::proptest! {
        /// The walk over arbitrary bytes never panics, yields records that lie inside the
        /// content in increasing, aligned offsets, and stops after an error.
        #[test]
        fn walk_is_bounded(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut last_end = PACKET_HEADER_SIZE;
            let mut failed = false;
            for r in Records::new(&bytes) {
                proptest::prop_assert!(!failed);
                match r {
                    Ok(r) => {
                        proptest::prop_assert!(r.offset >= last_end);
                        let end = r.payload_offset() + r.payload.len();
                        proptest::prop_assert!(end <= bytes.len());
                        last_end = end;
                    }
                    Err(_) => failed = true,
                }
            }
        }

        /// Any sequence of records pushed reads back identically, timestamps included, with
        /// compact headers wherever the gap allows.
        #[test]
        fn walk_round_trips(begin in 0u64..u64::MAX / 4, recs in proptest::collection::vec(
            (proptest::prop_oneof![0u64..1000, 0u64..(1 << 29)], 0u32..40,
             proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..20)) {
            let mut pk = vec![0u8; PACKET_HEADER_SIZE];
            pk[off::TIMESTAMP_BEGIN..off::TIMESTAMP_BEGIN + 8].copy_from_slice(&begin.to_le_bytes());
            let mut ts = begin;
            let mut want = Vec::new();
            for (d, id, p) in &recs {
                let prev = ts;
                ts += d;
                let id = if *id == 39 { PADDING_ID } else { *id };
                push_record(&mut pk, Some(prev), ts, id, p);
                // A padding record's payload is zeros whatever was given.
                let p = if id == PADDING_ID { vec![0; p.len()] } else { p.clone() };
                want.push((ts, id, p));
            }
            let got: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(got.len(), want.len());
            for (g, (ts, id, p)) in got.iter().zip(&want) {
                proptest::prop_assert_eq!((g.timestamp, g.id, g.payload), (*ts, *id, &p[..]));
            }
        }
    }
}
