//! Helpers shared by the command line's integration tests (each test target includes this
//! module with `mod common;` and uses what it needs).
#![allow(dead_code)]

use faultline_ctf::{Filter, Trace};
use faultline_schema::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use faultline_testkit::TmpDir;

/// The `faultline` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_faultline");
/// The traced test program (`faultline-testapp`).
pub const TESTAPP: &str = env!("CARGO_BIN_EXE_faultline-testapp");

/// A fresh, empty directory `faultline-<group>-<name>-<random>` under the system temp dir,
/// removed when the returned guard drops (the test ends, passed or not).
pub fn tmp_dir(group: &str, name: &str) -> TmpDir {
    TmpDir::new(&format!("{group}-{name}"))
}

/// `faultline stats DIR --json`, which must succeed.
pub fn stats_json(dir: &Path) -> serde_json::Value {
    let o = Command::new(BIN)
        .args(["stats", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Start `faultline record --json RECORD_ARGS -o DIR -- faultline-testapp --log LOG --pidfile
/// PIDFILE APP_ARGS` with its stdout and stderr piped.
pub fn spawn_record_testapp(
    dir: &Path,
    log: &Path,
    pidfile: &Path,
    record_args: &[&str],
    app_args: &[&str],
) -> Child {
    Command::new(BIN)
        .args(["record", "--json"])
        .args(record_args)
        .arg("-o")
        .arg(dir)
        .arg("--")
        .arg(TESTAPP)
        .arg("--log")
        .arg(log)
        .arg("--pidfile")
        .arg(pidfile)
        .args(app_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn faultline record")
}

/// The test program's pid, once it has written its pid file and logged its first event
/// (panics after `timeout`).
pub fn wait_for_testapp(pidfile: &Path, log: &Path, timeout: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        let pid = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(p) = pid {
            if std::fs::metadata(log).is_ok_and(|m| m.len() > 0) {
                return p;
            }
        }
        assert!(t0.elapsed() < timeout, "testapp did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `testapp:seq` events of the trace at `dir` as (thread, seq), each checked (its padding
/// pattern), none twice.
pub fn testapp_events(dir: &Path) -> BTreeSet<(u32, u64)> {
    let trace = Trace::open(dir).expect("open trace");
    let mut seen = BTreeSet::new();
    for ev in trace.events(&Filter::default()) {
        let ev = ev.expect("every event of the trace reads back");
        assert_eq!(ev.name, "testapp:seq");
        let (Value::U(t), Value::U(s)) = (&ev.fields[0].1, &ev.fields[1].1) else {
            panic!("fields {:?}", ev.fields);
        };
        let pad: Vec<u8> = (0..24usize).map(|i| (i as u8) ^ (*t as u8)).collect();
        assert_eq!(ev.fields[2].1, Value::Bytes(pad), "thread {t} seq {s}");
        assert!(seen.insert((*t as u32, *s)), "thread {t} seq {s} twice");
    }
    seen
}
