//! The binary layout of a stream: packets and event records (the ring buffer's sub-buffers).
//!
//! The layout is faultline's wire format, defined once in the `faultline_wire` crate (packet
//! header table, record header, reserved ids, the record-chain walk) and re-exported here; the
//! ring buffer writes it, the trace writer checks it and the reader walks it with the same code.
//! A stream file is a sequence of packets; a packet on disk is a sub-buffer truncated to its
//! content rounded up to 8 bytes.
//!
//! Padding records ([`PADDING_ID`]) are skipped by every reader; the metadata declares them as
//! the event class `faultline:padding` so that other CTF readers step over them too
//! ([`crate::desc`]).
//!
//! Invariants checked by [`check_header`] and [`Records`] (both the writer and the reader use
//! them, so the writer never puts on disk what the reader would reject):
//! - magic, `stream_id == 0`, `content_size` and `packet_size` multiples of 8 bits,
//!   `1024 <= content_size <= packet_size`;
//! - the record chain starting at 128 ends exactly at `content_size / 8`; every record lies
//!   inside the content.

pub use faultline_wire::{
    align8, check_header, get_u32, get_u64, off, record_at, LayoutError, PacketHeader, RawRecord,
    Records, PACKET_HEADER_SIZE, PACKET_MAGIC, PADDING_ID, PENDING_ID, RECORD_HEADER_SIZE,
};

/// `magic` of every packet (the CTF magic number).
pub const MAGIC: u32 = PACKET_MAGIC;

/// Builds packets in the exact layout above (for tests, fuzzing and tools).
///
/// Records are appended with [`PacketBuilder::record`]; [`PacketBuilder::finish`] fills in
/// `content_size` and pads the packet to `packet_size` bytes (at least the content).
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    /// The header [`PacketBuilder::finish`] writes (its `content_size` is computed).
    pub header: PacketHeader,
    buf: Vec<u8>,
    /// Timestamp of the last record: the next one gets a compact header when it can
    /// (the first record of a packet always gets an extended one, so `timestamp_begin` may be
    /// set at any time before `finish`).
    last_ts: Option<u64>,
}

impl PacketBuilder {
    /// A packet with the given uuid, cpu and sequence number; other header fields zero
    /// (set them through `header`).
    pub fn new(uuid: [u8; 16], cpu: u32, seq: u64) -> Self {
        PacketBuilder {
            header: PacketHeader {
                magic: PACKET_MAGIC,
                uuid,
                cpu_id: cpu,
                packet_seq_num: seq,
                ..PacketHeader::default()
            },
            buf: vec![0u8; PACKET_HEADER_SIZE],
            last_ts: None,
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

    /// Append one record right after the previous one (records are packed).
    pub fn record(&mut self, timestamp: u64, id: u32, payload: &[u8]) -> &mut Self {
        faultline_wire::push_record(&mut self.buf, self.last_ts, timestamp, id, payload);
        self.last_ts = Some(timestamp);
        self
    }

    /// Append a padding record ([`PADDING_ID`], `len` zero bytes of payload), as a writer's
    /// abandoned reservation leaves.
    pub fn padding(&mut self, timestamp: u64, len: usize) -> &mut Self {
        faultline_wire::push_record(
            &mut self.buf,
            self.last_ts,
            timestamp,
            PADDING_ID,
            &vec![0; len],
        );
        self.last_ts = Some(timestamp);
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
    fn builder_writes_the_wire_chain() {
        let mut p = PacketBuilder::new([0; 16], 0, 0);
        p.record(10, 1, b"abc")
            .padding(11, 5)
            .record(12, 3, &[9; 8]);
        let pk = p.finish(512);
        let h = PacketHeader::parse_slice(&pk).unwrap();
        // Extended first record (15 + 3), compact padding (10 + 5), compact (6 + 8), packed.
        assert_eq!(h.content_bytes(), 128 + 18 + 15 + 14);
        assert_eq!(h.packet_bytes(), 512);
        let recs: Vec<_> = Records::new(&pk[..h.content_bytes() as usize])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 3);
        assert!(recs[1].is_padding() && recs[1].payload == [0; 5]);
        assert_eq!((recs[2].offset, recs[2].timestamp), (161, 12));
    }
}
