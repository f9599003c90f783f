//! `faultline view` prints the tracer's discarded-events and discarded-packets notices at their
//! place among the events, and reads a directory holding several traces as one, merged by
//! time; both as babeltrace2 does (compared when babeltrace2 and `stdbuf` are installed: with
//! its output unbuffered, its stderr notices land among the stdout events where it emits them).

use faultline_testkit::ctf::{tmpdir, write_plan, write_sample, PacketPlan, PlanShape};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

/// One line of a merged stdout + stderr: an event's time, or a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Wall time (`[seconds.nanoseconds]` as printed).
    Event(String),
    /// (events|packets|maybe, count, begin, end).
    Notice(&'static str, u64, String, String),
}

/// Run `cmd` with stdout and stderr into one file; (exit code, the file's text).
fn merged(mut cmd: Command, name: &str) -> (i32, String) {
    let dir = tmpdir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.txt");
    let f = File::create(&path).unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&path).unwrap(),
    )
}

/// The bracketed time after `key` in `line`.
fn time_after<'a>(line: &'a str, key: &str) -> &'a str {
    let r = &line[line.find(key).unwrap() + key.len()..];
    &r[..r.find(']').unwrap()]
}

fn notice(line: &str) -> Option<Item> {
    let rest = line
        .split_once("racer discarded ")
        .map(|x| x.1)
        .or_else(|| line.split_once("racer may have discarded").map(|_| ""))?;
    let begin = time_after(line, "between [").to_string();
    let end = time_after(line, "] and [").to_string();
    if rest.is_empty() {
        return Some(Item::Notice("maybe", 0, begin, end));
    }
    let (n, rest) = rest.split_once(' ').unwrap();
    let kind = if rest.starts_with("event") {
        "events"
    } else {
        "packets"
    };
    Some(Item::Notice(kind, n.parse().unwrap(), begin, end))
}

fn items(text: &str) -> Vec<Item> {
    text.lines()
        .map(|l| notice(l).unwrap_or_else(|| Item::Event(l[1..l.find(']').unwrap()].to_string())))
        .collect()
}

fn ours(dir: &Path, name: &str) -> Vec<Item> {
    let mut cmd = Command::new(BIN);
    cmd.args(["view", "--time", "wall"]).arg(dir);
    let (code, text) = merged(cmd, name);
    assert_eq!(code, 0, "{text}");
    items(&text)
}

/// babeltrace2's items, or `None` when it (or `stdbuf`) is not installed.
fn babeltrace2(dir: &Path, name: &str) -> Option<Vec<Item>> {
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-o0", "babeltrace2", "--clock-seconds"]).arg(dir);
    let probe = Command::new("stdbuf")
        .args(["-o0", "babeltrace2", "--version"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("SKIPPED the babeltrace2 comparison: babeltrace2 or stdbuf not installed");
        return None;
    }
    let (code, text) = merged(cmd, name);
    assert_eq!(code, 0, "{text}");
    Some(items(&text))
}

fn t(ns: u64) -> String {
    // The sample's clock: offset_s 1700000000, offset 250 ticks, 1 GHz.
    format!("1700000000.{:09}", ns + 250)
}

#[test]
fn discard_notices_in_place_like_babeltrace2() {
    let dir = tmpdir("view-discards");
    write_sample(&dir).unwrap();
    let got = ours(&dir, "view-discards-out");
    let ev = |ns| Item::Event(t(ns));
    let expected = vec![
        ev(1000),
        // CPU 1's first packet counts 2 discarded events: how many before the trace, unknown.
        Item::Notice("maybe", 0, t(1005), t(1105)),
        ev(1006),
        ev(1010),
        ev(1016),
        ev(1020),
        // CPU 1: 5 more discarded and packet 1 missing, since the end of its packet 0.
        Item::Notice("events", 5, t(1105), t(2600)),
        Item::Notice("packets", 1, t(1105), t(2500)),
        // CPU 0: 4 discarded since the end of its (empty) packet 1.
        Item::Notice("events", 4, t(2100), t(3100)),
        ev(2501),
        ev(2511),
        ev(2521),
        Item::Notice("events", 2, t(2600), t(4100)),
        ev(3000),
        ev(3010),
        ev(3020),
        ev(3030),
        ev(4001),
    ];
    assert_eq!(got, expected);
    if let Some(bt) = babeltrace2(&dir, "view-discards-bt") {
        assert_eq!(got, bt, "babeltrace2 prints the notices elsewhere");
    }
    // Filters apply to notices: CPU 0 only; a time range that ends before any loss.
    let mut cmd = Command::new(BIN);
    cmd.args(["view", "--time", "wall", "--cpu", "0"]).arg(&dir);
    let (_, text) = merged(cmd, "view-discards-cpu");
    let notices: Vec<Item> = items(&text)
        .into_iter()
        .filter(|i| matches!(i, Item::Notice(..)))
        .collect();
    assert_eq!(notices, [Item::Notice("events", 4, t(2100), t(3100))]);
    let mut cmd = Command::new(BIN);
    cmd.args(["view", "--time", "raw", "--to", "@1004"])
        .arg(&dir);
    let (_, text) = merged(cmd, "view-discards-to");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn several_traces_in_one_directory_merge_by_time() {
    let root = tmpdir("view-multi");
    write_sample(&root.join("a")).unwrap();
    // A second trace interleaving with the first (same clock), no losses.
    let plan: &[PacketPlan] = &[(0, 0, (0, 0, 0), 4, 1003), (1, 0, (0, 0, 0), 3, 3004)];
    let shape = PlanShape {
        step: 700,
        span: 3000,
        packet_size: 4096,
    };
    write_plan(&root.join("nested/b"), plan, shape, |_, _, _| {}).unwrap();
    let got = ours(&root, "view-multi-out");
    let times: Vec<String> = got
        .iter()
        .filter_map(|i| match i {
            Item::Event(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(times.len(), 13 + 7);
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "merged by time");
    assert_eq!(
        got.iter().filter(|i| matches!(i, Item::Notice(..))).count(),
        5
    );
    if let Some(bt) = babeltrace2(&root, "view-multi-bt") {
        assert_eq!(got, bt);
    }
    // Relative times count from the earliest event of all the traces.
    let out = Command::new(BIN).arg("view").arg(&root).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("[+0.000000000] cpu 0 myapp:all"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("[+0.000000003] cpu 0 "),
        "{text}"
    );
    // stats adds the traces up.
    let out = Command::new(BIN)
        .args(["stats", "--json"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["events_total"], 20);
}
