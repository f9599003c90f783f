//! How much a running consumer slows the writer, and which part of the consumer does it.
//!
//! `cargo run --release -p faultline --example writer_interference [-- ROUNDS EVENTS]`
//!
//! One writer thread, pinned to the first allowed CPU, times `EVENTS` (default 250,000)
//! `reserve` + 8-byte payload + `commit` of event 1 (compact header: the int event's record)
//! per round on discard-mode channels of a `Session`'s default geometry (8 x 1 MiB, rseq,
//! TSC). Each channel has its own consumer thread, pinned to another CPU; between rounds the
//! consumer catches up (everything complete is taken), so a round always fits in the free
//! sub-buffers and can be timed with the consumer doing nothing at all. What the consumer does
//! *during* the timed round is the variable, round by round, interleaved (a noisy neighbour
//! hits every configuration alike):
//! * `idle`: nothing (asleep); the baseline;
//! * `poll`: reads the buffer's write offset and commit counters every 100 µs
//!   (`Consumer::ready_run`), takes nothing: the cost of the consumer reading lines the
//!   writer writes;
//! * `take`: takes complete sub-buffers in place and releases them, no I/O;
//! * `drain direct` / `drain buffered`: a `Drain` (as in a `Session`: no verification)
//!   writing to a trace in the temporary directory by direct I/O / through the page cache;
//! * `drain direct, consumer on the writer's CPU`: the same with the consumer thread left
//!   on the writer's CPU (what `follow_cpus` does while every CPU is busy).
//!
//! Printed per configuration: median and 25th percentile ns per event over the rounds, and
//! the ratio of the median to `idle`'s. A round that lost events is left out (counted).

use faultline::drain::{Drain, DrainConfig};
use faultline_ctf::{ClockDesc, EnvDesc, TraceDesc, TraceWriter};
use faultline_ringbuf::{Channel, ChannelConfig, Consumer, Mode, SyncMode};
use faultline_schema::{EventDesc, FieldDesc, FieldType};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EV: EventDesc = EventDesc {
    provider: "bench",
    name: "int",
    fields: &[FieldDesc {
        name: "v",
        ty: FieldType::U64,
    }],
};

const IDLE: u32 = 0;
const POLL: u32 = 1;
const WORK: u32 = 2;
const CATCH_UP: u32 = 3;
const DONE: u32 = 4;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Raw,
    Drain { direct: bool },
}

struct Side {
    name: &'static str,
    kind: Kind,
    /// What the consumer does during this configuration's timed rounds.
    during: u32,
    ch: Arc<Channel>,
    mode: Arc<AtomicU32>,
    results: Vec<f64>,
    lossy: u32,
    overwrite: bool,
}

fn desc(ch: &Channel) -> TraceDesc {
    TraceDesc {
        uuid: ch.uuid(),
        clock: ClockDesc {
            name: "c".into(),
            freq_hz: 1_000_000_000,
            offset_s: 0,
            offset_ticks: 0,
            description: "c".into(),
        },
        env: EnvDesc {
            hostname: "h".into(),
            procname: "p".into(),
            tracer_major: 0,
            tracer_minor: 1,
            extra: vec![],
        },
        events: vec![(1, EV)],
    }
}

fn lost(ch: &Channel) -> u64 {
    (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .map(|s| s.lost_total())
        .sum()
}

/// The consumer thread of one side: obeys `mode` (module docs).
fn consumer(
    ch: Arc<Channel>,
    kind: Kind,
    cpu: u32,
    writer_cpu: u32,
    mode: Arc<AtomicU32>,
    dir: std::path::PathBuf,
) {
    let _ = faultline_rseq::pin_to_cpu(cpu);
    let mut drain = match kind {
        Kind::Raw => None,
        Kind::Drain { direct } => {
            let w = TraceWriter::create(&dir, &desc(&ch)).expect("trace writer");
            Some(Drain::new(
                ch.clone(),
                w,
                DrainConfig {
                    verbose: false,
                    verify: false,
                    direct_io: direct,
                    flush_interval: Duration::from_secs(3600),
                    ..DrainConfig::default()
                },
            ))
        }
    };
    let cons = Consumer::new(&ch);
    loop {
        match mode.load(Ordering::Acquire) {
            IDLE => std::thread::sleep(Duration::from_micros(200)),
            POLL => {
                std::hint::black_box(cons.ready_run(writer_cpu, 8));
                std::thread::sleep(Duration::from_micros(100));
            }
            m @ (WORK | CATCH_UP) => {
                let took = match drain.as_mut() {
                    Some(d) => d.poll(),
                    None => {
                        let mut n = 0;
                        while let Ok(Some(p)) = cons.take_in_place(writer_cpu) {
                            cons.release(p);
                            n += 1;
                        }
                        n
                    }
                };
                if took == 0 {
                    if m == CATCH_UP {
                        // Caught up: idle until told otherwise.
                        let _ = mode.compare_exchange(
                            CATCH_UP,
                            IDLE,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    } else {
                        match drain.as_ref() {
                            Some(d) => d.wait(),
                            None => cons.wait(Duration::from_millis(1)),
                        }
                    }
                }
            }
            _ => break,
        }
    }
    if let Some(d) = drain {
        let _ = d.finish();
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(41).max(1) as usize;
    let events = args.get(1).copied().unwrap_or(250_000).max(1000);
    let allowed = faultline_rseq::allowed_cpus();
    let wcpu = allowed[0];
    let other = allowed.iter().copied().find(|&c| c != wcpu).unwrap_or(wcpu);
    faultline_rseq::pin_to_cpu(wcpu).expect("pin");
    std::thread::yield_now();
    let tmp = faultline_testkit::TmpDir::new("writer-interference");
    const MB: u64 = 1 << 20;
    const KB: u64 = 1 << 10;
    let d = Kind::Drain { direct: true };
    let configs: [(&str, Kind, u32, bool, u64, u64, Mode); 10] = [
        (
            "idle (raw consumer)",
            Kind::Raw,
            IDLE,
            false,
            MB,
            8,
            Mode::Discard,
        ),
        (
            "poll counters every 100 us",
            Kind::Raw,
            POLL,
            false,
            MB,
            8,
            Mode::Discard,
        ),
        (
            "take + release, no I/O",
            Kind::Raw,
            WORK,
            false,
            MB,
            8,
            Mode::Discard,
        ),
        ("idle (drain channel)", d, IDLE, false, MB, 8, Mode::Discard),
        ("drain, direct I/O", d, WORK, false, MB, 8, Mode::Discard),
        (
            "drain, buffered",
            Kind::Drain { direct: false },
            WORK,
            false,
            MB,
            8,
            Mode::Discard,
        ),
        (
            "drain, direct, on writer CPU",
            d,
            WORK,
            true,
            MB,
            8,
            Mode::Discard,
        ),
        (
            "overwrite 8 x 1 MiB, no consumer",
            Kind::Raw,
            IDLE,
            false,
            MB,
            8,
            Mode::Overwrite,
        ),
        (
            "overwrite 4 x 256 KiB, no consumer",
            Kind::Raw,
            IDLE,
            false,
            256 * KB,
            4,
            Mode::Overwrite,
        ),
        (
            "take + release, 4 x 256 KiB",
            Kind::Raw,
            WORK,
            false,
            256 * KB,
            4,
            Mode::Discard,
        ),
    ];
    let mut sides: Vec<Side> = Vec::new();
    let mut threads = Vec::new();
    for (i, (name, kind, during, same, sb, nsb, cmode)) in configs.into_iter().enumerate() {
        let ch = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: sb,
                num_subbuf: nsb,
                mode: cmode,
                sync: SyncMode::Rseq,
                ..Default::default()
            })
            .expect("channel"),
        );
        let mode = Arc::new(AtomicU32::new(IDLE));
        let (c2, m2, dir) = (ch.clone(), mode.clone(), tmp.join(format!("t{i}")));
        let ccpu = if same { wcpu } else { other };
        threads.push(std::thread::spawn(move || {
            consumer(c2, kind, ccpu, wcpu, m2, dir)
        }));
        sides.push(Side {
            name,
            kind,
            during,
            ch,
            mode,
            results: Vec::new(),
            lossy: 0,
            overwrite: cmode == Mode::Overwrite,
        });
    }
    let payload = 7u64.to_le_bytes();
    for round in 0..=rounds {
        for s in sides.iter_mut() {
            // Catch up (untimed), then set what the consumer does during the round.
            s.mode.store(CATCH_UP, Ordering::Release);
            let t = Instant::now();
            while s.mode.load(Ordering::Acquire) == CATCH_UP && t.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            s.mode.store(s.during, Ordering::Release);
            let before = lost(&s.ch);
            let t0 = Instant::now();
            for _ in 0..events {
                if let Ok(mut r) = s.ch.reserve(1, std::hint::black_box(8)) {
                    r.payload().copy_from_slice(&payload);
                    std::hint::black_box(r.commit());
                }
            }
            let ns = t0.elapsed().as_nanos() as f64 / events as f64;
            s.mode.store(IDLE, Ordering::Release);
            if lost(&s.ch) != before {
                s.lossy += 1;
            } else if round > 0 {
                // Round 0 warms every channel's pages up.
                s.results.push(ns);
            }
        }
    }
    for s in &sides {
        s.mode.store(DONE, Ordering::Release);
    }
    for t in threads {
        let _ = t.join();
    }
    let med = |v: &[f64], q: usize| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() * q / 4]
        }
    };
    println!("{rounds} rounds x {events} events; writer on CPU {wcpu}, consumers on CPU {other}");
    let base_raw = med(&sides[0].results, 2);
    let base_drain = med(&sides[3].results, 2);
    println!(
        "{:<34} {:>8} {:>8} {:>9} {:>6}",
        "consumer during the round", "median", "p25", "vs idle", "lossy"
    );
    for s in &sides {
        let base = if s.kind == Kind::Raw || s.overwrite {
            base_raw
        } else {
            base_drain
        };
        let m = med(&s.results, 2);
        println!(
            "{:<34} {:>8.2} {:>8.2} {:>9.3} {:>6}",
            s.name,
            m,
            med(&s.results, 1),
            m / base,
            s.lossy
        );
    }
}
