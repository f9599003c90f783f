//! `faultline export` and `faultline timeline` stream: their peak memory does not grow with
//! the trace. A test binary of its own, so that the peak resident set reported for a child
//! (which on Linux includes what the parent had when it spawned the child) is not inflated by
//! other tests; the traces are generated packet by packet, keeping this process small.

use faultline_ctf::{PacketBuilder, TraceWriter};
use faultline_testkit::ctf::{all_values, desc, encode, tmpdir, ALL, ID_ALL, UUID};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

/// `packets` packets of `per` `myapp:all` events on each of CPUs 0 and 1, with a few losses.
fn write_big(dir: &Path, packets: u64, per: u64) -> u64 {
    let mut w = TraceWriter::create(dir, &desc()).unwrap();
    let mut k = 0u64;
    for i in 0..packets {
        for cpu in [0u32, 1] {
            let base = 1_000 + i * per * 10;
            let mut pb = PacketBuilder::new(UUID, cpu, i).lost(i / 100, 0, 0);
            pb.header.timestamp_begin = base;
            pb.header.timestamp_end = base + per * 10;
            for j in 0..per {
                let payload = encode(ALL.fields, &all_values(k)).unwrap();
                pb.record(base + j * 10 + u64::from(cpu), ID_ALL, &payload);
                k += 1;
            }
            w.write_packet(cpu, &pb.finish(0)).unwrap();
        }
    }
    w.finish().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Run the binary; (exit code, peak resident set in KiB).
fn run_measured(args: &[&str]) -> (i32, i64) {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; `status` and `ru` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    // Reaped above: dropping `child` neither waits nor kills.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, ru.ru_maxrss)
}

#[test]
fn export_and_timeline_memory_does_not_grow_with_the_trace() {
    let small = tmpdir("export-mem-small");
    let big = tmpdir("export-mem-big");
    write_big(&small, 20, 500); // 20,000 events
    let big_bytes = write_big(&big, 720, 500); // 720,000 events (compact headers: ~70 B each)
    assert!(big_bytes > 50 << 20, "{big_bytes}");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut rss = Vec::new();
    for d in [&small, &big] {
        let (code, ex) = run_measured(&["export", "--format", "chrome", &s(d), "-o", "/dev/null"]);
        assert_eq!(code, 0);
        let (code, tl) = run_measured(&["timeline", &s(d), "-o", "/dev/null"]);
        assert_eq!(code, 0);
        rss.push((ex, tl));
    }
    eprintln!(
        "peak RSS KiB (export, timeline): 20k events {:?}, 600k events {:?}; trace {} KiB",
        rss[0],
        rss[1],
        big_bytes / 1024
    );
    // 30x the events, 50+ MiB of trace: memory grows by less than 8 MiB (the per-bin arrays
    // and the reader's buffers do not depend on the number of events).
    assert!(rss[1].0 < rss[0].0 + 8 * 1024, "{rss:?}");
    assert!(rss[1].1 < rss[0].1 + 8 * 1024, "{rss:?}");
}
