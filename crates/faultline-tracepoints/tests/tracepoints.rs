//! Tracepoint macros, registry, enabling, payload encoding and probe (un)registration.
//! Tests share the process-wide registry, so each uses its own provider name.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use faultline_schema::{decode, FieldDesc, FieldType, Value};
use faultline_tracepoints::{
    disable, enable, find, grace_period_busy_polls, matching, reclaim_barrier, register_probe,
    set_events, set_srcu_flavour, srcu_flavour, trace, tracepoint, tracepoints, unregister,
    unregister_deferred, CStrPtr, CounterProbe, Flavour, Payload, Probe, ProbeKind, RawBuf,
    RegisterError, Tracepoint, WriteOutcome, MAX_CSTR_LEN,
};

tracepoint!(ALL_TYPES, "tp_all", "types", {
    a: u8, b: u16, c: u32, d: u64, e: i8, f: i16, g: i32, h: i64, x: f32, y: f64, t: bool,
    s: &str, bs: &[u8], cs: CStrPtr, rb: RawBuf,
});
tracepoint!(NEVER_HIT, "tp_list", "never", { v: u32 });
tracepoint!(NO_FIELDS, "tp_list", "empty", {});
tracepoint!(SIDE, "tp_side", "effect", { v: u64 });
tracepoint!(COUNTED_A, "tp_count", "a", { v: u64 });
tracepoint!(COUNTED_B, "tp_count", "b", { s: &str });
tracepoint!(RAW, "tp_raw", "raw", { cs: CStrPtr, rb: RawBuf, tail: u32 });
tracepoint!(GLOB_REQ, "tp_glob", "request", {});
tracepoint!(GLOB_RSP, "tp_glob", "response", {});
tracepoint!(GLOB_RQ, "tp_glob2", "request", {});
tracepoint!(BLOCK, "tp_block", "blocking", { v: u64 });
tracepoint!(DEFER, "tp_defer", "deferred", {});
tracepoint!(SWITCH, "tp_switch", "flavour", { v: u64 });
tracepoint!(SIGNAL, "tp_signal", "nested", { v: u64 });
tracepoint!(ENV_A, "tp_env", "a", {});
tracepoint!(ENV_B, "tp_env", "b", {});
tracepoint!(ENV_SECRET, "tp_env", "secret", {});

/// One captured event: id, size(), encoded bytes, outcome.
type Event = (u32, usize, Vec<u8>, WriteOutcome);
type DstLen = Box<dyn Fn(usize) -> usize + Send>;

/// Records every event.
#[derive(Default)]
struct Capture {
    events: Mutex<Vec<Event>>,
}

impl Probe for Capture {
    fn call(&self, tp: &'static Tracepoint, payload: &dyn Payload) {
        let n = payload.size();
        let mut buf = vec![0xEEu8; n];
        let out = payload.write(&mut buf);
        self.events.lock().unwrap().push((tp.id(), n, buf, out));
    }
}

impl Capture {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

#[test]
fn event_desc_lists_fields_with_raw_expansion() {
    let d = ALL_TYPES.desc();
    assert_eq!((d.provider, d.name), ("tp_all", "types"));
    let got: Vec<(&str, FieldType)> = d.fields.iter().map(|f| (f.name, f.ty)).collect();
    use FieldType::*;
    let want = vec![
        ("a", U8),
        ("b", U16),
        ("c", U32),
        ("d", U64),
        ("e", I8),
        ("f", I16),
        ("g", I32),
        ("h", I64),
        ("x", F32),
        ("y", F64),
        ("t", Bool),
        ("s", String),
        ("bs", Bytes),
        ("cs_faulted", U32),
        ("cs", String),
        ("rb_faulted", U32),
        ("rb_truncated", U64),
        ("rb", Bytes),
    ];
    assert_eq!(got, want);
    assert!(NO_FIELDS.desc().fields.is_empty());
}

#[test]
fn registry_lists_every_tracepoint_even_never_hit() {
    let all = tracepoints();
    let names: Vec<String> = all.iter().map(|t| t.full_name()).collect();
    for n in [
        "tp_list:never",
        "tp_list:empty",
        "tp_all:types",
        "tp_env:secret",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|t| (t.desc().provider, t.desc().name))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by (provider, name)");
    for (i, t) in all.iter().enumerate() {
        assert_eq!(t.id() as usize, i);
    }
    assert!(std::ptr::eq(find("tp_list:never").unwrap(), &NEVER_HIT));
    assert!(find("tp_list:nope").is_none());
    assert!(find("garbage").is_none());
    assert!(!NEVER_HIT.is_active());
}

#[test]
fn disabled_tracepoint_does_not_evaluate_arguments() {
    let evaluated = AtomicUsize::new(0);
    let arg = || {
        evaluated.fetch_add(1, Ordering::Relaxed);
        7u64
    };
    // No probe, not enabled.
    trace!(SIDE, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 0);
    // Probe registered but not enabled.
    let c = CounterProbe::new();
    let h = register_probe("tp_side:effect", c.clone(), ProbeKind::NonFaultable).unwrap();
    trace!(SIDE, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 0);
    assert_eq!(c.count(&SIDE), 0);
    // Enabled without probe.
    unregister(h);
    assert_eq!(enable("tp_side:effect"), 1);
    trace!(SIDE, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 0);
    // Enabled with probe: evaluated once, counted once.
    let h = register_probe("tp_side:*", c.clone(), ProbeKind::NonFaultable).unwrap();
    assert!(SIDE.is_active());
    trace!(SIDE, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 1);
    assert_eq!(c.count(&SIDE), 1);
    disable("tp_side:effect");
    trace!(SIDE, arg());
    assert_eq!(evaluated.load(Ordering::Relaxed), 1);
    unregister(h);
}

#[test]
fn counter_probe_counts_per_tracepoint_and_stops_after_unregister() {
    let c = CounterProbe::new();
    let h = register_probe("tp_count:*", c.clone(), ProbeKind::NonFaultable).unwrap();
    assert_eq!(h.tracepoint_count(), 2);
    assert_eq!(enable("tp_count:*"), 2);
    for i in 0..1000u64 {
        trace!(COUNTED_A, i);
        if i % 10 == 0 {
            trace!(COUNTED_B, "x");
        }
    }
    assert_eq!(c.count(&COUNTED_A), 1000);
    assert_eq!(c.count(&COUNTED_B), 100);
    assert_eq!(c.total(), 1100);
    // Two probes on one tracepoint, different kinds.
    let c2 = CounterProbe::new();
    let h2 = register_probe("tp_count:a", c2.clone(), ProbeKind::Faultable).unwrap();
    trace!(COUNTED_A, 1);
    assert_eq!((c.count(&COUNTED_A), c2.count(&COUNTED_A)), (1001, 1));
    unregister(h);
    assert!(COUNTED_A.is_active(), "c2 still registered");
    assert!(!COUNTED_B.is_active(), "no probe left on b");
    trace!(COUNTED_A, 1);
    trace!(COUNTED_B, "y");
    assert_eq!((c.count(&COUNTED_A), c2.count(&COUNTED_A)), (1001, 2));
    assert_eq!(c.count(&COUNTED_B), 100);
    unregister(h2);
    assert!(!COUNTED_A.is_active());
    // After the reclaimer caught up, the registry dropped its references: only ours are left.
    reclaim_barrier();
    assert_eq!(Arc::strong_count(&c), 1);
    assert_eq!(Arc::strong_count(&c2), 1);
}

#[test]
fn register_unknown_name_is_an_error() {
    let c = CounterProbe::new();
    assert_eq!(
        register_probe("nope:*", c, ProbeKind::Faultable),
        Err(RegisterError::NoMatch("nope:*".into()))
    );
}

#[test]
fn enable_by_glob() {
    assert_eq!(matching("tp_glob:*").len(), 2);
    assert_eq!(
        matching("*:request")
            .iter()
            .filter(|t| t.desc().provider.starts_with("tp_glob"))
            .count(),
        2
    );
    assert_eq!(matching("tp_glob?:request").len(), 1);
    assert_eq!(enable("tp_glob*:re?uest"), 2);
    assert!(GLOB_REQ.is_enabled() && GLOB_RQ.is_enabled() && !GLOB_RSP.is_enabled());
    assert_eq!(disable("tp_glob2:*"), 1);
    assert!(GLOB_REQ.is_enabled() && !GLOB_RQ.is_enabled());
    assert_eq!(enable("tp_glob:respons?"), 1);
    assert!(GLOB_RSP.is_enabled());
    assert_eq!(enable("tp_glob:?"), 0);
    assert_eq!(disable("tp_glob:*"), 2);
    assert!(!GLOB_REQ.is_enabled() && !GLOB_RSP.is_enabled());
}

fn expected_all_types_bytes(cstr: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.push(0xA1);
    p.extend_from_slice(&0xB2B3u16.to_le_bytes());
    p.extend_from_slice(&0xC4C5C6C7u32.to_le_bytes());
    p.extend_from_slice(&0xD8D9DADBDCDDDEDFu64.to_le_bytes());
    p.extend_from_slice(&(-5i8).to_le_bytes());
    p.extend_from_slice(&(-300i16).to_le_bytes());
    p.extend_from_slice(&(-70000i32).to_le_bytes());
    p.extend_from_slice(&i64::MIN.to_le_bytes());
    p.extend_from_slice(&1.5f32.to_le_bytes());
    p.extend_from_slice(&(-2.25f64).to_le_bytes());
    p.push(1);
    p.extend_from_slice(b"path/\xce\xbb\0");
    p.extend_from_slice(&3u32.to_le_bytes());
    p.extend_from_slice(&[0, 255, 7]);
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(cstr);
    p.push(0);
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    p.extend_from_slice(raw);
    p
}

#[test]
fn payload_encodes_every_type_and_decodes_byte_exactly() {
    let cap = Arc::new(Capture::default());
    let h = register_probe("tp_all:types", cap.clone(), ProbeKind::Faultable).unwrap();
    enable("tp_all:types");
    let cstr = c"worker-1";
    let raw = [9u8, 8, 7, 6, 5];
    trace!(
        ALL_TYPES,
        0xA1,
        0xB2B3,
        0xC4C5C6C7,
        0xD8D9DADBDCDDDEDF,
        -5,
        -300,
        -70000,
        i64::MIN,
        1.5,
        -2.25,
        true,
        "path/λ",
        &[0, 255, 7][..],
        CStrPtr(cstr.as_ptr()),
        RawBuf(raw.as_ptr(), raw.len())
    );
    unregister(h);
    let ev = cap.take();
    assert_eq!(ev.len(), 1);
    let (id, size, bytes, out) = &ev[0];
    assert_eq!(*id, ALL_TYPES.id());
    let want = expected_all_types_bytes(cstr.to_bytes(), &raw);
    assert_eq!(*size, want.len());
    assert_eq!(bytes, &want, "byte-exact encoding");
    assert_eq!(
        *out,
        WriteOutcome {
            written: want.len(),
            faulted: 0,
            truncated: false
        }
    );
    let vals = decode(ALL_TYPES.desc().fields, bytes).unwrap();
    assert_eq!(
        vals,
        vec![
            Value::U(0xA1),
            Value::U(0xB2B3),
            Value::U(0xC4C5C6C7),
            Value::U(0xD8D9DADBDCDDDEDF),
            Value::I(-5),
            Value::I(-300),
            Value::I(-70000),
            Value::I(i64::MIN),
            Value::F(1.5),
            Value::F(-2.25),
            Value::Bool(true),
            Value::Str("path/λ".as_bytes().to_vec()),
            Value::Bytes(vec![0, 255, 7]),
            Value::U(0),
            Value::Str(b"worker-1".to_vec()),
            Value::U(0),
            Value::U(0),
            Value::Bytes(raw.to_vec()),
        ]
    );
}

const PAGE: usize = 4096;

/// Two pages, the first filled with `fill`, the second inaccessible (PROT_NONE rather than
/// unmapped: other tests spawn threads whose stacks could be mapped into a hole).
fn half_mapped(fill: u8) -> *mut u8 {
    // SAFETY: anonymous private mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as *mut u8;
    assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
    // SAFETY: first page is ours; the second is part of the mapping.
    unsafe {
        std::ptr::write_bytes(p, fill, PAGE);
        assert_eq!(
            libc::mprotect(p.add(PAGE) as *mut _, PAGE, libc::PROT_NONE),
            0
        );
    }
    p
}

/// Sizes and writes the payload itself, with a hook run between `size()` and `write()` (the
/// traced program changing its memory meanwhile) and a chosen destination length.
struct Racer {
    between: Mutex<Option<Box<dyn FnMut() + Send>>>,
    dst_len: Mutex<Option<DstLen>>,
    inner: Capture,
}

impl Probe for Racer {
    fn call(&self, tp: &'static Tracepoint, payload: &dyn Payload) {
        let n = payload.size();
        if let Some(f) = self.between.lock().unwrap().as_mut() {
            f();
        }
        let len = self.dst_len.lock().unwrap().as_ref().map_or(n, |f| f(n));
        let mut buf = vec![0xEEu8; len];
        let out = payload.write(&mut buf);
        assert!(out.written <= len);
        self.inner
            .events
            .lock()
            .unwrap()
            .push((tp.id(), n, buf, out));
    }
}

#[test]
fn raw_fields_with_bad_pointers_record_faults() {
    let racer = Arc::new(Racer {
        between: Mutex::new(None),
        dst_len: Mutex::new(None),
        inner: Capture::default(),
    });
    let h = register_probe("tp_raw:raw", racer.clone(), ProbeKind::Faultable).unwrap();
    enable("tp_raw:raw");
    let fields: &[FieldDesc] = RAW.desc().fields;

    // Null pointers.
    trace!(
        RAW,
        CStrPtr(std::ptr::null()),
        RawBuf(std::ptr::null(), 10),
        77
    );
    // Half-readable: 3 string bytes then a hole; 6 of 16 buffer bytes readable.
    let p = half_mapped(b'z');
    let s = CStrPtr(p.wrapping_add(PAGE - 3) as *const c_char);
    let b = RawBuf(p.wrapping_add(PAGE - 6), 16);
    trace!(RAW, s, b, 78);
    // Overlong string: cut at MAX_CSTR_LEN, not a fault.
    let long = vec![b'q'; MAX_CSTR_LEN + 100]
        .into_iter()
        .chain([0])
        .collect::<Vec<u8>>();
    trace!(
        RAW,
        CStrPtr(long.as_ptr() as *const c_char),
        RawBuf(long.as_ptr(), 2),
        79
    );

    let ev = racer.inner.take();
    assert_eq!(ev.len(), 3);
    let vals: Vec<Vec<Value>> = ev.iter().map(|e| decode(fields, &e.2).unwrap()).collect();
    assert_eq!(
        vals[0],
        vec![
            Value::U(1),
            Value::Str(vec![]),
            Value::U(10),
            Value::U(0),
            Value::Bytes(vec![0; 10]),
            Value::U(77)
        ]
    );
    assert_eq!(ev[0].3.faulted, 11);
    assert_eq!(
        vals[1],
        vec![
            Value::U(1),
            Value::Str(b"zzz".to_vec()),
            Value::U(10),
            Value::U(0),
            Value::Bytes([vec![b'z'; 6], vec![0; 10]].concat()),
            Value::U(78)
        ]
    );
    assert_eq!(
        ev[1].3.written, ev[1].1,
        "unchanged memory: exactly size() bytes"
    );
    assert_eq!(
        vals[2],
        vec![
            Value::U(0),
            Value::Str(vec![b'q'; MAX_CSTR_LEN]),
            Value::U(0),
            Value::U(0),
            Value::Bytes(vec![b'q'; 2]),
            Value::U(79)
        ]
    );
    assert_eq!(ev[2].3.written, ev[2].1);
    unregister(h);
}

#[test]
fn write_survives_memory_changing_after_size() {
    let racer = Arc::new(Racer {
        between: Mutex::new(None),
        dst_len: Mutex::new(None),
        inner: Capture::default(),
    });
    let h = register_probe("tp_raw:raw", racer.clone(), ProbeKind::Faultable).unwrap();
    enable("tp_raw:raw");
    let fields: &[FieldDesc] = RAW.desc().fields;

    // The string grows from 4 to 40 bytes between size() and write().
    let buf = Arc::new(Mutex::new([0u8; 64]));
    buf.lock().unwrap()[..5].copy_from_slice(b"abcd\0");
    let addr = buf.lock().unwrap().as_ptr() as usize;
    *racer.between.lock().unwrap() = Some(Box::new(move || {
        let p = addr as *mut u8;
        // SAFETY: the 64-byte buffer outlives the trace call below.
        unsafe {
            std::ptr::write_bytes(p, b'G', 40);
            *p.add(40) = 0;
        }
    }));
    let data = [1u8, 2, 3];
    trace!(
        RAW,
        CStrPtr(addr as *const c_char),
        RawBuf(data.as_ptr(), 3),
        5
    );
    let ev = racer.inner.take();
    let (_, size, bytes, out) = &ev[0];
    assert_eq!(bytes.len(), *size);
    assert!(out.truncated);
    assert_eq!(out.written, *size);
    let v = decode(fields, bytes).unwrap();
    assert_eq!(
        v[1],
        Value::Str(b"GGGG".to_vec()),
        "cut to the sized budget"
    );
    assert_eq!(v[4], Value::Bytes(vec![1, 2, 3]), "later fields intact");
    assert_eq!(v[5], Value::U(5));

    // The string shrinks: fewer bytes written, tail zero-filled, still decodes.
    *racer.between.lock().unwrap() = Some(Box::new(move || {
        // SAFETY: as above.
        unsafe { *(addr as *mut u8).add(2) = 0 };
    }));
    trace!(
        RAW,
        CStrPtr(addr as *const c_char),
        RawBuf(data.as_ptr(), 3),
        6
    );
    let ev = racer.inner.take();
    let (_, size, bytes, out) = &ev[0];
    assert!(out.written < *size);
    assert!(bytes[out.written..].iter().all(|&b| b == 0));
    let v = decode(fields, &bytes[..out.written]).unwrap();
    assert_eq!(v[1], Value::Str(b"GG".to_vec()));
    assert_eq!(v[5], Value::U(6));

    // Every destination length, from 0 to past the size: never more than dst.len(), and a
    // valid encoding whenever dst can hold the minimum (4+1 + 4+8+4 + 4 bytes).
    *racer.between.lock().unwrap() = None;
    // SAFETY: as above; restore a 10-byte string.
    unsafe {
        std::ptr::write_bytes(addr as *mut u8, b'k', 10);
        *(addr as *mut u8).add(10) = 0;
    }
    let lens = Arc::new(AtomicUsize::new(0));
    let l2 = lens.clone();
    *racer.dst_len.lock().unwrap() = Some(Box::new(move |_| l2.load(Ordering::Relaxed)));
    for len in 0..40usize {
        lens.store(len, Ordering::Relaxed);
        trace!(
            RAW,
            CStrPtr(addr as *const c_char),
            RawBuf(data.as_ptr(), 3),
            9
        );
        let ev = racer.inner.take();
        let (_, size, bytes, out) = &ev[0];
        assert_eq!(*size, 4 + 11 + 16 + 3 + 4);
        assert!(out.written <= len);
        if len < 25 {
            assert_eq!(out.written, 0);
            assert!(out.truncated);
        } else {
            let v = decode(fields, bytes).unwrap();
            assert_eq!(v[5], Value::U(9), "len {len}");
            assert_eq!(out.truncated, len < *size, "len {len}");
            // A raw buffer cut to fit says how many of its bytes are missing.
            let Value::Bytes(b) = &v[4] else { panic!() };
            assert_eq!(v[3], Value::U(3 - b.len() as u64), "len {len}");
        }
    }
    unregister(h);
    drop(buf);
}

/// Blocks inside the probe until released, like a probe stuck in a long page fault.
struct Blocker {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
    finished: AtomicBool,
}

impl Probe for Blocker {
    fn call(&self, _tp: &'static Tracepoint, _p: &dyn Payload) {
        let Some(rx) = self.release.lock().unwrap().take() else {
            return;
        };
        if let Some(tx) = self.entered.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
        rx.recv().unwrap();
        // SeqCst: pairs with the loads in the test (after unregister returns / after the
        // non-faultable unregister); the test's claims are about this store's visibility.
        self.finished.store(true, Ordering::SeqCst);
    }
}

#[test]
fn unregister_waits_for_a_blocked_call_and_spares_other_kinds() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let blocker = Arc::new(Blocker {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(Some(release_rx)),
        finished: AtomicBool::new(false),
    });
    let hb = register_probe("tp_block:blocking", blocker.clone(), ProbeKind::Faultable).unwrap();
    let counter = CounterProbe::new();
    let hc = register_probe(
        "tp_block:blocking",
        counter.clone(),
        ProbeKind::NonFaultable,
    )
    .unwrap();
    enable("tp_block:blocking");
    let tracer = std::thread::spawn(|| trace!(BLOCK, 1));
    entered_rx.recv().unwrap();

    // The faultable call is blocked; a non-faultable probe's grace period does not wait for it.
    unregister(hc);
    // SeqCst: pairs with the store at the end of Blocker::call.
    assert!(!blocker.finished.load(Ordering::SeqCst));
    assert_eq!(counter.count(&BLOCK), 1);
    assert_eq!(Arc::strong_count(&counter), 1);

    // unregister of the blocked probe must wait for the call to finish.
    let polls_before = grace_period_busy_polls(ProbeKind::Faultable);
    let b2 = blocker.clone();
    let unreg = std::thread::spawn(move || {
        unregister(hb);
        // Returned: the in-flight call must be over.
        // SeqCst: pairs with the store at the end of Blocker::call (the grace period's
        // Release/Acquire chain already orders it; SeqCst is belt and braces).
        b2.finished.load(Ordering::SeqCst)
    });
    // Wait (no timeout) until the updater has seen the reader still inside, then release it.
    while grace_period_busy_polls(ProbeKind::Faultable) == polls_before {
        std::thread::yield_now();
    }
    release_tx.send(()).unwrap();
    assert!(
        unreg.join().unwrap(),
        "unregister returned while the call was still inside"
    );
    tracer.join().unwrap();
    assert_eq!(Arc::strong_count(&blocker), 1);
    assert!(!BLOCK.is_active());
}

#[test]
fn deferred_unregister_releases_probe_after_barrier() {
    let c = CounterProbe::new();
    let h = register_probe("tp_defer:deferred", c.clone(), ProbeKind::Faultable).unwrap();
    enable("tp_defer:deferred");
    trace!(DEFER);
    unregister_deferred(h);
    trace!(DEFER);
    assert_eq!(c.count(&DEFER), 1, "detached immediately");
    reclaim_barrier();
    assert_eq!(
        Arc::strong_count(&c),
        1,
        "registry references dropped after grace period"
    );
}

#[test]
fn env_var_enables_at_first_use() {
    if std::env::var("FL_ENV_CHILD").is_ok() {
        // Child: FAULTLINE_EVENTS was set by the parent.
        let from_env = ENV_A.is_enabled()
            && ENV_B.is_enabled()
            && !ENV_SECRET.is_enabled()
            && !NEVER_HIT.is_enabled();
        // set_events replaces the whole enabled set (same syntax).
        let replaced = set_events("tp_env:secret,tp_list:*,-tp_list:empty") == 2
            && !ENV_A.is_enabled()
            && ENV_SECRET.is_enabled()
            && NEVER_HIT.is_enabled()
            && !NO_FIELDS.is_enabled();
        std::process::exit(if from_env && replaced { 0 } else { 1 });
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_var_enables_at_first_use",
            "--test-threads=1",
        ])
        .env("FL_ENV_CHILD", "1")
        .env("FAULTLINE_EVENTS", "tp_env:*, -tp_env:secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A probe that must never run after its unregistration returned.
struct Liveness {
    retired: AtomicBool,
    calls: AtomicUsize,
}

impl Probe for Liveness {
    fn call(&self, _tp: &'static Tracepoint, _p: &dyn Payload) {
        // Relaxed count; SeqCst load pairs with the store in the test made after unregister
        // returned: a call seeing it would be a call still inside after the grace period.
        self.calls.fetch_add(1, Ordering::Relaxed);
        assert!(
            !self.retired.load(Ordering::SeqCst),
            "probe called after unregister returned"
        );
        std::hint::spin_loop();
    }
}

#[test]
fn unregister_is_safe_while_switching_read_side_flavours() {
    // On this target both flavours exist (rseq registered by glibc, membarrier available);
    // elsewhere only the atomic one, and the test still runs.
    let rseq = set_srcu_flavour(Flavour::Rseq);
    assert_eq!(srcu_flavour(ProbeKind::Faultable), rseq);
    let stop = Arc::new(AtomicBool::new(false));
    let tracers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                // Relaxed: only ends the loop.
                while !stop.load(Ordering::Relaxed) {
                    trace!(SWITCH, i);
                    i += 1;
                }
            })
        })
        .collect();
    enable("tp_switch:flavour");
    let mut total = 0;
    for round in 0..300 {
        let f = if round % 2 == 0 {
            Flavour::Atomic
        } else {
            rseq
        };
        assert_eq!(set_srcu_flavour(f), f);
        let kind = if round % 3 == 0 {
            ProbeKind::NonFaultable
        } else {
            ProbeKind::Faultable
        };
        let p = Arc::new(Liveness {
            retired: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
        });
        let h = register_probe("tp_switch:flavour", p.clone(), kind).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
        unregister(h);
        // SeqCst: pairs with the load in Liveness::call.
        p.retired.store(true, Ordering::SeqCst);
        total += p.calls.load(Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tracers {
        t.join().unwrap();
    }
    set_srcu_flavour(Flavour::Rseq);
    assert!(total > 0, "the probes were called");
}

#[test]
fn atomic_fallback_selected_by_env_keeps_unregister_guarantees() {
    if std::env::var("FL_SRCU_CHILD").is_ok() {
        // Child: FAULTLINE_SRCU=atomic; the blocked-call test runs on the atomic flavour.
        let ok = srcu_flavour(ProbeKind::Faultable) == Flavour::Atomic
            && srcu_flavour(ProbeKind::NonFaultable) == Flavour::Atomic;
        std::process::exit(if ok { 0 } else { 1 });
    }
    for test in [
        "atomic_fallback_selected_by_env_keeps_unregister_guarantees",
        "unregister_waits_for_a_blocked_call_and_spares_other_kinds",
        "unregister_is_safe_while_switching_read_side_flavours",
    ] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--test-threads=1"])
            .env("FAULTLINE_SRCU", "atomic");
        if test.starts_with("atomic_fallback") {
            cmd.env("FL_SRCU_CHILD", "1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{test}: {out:?}");
    }
}

/// Calls of SIGNAL made from the signal handler.
static HANDLER_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn fire_from_handler(_sig: libc::c_int) {
    trace!(SIGNAL, 7);
    // Relaxed: read after the threads are joined.
    HANDLER_CALLS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn readers_in_signal_handlers_nest_in_both_flavours() {
    // A thread hits SIGNAL in a loop while another interrupts it with signals whose handler
    // hits SIGNAL too (nesting a read-side section, and interrupting rseq critical sections).
    // Every call must be counted, and unregister (a grace period) must find the counters
    // balanced: a lost or doubled increment would hang it or free too early.
    // SAFETY: installing a handler that only fires a tracepoint and bumps an atomic (both
    // async-signal-safe: no allocation, no lock) for SIGUSR2, used by no other test.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = fire_from_handler as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    enable("tp_signal:nested");
    for f in [Flavour::Atomic, Flavour::Rseq] {
        let f = set_srcu_flavour(f);
        let c = CounterProbe::new();
        let h = register_probe("tp_signal:nested", c.clone(), ProbeKind::Faultable).unwrap();
        HANDLER_CALLS.store(0, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tracer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
                let mut n = 0usize;
                // Relaxed: only ends the loop.
                while !stop.load(Ordering::Relaxed) {
                    trace!(SIGNAL, n as u64);
                    n += 1;
                }
                n
            })
        };
        let tid = rx.recv().unwrap() as libc::pthread_t;
        for _ in 0..2000 {
            // SAFETY: the tracer thread is alive until we set `stop` and join it.
            assert_eq!(unsafe { libc::pthread_kill(tid, libc::SIGUSR2) }, 0);
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        let n = tracer.join().unwrap();
        unregister(h);
        let handled = HANDLER_CALLS.load(Ordering::Relaxed);
        assert!(handled > 0, "{f:?}: no signal handled");
        assert_eq!(c.count(&SIGNAL) as usize, n + handled, "{f:?}: calls lost");
    }
    set_srcu_flavour(Flavour::Rseq);
}
