//! `faultline record` with a traced program SIGKILLed mid-run: every event the program logged
//! as committed is in the trace exactly once, and the losses the report and the trace give
//! account for the sequence numbers that are missing.

mod common;

use common::{spawn_record_testapp, testapp_events, wait_for_testapp};
use faultline_ctf::{stats, Trace};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn one_run(run: u32) -> u64 {
    let base = common::tmp_dir("test", &format!("kill{run}"));
    let dir = base.join("trace");
    let log = base.join("log");
    let pidfile = base.join("pid");
    let threads = 4u32;
    let child = spawn_record_testapp(
        &dir,
        &log,
        &pidfile,
        &["--subbuf-size", "65536"],
        &["--threads", &threads.to_string(), "--spin", "3000"],
    );
    // Wait for the app to be running and logging.
    let pid = wait_for_testapp(&pidfile, &log, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(150 + 70 * run as u64));
    // SAFETY: kill(2) on the pid the test app wrote.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = child.wait_with_output().expect("wait for record");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "record exit status; {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("record JSON: {e}: {stderr}"));
    assert_eq!(report["program"]["signal"], 9);
    assert_eq!(report["recovery"]["ran"], true, "{report}");

    // The trace.
    let events = testapp_events(&dir);
    let n = events.len() as u64;
    let mut seen: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (t, s) in events {
        seen.entry(t).or_default().insert(s);
    }
    // Every logged (committed) event is in the trace.
    let logtext = std::fs::read_to_string(&log).unwrap();
    let mut logged = 0u64;
    // A SIGKILL can cut the last write short ("1 1007" of "1 10070\n" was seen): only lines
    // with their newline were logged.
    for line in logtext.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let mut it = line.trim_end().split(' ');
        let (Some(t), Some(s)) = (it.next(), it.next()) else {
            continue;
        };
        let (t, s): (u32, u64) = (t.parse().unwrap(), s.parse().unwrap());
        assert!(
            seen.get(&t).is_some_and(|set| set.contains(&s)),
            "logged thread {t} seq {s} missing from the trace"
        );
        logged += 1;
    }
    // The rest is accounted for by losses.
    let trace = Trace::open(&dir).expect("open trace");
    let st = stats(&trace).unwrap();
    let sum = &report["summary"];
    let lost = sum["lost_full"].as_u64().unwrap()
        + sum["lost_stalled"].as_u64().unwrap()
        + sum["lost_too_big"].as_u64().unwrap()
        + sum["lost_no_buffer"].as_u64().unwrap();
    assert_eq!(st.events_total, n);
    assert_eq!(sum["events_written"].as_u64(), Some(n));
    assert_eq!(st.lost_total, lost, "trace and report disagree on losses");
    let died = report["recovery"]["records"].as_u64().unwrap();
    assert_eq!(sum["lost_writer_died"].as_u64(), Some(died));
    assert!(
        died <= threads as u64,
        "more dead reservations than threads: {died}"
    );
    let missing: u64 = seen
        .values()
        .map(|s| s.last().map_or(0, |&m| m + 1) - s.len() as u64)
        .sum();
    assert!(
        missing <= lost && lost <= missing + threads as u64,
        "missing {missing} sequence numbers, {lost} events counted lost"
    );
    eprintln!(
        "run {run}: {n} events, {logged} logged, {lost} lost ({died} writer died), recovery {}",
        report["recovery"]
    );
    died
}

#[test]
fn sigkilled_program_keeps_every_committed_event() {
    let mut died = 0;
    for run in 0..4 {
        died += one_run(run);
    }
    eprintln!("dead reservations recovered over all runs: {died}");
}
