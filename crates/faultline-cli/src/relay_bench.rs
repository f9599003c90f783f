//! `faultline relay-bench`: throughput through one `lttng-relayd` on loopback, faultline's
//! streamer next to LTTng's own consumer daemon, same workload, same relay, same sitting.
//!
//! A relay is started on 127.0.0.1 (ephemeral ports, its own output directory, killed at the
//! end). Each round runs both sides, alternating which goes first:
//! * **faultline**: an embedded session in this process with `relay(URL)` and no local
//!   files; `threads` threads each emit `events` `faultline_bench:int { seq }` events in a
//!   tight loop; the clock runs from the return of the session's `start()` (channel, relay
//!   session and streams set up, as `lttng create/enable/start` are for LTTng) to the return
//!   of `stop()` (which waits until the relay has written every packet).
//! * **LTTng**: the LTTng-UST benchmark program (`faultline-lttng`) with the same event
//!   shape, in a live session `lttng create --set-url=URL --live=200000` (per-UID buffers,
//!   LTTng's default sub-buffers); the clock runs from the program's start to the return of
//!   `lttng stop` (which also waits for the relay).
//!
//! Both traces are then read back **from the relay's output directory**: events with
//! faultline's CTF readers (losses = emitted − at the relay, for both sides alike), packets
//! from the relay's index files, bytes from the stream files. Throughput = what reached the relay / wall time: events/s, packets/s, MB/s (10^6
//! bytes). Discard mode on both sides: a side that cannot keep up loses events (counted).

use anyhow::{bail, Context};
use faultline::trace;
use faultline_ctf::general::CtfTrace;
use serde::Serialize;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Options of `faultline relay-bench`.
#[derive(Debug, Clone)]
pub struct RelayBenchOptions {
    /// Writer threads per side.
    pub threads: usize,
    /// Events per thread per round.
    pub events: u64,
    /// Rounds (each runs both sides).
    pub rounds: usize,
    /// Skip the LTTng side.
    pub no_lttng: bool,
}

/// One side's measurement in one round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SideRun {
    /// `faultline` or `lttng`.
    pub side: String,
    /// Events the program emitted.
    pub events_emitted: u64,
    /// Events in the relay's copy.
    pub events_at_relay: u64,
    /// Events emitted that are not in the relay's copy (discarded by the tracer or lost on
    /// the way).
    pub events_lost: u64,
    /// Packets in the relay's copy (index entries).
    pub packets: u64,
    /// Bytes of the relay's stream files.
    pub bytes: u64,
    /// Wall time (module docs).
    pub wall_s: f64,
    /// Events at the relay per second.
    pub events_per_s: f64,
    /// Packets per second.
    pub packets_per_s: f64,
    /// MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// The traced program's median ns per event.
    pub ns_per_event: f64,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayBenchReport {
    /// `lttng-relayd --version`.
    pub relayd_version: String,
    /// Threads per side.
    pub threads: usize,
    /// Events per thread per round.
    pub events_per_thread: u64,
    /// Every measurement.
    pub runs: Vec<SideRun>,
    /// Median events/s per side.
    pub median_events_per_s: Vec<(String, f64)>,
    /// Why the LTTng side did not run, if it did not.
    pub lttng_skipped: Option<String>,
}

struct Relayd {
    child: Child,
    control: u16,
    data: u16,
    out: PathBuf,
}

impl Relayd {
    fn start(base: &Path) -> anyhow::Result<Relayd> {
        let out = base.join("relay-out");
        std::fs::create_dir_all(&out)?;
        // Readable by LTTng's unprivileged consumer's relay (the relay itself writes here).
        for attempt in 0..5 {
            let ports: Vec<u16> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
                .collect();
            let mut child = Command::new("lttng-relayd")
                .arg("-C")
                .arg(format!("tcp://127.0.0.1:{}", ports[0]))
                .arg("-D")
                .arg(format!("tcp://127.0.0.1:{}", ports[1]))
                .arg("-L")
                .arg(format!("tcp://127.0.0.1:{}", ports[2]))
                .arg("-o")
                .arg(&out)
                .env("LTTNG_HOME", base)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting lttng-relayd (scripts/install-deps.sh installs it)")?;
            let until = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < until {
                if ports[..2]
                    .iter()
                    .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
                {
                    up = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return Ok(Relayd {
                    child,
                    control: ports[0],
                    data: ports[1],
                    out,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = attempt;
        }
        bail!("lttng-relayd did not start")
    }

    fn url(&self) -> String {
        format!("net://127.0.0.1:{}:{}", self.control, self.data)
    }

    /// The directory holding `metadata` under the session directory `HOST/SESSION-DATE`.
    fn trace_of(&self, session: &str) -> anyhow::Result<PathBuf> {
        let prefix = format!("{session}-");
        let mut stack = vec![self.out.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "metadata")
                    && d.strip_prefix(&self.out)
                        .ok()
                        .and_then(|rel| rel.components().nth(1))
                        .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(&prefix))
                {
                    return Ok(d);
                }
            }
        }
        bail!("session {session} not found on the relay")
    }
}

impl Drop for Relayd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Packets (index entries), stream bytes of a relay trace directory.
fn relay_files(dir: &Path) -> (u64, u64) {
    let mut packets = 0;
    let mut bytes = 0;
    if let Ok(rd) = std::fs::read_dir(dir.join("index")) {
        for e in rd.flatten() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            // 16-byte header, 72-byte entries (CTF index 1.1).
            packets += len.saturating_sub(16) / 72;
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata();
            if m.as_ref().is_ok_and(|m| m.is_file()) && e.file_name() != "metadata" {
                bytes += m.map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (packets, bytes)
}

fn finish_side(
    side: &str,
    dir: &Path,
    emitted: u64,
    wall: Duration,
    ns: f64,
) -> anyhow::Result<SideRun> {
    let t = CtfTrace::open(dir).with_context(|| format!("reading {}", dir.display()))?;
    let st = faultline_ctf::general::stats::ctf_stats(&t)
        .with_context(|| format!("reading {}", dir.display()))?;
    let (packets, bytes) = relay_files(dir);
    let w = wall.as_secs_f64().max(1e-9);
    Ok(SideRun {
        side: side.into(),
        events_emitted: emitted,
        events_at_relay: st.events_total,
        // Emitted minus what reached the relay: every loss, whatever its cause, counted the
        // same way for both sides (a reader's discarded count depends on each tracer's
        // counters; LTTng's live packets do not always carry a non-decreasing one).
        events_lost: emitted.saturating_sub(st.events_total),
        packets,
        bytes,
        wall_s: w,
        events_per_s: st.events_total as f64 / w,
        packets_per_s: packets as f64 / w,
        mb_per_s: bytes as f64 / w / 1e6,
        ns_per_event: ns,
    })
}

fn run_faultline(relay: &Relayd, o: &RelayBenchOptions, round: usize) -> anyhow::Result<SideRun> {
    let session = format!("fl-{round}");
    let s = faultline::Session::builder()
        .relay(relay.url())
        .relay_session(&session)
        .events("faultline_bench:int")
        .verbose(false)
        .start()
        .map_err(|e| anyhow::anyhow!("session: {e}"))?;
    // Like LTTng's clock, which starts once its session is set up.
    let t0 = Instant::now();
    let barrier = Arc::new(Barrier::new(o.threads));
    let hs: Vec<_> = (0..o.threads)
        .map(|_| {
            let b = barrier.clone();
            let n = o.events;
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                for i in 0..n {
                    trace!(crate::bench::BENCH_INT, i);
                }
                t.elapsed().as_nanos() as f64 / n.max(1) as f64
            })
        })
        .collect();
    let mut ns: Vec<f64> = hs.into_iter().filter_map(|h| h.join().ok()).collect();
    let sum = s.stop().map_err(|e| anyhow::anyhow!("session stop: {e}"))?;
    let wall = t0.elapsed();
    if let Some(r) = &sum.relay {
        if !r.complete() {
            eprintln!("faultline relay-bench: {}", r.line());
        }
    }
    ns.sort_by(f64::total_cmp);
    let med = ns.get(ns.len() / 2).copied().unwrap_or(0.0);
    let dir = relay.trace_of(&session)?;
    finish_side("faultline", &dir, o.events * o.threads as u64, wall, med)
}

/// Run the benchmark (module docs).
pub fn run(o: &RelayBenchOptions) -> anyhow::Result<RelayBenchReport> {
    // Removed however the run ends (after the relay, declared later, is stopped).
    let scratch = tempfile::Builder::new()
        .prefix("faultline-relay-bench-")
        .tempdir()?;
    let base = scratch.path();
    // The relay's files must be reachable for the unprivileged LTTng daemons' relay: it is
    // the relay (root here) that writes them, so only our reading matters.
    let relay = Relayd::start(base)?;
    let version = Command::new("lttng-relayd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut report = RelayBenchReport {
        relayd_version: version,
        threads: o.threads,
        events_per_thread: o.events,
        ..RelayBenchReport::default()
    };
    let mut lttng = if o.no_lttng {
        report.lttng_skipped = Some("--no-lttng".into());
        None
    } else {
        match faultline_lttng::check_available()
            .map_err(anyhow::Error::msg)
            .and_then(|_| faultline_lttng::LttngBench::new())
        {
            Ok(b) => Some(b),
            Err(e) => {
                report.lttng_skipped = Some(format!("{e:#}"));
                None
            }
        }
    };
    for round in 0..o.rounds {
        let lttng_first = round % 2 == 1;
        let mut order: Vec<&str> = vec!["faultline", "lttng"];
        if lttng_first {
            order.reverse();
        }
        for side in order {
            match side {
                "faultline" => report.runs.push(run_faultline(&relay, o, round)?),
                _ => {
                    let Some(b) = lttng.as_mut() else { continue };
                    let r = b.run_streamed(
                        faultline_lttng::EventKind::Int,
                        o.threads,
                        o.events,
                        &relay.url(),
                        Some(200_000),
                    )?;
                    let dir = relay.trace_of(&r.session)?;
                    report.runs.push(finish_side(
                        "lttng",
                        &dir,
                        r.events_emitted,
                        r.wall,
                        r.ns_per_event,
                    )?);
                }
            }
        }
    }
    for side in ["faultline", "lttng"] {
        let mut v: Vec<f64> = report
            .runs
            .iter()
            .filter(|r| r.side == side)
            .map(|r| r.events_per_s)
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        report
            .median_events_per_s
            .push((side.into(), v[v.len() / 2]));
    }
    drop(relay);
    Ok(report)
}

/// Print for people.
pub fn print(r: &RelayBenchReport) {
    println!(
        "relay throughput on loopback ({}), {} thread(s) x {} events per side per round",
        r.relayd_version, r.threads, r.events_per_thread
    );
    println!(
        "{:<10} {:>11} {:>11} {:>9} {:>8} {:>9} {:>7} {:>12} {:>10} {:>8} {:>9}",
        "side",
        "emitted",
        "at relay",
        "lost",
        "packets",
        "MB",
        "wall s",
        "events/s",
        "packets/s",
        "MB/s",
        "ns/event"
    );
    for x in &r.runs {
        println!(
            "{:<10} {:>11} {:>11} {:>9} {:>8} {:>9.1} {:>7.2} {:>12.0} {:>10.0} {:>8.1} {:>9.1}",
            x.side,
            x.events_emitted,
            x.events_at_relay,
            x.events_lost,
            x.packets,
            x.bytes as f64 / 1e6,
            x.wall_s,
            x.events_per_s,
            x.packets_per_s,
            x.mb_per_s,
            x.ns_per_event
        );
    }
    for (s, v) in &r.median_events_per_s {
        println!("median {s}: {v:.0} events/s at the relay");
    }
    if let Some(s) = &r.lttng_skipped {
        println!("LTTng side skipped: {s}");
    }
}
