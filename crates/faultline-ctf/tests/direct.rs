//! Direct I/O on the writer's fast path (`TraceWriter::set_direct_io`,
//! `TraceWriter::write_packets_raw`): consecutive page-aligned packets go to the stream in one
//! write straight from their memory, padded to 4 KiB on disk; the header on disk is the
//! caller's checked copy, not the bytes in memory; a rejected packet in the middle is left
//! out; the trace reads back exactly (our reader, and babeltrace2 when installed). On a file
//! system without `O_DIRECT` the same calls take the buffered path (8-byte padding).

mod common;

use common::*;
use faultline_ctf::layout::PACKET_HEADER_SIZE;
use faultline_ctf::{Filter, PacketBuilder, RawPacket, Trace, TraceWriter, DIRECT_ALIGN};

const SUB: usize = 16 * 1024;

/// Page-aligned memory holding `n` sub-buffers, like a ring buffer mapping.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

fn mapping(n: usize) -> Vec<Page> {
    (0..n * SUB / 4096).map(|_| Page([0; 4096])).collect()
}

/// A packet of `records` empty events with sequence `seq`, written into `at`.
fn fill(at: &mut [u8], seq: u64, records: u64) -> [u8; PACKET_HEADER_SIZE] {
    let t0 = 10_000 * (seq + 1);
    let mut b = PacketBuilder::new(UUID, 0, seq);
    b.header.timestamp_begin = t0;
    b.header.timestamp_end = t0 + records + 1;
    for k in 0..records {
        b.record(t0 + k + 1, ID_EMPTY, &[]);
    }
    let p = b.finish(SUB);
    at[..p.len()].copy_from_slice(&p);
    p[..PACKET_HEADER_SIZE].try_into().unwrap()
}

#[test]
fn direct_writes_several_packets_at_once_and_reads_back() {
    let dir = tmpdir("direct");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    w.set_direct_io(true);
    let mut mem = mapping(4);
    let base = mem.as_mut_ptr() as *mut u8;
    // SAFETY: `mem` is 4 * SUB bytes, alive for the test, no other reference to it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(base, 4 * SUB) };
    // Packet sizes: 300 records (> 4 KiB of content), 10 (less than a block), 700.
    let counts = [300u64, 10, 700, 5];
    let mut headers = Vec::new();
    for (k, &n) in counts.iter().enumerate() {
        headers.push(fill(&mut bytes[k * SUB..(k + 1) * SUB], k as u64, n));
    }
    // What the writer must write is the header copy: the bytes in memory differ.
    bytes[0] ^= 0xff;
    // The third packet's header copy is invalid (its sequence number goes back).
    let mut bad = headers[2];
    let at = faultline_ctf::layout::off::PACKET_SEQ_NUM;
    bad[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    let raw = |k: usize, h: [u8; PACKET_HEADER_SIZE]| RawPacket {
        header: h,
        // SAFETY: inside `mem`.
        data: unsafe { base.add(k * SUB) },
        available: SUB,
    };
    let packets = [
        raw(0, headers[0]),
        raw(1, headers[1]),
        raw(2, bad),
        raw(3, headers[3]),
    ];
    // SAFETY: every packet's SUB bytes are readable for the whole call.
    let r = unsafe { w.write_packets_raw(0, &packets) };
    assert_eq!(r.len(), 4);
    assert!(r[0].is_ok() && r[1].is_ok() && r[3].is_ok(), "{r:?}");
    assert!(r[2].is_err(), "{r:?}");
    let v = w.verify().unwrap();
    assert!(v.rejected.is_empty(), "{:?}", v.rejected);
    assert_eq!(v.events[&0][&ID_EMPTY], 300 + 10 + 5);
    let len = std::fs::metadata(dir.join("stream_0")).unwrap().len();
    let sizes: Vec<u64> = r.iter().filter_map(|x| x.as_ref().ok().copied()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), len);
    let direct = sizes.iter().all(|s| s % DIRECT_ALIGN as u64 == 0);
    if direct {
        // 300 empty events: 128 + 300 * 16 bytes, padded to 8 KiB; the others to 4 KiB.
        assert_eq!(sizes, vec![8192, 4096, 4096]);
    } else {
        eprintln!("no O_DIRECT here: buffered path ({sizes:?})");
        assert!(sizes.iter().all(|s| s % 8 == 0));
    }
    w.finish().unwrap();
    let t = Trace::open(&dir).unwrap();
    let evs: Vec<_> = t
        .events(&Filter::default())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(evs.len(), 315);
    if let Ok(out) = std::process::Command::new("babeltrace2").arg(&dir).output() {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(lines, 315, "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Unaligned memory (a sub-buffer smaller than a page, or a plain Vec) keeps the stream on
/// the buffered path with 8-byte padding.
#[test]
fn unaligned_packets_stay_buffered() {
    let dir = tmpdir("direct-unaligned");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    w.set_direct_io(true);
    let mut b = PacketBuilder::new(UUID, 0, 0);
    b.header.timestamp_begin = 1;
    b.header.timestamp_end = 3;
    b.record(2, ID_EMPTY, &[]);
    let p = b.finish(1024);
    let hdr: [u8; PACKET_HEADER_SIZE] = p[..PACKET_HEADER_SIZE].try_into().unwrap();
    // SAFETY: `p` is a live buffer of p.len() bytes.
    let n = unsafe { w.write_packet_raw(0, &hdr, p.as_ptr(), p.len()) }.unwrap();
    assert_eq!(n, (128u64 + 15).next_multiple_of(8)); // one empty extended record, rounded
    w.verify().unwrap();
    w.finish().unwrap();
    assert_eq!(
        Trace::open(&dir)
            .unwrap()
            .events(&Filter::default())
            .count(),
        1
    );
}

/// Descriptors of this process open on `path` with `O_DIRECT` (from `/proc/self/fdinfo`).
fn direct_descriptors(path: &std::path::Path) -> usize {
    let want = std::fs::canonicalize(path).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(e.path()).ok().as_deref() != Some(want.as_path()) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        if flags & libc::O_DIRECT as u32 != 0 {
            n += 1;
        }
    }
    n
}

/// `stop_direct_io` (the end of a recording nobody else can write any more): the stream's
/// direct descriptor is closed, later packets go through the page cache with the stream's
/// 4 KiB padding kept, the verification reads every packet back, and `set_clock` replaces the
/// metadata's clock in the final write.
#[test]
fn stop_direct_io_then_buffered_packets_and_a_new_clock() {
    let dir = tmpdir("direct-stop");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    w.set_direct_io(true);
    let mut mem = mapping(3);
    let base = mem.as_mut_ptr() as *mut u8;
    // SAFETY: `mem` is 3 * SUB bytes, alive for the test, no other reference to it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(base, 3 * SUB) };
    let counts = [300u64, 10, 20];
    let headers: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(k, &n)| fill(&mut bytes[k * SUB..(k + 1) * SUB], k as u64, n))
        .collect();
    let raw = |k: usize| RawPacket {
        header: headers[k],
        // SAFETY: inside `mem`.
        data: unsafe { base.add(k * SUB) },
        available: SUB,
    };
    // SAFETY: every packet's SUB bytes are readable for the whole call.
    let r = unsafe { w.write_packets_raw(0, &[raw(0), raw(1)]) };
    let sizes: Vec<u64> = r.iter().map(|x| *x.as_ref().unwrap()).collect();
    let stream = dir.join("stream_0");
    let direct = sizes.iter().all(|s| s % DIRECT_ALIGN as u64 == 0);
    if direct {
        assert_eq!(direct_descriptors(&stream), 1);
    } else {
        eprintln!("no O_DIRECT here: buffered path ({sizes:?})");
    }
    w.stop_direct_io();
    assert_eq!(direct_descriptors(&stream), 0);
    // SAFETY: as above.
    let r = unsafe { w.write_packets_raw(0, &[raw(2)]) };
    let last = *r[0].as_ref().unwrap();
    if direct {
        assert_eq!(last, 4096, "the stream's padding is kept");
    }
    let v = w.verify().unwrap();
    assert!(v.rejected.is_empty(), "{:?}", v.rejected);
    assert_eq!(v.events[&0][&ID_EMPTY], 330);
    let mut clock = desc().clock;
    clock.freq_hz = 2_299_999_882;
    w.set_clock(clock).unwrap();
    w.finish_with_env(Vec::new()).unwrap();
    let meta = std::fs::read_to_string(dir.join("metadata")).unwrap();
    assert!(meta.contains("freq = 2299999882;"), "{meta}");
    let t = Trace::open(&dir).unwrap();
    assert_eq!(t.events(&Filter::default()).count(), 330);
    if let Ok(out) = std::process::Command::new("babeltrace2").arg(&dir).output() {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 330);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
