//! What the consumer loop costs per event: `Drain::poll` (take the sub-buffer in place, check
//! its header, `pwritev` it from the mapping, zero and release it) next to the bare copy-out
//! take (`Consumer::next_packet`: the copy out, the shared-memory checks and the record-chain
//! walk), measured in the same run, interleaved round by round; and the verification pass at
//! the end (`Drain::finish`: re-read every packet, check and count its records).
//!
//! `cargo run --release -p faultline --example drain_cost [-- ROUNDS]`
//!
//! Each round fills a fresh channel (CPU 0, 64 sub-buffers of 64 KiB, discard mode) with
//! `seq { thread: u32, seq: u64, pad: [u8; 24] }` events (56-byte records) until it is full,
//! then drains it. Printed: median ns per event and MB/s of ring bytes, spread, and the ratio.

use faultline::drain::{Drain, DrainConfig};
use faultline_ctf::{ClockDesc, EnvDesc, TraceDesc, TraceWriter};
use faultline_ringbuf::{Channel, ChannelConfig, Consumer, Mode, SyncMode};
use faultline_schema::{EventDesc, FieldDesc, FieldType};
use std::sync::Arc;
use std::time::Instant;

const SEQ: EventDesc = EventDesc {
    provider: "bench",
    name: "seq",
    fields: &[
        FieldDesc {
            name: "thread",
            ty: FieldType::U32,
        },
        FieldDesc {
            name: "seq",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "pad",
            ty: FieldType::Bytes,
        },
    ],
};

fn filled() -> (Arc<Channel>, u64) {
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 64 * 1024,
        num_subbuf: 64,
        mode: Mode::Discard,
        sync: SyncMode::Atomic,
        ..Default::default()
    })
    .expect("channel");
    let mut payload = [0u8; 40];
    payload[12..16].copy_from_slice(&24u32.to_le_bytes());
    let mut n = 0u64;
    while let Ok(mut r) = ch.reserve(0, payload.len()) {
        payload[4..12].copy_from_slice(&n.to_le_bytes());
        r.payload().copy_from_slice(&payload);
        r.commit();
        n += 1;
    }
    let _ = ch.flush_all(false);
    (Arc::new(ch), n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    faultline_rseq::pin_to_cpu(0).expect("pin to CPU 0");
    let base = std::env::temp_dir().join(format!("faultline-drain-cost-{}", std::process::id()));
    let (mut take, mut drain, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes_per_event = 0.0;
    for round in 0..rounds {
        // Bare take.
        let (ch, n) = filled();
        let cons = Consumer::new(&ch);
        let mut buf = Vec::new();
        let mut bytes = 0u64;
        let t = Instant::now();
        while let Ok(Some(p)) = cons.next_packet(0, &mut buf) {
            bytes += p.content_len as u64;
        }
        take.push(t.elapsed().as_nanos() as f64 / n as f64);
        bytes_per_event = bytes as f64 / n as f64;
        // The drain into a trace.
        let (ch, n) = filled();
        let dir = base.join(round.to_string());
        let desc = TraceDesc {
            uuid: ch.uuid(),
            clock: ClockDesc {
                name: "monotonic".into(),
                freq_hz: 1_000_000_000,
                offset_s: 0,
                offset_ticks: 0,
                description: "bench".into(),
            },
            env: EnvDesc {
                hostname: "bench".into(),
                procname: "drain_cost".into(),
                tracer_major: 0,
                tracer_minor: 1,
                extra: vec![],
            },
            events: vec![(0, SEQ)],
        };
        let w = TraceWriter::create(&dir, &desc).expect("trace");
        let cfg = DrainConfig {
            verbose: false,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch, w, cfg);
        let t = Instant::now();
        while d.poll() > 0 {}
        drain.push(t.elapsed().as_nanos() as f64 / n as f64);
        let (st, fin) = d.finish();
        fin.expect("finish");
        assert_eq!(st.events_written, n, "every event written");
        verify.push(st.verify_cpu_ns as f64 / n as f64);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&base);
    let spread = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        format!("{lo:.1}..{hi:.1}")
    };
    let (mt, md) = (median(&mut take), median(&mut drain));
    let mbs = |ns: f64| bytes_per_event / ns * 1e3;
    println!("drain cost, {rounds} rounds, {bytes_per_event:.1} ring bytes per event");
    println!(
        "  take only (Consumer::next_packet)   {mt:6.1} ns/event  {:7.0} MB/s  spread {}",
        mbs(mt),
        spread(&take)
    );
    println!(
        "  Drain::poll (take, check, write)    {md:6.1} ns/event  {:7.0} MB/s  spread {}",
        mbs(md),
        spread(&drain)
    );
    let mv = median(&mut verify);
    println!(
        "  verification at finish (CPU time)   {mv:6.1} ns/event  {:7.0} MB/s  spread {}",
        mbs(mv),
        spread(&verify)
    );
    println!("  ratio drain / take: {:.2}", md / mt);
}
