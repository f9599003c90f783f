//! Building small traces for tests (this crate's, the `faultline` command line's, the fuzz
//! targets'): a trace description with every field type, a payload encoder, a writer of
//! multi-CPU traces with losses from a packet plan, and [`read_case`], the property every
//! input must satisfy (the reader never panics and every error names its file).
//!
//! Moved out of `faultline-ctf` so the library holds no test-harness code.

use crate::TmpDir;
use faultline_ctf::{
    fuzz_read, ClockDesc, CtfError, EnvDesc, EnvValue, PacketBuilder, Result, TraceDesc,
    TraceWriter,
};
use faultline_schema::{EventDesc, FieldDesc, FieldType, Value};
use std::path::Path;

/// UUID of the test traces.
pub const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];

/// `myapp:all`: one field of every type.
pub const ALL: EventDesc = EventDesc {
    provider: "myapp",
    name: "all",
    fields: &[
        FieldDesc {
            name: "u8f",
            ty: FieldType::U8,
        },
        FieldDesc {
            name: "u16f",
            ty: FieldType::U16,
        },
        FieldDesc {
            name: "u32f",
            ty: FieldType::U32,
        },
        FieldDesc {
            name: "u64f",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "i8f",
            ty: FieldType::I8,
        },
        FieldDesc {
            name: "i16f",
            ty: FieldType::I16,
        },
        FieldDesc {
            name: "i32f",
            ty: FieldType::I32,
        },
        FieldDesc {
            name: "i64f",
            ty: FieldType::I64,
        },
        FieldDesc {
            name: "f32f",
            ty: FieldType::F32,
        },
        FieldDesc {
            name: "f64f",
            ty: FieldType::F64,
        },
        FieldDesc {
            name: "flag",
            ty: FieldType::Bool,
        },
        FieldDesc {
            name: "text",
            ty: FieldType::String,
        },
        FieldDesc {
            name: "blob",
            ty: FieldType::Bytes,
        },
        FieldDesc {
            name: "blob_len",
            ty: FieldType::U32,
        },
    ],
};

/// `myapp:tick`: no fields.
pub const EMPTY: EventDesc = EventDesc {
    provider: "myapp",
    name: "tick",
    fields: &[],
};

/// `other:read`: a raw C string (with its `_faulted` count) and a byte array.
pub const OTHER: EventDesc = EventDesc {
    provider: "other",
    name: "read",
    fields: &[
        FieldDesc {
            name: "path_faulted",
            ty: FieldType::U32,
        },
        FieldDesc {
            name: "path",
            ty: FieldType::String,
        },
        FieldDesc {
            name: "data",
            ty: FieldType::Bytes,
        },
    ],
};

/// Event id of [`ALL`].
pub const ID_ALL: u32 = 7;
/// Event id of [`EMPTY`].
pub const ID_EMPTY: u32 = 1;
/// Event id of [`OTHER`].
pub const ID_OTHER: u32 = 300;

/// A trace description with the three events above.
pub fn desc() -> TraceDesc {
    TraceDesc {
        uuid: UUID,
        clock: ClockDesc {
            name: "monotonic".into(),
            freq_hz: 1_000_000_000,
            offset_s: 1_700_000_000,
            offset_ticks: 250,
            description: "CLOCK_MONOTONIC \"raw\"".into(),
        },
        env: EnvDesc {
            hostname: "testhost".into(),
            procname: "app".into(),
            tracer_major: 0,
            tracer_minor: 1,
            extra: vec![
                ("strategy".into(), EnvValue::Str("bounce".into())),
                ("nr_cpus".into(), EnvValue::Int(2)),
            ],
        },
        events: vec![(ID_ALL, ALL), (ID_EMPTY, EMPTY), (ID_OTHER, OTHER)],
    }
}

/// A fresh, empty directory `faultline-ctf-<name>-<random>` under the system temp dir, removed
/// with its contents when the returned [`TmpDir`] drops (kept with `FAULTLINE_TEST_KEEP_TMP`).
pub fn tmpdir(name: &str) -> TmpDir {
    TmpDir::new(&format!("ctf-{name}"))
}

/// Encode values in the faultline-schema payload encoding; `None` when a value does not fit
/// its field type or the counts differ.
pub fn encode(fields: &[FieldDesc], values: &[Value]) -> Option<Vec<u8>> {
    if fields.len() != values.len() {
        return None;
    }
    let mut p = Vec::new();
    for (f, v) in fields.iter().zip(values) {
        match (f.ty, v) {
            (FieldType::U8, Value::U(x)) => p.push(*x as u8),
            (FieldType::U16, Value::U(x)) => p.extend_from_slice(&(*x as u16).to_le_bytes()),
            (FieldType::U32, Value::U(x)) => p.extend_from_slice(&(*x as u32).to_le_bytes()),
            (FieldType::U64, Value::U(x)) => p.extend_from_slice(&x.to_le_bytes()),
            (FieldType::I8, Value::I(x)) => p.push(*x as i8 as u8),
            (FieldType::I16, Value::I(x)) => p.extend_from_slice(&(*x as i16).to_le_bytes()),
            (FieldType::I32, Value::I(x)) => p.extend_from_slice(&(*x as i32).to_le_bytes()),
            (FieldType::I64, Value::I(x)) => p.extend_from_slice(&x.to_le_bytes()),
            (FieldType::F32, Value::F(x)) => p.extend_from_slice(&(*x as f32).to_le_bytes()),
            (FieldType::F64, Value::F(x)) => p.extend_from_slice(&x.to_le_bytes()),
            (FieldType::Bool, Value::Bool(b)) => p.push(*b as u8),
            (FieldType::String, Value::Str(s)) => {
                p.extend_from_slice(s);
                p.push(0);
            }
            (FieldType::Bytes, Value::Bytes(b)) => {
                p.extend_from_slice(&(b.len() as u32).to_le_bytes());
                p.extend_from_slice(b);
            }
            _ => return None,
        }
    }
    Some(p)
}

/// An expected event.
#[derive(Debug, Clone, PartialEq)]
pub struct Exp {
    /// Timestamp (ticks).
    pub ts: u64,
    /// CPU.
    pub cpu: u32,
    /// Event id.
    pub id: u32,
    /// `provider:name`.
    pub name: &'static str,
    /// Field values, in declaration order.
    pub values: Vec<Value>,
}

/// Values of the `k`-th `myapp:all` event of a plan.
pub fn all_values(k: u64) -> Vec<Value> {
    vec![
        Value::U(200 + k % 50),
        Value::U(65535 - k),
        Value::U(4_000_000_000 + k),
        Value::U(u64::MAX - k),
        Value::I(-128 + k as i64),
        Value::I(-32768 + k as i64),
        Value::I(-2_000_000_000 - k as i64),
        Value::I(i64::MIN + k as i64),
        Value::F(1.5 + k as f64),
        Value::F(-0.125 * (k as f64 + 1.0)),
        Value::Bool(k % 2 == 1),
        Value::Str(format!("text {k} \"q\"").into_bytes()),
        Value::Bytes(
            (0..(k % 5) as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(k as u8))
                .collect(),
        ),
        Value::U(k * 3),
    ]
}

/// Values of the `k`-th `other:read` event of a plan.
pub fn other_values(k: u64) -> Vec<Value> {
    vec![
        Value::U(k % 3),
        Value::Str(format!("/tmp/file{k}").into_bytes()),
        Value::Bytes(vec![0xde, 0xad, k as u8]),
    ]
}

/// One packet of a test trace: (cpu, seq, cumulative lost (full, stalled, too_big), number
/// of events, timestamp_begin).
pub type PacketPlan = (u32, u64, (u64, u64, u64), u64, u64);

/// How [`write_plan`] lays out the packets of a plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanShape {
    /// Ticks between consecutive events of a packet (event `j` of a packet of CPU `c` with
    /// `timestamp_begin` `b` is at `b + step * j + c`).
    pub step: u64,
    /// `timestamp_end - timestamp_begin` of every packet.
    pub span: u64,
    /// Packet size handed to the writer (it truncates to the content).
    pub packet_size: usize,
}

/// Write a trace with [`desc`] in `dir` following `plan`. The `k`-th event of the trace (in
/// plan order) is `myapp:all` with [`all_values`], `other:read` with [`other_values`] or the
/// empty `myapp:tick`, for `k % 3` = 0, 1, 2; `tweak(k, id, values)` may change the values.
/// Returns the expected events in plan order (per CPU file order, not merged).
pub fn write_plan(
    dir: &Path,
    plan: &[PacketPlan],
    shape: PlanShape,
    mut tweak: impl FnMut(u64, u32, &mut Vec<Value>),
) -> Result<Vec<Exp>> {
    let mut w = TraceWriter::create(dir, &desc())?;
    let mut exp = Vec::new();
    let mut k = 0u64;
    for &(cpu, seq, (lf, ls, lt), n, base) in plan {
        let mut pb = PacketBuilder::new(UUID, cpu, seq).lost(lf, ls, lt);
        pb.header.timestamp_begin = base;
        pb.header.timestamp_end = base + shape.span;
        for j in 0..n {
            let ts = base + shape.step * j + cpu as u64;
            let (id, name, fields, mut values) = match k % 3 {
                0 => (ID_ALL, "myapp:all", ALL.fields, all_values(k)),
                1 => (ID_OTHER, "other:read", OTHER.fields, other_values(k)),
                _ => (ID_EMPTY, "myapp:tick", EMPTY.fields, vec![]),
            };
            tweak(k, id, &mut values);
            let payload = encode(fields, &values)
                .ok_or_else(|| CtfError::Desc(format!("values of event {k} do not fit {name}")))?;
            pb.record(ts, id, &payload);
            exp.push(Exp {
                ts,
                cpu,
                id,
                name,
                values,
            });
            k += 1;
        }
        w.write_packet(cpu, &pb.finish(shape.packet_size))?;
    }
    w.finish()?;
    Ok(exp)
}

/// The packets of [`write_sample`].
pub const SAMPLE_PLAN: &[PacketPlan] = &[
    (0, 0, (0, 0, 0), 3, 1000),
    (1, 0, (2, 0, 0), 2, 1005),
    (0, 1, (0, 0, 0), 0, 2000), // empty packet
    (0, 2, (3, 1, 0), 4, 3000),
    (1, 2, (2, 0, 5), 3, 2500), // seq gap: packet 1 lost
    (1, 3, (4, 0, 5), 1, 4000),
];

/// Write the standard test trace in `dir`: 2 CPUs (0 and 1), several packets per CPU, an empty
/// packet, a packet_seq_num gap on CPU 1, non-zero loss counters on both (final cumulative:
/// CPU 0 full 3 stalled 1, CPU 1 full 4 too big 5). Returns the expected events in file order
/// per CPU (not merged).
pub fn write_sample(dir: &Path) -> Result<Vec<Exp>> {
    let shape = PlanShape {
        step: 10,
        span: 100,
        packet_size: 4096,
    };
    write_plan(dir, SAMPLE_PLAN, shape, |_, _, _| {})
}

/// The property every input must satisfy: reading the trace in `dir` (open, every event in
/// both iterator forms, every packet header, the stats; see [`fuzz_read`]) does not panic, and
/// an error names a file inside `dir` and, when it has an offset, one within that file.
/// Returns the error message for an unreadable trace, or `Err` with the broken property.
///
/// The general reader ([`faultline_ctf::fuzz_read_general`]) reads the same directory and must satisfy
/// the same property; the result returned is the strict reader's.
pub fn read_case(dir: &Path) -> std::result::Result<Option<String>, String> {
    if let Err(e) = faultline_ctf::fuzz_read_general(dir) {
        check_error(dir, &e).map_err(|m| format!("general reader: {m}"))?;
    }
    match fuzz_read(dir) {
        Ok(_) => Ok(None),
        Err(e) => check_error(dir, &e).map(Some),
    }
}

/// The error property of [`read_case`]: one line naming a file inside `dir`, offset within it.
pub fn check_error(dir: &Path, e: &CtfError) -> std::result::Result<String, String> {
    let msg = e.to_string();
    let Some(path) = e.path() else {
        return Err(format!("error without a path: {msg}"));
    };
    if !path.starts_with(dir) {
        return Err(format!("error names a file outside the trace: {msg}"));
    }
    if !msg.contains(&path.display().to_string()) || msg.contains('\n') {
        return Err(format!("message is not one line naming the file: {msg:?}"));
    }
    if let Some(offset) = e.offset() {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if offset > len {
            return Err(format!("offset {offset} beyond the {len}-byte file: {msg}"));
        }
    }
    Ok(msg)
}

/// Write a trace directory from raw file contents (`metadata`, then `stream_0`, `stream_1`,
/// ...); used by the fuzz targets and the mutation tests.
pub fn write_files(dir: &Path, metadata: &[u8], streams: &[&[u8]]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CtfError::io(dir, "create directory", e))?;
    let m = dir.join("metadata");
    std::fs::write(&m, metadata).map_err(|e| CtfError::io(&m, "write", e))?;
    for (cpu, s) in streams.iter().enumerate() {
        let p = dir.join(format!("stream_{cpu}"));
        std::fs::write(&p, s).map_err(|e| CtfError::io(&p, "write", e))?;
    }
    Ok(())
}

/// The files of the [`write_sample`] trace: `metadata`, then `stream_0`, `stream_1`.
#[derive(Debug, Clone)]
pub struct SampleFiles {
    /// The `metadata` file.
    pub metadata: Vec<u8>,
    /// `stream_0`, `stream_1`.
    pub streams: Vec<Vec<u8>>,
}

/// Write the sample trace in a temporary directory and read its files back (the base of the
/// fuzz targets and the mutation tests).
pub fn sample_files() -> Result<SampleFiles> {
    let dir = tmpdir("sample-files");
    write_sample(&dir)?;
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| CtfError::io(&p, "read", e))
    };
    let files = SampleFiles {
        metadata: read("metadata")?,
        streams: vec![read("stream_0")?, read("stream_1")?],
    };
    Ok(files)
}

/// One fuzz/mutation case: replace `dir` by a trace made of these files ([`write_files`]) and
/// check it with [`read_case`]. `Err` is a broken property (or a failure to write the case).
pub fn check_case(
    dir: &Path,
    metadata: &[u8],
    streams: &[&[u8]],
) -> std::result::Result<Option<String>, String> {
    let _ = std::fs::remove_dir_all(dir);
    write_files(dir, metadata, streams).map_err(|e| format!("writing the case: {e}"))?;
    read_case(dir)
}

/// File offsets of the packets of `stream_<cpu>` of the trace in `dir`.
pub fn packet_offsets(dir: &Path, cpu: u32) -> Result<Vec<u64>> {
    let t = faultline_ctf::Trace::open(dir)?;
    let Some(s) = t.streams().iter().find(|s| s.cpu == cpu) else {
        return Ok(Vec::new());
    };
    t.packets(s).map(|p| p.map(|p| p.file_offset)).collect()
}

/// Overwrite the bytes of the file at `path` from offset `at` with `bytes` (within the file).
pub fn patch_file(path: &Path, at: u64, bytes: &[u8]) -> Result<()> {
    let mut b = std::fs::read(path).map_err(|e| CtfError::io(path, "read", e))?;
    let range = usize::try_from(at)
        .ok()
        .and_then(|a| Some(a..a.checked_add(bytes.len())?))
        .filter(|r| r.end <= b.len())
        .ok_or_else(|| CtfError::format(path, at, "patch beyond the end of the file"))?;
    b[range].copy_from_slice(bytes);
    std::fs::write(path, b).map_err(|e| CtfError::io(path, "write", e))
}

/// Truncate (or extend with zeros) the file at `path` to `len` bytes.
pub fn truncate_file(path: &Path, len: u64) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .map_err(|e| CtfError::io(path, "truncate", e))
}

/// Which file of the sample trace a fuzz input replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuzzFile {
    /// `stream_0` (with the valid `metadata` and `stream_1`).
    Stream0,
    /// `metadata` (with the valid stream files).
    Metadata,
}

/// One fuzz case (the body of the targets in `fuzz/`): `data` replaces `which` file of the
/// sample trace, in a scratch directory of its own (removed after the case); the result is
/// [`check_case`]'s.
pub fn fuzz_case(which: FuzzFile, data: &[u8]) -> std::result::Result<Option<String>, String> {
    static BASE: std::sync::OnceLock<std::result::Result<SampleFiles, String>> =
        std::sync::OnceLock::new();
    let files = BASE
        .get_or_init(|| sample_files().map_err(|e| format!("writing the sample trace: {e}")))
        .as_ref()
        .map_err(Clone::clone)?;
    let dir = tmpdir("fuzz");
    let [s0, s1] = [&files.streams[0][..], &files.streams[1][..]];
    match which {
        FuzzFile::Stream0 => check_case(&dir, &files.metadata, &[data, s1]),
        FuzzFile::Metadata => check_case(&dir, data, &[s0, s1]),
    }
}

/// Input of [`fuzz_general_case`] for a trace made of `metadata` and one stream file:
/// `metadata.len()` as a little-endian u32, the metadata, the stream.
pub fn general_case_input(metadata: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut v = (metadata.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(metadata);
    v.extend_from_slice(stream);
    v
}

/// One fuzz case of the general reader (the `general` target in `fuzz/`): `data` (see
/// [`general_case_input`]; a length beyond the input takes it all as metadata) becomes a trace
/// directory with `metadata` and `stream`, read with [`faultline_ctf::fuzz_read_general`]. `Err` is a
/// broken property: a panic would be one too, an error that is not one line naming a file of
/// the trace with an offset inside it is another.
pub fn fuzz_general_case(data: &[u8]) -> std::result::Result<Option<String>, String> {
    let tmp = tmpdir("fuzz-general");
    let dir: &Path = &tmp;
    let n = data
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let rest = data.get(4..).unwrap_or(&[]);
    let (meta, stream) = rest.split_at(n.min(rest.len()));
    std::fs::write(dir.join("metadata"), meta).map_err(|e| format!("writing the case: {e}"))?;
    std::fs::write(dir.join("stream"), stream).map_err(|e| format!("writing the case: {e}"))?;
    match faultline_ctf::fuzz_read_general(dir) {
        Ok(_) => Ok(None),
        Err(e) => check_error(dir, &e).map(Some),
    }
}
