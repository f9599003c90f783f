//! Trace description and its CTF 1.8 metadata (TSDL) text.
//!
//! [`metadata`] turns a [`TraceDesc`] into the text of the trace's `metadata` file. The text
//! describes exactly the packet layout of [`crate::layout`]: the 24-byte `trace.packet.header`
//! (`magic`, `uuid`, `stream_id`), the 104-byte `stream.packet.context`, the record header
//! `stream.event.header` aligned to a byte (records are packed) — LTTng's compact/extended
//! scheme: a 5-bit enum `id` (`compact` 0..29, `padding` 30, `extended` 31) and a variant on
//! it holding a 27-bit clock-mapped `timestamp` (compact), the 27-bit timestamp and a
//! bit-aligned u32 `id` (padding), or a u32 `id` and a 64-bit timestamp (extended) —
//! immediately followed by `stream.event.context`: `len`, the payload bytes — a u16 enum
//! (`small` 0..65534, `large` 65535) and a variant on it holding nothing (`small`) or the u32
//! length (`large`). The length is declared as event context rather than in the event header
//! because babeltrace2 warns about (and ignores) any event-header field other than `id` and
//! `timestamp`. Then one `event` block per event whose
//! `fields` struct maps each
//! [`FieldType`] to a byte-aligned, little-endian TSDL type (the payload is packed, so every
//! type has `align = 8`). The record layout is the wire format of `faultline_wire`.
//!
//! Every trace also declares the padding event class `faultline:padding` with the reserved id
//! [`faultline_wire::PADDING_ID`]: its payload is one text sequence (`pad`) of
//! `stream.event.context.len` bytes, so babeltrace2 (and any CTF reader) steps over padding
//! records — abandoned reservations — showing them as that event with an empty string;
//! faultline's readers skip them. No event may use a reserved id
//! ([`faultline_wire::is_reserved_id`]) or the padding class's name.
//!
//! Field naming (babeltrace strips one leading `_` from every field name, as LTTng expects, and
//! checks duplicates by comparing a new field's *unstripped* name with the earlier fields'
//! *stripped* names):
//! - a payload field `x` is written `_x`, so babeltrace shows it as `x` and no field name can
//!   collide with a TSDL keyword (`_struct` is fine where `struct` is not);
//! - a `Bytes` field `x` becomes `uint32_t _x__len;` then `uint8_t _x[_x__len];` — babeltrace
//!   shows the length as `x__len`; the reader turns the pair back into the single field `x`;
//! - payload field names must match `[A-Za-z][A-Za-z0-9_]*`, must not contain `__` and must be
//!   unique within an event. So no raw or stripped name can equal another field's raw or
//!   stripped name: user names never start with `_` nor contain `__`, length names always
//!   contain `__`.
//!
//! Event names are `provider:name`; provider and name must be non-empty printable ASCII without
//! `"`, `\`, `:` or spaces (so a name glob like `myapp:*` is unambiguous). Clock names and env
//! keys must be identifiers. Strings (env values, clock description) are escaped (`\"`, `\\`,
//! `\n`, `\t`, `\r`); other control characters are rejected.

use crate::error::{CtfError, Result};
use faultline_schema::{EventDesc, FieldType};
use std::fmt::Write as _;

/// The trace clock. A timestamp `t` (ticks) is the instant
/// `offset_s` seconds + `(offset_ticks + t) / freq_hz` seconds after the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockDesc {
    /// Identifier, e.g. `monotonic`.
    pub name: String,
    /// Ticks per second (> 0).
    pub freq_hz: u64,
    /// Offset from the Unix epoch, whole seconds.
    pub offset_s: i64,
    /// Offset from the Unix epoch, additional ticks.
    pub offset_ticks: u64,
    /// Free text, e.g. how the clock is read.
    pub description: String,
}

/// A value in the `env` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// An integer value.
    Int(i64),
    /// A string value.
    Str(String),
}

/// The `env` block: well-known keys plus arbitrary extra ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDesc {
    /// Host the trace was recorded on.
    pub hostname: String,
    /// Name of the traced program.
    pub procname: String,
    /// Tracer major version.
    pub tracer_major: u32,
    /// Tracer minor version.
    pub tracer_minor: u32,
    /// Extra keys (identifiers, distinct from the well-known ones).
    pub extra: Vec<(String, EnvValue)>,
}

/// Name of the tracer in the `env` block.
pub const TRACER_NAME: &str = "faultline";

/// Everything [`metadata`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceDesc {
    /// Trace UUID (every packet header carries it).
    pub uuid: [u8; 16],
    /// The clock of the timestamps.
    pub clock: ClockDesc,
    /// The `env` block.
    pub env: EnvDesc,
    /// `(event id, description)`; ids must be distinct.
    pub events: Vec<(u32, EventDesc)>,
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut it = s.bytes();
    matches!(it.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && it.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A payload field name we accept: an identifier that does not start with `_` and has no `__`.
pub(crate) fn is_field_name(s: &str) -> bool {
    is_identifier(s) && !s.starts_with('_') && !s.contains("__")
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\' && c != b':')
}

/// Quote a string as a TSDL string literal.
pub(crate) fn quote(s: &str, what: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                return Err(CtfError::Desc(format!(
                    "{what}: control character {:?} cannot be written in metadata",
                    c
                )))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The UUID in its canonical text form.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The TSDL type of a fixed-size field type (shared with the parser's checks).
fn scalar_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::U8 => "uint8_t",
        FieldType::U16 => "uint16_t",
        FieldType::U32 => "uint32_t",
        FieldType::U64 => "uint64_t",
        FieldType::I8 => "int8_t",
        FieldType::I16 => "int16_t",
        FieldType::I32 => "int32_t",
        FieldType::I64 => "int64_t",
        FieldType::F32 => "float32_t",
        FieldType::F64 => "float64_t",
        FieldType::Bool => "enum : uint8_t { \"false\" = 0, \"true\" = 1 }",
        FieldType::String => "string { encoding = UTF8; }",
        // Handled by the caller (two declarations).
        FieldType::Bytes => "uint8_t",
    }
}

/// Check that `desc` can be written as metadata (names, ids, clock).
pub fn validate(desc: &TraceDesc) -> Result<()> {
    let e = |m: String| Err(CtfError::Desc(m));
    if !is_identifier(&desc.clock.name) {
        return e(format!(
            "clock name {:?} is not an identifier",
            desc.clock.name
        ));
    }
    if desc.clock.freq_hz == 0 {
        return e("clock frequency is 0".into());
    }
    let mut keys: Vec<&str> = vec![
        "hostname",
        "procname",
        "tracer_name",
        "tracer_major",
        "tracer_minor",
    ];
    for (k, _) in &desc.env.extra {
        if !is_identifier(k) {
            return e(format!("env key {k:?} is not an identifier"));
        }
        if keys.contains(&k.as_str()) {
            return e(format!("env key {k:?} given twice"));
        }
        keys.push(k);
    }
    let mut ids = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for (id, ev) in &desc.events {
        if !ids.insert(*id) {
            return e(format!("event id {id} given twice"));
        }
        if faultline_wire::is_reserved_id(*id) {
            return e(format!(
                "event id {id} is reserved for padding/pending records"
            ));
        }
        if ev.provider == faultline_wire::PADDING_PROVIDER
            && ev.name == faultline_wire::PADDING_NAME
        {
            return e(format!(
                "event name {} is reserved for padding records",
                faultline_wire::PADDING_EVENT_NAME
            ));
        }
        if !is_name_part(ev.provider) || !is_name_part(ev.name) {
            return e(format!(
                "event name {:?}:{:?}: provider and name must be non-empty printable ASCII \
                 without '\"', '\\\\', ':' or spaces",
                ev.provider, ev.name
            ));
        }
        if !names.insert((ev.provider, ev.name)) {
            return e(format!("event {}:{} given twice", ev.provider, ev.name));
        }
        let mut fields = std::collections::HashSet::new();
        for f in ev.fields {
            if !is_field_name(f.name) {
                return e(format!(
                    "event {}:{}: field name {:?} must match [A-Za-z][A-Za-z0-9_]* without `__`",
                    ev.provider, ev.name, f.name
                ));
            }
            if !fields.insert(f.name) {
                return e(format!(
                    "event {}:{}: field {:?} given twice",
                    ev.provider, ev.name, f.name
                ));
            }
        }
    }
    Ok(())
}

/// The `env` entries `extra`, one line each (keys already validated as identifiers).
fn write_env_entries(w: &mut String, extra: &[(String, EnvValue)]) -> Result<()> {
    for (k, v) in extra {
        match v {
            EnvValue::Int(i) => {
                let _ = writeln!(w, "\t{k} = {i};");
            }
            EnvValue::Str(s) => {
                let _ = writeln!(w, "\t{k} = {};", quote(s, k)?);
            }
        }
    }
    Ok(())
}

/// A second `env` block holding `extra`, to append to [`metadata`]`(desc)`: the same entries
/// as `metadata` of `desc` with `extra` added to its `env`, for a copy of the metadata that
/// can only be appended to (a live relay session). CTF readers (babeltrace2, this crate's)
/// merge the `env` blocks of a trace. Errors when a key is not an identifier or is already
/// in `desc`'s `env` (a value cannot be replaced by appending).
pub fn env_addendum(desc: &TraceDesc, extra: &[(String, EnvValue)]) -> Result<String> {
    let mut d = desc.clone();
    d.env.extra.extend(extra.iter().cloned());
    validate(&d)?;
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(w, "env {{");
    write_env_entries(w, extra)?;
    let _ = writeln!(w, "}};");
    Ok(m)
}

/// The CTF 1.8 TSDL metadata text describing a trace written by [`crate::TraceWriter`].
/// Errors when a name cannot be expressed (see the module docs).
pub fn metadata(desc: &TraceDesc) -> Result<String> {
    validate(desc)?;
    let mut m = String::new();
    let w = &mut m;
    // `write!` into a String cannot fail.
    let _ = writeln!(w, "/* CTF 1.8 */");
    let _ = writeln!(
        w,
        "/* written by {TRACER_NAME}; layout: faultline-ctf crate docs */"
    );
    let _ = writeln!(w);
    for (name, size, signed) in [
        ("uint8_t", 8, false),
        ("uint16_t", 16, false),
        ("uint32_t", 32, false),
        ("uint64_t", 64, false),
        ("int8_t", 8, true),
        ("int16_t", 16, true),
        ("int32_t", 32, true),
        ("int64_t", 64, true),
    ] {
        let _ = writeln!(
            w,
            "typealias integer {{ size = {size}; align = 8; signed = {signed}; byte_order = le; }} := {name};"
        );
    }
    let _ = writeln!(
        w,
        "typealias floating_point {{ exp_dig = 8; mant_dig = 24; align = 8; byte_order = le; }} := float32_t;"
    );
    let _ = writeln!(
        w,
        "typealias floating_point {{ exp_dig = 11; mant_dig = 53; align = 8; byte_order = le; }} := float64_t;"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "trace {{");
    let _ = writeln!(w, "\tmajor = 1;");
    let _ = writeln!(w, "\tminor = 8;");
    let _ = writeln!(w, "\tuuid = \"{}\";", uuid_string(&desc.uuid));
    let _ = writeln!(w, "\tbyte_order = le;");
    let _ = writeln!(w, "\tpacket.header := struct {{");
    let _ = writeln!(w, "\t\tuint32_t magic;");
    let _ = writeln!(w, "\t\tuint8_t uuid[16];");
    let _ = writeln!(w, "\t\tuint32_t stream_id;");
    let _ = writeln!(w, "\t}};");
    let _ = writeln!(w, "}};");
    let _ = writeln!(w);
    let env = &desc.env;
    let _ = writeln!(w, "env {{");
    let _ = writeln!(w, "\thostname = {};", quote(&env.hostname, "hostname")?);
    let _ = writeln!(w, "\tprocname = {};", quote(&env.procname, "procname")?);
    let _ = writeln!(w, "\ttracer_name = \"{TRACER_NAME}\";");
    let _ = writeln!(w, "\ttracer_major = {};", env.tracer_major);
    let _ = writeln!(w, "\ttracer_minor = {};", env.tracer_minor);
    write_env_entries(w, &env.extra)?;
    let _ = writeln!(w, "}};");
    let _ = writeln!(w);
    let c = &desc.clock;
    let _ = writeln!(w, "clock {{");
    let _ = writeln!(w, "\tname = \"{}\";", c.name);
    let _ = writeln!(
        w,
        "\tdescription = {};",
        quote(&c.description, "clock description")?
    );
    let _ = writeln!(w, "\tfreq = {};", c.freq_hz);
    let _ = writeln!(w, "\tprecision = 0;");
    let _ = writeln!(w, "\toffset_s = {};", c.offset_s);
    let _ = writeln!(w, "\toffset = {};", c.offset_ticks);
    let _ = writeln!(w, "\tabsolute = false;");
    let _ = writeln!(w, "}};");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "typealias integer {{ size = 64; align = 8; signed = false; byte_order = le; map = clock.{}.value; }} := uint64_clock_t;",
        c.name
    );
    let _ = writeln!(
        w,
        "typealias integer {{ size = 27; align = 1; signed = false; byte_order = le; map = clock.{}.value; }} := uint27_clock_t;",
        c.name
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "stream {{");
    let _ = writeln!(w, "\tid = 0;");
    let _ = writeln!(w, "\tpacket.context := struct {{");
    for f in [
        "uint64_clock_t timestamp_begin",
        "uint64_clock_t timestamp_end",
        "uint64_t content_size",
        "uint64_t packet_size",
        "uint64_t packet_seq_num",
        "uint64_t events_discarded",
        "uint32_t cpu_id",
        "uint32_t flags",
        "uint64_t lost_full",
        "uint64_t lost_stalled",
        "uint64_t lost_too_big",
        "uint64_t remote_commits",
        "uint64_t reserved[2]",
    ] {
        let _ = writeln!(w, "\t\t{f};");
    }
    let _ = writeln!(w, "\t}};");
    // The record header of `faultline_wire`: LTTng-style compact / extended headers (a 5-bit
    // tag then a variant), plus the compact padding form, byte-aligned (packed records); the
    // length as event context: a u16, 65535 meaning that the u32 length follows.
    let _ = writeln!(w, "\tevent.header := struct {{");
    let _ = writeln!(
        w,
        "\t\tenum : integer {{ size = 5; align = 1; signed = false; byte_order = le; }} \
         {{ compact = 0 ... 29, padding = 30, extended = 31 }} id;"
    );
    let _ = writeln!(w, "\t\tvariant <id> {{");
    let _ = writeln!(w, "\t\t\tstruct {{ uint27_clock_t timestamp; }} compact;");
    let _ = writeln!(
        w,
        "\t\t\tstruct {{ uint27_clock_t timestamp; integer {{ size = 32; align = 1; signed = false; byte_order = le; }} id; }} padding;"
    );
    let _ = writeln!(
        w,
        "\t\t\tstruct {{ uint32_t id; uint64_clock_t timestamp; }} extended;"
    );
    let _ = writeln!(w, "\t\t}} v;");
    let _ = writeln!(w, "\t}} align(8);");
    let _ = writeln!(w, "\tevent.context := struct {{");
    let _ = writeln!(
        w,
        "\t\tenum : uint16_t {{ small = 0 ... {}, large = {} }} len;",
        faultline_wire::LONG_LEN - 1,
        faultline_wire::LONG_LEN
    );
    let _ = writeln!(w, "\t\tvariant <len> {{");
    let _ = writeln!(w, "\t\t\tstruct {{ }} small;");
    let _ = writeln!(w, "\t\t\tstruct {{ uint32_t len; }} large;");
    let _ = writeln!(w, "\t\t}} v;");
    let _ = writeln!(w, "\t}};");
    let _ = writeln!(w, "}};");
    // The padding class comes before the program's classes, so a class added later is
    // appended to the text (live relay sessions can only append to the metadata).
    let _ = writeln!(w);
    let _ = write!(w, "{}", padding_event());
    for (id, ev) in &desc.events {
        let _ = writeln!(w);
        let _ = writeln!(w, "event {{");
        let _ = writeln!(w, "\tname = \"{}:{}\";", ev.provider, ev.name);
        let _ = writeln!(w, "\tid = {id};");
        let _ = writeln!(w, "\tstream_id = 0;");
        if ev.fields.is_empty() {
            let _ = writeln!(w, "\tfields := struct {{ }};");
        } else {
            let _ = writeln!(w, "\tfields := struct {{");
            for f in ev.fields {
                if f.ty == FieldType::Bytes {
                    let _ = writeln!(w, "\t\tuint32_t _{}__len;", f.name);
                    let _ = writeln!(w, "\t\tuint8_t _{}[_{}__len];", f.name, f.name);
                } else {
                    let _ = writeln!(w, "\t\t{} _{};", scalar_type(f.ty), f.name);
                }
            }
            let _ = writeln!(w, "\t}};");
        }
        let _ = writeln!(w, "}};");
    }
    Ok(m)
}

/// The `event` block of the padding class (module docs).
pub fn padding_event() -> String {
    format!(
        "event {{\n\tname = \"{}\";\n\tid = {};\n\tstream_id = 0;\n\tfields := struct {{\n\t\t\
         integer {{ size = 8; align = 8; signed = false; encoding = UTF8; }} \
         _pad[stream.event.context.len];\n\t}};\n}};\n",
        faultline_wire::PADDING_EVENT_NAME,
        faultline_wire::PADDING_ID
    )
}
