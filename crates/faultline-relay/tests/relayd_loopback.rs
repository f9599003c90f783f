//! Against a real `lttng-relayd` on loopback: a trace written with a relay sink arrives under
//! `HOST/SESSION/faultline/` as the local copy's files plus the relay's index files — each
//! stream an empty first packet then the local packets byte for byte but for
//! `packet_seq_num + 1` (streamer docs, "Streams"), the metadata with the `env` entries added
//! at the end as a second block — and babeltrace2 prints the same events from both.

mod relayd;

use faultline_ctf::PacketSink;
use faultline_ctf::{
    stats, EnvValue, PacketBuilder, PacketHeader, RecorderCounts, Trace, TraceWriter,
};
use faultline_relay::{RelayConfig, RelayStats, RelayStreamer, RelayUrl};
use faultline_testkit::ctf::{desc, encode, tmpdir, ALL, ID_ALL, ID_EMPTY, UUID};
use relayd::Relayd;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn packets(cpu: u32, n: u64, per: u64) -> Vec<Vec<u8>> {
    let payload = encode(ALL.fields, &faultline_testkit::ctf::all_values(cpu as u64)).unwrap();
    (0..n)
        .map(|k| {
            let mut b = PacketBuilder::new(UUID, cpu, k).lost(k, 0, 0);
            let t0 = 1000 + k * 1000;
            b.header.timestamp_begin = t0;
            b.header.timestamp_end = t0 + 999;
            for i in 0..per {
                b.record(
                    t0 + i,
                    if i % 3 == 0 { ID_EMPTY } else { ID_ALL },
                    if i % 3 == 0 { &[] } else { &payload },
                );
            }
            b.finish(8192)
        })
        .collect()
}

/// What the relay's copy of a local stream file is: an empty packet at `ts`, then every
/// packet with `packet_seq_num + 1`.
fn relay_form(local: &[u8], cpu: u32, ts: u64) -> Vec<u8> {
    let mut e = PacketBuilder::new(UUID, cpu, 0);
    e.header.timestamp_begin = ts;
    e.header.timestamp_end = ts;
    let mut out = e.finish(128);
    let mut at = 0;
    while at < local.len() {
        let mut h = PacketHeader::parse_slice(&local[at..]).unwrap();
        let len = (h.packet_size / 8) as usize;
        h.packet_seq_num += 1;
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(&local[at + 128..at + len]);
        at += len;
    }
    out
}

#[test]
fn relay_copy_equals_local_copy() {
    if !relayd::available() {
        eprintln!("skipped: lttng-relayd is not installed (scripts/install-deps.sh)");
        return;
    }
    let base = tmpdir("relay-loopback");
    std::fs::create_dir_all(&base).unwrap();
    let relay = Relayd::start(&base);
    let mut cfg = RelayConfig::new(RelayUrl::parse(&relay.url()).unwrap());
    cfg.hostname = "testhost".into();
    cfg.session_name = Some("loop".into());
    cfg.streams = 3; // stream_2 never gets a packet
    cfg.start_ts = 500;
    let (sink, handle) = RelayStreamer::start(cfg, UUID).expect("connect to the relay");
    let local = base.join("local");
    let mut w = TraceWriter::create(&local, &desc()).unwrap();
    w.set_sink(Box::new(sink)).unwrap();
    let mut events = 0;
    for k in 0..20u64 {
        for cpu in 0..2u32 {
            let p = &packets(cpu, 20, 30)[k as usize];
            w.write_packet(cpu, p).unwrap();
            events += 30;
        }
    }
    let rec = RecorderCounts {
        source: "test".into(),
        events: 1200,
        faulted: 3,
        ..RecorderCounts::default()
    };
    let c = w.finish_with_env(rec.to_env()).unwrap();
    assert_eq!(c.events, events);
    let st = handle.finish(Duration::from_secs(20));
    assert!(st.complete(), "{st:?}");
    assert_eq!(st.packets_sent, 40);
    assert_eq!(st.events_sent, events);
    assert_eq!(st.streams_closed, 4);
    assert!(st.chunk_closed, "{st:?}");
    assert_eq!(st.metadata_updates_skipped, 0, "{st:?}");
    assert!(
        st.relay_path.starts_with("testhost/loop-"),
        "{}",
        st.relay_path
    );
    // Give the relay a moment to write the last bytes.
    let dir = relay.out.join(&st.relay_path).join("faultline");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let same = (0..2u32).all(|cpu| {
            let f = format!("stream_{cpu}");
            let l = std::fs::read(local.join(&f)).unwrap();
            std::fs::read(dir.join(&f)).ok() == Some(relay_form(&l, cpu, 500))
        }) && std::fs::read(dir.join("stream_2")).ok() == Some(relay_form(&[], 2, 500));
        if same {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "relay copy in {} differs from {}",
            dir.display(),
            local.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for f in ["stream_0.idx", "stream_1.idx"] {
        let idx = std::fs::read(dir.join("index").join(f)).unwrap();
        // 16-byte header + 21 entries of 72 bytes (index 1.1).
        assert_eq!(idx.len(), 16 + 21 * 72, "{f}");
        assert_eq!(&idx[..4], &0xC1F1DCC1u32.to_be_bytes());
    }
    // Same events, losses and recorder counters (from the metadata's second env block).
    let (a, b) = (
        stats(&Trace::open(&dir).unwrap()).unwrap(),
        stats(&Trace::open(&local).unwrap()).unwrap(),
    );
    assert_eq!(
        (a.events_total, a.lost_total),
        (b.events_total, b.lost_total)
    );
    assert_eq!(a.lost_packets, b.lost_packets);
    assert!(a
        .recorder
        .as_ref()
        .is_some_and(|r| r.faulted == 3 && r.events == 1200));
    assert_eq!(a.recorder, b.recorder);
    let meta = std::fs::read_to_string(dir.join("metadata")).unwrap();
    assert_eq!(meta.matches("env {").count(), 2, "{meta}");
    assert!(matches!(
        Trace::open(&dir)
            .unwrap()
            .schema()
            .env
            .iter()
            .find(|(k, _)| k == "faultline_recorder_faulted"),
        Some((_, EnvValue::Int(3)))
    ));
    let remote = relayd::babeltrace(&dir).expect("babeltrace2 on the relay copy");
    let localb = relayd::babeltrace(&local).expect("babeltrace2 on the local copy");
    assert_eq!(remote.len(), localb.len());
    assert_eq!(remote, localb);
    assert!(remote.len() as u64 >= events);
}

#[test]
fn unreachable_relay_is_one_line() {
    let port = relayd::free_ports("127.0.0.1")[0];
    let cfg = RelayConfig::new(RelayUrl::parse(&format!("net://127.0.0.1:{port}")).unwrap());
    let e = RelayStreamer::start(cfg, UUID)
        .err()
        .expect("no relay there");
    let m = e.to_string();
    assert!(
        m.contains("cannot connect to the relay at 127.0.0.1:"),
        "{m}"
    );
    assert!(!m.contains('\n'));
}

/// A TCP forwarder to `target` for the data connection that holds everything the client sends
/// until `open` is set: the relay gets the indexes (control connection, direct) and answers
/// them, while the packets stay in the forwarder's socket buffers.
struct DataGate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl DataGate {
    fn start(target: u16) -> DataGate {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        std::thread::spawn(move || {
            let Ok((mut client, _)) = l.accept() else {
                return;
            };
            let Ok(mut relay) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            // Bounded: the test ends within a minute whatever happens.
            let until = Instant::now() + Duration::from_secs(60);
            while !o.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
            let _ = std::io::copy(&mut client, &mut relay);
        });
        DataGate { port, open }
    }
}

impl Drop for DataGate {
    /// Let the forwarder thread finish (its client is gone by then, so the copy ends).
    fn drop(&mut self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

/// Stream `n` packets of `per` events on CPU 0 through a gated data connection.
fn gated_session(
    relay: &Relayd,
    gate: &DataGate,
    name: &str,
    n: u64,
    per: u64,
) -> (faultline_relay::RelaySink, faultline_relay::RelayHandle) {
    let url = format!("net://127.0.0.1:{}:{}", relay.control, gate.port);
    let mut cfg = RelayConfig::new(RelayUrl::parse(&url).unwrap());
    cfg.hostname = "testhost".into();
    cfg.session_name = Some(name.into());
    cfg.streams = 1;
    cfg.start_ts = 500;
    cfg.confirm_interval = Duration::from_millis(50);
    let (mut sink, handle) = RelayStreamer::start(cfg, UUID).expect("connect to the relay");
    sink.metadata(&faultline_ctf::metadata(&desc()).unwrap());
    for p in packets(0, n, per) {
        let h = PacketHeader::parse_slice(&p).unwrap();
        sink.packet(0, &h, &p, per);
    }
    (sink, handle)
}

/// Poll the handle until `done` holds (bounded).
fn wait_for(handle: &faultline_relay::RelayHandle, what: &str, done: impl Fn(&RelayStats) -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let st = handle.stats();
        if done(&st) {
            return;
        }
        assert!(Instant::now() < until, "{what}: {st:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `events_sent` counts what was handed over (written to the data connection, index
/// answered); `events_confirmed` only what the relay said it wrote (`DATA_PENDING`). With the
/// data held back both differ; once it flows, the confirmations catch up while streaming, and
/// the relay's copy holds exactly the confirmed events.
#[test]
fn confirmed_counts_what_the_relay_wrote_not_what_was_sent() {
    if !relayd::available() {
        eprintln!("skipped: lttng-relayd is not installed (scripts/install-deps.sh)");
        return;
    }
    let base = tmpdir("relay-confirm");
    let relay = Relayd::start(&base);
    let gate = DataGate::start(relay.data);
    let (n, per) = (10u64, 30u64);
    let (mut sink, handle) = gated_session(&relay, &gate, "confirm", n, per);
    wait_for(&handle, "every packet sent", |s| s.packets_sent == n);
    // Several confirmation rounds with the data held: nothing is confirmed.
    std::thread::sleep(Duration::from_millis(300));
    let st = handle.stats();
    assert_eq!(
        (st.events_sent, st.events_confirmed),
        (n * per, 0),
        "{st:?}"
    );
    assert!(
        st.line().contains("10 of them (300 events) not confirmed"),
        "{}",
        st.line()
    );
    // The data flows: confirmed while streaming, before the end.
    gate.open.store(true, Ordering::Relaxed);
    wait_for(&handle, "every packet confirmed", |s| {
        s.packets_confirmed == n
    });
    sink.finish();
    let st = handle.finish(Duration::from_secs(20));
    assert!(st.complete(), "{st:?}");
    assert_eq!((st.events_sent, st.events_confirmed), (n * per, n * per));
    assert!(!st.line().contains("confirmed"), "{}", st.line());
    let dir = relay.out.join(&st.relay_path).join("faultline");
    let s = stats(&Trace::open(&dir).unwrap()).unwrap();
    assert_eq!(s.events_total, st.events_confirmed);
}

/// A relay that never gets the data: every packet is sent, none confirmed, and the end says
/// so instead of claiming the relay has the trace.
#[test]
fn unconfirmed_packets_are_reported_at_the_end() {
    if !relayd::available() {
        eprintln!("skipped: lttng-relayd is not installed (scripts/install-deps.sh)");
        return;
    }
    let base = tmpdir("relay-unconfirmed");
    let relay = Relayd::start(&base);
    let gate = DataGate::start(relay.data);
    let (n, per) = (10u64, 30u64);
    let (mut sink, handle) = gated_session(&relay, &gate, "unconfirmed", n, per);
    wait_for(&handle, "every packet sent", |s| s.packets_sent == n);
    sink.finish();
    let st = handle.finish(Duration::from_secs(1));
    assert!(!st.complete(), "{st:?}");
    assert!(st.error.is_some(), "{st:?}");
    assert!(!st.chunk_closed, "{st:?}");
    assert_eq!(
        (
            st.packets_sent,
            st.events_sent,
            st.packets_confirmed,
            st.events_confirmed
        ),
        (n, n * per, 0, 0),
        "{st:?}"
    );
    assert!(
        st.line().contains("10 of them (300 events) not confirmed"),
        "{}",
        st.line()
    );
}
