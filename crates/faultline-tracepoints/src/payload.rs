//! Event payloads: what a tracepoint call hands its probes, and its byte encoding.
//!
//! The encoding is the contract with readers and is defined in `faultline-schema`: fields back
//! to back, little-endian, no padding; `String` = bytes + NUL, `Bytes` = `u32` length + bytes;
//! raw kinds ([`CStrPtr`], [`RawBuf`]) are preceded by a `U32` `<name>_faulted` field, and a
//! [`RawBuf`] also by a `U64` `<name>_truncated` field (after `_faulted`).
//!
//! # Two phases
//! A probe that records an event first calls [`Payload::size`] (may touch and fault in the
//! source: `strnlen` of C strings, with preemption allowed in the ring buffer's terms), reserves
//! that many bytes, then calls [`Payload::write`] into the reservation. Between the two the
//! traced program may change its memory (a string may grow, shrink, or be unmapped). `write`
//! therefore never trusts `size`: it writes **at most `dst.len()` bytes**. Each field gets a
//! budget: what is left minus what the later fields are expected to need (their exact size,
//! except a C string behind a later [`CStrPtr`], which counts as its 5-byte minimum because
//! measuring it would read untrusted memory again), but never less than its own minimum and
//! never so much that a later field loses its minimum (fixed-size: its size; string: its NUL;
//! bytes: its length word; raw kinds: plus the `_faulted` word, and the `_truncated` word for a
//! [`RawBuf`]). A field that no longer fits
//! its budget is cut (strings stay NUL-terminated), and [`WriteOutcome`] reports it. So a
//! string that grew after sizing is cut to the room it was sized for, and the fields after it
//! are intact. The part of `dst` after the encoding is zero-filled. If nothing changed, `write`
//! produces exactly `size()` bytes.
//!
//! # Field rules
//! * `&str`: its bytes up to (not including) the first NUL, if it contains one (the encoding
//!   cannot carry an interior NUL; this counts as truncation).
//! * `&[u8]`: at most `u32::MAX` bytes.
//! * [`CStrPtr`]: read with [`strnlen_user`]/[`strncpy_from_user`], at most
//!   [`MAX_CSTR_LEN`] bytes before the NUL. `<name>_faulted` is 0 for a clean read, 1 when
//!   reading stopped at an unreadable byte (null pointer included): the string is cut there and
//!   the length of the rest cannot be known. A string longer than the limit is cut (truncation,
//!   not a fault).
//! * [`RawBuf`]: `min(len, MAX_RAW_LEN)` bytes read with [`copy_from_user`] (fewer if the
//!   field's budget is smaller); `<name>_faulted` is the number of those bytes that could not
//!   be read (zero-filled); `<name>_truncated` is the number of bytes of the buffer that were
//!   **not recorded** (`len` minus the recorded length: cut by [`MAX_RAW_LEN`] or by the
//!   budget), 0 when the whole buffer was recorded.

use std::ffi::c_char;

use faultline_schema::FieldType;

use crate::uaccess::{copy_from_user, strncpy_from_user, strnlen_user};

/// Longest C string recorded (bytes before the NUL).
pub const MAX_CSTR_LEN: usize = 4095;
/// Most bytes recorded from one [`RawBuf`].
pub const MAX_RAW_LEN: usize = 1 << 16;

/// A NUL-terminated C string in memory the probe must not trust (may be null or dangling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CStrPtr(pub *const c_char);

/// `len` bytes at a pointer the probe must not trust (may be null, dangling, partly mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawBuf(pub *const u8, pub usize);

/// What [`Payload::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Bytes of encoding written at the start of `dst` (the rest of `dst` is zero-filled).
    pub written: usize,
    /// Bytes of raw fields that could not be read (sum of the `_faulted` fields).
    pub faulted: usize,
    /// Some field was cut to fit `dst` or a limit (the encoding is still valid), or `dst` was
    /// shorter than the minimum encoding (then `written == 0` and nothing valid was written).
    pub truncated: bool,
}

/// An event's payload as seen by probes.
pub trait Payload {
    /// Encoded size. May read (and fault in) the source memory of raw fields: the sizing phase.
    fn size(&self) -> usize;
    /// Encode into `dst`: never more than `dst.len()` bytes (exactly `size()` if nothing changed
    /// since `size()` and `dst.len() == size()`); raw fields are read with the fault-tolerant
    /// copies. Returns bytes written and bytes that faulted.
    fn write(&self, dst: &mut [u8]) -> WriteOutcome;
    /// Sizing plus pre-faulting: returns [`Payload::size`] after touching every page of the
    /// raw fields' source memory (with the fault-tolerant copies), so that a following
    /// [`Payload::write`] finds it resident. The `prefault-restart` copy strategy's first step.
    fn prefault(&self) -> usize {
        self.size()
    }
}

/// Bounded writer used by the field encoders. Never writes outside its buffer.
#[doc(hidden)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    faulted: usize,
    truncated: bool,
}

impl<'a> Writer<'a> {
    /// A writer over `buf` (also used by `faultline-tracing`'s direct encoding).
    #[inline(always)]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            faulted: 0,
            truncated: false,
        }
    }

    /// Bytes not yet written.
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Append `bytes`, as many as fit.
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.pos);
        copy_small(&mut self.buf[self.pos..self.pos + n], &bytes[..n]);
        self.pos += n;
        if n < bytes.len() {
            self.truncated = true;
        }
    }

    /// Append a fixed-size value: a constant-length copy (no `memcpy` call) when it fits.
    #[inline(always)]
    fn put_array<const N: usize>(&mut self, bytes: &[u8; N]) {
        match self.buf.get_mut(self.pos..self.pos + N) {
            Some(d) => {
                d.copy_from_slice(bytes);
                self.pos += N;
            }
            None => self.put(bytes),
        }
    }

    fn put_u32_at(&mut self, at: usize, v: u32) {
        if let Some(s) = self.buf.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Zero-fill what was not written; what was written, faulted and cut.
    #[inline(always)]
    pub fn finish(self) -> WriteOutcome {
        let pos = self.pos;
        if pos < self.buf.len() {
            self.buf[pos..].fill(0);
        }
        WriteOutcome {
            written: pos,
            faulted: self.faulted,
            truncated: self.truncated,
        }
    }
}

/// One payload field type: its schema type and its encoding. Implemented for the supported
/// argument types; the macros use it to build the `EventDesc` and the payload.
#[doc(hidden)]
pub trait FieldValue {
    /// Schema type of the value field.
    const TYPE: FieldType;
    /// Preceded by a `U32` `<name>_faulted` field.
    const RAW: bool;
    /// Preceded (after `_faulted`) by a `U64` `<name>_truncated` field: bytes not recorded.
    const TRUNCATED: bool = false;
    /// Smallest encoding (what must stay free for this field when earlier ones are budgeted).
    const MIN_SIZE: usize;
    /// Encoded size (sizing phase; may read untrusted memory).
    fn size(&self) -> usize;
    /// Cheap estimate of the encoded size, without reading untrusted memory (a C string counts
    /// as its minimum). Used to keep room for later fields when budgeting earlier ones.
    fn wanted(&self) -> usize;
    /// Encode in at most `budget` bytes (`budget >= MIN_SIZE`, guaranteed by the caller).
    fn encode(&self, w: &mut Writer<'_>, budget: usize);
    /// Touch the untrusted source memory (one byte per page) so it is resident. Only raw
    /// fields have any.
    #[inline]
    fn touch(&self) {}
    /// The exact encoded length, computed once for [`FieldValue::write_exact`] (the recording
    /// fast path, fields without raw memory only): a constant for fixed-size fields.
    #[inline(always)]
    fn exact_len(&self) -> usize {
        self.size()
    }
    /// Write the encoding of exactly `len` bytes at `dst`, with no bounds checks, for the
    /// recording fast path (`crate::fast`): constant-size stores for fixed-size fields.
    ///
    /// # Safety
    /// `dst` is valid for `len` bytes of writes, and `len` is what
    /// [`exact_len`](FieldValue::exact_len) returned for this value (which cannot have changed
    /// since: non-raw fields are immutable borrows or copies).
    #[inline(always)]
    unsafe fn write_exact(&self, len: usize, dst: *mut u8) {
        // SAFETY: the caller's contract: `dst` is valid for `len` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(dst, len) };
        let mut w = Writer::new(buf);
        self.encode(&mut w, len);
        let _ = w.finish();
    }
}

macro_rules! fixed_field {
    ($($t:ty => $ft:ident),* $(,)?) => {$(
        impl FieldValue for $t {
            const TYPE: FieldType = FieldType::$ft;
            const RAW: bool = false;
            const MIN_SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn size(&self) -> usize {
                std::mem::size_of::<$t>()
            }
            #[inline]
            fn wanted(&self) -> usize {
                std::mem::size_of::<$t>()
            }
            #[inline(always)]
            fn encode(&self, w: &mut Writer<'_>, _budget: usize) {
                w.put_array(&self.to_le_bytes());
            }
            #[inline(always)]
            fn exact_len(&self) -> usize {
                std::mem::size_of::<$t>()
            }
            #[inline(always)]
            unsafe fn write_exact(&self, _len: usize, dst: *mut u8) {
                // SAFETY: the caller's contract: `dst` has room for `exact_len()` bytes.
                unsafe { dst.cast::<[u8; std::mem::size_of::<$t>()]>().write_unaligned(self.to_le_bytes()) }
            }
        }
    )*};
}

fixed_field!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32,
    i64 => I64, f32 => F32, f64 => F64);

impl FieldValue for bool {
    const TYPE: FieldType = FieldType::Bool;
    const RAW: bool = false;
    const MIN_SIZE: usize = 1;
    #[inline]
    fn size(&self) -> usize {
        1
    }
    #[inline]
    fn wanted(&self) -> usize {
        1
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>, _budget: usize) {
        w.put_array(&[*self as u8]);
    }
    #[inline(always)]
    fn exact_len(&self) -> usize {
        1
    }
    #[inline(always)]
    unsafe fn write_exact(&self, _len: usize, dst: *mut u8) {
        // SAFETY: the caller's contract: `dst` has room for one byte.
        unsafe { dst.write(*self as u8) }
    }
}

/// Copy `n` bytes from `src` to `dst` (not overlapping), inline for up to 32 bytes: two
/// overlapping fixed-size copies instead of a `memcpy` call.
///
/// # Safety
/// `src` valid for `n` reads, `dst` for `n` writes, the two not overlapping.
#[inline(always)]
unsafe fn copy_small_raw(dst: *mut u8, src: *const u8, n: usize) {
    /// The first and the last `K` bytes (`K <= n <= 2K`).
    ///
    /// # Safety
    /// As the caller's, with `K <= n`.
    #[inline(always)]
    unsafe fn two<const K: usize>(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: K <= n: both K-byte windows lie inside the n bytes of each side; the loads
        // are done before the stores (the two windows of `dst` may overlap each other).
        unsafe {
            let a = src.cast::<[u8; K]>().read_unaligned();
            let b = src.add(n - K).cast::<[u8; K]>().read_unaligned();
            dst.cast::<[u8; K]>().write_unaligned(a);
            dst.add(n - K).cast::<[u8; K]>().write_unaligned(b);
        }
    }
    // SAFETY: each arm's K is at most n; the caller's contract for the rest.
    unsafe {
        // 16 to 32 first: two compares for the common string lengths, not a chain of four
        // (every instruction on the fast path shows on a host where rdtsc does not overlap).
        if n >= 16 {
            if n <= 32 {
                two16(dst, src, n)
            } else {
                std::ptr::copy_nonoverlapping(src, dst, n)
            }
            return;
        }
        match n {
            0 => {}
            1..=3 => {
                // First, middle and last byte cover every length up to 3.
                let (a, b, c) = (src.read(), src.add(n / 2).read(), src.add(n - 1).read());
                dst.write(a);
                dst.add(n / 2).write(b);
                dst.add(n - 1).write(c);
            }
            4..=7 => two::<4>(dst, src, n),
            8..=15 => two::<8>(dst, src, n),
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

/// `two::<16>` of [`copy_small_raw`] in two SSE2 registers: as `[u8; 16]` values, LLVM kept
/// one of them in a stack temporary (a store and a reload on every 16- to 32-byte string).
///
/// # Safety
/// As [`copy_small_raw`]'s, with `16 <= n`.
#[inline(always)]
unsafe fn two16(dst: *mut u8, src: *const u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of every x86_64 target; 16 <= n: both 16-byte windows lie inside
    // the n bytes of each side; both loads are done before the stores.
    unsafe {
        use std::arch::x86_64::{_mm_loadu_si128, _mm_storeu_si128};
        let a = _mm_loadu_si128(src.cast());
        let b = _mm_loadu_si128(src.add(n - 16).cast());
        _mm_storeu_si128(dst.cast(), a);
        _mm_storeu_si128(dst.add(n - 16).cast(), b);
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        let a = src.cast::<[u8; 16]>().read_unaligned();
        let b = src.add(n - 16).cast::<[u8; 16]>().read_unaligned();
        dst.cast::<[u8; 16]>().write_unaligned(a);
        dst.add(n - 16).cast::<[u8; 16]>().write_unaligned(b);
    }
}

/// `dst.copy_from_slice(src)` (equal lengths), inline for up to 32 bytes: two overlapping
/// fixed-size copies instead of a `memcpy` call (the strings of typical events are short).
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n != dst.len() {
        dst.copy_from_slice(src); // panics with the standard message; callers never get here
        return;
    }
    fn two<const K: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        let (a, b): (&[u8; K], &[u8; K]) = match (src[..K].try_into(), src[n - K..].try_into()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => unreachable!("K <= n"),
        };
        let (a, b) = (*a, *b);
        dst[..K].copy_from_slice(&a);
        dst[n - K..].copy_from_slice(&b);
    }
    match n {
        0 => {}
        1..=3 => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
        4..=7 => two::<4>(dst, src),
        8..=15 => two::<8>(dst, src),
        16..=32 => two::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Index of the first NUL byte of `s`, if any: 16 bytes at a time (SSE2) or a word at a time
/// for short strings (inline, no call), `memchr`'s vectorised scan for longer ones.
#[inline(always)]
fn find_nul(s: &[u8]) -> Option<usize> {
    if s.len() > 64 {
        return memchr::memchr(0, s);
    }
    #[cfg(target_arch = "x86_64")]
    if s.len() >= 16 {
        return find_nul_sse2(s);
    }
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0usize;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Nonzero iff `w` has a zero byte; its lowest set bit is in the first zero byte
        // (borrows only propagate upwards, past that byte).
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == 0)
        .map(|i| at + i)
}

/// [`find_nul`] for `16 <= s.len() <= 64`: 16-byte blocks from the start, the last one
/// overlapping the one before (its bytes already checked held no NUL, so its first NUL is the
/// string's); up to 32 bytes, the first and the last block without a loop, their masks merged
/// into one (a bit per byte position: the overlap sets the same bits twice). SSE2 is part of
/// x86_64.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_nul_sse2(s: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_setzero_si128,
    };
    let n = s.len();
    debug_assert!((16..=64).contains(&n));
    let block = |at: usize| -> u32 {
        // SAFETY: SSE2 is part of every x86_64 target; `at + 16 <= n` for every block loaded
        // (n >= 16), so the unaligned 16-byte load stays inside `s`.
        unsafe {
            let v = _mm_loadu_si128(s.as_ptr().add(at).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) as u32
        }
    };
    if n <= 32 {
        let last = n - 16;
        let m = u64::from(block(0)) | (u64::from(block(last)) << last);
        return (m != 0).then(|| m.trailing_zeros() as usize);
    }
    let mut at = 0usize;
    while at + 16 < n {
        let m = block(at);
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize);
        }
        at += 16;
    }
    let last = n - 16;
    let m = block(last);
    (m != 0).then(|| last + m.trailing_zeros() as usize)
}

/// The part of `s` the String encoding can carry (up to the first NUL) and whether it was cut.
#[inline(always)]
fn nul_free(s: &[u8]) -> (&[u8], bool) {
    // Scanned twice per event (sizing and encoding): a byte loop here cost ~10 ns per 32-byte
    // string; `find_nul` is a few word operations for short strings.
    match find_nul(s) {
        Some(i) => (&s[..i], true),
        None => (s, false),
    }
}

impl FieldValue for &str {
    const TYPE: FieldType = FieldType::String;
    const RAW: bool = false;
    const MIN_SIZE: usize = 1;
    #[inline]
    fn size(&self) -> usize {
        nul_free(self.as_bytes()).0.len() + 1
    }
    fn wanted(&self) -> usize {
        self.len() + 1
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        let (s, cut) = nul_free(self.as_bytes());
        let room = budget.saturating_sub(1);
        let n = s.len().min(room);
        w.truncated |= cut || n < s.len();
        w.put(&s[..n]);
        w.put(&[0]);
    }
    #[inline(always)]
    fn exact_len(&self) -> usize {
        nul_free(self.as_bytes()).0.len() + 1
    }
    /// The bytes before the first NUL (`len - 1` of them, as `exact_len` found), then a NUL.
    #[inline(always)]
    unsafe fn write_exact(&self, len: usize, dst: *mut u8) {
        let n = len - 1;
        debug_assert!(n <= self.len());
        // SAFETY: the caller's contract: `dst` has room for `len` bytes; `n` is the length up
        // to the first NUL of this (immutable) string, so `n <= self.len()`; a `&str` and the
        // reserved slot do not overlap.
        unsafe {
            copy_small_raw(dst, self.as_ptr(), n);
            dst.add(n).write(0);
        }
    }
}

impl FieldValue for &[u8] {
    const TYPE: FieldType = FieldType::Bytes;
    const RAW: bool = false;
    const MIN_SIZE: usize = 4;
    fn size(&self) -> usize {
        4 + self.len().min(u32::MAX as usize)
    }
    fn wanted(&self) -> usize {
        self.size()
    }
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        let room = budget.saturating_sub(4);
        let n = self.len().min(room).min(u32::MAX as usize);
        w.truncated |= n < self.len();
        w.put(&(n as u32).to_le_bytes());
        w.put(&self[..n]);
    }
    #[inline(always)]
    fn exact_len(&self) -> usize {
        self.size()
    }
    /// The length word (`len - 4`, at most `u32::MAX`), then that many bytes.
    #[inline(always)]
    unsafe fn write_exact(&self, len: usize, dst: *mut u8) {
        let n = len - 4;
        debug_assert!(n <= self.len() && n <= u32::MAX as usize);
        // SAFETY: the caller's contract: `dst` has room for `4 + n` bytes, `n` as `size`
        // computed it (at most `self.len()`); the slice and the slot do not overlap.
        unsafe {
            dst.cast::<[u8; 4]>()
                .write_unaligned((n as u32).to_le_bytes());
            copy_small_raw(dst.add(4), self.as_ptr(), n);
        }
    }
}

impl FieldValue for CStrPtr {
    const TYPE: FieldType = FieldType::String;
    const RAW: bool = true;
    const MIN_SIZE: usize = 5;
    #[inline]
    fn size(&self) -> usize {
        let n = match strnlen_user(self.0, MAX_CSTR_LEN) {
            Ok(n) => n,
            Err(f) => f.readable,
        };
        4 + n + 1
    }
    #[inline]
    fn wanted(&self) -> usize {
        Self::MIN_SIZE
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        if budget < 5 {
            // Only possible when dst is shorter than the minimum encoding.
            w.truncated = true;
            w.put(&[0; 5][..budget.min(5)]);
            return;
        }
        let at = w.pos;
        w.pos += 4;
        let limit = (budget - 4).min(MAX_CSTR_LEN + 1);
        let dst = &mut w.buf[w.pos..w.pos + limit];
        let (len, faulted) = match strncpy_from_user(dst, self.0) {
            Ok(n) if n < limit => (n, 0u32),
            Ok(_) => {
                // No NUL within the limit: cut, keep it terminated.
                w.truncated = true;
                dst[limit - 1] = 0;
                (limit - 1, 0)
            }
            Err(f) => (f.readable.min(limit - 1), 1),
        };
        // strncpy_from_user (or the cut above) left dst[len] == 0.
        w.pos += len + 1;
        w.faulted += faulted as usize;
        w.put_u32_at(at, faulted);
    }
}

impl FieldValue for RawBuf {
    const TYPE: FieldType = FieldType::Bytes;
    const RAW: bool = true;
    const TRUNCATED: bool = true;
    /// `_faulted` (4) + `_truncated` (8) + the length word (4).
    const MIN_SIZE: usize = 16;
    fn touch(&self) {
        let len = self.1.min(MAX_RAW_LEN);
        if self.0.is_null() || len == 0 {
            return;
        }
        let start = self.0 as usize;
        let mut byte = [0u8; 1];
        let mut at = start;
        while at < start + len {
            // A fault is tolerated (and reported again by the real copy).
            copy_from_user(&mut byte, at as *const u8);
            at = (at & !4095) + 4096;
        }
    }
    #[inline]
    fn size(&self) -> usize {
        Self::MIN_SIZE + self.1.min(MAX_RAW_LEN)
    }
    #[inline]
    fn wanted(&self) -> usize {
        self.size()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        if budget < Self::MIN_SIZE {
            w.truncated = true;
            w.put(&[0; Self::MIN_SIZE][..budget.min(Self::MIN_SIZE)]);
            return;
        }
        let want = self.1.min(MAX_RAW_LEN);
        let n = want.min(budget - Self::MIN_SIZE);
        w.truncated |= n < want;
        let at = w.pos;
        // Bytes of the buffer not recorded: cut by MAX_RAW_LEN or by the budget.
        let cut = (self.1 - n) as u64;
        if let Some(s) = w.buf.get_mut(at + 4..at + 12) {
            s.copy_from_slice(&cut.to_le_bytes());
        }
        w.put_u32_at(at + 12, n as u32);
        w.pos += Self::MIN_SIZE;
        let dst = &mut w.buf[w.pos..w.pos + n];
        let left = if self.0.is_null() {
            dst.fill(0);
            n
        } else {
            copy_from_user(dst, self.0)
        };
        w.pos += n;
        w.faulted += left;
        w.put_u32_at(at, left as u32);
    }
}

/// The data of an I/O vector (`struct iovec` array: `count` entries of base pointer and
/// length) at a pointer the probe must not trust, recorded as **one** byte field — the
/// concatenation of the buffers — with the same encoding and extra fields as [`RawBuf`]
/// (`_faulted`, `_truncated`, then the bytes).
///
/// The first `min(total, limit, MAX_RAW_LEN)` bytes of the concatenation are recorded (fewer
/// if the field's budget is smaller), where `total` is the sum of the entries' lengths
/// (saturating) capped by `cap` (the bytes a call actually transferred). `_truncated` is
/// `min(total, cap)` minus the bytes recorded: unlike a [`RawBuf`] that its caller shortened,
/// the `limit` cut counts. `_faulted` counts recorded bytes that could not be read
/// (zero-filled); an entry of the array that cannot itself be read ends the vector and counts
/// as `size_of::<iovec>()` faulted bytes (its lengths are unknown). At most [`MAX_IOV`] entries
/// are looked at. Sizing and encoding each read the array again (the program may change it
/// in between): the encoding never exceeds its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawIov {
    /// The `struct iovec` array.
    pub iov: *const u8,
    /// Entries (a negative `iovcnt` is 0).
    pub count: usize,
    /// Most bytes recorded.
    pub limit: usize,
    /// Bytes the call transferred (`usize::MAX`: all of them).
    pub cap: usize,
}

/// Most `iovec` entries a [`RawIov`] looks at (Linux's `IOV_MAX`).
pub const MAX_IOV: usize = 1024;

const IOV_ENTRY: usize = 2 * std::mem::size_of::<usize>();

impl RawIov {
    /// Entry `i` (base, len), or `None` if it cannot be read.
    fn entry(&self, i: usize) -> Option<(usize, usize)> {
        let mut raw = [0u8; IOV_ENTRY];
        let at = (self.iov as usize).checked_add(i.checked_mul(IOV_ENTRY)?)?;
        if self.iov.is_null() || copy_from_user(&mut raw, at as *const u8) != 0 {
            return None;
        }
        let w = std::mem::size_of::<usize>();
        let mut a = [0u8; std::mem::size_of::<usize>()];
        a.copy_from_slice(&raw[..w]);
        let base = usize::from_ne_bytes(a);
        a.copy_from_slice(&raw[w..]);
        Some((base, usize::from_ne_bytes(a)))
    }

    /// (total bytes capped by `cap`, whether an entry was unreadable).
    fn total(&self) -> (usize, bool) {
        let mut t = 0usize;
        for i in 0..self.count.min(MAX_IOV) {
            match self.entry(i) {
                Some((_, len)) => t = t.saturating_add(len),
                None => return (t.min(self.cap).saturating_add(IOV_ENTRY), true),
            }
        }
        (t.min(self.cap), false)
    }

    fn want(&self) -> usize {
        self.total().0.min(self.limit).min(MAX_RAW_LEN)
    }
}

impl FieldValue for RawIov {
    const TYPE: FieldType = FieldType::Bytes;
    const RAW: bool = true;
    const TRUNCATED: bool = true;
    /// As [`RawBuf`].
    const MIN_SIZE: usize = 16;
    fn touch(&self) {
        let mut left = self.limit.min(MAX_RAW_LEN);
        let mut byte = [0u8; 1];
        for i in 0..self.count.min(MAX_IOV) {
            let Some((base, len)) = self.entry(i) else {
                return;
            };
            let n = len.min(left);
            let mut at = base;
            while n > 0 && at < base.saturating_add(n) {
                // A fault is tolerated (and reported again by the real copy).
                copy_from_user(&mut byte, at as *const u8);
                at = (at & !4095).saturating_add(4096);
            }
            left -= n;
            if left == 0 {
                return;
            }
        }
    }
    fn size(&self) -> usize {
        Self::MIN_SIZE + self.want()
    }
    #[inline]
    fn wanted(&self) -> usize {
        // Without reading the array: at most the limit.
        Self::MIN_SIZE + self.limit.min(MAX_RAW_LEN)
    }
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        if budget < Self::MIN_SIZE {
            w.truncated = true;
            w.put(&[0; Self::MIN_SIZE][..budget.min(Self::MIN_SIZE)]);
            return;
        }
        let (total, _) = self.total();
        let want = total.min(self.limit).min(MAX_RAW_LEN);
        let n = want.min(budget - Self::MIN_SIZE);
        w.truncated |= n < want;
        let at = w.pos;
        let cut = (total - n) as u64;
        if let Some(s) = w.buf.get_mut(at + 4..at + 12) {
            s.copy_from_slice(&cut.to_le_bytes());
        }
        w.put_u32_at(at + 12, n as u32);
        w.pos += Self::MIN_SIZE;
        let dst = &mut w.buf[w.pos..w.pos + n];
        let mut done = 0usize;
        let mut faulted = 0usize;
        let mut i = 0usize;
        while done < n {
            let Some((base, len)) = (i < self.count.min(MAX_IOV))
                .then(|| self.entry(i))
                .flatten()
            else {
                // An unreadable entry (or the vector changed since sizing): zero-filled.
                dst[done..].fill(0);
                faulted += n - done;
                break;
            };
            i += 1;
            let k = len.min(n - done);
            if k == 0 {
                continue;
            }
            let part = &mut dst[done..done + k];
            faulted += if base == 0 {
                part.fill(0);
                k
            } else {
                copy_from_user(part, base as *const u8)
            };
            done += k;
        }
        w.pos += n;
        w.faulted += faulted;
        w.put_u32_at(at, faulted as u32);
    }
}

/// A payload as a cons list `(&field0, (&field1, (..., ())))`, built by `trace!`.
#[doc(hidden)]
pub trait Fields {
    const MIN_SIZE: usize;
    /// Some field copies untrusted memory (its size may change between sizing and writing).
    const RAW: bool;
    fn size(&self) -> usize;
    fn wanted(&self) -> usize;
    fn encode(&self, w: &mut Writer<'_>);
    fn touch(&self);
    /// The field lengths [`Fields::exact_lens`] computed, for [`Fields::write_exact`]
    /// (constants for fixed-size fields, which then cost nothing).
    type Lens: Copy;
    /// The exact encoded length (saturating: an absurd sum never wraps) and each field's.
    /// Only for lists without raw fields (their sizes cannot change).
    fn exact_lens(&self) -> (usize, Self::Lens);
    /// Write the exact encoding at `dst`, field by field, without bounds checks.
    ///
    /// # Safety
    /// `lens` comes from [`Fields::exact_lens`] of this list, which has no raw field, and
    /// `dst` is valid for writes of the total length it returned (which did not saturate).
    unsafe fn write_exact(&self, lens: Self::Lens, dst: *mut u8);
}

impl Fields for () {
    #[inline]
    fn touch(&self) {}
    const MIN_SIZE: usize = 0;
    const RAW: bool = false;
    #[inline]
    fn size(&self) -> usize {
        0
    }
    #[inline]
    fn wanted(&self) -> usize {
        0
    }
    #[inline]
    fn encode(&self, _w: &mut Writer<'_>) {}
    type Lens = ();
    #[inline(always)]
    fn exact_lens(&self) -> (usize, ()) {
        (0, ())
    }
    #[inline(always)]
    unsafe fn write_exact(&self, _lens: (), _dst: *mut u8) {}
}

impl<H: FieldValue, T: Fields> Fields for (&H, T) {
    const MIN_SIZE: usize = H::MIN_SIZE + T::MIN_SIZE;
    const RAW: bool = H::RAW || T::RAW;
    #[inline(always)]
    fn size(&self) -> usize {
        self.0.size() + self.1.size()
    }
    #[inline]
    fn wanted(&self) -> usize {
        self.0.wanted() + self.1.wanted()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        // Leave the later fields what they are expected to need, but never less than their
        // minimum, and never give this field less than its own minimum. The caller checked
        // that `remaining >= H::MIN_SIZE + T::MIN_SIZE`, and each field writes at most its
        // budget, so this holds for every later field too.
        let remaining = w.remaining();
        let most = remaining.saturating_sub(T::MIN_SIZE);
        let budget = remaining
            .saturating_sub(self.1.wanted())
            .max(H::MIN_SIZE)
            .min(most);
        self.0.encode(w, budget);
        self.1.encode(w);
    }
    #[inline]
    fn touch(&self) {
        self.0.touch();
        self.1.touch();
    }
    type Lens = (usize, T::Lens);
    #[inline(always)]
    fn exact_lens(&self) -> (usize, Self::Lens) {
        let h = self.0.exact_len();
        let (t, tl) = self.1.exact_lens();
        (h.saturating_add(t), (h, tl))
    }
    #[inline(always)]
    unsafe fn write_exact(&self, lens: Self::Lens, dst: *mut u8) {
        // SAFETY: the caller's contract: `dst` has room for the sum of `lens`, which did not
        // saturate: this field's `lens.0` bytes, then the rest's from `dst + lens.0`.
        unsafe {
            self.0.write_exact(lens.0, dst);
            self.1.write_exact(lens.1, dst.add(lens.0));
        }
    }
}

/// Adapter giving a field list the [`Payload`] interface.
#[doc(hidden)]
pub struct FieldsPayload<F>(pub F);

impl<F: Fields> Payload for FieldsPayload<F> {
    fn size(&self) -> usize {
        self.0.size()
    }

    fn prefault(&self) -> usize {
        self.0.touch();
        self.0.size()
    }

    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        if dst.len() < F::MIN_SIZE {
            dst.fill(0);
            return WriteOutcome {
                written: 0,
                faulted: 0,
                truncated: true,
            };
        }
        let mut w = Writer::new(dst);
        self.0.encode(&mut w);
        w.finish()
    }
}

/// A payload already encoded by the caller (the [`faultline_schema`] encoding of its
/// tracepoint's fields), e.g. by a bridge from another instrumentation API that visits its
/// values itself. Its size never changes between sizing and writing; a `dst` shorter than it
/// gets nothing (`written == 0`, `truncated`), since a cut encoding would not decode.
#[derive(Debug, Clone, Copy)]
pub struct EncodedPayload<'a>(pub &'a [u8]);

impl Payload for EncodedPayload<'_> {
    #[inline]
    fn size(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        match dst.get_mut(..self.0.len()) {
            Some(d) => {
                d.copy_from_slice(self.0);
                if let Some(rest) = dst.get_mut(self.0.len()..) {
                    rest.fill(0);
                }
                WriteOutcome {
                    written: self.0.len(),
                    faulted: 0,
                    truncated: false,
                }
            }
            None => {
                dst.fill(0);
                WriteOutcome {
                    written: 0,
                    faulted: 0,
                    truncated: true,
                }
            }
        }
    }
}

/// An encoded payload is also a [`Fields`] list of one opaque item, so
/// [`Tracepoint::fire_encoded`] takes the recording fast path ([`crate::fast`]) like
/// `trace!` does: sized by its length, written with one copy, all or nothing.
impl Fields for EncodedPayload<'_> {
    const MIN_SIZE: usize = 0;
    const RAW: bool = false;
    #[inline(always)]
    fn size(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn wanted(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        if w.remaining() >= self.0.len() {
            w.put(self.0);
        } else {
            // A cut encoding would not decode: nothing (see the type's doc).
            w.truncated = true;
        }
    }
    #[inline(always)]
    fn touch(&self) {}
    type Lens = ();
    #[inline(always)]
    fn exact_lens(&self) -> (usize, ()) {
        (self.0.len(), ())
    }
    #[inline(always)]
    unsafe fn write_exact(&self, _lens: (), dst: *mut u8) {
        // SAFETY: the caller's contract: `dst` has room for `self.0.len()` bytes (what
        // exact_lens returned); the caller's bytes and the slot do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr(), dst, self.0.len()) }
    }
}

impl crate::Tracepoint {
    /// Hit this tracepoint with a payload its caller encoded (the [`faultline_schema`]
    /// encoding of the tracepoint's fields; e.g. a bridge from another instrumentation API
    /// that registered the tracepoint at run time): the recording fast path
    /// ([`crate::fast`]: reserve, one copy, commit) when a recorder is the only probe,
    /// [`Tracepoint::fire`](crate::Tracepoint::fire) with an [`EncodedPayload`] otherwise.
    /// Like `fire`, callers check [`is_active`](crate::Tracepoint::is_active) first.
    #[inline]
    pub fn fire_encoded(&'static self, bytes: &[u8]) {
        self.fire_fields(EncodedPayload(bytes))
    }
}

#[cfg(test)]
mod raw_iov_tests {
    use super::*;

    /// Encode one field with `budget`: (faulted, truncated, bytes, outcome).
    fn enc(v: &RawIov, budget: usize) -> (u32, u64, Vec<u8>, WriteOutcome) {
        let mut buf = vec![0u8; budget];
        let mut w = Writer::new(&mut buf);
        v.encode(&mut w, budget);
        let o = w.finish();
        let f = u32::from_le_bytes(buf[0..4].try_into().unwrap());
        let t = u64::from_le_bytes(buf[4..12].try_into().unwrap());
        let n = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
        (f, t, buf[16..16 + n].to_vec(), o)
    }

    fn iov(parts: &[(*const u8, usize)]) -> Vec<usize> {
        parts.iter().flat_map(|&(p, l)| [p as usize, l]).collect()
    }

    #[test]
    fn every_buffer_of_the_vector_is_recorded() {
        let (a, b, c) = (b"abc".to_vec(), Vec::<u8>::new(), b"defgh".to_vec());
        let v = iov(&[(a.as_ptr(), 3), (b.as_ptr(), 0), (c.as_ptr(), 5)]);
        let f = |limit, cap| RawIov {
            iov: v.as_ptr() as *const u8,
            count: 3,
            limit,
            cap,
        };
        let all = f(100, usize::MAX);
        assert_eq!(all.size(), 16 + 8);
        let (fl, tr, bytes, o) = enc(&all, all.size());
        assert_eq!((fl, tr, &bytes[..]), (0, 0, &b"abcdefgh"[..]));
        assert_eq!((o.written, o.faulted, o.truncated), (24, 0, false));
        // The data limit cuts, and the cut is counted.
        let (fl, tr, bytes, _) = enc(&f(5, usize::MAX), 21);
        assert_eq!((fl, tr, &bytes[..]), (0, 3, &b"abcde"[..]));
        // A read that transferred 4 bytes: only those are the buffer.
        let (fl, tr, bytes, _) = enc(&f(100, 4), 20);
        assert_eq!((fl, tr, &bytes[..]), (0, 0, &b"abcd"[..]));
        // A smaller budget than sized (the vector grew): cut, counted, flagged.
        let (fl, tr, bytes, o) = enc(&f(100, usize::MAX), 18);
        assert_eq!((fl, tr, &bytes[..], o.truncated), (0, 6, &b"ab"[..], true));
    }

    #[test]
    fn bad_buffers_and_bad_vectors_are_faulted_bytes() {
        let a = b"xy".to_vec();
        let v = iov(&[(std::ptr::null(), 3), (a.as_ptr(), 2)]);
        let r = RawIov {
            iov: v.as_ptr() as *const u8,
            count: 2,
            limit: 100,
            cap: usize::MAX,
        };
        let (fl, tr, bytes, o) = enc(&r, r.size());
        assert_eq!((fl, tr, &bytes[..]), (3, 0, &[0, 0, 0, b'x', b'y'][..]));
        assert_eq!(o.faulted, 3);
        // The array itself unreadable: one entry's worth of faulted bytes.
        let bad = RawIov {
            iov: std::ptr::null(),
            count: 2,
            limit: 100,
            cap: usize::MAX,
        };
        let (fl, tr, bytes, _) = enc(&bad, bad.size());
        assert_eq!((fl, tr, bytes.len()), (16, 0, 16));
        // A negative or zero count: nothing.
        let none = RawIov { count: 0, ..r };
        assert_eq!(enc(&none, none.size()).2.len(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_matches_a_byte_scan() {
        for len in 0..80usize {
            for nul in (0..len).map(Some).chain([None]) {
                for fill in [1u8, 0x80, 0xff, 0x01] {
                    let mut v = vec![fill; len];
                    if let Some(i) = nul {
                        v[i] = 0;
                        // A second NUL later must not be found first.
                        if i + 3 < len {
                            v[i + 3] = 0;
                        }
                    }
                    assert_eq!(
                        find_nul(&v),
                        v.iter().position(|&b| b == 0),
                        "{len} {nul:?}"
                    );
                }
            }
        }
    }

    /// The fast path's exact encoding ([`Fields::write_exact`]) is byte for byte the budgeted
    /// one ([`Payload::write`]) for every field type without raw memory, at every string and
    /// byte-slice length the inline copies and the NUL scan distinguish, and never writes
    /// outside its length.
    #[test]
    fn write_exact_matches_the_budgeted_encoding() {
        fn check<F: Fields>(f: F) {
            let p = FieldsPayload(f);
            let size = p.size();
            let mut want = vec![0u8; size];
            let out = p.write(&mut want);
            assert_eq!(out.written, size);
            let (len, lens) = p.0.exact_lens();
            assert_eq!(len, size);
            // Guard bytes on both sides catch a write outside [8, 8 + len).
            let mut got = vec![0xA5u8; len + 16];
            // SAFETY: `got` has room for `len` bytes at offset 8; the list has no raw field.
            unsafe { p.0.write_exact(lens, got.as_mut_ptr().add(8)) };
            assert_eq!(&got[8..8 + len], &want[..]);
            assert!(got[..8].iter().chain(&got[8 + len..]).all(|&b| b == 0xA5));
        }
        let text: String = (0..100u8).map(|i| (b'a' + i % 26) as char).collect();
        let bytes: Vec<u8> = (0..100u8).collect();
        for n in 0..80usize {
            let s = &text[..n];
            let b = &bytes[..n];
            check((&(n as u64), (&s, ())));
            check((&s, (&true, ())));
            check((&b, (&(n as u16), (&-1.5f32, ()))));
            check((&(n as i8), (&b, (&s, (&(n as i64), ())))));
            // A NUL anywhere: the string stops there.
            for at in 0..n {
                let mut v = text.as_bytes()[..n].to_vec();
                v[at] = 0;
                let s = std::str::from_utf8(&v).unwrap();
                check((&s, (&7u32, ())));
            }
        }
        let enc = [1u8, 2, 3, 4, 5];
        check(EncodedPayload(&enc));
        check(EncodedPayload(&[]));
    }

    #[test]
    fn copy_small_copies_every_length() {
        let src: Vec<u8> = (0..80u8).collect();
        for n in 0..80usize {
            let mut dst = vec![0xAAu8; n];
            copy_small(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n]);
        }
    }
}
