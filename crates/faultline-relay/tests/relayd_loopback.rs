//! Against a real `lttng-relayd` on loopback: a trace written with a relay sink arrives under
//! `HOST/SESSION/faultline/` as the local copy's files plus the relay's index files — each
//! stream an empty first packet then the local packets byte for byte but for
//! `packet_seq_num + 1` (streamer docs, "Streams"), the metadata with the `env` entries added
//! at the end as a second block — and babeltrace2 prints the same events from both.

mod relayd;

use faultline_ctf::{
    stats, EnvValue, PacketBuilder, PacketHeader, RecorderCounts, Trace, TraceWriter,
};
use faultline_relay::{RelayConfig, RelayStreamer, RelayUrl};
use faultline_testkit::ctf::{desc, encode, tmpdir, ALL, ID_ALL, ID_EMPTY, UUID};
use relayd::Relayd;
use std::time::Duration;

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
    let _ = std::fs::remove_dir_all(&base);
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
