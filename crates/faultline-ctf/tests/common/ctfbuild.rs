//! Test-only builder of small foreign CTF 1.8 traces (not faultline's layout): a bit writer
//! for either byte order, metadata packetizing, and two sample traces used by the general
//! reader's tests and the command line's tests.
//!
//! - [`be_trace`]: big-endian; LTTng-style compact/extended event headers (5-bit id enum,
//!   variant with a 27-bit or 64-bit clock-mapped timestamp); bit fields, signed 13-bit, hex
//!   base, float, double, enum with range, sequence, string, UTF-8 text array, a variant
//!   payload; stream event context; two packets with discarded events and a lost packet.
//! - [`le_two_classes`]: little-endian, packetized metadata, two stream classes (one without
//!   event header), a packet context without sizes (packet = whole file).
#![allow(dead_code)]

use std::path::Path;

/// Bit writer (CTF bit order: LSB first for little-endian, MSB first for big-endian).
pub struct Bits {
    pub b: Vec<u8>,
    pub bit: u64,
    pub be: bool,
}

impl Bits {
    pub fn new(be: bool) -> Self {
        Bits {
            b: Vec::new(),
            bit: 0,
            be,
        }
    }

    fn put_bit(&mut self, v: bool) {
        let byte = (self.bit / 8) as usize;
        if byte >= self.b.len() {
            self.b.push(0);
        }
        let k = (self.bit % 8) as u32;
        let k = if self.be { 7 - k } else { k };
        if v {
            self.b[byte] |= 1 << k;
        }
        self.bit += 1;
    }

    pub fn align(&mut self, a: u64) {
        while !self.bit.is_multiple_of(a) {
            self.put_bit(false);
        }
    }

    /// `size` low bits of `v`, after aligning to `align` bits.
    pub fn int(&mut self, v: u64, size: u32, align: u64) -> &mut Self {
        self.align(align);
        if self.be {
            for i in (0..size).rev() {
                self.put_bit((v >> i) & 1 == 1);
            }
        } else {
            for i in 0..size {
                self.put_bit((v >> i) & 1 == 1);
            }
        }
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.align(8);
        for &c in s.as_bytes() {
            self.int(u64::from(c), 8, 8);
        }
        self.int(0, 8, 8)
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            self.int(u64::from(c), 8, 8);
        }
        self
    }

    /// Overwrite `size` bits at bit `at` with `v` (for sizes filled in afterwards).
    pub fn patch(&mut self, at: u64, v: u64, size: u32) {
        for i in 0..u64::from(size) {
            let bit = if self.be {
                (v >> (u64::from(size) - 1 - i)) & 1
            } else {
                (v >> i) & 1
            };
            let pos = at + i;
            let k = (pos % 8) as u32;
            let k = if self.be { 7 - k } else { k };
            let byte = &mut self.b[(pos / 8) as usize];
            if bit == 1 {
                *byte |= 1 << k;
            } else {
                *byte &= !(1 << k);
            }
        }
    }
}

pub const UUID: &str = "2a6422d0-6cee-11e0-8c08-cb07d7b3a564";
pub const UUID_BYTES: [u8; 16] = [
    0x2a, 0x64, 0x22, 0xd0, 0x6c, 0xee, 0x11, 0xe0, 0x8c, 0x08, 0xcb, 0x07, 0xd7, 0xb3, 0xa5, 0x64,
];

/// Metadata text in packets of at most `chunk` payload bytes (37-byte headers, 16 bytes of
/// padding after each payload).
pub fn packetize(text: &str, chunk: usize, be: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for part in text.as_bytes().chunks(chunk) {
        let content = (37 + part.len()) as u32 * 8;
        let packet = content + 16 * 8;
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        out.extend_from_slice(&w32(0x75D1_1D57));
        out.extend_from_slice(&UUID_BYTES);
        out.extend_from_slice(&w32(0)); // checksum
        out.extend_from_slice(&w32(content));
        out.extend_from_slice(&w32(packet));
        out.extend_from_slice(&[0, 0, 0, 1, 8]);
        out.extend_from_slice(part);
        out.extend_from_slice(&[0u8; 16]);
    }
    out
}

pub const BE_METADATA: &str = r#"/* CTF 1.8 */
typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 16; align = 8; signed = false; } := uint16_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 64; align = 8; signed = false; } := uint64_t;
typealias integer { size = 5; align = 1; signed = false; } := uint5_t;
typealias integer { size = 27; align = 1; signed = false; map = clock.mono.value; } := uint27_clock_t;
typealias integer { size = 64; align = 8; signed = false; map = clock.mono.value; } := uint64_clock_t;

trace {
    major = 1;
    minor = 8;
    uuid = "2a6422d0-6cee-11e0-8c08-cb07d7b3a564";
    byte_order = be;
    packet.header := struct {
        uint32_t magic;
        uint8_t uuid[16];
        uint32_t stream_id;
    };
};

env {
    hostname = "builder";
    domain = "ust";
};

clock {
    name = mono;
    freq = 1000000000;
    offset_s = 1700000000;
    offset = 500;
};

struct event_header_compact {
    enum : uint5_t { compact = 0 ... 30, extended = 31 } id;
    variant <id> {
        struct { uint27_clock_t timestamp; } compact;
        struct { uint32_t id; uint64_clock_t timestamp; } extended;
    } v;
} align(8);

stream {
    id = 0;
    packet.context := struct {
        uint64_clock_t timestamp_begin;
        uint64_clock_t timestamp_end;
        uint64_t content_size;
        uint64_t packet_size;
        uint64_t packet_seq_num;
        uint32_t events_discarded;
        uint32_t cpu_id;
    };
    event.header := struct event_header_compact;
    event.context := struct {
        integer { size = 32; align = 8; signed = true; } _vtid;
    };
};

event {
    name = "t:bits";
    id = 0;
    stream_id = 0;
    loglevel = 13;
    fields := struct {
        integer { size = 3; align = 1; signed = false; } a;
        integer { size = 13; align = 1; signed = true; } b;
        integer { size = 16; align = 16; signed = false; base = 16; } h;
        floating_point { exp_dig = 8; mant_dig = 24; align = 32; } f;
        floating_point { exp_dig = 11; mant_dig = 53; align = 64; } d;
        enum : uint8_t { RED, GREEN = 5, BLUE = 10 ... 20 } color;
        uint8_t n;
        uint16_t seq[n];
        string s;
        integer { size = 8; align = 8; signed = false; encoding = UTF8; } txt[4];
    };
};

event {
    name = "t:var";
    id = 40;
    stream_id = 0;
    fields := struct {
        enum : uint8_t { INT, STR } tag;
        variant <tag> { uint32_t INT; string STR; } v;
    };
};
"#;

/// One event of [`be_trace`].
pub enum BeEvent {
    Bits {
        ts: u64,
        a: u64,
        b: i64,
        h: u64,
        f: f32,
        d: f64,
        color: u8,
        seq: Vec<u16>,
        s: &'static str,
        txt: [u8; 4],
    },
    Var {
        ts: u64,
        int: Option<u32>,
        s: &'static str,
    },
}

/// Write one packet of [`be_trace`]; returns its bytes.
pub fn be_packet(
    seq: u64,
    discarded: u32,
    cpu: u32,
    ts_begin: u64,
    events: &[BeEvent],
    pad: u64,
) -> Vec<u8> {
    let mut w = Bits::new(true);
    w.int(0xC1FC_1FC1, 32, 8);
    w.bytes(&UUID_BYTES);
    w.int(0, 32, 8);
    w.int(ts_begin, 64, 8);
    let ts_end_at = w.bit;
    w.int(0, 64, 8);
    let content_at = w.bit;
    w.int(0, 64, 8);
    let packet_at = w.bit;
    w.int(0, 64, 8);
    w.int(seq, 64, 8);
    w.int(u64::from(discarded), 32, 8);
    w.int(u64::from(cpu), 32, 8);
    let mut clock = ts_begin;
    for ev in events {
        let (ts, id) = match ev {
            BeEvent::Bits { ts, .. } => (*ts, 0u64),
            BeEvent::Var { ts, .. } => (*ts, 40),
        };
        // Compact header when the id fits in 5 bits and the low 27 bits reconstruct `ts`.
        w.align(8);
        if id < 31 && ts >= clock && ts - clock < (1 << 27) {
            w.int(id, 5, 1);
            w.int(ts & ((1 << 27) - 1), 27, 1);
        } else {
            w.int(31, 5, 1);
            w.int(id, 32, 8);
            w.int(ts, 64, 8);
        }
        clock = ts;
        w.int(4242, 32, 8); // vtid
        match ev {
            BeEvent::Bits {
                a,
                b,
                h,
                f,
                d,
                color,
                seq,
                s,
                txt,
                ..
            } => {
                w.align(64); // the payload struct is aligned like its most aligned field (d)
                w.int(*a, 3, 1);
                w.int(*b as u64, 13, 1);
                w.int(*h, 16, 16);
                w.int(u64::from(f.to_bits()), 32, 32);
                w.int(d.to_bits(), 64, 64);
                w.int(u64::from(*color), 8, 8);
                w.int(seq.len() as u64, 8, 8);
                for x in seq {
                    w.int(u64::from(*x), 16, 8);
                }
                w.string(s);
                w.bytes(txt);
            }
            BeEvent::Var { int, s, .. } => match int {
                Some(v) => {
                    w.int(0, 8, 8);
                    w.int(u64::from(*v), 32, 8);
                }
                None => {
                    w.int(1, 8, 8);
                    w.string(s);
                }
            },
        }
    }
    let content = w.bit;
    w.align(8);
    for _ in 0..pad {
        w.int(0, 8, 8);
    }
    let packet = w.bit;
    w.patch(ts_end_at, clock, 64);
    w.patch(content_at, content, 64);
    w.patch(packet_at, packet, 64);
    w.b
}

/// The big-endian sample: writes `metadata` and `chan_0`, `chan_1` into `dir`; returns the
/// lines `faultline view --time raw` prints.
pub fn be_trace(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metadata"), BE_METADATA).unwrap();
    let base = (1u64 << 27) * 3 + 0x7ff_fff0;
    let bits = |ts, a, b, color, seq: Vec<u16>| BeEvent::Bits {
        ts,
        a,
        b,
        h: 0xbeef,
        f: 1.5,
        d: -2.25,
        color,
        seq,
        s: "hi \"there\"",
        txt: *b"abc\0",
    };
    // chan_0: two packets; the second says 3 events discarded and skips one sequence number.
    let p0 = be_packet(
        0,
        0,
        0,
        base,
        &[
            bits(base + 5, 5, -100, 12, vec![1, 2]),
            // Crosses a 27-bit boundary: still compact, the reader must carry.
            bits(base + 40, 2, 4095, 5, vec![]),
            BeEvent::Var {
                ts: base + 50,
                int: Some(77),
                s: "",
            },
        ],
        9,
    );
    let p1 = be_packet(
        2,
        3,
        0,
        base + (1 << 28),
        &[BeEvent::Var {
            ts: base + (1 << 28) + 1,
            int: None,
            s: "str",
        }],
        0,
    );
    std::fs::write(dir.join("chan_0"), [p0, p1].concat()).unwrap();
    let p = be_packet(
        0,
        0,
        1,
        base + 1,
        &[bits(base + 45, 7, -4096, 1, vec![65535])],
        3,
    );
    std::fs::write(dir.join("chan_1"), p).unwrap();
    let b = |ts: u64, cpu: u32, rest: &str| format!("[{ts}] cpu {cpu} {rest}");
    vec![
        b(base + 5, 0, "t:bits: { vtid = 4242 }, { a = 5, b = -100, h = 0xBEEF, f = 1.5, d = -2.25, color = ( \"BLUE\" : container = 12 ), n = 2, seq = [ [0] = 1, [1] = 2 ], s = \"hi \\\"there\\\"\", txt = \"abc\" }"),
        b(base + 40, 0, "t:bits: { vtid = 4242 }, { a = 2, b = 4095, h = 0xBEEF, f = 1.5, d = -2.25, color = ( \"GREEN\" : container = 5 ), n = 0, seq = [ ], s = \"hi \\\"there\\\"\", txt = \"abc\" }"),
        b(base + 45, 1, "t:bits: { vtid = 4242 }, { a = 7, b = -4096, h = 0xBEEF, f = 1.5, d = -2.25, color = ( <unknown> : container = 1 ), n = 1, seq = [ [0] = 65535 ], s = \"hi \\\"there\\\"\", txt = \"abc\" }"),
        b(base + 50, 0, "t:var: { vtid = 4242 }, { tag = ( \"INT\" : container = 0 ), v = { 77 } }"),
        b(base + (1 << 28) + 1, 0, "t:var: { vtid = 4242 }, { tag = ( \"STR\" : container = 1 ), v = { \"str\" } }"),
    ]
}

pub const LE_METADATA: &str = r#"/* CTF 1.8 */
typealias integer { size = 32; align = 32; signed = false; } := uint32_t;
typealias integer { size = 64; align = 64; signed = false; map = clock.c.value; } := clk64;
trace { major = 1; minor = 8; byte_order = le;
    packet.header := struct { uint32_t magic; uint32_t stream_id; }; };
clock { name = c; freq = 1000; };
stream { id = 0;
    packet.context := struct { clk64 timestamp_begin; };
    event.header := struct { uint32_t id; clk64 timestamp; }; };
stream { id = 7;
    event.header := struct { clk64 timestamp; }; };
event { name = "a:one"; id = 1; stream_id = 0; fields := struct { uint32_t x; }; };
event { name = "a:two"; id = 2; stream_id = 0; fields := struct { string _msg; }; };
event { name = "b:only"; id = 0; stream_id = 7; fields := struct { integer { size = 4; align = 1; signed = false; } lo; integer { size = 4; align = 1; signed = false; } hi; }; };
"#;

/// Little-endian, packetized metadata, stream classes 0 and 7 in files `s0` and `s7`; returns
/// the lines of `faultline view --time raw`.
pub fn le_two_classes(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metadata"), packetize(LE_METADATA, 200, false)).unwrap();
    let mut w = Bits::new(false);
    w.int(0xC1FC_1FC1, 32, 32).int(0, 32, 32).int(100, 64, 64);
    // The event header struct is 64-bit aligned (its timestamp is).
    w.align(64);
    w.int(1, 32, 32).int(110, 64, 64).int(9, 32, 32);
    w.align(64);
    w.int(2, 32, 32).int(130, 64, 64).string("héllo");
    std::fs::write(dir.join("s0"), &w.b).unwrap();
    let mut w = Bits::new(false);
    w.int(0xC1FC_1FC1, 32, 32).int(7, 32, 32);
    w.int(120, 64, 64).int(0x3, 4, 1).int(0xa, 4, 1);
    w.int(125, 64, 64).int(0xf, 4, 1).int(0x0, 4, 1);
    std::fs::write(dir.join("s7"), &w.b).unwrap();
    vec![
        "[110] cpu 0 a:one: { x = 9 }".into(),
        "[120] cpu 1 b:only: { lo = 3, hi = 10 }".into(),
        "[125] cpu 1 b:only: { lo = 15, hi = 0 }".into(),
        "[130] cpu 0 a:two: { msg = \"héllo\" }".into(),
    ]
}
