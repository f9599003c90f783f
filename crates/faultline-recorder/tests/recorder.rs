//! The recorder end to end: tracepoint → probe → ring buffer → consumer, for each copy
//! strategy, with bad pointers and with page faults held by userfaultfd.
//!
//! Each test uses its own tracepoints (the registry is process-wide and tests run in
//! parallel), its own channel and its own recorder.

mod common;

use common::{channel, recorder};
use faultline_recorder::{attach, Policy, Recorder, RecorderConfig, Strategy};
use faultline_ringbuf::{records, Channel, Consumer};
use faultline_schema::{decode, Value};
use faultline_tracepoints::__private::{FieldType, FieldValue, Writer};
use faultline_tracepoints::{
    __nest, enable, trace, tracepoint, unregister, CStrPtr, Payload, Probe, ProbeKind, RawBuf,
    Tracepoint, WriteOutcome,
};
use faultline_uffd::{pattern, HeldFaults, PAGE};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

tracepoint!(BASIC_RCC, "rectest", "basic_rcc", { seq: u64, name: &str, body: &[u8], raw: RawBuf });
tracepoint!(BASIC_BOUNCE, "rectest", "basic_bounce", { seq: u64, name: &str, body: &[u8], raw: RawBuf });
tracepoint!(BASIC_PR, "rectest", "basic_pr", { seq: u64, name: &str, body: &[u8], raw: RawBuf });
tracepoint!(BAD_RCC, "rectest", "bad_rcc", { seq: u64, s: CStrPtr, raw: RawBuf });
tracepoint!(BAD_BOUNCE, "rectest", "bad_bounce", { seq: u64, s: CStrPtr, raw: RawBuf });
tracepoint!(BAD_PR, "rectest", "bad_pr", { seq: u64, s: CStrPtr, raw: RawBuf });
tracepoint!(HELD_RCC, "rectest", "held_rcc", { who: u32, seq: u64, raw: RawBuf });
tracepoint!(HELD_BOUNCE, "rectest", "held_bounce", { who: u32, seq: u64, raw: RawBuf });
tracepoint!(HELD_PR, "rectest", "held_pr", { who: u32, seq: u64, raw: RawBuf });
tracepoint!(MIG_RCC, "rectest", "mig_rcc", { raw: RawBuf });
tracepoint!(MIG_BOUNCE, "rectest", "mig_bounce", { raw: RawBuf });
tracepoint!(MIG_PR, "rectest", "mig_pr", { raw: RawBuf });
tracepoint!(RESTART, "rectest", "restart", { x: u64 });
tracepoint!(AUTO_PLAIN, "rectest", "auto_plain", { x: u64 });
tracepoint!(AUTO_RAW, "rectest", "auto_raw", { raw: RawBuf });
tracepoint!(UNREG, "rectest", "unreg", { x: u64 });
tracepoint!(FAST_INT, "rectest_fast", "int", { x: u64 });
tracepoint!(FAST_MIX, "rectest_fast", "mix", { a: u8, b: i32, s: &str, body: &[u8], f: f64, ok: bool });
tracepoint!(FAST_RAW, "rectest_fast", "raw", { x: u64, s: CStrPtr });
tracepoint!(FAST_TAIL, "rectest_fast", "tail", { x: u64, s: &str });
tracepoint!(FAST_LOSS, "rectest_fastloss", "int", { x: u64 });
tracepoint!(FAST_HELD, "rectest_fastheld", "held", { x: u64, body: &[u8] });
tracepoint!(FAST_SIG, "rectest_fastsig", "nested", { x: u64, s: &str });
tracepoint!(TYPED_RCC, "rectest_typed", "rcc", { seq: u64, s: CStrPtr, raw: RawBuf, end: u64 });
tracepoint!(TYPED_BOUNCE, "rectest_typed", "bounce", { seq: u64, s: CStrPtr, raw: RawBuf, end: u64 });
tracepoint!(TYPED_PR, "rectest_typed", "pr", { seq: u64, s: CStrPtr, raw: RawBuf, end: u64 });
tracepoint!(FAST_ANY_INT, "rectest_fastany", "int", { x: u64 });
tracepoint!(FAST_ANY_STR, "rectest_fastany", "string", { x: u64, s: &str });

/// One decoded record: (cpu of the packet, event id, fields).
struct Got {
    cpu: u32,
    id: u32,
    /// The record's timestamp, clock ticks.
    ts: u64,
    fields: Vec<Value>,
}

/// Flush and take every packet; decode every record of `tp`'s id.
fn drain(ch: &Channel, tps: &[&'static Tracepoint]) -> Vec<Got> {
    let errs = ch.flush_all(false);
    assert!(errs.is_empty(), "{errs:?}");
    let c = Consumer::new(ch);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for cpu in c.active_cpus() {
        while let Some(p) = c.next_packet(cpu, &mut buf).unwrap() {
            for r in records(&buf, p.content_len) {
                let r = r.unwrap();
                let tp = tps
                    .iter()
                    .find(|t| t.id() == r.id)
                    .unwrap_or_else(|| panic!("unexpected id {}", r.id));
                let fields = decode(tp.desc().fields, r.payload).unwrap();
                out.push(Got {
                    cpu,
                    id: r.id,
                    ts: r.timestamp,
                    fields,
                });
            }
        }
    }
    out
}

fn u(v: &Value) -> u64 {
    match v {
        Value::U(x) => *x,
        other => panic!("not an unsigned integer: {other:?}"),
    }
}

fn bytes(v: &Value) -> &[u8] {
    match v {
        Value::Bytes(b) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

fn string(v: &Value) -> &[u8] {
    match v {
        Value::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn pin(cpu: u32) {
    faultline_rseq::pin_to_cpu(cpu).unwrap();
}

fn cpus() -> Vec<u32> {
    faultline_rseq::allowed_cpus()
}

#[test]
fn every_strategy_records_byte_exact_payloads() {
    for (s, tp) in [
        (Strategy::ReserveCopyCommit, &BASIC_RCC),
        (Strategy::Bounce, &BASIC_BOUNCE),
        (Strategy::PrefaultRestart, &BASIC_PR),
    ] {
        let ch = channel(4096, 64);
        let rec = recorder(&ch, s);
        let h = attach(&rec, &tp.full_name()).unwrap();
        enable(&tp.full_name());
        let n = 300u64;
        let raw_src: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
        for i in 0..n {
            let name = format!("event-{i}");
            let body = vec![i as u8; (i % 50) as usize];
            let raw = RawBuf(raw_src.as_ptr(), (i % 200) as usize);
            match s {
                Strategy::ReserveCopyCommit => trace!(BASIC_RCC, i, &name, &body, raw),
                Strategy::Bounce => trace!(BASIC_BOUNCE, i, &name, &body, raw),
                Strategy::PrefaultRestart => trace!(BASIC_PR, i, &name, &body, raw),
            }
        }
        unregister(h);
        let got = drain(&ch, &[tp]);
        assert_eq!(got.len() as u64, n, "{s}");
        let mut seqs: Vec<u64> = got.iter().map(|g| u(&g.fields[0])).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "{s}");
        for g in &got {
            let i = u(&g.fields[0]);
            assert_eq!(string(&g.fields[1]), format!("event-{i}").as_bytes());
            assert_eq!(bytes(&g.fields[2]), &vec![i as u8; (i % 50) as usize][..]);
            assert_eq!(u(&g.fields[3]), 0, "raw_faulted");
            assert_eq!(u(&g.fields[4]), 0, "raw_truncated");
            assert_eq!(bytes(&g.fields[5]), &raw_src[..(i % 200) as usize]);
        }
        let st = rec.stats();
        assert_eq!(st.recorded, n, "{s}");
        assert_eq!(st.strategy(s).events, n, "{s}");
        assert_eq!(st.faulted, 0);
        assert_eq!(st.lost_total(), 0);
    }
}

/// A `u64` field whose value is set when its event is encoded (by the `stamp` callback of
/// `Recorder::record_fields_stamped`).
struct Late(Cell<u64>);

impl FieldValue for Late {
    const TYPE: FieldType = <u64 as FieldValue>::TYPE;
    const RAW: bool = false;
    const MIN_SIZE: usize = 8;
    fn size(&self) -> usize {
        self.0.get().size()
    }
    fn wanted(&self) -> usize {
        self.0.get().wanted()
    }
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        self.0.get().encode(w, budget)
    }
}

#[test]
fn typed_fields_record_like_trace_and_stamps_end_at_the_event() {
    faultline_tracepoints::install_fault_handler().unwrap();
    for (s, tp) in [
        (Strategy::ReserveCopyCommit, &TYPED_RCC),
        (Strategy::Bounce, &TYPED_BOUNCE),
        (Strategy::PrefaultRestart, &TYPED_PR),
    ] {
        let ch = channel(16384, 8);
        let rec = recorder(&ch, s);
        let name = c"typed-path";
        let data: Vec<u8> = (0..40u8).collect();
        let n = 200u64;
        let mut stamps = std::collections::HashMap::new();
        for i in 0..n {
            // Every tenth string pointer is bad.
            let sp = CStrPtr(if i % 10 == 9 {
                std::ptr::null()
            } else {
                name.as_ptr()
            });
            let raw = RawBuf(data.as_ptr(), (i % 41) as usize);
            if i % 2 == 0 {
                rec.record_fields(tp, __nest!(&i, &sp, &raw, &i)).unwrap();
            } else {
                let end = Late(Cell::new(0));
                let mut seen = 0;
                rec.record_fields_stamped(tp, __nest!(&i, &sp, &raw, &end), |t| {
                    seen = t;
                    end.0.set(t);
                })
                .unwrap();
                assert_ne!(seen, 0, "{s}: stamp called");
                stamps.insert(i, seen);
            }
        }
        let got = drain(&ch, &[tp]);
        assert_eq!(got.len() as u64, n, "{s}");
        for g in &got {
            // fields: seq, s_faulted, s, raw_faulted, raw_truncated, raw, end
            let i = u(&g.fields[0]);
            if i % 10 == 9 {
                assert_eq!(u(&g.fields[1]), 1, "{s}: bad string faulted");
                assert_eq!(string(&g.fields[2]), b"", "{s}");
            } else {
                assert_eq!(u(&g.fields[1]), 0, "{s}");
                assert_eq!(string(&g.fields[2]), b"typed-path", "{s}");
            }
            assert_eq!(u(&g.fields[3]), 0, "{s}");
            assert_eq!(u(&g.fields[4]), 0, "{s}");
            assert_eq!(bytes(&g.fields[5]), &data[..(i % 41) as usize], "{s}");
            let end = u(&g.fields[6]);
            match stamps.get(&i) {
                None => assert_eq!(end, i, "{s}: plain field"),
                // Reserve-copy-commit stamps with the record's own timestamp; the others
                // read the clock before encoding, so before reserving.
                Some(&t) if s == Strategy::ReserveCopyCommit => {
                    assert_eq!((end, end), (t, g.ts), "{s}: stamp is the timestamp")
                }
                Some(&t) => {
                    assert_eq!(end, t, "{s}");
                    assert!(end <= g.ts, "{s}: stamp {end} after the record's {}", g.ts);
                }
            }
        }
        let st = rec.stats();
        assert_eq!(st.recorded, n, "{s}");
        assert_eq!(st.strategy(s).events, n, "{s}");
        assert_eq!(st.faulted, n / 10, "{s}");
        assert_eq!(st.faulted_bytes, n / 10, "{s}: one byte per faulted string");
    }
}

/// A page that is mapped `PROT_NONE`, and an address that can never be mapped (below
/// `vm.mmap_min_addr`): a dangling pointer that no parallel test can make valid by mapping
/// something there (a freshly unmapped page could be reused by another test's mmap).
struct BadPages {
    none: *mut u8,
    dangling: *mut u8,
}

fn bad_pages() -> BadPages {
    // SAFETY: a fresh anonymous mapping, checked.
    let none = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(none, libc::MAP_FAILED);
    BadPages {
        none: none as *mut u8,
        dangling: 0x1000 as *mut u8,
    }
}

#[test]
fn bad_pointers_are_recorded_as_faulted() {
    faultline_tracepoints::install_fault_handler().unwrap();
    for (s, tp) in [
        (Strategy::ReserveCopyCommit, &BAD_RCC),
        (Strategy::Bounce, &BAD_BOUNCE),
        (Strategy::PrefaultRestart, &BAD_PR),
    ] {
        let ch = channel(16384, 8);
        let rec = recorder(&ch, s);
        let h = attach(&rec, &tp.full_name()).unwrap();
        enable(&tp.full_name());
        // Made after everything else is mapped, so nothing reuses the dangling address.
        let bad = bad_pages();
        // (string pointer, raw pointer, raw len): all bad.
        let cases: [(*const u8, *const u8, usize); 3] = [
            (std::ptr::null(), std::ptr::null(), 64),
            (bad.none, bad.none, 100),
            (bad.dangling, bad.dangling, 3000),
        ];
        for (i, &(sp, rp, rl)) in cases.iter().enumerate() {
            let sp = CStrPtr(sp as *const libc::c_char);
            let raw = RawBuf(rp, rl);
            match s {
                Strategy::ReserveCopyCommit => trace!(BAD_RCC, i as u64, sp, raw),
                Strategy::Bounce => trace!(BAD_BOUNCE, i as u64, sp, raw),
                Strategy::PrefaultRestart => trace!(BAD_PR, i as u64, sp, raw),
            }
        }
        unregister(h);
        let got = drain(&ch, &[tp]);
        assert_eq!(got.len(), 3, "{s}");
        for g in &got {
            let i = u(&g.fields[0]) as usize;
            // fields: seq, s_faulted, s, raw_faulted, raw_truncated, raw
            assert_eq!(u(&g.fields[1]), 1, "{s}: string faulted flag");
            assert_eq!(string(&g.fields[2]), b"", "{s}");
            let rl = cases[i].2;
            assert_eq!(u(&g.fields[3]), rl as u64, "{s}: raw bytes faulted");
            assert_eq!(u(&g.fields[4]), 0, "{s}: recorded whole");
            assert_eq!(bytes(&g.fields[5]), &vec![0u8; rl][..], "{s}: zero-filled");
        }
        let st = rec.stats();
        assert_eq!(st.recorded, 3);
        assert_eq!(st.faulted, 3, "{s}");
        // Raw bytes plus one per faulted string.
        assert_eq!(st.faulted_bytes, (64 + 100 + 3000 + 3) as u64, "{s}");
        // SAFETY: unmapping the PROT_NONE page created above.
        unsafe { libc::munmap(bad.none as *mut libc::c_void, PAGE) };
    }
}

fn fire_held(s: Strategy, who: u32, seq: u64, raw: RawBuf) {
    match s {
        Strategy::ReserveCopyCommit => trace!(HELD_RCC, who, seq, raw),
        Strategy::Bounce => trace!(HELD_BOUNCE, who, seq, raw),
        Strategy::PrefaultRestart => trace!(HELD_PR, who, seq, raw),
    }
}

/// A writer blocked in a held fault: other threads on the same CPU keep tracing; every byte
/// recorded is what the page held; losses explain every missing event.
#[test]
fn held_fault_does_not_stop_other_writers_on_the_cpu() {
    let region = match HeldFaults::new(4, Duration::from_millis(300)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("SKIPPED: userfaultfd unavailable: {e}");
            return;
        }
    };
    let cpu = cpus()[0];
    for (s, tp) in [
        (Strategy::ReserveCopyCommit, &HELD_RCC),
        (Strategy::Bounce, &HELD_BOUNCE),
        (Strategy::PrefaultRestart, &HELD_PR),
    ] {
        region.rearm().unwrap();
        // Reserve-copy-commit holds its reservation during the stall: a small buffer makes the
        // other writer wrap onto the held sub-buffer and lose events as "stalled". The other
        // strategies reserve after the stall: a buffer the other writer cannot fill keeps the
        // blocked event (which would otherwise be lost as "full", correctly but uselessly).
        let ch = if s == Strategy::ReserveCopyCommit {
            channel(16384, 4)
        } else {
            channel(16384, 16)
        };
        let rec = recorder(&ch, s);
        let h = attach(&rec, &tp.full_name()).unwrap();
        enable(&tp.full_name());
        let blocked = {
            let region = region.clone();
            std::thread::spawn(move || {
                pin(cpu);
                let raw = RawBuf(region.as_ptr(), 2 * PAGE);
                let t = Instant::now();
                fire_held(s, 0, 0, raw);
                t.elapsed()
            })
        };
        let t0 = Instant::now();
        while region.holding() == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{s}: fault never taken"
            );
            std::thread::yield_now();
        }
        let other_n = 2000u64;
        let other = std::thread::spawn(move || {
            pin(cpu);
            let data = [7u8; 24];
            let t = Instant::now();
            for i in 0..other_n {
                fire_held(s, 1, i, RawBuf(data.as_ptr(), data.len()));
            }
            t.elapsed()
        });
        let other_took = other.join().unwrap();
        let still_holding = region.holding();
        let blocked_took = blocked.join().unwrap();
        assert!(
            still_holding > 0 || other_took < blocked_took,
            "{s}: the other writer waited for the blocked one"
        );
        assert!(
            blocked_took >= Duration::from_millis(250),
            "{s}: {blocked_took:?}"
        );
        unregister(h);
        let got = drain(&ch, &[tp]);
        let st = rec.stats();
        // The blocked event: exact bytes (two pages, the second faulted in too).
        let mine: Vec<&Got> = got.iter().filter(|g| u(&g.fields[0]) == 0).collect();
        let other_got = got.len() - mine.len();
        assert_eq!(mine.len(), 1, "{s}: the blocked writer's event");
        let raw = bytes(&mine[0].fields[4]);
        assert_eq!(u(&mine[0].fields[2]), 0, "{s}: not faulted");
        assert_eq!(raw.len(), 2 * PAGE);
        assert!(
            raw.iter().enumerate().all(|(i, &b)| b == pattern(i)),
            "{s}: bytes"
        );
        // The other writer: delivered + lost == emitted, exactly.
        assert_eq!(
            other_got as u64 + st.lost_total(),
            other_n,
            "{s}: delivered {other_got} lost {} ({st:?})",
            st.lost_total()
        );
        assert_eq!(st.recorded, 1 + other_got as u64, "{s}");
        eprintln!(
            "{s}: other writer took {other_took:?} while blocked {blocked_took:?}; \
             delivered {other_got}, lost full {} stalled {}",
            st.lost_full, st.lost_stalled
        );
        if s == Strategy::ReserveCopyCommit {
            // The reservation was held for the whole stall: the other writer wrapped onto it.
            assert!(st.lost_stalled + st.lost_full > 0, "{s}: {st:?}");
        }
    }
}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn set_affinity(tid: libc::pid_t, cpu: u32) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// A writer migrated while blocked in a fault commits REMOTE into the buffer it reserved in
/// (reserve-copy-commit); bounce and prefault-restart block before reserving, so they
/// reserve and commit LOCAL on the new CPU.
#[test]
fn writer_migrated_while_blocked() {
    let cs = cpus();
    if cs.len() < 2 || !faultline_rseq::available() {
        eprintln!("SKIPPED: needs 2 CPUs and rseq");
        return;
    }
    let region = match HeldFaults::new(1, Duration::from_millis(200)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("SKIPPED: userfaultfd unavailable: {e}");
            return;
        }
    };
    for (s, tp) in [
        (Strategy::ReserveCopyCommit, &MIG_RCC),
        (Strategy::Bounce, &MIG_BOUNCE),
        (Strategy::PrefaultRestart, &MIG_PR),
    ] {
        region.rearm().unwrap();
        let ch = channel(4096, 8);
        let rec = recorder(&ch, s);
        let h = attach(&rec, &tp.full_name()).unwrap();
        enable(&tp.full_name());
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let region = region.clone();
            let (a, _b) = (cs[0], cs[1]);
            std::thread::spawn(move || {
                pin(a);
                tx.send(gettid()).unwrap();
                let raw = RawBuf(region.as_ptr(), 100);
                match s {
                    Strategy::ReserveCopyCommit => trace!(MIG_RCC, raw),
                    Strategy::Bounce => trace!(MIG_BOUNCE, raw),
                    Strategy::PrefaultRestart => trace!(MIG_PR, raw),
                }
            })
        };
        let tid = rx.recv().unwrap();
        let t0 = Instant::now();
        while region.holding() == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "fault never taken");
            std::thread::yield_now();
        }
        set_affinity(tid, cs[1]);
        writer.join().unwrap();
        unregister(h);
        let got = drain(&ch, &[tp]);
        assert_eq!(got.len(), 1, "{s}");
        assert_eq!(u(&got[0].fields[0]), 0);
        let raw = bytes(&got[0].fields[2]);
        assert!(raw.iter().enumerate().all(|(i, &b)| b == pattern(i)), "{s}");
        let st = rec.stats();
        match s {
            Strategy::ReserveCopyCommit => {
                assert_eq!(got[0].cpu, cs[0], "{s}: in the buffer it reserved in");
                assert_eq!(st.remote_commits, 1, "{s}");
            }
            _ => {
                assert_eq!(got[0].cpu, cs[1], "{s}: reserved after the fault");
                assert_eq!(st.remote_commits, 0, "{s}");
            }
        }
    }
}

/// A payload whose encoding touches memory the prefault step does not (so the fault happens
/// while the reservation is held), optionally raising a signal at every write.
struct SneakyPayload {
    src: *const u8,
    signal_every_write: bool,
    writes: AtomicU64,
}

impl Payload for SneakyPayload {
    fn size(&self) -> usize {
        8
    }
    fn prefault(&self) -> usize {
        8 // does not touch
    }
    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 8];
        let left = faultline_tracepoints::copy_from_user(&mut b, self.src);
        if self.signal_every_write {
            // SAFETY: raise has no preconditions; SIGURG is ignored by default.
            unsafe { libc::raise(libc::SIGURG) };
        }
        dst[..8].copy_from_slice(&b);
        WriteOutcome {
            written: 8,
            faulted: left,
            truncated: false,
        }
    }
}

#[test]
fn prefault_restart_restarts_then_falls_back() {
    if !faultline_rseq::available() {
        eprintln!("SKIPPED: rseq not available (no interruption windows)");
        return;
    }
    let region = match HeldFaults::new(1, Duration::from_millis(50)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SKIPPED: userfaultfd unavailable: {e}");
            return;
        }
    };
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a handler that does nothing (async-signal-safe); SIGURG is otherwise ignored,
    // and an ignored signal is not delivered (so it would not interrupt anything).
    unsafe { libc::signal(libc::SIGURG, nothing as extern "C" fn(libc::c_int) as usize) };
    let ch = channel(4096, 8);
    let id = RESTART.id();
    // A fault held while the reservation is held: one restart, then success.
    let rec = recorder(&ch, Strategy::PrefaultRestart);
    let p = SneakyPayload {
        src: region.as_ptr(),
        signal_every_write: false,
        writes: AtomicU64::new(0),
    };
    assert!(rec.record(id, Strategy::PrefaultRestart, &p).is_ok());
    let st = rec.stats();
    let pr = st.strategy(Strategy::PrefaultRestart);
    // The second attempt normally runs uninterrupted; a stray preemption may add restarts.
    assert!(pr.restarts >= 1, "{st:?}");
    assert_eq!(pr.events, 1);
    assert_eq!(p.writes.load(Ordering::Relaxed), pr.restarts + 1);
    // Interrupted every time: bounded restarts, then the fallback keeps the last attempt.
    let rec2 = Recorder::new(
        ch.clone(),
        RecorderConfig {
            policy: Policy::Fixed(Strategy::PrefaultRestart),
            max_restarts: 3,
        },
    );
    let p2 = SneakyPayload {
        src: region.as_ptr(),
        signal_every_write: true,
        writes: AtomicU64::new(0),
    };
    assert!(rec2.record(id, Strategy::PrefaultRestart, &p2).is_ok());
    let pr2 = *rec2.stats().strategy(Strategy::PrefaultRestart);
    assert_eq!(pr2.restarts, 3);
    assert_eq!(pr2.fallbacks, 1);
    assert_eq!(pr2.events, 1);
    assert_eq!(p2.writes.load(Ordering::Relaxed), 4);
    // Readers see exactly the two events; abandoned attempts are skipped.
    let got = drain(&ch, &[&RESTART]);
    assert_eq!(got.len(), 2);
    let expect: Vec<u8> = (0..8).map(pattern).collect();
    for g in &got {
        assert_eq!(g.id, id);
        assert_eq!(
            u(&g.fields[0]),
            u64::from_le_bytes(expect[..].try_into().unwrap())
        );
    }
}

#[test]
fn auto_policy_bounces_raw_events_only() {
    let ch = channel(4096, 8);
    let rec = Recorder::new(ch, RecorderConfig::default());
    assert_eq!(rec.strategy_for(&AUTO_PLAIN), Strategy::ReserveCopyCommit);
    assert_eq!(rec.strategy_for(&AUTO_RAW), Strategy::Bounce);
    assert_eq!(
        rec.set_strategy("rectest:auto_*", Some(Strategy::PrefaultRestart)),
        2
    );
    assert_eq!(rec.strategy_for(&AUTO_PLAIN), Strategy::PrefaultRestart);
    assert_eq!(rec.set_strategy("rectest:auto_raw", None), 1);
    assert_eq!(rec.strategy_for(&AUTO_RAW), Strategy::Bounce);
    assert_eq!("bounce".parse::<Strategy>().unwrap(), Strategy::Bounce);
    assert!("fast".parse::<Strategy>().is_err());
    assert_eq!("auto".parse::<Policy>().unwrap(), Policy::Auto);
}

/// A faultable probe blocked in a held fault: `unregister` returns only after the probe has
/// finished, and the probe is freed only after that.
struct BlockingProbe {
    src: *const u8,
    state: Arc<ProbeState>,
}

// SAFETY: src points into a HeldFaults region that outlives the probe; it is only read through
// copy_from_user.
unsafe impl Send for BlockingProbe {}
// SAFETY: as above.
unsafe impl Sync for BlockingProbe {}

#[derive(Default)]
struct ProbeState {
    entered: AtomicBool,
    finished: AtomicBool,
    dropped: AtomicBool,
    dropped_before_finish: AtomicBool,
    log: Mutex<Vec<&'static str>>,
}

impl Probe for BlockingProbe {
    fn call(&self, _tp: &'static Tracepoint, _payload: &dyn Payload) {
        self.state.entered.store(true, Ordering::SeqCst);
        let mut b = [0u8; 16];
        faultline_tracepoints::copy_from_user(&mut b, self.src);
        assert!(
            !self.state.dropped.load(Ordering::SeqCst),
            "probe ran on freed memory"
        );
        self.state.log.lock().unwrap().push("probe finished");
        self.state.finished.store(true, Ordering::SeqCst);
    }
}

impl Drop for BlockingProbe {
    fn drop(&mut self) {
        if !self.state.finished.load(Ordering::SeqCst) {
            self.state
                .dropped_before_finish
                .store(true, Ordering::SeqCst);
        }
        self.state.dropped.store(true, Ordering::SeqCst);
        self.state.log.lock().unwrap().push("probe dropped");
    }
}

#[test]
fn unregister_waits_for_a_probe_blocked_in_a_fault() {
    let region = match HeldFaults::new(1, Duration::from_millis(300)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("SKIPPED: userfaultfd unavailable: {e}");
            return;
        }
    };
    let state = Arc::new(ProbeState::default());
    let probe = Arc::new(BlockingProbe {
        src: region.as_ptr(),
        state: state.clone(),
    });
    let h = faultline_tracepoints::register_probe("rectest:unreg", probe, ProbeKind::Faultable)
        .unwrap();
    drop(std::mem::take(&mut *state.log.lock().unwrap()));
    enable("rectest:unreg");
    let t = std::thread::spawn(|| trace!(UNREG, 1u64));
    let t0 = Instant::now();
    while region.holding() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "fault never taken");
        std::thread::yield_now();
    }
    assert!(state.entered.load(Ordering::SeqCst));
    let u0 = Instant::now();
    unregister(h);
    let waited = u0.elapsed();
    state.log.lock().unwrap().push("unregister returned");
    t.join().unwrap();
    assert!(
        state.finished.load(Ordering::SeqCst),
        "unregister returned before the probe finished"
    );
    assert!(
        state.dropped.load(Ordering::SeqCst),
        "old probe not freed by unregister"
    );
    assert!(!state.dropped_before_finish.load(Ordering::SeqCst));
    assert_eq!(
        *state.log.lock().unwrap(),
        vec!["probe finished", "probe dropped", "unregister returned"]
    );
    assert!(
        waited >= Duration::from_millis(100),
        "unregister did not wait: {waited:?}"
    );
}

/// A probe that counts its calls (a second probe takes the tracepoint off the fast path).
struct Calls(AtomicU64);

impl Probe for Calls {
    fn call(&self, _tp: &'static Tracepoint, _payload: &dyn Payload) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn fast_path_records_exact_payloads_and_yields_to_other_probes() {
    let ch = channel(64 * 1024, 8);
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let h = attach(&rec, "rectest_fast:*").unwrap();
    enable("rectest_fast:*");
    // The recorder alone: fast path for events without raw fields (reserve-copy-commit),
    // not for the raw one (bounced by the default policy).
    assert!(FAST_INT.has_fast_path());
    assert!(FAST_MIX.has_fast_path());
    assert!(!FAST_RAW.has_fast_path());
    let cs = c"hello";
    for i in 0..100u64 {
        trace!(FAST_INT, i);
        let s = format!("s{i}\0cut");
        trace!(
            FAST_MIX,
            i as u8,
            -(i as i32),
            &s,
            &[i as u8; 3][..],
            i as f64 / 2.0,
            i.is_multiple_of(2)
        );
        trace!(FAST_RAW, i, CStrPtr(cs.as_ptr()));
        // A &str as the last field (encoded without a second scan for its NUL).
        trace!(FAST_TAIL, i, &s);
        trace!(FAST_TAIL, i + 1000, &format!("tail{i}"));
    }
    // A second probe: everyone is called through the probe arrays.
    let calls = Arc::new(Calls(AtomicU64::new(0)));
    let h2 = faultline_tracepoints::register_probe(
        "rectest_fast:int",
        calls.clone(),
        ProbeKind::NonFaultable,
    )
    .unwrap();
    assert!(!FAST_INT.has_fast_path());
    for i in 100..150u64 {
        trace!(FAST_INT, i);
    }
    assert_eq!(calls.0.load(Ordering::Relaxed), 50);
    unregister(h2);
    assert!(FAST_INT.has_fast_path());
    // A strategy forced on the event takes it off the fast path, and back.
    assert_eq!(
        rec.set_strategy("rectest_fast:int", Some(Strategy::Bounce)),
        1
    );
    assert!(!FAST_INT.has_fast_path());
    trace!(FAST_INT, 150);
    assert_eq!(rec.set_strategy("rectest_fast:int", None), 1);
    assert!(FAST_INT.has_fast_path());
    trace!(FAST_INT, 151);

    let st = rec.stats();
    assert_eq!(st.recorded, 152 + 100 + 100 + 200);
    assert_eq!(st.strategy(Strategy::Bounce).events, 100 + 1);
    assert_eq!(
        st.strategy(Strategy::ReserveCopyCommit).events,
        152 - 1 + 100 + 200
    );
    assert_eq!(st.lost_total(), 0);

    let got = drain(&ch, &[&FAST_INT, &FAST_MIX, &FAST_RAW, &FAST_TAIL]);
    let mut tails = 0;
    for g in got.iter().filter(|g| g.id == FAST_TAIL.id()) {
        let i = u(&g.fields[0]);
        let want = if i >= 1000 {
            format!("tail{}", i - 1000)
        } else {
            format!("s{i}")
        };
        assert_eq!(string(&g.fields[1]), want.as_bytes());
        tails += 1;
    }
    assert_eq!(tails, 200);
    let mut ints: Vec<u64> = got
        .iter()
        .filter(|g| g.id == FAST_INT.id())
        .map(|g| u(&g.fields[0]))
        .collect();
    ints.sort_unstable();
    assert_eq!(ints, (0..152).collect::<Vec<u64>>());
    let mut mixes = 0;
    for g in got.iter().filter(|g| g.id == FAST_MIX.id()) {
        let i = u(&g.fields[0]);
        assert_eq!(g.fields[1], Value::I(-(i as i64)));
        // The encoding stops a &str at its first NUL.
        assert_eq!(string(&g.fields[2]), format!("s{i}").as_bytes());
        assert_eq!(bytes(&g.fields[3]), &[i as u8; 3][..]);
        assert_eq!(g.fields[4], Value::F(i as f64 / 2.0));
        assert_eq!(g.fields[5], Value::Bool(i.is_multiple_of(2)));
        mixes += 1;
    }
    assert_eq!(mixes, 100);
    assert_eq!(got.iter().filter(|g| g.id == FAST_RAW.id()).count(), 100);
    unregister(h);
    assert!(!FAST_INT.has_fast_path());
}

/// A tracepoint registered at run time (as faultline-tracing does for each callsite) and hit
/// with a payload its caller encoded takes the fast path too, and records the exact bytes.
#[test]
fn run_time_tracepoint_fire_encoded_takes_the_fast_path() {
    use faultline_schema::{EventDesc, FieldDesc, FieldType};
    static FIELDS: [FieldDesc; 2] = [
        FieldDesc {
            name: "x",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "s",
            ty: FieldType::String,
        },
    ];
    static DESC: EventDesc = EventDesc {
        provider: "rectest_fastenc",
        name: "enc",
        fields: &FIELDS,
    };
    let tp = faultline_tracepoints::register(&DESC).unwrap();
    let ch = channel(64 * 1024, 8);
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let h = attach(&rec, "rectest_fastenc:*").unwrap();
    enable("rectest_fastenc:*");
    assert!(tp.has_fast_path());
    let mut buf = Vec::new();
    for i in 0..100u64 {
        buf.clear();
        buf.extend_from_slice(&i.to_le_bytes());
        buf.extend_from_slice(format!("v{i}\0").as_bytes());
        tp.fire_encoded(&buf);
    }
    let st = rec.stats();
    assert_eq!(st.strategy(Strategy::ReserveCopyCommit).events, 100);
    assert_eq!(st.lost_total(), 0);
    let got = drain(&ch, &[tp]);
    let mut seen: Vec<u64> = got
        .iter()
        .map(|g| {
            let i = u(&g.fields[0]);
            assert_eq!(string(&g.fields[1]), format!("v{i}").as_bytes());
            i
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<u64>>());
    unregister(h);
    assert!(!tp.has_fast_path());
}

/// The fast path inlines the reserve path of per-CPU rseq channels with the TSC only
/// (`Channel::cpu_rseq`); into a channel of any other configuration it goes out of line, and
/// still records exact payloads and counts every event.
#[test]
fn fast_path_into_any_channel_configuration_records_exact_payloads() {
    use faultline_ringbuf::{BufferIndex, ChannelConfig, ClockKind, Mode, SyncMode};
    let base = ChannelConfig {
        subbuf_size: 64 * 1024,
        num_subbuf: 8,
        mode: Mode::Discard,
        ..ChannelConfig::default()
    };
    let configs = [
        ("rseq, TSC, per CPU", base.clone()),
        (
            "atomic",
            ChannelConfig {
                sync: SyncMode::Atomic,
                ..base.clone()
            },
        ),
        (
            "monotonic clock",
            ChannelConfig {
                clock: ClockKind::Monotonic,
                ..base.clone()
            },
        ),
        (
            "per concurrency id",
            ChannelConfig {
                index: BufferIndex::Cid,
                ..base.clone()
            },
        ),
        (
            "abort injection",
            ChannelConfig {
                inject_spins: 1,
                ..base.clone()
            },
        ),
    ];
    let mut tried = 0;
    for (what, cfg) in configs {
        // Configurations this machine cannot create (no rseq, no mm_cid) are skipped.
        let Ok(ch) = Channel::create(&cfg) else {
            continue;
        };
        tried += 1;
        let ch = Arc::new(ch);
        assert_eq!(ch.cpu_rseq().is_some(), what == "rseq, TSC, per CPU");
        let rec = Recorder::new(ch.clone(), RecorderConfig::default());
        let h = attach(&rec, "rectest_fastany:*").unwrap();
        enable("rectest_fastany:*");
        assert!(FAST_ANY_INT.has_fast_path(), "{what}");
        assert!(FAST_ANY_STR.has_fast_path(), "{what}");
        for i in 0..200u64 {
            trace!(FAST_ANY_INT, i);
            trace!(FAST_ANY_STR, i, &format!("event {i} of {what}"));
        }
        let st = rec.stats();
        assert_eq!(st.recorded, 400, "{what}: {st:?}");
        assert_eq!(st.lost_total(), 0, "{what}: {st:?}");
        let got = drain(&ch, &[&FAST_ANY_INT, &FAST_ANY_STR]);
        let mut ints: Vec<u64> = got
            .iter()
            .filter(|g| g.id == FAST_ANY_INT.id())
            .map(|g| u(&g.fields[0]))
            .collect();
        ints.sort_unstable();
        assert_eq!(ints, (0..200).collect::<Vec<u64>>(), "{what}");
        let mut strs: Vec<(u64, Vec<u8>)> = got
            .iter()
            .filter(|g| g.id == FAST_ANY_STR.id())
            .map(|g| (u(&g.fields[0]), string(&g.fields[1]).to_vec()))
            .collect();
        strs.sort_unstable();
        let want: Vec<(u64, Vec<u8>)> = (0..200u64)
            .map(|i| (i, format!("event {i} of {what}").into_bytes()))
            .collect();
        assert_eq!(strs, want, "{what}");
        unregister(h);
    }
    assert!(tried >= 1, "the atomic channel at least");
}

#[test]
fn fast_path_counts_losses_like_the_recorder() {
    // No consumer, discard mode: the buffer fills and later events are lost.
    let ch = channel(4096, 2);
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let h = attach(&rec, "rectest_fastloss:*").unwrap();
    enable("rectest_fastloss:*");
    assert!(FAST_LOSS.has_fast_path());
    const N: u64 = 5000;
    for i in 0..N {
        trace!(FAST_LOSS, i);
    }
    let st = rec.stats();
    let chan_lost: u64 = (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .map(|s| s.lost_total())
        .sum();
    assert!(st.lost_full > 0, "{st:?}");
    assert_eq!(st.recorded + st.lost_total(), N, "{st:?}");
    assert_eq!(st.lost_total(), chan_lost);
    let got = drain(&ch, &[&FAST_LOSS]);
    assert_eq!(got.len() as u64, st.recorded);
    unregister(h);
}

#[test]
fn unregister_waits_for_a_fast_path_call_blocked_in_a_fault() {
    // A `&[u8]` argument in memory whose first touch is held by userfaultfd: the fast path
    // blocks inside its encoding, between reserve and commit, with the slot announced in its
    // hazard record.
    let region = match HeldFaults::new(1, Duration::from_millis(300)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("SKIPPED: userfaultfd unavailable: {e}");
            return;
        }
    };
    let ch = channel(64 * 1024, 4);
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let h = attach(&rec, "rectest_fastheld:*").unwrap();
    enable("rectest_fastheld:*");
    assert!(FAST_HELD.has_fast_path());
    // Free what registering retired, so that only the fast path holds the recorder.
    faultline_tracepoints::reclaim_barrier();
    let addr = region.as_ptr() as usize;
    let t = std::thread::spawn(move || {
        // SAFETY: the region is mapped for the life of the test (the Arc outlives the thread,
        // joined below); reading it blocks until userfaultfd serves the page.
        let body = unsafe { std::slice::from_raw_parts(addr as *const u8, 64) };
        trace!(FAST_HELD, 1u64, body);
    });
    let t0 = Instant::now();
    while region.holding() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "fault never taken");
        std::thread::yield_now();
    }
    let u0 = Instant::now();
    unregister(h);
    let waited = u0.elapsed();
    // The event is counted before the fast path leaves its read section.
    assert_eq!(
        rec.stats().recorded,
        1,
        "unregister returned before the fast-path call finished"
    );
    assert_eq!(
        Arc::strong_count(&rec),
        1,
        "the registry still holds the recorder"
    );
    assert!(
        waited >= Duration::from_millis(100),
        "unregister did not wait: {waited:?}"
    );
    t.join().unwrap();
    let got = drain(&ch, &[&FAST_HELD]);
    assert_eq!(got.len(), 1);
    assert_eq!(
        bytes(&got[0].fields[1]),
        &(0..64).map(pattern).collect::<Vec<u8>>()[..]
    );
}

/// Events of FAST_SIG committed or lost from the signal handler.
static SIG_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn fast_sig_handler(_sig: libc::c_int) {
    trace!(FAST_SIG, u64::MAX, "from the handler");
    // Relaxed: read after the thread is joined.
    SIG_HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn fast_path_calls_nest_in_signal_handlers() {
    // A thread records FAST_SIG on the fast path in a loop while signals interrupt it (inside
    // the hazard announcement, the reservation, the encoding, the commit) with a handler that
    // records FAST_SIG too: it announces in another word of the thread's hazard record and
    // leaves the record as it found it. Every event is committed (and decodes) or counted
    // lost, and unregister (a hazard wait on the slot) returns: a word left announced would
    // keep it waiting for ever.
    // SAFETY: installing, for SIGUSR1 (used by no other test of this binary), a handler that
    // only records on the fast path (async-signal-safe once the thread's state exists: the
    // tracer records and prepares before any signal) and bumps an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = fast_sig_handler as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let ch = channel(64 * 1024, 8);
    let rec = Recorder::new(ch.clone(), RecorderConfig::default());
    let h = attach(&rec, "rectest_fastsig:*").unwrap();
    enable("rectest_fastsig:*");
    assert!(FAST_SIG.has_fast_path());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let tracer = {
        let (stop, rec) = (stop.clone(), rec.clone());
        std::thread::spawn(move || {
            rec.prepare_thread(64);
            trace!(FAST_SIG, 0, "first");
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
            let mut n = 1u64;
            // Relaxed: only ends the loop.
            while !stop.load(Ordering::Relaxed) {
                trace!(FAST_SIG, n, "from the loop");
                n += 1;
            }
            n
        })
    };
    let tid = rx.recv().unwrap() as libc::pthread_t;
    for _ in 0..3000 {
        // SAFETY: the tracer thread is alive until we set `stop` and join it.
        assert_eq!(unsafe { libc::pthread_kill(tid, libc::SIGUSR1) }, 0);
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let n = tracer.join().unwrap();
    let handled = SIG_HANDLED.load(Ordering::Relaxed);
    assert!(handled > 0, "no signal handled");
    let st = rec.stats();
    assert_eq!(st.recorded + st.lost_total(), n + handled, "{st:?}");
    let got = drain(&ch, &[&FAST_SIG]);
    assert_eq!(got.len() as u64, st.recorded);
    for g in &got {
        let want: &[u8] = if u(&g.fields[0]) == u64::MAX {
            b"from the handler"
        } else if u(&g.fields[0]) == 0 {
            b"first"
        } else {
            b"from the loop"
        };
        assert_eq!(string(&g.fields[1]), want);
    }
    // Bounded: unregister waits for every announcement of the slot.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        unregister(h);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "unregister still waits: a hazard word stayed announced"
    );
}
