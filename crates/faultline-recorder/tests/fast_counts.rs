//! The recording fast path counts its events in the threads' hazard records, one column per
//! recorder (`faultline_tracepoints::FastCounts`): a recorder's `recorded` is exact across
//! threads that exit (their records are reused by later threads), and a recorder that gets a
//! column back from a dropped one starts from zero. Its own test binary, so that no other test
//! holds columns: the second recorder gets the first one's column back.

use std::sync::Arc;

use faultline_recorder::{attach, Recorder, RecorderConfig};
use faultline_ringbuf::consumer::Consumer;
use faultline_ringbuf::{Channel, ChannelConfig};
use faultline_tracepoints::{enable, trace, tracepoint, unregister};

tracepoint!(FC_INT, "fast_counts_test", "int", { seq: u64 });

/// Record `per_thread` events on each of `threads` threads (each exits afterwards, giving its
/// hazard record back), into a fresh discard channel drained by a consumer thread until the
/// writers are done; returns the recorder's `recorded` and `lost_total`.
fn run(threads: u64, per_thread: u64) -> (u64, u64) {
    let chan = Arc::new(Channel::create(&ChannelConfig::default()).expect("channel"));
    let rec = Recorder::new(chan.clone(), RecorderConfig::default());
    let h = attach(&rec, "fast_counts_test:*").expect("attach");
    enable("fast_counts_test:*");
    assert!(FC_INT.has_fast_path());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let (chan, stop) = (chan.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Consumer::new(&chan);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                for cpu in c.active_cpus() {
                    while let Ok(Some(p)) = c.take_in_place(cpu) {
                        c.release(p);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    for _ in 0..2 {
        let ws: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::spawn(move || {
                    for i in 0..per_thread / 2 {
                        trace!(FC_INT, i);
                    }
                })
            })
            .collect();
        for w in ws {
            w.join().expect("writer");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    drainer.join().expect("drainer");
    let st = rec.stats();
    unregister(h);
    (st.recorded, st.lost_total())
}

#[test]
fn a_recorder_counts_exactly_what_its_fast_path_committed_from_zero() {
    // Odd counts, so a column's leftover from the previous recorder cannot cancel out.
    for (threads, per_thread) in [(3u64, 2_000u64), (2, 3_002), (4, 1_000)] {
        let (recorded, lost) = run(threads, per_thread);
        assert_eq!(
            recorded + lost,
            threads * per_thread,
            "{threads} x {per_thread}: {recorded} recorded, {lost} lost"
        );
    }
}
