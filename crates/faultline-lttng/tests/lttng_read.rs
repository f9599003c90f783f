//! Real LTTng-UST traces read by faultline's general CTF reader and by babeltrace2: the same
//! events, in the same order, with the same timestamps (clock cycles), CPUs, names and field
//! values; the same number of discarded events; the same per-event counts in the stats.
//! Skips (and passes) when LTTng or babeltrace2 is missing.

use faultline_ctf::general::{push_ctf_event, CtfTrace};
use faultline_ctf::{find_traces, AnyTrace, Filter, TimeMode};
use faultline_lttng::EventKind;
use std::path::Path;
use std::process::Command;

/// Our lines as `ticks cpu name: fields`.
fn ours(dir: &Path) -> Vec<String> {
    let t = CtfTrace::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut it = t.events(&Filter::default());
    let mut out = Vec::new();
    let mut line = String::new();
    while let Some(e) = it.next_event() {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        line.clear();
        push_ctf_event(&mut line, &t, &e, TimeMode::Ticks);
        // "[ts] cpu N name: rest"
        let r = line.strip_prefix('[').unwrap();
        let (ts, rest) = r.split_once("] cpu ").unwrap();
        let (cpu, rest) = rest.split_once(' ').unwrap();
        out.push(format!("{ts} {cpu} {rest}"));
    }
    out
}

/// babeltrace2's lines in the same shape, and the discarded events it warns about.
fn babeltrace(dir: &Path) -> (Vec<String>, u64) {
    let out = Command::new("babeltrace2")
        .args(["--clock-cycles", "--no-delta"])
        .arg(dir)
        .output()
        .expect("babeltrace2 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = Vec::new();
    let mut discarded = 0u64;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for l in text.lines() {
        if let Some(r) = l.split_once("Tracer discarded ") {
            discarded += r.1.split(' ').next().unwrap().parse::<u64>().unwrap();
            continue;
        }
        let Some(r) = l.strip_prefix('[') else {
            continue;
        };
        // "[000123] host name: { cpu_id = N }, { fields }"
        let (ts, rest) = r.split_once("] ").unwrap();
        let ts: u64 = ts.trim_start_matches('0').parse().unwrap_or(0);
        let (_host, rest) = rest.split_once(' ').unwrap();
        let (name, rest) = rest.split_once(": { cpu_id = ").unwrap();
        let (cpu, fields) = rest.split_once(" }, ").unwrap();
        lines.push(format!("{ts} {cpu} {name}: {fields}"));
    }
    (lines, discarded)
}

/// Equal timestamps on different CPUs may come in either order: sort within equal times.
fn canonical(mut v: Vec<String>) -> Vec<String> {
    v.sort_by(|a, b| {
        let ta: u64 = a.split(' ').next().unwrap().parse().unwrap();
        let tb: u64 = b.split(' ').next().unwrap().parse().unwrap();
        ta.cmp(&tb).then_with(|| a.cmp(b))
    });
    v
}

#[test]
fn lttng_ust_traces_read_like_babeltrace2() {
    let Some(mut bench) = faultline_testkit::lttng_trace_bench() else {
        return;
    };
    // The last run is long enough that the consumer often falls behind and LTTng discards.
    for (kind, threads, n) in [
        (EventKind::Int, 2, 30_000),
        (EventKind::String, 1, 20_000),
        (EventKind::String, 2, 300_000),
    ] {
        let r = bench.run(kind, threads, n).expect("LTTng run");
        let root = r.trace_dir.clone().expect("kept trace");
        let traces = find_traces(&root);
        assert_eq!(traces.len(), 1, "{traces:?}");
        let dir = &traces[0];
        let a = ours(dir);
        let (b, bt_discarded) = babeltrace(dir);
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{kind:?}: event counts differ");
        let (a, b) = (canonical(a), canonical(b));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{kind:?}: event {i} differs");
        }
        // Stats: per-event counts and discarded events as babeltrace2 reports them.
        let st = AnyTrace::open(dir).unwrap().stats().unwrap();
        assert_eq!(st.events_total as usize, b.len());
        let name = kind.tracepoint();
        let count = b
            .iter()
            .filter(|l| l.contains(&format!(" {name}: ")))
            .count();
        assert_eq!(st.events.get(name).copied(), Some(count as u64));
        assert_eq!(st.lost_total, bt_discarded, "{kind:?}: discarded events");
        println!(
            "{kind:?} x{threads}: {} events, {} discarded, {} packets: same as babeltrace2",
            st.events_total, st.lost_total, st.packets
        );
    }
}
