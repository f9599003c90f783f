//! The trace writer's `PacketSink` hook: the sink gets the metadata (at once and as it grows)
//! and every accepted packet exactly as written to the stream file; rejected packets never
//! reach it; a writer without files feeds its sink only.

use faultline_ctf::layout::PacketHeader;
use faultline_ctf::{PacketBuilder, PacketSink, TraceWriter};
use faultline_testkit::ctf::{desc, tmpdir, ID_EMPTY, OTHER, UUID};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    metadata: Vec<String>,
    packets: Vec<(u32, PacketHeader, Vec<u8>, u64)>,
    finished: u32,
}

struct Probe(Arc<Mutex<Seen>>);

impl PacketSink for Probe {
    fn metadata(&mut self, text: &str) {
        self.0.lock().unwrap().metadata.push(text.to_string());
    }
    fn packet(&mut self, cpu: u32, header: &PacketHeader, bytes: &[u8], events: u64) {
        self.0
            .lock()
            .unwrap()
            .packets
            .push((cpu, *header, bytes.to_vec(), events));
    }
    fn finish(&mut self) {
        self.0.lock().unwrap().finished += 1;
    }
}

fn packet(cpu: u32, seq: u64, n: u64) -> Vec<u8> {
    let mut b = PacketBuilder::new(UUID, cpu, seq);
    b.header.timestamp_begin = seq * 100;
    b.header.timestamp_end = seq * 100 + 50;
    for i in 0..n {
        b.record(seq * 100 + i, ID_EMPTY, &[]);
    }
    b.finish(4096)
}

#[test]
fn sink_gets_what_is_written() {
    let dir = tmpdir("sink");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    w.set_sink(Box::new(Probe(seen.clone()))).unwrap();
    w.write_packet(0, &packet(0, 0, 3)).unwrap();
    w.write_packet(1, &packet(1, 0, 2)).unwrap();
    // Rejected (sequence number not after the previous): not written, not sent.
    assert!(w.write_packet(0, &packet(0, 0, 1)).is_err());
    w.add_events(&[(400, OTHER)]).unwrap_err(); // same name as id 300: refused, no change
    let mut other = OTHER;
    other.name = "other2";
    w.add_events(&[(400, other)]).unwrap();
    w.write_packet(0, &packet(0, 1, 1)).unwrap();
    w.finish().unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(s.finished, 1);
    assert_eq!(
        s.metadata.len(),
        2,
        "initial text, then the one with the added class"
    );
    assert!(
        s.metadata[1].starts_with(&s.metadata[0]),
        "classes are appended"
    );
    assert_eq!(
        s.metadata[1],
        std::fs::read_to_string(dir.join("metadata")).unwrap()
    );
    let counts: Vec<(u32, u64)> = s.packets.iter().map(|p| (p.0, p.3)).collect();
    assert_eq!(counts, vec![(0, 3), (1, 2), (0, 1)]);
    let mut by_cpu: [Vec<u8>; 2] = Default::default();
    for (cpu, h, bytes, _) in &s.packets {
        assert_eq!(
            h.packet_size,
            bytes.len() as u64 * 8,
            "header is the written one"
        );
        assert_eq!(h.cpu_id, *cpu);
        by_cpu[*cpu as usize].extend_from_slice(bytes);
    }
    for (cpu, bytes) in by_cpu.iter().enumerate() {
        assert_eq!(
            bytes,
            &std::fs::read(dir.join(format!("stream_{cpu}"))).unwrap(),
            "the sink's bytes are the stream file's"
        );
    }
}

#[test]
fn writer_without_files_feeds_its_sink_only() {
    let tmp = tmpdir("nofiles");
    let dir = tmp.join("trace");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut w = TraceWriter::create_without_files(&dir, &desc()).unwrap();
    assert!(!w.writes_files());
    w.set_sink(Box::new(Probe(seen.clone()))).unwrap();
    w.write_packet(0, &packet(0, 0, 3)).unwrap();
    assert!(
        w.write_packet(0, &packet(0, 0, 3)).is_err(),
        "still checked"
    );
    let c = w.finish().unwrap();
    assert_eq!((c.packets, c.events), (1, 3));
    assert!(!dir.exists(), "no file, no directory");
    let s = seen.lock().unwrap();
    assert_eq!((s.packets.len(), s.metadata.len(), s.finished), (1, 1, 1));
}

fn raw(w: &mut TraceWriter, cpu: u32, p: &[u8]) -> Result<u64, faultline_ctf::CtfError> {
    let n = faultline_ctf::layout::PACKET_HEADER_SIZE;
    let hdr = p[..n].try_into().unwrap();
    // SAFETY: `p` is a live buffer of p.len() bytes.
    unsafe { w.write_packet_raw(cpu, &hdr, p.as_ptr(), p.len()) }
}

/// The fast path (`write_packet_raw`, records verified later) feeds the sink too, with the
/// bytes the stream file gets; a packet verification rejects afterwards was already sent and
/// is counted as such.
#[test]
fn raw_packets_reach_the_sink_and_late_rejections_are_counted() {
    let dir = tmpdir("sink-raw");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    w.set_sink(Box::new(Probe(seen.clone()))).unwrap();
    raw(&mut w, 0, &packet(0, 0, 3)).unwrap();
    // An empty event with a payload: the header passes, verification rejects the records.
    let mut b = PacketBuilder::new(UUID, 0, 1);
    b.header.timestamp_begin = 100;
    b.header.timestamp_end = 150;
    b.record(100, ID_EMPTY, &[0; 8]);
    let bad = b.finish(4096);
    raw(&mut w, 0, &bad).unwrap();
    let sent: Vec<u8> = {
        let s = seen.lock().unwrap();
        assert_eq!(s.packets.len(), 2);
        assert_eq!(
            (s.packets[0].3, s.packets[1].3),
            (3, 1),
            "records of the chain"
        );
        s.packets.iter().flat_map(|p| p.2.clone()).collect()
    };
    assert_eq!(sent, std::fs::read(dir.join("stream_0")).unwrap());
    let v = w.verify().unwrap();
    assert_eq!((v.rejected.len(), v.rejected_sent), (1, 1));
    w.finish().unwrap();
}

/// Without files nothing can be read back: the fast path checks the records at once.
#[test]
fn raw_packets_without_files_are_checked_before_they_are_sent() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut w = TraceWriter::create_without_files(tmpdir("nofiles-raw"), &desc()).unwrap();
    w.set_sink(Box::new(Probe(seen.clone()))).unwrap();
    raw(&mut w, 0, &packet(0, 0, 3)).unwrap();
    let mut b = PacketBuilder::new(UUID, 0, 1);
    b.header.timestamp_begin = 100;
    b.header.timestamp_end = 150;
    b.record(100, ID_EMPTY, &[0; 8]);
    assert!(raw(&mut w, 0, &b.finish(4096)).is_err(), "records checked");
    let v = w.verify().unwrap();
    assert_eq!(v.events[&0].get(&ID_EMPTY), Some(&3));
    assert!(v.rejected.is_empty());
    assert_eq!(seen.lock().unwrap().packets.len(), 1);
    assert_eq!(w.finish().unwrap().events, 3);
}
