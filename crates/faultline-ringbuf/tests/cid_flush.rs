//! Flushing buffers indexed by concurrency id while a writer writes: no event may be lost.
//!
//! The flush of a concurrency-id buffer marks its `write_offset` while it waits for a
//! `membarrier` (`Channel::flush_all`; `channel.rs`, "Flushing a concurrency-id buffer"). A
//! writer that met the mark used to wait 64 yields and then drop the event as "stalled", so a
//! flusher preempted inside that window (a loaded machine, more runnable threads than CPUs)
//! held the mark for a whole time slice and the writer dropped everything it wrote meanwhile:
//! the periodic flush of a `Session` lost hundreds of events per second at rates per-CPU
//! buffers sustain. Writers now confirm the mark themselves and go on.
//!
//! The scenario forces that preemption: the writer runs on one CPU, paced; the flusher flushes
//! and drains in a loop on another CPU, shared with a real-time thread that wakes up every few
//! hundred microseconds and then keeps the CPU for a while, preempting the flusher wherever it
//! is. When it wakes up and finds the buffer marked, it has caught the flusher inside the
//! window (counted); the run lasts until that happened a few times (bounded in time). Nothing
//! may be lost, and every event written is read back in time order.
//!
//! Skipped (with a message) without `mm_cid` support or with fewer than 2 allowed CPUs.

use faultline_ringbuf::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The writer's pace.
const RATE_PER_S: f64 = 2e6;
/// Times the flusher must be caught inside its window, flush rounds it must have run, and the
/// longest run. The run ends when both counts are reached (not after a fixed time: on a loaded
/// machine the flusher may get little CPU, and a fixed window then proves too little).
const CATCHES: u64 = 5;
const MIN_FLUSHES: u64 = 100;
const MAX_RUN: Duration = Duration::from_secs(20);

/// Every written-to buffer's `write_offset` carries the flush mark.
fn marked(ch: &Channel) -> bool {
    (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .any(|s| s.active && s.write_offset & (1 << 62) != 0)
}

#[test]
fn cid_flush_preempted_inside_its_window_loses_nothing() {
    if let Err(e) = faultline_ringbuf::channel::cid_supported() {
        eprintln!("skipped: {e}");
        return;
    }
    let cpus = faultline_rseq::allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs 2 allowed CPUs, has {cpus:?}");
        return;
    }
    let (writer_cpu, flusher_cpu) = (cpus[0], cpus[1]);
    let ch = Arc::new(
        Channel::create(&ChannelConfig {
            subbuf_size: 256 * 1024,
            num_subbuf: 16,
            mode: Mode::Discard,
            sync: SyncMode::Rseq,
            index: BufferIndex::Cid,
            ..Default::default()
        })
        .unwrap(),
    );
    let stop_writer = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let caught = Arc::new(AtomicU64::new(0));
    let flush_rounds = Arc::new(AtomicU64::new(0));
    // The thread sharing the flusher's CPU.
    let preempter = {
        let (stop, caught, ch) = (stop.clone(), caught.clone(), ch.clone());
        std::thread::spawn(move || {
            faultline_rseq::pin_to_cpu(flusher_cpu).unwrap();
            let p = libc::sched_param { sched_priority: 1 };
            // SAFETY: plain data; applies to the calling thread.
            let rt = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } == 0;
            while !stop.load(Ordering::Relaxed) {
                if rt {
                    std::thread::sleep(Duration::from_micros(200));
                }
                // The flusher runs on this CPU only: if the mark is there now, the flusher is
                // held inside its window for as long as we spin.
                if marked(&ch) {
                    caught.fetch_add(1, Ordering::Relaxed);
                }
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(500) {
                    std::hint::spin_loop();
                }
            }
            rt
        })
    };
    // Flush and drain in a loop; read every record back and check the time order.
    let flusher = {
        let (ch, stop, rounds) = (ch.clone(), stop.clone(), flush_rounds.clone());
        std::thread::spawn(move || {
            faultline_rseq::pin_to_cpu(flusher_cpu).unwrap();
            let cons = Consumer::new(&ch);
            let mut buf = Vec::new();
            let mut last_ts = std::collections::BTreeMap::new();
            let mut drain = |buf: &mut Vec<u8>, read: &mut u64| {
                for b in cons.active_cpus() {
                    while let Some(info) = cons.next_packet(b, buf).unwrap() {
                        for r in records(buf, info.content_len) {
                            let r = r.unwrap();
                            let last = last_ts.entry(b).or_insert(0);
                            assert!(r.timestamp >= *last, "time order broken in buffer {b}");
                            *last = r.timestamp;
                            *read += 1;
                        }
                    }
                }
            };
            let (mut flushes, mut read) = (0u64, 0u64);
            while !stop.load(Ordering::Acquire) {
                let errs = ch.flush_all(false);
                assert!(errs.is_empty(), "{errs:?}");
                flushes += 1;
                rounds.store(flushes, Ordering::Relaxed);
                // Mostly flushing, so that a preemption lands inside the window often.
                if flushes % 16 == 0 {
                    drain(&mut buf, &mut read);
                }
            }
            assert!(ch.flush_all(true).is_empty());
            drain(&mut buf, &mut read);
            (flushes, read)
        })
    };
    let writer = {
        let (ch, stop) = (ch.clone(), stop_writer.clone());
        std::thread::spawn(move || {
            faultline_rseq::pin_to_cpu(writer_cpu).unwrap();
            let t0 = Instant::now();
            let (mut emitted, mut written) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    if let Ok(mut r) = ch.reserve(1, 8) {
                        r.payload().copy_from_slice(&emitted.to_le_bytes());
                        r.commit();
                        written += 1;
                    }
                    emitted += 1;
                }
                let due = Duration::from_secs_f64(emitted as f64 / RATE_PER_S);
                while t0.elapsed() < due {
                    std::hint::spin_loop();
                }
            }
            (emitted, written)
        })
    };
    let t0 = Instant::now();
    while (caught.load(Ordering::Relaxed) < CATCHES
        || flush_rounds.load(Ordering::Relaxed) < MIN_FLUSHES)
        && t0.elapsed() < MAX_RUN
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_writer.store(true, Ordering::Relaxed);
    let (emitted, written) = writer.join().unwrap();
    stop.store(true, Ordering::Release);
    let (flushes, read) = flusher.join().unwrap();
    let rt = preempter.join().unwrap();
    let stats: Vec<CpuStats> = (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .filter(|s| s.active)
        .collect();
    let stalled: u64 = stats.iter().map(|s| s.lost_stalled).sum();
    let full: u64 = stats.iter().map(|s| s.lost_full).sum();
    let caught = caught.load(Ordering::Relaxed);
    eprintln!(
        "emitted {emitted} written {written} read {read}; lost: stalled {stalled} full {full}; \
         {flushes} flushes, caught inside the window {caught} times (real-time preempter: {rt})"
    );
    assert_eq!(stalled, 0, "events dropped at a flush mark");
    assert_eq!(written + stalled + full, emitted);
    assert_eq!(read, written, "every event written is read back");
    assert!(
        flushes >= MIN_FLUSHES,
        "the flusher hardly ran: {flushes} flushes in {MAX_RUN:?}"
    );
    if caught == 0 {
        eprintln!("note: the flusher was never caught inside its window (no real-time priority?)");
    }
}
