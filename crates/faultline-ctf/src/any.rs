//! Opening any trace directory with the right reader.
//!
//! A trace whose metadata is plain TSDL naming `tracer_name = "faultline"` is read by
//! faultline's own strict reader ([`Trace`]: its exact layout, checked field by field, and
//! faultline's typed values). If that reader rejects the metadata (a faultline version with
//! another record layout) or the trace comes from another producer (LTTng, barectf, the CTF
//! test suite), the general CTF 1.8 reader ([`CtfTrace`]) reads it. When both fail on a
//! faultline trace the strict reader's error is reported.
//!
//! A directory without a `metadata` file is searched (depth ≤ 8, ≤ 10 000 entries) for trace
//! directories, as LTTng nests its traces (`ust/uid/1000/64-bit/`); exactly one must be found.

use crate::error::{CtfError, Result};
use crate::general::CtfTrace;
use crate::reader::Trace;
use std::path::{Path, PathBuf};

/// A trace opened with the reader that fits it.
#[derive(Debug)]
pub enum AnyTrace {
    /// faultline's own trace, read by the strict reader.
    Faultline(Trace),
    /// Any other CTF 1.8 trace, read by the general reader.
    Ctf(CtfTrace),
}

fn claims_faultline(meta: &Path) -> bool {
    let Ok(raw) = std::fs::read(meta) else {
        return false;
    };
    raw.starts_with(b"/* CTF 1.8")
        && raw
            .windows(b"tracer_name = \"faultline\"".len())
            .any(|w| w == b"tracer_name = \"faultline\"")
}

impl AnyTrace {
    /// Open the trace directory `dir` (see the module docs).
    pub fn open(dir: &Path) -> Result<AnyTrace> {
        let meta = dir.join("metadata");
        if claims_faultline(&meta) {
            return match Trace::open(dir) {
                Ok(t) => Ok(AnyTrace::Faultline(t)),
                Err(e @ CtfError::Metadata { .. }) => match CtfTrace::open(dir) {
                    Ok(t) => Ok(AnyTrace::Ctf(t)),
                    Err(_) => Err(e),
                },
                Err(e) => Err(e),
            };
        }
        CtfTrace::open(dir).map(AnyTrace::Ctf)
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        match self {
            AnyTrace::Faultline(t) => t.dir(),
            AnyTrace::Ctf(t) => t.dir(),
        }
    }

    /// Clock frequency of the timestamps (1 GHz without a clock).
    pub fn clock_freq_hz(&self) -> u64 {
        match self {
            AnyTrace::Faultline(t) => t.clock().freq_hz,
            AnyTrace::Ctf(t) => t.clock().map_or(1_000_000_000, |c| c.freq),
        }
    }

    /// Event class names.
    pub fn event_names(&self) -> Vec<&str> {
        match self {
            AnyTrace::Faultline(t) => t.schema().events.iter().map(|e| e.name.as_str()).collect(),
            AnyTrace::Ctf(t) => t.event_classes().iter().map(|e| e.name.as_str()).collect(),
        }
    }

    /// Nanoseconds to clock ticks (durations), saturating.
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        match self {
            AnyTrace::Faultline(t) => t.ns_to_ticks(ns),
            AnyTrace::Ctf(t) => t.ns_to_ticks(ns),
        }
    }

    /// Nanoseconds since the Unix epoch of the clock value `ts` (clock offsets applied).
    pub fn wall_ns(&self, ts: u64) -> i128 {
        match self {
            AnyTrace::Faultline(t) => t.wall_ns(ts),
            AnyTrace::Ctf(t) => t.wall_ns(ts),
        }
    }

    /// The clock value (ticks) at `ns` nanoseconds since the Unix epoch, clamped to
    /// `0..=u64::MAX` (the inverse of [`AnyTrace::wall_ns`], rounded down).
    pub fn ticks_at_wall(&self, ns: i128) -> u64 {
        let d = ns.saturating_sub(self.wall_ns(0));
        if d <= 0 {
            return 0;
        }
        let t = d as u128 * u128::from(self.clock_freq_hz().max(1)) / 1_000_000_000;
        t.min(u128::from(u64::MAX)) as u64
    }

    /// Clock ticks to nanoseconds (durations).
    pub fn ticks_to_ns(&self, ticks: u64) -> i128 {
        match self {
            AnyTrace::Faultline(t) => t.ticks_to_ns(ticks) as i128,
            AnyTrace::Ctf(t) => t.ticks_to_ns(ticks) as i128,
        }
    }

    /// Append the clock value `ts` as `view` prints times in `mode` (without brackets).
    pub fn push_time(&self, out: &mut String, ts: u64, mode: crate::TimeMode) {
        use std::fmt::Write as _;
        let (ns, plus) = match mode {
            crate::TimeMode::Ticks => {
                let _ = write!(out, "{ts}");
                return;
            }
            crate::TimeMode::Wall => (self.wall_ns(ts), false),
            crate::TimeMode::RelativeTo(t0) if ts >= t0 => (self.ticks_to_ns(ts - t0), true),
            crate::TimeMode::RelativeTo(t0) => (-self.ticks_to_ns(t0 - ts), true),
        };
        let sign = if ns < 0 {
            "-"
        } else if plus {
            "+"
        } else {
            ""
        };
        let a = ns.unsigned_abs();
        let _ = write!(out, "{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000);
    }

    /// [`crate::Stats`] of the whole trace.
    pub fn stats(&self) -> Result<crate::Stats> {
        match self {
            AnyTrace::Faultline(t) => crate::stats(t),
            AnyTrace::Ctf(t) => crate::general::stats::ctf_stats(t),
        }
    }
}

/// Trace directories under `dir` (the directory itself when it holds `metadata`).
pub fn find_traces(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut budget = 10_000usize;
    walk(dir, 0, &mut budget, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, depth: u32, budget: &mut usize, out: &mut Vec<PathBuf>) {
    if dir.join("metadata").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= 8 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(ft) = ent.file_type() else { continue };
        if ft.is_dir() {
            walk(&ent.path(), depth + 1, budget, out);
        }
    }
}
