//! `faultline export`, `faultline timeline` and `faultline view` on a real LTTng-UST trace
//! (read through the general CTF reader): the same events and losses as babeltrace2 reports.
//! Skips (and passes) when LTTng or babeltrace2 is missing.

use faultline_ctf::find_traces;
use faultline_lttng::EventKind;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

/// babeltrace2's event lines and discarded notices as (count, begin, end), times in seconds
/// since the epoch.
fn babeltrace2(dir: &Path) -> (usize, Vec<(u64, String, String)>) {
    let out = Command::new("babeltrace2")
        .arg("--clock-seconds")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = String::from_utf8_lossy(&out.stdout).lines().count();
    let notices = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| notice(l, "Tracer discarded "))
        .collect();
    (events, notices)
}

fn notice(l: &str, key: &str) -> Option<(u64, String, String)> {
    let r = l.split_once(key)?.1;
    let n = r.split(' ').next()?.parse().ok()?;
    let b = r.split_once("between [")?.1;
    let (b, r) = b.split_once(']')?;
    let e = r.split_once(" and [")?.1.split(']').next()?;
    Some((n, b.to_string(), e.to_string()))
}

#[test]
fn lttng_trace_exports_views_and_timelines_like_babeltrace2() {
    let Some(mut bench) = faultline_testkit::lttng_trace_bench() else {
        return;
    };
    // Long enough that the consumer often falls behind and LTTng discards events.
    let r = bench.run(EventKind::String, 2, 200_000).expect("LTTng run");
    let root = r.trace_dir.clone().expect("kept trace");
    let dir = find_traces(&root).remove(0);
    let (bt_events, bt_notices) = babeltrace2(&dir);
    let discarded: u64 = bt_notices.iter().map(|n| n.0).sum();

    // view: the same notices (counts and ranges), from the session directory.
    let out = Command::new(BIN)
        .args(["view", "--time", "wall"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        bt_events
    );
    let ours: Vec<_> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| notice(l, "tracer discarded "))
        .collect();
    assert_eq!(ours, bt_notices);

    // export: every event, its payload fields as args, the losses as markers.
    let tmp = faultline_testkit::ctf::tmpdir("foreign-export");
    std::fs::create_dir_all(&tmp).unwrap();
    let json = tmp.join("out.json");
    let out = Command::new(BIN)
        .args(["export", "--format", "chrome"])
        .arg(&root)
        .arg("-o")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let evs = j["traceEvents"].as_array().unwrap();
    let named: Vec<_> = evs
        .iter()
        .filter(|e| e["name"] == "faultline_bench:string_event")
        .collect();
    assert_eq!(named.len(), bt_events);
    assert_eq!(named[0]["args"]["msg"], "faultline-bench-32-byte-payload!");
    assert!(named[0]["args"]["seq"].is_u64());
    let lost: u64 = evs
        .iter()
        .filter(|e| e["cat"] == "faultline,loss")
        .map(|e| e["args"]["lost_full"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, discarded);

    // timeline: the page is written with the same totals.
    let html = tmp.join("t.html");
    let out = Command::new(BIN)
        .arg("timeline")
        .arg(&root)
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&format!("{bt_events} events, {discarded} lost")),
        "{msg}"
    );
    println!(
        "{bt_events} events, {} notices, {discarded} discarded: same as babeltrace2",
        bt_notices.len()
    );
}
