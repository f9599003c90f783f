//! Event schemas shared by the writers (tracepoints) and the readers (CTF metadata, trace reader).
//!
//! A tracepoint's payload is a sequence of fields encoded back to back, with **no alignment
//! padding** (every field is byte aligned, little-endian). The encoding of each [`FieldType`]:
//!
//! | type | bytes |
//! |---|---|
//! | `U8`..`U64`, `I8`..`I64` | the integer, little-endian, 1/2/4/8 bytes |
//! | `F32`, `F64` | IEEE 754, little-endian, 4/8 bytes |
//! | `Bool` | one byte, 0 or 1 (other values are a decoding error) |
//! | `String` | UTF-8 (or arbitrary) bytes without NUL, then one NUL byte |
//! | `Bytes` | `u32` length N, little-endian, then N bytes |
//!
//! Fields copied from untrusted memory (raw C strings, raw pointer + length) are described by
//! [`FieldType::String`]/[`FieldType::Bytes`] preceded by a `U32` field named
//! `<name>_faulted` ([`FAULTED_SUFFIX`]) holding the number of bytes that could not be read (0
//! when the copy was clean); the unread bytes are zero-filled (`Bytes`) or the string is cut at
//! the fault.
//!
//! A raw buffer (pointer + length, recorded as `Bytes`) has a second prefix field, after
//! `<name>_faulted`: a `U64` named `<name>_truncated` ([`TRUNCATED_SUFFIX`]) holding the number
//! of bytes of the buffer that were **not recorded** (its length minus the recorded length: the
//! buffer was longer than the recording limit, or did not fit the event), 0 when the whole
//! buffer is in the event. So a raw buffer field `buf` is encoded as
//! `buf_faulted: U32, buf_truncated: U64, buf: Bytes`, and a reader tells a buffer cut at the
//! limit from a whole one of the same length. [`truncation_count_of`] recognises the field.
//!
//! Event ids are `u32`, assigned by the tracepoint registry; the id and the timestamp live in
//! the ring buffer's record header, not in the payload.

/// Suffix of the `U32` field before each field copied from untrusted memory: bytes that could
/// not be read.
pub const FAULTED_SUFFIX: &str = "_faulted";

/// Suffix of the `U64` field before a raw buffer (`Bytes`) field: bytes of the buffer that were
/// not recorded (module docs).
pub const TRUNCATED_SUFFIX: &str = "_truncated";

/// If a field named `name` of type `ty`, followed by a field named `next_name` of type
/// `next_ty`, is the truncation count of that raw buffer field (`<next_name>_truncated: U64`
/// before `<next_name>: Bytes`), the raw buffer field's name.
pub fn truncation_count_of<'a>(
    name: &str,
    ty: FieldType,
    next_name: &'a str,
    next_ty: FieldType,
) -> Option<&'a str> {
    (ty == FieldType::U64
        && next_ty == FieldType::Bytes
        && name.strip_suffix(TRUNCATED_SUFFIX) == Some(next_name))
    .then_some(next_name)
}

/// Type of one payload field. Serialized (JSON) as its [`FieldType::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// One byte, 0 or 1.
    Bool,
    /// NUL-terminated byte string.
    String,
    /// `u32` length then that many bytes.
    Bytes,
}

impl FieldType {
    /// Encoded size when the type has a fixed size.
    pub const fn fixed_size(self) -> Option<usize> {
        match self {
            FieldType::U8 | FieldType::I8 | FieldType::Bool => Some(1),
            FieldType::U16 | FieldType::I16 => Some(2),
            FieldType::U32 | FieldType::I32 | FieldType::F32 => Some(4),
            FieldType::U64 | FieldType::I64 | FieldType::F64 => Some(8),
            FieldType::String | FieldType::Bytes => None,
        }
    }

    /// Stable lowercase name, used in docs and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            FieldType::U8 => "u8",
            FieldType::U16 => "u16",
            FieldType::U32 => "u32",
            FieldType::U64 => "u64",
            FieldType::I8 => "i8",
            FieldType::I16 => "i16",
            FieldType::I32 => "i32",
            FieldType::I64 => "i64",
            FieldType::F32 => "f32",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::String => "string",
            FieldType::Bytes => "bytes",
        }
    }
}

/// One named payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldDesc {
    /// Field name (`[A-Za-z][A-Za-z0-9_]*`), unique within its event.
    pub name: &'static str,
    /// Encoding of the field.
    pub ty: FieldType,
}

/// Static description of one event (tracepoint): `provider:name` and its payload fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventDesc {
    /// Provider (the part before `:` in `provider:name`).
    pub provider: &'static str,
    /// Event name within its provider.
    pub name: &'static str,
    /// Payload fields, in encoding order.
    pub fields: &'static [FieldDesc],
}

impl EventDesc {
    /// `provider:name`, the name users enable and see in traces.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// Owned, serializable form of a [`FieldDesc`] (a schema that crosses a process boundary).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OwnedFieldDesc {
    /// Field name.
    pub name: String,
    /// Encoding of the field.
    #[serde(rename = "type")]
    pub ty: FieldType,
}

/// Owned, serializable form of an [`EventDesc`]: what a traced program publishes to the
/// recording process (`faultline record`), which has no `'static` descriptions of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OwnedEventDesc {
    /// Provider (the part before `:`).
    pub provider: String,
    /// Event name within its provider.
    pub name: String,
    /// Payload fields, in encoding order.
    pub fields: Vec<OwnedFieldDesc>,
}

impl From<&EventDesc> for OwnedEventDesc {
    fn from(d: &EventDesc) -> Self {
        OwnedEventDesc {
            provider: d.provider.to_string(),
            name: d.name.to_string(),
            fields: d
                .fields
                .iter()
                .map(|f| OwnedFieldDesc {
                    name: f.name.to_string(),
                    ty: f.ty,
                })
                .collect(),
        }
    }
}

impl OwnedEventDesc {
    /// A `'static` [`EventDesc`] with the same content. **Leaks** the strings and the field
    /// array: meant for a schema received once per process (a recording session), not for
    /// repeated use.
    pub fn leak(&self) -> EventDesc {
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let fields: Vec<FieldDesc> = self
            .fields
            .iter()
            .map(|f| FieldDesc {
                name: leak(&f.name),
                ty: f.ty,
            })
            .collect();
        EventDesc {
            provider: leak(&self.provider),
            name: leak(&self.name),
            fields: Box::leak(fields.into_boxed_slice()),
        }
    }
}

/// A decoded field value (reader side).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An unsigned integer of any width.
    U(u64),
    /// A signed integer of any width.
    I(i64),
    /// A float (`F32` widened to `f64`).
    F(f64),
    /// A boolean.
    Bool(bool),
    /// A string's bytes, without the NUL (not checked to be UTF-8).
    Str(Vec<u8>),
    /// A byte array.
    Bytes(Vec<u8>),
}

/// A decoded field value borrowing its bytes from the payload (no allocation); see
/// [`decode_field`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// An unsigned integer of any width.
    U(u64),
    /// A signed integer of any width.
    I(i64),
    /// A float (`F32` widened to `f64`).
    F(f64),
    /// A boolean.
    Bool(bool),
    /// A string's bytes, without the NUL (not checked to be UTF-8).
    Str(&'a [u8]),
    /// A byte array.
    Bytes(&'a [u8]),
}

impl FieldValue<'_> {
    /// The owned [`Value`].
    pub fn to_value(&self) -> Value {
        match *self {
            FieldValue::U(x) => Value::U(x),
            FieldValue::I(x) => Value::I(x),
            FieldValue::F(x) => Value::F(x),
            FieldValue::Bool(b) => Value::Bool(b),
            FieldValue::Str(s) => Value::Str(s.to_vec()),
            FieldValue::Bytes(b) => Value::Bytes(b.to_vec()),
        }
    }
}

impl Value {
    /// The borrowed form, e.g. to share formatting code with [`FieldValue`].
    pub fn as_field(&self) -> FieldValue<'_> {
        match self {
            Value::U(x) => FieldValue::U(*x),
            Value::I(x) => FieldValue::I(*x),
            Value::F(x) => FieldValue::F(*x),
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Str(s) => FieldValue::Str(s),
            Value::Bytes(b) => FieldValue::Bytes(b),
        }
    }
}

/// Why a field could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The payload ends inside the field.
    Truncated,
    /// A `String` field has no NUL terminator.
    NoNul,
    /// A `Bool` byte other than 0 or 1.
    BadBool(u8),
}

impl FieldErrorKind {
    /// What is wrong with field `field`, e.g. "bool field `ok` is 2".
    pub fn describe(self, field: &str) -> String {
        match self {
            FieldErrorKind::Truncated => format!("payload ends inside field `{field}`"),
            FieldErrorKind::NoNul => format!("string field `{field}` has no NUL"),
            FieldErrorKind::BadBool(v) => format!("bool field `{field}` is {v}"),
        }
    }
}

/// Error of [`decode_field`]: what is wrong and the payload offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    /// Payload offset where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

/// Decode one field of type `ty` at `*at` of `payload` and advance `*at` past it. Never
/// panics; on error `*at` is unchanged.
pub fn decode_field<'a>(
    ty: FieldType,
    payload: &'a [u8],
    at: &mut usize,
) -> Result<FieldValue<'a>, FieldError> {
    let start = *at;
    let fail = |offset: usize, kind: FieldErrorKind| FieldError { offset, kind };
    let take = |from: usize, n: usize| -> Result<&'a [u8], FieldError> {
        from.checked_add(n)
            .and_then(|end| payload.get(from..end))
            .ok_or(fail(from, FieldErrorKind::Truncated))
    };
    let (v, end) = match ty {
        FieldType::String => {
            let rest = payload
                .get(start..)
                .ok_or(fail(start, FieldErrorKind::Truncated))?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(fail(start, FieldErrorKind::NoNul))?;
            (FieldValue::Str(&rest[..nul]), start + nul + 1)
        }
        FieldType::Bytes => {
            let mut w = [0u8; 4];
            w.copy_from_slice(take(start, 4)?);
            let n = u32::from_le_bytes(w) as usize;
            let b = take(start + 4, n)?;
            (FieldValue::Bytes(b), start + 4 + n)
        }
        ty => {
            let n = ty.fixed_size().unwrap_or(0);
            let b = take(start, n)?;
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(b);
            let raw = u64::from_le_bytes(w);
            let v = match ty {
                FieldType::I8 => FieldValue::I(raw as u8 as i8 as i64),
                FieldType::I16 => FieldValue::I(raw as u16 as i16 as i64),
                FieldType::I32 => FieldValue::I(raw as u32 as i32 as i64),
                FieldType::I64 => FieldValue::I(raw as i64),
                FieldType::F32 => FieldValue::F(f32::from_bits(raw as u32) as f64),
                FieldType::F64 => FieldValue::F(f64::from_bits(raw)),
                FieldType::Bool => match raw {
                    0 => FieldValue::Bool(false),
                    1 => FieldValue::Bool(true),
                    v => return Err(fail(start, FieldErrorKind::BadBool(v as u8))),
                },
                _ => FieldValue::U(raw),
            };
            (v, start + n)
        }
    };
    *at = end;
    Ok(v)
}

/// Error decoding a payload: which field, where, and why (see [`FieldErrorKind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field's name.
    pub field: &'static str,
    /// Payload offset where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (at byte {})",
            self.kind.describe(self.field),
            self.offset
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decode a payload according to `fields` (one [`decode_field`] per field; bytes after the last
/// field are ignored). Never panics: a short or malformed payload is an error naming the field
/// and offset.
pub fn decode(fields: &[FieldDesc], payload: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut at = 0usize;
    fields
        .iter()
        .map(|f| {
            decode_field(f.ty, payload, &mut at)
                .map(|v| v.to_value())
                .map_err(|e| DecodeError {
                    field: f.name,
                    offset: e.offset,
                    kind: e.kind,
                })
        })
        .collect()
}

/// Glob matching shared by everything that selects events by name (tracepoint enabling, trace
/// filters): `star` matches any run of items (also empty), `one` exactly one item, anything else
/// itself. Linear-time backtracking on the last `star` only; never panics.
pub fn glob_match_by<T: Copy + PartialEq>(pat: &[T], text: &[T], star: T, one: T) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut last_star: Option<(usize, usize)> = None;
    while i < text.len() {
        match pat.get(p) {
            Some(&c) if c == star => {
                last_star = Some((p, i));
                p += 1;
            }
            Some(&c) if c == one || c == text[i] => {
                p += 1;
                i += 1;
            }
            _ => match last_star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    last_star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &[FieldDesc] = &[
        FieldDesc {
            name: "a",
            ty: FieldType::I16,
        },
        FieldDesc {
            name: "s",
            ty: FieldType::String,
        },
        FieldDesc {
            name: "b",
            ty: FieldType::Bytes,
        },
        FieldDesc {
            name: "x",
            ty: FieldType::F64,
        },
        FieldDesc {
            name: "t",
            ty: FieldType::Bool,
        },
    ];

    #[test]
    fn truncation_count_fields() {
        use FieldType::*;
        assert_eq!(
            truncation_count_of("buf_truncated", U64, "buf", Bytes),
            Some("buf")
        );
        assert_eq!(
            truncation_count_of("buf_truncated", U32, "buf", Bytes),
            None
        );
        assert_eq!(
            truncation_count_of("buf_truncated", U64, "buf", String),
            None
        );
        assert_eq!(truncation_count_of("buf_truncated", U64, "bu", Bytes), None);
        assert_eq!(truncation_count_of("buf", U64, "buf", Bytes), None);
    }

    #[test]
    fn decodes_each_type() {
        let mut p = Vec::new();
        p.extend_from_slice(&(-3i16).to_le_bytes());
        p.extend_from_slice(b"hi\0");
        p.extend_from_slice(&3u32.to_le_bytes());
        p.extend_from_slice(&[1, 2, 3]);
        p.extend_from_slice(&1.5f64.to_le_bytes());
        p.push(1);
        let v = decode(F, &p).unwrap();
        assert_eq!(
            v,
            vec![
                Value::I(-3),
                Value::Str(b"hi".to_vec()),
                Value::Bytes(vec![1, 2, 3]),
                Value::F(1.5),
                Value::Bool(true)
            ]
        );
    }

    #[test]
    fn owned_roundtrip() {
        let d = EventDesc {
            provider: "p",
            name: "n",
            fields: F,
        };
        let o = OwnedEventDesc::from(&d);
        let j = serde_json::to_string(&o).unwrap();
        assert!(j.contains(r#"{"name":"a","type":"i16"}"#), "{j}");
        let back: OwnedEventDesc = serde_json::from_str(&j).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.leak(), d);
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let mut p = Vec::new();
        p.extend_from_slice(&(-3i16).to_le_bytes());
        p.extend_from_slice(b"hi\0");
        p.extend_from_slice(&300u32.to_le_bytes());
        for cut in 0..p.len() {
            assert!(decode(F, &p[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(decode(F, &p).unwrap_err().field, "b");
    }

    #[test]
    fn field_errors_say_why_and_where() {
        let mut at = 3;
        assert_eq!(
            decode_field(FieldType::Bool, &[0, 0, 0, 2], &mut at),
            Err(FieldError {
                offset: 3,
                kind: FieldErrorKind::BadBool(2)
            })
        );
        assert_eq!(at, 3);
        assert_eq!(
            decode_field(FieldType::String, b"ab", &mut at),
            Err(FieldError {
                offset: 3,
                kind: FieldErrorKind::Truncated
            })
        );
        at = 0;
        assert_eq!(
            decode_field(FieldType::String, b"ab", &mut at)
                .unwrap_err()
                .kind,
            FieldErrorKind::NoNul
        );
        let p = [2, 0, 0, 0, 7];
        assert_eq!(
            decode_field(FieldType::Bytes, &p, &mut at),
            Err(FieldError {
                offset: 4,
                kind: FieldErrorKind::Truncated
            })
        );
        let p = [2, 0, 0, 0, 7, 8, 1];
        assert_eq!(
            decode_field(FieldType::Bytes, &p, &mut at),
            Ok(FieldValue::Bytes(&[7, 8]))
        );
        assert_eq!(
            decode_field(FieldType::Bool, &p, &mut at),
            Ok(FieldValue::Bool(true))
        );
        assert_eq!(at, 7);
        let e = decode(F, &[1, 0, b'x']).unwrap_err();
        assert_eq!(e.to_string(), "string field `s` has no NUL (at byte 2)");
    }
}
