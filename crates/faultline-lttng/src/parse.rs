//! Parsers for the text the harness reads back: the benchmark program's result line,
//! `lttng list SESSION --channel=CHANNEL`, and `babeltrace2`'s output. All of them are
//! total: malformed input gives an error or `None`, never a panic.

use crate::EventKind;

/// Prefix of the machine-readable line printed by the C benchmark program.
pub(crate) const RESULT_PREFIX: &str = "FAULTLINE_LTTNG_RESULT";

/// One parsed `FAULTLINE_LTTNG_RESULT` line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResultLine {
    pub kind: EventKind,
    pub threads: usize,
    pub events_per_thread: u64,
    pub warmup_per_thread: u64,
    pub pinned: bool,
    pub emitted: u64,
    pub ns_per_event: Vec<f64>,
}

/// Finds the last `FAULTLINE_LTTNG_RESULT` line in `stdout` and parses it.
pub(crate) fn parse_result_output(stdout: &str) -> Result<ResultLine, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(RESULT_PREFIX))
        .ok_or_else(|| format!("no `{RESULT_PREFIX}` line in benchmark output"))?;
    parse_result_line(line)
}

/// Parses `FAULTLINE_LTTNG_RESULT key=value ...`.
pub(crate) fn parse_result_line(line: &str) -> Result<ResultLine, String> {
    let mut words = line.split_whitespace();
    if words.next() != Some(RESULT_PREFIX) {
        return Err(format!("not a result line: {line:?}"));
    }
    let mut kind = None;
    let mut threads = None;
    let mut events = None;
    let mut warmup = None;
    let mut pinned = None;
    let mut emitted = None;
    let mut ns = None;
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("malformed field {word:?} in result line"))?;
        let bad = |what: &str| format!("bad {what} value {value:?} in result line");
        match key {
            "kind" => kind = Some(value.parse::<EventKind>().map_err(|_| bad(key))?),
            "threads" => threads = Some(value.parse::<usize>().map_err(|_| bad(key))?),
            "events_per_thread" => events = Some(value.parse::<u64>().map_err(|_| bad(key))?),
            "warmup_per_thread" => warmup = Some(value.parse::<u64>().map_err(|_| bad(key))?),
            "pinned" => {
                pinned = Some(match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad(key)),
                })
            }
            "emitted" => emitted = Some(value.parse::<u64>().map_err(|_| bad(key))?),
            "ns_per_event" => {
                let mut list = Vec::new();
                for item in value.split(',') {
                    let v = item.parse::<f64>().map_err(|_| bad(key))?;
                    if !v.is_finite() || v < 0.0 {
                        return Err(bad(key));
                    }
                    list.push(v);
                }
                ns = Some(list);
            }
            // Unknown keys are ignored so the C side can grow.
            _ => {}
        }
    }
    let missing = |what: &str| format!("result line lacks `{what}`: {line:?}");
    let parsed = ResultLine {
        kind: kind.ok_or_else(|| missing("kind"))?,
        threads: threads.ok_or_else(|| missing("threads"))?,
        events_per_thread: events.ok_or_else(|| missing("events_per_thread"))?,
        warmup_per_thread: warmup.ok_or_else(|| missing("warmup_per_thread"))?,
        pinned: pinned.ok_or_else(|| missing("pinned"))?,
        emitted: emitted.ok_or_else(|| missing("emitted"))?,
        ns_per_event: ns.ok_or_else(|| missing("ns_per_event"))?,
    };
    if parsed.ns_per_event.len() != parsed.threads {
        return Err(format!(
            "result line has {} per-thread values for {} threads",
            parsed.ns_per_event.len(),
            parsed.threads
        ));
    }
    let expected = (parsed.threads as u64).checked_mul(
        parsed
            .events_per_thread
            .saturating_add(parsed.warmup_per_thread),
    );
    if expected != Some(parsed.emitted) {
        return Err(format!(
            "result line: emitted={} does not match threads x (events + warmup)",
            parsed.emitted
        ));
    }
    Ok(parsed)
}

/// Median of a list of finite values; the mean of the two middle values for an even
/// count. `None` for an empty list.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        Some(sorted[mid])
    } else {
        Some((sorted[mid - 1] + sorted[mid]) / 2.0)
    }
}

/// What `lttng list SESSION --channel=CHANNEL` said about the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChannelListing {
    pub event_loss_mode: Option<String>,
    pub subbuf_size: Option<u64>,
    pub subbuf_count: Option<u64>,
    pub output_mode: Option<String>,
    pub discarded_events: Option<u64>,
    pub lost_packets: Option<u64>,
}

/// Parses the channel attributes and statistics printed by `lttng list` (2.13 text
/// format: `Sub-buffer size:  524288 bytes`, `Discarded events: 0`, ...). Keys that are
/// absent or unparsable stay `None`.
pub(crate) fn parse_channel_listing(text: &str) -> ChannelListing {
    let mut out = ChannelListing::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        let first_number = || {
            value
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<u64>().ok())
        };
        match key.trim() {
            "Event-loss mode" if out.event_loss_mode.is_none() => {
                out.event_loss_mode = Some(value.to_string())
            }
            "Sub-buffer size" if out.subbuf_size.is_none() => out.subbuf_size = first_number(),
            "Sub-buffer count" if out.subbuf_count.is_none() => out.subbuf_count = first_number(),
            "Output mode" if out.output_mode.is_none() => out.output_mode = Some(value.to_string()),
            "Discarded events" if out.discarded_events.is_none() => {
                out.discarded_events = first_number()
            }
            "Lost packets" if out.lost_packets.is_none() => out.lost_packets = first_number(),
            _ => {}
        }
    }
    out
}

/// Counts of what `babeltrace2` (text sink) reported for a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BabeltraceCounts {
    /// Event lines of the `faultline_bench` provider on stdout.
    pub events: u64,
    /// Sum of the `Tracer discarded N events` warnings; `None` if babeltrace2 said only
    /// that the tracer *may* have discarded events (count unknown).
    pub discarded_events: Option<u64>,
    /// Sum of the `Tracer lost N trace packets` warnings.
    pub lost_packets: u64,
}

/// True if a pretty-printed babeltrace2 line is an event of our provider:
/// `[12:00:00.000000000] (+0.000000001) host faultline_bench:int_event: { ... }`.
pub(crate) fn is_bench_event_line(line: &str) -> bool {
    line.starts_with('[') && line.contains(" faultline_bench:")
}

/// Parses babeltrace2's stderr for discarded-events and lost-packets warnings
/// (`WARNING: Tracer discarded 3583 events between [...] and [...] in trace ...`).
pub(crate) fn parse_babeltrace_warnings(stderr: &str) -> (Option<u64>, u64) {
    let mut discarded: Option<u64> = Some(0);
    let mut lost_packets: u64 = 0;
    for line in stderr.lines() {
        if line.contains("Tracer may have discarded") {
            // The tracer cannot tell how many: the total is unknown.
            discarded = None;
            continue;
        }
        if line.contains("Tracer discarded ") {
            match number_after(line, "Tracer discarded ") {
                Some(n) if rest_after_number(line, "Tracer discarded ").starts_with("event") => {
                    discarded = discarded.map(|d| d.saturating_add(n));
                }
                // A discard warning we cannot read: the total is unknown.
                _ => discarded = None,
            }
        } else if line.contains("Tracer lost ") {
            if let Some(n) = number_after(line, "Tracer lost ") {
                lost_packets = lost_packets.saturating_add(n);
            }
        }
    }
    (discarded, lost_packets)
}

fn number_after(line: &str, marker: &str) -> Option<u64> {
    let start = line.find(marker)? + marker.len();
    let digits: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn rest_after_number<'a>(line: &'a str, marker: &str) -> &'a str {
    let Some(pos) = line.find(marker) else {
        return "";
    };
    line[pos + marker.len()..]
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trip() {
        let out = "noise\nFAULTLINE_LTTNG_RESULT kind=string threads=2 events_per_thread=200000 \
                   warmup_per_thread=10000 pinned=1 emitted=420000 ns_per_event=131.515,123.233\n";
        let r = parse_result_output(out).unwrap();
        assert_eq!(r.kind, EventKind::String);
        assert_eq!(r.threads, 2);
        assert_eq!(r.events_per_thread, 200_000);
        assert_eq!(r.warmup_per_thread, 10_000);
        assert!(r.pinned);
        assert_eq!(r.emitted, 420_000);
        assert_eq!(r.ns_per_event, vec![131.515, 123.233]);
    }

    #[test]
    fn result_line_rejects_garbage() {
        let bad = [
            "",
            "hello",
            "FAULTLINE_LTTNG_RESULT",
            "FAULTLINE_LTTNG_RESULT kind=int threads=1",
            "FAULTLINE_LTTNG_RESULT kind=float threads=1 events_per_thread=1 warmup_per_thread=0 pinned=1 emitted=1 ns_per_event=1",
            "FAULTLINE_LTTNG_RESULT kind=int threads=2 events_per_thread=1 warmup_per_thread=0 pinned=1 emitted=2 ns_per_event=1",
            "FAULTLINE_LTTNG_RESULT kind=int threads=1 events_per_thread=1 warmup_per_thread=0 pinned=1 emitted=5 ns_per_event=1",
            "FAULTLINE_LTTNG_RESULT kind=int threads=1 events_per_thread=1 warmup_per_thread=0 pinned=2 emitted=1 ns_per_event=1",
            "FAULTLINE_LTTNG_RESULT kind=int threads=1 events_per_thread=1 warmup_per_thread=0 pinned=1 emitted=1 ns_per_event=NaN",
            "FAULTLINE_LTTNG_RESULT kind=int threads=1 events_per_thread=1 warmup_per_thread=0 pinned=1 emitted=1 ns_per_event=-3",
            "FAULTLINE_LTTNG_RESULT kind=int threads=18446744073709551615 events_per_thread=18446744073709551615 warmup_per_thread=0 pinned=1 emitted=1 ns_per_event=1",
            "FAULTLINE_LTTNG_RESULT novalue",
        ];
        for line in bad {
            assert!(parse_result_output(line).is_err(), "accepted {line:?}");
        }
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn channel_listing() {
        let text = "\
Recording session s1: [inactive]
    Trace output: /tmp/x

=== Domain: User space ===

Buffering scheme: per-user

Channels:
-------------
- faultline: [enabled]

    Attributes:
      Event-loss mode:  discard
      Sub-buffer size:  524288 bytes
      Sub-buffer count: 4
      Switch timer:     inactive
      Read timer:       inactive
      Monitor timer:    1000000 us
      Blocking timeout: 0 us
      Trace file count: 1 per stream
      Trace file size:  unlimited
      Output mode:      mmap

    Statistics:
      Discarded events: 3583

    Recording event rules:
      faultline_bench:* (type: tracepoint) [enabled]
";
        let l = parse_channel_listing(text);
        assert_eq!(l.event_loss_mode.as_deref(), Some("discard"));
        assert_eq!(l.subbuf_size, Some(524_288));
        assert_eq!(l.subbuf_count, Some(4));
        assert_eq!(l.output_mode.as_deref(), Some("mmap"));
        assert_eq!(l.discarded_events, Some(3583));
        assert_eq!(l.lost_packets, None);
        assert_eq!(parse_channel_listing(""), ChannelListing::default());
        assert_eq!(
            parse_channel_listing("Sub-buffer size: lots\n:\n::").subbuf_size,
            None
        );
    }

    #[test]
    fn babeltrace_warnings() {
        let stderr = "\
WARNING: Tracer discarded 3583 events between [02:48:00.386800414] and [02:48:00.388239138] in trace \"vm/ust/uid/65534/64-bit\" (UUID: bb882929) within stream \"/tmp/ch_1\" (stream class ID: 0, stream ID: 1).
WARNING: Tracer discarded 1 event between [02:48:00.4] and [02:48:00.5] in trace \"t\".
WARNING: Tracer lost 2 trace packets between [a] and [b].
unrelated line
";
        assert_eq!(parse_babeltrace_warnings(stderr), (Some(3584), 2));
        assert_eq!(parse_babeltrace_warnings(""), (Some(0), 0));
        assert_eq!(
            parse_babeltrace_warnings(
                "WARNING: Tracer may have discarded events\nWARNING: Tracer discarded 5 events"
            ),
            (None, 0)
        );
        assert_eq!(
            parse_babeltrace_warnings("Tracer discarded 99999999999999999999999 events"),
            (None, 0)
        );
    }

    #[test]
    fn event_line_matching() {
        assert!(is_bench_event_line(
            "[02:48:00.381679339] (+?.?????????) vm faultline_bench:string_event: { cpu_id = 0 }, { seq = 0, msg = \"x\" }"
        ));
        assert!(!is_bench_event_line(
            "[02:48:00.381679339] (+?.?????????) vm lttng_ust_statedump:start: { }"
        ));
        assert!(!is_bench_event_line("WARNING: faultline_bench:int_event"));
    }
}
