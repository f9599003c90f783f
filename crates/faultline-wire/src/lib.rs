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
//! Records follow at byte 128; each starts at a multiple of [`RECORD_ALIGN`] (8) and is a
//! [`RecordHeader`] then its payload:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u64 | `timestamp` (clock ticks, CTF `stream.event.header`) |
//! | 8 | u32 | `id` (event id, or a reserved id below) |
//! | 12 | u32 | `len` = **payload** bytes (CTF `stream.event.context`) |
//! | 16 | len | payload (`faultline_schema` encoding for events) |
//!
//! The next record starts at `align8(start + 16 + len)`. `content_size / 8` is exactly the end
//! of the last record's payload (unaligned), or 128 for an empty packet; bytes between
//! `content_size` and `packet_size` are padding. The walk ([`record_at`], [`Records`]) checks
//! that the chain ends exactly at the content end and that every record lies inside it.
//!
//! # Reserved record ids
//! * [`PADDING_ID`]: a **padding record** — a reservation abandoned or discarded by its writer
//!   (dropped without commit, a prefault-restart retry, a record re-reserved at another size),
//!   or an uncommitted one completed by dead-writer recovery. Its payload is `len` bytes of
//!   zeros (the writer or recovery zeroes them). Every reader skips it. In the CTF metadata it
//!   is the event class [`PADDING_EVENT_NAME`] whose payload is one text sequence of
//!   `stream.event.context.len` bytes, so babeltrace2 and any CTF reader step over it too (they
//!   show it as an event with an empty string).
//! * [`PENDING_ID`]: a reservation not committed (yet). The writer stores the real id just
//!   before its commit; a record still reading pending after its writer died is turned into a
//!   padding record by recovery. A complete packet never holds one; readers reject it.
//!
//! Event ids are assigned by the tracepoint registry from 0 up; the reserved ids are the two
//! largest `u32` values, which no registry reaches.

/// `magic` of every packet (the CTF magic number).
pub const PACKET_MAGIC: u32 = 0xC1FC_1FC1;
/// Size of the packet header + context; the first record starts here.
pub const PACKET_HEADER_SIZE: usize = 128;
/// Size of the record header (timestamp, id, payload length).
pub const RECORD_HEADER_SIZE: usize = 16;
/// Records start at multiples of this (relative to the packet start).
pub const RECORD_ALIGN: usize = 8;

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
    /// Record header: `timestamp` (u64).
    pub const RECORD_TIMESTAMP: usize = 0;
    /// Record header: `id` (u32).
    pub const RECORD_ID: usize = 8;
    /// Record header: `len` (u32, payload bytes).
    pub const RECORD_LEN: usize = 12;
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

/// The record header. `#[repr(C)]` with the offsets of the module docs (asserted).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// Timestamp in clock ticks, read inside the reserve critical section.
    pub timestamp: u64,
    /// Event id, or [`PADDING_ID`] / [`PENDING_ID`].
    pub id: u32,
    /// Payload bytes (the header not included).
    pub len: u32,
}
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
    assert!(offset_of!(RecordHeader, timestamp) == off::RECORD_TIMESTAMP);
    assert!(offset_of!(RecordHeader, id) == off::RECORD_ID);
    assert!(offset_of!(RecordHeader, len) == off::RECORD_LEN);
};

impl RecordHeader {
    /// The header as two little-endian words: `(timestamp, id | len << 32)` (the ring buffer's
    /// fast path stores it so).
    #[inline(always)]
    pub const fn words(&self) -> (u64, u64) {
        (self.timestamp, self.id as u64 | (self.len as u64) << 32)
    }

    /// Decode the header at `at` of `b`, `None` when it does not fit.
    pub fn parse_at(b: &[u8], at: usize) -> Option<RecordHeader> {
        Some(RecordHeader {
            timestamp: get_u64(b, at.checked_add(off::RECORD_TIMESTAMP)?)?,
            id: get_u32(b, at.checked_add(off::RECORD_ID)?)?,
            len: get_u32(b, at.checked_add(off::RECORD_LEN)?)?,
        })
    }

    /// Encode the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.timestamp.to_le_bytes());
        b[8..12].copy_from_slice(&self.id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Bytes of header + payload, `None` on overflow.
    pub fn record_len(&self) -> Option<usize> {
        RECORD_HEADER_SIZE.checked_add(self.len as usize)
    }
}

/// `x` rounded up to a multiple of 8, `None` on overflow.
pub const fn align8(x: usize) -> Option<usize> {
    match x.checked_add(RECORD_ALIGN - 1) {
        Some(v) => Some(v & !(RECORD_ALIGN - 1)),
        None => None,
    }
}

/// One record of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset of the record from the packet start.
    pub offset: usize,
    /// Timestamp in clock ticks.
    pub timestamp: u64,
    /// Event id, or a reserved id ([`PADDING_ID`], [`PENDING_ID`]).
    pub id: u32,
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
        self.offset + RECORD_HEADER_SIZE
    }
}

/// Decode the record at offset `at` of a packet's content (`content` = bytes
/// `0..content_size/8` of the packet, header included). Returns the record and the offset of the
/// next one (`None` when this record ends exactly at the end of the content). Every length is
/// checked against the content with checked arithmetic.
pub fn record_at(content: &[u8], at: usize) -> Result<(RawRecord<'_>, Option<usize>), LayoutError> {
    let end = content.len();
    let bad = |msg: String| (at as u64, msg);
    let h = RecordHeader::parse_at(content, at).ok_or_else(|| {
        bad(format!(
            "record header crosses the end of the content ({end} bytes)"
        ))
    })?;
    let header_end = at + RECORD_HEADER_SIZE; // parse_at checked it fits
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
    let next = if rec_end == end {
        None
    } else {
        let next = align8(rec_end).unwrap_or(usize::MAX);
        if next >= end {
            return Err((
                rec_end as u64,
                format!("content_size ({end} bytes) is not the end of the last record ({rec_end})"),
            ));
        }
        Some(next)
    };
    Ok((
        RawRecord {
            offset: at,
            timestamp: h.timestamp,
            id: h.id,
            payload,
        },
        next,
    ))
}

/// Iterator over the record chain of one packet's content (see [`record_at`]), padding records
/// included. Yields an error (and then stops) at the first record that breaks the chain.
pub struct Records<'a> {
    content: &'a [u8],
    pos: Option<usize>,
}

impl<'a> Records<'a> {
    /// Records of `content` (a packet's first `content_size / 8` bytes).
    pub fn new(content: &'a [u8]) -> Self {
        Records {
            content,
            pos: (content.len() > PACKET_HEADER_SIZE).then_some(PACKET_HEADER_SIZE),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RawRecord<'a>, LayoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.pos.take()?;
        Some(record_at(self.content, at).map(|(r, next)| {
            self.pos = next;
            r
        }))
    }
}

/// Append one record to `buf` (a packet being built, header included) at the next 8-byte
/// aligned offset: alignment zeros, the header, the payload.
pub fn push_record(buf: &mut Vec<u8>, timestamp: u64, id: u32, payload: &[u8]) {
    let start = buf.len().next_multiple_of(RECORD_ALIGN);
    buf.resize(start, 0);
    let h = RecordHeader {
        timestamp,
        id,
        len: payload.len() as u32,
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
    fn record_header_words_match_the_bytes() {
        let h = RecordHeader {
            timestamp: 0x0102_0304_0506_0708,
            id: 7,
            len: 33,
        };
        let (a, b) = h.words();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&a.to_le_bytes());
        bytes.extend_from_slice(&b.to_le_bytes());
        assert_eq!(bytes, h.encode());
        assert_eq!(RecordHeader::parse_at(&bytes, 0), Some(h));
        assert_eq!(RecordHeader::parse_at(&bytes, 1), None);
        assert!(is_reserved_id(PADDING_ID) && is_reserved_id(PENDING_ID));
        assert!(!is_reserved_id(PENDING_ID - 1));
    }

    #[test]
    fn record_chain() {
        let mut pk = vec![0u8; PACKET_HEADER_SIZE];
        push_record(&mut pk, 10, 1, b"abc");
        push_record(&mut pk, 11, PADDING_ID, &[0; 5]);
        push_record(&mut pk, 12, 3, &[9; 8]);
        assert_eq!(pk.len(), 128 + 24 + 24 + 24);
        let recs: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].offset, recs[0].payload), (128, &b"abc"[..]));
        assert_eq!((recs[1].offset, recs[1].id), (152, PADDING_ID));
        assert!(recs[1].is_padding() && !recs[0].is_padding());
        assert_eq!((recs[2].offset, recs[2].timestamp), (176, 12));
        // content_size pointing into the alignment after the first record is an error.
        let err = Records::new(&pk[..150])
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 147);
        // A payload length beyond the content.
        let mut bad = pk.clone();
        bad[128 + 12..128 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Records::new(&bad)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 128);
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
                        proptest::prop_assert_eq!(r.offset % RECORD_ALIGN, 0);
                        let end = r.payload_offset() + r.payload.len();
                        proptest::prop_assert!(end <= bytes.len());
                        last_end = end;
                    }
                    Err(_) => failed = true,
                }
            }
        }

        /// Any sequence of records pushed reads back identically.
        #[test]
        fn walk_round_trips(recs in proptest::collection::vec(
            (proptest::num::u64::ANY, proptest::num::u32::ANY,
             proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..20)) {
            let mut pk = vec![0u8; PACKET_HEADER_SIZE];
            for (ts, id, p) in &recs {
                push_record(&mut pk, *ts, *id, p);
            }
            let got: Vec<_> = Records::new(&pk).collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(got.len(), recs.len());
            for (g, (ts, id, p)) in got.iter().zip(&recs) {
                proptest::prop_assert_eq!((g.timestamp, g.id, g.payload), (*ts, *id, &p[..]));
            }
        }
    }
}
