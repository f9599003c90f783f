//! Agreement with babeltrace2 (the CTF reference reader), when it is installed.
//!
//! Writes a trace with every field type on two CPUs, with losses (discarded events and a lost
//! packet), runs `babeltrace2 --clock-cycles <dir>` and checks: no warning/error lines other
//! than the discarded-events/packets notices, as many event lines as our reader yields, every
//! timestamp, CPU, name and field value equal to ours, and the discarded counts equal to our
//! stats. babeltrace2 cannot know a counter's value before a stream's first packet and reports
//! a non-zero first packet only as "may have discarded events" without a count, so the first
//! packet of each CPU here has zero losses.

mod common;

use common::*;
use faultline_ctf::{stats, Filter, Trace};
use faultline_schema::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// A value as printed by babeltrace2's pretty sink.
#[derive(Debug, Clone, PartialEq)]
enum Bt {
    Num(String),
    Str(Vec<u8>),
    Enum(String, i128),
    Arr(Vec<Bt>),
    Obj(Vec<(String, Bt)>),
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) {
        assert!(
            self.eat(t),
            "expected {t:?} at {:?}",
            String::from_utf8_lossy(&self.s[self.i..])
        );
    }
    fn word(&mut self) -> String {
        self.ws();
        let st = self.i;
        while self.i < self.s.len() && !b" ,=}])".contains(&self.s[self.i]) {
            self.i += 1;
        }
        String::from_utf8(self.s[st..self.i].to_vec()).unwrap()
    }
    fn string(&mut self) -> Vec<u8> {
        self.expect("\"");
        let mut out = Vec::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        e => e,
                    });
                }
                c => out.push(c),
            }
        }
    }
    fn value(&mut self) -> Bt {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut f = Vec::new();
                if self.eat("}") {
                    return Bt::Obj(f);
                }
                loop {
                    // A variant prints its option's value without a name.
                    self.ws();
                    let k = if self.s[self.i] == b'{' {
                        String::new()
                    } else {
                        let k = self.word();
                        self.expect("=");
                        k
                    };
                    f.push((k, self.value()));
                    if self.eat("}") {
                        return Bt::Obj(f);
                    }
                    self.expect(",");
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                if self.eat("]") {
                    return Bt::Arr(a);
                }
                loop {
                    self.expect("[");
                    let idx: usize = self.word().parse().unwrap();
                    assert_eq!(idx, a.len());
                    self.expect("]");
                    self.expect("=");
                    a.push(self.value());
                    if self.eat("]") {
                        return Bt::Arr(a);
                    }
                    self.expect(",");
                }
            }
            b'(' => {
                self.i += 1;
                let label = String::from_utf8(self.string()).unwrap();
                self.expect(":");
                self.expect("container");
                self.expect("=");
                let v = self.word().parse().unwrap();
                self.expect(")");
                Bt::Enum(label, v)
            }
            b'"' => Bt::Str(self.string()),
            _ => Bt::Num(self.word()),
        }
    }
}

/// Parse one event line: (timestamp, host, name, [packet context, event context, payload]).
fn parse_line(line: &str) -> (u64, String, Vec<Bt>) {
    let rest = line.strip_prefix('[').unwrap();
    let (ts, rest) = rest.split_once("] (").unwrap();
    let (_, rest) = rest.split_once(") ").unwrap();
    let (_host, rest) = rest.split_once(' ').unwrap();
    let (name, rest) = rest.split_once(": {").unwrap();
    let body = format!("{{{rest}");
    let mut p = P {
        s: body.as_bytes(),
        i: 0,
    };
    let mut groups = vec![p.value()];
    while p.eat(",") {
        groups.push(p.value());
    }
    p.ws();
    assert_eq!(p.i, body.len(), "trailing text in {line}");
    (ts.parse().unwrap(), name.to_string(), groups)
}

fn g6(x: f64) -> String {
    // %g prints 6 significant digits: compare in that precision.
    format!("{:.5e}", x)
}

fn same(bt: &Bt, v: &Value) -> bool {
    match (bt, v) {
        (Bt::Num(n), Value::U(x)) => n.parse::<u64>().ok() == Some(*x),
        (Bt::Num(n), Value::I(x)) => n.parse::<i64>().ok() == Some(*x),
        (Bt::Num(n), Value::F(x)) => n.parse::<f64>().map(g6).ok() == Some(g6(*x)),
        (Bt::Enum(l, c), Value::Bool(b)) => *l == b.to_string() && *c == *b as i128,
        (Bt::Str(s), Value::Str(x)) => s == x,
        (Bt::Arr(a), Value::Bytes(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(e, x)| *e == Bt::Num(x.to_string()))
        }
        _ => false,
    }
}

fn write_trace(dir: &std::path::Path) {
    // (cpu, seq, lost(full, stalled, too_big), events, base ts); first packets lose nothing.
    let plan: &[PacketPlan] = &[
        (0, 0, (0, 0, 0), 4, 1_000),
        (1, 0, (0, 0, 0), 3, 1_003),
        (0, 1, (2, 0, 1), 5, 2_000),
        (1, 1, (0, 0, 0), 0, 2_500),
        (1, 3, (1, 3, 0), 4, 3_000), // packet 2 of cpu 1 lost
        (0, 2, (4, 0, 1), 2, 4_000),
        (1, 4, (1, 3, 7), 3, 5_000),
    ];
    let shape = PlanShape {
        step: 7,
        span: 500,
        packet_size: 8192,
    };
    faultline_testkit::ctf::write_plan(dir, plan, shape, |k, id, values| {
        if id == ID_ALL {
            values[8] = Value::F(std::f32::consts::PI as f64 * k as f64);
            values[9] = Value::F(-1.0e-7 / (k as f64 + 3.0));
            values[11] = Value::Str(format!("s{k} \"quoted\" back\\slash \u{e9}").into_bytes());
        }
    })
    .unwrap();
}

#[test]
fn babeltrace2_agrees() {
    if Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: babeltrace2 not installed (run scripts/install-deps.sh)");
        return;
    }
    let dir = tmpdir("babeltrace");
    write_trace(&dir);
    let out = Command::new("babeltrace2")
        .arg("--clock-cycles")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "babeltrace2 failed:\n{stderr}");

    // stderr: only discarded notices; collect the counts per stream file.
    let mut bt_events: BTreeMap<u32, u64> = BTreeMap::new();
    let mut bt_packets: BTreeMap<u32, u64> = BTreeMap::new();
    let mut notices = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let rest = line
            .strip_prefix("WARNING: Tracer discarded ")
            .unwrap_or_else(|| panic!("unexpected babeltrace2 diagnostic: {line}"));
        let (n, rest) = rest.split_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        let cpu: u32 = rest
            .split_once("/stream_")
            .unwrap()
            .1
            .split_once('"')
            .unwrap()
            .0
            .parse()
            .unwrap();
        if rest.starts_with("event") {
            *bt_events.entry(cpu).or_default() += n;
        } else {
            assert!(rest.starts_with("packet"), "{line}");
            *bt_packets.entry(cpu).or_default() += n;
        }
        notices += 1;
    }
    assert_eq!(notices, 5, "{stderr}");

    let t = Trace::open(&dir).unwrap();
    let st = stats(&t).unwrap();
    let mine: Vec<_> = t.events(&Filter::default()).map(|e| e.unwrap()).collect();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len() as u64, st.events_total);
    assert_eq!(lines.len(), mine.len());
    assert_eq!(mine.len(), 21);

    for (cpu, cs) in &st.per_cpu {
        assert_eq!(
            bt_events.get(cpu).copied().unwrap_or(0),
            cs.lost.events_discarded
        );
        assert_eq!(bt_packets.get(cpu).copied().unwrap_or(0), cs.lost_packets);
    }
    assert_eq!(bt_events.values().sum::<u64>(), st.lost_total);
    assert_eq!(st.lost_total, 5 + 11);
    assert_eq!(bt_packets.values().sum::<u64>(), 1);

    let mut compared = 0;
    for (line, ev) in lines.iter().zip(&mine) {
        let (ts, name, groups) = parse_line(line);
        assert_eq!(ts, ev.ts, "{line}");
        assert_eq!(name, ev.name, "{line}");
        assert_eq!(groups.len(), 3, "{line}");
        let Bt::Obj(ctx) = &groups[0] else {
            panic!("{line}")
        };
        assert_eq!(
            ctx[0],
            ("cpu_id".to_string(), Bt::Num(ev.cpu.to_string())),
            "{line}"
        );
        let Bt::Obj(payload) = &groups[2] else {
            panic!("{line}")
        };
        let mut bt_fields = payload.iter();
        for (fname, v) in &ev.fields {
            if let Value::Bytes(b) = v {
                let (lname, lval) = bt_fields.next().unwrap();
                assert_eq!(*lname, format!("{fname}__len"), "{line}");
                assert_eq!(*lval, Bt::Num(b.len().to_string()), "{line}");
            }
            let (bname, bval) = bt_fields.next().unwrap();
            assert_eq!(bname, fname, "{line}");
            assert!(
                same(bval, v),
                "field {fname}: babeltrace2 {bval:?}, ours {v:?} in {line}"
            );
            compared += 1;
        }
        assert!(bt_fields.next().is_none(), "{line}");
    }
    // 7 events of myapp:all (14 fields), 7 of other:read (3 fields).
    assert_eq!(compared, 7 * 14 + 7 * 3);
}

/// Run `babeltrace2 --clock-cycles DIR`; returns (event lines, discarded events per CPU,
/// discarded packets per CPU). Panics on any diagnostic other than a discarded notice.
fn babeltrace2_counts(dir: &std::path::Path) -> (usize, BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
    let out = Command::new("babeltrace2")
        .arg("--clock-cycles")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "babeltrace2 failed:\n{stderr}");
    let (mut events, mut packets) = (BTreeMap::new(), BTreeMap::new());
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let rest = line
            .strip_prefix("WARNING: Tracer discarded ")
            .unwrap_or_else(|| panic!("unexpected babeltrace2 diagnostic: {line}"));
        let (n, rest) = rest.split_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        let cpu: u32 = rest
            .split_once("/stream_")
            .unwrap()
            .1
            .split_once('"')
            .unwrap()
            .0
            .parse()
            .unwrap();
        let m = if rest.starts_with("event") {
            &mut events
        } else {
            &mut packets
        };
        *m.entry(cpu).or_insert(0u64) += n;
    }
    (stdout.lines().count(), events, packets)
}

/// A flight-recorder stream whose first packets were overwritten before the consumer saw them
/// starts at `packet_seq_num` > 0. `lost_packets` counts only the gaps *between* packets of
/// the trace (what babeltrace2 reports as discarded packets); the packets before the first
/// one are `packets_before_first`.
#[test]
fn first_packet_seq_num_not_zero_agrees_with_babeltrace2() {
    if Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: babeltrace2 not installed (run scripts/install-deps.sh)");
        return;
    }
    let dir = tmpdir("bt-first-seq");
    let plan: &[PacketPlan] = &[
        (0, 1, (0, 0, 0), 3, 1_000), // packet 0 of cpu 0 overwritten
        (1, 0, (0, 0, 0), 2, 1_003),
        (0, 2, (0, 0, 0), 2, 2_000),
        (1, 3, (0, 0, 0), 2, 2_500), // packets 1, 2 of cpu 1 lost
        (0, 5, (0, 0, 0), 1, 3_000), // packets 3, 4 of cpu 0 lost
        (1, 4, (0, 0, 0), 1, 4_000),
    ];
    let shape = PlanShape {
        step: 7,
        span: 500,
        packet_size: 8192,
    };
    faultline_testkit::ctf::write_plan(&dir, plan, shape, |_, _, _| {}).unwrap();
    let (lines, bt_events, bt_packets) = babeltrace2_counts(&dir);
    let st = stats(&Trace::open(&dir).unwrap()).unwrap();
    assert_eq!(lines as u64, st.events_total);
    assert!(bt_events.is_empty(), "{bt_events:?}");
    assert_eq!(bt_packets, BTreeMap::from([(0, 2), (1, 2)]));
    for (cpu, cs) in &st.per_cpu {
        assert_eq!(bt_packets[cpu], cs.lost_packets, "cpu {cpu}");
    }
    assert_eq!(st.lost_packets, 4);
    assert_eq!(st.per_cpu[&0].packets_before_first, 1);
    assert_eq!(st.per_cpu[&1].packets_before_first, 0);
    assert_eq!(st.packets_before_first, 1);
}

/// Padding records (abandoned reservations, `faultline_wire::PADDING_ID`) of every size —
/// empty, shorter than any field, long — between events: the trace writer keeps them,
/// faultline's reader skips them, and babeltrace2 steps over them (the metadata's
/// `faultline:padding` class), reading every real event with its exact timestamp.
#[test]
fn padding_records_are_skipped_by_every_reader() {
    use faultline_ctf::{PacketBuilder, TraceWriter};
    use faultline_testkit::ctf::{desc, ID_EMPTY};
    let dir = tmpdir("bt-padding");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    let mut p = PacketBuilder::new(faultline_testkit::ctf::UUID, 0, 0);
    p.header.timestamp_begin = 100;
    p.header.timestamp_end = 200;
    p.record(100, ID_EMPTY, &[])
        .padding(101, 0)
        .record(102, ID_EMPTY, &[])
        .padding(103, 1)
        .padding(104, 7)
        .record(105, ID_EMPTY, &[])
        .padding(106, 300)
        .record(107, ID_EMPTY, &[]);
    let pk = p.finish(1024);
    let (_, n) = w.check_packet(0, &pk).unwrap();
    assert_eq!(n, 4, "padding is not counted as events");
    w.write_packet(0, &pk).unwrap();
    w.finish().unwrap();

    let trace = Trace::open(&dir).unwrap();
    let ours: Vec<u64> = trace
        .events(&Filter::default())
        .map(|e| e.unwrap().ts)
        .collect();
    assert_eq!(ours, vec![100, 102, 105, 107]);
    let general = faultline_ctf::general::CtfTrace::open(&dir).unwrap();
    let mut ev = general.events(&Filter::default());
    let mut theirs = Vec::new();
    while let Some(e) = ev.next_event() {
        theirs.push(e.unwrap().ts);
    }
    assert_eq!(
        theirs,
        vec![100, 102, 105, 107],
        "the general reader skips padding too"
    );

    if Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: babeltrace2 not installed (run scripts/install-deps.sh)");
        return;
    }
    let out = Command::new("babeltrace2")
        .arg("--clock-cycles")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "babeltrace2 failed:\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "babeltrace2 diagnostics:\n{stderr}"
    );
    let real: Vec<u64> = stdout
        .lines()
        .filter(|l| !l.contains("faultline:padding"))
        .map(|l| l[1..l.find(']').unwrap()].parse().unwrap())
        .collect();
    assert_eq!(real, vec![100, 102, 105, 107], "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("faultline:padding"))
            .count(),
        4,
        "{stdout}"
    );
}

/// Compact record headers (27 timestamp bits) against every reader: timestamps that cross a
/// 27-bit boundary, a gap of 2^27 ticks or more (an extended header), the largest compact
/// delta, compact padding, and a large gap across packets (the first record of a packet is
/// rebuilt from `timestamp_begin`); packed records of every size, among them a record of
/// 64 KiB or more (a long length) and padding longer than one padding record holds (a chain).
/// Our reader, the general reader and babeltrace2 must give the same exact timestamps and
/// every field.
#[test]
fn compact_headers_give_exact_timestamps_in_every_reader() {
    use faultline_ctf::{PacketBuilder, TraceWriter};
    use faultline_testkit::ctf::{all_values, desc, encode, ALL, ID_ALL, UUID};
    const W: u64 = 1 << 27;
    let dir = tmpdir("bt-compact");
    let mut w = TraceWriter::create(&dir, &desc()).unwrap();
    // Record `k`; k = 100 carries a 70 000-byte blob (a long length).
    let values = |k: u64| {
        let mut v = all_values(k);
        if k == 100 {
            v[12] = Value::Bytes((0..70_000u32).map(|i| (i % 251) as u8).collect());
        }
        v
    };
    let payload = |k: u64| encode(ALL.fields, &values(k)).unwrap();
    let b0 = 5 * W - 10;
    // (timestamp, padding?) per packet.
    let plan: [(u64, Vec<(u64, bool)>); 3] = [
        (
            b0,
            vec![
                (b0, false),
                (b0 + 5, false),
                (b0 + 20, false),         // low 27 bits wrap
                (b0 + 20 + W + 3, false), // gap > 2^27: extended
                (b0 + 21 + W + 3, true),  // compact padding
                (b0 + 22 + W + 3, false),
                (b0 + 22 + W + 3 + (W - 1), false), // largest compact delta
                (b0 + 22 + W + 3 + (W - 1) + W, false), // exactly 2^27: extended
            ],
        ),
        (1 << 40, vec![(1 << 40, false), ((1 << 40) + 7, false)]),
        // Record 100 (long length) after a compact one, long padding, a compact record.
        (
            1 << 41,
            vec![
                (1 << 41, false),
                ((1 << 41) + 3, false),
                ((1 << 41) + 4, true),
                ((1 << 41) + 5, false),
            ],
        ),
    ];
    let mut want = Vec::new();
    let mut compact = 0;
    for (seq, (begin, recs)) in plan.iter().enumerate() {
        let mut pb = PacketBuilder::new(UUID, 0, seq as u64);
        pb.header.timestamp_begin = *begin;
        pb.header.timestamp_end = recs.last().unwrap().0;
        for (k, &(ts, pad)) in recs.iter().enumerate() {
            // The third packet's second record is record 100.
            let k = if seq == 2 && k == 1 { 100 } else { k as u64 };
            if pad {
                pb.padding(ts, if seq == 2 { 100_000 } else { 9 });
            } else {
                pb.record(ts, ID_ALL, &payload(k));
                want.push((ts, values(k)));
            }
        }
        let pk = pb.finish(4096);
        let h = faultline_ctf::layout::PacketHeader::parse_slice(&pk).unwrap();
        let mut sizes = Vec::new();
        for r in faultline_ctf::layout::Records::new(&pk[..h.content_bytes() as usize]) {
            let r = r.unwrap();
            compact += (r.header_len < 15) as u32;
            sizes.push((r.header_len, r.is_padding()));
        }
        if seq == 2 {
            // Extended first record; the long-length one (19-byte header); the padding as a
            // chain of two compact padding records; a compact record.
            assert_eq!(
                sizes,
                vec![(15, false), (19, false), (10, true), (10, true), (6, false)]
            );
        }
        w.write_packet(0, &pk).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(
        compact, 9,
        "compact headers where the delta allows (padding included)"
    );

    let trace = Trace::open(&dir).unwrap();
    let ours: Vec<_> = trace
        .events(&Filter::default())
        .map(|e| e.unwrap())
        .collect();
    let ts: Vec<u64> = ours.iter().map(|e| e.ts).collect();
    assert_eq!(ts, want.iter().map(|w| w.0).collect::<Vec<_>>());
    for (e, (_, v)) in ours.iter().zip(&want) {
        let got: Vec<&Value> = e.fields.iter().map(|f| &f.1).collect();
        assert_eq!(got, v.iter().collect::<Vec<_>>());
    }
    let general = faultline_ctf::general::CtfTrace::open(&dir).unwrap();
    let mut ev = general.events(&Filter::default());
    let mut theirs = Vec::new();
    while let Some(e) = ev.next_event() {
        theirs.push(e.unwrap().ts);
    }
    assert_eq!(theirs, ts, "general reader");

    if Command::new("babeltrace2")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: babeltrace2 not installed (run scripts/install-deps.sh)");
        return;
    }
    let out = Command::new("babeltrace2")
        .arg("--clock-cycles")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "babeltrace2 failed:\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "babeltrace2 diagnostics:\n{stderr}"
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.contains("faultline:padding"))
        .collect();
    assert_eq!(lines.len(), ours.len(), "{stdout}");
    for (line, ev) in lines.iter().zip(&ours) {
        let (bt_ts, name, groups) = parse_line(line);
        assert_eq!(bt_ts, ev.ts, "{line}");
        assert_eq!(name, ev.name, "{line}");
        let Bt::Obj(payload) = &groups[2] else {
            panic!("{line}")
        };
        let mut bt_fields = payload.iter();
        for (fname, v) in &ev.fields {
            if let Value::Bytes(b) = v {
                let (_, lval) = bt_fields.next().unwrap();
                assert_eq!(*lval, Bt::Num(b.len().to_string()), "{line}");
            }
            let (bname, bval) = bt_fields.next().unwrap();
            assert_eq!(bname, fname, "{line}");
            assert!(same(bval, v), "field {fname}: {bval:?} vs {v:?} in {line}");
        }
    }
}
