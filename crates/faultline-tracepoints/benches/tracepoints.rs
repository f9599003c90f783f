//! Prints ns per operation (no assertions): dispatch cost (enabled tracepoint with a no-op
//! probe vs a direct call of that probe vs a disabled tracepoint, medians of interleaved
//! rounds, for each probe kind and each SRCU read-side flavour), disabled tracepoint, enabled
//! tracepoint with the counter probe (each kind), copy_from_user vs memcpy for 32 bytes, and
//! the encoding of a payload with a `RawBuf` field (size + write, next to a `&[u8]` field of
//! the same length: the raw field adds the fault-tolerant copy and its `_faulted`/`_truncated`
//! words).
//! Run: `cargo bench -p faultline-tracepoints --bench tracepoints` (`-- dispatch` for the
//! dispatch part only, `-- encode` for the encoding part only).

use std::hint::black_box;
use std::time::Instant;

use std::sync::Arc;

use faultline_tracepoints::{
    copy_from_user, copy_from_user_vm, enable, register_probe, set_srcu_flavour, trace, tracepoint,
    unregister, CounterProbe, Flavour, Payload, Probe, ProbeKind, RawBuf, Tracepoint,
};

tracepoint!(BENCH_OFF, "bench", "off", { v: u64 });
tracepoint!(BENCH_DISPATCH, "bench", "dispatch", { v: u64 });
tracepoint!(BENCH_ON, "bench", "on", { v: u64 });
tracepoint!(BENCH_STR, "bench", "str", { v: u64, s: &str });
tracepoint!(BENCH_RAW, "bench", "raw", { v: u64, b: RawBuf });
tracepoint!(BENCH_BYTES, "bench", "bytes", { v: u64, b: &[u8] });

/// A probe that encodes the payload into a buffer, as a recorder does into its reservation.
struct EncodeProbe(std::sync::Mutex<Vec<u8>>);

impl Probe for EncodeProbe {
    #[inline(never)]
    fn call(&self, _tp: &'static Tracepoint, payload: &dyn Payload) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = payload.size().min(buf.len());
        black_box(payload.write(&mut buf[..n]));
    }
}

/// Encoding cost of `{ u64, RawBuf }` vs `{ u64, &[u8] }` with `len`-byte data: medians of
/// interleaved rounds, ns per event (dispatch included in both).
fn encode(len: usize, rounds: usize) {
    let p = Arc::new(EncodeProbe(std::sync::Mutex::new(vec![0u8; 128 * 1024])));
    let h1 = register_probe("bench:raw", p.clone(), ProbeKind::Faultable).unwrap();
    let h2 = register_probe("bench:bytes", p.clone(), ProbeKind::Faultable).unwrap();
    enable("bench:raw");
    enable("bench:bytes");
    let data = vec![0x5au8; len];
    let iters = 2_000_000 / (1 + len as u64 / 256);
    let (mut raw, mut bytes) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(once(iters, |n| {
            for i in 0..n {
                trace!(BENCH_RAW, black_box(i), RawBuf(data.as_ptr(), data.len()));
            }
        }));
        bytes.push(once(iters, |n| {
            for i in 0..n {
                trace!(BENCH_BYTES, black_box(i), black_box(&data[..]));
            }
        }));
    }
    unregister(h1);
    unregister(h2);
    let (r, b) = (median(&mut raw), median(&mut bytes));
    println!(
        "encode {{u64, RawBuf {len:>5} B}} {r:8.2} ns/event; {{u64, &[u8]}} {b:8.2} ns; ratio {:.3}",
        r / b
    );
}

/// Best of `rounds` runs of `iters` iterations, in ns per iteration.
fn measure(iters: u64, rounds: usize, mut f: impl FnMut(u64)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        f(iters);
        let ns = t.elapsed().as_nanos() as f64 / iters as f64;
        best = best.min(ns);
    }
    best
}

/// A probe that does nothing (but is still called through `dyn Probe`).
struct NoopProbe;

impl Probe for NoopProbe {
    #[inline(never)]
    fn call(&self, _tp: &'static Tracepoint, payload: &dyn Payload) {
        black_box(payload);
    }
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One timed run of `iters` iterations of `f`, in ns per iteration.
fn once(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    f(iters);
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Dispatch overhead: `trace!` of an enabled tracepoint whose only probe is a no-op (with each
/// SRCU read-side flavour), minus the same payload handed to that probe by a direct (dynamic)
/// call. The variants are interleaved within each round so that noise from other load hits
/// them alike; medians over the rounds.
fn dispatch(kind: ProbeKind, rounds: usize) {
    const N: u64 = 5_000_000;
    let probe: Arc<dyn Probe> = Arc::new(NoopProbe);
    let h = register_probe("bench:dispatch", probe.clone(), kind).unwrap();
    enable("bench:dispatch");
    let flavours = [Flavour::Atomic, Flavour::Rseq];
    let mut got = flavours;
    let (mut off, mut direct) = (Vec::new(), Vec::new());
    let mut on = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        off.push(once(N, |n| {
            for i in 0..n {
                trace!(BENCH_OFF, black_box(i));
            }
        }));
        direct.push(once(N, |n| {
            let p = black_box(&probe);
            for i in 0..n {
                let v = black_box(i);
                let payload = faultline_tracepoints::__private::FieldsPayload((&v, ()));
                p.call(&BENCH_DISPATCH, &payload);
            }
        }));
        for (k, f) in flavours.into_iter().enumerate() {
            got[k] = set_srcu_flavour(f);
            on[k].push(once(N, |n| {
                for i in 0..n {
                    trace!(BENCH_DISPATCH, black_box(i));
                }
            }));
        }
    }
    unregister(h);
    set_srcu_flavour(Flavour::Rseq);
    let (off, direct) = (median(&mut off), median(&mut direct));
    println!(
        "dispatch, {kind:?} probe, medians of {rounds} rounds: disabled {off:.2} ns, \
         direct call {direct:.2} ns"
    );
    for (k, v) in on.iter_mut().enumerate() {
        let m = median(v);
        println!(
            "  enabled, srcu {:<6?} {m:6.2} ns/call  dispatch overhead {:6.2} ns",
            got[k],
            m - direct
        );
    }
}

/// The read-side section alone: enter and leave an SRCU domain of each flavour.
fn read_side(rounds: usize) {
    const N: u64 = 20_000_000;
    for want in [Flavour::Atomic, Flavour::Rseq] {
        let d = faultline_tracepoints::srcu::Srcu::new(64);
        let got = d.set_flavour(want);
        let mut v: Vec<f64> = (0..rounds)
            .map(|_| {
                once(N, |n| {
                    for _ in 0..n {
                        black_box(d.read_lock());
                    }
                })
            })
            .collect();
        println!(
            "srcu read_lock + unlock, {got:?}            {:6.2} ns (median of {rounds})",
            median(&mut v)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "encode") {
        for len in [16, 256, 4096, 65536] {
            encode(len, 15);
        }
        return;
    }
    read_side(7);
    let only_dispatch = std::env::args().any(|a| a == "dispatch");
    for kind in [ProbeKind::NonFaultable, ProbeKind::Faultable] {
        dispatch(kind, 15);
    }
    if only_dispatch {
        return;
    }

    let empty = measure(200_000_000, 5, |n| {
        for i in 0..n {
            black_box(i);
        }
    });
    println!("empty loop (black_box(i))                 {empty:7.3} ns/iter");

    let off = measure(200_000_000, 5, |n| {
        for i in 0..n {
            trace!(BENCH_OFF, black_box(i));
        }
    });
    println!("disabled tracepoint                       {off:7.3} ns/call (incl. loop)");

    let c = CounterProbe::new();
    let h = register_probe("bench:on", c.clone(), ProbeKind::NonFaultable).unwrap();
    enable("bench:on");
    let on_nf = measure(20_000_000, 5, |n| {
        for i in 0..n {
            trace!(BENCH_ON, black_box(i));
        }
    });
    println!("enabled, counter probe (non-faultable)    {on_nf:7.3} ns/call");
    unregister(h);
    let h = register_probe("bench:on", c.clone(), ProbeKind::Faultable).unwrap();
    let on_f = measure(20_000_000, 5, |n| {
        for i in 0..n {
            trace!(BENCH_ON, black_box(i));
        }
    });
    println!("enabled, counter probe (faultable)        {on_f:7.3} ns/call");
    unregister(h);
    assert!(c.total() > 0);

    let cap = CounterProbe::new();
    let h = register_probe("bench:str", cap.clone(), ProbeKind::Faultable).unwrap();
    enable("bench:str");
    let s = "0123456789abcdef0123456789abcdef";
    let on_s = measure(20_000_000, 5, |n| {
        for i in 0..n {
            trace!(BENCH_STR, black_box(i), black_box(s));
        }
    });
    println!("enabled, counter probe, u64 + &str arg    {on_s:7.3} ns/call");
    unregister(h);

    let src = [7u8; 32];
    let mut dst = [0u8; 32];
    let cfu = measure(50_000_000, 5, |n| {
        for _ in 0..n {
            black_box(copy_from_user(
                black_box(&mut dst[..]),
                black_box(src.as_ptr()),
            ));
        }
    });
    println!("copy_from_user, 32 bytes                  {cfu:7.3} ns/copy");
    let mc = measure(50_000_000, 5, |n| {
        for _ in 0..n {
            black_box(&mut dst[..]).copy_from_slice(black_box(&src[..]));
        }
    });
    println!("memcpy (copy_from_slice), 32 bytes        {mc:7.3} ns/copy");
    let vm = measure(500_000, 3, |n| {
        for _ in 0..n {
            black_box(copy_from_user_vm(
                black_box(&mut dst[..]),
                black_box(src.as_ptr()),
            ));
        }
    });
    println!("copy_from_user_vm (process_vm_readv), 32B {vm:7.3} ns/copy");
    let bad = measure(200_000, 3, |n| {
        for _ in 0..n {
            black_box(copy_from_user(
                black_box(&mut dst[..]),
                black_box(8 as *const u8),
            ));
        }
    });
    println!("copy_from_user, 32 bytes, faulting (null) {bad:7.3} ns/copy (signal round trip)");
    for len in [16, 256, 4096, 65536] {
        encode(len, 7);
    }
}
