//! Corrupted inputs: every malformation gives an error naming the file and the byte offset,
//! never a panic. Ends with property tests feeding random mutations to the reader.

mod common;

use common::*;
use faultline_ctf::layout::off;
use faultline_ctf::{fuzz_read, CtfError, Trace};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn packet_offsets(dir: &Path, cpu: u32) -> Vec<u64> {
    faultline_testkit::ctf::packet_offsets(dir, cpu).unwrap()
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    faultline_testkit::ctf::patch_file(path, at, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    faultline_testkit::ctf::truncate_file(path, len).unwrap();
}

/// Sample trace in a fresh dir, with the path of stream_0 and its packet offsets.
fn sample(name: &str) -> (TmpDir, PathBuf, Vec<u64>) {
    let dir = tmpdir(name);
    write_sample(&dir);
    let offs = packet_offsets(&dir, 0);
    assert_eq!(offs.len(), 3);
    let s0 = dir.join("stream_0");
    (dir, s0, offs)
}

/// Read everything; expect a `Format` error on `file` at `offset`, message containing `what`.
fn expect_format(dir: &Path, file: &Path, offset: u64, what: &str) {
    let e = fuzz_read(dir).unwrap_err();
    let msg = e.to_string();
    match &e {
        CtfError::Format {
            path, offset: o, ..
        } => {
            assert_eq!(path, file, "{msg}");
            assert_eq!(*o, offset, "{msg}");
        }
        _ => panic!("not a format error: {msg}"),
    }
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("byte offset {offset}")), "{msg}");
    assert!(msg.contains(what), "{msg}");
}

#[test]
fn truncated_stream_inside_a_packet() {
    let (dir, s0, offs) = sample("trunc-pkt");
    let len = std::fs::metadata(&s0).unwrap().len();
    truncate(&s0, len - 5);
    expect_format(
        &dir,
        &s0,
        offs[2] + off::PACKET_SIZE as u64,
        "beyond the end",
    );
}

#[test]
fn truncated_stream_inside_a_header() {
    let (dir, s0, offs) = sample("trunc-hdr");
    truncate(&s0, offs[2] + 50);
    expect_format(&dir, &s0, offs[2], "truncated packet: 50 bytes left");
}

#[test]
fn bad_magic() {
    let (dir, s0, offs) = sample("magic");
    patch(&s0, offs[1], &0xdeadbeefu32.to_le_bytes());
    expect_format(&dir, &s0, offs[1], "bad magic 0xdeadbeef");
}

#[test]
fn content_size_larger_than_packet_size() {
    let (dir, s0, offs) = sample("content");
    let t = Trace::open(&dir).unwrap();
    let p = t.packets(&t.streams()[0]).next().unwrap().unwrap();
    patch(
        &s0,
        offs[0] + 40,
        &(p.header.packet_size + 64).to_le_bytes(),
    );
    expect_format(&dir, &s0, offs[0] + 40, "> packet_size");
}

#[test]
fn packet_size_beyond_file_end() {
    let (dir, s0, offs) = sample("psize");
    patch(&s0, offs[1] + 48, &(1u64 << 40).to_le_bytes());
    expect_format(&dir, &s0, offs[1] + 48, "beyond the end");
    // Not a multiple of 8 bits.
    patch(&s0, offs[1] + 48, &(1027u64).to_le_bytes());
    expect_format(&dir, &s0, offs[1] + 48, "whole number of bytes");
}

#[test]
fn record_len_too_small() {
    // `len` is the payload length (faultline_wire): 8 bytes cannot hold the event's fields.
    let (dir, s0, offs) = sample("len-small");
    // (a packet's first record has an extended header: u16 `len` at 13, payload at 15)
    patch(&s0, offs[0] + 128 + 13, &8u16.to_le_bytes());
    expect_format(
        &dir,
        &s0,
        offs[0] + 128 + 15 + 7,
        "payload ends inside field `u64f`",
    );
}

#[test]
fn record_crossing_content_end() {
    let (dir, s0, offs) = sample("len-big");
    patch(&s0, offs[0] + 128 + 13, &4000u16.to_le_bytes());
    expect_format(&dir, &s0, offs[0] + 128, "crosses the end of the content");
}

#[test]
fn unknown_event_id() {
    let (dir, s0, offs) = sample("id");
    // The extended header's id is the u32 at 1; the error names the record.
    patch(&s0, offs[2] + 128 + 1, &55u32.to_le_bytes());
    expect_format(&dir, &s0, offs[2] + 128, "unknown event id 55");
}

#[test]
fn invalid_bool_in_payload() {
    let (dir, s0, offs) = sample("bool");
    // First record of packet 0 is myapp:all; `flag` is at payload byte 42.
    let at = offs[0] + 128 + 15 + 42;
    assert_eq!(std::fs::read(&s0).unwrap()[at as usize], 0);
    patch(&s0, at, &[2]);
    expect_format(&dir, &s0, at, "bool field `flag` is 2");
}

#[test]
fn sequence_number_going_backwards() {
    let (dir, s0, offs) = sample("seq");
    patch(&s0, offs[2] + 56, &0u64.to_le_bytes());
    expect_format(&dir, &s0, offs[2] + 56, "packet_seq_num 0 after 1");
}

#[test]
fn stream_file_of_another_cpu() {
    let (dir, s0, _) = sample("cpu");
    let s4 = dir.join("stream_4");
    std::fs::rename(&s0, &s4).unwrap();
    expect_format(&dir, &s4, 72, "cpu_id 0 in file of cpu 4");
}

#[test]
fn uuid_mismatch() {
    let (dir, s0, offs) = sample("uuid");
    patch(&s0, offs[1] + 4, &[0xff]);
    expect_format(&dir, &s0, offs[1] + 4, "uuid");
}

fn expect_metadata(dir: &Path, line: u32, what: &str) {
    let e = fuzz_read(dir).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("not a faultline trace: metadata: line {line}: ")),
        "{msg}"
    );
    assert!(
        msg.contains(&dir.join("metadata").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("byte offset"), "{msg}");
    assert!(msg.contains(what), "{msg}");
}

#[test]
fn garbage_and_foreign_metadata() {
    let dir = tmpdir("meta-garbage");
    write_sample(&dir);
    let m = dir.join("metadata");
    std::fs::write(&m, "hello world\n").unwrap();
    expect_metadata(&dir, 1, "CTF 1.8");
    std::fs::write(&m, [0x57u8, 0x1d, 0xd1, 0x75, 0, 0xff, 0xfe]).unwrap();
    expect_metadata(&dir, 1, "invalid UTF-8");
    std::fs::write(
        &m,
        "/* CTF 1.8 */\ntrace {\n\tmajor = 1;\n\tminor = 8;\n@\n",
    )
    .unwrap();
    expect_metadata(&dir, 5, "unexpected character '@'");
    std::fs::write(&m, "/* CTF 1.8 */\ntrace { major = 1;").unwrap();
    expect_metadata(&dir, 2, "end of file");
    // LTTng-style metadata: different tracer and packet header.
    let lttng = "/* CTF 1.8 */\n\
        typealias integer { size = 32; align = 8; signed = false; } := uint32_t;\n\
        typealias integer { size = 8; align = 8; signed = false; } := uint8_t;\n\
        typealias integer { size = 64; align = 8; signed = false; } := uint64_t;\n\
        trace {\n major = 1;\n minor = 8;\n uuid = \"12345678-9abc-def0-0123-456789abcdef\";\n\
        byte_order = le;\n packet.header := struct {\n  uint32_t magic;\n  uint8_t uuid[16];\n\
          uint32_t stream_id;\n  uint64_t stream_instance_id;\n };\n};\n\
        env {\n tracer_name = \"lttng-ust\";\n};\n\
        clock {\n name = \"monotonic\";\n freq = 1000000000;\n};\n";
    std::fs::write(&m, lttng).unwrap();
    expect_metadata(&dir, 18, "tracer_name");
    let fixed = lttng.replace("lttng-ust", "faultline");
    std::fs::write(&m, &fixed).unwrap();
    expect_metadata(&dir, 14, "unexpected extra field `stream_instance_id`");
    let no_alias = lttng.replace(
        "typealias integer { size = 64; align = 8; signed = false; } := uint64_t;\n",
        "",
    );
    std::fs::write(&m, &no_alias).unwrap();
    expect_metadata(&dir, 13, "unknown type `uint64_t`");
    // The real metadata with the event header changed.
    let good = faultline_ctf::metadata(&desc()).unwrap();
    let bad = good.replace(
        "struct { uint32_t id; uint64_clock_t timestamp; } extended;",
        "struct { uint16_t id; uint64_clock_t timestamp; } extended;",
    );
    assert_ne!(good, bad);
    std::fs::write(&m, &bad).unwrap();
    let line = 1 + bad[..bad.find("event.header :=").unwrap()]
        .matches('\n')
        .count() as u32;
    expect_metadata(&dir, line, "extended: {id: u16a8;");
    // A trace with the 16-byte record headers of older versions: a clear refusal.
    let old = good.replace(
        &good[good.find("\tevent.header :=").unwrap()..good.find("\tevent.context :=").unwrap()],
        "\tevent.header := struct {\n\t\tuint64_clock_t timestamp;\n\t\tuint32_t id;\n\t} align(64);\n",
    );
    std::fs::write(&m, &old).unwrap();
    let line = 1 + old[..old.find("event.header :=").unwrap()]
        .matches('\n')
        .count() as u32;
    expect_metadata(
        &dir,
        line,
        "16-byte record headers of older faultline versions",
    );
    // A trace with the 8-byte aligned records of layout 2 (7-byte compact headers, a u24
    // len): a clear refusal too, naming the header (checked first).
    let ctx = good.find("\tevent.context :=").unwrap();
    let ctx = ctx..ctx + good[ctx..].find("\n\t};").unwrap() + 4;
    let v2 = good
        .replace(
            &good[ctx],
            "\tevent.context := struct {\n\t\tinteger { size = 24; align = 8; signed = false; \
             byte_order = le; } len;\n\t};",
        )
        .replace(
            "\t} align(8);\n\tevent.context",
            "\t} align(64);\n\tevent.context",
        );
    assert!(v2.contains("align(64)") && v2.contains("size = 24"), "{v2}");
    std::fs::write(&m, &v2).unwrap();
    let line = 1 + v2[..v2.find("event.header :=").unwrap()]
        .matches('\n')
        .count() as u32;
    expect_metadata(
        &dir,
        line,
        "8-byte aligned records of older faultline versions",
    );
    // Unterminated string and comment.
    std::fs::write(&m, "/* CTF 1.8 */\nenv { a = \"abc").unwrap();
    expect_metadata(&dir, 2, "unterminated string");
    std::fs::write(&m, "/* CTF 1.8 */\n/* never closed").unwrap();
    expect_metadata(&dir, 2, "unterminated comment");
}

#[test]
fn missing_metadata_names_the_path() {
    let dir = tmpdir("nometa");
    std::fs::create_dir_all(&dir).unwrap();
    let e = Trace::open(&dir).unwrap_err();
    assert!(matches!(e, CtfError::Io { .. }));
    assert!(e
        .to_string()
        .contains(&dir.join("metadata").display().to_string()));
}

#[test]
fn error_ends_the_iteration() {
    let (dir, s0, offs) = sample("stop");
    patch(&s0, offs[2], &[0]);
    let t = Trace::open(&dir).unwrap();
    let items: Vec<_> = t.events(&faultline_ctf::Filter::default()).collect();
    let errs = items.iter().filter(|r| r.is_err()).count();
    assert_eq!(errs, 1);
    assert!(items.last().unwrap().is_err());
}

// ------------------------------------------------------------------ property tests

struct Base {
    metadata: Vec<u8>,
    s0: Vec<u8>,
    s1: Vec<u8>,
}

fn base() -> &'static Base {
    static B: std::sync::OnceLock<Base> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let dir = tmpdir("prop-base");
        write_sample(&dir);
        Base {
            metadata: std::fs::read(dir.join("metadata")).unwrap(),
            s0: std::fs::read(dir.join("stream_0")).unwrap(),
            s1: std::fs::read(dir.join("stream_1")).unwrap(),
        }
    })
}

fn mutate(mut b: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, v) in edits {
        if !b.is_empty() {
            let i = at % b.len();
            b[i] = v;
        }
    }
    if let Some(c) = cut {
        let n = b.len();
        b.truncate(c % (n + 1));
    }
    b
}

/// Read the trace; never panics, and a content error stays inside the file it names.
fn check(dir: &Path, files: &[(&str, usize)]) {
    match fuzz_read(dir) {
        Ok(_) => {}
        Err(CtfError::Format { path, offset, .. }) => {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let len = files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, l)| *l)
                .unwrap();
            assert!(
                offset <= len as u64,
                "offset {offset} beyond {name} ({len})"
            );
        }
        Err(CtfError::Metadata { line, offset, .. }) => {
            assert!(line >= 1);
            let len = files.iter().find(|(n, _)| *n == "metadata").unwrap().1;
            assert!(offset <= len as u64);
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

fn write_case(dir: &Path, meta: &[u8], s0: &[u8], s1: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metadata"), meta).unwrap();
    std::fs::write(dir.join("stream_0"), s0).unwrap();
    std::fs::write(dir.join("stream_1"), s1).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..12),
        edits1 in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let b = base();
        let s0 = mutate(b.s0.clone(), &edits, cut);
        let s1 = mutate(b.s1.clone(), &edits1, None);
        let dir = tmpdir("prop-stream");
        write_case(&dir, &b.metadata, &s0, &s1);
        check(&dir, &[("metadata", b.metadata.len()), ("stream_0", s0.len()), ("stream_1", s1.len())]);
    }

    #[test]
    fn header_field_mutations_never_panic(
        field in 0usize..16,
        value in prop_oneof![Just(0u64), Just(u64::MAX), Just(1024u64), Just(1u64 << 63), any::<u64>()],
        packet in 0usize..3,
    ) {
        // Targeted: overwrite one 8-byte-aligned header word of one packet.
        let b = base();
        let dir0 = tmpdir("prop-hdr-offs");
        write_case(&dir0, &b.metadata, &b.s0, &b.s1);
        let offs = packet_offsets(&dir0, 0);
        drop(dir0);
        let mut s0 = b.s0.clone();
        let at = offs[packet] as usize + 8 * field;
        s0[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let dir = tmpdir("prop-hdr");
        write_case(&dir, &b.metadata, &s0, &b.s1);
        check(&dir, &[("metadata", b.metadata.len()), ("stream_0", s0.len()), ("stream_1", b.s1.len())]);
    }

    #[test]
    fn random_stream_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = base();
        // Random bytes, but with a valid-looking header prefix half of the time.
        let mut s0 = bytes.clone();
        if bytes.first().is_some_and(|x| x % 2 == 0) && s0.len() >= 128 {
            s0[..48].copy_from_slice(&b.s0[..48]);
        }
        let dir = tmpdir("prop-random");
        write_case(&dir, &b.metadata, &s0, &b.s1);
        check(&dir, &[("metadata", b.metadata.len()), ("stream_0", s0.len()), ("stream_1", b.s1.len())]);
    }

    #[test]
    fn mutated_metadata_never_panics(
        edits in proptest::collection::vec((any::<usize>(), 0x20u8..0x7f), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let b = base();
        let meta = mutate(b.metadata.clone(), &edits, cut);
        let dir = tmpdir("prop-meta");
        write_case(&dir, &meta, &b.s0, &b.s1);
        check(&dir, &[("metadata", meta.len()), ("stream_0", b.s0.len()), ("stream_1", b.s1.len())]);
    }
}

// ------------------------------------------------------------ deterministic mutations
//
// The same property as the fuzz targets in `fuzz/` (see fuzz/README.md), bounded and
// deterministic so that every `cargo test` on stable exercises it: thousands of byte flips,
// truncations and splices of a valid trace, each read through `faultline_testkit::ctf::read_case` (open,
// events in both forms, packets, stats): no panic, and every error names a file of the trace,
// on one line, with an offset inside that file.

/// splitmix64: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `b`; `other` is a source of splices.
fn mutate_once(rng: &mut Rng, mut b: Vec<u8>, other: &[u8]) -> Vec<u8> {
    const INTERESTING: [u64; 7] = [0, 1, 7, 1024, 1 << 31, 1 << 63, u64::MAX];
    match rng.below(6) {
        // Flip bits in a few bytes.
        0 => {
            for _ in 0..1 + rng.below(4) {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        // Truncate.
        1 => {
            let n = rng.below(b.len() + 1);
            b.truncate(n);
        }
        // Overwrite an aligned word with an interesting value (header fields, record len/id).
        2 => {
            if b.len() >= 8 {
                let at = rng.below(b.len() / 8) * 8 + if rng.below(2) == 0 { 0 } else { 4 };
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = (b.len() - at).min(if rng.below(2) == 0 { 8 } else { 4 });
                b[at..at + n].copy_from_slice(&v[..n]);
            }
        }
        // Splice a range of `other` over a range of `b`.
        3 => {
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(256));
                let at = rng.below(b.len() + 1);
                let end = (at + n).min(b.len());
                b.splice(at..end, other[from..from + n].iter().copied());
            }
        }
        // Duplicate or drop a chunk (shifts everything after it).
        4 => {
            if !b.is_empty() {
                let at = rng.below(b.len());
                let n = 1 + rng.below((b.len() - at).min(200));
                if rng.below(2) == 0 {
                    let chunk: Vec<u8> = b[at..at + n].to_vec();
                    b.splice(at..at, chunk);
                } else {
                    b.drain(at..at + n);
                }
            }
        }
        // Random bytes.
        _ => {
            for _ in 0..1 + rng.below(16) {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
            }
        }
    }
    b
}

fn run_mutations(name: &str, seed: u64, cases: usize, which: usize) {
    let b = base();
    let mut rng = Rng(seed);
    let dir = tmpdir(name);
    let (mut errors, mut clean) = (0usize, 0usize);
    for case in 0..cases {
        let (mut meta, mut s0, mut s1) = (b.metadata.clone(), b.s0.clone(), b.s1.clone());
        for _ in 0..1 + rng.below(3) {
            match which {
                0 => s0 = mutate_once(&mut rng, s0, &b.s1),
                1 => s1 = mutate_once(&mut rng, s1, &b.s0),
                _ => meta = mutate_once(&mut rng, meta, &b.metadata),
            }
        }
        match faultline_testkit::ctf::check_case(&dir, &meta, &[&s0, &s1]) {
            Ok(Some(_)) => errors += 1,
            Ok(None) => clean += 1,
            Err(broken) => panic!("{name} case {case} (seed {seed}): {broken}"),
        }
    }
    // Most mutations must be detected; a few (padding bytes, float payloads) are harmless.
    assert_eq!(errors + clean, cases);
    assert!(
        errors > cases / 2,
        "{name}: only {errors} of {cases} detected"
    );
}

#[test]
fn deterministic_stream_mutations() {
    run_mutations("mut-s0", 1, 1500, 0);
    run_mutations("mut-s1", 2, 1000, 1);
}

#[test]
fn deterministic_metadata_mutations() {
    run_mutations("mut-meta", 3, 1000, 2);
}

/// Seed corpora for the fuzz targets (`fuzz/README.md`): the sample trace's stream and
/// metadata files. Run with `cargo test -p faultline-ctf --test corrupt -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let files = faultline_testkit::ctf::sample_files().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, name, bytes) in [
        ("stream", "sample_stream_0", &files.streams[0]),
        ("stream", "sample_stream_1", &files.streams[1]),
        ("metadata", "sample_metadata", &files.metadata),
    ] {
        let d = root.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    }
}
