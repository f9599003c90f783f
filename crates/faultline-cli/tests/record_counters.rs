//! The recorder's own counters (events per copy strategy, restarts, fallbacks, faulted events)
//! reach the user under `faultline record`: in the report (human and JSON), in
//! `DIR/.faultline-summary.json`, and in the trace, where `faultline stats` (human and JSON)
//! shows them. A program killed before stopping its session still leaves its last periodic
//! counts. Embedded sessions (`faultline demo`) put them in their trace too.

mod common;

use common::{spawn_record_testapp, stats_json, wait_for_testapp};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn tmp(name: &str) -> common::TmpDir {
    common::tmp_dir("counters", name)
}

fn faultline(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(common::BIN).args(args).output().unwrap()
}

fn logged(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .collect::<BTreeSet<_>>()
        .len() as u64
}

#[test]
fn record_reports_the_programs_recorder_counters() {
    let base = tmp("normal");
    let dir = base.join("trace");
    let log = base.join("log");
    let o = faultline(&[
        "record".as_ref(),
        "--json".as_ref(),
        "-o".as_ref(),
        dir.as_os_str(),
        "--".as_ref(),
        common::TESTAPP.as_ref(),
        "--log".as_ref(),
        log.as_os_str(),
        "--events".as_ref(),
        "3000".as_ref(),
        "--threads".as_ref(),
        "2".as_ref(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = logged(&log);
    assert_eq!(n, 6000, "no losses with the default buffers");
    let rec = &r["summary"]["recorder"];
    assert_eq!(rec["recorded"], 6000, "{r}");
    assert_eq!(rec["faulted"], 0);
    let per: u64 = rec["per_strategy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["events"].as_u64().unwrap())
        .sum();
    assert_eq!(per, 6000);
    assert_eq!(r["counters"]["final_received"], true);
    assert_eq!(r["counters"]["refused"], 0);
    assert!(r["counters"]["accepted"].as_u64().unwrap() >= 1);
    // The same in the summary file.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".faultline-summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file["summary"]["recorder"], *rec);
    assert_eq!(file["counters"], r["counters"]);
    // And in the trace.
    let st = stats_json(&dir);
    let sr = &st["recorder"];
    assert_eq!(sr["events"], 6000, "{st}");
    assert_eq!(sr["faulted"], 0);
    assert_eq!(sr["source"], "final report of the traced program");
    let strat: u64 = ["reserve-copy-commit", "bounce", "prefault-restart"]
        .iter()
        .map(|s| sr["strategies"][s]["events"].as_u64().unwrap())
        .sum();
    assert_eq!(strat, 6000);
    let text = faultline(&["stats".as_ref(), dir.as_os_str()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("recorder    6000 events committed, 0 faulted (0 bytes unreadable, zero-filled); final report of the traced program"),
        "{text}"
    );
    assert!(text.contains("reserve-copy-commit"), "{text}");
    // The human report of record.
    let dir2 = base.join("trace2");
    let o = faultline(&[
        "record".as_ref(),
        "-o".as_ref(),
        dir2.as_os_str(),
        "--".as_ref(),
        common::TESTAPP.as_ref(),
        "--log".as_ref(),
        base.join("log2").as_os_str(),
        "--events".as_ref(),
        "100".as_ref(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]);
    // The human report goes to stderr.
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(
        text.contains("faulted events (bad pointers, zero-filled): 0"),
        "{text}"
    );
    assert!(text.contains("copy strategies: "), "{text}");
    assert!(
        text.contains("(recorder counters: final report of the program)"),
        "{text}"
    );
}

#[test]
fn a_killed_program_leaves_its_last_periodic_counters() {
    let base = tmp("killed");
    let dir = base.join("trace");
    let log = base.join("log");
    let pidfile = base.join("pid");
    let child = spawn_record_testapp(
        &dir,
        &log,
        &pidfile,
        &[],
        &["--threads", "2", "--spin", "20000"],
    );
    let pid = wait_for_testapp(&pidfile, &log, Duration::from_secs(30));
    // Several reporting intervals.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the pid the test app wrote.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(137));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["counters"]["final_received"], false);
    assert!(r["counters"]["accepted"].as_u64().unwrap() >= 2, "{r}");
    let recorded = r["summary"]["recorder"]["recorded"].as_u64().unwrap();
    let n = logged(&log);
    assert!(
        recorded > 0 && recorded <= n,
        "last report {recorded}, {n} events logged in all"
    );
    let st = stats_json(&dir);
    assert_eq!(st["recorder"]["events"], recorded);
    assert!(st["recorder"]["source"]
        .as_str()
        .unwrap()
        .starts_with("last periodic report"));
}

#[test]
fn embedded_sessions_put_their_counters_in_the_trace() {
    let base = tmp("demo");
    let dir = base.join("trace");
    let o = faultline(&["demo".as_ref(), "-o".as_ref(), dir.as_os_str()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let st = stats_json(&dir);
    let r = &st["recorder"];
    assert_eq!(r["source"], "the session's recorder");
    // The demo records bad pointers on purpose.
    assert!(r["faulted"].as_u64().unwrap() > 0, "{st}");
    let text = String::from_utf8_lossy(&o.stdout);
    let faulted = r["faulted"].as_u64().unwrap().to_string();
    let grouped: String = faulted
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = i > 0 && (faulted.len() - i).is_multiple_of(3);
            sep.then_some(',').into_iter().chain(std::iter::once(c))
        })
        .collect();
    assert!(
        text.contains(&format!(
            "faulted events (bad pointers, zero-filled): {grouped} "
        )),
        "the demo's summary and the trace agree: {grouped}; {text}"
    );
}
