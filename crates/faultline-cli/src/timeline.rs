//! `faultline timeline TRACE -o out.html`: one self-contained page (no network, no CDN) that
//! shows the trace on a timeline.
//!
//! The page ([`PAGE`], with its script [`SCRIPT`] and style [`STYLE`] inlined) draws one lane
//! per CPU with the event density over time, zoom (wheel, buttons, keys) and pan (drag), loss
//! markers by cause where the losses were counted, faulted events highlighted, a legend and a
//! summary header (events, losses, span).
//!
//! The trace is summarized here, at export time, so the page stays responsive whatever the
//! trace size ([`Summary`]): the time from the first to the last selected event (extended to
//! the loss markers) is cut into
//! `--bins` bins (default 4000) and each lane holds its event counts per bin (and faulted
//! counts per bin). On top of that the page gets exact items up to fixed caps:
//! - every event (time, CPU, name, faulted) when the trace has at most `--detail-limit`
//!   events (default 200,000), drawn as ticks when zoomed in far enough;
//! - every faulted event up to [`MAX_FAULTED_MARKS`], with its fields;
//! - one loss marker per packet that counted losses, up to [`MAX_LOSS_MARKS`]; beyond that,
//!   the markers of one CPU falling in the same bin are merged (sums kept), so the markers'
//!   sums always equal the trace's loss totals (those of `faultline stats`).
//!
//! REMOTE commits (a writer that migrated between reserve and commit) are counted by the ring
//! buffer per CPU and carried, cumulative, in the packet contexts (`remote_commits`: the count
//! by the time the packet was closed). The page marks each packet whose count moved on its
//! CPU lane, at the packet's start, with the number counted between the previous packet's
//! close and this packet's close (so not necessarily commits *into* this packet), up to
//! [`MAX_LOSS_MARKS`] markers, beyond that merged per CPU and bin like the loss markers. Traces
//! written before the field existed carry no such count; the page says so rather than showing
//! zero.
//!
//! Memory is bounded by the bins, the caps and the number of CPUs; events are streamed.
//!
//! The data reaches the page as one JSON object in a `<script type="application/json">`
//! element (with `<` escaped, so nothing in a string can close the element).

use crate::trace_input::{self, Input, SelectArgs};
use crate::view::CmdError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// The page template; `/*FAULTLINE_STYLE*/`, `/*FAULTLINE_SCRIPT*/` and `FAULTLINE_DATA` are
/// replaced.
pub const PAGE: &str = include_str!("timeline/page.html");
/// The page's script.
pub const SCRIPT: &str = include_str!("timeline/timeline.js");
/// The page's style sheet.
pub const STYLE: &str = include_str!("timeline/timeline.css");

/// Most faulted events listed individually.
pub const MAX_FAULTED_MARKS: usize = 2000;
/// Most loss markers before markers of the same CPU and bin are merged.
pub const MAX_LOSS_MARKS: usize = 2000;

/// Arguments of `faultline timeline`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Write a self-contained HTML page showing the trace on a timeline",
    long_about = "Write one self-contained HTML page (no network access, open it from disk) \
showing the trace in DIR: one lane per CPU with the event density over time, zoom (mouse wheel, \
+/- buttons or keys) and pan (drag, arrow keys), losses marked by cause where they were counted, \
faulted events (a raw pointer that could not be read) highlighted, REMOTE commits (a writer \
that migrated to another CPU between reserve and commit) marked on their CPU lane at the packet \
that counted them, a legend and a summary header. Large traces are summarized here (per-bin counts), so the page stays fast; traces with \
at most --detail-limit events also carry every event, drawn individually when zoomed in. \
--event/--cpu/--from/--to select events as in `faultline view`.",
    after_help = concat!(
        "Examples:\n",
        "  faultline timeline trace/ -o trace.html && xdg-open trace.html\n",
        "  faultline timeline trace/ --cpu 0 --cpu 1 -o two-cpus.html\n\n",
        crate::exit_codes_help!()
    )
)]
pub struct TimelineArgs {
    /// Trace directory (holding `metadata` and `stream_<cpu>` files)
    pub dir: PathBuf,
    /// Output file (`-` for standard output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Time bins per lane (the resolution of the density at full zoom-out and below)
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    pub bins: u32,
    /// Include every event (for drawing them one by one when zoomed in) when the trace has at
    /// most this many
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub detail_limit: u64,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// One CPU lane.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Lane {
    pub cpu: u32,
    pub events: u64,
    /// Events per bin.
    pub bins: Vec<u32>,
    /// `[bin, count]` of bins with faulted events.
    pub faulted_bins: Vec<[u64; 2]>,
    pub lost_full: u64,
    pub lost_stalled: u64,
    pub lost_too_big: u64,
    pub lost_packets: u64,
    /// REMOTE commits counted on this CPU.
    pub remote_commits: u64,
}

/// A REMOTE commit marker (one packet's count, or several packets' of one CPU and bin merged).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteMark {
    pub cpu: u32,
    /// Nanoseconds since the start of the time axis (the packet's start).
    pub t: i64,
    /// The packet's end (its close), same axis.
    pub t_end: i64,
    /// REMOTE commits counted between the previous packet's close and this one's.
    pub count: u64,
    /// Packets merged into this marker.
    pub merged: u64,
}

/// A loss marker (one packet's losses, or several packets' of one CPU and bin merged).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LossMark {
    pub cpu: u32,
    /// Nanoseconds since the start of the time axis.
    pub t: i64,
    pub full: u64,
    pub stalled: u64,
    pub too_big: u64,
    pub packets: u64,
    /// Packets merged into this marker.
    pub merged: u64,
}

/// A faulted event.
#[derive(Debug, Clone, Serialize)]
pub struct FaultMark {
    pub cpu: u32,
    pub t: i64,
    pub name: String,
    /// `field = value, ...` as `faultline view` prints them.
    pub fields: String,
}

/// Every event, as parallel arrays (present when the trace is small enough).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Detail {
    /// Nanoseconds since the start of the time axis.
    pub t: Vec<i64>,
    pub cpu: Vec<u32>,
    /// Index into [`Summary::names`].
    pub name: Vec<u32>,
    /// 1 when faulted.
    pub faulted: Vec<u8>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub trace: String,
    pub clock_freq_hz: u64,
    /// Length of the time axis in nanoseconds (from the first to the last selected event, or
    /// loss marker); bins are `span_ns / nbins` wide.
    pub span_ns: f64,
    /// Offset of the time axis from the trace start (first event), nanoseconds.
    pub axis_from_start_ns: f64,
    pub nbins: u32,
    pub events_total: u64,
    pub faulted_total: u64,
    pub lost_total: u64,
    pub lost_full: u64,
    pub lost_stalled: u64,
    pub lost_too_big: u64,
    pub lost_packets: u64,
    /// Event names, and events per name.
    pub names: Vec<String>,
    pub name_counts: Vec<u64>,
    pub lanes: Vec<Lane>,
    pub loss_marks: Vec<LossMark>,
    pub fault_marks: Vec<FaultMark>,
    /// Faulted events beyond [`MAX_FAULTED_MARKS`] (counted in the bins only).
    pub fault_marks_dropped: u64,
    pub detail: Option<Detail>,
    /// Whether the trace records REMOTE commits (its packet context has `remote_commits`).
    pub remote_commits_recorded: bool,
    /// REMOTE commits, all CPUs (the sum of the markers' counts).
    pub remote_commits: u64,
    pub remote_marks: Vec<RemoteMark>,
}

/// Summarize the selected part of a trace.
pub fn summarize(args: &TimelineArgs) -> Result<Summary, CmdError> {
    let input = Input::open(&args.dir, &args.select, "timeline")?;
    let cpus = input.cpus();
    // The time axis covers the selected events and the loss markers: the markers come from the
    // packet headers (read first), the events' extent from a first pass over the events
    // (their timestamps only), which also tells whether every event fits in the page.
    let (sel_lo, sel_hi) = selection_bounds(&input, args);
    let clamp = |ts: u64| ts.clamp(sel_lo.unwrap_or(0), sel_hi.unwrap_or(u64::MAX));
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    let mut marks_raw: Vec<trace_input::PacketMark> = Vec::new();
    let mut per_cpu_loss: BTreeMap<u32, trace_input::PacketMark> = BTreeMap::new();
    let mut too_many = false;
    let mut remote_raw: Vec<trace_input::PacketMark> = Vec::new();
    let mut remote_too_many = false;
    let mut per_cpu_remote: BTreeMap<u32, u64> = BTreeMap::new();
    trace_input::packets(&input, |p| {
        if p.remote_commits > 0 {
            lo = lo.min(clamp(p.ts_begin));
            hi = hi.max(clamp(p.ts_begin));
            let r = per_cpu_remote.entry(p.cpu).or_default();
            *r = r.saturating_add(p.remote_commits);
            if remote_raw.len() < MAX_LOSS_MARKS {
                remote_raw.push(*p);
            } else {
                remote_too_many = true;
            }
        }
        if p.has_losses() {
            lo = lo.min(clamp(p.ts_begin));
            hi = hi.max(clamp(p.ts_begin));
            let m = per_cpu_loss.entry(p.cpu).or_default();
            m.lost_full = m.lost_full.saturating_add(p.lost_full);
            m.lost_stalled = m.lost_stalled.saturating_add(p.lost_stalled);
            m.lost_too_big = m.lost_too_big.saturating_add(p.lost_too_big);
            m.lost_packets = m.lost_packets.saturating_add(p.lost_packets);
            if marks_raw.len() < MAX_LOSS_MARKS {
                marks_raw.push(*p);
            } else {
                too_many = true;
            }
        }
        Ok(())
    })?;
    let mut selected = 0u64;
    trace_input::events(&input, |ev| {
        lo = lo.min(ev.ts);
        hi = hi.max(ev.ts);
        selected += 1;
        Ok(())
    })?;
    let f = &input;
    if lo > hi {
        // Nothing to show: a 1 µs axis at the trace start.
        lo = input.start;
        hi = lo + input.trace.ns_to_ticks(1000).max(1);
    }
    let nbins = args.bins as usize;
    let span_ticks = (hi - lo).max(1);
    let bin_of = |ts: u64| -> usize {
        let d = ts.saturating_sub(lo).min(span_ticks) as u128;
        ((d * nbins as u128 / span_ticks as u128) as usize).min(nbins - 1)
    };
    let rel_ns = |ts: u64| -> i64 { f.ticks_to_ns_f64(ts as i128 - lo as i128).round() as i64 };

    let mut lanes: Vec<Lane> = cpus
        .iter()
        .map(|&cpu| Lane {
            cpu,
            bins: vec![0; nbins],
            ..Lane::default()
        })
        .collect();
    let lane_ix: BTreeMap<u32, usize> = cpus.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    for (cpu, m) in &per_cpu_loss {
        if let Some(l) = lane_ix.get(cpu).and_then(|&i| lanes.get_mut(i)) {
            l.lost_full = m.lost_full;
            l.lost_stalled = m.lost_stalled;
            l.lost_too_big = m.lost_too_big;
            l.lost_packets = m.lost_packets;
        }
    }
    for (cpu, n) in &per_cpu_remote {
        if let Some(l) = lane_ix.get(cpu).and_then(|&i| lanes.get_mut(i)) {
            l.remote_commits = *n;
        }
    }
    let remote_mark = |p: &trace_input::PacketMark| RemoteMark {
        cpu: p.cpu,
        t: rel_ns(clamp(p.ts_begin)),
        t_end: rel_ns(clamp(p.ts_end)),
        count: p.remote_commits,
        merged: 1,
    };
    let mut remote_marks: Vec<RemoteMark> = Vec::new();
    if remote_too_many {
        // One marker per CPU and bin, sums kept.
        let mut by_bin: BTreeMap<(u32, usize), RemoteMark> = BTreeMap::new();
        trace_input::packets(&input, |p| {
            if p.remote_commits == 0 {
                return Ok(());
            }
            let m = by_bin
                .entry((p.cpu, bin_of(p.ts_begin)))
                .or_insert(RemoteMark {
                    count: 0,
                    merged: 0,
                    ..remote_mark(p)
                });
            m.count = m.count.saturating_add(p.remote_commits);
            m.t_end = m.t_end.max(rel_ns(clamp(p.ts_end)));
            m.merged += 1;
            Ok(())
        })?;
        remote_marks.extend(by_bin.into_values());
    } else {
        remote_marks.extend(remote_raw.iter().map(remote_mark));
    }
    remote_marks.sort_by_key(|m| (m.t, m.cpu));

    let mut names: Vec<String> = Vec::new();
    let mut name_ix: BTreeMap<String, u32> = BTreeMap::new();
    let mut name_counts: Vec<u64> = Vec::new();
    let mut faulted_bins: Vec<BTreeMap<usize, u64>> = vec![BTreeMap::new(); lanes.len()];
    let mut fault_marks = Vec::new();
    let mut fault_marks_dropped = 0u64;
    let mut detail = (selected <= args.detail_limit).then(Detail::default);
    let (mut events_total, mut faulted_total) = (0u64, 0u64);
    let mut loss_marks: Vec<LossMark> = Vec::new();
    if too_many {
        // Too many packets with losses to show each: one marker per CPU and bin, sums kept.
        let mut by_bin: BTreeMap<(u32, usize), LossMark> = BTreeMap::new();
        trace_input::packets(&input, |p| {
            if !p.has_losses() {
                return Ok(());
            }
            let m = by_bin
                .entry((p.cpu, bin_of(p.ts_begin)))
                .or_insert(LossMark {
                    cpu: p.cpu,
                    t: rel_ns(clamp(p.ts_begin)),
                    full: 0,
                    stalled: 0,
                    too_big: 0,
                    packets: 0,
                    merged: 0,
                });
            m.full = m.full.saturating_add(p.lost_full);
            m.stalled = m.stalled.saturating_add(p.lost_stalled);
            m.too_big = m.too_big.saturating_add(p.lost_too_big);
            m.packets = m.packets.saturating_add(p.lost_packets);
            m.merged += 1;
            Ok(())
        })?;
        loss_marks.extend(by_bin.into_values());
    } else {
        loss_marks.extend(marks_raw.iter().map(|p| LossMark {
            cpu: p.cpu,
            t: rel_ns(clamp(p.ts_begin)),
            full: p.lost_full,
            stalled: p.lost_stalled,
            too_big: p.lost_too_big,
            packets: p.lost_packets,
            merged: 1,
        }));
    }
    let mut line = String::new();
    trace_input::events(&input, |ev| {
        events_total += 1;
        let Some(&li) = lane_ix.get(&ev.cpu) else {
            return Ok(());
        };
        let b = bin_of(ev.ts);
        if let Some(x) = lanes.get_mut(li).and_then(|l| l.bins.get_mut(b)) {
            *x = x.saturating_add(1);
        }
        if let Some(l) = lanes.get_mut(li) {
            l.events += 1;
        }
        let ni = match name_ix.get(ev.name) {
            Some(&i) => i,
            None => {
                let i = names.len() as u32;
                names.push(ev.name.to_string());
                name_counts.push(0);
                name_ix.insert(ev.name.to_string(), i);
                i
            }
        };
        if let Some(c) = name_counts.get_mut(ni as usize) {
            *c += 1;
        }
        let faulted = trace_input::is_faulted(ev);
        if faulted {
            faulted_total += 1;
            if let Some(m) = faulted_bins.get_mut(li) {
                *m.entry(b).or_insert(0) += 1;
            }
            if fault_marks.len() < MAX_FAULTED_MARKS {
                line.clear();
                for (i, (n, v)) in ev.fields.clone().enumerate() {
                    if i > 0 {
                        line.push_str(", ");
                    }
                    line.push_str(n);
                    line.push_str(" = ");
                    faultline_ctf::format::format_field_value(&mut line, v);
                }
                fault_marks.push(FaultMark {
                    cpu: ev.cpu,
                    t: rel_ns(ev.ts),
                    name: ev.name.to_string(),
                    fields: line.clone(),
                });
            } else {
                fault_marks_dropped += 1;
            }
        }
        if let Some(d) = detail.as_mut() {
            d.t.push(rel_ns(ev.ts));
            d.cpu.push(ev.cpu);
            d.name.push(ni);
            d.faulted.push(u8::from(faulted));
        }
        Ok(())
    })?;
    loss_marks.sort_by_key(|m| (m.t, m.cpu));
    for (l, fb) in lanes.iter_mut().zip(faulted_bins) {
        l.faulted_bins = fb.into_iter().map(|(b, n)| [b as u64, n]).collect();
    }
    let sum = |g: fn(&Lane) -> u64| lanes.iter().map(g).fold(0u64, u64::saturating_add);
    let (lost_full, lost_stalled, lost_too_big, lost_packets) = (
        sum(|l| l.lost_full),
        sum(|l| l.lost_stalled),
        sum(|l| l.lost_too_big),
        sum(|l| l.lost_packets),
    );
    let remote_commits = sum(|l| l.remote_commits);
    Ok(Summary {
        trace: args.dir.display().to_string(),
        clock_freq_hz: input.trace.clock_freq_hz(),
        span_ns: input.ticks_to_ns_f64(i128::from(span_ticks)),
        axis_from_start_ns: input.ticks_to_ns_f64(lo as i128 - input.start as i128),
        nbins: args.bins,
        events_total,
        faulted_total,
        lost_total: lost_full
            .saturating_add(lost_stalled)
            .saturating_add(lost_too_big),
        lost_full,
        lost_stalled,
        lost_too_big,
        lost_packets,
        names,
        name_counts,
        lanes,
        loss_marks,
        fault_marks,
        fault_marks_dropped,
        detail,
        remote_commits_recorded: has_remote_field(&args.dir),
        remote_commits,
        remote_marks,
    })
}

/// Whether the trace's metadata declares the `remote_commits` packet-context field (traces
/// written before it existed have the word reserved). Read as bytes: the metadata may be
/// packetized; an unreadable file just answers no (the trace was opened already).
fn has_remote_field(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join("metadata"))
        .map(|m| m.windows(14).any(|w| w == b"remote_commits"))
        .unwrap_or(false)
}

/// The selection's time bounds in ticks (as [`Input::open`] resolves them).
fn selection_bounds(input: &Input, args: &TimelineArgs) -> (Option<u64>, Option<u64>) {
    use crate::view::TimePoint;
    let at = |p: TimePoint| match p {
        TimePoint::Ticks(t) => t,
        TimePoint::SinceStart(ns) => input.start.saturating_add(input.trace.ns_to_ticks(ns)),
    };
    (args.select.from.map(at), args.select.to.map(at))
}

/// Where `faultline demo` suggests writing the page of the trace in `dir`: beside it, named
/// after it with `.html` appended (not inside it: babeltrace2 would take any file there for a
/// stream).
pub fn page_path(dir: &std::path::Path) -> PathBuf {
    match dir.file_name() {
        Some(name) => {
            let mut n = name.to_os_string();
            n.push(".html");
            dir.with_file_name(n)
        }
        None => dir.join("timeline.html"),
    }
}

/// The page for `summary`.
pub fn render(summary: &Summary) -> Result<String, serde_json::Error> {
    let data = serde_json::to_string(summary)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    let title = html_escape(&summary.trace);
    Ok(fill(
        PAGE,
        &[
            ("FAULTLINE_TITLE", &title),
            ("/*FAULTLINE_STYLE*/", STYLE),
            ("FAULTLINE_DATA", &data),
            ("/*FAULTLINE_SCRIPT*/", SCRIPT),
        ],
    ))
}

/// `template` with each marker replaced by its value; markers are looked for in the template
/// only (never in an inserted value), each once, in the given order.
fn fill(template: &str, parts: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + parts.iter().map(|p| p.1.len()).sum::<usize>());
    let mut rest = template;
    for (marker, value) in parts {
        if let Some((head, tail)) = rest.split_once(marker) {
            out.push_str(head);
            out.push_str(value);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `faultline timeline`: returns the exit code.
pub fn main(args: &TimelineArgs) -> i32 {
    let s = match summarize(args) {
        Ok(s) => s,
        Err(e) => return e.report("timeline"),
    };
    let page = match render(&s) {
        Ok(p) => p,
        Err(e) => return CmdError::Output(std::io::Error::other(e)).report("timeline"),
    };
    let r = if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(page.as_bytes())
    } else {
        std::fs::write(&args.output, page.as_bytes())
    };
    if let Err(e) = r {
        eprintln!(
            "faultline timeline: {}: {}",
            args.output.display(),
            crate::view::one_line(&e.to_string())
        );
        return crate::view::EXIT_OUTPUT;
    }
    if args.output.as_os_str() != "-" {
        eprintln!(
            "faultline timeline: wrote {} ({} CPUs, {} events, {} lost, {} faulted)",
            args.output.display(),
            s.lanes.len(),
            s.events_total,
            s.lost_total,
            s.faulted_total
        );
    }
    0
}
