//! Runs the LTTng-UST benchmark for real when LTTng is installed; skips (and passes)
//! otherwise.

use std::time::Instant;

use faultline_lttng::{check_available, EventKind, LttngBench, SKIP_MESSAGE};

const EVENTS_PER_THREAD: u64 = 200_000;

#[test]
fn lttng_int_and_string_events_one_and_two_threads() {
    if let Err(why) = check_available() {
        println!("{SKIP_MESSAGE}");
        println!("({why})");
        return;
    }
    let start = Instant::now();
    let mut bench = match LttngBench::new() {
        Ok(b) => b,
        Err(e) => panic!("LTTng is installed but the harness could not start: {e:#}"),
    };
    println!(
        "{} / lttng-ust {}",
        bench.lttng_tools_version(),
        bench.lttng_ust_version()
    );
    if !bench.counts_events() {
        println!("note: babeltrace2 not installed; event accounting not checked");
    }
    for kind in EventKind::ALL {
        for threads in [1usize, 2] {
            let r = match bench.run(kind, threads, EVENTS_PER_THREAD) {
                Ok(r) => r,
                Err(e) => panic!("run {kind} x{threads} failed: {e:#}"),
            };
            println!(
                "{kind:>6} threads={threads} ns/event={:.1} per-thread={:?} emitted={} \
                 recorded={:?} discarded={:?} (sessiond: {:?}) bytes={} bytes/event={:?} \
                 subbuf={:?}x{:?}",
                r.ns_per_event,
                r.ns_per_event_per_thread,
                r.events_emitted,
                r.events_recorded,
                r.events_discarded,
                r.tracer_discarded,
                r.bytes_on_disk,
                r.bytes_per_event.map(|b| (b * 10.0).round() / 10.0),
                r.channel.subbuf_size,
                r.channel.subbuf_count,
            );
            assert!(r.ns_per_event > 0.0, "ns/event must be positive: {r:?}");
            assert!(r.ns_per_event_per_thread.iter().all(|&v| v > 0.0));
            assert_eq!(r.ns_per_event_per_thread.len(), threads);
            assert_eq!(
                r.events_emitted,
                threads as u64 * (EVENTS_PER_THREAD + r.warmup_per_thread)
            );
            assert_eq!(r.channel.event_loss_mode.as_deref(), Some("discard"));
            assert!(r.bytes_on_disk > 0);
            if bench.counts_events() {
                let recorded = r.events_recorded.expect("babeltrace2 counted events");
                let discarded = r
                    .events_discarded
                    .expect("babeltrace2 gave a discard count");
                assert!(recorded > 0);
                assert_eq!(
                    recorded + discarded,
                    r.events_emitted,
                    "every emitted event is recorded or discarded: {r:?}"
                );
                assert_eq!(r.packets_lost, Some(0));
                if let Some(d) = r.tracer_discarded {
                    assert_eq!(d, discarded, "sessiond and babeltrace2 disagree: {r:?}");
                }
            }
        }
    }
    drop(bench);
    println!("total {:?}", start.elapsed());
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    if check_available().is_err() {
        println!("{SKIP_MESSAGE}");
        return;
    }
    // Argument validation happens before anything is started, but it needs a bench.
    let mut bench = match LttngBench::new() {
        Ok(b) => b,
        Err(e) => panic!("LTTng is installed but the harness could not start: {e:#}"),
    };
    assert!(bench.run(EventKind::Int, 0, 10).is_err());
    assert!(bench.run(EventKind::Int, 100_000, 10).is_err());
    assert!(bench.run(EventKind::Int, 1, 0).is_err());
    assert!(bench.run(EventKind::Int, 2, u64::MAX).is_err());
}

/// The paced mode never runs ahead of its rate (it may fall behind on a busy machine), counts
/// losses from the daemon, and refuses a nonsensical rate.
#[test]
fn lttng_paced_run_keeps_to_its_rate() {
    if let Err(why) = check_available() {
        println!("{SKIP_MESSAGE}");
        println!("({why})");
        return;
    }
    let mut bench = LttngBench::new().expect("LTTng harness");
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(bench.run_paced(EventKind::Int, 1000, bad).is_err(), "{bad}");
    }
    // 50 000 events at 250 000/s: 0.2 s.
    let rate = 250_000.0;
    let r = bench
        .run_paced(EventKind::Int, 50_000, rate)
        .expect("paced run");
    let achieved = 1e9 / r.ns_per_event;
    println!("paced at {rate}/s: achieved {achieved:.0}/s, {r:?}");
    // Event i is due at i / rate; the last batch of 64 may start up to 64 events early.
    assert!(
        achieved <= rate * 50_000.0 / (50_000.0 - 64.0) * 1.001,
        "ran ahead of its rate: {achieved}"
    );
    assert_eq!(r.threads, 1);
    assert_eq!(
        r.events_recorded, None,
        "a paced run does not decode the trace"
    );
    assert!(
        r.tracer_discarded.is_some(),
        "no discard count from the daemon"
    );
}
