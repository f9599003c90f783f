//! The general CTF 1.8 reader on hand-built foreign traces (big-endian, bit fields, LTTng-style
//! compact headers, variants, enums, floats, sequences, packetized metadata, several stream
//! classes), on faultline's own traces (same events as the strict reader), and on invalid
//! traces (one error naming the file and a byte offset inside it). When babeltrace2 is
//! installed, the hand-built traces are also compared with its output line by line.

#[path = "common/ctfbuild.rs"]
mod ctfbuild;

use faultline_ctf::general::{push_ctf_event, CtfTrace, CtfValue, EventScope};
use faultline_ctf::{fuzz_read_general, AnyTrace, CtfError, Filter, TimeMode, Trace};
use faultline_testkit::ctf::{tmpdir, write_sample};
use std::path::Path;

fn lines(dir: &Path, filter: &Filter, mode: TimeMode) -> Vec<String> {
    let t = CtfTrace::open(dir).unwrap();
    let mut ev = t.events(filter);
    let mut out = Vec::new();
    while let Some(e) = ev.next_event() {
        let e = e.unwrap();
        let mut l = String::new();
        push_ctf_event(&mut l, &t, &e, mode);
        out.push(l);
    }
    out
}

#[test]
fn big_endian_bit_fields_compact_headers_variants() {
    let dir = tmpdir("gen-be");
    let want = ctfbuild::be_trace(&dir);
    assert_eq!(lines(&dir, &Filter::default(), TimeMode::Ticks), want);
    // The filters of faultline's reader apply.
    let f = Filter::default().name("t:v*");
    assert_eq!(lines(&dir, &f, TimeMode::Ticks), want[3..].to_vec());
    let f = Filter::default().cpus([1]);
    assert_eq!(lines(&dir, &f, TimeMode::Ticks), want[2..3].to_vec());
    // Wall time: offset_s + offset ticks.
    let first = &lines(&dir, &Filter::default(), TimeMode::Wall)[0];
    let base = (1u64 << 27) * 3 + 0x7ff_fff0 + 5 + 500;
    let want_wall = format!(
        "[{}.{:09}]",
        1_700_000_000 + base / 1_000_000_000,
        base % 1_000_000_000
    );
    assert!(first.starts_with(&want_wall), "{first} vs {want_wall}");
    // Typed values.
    let t = CtfTrace::open(&dir).unwrap();
    let mut ev = t.events(&Filter::default());
    let e = ev.next_event().unwrap().unwrap();
    assert_eq!(e.name, "t:bits");
    let f = e.fields();
    assert_eq!(f[0], ("a".into(), CtfValue::U(5)));
    assert_eq!(f[1], ("b".into(), CtfValue::I(-100)));
    assert_eq!(f[3], ("f".into(), CtfValue::F(1.5)));
    assert_eq!(
        f[5],
        ("color".into(), CtfValue::Enum(12, vec!["BLUE".into()]))
    );
    assert_eq!(
        f[7],
        (
            "seq".into(),
            CtfValue::Array(vec![CtfValue::U(1), CtfValue::U(2)])
        )
    );
    assert_eq!(f[9], ("txt".into(), CtfValue::Str("abc".into())));
    assert_eq!(
        e.value(EventScope::StreamContext),
        Some(CtfValue::Struct(vec![("vtid".into(), CtfValue::I(4242))]))
    );
}

#[test]
fn stats_count_discarded_events_and_lost_packets() {
    let dir = tmpdir("gen-be-stats");
    ctfbuild::be_trace(&dir);
    let st = AnyTrace::open(&dir).unwrap().stats().unwrap();
    assert_eq!(st.events_total, 5);
    assert_eq!(st.lost_total, 3);
    assert_eq!(st.lost_packets, 1);
    assert_eq!(st.packets, 3);
    assert_eq!(st.events.get("t:bits"), Some(&3));
    assert_eq!(st.events.get("t:var"), Some(&2));
    assert_eq!(st.cpus.get(&0), Some(&4));
    assert_eq!(st.cpus.get(&1), Some(&1));
}

#[test]
fn packetized_metadata_two_stream_classes() {
    let dir = tmpdir("gen-le");
    let want = ctfbuild::le_two_classes(&dir);
    assert_eq!(lines(&dir, &Filter::default(), TimeMode::Ticks), want);
    // Clock at 1 kHz: relative times in seconds.
    let rel = lines(&dir, &Filter::default(), TimeMode::RelativeTo(110));
    assert!(
        rel[3].starts_with("[+0.020000000] cpu 0 a:two"),
        "{}",
        rel[3]
    );
    // Big-endian packet headers around little-endian TSDL are refused.
    std::fs::write(
        dir.join("metadata"),
        ctfbuild::packetize(ctfbuild::LE_METADATA, 200, true),
    )
    .unwrap();
    let e = CtfTrace::open(&dir).unwrap_err();
    assert!(e.to_string().contains("byte_order differ"), "{e}");
}

#[test]
fn faultline_traces_read_the_same_with_the_general_reader() {
    let dir = tmpdir("gen-own");
    write_sample(&dir).unwrap();
    let strict = Trace::open(&dir).unwrap();
    let general = CtfTrace::open(&dir).unwrap();
    let a: Vec<_> = strict
        .events(&Filter::default())
        .map(|e| e.unwrap())
        .map(|e| (e.ts, e.cpu, e.name.to_string(), e.fields.len()))
        .collect();
    let mut b = Vec::new();
    let mut it = general.events(&Filter::default());
    while let Some(e) = it.next_event() {
        let e = e.unwrap();
        // Bytes fields are a length and a sequence in TSDL: count them once.
        let n = e
            .fields()
            .iter()
            .filter(|(n, _)| !n.ends_with("__len"))
            .count();
        b.push((e.ts, e.cpu, e.name.to_string(), n));
    }
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let s1 = faultline_ctf::stats(&strict).unwrap();
    let s2 = faultline_ctf::general::stats::ctf_stats(&general).unwrap();
    assert_eq!(
        (
            s1.events_total,
            &s1.events,
            s1.lost_total,
            s1.packets,
            s1.first_ts,
            s1.last_ts
        ),
        (
            s2.events_total,
            &s2.events,
            s2.lost_total,
            s2.packets,
            s2.first_ts,
            s2.last_ts
        )
    );
}

/// `fuzz_read_general` fails with a content error naming `file` at `offset` (when given) and
/// containing `what`.
fn expect_bad(dir: &Path, file: &str, offset: Option<u64>, what: &str) {
    let e = fuzz_read_general(dir).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(what), "{msg}");
    assert!(!msg.contains('\n'));
    let path = dir.join(file);
    assert_eq!(e.path(), Some(path.as_path()), "{msg}");
    let len = std::fs::metadata(&path).unwrap().len();
    let off = e.offset().expect("an offset");
    assert!(off <= len, "{msg}");
    if let Some(o) = offset {
        assert_eq!(off, o, "{msg}");
    }
    assert!(matches!(e, CtfError::Format { .. }));
}

#[test]
fn invalid_streams_are_rejected_with_file_and_offset() {
    let dir = tmpdir("gen-bad");
    ctfbuild::be_trace(&dir);
    let good = std::fs::read(dir.join("chan_0")).unwrap();
    // Truncated inside the first packet.
    std::fs::write(dir.join("chan_0"), &good[..100]).unwrap();
    expect_bad(&dir, "chan_0", Some(0), "only 100 bytes left");
    // Bad magic.
    let mut b = good.clone();
    b[0] = 0;
    std::fs::write(dir.join("chan_0"), &b).unwrap();
    expect_bad(&dir, "chan_0", Some(0), "magic");
    // content_size > packet_size (content_size is at byte 40, big-endian u64).
    let mut b = good.clone();
    b[40..48].copy_from_slice(&u64::MAX.to_be_bytes());
    std::fs::write(dir.join("chan_0"), &b).unwrap();
    expect_bad(&dir, "chan_0", Some(0), "larger than packet_size");
    // Unknown stream class.
    let mut b = good.clone();
    b[20..24].copy_from_slice(&9u32.to_be_bytes());
    std::fs::write(dir.join("chan_0"), &b).unwrap();
    expect_bad(&dir, "chan_0", Some(0), "undeclared stream class 9");
    std::fs::write(dir.join("chan_0"), &good).unwrap();
    fuzz_read_general(&dir).unwrap();

    // A variant tag that selects nothing, an unknown event id, a zero-size event.
    let meta = ctfbuild::BE_METADATA.replace("{ INT, STR } tag", "{ INT, STR, NONE } tag");
    std::fs::write(dir.join("metadata"), meta).unwrap();
    fuzz_read_general(&dir).unwrap();
    let meta = ctfbuild::BE_METADATA.replace("{ INT, STR } tag", "{ INT = 5, STR } tag");
    std::fs::write(dir.join("metadata"), meta).unwrap();
    expect_bad(&dir, "chan_0", None, "tag value 0 selects no option");
    let meta = ctfbuild::BE_METADATA.replace("id = 40;", "id = 41;");
    std::fs::write(dir.join("metadata"), meta).unwrap();
    expect_bad(&dir, "chan_0", None, "unknown event id 40");

    let z = tmpdir("gen-zero");
    std::fs::create_dir_all(&z).unwrap();
    std::fs::write(
        z.join("metadata"),
        "/* CTF 1.8 */ trace { major = 1; minor = 8; byte_order = le; };\n\
         event { name = e; fields := struct { struct { } s; }; };",
    )
    .unwrap();
    std::fs::write(z.join("stream"), [1u8, 2, 3]).unwrap();
    expect_bad(&z, "stream", Some(0), "occupies zero bits");
}

#[test]
fn invalid_metadata_is_rejected_with_file_and_offset() {
    let dir = tmpdir("gen-badmeta");
    ctfbuild::be_trace(&dir);
    let cases: &[(&str, &str, &str)] = &[
        ("uint5_t;", "uint5_tt;", "unknown type"),
        ("size = 27;", "size = 4097;", "not in 1..=4096"),
        (
            "size = 27;",
            "size = 65;",
            "clock-mapped integer of 65 bits",
        ),
        (
            "enum : uint5_t",
            "enum : integer { size = 65; }",
            "enum container of 65 bits",
        ),
        ("uint16_t seq[n];", "uint16_t seq[m];", "names no field"),
        ("variant <id>", "variant <nope>", "names no field"),
        ("BLUE = 10 ... 20", "BLUE = 10 ... 300", "does not fit"),
        ("align = 32;", "align = 3;", "power of two"),
        ("minor = 8;", "minor = 7;", "CTF 1.8"),
        ("id = 40;", "id = 0;", "declared twice"),
        ("name = \"t:var\";", "name = \"t:var\"", "expected `;`"),
        // No tag label names a variant option; a tag that is not an enum.
        (
            "{ uint32_t INT; string STR; } v;",
            "{ uint32_t I; string S; } v;",
            "no label of the tag enum `tag` names",
        ),
        (
            "enum : uint8_t { INT, STR } tag;",
            "string tag;",
            "is not an enum",
        ),
    ];
    for (from, to, what) in cases {
        let meta = ctfbuild::BE_METADATA.replacen(from, to, 1);
        assert_ne!(meta, ctfbuild::BE_METADATA, "{from}");
        std::fs::write(dir.join("metadata"), &meta).unwrap();
        expect_bad(&dir, "metadata", None, what);
    }
    // The same in a struct that is declared but never used.
    let unused = format!(
        "{}\nstruct unused {{ enum : uint8_t {{ A, B }} t; variant <t> {{ uint8_t C; uint8_t D; }} v; }};\n",
        ctfbuild::BE_METADATA
    );
    std::fs::write(dir.join("metadata"), unused).unwrap();
    expect_bad(&dir, "metadata", None, "no label of the tag enum `t` names");
    // Deep nesting and garbage.
    let deep = format!(
        "/* CTF 1.8 */ trace {{ major = 1; minor = 8; byte_order = le; }}; typealias {} := x;",
        "struct { ".repeat(10_000)
    );
    std::fs::write(dir.join("metadata"), deep).unwrap();
    expect_bad(&dir, "metadata", None, "nesting deeper");
    std::fs::write(dir.join("metadata"), b"\x57\x1d\xd1\x75abc").unwrap();
    expect_bad(&dir, "metadata", Some(0), "truncated metadata packet");
}

/// babeltrace2 prints the same events and values (when it is installed).
#[test]
fn same_lines_as_babeltrace2() {
    if std::process::Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: babeltrace2 is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    for (name, build) in [
        ("gen-bt-be", ctfbuild::be_trace as fn(&Path) -> Vec<String>),
        ("gen-bt-le", ctfbuild::le_two_classes),
    ] {
        let dir = tmpdir(name);
        let ours = build(&dir);
        let out = std::process::Command::new("babeltrace2")
            .args(["--clock-cycles", "--no-delta"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(normalize_babeltrace)
            .collect();
        let ours: Vec<String> = ours.iter().map(|l| normalize_ours(l)).collect();
        assert_eq!(ours, theirs, "{name}");
    }
}

/// `[0000000123] host name: { cpu_id = 0 }, { ... }` → `123 name: { ... }`.
pub fn normalize_babeltrace(l: &str) -> String {
    let (ts, rest) = match l.strip_prefix('[') {
        Some(r) => {
            let (ts, rest) = r.split_once("] ").unwrap_or(("0", r));
            (ts.trim_start_matches('0').parse::<u64>().unwrap_or(0), rest)
        }
        None => (0, l),
    };
    let mut rest = rest;
    // An optional hostname before the event name.
    if let Some((first, after)) = rest.split_once(' ') {
        if !first.ends_with(':') {
            rest = after;
        }
    }
    let (name, body) = rest.split_once(": ").unwrap_or((rest, ""));
    let body = match body.strip_prefix("{ cpu_id = ") {
        Some(b) => b.split_once("}, ").map_or(body, |(_, x)| x),
        None => body,
    };
    format!("{ts} {name}: {body}")
}

/// `[123] cpu 0 name: { ... }` → `123 name: { ... }`.
pub fn normalize_ours(l: &str) -> String {
    let r = l.strip_prefix('[').unwrap_or(l);
    let (ts, rest) = r.split_once("] cpu ").unwrap_or(("0", r));
    let rest = rest.split_once(' ').map_or(rest, |x| x.1);
    format!("{ts} {rest}")
}

/// The foreign sample traces as `general` fuzz inputs: each stream file with the metadata.
fn general_inputs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let be = tmpdir("gen-seeds-be");
    ctfbuild::be_trace(&be);
    let le = tmpdir("gen-seeds-le");
    ctfbuild::le_two_classes(&le);
    for (dir, streams) in [(&be, ["chan_0", "chan_1"]), (&le, ["s0", "s7"])] {
        let meta = std::fs::read(dir.join("metadata")).unwrap();
        for s in streams {
            let st = std::fs::read(dir.join(s)).unwrap();
            out.push(faultline_testkit::ctf::general_case_input(&meta, &st));
        }
    }
    out
}

/// Deterministic mutations of foreign traces (metadata and stream bytes, cuts, splices): the
/// general reader never panics and every error names its file with an offset inside it. The
/// same property as the `general` fuzz target, bounded.
#[test]
fn deterministic_mutations_of_foreign_traces() {
    let seeds = general_inputs();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    let (mut errors, mut cases) = (0, 0);
    for round in 0..600 {
        let mut b = seeds[round % seeds.len()].clone();
        let meta_end0 = 4 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        for _ in 0..1 + rnd(3) {
            let len = b.len();
            let meta_end = meta_end0.min(len);
            match rnd(5) {
                // Stream bytes (most interesting), metadata bytes, digits in the metadata.
                0 | 1 => {
                    let i = meta_end + rnd(len - meta_end);
                    if i < len {
                        b[i] = rnd(256) as u8;
                    }
                }
                2 if meta_end > 4 => {
                    let i = 4 + rnd(meta_end - 4);
                    b[i] = b"0123456789;{}[]<>:=._ \"x-"[rnd(25)];
                }
                2 => {}
                3 => b.truncate(4 + rnd(len - 4)),
                _ => {
                    let a = 4 + rnd(len - 4);
                    let c = a + rnd(len - a);
                    let chunk = b[a..c].to_vec();
                    let at = 4 + rnd(b.len() - 4);
                    b.splice(at..at, chunk);
                }
            }
        }
        match faultline_testkit::ctf::fuzz_general_case(&b) {
            Ok(Some(_)) => errors += 1,
            Ok(None) => {}
            Err(broken) => panic!("case {round}: {broken}"),
        }
        cases += 1;
    }
    assert!(
        errors > cases / 5,
        "only {errors} of {cases} mutations detected"
    );
}

/// Seed corpus of the `general` fuzz target (fuzz/README.md). Run with
/// `cargo test -p faultline-ctf --test general write_general_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_general_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/general");
    std::fs::create_dir_all(&root).unwrap();
    for (i, b) in general_inputs().iter().enumerate() {
        std::fs::write(root.join(format!("seed_{i}")), b).unwrap();
    }
}
