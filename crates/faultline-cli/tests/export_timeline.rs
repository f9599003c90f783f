//! `faultline export --format chrome` and `faultline timeline` run as a program on traces
//! written with faultline-ctf's `TraceWriter`: the Trace Event Format output (tracks, instants
//! with args, spans as duration events, loss markers that sum to `faultline stats`, faulted
//! flags, filters), the timeline's data (memory: see `export_memory.rs`); and, in a
//! real browser (headless Chromium driven by playwright-core, skipped with a message where
//! Chromium, Node.js or npm is missing), the timeline page (no console errors, one lane per
//! CPU, loss markers equal to `faultline stats`, zoom and pan, a screenshot) and the exported
//! JSON imported into speedscope served from loopback.

use faultline_ctf::{ClockDesc, EnvDesc, PacketBuilder, TraceDesc, TraceWriter};
use faultline_schema::{EventDesc, FieldDesc, FieldType, Value};
use faultline_testkit::ctf::{tmpdir, write_plan, write_sample, PacketPlan, PlanShape};
use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn export(dir: &Path, extra: &[&str]) -> J {
    let mut args = vec!["export", "--format", "chrome", s(dir), "-o", "-"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON: {e}\n{out}"))
}

fn events(j: &J) -> &Vec<J> {
    j["traceEvents"].as_array().unwrap()
}

fn stats(dir: &Path) -> J {
    let (code, out, err) = run(&["stats", "--json", s(dir)]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Sums of the loss markers' args by cause.
fn loss_sums(j: &J) -> [u64; 4] {
    let mut t = [0u64; 4];
    for e in events(j).iter().filter(|e| e["cat"] == "faultline,loss") {
        for (i, k) in ["lost_full", "lost_stalled", "lost_too_big", "lost_packets"]
            .iter()
            .enumerate()
        {
            t[i] += e["args"][k].as_u64().unwrap();
        }
    }
    t
}

fn stats_losses(st: &J) -> [u64; 4] {
    ["lost_full", "lost_stalled", "lost_too_big", "lost_packets"].map(|k| st[k].as_u64().unwrap())
}

#[test]
fn chrome_json_of_the_sample_trace() {
    let dir = tmpdir("export-sample");
    write_sample(&dir).unwrap();
    let j = export(&dir, &[]);
    assert_eq!(j["displayTimeUnit"], "ns");
    let evs = events(&j);
    // One named track per CPU.
    let names: Vec<(u64, String)> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == 1)
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(names, vec![(0, "CPU 0".into()), (1, "CPU 1".into())]);
    // Every event once, as an instant on its CPU's track, in timestamp order, with its fields.
    let inst: Vec<&J> = evs
        .iter()
        .filter(|e| {
            e["ph"] == "i" && e["cat"] != "faultline,loss" && e["cat"] != "faultline,remote"
        })
        .collect();
    assert_eq!(inst.len(), 13);
    assert_eq!(inst[0]["name"], "myapp:all");
    assert_eq!(inst[0]["ts"].as_f64().unwrap(), 0.0);
    assert_eq!(inst[1]["tid"], 1);
    assert_eq!(inst[1]["ts"].as_f64().unwrap(), 0.006); // 6 ns after the first event
    assert_eq!(inst[0]["args"]["u64f"], J::String(u64::MAX.to_string()));
    assert_eq!(inst[0]["args"]["text"], "text 0 \"q\"");
    assert_eq!(inst[2]["name"], "other:read");
    assert_eq!(inst[2]["args"]["path"], "/tmp/file1");
    assert_eq!(inst[2]["args"]["data"], "dead01");
    // other:read has path_faulted = k % 3 = 1 in this trace: flagged.
    assert_eq!(inst[2]["cat"], "other,faulted");
    assert_eq!(inst[2]["args"]["faulted"], true);
    assert_eq!(inst[0]["cat"], "myapp");
    assert!(inst[0]["args"].get("faulted").is_none());
    // Loss markers at the packets where the losses were counted; they sum to the stats.
    let st = stats(&dir);
    assert_eq!(loss_sums(&j), stats_losses(&st));
    assert_eq!(loss_sums(&j), [7, 1, 5, 1]);
    let marks: Vec<(u64, f64)> = evs
        .iter()
        .filter(|e| e["cat"] == "faultline,loss")
        .map(|e| (e["tid"].as_u64().unwrap(), e["ts"].as_f64().unwrap()))
        .collect();
    // CPU 0: packet 2 (begins at 3000); CPU 1: packets 0 (1005), 2 (2500, after a gap), 3.
    assert_eq!(
        marks,
        vec![(0, 2.0), (1, 0.005), (1, 1.5), (1, 3.0)],
        "{marks:?}"
    );
}

#[test]
fn export_filters_and_errors() {
    let dir = tmpdir("export-filters");
    write_sample(&dir).unwrap();
    let j = export(&dir, &["--cpu", "1", "--event", "myapp:*"]);
    let inst: Vec<&J> = events(&j)
        .iter()
        .filter(|e| {
            e["ph"] == "i" && e["cat"] != "faultline,loss" && e["cat"] != "faultline,remote"
        })
        .collect();
    assert_eq!(inst.len(), 4);
    assert!(inst
        .iter()
        .all(|e| e["tid"] == 1 && e["name"].as_str().unwrap().starts_with("myapp:")));
    // Times stay relative to the trace start, whatever the filter.
    assert_eq!(inst[0]["ts"].as_f64().unwrap(), 0.006);
    let j = export(&dir, &["--from", "1500", "--to", "1600"]);
    let ts: Vec<f64> = events(&j)
        .iter()
        .filter(|e| {
            e["ph"] == "i" && e["cat"] != "faultline,loss" && e["cat"] != "faultline,remote"
        })
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    assert_eq!(ts, vec![1.501, 1.511, 1.521]);
    // Not a trace: one line, exit 2.
    let (code, out, err) = run(&["export", "--format", "chrome", "/nonexistent", "-o", "-"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("faultline export: /nonexistent"), "{err}");
    // An output that cannot be created: exit 1, one line.
    let (code, _, err) = run(&[
        "export",
        "--format",
        "chrome",
        s(&dir),
        "-o",
        "/nonexistent/x.json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
}

const fn fd(name: &'static str, ty: FieldType) -> FieldDesc {
    FieldDesc { name, ty }
}
const NEW_FIELDS: &[FieldDesc] = &[
    fd("span", FieldType::U64),
    fd("parent", FieldType::U64),
    fd("user", FieldType::String),
];
const EDGE_FIELDS: &[FieldDesc] = &[fd("span", FieldType::U64), fd("tid", FieldType::U32)];
const CLOSE_FIELDS: &[FieldDesc] = &[fd("span", FieldType::U64)];
const WORK_FIELDS: &[FieldDesc] = &[fd("tid", FieldType::U32), fd("n", FieldType::U64)];
const fn ed(provider: &'static str, name: &'static str, fields: &'static [FieldDesc]) -> EventDesc {
    EventDesc {
        provider,
        name,
        fields,
    }
}
/// The event classes `faultline-tracing` records (its crate docs): span creation as
/// `<target>:<LEVEL>.span.<name>` with `span`, `parent` and the span's fields;
/// `tracing:span_enter`/`span_exit` with `span` and `tid`; `tracing:span_close` with `span`.
const SPAN_EVENTS: [(u32, EventDesc); 8] = [
    (1, ed("app", "INFO.span.outer", NEW_FIELDS)),
    (2, ed("tracing", "span_enter", EDGE_FIELDS)),
    (3, ed("tracing", "span_exit", EDGE_FIELDS)),
    (4, ed("tracing", "span_close", CLOSE_FIELDS)),
    (5, ed("app", "work", WORK_FIELDS)),
    (6, ed("app.db", "DEBUG.span.inner", NEW_FIELDS)),
    (7, ed("app", "INFO.span.request", NEW_FIELDS)),
    (8, ed("app", "WARN.span.tail", NEW_FIELDS)),
];

/// A trace of spans: thread 7 on CPU 0 enters `outer` (1000..2000) and `inner` (1100..1300)
/// inside it; thread 8 enters `request` on CPU 1 at 1500 and leaves it on CPU 0 at 2500 (it
/// migrated); `tail` (thread 9) is entered at 2600 and never left. 1 GHz clock: ticks = ns.
fn write_spans(dir: &Path) {
    let desc = TraceDesc {
        uuid: faultline_testkit::ctf::UUID,
        clock: ClockDesc {
            name: "monotonic".into(),
            freq_hz: 1_000_000_000,
            offset_s: 0,
            offset_ticks: 0,
            description: "test".into(),
        },
        env: EnvDesc {
            hostname: "h".into(),
            procname: "spans".into(),
            tracer_major: 0,
            tracer_minor: 1,
            extra: vec![],
        },
        events: SPAN_EVENTS.to_vec(),
    };
    let new = |id: u64, parent: u64, user: &str| {
        vec![
            Value::U(id),
            Value::U(parent),
            Value::Str(user.as_bytes().to_vec()),
        ]
    };
    let edge = |id: u64, tid: u64| vec![Value::U(id), Value::U(tid)];
    let close = |id: u64| vec![Value::U(id)];
    // (cpu, ts, event id, values)
    let recs: Vec<(u32, u64, u32, Vec<Value>)> = vec![
        (0, 1000, 1, new(1, 0, "u1")),
        (0, 1000, 2, edge(1, 7)),
        (0, 1050, 5, vec![Value::U(7), Value::U(1)]),
        (0, 1100, 6, new(2, 1, "u2")),
        (0, 1100, 2, edge(2, 7)),
        (0, 1300, 3, edge(2, 7)),
        (0, 1300, 4, close(2)),
        (1, 1400, 7, new(3, 0, "u3")),
        (1, 1500, 2, edge(3, 8)),
        (0, 2000, 3, edge(1, 7)),
        (0, 2000, 4, close(1)),
        (0, 2500, 3, edge(3, 8)),
        (0, 2500, 4, close(3)),
        (1, 2600, 8, new(4, 0, "u4")),
        (1, 2600, 2, edge(4, 9)),
        (1, 2700, 5, vec![Value::U(9), Value::U(2)]),
    ];
    let mut w = TraceWriter::create(dir, &desc).unwrap();
    for cpu in [0u32, 1] {
        let mut pb = PacketBuilder::new(desc.uuid, cpu, 0);
        pb.header.timestamp_begin = 900;
        pb.header.timestamp_end = 3000;
        for (c, ts, id, vals) in &recs {
            if *c == cpu {
                let fields = SPAN_EVENTS.iter().find(|e| e.0 == *id).unwrap().1.fields;
                pb.record(
                    *ts,
                    *id,
                    &faultline_testkit::ctf::encode(fields, vals).unwrap(),
                );
            }
        }
        w.write_packet(cpu, &pb.finish(4096)).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn spans_become_duration_events_on_thread_tracks() {
    let dir = tmpdir("export-spans");
    write_spans(&dir);
    let j = export(&dir, &[]);
    let evs = events(&j);
    let mut x: Vec<(String, u64, f64, f64, bool)> = evs
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            assert_eq!(e["pid"], 2, "{e}");
            (
                e["name"].as_str().unwrap().to_string(),
                e["tid"].as_u64().unwrap(),
                e["ts"].as_f64().unwrap(),
                e["dur"].as_f64().unwrap(),
                e["args"]["unfinished"] == true,
            )
        })
        .collect();
    x.sort_by(|a, b| a.2.total_cmp(&b.2));
    assert_eq!(
        x,
        vec![
            ("outer".into(), 7, 0.0, 1.0, false),
            ("inner".into(), 7, 0.1, 0.2, false),
            ("request".into(), 8, 0.5, 1.0, false),
            ("tail".into(), 9, 1.6, 0.1, true),
        ]
    );
    let inner = evs.iter().find(|e| e["name"] == "inner").unwrap();
    assert_eq!(
        inner["args"],
        serde_json::json!({"span_id": 2, "parent": 1, "user": "u2", "target": "app.db",
            "level": "DEBUG"})
    );
    // Thread tracks are named; enter/exit are not instants, the rest are: on the CPU tracks,
    // and on the thread tracks when the event names its thread.
    let threads: Vec<u64> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == 2)
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, vec![7, 8, 9]);
    let inst = |pid: u64| {
        evs.iter()
            .filter(|e| e["ph"] == "i" && e["pid"] == pid)
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(inst(1).len(), 9);
    assert_eq!(inst(2), vec!["app:work", "app:work"]);
    assert!(!inst(1)
        .iter()
        .any(|n| n.contains("enter") || n.contains("exit")));
    let work = evs
        .iter()
        .find(|e| e["name"] == "app:work" && e["pid"] == 2)
        .unwrap();
    assert_eq!(
        (work["tid"].as_u64(), work["args"]["cpu"].as_u64()),
        (Some(7), Some(0))
    );
    // --tracks keeps one copy of the events whose thread is known; spans stay on threads.
    let count = |j: &J, pid: u64, ph: &str| {
        events(j)
            .iter()
            .filter(|e| e["pid"] == pid && e["ph"] == ph)
            .count()
    };
    let cpu_only = export(&dir, &["--tracks", "cpu"]);
    assert_eq!((count(&cpu_only, 1, "i"), count(&cpu_only, 2, "i")), (9, 0));
    assert_eq!(count(&cpu_only, 2, "X"), 4);
    let thread_only = export(&dir, &["--tracks", "thread"]);
    assert_eq!(
        (count(&thread_only, 1, "i"), count(&thread_only, 2, "i")),
        (7, 2)
    );
    assert_eq!(count(&thread_only, 2, "X"), 4);
    // An exit whose enter is not selected is skipped.
    let late = export(&dir, &["--from", "150"]);
    let names: Vec<&str> = events(&late)
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["request", "tail"]);
}

/// The JSON data block of a timeline page.
fn page_data(html: &str) -> J {
    let start = html.find("id=\"faultline-data\">").unwrap() + "id=\"faultline-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

/// A trace with 4 CPUs numbered 0, 1, 2, 5, losses of every cause and a lost packet.
fn write_lossy(dir: &Path) {
    let plan: &[PacketPlan] = &[
        (0, 0, (0, 0, 0), 30, 1_000),
        (1, 0, (2, 0, 0), 20, 1_005),
        (2, 0, (0, 3, 0), 25, 1_500),
        (5, 0, (0, 0, 0), 10, 2_000),
        (0, 1, (4, 1, 0), 30, 5_000),
        (1, 2, (2, 0, 6), 20, 6_000),
        (2, 1, (1, 3, 0), 25, 7_000),
        (5, 1, (0, 0, 9), 10, 8_000),
        (0, 2, (4, 1, 0), 30, 9_000),
    ];
    let shape = PlanShape {
        step: 40,
        span: 1_500,
        packet_size: 8192,
    };
    write_plan(dir, plan, shape, |_, _, _| {}).unwrap();
}

#[test]
fn timeline_page_data() {
    let base = tmpdir("timeline-data");
    let dir = base.join("trace");
    write_lossy(&dir);
    let out = dir.with_extension("html");
    let (code, _, err) = run(&["timeline", s(&dir), "-o", s(&out), "--bins", "100"]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    // Self-contained: nothing is loaded from elsewhere.
    for bad in ["http://", "https://", "src=", "<link"] {
        assert!(!html.contains(bad), "{bad}");
    }
    let d = page_data(&html);
    let st = stats(&dir);
    let cpus: Vec<u64> = d["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cpu"].as_u64().unwrap())
        .collect();
    assert_eq!(cpus, vec![0, 1, 2, 5]);
    assert_eq!(d["events_total"], st["events_total"]);
    for l in d["lanes"].as_array().unwrap() {
        let bins = l["bins"].as_array().unwrap();
        assert_eq!(bins.len(), 100);
        let sum: u64 = bins.iter().map(|b| b.as_u64().unwrap()).sum();
        let cpu = l["cpu"].as_u64().unwrap().to_string();
        assert_eq!(sum, st["cpus"][&cpu].as_u64().unwrap());
    }
    let mut t = [0u64; 4];
    for m in d["loss_marks"].as_array().unwrap() {
        for (i, k) in ["full", "stalled", "too_big", "packets"].iter().enumerate() {
            t[i] += m[k].as_u64().unwrap();
        }
    }
    assert_eq!(t, stats_losses(&st));
    assert_eq!(d["lost_total"], st["lost_total"]);
    // Every event is in the page's detail (small trace), a third of them faulted.
    assert_eq!(
        d["detail"]["t"].as_array().unwrap().len() as u64,
        st["events_total"].as_u64().unwrap()
    );
    assert_eq!(d["faulted_total"], st["events"]["other:read"]);
    // A name that could close the script element is escaped.
    let dir2 = base.join("timeline-</script>");
    write_sample(&dir2).unwrap();
    let (code, page, _) = run(&["timeline", s(&dir2), "-o", "-"]);
    assert_eq!(code, 0);
    assert_eq!(page.matches("</script>").count(), 2);
    assert_eq!(page_data(&page)["trace"], s(&dir2));
}

// ---- in a real browser ----

/// Node.js packages the browser tests use, installed once per build directory.
const NODE_PACKAGES: [&str; 2] = ["playwright-core@1.65.1", "speedscope@1.25.0"];

/// Chromium and a node_modules directory with playwright-core and speedscope, or why not.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    static INSTALL: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        return Err(format!(
            "{} not found (scripts/install-deps.sh installs Debian's chromium)",
            chromium.display()
        ));
    }
    let mut g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(install_node_packages());
    }
    let nm = g.clone().unwrap()?;
    Ok((chromium, nm))
}

fn install_node_packages() -> Result<PathBuf, String> {
    let prefix = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-node");
    let nm = prefix.join("node_modules");
    let have = |p: &str| {
        nm.join(p.split('@').next().unwrap())
            .join("package.json")
            .exists()
    };
    if NODE_PACKAGES.iter().all(|p| have(p)) {
        return Ok(nm);
    }
    for tool in ["node", "npm"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return Err(format!("{tool} not found"));
        }
    }
    std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
    let mut child = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&prefix)
        .args(NODE_PACKAGES)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("npm: {e}"))?;
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            if st.success() && NODE_PACKAGES.iter().all(|p| have(p)) {
                return Ok(nm);
            }
            return Err(format!("npm install {NODE_PACKAGES:?} failed ({st})"));
        }
        if t0.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("npm install took more than 240 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run a driver script under node with a time limit; its one JSON line.
fn node_driver(script: &str, nm: &Path, chromium: &Path, args: &[&Path]) -> J {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = tmpdir("node-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .env("NODE_PATH", nm)
        .env("CHROMIUM", chromium)
        .stdout(std::fs::File::create(out.join("stdout")).unwrap())
        .stderr(std::fs::File::create(out.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} took more than 150 s", script.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(out.join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(out.join("stderr")).unwrap();
    assert!(
        st.success(),
        "{}: {st}\n{stdout}\n{stderr}",
        script.display()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn screenshot_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn timeline_in_chromium() {
    let (chromium, nm) = match browser() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("SKIPPED timeline_in_chromium: {why}");
            return;
        }
    };
    let base = tmpdir("timeline-chromium");
    let dir = base.join("trace");
    write_lossy(&dir);
    let page = dir.with_extension("html");
    let (code, _, err) = run(&["timeline", s(&dir), "-o", s(&page)]);
    assert_eq!(code, 0, "{err}");
    let shot = screenshot_dir().join("timeline.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tmpdir("chromium-profile");
    let r = node_driver("timeline.mjs", &nm, &chromium, &[&page, &shot, &profile]);
    eprintln!("screenshot: {}", shot.display());
    assert_eq!(r["errors"], J::Array(vec![]), "{r}");
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["requests"], J::Array(vec![]), "{r}");
    let st = stats(&dir);
    assert_eq!(
        r["lanes"].as_u64().unwrap(),
        st["per_cpu"].as_object().unwrap().len() as u64
    );
    assert_eq!(r["lanes"], 4);
    let l = &r["loss"];
    assert_eq!(
        ["full", "stalled", "too_big", "packets"].map(|k| l[k].as_u64().unwrap()),
        stats_losses(&st),
        "{r}"
    );
    assert!(r["header"].as_str().unwrap().contains("events 200"), "{r}");
    assert!(
        r["header"].as_str().unwrap().contains("REMOTE commits 0"),
        "{r}"
    );
    assert!(r["zoomed"].as_str().unwrap().contains("shown"), "{r}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

#[test]
fn exported_json_imports_into_speedscope() {
    let (chromium, nm) = match browser() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("SKIPPED exported_json_imports_into_speedscope: {why}");
            return;
        }
    };
    let base = tmpdir("speedscope");
    let dir = base.join("trace");
    write_spans(&dir);
    let json = dir.with_extension("json");
    let (code, _, err) = run(&["export", "--format", "chrome", s(&dir), "-o", s(&json)]);
    assert_eq!(code, 0, "{err}");
    let dist = nm.join("speedscope/dist/release");
    let shot = screenshot_dir().join("speedscope.png");
    let profile = tmpdir("chromium-profile");
    let r = node_driver(
        "speedscope.mjs",
        &nm,
        &chromium,
        &[&dist, &json, &shot, &profile],
    );
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["errors"], J::Array(vec![]), "{r}");
    assert_eq!(r["dialogs"], J::Array(vec![]), "{r}");
    assert!(r["title"].as_str().unwrap().contains("profile.json"), "{r}");
    assert!(
        r["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "Importing as Trace Event Format profile"),
        "{r}"
    );
}
