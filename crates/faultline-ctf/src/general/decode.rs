//! Binary decoding of one scope over a packet buffer, driven by a [`Plan`].
//!
//! Positions are in bits from the start of the packet; every field is first aligned (its
//! alignment, in bits, relative to the packet start) and then read if it lies entirely before
//! `end` (the packet's content end) — otherwise the decoder stops with an error marked
//! `out_of_bounds`. Little-endian fields take bits from the least significant bit of each byte
//! upwards, big-endian fields from the most significant bit downwards (CTF 1.8 bit fields).
//! Values are appended to a flat list of [`Item`]s (strings into a byte arena), so decoding
//! allocates nothing once the buffers have grown; the list is capped at [`MAX_ITEMS`].

use super::layout::{Kind, NodeId, Plan, MAX_ITEMS};

/// One decoded value, or a bracket around the values of a struct, array, sequence or variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item {
    /// Unsigned integer or enum.
    U(NodeId, u64),
    /// Signed integer or enum.
    I(NodeId, i64),
    /// Float (32-bit values widened).
    F(NodeId, f64),
    /// String or text array: byte range in the event's text arena.
    Str(NodeId, u32, u32),
    /// Array or sequence (node) of plain integers: bit position of the first element in the
    /// packet and element count; the values stay in the packet buffer (no item per element).
    Ints(NodeId, u64, u64),
    /// Integer wider than 64 bits: bit position of its value in the packet (the bits stay in
    /// the packet buffer; [`read_wide`] extracts them).
    Wide(NodeId, u64),
    /// Start of a struct, array, sequence or variant (its values follow until [`Item::End`]).
    Begin(NodeId),
    /// End of the values opened by the last [`Item::Begin`].
    End,
}

impl Item {
    /// The node the item belongs to (`None` for [`Item::End`]).
    pub fn node(&self) -> Option<NodeId> {
        match *self {
            Item::U(n, _)
            | Item::I(n, _)
            | Item::F(n, _)
            | Item::Str(n, _, _)
            | Item::Ints(n, _, _)
            | Item::Wide(n, _)
            | Item::Begin(n) => Some(n),
            Item::End => None,
        }
    }
}

/// A decoding error at bit `bit` of the packet.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// Bit position in the packet.
    pub bit: u64,
    /// What is wrong.
    pub msg: String,
    /// The data ended before the field: with more bytes, decoding could go on.
    pub out_of_bounds: bool,
}

fn oob(bit: u64, msg: String) -> DecodeError {
    DecodeError {
        bit,
        msg,
        out_of_bounds: true,
    }
}

fn bad(bit: u64, msg: String) -> DecodeError {
    DecodeError {
        bit,
        msg,
        out_of_bounds: false,
    }
}

/// Mutable state of a stream while decoding: tag/length slots and clock values.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Values of the tag/length targets, by slot (`None`: not decoded yet).
    pub slots: Vec<Option<i128>>,
    /// Current value of each clock, in ticks.
    pub clocks: Vec<u64>,
    /// Clock updated last (the event's timestamp clock).
    pub clock_updated: bool,
}

/// Read `size` bits at bit `pos` (see the module docs).
#[inline]
pub fn read_bits(buf: &[u8], pos: u64, size: u32, be: bool, end: u64) -> Result<u64, DecodeError> {
    let stop = pos.saturating_add(u64::from(size));
    if stop > end {
        return Err(oob(
            pos,
            format!("a {size}-bit field at bit {pos} goes past the content end (bit {end})"),
        ));
    }
    let byte = (pos / 8) as usize;
    let sh = (pos % 8) as u32;
    if sh == 0 && size.is_multiple_of(8) {
        let n = (size / 8) as usize;
        let Some(b) = buf.get(byte..byte + n) else {
            return Err(oob(pos, "field past the end of the buffer".into()));
        };
        let mut w = [0u8; 8];
        if be {
            w[8 - n..].copy_from_slice(b);
            return Ok(u64::from_be_bytes(w));
        }
        w[..n].copy_from_slice(b);
        return Ok(u64::from_le_bytes(w));
    }
    let nbytes = (sh + size).div_ceil(8) as usize;
    let Some(b) = buf.get(byte..byte + nbytes) else {
        return Err(oob(pos, "field past the end of the buffer".into()));
    };
    let mask: u128 = (1u128 << size) - 1;
    let v = if be {
        let acc = b.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x));
        (acc >> (nbytes as u32 * 8 - sh - size)) & mask
    } else {
        let acc = b
            .iter()
            .enumerate()
            .fold(0u128, |a, (i, &x)| a | (u128::from(x) << (8 * i)));
        (acc >> sh) & mask
    };
    Ok(v as u64)
}

/// Read a `size`-bit integer of any width at bit `pos` (same bit order as [`read_bits`]) as
/// little-endian 64-bit limbs, zero-extended (the sign, if any, is bit `size - 1`).
pub fn read_wide(
    buf: &[u8],
    pos: u64,
    size: u32,
    be: bool,
    end: u64,
) -> Result<Vec<u64>, DecodeError> {
    let stop = pos.saturating_add(u64::from(size));
    if stop > end || stop.div_ceil(8) > buf.len() as u64 {
        return Err(oob(
            pos,
            format!("a {size}-bit field at bit {pos} goes past the content end (bit {end})"),
        ));
    }
    let mut limbs = vec![0u64; size.div_ceil(64) as usize];
    for j in 0..u64::from(size) {
        // Value bit j (0 = least significant): little-endian fields store it at stream bit
        // pos + j counted from each byte's LSB, big-endian ones at pos + size - 1 - j counted
        // from each byte's MSB.
        let bit = if be {
            let p = pos + u64::from(size) - 1 - j;
            (buf[(p / 8) as usize] >> (7 - p % 8)) & 1
        } else {
            let p = pos + j;
            (buf[(p / 8) as usize] >> (p % 8)) & 1
        };
        limbs[(j / 64) as usize] |= u64::from(bit) << (j % 64);
    }
    Ok(limbs)
}

/// Fold an `size`-bit clock value into the 64-bit clock (CTF 1.8 clock reconstruction: a value
/// smaller than the clock's low bits means the low bits wrapped).
#[inline]
pub fn update_clock(clock: &mut u64, v: u64, size: u32) {
    if size >= 64 {
        *clock = v;
        return;
    }
    let mask = (1u64 << size) - 1;
    let low = *clock & mask;
    let mut n = (*clock & !mask) | v;
    if v < low {
        n = n.wrapping_add(1u64 << size);
    }
    *clock = n;
}

/// Where a scope's values go.
pub struct Out<'o> {
    /// The decoded values, appended.
    pub items: &'o mut Vec<Item>,
    /// The bytes of strings and text arrays, appended.
    pub text: &'o mut Vec<u8>,
}

impl Out<'_> {
    #[inline]
    fn push(&mut self, it: Item, pos: u64) -> Result<(), DecodeError> {
        if self.items.len() >= MAX_ITEMS {
            return Err(bad(pos, format!("event has more than {MAX_ITEMS} values")));
        }
        self.items.push(it);
        Ok(())
    }
}

fn align_to(pos: u64, a: u32, end: u64) -> Result<u64, DecodeError> {
    let a = u64::from(a.max(1));
    let p = pos.div_ceil(a).saturating_mul(a);
    if p > end {
        return Err(oob(
            pos,
            format!("aligning to {a} bits goes past the content end (bit {end})"),
        ));
    }
    Ok(p)
}

/// Decode node `n` at `*pos`, appending its values to `out`.
pub fn decode(
    plan: &Plan,
    n: NodeId,
    buf: &[u8],
    pos: &mut u64,
    end: u64,
    st: &mut State,
    out: &mut Out,
) -> Result<(), DecodeError> {
    let Some(node) = plan.nodes.get(n as usize) else {
        return Err(bad(*pos, "internal: bad node".into()));
    };
    *pos = align_to(*pos, node.align, end)?;
    match &node.kind {
        &Kind::Int {
            size,
            signed,
            be,
            clock,
            ..
        }
        | &Kind::Enum {
            size,
            signed,
            be,
            clock,
            ..
        } => {
            if size > 64 {
                // Only plain integers get here (the metadata keeps enums, clock-mapped
                // integers, lengths and tags within 64 bits); the value stays in the packet.
                let at = *pos;
                read_wide(buf, at, size, be, end)?;
                out.push(Item::Wide(n, at), at)?;
                *pos += u64::from(size);
                return Ok(());
            }
            let raw = read_bits(buf, *pos, size, be, end)?;
            let at = *pos;
            *pos += u64::from(size);
            if let Some(c) = clock {
                if let Some(cv) = st.clocks.get_mut(c as usize) {
                    update_clock(cv, raw, size);
                    st.clock_updated = true;
                }
            }
            let val: i128 = if signed {
                let s = 64 - size;
                let v = ((raw << s) as i64) >> s;
                out.push(Item::I(n, v), at)?;
                i128::from(v)
            } else {
                out.push(Item::U(n, raw), at)?;
                i128::from(raw)
            };
            if node.slot != u32::MAX {
                if let Some(s) = st.slots.get_mut(node.slot as usize) {
                    *s = Some(val);
                }
            }
        }
        &Kind::Float { double, be } => {
            let size = if double { 64 } else { 32 };
            let raw = read_bits(buf, *pos, size, be, end)?;
            let v = if double {
                f64::from_bits(raw)
            } else {
                f64::from(f32::from_bits(raw as u32))
            };
            out.push(Item::F(n, v), *pos)?;
            *pos += u64::from(size);
        }
        Kind::Str => {
            let start = (*pos / 8) as usize;
            let lim = ((end / 8) as usize).min(buf.len());
            let hay = buf.get(start..lim).unwrap_or(&[]);
            let Some(z) = hay.iter().position(|&b| b == 0) else {
                return Err(oob(
                    *pos,
                    "string without its terminating NUL before the content end".into(),
                ));
            };
            push_text(out, n, &hay[..z], *pos)?;
            *pos += (z as u64 + 1) * 8;
        }
        Kind::Struct(kids) => {
            out.push(Item::Begin(n), *pos)?;
            for &k in kids {
                decode(plan, k, buf, pos, end, st, out)?;
            }
            out.push(Item::End, *pos)?;
        }
        &Kind::Variant { tag, table } => {
            let v = slot(st, tag, *pos, "variant tag")?;
            let Some(t) = plan.variants.get(table as usize) else {
                return Err(bad(*pos, "internal: bad variant".into()));
            };
            let i = t.ranges.partition_point(|r| r.0 <= v);
            let opt = t.ranges[..i]
                .iter()
                .rev()
                .find(|r| r.1 >= v)
                .and_then(|r| t.options.get(r.2 as usize));
            let Some(&o) = opt else {
                return Err(bad(
                    *pos,
                    format!("variant `{}`: tag value {v} selects no option", node.name),
                ));
            };
            out.push(Item::Begin(n), *pos)?;
            decode(plan, o, buf, pos, end, st, out)?;
            out.push(Item::End, *pos)?;
        }
        &Kind::Array { elem, len, text } => {
            array(plan, n, elem, len, text, buf, pos, end, st, out)?
        }
        &Kind::Seq { elem, len, text } => {
            let l = slot(st, len, *pos, "sequence length")?;
            if l < 0 || l > i128::from(u64::MAX) {
                return Err(bad(*pos, format!("sequence `{}`: length {l}", node.name)));
            }
            array(plan, n, elem, l as u64, text, buf, pos, end, st, out)?
        }
    }
    Ok(())
}

fn slot(st: &State, s: u32, pos: u64, what: &str) -> Result<i128, DecodeError> {
    match st.slots.get(s as usize) {
        Some(Some(v)) => Ok(*v),
        _ => Err(bad(pos, format!("{what} field was not decoded"))),
    }
}

fn push_text(out: &mut Out, n: NodeId, s: &[u8], pos: u64) -> Result<(), DecodeError> {
    let a = out.text.len();
    out.text.extend_from_slice(s);
    let b = out.text.len();
    if b > u32::MAX as usize {
        return Err(bad(pos, "event text larger than 4 GiB".into()));
    }
    out.push(Item::Str(n, a as u32, b as u32), pos)
}

#[allow(clippy::too_many_arguments)]
fn array(
    plan: &Plan,
    n: NodeId,
    elem: NodeId,
    len: u64,
    text: bool,
    buf: &[u8],
    pos: &mut u64,
    end: u64,
    st: &mut State,
    out: &mut Out,
) -> Result<(), DecodeError> {
    let Some(e) = plan.nodes.get(elem as usize) else {
        return Err(bad(*pos, "internal: bad node".into()));
    };
    if len > 0 {
        *pos = align_to(*pos, e.align, end)?;
    }
    let need = (e.min_bits as u128) * (len as u128);
    if need > u128::from(end - *pos) {
        return Err(oob(
            *pos,
            format!("array of {len} elements needs {need} bits, past the content end (bit {end})"),
        ));
    }
    if text {
        let start = (*pos / 8) as usize;
        let Some(bytes) = buf.get(start..start + len as usize) else {
            return Err(oob(*pos, "text array past the end of the buffer".into()));
        };
        let z = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        push_text(out, n, &bytes[..z], *pos)?;
        *pos += len * 8;
        return Ok(());
    }
    if let Kind::Int {
        size, clock: None, ..
    } = e.kind
    {
        if e.slot == u32::MAX && size <= 64 && size % e.align.max(1) == 0 {
            out.push(Item::Ints(n, *pos, len), *pos)?;
            *pos += u64::from(size) * len;
            return Ok(());
        }
    }
    out.push(Item::Begin(n), *pos)?;
    for _ in 0..len {
        decode(plan, elem, buf, pos, end, st, out)?;
    }
    out.push(Item::End, *pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_both_orders() {
        // 0b1011_0110: LE 3 bits at 1 = 0b011, BE 3 bits at 1 = 0b011.
        let b = [0b1011_0110u8, 0xff];
        assert_eq!(read_bits(&b, 1, 3, false, 16).unwrap(), 0b011);
        assert_eq!(read_bits(&b, 1, 3, true, 16).unwrap(), 0b011);
        assert_eq!(read_bits(&b, 4, 8, false, 16).unwrap(), 0xfb);
        assert_eq!(read_bits(&b, 4, 8, true, 16).unwrap(), 0x6f);
        assert_eq!(
            read_bits(&[1, 2, 3, 4], 0, 32, true, 32).unwrap(),
            0x01020304
        );
        assert!(read_bits(&b, 10, 8, false, 16).is_err());
        let mut c = 0x1_0000_00ff_u64;
        update_clock(&mut c, 0x10, 8);
        assert_eq!(c, 0x1_0000_0110);
    }
}
