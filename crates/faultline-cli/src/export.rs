//! `faultline export --format chrome TRACE -o out.json`: the trace as Trace Event Format JSON,
//! the format Perfetto UI, speedscope and `chrome://tracing` read.
//!
//! Output: one object `{"displayTimeUnit": "ns", "otherData": {...}, "traceEvents": [...]}`.
//! Times (`ts`, `dur`) are microseconds since the trace start (the first event of the trace,
//! before any filter), with nanosecond decimals.
//!
//! Tracks (`pid`/`tid`):
//! - pid 1, "CPUs": one track per CPU, `tid` = the CPU number, named `CPU n`. Every selected
//!   event is an instant event (`"ph": "i"`, thread scope) on its CPU's track, named
//!   `provider:name`, category `provider`, its fields as `args`.
//! - pid 2, "Threads": one track per thread where the thread is known, i.e. where the event
//!   has an integer field named `tid`, `thread_id` or `thread` (first match in that order,
//!   [`crate::trace_input::THREAD_FIELDS`]); `tid` = that value, named `thread n`. Such events
//!   appear a second time there, with `cpu` added to their args (`--tracks cpu` or `--tracks
//!   thread` keeps one of the two copies).
//! - Faulted events (a non-zero `<field>_faulted`: a raw pointer that could not be read) get
//!   the category `provider,faulted`, `"faulted": true` in args and the colour name
//!   `terrible`.
//! - Losses: for each packet whose context counted losses, an instant event named
//!   `lost N events` (or `lost N packets`) with category `faultline,loss` on the CPU's track at
//!   the packet's `timestamp_begin`, args `lost_full`, `lost_stalled`, `lost_too_big`,
//!   `lost_packets`, `packet_seq_num`, `packet_end_us`.
//! - REMOTE commits (writers migrated between reserve and commit): for each packet whose
//!   context's cumulative `remote_commits` moved, an instant event named `N REMOTE commits`
//!   with category `faultline,remote` on the CPU's track at the packet's `timestamp_begin`,
//!   args `remote_commits` (counted between the previous packet's close and this packet's),
//!   `packet_seq_num`, `packet_end_us`.
//!
//! Spans are recognized by **event names and fields** ([`SpanConvention`], the one place to
//! adapt), following what `faultline-tracing` records:
//! - creation: an event whose name after `provider:` is `<LEVEL>.span.<span name>` (an
//!   uppercase level, e.g. `myapp.server:INFO.span.handle`), or `span_new` (then the span
//!   name is its string field `name`); its `span` field (or `span_id`, `id`) is the span id,
//!   its other fields become the span's args, with `target` (the provider) and `level`;
//! - `span_enter`, `span_exit`, `span_close` as the name after `provider:` (e.g.
//!   `tracing:span_enter`; also `..._span_enter`), with the span id as above;
//! - the thread: the event's `tid` field (as for other events); without one, the CPU of the
//!   enter event.
//!
//! Each enter/exit pair of a span on one thread becomes one complete event (`"ph": "X"`,
//! `ts` = enter, `dur` = exit - enter, named after the span, args from its creation and
//! `span_id`) on the thread's track (else the CPU's), emitted at the exit. A span still
//! entered at the end of the selection ends at the last event, with `"unfinished": true`; an
//! exit without its enter (entered before `--from`) is skipped. Enter and exit events are not
//! exported as instants; creation and close events are.
//!
//! Memory: the output is streamed as the events are read; what is kept is bounded by the
//! number of CPUs, threads and spans alive at once (a span's entry is dropped at its
//! `span_close`), never by the number of events.

use crate::trace_input::{self, Ev, Input, PacketMark, SelectArgs};
use crate::view::CmdError;
use faultline_schema::FieldValue;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Output formats of `faultline export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Trace Event Format JSON (Perfetto UI, speedscope, chrome://tracing)
    Chrome,
}

/// Arguments of `faultline export`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Convert a trace for other viewers (Trace Event Format JSON for Perfetto UI, speedscope, chrome://tracing)",
    long_about = "Write the trace in DIR as Trace Event Format JSON (--format chrome), which \
Perfetto UI (ui.perfetto.dev, open the file), speedscope and chrome://tracing read: one track \
per CPU with every event as an instant event whose args are its fields, one track per thread \
where the thread is known (an event field named tid, thread_id or thread), spans recorded as \
span_enter/span_exit events as duration events, losses as markers on the CPU track at the \
packet where they were counted, faulted events flagged. The output is streamed: memory does not \
grow with the trace. --event/--cpu/--from/--to select events as in `faultline view`.",
    after_help = concat!(
        "Examples:\n",
        "  faultline export --format chrome trace/ -o trace.json\n",
        "  faultline export --format chrome trace/ --cpu 0 --from 1ms --to 2ms -o part.json\n\n",
        crate::exit_codes_help!()
    )
)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "chrome")]
    pub format: Format,
    /// Trace directory (holding `metadata` and `stream_<cpu>` files)
    pub dir: PathBuf,
    /// Output file (`-` for standard output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Which tracks get the events whose thread is known (spans always go on thread tracks)
    #[arg(long, value_enum, default_value = "both")]
    pub tracks: Tracks,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Which tracks get the events whose thread is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tracks {
    /// Their CPU's track and their thread's (twice the output for such events)
    Both,
    /// Their CPU's track only
    Cpu,
    /// Their thread's track only (events without a known thread stay on their CPU's)
    Thread,
}

/// How span events are recognized (see the module docs). Adapting to another recorder's
/// naming means changing these constants only.
#[derive(Debug, Clone, Copy)]
pub struct SpanConvention {
    /// Creation: `<LEVEL><new_infix><span name>` after `provider:`.
    pub new_infix: &'static str,
    /// Creation, named by the [`Self::name_field`] field.
    pub new: &'static str,
    pub enter: &'static str,
    pub exit: &'static str,
    pub close: &'static str,
    /// Integer fields holding the span id, in order of preference.
    pub id_fields: &'static [&'static str],
    /// String field holding the span's name (for [`Self::new`] events).
    pub name_field: &'static str,
}

/// The convention `faultline export` uses.
pub const SPANS: SpanConvention = SpanConvention {
    new_infix: ".span.",
    new: "span_new",
    enter: "span_enter",
    exit: "span_exit",
    close: "span_close",
    id_fields: &["span", "span_id", "id"],
    name_field: "name",
};

/// What a span event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOp {
    New,
    Enter,
    Exit,
    Close,
}

impl SpanConvention {
    /// The part of `provider:event` after the provider.
    fn event_part(name: &str) -> &str {
        name.split_once(':').map_or(name, |(_, e)| e)
    }

    /// `(level, span name)` of a creation event named `<LEVEL><new_infix><span name>`.
    fn leveled<'n>(&self, name: &'n str) -> Option<(&'n str, &'n str)> {
        let (level, span) = Self::event_part(name).split_once(self.new_infix)?;
        (!level.is_empty() && level.bytes().all(|b| b.is_ascii_uppercase()) && !span.is_empty())
            .then_some((level, span))
    }

    /// The span operation of an event named `name` (`provider:event`), if it is one.
    pub fn op(&self, name: &str) -> Option<SpanOp> {
        if self.leveled(name).is_some() {
            return Some(SpanOp::New);
        }
        let ev = Self::event_part(name);
        let is = |want: &str| {
            ev == want
                || ev
                    .strip_suffix(want)
                    .is_some_and(|head| head.ends_with('_'))
        };
        [
            (self.new, SpanOp::New),
            (self.enter, SpanOp::Enter),
            (self.exit, SpanOp::Exit),
            (self.close, SpanOp::Close),
        ]
        .into_iter()
        .find_map(|(w, op)| is(w).then_some(op))
    }

    /// The span id of a span event.
    pub fn id(&self, ev: &Ev<'_>) -> Option<u64> {
        self.id_fields.iter().find_map(|want| {
            ev.fields
                .clone()
                .find(|(n, _)| n == want)
                .and_then(|(_, v)| match v {
                    FieldValue::U(x) => Some(x),
                    FieldValue::I(x) => Some(x as u64),
                    _ => None,
                })
        })
    }

    /// The span name carried by a span event (its class name or its name field), if any.
    pub fn name(&self, ev: &Ev<'_>) -> Option<String> {
        if let Some((_, span)) = self.leveled(ev.name) {
            return Some(span.to_string());
        }
        ev.fields
            .clone()
            .find(|(n, _)| *n == self.name_field)
            .and_then(|(_, v)| match v {
                FieldValue::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            })
    }

    /// The args of a span from its creation event: its fields but the id and the name field,
    /// plus `target` and `level` when the class name gives them (JSON object contents).
    fn args(&self, ev: &Ev<'_>) -> String {
        let mut args = String::new();
        let mut skip: Vec<&str> = self.id_fields.to_vec();
        skip.push(self.name_field);
        push_args(&mut args, ev, &skip);
        if let Some((level, _)) = self.leveled(ev.name) {
            let target = ev.name.split_once(':').map_or("", |(t, _)| t);
            if !args.is_empty() {
                args.push(',');
            }
            args.push_str("\"target\":");
            push_str(&mut args, target);
            args.push_str(",\"level\":");
            push_str(&mut args, level);
        }
        args
    }
}

/// Process ids of the two groups of tracks.
const PID_CPUS: u32 = 1;
const PID_THREADS: u32 = 2;

/// A track: `(pid, tid)`.
type Track = (u32, u64);

/// What is known of a live span (from its `span_new`).
struct SpanInfo {
    name: String,
    /// The args object of the `span_new` event, as JSON text.
    args: String,
}

/// An entered span, waiting for its exit.
struct Open {
    ts: u64,
    name: String,
    args: Option<String>,
}

/// What the export counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    /// Events exported (each once, even when also on a thread track).
    pub events: u64,
    /// Duration events (span enter/exit pairs).
    pub spans: u64,
    /// Loss markers.
    pub loss_markers: u64,
    /// REMOTE commit markers.
    pub remote_markers: u64,
    pub faulted: u64,
    /// Span exits without a matching enter (e.g. entered before `--from`).
    pub unmatched_exits: u64,
}

/// The JSON writer: one event object per call, comma-separated.
struct Out<W: Write> {
    w: W,
    first: bool,
    /// Trace start in ticks and the clock frequency, for [`Self::us`].
    t0: u64,
    freq: u64,
    buf: String,
}

impl<W: Write> Out<W> {
    /// Nanoseconds since the trace start of timestamp `ts`.
    fn ns(&self, ts: u64) -> i128 {
        let d = ts as i128 - self.t0 as i128;
        d * 1_000_000_000 / self.freq.max(1) as i128
    }

    /// Microseconds since the trace start of timestamp `ts`, as JSON number text.
    fn us(&self, ts: u64) -> String {
        let mut s = String::new();
        push_us(&mut s, self.ns(ts));
        s
    }

    fn dur_us(&self, from: u64, to: u64) -> String {
        let ns = (to.saturating_sub(from) as i128) * 1_000_000_000 / self.freq.max(1) as i128;
        let mut s = String::new();
        push_us(&mut s, ns);
        s
    }

    /// Write one event object (already rendered in `self.buf`).
    fn emit(&mut self) -> Result<(), CmdError> {
        let sep: &[u8] = if self.first { b"\n" } else { b",\n" };
        self.first = false;
        self.w.write_all(sep).map_err(CmdError::Output)?;
        self.w
            .write_all(self.buf.as_bytes())
            .map_err(CmdError::Output)
    }
}

/// `ns` nanoseconds as microseconds with three decimals (exact).
#[cfg(test)]
fn fmt_us(ns: i128) -> String {
    let mut s = String::new();
    push_us(&mut s, ns);
    s
}

/// Append `ns` nanoseconds as microseconds with three decimals (exact).
fn push_us(out: &mut String, ns: i128) {
    use std::fmt::Write as _;
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    let _ = write!(out, "{sign}{}.{:03}", a / 1000, a % 1000);
}

/// Append `s` as a JSON string (quotes, backslashes and control characters escaped).
fn push_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        out.push_str(&rest[..i]);
        let c = rest[i..].chars().next().unwrap_or(' ');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Append a field value as JSON.
fn push_value(out: &mut String, v: &FieldValue<'_>) {
    use std::fmt::Write as _;
    // Integers beyond 2^53 would lose precision in JavaScript: written as strings.
    const EXACT: u64 = 1 << 53;
    match *v {
        FieldValue::U(x) if x <= EXACT => {
            let _ = write!(out, "{x}");
        }
        FieldValue::U(x) => {
            let _ = write!(out, "\"{x}\"");
        }
        FieldValue::I(x) if x.unsigned_abs() <= EXACT => {
            let _ = write!(out, "{x}");
        }
        FieldValue::I(x) => {
            let _ = write!(out, "\"{x}\"");
        }
        FieldValue::F(x) if x.is_finite() => {
            let _ = write!(out, "{x:?}");
        }
        FieldValue::F(x) => {
            let _ = write!(out, "\"{x}\"");
        }
        FieldValue::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        FieldValue::Str(s) => push_str(out, &String::from_utf8_lossy(s)),
        FieldValue::Bytes(b) => {
            out.push('"');
            for x in b {
                let _ = write!(out, "{x:02x}");
            }
            out.push('"');
        }
    }
}

/// The fields of `ev` as the inside of a JSON object (`"a":1,"b":"x"`), plus `extra`.
fn push_args(out: &mut String, ev: &Ev<'_>, skip: &[&str]) {
    let mut first = true;
    for (name, v) in ev.fields.clone() {
        if skip.contains(&name) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_str(out, name);
        out.push(':');
        push_value(out, &v);
    }
}

/// The provider part of `provider:name`.
fn provider(name: &str) -> &str {
    name.split_once(':').map_or(name, |(p, _)| p)
}

struct Exporter<W: Write> {
    out: Out<W>,
    counts: ExportCounts,
    threads: BTreeSet<u64>,
    cpus: BTreeSet<u32>,
    spans: HashMap<u64, SpanInfo>,
    open: HashMap<(u64, Track), Open>,
    last_ts: u64,
    tracks: Tracks,
    /// The args of the event being exported (rendered once for both of its tracks).
    args: String,
}

impl<W: Write> Exporter<W> {
    fn cpu_track_meta(&mut self, cpu: u32) -> Result<(), CmdError> {
        if self.cpus.insert(cpu) {
            self.out.buf.clear();
            self.out.buf.push_str(&format!(
                "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{PID_CPUS},\"tid\":{cpu},\"args\":{{\"name\":\"CPU {cpu}\"}}}}"
            ));
            self.out.emit()?;
            self.out.buf.clear();
            self.out.buf.push_str(&format!(
                "{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{PID_CPUS},\"tid\":{cpu},\"args\":{{\"sort_index\":{cpu}}}}}"
            ));
            self.out.emit()?;
        }
        Ok(())
    }

    fn thread_track_meta(&mut self, tid: u64) -> Result<(), CmdError> {
        if self.threads.insert(tid) {
            self.out.buf.clear();
            self.out.buf.push_str(&format!(
                "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{PID_THREADS},\"tid\":{tid},\"args\":{{\"name\":\"thread {tid}\"}}}}"
            ));
            self.out.emit()?;
        }
        Ok(())
    }

    fn packet(&mut self, p: &PacketMark) -> Result<(), CmdError> {
        self.cpu_track_meta(p.cpu)?;
        if p.remote_commits > 0 {
            let ts = self.out.us(p.ts_begin);
            let end = self.out.us(p.ts_end);
            let o = &mut self.out.buf;
            o.clear();
            o.push_str(&format!(
                "{{\"name\":\"{} REMOTE commits\",\"cat\":\"faultline,remote\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{ts},\"pid\":{PID_CPUS},\"tid\":{},\"args\":{{\"remote_commits\":{},\"packet_seq_num\":{},\"packet_end_us\":{end}}}}}",
                p.remote_commits, p.cpu, p.remote_commits, p.seq
            ));
            self.out.emit()?;
            self.counts.remote_markers += 1;
        }
        if !p.has_losses() {
            return Ok(());
        }
        let name = match (p.lost_events(), p.lost_packets) {
            (0, n) => format!("lost {n} packets"),
            (n, 0) => format!("lost {n} events"),
            (n, k) => format!("lost {n} events, {k} packets"),
        };
        let ts = self.out.us(p.ts_begin);
        let end = self.out.us(p.ts_end);
        let o = &mut self.out.buf;
        o.clear();
        o.push_str("{\"name\":");
        push_str(o, &name);
        o.push_str(&format!(
            ",\"cat\":\"faultline,loss\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{ts},\"pid\":{PID_CPUS},\"tid\":{},\"cname\":\"bad\",\"args\":{{\"lost_full\":{},\"lost_stalled\":{},\"lost_too_big\":{},\"lost_packets\":{},\"packet_seq_num\":{},\"packet_end_us\":{end}}}}}",
            p.cpu, p.lost_full, p.lost_stalled, p.lost_too_big, p.lost_packets, p.seq
        ));
        self.out.emit()?;
        self.counts.loss_markers += 1;
        Ok(())
    }

    /// One instant event on `track`, its args from `self.args`, plus `cpu` when given.
    fn instant(
        &mut self,
        ev: &Ev<'_>,
        track: Track,
        faulted: bool,
        cpu_arg: Option<u32>,
    ) -> Result<(), CmdError> {
        use std::fmt::Write as _;
        let ns = self.out.ns(ev.ts);
        let o = &mut self.out.buf;
        o.clear();
        o.push_str("{\"name\":");
        push_str(o, ev.name);
        o.push_str(",\"cat\":");
        push_str(o, provider(ev.name));
        if faulted {
            o.pop();
            o.push_str(",faulted\"");
        }
        o.push_str(",\"ph\":\"i\",\"s\":\"t\",\"ts\":");
        push_us(o, ns);
        let _ = write!(o, ",\"pid\":{},\"tid\":{}", track.0, track.1);
        if faulted {
            o.push_str(",\"cname\":\"terrible\"");
        }
        o.push_str(",\"args\":{");
        o.push_str(&self.args);
        let mut sep = !self.args.is_empty();
        if let Some(cpu) = cpu_arg {
            if sep {
                o.push(',');
            }
            let _ = write!(o, "\"cpu\":{cpu}");
            sep = true;
        }
        if faulted {
            if sep {
                o.push(',');
            }
            o.push_str("\"faulted\":true");
        }
        o.push_str("}}");
        self.out.emit()
    }

    fn event(&mut self, ev: &Ev<'_>) -> Result<(), CmdError> {
        self.last_ts = self.last_ts.max(ev.ts);
        self.cpu_track_meta(ev.cpu)?;
        let thread = trace_input::thread_of(ev);
        if let Some(t) = thread {
            self.thread_track_meta(t)?;
        }
        let cpu_track = (PID_CPUS, u64::from(ev.cpu));
        let track = thread.map_or(cpu_track, |t| (PID_THREADS, t));
        match SPANS.op(ev.name) {
            Some(SpanOp::Enter) => return self.enter(ev, track),
            Some(SpanOp::Exit) => return self.exit(ev, track),
            Some(SpanOp::New) => {
                if let Some(id) = SPANS.id(ev) {
                    let args = SPANS.args(ev);
                    let name = SPANS.name(ev).unwrap_or_else(|| format!("span {id}"));
                    self.spans.insert(id, SpanInfo { name, args });
                }
            }
            Some(SpanOp::Close) => {
                if let Some(id) = SPANS.id(ev) {
                    self.spans.remove(&id);
                }
            }
            None => {}
        }
        self.counts.events += 1;
        let faulted = trace_input::is_faulted(ev);
        if faulted {
            self.counts.faulted += 1;
        }
        self.args.clear();
        push_args(&mut self.args, ev, &[]);
        let on_thread = thread.is_some() && self.tracks != Tracks::Cpu;
        if !on_thread || self.tracks == Tracks::Both {
            self.instant(ev, cpu_track, faulted, None)?;
        }
        if on_thread {
            self.instant(ev, track, faulted, Some(ev.cpu))?;
        }
        Ok(())
    }

    fn enter(&mut self, ev: &Ev<'_>, track: Track) -> Result<(), CmdError> {
        self.counts.events += 1;
        let Some(id) = SPANS.id(ev) else {
            return Ok(());
        };
        let (name, args) = match self.spans.get(&id) {
            Some(s) => (s.name.clone(), Some(s.args.clone())),
            None => (SPANS.name(ev).unwrap_or_else(|| format!("span {id}")), None),
        };
        self.open.insert(
            (id, track),
            Open {
                ts: ev.ts,
                name,
                args,
            },
        );
        Ok(())
    }

    fn exit(&mut self, ev: &Ev<'_>, track: Track) -> Result<(), CmdError> {
        self.counts.events += 1;
        let Some(id) = SPANS.id(ev) else {
            return Ok(());
        };
        match self.open.remove(&(id, track)) {
            Some(o) => self.complete(id, track, &o, ev.ts, false),
            None => {
                self.counts.unmatched_exits += 1;
                Ok(())
            }
        }
    }

    /// One complete (duration) event.
    fn complete(
        &mut self,
        id: u64,
        track: Track,
        o: &Open,
        end: u64,
        unfinished: bool,
    ) -> Result<(), CmdError> {
        let ts = self.out.us(o.ts);
        let dur = self.out.dur_us(o.ts, end);
        let b = &mut self.out.buf;
        b.clear();
        b.push_str("{\"name\":");
        push_str(b, &o.name);
        b.push_str(&format!(
            ",\"cat\":\"span\",\"ph\":\"X\",\"ts\":{ts},\"dur\":{dur},\"pid\":{},\"tid\":{},\"args\":{{\"span_id\":{id}",
            track.0, track.1
        ));
        if let Some(a) = o.args.as_deref().filter(|a| !a.is_empty()) {
            b.push(',');
            b.push_str(a);
        }
        if unfinished {
            b.push_str(",\"unfinished\":true");
        }
        b.push_str("}}");
        self.out.emit()?;
        self.counts.spans += 1;
        Ok(())
    }

    /// Close spans still entered, in a stable order.
    fn finish(&mut self) -> Result<(), CmdError> {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by_key(|((id, track), o)| (o.ts, *track, *id));
        let end = self.last_ts;
        for ((id, track), o) in open {
            self.complete(id, track, &o, end.max(o.ts), true)?;
        }
        Ok(())
    }
}

/// Export the selected part of the trace in `args.dir` to `w`.
pub fn run(args: &ExportArgs, w: impl Write) -> Result<ExportCounts, CmdError> {
    let input = Input::open(&args.dir, &args.select, "export")?;
    let freq = input.trace.clock_freq_hz();
    let mut ex = Exporter {
        out: Out {
            w,
            first: true,
            t0: input.start,
            freq,
            buf: String::with_capacity(512),
        },
        counts: ExportCounts::default(),
        threads: BTreeSet::new(),
        cpus: BTreeSet::new(),
        spans: HashMap::new(),
        open: HashMap::new(),
        last_ts: input.start,
        tracks: args.tracks,
        args: String::with_capacity(256),
    };
    let mut head = String::from("{\"displayTimeUnit\":\"ns\",\"otherData\":{");
    head.push_str("\"producer\":\"faultline export\",\"trace\":");
    push_str(&mut head, &args.dir.display().to_string());
    head.push_str(&format!(
        ",\"clock_freq_hz\":{freq},\"trace_start_ticks\":{}}},\"traceEvents\":[",
        input.start
    ));
    ex.out
        .w
        .write_all(head.as_bytes())
        .map_err(CmdError::Output)?;
    for (pid, name) in [(PID_CPUS, "CPUs"), (PID_THREADS, "Threads")] {
        ex.out.buf.clear();
        ex.out.buf.push_str(&format!(
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":\"{name}\"}}}}"
        ));
        ex.out.emit()?;
        ex.out.buf.clear();
        ex.out.buf.push_str(&format!(
            "{{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":{pid},\"tid\":0,\"args\":{{\"sort_index\":{pid}}}}}"
        ));
        ex.out.emit()?;
    }
    for cpu in input.cpus() {
        ex.cpu_track_meta(cpu)?;
    }
    trace_input::packets(&input, |p| ex.packet(p))?;
    trace_input::events(&input, |e| ex.event(e))?;
    ex.finish()?;
    ex.out.w.write_all(b"\n]}\n").map_err(CmdError::Output)?;
    ex.out.w.flush().map_err(CmdError::Output)?;
    Ok(ex.counts)
}

/// `faultline export`: returns the exit code.
pub fn main(args: &ExportArgs) -> i32 {
    let r = if args.output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        run(args, BufWriter::with_capacity(1 << 16, stdout.lock()))
    } else {
        match std::fs::File::create(&args.output) {
            Ok(f) => run(args, BufWriter::with_capacity(1 << 16, f)),
            Err(e) => {
                eprintln!(
                    "faultline export: {}: {}",
                    args.output.display(),
                    crate::view::one_line(&e.to_string())
                );
                return crate::view::EXIT_OUTPUT;
            }
        }
    };
    match r {
        Ok(c) => {
            if args.output.as_os_str() != "-" {
                eprintln!(
                    "faultline export: wrote {} ({} events, {} spans, {} loss markers, {} faulted)",
                    args.output.display(),
                    c.events,
                    c.spans,
                    c.loss_markers,
                    c.faulted
                );
            }
            0
        }
        Err(e) => e.report("export"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names() {
        assert_eq!(SPANS.op("tracing:span_enter"), Some(SpanOp::Enter));
        assert_eq!(SPANS.op("app:my_span_exit"), Some(SpanOp::Exit));
        assert_eq!(SPANS.op("app:span_new"), Some(SpanOp::New));
        assert_eq!(SPANS.op("app:span_close"), Some(SpanOp::Close));
        assert_eq!(SPANS.op("app:myspan_enter"), None);
        assert_eq!(SPANS.op("app:enter"), None);
        assert_eq!(SPANS.op("myapp.server:INFO.span.handle"), Some(SpanOp::New));
        assert_eq!(SPANS.op("myapp:Info.span.handle"), None);
        assert_eq!(SPANS.op("myapp:INFO.event_src/span.rs_3"), None);
        assert_eq!(SPANS.op("myapp:INFO.span."), None);
    }

    #[test]
    fn microseconds() {
        assert_eq!(fmt_us(0), "0.000");
        assert_eq!(fmt_us(1), "0.001");
        assert_eq!(fmt_us(1_234_567), "1234.567");
        assert_eq!(fmt_us(-1500), "-1.500");
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [
            FieldValue::U(7),
            FieldValue::U(u64::MAX),
            FieldValue::I(-3),
            FieldValue::F(0.5),
            FieldValue::F(f64::NAN),
            FieldValue::Bool(true),
            FieldValue::Str(b"a\"\n\xff"),
            FieldValue::Bytes(&[0xde, 0xad]),
        ] {
            push_value(&mut s, &v);
            s.push(' ');
        }
        assert_eq!(
            s,
            "7 \"18446744073709551615\" -3 0.5 \"NaN\" true \"a\\\"\\n\u{fffd}\" \"dead\" "
        );
    }
}
