//! `faultline stress --record`: the overload soak, through the real `faultline record`.
//!
//! Where `faultline stress` drives the ring buffer API in one process, the soak runs the whole
//! pipeline as a user does: this executable's `record` command traces the test program
//! (`faultline-testapp`, next to this executable) with tiny sub-buffers, all its writer threads
//! pinned on **one** CPU (more writers than the CPU can run, so writers are preempted between
//! reserve and commit and sub-buffers fill while others are still held), in discard mode and in
//! overwrite (flight-recorder) mode. Each *round* is one recording: most rounds `SIGKILL` the
//! program at a random moment (often inside a reservation: the program spins between reserve and
//! commit), one in four lets it finish. Rounds repeat until the time given per mode is used.
//!
//! # What the program logs
//! Every writer emits `testapp:seq { thread, seq, pad }` with consecutive `seq` from 0 and, once
//! the recorder returned, appends `thread seq` (committed) or `thread seq L` (not recorded:
//! counted as lost by the ring buffer) to a log with one `O_APPEND` write. So every sequence
//! number a writer finished is in the log (a kill can cut that write short: a last line
//! without its newline is ignored, its event counts as in flight); only the one in flight when the kill landed is not
//! (in the trace if it was committed, counted as "writer died" by `record`'s dead-writer
//! recovery if it was reserved, nowhere if it was not reserved yet).
//!
//! # Invariants checked after every round
//! * `record` exits with the program's status (137 after a `SIGKILL`, 0 otherwise), within a
//!   bounded time, with its JSON report.
//! * **Zero packets rejected** by the trace writer (`summary.drain.packets_rejected`), no
//!   shared-memory read errors.
//! * The trace reads back whole with faultline's reader, which rejects any packet whose
//!   cumulative loss counters are below the previous packet's of the same stream: **per-stream
//!   cumulative discarded counters never decrease**.
//! * **babeltrace2** reads the trace with no diagnostic other than its discarded-events notices
//!   (and, in overwrite mode only, discarded-packets notices), prints as many events as
//!   faultline's reader yields, and its discarded packets equal `faultline stats`'
//!   `lost_packets`. Skipped, and said so in the report, when babeltrace2 is not installed.
//! * Per writer: **delivered + lost (+ overwritten) == emitted**, exactly. `emitted` is one past
//!   the highest sequence number seen in the log or the trace; `delivered` the distinct
//!   sequence numbers in the trace; `lost` those logged as not recorded; `overwritten` those
//!   logged as committed but not in the trace, allowed only in overwrite mode, and only in a
//!   round whose trace lost packets. No sequence number is in the trace twice, none is both in
//!   the trace and logged lost, and none is unaccounted for; every payload is byte-exact.
//! * Per round: the trace's loss counters (`lost_total`) equal the events the writers logged
//!   as lost plus the reservations of writers that died (`recovery.records`), plus, after a
//!   kill, at most one event per writer whose loss the writer had no time to log (the kill
//!   landed between the recorder's answer and the log write; `lost_in_flight`).
//!
//! Events in flight when a kill lands are not in any writer's `emitted`: the writer never
//! finished them, and which of the three fates above they met is only known in total.
//!
//! The report (`--json`) has, per mode, the counts of each invariant (`packets_rejected`,
//! `counter_decreases`, `babeltrace2_warnings`, `accounting_mismatches`, ...), the totals
//! (`emitted`, `delivered`, `lost`, ...) and the first violations in words.

use faultline_ctf::{stats, Filter, Trace};
use faultline_ringbuf::Mode;
use faultline_schema::Value;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Options of a soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Seconds of rounds per mode.
    pub seconds: f64,
    pub modes: Vec<Mode>,
    /// Writer threads of the traced program, all on one CPU.
    pub threads: u32,
    pub subbuf_size: u64,
    pub num_subbuf: u64,
    /// Busy-wait iterations between reserve and commit of every event.
    pub spin: u64,
    /// Padding bytes per event.
    pub pad: usize,
    pub seed: u64,
    /// Where the rounds' traces go (default: a fresh directory under the temporary directory).
    /// The traces of passing rounds are removed; failing ones are kept as evidence.
    pub dir: Option<PathBuf>,
    /// `faultline` executable running `record` (default: this executable).
    pub faultline: Option<PathBuf>,
    /// The traced program (default: `faultline-testapp` next to the `faultline` executable).
    pub testapp: Option<PathBuf>,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            seconds: 10.0,
            modes: vec![Mode::Discard, Mode::Overwrite],
            threads: 8,
            subbuf_size: 512,
            num_subbuf: 4,
            spin: 200,
            pad: 24,
            seed: 0x50a4,
            dir: None,
            faultline: None,
            testapp: None,
        }
    }
}

/// One mode's totals and invariant counts (the keys are the `--json` contract).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModeReport {
    pub mode: String,
    pub rounds: u64,
    /// Rounds whose program was SIGKILLed / ran to its end.
    pub killed: u64,
    pub finished: u64,
    pub seconds: f64,
    /// Events emitted by the writers (sum over writers of one past their highest sequence).
    pub emitted: u64,
    /// Distinct events in the traces.
    pub delivered: u64,
    /// Events the recorder did not record (logged by the writers; counted by the ring buffer).
    pub lost: u64,
    /// Events logged as committed and absent from the trace (overwrite mode: their packet was
    /// overwritten before it was read).
    pub overwritten: u64,
    /// Reservations of SIGKILLed writers, completed as lost by `record`'s recovery.
    pub writer_died: u64,
    /// Events counted lost by the ring buffer whose writer was killed before it logged them
    /// (at most one per writer per round).
    pub lost_in_flight: u64,
    /// The traces' loss counters (`lost_total` of `faultline stats`), summed over rounds.
    pub lost_in_trace: u64,
    pub packets_written: u64,
    /// Packets the trace writer rejected (invariant: 0).
    pub packets_rejected: u64,
    /// Shared-memory read errors the consumer reported (invariant: 0).
    pub read_errors: u64,
    /// Traces faultline's reader rejects (a cumulative counter going down, or any other
    /// inconsistency; invariant: 0).
    pub counter_decreases: u64,
    /// `faultline stats` lost packets (gaps between packets) and packets before the first.
    pub lost_packets: u64,
    pub packets_before_first: u64,
    /// babeltrace2 ran on every trace.
    pub babeltrace2_checked: bool,
    /// babeltrace2 diagnostics other than discarded notices (invariant: 0).
    pub babeltrace2_warnings: u64,
    pub babeltrace2_discarded_events: u64,
    pub babeltrace2_discarded_packets: u64,
    /// Rounds where babeltrace2's event count or discarded packets differ from faultline's.
    pub babeltrace2_disagreements: u64,
    /// Events in a trace twice (invariant: 0).
    pub duplicates: u64,
    /// Events in the trace that the writer logged as lost, payloads that are not the expected
    /// bytes (invariant: 0).
    pub corrupt: u64,
    /// Sequence numbers neither delivered nor logged (invariant: 0).
    pub unaccounted: u64,
    /// Writers (per round) where delivered + lost + overwritten != emitted, or with
    /// overwritten events where that is not allowed (invariant: 0).
    pub accounting_mismatches: u64,
    /// Rounds where the trace's loss counters differ from logged lost + writer died
    /// (invariant: 0).
    pub loss_count_mismatches: u64,
    /// Rounds where `record` failed: wrong exit status, hang, no report (invariant: 0).
    pub record_failures: u64,
    /// The first violations, in words.
    pub violations: Vec<String>,
    /// Round trace directories kept because they failed.
    pub kept: Vec<String>,
    pub ok: bool,
}

/// The whole soak (`faultline stress --record --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub threads: u32,
    pub cpu: u32,
    pub subbuf_size: u64,
    pub num_subbuf: u64,
    pub modes: Vec<ModeReport>,
    pub ok: bool,
}

const MAX_VIOLATIONS: usize = 20;
const MAX_KEPT: usize = 5;
/// Longest wait for the program to start logging, and for `record` to end after the kill.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const END_TIMEOUT: Duration = Duration::from_secs(120);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Discard => "discard",
        Mode::Overwrite => "overwrite",
    }
}

impl ModeReport {
    fn violation(&mut self, round: &str, msg: impl Into<String>) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations
                .push(format!("round {round}: {}", msg.into()));
        }
    }
}

/// Run the soak (module docs). `progress` prints one line per mode on stderr.
pub fn run(opt: &SoakOptions, progress: bool) -> anyhow::Result<SoakReport> {
    let faultline = match &opt.faultline {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let testapp = match &opt.testapp {
        Some(p) => p.clone(),
        None => faultline.with_file_name("faultline-testapp"),
    };
    if !testapp.exists() {
        anyhow::bail!(
            "the traced program {} does not exist (build it: cargo build --release -p faultline-cli)",
            testapp.display()
        );
    }
    let base = match &opt.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("faultline-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base)?;
    let cpu = *faultline_rseq::allowed_cpus().last().unwrap_or(&0);
    let bt = Command::new("babeltrace2")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut rng = Rng(opt.seed | 1);
    let mut rep = SoakReport {
        threads: opt.threads,
        cpu,
        subbuf_size: opt.subbuf_size,
        num_subbuf: opt.num_subbuf,
        ..SoakReport::default()
    };
    for &mode in &opt.modes {
        let mut m = ModeReport {
            mode: mode_name(mode).to_string(),
            babeltrace2_checked: bt,
            ..ModeReport::default()
        };
        let t0 = Instant::now();
        while m.rounds == 0 || t0.elapsed().as_secs_f64() < opt.seconds {
            let round = m.rounds;
            let dir = base.join(format!("{}-{round}", m.mode));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let before = m.violations.len();
            let failed_before = failures(&m);
            let finish = round % 4 == 3;
            let kill_after = Duration::from_millis(50 + rng.next() % 400);
            one_round(
                opt, &faultline, &testapp, mode, cpu, bt, &dir, finish, kill_after, round, &mut m,
            );
            m.rounds += 1;
            if finish {
                m.finished += 1;
            } else {
                m.killed += 1;
            }
            if failures(&m) > failed_before || m.violations.len() > before {
                if m.kept.len() < MAX_KEPT {
                    m.kept.push(dir.display().to_string());
                } else {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        m.seconds = t0.elapsed().as_secs_f64();
        m.ok = failures(&m) == 0;
        if progress {
            eprintln!(
                "  {} mode: {} rounds in {:.1} s, {}",
                m.mode,
                m.rounds,
                m.seconds,
                if m.ok { "ok" } else { "VIOLATIONS" }
            );
        }
        rep.modes.push(m);
    }
    if opt.dir.is_none() && rep.modes.iter().all(|m| m.kept.is_empty()) {
        let _ = std::fs::remove_dir_all(&base);
    }
    rep.ok = rep.modes.iter().all(|m| m.ok);
    Ok(rep)
}

/// Sum of the invariant counts (0 when everything held).
fn failures(m: &ModeReport) -> u64 {
    m.packets_rejected
        + m.read_errors
        + m.counter_decreases
        + m.babeltrace2_warnings
        + m.babeltrace2_disagreements
        + m.duplicates
        + m.corrupt
        + m.unaccounted
        + m.accounting_mismatches
        + m.loss_count_mismatches
        + m.record_failures
}

/// Read `pidfile` once the program is running and has logged something.
fn wait_started(pidfile: &Path, log: &Path, rec: &mut std::process::Child) -> Option<i32> {
    let t0 = Instant::now();
    while t0.elapsed() < START_TIMEOUT {
        if let Ok(s) = std::fs::read_to_string(pidfile) {
            if let Ok(p) = s.trim().parse() {
                if std::fs::metadata(log).is_ok_and(|m| m.len() > 0) {
                    return Some(p);
                }
            }
        }
        if let Ok(Some(_)) = rec.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn one_round(
    opt: &SoakOptions,
    faultline: &Path,
    testapp: &Path,
    mode: Mode,
    cpu: u32,
    bt: bool,
    dir: &Path,
    finish: bool,
    kill_after: Duration,
    round: u64,
    m: &mut ModeReport,
) {
    // Named with how it ended, so a violation can be related to the kill's timing.
    let round = &if finish {
        format!("{round} (ran to the end)")
    } else {
        format!("{round} (killed after {} ms)", kill_after.as_millis())
    };
    let trace = dir.join("trace");
    let log = dir.join("log");
    let pidfile = dir.join("pid");
    let mut cmd = Command::new(faultline);
    cmd.arg("record")
        .arg("--json")
        .args(["--subbuf-size", &opt.subbuf_size.to_string()])
        .args(["--subbufs", &opt.num_subbuf.to_string()]);
    if mode == Mode::Overwrite {
        cmd.arg("--overwrite");
    }
    cmd.arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(testapp)
        .arg("--log")
        .arg(&log)
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["--threads", &opt.threads.to_string()])
        .args(["--cpu", &cpu.to_string()])
        .args(["--spin", &opt.spin.to_string()])
        .args(["--pad", &opt.pad.to_string()])
        .arg("--log-lost");
    if finish {
        cmd.args(["--events", "3000"]);
    }
    let mut rec = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            m.record_failures += 1;
            m.violation(round, format!("cannot run {}: {e}", faultline.display()));
            return;
        }
    };
    // Read both pipes while record runs (its report comes at the end).
    let mut out_pipe = rec.stdout.take();
    let mut err_pipe = rec.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let mut killed = false;
    if !finish {
        match wait_started(&pidfile, &log, &mut rec) {
            Some(pid) => {
                std::thread::sleep(kill_after);
                // SAFETY: kill(2) on the pid the program we started wrote.
                killed = unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
            }
            None => {
                m.record_failures += 1;
                m.violation(round, "the traced program did not start logging");
            }
        }
    }
    let t0 = Instant::now();
    let status = loop {
        match rec.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if t0.elapsed() < END_TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = rec.kill();
                let _ = rec.wait();
                break None;
            }
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        m.record_failures += 1;
        m.violation(round, format!("record did not end within {END_TIMEOUT:?}"));
        return;
    };
    let want = if killed { 128 + libc::SIGKILL } else { 0 };
    if status.code() != Some(want) {
        m.record_failures += 1;
        m.violation(
            round,
            format!(
                "record exited with {status} (expected {want}): {}",
                stderr.trim()
            ),
        );
    }
    let report: serde_json::Value = match serde_json::from_slice(&stdout) {
        Ok(v) => v,
        Err(e) => {
            m.record_failures += 1;
            m.violation(
                round,
                format!("record report: {e}; stderr: {}", stderr.trim()),
            );
            return;
        }
    };
    let num = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let drain = &report["summary"]["drain"];
    let rejected = num(&drain["packets_rejected"]);
    m.packets_rejected += rejected;
    m.packets_written += num(&drain["packets_written"]);
    if rejected > 0 {
        m.violation(
            round,
            format!(
                "{rejected} packets rejected by the trace writer (first: {}; last: {})",
                drain["first_write_error"], drain["last_write_error"]
            ),
        );
    }
    if let Some(errs) = drain["read_errors"].as_array().filter(|a| !a.is_empty()) {
        m.read_errors += errs.len() as u64;
        m.violation(round, format!("consumer read errors: {errs:?}"));
    }
    let died = num(&report["recovery"]["records"]);
    m.writer_died += died;

    // The trace, with faultline's reader.
    let t = match Trace::open(&trace) {
        Ok(t) => t,
        Err(e) => {
            m.counter_decreases += 1;
            m.violation(round, format!("trace unreadable: {e}"));
            return;
        }
    };
    let st = match stats(&t) {
        Ok(s) => s,
        Err(e) => {
            m.counter_decreases += 1;
            m.violation(round, format!("trace rejected by the reader: {e}"));
            return;
        }
    };
    m.lost_in_trace += st.lost_total;
    m.lost_packets += st.lost_packets;
    m.packets_before_first += st.packets_before_first;
    let mut seen: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut events = 0u64;
    for ev in t.events(&Filter::default()) {
        let ev = match ev {
            Ok(e) => e,
            Err(e) => {
                m.counter_decreases += 1;
                m.violation(round, format!("trace rejected by the reader: {e}"));
                return;
            }
        };
        events += 1;
        let (Some((_, Value::U(th))), Some((_, Value::U(seq))), Some((_, Value::Bytes(pad)))) =
            (ev.fields.first(), ev.fields.get(1), ev.fields.get(2))
        else {
            m.corrupt += 1;
            m.violation(
                round,
                format!("unexpected event {} {:?}", ev.name, ev.fields),
            );
            continue;
        };
        let good = pad.len() == opt.pad
            && pad
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i as u8) ^ (*th as u8));
        if !good {
            m.corrupt += 1;
            m.violation(
                round,
                format!("thread {th} seq {seq}: payload not as written"),
            );
        }
        if !seen.entry(*th as u32).or_default().insert(*seq) {
            m.duplicates += 1;
            m.violation(round, format!("thread {th} seq {seq} twice in the trace"));
        }
    }

    // The writers' log.
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    // A SIGKILL can cut the last write short (seen: "1 1007" of "1 10070 L\n"): a line without
    // its newline was not logged, its event was in flight.
    if !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(keep);
    }
    let mut committed: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut lost: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split(' ');
        let (Some(th), Some(seq)) = (
            it.next().and_then(|s| s.parse::<u32>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            m.corrupt += 1;
            m.violation(round, format!("unreadable log line {line:?}"));
            continue;
        };
        let set = if it.next() == Some("L") {
            &mut lost
        } else {
            &mut committed
        };
        set.entry(th).or_default().insert(seq);
    }
    let trace_lost_packets = st.lost_packets + st.packets_before_first > 0;
    let mut logged_lost = 0u64;
    let writers: BTreeSet<u32> = seen
        .keys()
        .chain(committed.keys())
        .chain(lost.keys())
        .copied()
        .collect();
    let empty = BTreeSet::new();
    for th in writers {
        let d = seen.get(&th).unwrap_or(&empty);
        let c = committed.get(&th).unwrap_or(&empty);
        let l = lost.get(&th).unwrap_or(&empty);
        let emitted = [d.last(), c.last(), l.last()]
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |&x| x + 1);
        let both = d.intersection(l).count() as u64;
        if both > 0 {
            m.corrupt += both;
            m.violation(
                round,
                format!("thread {th}: {both} events in the trace and logged lost"),
            );
        }
        let overwritten = c.difference(d).count() as u64;
        let accounted: BTreeSet<u64> = d.union(c).chain(l.iter()).copied().collect();
        let unaccounted = emitted - accounted.len() as u64;
        m.unaccounted += unaccounted;
        if unaccounted > 0 {
            m.violation(
                round,
                format!("thread {th}: {unaccounted} sequence numbers unaccounted"),
            );
        }
        m.emitted += emitted;
        m.delivered += d.len() as u64;
        m.lost += l.len() as u64;
        m.overwritten += overwritten;
        logged_lost += l.len() as u64;
        let balanced = d.len() as u64 + l.len() as u64 + overwritten == emitted + both;
        let overwrite_ok = overwritten == 0 || (mode == Mode::Overwrite && trace_lost_packets);
        if !balanced || !overwrite_ok {
            m.accounting_mismatches += 1;
            m.violation(
                round,
                format!(
                    "thread {th}: delivered {} + lost {} + overwritten {overwritten} vs emitted \
                     {emitted} ({} mode, trace lost packets: {trace_lost_packets})",
                    d.len(),
                    l.len(),
                    mode_name(mode)
                ),
            );
        }
    }
    // A killed writer's last event may have been counted lost without being logged: at most
    // one per writer, and not for a writer whose last reservation died.
    let in_flight = st.lost_total.checked_sub(logged_lost + died);
    let most = if killed {
        u64::from(opt.threads).saturating_sub(died)
    } else {
        0
    };
    match in_flight {
        Some(n) if n <= most => m.lost_in_flight += n,
        _ => {
            m.loss_count_mismatches += 1;
            m.violation(
                round,
                format!(
                    "trace counts {} events lost, writers logged {logged_lost}, {died} died in a \
                     reservation, at most {most} more can have been in flight",
                    st.lost_total
                ),
            );
        }
    }

    if bt {
        babeltrace2_round(&trace, mode, events, &st, round, m);
    }
}

/// Run babeltrace2 over the round's trace and check its diagnostics and counts.
fn babeltrace2_round(
    trace: &Path,
    mode: Mode,
    events: u64,
    st: &faultline_ctf::Stats,
    round: &str,
    m: &mut ModeReport,
) {
    let out = match Command::new("babeltrace2").arg(trace).output() {
        Ok(o) => o,
        Err(e) => {
            m.babeltrace2_warnings += 1;
            m.violation(round, format!("babeltrace2: {e}"));
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        m.babeltrace2_warnings += 1;
        m.violation(round, format!("babeltrace2 failed: {}", stderr.trim()));
        return;
    }
    // Padding records (abandoned reservations, kept in their packets) are events of the
    // declared padding class to babeltrace2; faultline's readers skip them.
    let lines = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !contains(l, b" faultline:padding:"))
        .count() as u64;
    let mut packets = 0u64;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let count = |rest: &str| rest.split(' ').next().and_then(|n| n.parse::<u64>().ok());
        if let Some(rest) = line.strip_prefix("WARNING: Tracer discarded ") {
            if rest.contains(" event") {
                m.babeltrace2_discarded_events += count(rest).unwrap_or(0);
                continue;
            }
            if rest.contains(" packet") {
                let n = count(rest).unwrap_or(0);
                packets += n;
                m.babeltrace2_discarded_packets += n;
                if mode == Mode::Overwrite {
                    continue;
                }
            }
        }
        if line.starts_with("WARNING: Tracer may have discarded events") {
            continue;
        }
        m.babeltrace2_warnings += 1;
        m.violation(round, format!("babeltrace2: {line}"));
    }
    if lines != events || packets != st.lost_packets {
        m.babeltrace2_disagreements += 1;
        m.violation(
            round,
            format!(
                "babeltrace2 prints {lines} events and {packets} discarded packets; faultline \
                 reads {events} events and {} lost packets",
                st.lost_packets
            ),
        );
    }
}

/// Human-readable report.
pub fn print_report(r: &SoakReport) {
    println!(
        "faultline stress --record: {} writer threads pinned on CPU {}, {} x {} B sub-buffers",
        r.threads, r.cpu, r.num_subbuf, r.subbuf_size
    );
    for m in &r.modes {
        println!(
            "\n{} mode: {} rounds in {:.1} s ({} SIGKILLed, {} ran to the end)",
            m.mode, m.rounds, m.seconds, m.killed, m.finished
        );
        println!("  emitted                  {:>12}", m.emitted);
        println!("  delivered                {:>12}", m.delivered);
        println!("  lost (not recorded)      {:>12}", m.lost);
        println!("  overwritten              {:>12}", m.overwritten);
        println!(
            "  writer died (recovered)  {:>12}  lost in flight at the kill {}; trace loss counters say {}",
            m.writer_died, m.lost_in_flight, m.lost_in_trace
        );
        println!(
            "  packets written          {:>12}  lost between packets {}, before the first {}",
            m.packets_written, m.lost_packets, m.packets_before_first
        );
        println!("  invariants (all must be 0):");
        println!(
            "    packets rejected by the trace writer   {:>8}",
            m.packets_rejected
        );
        println!(
            "    consumer read errors                   {:>8}",
            m.read_errors
        );
        println!(
            "    traces rejected by the reader          {:>8}",
            m.counter_decreases
        );
        if m.babeltrace2_checked {
            println!(
                "    babeltrace2 warnings (not discarded)   {:>8}  (discarded notices: {} events, {} packets)",
                m.babeltrace2_warnings,
                m.babeltrace2_discarded_events,
                m.babeltrace2_discarded_packets
            );
            println!(
                "    babeltrace2 disagreements              {:>8}",
                m.babeltrace2_disagreements
            );
        } else {
            println!("    babeltrace2                            not installed: not checked");
        }
        println!(
            "    duplicates                             {:>8}",
            m.duplicates
        );
        println!(
            "    corrupt / lost-but-delivered           {:>8}",
            m.corrupt
        );
        println!(
            "    unaccounted sequence numbers           {:>8}",
            m.unaccounted
        );
        println!(
            "    delivered + lost != emitted (writers)  {:>8}",
            m.accounting_mismatches
        );
        println!(
            "    loss counters != logged lost + died    {:>8}",
            m.loss_count_mismatches
        );
        println!(
            "    record failures                        {:>8}",
            m.record_failures
        );
        for v in &m.violations {
            println!("  ! {v}");
        }
        for k in &m.kept {
            println!("  kept: {k}");
        }
        println!("  verdict: {}", if m.ok { "OK" } else { "FAILED" });
    }
}

/// Whether `hay` contains `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
