//! TSDL parser of the general reader: any CTF 1.8 metadata, plain text or packetized.
//!
//! [`read_metadata`] turns the bytes of a `metadata` file into TSDL text: plain text as is;
//! packetized metadata (packets starting with the magic `0x75D11D57` in either byte order) is
//! unpacked packet by packet, checking each header (`content_size <= packet_size`, both
//! multiples of 8 and inside the file, no compression/encryption/checksum, version 1.8, one
//! byte order for all packets). A map from text offsets back to file offsets keeps every error
//! pointing at a byte of the file.
//!
//! [`parse`] is a recursive-descent parser (depth bounded by [`MAX_DEPTH`], type count bounded
//! by [`MAX_TYPES`]) building a type arena ([`Ty`]) and the declarations of the trace, clocks,
//! environment, stream classes and event classes. Named types (`typealias`, `typedef`, named
//! `struct`/`variant`/`enum`) are lexically scoped (a block or struct body opens a scope).
//! Semantic checks done here: integer sizes 1..=[`MAX_INT_BITS`] bits (at most 64 for enum
//! containers and clock-mapped integers), alignments powers of two, enum values
//! inside their container, variant tags and sequence lengths given as paths (resolved later by
//! [`super::layout`]), CTF 1.8 version, distinct event ids within a stream class.

use super::lex::{tokenize, Tok, Token};
use std::collections::HashMap;

/// Deepest nesting of blocks/types accepted.
pub const MAX_DEPTH: u32 = 300;
/// Most types one metadata may define (each costs a little memory).
pub const MAX_TYPES: usize = 1 << 20;
/// Largest metadata accepted (file bytes).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Widest integer the reader accepts, in bits. Integers wider than 64 bits are read and
/// printed, but cannot be enum containers, clock values, sequence lengths or variant tags.
pub const MAX_INT_BITS: u32 = 4096;

/// A metadata error: byte offset in the metadata file and message.
#[derive(Debug, Clone)]
pub struct MetaError {
    /// Byte offset in the metadata file.
    pub offset: u64,
    /// What is wrong.
    pub msg: String,
}

type MResult<T> = Result<T, MetaError>;

fn merr<T>(offset: u64, msg: impl Into<String>) -> MResult<T> {
    Err(MetaError {
        offset,
        msg: msg.into(),
    })
}

/// Byte order of an integer or float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The trace's byte order.
    Native,
    /// Little-endian.
    Le,
    /// Big-endian.
    Be,
}

/// `integer { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntTy {
    /// Bits (1..=[`MAX_INT_BITS`]).
    pub size: u32,
    /// Alignment in bits.
    pub align: u32,
    /// Two's complement.
    pub signed: bool,
    /// Byte order.
    pub order: Order,
    /// Display base.
    pub base: u32,
    /// `encoding = UTF8/ASCII`: an array or sequence of these (8-bit) is text.
    pub text: bool,
    /// `map = clock.NAME.value`.
    pub clock: Option<String>,
}

/// One enum mapping: label and inclusive range (values as i128 to hold both signednesses).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The label.
    pub label: String,
    /// First value.
    pub lo: i128,
    /// Last value (inclusive).
    pub hi: i128,
}

/// A type of the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// `integer { ... }`.
    Int(IntTy),
    /// `floating_point { ... }` (32 or 64 bits).
    Float {
        /// Exponent digits.
        exp: u32,
        /// Mantissa digits (with the implicit bit).
        mant: u32,
        /// Alignment in bits.
        align: u32,
        /// Byte order.
        order: Order,
    },
    /// `string`.
    Str,
    /// `enum : int { ... }`.
    Enum {
        /// The container integer.
        int: IntTy,
        /// The mappings, in declaration order.
        maps: Vec<Mapping>,
    },
    /// `struct { ... } align(N)`.
    Struct {
        /// Fields in order.
        fields: Vec<(String, TypeId)>,
        /// The `align(N)` attribute (1 without).
        min_align: u32,
    },
    /// `variant <tag> { ... }`.
    Variant {
        /// Path of the tag field (`None` for a named variant declared without one).
        tag: Option<String>,
        /// Options in order.
        options: Vec<(String, TypeId)>,
    },
    /// `T name[N]`.
    Array {
        /// Element type.
        elem: TypeId,
        /// Element count.
        len: u64,
    },
    /// `T name[path]`.
    Seq {
        /// Element type.
        elem: TypeId,
        /// Path of the length field.
        len: String,
    },
}

/// Index in [`Metadata::types`].
pub type TypeId = u32;

/// A clock class.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    /// Name (`map = clock.NAME.value`).
    pub name: String,
    /// Ticks per second.
    pub freq: u64,
    /// Offset from the Unix epoch, seconds.
    pub offset_s: i64,
    /// Ticks; may be negative.
    pub offset: i64,
    /// Free text.
    pub description: String,
    /// Clock uuid.
    pub uuid: Option<[u8; 16]>,
    /// Whether the clock is a global reference.
    pub absolute: bool,
}

/// A stream class.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDecl {
    /// `id` (0 when absent).
    pub id: u64,
    /// `packet.context` type.
    pub packet_context: Option<TypeId>,
    /// `event.header` type.
    pub event_header: Option<TypeId>,
    /// `event.context` type.
    pub event_context: Option<TypeId>,
    /// Byte offset of the block in the metadata file.
    pub offset: u64,
}

/// An event class.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    /// `name`.
    pub name: String,
    /// `id` (0 when absent).
    pub id: u64,
    /// `stream_id` (0 when absent).
    pub stream_id: u64,
    /// `context` type.
    pub context: Option<TypeId>,
    /// `fields` type.
    pub fields: Option<TypeId>,
    /// `loglevel`.
    pub loglevel: Option<i64>,
    /// Byte offset of the block in the metadata file.
    pub offset: u64,
    /// Whether the event block names its `stream_id`.
    pub explicit_stream: bool,
}

/// An `env` value.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvVal {
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
}

/// Everything the metadata declares.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The type arena.
    pub types: Vec<Ty>,
    /// The trace's byte order is big-endian.
    pub big_endian: bool,
    /// `trace.uuid`.
    pub uuid: Option<[u8; 16]>,
    /// `trace.packet.header` type.
    pub packet_header: Option<TypeId>,
    /// Clock classes.
    pub clocks: Vec<Clock>,
    /// `env` entries in file order.
    pub env: Vec<(String, EnvVal)>,
    /// Stream classes (one implicit class 0 when none is declared).
    pub streams: Vec<StreamDecl>,
    /// Event classes in file order.
    pub events: Vec<EventDecl>,
    /// Whether the file was packetized.
    pub packetized: bool,
}

const META_MAGIC: u32 = 0x75D1_1D57;
const META_HEADER: usize = 37;

/// The TSDL text of a metadata file and the map from text offsets to file offsets
/// (`(text_start, file_start)` for each packet, sorted).
pub struct MetaText {
    /// The TSDL text.
    pub text: Vec<u8>,
    /// `(text offset, file offset)` at the start of each packet.
    pub map: Vec<(u64, u64)>,
    /// Whether the file was packetized.
    pub packetized: bool,
    /// Byte order of the packet headers (packetized only).
    pub big_endian: Option<bool>,
}

impl MetaText {
    /// Text offset of file offset `f` (the inverse of [`Self::file_offset`]).
    pub fn text_offset(&self, f: u64) -> u64 {
        let i = self.map.partition_point(|&(_, fs)| fs <= f);
        match i.checked_sub(1).and_then(|i| self.map.get(i)) {
            Some(&(ts, fs)) => ts.saturating_add(f - fs),
            None => f,
        }
    }

    /// File offset of text offset `t`.
    pub fn file_offset(&self, t: u64) -> u64 {
        let i = self.map.partition_point(|&(ts, _)| ts <= t);
        match i.checked_sub(1).and_then(|i| self.map.get(i)) {
            Some(&(ts, fs)) => fs.saturating_add(t - ts),
            None => t,
        }
    }
}

/// Unpack a metadata file (see the module docs).
pub fn read_metadata(raw: &[u8]) -> MResult<MetaText> {
    let m = |b: &[u8]| -> Option<bool> {
        let w: [u8; 4] = b.get(..4)?.try_into().ok()?;
        if u32::from_le_bytes(w) == META_MAGIC {
            Some(false)
        } else if u32::from_be_bytes(w) == META_MAGIC {
            Some(true)
        } else {
            None
        }
    };
    let Some(be) = m(raw) else {
        return Ok(MetaText {
            text: raw.to_vec(),
            map: vec![(0, 0)],
            packetized: false,
            big_endian: None,
        });
    };
    let mut text = Vec::new();
    let mut map = Vec::new();
    let mut at = 0usize;
    let mut uuid: Option<&[u8]> = None;
    while at < raw.len() {
        let h = match raw.get(at..at + META_HEADER) {
            Some(h) => h,
            None => return merr(at as u64, "truncated metadata packet header"),
        };
        match m(h) {
            Some(b) if b == be => {}
            Some(_) => return merr(at as u64, "metadata packets of both byte orders"),
            None => return merr(at as u64, "bad metadata packet magic"),
        }
        let u32_at = |o: usize| {
            let w: [u8; 4] = [h[o], h[o + 1], h[o + 2], h[o + 3]];
            if be {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        };
        match uuid {
            None => uuid = Some(&h[4..20]),
            Some(u) if u != &h[4..20] => {
                return merr(at as u64 + 4, "metadata packet uuid differs from the first")
            }
            _ => {}
        }
        let content = u64::from(u32_at(24));
        let packet = u64::from(u32_at(28));
        if content % 8 != 0 || packet % 8 != 0 {
            return merr(
                at as u64 + 24,
                "metadata packet size not a multiple of 8 bits",
            );
        }
        if content < (META_HEADER as u64) * 8 || content > packet {
            return merr(
                at as u64 + 24,
                format!("metadata packet content_size {content} bits outside header..packet_size {packet}"),
            );
        }
        if packet / 8 > (raw.len() - at) as u64 {
            return merr(
                at as u64 + 28,
                format!(
                    "metadata packet_size {} bytes, only {} left in the file",
                    packet / 8,
                    raw.len() - at
                ),
            );
        }
        if h[32] != 0 || h[33] != 0 || h[34] != 0 {
            return merr(
                at as u64 + 32,
                "compressed, encrypted or checksummed metadata not supported",
            );
        }
        if h[35] != 1 || h[36] != 8 {
            return merr(
                at as u64 + 35,
                format!("metadata packet version {}.{}, expected 1.8", h[35], h[36]),
            );
        }
        let body = &raw[at + META_HEADER..at + (content / 8) as usize];
        map.push((text.len() as u64, (at + META_HEADER) as u64));
        text.extend_from_slice(body);
        at += (packet / 8) as usize;
        if packet == 0 {
            break;
        }
    }
    Ok(MetaText {
        text,
        map,
        packetized: true,
        big_endian: Some(be),
    })
}

// ---------------------------------------------------------------- parser

const KEYWORDS: &[&str] = &[
    "align",
    "callsite",
    "const",
    "char",
    "clock",
    "double",
    "enum",
    "env",
    "event",
    "floating_point",
    "float",
    "integer",
    "int",
    "long",
    "short",
    "signed",
    "stream",
    "string",
    "struct",
    "trace",
    "typealias",
    "typedef",
    "unsigned",
    "variant",
    "void",
    "_Bool",
    "_Complex",
    "_Imaginary",
];

/// C type-specifier keywords, usable in type names (`unsigned int`).
const C_TYPE_WORDS: &[&str] = &[
    "char",
    "double",
    "float",
    "int",
    "long",
    "short",
    "signed",
    "unsigned",
    "void",
    "_Bool",
    "_Complex",
    "_Imaginary",
    "const",
];

fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

#[derive(Default)]
struct Scope {
    aliases: HashMap<String, TypeId>,
    structs: HashMap<String, TypeId>,
    variants: HashMap<String, TypeId>,
    enums: HashMap<String, TypeId>,
}

#[derive(Debug, Clone)]
enum Val {
    Int(i128),
    Str(String),
    Path(String),
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    types: Vec<Ty>,
    scopes: Vec<Scope>,
    depth: u32,
    text: &'a MetaText,
}

/// A `key = value` or `key := type` entry of a block.
enum Entry {
    Val(String, Val, u64),
    Type(String, TypeId),
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }

    fn here(&self) -> u64 {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].offset;
        self.text.file_offset(t)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, msg: impl Into<String>) -> MResult<T> {
        merr(self.here(), msg)
    }

    fn found(&self) -> String {
        match self.peek() {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of metadata".into(),
        }
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> MResult<()> {
        if self.eat(p) {
            Ok(())
        } else {
            let f = self.found();
            self.err(format!("expected `{p}`, found {f}"))
        }
    }

    fn ident(&mut self) -> MResult<String> {
        match self.peek() {
            Tok::Ident(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => {
                let f = self.found();
                self.err(format!("expected an identifier, found {f}"))
            }
        }
    }

    fn enter(&mut self) -> MResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn add(&mut self, t: Ty) -> MResult<TypeId> {
        if self.types.len() >= MAX_TYPES {
            return self.err(format!("more than {MAX_TYPES} types"));
        }
        self.types.push(t);
        Ok((self.types.len() - 1) as TypeId)
    }

    fn lookup(&self, f: impl Fn(&Scope) -> Option<&TypeId>) -> Option<TypeId> {
        self.scopes.iter().rev().find_map(|s| f(s).copied())
    }

    fn define(
        &mut self,
        kind: &str,
        name: String,
        id: TypeId,
        at: u64,
        pick: impl Fn(&mut Scope) -> &mut HashMap<String, TypeId>,
    ) -> MResult<()> {
        let Some(s) = self.scopes.last_mut() else {
            return merr(at, "no scope");
        };
        let m = pick(s);
        if m.contains_key(&name) {
            return merr(
                at,
                format!("{kind} `{name}` defined twice in the same scope"),
            );
        }
        m.insert(name, id);
        Ok(())
    }

    fn value(&mut self) -> MResult<Val> {
        let neg = if self.eat("-") {
            true
        } else {
            self.eat("+");
            false
        };
        match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                Ok(Val::Int(if neg { -(v as i128) } else { v as i128 }))
            }
            _ if neg => self.err("expected an integer after the sign"),
            Tok::Str(s) => {
                self.bump();
                Ok(Val::Str(s))
            }
            Tok::Ident(_) => {
                let mut s = self.ident()?;
                while self.is(".") {
                    self.bump();
                    s.push('.');
                    s.push_str(&self.ident()?);
                }
                Ok(Val::Path(s))
            }
            _ => {
                let f = self.found();
                self.err(format!("expected a value, found {f}"))
            }
        }
    }

    fn attrs(&mut self) -> MResult<Vec<(String, Val, u64)>> {
        self.expect("{")?;
        let mut out = Vec::new();
        while !self.eat("}") {
            let at = self.here();
            let k = self.ident()?;
            self.expect("=")?;
            let v = self.value()?;
            self.expect(";")?;
            out.push((k, v, at));
        }
        Ok(out)
    }

    fn uint(k: &str, v: &Val, at: u64) -> MResult<u64> {
        match v {
            Val::Int(i) if *i >= 0 && *i <= u64::MAX as i128 => Ok(*i as u64),
            _ => merr(at, format!("`{k}` must be a non-negative integer")),
        }
    }

    fn boolean(k: &str, v: &Val, at: u64) -> MResult<bool> {
        match v {
            Val::Path(p) if p == "true" || p == "TRUE" => Ok(true),
            Val::Path(p) if p == "false" || p == "FALSE" => Ok(false),
            Val::Int(1) => Ok(true),
            Val::Int(0) => Ok(false),
            _ => merr(at, format!("`{k}` must be true or false")),
        }
    }

    fn order(v: &Val, at: u64) -> MResult<Order> {
        match v {
            Val::Path(p) if p == "native" => Ok(Order::Native),
            Val::Path(p) if p == "le" => Ok(Order::Le),
            Val::Path(p) if p == "be" || p == "network" => Ok(Order::Be),
            _ => merr(at, "`byte_order` must be native, le, be or network"),
        }
    }

    fn align(k: &str, v: &Val, at: u64) -> MResult<u32> {
        let a = Self::uint(k, v, at)?;
        if a == 0 || !a.is_power_of_two() || a > 1 << 20 {
            return merr(
                at,
                format!("alignment {a} is not a power of two in 1..=2^20"),
            );
        }
        Ok(a as u32)
    }

    fn integer(&mut self) -> MResult<IntTy> {
        let at0 = self.here();
        let attrs = self.attrs()?;
        let mut t = IntTy {
            size: 0,
            align: 0,
            signed: false,
            order: Order::Native,
            base: 10,
            text: false,
            clock: None,
        };
        let mut size = None;
        for (k, v, at) in &attrs {
            match k.as_str() {
                "size" => {
                    let s = Self::uint(k, v, *at)?;
                    if s == 0 || s > u64::from(MAX_INT_BITS) {
                        return merr(*at, format!("integer size {s} not in 1..={MAX_INT_BITS}"));
                    }
                    size = Some(s as u32);
                }
                "align" => t.align = Self::align(k, v, *at)?,
                "signed" => t.signed = Self::boolean(k, v, *at)?,
                "byte_order" => t.order = Self::order(v, *at)?,
                "base" => {
                    t.base = match v {
                        Val::Int(b @ (2 | 8 | 10 | 16)) => *b as u32,
                        Val::Path(p) => match p.as_str() {
                            "decimal" | "dec" | "d" | "i" | "u" => 10,
                            "hexadecimal" | "hex" | "x" | "X" | "p" => 16,
                            "octal" | "oct" | "o" => 8,
                            "binary" | "b" => 2,
                            _ => return merr(*at, format!("bad integer base `{p}`")),
                        },
                        _ => return merr(*at, "bad integer base"),
                    }
                }
                "encoding" => {
                    t.text = match v {
                        Val::Path(p) if p == "none" => false,
                        Val::Path(p) if p == "UTF8" || p == "ASCII" => true,
                        _ => return merr(*at, "`encoding` must be none, UTF8 or ASCII"),
                    }
                }
                "map" => match v {
                    Val::Path(p) => {
                        let parts: Vec<&str> = p.split('.').collect();
                        if parts.len() != 3 || parts[0] != "clock" || parts[2] != "value" {
                            return merr(*at, "`map` must be clock.NAME.value");
                        }
                        t.clock = Some(parts[1].to_string());
                    }
                    _ => return merr(*at, "`map` must be clock.NAME.value"),
                },
                _ => {} // unknown attributes are ignored, as babeltrace does (with a warning)
            }
        }
        let Some(size) = size else {
            return merr(at0, "integer without `size`");
        };
        t.size = size;
        if size > 64 && t.clock.is_some() {
            return merr(
                at0,
                format!("clock-mapped integer of {size} bits: at most 64 supported"),
            );
        }
        if t.align == 0 {
            t.align = if size % 8 == 0 { 8 } else { 1 };
        }
        Ok(t)
    }

    fn floating(&mut self) -> MResult<Ty> {
        let at0 = self.here();
        let attrs = self.attrs()?;
        let (mut exp, mut mant, mut align, mut order) = (None, None, 8, Order::Native);
        for (k, v, at) in &attrs {
            match k.as_str() {
                "exp_dig" => exp = Some(Self::uint(k, v, *at)?),
                "mant_dig" => mant = Some(Self::uint(k, v, *at)?),
                "align" => align = Self::align(k, v, *at)?,
                "byte_order" => order = Self::order(v, *at)?,
                _ => {}
            }
        }
        match (exp, mant) {
            (Some(8), Some(24)) | (Some(11), Some(53)) => Ok(Ty::Float {
                exp: exp.unwrap_or(0) as u32,
                mant: mant.unwrap_or(0) as u32,
                align,
                order,
            }),
            (Some(e), Some(m)) => merr(
                at0,
                format!("floating_point exp_dig {e} mant_dig {m}: only 32- and 64-bit IEEE 754"),
            ),
            _ => merr(at0, "floating_point without exp_dig and mant_dig"),
        }
    }

    /// `enum [name] [: int] [{ ... }]` (after `enum`).
    fn enumeration(&mut self) -> MResult<TypeId> {
        let at0 = self.here();
        let name = match self.peek() {
            Tok::Ident(s) if !is_keyword(s) => Some(self.ident()?),
            _ => None,
        };
        let int = if self.eat(":") {
            let t = self.type_spec()?;
            match self.types.get(t as usize) {
                Some(Ty::Int(i)) => Some(i.clone()),
                _ => return merr(at0, "enum container type is not an integer"),
            }
        } else {
            None
        };
        if !self.is("{") {
            let Some(name) = name else {
                return self.err("enum without a name or a body");
            };
            return match self.lookup(|s| s.enums.get(&name)) {
                Some(t) => Ok(t),
                None => merr(at0, format!("unknown enum `{name}`")),
            };
        }
        let int = match int {
            Some(i) => i,
            None => match self.lookup(|s| s.aliases.get("int")) {
                Some(t) => match self.types.get(t as usize) {
                    Some(Ty::Int(i)) => i.clone(),
                    _ => return merr(at0, "`int` is not an integer type"),
                },
                None => return merr(at0, "enum without container type and no `int` type"),
            },
        };
        if int.size > 64 {
            return merr(
                at0,
                format!("enum container of {} bits: at most 64 supported", int.size),
            );
        }
        self.bump(); // {
        let (min, max): (i128, i128) = if int.signed {
            (-(1i128 << (int.size - 1)), (1i128 << (int.size - 1)) - 1)
        } else {
            (0, (1i128 << int.size) - 1)
        };
        let mut maps: Vec<Mapping> = Vec::new();
        let mut next: i128 = 0;
        loop {
            if self.eat("}") {
                break;
            }
            let at = self.here();
            let label = match self.bump() {
                Tok::Ident(s) | Tok::Str(s) => s,
                _ => return merr(at, "expected an enum label"),
            };
            let (lo, hi) = if self.eat("=") {
                let lo = self.enum_value()?;
                let hi = if self.eat("...") {
                    self.enum_value()?
                } else {
                    lo
                };
                (lo, hi)
            } else {
                (next, next)
            };
            if lo > hi {
                return merr(at, format!("enum range {lo} ... {hi} is reversed"));
            }
            if lo < min || hi > max {
                return merr(
                    at,
                    format!(
                        "enum value {lo} ... {hi} does not fit its {}-bit container",
                        int.size
                    ),
                );
            }
            next = hi + 1;
            maps.push(Mapping { label, lo, hi });
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        if maps.is_empty() {
            return merr(at0, "enum without entries");
        }
        let id = self.add(Ty::Enum { int, maps })?;
        if let Some(n) = name {
            self.define("enum", n, id, at0, |s| &mut s.enums)?;
        }
        Ok(id)
    }

    fn enum_value(&mut self) -> MResult<i128> {
        match self.value()? {
            Val::Int(v) => Ok(v),
            _ => self.err("enum values must be integers"),
        }
    }

    /// `struct [name] [{ ... }] [align(N)]` (after `struct`).
    fn structure(&mut self) -> MResult<TypeId> {
        let at0 = self.here();
        let name = match self.peek() {
            Tok::Ident(s) if !is_keyword(s) => Some(self.ident()?),
            _ => None,
        };
        if !self.is("{") {
            let Some(name) = name else {
                return self.err("struct without a name or a body");
            };
            return match self.lookup(|s| s.structs.get(&name)) {
                Some(t) => Ok(t),
                None => merr(at0, format!("unknown struct `{name}`")),
            };
        }
        self.bump();
        let fields = self.fields("struct")?;
        let mut min_align = 1;
        if self.is_word("align") {
            self.bump();
            self.expect("(")?;
            let at = self.here();
            let v = self.value()?;
            min_align = Self::align("align", &v, at)?;
            self.expect(")")?;
        }
        let id = self.add(Ty::Struct { fields, min_align })?;
        if let Some(n) = name {
            self.define("struct", n, id, at0, |s| &mut s.structs)?;
        }
        Ok(id)
    }

    /// `variant [name] [<tag>] [{ ... }]` (after `variant`).
    fn variant(&mut self) -> MResult<TypeId> {
        let at0 = self.here();
        let name = match self.peek() {
            Tok::Ident(s) if !is_keyword(s) => Some(self.ident()?),
            _ => None,
        };
        let mut tag = None;
        if self.eat("<") {
            let at = self.here();
            match self.value()? {
                Val::Path(p)
                    if !p
                        .split('.')
                        .any(|w| is_keyword(w) && !matches!(w, "trace" | "stream" | "event")) =>
                {
                    tag = Some(p)
                }
                _ => return merr(at, "variant tag must be a field path"),
            }
            self.expect(">")?;
        }
        if !self.is("{") {
            let Some(name) = name else {
                return self.err("variant without a name or a body");
            };
            let Some(t) = self.lookup(|s| s.variants.get(&name)) else {
                return merr(at0, format!("unknown variant `{name}`"));
            };
            if let (Some(tag), Some(Ty::Variant { tag: None, options })) =
                (tag.clone(), self.types.get(t as usize))
            {
                let options = options.clone();
                return self.add(Ty::Variant {
                    tag: Some(tag),
                    options,
                });
            }
            return Ok(t);
        }
        self.bump();
        let options = self.fields("variant")?;
        let id = self.add(Ty::Variant {
            tag: tag.clone(),
            options,
        })?;
        if let Some(n) = name {
            // A named variant is stored untagged; uses with a tag copy it.
            let untagged = if tag.is_some() {
                let Some(Ty::Variant { options, .. }) = self.types.get(id as usize).cloned() else {
                    return merr(at0, "internal: variant");
                };
                self.add(Ty::Variant { tag: None, options })?
            } else {
                id
            };
            self.define("variant", n, untagged, at0, |s| &mut s.variants)?;
        }
        Ok(id)
    }

    /// Body of a struct or variant, after `{`, through `}`.
    fn fields(&mut self, what: &str) -> MResult<Vec<(String, TypeId)>> {
        // Depth is counted by `type_spec`, which every nested body goes through.
        self.scopes.push(Scope::default());
        let r = self.fields_inner(what);
        self.scopes.pop();
        r
    }

    fn fields_inner(&mut self, what: &str) -> MResult<Vec<(String, TypeId)>> {
        let mut out: Vec<(String, TypeId)> = Vec::new();
        let mut names = std::collections::HashSet::new();
        loop {
            if self.eat("}") {
                return Ok(out);
            }
            if self.is_word("typealias") || self.is_word("typedef") {
                self.type_def()?;
                continue;
            }
            let t = self.type_spec()?;
            if self.eat(";") {
                continue; // a type definition (named struct/enum/variant) inside the body
            }
            loop {
                let at = self.here();
                let (name, ty) = self.declarator(t)?;
                if !names.insert(name.clone()) {
                    return merr(at, format!("{what} field `{name}` declared twice"));
                }
                self.check_sibling_tag(&out, ty, at)?;
                out.push((name, ty));
                if !self.eat(",") {
                    break;
                }
            }
            self.expect(";")?;
        }
    }

    /// A variant whose tag is an earlier field of the same struct is checked where it is
    /// declared, used or not: the tag must be an enum, and at least one of its labels must
    /// name an option (`_` escape aside), else no tag value could select anything. Options
    /// without a label and labels without an option are allowed (the CTF test suite has valid
    /// traces with both).
    fn check_sibling_tag(&self, earlier: &[(String, TypeId)], ty: TypeId, at: u64) -> MResult<()> {
        let Some(Ty::Variant {
            tag: Some(tag),
            options,
        }) = self.types.get(ty as usize)
        else {
            return Ok(());
        };
        let Some(&(_, t)) = earlier.iter().rev().find(|(n, _)| n == tag) else {
            return Ok(());
        };
        match self.types.get(t as usize) {
            Some(Ty::Enum { maps, .. }) => {
                let strip = |n: &str| n.strip_prefix('_').unwrap_or(n).to_string();
                let names: std::collections::HashSet<String> =
                    options.iter().map(|(o, _)| strip(o)).collect();
                if options.is_empty()
                    || maps.is_empty()
                    || maps.iter().any(|m| names.contains(&strip(&m.label)))
                {
                    Ok(())
                } else {
                    merr(
                        at,
                        format!("no label of the tag enum `{tag}` names a variant option"),
                    )
                }
            }
            _ => merr(at, format!("variant tag `{tag}` is not an enum")),
        }
    }

    /// `name [dims]...` applied to type `t`.
    fn declarator(&mut self, t: TypeId) -> MResult<(String, TypeId)> {
        while self.eat("*") {}
        let at = self.here();
        let name = self.ident()?;
        if is_keyword(&name) {
            return merr(at, format!("`{name}` is a reserved keyword"));
        }
        let mut dims = Vec::new();
        while self.eat("[") {
            let at = self.here();
            let d = match self.value()? {
                Val::Int(n) if n >= 0 && n <= u64::MAX as i128 => Val::Int(n),
                Val::Path(p)
                    if !p.split('.').any(is_keyword)
                        || p.starts_with("trace.")
                        || p.starts_with("stream.")
                        || p.starts_with("event.") =>
                {
                    Val::Path(p)
                }
                _ => {
                    return merr(
                        at,
                        "array length must be a non-negative integer or a field path",
                    )
                }
            };
            self.expect("]")?;
            if let Val::Path(p) = &d {
                if self.lookup(|s| s.aliases.get(p)).is_some() {
                    return merr(at, format!("array length `{p}` is a type, not a field"));
                }
                let absolute =
                    p.starts_with("trace.") || p.starts_with("stream.") || p.starts_with("event.");
                if !absolute && self.scopes.len() == 1 {
                    return merr(
                        at,
                        format!("sequence length `{p}` declared outside any struct"),
                    );
                }
            }
            dims.push(d);
        }
        // `a[2][3]` is an array of 2 arrays of 3: build from the innermost.
        let mut ty = t;
        for d in dims.into_iter().rev() {
            ty = match d {
                Val::Int(n) => self.add(Ty::Array {
                    elem: ty,
                    len: n as u64,
                })?,
                Val::Path(p) => self.add(Ty::Seq { elem: ty, len: p })?,
                Val::Str(_) => return merr(at, "bad array length"),
            };
        }
        Ok((name, ty))
    }

    /// A type specifier.
    fn type_spec(&mut self) -> MResult<TypeId> {
        self.enter()?;
        let r = self.type_spec_inner();
        self.leave();
        r
    }

    fn type_spec_inner(&mut self) -> MResult<TypeId> {
        let at = self.here();
        let Tok::Ident(w) = self.peek().clone() else {
            let f = self.found();
            return self.err(format!("expected a type, found {f}"));
        };
        match w.as_str() {
            "integer" => {
                self.bump();
                let i = self.integer()?;
                self.add(Ty::Int(i))
            }
            "floating_point" => {
                self.bump();
                let f = self.floating()?;
                self.add(f)
            }
            "string" => {
                self.bump();
                if self.is("{") {
                    for (k, v, at) in self.attrs()? {
                        if k == "encoding"
                            && !matches!(&v, Val::Path(p) if p == "UTF8" || p == "ASCII")
                        {
                            return merr(at, "string encoding must be UTF8 or ASCII");
                        }
                    }
                }
                self.add(Ty::Str)
            }
            "struct" => {
                self.bump();
                self.structure()
            }
            "variant" => {
                self.bump();
                self.variant()
            }
            "enum" => {
                self.bump();
                self.enumeration()
            }
            _ => {
                // A type name: the longest run of words that names a type.
                let mut words = Vec::new();
                let mut n = 0;
                while let Tok::Ident(s) = self.peek_at(n) {
                    if is_keyword(s) && !C_TYPE_WORDS.contains(&s.as_str()) {
                        break;
                    }
                    words.push(s.clone());
                    n += 1;
                    if n > 8 {
                        break;
                    }
                }
                for k in (1..=words.len()).rev() {
                    let name = words[..k].join(" ");
                    if let Some(t) = self.lookup(|s| s.aliases.get(&name)) {
                        for _ in 0..k {
                            self.bump();
                        }
                        return Ok(t);
                    }
                }
                merr(at, format!("unknown type `{w}`"))
            }
        }
    }

    /// `typealias T := name;` or `typedef T d, ...;`.
    fn type_def(&mut self) -> MResult<()> {
        let at = self.here();
        if self.is_word("typealias") {
            self.bump();
            let t = self.type_spec()?;
            self.expect(":=")?;
            let mut words = Vec::new();
            let nat = self.here();
            while let Tok::Ident(_) = self.peek() {
                words.push(self.ident()?);
            }
            while self.eat("*") {}
            if words.is_empty() {
                return merr(nat, "typealias without a name");
            }
            if words.len() == 1
                && is_keyword(&words[0])
                && !C_TYPE_WORDS.contains(&words[0].as_str())
            {
                return merr(nat, format!("`{}` is a reserved keyword", words[0]));
            }
            self.check_alias_kind(t, at)?;
            self.define("type", words.join(" "), t, nat, |s| &mut s.aliases)?;
            self.expect(";")?;
        } else {
            self.bump();
            let t = self.type_spec()?;
            loop {
                let nat = self.here();
                let (name, ty) = self.declarator(t)?;
                self.define("type", name, ty, nat, |s| &mut s.aliases)?;
                if !self.eat(",") {
                    break;
                }
            }
            self.expect(";")?;
        }
        Ok(())
    }

    fn check_alias_kind(&self, _t: TypeId, _at: u64) -> MResult<()> {
        Ok(())
    }

    /// Body of a `trace`/`stream`/`event`/`clock`/`env`/`callsite` block, after `{`.
    fn block(&mut self) -> MResult<Vec<Entry>> {
        self.enter()?;
        self.scopes.push(Scope::default());
        let r = self.block_inner();
        self.scopes.pop();
        self.leave();
        r
    }

    fn block_inner(&mut self) -> MResult<Vec<Entry>> {
        let mut out = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(out);
            }
            if self.is_word("typealias") || self.is_word("typedef") {
                self.type_def()?;
                continue;
            }
            let at = self.here();
            // A type definition statement (`struct x { ... };`) or `key = value;`/`key := T;`.
            if matches!(self.peek(), Tok::Ident(w) if matches!(w.as_str(), "struct" | "variant" | "enum" | "integer" | "floating_point"))
                && !matches!(self.peek_at(1), Tok::Punct("." | "=" | ":="))
            {
                self.type_spec()?;
                self.expect(";")?;
                continue;
            }
            let mut key = self.ident()?;
            while self.eat(".") {
                key.push('.');
                key.push_str(&self.ident()?);
            }
            if self.eat(":=") {
                let t = self.type_spec()?;
                out.push(Entry::Type(key, t));
            } else {
                self.expect("=")?;
                let v = self.value()?;
                out.push(Entry::Val(key, v, at));
            }
            self.expect(";")?;
        }
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let t = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(t, 16).ok()?;
    }
    Some(out)
}

fn int_entry(v: &Val, at: u64, k: &str, lo: i128, hi: i128) -> MResult<i128> {
    match v {
        Val::Int(i) if *i >= lo && *i <= hi => Ok(*i),
        _ => merr(at, format!("`{k}` must be an integer in {lo}..={hi}")),
    }
}

/// Parse the metadata text (see the module docs).
pub fn parse(mt: &MetaText) -> MResult<Metadata> {
    let toks = tokenize(&mt.text).map_err(|e| MetaError {
        offset: mt.file_offset(e.offset),
        msg: e.msg,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        types: Vec::new(),
        scopes: vec![Scope::default()],
        depth: 0,
        text: mt,
    };
    let mut md = Metadata {
        types: Vec::new(),
        big_endian: false,
        uuid: None,
        packet_header: None,
        clocks: Vec::new(),
        env: Vec::new(),
        streams: Vec::new(),
        events: Vec::new(),
        packetized: mt.packetized,
    };
    let mut trace_seen = false;
    let mut stream_seen = std::collections::HashSet::new();
    let mut version = (None, None);
    let mut order = None;
    loop {
        match p.peek().clone() {
            Tok::Eof => break,
            Tok::Ident(w) if w == "typealias" || w == "typedef" => p.type_def()?,
            Tok::Ident(w)
                if matches!(
                    w.as_str(),
                    "trace" | "stream" | "event" | "clock" | "env" | "callsite"
                ) && matches!(p.peek_at(1), Tok::Punct("{")) =>
            {
                let at = p.here();
                p.bump();
                p.bump();
                let entries = p.block()?;
                p.expect(";")?;
                match w.as_str() {
                    "trace" => {
                        if trace_seen {
                            return merr(at, "second `trace` block");
                        }
                        trace_seen = true;
                        for e in entries {
                            match e {
                                Entry::Val(k, v, at) => match k.as_str() {
                                    "major" => version.0 = Some(int_entry(&v, at, &k, 0, 255)?),
                                    "minor" => version.1 = Some(int_entry(&v, at, &k, 0, 255)?),
                                    "uuid" => match &v {
                                        Val::Str(s) => match parse_uuid(s) {
                                            Some(u) => md.uuid = Some(u),
                                            None => return merr(at, format!("bad uuid {s:?}")),
                                        },
                                        _ => return merr(at, "uuid must be a string"),
                                    },
                                    "byte_order" => match Parser::order(&v, at)? {
                                        Order::Native => {
                                            return merr(at, "trace byte_order must be le or be")
                                        }
                                        o => order = Some(o == Order::Be),
                                    },
                                    _ => {}
                                },
                                // Unknown scopes are ignored, as babeltrace does.
                                Entry::Type(k, t) => {
                                    if k == "packet.header" {
                                        md.packet_header = Some(t);
                                    }
                                }
                            }
                        }
                    }
                    "stream" => {
                        let mut s = StreamDecl {
                            id: 0,
                            packet_context: None,
                            event_header: None,
                            event_context: None,
                            offset: at,
                        };
                        for e in entries {
                            match e {
                                Entry::Val(k, v, at) if k == "id" => {
                                    s.id = int_entry(&v, at, &k, 0, u64::MAX as i128)? as u64
                                }
                                Entry::Val(..) => {}
                                Entry::Type(k, t) => match k.as_str() {
                                    "packet.context" => s.packet_context = Some(t),
                                    "event.header" => s.event_header = Some(t),
                                    "event.context" => s.event_context = Some(t),
                                    _ => {}
                                },
                            }
                        }
                        if !stream_seen.insert(s.id) {
                            return merr(at, format!("stream class {} declared twice", s.id));
                        }
                        md.streams.push(s);
                    }
                    "event" => {
                        let mut ev = EventDecl {
                            name: String::new(),
                            id: 0,
                            stream_id: 0,
                            context: None,
                            fields: None,
                            loglevel: None,
                            offset: at,
                            explicit_stream: false,
                        };
                        let (mut has_name, mut has_id) = (false, false);
                        for e in entries {
                            match e {
                                Entry::Val(k, v, at) => match k.as_str() {
                                    "name" => {
                                        ev.name = match v {
                                            Val::Str(s) | Val::Path(s) => s,
                                            Val::Int(_) => return merr(at, "bad event name"),
                                        };
                                        has_name = true;
                                    }
                                    "id" => {
                                        ev.id = int_entry(&v, at, &k, 0, u64::MAX as i128)? as u64;
                                        has_id = true;
                                    }
                                    "stream_id" => {
                                        ev.stream_id =
                                            int_entry(&v, at, &k, 0, u64::MAX as i128)? as u64;
                                        ev.explicit_stream = true;
                                    }
                                    "loglevel" => {
                                        ev.loglevel = Some(int_entry(
                                            &v,
                                            at,
                                            &k,
                                            i64::MIN as i128,
                                            i64::MAX as i128,
                                        )?
                                            as i64)
                                    }
                                    _ => {}
                                },
                                Entry::Type(k, t) => match k.as_str() {
                                    "context" => ev.context = Some(t),
                                    "fields" => ev.fields = Some(t),
                                    _ => {}
                                },
                            }
                        }
                        if !has_name {
                            return merr(at, "event without a name");
                        }
                        let _ = has_id;
                        md.events.push(ev);
                    }
                    "clock" => {
                        let mut c = Clock {
                            name: String::new(),
                            freq: 1_000_000_000,
                            offset_s: 0,
                            offset: 0,
                            description: String::new(),
                            uuid: None,
                            absolute: false,
                        };
                        for e in entries {
                            let Entry::Val(k, v, at) = e else { continue };
                            match k.as_str() {
                                "name" => {
                                    c.name = match v {
                                        Val::Str(s) | Val::Path(s) => s,
                                        _ => return merr(at, "bad clock name"),
                                    }
                                }
                                "freq" => {
                                    c.freq = int_entry(&v, at, &k, 1, u64::MAX as i128)? as u64
                                }
                                "offset_s" => {
                                    c.offset_s =
                                        int_entry(&v, at, &k, i64::MIN as i128, i64::MAX as i128)?
                                            as i64
                                }
                                "offset" => {
                                    c.offset =
                                        int_entry(&v, at, &k, i64::MIN as i128, i64::MAX as i128)?
                                            as i64
                                }
                                "description" => {
                                    if let Val::Str(s) = v {
                                        c.description = s
                                    }
                                }
                                "uuid" => {
                                    if let Val::Str(s) = &v {
                                        c.uuid = parse_uuid(s);
                                    }
                                }
                                "absolute" => c.absolute = Parser::boolean(&k, &v, at)?,
                                _ => {}
                            }
                        }
                        if c.name.is_empty() {
                            return merr(at, "clock without a name");
                        }
                        if md.clocks.iter().any(|x| x.name == c.name) {
                            return merr(at, format!("clock `{}` declared twice", c.name));
                        }
                        md.clocks.push(c);
                    }
                    "env" => {
                        for e in entries {
                            let Entry::Val(k, v, at) = e else { continue };
                            let v = match v {
                                Val::Int(i) => EnvVal::Int(int_entry(
                                    &Val::Int(i),
                                    at,
                                    &k,
                                    i64::MIN as i128,
                                    i64::MAX as i128,
                                )?
                                    as i64),
                                Val::Str(s) | Val::Path(s) => EnvVal::Str(s),
                            };
                            md.env.push((k, v));
                        }
                    }
                    _ => {} // callsite: informational
                }
            }
            Tok::Ident(_) => {
                p.type_spec()?;
                // babeltrace also accepts a definition directly followed by the next one.
                if !(p.is_word("struct") || p.is_word("variant") || p.is_word("enum")) {
                    p.expect(";")?;
                }
            }
            _ => {
                let f = p.found();
                return p.err(format!("expected a declaration, found {f}"));
            }
        }
    }
    let eof = p.here();
    if !trace_seen {
        return merr(eof, "no `trace` block");
    }
    if version != (Some(1), Some(8)) {
        return merr(0, "trace is not CTF 1.8 (major = 1; minor = 8;)");
    }
    let Some(be) = order else {
        return merr(0, "trace without byte_order");
    };
    if let Some(pbe) = mt.big_endian {
        if pbe != be {
            return merr(0, "metadata packets and trace byte_order differ");
        }
    }
    md.big_endian = be;
    if md.streams.is_empty() {
        md.streams.push(StreamDecl {
            id: 0,
            packet_context: None,
            event_header: None,
            event_context: None,
            offset: 0,
        });
    }
    let stream_ids: std::collections::HashSet<u64> = md.streams.iter().map(|s| s.id).collect();
    let mut seen = std::collections::HashSet::with_capacity(md.events.len());
    for e in &md.events {
        if !e.explicit_stream && md.streams.len() > 1 {
            return merr(
                e.offset,
                format!(
                    "event `{}` without stream_id in a trace with several stream classes",
                    e.name
                ),
            );
        }
        if !stream_ids.contains(&e.stream_id) {
            return merr(
                e.offset,
                format!(
                    "event `{}` of undeclared stream class {}",
                    e.name, e.stream_id
                ),
            );
        }
        if !seen.insert((e.stream_id, e.id)) {
            return merr(
                e.offset,
                format!(
                    "event id {} declared twice in stream class {}",
                    e.id, e.stream_id
                ),
            );
        }
    }
    md.types = p.types;
    Ok(md)
}
