//! `faultline stats DIR [--json]`: what a trace holds, in one pass over its stream files.
//!
//! Built on [`faultline_ctf::stats()`] (events per name and per CPU, losses by cause from the
//! packet contexts' cumulative counters, lost packets from `packet_seq_num` gaps between two
//! packets of a stream and, apart, the packets before each stream's first one, first/last
//! timestamp, bytes on disk); this module adds what a reader of the summary wants next to it:
//! the trace directory, the clock frequency, the span in seconds and the throughput (events
//! per second over the span), and renders it as text or JSON.
//!
//! The JSON object ([`Report`]) has every key of [`faultline_ctf::Stats`] (`events_total`,
//! `lost_total`, `lost_full`, `lost_stalled`, `lost_too_big`, `lost_packets`,
//! `packets_before_first`, `packets`, `remote_commits`, `truncated_events`, `truncated_bytes`, `events`, `cpus`,
//! `per_cpu`, `first_ts`, `last_ts`, `span_ns`, `bytes_on_disk`, `recorder`) plus `trace`,
//! `clock_freq_hz`, `span_s`, `events_per_sec` (`null` when the span is 0) and `buffers`
//! (`"cpu"`, or `"cid"` when the streams are per concurrency id: then `per_cpu` and `cpus` are
//! keyed by concurrency id). `recorder` holds
//! the traced program's recorder counters carried by the trace (events, faulted events and
//! bytes, per copy strategy events/restarts/fallbacks, and their source), or `null` for a trace
//! without them.

use crate::view::{open_traces, CmdError};
use faultline_ctf::Stats;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Arguments of `faultline stats`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Summarize a trace: events per name and CPU, losses by cause, span, throughput, size",
    long_about = "Read every stream file of the trace in DIR once and print: the number of \
events per event name and per CPU; events lost, by cause (buffer full, writer stalled, event \
too big for a sub-buffer; as counted by the ring buffer and carried in the packet contexts); \
packets lost: the gaps in a stream's packet sequence numbers between two packets of the trace \
(sub-buffers overwritten in --overwrite mode before they were read; the count CTF readers such as \
babeltrace2 report as discarded packets), and apart from them the packets a stream produced \
before its first packet in the trace (that packet's sequence number: a flight recorder that \
overwrote its oldest sub-buffers); REMOTE commits (writers that migrated to another CPU between \
reserving and committing an event, as counted by the ring buffer by the time each CPU's last \
packet was closed); events whose raw buffer (RawBuf) field was longer than the \
recording limit or the event and was cut (a non-zero <field>_truncated) and the bytes left out; \
the time span from the first to the last event; the throughput (events per second over that \
span); and the size of the trace on disk. --json prints the same as one JSON object (keys \
events_total, lost_total, lost_full, lost_stalled, lost_too_big, lost_packets, \
packets_before_first, packets, remote_commits, truncated_events, truncated_bytes, events, cpus, \
per_cpu, first_ts, last_ts, span_ns, span_s, events_per_sec, bytes_on_disk, clock_freq_hz, trace, \
recorder, buffers). A trace recorded with one ring buffer per concurrency id (faultline sessions \
where that wins and the kernel supports it, --buffers per-cid) says buffers = cid, and the per-buffer table is \
headed cid instead of cpu. With the trace's recorder counters (written by faultline record and by sessions), it \
also shows how many events the recorder committed, how many were faulted (read from bad memory, \
zero-filled) and how many went through each copy strategy, with restarts and fallbacks. The \
whole trace is checked on the way: a corrupted trace is an error, not a partial count.",
    after_help = concat!(
        "Examples:\n",
        "  faultline stats trace/\n",
        "  faultline stats trace/ --json | jq .lost_total\n\n",
        crate::exit_codes_help!()
    )
)]
pub struct StatsArgs {
    /// Trace directory (holding `metadata` and `stream_<cpu>` files)
    pub dir: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// [`Stats`] with what `faultline stats` adds (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The trace directory as given.
    pub trace: String,
    pub clock_freq_hz: u64,
    #[serde(flatten)]
    pub stats: Stats,
    /// `span_ns` in seconds.
    pub span_s: f64,
    /// `events_total / span_s`; `None` when the span is 0.
    pub events_per_sec: Option<f64>,
    /// What the streams (and `per_cpu` keys) are indexed by: `"cpu"`, or `"cid"` when the
    /// trace was recorded with one buffer per concurrency id of the traced process (metadata
    /// env `faultline_buffers`).
    pub buffers: String,
}

/// `"cid"` when the metadata's env block says the buffers were per concurrency id, else
/// `"cpu"` (other producers, and faultline traces from before the key existed).
fn buffers_of(dir: &std::path::Path) -> String {
    let key = format!("{} = \"cid\"", faultline::session::ENV_KEY_BUFFERS);
    let cid = std::fs::read(dir.join("metadata"))
        .map(|m| m.windows(key.len()).any(|w| w == key.as_bytes()))
        .unwrap_or(false);
    if cid { "cid" } else { "cpu" }.to_string()
}

/// Compute the report of the trace in `dir`. A directory holding several traces (LTTng's
/// per-UID and per-PID traces, several sessions) reports them added up: counts and maps
/// summed, per-CPU rows merged by CPU number, and the times (`first_ts`, `last_ts`) in
/// nanoseconds since the Unix epoch (`clock_freq_hz` 1000000000) so that the span covers all.
pub fn report(dir: &std::path::Path) -> Result<Report, CmdError> {
    let traces = open_traces(dir)?;
    let mut stats = Stats::default();
    let mut freq = traces.first().map_or(1_000_000_000, |t| t.clock_freq_hz());
    if let [one] = traces.as_slice() {
        stats = one.stats()?;
    } else {
        freq = 1_000_000_000;
        let mut first: Option<i128> = None;
        let mut last: Option<i128> = None;
        for t in &traces {
            let s = t.stats()?;
            if let Some(f) = s.first_ts.map(|x| t.wall_ns(x)) {
                first = Some(first.map_or(f, |a| a.min(f)));
            }
            if let Some(l) = s.last_ts.map(|x| t.wall_ns(x)) {
                last = Some(last.map_or(l, |a| a.max(l)));
            }
            add_stats(&mut stats, s);
        }
        let clamp = |x: i128| x.clamp(0, i128::from(u64::MAX)) as u64;
        stats.first_ts = first.map(clamp);
        stats.last_ts = last.map(clamp);
        stats.span_ns = match (first, last) {
            (Some(f), Some(l)) => clamp(l - f),
            _ => 0,
        };
    }
    let span_s = stats.span_ns as f64 / 1e9;
    let events_per_sec =
        (stats.span_ns > 0).then(|| stats.events_total as f64 * 1e9 / stats.span_ns as f64);
    Ok(Report {
        buffers: buffers_of(traces.first().map_or(dir, |t| t.dir())),
        trace: dir.display().to_string(),
        clock_freq_hz: freq,
        stats,
        span_s,
        events_per_sec,
    })
}

/// Add the counts of `s` to `acc` (times and span are the caller's).
fn add_stats(acc: &mut Stats, s: Stats) {
    acc.events_total += s.events_total;
    acc.lost_total += s.lost_total;
    acc.lost_full += s.lost_full;
    acc.lost_stalled += s.lost_stalled;
    acc.lost_too_big += s.lost_too_big;
    acc.lost_packets += s.lost_packets;
    acc.packets_before_first += s.packets_before_first;
    acc.packets += s.packets;
    acc.remote_commits += s.remote_commits;
    acc.truncated_events += s.truncated_events;
    acc.truncated_bytes += s.truncated_bytes;
    acc.bytes_on_disk += s.bytes_on_disk;
    for (k, v) in s.events {
        *acc.events.entry(k).or_insert(0) += v;
    }
    for (k, v) in s.cpus {
        *acc.cpus.entry(k).or_insert(0) += v;
    }
    for (k, c) in s.per_cpu {
        let a = acc.per_cpu.entry(k).or_default();
        a.events += c.events;
        a.packets += c.packets;
        a.lost_packets += c.lost_packets;
        a.packets_before_first += c.packets_before_first;
        a.lost.events_discarded += c.lost.events_discarded;
        a.lost.lost_full += c.lost.lost_full;
        a.lost.lost_stalled += c.lost.lost_stalled;
        a.lost.lost_too_big += c.lost.lost_too_big;
        a.remote_commits += c.remote_commits;
        a.bytes += c.bytes;
    }
    if acc.recorder.is_none() {
        acc.recorder = s.recorder;
    }
}

/// `n` bytes in a human unit.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Render the text summary.
pub fn write_text(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let s = &r.stats;
    writeln!(out, "trace       {}", r.trace)?;
    writeln!(
        out,
        "size        {} on disk ({} bytes), {} packets on {} {}",
        human_bytes(s.bytes_on_disk),
        s.bytes_on_disk,
        s.packets,
        s.per_cpu.len(),
        if r.buffers == "cid" {
            "concurrency-id buffers"
        } else {
            "CPUs"
        }
    )?;
    match (s.first_ts, s.last_ts) {
        (Some(a), Some(b)) => writeln!(
            out,
            "span        {:.9} s (clock ticks {a} to {b}, {} Hz)",
            r.span_s, r.clock_freq_hz
        )?,
        _ => writeln!(out, "span        - (no events)")?,
    }
    writeln!(out, "events      {}", s.events_total)?;
    match r.events_per_sec {
        Some(x) => writeln!(out, "throughput  {x:.1} events/s")?,
        None => writeln!(out, "throughput  -")?,
    }
    writeln!(
        out,
        "lost        {} events (buffer full {}, writer stalled {}, too big {}); {} packets \
         missing between packets, {} before the first packet of a stream",
        s.lost_total,
        s.lost_full,
        s.lost_stalled,
        s.lost_too_big,
        s.lost_packets,
        s.packets_before_first
    )?;
    writeln!(
        out,
        "truncated   {} events with a raw buffer not recorded whole ({} bytes left out)",
        s.truncated_events, s.truncated_bytes
    )?;
    writeln!(
        out,
        "remote      {} REMOTE commits (writer migrated between reserve and commit)",
        s.remote_commits
    )?;
    if let Some(rc) = &s.recorder {
        writeln!(
            out,
            "recorder    {} events committed, {} faulted ({} bytes unreadable, zero-filled); {}",
            rc.events, rc.faulted, rc.faulted_bytes, rc.source
        )?;
        for (name, c) in &rc.strategies {
            writeln!(
                out,
                "            {name:<20} {:>12} events  {:>8} restarts  {:>8} fallbacks",
                c.events, c.restarts, c.fallbacks
            )?;
        }
    }
    let width = s.events.keys().map(|k| k.len()).max().unwrap_or(0).max(5);
    writeln!(out, "\n{:<width$}  {:>12}", "event", "count")?;
    for (name, n) in &s.events {
        writeln!(out, "{name:<width$}  {n:>12}")?;
    }
    writeln!(
        out,
        "\n{:>4}  {:>12}  {:>8}  {:>10}  {:>10}  {:>10}  {:>12}  {:>12}",
        r.buffers.as_str(),
        "events",
        "packets",
        "lost full",
        "stalled",
        "too big",
        "lost packets",
        "bytes"
    )?;
    for (cpu, c) in &s.per_cpu {
        writeln!(
            out,
            "{cpu:>4}  {:>12}  {:>8}  {:>10}  {:>10}  {:>10}  {:>12}  {:>12}",
            c.events,
            c.packets,
            c.lost.lost_full,
            c.lost.lost_stalled,
            c.lost.lost_too_big,
            c.lost_packets,
            c.bytes
        )?;
    }
    Ok(())
}

/// Print the report of `args.dir` to `out`.
pub fn run(args: &StatsArgs, out: &mut impl Write) -> Result<(), CmdError> {
    let r = report(&args.dir)?;
    if args.json {
        let json = serde_json::to_string_pretty(&r)
            .map_err(|e| CmdError::Output(std::io::Error::other(e)))?;
        writeln!(out, "{json}").map_err(CmdError::Output)?;
    } else {
        write_text(&r, out).map_err(CmdError::Output)?;
    }
    out.flush().map_err(CmdError::Output)
}

/// `faultline stats`: run on stdout, report errors; returns the exit code.
pub fn main(args: &StatsArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match run(args, &mut out) {
        Ok(()) => 0,
        Err(e) => e.report("stats"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
