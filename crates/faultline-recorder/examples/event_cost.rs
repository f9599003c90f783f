//! Quick cost of an enabled one-integer event through the recorder (reserve-copy-commit),
//! next to a bare rdtsc loop, in the same run. `cargo run --release -p faultline-recorder
//! --example event_cost`. The full comparison is `faultline bench`.

use faultline_recorder::{attach, Recorder, RecorderConfig};
use faultline_ringbuf::{Channel, ChannelConfig, Consumer};
use faultline_tracepoints::{enable, trace, tracepoint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

tracepoint!(COST_INT, "cost", "int", { x: u64 });

fn main() {
    let ch = Arc::new(
        Channel::create(&ChannelConfig {
            subbuf_size: 1 << 20,
            num_subbuf: 8,
            ..ChannelConfig::default()
        })
        .unwrap(),
    );
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let _h = attach(&rec, "cost:*").unwrap();
    enable("cost:*");
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let (ch, stop) = (ch.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Consumer::new(&ch);
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for cpu in c.active_cpus() {
                    while let Ok(Some(_)) = c.next_packet(cpu, &mut buf) {}
                }
                c.wait(std::time::Duration::from_millis(5));
            }
        })
    };
    let n = 2_000_000u64;
    for round in 0..5 {
        let t = Instant::now();
        let mut acc = 0u64;
        for _ in 0..n {
            acc = acc.wrapping_add(faultline_rseq::rdtsc());
        }
        let rd = t.elapsed().as_nanos() as f64 / n as f64;
        std::hint::black_box(acc);
        let t = Instant::now();
        for i in 0..n {
            trace!(COST_INT, i);
        }
        let ev = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for i in 0..n {
            let p = faultline_tracepoints::__private::FieldsPayload((&i, ()));
            let _ = rec.record(
                COST_INT.id(),
                faultline_recorder::Strategy::ReserveCopyCommit,
                &p,
            );
        }
        let direct_rec = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for i in 0..n {
            if let Ok(mut r) = ch.reserve(COST_INT.id(), 8) {
                r.payload().copy_from_slice(&i.to_le_bytes());
                r.commit();
            }
        }
        let rb = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "round {round}: rdtsc {rd:.1} ns | ring buffer 8 B {rb:.1} ns | recorder.record {direct_rec:.1} ns | trace! {ev:.1} ns"
        );
    }
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    println!("{:?}", rec.stats());
}
