//! Prints ns per operation (no assertions): disabled tracepoint, enabled tracepoint with the
//! counter probe (each kind), copy_from_user vs memcpy for 32 bytes.
//! Run: `cargo bench -p faultline-tracepoints --bench tracepoints`.

use std::hint::black_box;
use std::time::Instant;

use faultline_tracepoints::{
    copy_from_user, copy_from_user_vm, enable, register_probe, trace, tracepoint, unregister,
    CounterProbe, ProbeKind,
};

tracepoint!(BENCH_OFF, "bench", "off", { v: u64 });
tracepoint!(BENCH_ON, "bench", "on", { v: u64 });
tracepoint!(BENCH_STR, "bench", "str", { v: u64, s: &str });

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

fn main() {
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
}
