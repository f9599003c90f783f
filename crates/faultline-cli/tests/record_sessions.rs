//! Sessions under `faultline record` behave as embedded ones: a second `Session::start()` in
//! the same process works (it used to fail with "fd 3: Bad file descriptor"), builder
//! settings that `record` owns are reported when overridden, and an existing trace directory
//! is refused with the same words by an embedded session and by `record`.

use faultline_ctf::{Filter, Trace};
use faultline_schema::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::BIN;

const APP: &str = env!("CARGO_BIN_EXE_faultline-sessionapp");

fn tmp(name: &str) -> common::TmpDir {
    common::tmp_dir("test-rs", name)
}

fn app() -> Command {
    let mut c = Command::new(APP);
    for v in [
        "FAULTLINE_CHANNEL_FD",
        "FAULTLINE_CHANNEL_ID",
        "FAULTLINE_SCHEMA_FD",
        "FAULTLINE_EVENTS",
        "FAULTLINE_STRATEGY",
    ] {
        c.env_remove(v);
    }
    c
}

fn record(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("FAULTLINE_EVENTS")
        .args(["record", "--json", "-o"])
        .arg(dir)
        .arg("--")
        .arg(APP);
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("spawn");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, so, se)
}

/// Events per `session` field value in the trace at `dir`.
fn per_session(dir: &Path) -> BTreeMap<u64, u64> {
    let t = Trace::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut m = BTreeMap::new();
    for ev in t.events(&Filter::default().name("sessionapp:ev")) {
        let ev = ev.unwrap();
        let Value::U(s) = ev.fields[0].1 else {
            panic!("{:?}", ev.fields)
        };
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

#[test]
fn second_session_works_embedded_and_under_record() {
    let d = tmp("two");
    // Embedded: one trace per session.
    let base = d.join("emb");
    let (out, so, se) =
        run(app()
            .arg("--dir")
            .arg(&base)
            .args(["--sessions", "2", "--events", "100"]));
    assert!(out.status.success(), "embedded: {so}\n{se}");
    assert!(so.contains("session 1 attached=false overridden=0"), "{so}");
    for i in 0..2u64 {
        let dir = PathBuf::from(format!("{}-{i}", base.display()));
        assert_eq!(per_session(&dir), BTreeMap::from([(i, 100)]));
    }
    // Under record: both sessions attach to the one channel, one trace holds both.
    let trace = d.join("rec");
    let ignored = d.join("ignored");
    let (out, so, se) =
        run(record(&trace)
            .arg("--dir")
            .arg(&ignored)
            .args(["--sessions", "2", "--events", "100"]));
    assert!(out.status.success(), "record: {so}\n{se}");
    assert!(!se.contains("Bad file descriptor"), "{se}");
    assert!(so.contains("session 0 attached=true"), "{so}");
    assert!(so.contains("session 1 attached=true"), "{so}");
    assert_eq!(per_session(&trace), BTreeMap::from([(0, 100), (1, 100)]));
    assert!(!Path::new(&format!("{}-0", ignored.display())).exists());
}

#[test]
fn record_warns_about_the_builder_settings_it_overrides() {
    let d = tmp("warn");
    let base = d.join("app");
    let (out, so, se) = run(Command::new(BIN)
        .env_remove("FAULTLINE_EVENTS")
        .args(["record", "--json", "--subbuf-size", "65536", "-o"])
        .arg(d.join("rec"))
        .arg("--")
        .arg(APP)
        .arg("--dir")
        .arg(&base)
        .args(["--sessions", "1", "--events", "10", "--mode", "overwrite"])
        .args([
            "--subbuf-size",
            "4096",
            "--subbufs",
            "8",
            "--only",
            "sessionapp:*",
        ]));
    assert!(out.status.success(), "{so}\n{se}");
    let warnings: Vec<&str> = se
        .lines()
        .filter(|l| l.starts_with("faultline: under `faultline record`, "))
        .collect();
    let has = |w: &str| warnings.iter().any(|l| l.contains(w));
    assert!(
        has(&format!("output_dir {}-0 is ignored", base.display())),
        "{se}"
    );
    assert!(
        has("mode overwrite is replaced by record's discard"),
        "{se}"
    );
    assert!(
        has("subbuf_size 4096 is replaced by record's 65536"),
        "{se}"
    );
    assert!(
        has("events \"sessionapp:*\" are replaced by record's \"*\""),
        "{se}"
    );
    // --subbufs 8 is what record uses too: nothing overridden, nothing said.
    assert!(!has("num_subbuf"), "{se}");
    assert_eq!(warnings.len(), 4, "{se}");
    assert!(so.contains("session 0 attached=true overridden=4"), "{so}");
    // Embedded, the same settings are the program's own: no warning.
    let (out, so, se) = run(app()
        .arg("--dir")
        .arg(d.join("emb"))
        .args(["--sessions", "1", "--events", "10", "--mode", "overwrite"])
        .args([
            "--subbuf-size",
            "4096",
            "--subbufs",
            "8",
            "--only",
            "sessionapp:*",
        ]));
    assert!(out.status.success(), "{so}\n{se}");
    assert!(so.contains("overridden=0"), "{so}");
    assert!(!se.contains("under `faultline record`"), "{se}");
}

#[test]
fn existing_trace_is_refused_with_the_same_words_embedded_and_by_record() {
    let d = tmp("exists");
    let base = d.join("t");
    let (out, so, se) =
        run(app()
            .arg("--dir")
            .arg(&base)
            .args(["--sessions", "1", "--events", "1"]));
    assert!(out.status.success(), "{so}\n{se}");
    let dir = PathBuf::from(format!("{}-0", base.display()));
    let want = format!(
        "{} already holds a trace; choose another directory",
        dir.display()
    );
    let (out, _, se_emb) =
        run(app()
            .arg("--dir")
            .arg(&base)
            .args(["--sessions", "1", "--events", "1"]));
    assert!(!out.status.success());
    assert!(se_emb.contains(&want), "embedded said: {se_emb}");
    let (out, _, se_rec) = run(record(&dir).args(["--dir", "/nonexistent", "--sessions", "1"]));
    assert!(!out.status.success());
    assert!(se_rec.contains(&want), "record said: {se_rec}");
}
