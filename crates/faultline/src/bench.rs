//! `faultline bench`: cost of the ring buffer's reserve + commit, against the physical floor
//! (a bare `rdtsc`, and `rdtsc` + a store of the payload) measured in the same run.
//!
//! Each configuration runs `rounds` times; we report the median ns per event and the spread
//! (min..max). Writers are pinned one per CPU, the channel is in overwrite mode with no
//! consumer (so nothing is ever dropped and no consumer competes for the CPUs), and the
//! sub-buffer switches are included in the cost.

use faultline_ringbuf::{Channel, ChannelConfig, Mode, SyncMode};
use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub path: String,
    pub payload: usize,
    pub threads: usize,
    pub ns_median: f64,
    pub ns_min: f64,
    pub ns_max: f64,
    /// Ratio to the floor (rdtsc + payload store) for the same payload size.
    pub vs_floor: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub rdtsc_ns: f64,
    pub rows: Vec<Row>,
}

fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn time_ns(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn floor_ns(payload: usize, iters: u64) -> f64 {
    let mut dst = vec![0u8; 4096];
    let src = vec![7u8; payload];
    time_ns(iters, |i| {
        let ts = faultline_rseq::rdtsc();
        let at = ((i as usize) * 64) & 4095 & !63;
        let end = (at + payload).min(4096);
        dst[at..end].copy_from_slice(&src[..end - at]);
        black_box(ts);
        black_box(&mut dst);
    })
}

fn ring_ns(sync: SyncMode, payload: usize, threads: usize, iters: u64) -> anyhow::Result<f64> {
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 256 * 1024,
        num_subbuf: 4,
        mode: Mode::Overwrite,
        sync,
        ..Default::default()
    })?;
    let cpus = faultline_rseq::allowed_cpus();
    let src = vec![7u8; payload];
    let per: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (ch, src, cpus) = (&ch, &src, &cpus);
                s.spawn(move || {
                    let _ = faultline_rseq::pin_to_cpu(cpus[t % cpus.len()]);
                    // warm-up: touch every page of the buffer
                    for _ in 0..iters / 4 {
                        if let Ok(mut r) = ch.reserve(1, payload) {
                            r.payload().copy_from_slice(src);
                            r.commit();
                        }
                    }
                    time_ns(iters, |_| {
                        if let Ok(mut r) = ch.reserve(1, payload) {
                            r.payload().copy_from_slice(src);
                            black_box(r.commit());
                        }
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Ok(per.iter().sum::<f64>() / per.len() as f64)
}

/// Run the ring-buffer benchmark.
pub fn run(rounds: usize, iters: u64) -> anyhow::Result<BenchReport> {
    let rounds = rounds.max(1);
    let (rdtsc, _, _) = median_spread(
        (0..rounds)
            .map(|_| {
                time_ns(iters, |_| {
                    black_box(faultline_rseq::rdtsc());
                })
            })
            .collect(),
    );
    let mut rows = vec![Row {
        name: "rdtsc".into(),
        path: "floor".into(),
        payload: 0,
        threads: 1,
        ns_median: rdtsc,
        ns_min: rdtsc,
        ns_max: rdtsc,
        vs_floor: None,
    }];
    let mut syncs = vec![SyncMode::Atomic];
    if faultline_rseq::available() {
        syncs.insert(0, SyncMode::Rseq);
    }
    for payload in [16usize, 48] {
        let (f, fmin, fmax) =
            median_spread((0..rounds).map(|_| floor_ns(payload, iters)).collect());
        rows.push(Row {
            name: format!("rdtsc + {payload} B store"),
            path: "floor".into(),
            payload,
            threads: 1,
            ns_median: f,
            ns_min: fmin,
            ns_max: fmax,
            vs_floor: Some(1.0),
        });
        for &sync in &syncs {
            for threads in [1usize, 2] {
                let v = (0..rounds)
                    .map(|_| ring_ns(sync, payload, threads, iters))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let (m, lo, hi) = median_spread(v);
                rows.push(Row {
                    name: format!("reserve+commit {payload} B"),
                    path: format!("{sync:?}").to_lowercase(),
                    payload,
                    threads,
                    ns_median: m,
                    ns_min: lo,
                    ns_max: hi,
                    vs_floor: Some(m / f),
                });
            }
        }
    }
    Ok(BenchReport {
        rdtsc_ns: rdtsc,
        rows,
    })
}

pub fn print(r: &BenchReport) {
    println!(
        "{:<28} {:>7} {:>8} {:>11} {:>17} {:>9}",
        "operation", "path", "threads", "ns/event", "spread", "vs floor"
    );
    for row in &r.rows {
        println!(
            "{:<28} {:>7} {:>8} {:>11.2} {:>17} {:>9}",
            row.name,
            row.path,
            row.threads,
            row.ns_median,
            format!("{:.2}..{:.2}", row.ns_min, row.ns_max),
            row.vs_floor.map(|v| format!("{v:.2}x")).unwrap_or_default()
        );
    }
    println!("(floor = rdtsc + store of the payload; ns per event per thread; median over rounds)");
}
