//! `faultline view DIR`: print a trace's events, one line each, in timestamp order.
//!
//! ```text
//! [+0.000000010] cpu 0 other:read: { path_faulted = 1, path = "/tmp/file1", data = [de ad 01] }
//! ```
//!
//! The trace is opened with [`faultline_ctf::AnyTrace`]: faultline's own traces with its strict
//! reader, any other CTF 1.8 trace (LTTng, ...) with the general reader, whose lines use
//! babeltrace2's value syntax ([`faultline_ctf::general::format`]).
//!
//! The line format of faultline traces is [`faultline_ctf::format`]'s. Events are streamed through
//! [`faultline_ctf::Events::next_ref`] (borrowed from the reader's packet buffer, payloads
//! decoded on the fly) into one reused line buffer and a [`BufWriter`] over the locked stdout,
//! so printing allocates nothing per event and memory stays bounded by the largest packet.
//!
//! Time arguments ([`TimePoint`]): a duration since the **trace start** — the timestamp of the
//! trace's first event over all CPUs, before any filter, the zero of the default relative time
//! display — as `N` (nanoseconds) or `N` with a unit `ns`, `us`, `ms`, `s` (decimals allowed:
//! `1.5ms`); or `@T`, an absolute clock value in ticks as printed by `--time raw`. Both ends of
//! the range are inclusive.
//!
//! Errors ([`CmdError`]) are one line on stderr naming the file (and the byte offset when the
//! problem is in a file's content); exit codes: 0 success (also when the reader of the output
//! goes away, as with `| head`), 1 writing the output failed, 2 the trace cannot be read.

use crate::trace_input::SelectArgs;
use faultline_ctf::format::push_event_ref;
use faultline_ctf::general::{push_ctf_event, CtfTrace};
use faultline_ctf::{
    discard_stream_path, find_traces, glob_match, AnyTrace, CtfError, Discard, DiscardKind,
    Discards, Filter, TimeMode, Trace,
};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Exit code: the trace cannot be read (also clap's code for bad arguments).
pub const EXIT_BAD_TRACE: i32 = 2;
/// Exit code: writing the output failed (other than a closed pipe).
pub const EXIT_OUTPUT: i32 = 1;

/// The exit-code paragraph of the `--help` of the trace-reading commands (a macro so that it
/// can be `concat!`ed into clap attributes).
#[macro_export]
macro_rules! exit_codes_help {
    () => {
        "Exit codes: 0 success (also when the output is closed early, as with `| head`); 1 \
         writing the output failed; 2 DIR is not a readable faultline trace (missing, not a \
         directory, no metadata, truncated or corrupted file: one line on stderr names the file \
         and the byte offset), or the arguments are invalid."
    };
}

/// Why a trace-reading command failed.
#[derive(Debug)]
pub enum CmdError {
    /// The trace cannot be read: a message naming the file.
    Trace(String),
    /// Writing the output failed.
    Output(std::io::Error),
}

impl From<CtfError> for CmdError {
    fn from(e: CtfError) -> Self {
        CmdError::Trace(e.to_string())
    }
}

impl CmdError {
    /// Print the error (one line) to stderr and return the exit code. A closed output pipe is
    /// not an error: nothing is printed and the code is 0.
    pub fn report(&self, cmd: &str) -> i32 {
        match self {
            CmdError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            CmdError::Output(e) => {
                eprintln!(
                    "faultline {cmd}: writing the output: {}",
                    one_line(&e.to_string())
                );
                EXIT_OUTPUT
            }
            CmdError::Trace(m) => {
                eprintln!("faultline {cmd}: {}", one_line(m));
                EXIT_BAD_TRACE
            }
        }
    }
}

/// `s` with line breaks escaped, so that an error is always a single line.
pub fn one_line(s: &str) -> String {
    s.replace('\n', "\\n").replace('\r', "\\r")
}

/// Open the trace in `dir` with the reader that fits it ([`AnyTrace`]), with clear errors for
/// what is not a trace directory at all. A directory without `metadata` that holds exactly one
/// trace directory below it (as LTTng's session directories do) opens that one; one that holds
/// several is an error here (see [`open_traces`]).
pub fn open_trace(dir: &Path) -> Result<AnyTrace, CmdError> {
    let mut all = open_traces(dir)?;
    if all.len() > 1 {
        return Err(CmdError::Trace(format!(
            "{}: holds {} traces ({}, {}, ...): give one of them",
            dir.display(),
            all.len(),
            all[0].dir().display(),
            all[1].dir().display()
        )));
    }
    all.pop().ok_or_else(|| {
        CmdError::Trace(format!(
            "{}: not a faultline or CTF trace: no such file",
            dir.join("metadata").display()
        ))
    })
}

/// Open every trace in `dir`: the directory itself when it holds `metadata`, else every trace
/// directory below it ([`find_traces`]: LTTng's `ust/uid/1000/64-bit`, per-PID traces, several
/// sessions), sorted by path; at least one.
pub fn open_traces(dir: &Path) -> Result<Vec<AnyTrace>, CmdError> {
    let md =
        std::fs::metadata(dir).map_err(|e| CmdError::Trace(format!("{}: {e}", dir.display())))?;
    if !md.is_dir() {
        return Err(CmdError::Trace(format!(
            "{}: not a directory (a trace is a directory holding `metadata` and stream files)",
            dir.display()
        )));
    }
    let meta = dir.join("metadata");
    if std::fs::symlink_metadata(&meta).is_err() {
        let found = find_traces(dir);
        if found.is_empty() {
            return Err(CmdError::Trace(format!(
                "{}: not a faultline or CTF trace: no such file",
                meta.display()
            )));
        }
        return found
            .iter()
            .map(|d| AnyTrace::open(d).map_err(CmdError::from))
            .collect();
    }
    Ok(vec![AnyTrace::open(dir)?])
}

/// A point in time given on the command line (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePoint {
    /// Nanoseconds since the trace start (first event).
    SinceStart(u64),
    /// Absolute clock value, in ticks.
    Ticks(u64),
}

impl FromStr for TimePoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(t) = s.strip_prefix('@') {
            return t.parse::<u64>().map(TimePoint::Ticks).map_err(|_| {
                format!("`{s}`: after `@` comes an absolute clock value in ticks, e.g. @123456789")
            });
        }
        parse_duration_ns(s)
            .map(TimePoint::SinceStart)
            .ok_or_else(|| {
                format!(
                "`{s}`: expected nanoseconds since the trace start (`1500`, `2us`, `1.5ms`, `3s`) \
                 or `@TICKS`, an absolute clock value"
            )
            })
    }
}

/// `N[.F][ns|us|ms|s]` (no unit: nanoseconds) to nanoseconds; `None` when malformed or too
/// large.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let (num, scale) = [
        ("ns", 1u64),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
    ]
    .iter()
    .find_map(|&(unit, scale)| s.strip_suffix(unit).map(|n| (n, scale)))
    .unwrap_or((s, 1));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return None;
    }
    let whole = int.parse::<u64>().ok()?.checked_mul(scale)?;
    // The fraction, in units of `scale`: keep as many digits as `scale` has zeros.
    let places = scale.ilog10() as usize;
    if frac.len() > places && frac.bytes().skip(places).any(|b| b != b'0') {
        return None; // finer than a nanosecond
    }
    let mut part = 0u64;
    for i in 0..places {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        part = part * 10 + d;
    }
    whole.checked_add(part)
}

/// How `view` prints timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeDisplay {
    /// seconds since the trace start (its first event): [+0.000001500]
    Relative,
    /// the clock value in ticks, as stored: [123456789]
    Raw,
    /// seconds since the Unix epoch (the clock offset from the metadata): [1700000000.000001250]
    Wall,
}

/// Arguments of `faultline view`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Print a trace's events, one line each, in timestamp order",
    long_about = "Print the events of the trace in DIR, one line each, merged across CPUs in \
timestamp order:\n\n  [TIME] cpu N provider:event: { field = value, ... }\n\nIntegers are \
decimal, strings quoted with C-style escapes, byte arrays in hex. Filters combine: an event is \
printed when its name matches any --event glob, its CPU is one of the --cpu values and its \
timestamp lies in [--from, --to]. Times in --from/--to are nanoseconds since the trace start \
(the trace's first event, over all CPUs), optionally with a unit (1500, 2us, 1.5ms, 3s), or \
@TICKS for an absolute clock value as printed by --time raw. Output is streamed: large traces \
print at once and `| head` stops the reading.",
    after_help = concat!(
        "Examples:\n",
        "  faultline view trace/\n",
        "  faultline view trace/ --event 'myapp:*' --cpu 0 --cpu 2\n",
        "  faultline view trace/ --from 1ms --to 1.5ms --time wall\n",
        "  faultline view trace/ --time raw --from @1234567890 | head\n\n",
        exit_codes_help!()
    )
)]
pub struct ViewArgs {
    /// Trace directory (holding `metadata` and stream files; or a directory with exactly one
    /// trace below it, as LTTng's session output)
    pub dir: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
    /// How to print timestamps
    #[arg(long, value_enum, value_name = "MODE", default_value = "relative")]
    pub time: TimeDisplay,
}

/// The trace start: the timestamp of the first event over all CPUs (0 for a trace without
/// events).
pub fn trace_start(trace: &Trace) -> Result<u64, CtfError> {
    match trace.events(&Filter::default()).next_ref() {
        Some(Ok(e)) => Ok(e.ts),
        Some(Err(e)) => Err(e),
        None => Ok(0),
    }
}

/// [`trace_start`] of a general CTF trace.
pub fn ctf_trace_start(trace: &CtfTrace) -> Result<u64, CtfError> {
    match trace.events(&Filter::default()).next_event() {
        Some(Ok(e)) => Ok(e.ts),
        Some(Err(e)) => Err(e),
        None => Ok(0),
    }
}

/// The events of one trace being merged into the output, with its discard notices.
struct Source<'t> {
    trace: &'t AnyTrace,
    events: SourceEvents<'t>,
    notices: Discards<'t>,
    /// The line of the current event (valid when `key` is `Some`).
    line: String,
    key: Option<i128>,
}

enum SourceEvents<'t> {
    Faultline(faultline_ctf::Events<'t>),
    Ctf(faultline_ctf::general::CtfEvents<'t>),
}

/// How times are printed and events ordered: one trace is ordered by its clock ticks; several
/// traces by nanoseconds since the Unix epoch (each trace's clock and offsets applied), and
/// their relative times count from the earliest first event of all of them.
#[derive(Clone, Copy)]
struct Clocking {
    multi: bool,
    mode: TimeMode,
    /// Several traces, relative display: the start in nanoseconds since the epoch.
    t0_ns: Option<i128>,
}

impl Clocking {
    fn key(&self, t: &AnyTrace, ts: u64) -> i128 {
        if self.multi {
            t.wall_ns(ts)
        } else {
            i128::from(ts)
        }
    }

    fn push_time(&self, out: &mut String, t: &AnyTrace, ts: u64) {
        match self.t0_ns {
            Some(t0) => {
                let ns = t.wall_ns(ts) - t0;
                let a = ns.unsigned_abs();
                let sign = if ns < 0 { "-" } else { "+" };
                let _ = write!(out, "{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000);
            }
            None => t.push_time(out, ts, self.mode),
        }
    }
}

impl Source<'_> {
    /// Move to the next event and render its line; `key` is `None` at the end.
    fn advance(&mut self, clk: &Clocking) -> Result<(), CmdError> {
        self.line.clear();
        let mode = if clk.t0_ns.is_some() {
            TimeMode::Ticks
        } else {
            clk.mode
        };
        let ts = match (&mut self.events, self.trace) {
            (SourceEvents::Faultline(ev), AnyTrace::Faultline(t)) => match ev.next_ref() {
                Some(e) => {
                    let e = e?;
                    push_event_ref(&mut self.line, t, &e, mode);
                    Some(e.ts)
                }
                None => None,
            },
            (SourceEvents::Ctf(ev), AnyTrace::Ctf(t)) => match ev.next_event() {
                Some(e) => {
                    let e = e?;
                    push_ctf_event(&mut self.line, t, &e, mode);
                    Some(e.ts)
                }
                None => None,
            },
            _ => None,
        };
        self.key = ts.map(|ts| clk.key(self.trace, ts));
        if let (Some(ts), Some(_)) = (ts, clk.t0_ns) {
            // Replace the tick count between the brackets by the time since the start.
            if let Some(close) = self.line.find(']') {
                let mut time = String::with_capacity(24);
                clk.push_time(&mut time, self.trace, ts);
                self.line.replace_range(1..close, &time);
            }
        }
        Ok(())
    }

    fn notice_key(&mut self, clk: &Clocking) -> Result<Option<i128>, CmdError> {
        Ok(self.notices.peek_begin()?.map(|b| clk.key(self.trace, b)))
    }
}

/// The line `view` prints on stderr for a discard notice (see [`faultline_ctf::discards`]).
fn notice_line(out: &mut String, t: &AnyTrace, d: &Discard, clk: &Clocking) {
    out.push_str("faultline view: warning: the tracer ");
    let _ = match d.kind {
        DiscardKind::Events => write!(
            out,
            "discarded {} event{}",
            d.count,
            if d.count == 1 { "" } else { "s" }
        ),
        DiscardKind::Packets => write!(
            out,
            "discarded {} packet{}",
            d.count,
            if d.count == 1 { "" } else { "s" }
        ),
        DiscardKind::MaybeEvents => write!(out, "may have discarded events"),
    };
    out.push_str(" between [");
    clk.push_time(out, t, d.begin);
    out.push_str("] and [");
    clk.push_time(out, t, d.end);
    let _ = write!(
        out,
        "] on cpu {} (stream {})",
        d.cpu,
        discard_stream_path(t, d).display()
    );
}

/// Print the events selected by `args` to `out`, and the tracer's discarded-events and
/// discarded-packets notices to `err` at their place among the events (`out` is flushed before
/// each notice, so that both show in order on a terminal or in `2>&1`); returns how many
/// events were printed. A directory holding several traces is read as one: their events are
/// merged by time (nanoseconds since the epoch).
pub fn run(args: &ViewArgs, out: &mut impl Write, err: &mut impl Write) -> Result<u64, CmdError> {
    let traces = open_traces(&args.dir)?;
    let multi = traces.len() > 1;
    let relative = args.time == TimeDisplay::Relative
        || matches!(args.select.from, Some(TimePoint::SinceStart(_)))
        || matches!(args.select.to, Some(TimePoint::SinceStart(_)));
    // The trace start: first event of each trace (ticks), and over all (ns since the epoch).
    let mut firsts = Vec::with_capacity(traces.len());
    for t in &traces {
        firsts.push(if relative { first_ts(t)? } else { None });
    }
    let t0_ns = traces
        .iter()
        .zip(&firsts)
        .filter_map(|(t, f)| f.map(|ts| t.wall_ns(ts)))
        .min()
        .unwrap_or(0);
    let mut names: Vec<&str> = Vec::new();
    for t in &traces {
        names.extend(t.event_names());
    }
    for g in &args.select.events {
        if !names.iter().any(|n| glob_match(g, n)) {
            eprintln!(
                "faultline view: note: no event of this trace matches `{}`",
                one_line(g)
            );
        }
    }
    let clk = Clocking {
        multi,
        mode: match args.time {
            TimeDisplay::Relative => {
                TimeMode::RelativeTo(firsts.first().copied().flatten().unwrap_or(0))
            }
            TimeDisplay::Raw => TimeMode::Ticks,
            TimeDisplay::Wall => TimeMode::Wall,
        },
        t0_ns: (multi && args.time == TimeDisplay::Relative).then_some(t0_ns),
    };
    let mut sources = Vec::with_capacity(traces.len());
    for (t, first) in traces.iter().zip(&firsts) {
        let at = |p: TimePoint| match p {
            TimePoint::Ticks(x) => x,
            TimePoint::SinceStart(ns) if multi => {
                t.ticks_at_wall(t0_ns.saturating_add(i128::from(ns)))
            }
            TimePoint::SinceStart(ns) => first.unwrap_or(0).saturating_add(t.ns_to_ticks(ns)),
        };
        let filter = args.select.filter(at);
        let events = match t {
            AnyTrace::Faultline(tr) => SourceEvents::Faultline(tr.events(&filter)),
            AnyTrace::Ctf(tr) => SourceEvents::Ctf(tr.events(&filter)),
        };
        let notices = t.discards(filter.cpus.clone(), filter.ts_min, filter.ts_max);
        let mut s = Source {
            trace: t,
            events,
            notices,
            line: String::with_capacity(256),
            key: None,
        };
        s.advance(&clk)?;
        sources.push(s);
    }
    let mut n = 0u64;
    let mut note = String::new();
    loop {
        // The source with the earliest event (ties: the first trace).
        let mut best: Option<(i128, usize)> = None;
        for (i, s) in sources.iter().enumerate() {
            if let Some(k) = s.key {
                if best.is_none_or(|(b, _)| k < b) {
                    best = Some((k, i));
                }
            }
        }
        // Notices that begin at or before that event (all of them after the last event): a
        // notice's range begins at the end of the previous packet of its stream, which is also
        // where the next packet and its first event may begin; babeltrace2 prints it first.
        loop {
            let mut first: Option<(i128, usize)> = None;
            for (i, s) in sources.iter_mut().enumerate() {
                if let Some(k) = s.notice_key(&clk)? {
                    if first.is_none_or(|(b, _)| k < b) {
                        first = Some((k, i));
                    }
                }
            }
            let Some((k, i)) = first else { break };
            if best.is_some_and(|(b, _)| k > b) {
                break;
            }
            let s = &mut sources[i];
            let Some(d) = s.notices.next().transpose()? else {
                break;
            };
            note.clear();
            notice_line(&mut note, s.trace, &d, &clk);
            note.push('\n');
            out.flush().map_err(CmdError::Output)?;
            // stderr going away is no reason to stop printing the events.
            let _ = err.write_all(note.as_bytes());
        }
        let Some((_, i)) = best else { break };
        let s = &mut sources[i];
        s.line.push('\n');
        out.write_all(s.line.as_bytes()).map_err(CmdError::Output)?;
        n += 1;
        s.advance(&clk)?;
    }
    out.flush().map_err(CmdError::Output)?;
    Ok(n)
}

/// Timestamp of the first event of `t` (before any filter).
fn first_ts(t: &AnyTrace) -> Result<Option<u64>, CtfError> {
    Ok(match t {
        AnyTrace::Faultline(t) => match t.events(&Filter::default()).next_ref() {
            Some(e) => Some(e?.ts),
            None => None,
        },
        AnyTrace::Ctf(t) => match t.events(&Filter::default()).next_event() {
            Some(e) => Some(e?.ts),
            None => None,
        },
    })
}

/// `faultline view`: run on stdout, report errors; returns the exit code.
pub fn main(args: &ViewArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err = std::io::stderr();
    let r = run(args, &mut out, &mut err);
    // Events printed before an error are flushed before the error line; a flush failure
    // (closed pipe) is the output's problem, reported below only if nothing else failed.
    let flushed = out.flush();
    match r.and(flushed.map_err(CmdError::Output)) {
        Ok(_) => 0,
        Err(e) => e.report("view"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("1500"), Some(1500));
        assert_eq!(parse_duration_ns("1500ns"), Some(1500));
        assert_eq!(parse_duration_ns("2us"), Some(2000));
        assert_eq!(parse_duration_ns("1.5ms"), Some(1_500_000));
        assert_eq!(parse_duration_ns("3s"), Some(3_000_000_000));
        assert_eq!(parse_duration_ns("0.000000001s"), Some(1));
        assert_eq!(parse_duration_ns("1.2500us"), Some(1250));
        assert_eq!(parse_duration_ns("1.0001us"), None);
        assert_eq!(parse_duration_ns("1.5"), None);
        assert_eq!(parse_duration_ns(".5s"), None);
        assert_eq!(parse_duration_ns("5."), None);
        assert_eq!(parse_duration_ns("-1"), None);
        assert_eq!(parse_duration_ns("1e3"), None);
        assert_eq!(parse_duration_ns(""), None);
        assert_eq!(parse_duration_ns("99999999999999999999"), None);
        assert_eq!(parse_duration_ns("18446744073710s"), None);
        assert_eq!("@42".parse(), Ok(TimePoint::Ticks(42)));
        assert_eq!("7us".parse(), Ok(TimePoint::SinceStart(7000)));
        assert!("@x".parse::<TimePoint>().is_err());
    }
}
