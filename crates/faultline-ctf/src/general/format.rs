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

use super::decode::{read_wide, Item};
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

/// The limbs (little-endian, zero-extended), size, signedness and display base of the
/// [`Item::Wide`] integer of node `n` at bit `pos` of `buf` (`None` if `n` is not an integer
/// or its bits are not in `buf`).
pub fn wide_at(plan: &Plan, buf: &[u8], n: u32, pos: u64) -> Option<(Vec<u64>, u32, bool, u32)> {
    let Some(Kind::Int {
        size,
        signed,
        be,
        base,
        ..
    }) = plan.nodes.get(n as usize).map(|x| &x.kind)
    else {
        return None;
    };
    let limbs = read_wide(buf, pos, *size, *be, (buf.len() as u64).saturating_mul(8)).ok()?;
    Some((limbs, *size, *signed, *base))
}

/// Sign and magnitude (little-endian limbs) of a `size`-bit integer given as zero-extended
/// limbs; negative only when `signed` and bit `size - 1` is set (two's complement).
pub fn wide_magnitude(limbs: &[u64], size: u32, signed: bool) -> (bool, Vec<u64>) {
    let mut m = limbs.to_vec();
    let top = size.saturating_sub(1);
    let neg = signed
        && size > 0
        && m.get((top / 64) as usize)
            .is_some_and(|l| (l >> (top % 64)) & 1 == 1);
    if neg {
        let mut carry = true;
        for l in m.iter_mut() {
            let (v, c) = (!*l).overflowing_add(u64::from(carry));
            *l = v;
            carry = c;
        }
        if !size.is_multiple_of(64) {
            if let Some(t) = m.last_mut() {
                *t &= (1u64 << (size % 64)) - 1;
            }
        }
    }
    (neg, m)
}

/// Append the decimal digits of the magnitude `mag` (little-endian limbs).
pub fn push_decimal(out: &mut String, mag: &[u64]) {
    const CHUNK: u128 = 10_000_000_000_000_000_000; // 10^19
    let mut m = mag.to_vec();
    let mut chunks = Vec::new();
    while m.iter().any(|&l| l != 0) {
        let mut rem: u128 = 0;
        for l in m.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*l);
            *l = (cur / CHUNK) as u64;
            rem = cur % CHUNK;
        }
        chunks.push(rem as u64);
    }
    match chunks.split_last() {
        None => out.push('0'),
        Some((hi, rest)) => {
            let _ = write!(out, "{hi}");
            for c in rest.iter().rev() {
                let _ = write!(out, "{c:019}");
            }
        }
    }
}

/// Append the digits of `limbs` in base `2^bits` (1, 3 or 4), without leading zeros.
fn push_pow2(out: &mut String, limbs: &[u64], bits: u32) {
    let total = limbs.len() as u64 * 64;
    let bit = |k: u64| -> u32 {
        limbs
            .get((k / 64) as usize)
            .map_or(0, |l| ((l >> (k % 64)) & 1) as u32)
    };
    let mut started = false;
    for d in (0..total.div_ceil(u64::from(bits))).rev() {
        let mut v = 0u32;
        for b in (0..u64::from(bits)).rev() {
            v = (v << 1) | bit(d * u64::from(bits) + b);
        }
        if v != 0 || started || d == 0 {
            started = true;
            out.push(char::from_digit(v, 16).unwrap_or('?').to_ascii_uppercase());
        }
    }
}

/// Append a `size`-bit integer wider than 64 bits the way [`push_int`] writes narrower ones:
/// decimal (with its sign when `signed`), or the raw `size`-bit pattern in base 16 (`0x`),
/// 8 (`0`) or 2 (`0b`).
pub fn push_wide(out: &mut String, limbs: &[u64], size: u32, signed: bool, base: u32) {
    match base {
        16 => {
            out.push_str("0x");
            push_pow2(out, limbs, 4);
        }
        8 => {
            out.push('0');
            push_pow2(out, limbs, 3);
        }
        2 => {
            out.push_str("0b");
            push_pow2(out, limbs, 1);
        }
        _ => {
            let (neg, mag) = wide_magnitude(limbs, size, signed);
            if neg {
                out.push('-');
            }
            push_decimal(out, &mag);
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
        Item::Wide(n, pos) => match wide_at(plan, buf, n, pos) {
            Some((limbs, size, signed, base)) => push_wide(out, &limbs, size, signed, base),
            None => out.push('?'),
        },
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
