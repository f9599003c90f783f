//! `faultline bench`: faultline's tracepoints against the physical floor and against
//! LTTng-UST, in one run on one machine.
//!
//! # What is measured
//! * **floor**: a bare `rdtsc`; `clock_gettime(CLOCK_MONOTONIC)` (vDSO); a 32-byte copy; and
//!   `rdtsc` + store of a 24-byte record (timestamp, id/length word, one `u64`) at an advancing
//!   position in a 256 KiB buffer — what an integer event cannot go below.
//! * **faultline**, through the public API a program uses: tracepoints declared with
//!   [`tracepoint!`] and hit with [`trace!`], the [`Recorder`] probe with its default policy,
//!   a [`Channel`] with default geometry (discard mode, 4 x 256 KiB per CPU):
//!   - a disabled tracepoint (the call site's load and branch; 8 call sites per loop
//!     iteration, so the loop's own overhead is amortised);
//!   - `int`: one `u64`; `string`: a `u64` and a 32-byte `&str`; `cstring`: a `u64` and a
//!     32-byte C string behind a [`CStrPtr`] (a raw field: the default policy bounces it);
//!   - each with 1 and 2 threads (pinned one per CPU) and with the rseq path and the atomic
//!     fallback ([`ChannelConfig::sync`]);
//!   - always with a consumer thread draining concurrently: for the tracepoint rows (`int`,
//!     `string`, `cstring`) the library's own consumer ([`faultline::drain::Drain`], what a
//!     `Session` runs: sub-buffers written in place to a temporary CTF trace by direct I/O),
//!     whose verification pass walks and counts the records on disk after the writers are done
//!     ([`crate::harness::DrainMode::Library`]); for the ring-buffer rows, whose records no
//!     trace declares, a consumer that takes sub-buffers in place, copies their content out and
//!     walks it after the writers are done ([`crate::harness::DrainMode::Deferred`]). Its CPU
//!     per record (the walk at the end not included) is the row's `consumer_ns_per_event`.
//!     `FAULTLINE_BENCH_CONSUMER=deferred`, `copy` or `inplace` runs the older, costlier
//!     consumers on every row for comparison. Events lost are counted from the channel and the
//!     recorder, and every emitted event must be either delivered or counted lost (the row's
//!     `unaccounted` must be 0);
//!   - diagnostic rows: the ring buffer alone (`reserve` + 8-byte store + `commit`, no
//!     tracepoint or recorder layer), and the int event with no consumer (overwrite mode), to
//!     show where time goes.
//! * **LTTng-UST** through [`faultline_lttng`]: the same two events (`int`, `string`) from its
//!   C program, 1 and 2 threads, per-UID buffers, discard mode, a private session daemon.
//!
//! Rounds are interleaved (round 1 of every configuration, then round 2, ...) so that noise
//! from other load spreads over all configurations alike; each row reports the median over
//! rounds and the spread (min..max). `ns/event` is per thread (the median of the threads' own
//! loop times, as the LTTng program reports it); `Mev/s` is the aggregate throughput (events
//! of all threads / wall time of the timed section).
//!
//! The 2-thread aggregate scaling (`two_thread_scaling`: the `int` row's aggregate Mev/s with
//! 2 threads / with 1, per round, median) comes with same-run references: the machine's own
//! scaling, the bound the consumer's CPU per event sets, the writers' imbalance and the
//! `Session` rows' scaling ([`crate::bench_scaling`]).
//!
//! # Bytes per event
//! faultline: the bytes the consumer took out (packet headers, record headers, payloads and
//! record alignment; not the padding after a packet's content) / records delivered. LTTng: the
//! trace directory's size (streams, indexes, metadata) / events recorded, from
//! [`faultline_lttng::LttngResult`].

use crate::harness::{load_avg, median_spread, run_writers, DrainMode, Drainer};
use faultline_recorder::{Recorder, RecorderConfig};
use faultline_ringbuf::{Channel, ChannelConfig, Mode, SyncMode};
use faultline_tracepoints::{trace, tracepoint, CStrPtr};
use serde::Serialize;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

tracepoint!(pub BENCH_INT, "faultline_bench", "int", { seq: u64 });
tracepoint!(pub BENCH_STRING, "faultline_bench", "string", { seq: u64, msg: &str });
tracepoint!(pub BENCH_CSTRING, "faultline_bench", "cstring", { seq: u64, msg: CStrPtr });
tracepoint!(pub BENCH_OFF, "faultline_bench_off", "disabled", { seq: u64 });

/// The 32-byte string of the string events (LTTng's program passes one of the same length).
pub const MSG: &str = "0123456789abcdef0123456789abcdef";
const CMSG: &std::ffi::CStr = c"0123456789abcdef0123456789abcdef";

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Rounds per configuration (median and spread are reported).
    pub rounds: usize,
    /// Timed events per thread per round (faultline and floor loops).
    pub iters: u64,
    /// Events per thread per LTTng run.
    pub lttng_events: u64,
    /// Run the LTTng-UST side (if installed).
    pub lttng: bool,
    /// Print progress on stderr.
    pub progress: bool,
    /// The lossless-rate search (`None`: skipped).
    pub lossless: Option<crate::bench_lossless::LosslessOptions>,
    /// The Tracy client rows.
    pub tracy: bool,
}

impl BenchOptions {
    pub fn full() -> Self {
        BenchOptions {
            rounds: 5,
            iters: 2_000_000,
            lttng_events: 1_000_000,
            lttng: true,
            progress: true,
            lossless: Some(crate::bench_lossless::LosslessOptions::full()),
            tracy: true,
        }
    }
    pub fn quick() -> Self {
        BenchOptions {
            rounds: 3,
            iters: 300_000,
            lttng_events: 200_000,
            lttng: true,
            progress: true,
            lossless: Some(crate::bench_lossless::LosslessOptions::quick()),
            tracy: true,
        }
    }
}

/// One configuration's results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `floor`, `faultline`, `ringbuf`, `lttng`.
    pub group: String,
    /// What is measured (`int`, `string`, `rdtsc`, ...).
    pub name: String,
    /// `rseq`, `atomic` (faultline), `lttng-ust`, or `-`.
    pub path: String,
    pub threads: usize,
    /// Whether a consumer drained concurrently.
    pub consumer: bool,
    /// Per-CPU buffer geometry used (faultline rows), e.g. `4 x 256 KiB`.
    pub buffers: Option<String>,
    /// Whether that is the channel's default geometry.
    pub default_buffers: bool,
    /// Per-thread ns per event: median over rounds, and spread.
    pub ns_median: f64,
    pub ns_min: f64,
    pub ns_max: f64,
    /// Aggregate throughput, million events per second (median over rounds).
    pub mevents_per_s: Option<f64>,
    /// Events emitted over all rounds (warm-up included).
    pub events: u64,
    /// CPU time of the draining consumer (taking packets out and walking them) as a
    /// fraction of one CPU over the timed section, median over rounds.
    pub consumer_cpu: Option<f64>,
    /// Events lost over all rounds (`None`: unknown).
    pub lost: Option<u64>,
    /// Emitted events neither delivered nor counted lost (must be 0).
    pub unaccounted: Option<u64>,
    pub bytes_per_event: Option<f64>,
    /// ns/event relative to the floor (`rdtsc` + store).
    pub vs_floor: Option<f64>,
    /// LTTng-UST ns/event / this row's ns/event, for the matching faultline row.
    pub lttng_ratio: Option<f64>,
    /// Bytes of the trace's event stream files (no metadata, no index) / events written, median
    /// over rounds (`Session` and LTTng rows).
    pub stream_bytes_per_event: Option<f64>,
    /// CPU time of the consumer thread / events written, median over rounds. `Session` rows:
    /// the drain's own `getrusage(RUSAGE_THREAD)` from its first poll to the end of its final
    /// drain (`DrainStats::consumer_cpu_ns`; a default `Session` runs no verification pass).
    /// Harness rows with a consumer: the consumer thread's `getrusage(RUSAGE_THREAD)` over its
    /// life up to its final drain (the walk at the end not included) / records it delivered
    /// (the tracepoint rows: the library's drain, as in a `Session`; module docs).
    pub consumer_ns_per_event: Option<f64>,
}

/// A target of the issue, evaluated on this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    /// The goal, e.g. `<= 1.2`.
    pub goal: String,
    /// The measured value the goal applies to (`None`: not measured).
    pub value: Option<f64>,
    pub met: Option<bool>,
    /// How far from the goal, in words.
    pub detail: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub rdtsc_ns: f64,
    pub clock_gettime_ns: f64,
    pub copy32_ns: f64,
    pub rdtsc_store_ns: f64,
    pub disabled_ns: f64,
    pub int_ns: f64,
    pub string_ns: f64,
    pub lttng_int_ns: Option<f64>,
    pub lttng_string_ns: Option<f64>,
    pub two_thread_scaling: f64,
    pub lttng_two_thread_scaling: Option<f64>,
    pub faultline_lost: u64,
    pub lttng_lost: Option<u64>,
    pub lttng: Option<String>,
    /// Why LTTng was not measured.
    pub lttng_missing: Option<String>,
    pub rounds: usize,
    pub iters: u64,
    pub lttng_events: u64,
    pub default_sync: String,
    pub machine: Machine,
    pub targets: Vec<Target>,
    pub rows: Vec<Row>,
    /// `tracing` rows (`tracing_int_ns`, `tracing_fmt_int_ns`, ...): see [`crate::bench_tracing`].
    #[serde(flatten)]
    pub tracing: crate::bench_tracing::TracingBench,
    /// Bytes per event on disk, event stream files only (no metadata, no index), `Session`
    /// int and string rows, 1 thread ([`Row::stream_bytes_per_event`]).
    pub int_bytes: Option<f64>,
    pub string_bytes: Option<f64>,
    /// The same for LTTng-UST (its data stream files / events recorded).
    pub lttng_int_bytes: Option<f64>,
    pub lttng_string_bytes: Option<f64>,
    /// CPU time of the `Session`'s consumer thread / events written, int row, 1 thread
    /// ([`Row::consumer_ns_per_event`]: the drain's own `getrusage(RUSAGE_THREAD)`, everything
    /// the consumer thread did).
    pub consumer_ns_per_event: Option<f64>,
    /// Of that: the verification pass / events written, same row (0: a default `Session`
    /// does not walk the records; `SessionBuilder::verify` turns the pass on).
    pub verify_ns_per_event: Option<f64>,
    /// Highest paced rate (million events/s) one writer sustained with zero loss, `Session`
    /// and LTTng-UST: see [`crate::bench_lossless`].
    pub lossless_mev_s: Option<f64>,
    pub lttng_lossless_mev_s: Option<f64>,
    /// Every step of both searches.
    pub lossless: Option<crate::bench_lossless::LosslessResult>,
    pub lttng_lossless: Option<crate::bench_lossless::LosslessResult>,
    /// Wall time of both searches together, seconds.
    pub lossless_secs: Option<f64>,
    /// Tracy's client, 1 thread, a reader connected: `plot` (int) and a 32-byte `message`
    /// (string), ns per event; compressed bytes per event on the wire. See
    /// [`crate::bench_tracy`].
    pub tracy_int_ns: Option<f64>,
    pub tracy_string_ns: Option<f64>,
    pub tracy_int_bytes: Option<f64>,
    pub tracy_string_bytes: Option<f64>,
    /// Why the Tracy rows are missing.
    pub tracy_missing: Option<String>,
    /// Buffers per CPU vs per concurrency id (`session_int_ns_cid`, `lossless_mev_s_cid`,
    /// `buffers_mapped_cid`, `buffer_bytes_cid`, ...): see [`crate::bench_buffers`].
    #[serde(flatten)]
    pub buffers: crate::bench_buffers::BuffersBench,
    /// `floor_two_thread_scaling`, `two_thread_scaling_bound`, ...: see
    /// [`crate::bench_scaling`].
    #[serde(flatten)]
    pub scaling: crate::bench_scaling::ScalingBench,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average before and after the run.
    pub load_before: f64,
    pub load_after: f64,
}

fn machine(load_before: f64) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cpus: faultline_rseq::allowed_cpus().len(),
        cpu_model,
        kernel,
        load_before,
        load_after: load_avg(),
    }
}

#[inline(always)]
fn time_loop(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters.max(1) as f64
}

// ---------------------------------------------------------------------------------------
// Floor

fn floor_rdtsc(iters: u64) -> f64 {
    time_loop(iters, |_| {
        black_box(faultline_rseq::rdtsc());
    })
}

fn floor_clock_gettime(iters: u64) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    time_loop(iters, |_| {
        // SAFETY: a valid clock id and a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        black_box(&ts);
    })
}

const FLOOR_BUF: usize = 256 * 1024;

fn floor_copy32(iters: u64) -> f64 {
    let mut dst = vec![0u8; FLOOR_BUF];
    let src = [7u8; 32];
    time_loop(iters, |i| {
        let at = (i as usize * 32) & (FLOOR_BUF - 1);
        dst[at..at + 32].copy_from_slice(black_box(&src));
        black_box(&mut dst);
    })
}

/// `rdtsc` + a 24-byte record store (timestamp, id/length, value) at an advancing position.
fn floor_rdtsc_store(iters: u64) -> f64 {
    let mut dst = vec![0u64; FLOOR_BUF / 8];
    time_loop(iters, |i| {
        let ts = faultline_rseq::rdtsc();
        let at = (i as usize * 3) % (dst.len() - 3);
        dst[at] = ts;
        dst[at + 1] = (24u64 << 32) | 1;
        dst[at + 2] = black_box(i);
        black_box(&mut dst);
    })
}

/// Per call site: 8 disabled call sites per loop iteration.
fn disabled_tracepoint(iters: u64) -> f64 {
    let per_iter = time_loop(iters / 8, |i| {
        trace!(BENCH_OFF, i);
        trace!(BENCH_OFF, i + 1);
        trace!(BENCH_OFF, i + 2);
        trace!(BENCH_OFF, i + 3);
        trace!(BENCH_OFF, i + 4);
        trace!(BENCH_OFF, i + 5);
        trace!(BENCH_OFF, i + 6);
        trace!(BENCH_OFF, i + 7);
    });
    per_iter / 8.0
}

/// One measured round of a faultline configuration.
struct Sample {
    /// Consumer busy time / wall time of the writers (fraction of one CPU).
    consumer_cpu: Option<f64>,
    ns: f64,
    /// Slowest writer thread's loop time / fastest's.
    imbalance: f64,
    mevs: f64,
    emitted: u64,
    lost: u64,
    unaccounted: u64,
    bytes_per_event: Option<f64>,
    /// Event stream bytes on disk / events written (`Session` rows).
    stream_bytes_per_event: Option<f64>,
    /// Consumer thread CPU ns / events written (`Session` rows: everything it did; harness
    /// rows: the harness consumer's CPU / records it delivered).
    consumer_ns_per_event: Option<f64>,
    /// Of that: the verification pass (`Session` rows; 0 by default).
    verify_ns_per_event: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Int,
    String,
    CString,
    /// The int tracepoint with a counting probe instead of the recorder (dispatch cost).
    Dispatch,
    /// The ring buffer alone: reserve 8 bytes, store, commit.
    Ring,
    /// The ring buffer alone with a 16-byte and a 48-byte payload (issue 2's benchmark).
    Ring16,
    Ring48,
}

impl Ev {
    fn name(self) -> &'static str {
        match self {
            Ev::Int => "int",
            Ev::String => "string",
            Ev::CString => "cstring",
            Ev::Dispatch => "int -> counter probe (dispatch only)",
            Ev::Ring => "reserve+commit 8 B",
            Ev::Ring16 => "reserve+commit 16 B",
            Ev::Ring48 => "reserve+commit 48 B",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    ev: Ev,
    sync: SyncMode,
    threads: usize,
    consumer: bool,
    /// Through a real [`faultline::session::Session`] (its own consumer writing CTF to disk, its
    /// default buffers) instead of the harness's channel and consumer.
    session: bool,
    /// Sub-buffer size when not the default (diagnostic rows: 4 x 1 MiB per CPU).
    subbuf: Option<u64>,
}

impl Config {
    fn group(&self) -> &'static str {
        if matches!(self.ev, Ev::Ring | Ev::Ring16 | Ev::Ring48) {
            "ringbuf"
        } else if self.ev == Ev::Dispatch {
            "dispatch"
        } else {
            "faultline"
        }
    }
    fn name(&self) -> String {
        if self.session {
            format!("{} (Session, CTF to disk)", self.ev.name())
        } else if let Some(sb) = self.subbuf {
            format!("{} (4 x {} KiB buffers)", self.ev.name(), sb / 1024)
        } else if self.consumer || self.ev == Ev::Dispatch {
            self.ev.name().to_string()
        } else {
            format!("{} (no consumer, overwrite)", self.ev.name())
        }
    }
}

fn sync_name(s: SyncMode) -> &'static str {
    match s {
        SyncMode::Rseq => "rseq",
        SyncMode::Atomic => "atomic",
    }
}

/// Slowest thread's ns per event / fastest's (1 for one thread).
fn imbalance(per_thread_ns: &[f64]) -> f64 {
    let (_, lo, hi) = median_spread(per_thread_ns);
    hi / lo
}

fn median(v: &[f64]) -> f64 {
    median_spread(v).0
}

/// The consumer of the rows with a consumer (module docs): the library's drain (the ring rows:
/// the deferred walk) unless `FAULTLINE_BENCH_CONSUMER` says `deferred` (content copied out,
/// walked after the writers stop), `copy` (the whole sub-buffer copied out, its records walked
/// twice while the writers run) or `inplace` (walked once while they run), for comparing
/// consumers in one run.
fn drain_mode() -> DrainMode {
    match std::env::var("FAULTLINE_BENCH_CONSUMER").as_deref() {
        Ok("copy") => DrainMode::Copy,
        Ok("inplace") => DrainMode::InPlace,
        Ok("deferred") => DrainMode::Deferred,
        _ => DrainMode::Library,
    }
}

fn run_config(c: &Config, warmup: u64, iters: u64) -> anyhow::Result<Sample> {
    // A session disables its events when it stops: enable ours again for every configuration.
    faultline_tracepoints::enable("faultline_bench:*");
    if c.session {
        return run_session(c, warmup, iters);
    }
    let defaults = ChannelConfig::default();
    let chan = Arc::new(Channel::create(&ChannelConfig {
        sync: c.sync,
        mode: if c.consumer {
            Mode::Discard
        } else {
            Mode::Overwrite
        },
        subbuf_size: c.subbuf.unwrap_or(defaults.subbuf_size),
        ..defaults
    })?);
    let rec = Recorder::new(chan.clone(), RecorderConfig::default());
    let handle = if c.ev == Ev::Dispatch {
        faultline_tracepoints::register_probe(
            "faultline_bench:int",
            faultline_tracepoints::CounterProbe::new(),
            faultline_tracepoints::ProbeKind::NonFaultable,
        )?
    } else {
        faultline_recorder::attach(&rec, "faultline_bench:*")?
    };
    let drainer = match (c.consumer, drain_mode(), c.ev) {
        (false, ..) => None,
        (true, DrainMode::Library, Ev::Int | Ev::String | Ev::CString) => {
            Some(Drainer::spawn_library(chan.clone())?)
        }
        // The ring rows' records (id 1000) belong to no declared event: no trace for them.
        (true, DrainMode::Library, _) => {
            Some(Drainer::spawn_in_place(chan.clone(), DrainMode::Deferred))
        }
        (true, m, _) => Some(Drainer::spawn_in_place(chan.clone(), m)),
    };
    let ring_id = 1000u32;
    let timed = match c.ev {
        Ev::Int | Ev::Dispatch => run_writers(c.threads, true, warmup, iters, |_, i| {
            trace!(BENCH_INT, i);
        }),
        Ev::String => run_writers(c.threads, true, warmup, iters, |_, i| {
            trace!(BENCH_STRING, i, MSG);
        }),
        Ev::CString => run_writers(c.threads, true, warmup, iters, |_, i| {
            trace!(BENCH_CSTRING, i, CStrPtr(CMSG.as_ptr()));
        }),
        Ev::Ring => run_writers(c.threads, true, warmup, iters, |_, i| {
            if let Ok(mut r) = chan.reserve(ring_id, 8) {
                r.payload().copy_from_slice(&i.to_le_bytes());
                black_box(r.commit());
            }
        }),
        Ev::Ring16 | Ev::Ring48 => {
            let n = if c.ev == Ev::Ring16 { 16 } else { 48 };
            run_writers(c.threads, true, warmup, iters, |_, i| {
                if let Ok(mut r) = chan.reserve(ring_id, n) {
                    let mut src = [0u8; 48];
                    src[..8].copy_from_slice(&i.to_le_bytes());
                    r.payload().copy_from_slice(&src[..n]);
                    black_box(r.commit());
                }
            })
        }
    };
    faultline_tracepoints::unregister(handle);
    let emitted = (warmup + iters) * c.threads as u64;
    let cpu_lost: u64 = (0..chan.num_cpus())
        .filter_map(|cpu| chan.cpu_stats(cpu))
        .map(|s| s.lost_total())
        .sum();
    let mut consumer_cpu = None;
    let mut consumer_ns_per_event = None;
    let (unaccounted, bytes_per_event) = match drainer {
        Some(d) => {
            let d = d.finish(&chan);
            consumer_cpu = Some(d.busy_ns as f64 / timed.wall_ns.max(1.0));
            consumer_ns_per_event = (d.records > 0).then(|| d.cpu_ns as f64 / d.records as f64);
            if let Some(e) = d.errors.first() {
                anyhow::bail!("consumer error in {}: {e}", c.name());
            }
            let delivered = d.records;
            let bpe = (delivered > 0).then(|| d.content_bytes as f64 / delivered as f64);
            (emitted.abs_diff(delivered + cpu_lost), bpe)
        }
        None => (0, None),
    };
    Ok(Sample {
        consumer_cpu,
        ns: median(&timed.per_thread_ns),
        imbalance: imbalance(&timed.per_thread_ns),
        mevs: timed.timed as f64 / timed.wall_ns * 1e3,
        emitted,
        lost: cpu_lost,
        unaccounted,
        bytes_per_event,
        stream_bytes_per_event: None,
        consumer_ns_per_event,
        verify_ns_per_event: None,
    })
}

/// Run `c` through a real embedded session writing a CTF trace into a temporary directory.
fn run_session(c: &Config, warmup: u64, iters: u64) -> anyhow::Result<Sample> {
    // Removed however the run ends (an error return, a panicking writer).
    let scratch = tempfile::Builder::new()
        .prefix("faultline-bench-")
        .tempdir()?;
    let dir = scratch.path().join("trace");
    let spec = match c.ev {
        Ev::String => "faultline_bench:string",
        _ => "faultline_bench:int",
    };
    let session = faultline::session::Session::builder()
        .output_dir(&dir)
        .events(spec)
        .verbose(false)
        .start()
        .map_err(|e| anyhow::anyhow!("session: {e}"))?;
    let timed = match c.ev {
        Ev::String => run_writers(c.threads, true, warmup, iters, |_, i| {
            trace!(BENCH_STRING, i, MSG);
        }),
        _ => run_writers(c.threads, true, warmup, iters, |_, i| {
            trace!(BENCH_INT, i);
        }),
    };
    let sum = session
        .stop()
        .map_err(|e| anyhow::anyhow!("session stop: {e}"));
    let stream_bytes = stream_bytes(&dir);
    drop(scratch);
    let sum = sum?;
    let emitted = (warmup + iters) * c.threads as u64;
    let lost = sum.lost_total();
    let written = sum.events_written;
    let per_written = |x: u64| (written > 0).then(|| x as f64 / written as f64);
    Ok(Sample {
        stream_bytes_per_event: per_written(stream_bytes),
        // The consumer's CPU time as the drain measured it on its own thread
        // (`DrainStats::consumer_cpu_ns`, all of it; the verification pass, if any, is part
        // of it).
        consumer_ns_per_event: sum
            .drain
            .as_ref()
            .and_then(|d| per_written(d.consumer_cpu_ns)),
        verify_ns_per_event: sum
            .drain
            .as_ref()
            .and_then(|d| per_written(d.verify_cpu_ns)),
        consumer_cpu: None,
        ns: median(&timed.per_thread_ns),
        imbalance: imbalance(&timed.per_thread_ns),
        mevs: timed.timed as f64 / timed.wall_ns * 1e3,
        emitted,
        lost,
        unaccounted: emitted.abs_diff(written + lost),
        bytes_per_event: (written > 0).then(|| sum.bytes_on_disk as f64 / written as f64),
    })
}

/// Bytes of a CTF trace directory's event stream files: every regular file except `metadata`
/// and anything under `index/` (the same split as LTTng's `data_bytes`).
fn stream_bytes(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, depth: u32, total: &mut u64) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() && depth < 8 && e.file_name() != "index" {
                walk(&e.path(), depth + 1, total);
            } else if m.is_file() && e.file_name() != "metadata" {
                *total += m.len();
            }
        }
    }
    let mut total = 0;
    walk(dir, 0, &mut total);
    total
}

fn faultline_configs(syncs: &[SyncMode]) -> Vec<Config> {
    let mut v = Vec::new();
    for &sync in syncs {
        for ev in [
            Ev::Int,
            Ev::String,
            Ev::CString,
            Ev::Ring,
            Ev::Ring16,
            Ev::Ring48,
        ] {
            for threads in [1usize, 2] {
                v.push(Config {
                    ev,
                    sync,
                    threads,
                    consumer: true,
                    session: false,
                    subbuf: None,
                });
            }
        }
    }
    for ev in [Ev::Int, Ev::Ring, Ev::Dispatch] {
        for threads in [1usize, 2] {
            v.push(Config {
                ev,
                sync: syncs[0],
                threads,
                consumer: false,
                session: false,
                subbuf: None,
            });
        }
    }
    // Diagnostic: the same events with 4x larger sub-buffers (losses vs buffer capacity).
    for ev in [Ev::Int, Ev::String] {
        for threads in [1usize, 2] {
            v.push(Config {
                ev,
                sync: syncs[0],
                threads,
                consumer: true,
                session: false,
                subbuf: Some(1 << 20),
            });
        }
    }
    // A real session: its consumer writes the CTF trace to disk, its default buffers.
    for ev in [Ev::Int, Ev::String] {
        for threads in [1usize, 2] {
            v.push(Config {
                ev,
                sync: ChannelConfig::default().sync,
                threads,
                consumer: true,
                session: true,
                subbuf: None,
            });
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// LTTng

struct LttngSide {
    bench: faultline_lttng::LttngBench,
}

#[derive(Default)]
struct LttngAcc {
    ns: Vec<f64>,
    emitted: u64,
    lost: u64,
    /// Some round's loss count was unknown (no babeltrace2 and no daemon statistics).
    lost_unknown: bool,
    bpe: Vec<f64>,
    /// Data stream bytes / events recorded, per round.
    stream_bpe: Vec<f64>,
    /// Channel geometry as LTTng reported it.
    buffers: Option<String>,
}

fn lttng_start(opt: &BenchOptions) -> (Option<LttngSide>, Option<String>) {
    if !opt.lttng {
        return (
            None,
            Some("LTTng-UST comparison disabled (--no-lttng)".into()),
        );
    }
    if let Err(why) = faultline_lttng::check_available() {
        return (None, Some(why));
    }
    match faultline_lttng::LttngBench::new() {
        Ok(bench) => (Some(LttngSide { bench }), None),
        Err(e) => (
            None,
            Some(format!(
                "LTTng-UST is installed but its harness could not start: {e:#}"
            )),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn row(group: &str, name: &str, path: &str, threads: usize, consumer: bool, ns: &[f64]) -> Row {
    let (m, lo, hi) = median_spread(ns);
    Row {
        group: group.into(),
        name: name.into(),
        path: path.into(),
        threads,
        consumer,
        ns_median: m,
        ns_min: lo,
        ns_max: hi,
        buffers: None,
        default_buffers: true,
        mevents_per_s: None,
        events: 0,
        consumer_cpu: None,
        lost: None,
        unaccounted: None,
        bytes_per_event: None,
        vs_floor: None,
        lttng_ratio: None,
        stream_bytes_per_event: None,
        consumer_ns_per_event: None,
    }
}

/// Run the whole benchmark.
pub fn run(opt: &BenchOptions) -> anyhow::Result<BenchReport> {
    let load_before = load_avg();
    // Profiling one configuration (FAULTLINE_BENCH_FILTER) skips the Tracy rows and the
    // lossless search.
    let filtered = std::env::var_os("FAULTLINE_BENCH_FILTER").is_some();
    // First: the Tracy client process (crate::bench_tracy) starts while nothing is timed.
    let (mut tracy, mut tracy_missing) = if !opt.tracy {
        (None, Some("Tracy rows disabled (--no-tracy)".to_string()))
    } else if filtered {
        (None, Some("skipped (FAULTLINE_BENCH_FILTER)".to_string()))
    } else {
        match crate::bench_tracy::TracySide::start() {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        }
    };
    let rounds = opt.rounds.max(1);
    let iters = opt.iters.max(1000);
    // Enough warm-up to touch every page of the default buffers (4 x 256 KiB per CPU) twice
    // with the smallest record, so no timed event takes a first-touch page fault.
    let warmup = (iters / 10).max(100_000);

    faultline_tracepoints::disable("faultline_bench_off:*");
    faultline_tracepoints::enable("faultline_bench:*");
    // Calibrate the TSC (once per process) before anything is timed.
    let _ = faultline_ringbuf::clock::info(faultline_ringbuf::clock::default_kind());

    let mut syncs = vec![SyncMode::Atomic];
    if faultline_rseq::available() {
        syncs.insert(0, SyncMode::Rseq);
    }
    let default_sync = ChannelConfig::default().sync;
    let mut configs = faultline_configs(&syncs);
    // For profiling one configuration: FAULTLINE_BENCH_FILTER=substring of "name/path/threads"
    // (e.g. "int/rseq/1").
    if let Ok(f) = std::env::var("FAULTLINE_BENCH_FILTER") {
        configs
            .retain(|c| format!("{}/{}/{}", c.name(), sync_name(c.sync), c.threads).contains(&f));
    }

    let (mut lttng, lttng_missing) = lttng_start(opt);
    let lttng_version = lttng.as_ref().map(|l| {
        format!(
            "{} / lttng-ust {}",
            l.bench.lttng_tools_version(),
            l.bench.lttng_ust_version()
        )
    });
    let lttng_cfgs: Vec<(faultline_lttng::EventKind, usize)> = faultline_lttng::EventKind::ALL
        .into_iter()
        .flat_map(|k| [(k, 1usize), (k, 2usize)])
        .collect();
    let mut lttng_acc: Vec<LttngAcc> = lttng_cfgs.iter().map(|_| LttngAcc::default()).collect();

    let floor_names = [
        "rdtsc",
        "clock_gettime(MONOTONIC)",
        "32-byte copy",
        "rdtsc + 24-byte store",
    ];
    let mut floor: Vec<Vec<f64>> = vec![Vec::new(); floor_names.len()];
    let mut disabled = Vec::new();
    let mut samples: Vec<Vec<Sample>> = configs.iter().map(|_| Vec::new()).collect();
    let mut tracing_runs = crate::bench_tracing::TracingRuns::default();
    let mut floor_scaling = crate::bench_scaling::FloorScaling::default();

    for round in 0..rounds {
        if opt.progress {
            eprintln!("bench: round {}/{rounds}", round + 1);
        }
        floor[0].push(floor_rdtsc(iters));
        floor[1].push(floor_clock_gettime(iters));
        floor[2].push(floor_copy32(iters));
        floor[3].push(floor_rdtsc_store(iters));
        floor_scaling.round(iters);
        disabled.push(disabled_tracepoint(iters * 8));
        for (c, out) in configs.iter().zip(samples.iter_mut()) {
            out.push(run_config(c, warmup, iters)?);
        }
        tracing_runs.round(warmup, iters)?;
        if let Some(t) = tracy.as_mut() {
            if let Err(e) = t.round(warmup, iters) {
                tracy_missing = Some(format!("Tracy round failed: {e}"));
                tracy = None;
            }
        }
        if let Some(l) = lttng.as_mut() {
            for ((kind, threads), acc) in lttng_cfgs.iter().zip(lttng_acc.iter_mut()) {
                let r = l.bench.run(*kind, *threads, opt.lttng_events)?;
                acc.ns.push(r.ns_per_event);
                acc.emitted += r.events_emitted;
                match r.events_discarded.or(r.tracer_discarded) {
                    Some(n) => acc.lost += n,
                    None => acc.lost_unknown = true,
                }
                if let Some(b) = r.bytes_per_event {
                    acc.bpe.push(b);
                }
                if let Some(n) = r.events_recorded.filter(|&n| n > 0) {
                    acc.stream_bpe.push(r.data_bytes as f64 / n as f64);
                }
                if let (Some(n), Some(sz)) = (r.channel.subbuf_count, r.channel.subbuf_size) {
                    acc.buffers = Some(format!("{n} x {} KiB", sz / 1024));
                }
            }
        }
    }
    // The lossless-rate search, faultline then LTTng-UST (its daemon is still up).
    let (lossless, lttng_lossless) = match opt.lossless.as_ref().filter(|_| !filtered) {
        None => (None, None),
        Some(lo) => {
            let progress = |side: &str, rate: f64, secs: f64| {
                if opt.progress && rate.is_finite() {
                    eprintln!(
                        "bench: lossless {side}: {:.2} Mev/s for {secs} s",
                        rate / 1e6
                    );
                } else if opt.progress {
                    eprintln!("bench: lossless {side}: the writer's own rate (unpaced)");
                }
            };
            let fl = crate::bench_lossless::search(lo, |rate, n| {
                progress("Session", rate, lo.step_secs);
                crate::bench_lossless::faultline_step(rate, n)
            });
            let lt = lttng.as_mut().map(|l| {
                crate::bench_lossless::search(lo, |rate, n| {
                    progress("LTTng-UST", rate, lo.step_secs);
                    crate::bench_lossless::lttng_step(&mut l.bench, rate, n)
                })
            });
            (Some(fl), lt)
        }
    };
    drop(lttng);
    let buffers = if filtered {
        crate::bench_buffers::BuffersBench::default()
    } else {
        crate::bench_buffers::run(rounds, warmup, iters, opt.lossless.as_ref(), opt.progress)
    };
    let tracy_numbers = match tracy.take().map(|t| t.finish()) {
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            tracy_missing = Some(e);
            None
        }
        None => None,
    };

    let mut rows = Vec::new();
    for (name, v) in floor_names.iter().zip(&floor) {
        rows.push(row("floor", name, "-", 1, false, v));
    }
    let rdtsc_store = rows[3].ns_median;
    rows[3].vs_floor = Some(1.0);
    let mut r = row("faultline", "disabled tracepoint", "-", 1, false, &disabled);
    r.events = iters * 8 * rounds as u64;
    rows.push(r);
    for (c, s) in configs.iter().zip(&samples) {
        let ns: Vec<f64> = s.iter().map(|x| x.ns).collect();
        let mut r = row(
            c.group(),
            &c.name(),
            sync_name(c.sync),
            c.threads,
            c.consumer,
            &ns,
        );
        r.mevents_per_s = Some(median(&s.iter().map(|x| x.mevs).collect::<Vec<_>>()));
        if c.session {
            r.buffers = Some("Session default".into());
        } else if c.ev != Ev::Dispatch {
            let d = ChannelConfig::default();
            r.buffers = Some(format!(
                "{} x {} KiB",
                d.num_subbuf,
                c.subbuf.unwrap_or(d.subbuf_size) / 1024
            ));
        }
        r.default_buffers = c.subbuf.is_none();
        let cc: Vec<f64> = s.iter().filter_map(|x| x.consumer_cpu).collect();
        r.consumer_cpu = (!cc.is_empty()).then(|| median(&cc));
        r.events = s.iter().map(|x| x.emitted).sum();
        r.lost = Some(s.iter().map(|x| x.lost).sum());
        if c.consumer {
            r.unaccounted = Some(s.iter().map(|x| x.unaccounted).sum());
            let b: Vec<f64> = s.iter().filter_map(|x| x.bytes_per_event).collect();
            r.bytes_per_event = (!b.is_empty()).then(|| median(&b));
            let b: Vec<f64> = s.iter().filter_map(|x| x.stream_bytes_per_event).collect();
            r.stream_bytes_per_event = (!b.is_empty()).then(|| median(&b));
            let b: Vec<f64> = s.iter().filter_map(|x| x.consumer_ns_per_event).collect();
            r.consumer_ns_per_event = (!b.is_empty()).then(|| median(&b));
        }
        r.vs_floor = Some(r.ns_median / rdtsc_store);
        rows.push(r);
    }
    let lttng_ran = lttng_acc.iter().any(|a| !a.ns.is_empty());
    if lttng_ran {
        for ((kind, threads), acc) in lttng_cfgs.iter().zip(&lttng_acc) {
            let mut r = row("lttng", kind.as_str(), "lttng-ust", *threads, true, &acc.ns);
            r.events = acc.emitted;
            r.lost = (!acc.lost_unknown).then_some(acc.lost);
            r.buffers = acc.buffers.clone();
            r.bytes_per_event = (!acc.bpe.is_empty()).then(|| median(&acc.bpe));
            r.stream_bytes_per_event =
                (!acc.stream_bpe.is_empty()).then(|| median(&acc.stream_bpe));
            r.vs_floor = Some(r.ns_median / rdtsc_store);
            // Aggregate throughput from the per-thread median (the program times each thread).
            r.mevents_per_s = Some(*threads as f64 * 1e3 / r.ns_median);
            rows.push(r);
        }
    }
    if let Some(n) = &tracy_numbers {
        for (k, name, ns, bytes) in [
            (0, "int (plot)", n.int_ns, n.int_bytes),
            (1, "string (32-byte message)", n.string_ns, n.string_bytes),
        ] {
            let (m, lo, hi) = ns;
            let mut r = row("tracy", name, "tracy-client", 1, true, &[]);
            (r.ns_median, r.ns_min, r.ns_max) = (m, lo, hi);
            r.events = n.events[k];
            r.mevents_per_s = (m > 0.0).then(|| 1e3 / m);
            r.bytes_per_event = bytes;
            r.vs_floor = Some(m / rdtsc_store);
            rows.push(r);
        }
    }
    // LTTng / faultline ratios on the faultline rows of the same event and thread count.
    let lttng_ns = |rows: &[Row], name: &str, threads: usize| {
        rows.iter()
            .find(|r| r.group == "lttng" && r.name == name && r.threads == threads)
            .map(|r| r.ns_median)
    };
    let ratios: Vec<Option<f64>> = rows
        .iter()
        .map(|r| {
            (r.group == "faultline" && r.consumer)
                .then(|| lttng_ns(&rows, &r.name, r.threads).map(|l| l / r.ns_median))
                .flatten()
        })
        .collect();
    for (r, x) in rows.iter_mut().zip(ratios) {
        r.lttng_ratio = x;
    }

    let find = |group: &str, name: &str, path: &str, threads: usize| {
        rows.iter()
            .find(|r| {
                r.group == group
                    && r.name == name
                    && r.path == path
                    && r.threads == threads
                    && r.consumer
            })
            .cloned()
    };
    let dpath = sync_name(default_sync);
    let int_ns = find("faultline", "int", dpath, 1).map_or(f64::NAN, |r| r.ns_median);
    let string_ns = find("faultline", "string", dpath, 1).map_or(f64::NAN, |r| r.ns_median);
    let int_samples = |threads: usize| {
        configs
            .iter()
            .position(|c| {
                c.ev == Ev::Int && c.sync == default_sync && c.threads == threads && c.consumer
            })
            .map(|i| &samples[i])
    };
    // Per round: aggregate throughput with 2 threads / with 1 thread; median over rounds.
    let scaling = match (int_samples(1), int_samples(2)) {
        (Some(one), Some(two)) => median(
            &two.iter()
                .zip(one)
                .map(|(t, o)| t.mevs / o.mevs)
                .collect::<Vec<_>>(),
        ),
        _ => f64::NAN,
    };
    let session_samples = |threads: usize| {
        configs
            .iter()
            .position(|c| c.session && c.ev == Ev::Int && c.threads == threads)
            .map(|i| &samples[i])
    };
    let session_scaling = match (session_samples(1), session_samples(2)) {
        (Some(one), Some(two)) => Some(median(
            &two.iter()
                .zip(one)
                .map(|(t, o)| t.mevs / o.mevs)
                .collect::<Vec<_>>(),
        )),
        _ => None,
    };
    let scaling_consumer_ns =
        find("faultline", "int", dpath, 2).and_then(|r| r.consumer_ns_per_event);
    let int2_imbalance = int_samples(2)
        .map(|s| median(&s.iter().map(|x| x.imbalance).collect::<Vec<_>>()))
        .filter(|x| x.is_finite());
    let scaling_bench = crate::bench_scaling::ScalingBench::new(
        &floor_scaling,
        scaling,
        int_ns,
        scaling_consumer_ns,
        session_scaling,
        int2_imbalance,
    );
    let lttng_int = lttng_ns(&rows, "int", 1);
    let lttng_string = lttng_ns(&rows, "string", 1);
    let lttng_scaling = match (lttng_ns(&rows, "int", 1), lttng_ns(&rows, "int", 2)) {
        (Some(one), Some(two)) => Some(2.0 * one / two),
        _ => None,
    };
    let faultline_lost: u64 = rows
        .iter()
        .filter(|r| r.group != "lttng" && r.consumer && r.default_buffers)
        .filter_map(|r| r.lost)
        .sum();
    let lttng_lost = if lttng_ran {
        rows.iter()
            .filter(|r| r.group == "lttng")
            .map(|r| r.lost)
            .try_fold(0u64, |a, l| l.map(|l| a + l))
    } else {
        None
    };
    let disabled_ns = rows
        .iter()
        .find(|r| r.name == "disabled tracepoint")
        .map(|r| r.ns_median)
        .unwrap_or(f64::NAN);

    let mut targets = targets(
        int_ns,
        rdtsc_store,
        string_ns,
        lttng_int,
        lttng_string,
        disabled_ns,
        scaling,
        faultline_lost,
        lttng_lost,
        lttng_ran,
    );
    let tracing = tracing_runs.finish(&mut rows, &mut targets);

    // Issue 11's numbers: bytes per event on disk, consumer CPU, lossless rates, Tracy.
    let session_row = |name: &str| {
        rows.iter()
            .find(|r| r.name == format!("{name} (Session, CTF to disk)") && r.threads == 1)
    };
    let lttng_row = |name: &str| {
        rows.iter()
            .find(|r| r.group == "lttng" && r.name == name && r.threads == 1)
    };
    let int_bytes = session_row("int").and_then(|r| r.stream_bytes_per_event);
    let string_bytes = session_row("string").and_then(|r| r.stream_bytes_per_event);
    let lttng_int_bytes = lttng_row("int").and_then(|r| r.stream_bytes_per_event);
    let lttng_string_bytes = lttng_row("string").and_then(|r| r.stream_bytes_per_event);
    let consumer_ns_per_event = session_row("int").and_then(|r| r.consumer_ns_per_event);
    // Not a row column: the int Session row's rounds.
    let verify_ns_per_event = configs
        .iter()
        .zip(&samples)
        .find(|(c, _)| c.session && c.ev == Ev::Int && c.threads == 1)
        .map(|(_, s)| {
            s.iter()
                .filter_map(|x| x.verify_ns_per_event)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .map(|v| median(&v));
    let lossless_mev_s = lossless.as_ref().and_then(|l| l.mev_s);
    let lttng_lossless_mev_s = lttng_lossless.as_ref().and_then(|l| l.mev_s);
    let lossless_secs = lossless
        .as_ref()
        .map(|l| l.secs + lttng_lossless.as_ref().map_or(0.0, |l| l.secs));
    let tracy_int_ns = tracy_numbers.as_ref().map(|n| n.int_ns.0);
    let tracy_string_ns = tracy_numbers.as_ref().map(|n| n.string_ns.0);
    targets.extend(issue11_targets(&Issue11 {
        string_ns,
        floor_ns: rdtsc_store,
        int_ns,
        tracy_int_ns,
        tracy_string_ns,
        int_bytes,
        string_bytes,
        consumer_ns_per_event,
        lossless_mev_s,
        lttng_lossless_mev_s,
    }));
    Ok(BenchReport {
        int_bytes,
        string_bytes,
        lttng_int_bytes,
        lttng_string_bytes,
        consumer_ns_per_event,
        verify_ns_per_event,
        lossless_mev_s,
        lttng_lossless_mev_s,
        lossless,
        lttng_lossless,
        lossless_secs,
        tracy_int_ns,
        tracy_string_ns,
        tracy_int_bytes: tracy_numbers.as_ref().and_then(|n| n.int_bytes),
        tracy_string_bytes: tracy_numbers.as_ref().and_then(|n| n.string_bytes),
        tracy_missing,
        rdtsc_ns: rows[0].ns_median,
        clock_gettime_ns: rows[1].ns_median,
        copy32_ns: rows[2].ns_median,
        rdtsc_store_ns: rdtsc_store,
        disabled_ns,
        int_ns,
        string_ns,
        lttng_int_ns: lttng_int,
        lttng_string_ns: lttng_string,
        two_thread_scaling: scaling,
        lttng_two_thread_scaling: lttng_scaling,
        faultline_lost,
        lttng_lost,
        lttng: lttng_version,
        lttng_missing,
        rounds,
        iters,
        lttng_events: opt.lttng_events,
        default_sync: dpath.into(),
        machine: machine(load_before),
        targets,
        rows,
        tracing,
        buffers,
        scaling: scaling_bench,
    })
}

/// The measurements issue 11's added targets apply to.
struct Issue11 {
    int_ns: f64,
    string_ns: f64,
    floor_ns: f64,
    tracy_int_ns: Option<f64>,
    tracy_string_ns: Option<f64>,
    int_bytes: Option<f64>,
    string_bytes: Option<f64>,
    consumer_ns_per_event: Option<f64>,
    lossless_mev_s: Option<f64>,
    lttng_lossless_mev_s: Option<f64>,
}

/// Issue 11's targets beyond the core six: string vs the floor, faster than Tracy, bytes per
/// event, consumer CPU, lossless rate vs LTTng-UST's.
fn issue11_targets(m: &Issue11) -> Vec<Target> {
    let mk = |name: &str, goal: String, v: Option<f64>, met: Option<bool>, detail: String| Target {
        name: name.into(),
        goal,
        value: v,
        met,
        detail,
    };
    let le = |name: &str, v: Option<f64>, lim: f64, unit: &str, why_none: &str| match v {
        None => mk(name, format!("<= {lim}{unit}"), None, None, why_none.into()),
        Some(v) => mk(
            name,
            format!("<= {lim}{unit}"),
            Some(v),
            Some(v <= lim),
            if v <= lim {
                format!("met: {v:.2}{unit}")
            } else {
                format!("MISSED: {v:.2}{unit}, {:.2}x the limit", v / lim)
            },
        ),
    };
    let ge = |name: &str, v: Option<f64>, lim: f64, why_none: &str| match v {
        None => mk(name, format!(">= {lim}x"), None, None, why_none.into()),
        Some(v) => mk(
            name,
            format!(">= {lim}x"),
            Some(v),
            Some(v >= lim),
            if v >= lim {
                format!("met: {v:.2}x")
            } else {
                format!("MISSED: {v:.2}x, needs {:.2}x more", lim / v)
            },
        ),
    };
    let gt1 = |name: &str, v: Option<f64>| match v {
        None => mk(
            name,
            "> 1x".into(),
            None,
            None,
            "not measured (Tracy)".into(),
        ),
        Some(v) => mk(
            name,
            "> 1x".into(),
            Some(v),
            Some(v > 1.0),
            format!("{}: {v:.2}x", if v > 1.0 { "met" } else { "MISSED" }),
        ),
    };
    vec![
        le(
            "string event / (rdtsc + store)",
            Some(m.string_ns / m.floor_ns),
            1.8,
            "x",
            "",
        ),
        gt1(
            "Tracy int / faultline int",
            m.tracy_int_ns.map(|t| t / m.int_ns),
        ),
        gt1(
            "Tracy string / faultline string",
            m.tracy_string_ns.map(|t| t / m.string_ns),
        ),
        le(
            "bytes per int event on disk",
            m.int_bytes,
            16.0,
            " B",
            "not measured",
        ),
        le(
            "bytes per string event on disk",
            m.string_bytes,
            48.0,
            " B",
            "not measured",
        ),
        le(
            "consumer CPU per event written",
            m.consumer_ns_per_event,
            3.0,
            " ns",
            "not measured",
        ),
        ge(
            "lossless rate / LTTng-UST's",
            m.lossless_mev_s
                .zip(m.lttng_lossless_mev_s)
                .map(|(f, l)| f / l),
            3.0,
            "not measured (search skipped or LTTng-UST not available)",
        ),
    ]
}

#[allow(clippy::too_many_arguments)]
fn targets(
    int_ns: f64,
    floor_ns: f64,
    string_ns: f64,
    lttng_int: Option<f64>,
    lttng_string: Option<f64>,
    disabled_ns: f64,
    scaling: f64,
    lost: u64,
    lttng_lost: Option<u64>,
    lttng_ran: bool,
) -> Vec<Target> {
    let mut t = Vec::new();
    let le = |name: &str, v: f64, lim: f64, unit: &str| {
        let met = v <= lim;
        Target {
            name: name.into(),
            goal: format!("<= {lim}{unit}"),
            value: Some(v),
            met: Some(met),
            detail: if met {
                format!(
                    "met: {v:.2}{unit}, {:.0}% under the limit",
                    (1.0 - v / lim) * 100.0
                )
            } else {
                format!(
                    "MISSED: {v:.2}{unit}, {:.2}x the limit ({:.0}% over)",
                    v / lim,
                    (v / lim - 1.0) * 100.0
                )
            },
        }
    };
    let ge = |name: &str, v: Option<f64>, lim: f64, unit: &str| match v {
        None => Target {
            name: name.into(),
            goal: format!(">= {lim}{unit}"),
            value: None,
            met: None,
            detail: "not measured (LTTng-UST not available)".into(),
        },
        Some(v) => {
            let met = v >= lim;
            Target {
                name: name.into(),
                goal: format!(">= {lim}{unit}"),
                value: Some(v),
                met: Some(met),
                detail: if met {
                    format!("met: {v:.2}{unit}")
                } else {
                    format!(
                        "MISSED: {v:.2}{unit}, {:.0}% short (needs {:.2}x more)",
                        (1.0 - v / lim) * 100.0,
                        lim / v
                    )
                },
            }
        }
    };
    t.push(le(
        "int event / (rdtsc + store)",
        int_ns / floor_ns,
        1.35,
        "x",
    ));
    t.push(ge(
        "LTTng int / faultline int",
        lttng_int.map(|l| l / int_ns),
        6.0,
        "x",
    ));
    t.push(ge(
        "LTTng string / faultline string",
        lttng_string.map(|l| l / string_ns),
        5.0,
        "x",
    ));
    t.push(le("disabled tracepoint", disabled_ns, 0.5, " ns"));
    t.push(ge("2-thread aggregate scaling", Some(scaling), 1.8, "x"));
    t.push(Target {
        name: "faultline events lost (default buffers)".into(),
        goal: "== 0".into(),
        value: Some(lost as f64),
        met: Some(lost == 0),
        detail: match (lost, lttng_lost, lttng_ran) {
            (0, Some(l), true) if l > 0 => {
                format!("met: 0 lost (LTTng-UST lost {l} in the same run)")
            }
            (0, _, _) => "met: 0 lost".into(),
            (n, _, _) => format!("MISSED: {n} events lost"),
        },
    });
    t
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

/// Human-readable report.
pub fn print(r: &BenchReport) {
    println!(
        "faultline bench: {} rounds, {} events/thread/round (LTTng {}); {} CPUs ({}), kernel {}, load {:.2} -> {:.2}",
        r.rounds,
        r.iters,
        r.lttng_events,
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.kernel,
        r.machine.load_before,
        r.machine.load_after
    );
    match (&r.lttng, &r.lttng_missing) {
        (Some(v), _) => println!("LTTng: {v}"),
        (None, Some(why)) => println!("LTTng-UST not measured: {why}"),
        _ => {}
    }
    println!();
    println!(
        "{:<9} {:<44} {:>9} {:>3} {:>9} {:>17} {:>8} {:>8} {:>8} {:>6} {:>8}",
        "group",
        "operation",
        "path",
        "thr",
        "ns/event",
        "spread",
        "Mev/s",
        "lost",
        "B/event",
        "floor",
        "lttng/fl"
    );
    for row in &r.rows {
        println!(
            "{:<9} {:<44} {:>9} {:>3} {:>9.2} {:>17} {:>8} {:>8} {:>8} {:>6} {:>8}",
            row.group,
            row.name,
            row.path,
            row.threads,
            row.ns_median,
            format!("{:.2}..{:.2}", row.ns_min, row.ns_max),
            opt_f(row.mevents_per_s, 1),
            row.lost
                .map(|l| l.to_string())
                .unwrap_or_else(|| if row.group == "lttng" { "?" } else { "-" }.into()),
            opt_f(row.bytes_per_event, 1),
            opt_f(row.vs_floor, 2),
            opt_f(row.lttng_ratio, 1),
        );
    }
    println!(
        "(ns/event per thread, median over rounds; floor = ns / (rdtsc + 24-byte store); \
         lttng/fl = LTTng-UST ns / faultline ns, same event and threads)"
    );
    let unacc: u64 = r.rows.iter().filter_map(|x| x.unaccounted).sum();
    if unacc != 0 {
        println!("WARNING: {unacc} faultline events neither delivered nor counted as lost");
    }
    if let Some(l) = r.lttng_lost.filter(|&l| l > 0) {
        println!("LTTng-UST discarded {l} events in this run (its rows are faster for it).");
    }
    println!();
    let b = |v: Option<f64>| opt_f(v, 1);
    println!(
        "bytes per event on disk (event streams / events): int {} (LTTng-UST {}), string {} (LTTng-UST {}); Tracy on the wire, compressed: int {}, string {}",
        b(r.int_bytes),
        b(r.lttng_int_bytes),
        b(r.string_bytes),
        b(r.lttng_string_bytes),
        b(r.tracy_int_bytes),
        b(r.tracy_string_bytes)
    );
    println!(
        "consumer CPU per event written (Session, int, 1 thread): {} ns (of which the \
         verification pass: {} ns; a default Session does not walk the records)",
        opt_f(r.consumer_ns_per_event, 2),
        opt_f(r.verify_ns_per_event, 2)
    );
    println!("{}", r.scaling.summary(r.two_thread_scaling));
    if let Some(why) = &r.tracy_missing {
        println!("Tracy rows not measured: {why}");
    }
    for (side, l) in [("Session", &r.lossless), ("LTTng-UST", &r.lttng_lossless)] {
        let Some(l) = l else { continue };
        let steps: Vec<String> = l
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}{:.2}{}{}",
                    if s.rate_mev_s.is_none() {
                        "unpaced "
                    } else {
                        ""
                    },
                    s.achieved_mev_s,
                    if s.lost == 0 { "" } else { " LOSSY" },
                    s.consumer_ns_per_event
                        .map(|c| format!(
                            " ({c:.1} ns consumer, longest write {:.1} ms, backlog {})",
                            s.write_ms_max.unwrap_or(0.0),
                            s.backlog_max.unwrap_or(0)
                        ))
                        .unwrap_or_default()
                )
            })
            .collect();
        println!(
            "lossless rate, {side}: {} Mev/s{} (writer alone {}, lowest lossy {}; {} steps in \
             {:.0} s: {}){}",
            opt_f(l.mev_s, 2),
            if l.writer_bound { ", writer-bound" } else { "" },
            opt_f(l.writer_max_mev_s, 2),
            opt_f(l.lowest_lossy_mev_s, 2),
            l.steps.len(),
            l.secs,
            steps.join(", "),
            l.note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
    }
    if let Some(t) = r.lossless_secs {
        println!("lossless search total: {t:.0} s");
    }
    print!("{}", crate::bench_buffers::table(&r.buffers));
    println!();
    println!("targets:");
    for t in &r.targets {
        println!("  {:<42} {:<8} {}", t.name, t.goal, t.detail);
    }
}
