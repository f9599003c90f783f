//! The binary layout of a stream: packets and event records (the ring buffer's sub-buffers).
//!
//! A stream is a sequence of packets; one packet is one ring sub-buffer. Everything is
//! little-endian. Offsets are in bytes from the start of the packet.
//!
//! Packet header (128 bytes; CTF `trace.packet.header` is bytes 0..24, `stream.packet.context`
//! is bytes 24..128):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u32 | `magic` = `0xC1FC1FC1` |
//! | 4 | 16 | `uuid` (trace UUID) |
//! | 20 | u32 | `stream_id` = 0 (single stream class) |
//! | 24 | u64 | `timestamp_begin` (clock ticks) |
//! | 32 | u64 | `timestamp_end` (clock ticks) |
//! | 40 | u64 | `content_size` (**bits**, includes the 128-byte header) |
//! | 48 | u64 | `packet_size` (**bits**) |
//! | 56 | u64 | `packet_seq_num` (per CPU, 0, 1, 2, ...; a gap means lost packets) |
//! | 64 | u64 | `events_discarded` (cumulative on this CPU = `lost_full + lost_stalled + lost_too_big`) |
//! | 72 | u32 | `cpu_id` |
//! | 76 | u32 | `flags` (0, reserved) |
//! | 80 | u64 | `lost_full` (cumulative) |
//! | 88 | u64 | `lost_stalled` (cumulative) |
//! | 96 | u64 | `lost_too_big` (cumulative) |
//! | 104 | u64 | `remote_commits` (cumulative: REMOTE commits counted by the time the packet was closed; 0 in traces written before the field existed) |
//! | 112 | 2 x u64 | reserved (zero) |
//!
//! Records follow at byte 128; each starts at an 8-byte aligned offset:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | u64 | `timestamp` (clock ticks) |
//! | 8 | u32 | `id` (event id) |
//! | 12 | u32 | `len` = 16 + payload bytes (not rounded) |
//! | 16 | len - 16 | payload, `faultline_schema` encoding |
//!
//! The next record starts at `align8(start + len)`. `content_size / 8` is exactly the end of the
//! last record's payload (unaligned), or 128 for an empty packet. Bytes between `content_size`
//! and `packet_size` are padding.
//!
//! Invariants checked by [`check_header`] and [`Records`] (both the writer and the reader use
//! them, so the writer never puts on disk what the reader would reject):
//! - magic, `stream_id == 0`, `content_size` and `packet_size` multiples of 8 bits,
//!   `1024 <= content_size <= packet_size`;
//! - the record chain starting at 128 ends exactly at `content_size / 8`; every record has
//!   `len >= 16` and lies inside the content.

/// `magic` of every packet (the CTF magic number).
pub const MAGIC: u32 = 0xC1FC_1FC1;
/// Size of the packet header + context, where the first record starts.
pub const PACKET_HEADER_SIZE: usize = 128;
/// Size of a record header (timestamp, id, len).
pub const RECORD_HEADER_SIZE: usize = 16;

/// Byte offsets of the header fields.
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

/// `x` rounded up to a multiple of 8, `None` on overflow.
pub fn align8(x: usize) -> Option<usize> {
    x.checked_add(7).map(|v| v & !7)
}

fn rd_u32(b: &[u8; PACKET_HEADER_SIZE], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn rd_u64(b: &[u8; PACKET_HEADER_SIZE], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Read a little-endian u32 at `at` of `b`, `None` when out of bounds.
pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(s);
    Some(u32::from_le_bytes(w))
}

/// Read a little-endian u64 at `at` of `b`, `None` when out of bounds.
pub(crate) fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

/// The decoded 128-byte packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketHeader {
    /// [`MAGIC`].
    pub magic: u32,
    /// Trace UUID; must equal the metadata's.
    pub uuid: [u8; 16],
    /// CTF stream id (0).
    pub stream_id: u32,
    /// Timestamp of the packet's first record.
    pub timestamp_begin: u64,
    /// Timestamp when the packet was closed.
    pub timestamp_end: u64,
    /// In bits.
    pub content_size: u64,
    /// In bits.
    pub packet_size: u64,
    /// Sequence number of the packet in its stream (gaps are lost packets).
    pub packet_seq_num: u64,
    /// Events lost on this CPU so far, all causes (cumulative).
    pub events_discarded: u64,
    /// CPU of the stream.
    pub cpu_id: u32,
    /// Packet flags (reserved).
    pub flags: u32,
    /// Events lost so far because the buffer was full (cumulative).
    pub lost_full: u64,
    /// Events lost so far to a stalled writer (cumulative).
    pub lost_stalled: u64,
    /// Events lost so far because they were too big (cumulative).
    pub lost_too_big: u64,
    /// REMOTE commits counted on this CPU by the time the packet was closed (cumulative; the
    /// word was reserved, hence zero, in older traces).
    pub remote_commits: u64,
    /// Reserved words.
    pub reserved: [u64; 2],
}

impl PacketHeader {
    /// Decode the header (no validation; see [`check_header`]).
    pub fn parse(b: &[u8; PACKET_HEADER_SIZE]) -> Self {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[off::UUID..off::UUID + 16]);
        PacketHeader {
            magic: rd_u32(b, off::MAGIC),
            uuid,
            stream_id: rd_u32(b, off::STREAM_ID),
            timestamp_begin: rd_u64(b, off::TIMESTAMP_BEGIN),
            timestamp_end: rd_u64(b, off::TIMESTAMP_END),
            content_size: rd_u64(b, off::CONTENT_SIZE),
            packet_size: rd_u64(b, off::PACKET_SIZE),
            packet_seq_num: rd_u64(b, off::PACKET_SEQ_NUM),
            events_discarded: rd_u64(b, off::EVENTS_DISCARDED),
            cpu_id: rd_u32(b, off::CPU_ID),
            flags: rd_u32(b, off::FLAGS),
            lost_full: rd_u64(b, off::LOST_FULL),
            lost_stalled: rd_u64(b, off::LOST_STALLED),
            lost_too_big: rd_u64(b, off::LOST_TOO_BIG),
            remote_commits: rd_u64(b, off::REMOTE_COMMITS),
            reserved: [rd_u64(b, off::RESERVED), rd_u64(b, off::RESERVED + 8)],
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

    /// `content_size` in bytes (valid after [`check_header`]).
    pub fn content_bytes(&self) -> u64 {
        self.content_size / 8
    }

    /// `packet_size` in bytes (valid after [`check_header`]).
    pub fn packet_bytes(&self) -> u64 {
        self.packet_size / 8
    }
}

/// A layout violation: byte offset relative to the packet start, and what is wrong.
pub type LayoutError = (u64, String);

/// Check the header fields that do not depend on context: magic, stream id, sizes.
/// `available` is how many bytes of the packet exist (in the caller's buffer or the file).
pub fn check_header(h: &PacketHeader, available: u64) -> Result<(), LayoutError> {
    if h.magic != MAGIC {
        return Err((
            off::MAGIC as u64,
            format!("bad magic {:#010x} (expected {MAGIC:#010x})", h.magic),
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

/// One record of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset of the record from the packet start.
    pub offset: usize,
    /// Timestamp in clock ticks.
    pub timestamp: u64,
    /// Event id (or a reserved id: discarded or pending record).
    pub id: u32,
    /// `len - 16` bytes.
    pub payload: &'a [u8],
}

/// Decode the record at offset `at` of a packet's content (`content` = bytes
/// `0..content_size/8` of the packet, header included). Returns the record and the offset of the
/// next one (`None` when this record ends exactly at the end of the content).
pub fn record_at(content: &[u8], at: usize) -> Result<(RawRecord<'_>, Option<usize>), LayoutError> {
    let end = content.len();
    let bad = |msg: String| (at as u64, msg);
    let header_end = at
        .checked_add(RECORD_HEADER_SIZE)
        .filter(|&e| e <= end)
        .ok_or_else(|| {
            bad(format!(
                "record header crosses the end of the content ({end} bytes)"
            ))
        })?;
    let timestamp = get_u64(content, at).unwrap_or(0);
    let id = get_u32(content, at + 8).unwrap_or(0);
    let len = get_u32(content, at + 12).unwrap_or(0) as usize;
    if len < RECORD_HEADER_SIZE {
        return Err(bad(format!("record len {len} < {RECORD_HEADER_SIZE}")));
    }
    let rec_end = at.checked_add(len).filter(|&e| e <= end).ok_or_else(|| {
        bad(format!(
            "record len {len} crosses the end of the content ({end} bytes)"
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
            timestamp,
            id,
            payload,
        },
        next,
    ))
}

/// Iterator over the record chain of one packet's content (see [`record_at`]). Yields an error
/// (and then stops) at the first record that breaks the chain.
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

/// Builds packets in the exact layout above (for tests, fuzzing and tools).
///
/// Records are appended with [`PacketBuilder::record`]; [`PacketBuilder::finish`] fills in
/// `content_size` and pads the packet to `packet_size` bytes (at least the content).
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    /// The header [`PacketBuilder::finish`] writes (its `content_size` is computed).
    pub header: PacketHeader,
    buf: Vec<u8>,
}

impl PacketBuilder {
    /// A packet with the given uuid, cpu and sequence number; other header fields zero
    /// (set them through `header`).
    pub fn new(uuid: [u8; 16], cpu: u32, seq: u64) -> Self {
        PacketBuilder {
            header: PacketHeader {
                magic: MAGIC,
                uuid,
                cpu_id: cpu,
                packet_seq_num: seq,
                ..PacketHeader::default()
            },
            buf: vec![0u8; PACKET_HEADER_SIZE],
        }
    }

    /// Set the cumulative loss counters (and `events_discarded` = their sum).
    pub fn lost(mut self, full: u64, stalled: u64, too_big: u64) -> Self {
        self.header.lost_full = full;
        self.header.lost_stalled = stalled;
        self.header.lost_too_big = too_big;
        self.header.events_discarded = full + stalled + too_big;
        self
    }

    /// Append one record at the next 8-byte aligned offset.
    pub fn record(&mut self, timestamp: u64, id: u32, payload: &[u8]) -> &mut Self {
        let start = self.buf.len().div_ceil(8) * 8;
        self.buf.resize(start, 0);
        self.buf.extend_from_slice(&timestamp.to_le_bytes());
        self.buf.extend_from_slice(&id.to_le_bytes());
        let len = (RECORD_HEADER_SIZE + payload.len()) as u32;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(payload);
        self
    }

    /// The finished packet, `packet_size` = max(`packet_size`, content) bytes, padded with
    /// `0xEE` bytes (so tests notice when padding is read as content).
    pub fn finish(&self, packet_size: usize) -> Vec<u8> {
        let mut h = self.header;
        let content = self.buf.len();
        let total = packet_size.max(content);
        h.content_size = content as u64 * 8;
        h.packet_size = total as u64 * 8;
        let mut out = self.buf.clone();
        out[..PACKET_HEADER_SIZE].copy_from_slice(&h.encode());
        out.resize(total, 0xEE);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_offsets() {
        let mut h = PacketHeader {
            magic: MAGIC,
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
    }

    #[test]
    fn record_chain() {
        let mut p = PacketBuilder::new([0; 16], 0, 0);
        p.record(10, 1, b"abc")
            .record(11, 2, b"")
            .record(12, 3, &[9; 8]);
        let pk = p.finish(512);
        let h = PacketHeader::parse_slice(&pk).unwrap();
        assert_eq!(h.content_bytes(), 128 + 24 + 16 + 24);
        let recs: Vec<_> = Records::new(&pk[..h.content_bytes() as usize])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].offset, recs[0].payload), (128, &b"abc"[..]));
        assert_eq!((recs[1].offset, recs[1].id), (152, 2));
        assert_eq!((recs[2].offset, recs[2].timestamp), (168, 12));
        // content_size pointing into the padding after the first record is an error.
        let err = Records::new(&pk[..150])
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(err.0, 147);
    }
}
