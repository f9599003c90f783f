//! Cost of each rseq primitive in a tight loop (ns per operation), against rdtsc.
use faultline_rseq::Cpu;
use std::hint::black_box;
use std::time::Instant;

fn t(name: &str, n: u64, mut f: impl FnMut()) {
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:<32} {:>7.2} ns",
        s.elapsed().as_nanos() as f64 / n as f64
    );
}

fn main() {
    let n = 5_000_000;
    assert!(faultline_rseq::available(), "needs rseq");
    let mut w = 0u64;
    t("rdtsc", n, || {
        black_box(faultline_rseq::rdtsc());
    });
    t("current_cpu", n, || {
        black_box(faultline_rseq::current_cpu());
    });
    t("addv", n, || {
        let c = faultline_rseq::current_cpu();
        // SAFETY: `w` is local to this thread.
        let _ = black_box(unsafe { faultline_rseq::addv_on::<Cpu>(c, &mut w, 1) });
    });
    t("cmpeqv_storev", n, || {
        let c = faultline_rseq::current_cpu();
        // SAFETY: as above.
        let _ = black_box(unsafe { faultline_rseq::cmpeqv_storev_on::<Cpu>(c, &mut w, w, w + 1) });
    });
    t("cmpeqv_storev_tsc", n, || {
        let c = faultline_rseq::current_cpu();
        // SAFETY: as above.
        let _ =
            black_box(unsafe { faultline_rseq::cmpeqv_storev_tsc_on::<Cpu>(c, &mut w, w, w + 1) });
    });
}
