//! `faultline bench --libc`: what `record --libc` costs a real program, next to `strace -f`
//! (and `ltrace -f` when installed), measured in the same run.
//!
//! Each workload is an ordinary command found on a fresh machine, run `rounds` times in each
//! mode, interleaved (untraced, faultline, strace, ltrace, then again), so that machine load
//! drifts hit every mode alike; the median wall time is reported with the ratio to the
//! untraced median. Wall times include everything the user waits for: for faultline, starting
//! the recorder, draining the buffers and finishing the trace; for strace, writing its log.
//! Output goes to `/dev/null`, logs and traces to a temporary directory that is removed.
//!
//! *A large repository*: `git status` needs one, and a fresh machine has none, so the
//! benchmark makes one: a bare repository in the temporary directory whose work tree is
//! `/usr/share` (tens of thousands of files; `/usr/include` with `--quick`), committed once
//! before the runs (about a minute for `/usr/share`; the objects take a few hundred MB until
//! the directory is removed).
//!
//! *Where `record`'s time goes*: each traced run's report (`timing`, see
//! [`crate::record::Timing`]) splits `record`'s wall time into setup (channel, the short TSC
//! calibration, starting the program: `posix_spawn` returns once the program is executed),
//! attach (the preload library's constructor up to the schema), the run, and shutdown
//! (final drain, holder check, recovery, finishing the trace);
//! the medians are printed per workload.
//!
//! *Per call*: (traced − untraced) ÷ calls recorded (from the trace's summary), the cost one
//! wrapped call adds. It is compared with one `trace!` event of the same shape as `libc:write`
//! (eight fields, 32 data bytes through the faultable copy) recorded in this process by an
//! embedded session: the floor a wrapper cannot go below.

use anyhow::Context;
use faultline::Session;
use faultline_tracepoints::{trace, tracepoint, RawBuf};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

tracepoint!(pub BENCH_WRITE_SHAPE, "bench", "libc_write_shape", { fd: i32, count: u64,
    data: RawBuf, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });

/// Options of `bench --libc`.
#[derive(Debug, Clone)]
pub struct LibcBenchOptions {
    pub rounds: usize,
    pub quick: bool,
}

/// One workload's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub command: String,
    pub untraced_ms: f64,
    pub faultline_ms: f64,
    pub faultline_ratio: f64,
    /// Calls recorded by faultline (events of the trace).
    pub calls: u64,
    /// (faultline − untraced) ÷ calls, nanoseconds.
    pub faultline_ns_per_call: f64,
    pub strace_ms: Option<f64>,
    pub strace_ratio: Option<f64>,
    /// (strace − untraced) ÷ calls faultline recorded (strace sees more system calls).
    pub strace_ns_per_call: Option<f64>,
    pub ltrace_ms: Option<f64>,
    pub ltrace_ratio: Option<f64>,
    /// CPU time (user + system, the command and its descendants), medians, milliseconds: on a
    /// loaded machine wall time mostly measures waiting for a CPU.
    pub untraced_cpu_ms: f64,
    pub faultline_cpu_ms: f64,
    pub faultline_cpu_ratio: f64,
    /// (faultline − untraced) CPU ÷ calls, nanoseconds.
    pub faultline_cpu_ns_per_call: f64,
    pub strace_cpu_ms: Option<f64>,
    pub strace_cpu_ratio: Option<f64>,
    /// Medians of `record`'s own phases in the traced runs (report `timing`), milliseconds.
    pub record_setup_ms: f64,
    pub record_attach_ms: f64,
    pub record_shutdown_ms: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct LibcBenchReport {
    pub rounds: usize,
    pub rows: Vec<Row>,
    /// One `trace!` event shaped like `libc:write`, ns (median of rounds).
    pub trace_event_ns: f64,
    pub notes: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// User + system CPU time of every reaped descendant so far, milliseconds.
fn children_cpu_ms() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a struct rusage into a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: zero-initialised and filled by the kernel: valid either way.
    let ru = unsafe { ru.assume_init() };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// Run `cmd` to completion: (wall ms, CPU ms of it and everything it waited for).
fn time(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let c0 = children_cpu_ms();
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    let d = t.elapsed();
    if !st.success() {
        anyhow::bail!("{cmd:?} failed: {st}");
    }
    Ok((d.as_secs_f64() * 1e3, children_cpu_ms() - c0))
}

/// Events recorded and `record`'s phases (setup, attach, shutdown ms), from a trace's
/// summary file.
fn recorded(dir: &Path) -> (u64, [f64; 3]) {
    let v = std::fs::read_to_string(dir.join(".faultline-summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .unwrap_or_default();
    let t = &v["timing"];
    let ms = |k: &str| t[k].as_f64().unwrap_or(0.0);
    (
        v["summary"]["events_written"].as_u64().unwrap_or(0),
        [ms("setup_ms"), ms("attach_ms"), ms("shutdown_ms")],
    )
}

/// A git repository of `tree`'s files (a bare repository in `tmp`, `tree` as its work tree),
/// committed: the arguments of `git status` in it.
fn big_repo(tmp: &Path, tree: &str) -> anyhow::Result<Vec<String>> {
    let git = tmp.join("big.git");
    let gd = format!("--git-dir={}", git.display());
    let wt = format!("--work-tree={tree}");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let st = Command::new("git")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "git {args:?}: {st}");
        Ok(())
    };
    run(&["init", "-q", "--bare", &git.to_string_lossy()])?;
    run(&[&gd, "config", "core.bare", "false"])?;
    run(&[&gd, &wt, "add", "-A", "."])?;
    run(&[
        &gd,
        &wt,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-q",
        "-m",
        "bench",
    ])?;
    Ok(vec![
        "git".into(),
        gd,
        wt,
        "status".into(),
        "--porcelain".into(),
    ])
}

/// CPU time of this whole process (every thread), nanoseconds.
fn process_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// CPU time of one embedded session (start, `n` events of the `libc:write` shape, stop):
/// the writer's and the consumer's, like the traced program plus `record` in a `--libc` run.
fn session_cpu_ns(dir: &Path, n: u64) -> anyhow::Result<f64> {
    let buf = [7u8; 64];
    let t = process_cpu_ns();
    // Buffers that hold every event of the loop (~100 B each): a tight loop outruns the
    // disk, and a lost event would make the figure cheaper than a recorded one.
    let s = Session::builder()
        .output_dir(dir)
        .events("bench:libc_write_shape")
        .subbuf_size(1 << 20)
        .num_subbuf(32)
        .verbose(false)
        .start()
        .context("starting the in-process session")?;
    for i in 0..n {
        trace!(
            BENCH_WRITE_SHAPE,
            3,
            32,
            RawBuf(std::hint::black_box(buf.as_ptr()), 32),
            32,
            0,
            i,
            1,
            1
        );
    }
    let sum = s.stop()?;
    let cpu = process_cpu_ns() - t;
    let _ = std::fs::remove_dir_all(dir);
    if sum.lost_total() > 0 {
        anyhow::bail!("the in-process session lost {} events", sum.lost_total());
    }
    Ok(cpu)
}

/// One `trace!` of the `libc:write` shape recorded and drained into a trace, in this process:
/// CPU ns per event (writer plus consumer; the fixed cost of a session, measured with no
/// events, is subtracted). CPU time: robust to waiting for a CPU on a loaded machine.
fn trace_event_ns(tmp: &Path, rounds: usize) -> anyhow::Result<f64> {
    let n = 100_000u64;
    let mut per = Vec::new();
    for r in 0..rounds.max(3) {
        let empty = session_cpu_ns(&tmp.join(format!("e{r}")), 0)?;
        let full = session_cpu_ns(&tmp.join(format!("f{r}")), n)?;
        per.push((full - empty) / n as f64);
    }
    Ok(median(per))
}

/// Removes its directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the benchmark.
pub fn run(opt: &LibcBenchOptions) -> anyhow::Result<LibcBenchReport> {
    let me = std::env::current_exe()?;
    crate::libc_preload::find_library()?;
    let tmp = std::env::temp_dir().join(format!("faultline-bench-libc-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    // Removed however the run ends (an error returns early; the repository takes hundreds of MB).
    let _cleanup = RemoveOnDrop(tmp.clone());
    // The in-process baseline first: it takes seconds, the workloads minutes.
    let trace_event_ns = trace_event_ns(&tmp, opt.rounds)?;
    let mut notes = Vec::new();
    let have_strace = tool("strace");
    let have_ltrace = tool("ltrace");
    if !have_strace {
        notes.push("strace not installed: its columns are empty".into());
    }
    if !have_ltrace {
        notes.push("ltrace not installed: its columns are empty".into());
    }
    let count = if opt.quick { "50000" } else { "200000" };
    let mut workloads: Vec<(String, Vec<String>)> = vec![
        (
            "micro: dd bs=1 (read+write loop)".into(),
            ["dd", "if=/dev/zero", "of=/dev/null", "bs=1"]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("count={count}")])
                .collect(),
        ),
        // What `record --libc` costs a program that does nothing: its fixed cost (start, the
        // short TSC calibration, channel, the preload's constructor, the holder check,
        // finishing).
        ("true (fixed cost)".into(), vec!["true".into()]),
        (
            "find /usr -type f".into(),
            vec!["find".into(), "/usr".into(), "-type".into(), "f".into()],
        ),
        (
            "tar cf /dev/null /usr/share/doc".into(),
            vec![
                "tar".into(),
                "cf".into(),
                "/dev/null".into(),
                "/usr/share/doc".into(),
            ],
        ),
    ];
    let cwd = std::env::current_dir()?;
    if tool("git") && cwd.join(".git").exists() {
        workloads.push((
            format!("git status ({})", cwd.display()),
            vec!["git".into(), "status".into(), "--porcelain".into()],
        ));
    }
    if tool("git") {
        let tree = if opt.quick {
            "/usr/include"
        } else {
            "/usr/share"
        };
        match big_repo(&tmp, tree) {
            Ok(argv) => workloads.push((format!("git status (work tree {tree})"), argv)),
            Err(e) => notes.push(format!("no large repository for git status: {e}")),
        }
    }
    let mut rows = Vec::new();
    for (name, argv) in &workloads {
        let (mut un, mut fl, mut stv, mut ltv) = (vec![], vec![], vec![], vec![]);
        let (mut unc, mut flc, mut stc) = (vec![], vec![], vec![]);
        let mut calls = 0;
        let mut phases: [Vec<f64>; 3] = Default::default();
        for r in 0..opt.rounds {
            let (w, c) = time(Command::new(&argv[0]).args(&argv[1..]))?;
            un.push(w);
            unc.push(c);
            let dir: PathBuf = tmp.join(format!("t{}", rows.len() * 100 + r));
            let (w, c) = time(
                Command::new(&me)
                    .args(["record", "--libc", "-o"])
                    .arg(&dir)
                    .arg("--")
                    .args(argv),
            )?;
            fl.push(w);
            flc.push(c);
            let (n, ph) = recorded(&dir);
            calls = n;
            for (v, x) in phases.iter_mut().zip(ph) {
                v.push(x);
            }
            let _ = std::fs::remove_dir_all(&dir);
            if have_strace {
                let log = tmp.join("strace.log");
                let (w, c) = time(
                    Command::new("strace")
                        .args(["-f", "-o"])
                        .arg(&log)
                        .args(argv),
                )?;
                stv.push(w);
                stc.push(c);
                let _ = std::fs::remove_file(&log);
            }
            // ltrace is orders of magnitude slower: the micro loop only, one round.
            if have_ltrace && rows.is_empty() && r == 0 {
                let log = tmp.join("ltrace.log");
                ltv.push(
                    time(
                        Command::new("ltrace")
                            .args(["-f", "-o"])
                            .arg(&log)
                            .args(argv),
                    )?
                    .0,
                );
                let _ = std::fs::remove_file(&log);
            }
        }
        let u = median(un);
        let f = median(fl);
        let per = |t: f64| (t - u) * 1e6 / calls.max(1) as f64;
        let s = (!stv.is_empty()).then(|| median(stv));
        let l = (!ltv.is_empty()).then(|| median(ltv));
        let (uc, fc) = (median(unc), median(flc));
        let sc = (!stc.is_empty()).then(|| median(stc));
        rows.push(Row {
            workload: name.clone(),
            command: argv.join(" "),
            untraced_ms: u,
            faultline_ms: f,
            faultline_ratio: f / u,
            calls,
            faultline_ns_per_call: per(f),
            strace_ms: s,
            strace_ratio: s.map(|s| s / u),
            strace_ns_per_call: s.map(per),
            ltrace_ms: l,
            ltrace_ratio: l.map(|l| l / u),
            untraced_cpu_ms: uc,
            faultline_cpu_ms: fc,
            faultline_cpu_ratio: fc / uc.max(1e-9),
            faultline_cpu_ns_per_call: (fc - uc) * 1e6 / calls.max(1) as f64,
            strace_cpu_ms: sc,
            strace_cpu_ratio: sc.map(|s| s / uc.max(1e-9)),
            record_setup_ms: median(phases[0].clone()),
            record_attach_ms: median(phases[1].clone()),
            record_shutdown_ms: median(phases[2].clone()),
        });
    }
    Ok(LibcBenchReport {
        rounds: opt.rounds,
        rows,
        trace_event_ns,
        notes,
    })
}

/// Print for people.
pub fn print(r: &LibcBenchReport) {
    println!(
        "record --libc vs strace -f (wall time, median of {} rounds, ratio to untraced)",
        r.rounds
    );
    let opt = |v: Option<f64>, unit: &str| match v {
        Some(v) => format!("{v:.2}{unit}"),
        None => "-".into(),
    };
    println!(
        "{:<36} {:>10} {:>18} {:>10} {:>12} {:>18} {:>12} {:>14}",
        "workload",
        "untraced",
        "faultline",
        "calls",
        "ns/call",
        "strace -f",
        "ns/call",
        "ltrace -f"
    );
    for row in &r.rows {
        println!(
            "{:<36} {:>8.1}ms {:>9.1}ms {:>6.2}x {:>10} {:>12.0} {:>9}ms {:>7} {:>12} {:>14}",
            row.workload,
            row.untraced_ms,
            row.faultline_ms,
            row.faultline_ratio,
            row.calls,
            row.faultline_ns_per_call,
            opt(row.strace_ms, ""),
            opt(row.strace_ratio, "x"),
            opt(row.strace_ns_per_call, ""),
            opt(row.ltrace_ratio, "x"),
        );
    }
    println!("\nCPU time (user + system of the command and its descendants), medians:");
    println!(
        "{:<36} {:>10} {:>18} {:>12} {:>18}",
        "workload", "untraced", "faultline", "ns/call", "strace -f"
    );
    for row in &r.rows {
        println!(
            "{:<36} {:>8.1}ms {:>9.1}ms {:>6.2}x {:>12.0} {:>9}ms {:>7}",
            row.workload,
            row.untraced_cpu_ms,
            row.faultline_cpu_ms,
            row.faultline_cpu_ratio,
            row.faultline_cpu_ns_per_call,
            opt(row.strace_cpu_ms, ""),
            opt(row.strace_cpu_ratio, "x"),
        );
    }
    println!(
        "\nrecord's own phases in the traced runs (wall, medians): setup = channel, TSC \
         calibration, starting (executing) the program; attach = preload constructor to schema; \
         shutdown = program exit to report"
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "workload", "setup", "attach", "shutdown"
    );
    for row in &r.rows {
        println!(
            "{:<36} {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            row.workload, row.record_setup_ms, row.record_attach_ms, row.record_shutdown_ms
        );
    }
    println!(
        "one trace! event of the libc:write shape, recorded and drained (embedded session, \
         writer + consumer): {:.0} ns CPU",
        r.trace_event_ns
    );
    if let Some(m) = r.rows.first() {
        println!(
            "micro loop: {:.0} ns wall ({:.0} ns CPU) per wrapped call = {:.2}x ({:.2}x) one \
             trace! event",
            m.faultline_ns_per_call,
            m.faultline_cpu_ns_per_call,
            m.faultline_ns_per_call / r.trace_event_ns.max(1e-9),
            m.faultline_cpu_ns_per_call / r.trace_event_ns.max(1e-9)
        );
    }
    // The target for real workloads: <= 1.15x untraced wherever strace -f costs >= 2x
    // (the micro loop and `true` are not real workloads: their targets are per call and the
    // fixed cost).
    for row in r.rows.iter().skip(2) {
        if let Some(s) = row.strace_ratio.filter(|&s| s >= 2.0) {
            println!(
                "target <= 1.15x (strace -f {s:.2}x >= 2x): {} {:.2}x wall, {:.2}x CPU: {}",
                row.workload,
                row.faultline_ratio,
                row.faultline_cpu_ratio,
                if row.faultline_ratio <= 1.15 {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}
