//! What a default `Session`'s consumer thread costs per event written, measured the way
//! `faultline bench` does (`DrainStats::consumer_cpu_ns`: the drain thread's
//! `getrusage(RUSAGE_THREAD)`, everything it did, / events written), with one writer thread
//! emitting `int { v: u64 }` events as fast as it can, pinned to the first allowed CPU, into
//! a trace in the temporary directory. For A/B runs of the consumer: one line per round,
//! then the medians.
//!
//! `cargo run --release -p faultline --example session_consumer [-- EVENTS [ROUNDS]]`
//! (defaults: 4,000,000 events, 5 rounds).

use faultline::Session;
use faultline_tracepoints::{trace, tracepoint};

tracepoint!(INT, "session_consumer", "int", { v: u64 });

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let cpu = faultline_rseq::allowed_cpus().first().copied();
    let (mut cons, mut verify, mut lost) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Removed at the end of the round, also when it panics.
        let tmp = faultline_testkit::TmpDir::new("session-consumer");
        let dir = tmp.join("trace");
        let session = Session::builder()
            .output_dir(&dir)
            .events("session_consumer:*")
            .verbose(false)
            .start()
            .expect("session");
        std::thread::spawn(move || {
            if let Some(c) = cpu {
                let _ = faultline_rseq::pin_to_cpu(c);
            }
            for i in 0..events {
                trace!(INT, i);
            }
        })
        .join()
        .expect("writer");
        let sum = session.stop().expect("stop");
        drop(tmp);
        let d = sum.drain.clone().expect("drain stats");
        let w = sum.events_written.max(1) as f64;
        assert_eq!(sum.events_written + sum.lost_total(), events, "{sum:?}");
        let (c, v) = (d.consumer_cpu_ns as f64 / w, d.verify_cpu_ns as f64 / w);
        let l = sum.lost_total() as f64 / events as f64 * 100.0;
        println!(
            "round {round}: consumer {c:.2} ns/event (verification {v:.2}), {} packets, \
             lost {l:.2} %",
            d.packets_written
        );
        cons.push(c);
        verify.push(v);
        lost.push(l);
    }
    println!(
        "median: consumer {:.2} ns/event, verification {:.2} ns/event, lost {:.2} %",
        median(&mut cons),
        median(&mut verify),
        median(&mut lost)
    );
}
