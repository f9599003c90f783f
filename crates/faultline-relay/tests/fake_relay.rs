//! The streamer against a fake relay on loopback that records what it receives: the command
//! sequence and payloads, beacons of idle streams, and the faults (relay gone mid-run, relay
//! that stops reading) — the sink never blocks and every packet is accounted for.

use faultline_ctf::layout::PacketHeader;
use faultline_ctf::{PacketBuilder, PacketSink};
use faultline_relay::proto::{self, Cmd};
use faultline_relay::{RelayConfig, RelayStreamer, RelayUrl};
use faultline_testkit::ctf::UUID;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Cmd(u32, Vec<u8>),
    Data(proto::DataHeader, Vec<u8>),
}

#[derive(Default)]
struct Behaviour {
    /// Close both connections after this many data packets.
    die_after: Option<u64>,
    /// Never read the data connection.
    stall_data: bool,
}

struct Fake {
    port_c: u16,
    port_d: u16,
    log: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

fn reply_for(cmd: u32, handle: &AtomicU64) -> Option<Vec<u8>> {
    let ok = proto::LTTNG_OK.to_be_bytes().to_vec();
    Some(match Cmd::from_u32(cmd) {
        Some(Cmd::Version) => proto::version(2, 13),
        Some(Cmd::CreateSession) => {
            let path = b"h/s-20260101-000000\0";
            let mut v = 1u64.to_be_bytes().to_vec();
            v.extend_from_slice(&ok);
            v.extend_from_slice(&(path.len() as u32).to_be_bytes());
            v.extend_from_slice(path);
            v
        }
        Some(Cmd::AddStream) => {
            let mut v = (handle.fetch_add(1, Ordering::Relaxed) + 100)
                .to_be_bytes()
                .to_vec();
            v.extend_from_slice(&ok);
            v
        }
        Some(Cmd::SendMetadata) => return None,
        Some(Cmd::DataPending) => 0u32.to_be_bytes().to_vec(),
        Some(Cmd::CloseTraceChunk) => {
            let mut v = ok;
            v.extend_from_slice(&2u32.to_be_bytes());
            v.extend_from_slice(b"x\0");
            v
        }
        _ => ok,
    })
}

impl Fake {
    fn start(b: Behaviour) -> Fake {
        let lc = TcpListener::bind("127.0.0.1:0").unwrap();
        let ld = TcpListener::bind("127.0.0.1:0").unwrap();
        let log: Arc<Mutex<Vec<Got>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (port_c, port_d) = (
            lc.local_addr().unwrap().port(),
            ld.local_addr().unwrap().port(),
        );
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let (log, stop, conns, packets) =
                (log.clone(), stop.clone(), conns.clone(), packets.clone());
            let die_after = b.die_after;
            std::thread::spawn(move || {
                let Ok((mut s, _)) = lc.accept() else { return };
                conns.lock().unwrap().push(s.try_clone().unwrap());
                let handle = AtomicU64::new(0);
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut hdr = [0u8; proto::CMD_HDR_LEN];
                while !stop.load(Ordering::Relaxed) {
                    if die_after.is_some_and(|n| packets.load(Ordering::Relaxed) >= n) {
                        for c in conns.lock().unwrap().iter() {
                            let _ = c.shutdown(std::net::Shutdown::Both);
                        }
                        return;
                    }
                    match s.read_exact(&mut hdr) {
                        Ok(()) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue
                        }
                        Err(_) => return,
                    }
                    let h = proto::parse_cmd_header(&hdr);
                    let mut p = vec![0u8; h.data_size as usize];
                    s.set_read_timeout(None).unwrap();
                    if s.read_exact(&mut p).is_err() {
                        return;
                    }
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    log.lock().unwrap().push(Got::Cmd(h.cmd, p));
                    if let Some(r) = reply_for(h.cmd, &handle) {
                        if s.write_all(&r).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok((mut s, _)) = ld.accept() else { return };
                conns.lock().unwrap().push(s.try_clone().unwrap());
                if b.stall_data {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
                let mut hdr = [0u8; proto::DATA_HDR_LEN];
                while s.read_exact(&mut hdr).is_ok() {
                    let h = proto::parse_data_header(&hdr);
                    let mut p = vec![0u8; h.data_size as usize];
                    if s.read_exact(&mut p).is_err() {
                        return;
                    }
                    log.lock().unwrap().push(Got::Data(h, p));
                    packets.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Fake {
            port_c,
            port_d,
            log,
            stop,
        }
    }

    fn cfg(&self) -> RelayConfig {
        let mut c = RelayConfig::new(
            RelayUrl::parse(&format!("net://127.0.0.1:{}:{}", self.port_c, self.port_d)).unwrap(),
        );
        c.hostname = "h".into();
        c.session_name = Some("s".into());
        // No confirmation round while streaming: the command sequences checked here are
        // exact (the one at the end still confirms).
        c.confirm_interval = Duration::from_secs(3600);
        c
    }

    fn cmds(&self) -> Vec<(u32, Vec<u8>)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| match g {
                Got::Cmd(c, p) => Some((*c, p.clone())),
                _ => None,
            })
            .collect()
    }

    fn data(&self) -> Vec<(proto::DataHeader, Vec<u8>)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| match g {
                Got::Data(h, p) => Some((*h, p.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn packet(cpu: u32, seq: u64, size: usize) -> (PacketHeader, Vec<u8>) {
    let mut b = PacketBuilder::new(UUID, cpu, seq).lost(seq, 0, 0);
    b.header.timestamp_begin = 100 * seq;
    b.header.timestamp_end = 100 * seq + 50;
    b.record(100 * seq, 1, &[]);
    let p = b.finish(size);
    (PacketHeader::parse_slice(&p).unwrap(), p)
}

#[test]
fn command_sequence_data_and_indexes() {
    let fake = Fake::start(Behaviour::default());
    let (mut sink, handle) = RelayStreamer::start(fake.cfg(), UUID).unwrap();
    assert_eq!(handle.stats().relay_path, "h/s-20260101-000000");
    sink.metadata("/* CTF 1.8 */\nA");
    sink.metadata("/* CTF 1.8 */\nAB"); // an extension: only "B" is sent
    sink.metadata("something else"); // not an extension: skipped, counted
    for seq in 0..3 {
        for cpu in [1u32, 0] {
            let (h, p) = packet(cpu, seq, 512);
            sink.packet(cpu, &h, &p, 1);
        }
    }
    sink.finish();
    let st = handle.finish(Duration::from_secs(10));
    assert!(st.complete(), "{st:?}");
    assert_eq!(
        (st.packets_sent, st.events_sent, st.bytes_sent),
        (6, 6, 6 * 512)
    );
    // Confirmed by the final DATA_PENDING answers ("nothing pending").
    assert_eq!((st.packets_confirmed, st.events_confirmed), (6, 6));
    assert_eq!(st.metadata_updates_skipped, 1);
    assert_eq!(st.metadata_bytes, 30);
    let cmds = fake.cmds();
    let seq: Vec<u32> = cmds.iter().map(|(c, _)| *c).collect();
    // version, session, chunk, metadata stream; metadata twice; then per new CPU stream
    // (none announced at the start here): add + streams_sent + the index of its empty first
    // packet + the packet's index; data pending of the 2 data streams, rotation to no chunk,
    // chunk closed, close the streams and the metadata stream.
    assert_eq!(
        seq,
        vec![
            5, 2, 19, 1, 6, 6, 1, 16, 13, 13, 1, 16, 13, 13, 13, 13, 13, 13, 8, 8, 18, 20, 7, 7, 7
        ],
        "{seq:?}"
    );
    assert!(st.chunk_closed);
    let cs = proto::parse_create_session(&cmds[1].1).unwrap();
    assert_eq!((cs.session_name.as_str(), cs.hostname.as_str()), ("s", "h"));
    assert!(!cs.name_contains_creation_time && cs.live_timer_us > 0);
    assert_ne!(cs.sender_uuid, [0; 16]);
    assert_eq!(
        proto::parse_add_stream(&cmds[3].1).unwrap(),
        ("metadata".into(), "faultline".into())
    );
    assert_eq!(
        &cmds[4].1[..8],
        &100u64.to_be_bytes(),
        "metadata stream handle"
    );
    assert_eq!(&cmds[4].1[12..], b"/* CTF 1.8 */\nA");
    assert_eq!(
        &cmds[5].1[12..],
        b"/* CTF 1.8 */\nB",
        "appends carry the signature"
    );
    assert_eq!(
        proto::parse_add_stream(&cmds[6].1).unwrap().0,
        "stream_1",
        "first packet's CPU first"
    );
    // Indexes: each stream's empty first packet (at its first packet's begin time), then
    // sizes from the header, the CPU as stream instance, per-stream net_seq_num, and the
    // packet numbered one further.
    let all: Vec<proto::Index> = cmds
        .iter()
        .filter(|(c, _)| *c == 13)
        .map(|(_, p)| proto::parse_index(p).unwrap())
        .collect();
    assert_eq!(all.len(), 8);
    for (k, cpu) in [(0usize, 1u64), (2, 0)] {
        let e = &all[k];
        assert_eq!((e.net_seq_num, e.packet_seq_num), (0, 0));
        assert_eq!((e.packet_size, e.content_size), (128 * 8, 128 * 8));
        assert_eq!((e.timestamp_begin, e.timestamp_end), (0, 0));
        assert_eq!((e.events_discarded, e.stream_instance_id), (0, cpu));
    }
    let idx: Vec<proto::Index> = all
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 0 && *k != 2)
        .map(|(_, i)| *i)
        .collect();
    for (k, i) in idx.iter().enumerate() {
        let (seq, cpu) = ((k / 2) as u64, if k % 2 == 0 { 1 } else { 0 });
        let (h, _) = packet(cpu, seq, 512);
        assert_eq!(i.relay_stream, if cpu == 1 { 101 } else { 102 });
        assert_eq!(i.net_seq_num, seq + 1);
        assert_eq!(i.packet_size, 512 * 8);
        assert_eq!(i.content_size, h.content_size);
        assert_eq!(
            (i.timestamp_begin, i.timestamp_end),
            (100 * seq, 100 * seq + 50)
        );
        assert_eq!(i.events_discarded, seq);
        assert_eq!(
            (i.stream_instance_id, i.packet_seq_num),
            (cpu as u64, seq + 1)
        );
    }
    // Data: the empty first packets, then the packets with only packet_seq_num changed
    // (+1), with the same (stream, net_seq_num) as their index.
    let data = fake.data();
    assert_eq!(data.len(), 8);
    for (k, (h, p)) in data.iter().enumerate() {
        assert_eq!(
            (h.stream, h.net_seq_num),
            (all[k].relay_stream, all[k].net_seq_num)
        );
        if k == 0 || k == 2 {
            let e = PacketHeader::parse_slice(p).unwrap();
            assert_eq!(p.len(), 128);
            assert_eq!((e.uuid, e.packet_seq_num, e.content_size), (UUID, 0, 1024));
            continue;
        }
        let j = k - if k < 2 { 1 } else { 2 };
        let (seq, cpu) = ((j / 2) as u64, if j % 2 == 0 { 1 } else { 0 });
        let (mut eh, mut ep) = packet(cpu, seq, 512);
        eh.packet_seq_num += 1;
        ep[..128].copy_from_slice(&eh.encode());
        assert_eq!(p, &ep);
    }
    // The end: every data stream rotated after its last packet, and the metadata stream.
    let rot: Vec<&Vec<u8>> = cmds
        .iter()
        .filter(|(c, _)| *c == 18)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        rot,
        vec![&proto::rotate_streams_to_none(&[
            (102, 4),
            (101, 4),
            (100, 0)
        ])]
    );
    // Close: last net_seq_num of each data stream (by CPU), then the metadata stream.
    let closes: Vec<Vec<u8>> = cmds
        .iter()
        .filter(|(c, _)| *c == 7)
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(closes[0], proto::close_stream(102, 3));
    assert_eq!(closes[1], proto::close_stream(101, 3));
    assert_eq!(closes[2], proto::close_stream(100, 0));
}

#[test]
fn every_buffer_has_a_stream_and_an_empty_packet_from_the_start() {
    let fake = Fake::start(Behaviour::default());
    let mut cfg = fake.cfg();
    cfg.streams = 3;
    cfg.start_ts = 7;
    let (mut sink, handle) = RelayStreamer::start(cfg, UUID).unwrap();
    let (h, p) = packet(1, 0, 256);
    sink.packet(1, &h, &p, 1);
    sink.finish();
    let st = handle.finish(Duration::from_secs(10));
    assert!(st.complete() && st.chunk_closed, "{st:?}");
    let cmds = fake.cmds();
    let seq: Vec<u32> = cmds.iter().map(|(c, _)| *c).collect();
    // Three streams added and published at once, their empty packets, then the packet of
    // CPU 1 (no stream added for it).
    assert_eq!(
        seq,
        vec![5, 2, 19, 1, 1, 1, 1, 16, 13, 13, 13, 13, 8, 8, 8, 18, 20, 7, 7, 7, 7],
        "{seq:?}"
    );
    let names: Vec<String> = (4..7)
        .map(|k| proto::parse_add_stream(&cmds[k].1).unwrap().0)
        .collect();
    assert_eq!(names, ["stream_0", "stream_1", "stream_2"]);
    let idx: Vec<proto::Index> = cmds
        .iter()
        .filter(|(c, _)| *c == 13)
        .map(|(_, p)| proto::parse_index(p).unwrap())
        .collect();
    for (cpu, i) in idx[..3].iter().enumerate() {
        assert_eq!(i.relay_stream, 101 + cpu as u64);
        assert_eq!((i.timestamp_begin, i.timestamp_end), (7, 7));
        assert_eq!((i.net_seq_num, i.packet_seq_num), (0, 0));
        assert_eq!(i.stream_instance_id, cpu as u64);
    }
    assert_eq!(
        (
            idx[3].relay_stream,
            idx[3].net_seq_num,
            idx[3].packet_seq_num
        ),
        (102, 1, 1)
    );
    // Idle streams can now be declared idle: each got a packet.
    let rot = &cmds.iter().find(|(c, _)| *c == 18).unwrap().1;
    assert_eq!(
        rot,
        &proto::rotate_streams_to_none(&[(101, 1), (102, 2), (103, 1), (100, 0)])
    );
}

#[test]
fn idle_streams_get_beacons_at_the_consumers_flush_marks() {
    let fake = Fake::start(Behaviour::default());
    let mut cfg = fake.cfg();
    cfg.beacon_interval = Duration::from_millis(20);
    let (mut sink, handle) = RelayStreamer::start(cfg, UUID).unwrap();
    let (h, p) = packet(0, 0, 256); // ends at 50
    sink.packet(0, &h, &p, 1);
    // A mark not after the packet's end promises nothing new: no beacon for it.
    sink.flushed(40);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(handle.stats().beacons, 0);
    let until = Instant::now() + Duration::from_secs(5);
    let mut mark = 1000;
    while handle.stats().beacons < 2 && Instant::now() < until {
        sink.flushed(mark);
        mark += 1000;
        std::thread::sleep(Duration::from_millis(30));
    }
    let st = handle.finish(Duration::from_secs(5));
    assert!(st.beacons >= 2, "{st:?}");
    let beacons: Vec<proto::Index> = fake
        .cmds()
        .iter()
        .filter(|(c, _)| *c == 13)
        .map(|(_, p)| proto::parse_index(p).unwrap())
        .filter(|i| i.packet_size == 0)
        .collect();
    assert!(beacons.len() >= 2);
    let mut last = 50;
    for b in &beacons {
        assert_eq!(b.relay_stream, 101);
        assert!(b.timestamp_end > last, "beacons move forward: {beacons:?}");
        assert_eq!(b.timestamp_end % 1000, 0, "at a mark: {beacons:?}");
        last = b.timestamp_end;
    }
    assert!(last < mark, "never ahead of the consumer's marks");
}

#[test]
fn relay_gone_mid_run_counts_the_loss_and_never_blocks() {
    let fake = Fake::start(Behaviour {
        die_after: Some(5),
        ..Behaviour::default()
    });
    let mut cfg = fake.cfg();
    cfg.io_timeout = Duration::from_secs(2);
    let (mut sink, handle) = RelayStreamer::start(cfg, UUID).unwrap();
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    let n = 400u64;
    for seq in 0..n {
        let (h, p) = packet(0, seq, 4096);
        let t = Instant::now();
        sink.packet(0, &h, &p, 3);
        slowest = slowest.max(t.elapsed());
        if seq % 20 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sink.finish();
    let st = handle.finish(Duration::from_secs(10));
    assert!(
        slowest < Duration::from_millis(100),
        "a packet call took {slowest:?}"
    );
    assert!(st.error.is_some(), "{st:?}");
    assert!(st.packets_sent >= 1 && st.packets_sent < n, "{st:?}");
    assert_eq!(
        st.packets_sent + st.packets_lost + st.packets_dropped,
        n,
        "every packet accounted for: {st:?}"
    );
    assert_eq!(st.events_sent + st.events_lost + st.events_dropped, 3 * n);
    assert!(st.line().contains("lost"), "{}", st.line());
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[test]
fn relay_that_stops_reading_makes_drops_not_waits() {
    let fake = Fake::start(Behaviour {
        stall_data: true,
        ..Behaviour::default()
    });
    let mut cfg = fake.cfg();
    cfg.queue_bytes = 256 * 1024;
    cfg.io_timeout = Duration::from_secs(1);
    let (mut sink, handle) = RelayStreamer::start(cfg, UUID).unwrap();
    let n = 2000u64;
    let t0 = Instant::now();
    for seq in 0..n {
        let (h, p) = packet(0, seq, 16384);
        sink.packet(0, &h, &p, 1);
    }
    let took = t0.elapsed();
    sink.finish();
    let st = handle.finish(Duration::from_secs(3));
    // 32 MiB offered to a relay that takes at most its socket buffers: most is dropped or
    // lost, counted; the calls never waited for the network.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(st.packets_dropped > 0, "{st:?}");
    assert_eq!(
        st.packets_sent + st.packets_lost + st.packets_dropped,
        n,
        "{st:?}"
    );
    assert!(!st.complete());
    drop(fake);
}
