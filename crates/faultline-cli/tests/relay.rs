//! `faultline record --relay` and `Session::relay` against a real `lttng-relayd` started here
//! on loopback with ephemeral ports (killed when the test ends): the relay's copy is the local
//! trace (same files, same event and discarded counts, babeltrace2 agrees), live viewing prints
//! events while the program runs, and the faults — relay unreachable, relay killed mid-run.

#[path = "../../faultline-relay/tests/relayd/mod.rs"]
mod relayd;

use faultline_ctf::{stats, Trace};
use relayd::{run_bounded, Relayd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> faultline_testkit::TmpDir {
    faultline_testkit::TmpDir::new(&format!("relay-{name}"))
}

fn have_relayd() -> bool {
    if relayd::available() {
        return true;
    }
    eprintln!("skipped: lttng-relayd is not installed (scripts/install-deps.sh)");
    false
}

/// `faultline record --json ARGS -- faultline-testapp APP`.
fn record_command(args: &[&str], app: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.arg("record")
        .arg("--json")
        .args(args)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_faultline-testapp"))
        .args(app);
    cmd
}

fn record(
    args: &[&str],
    app: &[&str],
    limit: Duration,
) -> (Option<i32>, serde_json::Value, String) {
    let cmd = record_command(args, app);
    let (code, out, stderr) = run_bounded(cmd, limit).expect("run record");
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, stderr)
}

fn log_lines(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .map(|s| s.lines().filter(|l| !l.ends_with(" L")).count() as u64)
        .unwrap_or(0)
}

/// The relay's copy of the only session it holds, waiting (bounded) until its files stop
/// changing.
fn relay_trace(relay: &Relayd) -> PathBuf {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = relay.traces();
        if t.len() == 1 {
            return t[0].clone();
        }
        assert!(Instant::now() < until, "relay traces: {t:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counts(dir: &Path) -> (u64, u64, u64) {
    let t = Trace::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let s = stats(&t).unwrap();
    (s.events_total, s.lost_total, s.packets)
}

#[test]
fn relay_copy_is_the_local_trace() {
    if !have_relayd() {
        return;
    }
    let base = tmp("copy");
    let relay = Relayd::start(&base);
    let local = base.join("local");
    let log = base.join("log");
    // Small buffers and no pause: the ring buffer loses events, so the discarded counts are
    // compared too.
    let (code, rep, err) = record(
        &[
            "--relay",
            &relay.url(),
            "--relay-session",
            "copy",
            "--subbuf-size",
            "16384",
            "--subbufs",
            "2",
            "-o",
            local.to_str().unwrap(),
        ],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "100000",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let r = &rep["summary"]["relay"];
    assert_eq!(r["error"], serde_json::Value::Null, "{rep}");
    assert_eq!(r["packets_dropped"], 0, "{rep}");
    assert_eq!(r["packets_lost"], 0, "{rep}");
    assert_eq!(r["events_sent"], rep["summary"]["events_written"], "{rep}");
    assert_eq!(r["events_confirmed"], r["events_sent"], "{rep}");
    assert!(
        err.contains("live: babeltrace2 --input-format=lttng-live"),
        "{err}"
    );
    let remote = relay_trace(&relay);
    assert!(
        remote.ends_with("faultline")
            && remote
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("copy-"),
        "LTTng-style HOST/SESSION-DATE/ path: {}",
        remote.display()
    );
    assert_eq!(r["chunk_closed"], true, "{rep}");
    assert_eq!(r["metadata_updates_skipped"], 0, "{rep}");
    let (ev, lost, packets) = counts(&local);
    assert_eq!(ev, log_lines(&log));
    assert!(lost > 0, "the run should lose events (small buffers)");
    // The relay's copy: every buffer's stream, each beginning with an empty packet
    // (streamer docs, "Streams"), then the local packets.
    let streams = std::fs::read_dir(&remote)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("stream_"))
        .count() as u64;
    let until = Instant::now() + Duration::from_secs(10);
    while counts(&remote) != (ev, lost, packets + streams) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        counts(&remote),
        (ev, lost, packets + streams),
        "same events and losses; the local packets plus one empty packet per stream"
    );
    // Same discarded counts in detail, and the recorder counters that `record` adds to the
    // metadata at the end (a second env block in the relay's append-only copy).
    let (sr, sl) = (
        stats(&Trace::open(&remote).unwrap()).unwrap(),
        stats(&Trace::open(&local).unwrap()).unwrap(),
    );
    assert_eq!(
        (
            sr.lost_full,
            sr.lost_stalled,
            sr.lost_too_big,
            sr.lost_packets
        ),
        (
            sl.lost_full,
            sl.lost_stalled,
            sl.lost_too_big,
            sl.lost_packets
        )
    );
    assert!(sl.recorder.is_some(), "record writes the recorder counters");
    assert_eq!(sr.recorder, sl.recorder);
    // babeltrace2 reads the relay's copy (with its index files) like the local one: the
    // same events, discarded-event messages included, line for line.
    let a = relayd::babeltrace(&remote).expect("babeltrace2 on the relay copy");
    let b = relayd::babeltrace(&local).expect("babeltrace2 on the local copy");
    assert!(a.len() as u64 >= ev);
    assert_eq!(a, b);
}

#[test]
fn relay_only_and_embedded_session() {
    if !have_relayd() {
        return;
    }
    let base = tmp("only");
    let relay = Relayd::start(&base);
    let log = base.join("log");
    let cwd = base.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    // No -o: nothing local.
    let (code, rep, err) = record(
        &["--relay", &relay.url()],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "20000",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(rep["summary"]["dir"], serde_json::Value::Null);
    let remote = relay_trace(&relay);
    let session = remote
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        session.starts_with("auto-") && session.len() == "auto-20260101-000000".len(),
        "{session}"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while counts(&remote).0 != 40000 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counts(&remote).0, 40000);
    assert_eq!(log_lines(&log), 40000);

    // The same from an embedded session: the program streams by itself.
    let relay2 = Relayd::start(&base.join("second"));
    let log2 = base.join("log2");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-testapp"));
    cmd.current_dir(&cwd)
        .args([
            "--log",
            log2.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "5000",
        ])
        .args(["--relay", &relay2.url(), "--relay-session", "embedded"]);
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(60)).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("relay net://"), "{out}");
    assert!(
        std::fs::read_dir(&cwd).unwrap().next().is_none(),
        "no local trace without output_dir"
    );
    let remote = relay_trace(&relay2);
    let until = Instant::now() + Duration::from_secs(10);
    while counts(&remote).0 != 10000 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counts(&remote).0, 10000);
}

#[test]
fn live_viewer_prints_events_while_the_program_runs() {
    if !have_relayd() {
        return;
    }
    let base = tmp("live");
    let relay = Relayd::start(&base);
    let log = base.join("log");
    let local = base.join("local");
    // About 3 s of 2 threads x 100 events/s.
    let rec = record_command(
        &[
            "--relay",
            &relay.url(),
            "--relay-session",
            "live",
            "-o",
            local.to_str().unwrap(),
        ],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "300",
            "--sleep-us",
            "10000",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let host = faultline::session::hostname();
    // Attach as soon as the session exists.
    let url = relay.live_url(&host, "live");
    let until = Instant::now() + Duration::from_secs(10);
    while relay.traces().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Line-buffered: the viewer stays attached after the session ends, so a block-buffered
    // pipe would hold the last lines back.
    let mut viewer = Command::new("stdbuf")
        .args(["-oL", "babeltrace2", "--input-format=lttng-live", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = viewer.id() as i32;
    let stdout = viewer.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send((Instant::now(), l)).is_err() {
                return;
            }
        }
    });
    let out = rec.wait_with_output().unwrap();
    let rec_end = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Until both threads' last events are seen (the viewer itself stays attached, waiting
    // for a next session); bounded.
    let mut lines: Vec<(Instant, String)> = Vec::new();
    let stop = Instant::now() + Duration::from_secs(8);
    let last = |lines: &[(Instant, String)], t: u32| {
        lines
            .iter()
            .any(|(_, l)| l.contains(&format!("thread = {t}, seq = 299,")))
    };
    while Instant::now() < stop && !(last(&lines, 0) && last(&lines, 1)) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(x) => lines.push(x),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(_) => {}
        }
    }
    // SAFETY: kill(2) of the viewer we spawned (a no-op if it already ended).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = viewer.wait();
    let mut verr = String::new();
    if let Some(mut e) = viewer.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut verr);
    }
    let during = lines.iter().filter(|(t, _)| *t < rec_end).count();
    assert!(
        during >= 50,
        "{during} of {} events printed while the program ran; viewer: {verr}",
        lines.len()
    );
    // Every event from where the viewer joined to the very end, per thread, with no hole:
    // the viewer attaches at the live end of the session (LTTng's lttng-live semantics), so
    // the first events may be before it, but from then on it must print each one — the
    // last ones too, which needs every CPU's stream known from the start.
    for t in 0..2u64 {
        let seqs: std::collections::BTreeSet<u64> = lines
            .iter()
            .filter(|(_, l)| l.contains(&format!("thread = {t}, seq = ")))
            .filter_map(|(_, l)| {
                l.split(&format!("thread = {t}, seq = "))
                    .nth(1)?
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let first = seqs.iter().next().copied().unwrap_or(300);
        assert!(
            seqs.len() as u64 == 300 - first && seqs.last() == Some(&299),
            "thread {t}: the viewer printed {} events, seq {first}..=299 expected ({} lines \
             in all); viewer: {verr}",
            seqs.len(),
            lines.len()
        );
    }
    assert!(
        !verr.contains("timestamp is less than"),
        "the viewer stopped: {verr}"
    );
}

#[test]
fn ipv6_relay() {
    if !have_relayd() {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let base = tmp("ipv6");
    let relay = Relayd::start_with(&base, "::1", None);
    let log = base.join("log");
    let url = relay.url();
    assert!(url.starts_with("net6://[::1]:"), "{url}");
    let (code, rep, err) = record(
        &["--relay", &url, "--relay-session", "six"],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "3000",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let r = &rep["summary"]["relay"];
    assert_eq!(r["events_sent"], 6000, "{rep}");
    assert_eq!(r["events_confirmed"], 6000, "{rep}");
    assert_eq!(r["chunk_closed"], true, "{rep}");
    let remote = relay_trace(&relay);
    let until = Instant::now() + Duration::from_secs(10);
    while counts(&remote).0 != 6000 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counts(&remote).0, 6000);
}

#[test]
fn unreachable_relay() {
    let base = tmp("unreachable");
    let port = relayd::free_ports("127.0.0.1")[0];
    let url = format!("net://127.0.0.1:{port}");
    let log = base.join("log");
    // Relay only: one clear line, exit 1, the program is not run.
    let (code, _, err) = record(
        &["--relay", &url],
        &["--log", log.to_str().unwrap(), "--events", "10"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("faultline record: cannot connect to the relay at 127.0.0.1:"),
        "{err}"
    );
    assert!(!log.exists(), "the program must not run");
    // With -o: a warning and a complete local recording.
    let local = base.join("local");
    let (code, rep, err) = record(
        &["--relay", &url, "-o", local.to_str().unwrap()],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "1000",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: cannot connect to the relay")
            && err.contains("recording locally only"),
        "{err}"
    );
    assert_eq!(rep["summary"]["events_written"], 2000);
    assert_eq!(counts(&local).0, 2000);
    // Bad URL: usage error.
    let (code, _, err) = record(
        &["--relay", "tcp://x"],
        &["--log", "/dev/null"],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must start with net://"), "{err}");
}

#[test]
fn relay_killed_mid_run() {
    if !have_relayd() {
        return;
    }
    let base = tmp("killed");
    let mut relay = Relayd::start(&base);
    let local = base.join("local");
    let log = base.join("log");
    let t0 = Instant::now();
    let rec = record_command(
        &["--relay", &relay.url(), "-o", local.to_str().unwrap()],
        &[
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "2000",
            "--sleep-us",
            "1000",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Let packets flow, then kill the relay.
    let until = Instant::now() + Duration::from_secs(10);
    while log_lines(&log) < 300 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    relay.kill();
    let out = rec.wait_with_output().unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The local copy is complete.
    let n = log_lines(&log);
    assert_eq!(n, 4000);
    assert_eq!(counts(&local).0, n);
    // The remote loss is reported with counts, and everything is accounted for.
    let r = &rep["summary"]["relay"];
    assert!(r["error"].is_string(), "{rep}");
    let sent = r["events_sent"].as_u64().unwrap();
    let lost = r["events_lost"].as_u64().unwrap() + r["events_dropped"].as_u64().unwrap();
    assert!(sent > 0 && lost > 0, "{r}");
    assert_eq!(sent + lost, n, "{r}");
    // What the relay confirmed writing before it died is part of what was sent; the rest of
    // what was sent may never have reached it.
    assert!(r["events_confirmed"].as_u64().unwrap() <= sent, "{r}");
    // The writers did not wait: about 2 s of program, nowhere near a socket timeout more.
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("relay killed: {r}");
}
