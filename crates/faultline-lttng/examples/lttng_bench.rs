//! Prints LTTng-UST ns/event, losses and bytes/event on this machine.
//!
//! ```text
//! cargo run --release -p faultline-lttng --example lttng_bench -- [EVENTS_PER_THREAD] [REPEATS]
//! ```
//! Defaults: 1,000,000 events per thread, 3 repeats; runs int and string events at 1
//! and 2 threads.

use std::process::ExitCode;

use faultline_lttng::{check_available, EventKind, LttngBench};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: u64 = match args.first().map(|s| s.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: lttng_bench [EVENTS_PER_THREAD] [REPEATS]");
            return ExitCode::from(2);
        }
    };
    let repeats: u32 = match args.get(1).map(|s| s.parse()) {
        None => 3,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: lttng_bench [EVENTS_PER_THREAD] [REPEATS]");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = check_available() {
        eprintln!("{why}");
        return ExitCode::from(1);
    }
    let mut bench = match LttngBench::new() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the LTTng harness: {e:#}");
            return ExitCode::from(1);
        }
    };
    println!(
        "# {} / lttng-ust {}; {events} events/thread",
        bench.lttng_tools_version(),
        bench.lttng_ust_version()
    );
    println!(
        "{:<7} {:>7} {:>3} {:>10} {:>22} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "kind",
        "threads",
        "rep",
        "ns/event",
        "per-thread",
        "emitted",
        "recorded",
        "discarded",
        "bytes",
        "bytes/ev"
    );
    let opt = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |n| n.to_string());
    for kind in EventKind::ALL {
        for threads in [1usize, 2] {
            for rep in 0..repeats {
                match bench.run(kind, threads, events) {
                    Ok(r) => {
                        let per: Vec<String> = r
                            .ns_per_event_per_thread
                            .iter()
                            .map(|v| format!("{v:.1}"))
                            .collect();
                        println!(
                            "{:<7} {:>7} {:>3} {:>10.1} {:>22} {:>10} {:>10} {:>10} {:>12} {:>10}",
                            kind.as_str(),
                            threads,
                            rep,
                            r.ns_per_event,
                            per.join(","),
                            r.events_emitted,
                            opt(r.events_recorded),
                            opt(r.events_discarded),
                            r.bytes_on_disk,
                            r.bytes_per_event
                                .map_or_else(|| "?".to_string(), |b| format!("{b:.1}")),
                        );
                        if rep == 0 && kind == EventKind::Int && threads == 1 {
                            eprintln!("# channel: {:?}", r.channel);
                        }
                    }
                    Err(e) => {
                        eprintln!("{kind} x{threads}: {e:#}");
                        return ExitCode::from(1);
                    }
                }
            }
        }
    }
    ExitCode::SUCCESS
}
