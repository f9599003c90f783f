//! One-line text rendering of an event (`faultline view`).
//!
//! ```text
//! [1700000000.000001234] cpu 1 myapp:request: { id = 42, path = "/a\"b", ok = true, blob = [de ad] }
//! ```
//!
//! The time is either wall-clock (`[seconds.nanoseconds]` since the Unix epoch, from the clock
//! offset in the metadata; negative values get a `-` sign), relative to a reference
//! timestamp (`[+seconds.nanoseconds]`, `[-...]` before it) or the raw clock value in ticks
//! (`[123456789]`). Values: integers in decimal, floats
//! in Rust's shortest round-trip form, bools `true`/`false`, strings double-quoted with `\"`,
//! `\\`, `\n`, `\r`, `\t` and `\xHH` (other control bytes and invalid UTF-8) escapes, bytes as
//! space-separated lowercase hex in brackets (`[]` when empty).

use crate::reader::{Event, EventRef, Trace};
use faultline_schema::{FieldValue, Value};
use std::fmt::Write as _;

/// How to print the timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// Seconds since the Unix epoch.
    Wall,
    /// Seconds relative to this timestamp (ticks), e.g. the first event's.
    RelativeTo(u64),
    /// The timestamp itself, in clock ticks.
    Ticks,
}

fn push_secs(out: &mut String, ns: i128, sign_always: bool) {
    let sign = if ns < 0 {
        "-"
    } else if sign_always {
        "+"
    } else {
        ""
    };
    let a = ns.unsigned_abs();
    let _ = write!(out, "{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000);
}

/// Escape a byte string for display, without the quotes.
pub fn escape_bytes(out: &mut String, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// Render one value.
pub fn format_value(out: &mut String, v: &Value) {
    format_field_value(out, v.as_field());
}

/// Render one borrowed value.
pub fn format_field_value(out: &mut String, v: FieldValue<'_>) {
    match v {
        FieldValue::U(x) => {
            let _ = write!(out, "{x}");
        }
        FieldValue::I(x) => {
            let _ = write!(out, "{x}");
        }
        FieldValue::F(x) => {
            let _ = write!(out, "{x}");
        }
        FieldValue::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        FieldValue::Str(s) => {
            out.push('"');
            escape_bytes(out, s);
            out.push('"');
        }
        FieldValue::Bytes(b) => {
            out.push('[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{x:02x}");
            }
            out.push(']');
        }
    }
}

/// Append one event's line (without newline) to `out`.
pub fn push_event<'v, 'n>(
    out: &mut String,
    trace: &Trace,
    (ts, cpu, name): (u64, u32, &str),
    fields: impl Iterator<Item = (&'n str, FieldValue<'v>)>,
    mode: TimeMode,
) {
    out.push('[');
    match mode {
        TimeMode::Wall => push_secs(out, trace.wall_ns(ts), false),
        TimeMode::RelativeTo(t0) => {
            let d = if ts >= t0 {
                trace.ticks_to_ns(ts - t0) as i128
            } else {
                -(trace.ticks_to_ns(t0 - ts) as i128)
            };
            push_secs(out, d, true);
        }
        TimeMode::Ticks => {
            let _ = write!(out, "{ts}");
        }
    }
    // "cid N" when the streams are per concurrency id (env `faultline_buffers = "cid"`).
    let per_cid = trace.schema().env.iter().any(|(k, v)| {
        k == "faultline_buffers" && matches!(v, crate::EnvValue::Str(s) if s == "cid")
    });
    let label = if per_cid { "cid" } else { "cpu" };
    let _ = write!(out, "] {label} {cpu} {name}: {{");
    let mut any = false;
    for (name, v) in fields {
        out.push_str(if any { ", " } else { " " });
        any = true;
        out.push_str(name);
        out.push_str(" = ");
        format_field_value(out, v);
    }
    out.push_str(if any { " }" } else { "}" });
}

/// Append the line of a borrowed event (see [`crate::reader::Events::next_ref`]) to `out`.
pub fn push_event_ref(out: &mut String, trace: &Trace, ev: &EventRef<'_, '_>, mode: TimeMode) {
    push_event(out, trace, (ev.ts, ev.cpu, ev.name), ev.fields(), mode);
}

/// Render one event as a line (without newline).
pub fn format_event(trace: &Trace, ev: &Event<'_>, mode: TimeMode) -> String {
    let mut out = String::with_capacity(64);
    let fields = ev.fields.iter().map(|(n, v)| (*n, v.as_field()));
    push_event(&mut out, trace, (ev.ts, ev.cpu, ev.name), fields, mode);
    out
}
