//! Prints ns per event (no assertions) of the recording fast path next to its floor, on a
//! shared, noisy machine: each configuration runs many short rounds, interleaved, timed with
//! the thread's CPU clock (time the thread spent descheduled is not counted), and the
//! minimum and median over rounds are reported, with ratios to `rdtsc` + a 24-byte store
//! measured in the same run. Overwrite-mode channel with default geometry, no consumer; and
//! the `trace!` rows again into a discard-mode channel (the mode of a `Session`, whose events
//! take the tracepoint layer's inline path: overwrite mode goes through `Channel::reserve`),
//! drained between rounds (outside the timing) so that no event is lost.
//! Run: `cargo bench -p faultline-recorder --bench fastpath` (`-- ROUNDS` to change the
//! number of rounds).

use std::hint::black_box;
use std::sync::Arc;

use faultline_recorder::{attach, Recorder, RecorderConfig};
use faultline_ringbuf::consumer::Consumer;
use faultline_ringbuf::{Channel, ChannelConfig, Mode};
use faultline_tracepoints::{enable, trace, tracepoint};

tracepoint!(FP_INT, "fastpath_bench", "int", { seq: u64 });
tracepoint!(FP_STRING, "fastpath_bench", "string", { seq: u64, msg: &str });
tracepoint!(FP_OFF, "fastpath_bench_off", "off", { seq: u64 });
tracepoint!(FPD_INT, "fastpath_discard", "int", { seq: u64 });
tracepoint!(FPD_STRING, "fastpath_discard", "string", { seq: u64, msg: &str });

const MSG: &str = "0123456789abcdef0123456789abcdef";
const PER_ROUND: u64 = 20_000;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn round(mut f: impl FnMut(u64)) -> f64 {
    let t0 = thread_cpu_ns();
    for i in 0..PER_ROUND {
        f(i);
    }
    (thread_cpu_ns() - t0) as f64 / PER_ROUND as f64
}

/// The ring buffer alone behind a function call, as `trace!` reaches its `__fire`.
#[inline(never)]
fn ring_out_of_line(chan: &Channel, id: u32, i: u64) {
    if let Ok(mut r) = chan.reserve(id, 8) {
        r.payload().copy_from_slice(&i.to_le_bytes());
        black_box(r.commit());
    }
}

/// [`ring_out_of_line`] through the one-path entry the fast path uses (`Channel::cpu_rseq`):
/// what `trace!` costs beyond it is the tracepoint layer alone.
#[inline(never)]
fn ring_cpu_rseq_out_of_line(chan: &Channel, id: u32, i: u64) {
    let Some(fast) = chan.cpu_rseq() else {
        return ring_out_of_line(chan, id, i);
    };
    if let Ok(mut r) = fast.reserve(id, 8) {
        r.payload().copy_from_slice(&i.to_le_bytes());
        black_box(r.commit());
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    if let Some(cpu) = faultline_rseq::allowed_cpus().first() {
        let _ = faultline_rseq::pin_to_cpu(*cpu);
    }
    let chan = Arc::new(
        Channel::create(&ChannelConfig {
            mode: Mode::Overwrite,
            ..ChannelConfig::default()
        })
        .expect("channel"),
    );
    let rec = Recorder::new(chan.clone(), RecorderConfig::default());
    let _h = attach(&rec, "fastpath_bench:*").expect("attach");
    enable("fastpath_bench:*");
    // Discard mode, 4 x 1 MiB per CPU: a round's int and string events (< 2 MiB) fit once
    // the complete sub-buffers are drained, which `drain` does between rounds.
    let dchan = Arc::new(Channel::create(&ChannelConfig::default()).expect("channel"));
    let drec = Recorder::new(dchan.clone(), RecorderConfig::default());
    let _dh = attach(&drec, "fastpath_discard:*").expect("attach");
    enable("fastpath_discard:*");
    let drain = || {
        let c = Consumer::new(&dchan);
        for cpu in c.active_cpus() {
            while let Ok(Some(p)) = c.take_in_place(cpu) {
                c.release(p);
            }
        }
    };
    println!(
        "fast path taken: int {}, string {}; discard channel inline: {}",
        FP_INT.has_fast_path(),
        FP_STRING.has_fast_path(),
        dchan.cpu_rseq().is_some() && FPD_INT.has_fast_path()
    );
    let int_id = FP_INT.id();
    let mut floor = vec![0u64; 256 * 1024 / 8];
    let names = [
        "rdtsc + 24-byte store",
        "ring reserve+commit 8 B",
        "ring reserve+commit 8 B, out of line",
        "ring 8 B, out of line, int's id",
        "ring 8 B, int's id, one path (cpu_rseq)",
        "trace! int",
        "trace! u64 + 32 B string",
        "disabled tracepoint (per call site)",
        "trace! int, discard",
        "trace! u64 + 32 B string, discard",
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        ns[0].push(round(|i| {
            let ts = faultline_rseq::rdtsc();
            let at = (i as usize * 3) % (floor.len() - 3);
            floor[at] = ts;
            floor[at + 1] = (24u64 << 32) | 1;
            floor[at + 2] = black_box(i);
            black_box(&mut floor);
        }));
        ns[1].push(round(|i| {
            if let Ok(mut r) = chan.reserve(1000, 8) {
                r.payload().copy_from_slice(&i.to_le_bytes());
                black_box(r.commit());
            }
        }));
        ns[2].push(round(|i| ring_out_of_line(&chan, 1000, i)));
        ns[3].push(round(|i| ring_out_of_line(&chan, int_id, i)));
        ns[4].push(round(|i| ring_cpu_rseq_out_of_line(&chan, int_id, i)));
        ns[5].push(round(|i| trace!(FP_INT, i)));
        ns[6].push(round(|i| trace!(FP_STRING, i, MSG)));
        ns[7].push(
            round(|i| {
                trace!(FP_OFF, i);
                trace!(FP_OFF, i + 1);
                trace!(FP_OFF, i + 2);
                trace!(FP_OFF, i + 3);
                trace!(FP_OFF, i + 4);
                trace!(FP_OFF, i + 5);
                trace!(FP_OFF, i + 6);
                trace!(FP_OFF, i + 7);
            }) / 8.0,
        );
        drain();
        ns[8].push(round(|i| trace!(FPD_INT, i)));
        drain();
        ns[9].push(round(|i| trace!(FPD_STRING, i, MSG)));
    }
    drain();
    let st = drec.stats();
    println!(
        "discard channel: {} events recorded, {} lost",
        st.recorded,
        st.lost_total()
    );
    let stat = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let stats: Vec<(f64, f64)> = ns.iter_mut().map(stat).collect();
    println!("{rounds} rounds x {PER_ROUND} events, thread CPU time");
    println!(
        "{:<38} {:>8} {:>8} {:>9} {:>9}",
        "", "min ns", "med ns", "min/flr", "med/flr"
    );
    for (n, (mn, md)) in names.iter().zip(&stats) {
        println!(
            "{n:<38} {mn:>8.2} {md:>8.2} {:>8.2}x {:>8.2}x",
            mn / stats[0].0,
            md / stats[0].1
        );
    }
}
