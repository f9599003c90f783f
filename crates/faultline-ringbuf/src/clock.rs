//! Timestamps: the TSC, calibrated to nanoseconds against `CLOCK_MONOTONIC`, or
//! `CLOCK_MONOTONIC` itself when the TSC is not the system clock source.

use crate::layout::ClockKind;
use std::sync::OnceLock;
use std::time::Duration;

/// A clock description: frequency and a reference point relating ticks to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct ClockInfo {
    /// TSC or CLOCK_MONOTONIC.
    pub kind: ClockKind,
    /// Ticks per second.
    pub freq: u64,
    /// Tick value at the reference point.
    pub ref_ticks: u64,
    /// Nanoseconds since the Unix epoch at the reference point.
    pub ref_unix_ns: u64,
}

impl ClockInfo {
    /// Nanoseconds between two tick values.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ((ticks as u128) * 1_000_000_000u128 / self.freq.max(1) as u128) as u64
    }
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn realtime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Read a clock now (outside any critical section).
#[inline]
pub fn now(kind: ClockKind) -> u64 {
    match kind {
        ClockKind::Tsc => faultline_rseq::rdtsc(),
        ClockKind::Monotonic => monotonic_ns(),
    }
}

/// [`now`], ordered with the memory accesses around it: the clock is read after every earlier
/// load has completed and before any later instruction (an `lfence` on each side of `rdtsc`;
/// `clock_gettime` orders its own read). A value read this way after loading a position is
/// at least every timestamp read before that position was stored, and at most any timestamp
/// read by a section that ran after the next store (`Channel::flush_all` on per-cid buffers).
#[inline]
pub fn now_ordered(kind: ClockKind) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if kind == ClockKind::Tsc {
        // SAFETY: lfence and rdtsc are available on every x86_64 CPU and touch no memory.
        unsafe {
            core::arch::x86_64::_mm_lfence();
            let t = core::arch::x86_64::_rdtsc();
            core::arch::x86_64::_mm_lfence();
            return t;
        }
    }
    now(kind)
}

/// Whether the kernel itself uses the TSC (so it is invariant and synchronised across CPUs).
/// Read once per process (`faultline record` asks three times before the program starts).
pub fn tsc_is_reliable() -> bool {
    static RELIABLE: OnceLock<bool> = OnceLock::new();
    *RELIABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .map(|s| s.trim() == "tsc")
            .unwrap_or(false)
    })
}

/// The default clock: TSC when reliable, otherwise `CLOCK_MONOTONIC`.
pub fn default_kind() -> ClockKind {
    if tsc_is_reliable() {
        ClockKind::Tsc
    } else {
        ClockKind::Monotonic
    }
}

static TSC: OnceLock<ClockInfo> = OnceLock::new();

/// The first reading of a [`calibrate_quick`] calibration: (TSC, `CLOCK_MONOTONIC` ns).
static QUICK_START: OnceLock<(u64, u64)> = OnceLock::new();

/// That first reading, once [`calibrate_quick`] calibrated the TSC from it.
static QUICK_USED: OnceLock<(u64, u64)> = OnceLock::new();

/// Take the first reading of [`calibrate_quick`] now (once per process; later calls do
/// nothing): a process that calls this when it starts, before its other start-up work, has
/// the calibration's interval mostly behind it when it calibrates, instead of spinning
/// through all of it.
pub fn begin_quick_calibration() {
    // Whether the TSC is usable is for `calibrate_quick` to say (a reading costs less).
    QUICK_START.get_or_init(|| {
        let (c, t, _) = bracketed();
        (c, t)
    });
}

/// Describe a clock, calibrating the TSC once per process (about [`CALIBRATION`], or
/// [`QUICK_CALIBRATION`] after [`calibrate_quick`]).
pub fn info(kind: ClockKind) -> ClockInfo {
    match kind {
        ClockKind::Monotonic => ClockInfo {
            kind,
            freq: 1_000_000_000,
            ref_ticks: monotonic_ns(),
            ref_unix_ns: realtime_ns(),
        },
        ClockKind::Tsc => *TSC.get_or_init(calibrate_tsc),
    }
}

/// How long the TSC is calibrated against `CLOCK_MONOTONIC`. Each end of the interval is
/// the tightest of [`CALIBRATION_SAMPLES`] bracketed readings (`rdtsc`, `clock_gettime`,
/// `rdtsc`: the TSC value taken is the middle of the bracket), so the error is the bracket's
/// half-width (tens of nanoseconds) over the interval — a few ppm — and a preemption
/// between two readings (which would widen its bracket) is never the one used. Short, because
/// every `faultline record` pays it before the program starts.
pub const CALIBRATION: Duration = Duration::from_millis(2);

/// Bracketed readings taken at each end of the calibration interval.
pub const CALIBRATION_SAMPLES: usize = 8;

/// One bracketed reading: (TSC at the middle of the bracket, monotonic ns, bracket width).
fn bracketed() -> (u64, u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..CALIBRATION_SAMPLES {
        let a = faultline_rseq::rdtsc();
        let t = monotonic_ns();
        let b = faultline_rseq::rdtsc();
        let w = b.wrapping_sub(a);
        if w < best.2 {
            best = (a.wrapping_add(w / 2), t, w);
        }
    }
    best
}

/// Ticks per second between two bracketed readings.
fn freq_between((c0, t0): (u64, u64), (c1, t1): (u64, u64)) -> u64 {
    let dt = t1.saturating_sub(t0).max(1);
    let f = (c1.wrapping_sub(c0)) as u128 * 1_000_000_000u128 / dt as u128;
    (f.min(u64::MAX as u128) as u64).max(1)
}

/// Calibrate over `interval` from the bracketed reading `start`: sleeping (`spin` false) or
/// spinning on the clock (a sleep may oversleep by much more than a short interval).
fn calibrate_from(start: (u64, u64), interval: Duration, spin: bool) -> ClockInfo {
    if spin {
        let end = start.1.saturating_add(interval.as_nanos() as u64);
        while monotonic_ns() < end {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(interval);
    }
    let (c1, t1, _) = bracketed();
    let ref_ticks = faultline_rseq::rdtsc();
    let ref_unix_ns = realtime_ns();
    ClockInfo {
        kind: ClockKind::Tsc,
        freq: freq_between(start, (c1, t1)),
        ref_ticks,
        ref_unix_ns,
    }
}

fn calibrate_tsc() -> ClockInfo {
    let (c0, t0, _) = bracketed();
    calibrate_from((c0, t0), CALIBRATION, false)
}

/// The interval of [`calibrate_quick`], from its first reading (spun for what is left of it):
/// its frequency is good to a few hundred ppm at worst (the brackets' half-widths over the
/// interval), enough for durations measured in the traced program; [`refine_tsc`] then
/// measures the frequency over the whole run.
pub const QUICK_CALIBRATION: Duration = Duration::from_micros(200);

/// Calibrate the TSC of this process (what [`info`] returns from now on) in
/// [`QUICK_CALIBRATION`] instead of [`CALIBRATION`], and keep the first reading for
/// [`refine_tsc`]. For a recorder whose trace metadata is finished at the end of the run (a
/// program that runs for a few milliseconds would otherwise wait [`CALIBRATION`] before it
/// starts). Does nothing (returns `false`) when the TSC was calibrated already or is not
/// reliable.
pub fn calibrate_quick() -> bool {
    if TSC.get().is_some() || !tsc_is_reliable() {
        return false;
    }
    // The first reading: the one [`begin_quick_calibration`] took, or now.
    let start = *QUICK_START.get_or_init(|| {
        let (c, t, _) = bracketed();
        (c, t)
    });
    let mut fresh = false;
    TSC.get_or_init(|| {
        fresh = true;
        calibrate_from(start, QUICK_CALIBRATION, true)
    });
    if fresh {
        let _ = QUICK_USED.set(start);
    }
    fresh
}

/// The TSC frequency measured over the whole run: from [`calibrate_quick`]'s first reading
/// ([`begin_quick_calibration`]'s when there was one) to now (sleeping first when that is
/// shorter than [`CALIBRATION`], so the interval is at least as long as a normal
/// calibration's), with `info`'s reference point. `None` without [`calibrate_quick`] (then
/// [`info`]'s calibration is the one to use).
pub fn refine_tsc(info: &ClockInfo) -> Option<ClockInfo> {
    let &(c0, t0) = QUICK_USED.get()?;
    if info.kind != ClockKind::Tsc {
        return None;
    }
    let waited = Duration::from_nanos(monotonic_ns().saturating_sub(t0));
    if let Some(rest) = CALIBRATION.checked_sub(waited) {
        std::thread::sleep(rest);
    }
    let (c1, t1, _) = bracketed();
    Some(ClockInfo {
        freq: freq_between((c0, t0), (c1, t1)),
        ..*info
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short calibration agrees with one fifty times longer to within 100 ppm (the
    /// documented error is 10-20 ppm; the margin absorbs NTP slewing and a loaded machine).
    #[test]
    fn short_calibration_is_accurate() {
        if !tsc_is_reliable() {
            return;
        }
        let (c0, t0, _) = bracketed();
        let short = calibrate_tsc().freq as f64;
        std::thread::sleep(CALIBRATION * 50);
        let (c1, t1, _) = bracketed();
        let long = c1.wrapping_sub(c0) as f64 * 1e9 / (t1 - t0) as f64;
        let ppm = (short - long).abs() / long * 1e6;
        assert!(ppm < 100.0, "short {short} long {long}: {ppm:.1} ppm");
    }

    /// The quick calibration is within 2000 ppm of a long one (its documented error is a few
    /// hundred; the margin absorbs a loaded machine), and the whole-run refinement within
    /// 100 ppm, however short the run.
    #[test]
    fn quick_calibration_then_refined_over_the_run() {
        if !tsc_is_reliable() {
            return;
        }
        let (c0, t0, _) = bracketed();
        let start = bracketed();
        let quick = calibrate_from((start.0, start.1), QUICK_CALIBRATION, true);
        // As refine_tsc does, from the quick calibration's first reading.
        let waited = Duration::from_nanos(monotonic_ns() - start.1);
        if let Some(rest) = CALIBRATION.checked_sub(waited) {
            std::thread::sleep(rest);
        }
        let end = bracketed();
        let refined = freq_between((start.0, start.1), (end.0, end.1)) as f64;
        std::thread::sleep(CALIBRATION * 50);
        let (c1, t1, _) = bracketed();
        let long = c1.wrapping_sub(c0) as f64 * 1e9 / (t1 - t0) as f64;
        let ppm = |f: f64| (f - long).abs() / long * 1e6;
        assert!(
            ppm(quick.freq as f64) < 2000.0,
            "quick {} long {long}",
            quick.freq
        );
        assert!(ppm(refined) < 100.0, "refined {refined} long {long}");
    }
}
