//! `faultline record` with a traced program SIGKILLed mid-run: every event the program logged
//! as committed is in the trace exactly once, and the losses the report and the trace give
//! account for the sequence numbers that are missing.

use faultline_ctf::{stats, Filter, Trace};
use faultline_schema::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn one_run(run: u32) -> u64 {
    let base = tmp(&format!("kill{run}"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join("trace");
    let log = base.join("log");
    let pidfile = base.join("pid");
    let threads = 4u32;
    let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["record", "--json", "--subbuf-size", "65536", "-o"])
        .arg(&dir)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_faultline-testapp"))
        .arg("--log")
        .arg(&log)
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["--threads", &threads.to_string(), "--spin", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn faultline record");
    // Wait for the app to be running and logging.
    let t0 = Instant::now();
    let pid: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            if let Ok(p) = s.trim().parse() {
                if std::fs::metadata(&log)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
                {
                    break p;
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "testapp did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
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
    let trace = Trace::open(&dir).expect("open trace");
    let mut seen: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut n = 0u64;
    for ev in trace.events(&Filter::default()) {
        let ev = ev.expect("event");
        assert_eq!(ev.name, "testapp:seq");
        let (Value::U(t), Value::U(s)) = (&ev.fields[0].1, &ev.fields[1].1) else {
            panic!("fields {:?}", ev.fields);
        };
        let pad: Vec<u8> = (0..24usize).map(|i| (i as u8) ^ (*t as u8)).collect();
        assert_eq!(ev.fields[2].1, Value::Bytes(pad));
        assert!(
            seen.entry(*t as u32).or_default().insert(*s),
            "thread {t} seq {s} twice"
        );
        n += 1;
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
    let _ = std::fs::remove_dir_all(&base);
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
