//! `faultline bench` rows for programs instrumented with `tracing`: `tracing::info!` with one
//! integer, and with one integer plus a 32-byte string,
//! * through `faultline-tracing` (a `Registry` with `faultline_tracing::layer()`, into an
//!   embedded faultline session writing CTF to disk),
//! * through `faultline-tracing`'s standalone subscriber (`faultline_tracing::subscriber()`,
//!   no `Registry`; same session setup),
//! * through `tracing-subscriber`'s `fmt` layer writing through `tracing-appender`'s
//!   `non_blocking` writer to a file (the usual way to log to a file without blocking),
//! * and the raw faultline path (`trace!` on a static tracepoint, same session setup),
//!
//! on 1 and 2 threads (pinned), in the same run, with losses counted on each side: faultline's
//! from the session summary (lost in the ring buffer; written + lost must equal emitted), the
//! appender's from its error counter (lines dropped because its channel was full; lines in
//! the file + dropped must equal emitted).
//!
//! Each writer thread installs its dispatcher with `tracing::dispatcher::set_default` (the
//! global default can be set only once per process), the same for both `tracing` sides.

use crate::bench::{Row, Target, BENCH_INT, BENCH_STRING, MSG};
use crate::harness::median_spread;
use faultline_tracepoints::trace;
use serde::Serialize;
use std::sync::Barrier;
use std::time::Instant;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// Medians (ns per event per thread) and losses; the JSON keys of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TracingBench {
    /// `info!(seq)` through faultline-tracing, 1 thread.
    pub tracing_int_ns: f64,
    /// The same through fmt + non_blocking appender, 1 thread.
    pub tracing_fmt_int_ns: f64,
    /// `info!(seq, msg)` (32-byte string), faultline-tracing and fmt, 1 thread.
    pub tracing_str_ns: f64,
    pub tracing_fmt_str_ns: f64,
    /// The same four with 2 threads (per-thread ns).
    pub tracing_int_2t_ns: f64,
    pub tracing_fmt_int_2t_ns: f64,
    pub tracing_str_2t_ns: f64,
    pub tracing_fmt_str_2t_ns: f64,
    /// Raw `trace!` of the same payloads through the same kind of session.
    pub tracing_raw_int_ns: f64,
    pub tracing_raw_str_ns: f64,
    pub tracing_raw_int_2t_ns: f64,
    pub tracing_raw_str_2t_ns: f64,
    /// The standalone subscriber (no `Registry`), same four rows.
    pub tracing_sub_int_ns: f64,
    pub tracing_sub_str_ns: f64,
    pub tracing_sub_int_2t_ns: f64,
    pub tracing_sub_str_2t_ns: f64,
    /// Events lost over all rounds: faultline-tracing, fmt + appender (dropped lines), raw.
    pub tracing_lost: u64,
    pub tracing_fmt_lost: u64,
    pub tracing_raw_lost: u64,
    pub tracing_sub_lost: u64,
    /// Emitted events neither written nor counted lost, all sides (must be 0).
    pub tracing_unaccounted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Faultline,
    Standalone,
    Fmt,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Int,
    Str,
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    side: Side,
    ev: Ev,
    threads: usize,
}

impl Cfg {
    fn name(&self) -> String {
        let ev = match self.ev {
            Ev::Int => "int",
            Ev::Str => "int + 32 B string",
        };
        match self.side {
            Side::Faultline => format!("info!({ev}) -> faultline-tracing"),
            Side::Standalone => format!("info!({ev}) -> faultline-tracing subscriber"),
            Side::Fmt => format!("info!({ev}) -> fmt + appender"),
            Side::Raw => format!("trace!({ev}) raw"),
        }
    }
}

#[derive(Default)]
struct Acc {
    ns: Vec<f64>,
    emitted: u64,
    lost: u64,
    unaccounted: u64,
}

/// Samples of every configuration, round after round.
pub struct TracingRuns {
    cfgs: Vec<Cfg>,
    acc: Vec<Acc>,
    rounds: usize,
}

impl Default for TracingRuns {
    fn default() -> Self {
        let mut cfgs = Vec::new();
        for threads in [1, 2] {
            for ev in [Ev::Int, Ev::Str] {
                for side in [Side::Faultline, Side::Standalone, Side::Raw, Side::Fmt] {
                    cfgs.push(Cfg { side, ev, threads });
                }
            }
        }
        // For profiling one configuration: FAULTLINE_BENCH_FILTER=substring of "name/threads"
        // (e.g. "faultline-tracing/1"), as for the other rows.
        if let Ok(f) = std::env::var("FAULTLINE_BENCH_FILTER") {
            cfgs.retain(|c| format!("{}/{}", c.name(), c.threads).contains(&f));
        }
        let acc = cfgs.iter().map(|_| Acc::default()).collect();
        TracingRuns {
            cfgs,
            acc,
            rounds: 0,
        }
    }
}

/// Per-thread ns/event of `threads` pinned writers, each installing `dispatch` (if any),
/// running `warmup` then `iters` timed calls of `f(i)` after a barrier.
fn run_threads<F>(
    threads: usize,
    dispatch: Option<&Dispatch>,
    warmup: u64,
    iters: u64,
    f: F,
) -> Vec<f64>
where
    F: Fn(u64) + Sync,
{
    let cpus = faultline_rseq::allowed_cpus();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier, cpus) = (&f, &barrier, &cpus);
                s.spawn(move || {
                    if !cpus.is_empty() {
                        let _ = faultline_rseq::pin_to_cpu(cpus[t % cpus.len()]);
                    }
                    let _g = dispatch.map(tracing::dispatcher::set_default);
                    for i in 0..warmup {
                        f(i);
                    }
                    barrier.wait();
                    let t0 = Instant::now();
                    for i in 0..iters {
                        f(i);
                    }
                    t0.elapsed().as_nanos() as f64 / iters.max(1) as f64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer")).collect()
    })
}

/// A scratch directory for one run, removed when dropped: also when a writer panics or the
/// session fails.
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("faultline-bench-tracing-")
        .tempdir()?)
}

/// One round of one configuration: (per-thread ns, emitted, lost, unaccounted).
fn run_one(c: &Cfg, warmup: u64, iters: u64) -> anyhow::Result<(Vec<f64>, u64, u64, u64)> {
    let emitted = (warmup + iters) * c.threads as u64;
    match c.side {
        Side::Faultline | Side::Standalone | Side::Raw => {
            let scratch = scratch()?;
            let dir = scratch.path().join("trace");
            let session = faultline::Session::builder()
                .output_dir(&dir)
                .events("*")
                .verbose(false)
                .start()
                .map_err(|e| anyhow::anyhow!("session: {e}"))?;
            let dispatch = if c.side == Side::Standalone {
                Dispatch::new(faultline_tracing::subscriber())
            } else {
                Dispatch::new(tracing_subscriber::registry().with(faultline_tracing::layer()))
            };
            let ns = match (c.side, c.ev) {
                (Side::Faultline | Side::Standalone, Ev::Int) => {
                    run_threads(c.threads, Some(&dispatch), warmup, iters, |i| {
                        tracing::info!(seq = i)
                    })
                }
                (Side::Faultline | Side::Standalone, Ev::Str) => {
                    run_threads(c.threads, Some(&dispatch), warmup, iters, |i| {
                        tracing::info!(seq = i, msg = MSG)
                    })
                }
                (_, Ev::Int) => run_threads(c.threads, None, warmup, iters, |i| {
                    trace!(BENCH_INT, i);
                }),
                (_, Ev::Str) => run_threads(c.threads, None, warmup, iters, |i| {
                    trace!(BENCH_STRING, i, MSG);
                }),
            };
            let sum = session
                .stop()
                .map_err(|e| anyhow::anyhow!("session stop: {e}"));
            let sum = sum?;
            let lost = sum.lost_total();
            Ok((
                ns,
                emitted,
                lost,
                emitted.abs_diff(sum.events_written + lost),
            ))
        }
        Side::Fmt => {
            let scratch = scratch()?;
            let path = scratch.path().join("log");
            let file = std::fs::File::create(&path)?;
            let (writer, guard) = tracing_appender::non_blocking(file);
            let dropped = writer.error_counter();
            let dispatch = Dispatch::new(
                tracing_subscriber::registry().with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(writer),
                ),
            );
            let ns = match c.ev {
                Ev::Int => run_threads(c.threads, Some(&dispatch), warmup, iters, |i| {
                    tracing::info!(seq = i)
                }),
                Ev::Str => run_threads(c.threads, Some(&dispatch), warmup, iters, |i| {
                    tracing::info!(seq = i, msg = MSG)
                }),
            };
            drop(dispatch);
            // Flushes the appender's worker.
            drop(guard);
            let lines = std::fs::read(&path)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
                .unwrap_or(0);
            let lost = dropped.dropped_lines() as u64;
            Ok((ns, emitted, lost, emitted.abs_diff(lines + lost)))
        }
    }
}

impl TracingRuns {
    /// One round of every configuration. The fmt side runs an eighth of the events (it is
    /// 1-2 orders of magnitude slower; ns/event is what is compared).
    /// The layer and the standalone subscriber swap places every other round, so that neither
    /// always runs right after the previous configuration's fmt side (whose file writes may
    /// still be in flight).
    pub fn round(&mut self, warmup: u64, iters: u64) -> anyhow::Result<()> {
        let mut order: Vec<usize> = (0..self.cfgs.len()).collect();
        if self.rounds % 2 == 1 {
            for i in 1..order.len() {
                if self.cfgs[i - 1].side == Side::Faultline && self.cfgs[i].side == Side::Standalone
                {
                    order.swap(i - 1, i);
                }
            }
        }
        self.rounds += 1;
        for i in order {
            let (c, acc) = (&self.cfgs[i], &mut self.acc[i]);
            let (w, n) = match c.side {
                Side::Fmt => ((warmup / 8).max(1000), (iters / 8).max(1000)),
                _ => (warmup, iters),
            };
            let (ns, emitted, lost, unacc) = run_one(c, w, n)?;
            acc.ns.push(crate::harness::median_spread(&ns).0);
            acc.emitted += emitted;
            acc.lost += lost;
            acc.unaccounted += unacc;
        }
        Ok(())
    }

    /// Rows, the report's numbers and the targets.
    pub fn finish(&self, rows: &mut Vec<Row>, targets: &mut Vec<Target>) -> TracingBench {
        let mut b = TracingBench::default();
        for (c, acc) in self.cfgs.iter().zip(&self.acc) {
            let (m, lo, hi) = median_spread(&acc.ns);
            rows.push(Row {
                group: "tracing".into(),
                name: c.name(),
                path: "-".into(),
                threads: c.threads,
                consumer: true,
                buffers: (c.side != Side::Fmt).then(|| "Session default".into()),
                default_buffers: true,
                ns_median: m,
                ns_min: lo,
                ns_max: hi,
                mevents_per_s: (m > 0.0).then(|| c.threads as f64 * 1e3 / m),
                events: acc.emitted,
                consumer_cpu: None,
                lost: Some(acc.lost),
                unaccounted: Some(acc.unaccounted),
                bytes_per_event: None,
                vs_floor: None,
                lttng_ratio: None,
                stream_bytes_per_event: None,
                consumer_ns_per_event: None,
            });
            let slot = match (c.side, c.ev, c.threads) {
                (Side::Faultline, Ev::Int, 1) => &mut b.tracing_int_ns,
                (Side::Faultline, Ev::Str, 1) => &mut b.tracing_str_ns,
                (Side::Faultline, Ev::Int, _) => &mut b.tracing_int_2t_ns,
                (Side::Faultline, Ev::Str, _) => &mut b.tracing_str_2t_ns,
                (Side::Fmt, Ev::Int, 1) => &mut b.tracing_fmt_int_ns,
                (Side::Fmt, Ev::Str, 1) => &mut b.tracing_fmt_str_ns,
                (Side::Fmt, Ev::Int, _) => &mut b.tracing_fmt_int_2t_ns,
                (Side::Fmt, Ev::Str, _) => &mut b.tracing_fmt_str_2t_ns,
                (Side::Standalone, Ev::Int, 1) => &mut b.tracing_sub_int_ns,
                (Side::Standalone, Ev::Str, 1) => &mut b.tracing_sub_str_ns,
                (Side::Standalone, Ev::Int, _) => &mut b.tracing_sub_int_2t_ns,
                (Side::Standalone, Ev::Str, _) => &mut b.tracing_sub_str_2t_ns,
                (Side::Raw, Ev::Int, 1) => &mut b.tracing_raw_int_ns,
                (Side::Raw, Ev::Str, 1) => &mut b.tracing_raw_str_ns,
                (Side::Raw, Ev::Int, _) => &mut b.tracing_raw_int_2t_ns,
                (Side::Raw, Ev::Str, _) => &mut b.tracing_raw_str_2t_ns,
            };
            *slot = m;
            match c.side {
                Side::Faultline => b.tracing_lost += acc.lost,
                Side::Fmt => b.tracing_fmt_lost += acc.lost,
                Side::Raw => b.tracing_raw_lost += acc.lost,
                Side::Standalone => b.tracing_sub_lost += acc.lost,
            }
            b.tracing_unaccounted += acc.unaccounted;
        }
        let ratio = |name: &str, v: f64, goal: &str, met: bool| Target {
            name: name.into(),
            goal: goal.into(),
            value: Some(v),
            met: Some(met),
            detail: format!("{}: {v:.2}x", if met { "met" } else { "MISSED" }),
        };
        for (what, fl, fmt, raw) in [
            (
                "int",
                b.tracing_int_ns,
                b.tracing_fmt_int_ns,
                b.tracing_raw_int_ns,
            ),
            (
                "int+str",
                b.tracing_str_ns,
                b.tracing_fmt_str_ns,
                b.tracing_raw_str_ns,
            ),
            (
                "int 2 thr",
                b.tracing_int_2t_ns,
                b.tracing_fmt_int_2t_ns,
                b.tracing_raw_int_2t_ns,
            ),
            (
                "int+str 2 thr",
                b.tracing_str_2t_ns,
                b.tracing_fmt_str_2t_ns,
                b.tracing_raw_str_2t_ns,
            ),
        ] {
            let x = fmt / fl;
            targets.push(ratio(
                &format!("tracing {what}: fmt+appender / faultline"),
                x,
                ">= 10x",
                x >= 10.0,
            ));
            let y = fl / raw;
            targets.push(ratio(
                &format!("tracing {what}: faultline / raw trace!"),
                y,
                "<= 3x",
                y <= 3.0,
            ));
        }
        b
    }
}
