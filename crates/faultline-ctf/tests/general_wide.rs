//! Integers wider than 64 bits in the general CTF 1.8 reader: both byte orders, unaligned bit
//! offsets, signed negative values, 65/128/200-bit widths, hexadecimal base; the places where
//! a 64-bit value is required reject them; truncated streams are rejected without a panic.

#[path = "common/ctfbuild.rs"]
mod ctfbuild;

use ctfbuild::Bits;
use faultline_ctf::general::{push_ctf_event, CtfTrace, CtfValue};
use faultline_ctf::{fuzz_read_general, Filter, TimeMode};
use faultline_testkit::ctf::tmpdir;
use std::path::Path;

/// Write the `size` low bits of `limbs` (little-endian 64-bit limbs) at bit granularity.
fn wide(w: &mut Bits, limbs: &[u64], size: u32, align: u64) {
    w.align(align);
    let chunks: Vec<(u64, u32)> = (0..size.div_ceil(64))
        .map(|k| {
            let l = limbs.get(k as usize).copied().unwrap_or(0);
            (l, (size - 64 * k).min(64))
        })
        .collect();
    if w.be {
        for &(l, n) in chunks.iter().rev() {
            w.int(l, n, 1);
        }
    } else {
        for &(l, n) in &chunks {
            w.int(l, n, 1);
        }
    }
}

fn metadata(order: &str) -> String {
    format!(
        r#"/* CTF 1.8 */
trace {{ major = 1; minor = 8; byte_order = {order}; }};
event {{
    name = "w:ide";
    fields := struct {{
        integer {{ size = 3; align = 1; signed = false; }} pad;
        integer {{ size = 65; align = 1; signed = false; }} u65;
        integer {{ size = 128; align = 1; signed = true; }} s128;
        integer {{ size = 200; align = 8; signed = true; }} s200;
        integer {{ size = 200; align = 1; signed = false; base = 16; }} h200;
        integer {{ size = 70; align = 1; signed = true; base = 2; }} b70;
        integer {{ size = 66; align = 1; signed = false; base = 8; }} o66;
        integer {{ size = 128; align = 1; signed = false; }} arr[2];
    }};
}};
"#
    )
}

/// 2^200 - 12345 as a 200-bit two's complement pattern is -12345.
fn minus_12345_200() -> Vec<u64> {
    let mut v = vec![u64::MAX, u64::MAX, u64::MAX, 0xff];
    v[0] = (-12345i64) as u64;
    v
}

fn write_trace(dir: &Path, be: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metadata"), metadata(if be { "be" } else { "le" })).unwrap();
    let mut w = Bits::new(be);
    w.int(5, 3, 1);
    // u65 = 2^64 + 7 (starts at bit 3: unaligned).
    wide(&mut w, &[7, 1], 65, 1);
    // s128 = i128::MIN + 1.
    let v = (i128::MIN + 1) as u128;
    wide(&mut w, &[v as u64, (v >> 64) as u64], 128, 1);
    wide(&mut w, &minus_12345_200(), 200, 8);
    // h200 = 0xAB << 192 | 0x1234 (after 0 bits of padding; 8-aligned already).
    wide(&mut w, &[0x1234, 0, 0, 0xab], 200, 1);
    // b70 = -2 (70-bit pattern 0b11...110).
    wide(&mut w, &[u64::MAX - 1, 0x3f], 70, 1);
    // o66 = 2^65 + 8.
    wide(&mut w, &[8, 2], 66, 1);
    wide(&mut w, &[1, 0], 128, 1);
    wide(&mut w, &[0, 1], 128, 1);
    std::fs::write(dir.join("stream"), &w.b).unwrap();
}

fn line(dir: &Path) -> Vec<String> {
    let t = CtfTrace::open(dir).unwrap();
    let mut ev = t.events(&Filter::default());
    let mut out = Vec::new();
    while let Some(e) = ev.next_event() {
        let e = e.unwrap();
        let mut l = String::new();
        push_ctf_event(&mut l, &t, &e, TimeMode::Ticks);
        out.push(l);
    }
    out
}

const WANT: &str = "w:ide: { pad = 5, u65 = 18446744073709551623, \
s128 = -170141183460469231731687303715884105727, s200 = -12345, \
h200 = 0xAB000000000000000000000000000000000000000000001234, \
b70 = 0b1111111111111111111111111111111111111111111111111111111111111111111110, \
o66 = 04000000000000000000010, \
arr = [ [0] = 1, [1] = 18446744073709551616 ] }";

#[test]
fn wide_integers_both_byte_orders() {
    for be in [false, true] {
        let dir = tmpdir(if be { "wide-be" } else { "wide-le" });
        write_trace(&dir, be);
        let l = line(&dir);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].ends_with(WANT), "be={be}: {}", l[0]);
        let t = CtfTrace::open(&dir).unwrap();
        let mut ev = t.events(&Filter::default());
        let e = ev.next_event().unwrap().unwrap();
        let f = e.fields();
        assert_eq!(
            f[1].1,
            CtfValue::Wide {
                negative: false,
                magnitude: vec![7, 1]
            }
        );
        assert_eq!(
            f[3].1,
            CtfValue::Wide {
                negative: true,
                magnitude: vec![12345, 0, 0, 0]
            }
        );
    }
}

#[test]
fn widest_integer_and_zero() {
    let dir = tmpdir("wide-4096");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metadata"),
        "/* CTF 1.8 */ trace { major = 1; minor = 8; byte_order = le; };\n\
         event { name = e; fields := struct { integer { size = 4096; signed = true; } x; \
         integer { size = 72; signed = true; } z; }; };",
    )
    .unwrap();
    // x = -1 over 4096 bits, z = 0 (72 bits).
    let mut b = vec![0xffu8; 512];
    b.extend_from_slice(&[0u8; 9]);
    std::fs::write(dir.join("stream"), &b).unwrap();
    let l = line(&dir);
    assert!(l[0].ends_with("e: { x = -1, z = 0 }"), "{}", l[0]);
}

fn expect_err(dir: &Path, what: &str) -> String {
    let e = fuzz_read_general(dir).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(what), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(e.offset().is_some(), "{msg}");
    msg
}

#[test]
fn truncated_wide_integers_are_rejected() {
    for be in [false, true] {
        let dir = tmpdir(if be { "wide-trunc-be" } else { "wide-trunc-le" });
        write_trace(&dir, be);
        let good = std::fs::read(dir.join("stream")).unwrap();
        for cut in 1..good.len() {
            std::fs::write(dir.join("stream"), &good[..cut]).unwrap();
            let msg = expect_err(&dir, "stream");
            assert!(msg.contains("past the content end"), "cut {cut}: {msg}");
        }
    }
}

#[test]
fn wide_integers_where_64_bits_are_required_are_rejected() {
    let head = "/* CTF 1.8 */ trace { major = 1; minor = 8; byte_order = le; };\n";
    let cases: &[(&str, &str)] = &[
        (
            "event { name = e; fields := struct { integer { size = 65; } n; \
             integer { size = 8; } s[n]; }; };",
            "used as a sequence length or variant tag",
        ),
        (
            "event { name = e; fields := struct { enum : integer { size = 100; } { A, B } t; }; };",
            "enum container of 100 bits",
        ),
        (
            "clock { name = c; freq = 1000; };\nevent { name = e; fields := struct { \
             integer { size = 80; map = clock.c.value; } t; }; };",
            "clock-mapped integer of 80 bits",
        ),
        (
            "stream { event.header := struct { integer { size = 65; } id; }; };\n\
             event { name = e; fields := struct { integer { size = 8; } x; }; };",
            "`id` in stream.event.header has 65 bits",
        ),
        (
            "event { name = e; fields := struct { integer { size = 5000; } x; }; };",
            "integer size 5000 not in 1..=4096",
        ),
    ];
    for (i, (body, what)) in cases.iter().enumerate() {
        let dir = tmpdir(&format!("wide-bad-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata"), format!("{head}{body}")).unwrap();
        std::fs::write(dir.join("stream"), [0u8; 64]).unwrap();
        let msg = expect_err(&dir, what);
        assert!(msg.contains("metadata"), "{msg}");
    }
}
