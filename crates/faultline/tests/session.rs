//! Embedded sessions: exact event counts and byte-exact payloads, discard-mode losses carried
//! into the trace, and the disk-error path (a tiny tmpfs; skipped when it cannot be mounted).
//! Sessions are process-wide (one tracepoint registry), so the tests take a lock.

use faultline::{Session, SessionError};
use faultline_ctf::{stats, Filter, Trace};
use faultline_schema::Value;
use faultline_testkit::TmpDir;
use faultline_tracepoints::{trace, tracepoint};
use std::collections::BTreeSet;
use std::sync::Mutex;

tracepoint!(SESS_EV, "sesstest", "ev", { n: u64, s: &str, b: &[u8] });

static LOCK: Mutex<()> = Mutex::new(());

/// A fresh directory, removed when the test ends.
fn tmp(name: &str) -> TmpDir {
    TmpDir::new(&format!("test-sess-{name}"))
}

fn text(t: u64, i: u64) -> String {
    format!("thread {t} event {i} {}", "x".repeat((i % 17) as usize))
}

fn bytes(t: u64, i: u64) -> Vec<u8> {
    (0..(i % 41)).map(|k| (k * 31 + t + i) as u8).collect()
}

fn emit(threads: u64, per: u64) {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..per {
                    let s = text(t, i);
                    let b = bytes(t, i);
                    trace!(SESS_EV, (t << 32) | i, &s, &b);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Both consumer regimes: by default the records are not walked (the count is the
/// recorder's, no per-name counts, no verification time); with `verify(true)` the
/// verification pass counts them per name and buffer. The trace is the same.
#[test]
fn exact_counts_and_payloads() {
    exact_counts_and_payloads_case(false);
    exact_counts_and_payloads_case(true);
}

fn exact_counts_and_payloads_case(verify: bool) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmp(&format!("exact-{verify}"));
    let s = Session::builder()
        .output_dir(&dir)
        .events("sesstest:*")
        .verify(verify)
        .start()
        .unwrap();
    emit(4, 5000);
    let sum = s.stop().unwrap();
    assert_eq!(sum.events_written, 20_000);
    assert_eq!(sum.lost_total(), 0);
    assert_eq!(sum.not_written, 0);
    let d = sum.drain.clone().unwrap();
    assert_eq!(d.verified, verify);
    if verify {
        assert_eq!(sum.events.get("sesstest:ev"), Some(&20_000));
        assert_eq!(
            sum.per_cpu.values().map(|c| c.events_total).sum::<u64>(),
            20_000
        );
        assert!(d.verify_cpu_ns > 0, "{d:?}");
    } else {
        assert!(sum.events.is_empty(), "{:?}", sum.events);
        assert_eq!(d.verify_cpu_ns, 0);
        assert!(
            sum.render().contains("events            -")
                && sum.render().contains("SessionBuilder::verify(true)"),
            "{}",
            sum.render()
        );
    }
    let r = sum.recorder.unwrap();
    assert_eq!(r.recorded, 20_000);
    assert_eq!(sum.commits_local + sum.commits_remote, 20_000);
    let trace = Trace::open(&dir).unwrap();
    let mut seen = BTreeSet::new();
    for ev in trace.events(&Filter::default()) {
        let ev = ev.unwrap();
        let Value::U(n) = ev.fields[0].1 else {
            panic!("{:?}", ev.fields)
        };
        let (t, i) = (n >> 32, n & 0xffff_ffff);
        assert_eq!(ev.fields[1].1, Value::Str(text(t, i).into_bytes()));
        assert_eq!(ev.fields[2].1, Value::Bytes(bytes(t, i)));
        assert!(seen.insert(n), "event {n:#x} twice");
    }
    assert_eq!(seen.len(), 20_000);
    assert_eq!(stats(&trace).unwrap().bytes_on_disk, sum.bytes_on_disk);
    // A second session into the same directory must not overwrite the trace.
    let again = Session::builder().output_dir(&dir).start();
    match again {
        Err(e @ SessionError::TraceExists(_)) => assert_eq!(
            e.to_string(),
            format!(
                "{} already holds a trace; choose another directory",
                dir.display()
            )
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second session overwrote the trace"),
    }
}

#[test]
fn discard_losses_reach_the_trace() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("discard");
    let s = Session::builder()
        .output_dir(&dir)
        .subbuf_size(4096)
        .num_subbuf(2)
        .events("sesstest:*")
        .start()
        .unwrap();
    emit(4, 20_000);
    let sum = s.stop().unwrap();
    assert!(sum.lost_full > 0, "expected losses with 2 x 4 KiB buffers");
    assert_eq!(sum.events_written + sum.lost_total(), 80_000);
    assert_eq!(sum.not_written, 0);
    let st = stats(&Trace::open(&dir).unwrap()).unwrap();
    assert_eq!(st.events_total, sum.events_written);
    assert_eq!(st.lost_total, sum.lost_total());
    assert_eq!(st.lost_full, sum.lost_full);
    assert_eq!(st.lost_stalled, sum.lost_stalled);
}

#[test]
fn disk_full_is_reported_and_counted() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mnt = tmp("tmpfs");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("SKIPPED: cannot mount a 16 KiB tmpfs (needs root) for the disk-full test");
        return;
    }
    let dir = mnt.join("trace");
    let s = Session::builder()
        .output_dir(&dir)
        .subbuf_size(8192)
        .num_subbuf(4)
        .events("sesstest:*")
        .verbose(false)
        .start()
        .unwrap();
    emit(2, 20_000);
    let sum = s.stop().unwrap();
    let d = sum.drain.clone().unwrap();
    let umount = || {
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        let _ = std::fs::remove_dir_all(&mnt);
    };
    let err = sum.write_error.clone().unwrap_or_default();
    if !err.contains("No space left on device") || d.packets_failed == 0 {
        umount();
        panic!("expected ENOSPC, got {err:?}, {d:?}");
    }
    // Every event is written, lost in the buffer, or counted as not written.
    assert_eq!(
        sum.events_written + sum.not_written + sum.lost_total(),
        40_000,
        "{sum:?}"
    );
    assert_eq!(sum.not_written, d.events_failed);
    // What was written is a readable trace with exactly those events.
    let st = stats(&Trace::open(&dir).unwrap()).unwrap();
    assert_eq!(st.events_total, sum.events_written);
    umount();
}

/// Buffers per CPU and per concurrency id, chosen explicitly: every event arrives either way;
/// the summary and the trace's metadata say which; per concurrency id, no more buffers are used
/// than threads ran (4 writers, the test thread and the consumer).
#[test]
fn buffers_per_cpu_and_per_cid() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut indexes = vec![faultline::BufferIndex::Cpu];
    if faultline_ringbuf::channel::cid_supported().is_ok() {
        indexes.push(faultline::BufferIndex::Cid);
    }
    for index in indexes {
        let dir = tmp(&format!("buffers-{}", index.name()));
        let s = Session::builder()
            .output_dir(&dir)
            .events("sesstest:*")
            .buffer_index(index)
            .start()
            .unwrap();
        assert_eq!(s.channel().unwrap().buffer_index(), index);
        emit(4, 2000);
        let sum = s.stop().unwrap();
        assert_eq!(sum.events_written, 8000);
        assert_eq!(sum.lost_total(), 0);
        assert_eq!(sum.buffer_index, index.name());
        assert!(sum.buffers_used >= 1 && sum.buffers_used <= sum.buffers_possible);
        assert!(sum.buffer_memory_bytes > 0);
        if index == faultline::BufferIndex::Cid {
            let cpus = faultline_rseq::allowed_cpus().len() as u32;
            assert!(sum.buffers_used <= cpus.min(6), "{sum:?}");
            assert!(sum.per_cpu.keys().all(|&k| k < cpus.min(6)), "{sum:?}");
        }
        let trace = Trace::open(&dir).unwrap();
        let env = &trace.schema().env;
        assert!(
            env.iter().any(|(k, v)| k == "faultline_buffers"
                && *v == faultline_ctf::EnvValue::Str(index.name().into())),
            "{env:?}"
        );
        assert_eq!(trace.events(&Filter::default()).count(), 8000);
    }
}
