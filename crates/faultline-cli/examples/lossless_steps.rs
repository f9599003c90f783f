//! Paced steps of the lossless search (`faultline_cli::bench_lossless::faultline_step`) at
//! fixed rates, for A/B runs of the consumer: one writer thread emits `int` events into a
//! default `Session` at each rate for a few seconds; printed: the rate reached, the events
//! lost and the consumer's CPU per event written.
//!
//! `cargo run --release -p faultline-cli --example lossless_steps -- SECS RATE_MEV_S...`

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rates: Vec<f64> = args.filter_map(|s| s.parse().ok()).collect();
    for mev in rates {
        let rate = mev * 1e6;
        let o = faultline_cli::bench_lossless::faultline_step(rate, (rate * secs) as u64)?;
        println!(
            "paced {mev:.1} Mev/s: reached {:.2}, lost {} of {} ({:.3} %), consumer {} ns/event",
            o.achieved_per_s / 1e6,
            o.lost,
            o.events,
            o.lost as f64 / o.events as f64 * 100.0,
            o.consumer_ns_per_event
                .map_or("-".into(), |c| format!("{c:.2}"))
        );
    }
    Ok(())
}
