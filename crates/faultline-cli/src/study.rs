//! `faultline bench --study`: the copy-strategy study. For each strategy of the recorder
//! (reserve-copy-commit, bounce, prefault-restart; [`Policy::Fixed`]) it measures:
//!
//! 1. **Resident data**: ns per event for a [`RawBuf`] field of 16 B, 256 B and 4 KiB whose
//!    memory is resident; one pinned thread, overwrite mode and no consumer (the writer's cost
//!    alone), rounds interleaved, median and spread.
//! 2. **Non-resident data**, with a *neighbour*: thread A, pinned to CPU 0, traces a 256-byte
//!    [`RawBuf`] whose page is not resident; thread B, pinned to the same CPU, traces a small
//!    event (`tick`, always reserve-copy-commit) continuously; a consumer pinned to another CPU
//!    drains concurrently (discard mode, default buffers: 4 x 256 KiB per CPU). B does a
//!    little work between events (some 8 M events/s, ~190 MB/s: a default buffer holds ~5 ms
//!    of them, so a consumer a scheduler tick late loses nothing). Scenarios:
//!    - `resident` (control): A's page is resident and A sleeps as long as a stall would last;
//!    - `madv_dontneed`: A drops its page with `MADV_DONTNEED` before every event (the copy
//!      takes a minor fault, no sleep);
//!    - `uffd 1 ms`, `uffd 10 ms`: A's page is in a [`HeldFaults`] region, re-armed before
//!      every event, so the copy blocks for the hold time.
//!
//!    Reported: A's ns per event (median, max), B's events lost (per stall), and the consumer
//!    delay: per packet, the time from its closing timestamp to the consumer taking it out
//!    (max, p99, and how many packets were held back more than 1 ms).
//! 3. **Load**: 8 threads on the allowed CPUs (oversubscription), and 4 threads whose affinity a
//!    controller thread flips between CPUs every 50 µs (migration storm), each tracing a
//!    resident 256-byte [`RawBuf`], with a consumer: aggregate throughput, losses, restarts and
//!    fallbacks of prefault-restart, REMOTE commits.
//!
//! The consumer runs at nice -10 here (when allowed), so that on a busy machine its own
//! scheduling delays do not pass for the strategies' losses; `lost_full` (consumer late) and
//! `lost_stalled` (a held sub-buffer) are reported apart anyway.
//!
//! Every configuration accounts for its events: emitted = delivered + counted lost (the
//! `unaccounted` column must be 0).

use crate::harness::{load_avg, median_spread, Drained, Drainer};
use faultline_recorder::{Policy, Recorder, RecorderConfig, Strategy};
use faultline_ringbuf::{Channel, ChannelConfig, Mode};
use faultline_tracepoints::{trace, tracepoint, RawBuf};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

tracepoint!(pub STUDY_RAW, "faultline_study", "raw", { seq: u64, buf: RawBuf });
tracepoint!(pub STUDY_TICK, "faultline_study", "tick", { seq: u64 });

const PAGE: usize = 4096;

/// Nice value of the study's consumer thread (see [`Drainer::spawn`]).
const CONSUMER_NICE: i32 = -10;

/// Sizes and counts of a study run.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    pub rounds: usize,
    /// (payload bytes, events per round) for the resident-cost part.
    pub resident: Vec<(usize, u64)>,
    /// Events of thread A with `MADV_DONTNEED`.
    pub dontneed_events: u64,
    /// (hold, stalls) for the userfaultfd part.
    pub holds: Vec<(Duration, u64)>,
    /// Events per thread in the load part.
    pub load_events: u64,
    pub progress: bool,
}

impl StudyOptions {
    pub fn new(quick: bool) -> Self {
        let k = if quick { 5 } else { 1 };
        StudyOptions {
            rounds: if quick { 3 } else { 5 },
            resident: vec![
                (16, 1_000_000 / k),
                (256, 500_000 / k),
                (1024, 300_000 / k),
                (4096, 100_000 / k),
            ],
            dontneed_events: 20_000 / k,
            holds: vec![
                (Duration::from_millis(1), 100 / k),
                (Duration::from_millis(10), 30 / k),
            ],
            load_events: 200_000 / k,
            progress: true,
        }
    }
}

/// Resident-data cost of one strategy at one payload size.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentRow {
    pub strategy: String,
    pub payload: usize,
    pub ns_median: f64,
    pub ns_min: f64,
    pub ns_max: f64,
    /// ns / reserve-copy-commit's ns at the same size.
    pub vs_rcc: f64,
}

/// One non-resident-data scenario for one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct StallRow {
    pub scenario: String,
    pub strategy: String,
    /// Hold time of each fault (0 for the MADV_DONTNEED and control runs' faults).
    pub hold_ms: f64,
    /// Thread A's events.
    pub events: u64,
    /// Thread A's ns per event (the trace call alone): median and max.
    pub event_ns_median: f64,
    pub event_ns_max: f64,
    /// Thread A's events lost.
    pub own_lost: u64,
    /// Thread B (same CPU) events emitted and lost.
    pub neighbour_events: u64,
    pub neighbour_lost: u64,
    pub neighbour_lost_per_stall: f64,
    /// Events lost on the CPU because the next sub-buffer was still held by an uncommitted
    /// reservation (`lost_stalled`), per stall: the strategy's own effect. `lost_full` is the
    /// consumer being late.
    pub stalled_per_stall: f64,
    /// Losses on the CPU by cause (buffer counters).
    pub lost_stalled: u64,
    pub lost_full: u64,
    /// Consumer delay (packet closed -> taken out), ms.
    pub delay_ms_max: f64,
    pub delay_ms_p99: f64,
    /// Packets taken out more than 1 ms after they were closed.
    pub packets_held: u64,
    pub packets: u64,
    /// Consumer CPU time (taking packets out and walking them), ms, and its wake-ups.
    pub consumer_busy_ms: f64,
    pub consumer_wakeups: u64,
    pub restarts: u64,
    pub fallbacks: u64,
    pub unaccounted: u64,
}

/// Oversubscription / migration storm for one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub scenario: String,
    pub strategy: String,
    pub threads: usize,
    pub events: u64,
    /// Aggregate throughput, million events/s (median over rounds).
    pub mevents_per_s: f64,
    pub mevents_min: f64,
    pub mevents_max: f64,
    /// ns inside the trace call per event (rdtsc around each call, minus an empty pair;
    /// includes preemption inside the call): median over threads, median over rounds.
    pub trace_ns: f64,
    pub lost: u64,
    pub lost_stalled: u64,
    pub restarts: u64,
    pub fallbacks: u64,
    pub remote_commits: u64,
    pub migrations: u64,
    pub delay_ms_max: f64,
    pub unaccounted: u64,
}

/// The whole study.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub rounds: usize,
    pub load_before: f64,
    pub load_after: f64,
    pub uffd: Option<String>,
    pub resident: Vec<ResidentRow>,
    pub stalls: Vec<StallRow>,
    pub load: Vec<LoadRow>,
    pub conclusion: Vec<String>,
}

// ---------------------------------------------------------------------------------------

fn recorder(
    chan: &Arc<Channel>,
    s: Strategy,
) -> anyhow::Result<(Arc<Recorder>, faultline_tracepoints::ProbeHandle)> {
    let rec = Recorder::new(
        chan.clone(),
        RecorderConfig {
            policy: Policy::Fixed(s),
            ..Default::default()
        },
    );
    rec.set_strategy("faultline_study:tick", Some(Strategy::ReserveCopyCommit));
    let h = faultline_recorder::attach(&rec, "faultline_study:*")?;
    Ok((rec, h))
}

/// A page-aligned anonymous mapping, unmapped on drop.
struct Anon {
    ptr: *mut u8,
    len: usize,
}

impl Anon {
    fn new(pages: usize) -> anyhow::Result<Anon> {
        let len = pages.max(1) * PAGE;
        // SAFETY: anonymous private mapping, checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            anyhow::bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let a = Anon {
            ptr: p as *mut u8,
            len,
        };
        // SAFETY: the whole mapping is ours and writable.
        unsafe { std::ptr::write_bytes(a.ptr, 0x5a, len) };
        Ok(a)
    }
    fn page(&self, i: usize) -> *const u8 {
        // SAFETY: i is reduced modulo the page count: inside the mapping.
        unsafe { self.ptr.add((i % (self.len / PAGE)) * PAGE) }
    }
    fn drop_page(&self, i: usize) {
        // SAFETY: one page of our own private anonymous mapping; MADV_DONTNEED discards it.
        unsafe { libc::madvise(self.page(i) as *mut libc::c_void, PAGE, libc::MADV_DONTNEED) };
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in new().
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

// SAFETY: only an address handed to the writer threads; the memory is plain anonymous memory.
unsafe impl Send for Anon {}
// SAFETY: as above.
unsafe impl Sync for Anon {}

// ---------------------------------------------------------------------------------------
// 1. Resident data

fn resident_once(s: Strategy, payload: usize, events: u64) -> anyhow::Result<f64> {
    let chan = Arc::new(Channel::create(&ChannelConfig {
        mode: Mode::Overwrite,
        ..Default::default()
    })?);
    let (_rec, h) = recorder(&chan, s)?;
    let src = vec![0x33u8; payload];
    let t = crate::harness::run_writers(1, true, events / 10, events, |_, i| {
        trace!(STUDY_RAW, i, RawBuf(src.as_ptr(), src.len()));
    });
    faultline_tracepoints::unregister(h);
    Ok(t.per_thread_ns[0])
}

// ---------------------------------------------------------------------------------------
// 2. Non-resident data with a neighbour

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Resident(Duration),
    DontNeed,
    Held(Duration),
}

impl Scenario {
    fn name(&self) -> String {
        match self {
            Scenario::Resident(d) => format!("resident, {} ms gaps (control)", d.as_millis()),
            Scenario::DontNeed => "madv_dontneed".into(),
            Scenario::Held(d) => format!("uffd {} ms", d.as_millis()),
        }
    }
    fn hold(&self) -> Duration {
        match self {
            Scenario::Held(d) => *d,
            _ => Duration::ZERO,
        }
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn cpu_pair() -> (u32, Option<u32>) {
    let cpus = faultline_rseq::allowed_cpus();
    (cpus[0], cpus.get(1).copied())
}

fn stall_run(s: Strategy, sc: Scenario, events: u64) -> anyhow::Result<StallRow> {
    let chan = Arc::new(Channel::create(&ChannelConfig::default())?);
    let (rec, h) = recorder(&chan, s)?;
    let (cpu, other) = cpu_pair();
    let drainer = Drainer::spawn(chan.clone(), other, Some(CONSUMER_NICE));
    let pages = 64usize;
    let held = match sc {
        Scenario::Held(d) => Some(crate::uffd::HeldFaults::new(pages, d)?),
        _ => None,
    };
    let anon = Anon::new(pages)?;
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let raw_id = STUDY_RAW.id();
    let tick_id = STUDY_TICK.id();
    let (a_ns, b_emitted) = std::thread::scope(|scope| -> anyhow::Result<(Vec<f64>, u64)> {
        let b = scope.spawn(|| {
            let _ = faultline_rseq::pin_to_cpu(cpu);
            let mut n = 0u64;
            // Release: pairs with the main thread's acquire load that waits for the neighbour.
            started.store(true, Ordering::Release);
            // Relaxed: a stop flag; a few extra events after it are counted like the others.
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(work(NEIGHBOUR_WORK));
                trace!(STUDY_TICK, n);
                n += 1;
            }
            n
        });
        let a = scope.spawn(|| -> anyhow::Result<Vec<f64>> {
            let _ = faultline_rseq::pin_to_cpu(cpu);
            // Acquire: pairs with B's release store; B is running before A starts.
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(2));
            let mut ns = Vec::with_capacity(events as usize);
            for k in 0..events {
                let page = k as usize % pages;
                let src = match (&sc, &held) {
                    (Scenario::Held(_), Some(hf)) => {
                        hf.rearm_range(page * PAGE, PAGE)?;
                        // SAFETY: page < pages: inside the held region.
                        unsafe { hf.as_ptr().add(page * PAGE) }
                    }
                    (Scenario::DontNeed, _) => {
                        anon.drop_page(page);
                        anon.page(page)
                    }
                    _ => anon.page(page),
                };
                let t0 = Instant::now();
                trace!(STUDY_RAW, k, RawBuf(src, 256));
                ns.push(t0.elapsed().as_nanos() as f64);
                match sc {
                    Scenario::Resident(d) => std::thread::sleep(d),
                    Scenario::Held(d) => std::thread::sleep(d),
                    Scenario::DontNeed => {}
                }
            }
            Ok(ns)
        });
        let a_ns = a.join().expect("thread A");
        // Relaxed: see B's loop.
        stop.store(true, Ordering::Relaxed);
        let b_n = b.join().expect("thread B");
        Ok((a_ns?, b_n))
    })?;
    faultline_tracepoints::unregister(h);
    drop(held);
    let d: Drained = drainer.finish(&chan);
    if let Some(e) = d.errors.first() {
        anyhow::bail!("consumer error: {e}");
    }
    let st = rec.stats();
    let cs = chan.cpu_stats(cpu).unwrap_or_default();
    let lost_counted: u64 = (0..chan.num_cpus())
        .filter_map(|c| chan.cpu_stats(c))
        .map(|c| c.lost_total())
        .sum();
    let raw_got = d.count(raw_id);
    let tick_got = d.count(tick_id);
    let emitted = events + b_emitted;
    let (med, _, max) = median_spread(&a_ns);
    let ps = &st.per_strategy[Strategy::PrefaultRestart as usize];
    let held_pk = d.delays_ns.iter().filter(|&&x| x > 1e6).count() as u64;
    Ok(StallRow {
        scenario: sc.name(),
        strategy: s.name().into(),
        hold_ms: sc.hold().as_secs_f64() * 1e3,
        events,
        event_ns_median: med,
        event_ns_max: max,
        own_lost: events.saturating_sub(raw_got),
        neighbour_events: b_emitted,
        neighbour_lost: b_emitted.saturating_sub(tick_got),
        neighbour_lost_per_stall: b_emitted.saturating_sub(tick_got) as f64 / events as f64,
        stalled_per_stall: cs.lost_stalled as f64 / events as f64,
        lost_stalled: cs.lost_stalled,
        lost_full: cs.lost_full,
        delay_ms_max: d.delays_ns.iter().copied().fold(0.0, f64::max) / 1e6,
        delay_ms_p99: percentile(&d.delays_ns, 0.99) / 1e6,
        packets_held: held_pk,
        packets: d.packets,
        consumer_busy_ms: d.busy_ns as f64 / 1e6,
        consumer_wakeups: d.wakeups,
        restarts: ps.restarts,
        fallbacks: ps.fallbacks,
        unaccounted: emitted.abs_diff(d.records + lost_counted),
    })
}

// ---------------------------------------------------------------------------------------
// 3. Oversubscription and migration storm

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn set_affinity(tid: i32, cpu: u32) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET with an index checked against CPU_SETSIZE;
    // sched_setaffinity on a thread id of this process (or a stale one: then it fails).
    unsafe {
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

struct LoadSample {
    mevs: f64,
    trace_ns: f64,
    lost: u64,
    lost_stalled: u64,
    restarts: u64,
    fallbacks: u64,
    remote: u64,
    migrations: u64,
    delay_ms_max: f64,
    unaccounted: u64,
    events: u64,
}

/// Application work between two events of a load-test writer (keeps the data rate one
/// consumer can drain, so losses come from the strategies, not from the consumer).
#[inline(never)]
fn work(iters: u32) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..iters {
        x = std::hint::black_box(x.rotate_left(7) ^ 0x5555);
    }
    x
}

/// Cost of an empty `rdtsc` pair, in ticks (subtracted from the timed trace calls).
fn rdtsc_pair_ticks() -> f64 {
    let n = 100_000u64;
    let mut sum = 0u64;
    for _ in 0..n {
        let a = faultline_rseq::rdtsc();
        let b = faultline_rseq::rdtsc();
        sum += b.wrapping_sub(a);
    }
    sum as f64 / n as f64
}

fn load_run(
    s: Strategy,
    threads: usize,
    storm: bool,
    events: u64,
    pair_ticks: f64,
) -> anyhow::Result<LoadSample> {
    let chan = Arc::new(Channel::create(&ChannelConfig::default())?);
    let (rec, h) = recorder(&chan, s)?;
    let drainer = Drainer::spawn(chan.clone(), None, Some(CONSUMER_NICE));
    let cpus = faultline_rseq::allowed_cpus();
    let tids: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let migrations = AtomicU64::new(0);
    let srcs: Vec<Vec<u8>> = (0..threads).map(|t| vec![t as u8; 256]).collect();
    let t0 = Instant::now();
    let ticks: Vec<u64> = std::thread::scope(|scope| {
        let ctl = storm.then(|| {
            scope.spawn(|| {
                let mut k = 0usize;
                // Relaxed: a stop flag.
                while !stop.load(Ordering::Relaxed) {
                    for (i, tid) in tids.iter().enumerate() {
                        // Acquire: pairs with the writer's release store of its tid.
                        let tid = tid.load(Ordering::Acquire) as i32;
                        if tid != 0 && set_affinity(tid, cpus[(k + i) % cpus.len()]) {
                            migrations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    k += 1;
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        });
        let ws: Vec<_> = (0..threads)
            .map(|t| {
                let (tids, srcs) = (&tids, &srcs);
                scope.spawn(move || {
                    // Release: publishes the tid to the controller.
                    tids[t].store(gettid() as u64, Ordering::Release);
                    let src = &srcs[t];
                    let mut ticks = 0u64;
                    for i in 0..events {
                        std::hint::black_box(work(LOAD_WORK));
                        let a = faultline_rseq::rdtsc();
                        trace!(STUDY_RAW, i, RawBuf(src.as_ptr(), src.len()));
                        ticks += faultline_rseq::rdtsc().wrapping_sub(a);
                    }
                    ticks
                })
            })
            .collect();
        let ticks = ws.into_iter().map(|w| w.join().expect("writer")).collect();
        // Relaxed: a stop flag.
        stop.store(true, Ordering::Relaxed);
        if let Some(c) = ctl {
            c.join().expect("controller");
        }
        ticks
    });
    let wall = t0.elapsed().as_nanos() as f64;
    faultline_tracepoints::unregister(h);
    let d = drainer.finish(&chan);
    if let Some(e) = d.errors.first() {
        anyhow::bail!("consumer error: {e}");
    }
    let st = rec.stats();
    let all: Vec<_> = (0..chan.num_cpus())
        .filter_map(|c| chan.cpu_stats(c))
        .collect();
    let lost: u64 = all.iter().map(|c| c.lost_total()).sum();
    let total = events * threads as u64;
    let ps = &st.per_strategy[Strategy::PrefaultRestart as usize];
    let clock = faultline_ringbuf::clock::info(faultline_ringbuf::ClockKind::Tsc);
    let per_thread_ns: Vec<f64> = ticks
        .iter()
        .map(|&t| {
            let per = (t as f64 / events as f64 - pair_ticks).max(0.0);
            per * 1e9 / clock.freq as f64
        })
        .collect();
    Ok(LoadSample {
        mevs: total as f64 / wall * 1e3,
        trace_ns: median_spread(&per_thread_ns).0,
        lost,
        lost_stalled: all.iter().map(|c| c.lost_stalled).sum(),
        restarts: ps.restarts,
        fallbacks: ps.fallbacks,
        remote: all.iter().map(|c| c.remote_commits).sum(),
        migrations: migrations.load(Ordering::Relaxed),
        delay_ms_max: d.delays_ns.iter().copied().fold(0.0, f64::max) / 1e6,
        unaccounted: total.abs_diff(d.records + lost),
        events: total,
    })
}

/// Iterations of [`work`] between two events in the load tests (about 1 µs).
const LOAD_WORK: u32 = 1000;

/// Iterations of [`work`] between two events of the stall tests' neighbour (about 0.1 µs with
/// the event: some 8 M events/s, ~190 MB/s, so a default buffer holds about 5 ms of its events
/// and a consumer a scheduler tick late loses nothing).
const NEIGHBOUR_WORK: u32 = 200;

// ---------------------------------------------------------------------------------------

/// Run the study.
pub fn run(opt: &StudyOptions) -> anyhow::Result<StudyReport> {
    let load_before = load_avg();
    let rounds = opt.rounds.max(1);
    faultline_tracepoints::enable("faultline_study:*");
    let _ = faultline_ringbuf::clock::info(faultline_ringbuf::clock::default_kind());
    let say = |m: &str| {
        if opt.progress {
            eprintln!("study: {m}");
        }
    };

    // 1. Resident.
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); opt.resident.len() * 3];
    for round in 0..rounds {
        say(&format!("resident data, round {}/{rounds}", round + 1));
        for (pi, &(payload, events)) in opt.resident.iter().enumerate() {
            for (si, s) in Strategy::ALL.into_iter().enumerate() {
                res[pi * 3 + si].push(resident_once(s, payload, events)?);
            }
        }
    }
    let mut resident = Vec::new();
    for (pi, &(payload, _)) in opt.resident.iter().enumerate() {
        let rcc = median_spread(&res[pi * 3]).0;
        for (si, s) in Strategy::ALL.into_iter().enumerate() {
            let (m, lo, hi) = median_spread(&res[pi * 3 + si]);
            resident.push(ResidentRow {
                strategy: s.name().into(),
                payload,
                ns_median: m,
                ns_min: lo,
                ns_max: hi,
                vs_rcc: m / rcc,
            });
        }
    }

    // 2. Non-resident, with a neighbour on the same CPU.
    let uffd_probe = crate::uffd::HeldFaults::new(1, Duration::from_millis(1));
    let uffd = match &uffd_probe {
        Ok(_) => None,
        Err(e) => Some(format!(
            "userfaultfd unavailable ({e}): held-fault scenarios skipped"
        )),
    };
    drop(uffd_probe);
    let mut scenarios = vec![(Scenario::DontNeed, opt.dontneed_events)];
    for &(d, n) in &opt.holds {
        scenarios.push((Scenario::Resident(d), n));
        if uffd.is_none() {
            scenarios.push((Scenario::Held(d), n));
        }
    }
    let mut stalls = Vec::new();
    for &(sc, n) in &scenarios {
        for s in Strategy::ALL {
            say(&format!("{} / {}", sc.name(), s.name()));
            stalls.push(stall_run(s, sc, n.max(1))?);
        }
    }

    // 3. Load.
    let load_cfgs = [
        ("oversubscribed, 8 threads", 8usize, false),
        ("migration storm, 4 threads", 4, true),
    ];
    let pair = rdtsc_pair_ticks();
    let mut ls: Vec<Vec<LoadSample>> = (0..load_cfgs.len() * 3).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        say(&format!("load, round {}/{rounds}", round + 1));
        for (ci, &(_, threads, storm)) in load_cfgs.iter().enumerate() {
            for (si, s) in Strategy::ALL.into_iter().enumerate() {
                ls[ci * 3 + si].push(load_run(s, threads, storm, opt.load_events, pair)?);
            }
        }
    }
    let mut load = Vec::new();
    for (ci, &(name, threads, _)) in load_cfgs.iter().enumerate() {
        for (si, s) in Strategy::ALL.into_iter().enumerate() {
            let v = &ls[ci * 3 + si];
            let (m, lo, hi) = median_spread(&v.iter().map(|x| x.mevs).collect::<Vec<_>>());
            load.push(LoadRow {
                scenario: name.into(),
                strategy: s.name().into(),
                threads,
                events: v.iter().map(|x| x.events).sum(),
                mevents_per_s: m,
                mevents_min: lo,
                mevents_max: hi,
                trace_ns: median_spread(&v.iter().map(|x| x.trace_ns).collect::<Vec<_>>()).0,
                lost: v.iter().map(|x| x.lost).sum(),
                lost_stalled: v.iter().map(|x| x.lost_stalled).sum(),
                restarts: v.iter().map(|x| x.restarts).sum(),
                fallbacks: v.iter().map(|x| x.fallbacks).sum(),
                remote_commits: v.iter().map(|x| x.remote).sum(),
                migrations: v.iter().map(|x| x.migrations).sum(),
                delay_ms_max: v.iter().map(|x| x.delay_ms_max).fold(0.0, f64::max),
                unaccounted: v.iter().map(|x| x.unaccounted).sum(),
            });
        }
    }

    let conclusion = conclude(&resident, &stalls, &load);
    Ok(StudyReport {
        rounds,
        load_before,
        load_after: load_avg(),
        uffd,
        resident,
        stalls,
        load,
        conclusion,
    })
}

/// Statements the data supports (each with its numbers).
fn conclude(resident: &[ResidentRow], stalls: &[StallRow], load: &[LoadRow]) -> Vec<String> {
    let mut out = Vec::new();
    for r in resident
        .iter()
        .filter(|r| r.strategy != "reserve-copy-commit")
    {
        out.push(format!(
            "resident {} B: {} costs {:.2}x reserve-copy-commit ({:.1} ns vs {:.1} ns)",
            r.payload,
            r.strategy,
            r.vs_rcc,
            r.ns_median,
            r.ns_median / r.vs_rcc
        ));
    }
    for sc in stalls
        .iter()
        .map(|s| s.scenario.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let rows: Vec<&StallRow> = stalls.iter().filter(|s| s.scenario == sc).collect();
        let parts: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} loses {:.0} neighbour events/stall ({:.0} to a held sub-buffer), consumer delay max {:.2} ms",
                    r.strategy, r.neighbour_lost_per_stall, r.stalled_per_stall, r.delay_ms_max
                )
            })
            .collect();
        out.push(format!("{sc}: {}", parts.join("; ")));
    }
    for r in load {
        out.push(format!(
            "{}: {} {:.0} ns/trace call, {} lost ({} stalled), {} restarts, {} fallbacks",
            r.scenario, r.strategy, r.trace_ns, r.lost, r.lost_stalled, r.restarts, r.fallbacks
        ));
    }
    out
}

/// Human-readable report.
pub fn print(r: &StudyReport) {
    println!(
        "faultline copy-strategy study: {} rounds; load {:.2} -> {:.2}",
        r.rounds, r.load_before, r.load_after
    );
    if let Some(u) = &r.uffd {
        println!("{u}");
    }
    println!("\n1. resident data (1 pinned thread, no consumer): ns/event");
    println!(
        "{:<20} {:>8} {:>10} {:>19} {:>8}",
        "strategy", "payload", "ns/event", "spread", "vs rcc"
    );
    for x in &r.resident {
        println!(
            "{:<20} {:>8} {:>10.1} {:>19} {:>8.2}",
            x.strategy,
            x.payload,
            x.ns_median,
            format!("{:.1}..{:.1}", x.ns_min, x.ns_max),
            x.vs_rcc
        );
    }
    println!(
        "\n2. non-resident data: A traces 256 B from a non-resident page; B traces on the same CPU"
    );
    println!(
        "{:<32} {:<20} {:>6} {:>11} {:>11} {:>8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>5}",
        "scenario",
        "strategy",
        "A ev",
        "A ns med",
        "A ns max",
        "A lost",
        "B events",
        "B lost",
        "B lost/st",
        "stalled",
        "full",
        "delay max",
        "delay p99",
        "held",
        "restarts",
        "unacc"
    );
    for x in &r.stalls {
        println!(
            "{:<32} {:<20} {:>6} {:>11.0} {:>11.0} {:>8} {:>10} {:>10} {:>10.0} {:>9} {:>9} {:>8.2}ms {:>7.2}ms {:>6} {:>8} {:>5}",
            x.scenario,
            x.strategy,
            x.events,
            x.event_ns_median,
            x.event_ns_max,
            x.own_lost,
            x.neighbour_events,
            x.neighbour_lost,
            x.neighbour_lost_per_stall,
            x.lost_stalled,
            x.lost_full,
            x.delay_ms_max,
            x.delay_ms_p99,
            x.packets_held,
            x.restarts,
            x.unaccounted
        );
    }
    println!("\n3. load: resident 256 B events after ~1 us of work each, consumer draining");
    println!(
        "{:<28} {:<20} {:>9} {:>15} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>5}",
        "scenario",
        "strategy",
        "Mev/s",
        "spread",
        "trace ns",
        "lost",
        "stalled",
        "restarts",
        "fallback",
        "remote",
        "migrations",
        "delay max",
        "unacc"
    );
    for x in &r.load {
        println!(
            "{:<28} {:<20} {:>9.2} {:>15} {:>8.1} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>7.2}ms {:>5}",
            x.scenario,
            x.strategy,
            x.mevents_per_s,
            format!("{:.2}..{:.2}", x.mevents_min, x.mevents_max),
            x.trace_ns,
            x.lost,
            x.lost_stalled,
            x.restarts,
            x.fallbacks,
            x.remote_commits,
            x.migrations,
            x.delay_ms_max,
            x.unaccounted
        );
    }
    println!("\nsummary:");
    for c in &r.conclusion {
        println!("  {c}");
    }
}
