//! Cumulative loss counters in packet headers never decrease along a CPU's packets, under the
//! overload that makes them move: four writers pinned on one CPU, 256-byte sub-buffers, a
//! consumer that keeps up only partly, and a signaller that makes the writers yield at random
//! points (a signal handler calling `sched_yield`), so a writer is often descheduled between
//! its reservation of a sub-buffer switch and the end of its switch.
//!
//! Before the fix (the closer read the counters *after* its reservation) this run found
//! decreasing counters only now and then (about one run in seven on a loaded 2-CPU machine):
//! it is the real-memory companion of the deterministic reproduction, the loom model in
//! `tests/loom_delivery.rs` (`close_snapshot_*`, whose broken variant is the old order).
//! Bounded: four configurations of 0.5 s.

use faultline_ringbuf::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: sched_yield is async-signal-safe and has no preconditions.
    unsafe { libc::sched_yield() };
}

fn run(sync: SyncMode, mode: Mode) -> (u64, u64, Vec<String>) {
    let cpu = faultline_rseq::allowed_cpus()[0];
    let ch = Arc::new(
        Channel::create(&ChannelConfig {
            subbuf_size: 256,
            num_subbuf: 4,
            mode,
            sync,
            ..Default::default()
        })
        .unwrap(),
    );
    // SAFETY: installing a handler that only calls an async-signal-safe function.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tids = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (ch, stop, tids, started) =
                (ch.clone(), stop.clone(), tids.clone(), started.clone());
            std::thread::spawn(move || {
                faultline_rseq::pin_to_cpu(cpu).unwrap();
                // SAFETY: gettid has no preconditions.
                tids.lock().unwrap().push(unsafe { libc::gettid() });
                // Release: pairs with the signaller's acquire load (our tid is in the list).
                started.fetch_add(1, Ordering::Release);
                let mut i = 0u32;
                // Acquire: pairs with the main thread's release store of `stop`.
                while !stop.load(Ordering::Acquire) {
                    if let Ok(mut r) = ch.reserve(t, 40) {
                        r.payload().fill(i as u8);
                        r.commit();
                    }
                    i = i.wrapping_add(1);
                }
            })
        })
        .collect();
    let signaller = {
        let (stop, tids, started) = (stop.clone(), tids.clone(), started.clone());
        std::thread::spawn(move || {
            // Acquire: pairs with the writers' release increments.
            while started.load(Ordering::Acquire) < 4 {
                std::thread::yield_now();
            }
            let tids = tids.lock().unwrap().clone();
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            let mut k = 0usize;
            // Acquire: as the writers.
            while !stop.load(Ordering::Acquire) {
                // SAFETY: the target threads are alive until `stop` is set and joined after.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tids[k % 4], libc::SIGUSR2) };
                k += 1;
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };
    let cons = Consumer::new(&ch);
    let mut buf = Vec::new();
    let mut last: Option<PacketHeader> = None;
    let (mut packets, mut decreases) = (0u64, 0u64);
    let mut msgs = Vec::new();
    let mut check = |h: PacketHeader, last: &mut Option<PacketHeader>| {
        if let Some(p) = last {
            for (name, cur, prev) in [
                ("lost_full", h.lost_full, p.lost_full),
                ("lost_stalled", h.lost_stalled, p.lost_stalled),
                ("lost_too_big", h.lost_too_big, p.lost_too_big),
                ("events_discarded", h.events_discarded, p.events_discarded),
            ] {
                if cur < prev {
                    decreases += 1;
                    if msgs.len() < 5 {
                        msgs.push(format!(
                            "packet {}: {name} {cur} < {prev} in packet {}",
                            h.packet_seq_num, p.packet_seq_num
                        ));
                    }
                }
            }
        }
        *last = Some(h);
    };
    // Run for at least 500 ms and until 120 packets went by (a loaded machine may give the
    // writers little CPU), but never longer than 20 s.
    let t0 = Instant::now();
    while (t0.elapsed() < Duration::from_millis(500) || packets <= 120)
        && t0.elapsed() < Duration::from_secs(20)
    {
        match cons.next_packet(cpu, &mut buf).unwrap() {
            Some(info) => {
                packets += 1;
                check(info.header, &mut last);
            }
            None => std::thread::sleep(Duration::from_micros(50)),
        }
    }
    // Release: pairs with the writers' and the signaller's acquire loads.
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().unwrap();
    }
    signaller.join().unwrap();
    assert!(ch.flush_all(true).is_empty());
    while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
        packets += 1;
        check(info.header, &mut last);
    }
    let st = ch.cpu_stats(cpu).unwrap();
    msgs.push(format!("lost {:?}", (st.lost_full, st.lost_stalled)));
    (packets, decreases, msgs)
}

#[test]
fn cumulative_loss_counters_never_decrease_under_overload() {
    let mut syncs = vec![SyncMode::Atomic];
    if faultline_rseq::available() {
        syncs.insert(0, SyncMode::Rseq);
    }
    for sync in syncs {
        for mode in [Mode::Discard, Mode::Overwrite] {
            let (packets, decreases, msgs) = run(sync, mode);
            eprintln!("{sync:?} {mode:?}: {packets} packets, {decreases} decreases, {msgs:?}");
            assert!(packets > 100, "{sync:?} {mode:?}: only {packets} packets");
            assert_eq!(decreases, 0, "{sync:?} {mode:?}: {msgs:?}");
        }
    }
}
