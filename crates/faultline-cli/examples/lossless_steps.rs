//! Paced steps of the lossless search (`faultline_cli::bench_lossless::faultline_step`) at
//! fixed rates, for A/B runs of the consumer: one writer thread emits `int` events into a
//! default `Session` at each rate for a few seconds; printed: the rate reached, the events
//! lost, the consumer's CPU per event written, its writes (count, longest, packets written
//! through the page cache, most complete sub-buffers found waiting) and the CPU time the
//! hypervisor stole from this machine during the step (`/proc/stat`).
//!
//! `cargo run --release -p faultline-cli --example lossless_steps -- SECS RATE_MEV_S...`
//! (`FAULTLINE_BENCH_CACHE_MARK=4294967295` keeps the consumer on direct I/O.)

/// Total steal time of all CPUs, in clock ticks (`/proc/stat`, the `cpu` line's 8th value).
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(8))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rates: Vec<f64> = args.filter_map(|s| s.parse().ok()).collect();
    for mev in rates {
        let rate = mev * 1e6;
        let steal0 = steal_ticks();
        let o = faultline_cli::bench_lossless::faultline_step(rate, (rate * secs) as u64)?;
        let steal = steal_ticks().saturating_sub(steal0);
        let d = o.drain.unwrap_or_default();
        println!(
            "paced {mev:.1} Mev/s: reached {:.2}, lost {} of {} ({:.3} %), consumer {} ns/event; \
             {} writes, longest {:.1} ms, {} packets through the cache, backlog max {}; \
             steal {} ticks",
            o.achieved_per_s / 1e6,
            o.lost,
            o.events,
            o.lost as f64 / o.events as f64 * 100.0,
            o.consumer_ns_per_event
                .map_or("-".into(), |c| format!("{c:.2}")),
            d.writes,
            d.write_ns_max as f64 / 1e6,
            d.cache_packets,
            d.backlog_max,
            steal,
        );
    }
    Ok(())
}
