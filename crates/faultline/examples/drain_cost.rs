//! What the consumer loop costs per event, CPU time of the draining thread
//! (`DrainStats::consumer_cpu_ns`): `Drain::poll` (take sub-buffers in place, check their
//! headers, write them from the mapping, zero and release them) with direct I/O and with
//! buffered writes, one sub-buffer per write and up to four, next to the bare copy-out take
//! (`Consumer::next_packet`: the copy out, the shared-memory checks and the record-chain walk),
//! measured in the same run, interleaved round by round; and the verification pass at the end
//! (`Drain::finish`: re-read every packet, check and count its records).
//!
//! `cargo run --release -p faultline --example drain_cost [-- ROUNDS]`
//!
//! Each round fills a fresh channel (CPU 0, 64 sub-buffers of 256 KiB — the default
//! sub-buffer size — discard mode) with `int { seq: u64 }` events (24-byte records, the
//! benchmark's int event) until it is full, then drains it into a trace in the temporary
//! directory. Printed: median ns per event and MB/s of ring bytes, and the spread.

use faultline::drain::{Drain, DrainConfig};
use faultline_ctf::{ClockDesc, EnvDesc, TraceDesc, TraceWriter};
use faultline_ringbuf::{Channel, ChannelConfig, Consumer, Mode, SyncMode};
use faultline_schema::{EventDesc, FieldDesc, FieldType};
use std::sync::Arc;

const SEQ: EventDesc = EventDesc {
    provider: "bench",
    name: "int",
    fields: &[FieldDesc {
        name: "seq",
        ty: FieldType::U64,
    }],
};

fn filled() -> (Arc<Channel>, u64) {
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 256 * 1024,
        num_subbuf: 64,
        mode: Mode::Discard,
        sync: SyncMode::Atomic,
        ..Default::default()
    })
    .expect("channel");
    let mut n = 0u64;
    while let Ok(mut r) = ch.reserve(0, 8) {
        r.payload().copy_from_slice(&n.to_le_bytes());
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

/// Drain variants: (name, direct I/O, sub-buffers per write).
const VARIANTS: [(&str, bool, u32); 4] = [
    ("direct, up to 4 per write", true, 4),
    ("direct, 1 per write", true, 1),
    ("buffered, up to 4 per write", false, 4),
    ("buffered, 1 per write", false, 1),
];

fn desc(ch: &Channel) -> TraceDesc {
    TraceDesc {
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
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    faultline_rseq::pin_to_cpu(0).expect("pin to CPU 0");
    // Removed at the end, also when a round panics.
    let base = faultline_testkit::TmpDir::new("drain-cost");
    let mut take = Vec::new();
    let mut drain: Vec<Vec<f64>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut verify: Vec<Vec<f64>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut bytes_per_event = 0.0;
    for round in 0..rounds {
        // Bare take.
        let (ch, n) = filled();
        let cons = Consumer::new(&ch);
        let mut buf = Vec::new();
        let mut bytes = 0u64;
        let t0 = faultline::drain::thread_cpu_ns();
        while let Ok(Some(p)) = cons.next_packet(0, &mut buf) {
            bytes += p.content_len as u64;
        }
        take.push((faultline::drain::thread_cpu_ns() - t0) as f64 / n as f64);
        bytes_per_event = bytes as f64 / n as f64;
        for (k, &(_, direct_io, batch)) in VARIANTS.iter().enumerate() {
            let (ch, n) = filled();
            let dir = base.join(format!("{round}-{k}"));
            let w = TraceWriter::create(&dir, &desc(&ch)).expect("trace");
            let cfg = DrainConfig {
                verbose: false,
                direct_io,
                batch,
                ..DrainConfig::default()
            };
            let mut d = Drain::new(ch, w, cfg);
            while d.poll() > 0 {}
            let (st, fin) = d.finish();
            fin.expect("finish");
            assert_eq!(st.events_written, n, "every event written");
            // The verification pass is part of the thread's time: shown apart.
            drain[k].push(st.consumer_cpu_ns.saturating_sub(st.verify_cpu_ns) as f64 / n as f64);
            verify[k].push(st.verify_cpu_ns as f64 / n as f64);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let spread = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        format!("{lo:.1}..{hi:.1}")
    };
    let mbs = |ns: f64| bytes_per_event / ns * 1e3;
    println!(
        "drain cost (consumer thread CPU time), {rounds} rounds, {bytes_per_event:.1} ring \
         bytes per event"
    );
    let mt = median(&mut take);
    println!(
        "  take only (Consumer::next_packet)        {mt:6.2} ns/event  {:7.0} MB/s  spread {}",
        mbs(mt),
        spread(&take)
    );
    for (k, (name, _, _)) in VARIANTS.iter().enumerate() {
        let md = median(&mut drain[k]);
        let mv = median(&mut verify[k]);
        println!(
            "  Drain::poll, {name:28} {md:6.2} ns/event  {:7.0} MB/s  spread {}; \
             verification {mv:.1} ns/event",
            mbs(md),
            spread(&drain[k])
        );
    }
}
