//! The fast path of the trace writer: packets written straight from where they lie
//! (`TraceWriter::write_packet_raw`, header checked only), then `TraceWriter::verify`: records
//! checked and counted, a packet that fails is removed from its stream (the rest is kept),
//! padding records stay where they are (readers skip them).

mod common;

use common::*;
use faultline_ctf::layout::PACKET_HEADER_SIZE;
use faultline_ctf::{CtfError, Filter, PacketBuilder, Trace, TraceWriter};

const PADDING: u32 = faultline_ctf::layout::PADDING_ID;

fn raw(w: &mut TraceWriter, cpu: u32, p: &[u8]) -> Result<u64, faultline_ctf::CtfError> {
    let hdr: [u8; PACKET_HEADER_SIZE] = p[..PACKET_HEADER_SIZE].try_into().unwrap();
    // SAFETY: `p` is a live buffer of p.len() bytes.
    unsafe { w.write_packet_raw(cpu, &hdr, p.as_ptr(), p.len()) }
}

fn packet(seq: u64, ts: (u64, u64), recs: &[(u64, u32, &[u8])]) -> Vec<u8> {
    let mut b = PacketBuilder::new(UUID, 2, seq);
    b.header.timestamp_begin = ts.0;
    b.header.timestamp_end = ts.1;
    for (t, id, p) in recs {
        b.record(*t, *id, p);
    }
    // The sub-buffer is larger than the content: only the content is written.
    b.finish(4096)
}

#[test]
fn verify_counts_keeps_good_packets_drops_bad_ones_and_keeps_padding() {
    let dir = tmpdir("verify");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let good = packet(0, (10, 20), &[(11, ID_EMPTY, &[]), (12, ID_EMPTY, &[])]);
    // An empty event with an 8-byte payload: the header is fine, the record is not.
    let bad = packet(1, (20, 30), &[(21, ID_EMPTY, &[]), (22, ID_EMPTY, &[0; 8])]);
    let padded = packet(
        2,
        (30, 40),
        &[
            (31, ID_EMPTY, &[]),
            (32, PADDING, &[0; 8]),
            (33, ID_EMPTY, &[]),
        ],
    );
    let last = packet(3, (40, 50), &[(41, ID_EMPTY, &[])]);
    for p in [&good, &bad, &padded] {
        raw(&mut w, 2, p).unwrap();
    }
    // A checked packet in between is kept as written.
    w.write_packet(2, &last).unwrap();
    assert_eq!(w.counters().packets, 4);
    assert_eq!(w.counters().events, 1, "raw packets are counted by verify");
    let v = w.verify().unwrap();
    assert_eq!(v.events.len(), 1);
    assert_eq!(
        v.events[&2].get(&ID_EMPTY),
        Some(&5),
        "2 + 2 in the passing raw packets, 1 in the checked one"
    );
    assert_eq!(v.padding, 1, "the padding record stays");
    assert_eq!(v.rejected.len(), 1);
    let (cpu, seq, e, held) = &v.rejected[0];
    assert_eq!((*cpu, *seq, *held), (2, 1, 2));
    assert!(
        matches!(e, CtfError::Packet { msg, .. } if msg.contains("payload is 8 bytes")),
        "{e}"
    );
    let c = w.counters();
    assert_eq!((c.packets, c.events), (3, 5));
    // Verified once: a second pass has nothing to do.
    let again = w.verify().unwrap();
    assert!(again.events.is_empty() && again.rejected.is_empty());
    let c = w.finish().unwrap();
    let len = std::fs::metadata(dir.join("stream_2")).unwrap().len();
    assert_eq!(len, c.stream_bytes);
    let t = Trace::open(&dir).unwrap();
    let ts: Vec<u64> = t
        .events(&Filter::default())
        .map(|e| e.unwrap().ts)
        .collect();
    assert_eq!(ts, vec![11, 12, 31, 33, 41]);
}

#[test]
fn raw_path_checks_the_header() {
    let dir = tmpdir("verify-header");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let p = packet(5, (10, 20), &[(11, ID_EMPTY, &[])]);
    raw(&mut w, 2, &p).unwrap();
    // Same sequence number again, and another CPU's stream.
    let e = raw(&mut w, 2, &p).unwrap_err();
    assert!(e.to_string().contains("packet_seq_num 5 not after"), "{e}");
    let e = raw(&mut w, 3, &p).unwrap_err();
    assert!(e.to_string().contains("cpu_id 2 != 3"), "{e}");
    // content_size beyond what the caller says is readable.
    let e = raw_short(&mut w, &packet(6, (20, 30), &[(21, ID_EMPTY, &[])]));
    assert!(e.to_string().contains("beyond the end of the data"), "{e}");
}

fn raw_short(w: &mut TraceWriter, p: &[u8]) -> CtfError {
    let hdr: [u8; PACKET_HEADER_SIZE] = p[..PACKET_HEADER_SIZE].try_into().unwrap();
    // SAFETY: 140 < p.len() bytes are readable.
    unsafe { w.write_packet_raw(2, &hdr, p.as_ptr(), 140) }.unwrap_err()
}

/// A packet ending in a padding record (a dead writer's reservation, recovered) followed by
/// the drain's final empty packet carrying the loss counters: `stats` must see that last
/// packet (it once skipped the packet after a trailing padding record, and its losses).
#[test]
fn stats_sees_the_packet_after_one_ending_in_padding() {
    let dir = tmpdir("verify-tail");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let first = packet(0, (10, 20), &[(11, ID_EMPTY, &[])]);
    let padded = packet(1, (20, 30), &[(21, ID_EMPTY, &[]), (22, PADDING, &[0; 8])]);
    let mut b = PacketBuilder::new(UUID, 2, 2);
    b.header.timestamp_begin = 30;
    b.header.timestamp_end = 30;
    b.header.lost_stalled = 2;
    b.header.events_discarded = 2;
    let last = b.finish(PACKET_HEADER_SIZE);
    raw(&mut w, 2, &first).unwrap();
    raw(&mut w, 2, &padded).unwrap();
    w.write_packet(2, &last).unwrap();
    let v = w.verify().unwrap();
    assert!(v.rejected.is_empty(), "{:?}", v.rejected);
    w.finish().unwrap();
    let t = Trace::open(&dir).unwrap();
    let st = faultline_ctf::stats(&t).unwrap();
    assert_eq!((st.events_total, st.packets), (2, 3), "{st:?}");
    assert_eq!((st.lost_total, st.lost_stalled), (2, 2), "{st:?}");
}
