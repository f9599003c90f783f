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
pub fn tsc_is_reliable() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .map(|s| s.trim() == "tsc")
        .unwrap_or(false)
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

/// Describe a clock, calibrating the TSC once per process (about [`CALIBRATION`]).
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

fn calibrate_tsc() -> ClockInfo {
    let (c0, t0, _) = bracketed();
    std::thread::sleep(CALIBRATION);
    let (c1, t1, _) = bracketed();
    let dt = t1.saturating_sub(t0).max(1);
    let freq = ((c1.wrapping_sub(c0)) as u128 * 1_000_000_000u128 / dt as u128) as u64;
    let ref_ticks = faultline_rseq::rdtsc();
    let ref_unix_ns = realtime_ns();
    ClockInfo {
        kind: ClockKind::Tsc,
        freq: freq.max(1),
        ref_ticks,
        ref_unix_ns,
    }
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
}
