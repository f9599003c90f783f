//! Round trip: packets built by hand in the ring-buffer layout, written by `TraceWriter`, read
//! back by `Trace` with exact values, filters, loss accounting, stats and text format.

mod common;

use common::*;
use faultline_ctf::layout::{align8, PacketHeader};
use faultline_ctf::{
    format_event, glob_match, metadata, stats, CtfError, Filter, PacketBuilder, TimeMode, Trace,
    TraceDesc, TraceWriter,
};
use faultline_schema::{EventDesc, FieldDesc, FieldType, Value};

fn merged(exp: &[Exp]) -> Vec<Exp> {
    let mut v = exp.to_vec();
    v.sort_by_key(|e| (e.ts, e.cpu));
    v
}

fn read_all(t: &Trace, f: &Filter) -> Vec<Exp> {
    t.events(f)
        .map(|e| {
            let e = e.unwrap();
            let name: &'static str = match e.name {
                "myapp:all" => "myapp:all",
                "myapp:tick" => "myapp:tick",
                "other:read" => "other:read",
                n => panic!("unexpected event {n}"),
            };
            let schema = t.event_schema(e.id).unwrap();
            let names: Vec<&str> = e.fields.iter().map(|(n, _)| *n).collect();
            let want: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, want);
            Exp {
                ts: e.ts,
                cpu: e.cpu,
                id: e.id,
                name,
                values: e.fields.into_iter().map(|(_, v)| v).collect(),
            }
        })
        .collect()
}

#[test]
fn round_trip_every_field_type_two_cpus() {
    let dir = tmpdir("roundtrip");
    let exp = write_sample(&dir);
    assert_eq!(exp.len(), 13);
    let t = Trace::open(&dir).unwrap();
    assert_eq!(t.uuid(), UUID);
    assert_eq!(t.streams().len(), 2);
    let got = read_all(&t, &Filter::default());
    assert_eq!(got, merged(&exp));
    // Timestamps come out sorted.
    assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn metadata_parses_back_to_the_description() {
    let dir = tmpdir("meta");
    write_sample(&dir);
    let t = Trace::open(&dir).unwrap();
    let d = desc();
    let s = t.schema();
    assert_eq!(s.clock, d.clock);
    assert_eq!(s.uuid, d.uuid);
    let env: Vec<(String, String)> = s
        .env
        .iter()
        .map(|(k, v)| (k.clone(), format!("{v:?}")))
        .collect();
    assert_eq!(
        env,
        vec![
            ("hostname".into(), "Str(\"testhost\")".into()),
            ("procname".into(), "Str(\"app\")".into()),
            ("tracer_name".into(), "Str(\"faultline\")".into()),
            ("tracer_major".into(), "Int(0)".into()),
            ("tracer_minor".into(), "Int(1)".into()),
            ("strategy".into(), "Str(\"bounce\")".into()),
            ("nr_cpus".into(), "Int(2)".into()),
        ]
    );
    assert_eq!(s.events.len(), 3);
    for (id, ev) in &d.events {
        let es = t.event_schema(*id).unwrap();
        assert_eq!(es.name, ev.full_name());
        let f: Vec<(&str, FieldType)> = es.fields.iter().map(|f| (f.name.as_str(), f.ty)).collect();
        let want: Vec<(&str, FieldType)> = ev.fields.iter().map(|f| (f.name, f.ty)).collect();
        assert_eq!(f, want);
    }
    let text = std::fs::read_to_string(dir.join("metadata")).unwrap();
    assert!(text.starts_with("/* CTF 1.8 */\n"));
    assert_eq!(text, metadata(&d).unwrap());
    assert!(text.contains("\t\tuint32_t _blob__len;\n\t\tuint8_t _blob[_blob__len];\n"));
    assert!(text.contains("enum : uint8_t { \"false\" = 0, \"true\" = 1 } _flag;"));
}

#[test]
fn disk_packets_are_truncated_to_content() {
    let dir = tmpdir("trunc");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let mut pb = PacketBuilder::new(UUID, 3, 0);
    pb.header.timestamp_end = 10;
    pb.record(5, ID_EMPTY, &[]);
    pb.record(6, ID_OTHER, &encode(OTHER.fields, &other_values(1)));
    let pkt = pb.finish(4096);
    assert_eq!(pkt.len(), 4096);
    let content = PacketHeader::parse_slice(&pkt).unwrap().content_bytes() as usize;
    // 128 + 15 (tick) + 15 + 4 + 11 ("/tmp/file1\0") + 4 + 3: packed records, extended
    // headers (the first record of a packet; an id above the compact ones)
    assert_eq!(content, 180);
    assert_eq!(w.write_packet(3, &pkt).unwrap(), 184);
    let empty = PacketBuilder::new(UUID, 3, 1);
    let mut e = empty.clone();
    e.header.timestamp_begin = 10;
    e.header.timestamp_end = 10;
    assert_eq!(w.write_packet(3, &e.finish(1 << 16)).unwrap(), 128);
    let c = w.finish().unwrap();
    assert_eq!((c.packets, c.events, c.stream_bytes), (2, 2, 312));
    let disk = std::fs::read(dir.join("stream_3")).unwrap();
    assert_eq!(disk.len(), 312);
    let h0 = PacketHeader::parse_slice(&disk).unwrap();
    assert_eq!(h0.packet_size, 184 * 8);
    assert_eq!(h0.content_size, 180 * 8);
    assert_eq!(&disk[128..180], &pkt[128..180]);
    assert_eq!(&disk[180..184], &[0, 0, 0, 0]);
    let h1 = PacketHeader::parse_slice(&disk[184..]).unwrap();
    assert_eq!(
        (h1.packet_size, h1.content_size, h1.packet_seq_num),
        (1024, 1024, 1)
    );
    assert_eq!(
        c.metadata_bytes,
        std::fs::metadata(dir.join("metadata")).unwrap().len()
    );
}

#[test]
fn stream_sizes_match_the_sum_of_rounded_contents() {
    let dir = tmpdir("sizes");
    write_sample(&dir);
    let t = Trace::open(&dir).unwrap();
    let mut total = 0;
    for s in t.streams() {
        let mut sum = 0u64;
        let mut n = 0;
        for p in t.packets(s) {
            let p = p.unwrap();
            assert_eq!(p.file_offset, sum);
            assert_eq!(
                p.header.packet_bytes(),
                align8(p.header.content_bytes() as usize).unwrap() as u64
            );
            sum += p.header.packet_bytes();
            n += 1;
        }
        assert_eq!(sum, s.len);
        assert_eq!(n, 3);
        total += s.len;
    }
    let st = stats(&t).unwrap();
    let meta = std::fs::metadata(dir.join("metadata")).unwrap().len();
    assert_eq!(st.bytes_on_disk, total + meta);
}

#[test]
fn filters_by_name_cpu_and_time() {
    let dir = tmpdir("filters");
    let exp = merged(&write_sample(&dir));
    let t = Trace::open(&dir).unwrap();
    let count = |f: Filter| read_all(&t, &f).len();
    let want = |p: &dyn Fn(&Exp) -> bool| exp.iter().filter(|e| p(e)).count();
    assert_eq!(
        count(Filter::default().name("myapp:*")),
        want(&|e| e.name.starts_with("myapp:"))
    );
    assert_eq!(count(Filter::default().name("myapp:*")), 9);
    assert_eq!(count(Filter::default().name("*:read")), 4);
    assert_eq!(count(Filter::default().name("?yapp:t*")), 4);
    assert_eq!(count(Filter::default().name("*")), 13);
    assert_eq!(count(Filter::default().name("nothing")), 0);
    assert_eq!(
        count(Filter::default().name("myapp:tick").name("other:*")),
        8
    );
    assert_eq!(count(Filter::default().cpus([1])), want(&|e| e.cpu == 1));
    assert_eq!(count(Filter::default().cpus([1])), 6);
    assert_eq!(count(Filter::default().cpus([5])), 0);
    assert_eq!(
        count(Filter::default().time(Some(1005), Some(3000))),
        want(&|e| (1005..=3000).contains(&e.ts))
    );
    assert_eq!(count(Filter::default().time(Some(1005), Some(3000))), 8);
    let f = Filter::default()
        .cpus([0])
        .name("myapp:*")
        .time(Some(1001), None);
    let got = read_all(&t, &f);
    let w: Vec<Exp> = exp
        .iter()
        .filter(|e| e.cpu == 0 && e.name.starts_with("myapp:") && e.ts >= 1001)
        .cloned()
        .collect();
    assert_eq!(got, w);
    assert_eq!(got.len(), 4);
}

#[test]
fn glob_semantics() {
    assert!(glob_match("*", ""));
    assert!(glob_match("a*b*c", "aXXbYYc"));
    assert!(!glob_match("a*b*c", "aXXbYY"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*:*", "p:n"));
    assert!(!glob_match("p:n", "p:nn"));
    assert!(glob_match("**x", "x"));
}

#[test]
fn packet_losses_and_stats() {
    let dir = tmpdir("stats");
    write_sample(&dir);
    let t = Trace::open(&dir).unwrap();
    let s1 = &t.streams()[1];
    assert_eq!(s1.cpu, 1);
    let p: Vec<_> = t.packets(s1).map(|p| p.unwrap()).collect();
    let d: Vec<(u64, u64, u64, u64, u64)> = p
        .iter()
        .map(|p| {
            (
                p.discarded.events_discarded,
                p.discarded.lost_full,
                p.discarded.lost_stalled,
                p.discarded.lost_too_big,
                p.lost_packets,
            )
        })
        .collect();
    assert_eq!(d, vec![(2, 2, 0, 0, 0), (5, 0, 0, 5, 1), (2, 2, 0, 0, 0)]);

    let st = stats(&t).unwrap();
    assert_eq!(st.events_total, 13);
    assert_eq!(st.lost_total, 4 + 9);
    assert_eq!((st.lost_full, st.lost_stalled, st.lost_too_big), (7, 1, 5));
    assert_eq!(st.lost_packets, 1);
    assert_eq!(st.packets, 6);
    assert_eq!(st.events.get("myapp:all"), Some(&5));
    assert_eq!(st.events.get("other:read"), Some(&4));
    assert_eq!(st.events.get("myapp:tick"), Some(&4));
    assert_eq!(st.cpus.get(&0), Some(&7));
    assert_eq!(st.cpus.get(&1), Some(&6));
    assert_eq!((st.first_ts, st.last_ts), (Some(1000), Some(4001)));
    assert_eq!(st.span_ns, 3001);
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(json["events_total"], 13);
    assert_eq!(json["lost_total"], 13);
    assert_eq!(json["events"]["myapp:all"], 5);
    assert_eq!(json["cpus"]["0"], 7);
    assert_eq!(json["cpus"]["1"], 6);
    assert_eq!(json["per_cpu"]["1"]["lost"]["lost_too_big"], 5);
}

#[test]
fn text_format() {
    let dir = tmpdir("format");
    write_sample(&dir);
    let t = Trace::open(&dir).unwrap();
    let evs: Vec<_> = t.events(&Filter::default()).map(|e| e.unwrap()).collect();
    assert_eq!(
        format_event(&t, &evs[0], TimeMode::Wall),
        "[1700000000.000001250] cpu 0 myapp:all: { u8f = 200, u16f = 65535, u32f = 4000000000, \
         u64f = 18446744073709551615, i8f = -128, i16f = -32768, i32f = -2000000000, \
         i64f = -9223372036854775808, f32f = 1.5, f64f = -0.125, flag = false, \
         text = \"text 0 \\\"q\\\"\", blob = [], blob_len = 0 }"
    );
    assert_eq!(
        format_event(&t, &evs[2], TimeMode::RelativeTo(1000)),
        "[+0.000000010] cpu 0 other:read: { path_faulted = 1, path = \"/tmp/file1\", data = [de ad 01] }"
    );
    let tick = evs.iter().find(|e| e.name == "myapp:tick").unwrap();
    assert_eq!(
        format_event(&t, tick, TimeMode::RelativeTo(1030)),
        "[-0.000000010] cpu 0 myapp:tick: {}"
    );
    let mut s = String::new();
    faultline_ctf::format::format_value(&mut s, &Value::Str(b"a\n\x01\xff\"".to_vec()));
    assert_eq!(s, "\"a\\n\\x01\\xff\\\"\"");
}

fn one_packet(cpu: u32, seq: u64, build: impl FnOnce(&mut PacketBuilder)) -> Vec<u8> {
    let mut pb = PacketBuilder::new(UUID, cpu, seq);
    pb.header.timestamp_begin = 100 * seq;
    pb.header.timestamp_end = 100 * seq + 50;
    build(&mut pb);
    pb.finish(1024)
}

fn packet_err(e: CtfError) -> (u32, u64) {
    match e {
        CtfError::Packet { cpu, offset, .. } => (cpu, offset),
        e => panic!("not a packet error: {e}"),
    }
}

#[test]
fn writer_rejects_bad_packets_without_writing() {
    let dir = tmpdir("wreject");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let good = one_packet(0, 0, |p| {
        p.record(10, ID_EMPTY, &[]);
    });
    // Too short.
    assert_eq!(
        packet_err(w.write_packet(0, &good[..100]).unwrap_err()),
        (0, 0)
    );
    // Bad magic.
    let mut b = good.clone();
    b[0] ^= 1;
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 0));
    // Wrong uuid.
    let mut b = good.clone();
    b[5] ^= 1;
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 4));
    // Wrong cpu.
    assert_eq!(packet_err(w.write_packet(1, &good).unwrap_err()), (1, 72));
    // packet_size beyond the buffer.
    assert_eq!(
        packet_err(w.write_packet(0, &good[..512]).unwrap_err()),
        (0, 48)
    );
    // Undeclared id.
    let b = one_packet(0, 0, |p| {
        p.record(10, 99, &[]);
    });
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 136));
    // Record timestamp after timestamp_end.
    let b = one_packet(0, 0, |p| {
        p.record(10, ID_EMPTY, &[]).record(51, ID_EMPTY, &[]);
    });
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 143));
    // A record payload length crossing the content end.
    let mut b = good.clone();
    b[128 + 13] = 15;
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 128));
    // events_discarded != sum of causes.
    let mut b = good.clone();
    b[64] = 1;
    assert_eq!(packet_err(w.write_packet(0, &b).unwrap_err()), (0, 64));
    assert!(!dir.join("stream_0").exists());
    assert_eq!(w.counters().packets, 0);

    w.write_packet(0, &good).unwrap();
    // Same sequence number again.
    assert_eq!(packet_err(w.write_packet(0, &good).unwrap_err()), (0, 56));
    // An empty buffer.
    assert_eq!(packet_err(w.write_packet(0, &[]).unwrap_err()), (0, 0));
    let mut up = PacketBuilder::new(UUID, 0, 1).lost(3, 0, 0);
    up.header.timestamp_begin = 100;
    up.header.timestamp_end = 150;
    w.write_packet(0, &up.finish(0)).unwrap();
    // timestamp_begin before the previous packet's end.
    let mut early = PacketBuilder::new(UUID, 0, 2).lost(3, 0, 0);
    early.header.timestamp_begin = 149;
    early.header.timestamp_end = 300;
    assert_eq!(
        packet_err(w.write_packet(0, &early.finish(0)).unwrap_err()),
        (0, 24)
    );
    // Loss counter going backwards (3 -> 0).
    let p2 = one_packet(0, 2, |_| {});
    assert_eq!(packet_err(w.write_packet(0, &p2).unwrap_err()), (0, 80));
    let c = w.finish().unwrap();
    assert_eq!((c.packets, c.events), (2, 1));
    let t = Trace::open(&dir).unwrap();
    assert_eq!(t.events(&Filter::default()).count(), 1);
}

#[test]
fn invalid_descriptions_are_rejected() {
    const BAD_UNDERSCORE: EventDesc = EventDesc {
        provider: "p",
        name: "n",
        fields: &[FieldDesc {
            name: "_x",
            ty: FieldType::U8,
        }],
    };
    const BAD_DOUBLE: EventDesc = EventDesc {
        provider: "p",
        name: "n",
        fields: &[FieldDesc {
            name: "a__len",
            ty: FieldType::U8,
        }],
    };
    const DUP: EventDesc = EventDesc {
        provider: "p",
        name: "n",
        fields: &[
            FieldDesc {
                name: "a",
                ty: FieldType::U8,
            },
            FieldDesc {
                name: "a",
                ty: FieldType::U16,
            },
        ],
    };
    const BAD_NAME: EventDesc = EventDesc {
        provider: "p\"",
        name: "n",
        fields: &[],
    };
    let with = |events: Vec<(u32, EventDesc)>| TraceDesc { events, ..desc() };
    for d in [
        with(vec![(1, BAD_UNDERSCORE)]),
        with(vec![(1, BAD_DOUBLE)]),
        with(vec![(1, DUP)]),
        with(vec![(1, BAD_NAME)]),
        with(vec![(1, EMPTY), (1, ALL)]),
        with(vec![(1, EMPTY), (2, EMPTY)]),
    ] {
        assert!(
            matches!(metadata(&d), Err(CtfError::Desc(_))),
            "{:?}",
            d.events
        );
    }
    let mut d = desc();
    d.clock.name = "mono tonic".into();
    assert!(matches!(metadata(&d), Err(CtfError::Desc(_))));
    let mut d = desc();
    d.env.hostname = "a\u{1}b".into();
    assert!(matches!(metadata(&d), Err(CtfError::Desc(_))));
    let dir = tmpdir("baddesc");
    assert!(TraceWriter::create(&dir, &with(vec![(1, DUP)])).is_err());
    assert!(!dir.join("metadata").exists());
}

#[test]
fn create_refuses_to_overwrite_and_names_the_path() {
    let dir = tmpdir("twice");
    TraceWriter::create(&dir, &desc())
        .unwrap()
        .finish()
        .unwrap();
    let e = TraceWriter::create(&dir, &desc()).err().unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains(&dir.join("metadata").display().to_string()),
        "{msg}"
    );
    assert!(matches!(e, CtfError::Io { .. }));
}

#[test]
fn strings_with_escapes_round_trip_through_metadata() {
    let dir = tmpdir("escapes");
    let mut d = desc();
    d.env.hostname = "host \"x\" \\ y\tz".into();
    d.clock.description = "line1\nline2".into();
    TraceWriter::create(&dir, &d).unwrap().finish().unwrap();
    let t = Trace::open(&dir).unwrap();
    assert_eq!(t.clock().description, "line1\nline2");
    assert_eq!(
        t.schema().env[0],
        (
            "hostname".to_string(),
            faultline_ctf::EnvValue::Str("host \"x\" \\ y\tz".into())
        )
    );
    assert_eq!(t.events(&Filter::default()).count(), 0);
    assert_eq!(stats(&t).unwrap().events_total, 0);
}

/// A record whose payload does not decode to exactly its length (bytes damaged in shared
/// memory) makes the writer reject the packet, so the reader and babeltrace2 never see it.
#[test]
fn writer_rejects_payloads_that_do_not_decode() {
    let dir = tmpdir("wpayload");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    // other:read { path_faulted: u32, path: string, data: bytes }
    let good = [
        &7u32.to_le_bytes()[..],
        b"/etc\0",
        &2u32.to_le_bytes(),
        b"ab",
    ]
    .concat();
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        // data's length says 3, 2 bytes follow.
        (
            [
                &7u32.to_le_bytes()[..],
                b"/etc\0",
                &3u32.to_le_bytes(),
                b"ab",
            ]
            .concat(),
            128 + 15 + 13,
            "payload ends inside field `data`",
        ),
        // The string has no NUL.
        (
            [&7u32.to_le_bytes()[..], b"/etc"].concat(),
            128 + 15 + 4,
            "string field `path` has no NUL",
        ),
        // Bytes after the last field.
        (
            [&good[..], b"zz"].concat(),
            128 + 15 + 15,
            "fields end at byte 15",
        ),
    ];
    for (payload, offset, msg) in cases {
        let b = one_packet(0, 0, |p| {
            p.record(10, ID_OTHER, &payload);
        });
        match w.write_packet(0, &b).unwrap_err() {
            CtfError::Packet {
                cpu,
                offset: o,
                msg: m,
            } => {
                assert_eq!((cpu, o), (0, offset), "{m}");
                assert!(m.contains(msg), "{m}");
            }
            e => panic!("not a packet error: {e}"),
        }
    }
    assert!(!dir.join("stream_0").exists());
    let b = one_packet(0, 0, |p| {
        p.record(10, ID_OTHER, &good);
    });
    w.write_packet(0, &b).unwrap();
    w.finish().unwrap();
    assert_eq!(
        Trace::open(&dir)
            .unwrap()
            .events(&Filter::default())
            .count(),
        1
    );
}

#[test]
fn events_added_while_writing_are_declared_in_the_final_metadata() {
    static LATE: EventDesc = EventDesc {
        provider: "late",
        name: "class",
        fields: &[FieldDesc {
            name: "n",
            ty: FieldType::U32,
        }],
    };
    let dir = tmpdir("late-classes");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let packet = |seq: u64| {
        let mut pb = PacketBuilder::new(UUID, 0, seq);
        pb.header.timestamp_begin = 100 * seq;
        pb.header.timestamp_end = 100 * seq + 50;
        pb.record(100 * seq + 1, 8, &42u32.to_le_bytes());
        pb.finish(0)
    };
    // Not declared yet: rejected, nothing written.
    assert!(!w.has_event(8));
    let e = w.write_packet(0, &packet(0)).unwrap_err();
    assert!(e.to_string().contains("undeclared event id 8"), "{e}");
    // A clash with a declared id or name changes nothing.
    assert!(w.add_events(&[(ID_ALL, LATE)]).is_err());
    assert!(w.add_events(&[(9, ALL)]).is_err());
    assert!(!w.has_event(9));
    w.add_events(&[(8, LATE)]).unwrap();
    assert!(w.has_event(8));
    w.write_packet(0, &packet(1)).unwrap();
    w.finish().unwrap();
    assert!(!dir.join("metadata.tmp").exists());
    let t = Trace::open(&dir).unwrap();
    let evs: Vec<_> = t.events(&Filter::default()).map(|e| e.unwrap()).collect();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].name, "late:class");
    assert_eq!(evs[0].fields, vec![("n", Value::U(42))]);
    // The original events are still declared.
    assert!(t.event_schema(ID_ALL).is_some() && t.event_schema(ID_OTHER).is_some());
}

#[test]
fn remote_commits_in_packet_contexts() {
    let dir = tmpdir("remote");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    // Cumulative REMOTE commit counts 0, 2, 2, 5 on CPU 0 and 1 on CPU 1.
    for (cpu, seq, remote) in [
        (0u32, 0u64, 0u64),
        (0, 1, 2),
        (0, 2, 2),
        (0, 3, 5),
        (1, 0, 1),
    ] {
        let b = one_packet(cpu, seq, |p| {
            p.header.remote_commits = remote;
            p.record(100 * seq + 10, ID_EMPTY, &[]);
        });
        w.write_packet(cpu, &b).unwrap();
    }
    // A count going backwards is refused, like the loss counters.
    let back = one_packet(0, 4, |p| p.header.remote_commits = 4);
    assert_eq!(packet_err(w.write_packet(0, &back).unwrap_err()), (0, 104));
    w.finish().unwrap();
    let t = Trace::open(&dir).unwrap();
    let d: Vec<u64> = t
        .packets(&t.streams()[0])
        .map(|p| p.unwrap().remote_commits)
        .collect();
    assert_eq!(d, vec![0, 2, 0, 3]);
    let st = stats(&t).unwrap();
    assert_eq!(st.remote_commits, 6);
    assert_eq!(st.per_cpu[&0].remote_commits, 5);
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(json["remote_commits"], 6);

    // A trace written before the field existed (the word was `reserved[3]`'s first) still
    // reads, with no REMOTE commits.
    let old = tmpdir("remote-old");
    let mut w = TraceWriter::create(&old, &desc()).unwrap();
    w.write_packet(
        0,
        &one_packet(0, 0, |p| {
            p.record(10, ID_EMPTY, &[]);
        }),
    )
    .unwrap();
    w.finish().unwrap();
    let meta = old.join("metadata");
    let text = std::fs::read_to_string(&meta).unwrap();
    let v1 = text.replace(
        "uint64_t remote_commits;\n\t\tuint64_t reserved[2];",
        "uint64_t reserved[3];",
    );
    assert_ne!(v1, text, "metadata layout changed: update this test");
    std::fs::write(&meta, v1).unwrap();
    let t = Trace::open(&old).unwrap();
    assert_eq!(stats(&t).unwrap().remote_commits, 0);
    assert_eq!(t.events(&Filter::default()).count(), 1);
    // Anything else in that place is still refused.
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("uint64_t reserved[3];", "uint64_t reserved[4];"),
    )
    .unwrap();
    assert!(Trace::open(&old).is_err());
}
