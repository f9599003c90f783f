//! `faultline view` and `faultline stats` run as a program on traces written with
//! faultline-ctf's `TraceWriter` (through `faultline_testkit::ctf`): exact output lines,
//! filters, exact stats including losses, and one-line errors with exit code 2 on whatever is
//! not a readable trace.

use faultline_testkit::ctf::{
    packet_offsets, patch_file, tmpdir, truncate_file, write_plan, write_sample, PacketPlan,
    PlanShape,
};
use faultline_testkit::TmpDir;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

/// Run the binary: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn sample(name: &str) -> TmpDir {
    let dir = tmpdir(name);
    write_sample(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The sample trace merged: (ts, cpu, name) of its 13 events.
const MERGED: [(u64, u32, &str); 13] = [
    (1000, 0, "myapp:all"),
    (1006, 1, "myapp:all"),
    (1010, 0, "other:read"),
    (1016, 1, "other:read"),
    (1020, 0, "myapp:tick"),
    (2501, 1, "myapp:all"),
    (2511, 1, "other:read"),
    (2521, 1, "myapp:tick"),
    (3000, 0, "myapp:tick"),
    (3010, 0, "myapp:all"),
    (3020, 0, "other:read"),
    (3030, 0, "myapp:tick"),
    (4001, 1, "myapp:all"),
];

/// `(ts, cpu, name)` of each line printed with `--time raw`.
fn keys(stdout: &str) -> Vec<(u64, u32, String)> {
    stdout
        .lines()
        .map(|l| {
            let (ts, rest) = l.strip_prefix('[').unwrap().split_once("] cpu ").unwrap();
            let (cpu, rest) = rest.split_once(' ').unwrap();
            let name = rest.split_once(": {").unwrap().0;
            (ts.parse().unwrap(), cpu.parse().unwrap(), name.to_string())
        })
        .collect()
}

fn expect(pred: impl Fn(u64, u32, &str) -> bool) -> Vec<(u64, u32, String)> {
    MERGED
        .iter()
        .filter(|&&(t, c, n)| pred(t, c, n))
        .map(|&(t, c, n)| (t, c, n.to_string()))
        .collect()
}

#[test]
fn view_prints_exact_lines() {
    let dir = sample("cli-view");
    let (code, out, err) = run(&["view", s(&dir)]);
    assert_eq!(code, 0);
    // The sample's losses, as babeltrace2 reports them (see tests/view_discards.rs).
    assert_eq!(err.lines().count(), 5, "{err}");
    assert!(err
        .lines()
        .all(|l| l.starts_with("faultline view: warning: the tracer ")));
    let expected = [
        "[+0.000000000] cpu 0 myapp:all: { u8f = 200, u16f = 65535, u32f = 4000000000, \
         u64f = 18446744073709551615, i8f = -128, i16f = -32768, i32f = -2000000000, \
         i64f = -9223372036854775808, f32f = 1.5, f64f = -0.125, flag = false, \
         text = \"text 0 \\\"q\\\"\", blob = [], blob_len = 0 }",
        "[+0.000000006] cpu 1 myapp:all: { u8f = 203, u16f = 65532, u32f = 4000000003, \
         u64f = 18446744073709551612, i8f = -125, i16f = -32765, i32f = -2000000003, \
         i64f = -9223372036854775805, f32f = 4.5, f64f = -0.5, flag = true, \
         text = \"text 3 \\\"q\\\"\", blob = [03 28 4d], blob_len = 9 }",
        "[+0.000000010] cpu 0 other:read: { path_faulted = 1, path = \"/tmp/file1\", data = [de ad 01] }",
        "[+0.000000016] cpu 1 other:read: { path_faulted = 1, path = \"/tmp/file4\", data = [de ad 04] }",
        "[+0.000000020] cpu 0 myapp:tick: {}",
        "[+0.000001501] cpu 1 myapp:all: { u8f = 209, u16f = 65526, u32f = 4000000009, \
         u64f = 18446744073709551606, i8f = -119, i16f = -32759, i32f = -2000000009, \
         i64f = -9223372036854775799, f32f = 10.5, f64f = -1.25, flag = true, \
         text = \"text 9 \\\"q\\\"\", blob = [09 2e 53 78], blob_len = 27 }",
        "[+0.000001511] cpu 1 other:read: { path_faulted = 1, path = \"/tmp/file10\", data = [de ad 0a] }",
        "[+0.000001521] cpu 1 myapp:tick: {}",
        "[+0.000002000] cpu 0 myapp:tick: {}",
        "[+0.000002010] cpu 0 myapp:all: { u8f = 206, u16f = 65529, u32f = 4000000006, \
         u64f = 18446744073709551609, i8f = -122, i16f = -32762, i32f = -2000000006, \
         i64f = -9223372036854775802, f32f = 7.5, f64f = -0.875, flag = false, \
         text = \"text 6 \\\"q\\\"\", blob = [06], blob_len = 18 }",
        "[+0.000002020] cpu 0 other:read: { path_faulted = 1, path = \"/tmp/file7\", data = [de ad 07] }",
        "[+0.000002030] cpu 0 myapp:tick: {}",
        "[+0.000003001] cpu 1 myapp:all: { u8f = 212, u16f = 65523, u32f = 4000000012, \
         u64f = 18446744073709551603, i8f = -116, i16f = -32756, i32f = -2000000012, \
         i64f = -9223372036854775796, f32f = 13.5, f64f = -1.625, flag = false, \
         text = \"text 12 \\\"q\\\"\", blob = [0c 31], blob_len = 36 }",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    assert!(out.ends_with("}\n"));
}

#[test]
fn view_time_displays() {
    let dir = sample("cli-view-time");
    let (code, out, _) = run(&["view", s(&dir), "--time", "raw", "--event", "*:tick"]);
    assert_eq!(code, 0);
    let first: Vec<_> = out
        .lines()
        .map(|l| l.split(" cpu").next().unwrap())
        .collect();
    assert_eq!(first, ["[1020]", "[2521]", "[3000]", "[3030]"]);
    // Wall clock: offset 1700000000 s + 250 ticks at 1 GHz.
    let (code, out, _) = run(&["view", s(&dir), "--time", "wall", "--cpu", "1"]);
    assert_eq!(code, 0);
    let first: Vec<_> = out
        .lines()
        .map(|l| l.split(" cpu").next().unwrap())
        .collect();
    assert_eq!(
        first,
        [
            "[1700000000.000001256]",
            "[1700000000.000001266]",
            "[1700000000.000002751]",
            "[1700000000.000002761]",
            "[1700000000.000002771]",
            "[1700000000.000004251]",
        ]
    );
}

#[test]
fn view_filters() {
    let dir = sample("cli-filter");
    let d = s(&dir);
    type Pred = Box<dyn Fn(u64, u32, &str) -> bool>;
    let cases: Vec<(Vec<&str>, Pred)> = vec![
        (vec![], Box::new(|_, _, _| true)),
        (
            vec!["--event", "myapp:*"],
            Box::new(|_, _, n| n.starts_with("myapp:")),
        ),
        (
            vec!["-e", "other:*", "--event", "*:t?ck"],
            Box::new(|_, _, n| n != "myapp:all"),
        ),
        (vec!["--event", "nothing*"], Box::new(|_, _, _| false)),
        (vec!["--cpu", "1"], Box::new(|_, c, _| c == 1)),
        (vec!["--cpu", "0", "--cpu", "1"], Box::new(|_, _, _| true)),
        (vec!["--cpu", "7"], Box::new(|_, _, _| false)),
        (
            vec!["--event", "myapp:*", "--cpu", "0"],
            Box::new(|_, c, n| c == 0 && n.starts_with("myapp:")),
        ),
        // Relative to the trace start (ts 1000), both ends inclusive.
        (
            vec!["--from", "10", "--to", "16ns"],
            Box::new(|t, _, _| (1010..=1016).contains(&t)),
        ),
        (vec!["--from", "1.501us"], Box::new(|t, _, _| t >= 2501)),
        (vec!["--to", "0"], Box::new(|t, _, _| t == 1000)),
        // Absolute clock values.
        (
            vec!["--from", "@2511", "--to", "@3010"],
            Box::new(|t, _, _| (2511..=3010).contains(&t)),
        ),
        (
            vec![
                "--from", "@2511", "--to", "@3010", "--cpu", "0", "-e", "*all",
            ],
            Box::new(|t, c, n| (2511..=3010).contains(&t) && c == 0 && n == "myapp:all"),
        ),
        (vec!["--from", "1s"], Box::new(|_, _, _| false)),
    ];
    for (args, pred) in cases {
        let mut a = vec!["view", d, "--time", "raw"];
        a.extend(&args);
        let (code, out, _) = run(&a);
        assert_eq!(code, 0, "{args:?}");
        assert_eq!(keys(&out), expect(pred), "{args:?}");
    }
    // A glob matching no event class is noted on stderr.
    let (_, _, err) = run(&["view", d, "--event", "nothing*"]);
    assert_eq!(
        err.lines().next(),
        Some("faultline view: note: no event of this trace matches `nothing*`")
    );
    // Malformed times are usage errors.
    for bad in ["1.5", "-3", "@", "@12x", "3h"] {
        let from = format!("--from={bad}");
        let (code, out, err) = run(&["view", d, &from]);
        assert_eq!(code, 2, "{bad}");
        assert_eq!(out, "");
        assert!(err.contains("--from"), "{err}");
    }
}

#[test]
fn stats_json_exact() {
    let dir = sample("cli-stats");
    let (code, out, err) = run(&["stats", s(&dir), "--json"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let size = |f: &str| std::fs::metadata(dir.join(f)).unwrap().len();
    let bytes = size("metadata") + size("stream_0") + size("stream_1");
    let expected = serde_json::json!({
        "trace": s(&dir),
        "clock_freq_hz": 1_000_000_000u64,
        "events_total": 13,
        "lost_total": 13,
        "lost_full": 7,
        "lost_stalled": 1,
        "lost_too_big": 5,
        "lost_packets": 1,
        "packets_before_first": 0,
        "packets": 6,
        "remote_commits": 0,
        "truncated_events": 0,
        "truncated_bytes": 0,
        "events": { "myapp:all": 5, "myapp:tick": 4, "other:read": 4 },
        "cpus": { "0": 7, "1": 6 },
        "per_cpu": {
            "0": {
                "events": 7, "packets": 3, "lost_packets": 0, "packets_before_first": 0,
                "bytes": size("stream_0"), "remote_commits": 0,
                "lost": { "events_discarded": 4, "lost_full": 3, "lost_stalled": 1, "lost_too_big": 0 }
            },
            "1": {
                "events": 6, "packets": 3, "lost_packets": 1, "packets_before_first": 0,
                "bytes": size("stream_1"), "remote_commits": 0,
                "lost": { "events_discarded": 9, "lost_full": 4, "lost_stalled": 0, "lost_too_big": 5 }
            }
        },
        "first_ts": 1000,
        "last_ts": 4001,
        "span_ns": 3001,
        "span_s": 3001.0 / 1e9,
        "events_per_sec": 13.0 * 1e9 / 3001.0,
        "bytes_on_disk": bytes,
        "recorder": null,
        "buffers": "cpu",
    });
    assert_eq!(j, expected);
}

#[test]
fn stats_text() {
    let dir = sample("cli-stats-text");
    let (code, out, err) = run(&["stats", s(&dir)]);
    assert_eq!((code, err.as_str()), (0, ""));
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines[0], format!("trace       {}", s(&dir)));
    assert_eq!(
        lines[2],
        "span        0.000003001 s (clock ticks 1000 to 4001, 1000000000 Hz)"
    );
    assert_eq!(lines[3], "events      13");
    assert_eq!(lines[4], "throughput  4331889.4 events/s");
    assert_eq!(
        lines[5],
        "lost        13 events (buffer full 7, writer stalled 1, too big 5); 1 packets missing \
         between packets, 0 before the first packet of a stream"
    );
    assert_eq!(
        lines[6],
        "truncated   0 events with a raw buffer not recorded whole (0 bytes left out)"
    );
    assert_eq!(
        lines[7],
        "remote      0 REMOTE commits (writer migrated between reserve and commit)"
    );
    let row = |name: &str, n: u64| format!("{name:<10}  {n:>12}");
    let events: Vec<String> = lines[9..13].iter().map(|l| l.to_string()).collect();
    assert_eq!(
        events,
        [
            format!("{:<10}  {:>12}", "event", "count"),
            row("myapp:all", 5),
            row("myapp:tick", 4),
            row("other:read", 4),
        ]
    );
}

#[test]
fn empty_trace() {
    let dir = tmpdir("cli-empty-trace");
    let shape = PlanShape {
        step: 1,
        span: 1,
        packet_size: 128,
    };
    write_plan(&dir, &[], shape, |_, _, _| {}).unwrap();
    let (code, out, err) = run(&["view", s(&dir)]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, _) = run(&["stats", s(&dir), "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["events_total"], 0);
    assert_eq!(j["events_per_sec"], serde_json::Value::Null);
    assert_eq!(j["first_ts"], serde_json::Value::Null);
}

/// A trace big enough that its text does not fit in a pipe buffer.
fn big_trace(name: &str, events_per_packet: u64) -> TmpDir {
    let dir = tmpdir(name);
    let plan: Vec<PacketPlan> = (0..8)
        .map(|i| {
            (
                i % 2,
                i as u64 / 2,
                (0, 0, 0),
                events_per_packet,
                1_000_000 * i as u64,
            )
        })
        .collect();
    let shape = PlanShape {
        step: 1,
        span: 999_999,
        packet_size: 4096,
    };
    write_plan(&dir, &plan, shape, |_, _, _| {}).unwrap();
    dir
}

#[test]
fn closed_pipe_is_quiet() {
    let dir = big_trace("cli-pipe", 5000);
    let mut child = Command::new(BIN)
        .args(["view", s(&dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"[+0.000000000] cpu 0 myapp:all: {"));
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!((status.code(), err.as_str()), (Some(0), ""));
    // And the whole output is there when read to the end.
    let (code, out, _) = run(&["view", s(&dir)]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 40_000);
}

// ------------------------------------------------------------------ unreadable traces

/// Both commands fail with exit code 2 and exactly one stderr line naming `file` (and
/// `byte offset N` when given), containing `what`; `view` may have printed events and
/// discard notices (`warning:` lines) before.
fn expect_bad(dir: &Path, file: &Path, offset: Option<u64>, what: &str) {
    for cmd in ["view", "stats"] {
        let (code, out, err) = run(&[cmd, s(dir)]);
        let err: String = err
            .lines()
            .filter(|l| !l.starts_with("faultline view: warning: the tracer "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(code, 2, "{cmd}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err:?}");
        assert!(err.ends_with('\n'), "{cmd}: {err:?}");
        assert!(err.starts_with(&format!("faultline {cmd}: ")), "{err}");
        assert!(err.contains(s(file)), "{cmd}: {err}");
        if let Some(o) = offset {
            assert!(err.contains(&format!("byte offset {o}:")), "{cmd}: {err}");
        }
        assert!(err.contains(what), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        if cmd == "stats" {
            assert_eq!(out, "");
        } else {
            assert!(out.lines().all(|l| l.starts_with("[+")), "{out}");
        }
    }
}

#[test]
fn truncated_stream_file() {
    let dir = sample("cli-trunc");
    let s0 = dir.join("stream_0");
    let offs = packet_offsets(&dir, 0).unwrap();
    let len = std::fs::metadata(&s0).unwrap().len();
    truncate_file(&s0, len - 5).unwrap();
    expect_bad(
        &dir,
        &s0,
        Some(offs[2] + 48),
        "goes beyond the end of the data",
    );
    // Cut inside a packet header.
    truncate_file(&s0, offs[2] + 50).unwrap();
    expect_bad(&dir, &s0, Some(offs[2]), "truncated packet: 50 bytes left");
}

#[test]
fn bad_packet_size() {
    let dir = sample("cli-psize");
    let s0 = dir.join("stream_0");
    let offs = packet_offsets(&dir, 0).unwrap();
    patch_file(&s0, offs[1] + 48, &(1u64 << 40).to_le_bytes()).unwrap();
    expect_bad(&dir, &s0, Some(offs[1] + 48), "packet_size");
    patch_file(&s0, offs[1] + 48, &1027u64.to_le_bytes()).unwrap();
    expect_bad(&dir, &s0, Some(offs[1] + 48), "not a whole number of bytes");
}

#[test]
fn bad_magic_in_the_middle() {
    let dir = sample("cli-magic");
    let s1 = dir.join("stream_1");
    let offs = packet_offsets(&dir, 1).unwrap();
    patch_file(&s1, offs[2], &0xdeadbeefu32.to_le_bytes()).unwrap();
    expect_bad(&dir, &s1, Some(offs[2]), "bad magic 0xdeadbeef");
}

#[test]
fn garbage_metadata() {
    let dir = sample("cli-meta");
    let m = dir.join("metadata");
    std::fs::write(&m, "hello world\n").unwrap();
    // Not faultline's: the general CTF reader reports it.
    expect_bad(
        &dir,
        &m,
        None,
        "byte offset 0: metadata: line 1: unknown type `hello`",
    );
    std::fs::write(&m, [0x57u8, 0x1d, 0xd1, 0x75, 0, 0xff, 0xfe]).unwrap();
    expect_bad(&dir, &m, None, "truncated metadata packet header");
    // Cut in the middle: the error is at the end of the file.
    let good = faultline_ctf::metadata(&faultline_testkit::ctf::desc()).unwrap();
    std::fs::write(&m, &good[..good.len() / 2]).unwrap();
    expect_bad(&dir, &m, None, "byte offset");
}

#[test]
fn missing_metadata() {
    let dir = sample("cli-nometa");
    let m = dir.join("metadata");
    std::fs::remove_file(&m).unwrap();
    expect_bad(&dir, &m, None, "not a faultline or CTF trace: no such file");
}

#[test]
fn empty_directory() {
    let dir = tmpdir("cli-emptydir");
    std::fs::create_dir_all(&dir).unwrap();
    expect_bad(
        &dir,
        &dir.join("metadata"),
        None,
        "not a faultline or CTF trace",
    );
}

#[test]
fn regular_file_instead_of_directory() {
    let dir = sample("cli-file");
    let f = dir.join("stream_0");
    expect_bad(&f, &f, None, "not a directory");
}

#[test]
fn missing_directory() {
    let tmp = tmpdir("cli-missing");
    let dir = tmp.join("missing");
    expect_bad(&dir, &dir, None, "No such file or directory");
}

#[test]
fn directory_named_like_a_stream_is_skipped() {
    let dir = sample("cli-dirstream");
    std::fs::create_dir(dir.join("stream_9")).unwrap();
    let (code, out, _) = run(&["view", s(&dir)]);
    assert_eq!((code, out.lines().count()), (0, 13));
}

#[test]
fn help_teaches() {
    for cmd in ["view", "stats"] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Examples:"), "{out}");
        assert!(out.contains(&format!("faultline {cmd} trace/")), "{out}");
        assert!(out.contains("Exit codes: 0 success"), "{out}");
        assert!(
            out.contains("2 DIR is not a readable faultline trace"),
            "{out}"
        );
    }
    let (_, out, _) = run(&["view", "--help"]);
    for opt in [
        "--event", "--cpu", "--from", "--to", "--time", "@TICKS", "wall",
    ] {
        assert!(out.contains(opt), "{opt}: {out}");
    }
    let (_, out, _) = run(&["--help"]);
    assert!(out.contains("view") && out.contains("stats"), "{out}");
}

/// `record` parses its own arguments without the whole command tree; help and errors still
/// come from the full parser, as for every command.
#[test]
fn record_help_and_errors_as_from_the_full_parser() {
    let (code, out, _) = run(&["record", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: faultline record [OPTIONS]"), "{out}");
    assert!(
        out.contains("--libc") && out.contains("Exit status:"),
        "{out}"
    );
    for bad in [&["record", "--bogus", "--", "true"][..], &["record"]] {
        let (code, _, err) = run(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("Usage: faultline record"), "{bad:?}: {err}");
    }
}

/// Throughput of `view` on a large trace (1.2 M events); prints events/s. Not run by default:
/// `cargo test --release -p faultline-cli --test cli_traces -- --ignored --nocapture`.
#[test]
#[ignore]
fn view_throughput() {
    let dir = big_trace("cli-perf", 150_000);
    for args in [
        vec!["view"],
        vec!["view", "--event", "*:tick"],
        vec!["stats"],
    ] {
        let mut a = args.clone();
        a.push(s(&dir));
        let t = std::time::Instant::now();
        let st = Command::new(BIN)
            .args(&a)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        let dt = t.elapsed().as_secs_f64();
        assert!(st.success());
        println!("{args:?}: {:.2} s, {:.0} events/s", dt, 1.2e6 / dt);
    }
}
