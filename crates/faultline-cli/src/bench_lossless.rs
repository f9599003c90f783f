//! `faultline bench`: the highest event rate one writer thread can sustain with zero loss,
//! for a real [`faultline::Session`] and for LTTng-UST, found by search in the same run.
//!
//! # One step
//! One thread, pinned to the first allowed CPU, emits the `int` event (one `u64`) at a paced
//! rate for [`LosslessOptions::step_secs`]: it reads the clock every [`PACE_BATCH`] events and
//! spins until that batch is due (event `i` is due at `start + i / rate`); a writer that
//! falls behind does not wait, so the achieved rate is at most what its loop can do. The
//! consumer runs unpinned, which on a 2-CPU machine puts it on the other CPU (the writer's
//! CPU is always busy, pacing spins), and writes the trace to disk (the temp directory):
//! * faultline: a `Session` with its defaults (buffers, policy, consumer), the trace deleted
//!   after the step; lost = the session summary's `lost_total`, and written + lost must
//!   equal emitted. The consumer thread's CPU time is measured too, per event written: the
//!   drain's own `getrusage(RUSAGE_THREAD)` (`DrainStats::consumer_cpu_ns`: everything the
//!   consumer thread did; a default `Session` runs no verification pass).
//! * LTTng-UST: [`faultline_lttng::LttngBench::run_paced`] (LTTng's default channel, per-UID
//!   buffers, discard mode, its consumer daemon); lost = the session daemon's discarded-event
//!   count (the trace is not decoded: at these rates babeltrace2 would take minutes).
//!
//! A step is lossless when nothing was lost. Its rate is the achieved one (events / time of
//! the loop), which is the paced rate unless the writer could not keep up.
//!
//! # The search
//! Bounded in steps and in time, and by what the writer itself can do:
//! 1. **the writer's own rate**: one unpaced step of [`LosslessOptions::calib_events`]
//!    events (the same loop without waiting, the session and its consumer running) measures
//!    the highest rate the writer's loop reaches (`writer_max_mev_s`): no paced rate above it
//!    can be reached, so the search goes up to it and no further;
//! 2. a full-length step paced at that rate: when it loses nothing the writer, not the
//!    consumer, is the limit (`writer_bound`) and its rate is the result;
//! 3. a lossless step whose writer could not reach the paced rate (under 90 %: a preempted
//!    writer on a busy machine loses a few %) also ends the search as `writer_bound`;
//! 4. otherwise halve the rate while steps lose, then bisect between the best lossless rate
//!    and the lowest lossy one, [`LosslessOptions::bisect_steps`] times or until they are
//!    within 5 %;
//! 5. stop at [`LosslessOptions::max_steps`] (the calibration step included) or when
//!    [`LosslessOptions::budget_secs`] is spent (checked before each step).
//!
//! The result is the best lossless rate seen among the paced steps (`None` if none was
//! lossless), the lowest lossy one and the writer's own rate, with every step and the total
//! time.

use faultline_tracepoints::trace;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Events between two clock reads of the paced loop.
pub const PACE_BATCH: u64 = 64;

/// Search bounds.
#[derive(Debug, Clone)]
pub struct LosslessOptions {
    /// Duration of one step, seconds.
    pub step_secs: f64,
    /// Events of the unpaced calibration step (the writer's own rate).
    pub calib_events: u64,
    /// Steps at most (exponential and bisection together), per side.
    pub max_steps: usize,
    /// Bisection steps at most, per side.
    pub bisect_steps: usize,
    /// No new step starts after this many seconds, per side.
    pub budget_secs: f64,
}

impl LosslessOptions {
    /// About 5 s per step; at most 8 steps and 75 s per side.
    pub fn full() -> Self {
        LosslessOptions {
            step_secs: 5.0,
            calib_events: 10_000_000,
            max_steps: 8,
            bisect_steps: 3,
            budget_secs: 75.0,
        }
    }
    /// Exercises the code path in seconds (not a measurement).
    pub fn quick() -> Self {
        LosslessOptions {
            step_secs: 0.1,
            calib_events: 200_000,
            max_steps: 3,
            bisect_steps: 1,
            budget_secs: 10.0,
        }
    }
}

/// One step of the search.
#[derive(Debug, Clone, Serialize)]
pub struct LosslessStep {
    /// Paced rate asked for, million events per second (`None`: the unpaced calibration step).
    pub rate_mev_s: Option<f64>,
    /// Rate the writer achieved.
    pub achieved_mev_s: f64,
    pub events: u64,
    pub lost: u64,
    /// Consumer CPU ns per event written (faultline only).
    pub consumer_ns_per_event: Option<f64>,
    /// Wall time of the step including set-up and tear-down, seconds.
    pub secs: f64,
    /// The consumer's longest write, ms, and the most complete sub-buffers one buffer had
    /// waiting when it was written (the default 8 means the writers ran out of buffer): what
    /// tells a device that stalls from a consumer that did not run (faultline only).
    pub write_ms_max: Option<f64>,
    pub backlog_max: Option<u64>,
}

/// The search's outcome for one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LosslessResult {
    /// Highest lossless achieved rate, million events per second.
    pub mev_s: Option<f64>,
    /// Lowest rate at which a step lost events.
    pub lowest_lossy_mev_s: Option<f64>,
    /// The last lossless step's writer could not reach its paced rate, or the step paced at
    /// the writer's own rate lost nothing: the writer, not the consumer, is the limit, and
    /// `mev_s` is the writer's own rate.
    pub writer_bound: bool,
    /// Rate of the unpaced calibration step, million events per second: the most any paced
    /// step can reach (the search goes no higher).
    pub writer_max_mev_s: Option<f64>,
    pub steps: Vec<LosslessStep>,
    /// Total wall time of the search, seconds.
    pub secs: f64,
    /// Why the search stopped early, or failed.
    pub note: Option<String>,
}

/// What one step measured.
pub struct StepOutcome {
    pub achieved_per_s: f64,
    pub events: u64,
    pub lost: u64,
    pub consumer_ns_per_event: Option<f64>,
    /// What the Session's consumer did (faultline only; for diagnosis).
    pub drain: Option<faultline::drain::DrainStats>,
}

/// Run the search with `step(rate_per_s, events)`; the calibration step gets
/// `f64::INFINITY` (unpaced).
pub fn search(
    opt: &LosslessOptions,
    mut step: impl FnMut(f64, u64) -> anyhow::Result<StepOutcome>,
) -> LosslessResult {
    let t0 = Instant::now();
    let mut res = LosslessResult::default();
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut bisected = 0;
    // None: the calibration step comes first.
    let mut rate: Option<f64> = None;
    while res.steps.len() < opt.max_steps.max(2) {
        if t0.elapsed().as_secs_f64() > opt.budget_secs {
            res.note = Some(format!("time budget of {} s spent", opt.budget_secs));
            break;
        }
        let (asked, events) = match rate {
            None => (f64::INFINITY, opt.calib_events.max(1000)),
            Some(r) => (r, ((r * opt.step_secs) as u64).max(1000)),
        };
        let ts = Instant::now();
        let out = match step(asked, events) {
            Ok(o) => o,
            Err(e) => {
                let at = rate.map_or("unpaced".to_string(), |r| format!("{:.2} Mev/s", r / 1e6));
                res.note = Some(format!("step at {at} failed: {e:#}"));
                break;
            }
        };
        res.steps.push(LosslessStep {
            rate_mev_s: rate.map(|r| r / 1e6),
            achieved_mev_s: out.achieved_per_s / 1e6,
            events: out.events,
            lost: out.lost,
            consumer_ns_per_event: out.consumer_ns_per_event,
            secs: ts.elapsed().as_secs_f64(),
            write_ms_max: out.drain.as_ref().map(|d| d.write_ns_max as f64 / 1e6),
            backlog_max: out.drain.as_ref().map(|d| d.backlog_max),
        });
        let Some(r) = rate else {
            // Calibrated: next, a full step paced at the writer's own rate.
            if !(out.achieved_per_s.is_finite() && out.achieved_per_s > 0.0) {
                res.note = Some("the unpaced step reported no rate".into());
                break;
            }
            res.writer_max_mev_s = Some(out.achieved_per_s / 1e6);
            rate = Some(out.achieved_per_s);
            continue;
        };
        let reached = out.achieved_per_s >= 0.9 * r;
        if out.lost == 0 {
            good = Some(good.map_or(out.achieved_per_s, |g: f64| g.max(out.achieved_per_s)));
            // Lossless at the writer's own rate (the first paced step), or short of the
            // paced rate: the writer is the limit.
            if !reached || bad.is_none() {
                res.writer_bound = true;
                break;
            }
        } else {
            let at = out.achieved_per_s.min(r);
            bad = Some(bad.map_or(at, |b: f64| b.min(at)));
        }
        rate = Some(match (good, bad) {
            (_, None) => break,
            (None, Some(b)) => b / 2.0,
            (Some(g), Some(b)) => {
                if bisected >= opt.bisect_steps || b <= g * 1.05 {
                    break;
                }
                bisected += 1;
                (g + b) / 2.0
            }
        });
    }
    res.mev_s = good.map(|g| g / 1e6);
    res.lowest_lossy_mev_s = bad.map(|b| b / 1e6);
    res.secs = t0.elapsed().as_secs_f64();
    res
}

/// Spin until `due_ns` after `t0`.
#[inline(always)]
fn pace(t0: Instant, due_ns: u64) {
    while (t0.elapsed().as_nanos() as u64) < due_ns {
        std::hint::spin_loop();
    }
}

/// One faultline step: a default `Session`, one pinned paced writer.
pub fn faultline_step(rate: f64, events: u64) -> anyhow::Result<StepOutcome> {
    faultline_step_with(rate, events, None)
}

/// [`faultline_step`] with the `Session`'s buffers indexed by `index` (`None`: its default).
pub fn faultline_step_with(
    rate: f64,
    events: u64,
    index: Option<faultline::BufferIndex>,
) -> anyhow::Result<StepOutcome> {
    // Removed however the step ends (an error return, a panicking writer).
    let scratch = tempfile::Builder::new()
        .prefix("faultline-bench-lossless-")
        .tempdir()?;
    let dir = scratch.path().join("trace");
    faultline_tracepoints::enable("faultline_bench:*");
    let mut builder = faultline::session::Session::builder()
        .output_dir(&dir)
        .events("faultline_bench:int")
        .verbose(false);
    if let Some(i) = index {
        builder = builder.buffer_index(i);
    }
    // For A/B runs of the consumer (the `lossless_steps` example); not used by the bench.
    if let Some(m) = std::env::var("FAULTLINE_BENCH_CACHE_MARK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.cache_mark(m);
    }
    let session = builder
        .start()
        .map_err(|e| anyhow::anyhow!("session: {e}"))?;
    let cpu = faultline_rseq::allowed_cpus().first().copied();
    let ns_per_event = 1e9 / rate;
    let elapsed = std::thread::spawn(move || {
        if let Some(c) = cpu {
            let _ = faultline_rseq::pin_to_cpu(c);
        }
        let t0 = Instant::now();
        for i in 0..events {
            if i % PACE_BATCH == 0 {
                pace(t0, (i as f64 * ns_per_event) as u64);
            }
            trace!(crate::bench::BENCH_INT, i);
        }
        t0.elapsed()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("paced writer panicked"))?;
    let sum = session
        .stop()
        .map_err(|e| anyhow::anyhow!("session stop: {e}"));
    drop(scratch);
    let sum = sum?;
    let lost = sum.lost_total();
    if sum.events_written + lost != events {
        anyhow::bail!(
            "{events} events emitted but {} written + {lost} lost",
            sum.events_written
        );
    }
    Ok(StepOutcome {
        achieved_per_s: events as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64(),
        events,
        lost,
        // The drain's own measure of its thread (all of it).
        consumer_ns_per_event: sum.consumer_ns_per_event(),
        drain: sum.drain.clone(),
    })
}

/// One LTTng-UST step through its paced program.
pub fn lttng_step(
    bench: &mut faultline_lttng::LttngBench,
    rate: f64,
    events: u64,
) -> anyhow::Result<StepOutcome> {
    // Unpaced (the calibration step): its plain one-thread run.
    let r = if rate.is_finite() {
        bench.run_paced(faultline_lttng::EventKind::Int, events, rate)?
    } else {
        bench.run(faultline_lttng::EventKind::Int, 1, events)?
    };
    let lost = r.tracer_discarded.ok_or_else(|| {
        anyhow::anyhow!("the session daemon did not report a discarded-event count")
    })?;
    Ok(StepOutcome {
        achieved_per_s: 1e9 / r.ns_per_event.max(1e-3),
        events: r.events_emitted,
        lost,
        consumer_ns_per_event: None,
        drain: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake side that loses above `limit` events/s and whose writer tops out at `top`.
    fn fake(limit: f64, top: f64) -> impl FnMut(f64, u64) -> anyhow::Result<StepOutcome> {
        move |rate, events| {
            let achieved = rate.min(top);
            Ok(StepOutcome {
                achieved_per_s: achieved,
                events,
                lost: u64::from(achieved > limit),
                consumer_ns_per_event: None,
                drain: None,
            })
        }
    }

    fn opt() -> LosslessOptions {
        LosslessOptions {
            step_secs: 0.001,
            calib_events: 1000,
            max_steps: 8,
            bisect_steps: 3,
            budget_secs: 60.0,
        }
    }

    fn rates(r: &LosslessResult) -> Vec<Option<f64>> {
        r.steps.iter().map(|s| s.rate_mev_s).collect()
    }

    #[test]
    fn calibrates_then_halves_then_bisects() {
        // Writer tops out at 40: unpaced, 40 (lossy), 20 (ok), then 3 bisections: 30 (lossy),
        // 25 (lossy), 22.5 (ok).
        let r = search(&opt(), fake(23e6, 40e6));
        assert_eq!(
            rates(&r),
            vec![
                None,
                Some(40.0),
                Some(20.0),
                Some(30.0),
                Some(25.0),
                Some(22.5)
            ]
        );
        assert_eq!(r.writer_max_mev_s, Some(40.0));
        assert_eq!(r.mev_s, Some(22.5));
        assert_eq!(r.lowest_lossy_mev_s, Some(25.0));
        assert!(!r.writer_bound);
    }

    #[test]
    fn lossless_at_the_writers_own_rate_is_writer_bound() {
        let r = search(&opt(), fake(1e9, 10e6));
        assert_eq!(rates(&r), vec![None, Some(10.0)]);
        assert!(r.writer_bound);
        assert_eq!(r.mev_s, Some(10.0));
        assert_eq!(r.writer_max_mev_s, Some(10.0));
    }

    #[test]
    fn halves_down_while_steps_lose() {
        let r = search(&opt(), fake(1.5e6, 8e6));
        assert_eq!(
            rates(&r)[..5],
            [None, Some(8.0), Some(4.0), Some(2.0), Some(1.0)]
        );
        // Then bisection between 1 (ok) and 2 (lossy): 1.5 is the highest lossless rate.
        assert_eq!(r.mev_s, Some(1.5));
        assert!(r.lowest_lossy_mev_s.unwrap() > 1.5);
        assert!(r.steps.len() <= 8);
    }

    #[test]
    fn a_failing_step_ends_the_search_with_a_note() {
        let r = search(&opt(), |_, _| anyhow::bail!("boom"));
        assert!(r.mev_s.is_none() && r.steps.is_empty());
        assert!(r.note.unwrap().contains("boom"));
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;

    /// A real step: a default Session, 20 000 events paced at 200 000/s (0.1 s). The writer
    /// never runs ahead of its rate, every event is written or counted lost, and the consumer's
    /// CPU time is measured.
    #[test]
    fn faultline_step_keeps_to_its_rate_and_accounts_for_every_event() {
        let rate = 200_000.0;
        let out = faultline_step(rate, 20_000).expect("step");
        assert_eq!(out.events, 20_000);
        // The last batch of PACE_BATCH events may start early.
        assert!(
            out.achieved_per_s <= rate * 20_000.0 / (20_000.0 - PACE_BATCH as f64) * 1.001,
            "ran ahead: {}",
            out.achieved_per_s
        );
        assert!(out.consumer_ns_per_event.is_some_and(|c| c > 0.0));
    }
}
