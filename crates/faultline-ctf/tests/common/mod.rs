//! Shared test helpers: a trace description with every field type, a payload encoder and a
//! generator of a small multi-CPU trace written through `TraceWriter`.
#![allow(dead_code)]

use faultline_ctf::{ClockDesc, EnvDesc, EnvValue, PacketBuilder, TraceDesc, TraceWriter};
use faultline_schema::{EventDesc, FieldDesc, FieldType, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];

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

pub const EMPTY: EventDesc = EventDesc {
    provider: "myapp",
    name: "tick",
    fields: &[],
};

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

pub const ID_ALL: u32 = 7;
pub const ID_EMPTY: u32 = 1;
pub const ID_OTHER: u32 = 300;

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

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty directory path (not created).
pub fn tmpdir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir()
        .join("faultline-ctf-tests")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Encode values in the faultline-schema payload encoding.
pub fn encode(fields: &[FieldDesc], values: &[Value]) -> Vec<u8> {
    assert_eq!(fields.len(), values.len());
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
            (t, v) => panic!("value {v:?} does not fit {t:?}"),
        }
    }
    p
}

/// An expected event.
#[derive(Debug, Clone, PartialEq)]
pub struct Exp {
    pub ts: u64,
    pub cpu: u32,
    pub id: u32,
    pub name: &'static str,
    pub values: Vec<Value>,
}

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

/// Write the standard test trace in `dir`: 2 CPUs (0 and 1), several packets per CPU, an empty
/// packet, a packet_seq_num gap on CPU 1, non-zero loss counters on both. Returns the expected
/// events in file order per CPU (not merged).
pub fn write_sample(dir: &std::path::Path) -> Vec<Exp> {
    let mut w = TraceWriter::create(dir, &desc()).unwrap();
    let mut exp = Vec::new();
    let mut k = 0u64;
    // (cpu, seq, lost (full, stalled, too_big), number of events, base ts)
    let plan: &[PacketPlan] = &[
        (0, 0, (0, 0, 0), 3, 1000),
        (1, 0, (2, 0, 0), 2, 1005),
        (0, 1, (0, 0, 0), 0, 2000), // empty packet
        (0, 2, (3, 1, 0), 4, 3000),
        (1, 2, (2, 0, 5), 3, 2500), // seq gap: packet 1 lost
        (1, 3, (4, 0, 5), 1, 4000),
    ];
    for &(cpu, seq, (lf, ls, lt), n, base) in plan {
        let mut pb = PacketBuilder::new(UUID, cpu, seq).lost(lf, ls, lt);
        pb.header.timestamp_begin = base;
        pb.header.timestamp_end = base + 100;
        for j in 0..n {
            let ts = base + 10 * j + cpu as u64;
            let (id, name, fields, values) = match k % 3 {
                0 => (ID_ALL, "myapp:all", ALL.fields, all_values(k)),
                1 => (ID_OTHER, "other:read", OTHER.fields, other_values(k)),
                _ => (ID_EMPTY, "myapp:tick", EMPTY.fields, vec![]),
            };
            pb.record(ts, id, &encode(fields, &values));
            exp.push(Exp {
                ts,
                cpu,
                id,
                name,
                values,
            });
            k += 1;
        }
        let pkt = pb.finish(4096);
        w.write_packet(cpu, &pkt).unwrap();
    }
    w.finish().unwrap();
    exp
}
