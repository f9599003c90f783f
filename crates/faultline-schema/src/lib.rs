//! Event schemas shared by the writers (tracepoints) and the readers (CTF metadata, trace reader).
//!
//! A tracepoint's payload is a sequence of fields encoded back to back, with **no alignment
//! padding** (every field is byte aligned, little-endian). The encoding of each [`FieldType`]:
//!
//! | type | bytes |
//! |---|---|
//! | `U8`..`U64`, `I8`..`I64` | the integer, little-endian, 1/2/4/8 bytes |
//! | `F32`, `F64` | IEEE 754, little-endian, 4/8 bytes |
//! | `Bool` | one byte, 0 or 1 |
//! | `String` | UTF-8 (or arbitrary) bytes without NUL, then one NUL byte |
//! | `Bytes` | `u32` length N, little-endian, then N bytes |
//!
//! Fields copied from untrusted memory (raw C strings, raw pointer + length) are described by
//! [`FieldType::String`]/[`FieldType::Bytes`] preceded by a `U32` field named
//! `<name>_faulted` holding the number of bytes that could not be read (0 when the copy was
//! clean); the unread bytes are zero-filled (`Bytes`) or the string is cut at the fault.
//!
//! Event ids are `u32`, assigned by the tracepoint registry; the id and the timestamp live in
//! the ring buffer's record header, not in the payload.

/// Type of one payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
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
    pub name: &'static str,
    pub ty: FieldType,
}

/// Static description of one event (tracepoint): `provider:name` and its payload fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventDesc {
    pub provider: &'static str,
    pub name: &'static str,
    pub fields: &'static [FieldDesc],
}

impl EventDesc {
    /// `provider:name`, the name users enable and see in traces.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// A decoded field value (reader side).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U(u64),
    I(i64),
    F(f64),
    Bool(bool),
    Str(Vec<u8>),
    Bytes(Vec<u8>),
}

/// Error decoding a payload: it ended early or a string had no terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: &'static str,
    pub offset: usize,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "payload truncated in field `{}` at byte {}",
            self.field, self.offset
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decode a payload according to `fields`. Never panics: a short or malformed payload is an
/// error naming the field and offset.
pub fn decode(fields: &[FieldDesc], payload: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let err = DecodeError {
            field: f.name,
            offset: at,
        };
        let take = |at: &mut usize, n: usize| -> Result<&[u8], DecodeError> {
            let end = at.checked_add(n).ok_or(err.clone())?;
            let s = payload.get(*at..end).ok_or(err.clone())?;
            *at = end;
            Ok(s)
        };
        let v = match f.ty {
            FieldType::String => {
                let rest = payload.get(at..).ok_or(err.clone())?;
                let nul = rest.iter().position(|&b| b == 0).ok_or(err.clone())?;
                let s = rest[..nul].to_vec();
                at += nul + 1;
                Value::Str(s)
            }
            FieldType::Bytes => {
                let n = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap()) as usize;
                Value::Bytes(take(&mut at, n)?.to_vec())
            }
            ty => {
                let n = ty.fixed_size().unwrap_or(0);
                let b = take(&mut at, n)?;
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(b);
                let raw = u64::from_le_bytes(buf);
                match ty {
                    FieldType::I8 => Value::I(raw as u8 as i8 as i64),
                    FieldType::I16 => Value::I(raw as u16 as i16 as i64),
                    FieldType::I32 => Value::I(raw as u32 as i32 as i64),
                    FieldType::I64 => Value::I(raw as i64),
                    FieldType::F32 => Value::F(f32::from_bits(raw as u32) as f64),
                    FieldType::F64 => Value::F(f64::from_bits(raw)),
                    FieldType::Bool => Value::Bool(raw != 0),
                    _ => Value::U(raw),
                }
            }
        };
        out.push(v);
    }
    Ok(out)
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
}
