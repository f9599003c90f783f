//! Text rendering of general CTF events, one line each:
//!
//! ```text
//! [+0.000001500] cpu 1 ust_tests:tp: { vtid = 4242 }, { anint = 3, astring = "x", arr = [ [0] = 1, [1] = 2 ] }
//! ```
//!
//! The time prefix is the one of [`crate::format`] (`[+s.ns]` relative, `[ticks]`, `[s.ns]`
//! wall). Then `cpu N`, the event name and its scopes in order — stream event context, event
//! context (each only when the trace has it) and payload — as `{ ... }` groups. Values are
//! written the way babeltrace2's text output writes them, so that lines can be compared:
//! structs `{ a = 1, b = 2 }`, arrays and sequences `[ [0] = 1, [1] = 2 ]`, variants
//! `{ value }` (the selected option), enums `( "LABEL" : container = 3 )` (several labels in braces,
//! `<unknown>` for none), integers in the base the metadata gives (`0x` hex, `0` octal, `0b`
//! binary), floats as C's `%g`, strings and text arrays double-quoted with escapes.

use super::decode::Item;
use super::layout::{display_name, Kind, Plan};
use super::read::{int_elem, CtfEvent, CtfTrace, EventScope};
use crate::format::{escape_bytes, TimeMode};
use std::fmt::Write as _;

/// `%g` of C (6 significant digits, shortest of `%e`/`%f`, trailing zeros removed).
pub fn fmt_g(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str(if v.is_sign_negative() { "-nan" } else { "nan" });
        return;
    }
    if v.is_infinite() {
        out.push_str(if v < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let e = format!("{v:.5e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&x) {
        let _ = write!(
            out,
            "{}e{}{:02}",
            strip(mant),
            if x < 0 { '-' } else { '+' },
            x.abs()
        );
    } else {
        let prec = (5 - x).max(0) as usize;
        out.push_str(&strip(&format!("{v:.prec$}")));
    }
}

fn push_int(out: &mut String, base: u32, u: u64, neg: Option<i64>) {
    match (base, neg) {
        (16, _) => {
            let _ = write!(out, "0x{u:X}");
        }
        (8, _) => {
            let _ = write!(out, "0{u:o}");
        }
        (2, _) => {
            let _ = write!(out, "0b{u:b}");
        }
        (_, Some(i)) => {
            let _ = write!(out, "{i}");
        }
        _ => {
            let _ = write!(out, "{u}");
        }
    }
}

fn node_base(plan: &Plan, n: u32) -> u32 {
    match plan.nodes.get(n as usize).map(|x| &x.kind) {
        Some(Kind::Int { base, .. }) | Some(Kind::Enum { base, .. }) => *base,
        _ => 10,
    }
}

/// Append the value starting at `ev`'s item `items[*i]` (an item of one of its scopes, see
/// [`CtfEvent::scope_items`]) in babeltrace2's syntax, and move `*i` past it (past the
/// matching [`Item::End`] for a struct, array, sequence or variant).
pub fn push_item_value(out: &mut String, ev: &CtfEvent<'_>, items: &[Item], i: &mut usize) {
    value(out, ev.trace.plan(), items, ev.text(), ev.packet(), i);
}

/// Render the value starting at `items[*i]`.
fn value(out: &mut String, plan: &Plan, items: &[Item], text: &[u8], buf: &[u8], i: &mut usize) {
    let Some(&it) = items.get(*i) else {
        return;
    };
    *i += 1;
    match it {
        Item::U(n, v) => scalar(out, plan, n, v, None),
        Item::I(n, v) => scalar(out, plan, n, v as u64, Some(v)),
        Item::F(_, v) => fmt_g(out, v),
        Item::Str(_, a, b) => {
            out.push('"');
            escape_bytes(out, text.get(a as usize..b as usize).unwrap_or(&[]));
            out.push('"');
        }
        Item::End => {}
        Item::Ints(n, start, len) => {
            out.push('[');
            for k in 0..len {
                let _ = write!(out, "{}[{k}] = ", if k == 0 { " " } else { ", " });
                match int_elem(plan, buf, n, start, k) {
                    Some(Item::U(e, v)) => scalar(out, plan, e, v, None),
                    Some(Item::I(e, v)) => scalar(out, plan, e, v as u64, Some(v)),
                    _ => break,
                }
            }
            out.push_str(" ]");
        }
        Item::Begin(n) => match plan.nodes.get(n as usize).map(|x| &x.kind) {
            Some(Kind::Struct(_)) => {
                out.push('{');
                let mut first = true;
                while *i < items.len() && items[*i] != Item::End {
                    out.push_str(if first { " " } else { ", " });
                    first = false;
                    push_name(out, plan, &items[*i]);
                    value(out, plan, items, text, buf, i);
                }
                *i += 1;
                out.push_str(" }");
            }
            Some(Kind::Variant { .. }) => {
                // babeltrace2 writes the selected option's value without its name.
                out.push_str("{ ");
                value(out, plan, items, text, buf, i);
                *i += 1;
                out.push_str(" }");
            }
            _ => {
                out.push('[');
                let mut k = 0usize;
                while *i < items.len() && items[*i] != Item::End {
                    let _ = write!(out, "{}[{k}] = ", if k == 0 { " " } else { ", " });
                    k += 1;
                    value(out, plan, items, text, buf, i);
                }
                *i += 1;
                out.push_str(" ]");
            }
        },
    }
}

fn push_name(out: &mut String, plan: &Plan, it: &Item) {
    let name = it
        .node()
        .and_then(|n| plan.nodes.get(n as usize))
        .map_or("", |n| display_name(&n.name));
    out.push_str(name);
    out.push_str(" = ");
}

fn scalar(out: &mut String, plan: &Plan, n: u32, u: u64, i: Option<i64>) {
    let Some(node) = plan.nodes.get(n as usize) else {
        return;
    };
    if let Kind::Enum { maps, .. } = node.kind {
        let v = i.map_or(i128::from(u), i128::from);
        let labels: Vec<&str> = plan
            .enums
            .get(maps as usize)
            .into_iter()
            .flatten()
            .filter(|m| m.lo <= v && v <= m.hi)
            .map(|m| m.label.as_str())
            .collect();
        out.push_str("( ");
        match labels.as_slice() {
            [] => out.push_str("<unknown>"),
            [l] => {
                let _ = write!(out, "\"{l}\"");
            }
            ls => {
                out.push_str("{ ");
                for (k, l) in ls.iter().enumerate() {
                    let _ = write!(out, "{}\"{l}\"", if k > 0 { ", " } else { "" });
                }
                out.push_str(" }");
            }
        }
        out.push_str(" : container = ");
        push_int(out, node_base(plan, n), u, i);
        out.push_str(" )");
        return;
    }
    push_int(out, node_base(plan, n), u, i);
}

/// Append the `{ ... }` of one scope (nothing when the scope is absent).
pub fn push_scope(out: &mut String, ev: &CtfEvent<'_>, s: EventScope) -> bool {
    let items = ev.scope_items(s);
    if items.is_empty() {
        return false;
    }
    let mut i = 0;
    value(out, ev.trace.plan(), items, ev.text(), ev.packet(), &mut i);
    true
}

/// Append one event's line (without newline) to `out` (see the module docs).
pub fn push_ctf_event(out: &mut String, trace: &CtfTrace, ev: &CtfEvent<'_>, mode: TimeMode) {
    out.push('[');
    let ts = ev.ts;
    let secs = |out: &mut String, ns: i128, plus: bool| {
        let sign = if ns < 0 {
            "-"
        } else if plus {
            "+"
        } else {
            ""
        };
        let a = ns.unsigned_abs();
        let _ = write!(out, "{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000);
    };
    match mode {
        TimeMode::Wall => secs(out, trace.wall_ns(ts), false),
        TimeMode::RelativeTo(t0) => {
            let d = if ts >= t0 {
                trace.ticks_to_ns(ts - t0) as i128
            } else {
                -(trace.ticks_to_ns(t0 - ts) as i128)
            };
            secs(out, d, true)
        }
        TimeMode::Ticks => {
            let _ = write!(out, "{ts}");
        }
    }
    let _ = write!(out, "] cpu {} {}: ", ev.cpu, ev.name);
    let mut any = false;
    for s in [EventScope::StreamContext, EventScope::Context] {
        if push_scope(out, ev, s) {
            out.push_str(", ");
            any = true;
        }
    }
    if !push_scope(out, ev, EventScope::Payload) {
        if any {
            out.truncate(out.len() - 2);
        } else {
            out.push_str("{}");
        }
    }
}
