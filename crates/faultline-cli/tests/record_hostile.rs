//! The real `faultline record` against hostile traced programs (`faultline-testapp --hostile`):
//! a program that shrinks or grows the inherited channel memfd, overwrites all of it with
//! random bytes, or flips random bits of its positions and counters while its own threads
//! trace. For each: `record` ends within its timeout, not by a signal, with the documented
//! status; it reports each damaged CPU buffer on exactly one stderr line and nothing else;
//! every event the program logged before the attack is in the trace; the trace reads back with
//! the library, `faultline view` and babeltrace2; its memory stays bounded.

mod common;

use common::{spawn_record_testapp, testapp_events as trace_events};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn tmp(name: &str) -> common::TmpDir {
    common::tmp_dir("hostile", name)
}

struct Outcome {
    /// Exit code (None: killed by a signal).
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set of `record`, KiB.
    max_rss_kib: i64,
}

/// Run `faultline record ARGS` with stdout/stderr in files; kill it at the timeout.
fn run_record(base: &Path, args: &[&std::ffi::OsStr]) -> Outcome {
    let out = base.join("stdout");
    let err = base.join("stderr");
    // Waited for with wait4 below (for its resource usage), not through `Child`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(common::BIN)
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("spawn faultline record");
    let pid = child.id() as i32;
    let t0 = Instant::now();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-value for wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if t0.elapsed() > TIMEOUT {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!(
                "faultline record hung past {TIMEOUT:?}; stderr: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (None, Some(libc::WTERMSIG(status)))
    };
    Outcome {
        code,
        signal,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        max_rss_kib: ru.ru_maxrss,
    }
}

/// Log lines `<thread> <seq>` before the first other line (the attack marker).
fn logged_before_marker(log: &Path) -> (Vec<(u32, u64)>, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut before = Vec::new();
    let mut markers = Vec::new();
    for line in text.lines() {
        let mut it = line.split(' ');
        match (
            it.next().and_then(|t| t.parse().ok()),
            it.next().and_then(|s| s.parse().ok()),
        ) {
            (Some(t), Some(s)) if markers.is_empty() => before.push((t, s)),
            (Some(_), Some(_)) => {}
            _ => markers.push(line.to_string()),
        }
    }
    (before, markers)
}

fn readable_by_tools(dir: &Path) {
    let v = Command::new(common::BIN)
        .arg("view")
        .arg(dir)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "faultline view: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    match Command::new("babeltrace2")
        .arg(dir)
        .stdout(Stdio::null())
        .output()
    {
        Err(_) => {
            eprintln!("babeltrace2 not installed: skipping its check (scripts/install-deps.sh)")
        }
        Ok(b) => {
            let err = String::from_utf8_lossy(&b.stderr);
            assert_eq!(b.status.code(), Some(0), "babeltrace2: {err}");
            // On failure, all of babeltrace2's output and the trace's files (a line seen once
            // in ~40 loaded runs was not captured); FAULTLINE_TEST_KEEP_TMP=1 keeps the trace.
            for l in err.lines() {
                assert!(
                    l.contains("discarded") && l.contains("event"),
                    "babeltrace2 said more than discarded-event notices: {l}\n\
                     all of its stderr:\n{err}\ntrace files: {:?}",
                    std::fs::read_dir(dir)
                        .map(|d| d
                            .flatten()
                            .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).ok()))
                            .collect::<Vec<_>>())
                        .unwrap_or_default()
                );
            }
        }
    }
}

/// Returns the run's outcome and report, the trace and log paths, and the guard of their
/// directory (removed when it drops).
fn hostile(mode: &str) -> (Outcome, serde_json::Value, PathBuf, PathBuf, common::TmpDir) {
    let base = tmp(mode);
    let dir = base.join("trace");
    let log = base.join("log");
    let args: Vec<std::ffi::OsString> = vec![
        "record".into(),
        "--json".into(),
        "--subbuf-size".into(),
        "16384".into(),
        "-o".into(),
        dir.clone().into(),
        "--".into(),
        common::TESTAPP.into(),
        "--log".into(),
        log.clone().into(),
        "--threads".into(),
        "3".into(),
        "--spin".into(),
        "300".into(),
        "--hostile".into(),
        mode.into(),
    ];
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let o = run_record(&base, &a);
    assert_eq!(
        o.signal, None,
        "record died of a signal; stderr: {}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("panicked"),
        "record panicked: {}",
        o.stderr
    );
    assert!(
        o.max_rss_kib < 256 * 1024,
        "record used {} KiB of memory",
        o.max_rss_kib
    );
    let report: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("record JSON: {e}; stderr: {}", o.stderr));
    (o, report, dir, log, base)
}

/// (a) and (b): the memfd is sealed, resizing fails with EPERM, the recording is complete.
fn resize(mode: &str, bytes: u64) {
    let (o, report, dir, log, _base) = hostile(mode);
    let want = format!(
        "faultline-testapp: ftruncate to {bytes} bytes: Operation not permitted (os error 1)"
    );
    assert_eq!(
        o.stderr.trim_end(),
        format!("{want}\n{want}"),
        "stderr is exactly the program's two lines"
    );
    assert_eq!(o.code, Some(0));
    assert_eq!(report["exit_status"], 0);
    assert_eq!(report["damage"], serde_json::json!([]));
    assert_eq!(report["recovery"]["ran"], true);
    let (logged, markers) = logged_before_marker(&log);
    assert!(markers.is_empty(), "{markers:?}");
    let seen = trace_events(&dir);
    assert_eq!(
        seen.len(),
        logged.len(),
        "every committed event, nothing else"
    );
    for e in &logged {
        assert!(seen.contains(e), "logged {e:?} missing");
    }
    assert_eq!(
        report["summary"]["recorder"]["recorded"].as_u64(),
        Some(logged.len() as u64),
        "the program's final counters"
    );
    readable_by_tools(&dir);
}

#[test]
fn shrinking_the_memfd_is_refused() {
    resize("shrink", 4096);
}

#[test]
fn growing_the_memfd_is_refused() {
    resize("grow", 64 << 30);
}

/// (c) and (d): damage is reported once per CPU buffer, exit status 3, valid packets kept.
fn damage(mode: &str) {
    let (o, report, dir, log, _base) = hostile(mode);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(!lines.is_empty(), "no damage reported");
    let mut cpus = BTreeMap::new();
    for l in &lines {
        let rest = l
            .strip_prefix("faultline: CPU buffer ")
            .unwrap_or_else(|| panic!("unexpected stderr line: {l}"));
        let cpu: u32 = rest.split(':').next().unwrap().parse().unwrap();
        assert!(
            l.contains("shared memory damaged by the traced program"),
            "{l}"
        );
        assert!(
            cpus.insert(cpu, *l).is_none(),
            "CPU buffer {cpu} reported twice"
        );
    }
    let damage: Vec<String> = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("faultline: {}", d.as_str().unwrap()))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(damage, sorted, "the report lists the same lines");
    assert_eq!(report["program"]["code"], 0);
    assert_eq!(o.code, Some(3));
    assert_eq!(report["exit_status"], 3);
    let (before, markers) = logged_before_marker(&log);
    assert_eq!(markers, vec![mode.to_string()]);
    assert!(!before.is_empty());
    let seen = trace_events(&dir);
    for e in &before {
        assert!(
            seen.contains(e),
            "{e:?} logged before the attack is missing"
        );
    }
    // The program died without stopping its session: its last periodic counters.
    assert_eq!(report["counters"]["final_received"], false);
    readable_by_tools(&dir);
    eprintln!(
        "{mode}: {} events kept ({} logged before the attack), damage: {lines:?}",
        seen.len(),
        before.len()
    );
}

#[test]
fn random_garbage_over_the_whole_channel() {
    damage("garbage");
}

#[test]
fn bit_flips_in_positions_and_counters_while_tracing() {
    damage("flip");
}

/// H: a process that holds the channel's descriptor without mapping it still counts as a
/// possible writer, so dead-writer recovery (which would complete sub-buffers under its feet)
/// does not run.
#[test]
fn a_process_holding_the_fd_unmapped_blocks_recovery() {
    let base = tmp("holdfd");
    let dir = base.join("trace");
    let log = base.join("log");
    let pidfile = base.join("pid");
    let child = spawn_record_testapp(
        &dir,
        &log,
        &pidfile,
        &[],
        &["--threads", "1", "--spin", "20000", "--hostile", "holdfd"],
    );
    let t0 = Instant::now();
    let (app, holder): (i32, i32) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let holder = text
            .lines()
            .find_map(|l| l.strip_prefix("holder ").and_then(|p| p.parse().ok()));
        let app = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let (Some(a), Some(h)) = (app, holder) {
            break (a, h);
        }
        assert!(t0.elapsed() < TIMEOUT, "testapp did not start its holder");
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: kill(2) on the pid the test app wrote.
    unsafe { libc::kill(app, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    // SAFETY: kill(2) on the holder the test app started.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(report["recovery"]["ran"], false, "{report}");
    // The lease is refused while the holder has the descriptor; the scan names it.
    assert_eq!(report["recovery"]["checked_by"], "proc scan", "{report}");
    let skipped = report["recovery"]["skipped"].as_str().unwrap();
    assert!(
        skipped.contains(&format!("processes [{holder}] still have the channel open")),
        "{skipped}"
    );
    readable_by_tools(&dir);
}
