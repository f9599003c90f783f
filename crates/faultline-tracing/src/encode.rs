//! Encoding one hit of a callsite into its class's payload, and firing it.
//!
//! # Paths
//! * **Straight into the ring buffer** ([`Direct`]), for a class whose fields are all
//!   fixed-size (`i64`, `u64`, `f64`, `bool`): its payload size is a constant of the class,
//!   computed when the class is created ([`fixed_size`]) — whatever the values of a later hit,
//!   each field is written at its declared size (conversions and missing values: the crate's
//!   docs). The hit goes through [`Tracepoint::fire_fields`], the entry point `trace!` uses:
//!   with a recorder as the class's only probe it reserves the record, the values are visited
//!   once and written into the reserved slot with `trace!`'s own field encoders, and the
//!   record is committed — no intermediate buffer, no copy. Nothing but those encoders runs
//!   between reserve and commit: a value of another kind (a `Debug` value in an integer slot)
//!   is the field's default, never formatted.
//! * **Through the thread's buffer**, for a class with string fields: the hit is encoded into
//!   a per-thread buffer and fired as an already encoded payload
//!   ([`Tracepoint::fire_encoded`]: reserve, one copy, commit). Its size is only known once
//!   the values are encoded, and formatting (`Debug`/`Display` values, the `message`) runs
//!   user code, which must not run between reserve and commit: it could log, or take any
//!   time. (Sizing such a hit with a first visit and writing it with a second, straight into
//!   the record, measured slower than the copy for the benchmark's 32-byte string.)
//!
//! Both paths write the same bytes: one [`Encoder`] over a [`Sink`] (the buffer or the
//! reserved record). Tracing visits values in ascending field index; a gap is a missing value
//! written as the type's default, a value out of order is dropped.
//!
//! With other probes on the class (tests, a second consumer) [`Tracepoint::fire_fields`]
//! calls them with the same [`Direct`] payload: each probe sizes and writes it (the visit
//! runs once per write; type mismatches are counted on the first).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use faultline_schema::FieldType;
use faultline_tracepoints::__private::{FieldValue, Fields, Writer};
use faultline_tracepoints::Tracepoint;
use tracing_core::field::{Field, Visit};

use crate::{MAX_STRING, MISMATCHES};

/// Where an [`Encoder`] puts a value's encoding.
pub(crate) trait Sink {
    /// Eight bytes (`i64`, `u64`, `f64`; little-endian).
    fn word(&mut self, v: u64);
    /// One byte (`bool`).
    fn byte(&mut self, v: u8);
    /// A string field: `s` up to its first NUL and at most [`MAX_STRING`] bytes, then a NUL.
    fn str(&mut self, s: &str);
    /// A string field made by formatting (same bounds as [`Sink::str`]).
    fn fmt(&mut self, a: std::fmt::Arguments<'_>);
}

impl<S: Sink + ?Sized> Sink for &mut S {
    #[inline(always)]
    fn word(&mut self, v: u64) {
        (**self).word(v)
    }
    #[inline(always)]
    fn byte(&mut self, v: u8) {
        (**self).byte(v)
    }
    #[inline(always)]
    fn str(&mut self, s: &str) {
        (**self).str(s)
    }
    #[inline(always)]
    fn fmt(&mut self, a: std::fmt::Arguments<'_>) {
        (**self).fmt(a)
    }
}

/// The thread's buffer (or a fresh one).
impl Sink for Vec<u8> {
    #[inline(always)]
    fn word(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline(always)]
    fn byte(&mut self, v: u8) {
        self.push(v);
    }
    #[inline]
    fn str(&mut self, s: &str) {
        self.extend_from_slice(&s.as_bytes()[..bounded_len(s)]);
        self.push(0);
    }
    fn fmt(&mut self, a: std::fmt::Arguments<'_>) {
        let _ = Bounded::new(self).write_fmt(a);
        self.push(0);
    }
}

/// The reserved record (or a probe's buffer), through the encoders `trace!` uses.
pub(crate) struct WriterSink<'a, 'b>(&'a mut Writer<'b>);

impl Sink for WriterSink<'_, '_> {
    #[inline(always)]
    fn word(&mut self, v: u64) {
        v.encode(self.0, 8);
    }
    #[inline(always)]
    fn byte(&mut self, v: u8) {
        v.encode(self.0, 1);
    }
    fn str(&mut self, _: &str) {
        // Not reached (see `fmt`).
        "".encode(self.0, 1);
    }
    fn fmt(&mut self, _: std::fmt::Arguments<'_>) {
        // Not reached: only classes without string fields are written here. Written as an
        // empty string should it ever be, which keeps the record decodable.
        "".encode(self.0, 1);
    }
}

/// Bytes of `s` a string field keeps: up to the first NUL, at most [`MAX_STRING`].
#[inline]
fn bounded_len(s: &str) -> usize {
    if s.len() <= MAX_STRING {
        // `trace!`'s own sizing of a `&str`: up to the first NUL, plus the NUL (a few word
        // operations for short strings, where `memchr`'s dispatch would cost more).
        FieldValue::size(&s) - 1
    } else {
        let b = &s.as_bytes()[..MAX_STRING];
        memchr::memchr(0, b).unwrap_or(MAX_STRING)
    }
}

/// A `fmt::Write` into the buffer that keeps at most [`MAX_STRING`] bytes and stops at a NUL.
pub(crate) struct Bounded<'a> {
    buf: &'a mut Vec<u8>,
    left: usize,
}

impl<'a> Bounded<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Bounded {
            buf,
            left: MAX_STRING,
        }
    }
}

impl std::fmt::Write for Bounded<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let b = &b[..b.len().min(self.left)];
        let (b, stop) = match memchr::memchr(0, b) {
            Some(n) => (&b[..n], true),
            None => (b, false),
        };
        self.buf.extend_from_slice(b);
        self.left -= b.len();
        if stop {
            self.left = 0;
        }
        Ok(())
    }
}

/// The encoded size of a value of `ty` that is the same for every value, if any.
pub(crate) fn type_size(ty: FieldType) -> Option<usize> {
    match ty {
        FieldType::I64 | FieldType::U64 | FieldType::F64 => Some(8),
        FieldType::Bool => Some(1),
        _ => None,
    }
}

/// The payload size of a class with `prefix` `u64` words before fields of `types` when it is
/// the same for every hit (no string field).
pub(crate) fn fixed_size(prefix: usize, types: &[FieldType]) -> Option<usize> {
    types
        .iter()
        .try_fold(prefix * 8, |n, &t| Some(n + type_size(t)?))
}

/// Writes the values of one hit in the class's field order into a [`Sink`] (the
/// faultline-schema encoding). Values come in ascending field index (tracing's `ValueSet`
/// order); a gap is a missing value (default written), a value out of order is dropped and
/// counted (when `counts`).
pub(crate) struct Encoder<'t, S> {
    types: &'t [FieldType],
    sink: S,
    next: usize,
    counts: bool,
}

impl<'t, S: Sink> Encoder<'t, S> {
    #[inline(always)]
    pub(crate) fn new(types: &'t [FieldType], sink: S, counts: bool) -> Self {
        Encoder {
            types,
            sink,
            next: 0,
            counts,
        }
    }

    #[inline(always)]
    fn mismatch(&self) {
        if self.counts {
            MISMATCHES.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prepare for the value of field `i`: fill defaults for skipped fields. `None` if the
    /// value cannot be placed.
    #[inline(always)]
    fn at(&mut self, i: usize) -> Option<FieldType> {
        if i < self.next || i >= self.types.len() {
            self.mismatch();
            return None;
        }
        while self.next < i {
            self.default_value(self.types[self.next]);
            self.next += 1;
        }
        self.next = i + 1;
        Some(self.types[i])
    }

    /// Write the defaults of the fields no value came for.
    #[inline(always)]
    pub(crate) fn finish(&mut self) {
        while self.next < self.types.len() {
            self.default_value(self.types[self.next]);
            self.next += 1;
        }
    }

    #[inline(always)]
    fn default_value(&mut self, ty: FieldType) {
        match type_size(ty) {
            Some(8) => self.sink.word(0),
            Some(_) => self.sink.byte(0),
            // Classes made here only have the types above and strings.
            None => self.sink.str(""),
        }
    }

    /// A value of the wrong kind for its field: counted, the field's default written.
    fn wrong(&mut self, ty: FieldType) {
        self.mismatch();
        self.default_value(ty);
    }

    #[inline(always)]
    fn int(&mut self, f: &Field, v: i128) {
        let Some(ty) = self.at(f.index()) else {
            return;
        };
        match ty {
            FieldType::I64 => self
                .sink
                .word(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64 as u64),
            FieldType::U64 => self.sink.word(v.clamp(0, u64::MAX as i128) as u64),
            FieldType::F64 => self.sink.word((v as f64).to_bits()),
            FieldType::Bool => self.sink.byte((v != 0) as u8),
            FieldType::String => self.sink.fmt(format_args!("{v}")),
            other => self.wrong(other),
        }
    }
}

impl<S: Sink> Visit for Encoder<'_, S> {
    #[inline]
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.int(f, v as i128)
    }
    #[inline]
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.int(f, v as i128)
    }
    fn record_i128(&mut self, f: &Field, v: i128) {
        self.int(f, v)
    }
    fn record_u128(&mut self, f: &Field, v: u128) {
        match self.types.get(f.index()) {
            Some(FieldType::String) | None => self.record_debug(f, &v),
            Some(_) => self.int(f, v.min(i128::MAX as u128) as i128),
        }
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        let Some(ty) = self.at(f.index()) else {
            return;
        };
        match ty {
            FieldType::F64 => self.sink.word(v.to_bits()),
            FieldType::I64 => self.sink.word(v as i64 as u64),
            FieldType::U64 => self.sink.word(v as u64),
            FieldType::Bool => self.sink.byte((v != 0.0) as u8),
            FieldType::String => self.sink.fmt(format_args!("{v}")),
            other => self.wrong(other),
        }
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        let Some(ty) = self.at(f.index()) else {
            return;
        };
        match ty {
            FieldType::Bool => self.sink.byte(v as u8),
            FieldType::String => self.sink.str(if v { "true" } else { "false" }),
            FieldType::F64 => self.sink.word((v as u8 as f64).to_bits()),
            FieldType::I64 | FieldType::U64 => self.sink.word(v as u64),
            other => self.wrong(other),
        }
    }
    #[inline]
    fn record_str(&mut self, f: &Field, v: &str) {
        let Some(ty) = self.at(f.index()) else {
            return;
        };
        if ty == FieldType::String {
            self.sink.str(v);
        } else {
            self.wrong(ty);
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let Some(ty) = self.at(f.index()) else {
            return;
        };
        if ty == FieldType::String {
            self.sink.fmt(format_args!("{v:?}"));
        } else {
            self.wrong(ty);
        }
    }
}

/// A hit written straight into the reserved record: `prefix` words, then the visited values.
/// `size` is exactly what the [`Encoder`] writes (a class constant, or a sizing visit).
struct Direct<'a, R> {
    types: &'a [FieldType],
    prefix: &'a [u64],
    size: usize,
    record: &'a R,
    /// Mismatches are counted on the first write only (each probe writes once).
    counted: Cell<bool>,
}

impl<R: Fn(&mut dyn Visit)> Fields for Direct<'_, R> {
    const MIN_SIZE: usize = 0;
    const RAW: bool = false;
    #[inline(always)]
    fn size(&self) -> usize {
        self.size
    }
    #[inline(always)]
    fn wanted(&self) -> usize {
        self.size
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        self.encode_exact(w)
    }
    #[inline(always)]
    fn encode_exact(&self, w: &mut Writer<'_>) {
        for p in self.prefix {
            p.encode(w, 8);
        }
        let mut e = Encoder::new(self.types, WriterSink(w), !self.counted.replace(true));
        (self.record)(&mut e);
        e.finish();
    }
    #[inline(always)]
    fn touch(&self) {}
}

thread_local! {
    /// The per-thread encoding buffer (grows to the largest event, then reused).
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encode one hit (`prefix` words, then the values `record` visits, typed by `types`) and
/// fire `tp` (module docs: which path). `fixed` is the class's [`fixed_size`].
#[inline(always)]
pub(crate) fn emit(
    tp: &'static Tracepoint,
    types: &[FieldType],
    fixed: Option<usize>,
    prefix: &[u64],
    record: impl Fn(&mut dyn Visit),
) {
    match fixed {
        Some(size) => tp.fire_fields(Direct {
            types,
            prefix,
            size,
            record: &record,
            counted: Cell::new(false),
        }),
        None => emit_buffered(tp, types, prefix, &record),
    }
}

/// The buffer path (module docs). Uses the thread's buffer; a nested call (a `Debug` impl
/// that logs) gets a buffer of its own.
#[inline(never)]
fn emit_buffered(
    tp: &'static Tracepoint,
    types: &[FieldType],
    prefix: &[u64],
    record: &dyn Fn(&mut dyn Visit),
) {
    let run = |buf: &mut Vec<u8>| {
        buf.clear();
        for p in prefix {
            buf.word(*p);
        }
        let mut e = Encoder::new(types, &mut *buf, true);
        record(&mut e);
        e.finish();
        tp.fire_encoded(buf);
    };
    let _ = BUF.try_with(|b| match b.try_borrow_mut() {
        Ok(mut b) => run(&mut b),
        Err(_) => run(&mut Vec::new()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_writer_cuts_at_nul_and_limit() {
        let mut v = Vec::new();
        let _ = write!(Bounded::new(&mut v), "ab\0cd");
        assert_eq!(v, b"ab");
        let mut v = Vec::new();
        let long = "x".repeat(MAX_STRING + 10);
        let _ = write!(Bounded::new(&mut v), "{long}{long}");
        assert_eq!(v.len(), MAX_STRING);
    }

    #[test]
    fn strings_are_cut_at_nul_and_limit_and_fixed_sizes_add_up() {
        let long = "y".repeat(MAX_STRING + 3);
        for (s, kept) in [
            ("", 0),
            ("abc", 3),
            ("a\0bc", 1),
            (long.as_str(), MAX_STRING),
        ] {
            let mut v = Vec::new();
            v.str(s);
            assert_eq!(v.len(), kept + 1, "{s:?}");
            assert_eq!(&v[..kept], &s.as_bytes()[..kept]);
            assert_eq!(v[kept], 0);
        }
        assert_eq!(
            fixed_size(2, &[FieldType::U64, FieldType::Bool, FieldType::F64]),
            Some(33)
        );
        assert_eq!(fixed_size(0, &[FieldType::U64, FieldType::String]), None);
    }
}
