//! `faultline bench`: what the 2-thread aggregate scaling (`two_thread_scaling`) is measured
//! against, in the same run.
//!
//! `two_thread_scaling` is the `int` event's aggregate throughput with 2 writer threads
//! (pinned one per CPU) divided by that with 1, a consumer thread draining concurrently. On a
//! 2-CPU machine the consumer has no CPU of its own in the 2-thread row: it takes its CPU from
//! the writers. With `w` ns of writer CPU per event and `c` ns of consumer CPU per event
//! delivered, 2 CPUs carry `2 / (w + c)` events per ns at best, against `1 / w` for one
//! writer whose consumer runs on the other CPU: the lossless scaling cannot exceed
//! `2w / (w + c)` (1.8x needs `c <= w / 9`). And the machine itself may not scale 2x (two
//! vCPUs that are hyperthreads of one core, or other load on the host or in the guest). This
//! module measures both limits in the same run, so the figure can be read against them:
//!
//! * **floor scaling** (`floor_two_thread_scaling`): `rdtsc` + a 24-byte store at an advancing
//!   position in a private 256 KiB buffer (the floor row's loop), 1 thread then 2 threads pinned
//!   one per CPU, no consumer: aggregate events per second, 2 threads / 1, per round, median.
//!   Nothing is shared between the threads; this is the machine's own ceiling for any program
//!   (`two_thread_scaling_vs_floor` is the figure divided by it).
//! * **consumer cost** (`scaling_consumer_ns_per_event`): in the 2-thread `int` row, the
//!   consumer thread's CPU time (`getrusage(RUSAGE_THREAD)`, up to its final drain) / records
//!   it delivered, median over rounds; and the bound it implies, `two_thread_scaling_bound` =
//!   `2w / (w + c)` with `w` the 1-thread `int` row's ns per event. That consumer is the
//!   library's drain, as in a `Session` (`crate::harness::DrainMode::Library`), which writes
//!   each CPU's buffer from that CPU (`faultline::drain::DrainConfig::follow_cpus`).
//! * **writer imbalance** (`two_thread_imbalance`): in the 2-thread `int` row, the slowest
//!   writer's loop time / the fastest's, median over rounds. The aggregate is measured from the
//!   first writer's start to the last one's end, so a consumer that keeps running on one of
//!   the two CPUs slows that CPU's writer alone and costs the aggregate about twice its CPU
//!   share (`2w / (w + 2c)` instead of `2w / (w + c)`); 1.0 means the consumer's time was
//!   spread evenly (what following each buffer's CPU aims at: each writer pays for its own
//!   events).
//! * **the Session's scaling** (`session_two_thread_scaling`): the same ratio on the
//!   `int (Session, CTF to disk)` rows, whose consumer is the library's own (in place, direct
//!   I/O to the trace files).

use crate::harness::{median_spread, run_writers};
use serde::Serialize;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Words of each thread's private store buffer (256 KiB, as the 1-thread floor row).
const WORDS: usize = 256 * 1024 / 8;

/// Per-round floor throughputs (Mev/s, aggregate) with 1 and 2 threads.
#[derive(Default)]
pub struct FloorScaling {
    one: Vec<f64>,
    two: Vec<f64>,
}

impl FloorScaling {
    /// One round: the store loop with 1 thread, then with 2.
    pub fn round(&mut self, iters: u64) {
        let warmup = (iters / 10).max(10_000);
        self.one.push(store_loop(1, warmup, iters));
        self.two.push(store_loop(2, warmup, iters));
    }

    /// Median over rounds of (2-thread Mev/s / 1-thread Mev/s); `None` without rounds.
    pub fn scaling(&self) -> Option<f64> {
        let r: Vec<f64> = self.two.iter().zip(&self.one).map(|(t, o)| t / o).collect();
        (!r.is_empty()).then(|| median_spread(&r).0)
    }
}

/// `threads` pinned writers of `rdtsc` + 24 bytes each into its own buffer; aggregate Mev/s.
fn store_loop(threads: usize, warmup: u64, iters: u64) -> f64 {
    // Relaxed atomic stores compile to plain stores; they only make the per-thread buffers
    // shareable through the closure. Each thread writes only its own buffer (separate
    // allocations, so no cache line is shared).
    let bufs: Vec<Vec<AtomicU64>> = (0..threads)
        .map(|_| (0..WORDS).map(|_| AtomicU64::new(0)).collect())
        .collect();
    let t = run_writers(threads, true, warmup, iters, |t, i| {
        let dst = &bufs[t];
        let ts = faultline_rseq::rdtsc();
        let at = (i as usize * 3) % (WORDS - 3);
        dst[at].store(ts, Ordering::Relaxed);
        dst[at + 1].store((24u64 << 32) | 1, Ordering::Relaxed);
        dst[at + 2].store(black_box(i), Ordering::Relaxed);
    });
    t.timed as f64 / t.wall_ns * 1e3
}

/// The scaling figures of one run (flattened into the bench's JSON report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScalingBench {
    /// The machine's own 2-thread scaling in this run (module docs).
    pub floor_two_thread_scaling: Option<f64>,
    /// `two_thread_scaling / floor_two_thread_scaling`.
    pub two_thread_scaling_vs_floor: Option<f64>,
    /// Harness consumer CPU ns per record delivered, 2-thread `int` row (module docs).
    pub scaling_consumer_ns_per_event: Option<f64>,
    /// `2w / (w + c)`: the lossless 2-thread scaling that writers of `w` ns and that consumer
    /// allow on 2 CPUs (module docs).
    pub two_thread_scaling_bound: Option<f64>,
    /// The `int (Session, CTF to disk)` rows' scaling (module docs).
    pub session_two_thread_scaling: Option<f64>,
    /// Slowest / fastest writer's loop time, 2-thread `int` row (module docs).
    pub two_thread_imbalance: Option<f64>,
}

impl ScalingBench {
    /// `scaling`: the bench's `two_thread_scaling`; `int_ns`: the 1-thread int row's ns per
    /// event; `consumer_ns`: the 2-thread int row's consumer ns per record delivered;
    /// `session`: the Session int rows' scaling; `imbalance`: the 2-thread int row's slowest /
    /// fastest writer.
    pub fn new(
        floor: &FloorScaling,
        scaling: f64,
        int_ns: f64,
        consumer_ns: Option<f64>,
        session: Option<f64>,
        imbalance: Option<f64>,
    ) -> ScalingBench {
        let floor = floor.scaling().filter(|f| f.is_finite() && *f > 0.0);
        let finite = |x: f64| x.is_finite().then_some(x);
        ScalingBench {
            floor_two_thread_scaling: floor,
            two_thread_scaling_vs_floor: floor.and_then(|f| finite(scaling / f)),
            scaling_consumer_ns_per_event: consumer_ns,
            two_thread_scaling_bound: consumer_ns.and_then(|c| finite(2.0 * int_ns / (int_ns + c))),
            session_two_thread_scaling: session,
            two_thread_imbalance: imbalance,
        }
    }

    /// One line for the text report.
    pub fn summary(&self, scaling: f64) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        format!(
            "2-thread aggregate scaling: {scaling:.2}x (int, library consumer); machine floor in \
             this run (rdtsc + store, no consumer) {}, so {} of it; bound from the consumer's \
             CPU ({} ns/event) {}; writers' imbalance (slowest / fastest) {}; Session int \
             rows {}",
            f(self.floor_two_thread_scaling),
            self.two_thread_scaling_vs_floor
                .map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0)),
            self.scaling_consumer_ns_per_event
                .map_or("-".to_string(), |v| format!("{v:.2}")),
            f(self.two_thread_scaling_bound),
            self.two_thread_imbalance
                .map_or("-".to_string(), |v| format!("{v:.2}")),
            f(self.session_two_thread_scaling),
        )
    }
}
