//! Reading speed of faultline's general CTF reader next to babeltrace2 2, on the same real
//! LTTng-UST trace (recorded here with the benchmark harness).
//!
//! `cargo run --release -p faultline-lttng --example read_bench [EVENTS_PER_THREAD] [THREADS]`
//!
//! Prints events/s for: text output of every event (faultline's `view` line formatting into a
//! buffered /dev/null writer, vs `babeltrace2 TRACE > /dev/null`), and decoding only
//! (faultline's `stats` pass vs `babeltrace2 -o dummy`). Best of 3 runs each.

use faultline_ctf::general::{push_ctf_event, CtfTrace};
use faultline_ctf::{find_traces, Filter, TimeMode};
use faultline_lttng::{EventKind, LttngBench, LttngOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn best<F: FnMut() -> u64>(mut f: F) -> (u64, f64) {
    let mut t = f64::MAX;
    let mut n = 0;
    for _ in 0..3 {
        let s = Instant::now();
        n = f();
        t = t.min(s.elapsed().as_secs_f64());
    }
    (n, t)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let per_thread: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut bench = LttngBench::with_options(LttngOptions {
        keep_traces: true,
        command_timeout: Duration::from_secs(120),
        ..LttngOptions::default()
    })
    .expect("LTTng harness (run scripts/install-deps.sh)");
    let r = bench
        .run(EventKind::String, threads, per_thread)
        .expect("LTTng run");
    let root = r.trace_dir.expect("kept trace");
    let dir = find_traces(&root).into_iter().next().expect("a trace");
    println!(
        "trace: {} (LTTng-UST string events, {} bytes on disk)",
        dir.display(),
        r.bytes_on_disk
    );

    let (n, t_view) = best(|| {
        let t = CtfTrace::open(&dir).unwrap();
        let mut out =
            std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create("/dev/null").unwrap());
        let mut line = String::new();
        let mut it = t.events(&Filter::default());
        let mut n = 0;
        while let Some(e) = it.next_event() {
            let e = e.unwrap();
            line.clear();
            push_ctf_event(&mut line, &t, &e, TimeMode::RelativeTo(0));
            line.push('\n');
            out.write_all(line.as_bytes()).unwrap();
            n += 1;
        }
        n
    });
    let (_, t_stats) = best(|| {
        let t = CtfTrace::open(&dir).unwrap();
        faultline_ctf::general::stats::ctf_stats(&t)
            .unwrap()
            .events_total
    });
    let bt = |extra: &[&str]| {
        best(|| {
            let st = Command::new("babeltrace2")
                .args(extra)
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("babeltrace2");
            assert!(st.success());
            0
        })
        .1
    };
    let t_bt_text = bt(&[]);
    let t_bt_dummy = bt(&["-o", "dummy"]);
    let eps = |t: f64| n as f64 / t;
    println!("events: {n}");
    println!(
        "text output : faultline {:>12.0} events/s   babeltrace2 {:>12.0} events/s   ratio {:.1}x",
        eps(t_view),
        eps(t_bt_text),
        t_bt_text / t_view
    );
    println!(
        "decode only : faultline {:>12.0} events/s   babeltrace2 {:>12.0} events/s   ratio {:.1}x",
        eps(t_stats),
        eps(t_bt_dummy),
        t_bt_dummy / t_stats
    );
}
