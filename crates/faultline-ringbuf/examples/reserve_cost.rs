//! Where the nanoseconds of `Channel::reserve` + `Reservation::commit` go.
//!
//! `cargo run --release -p faultline-ringbuf --example reserve_cost [-- ROUNDS ITERS]`
//!
//! Every configuration is measured in the same run, interleaved round by round (so a noisy
//! neighbour on the shared machine hits all of them alike), next to the two floors the issue
//! names: a bare `rdtsc` loop and an `rdtsc` + 16-byte store loop. Printed: the median and the
//! 25th percentile of the ns per operation over the rounds, and the spread (min..max). On a
//! loaded machine many short rounds (e.g. `-- 101 20000`) and the 25th percentile are the
//! steadier figure.
//!
//! Rows:
//! * floors: `rdtsc`; `rdtsc` + a 16 B (or 48 B) copy into a 4 KiB L1-resident buffer (what
//!   `faultline bench` calls the floor); the same plus a 16 B header, streaming through 1 MiB
//!   like the ring does (the memory traffic of a real record without any protocol).
//! * the real thing: `Channel::reserve` + payload copy + `Reservation::commit`, rseq and atomic,
//!   16 B and 48 B, default geometry (4 x 256 KiB, overwrite mode, no consumer: what
//!   `faultline bench` measures) and a small one (4 x 4 KiB, L1-resident, a sub-buffer switch
//!   every ~120 records); and rseq 16 B on buffers per concurrency id (`BufferIndex::Cid`)
//!   where the kernel supports it.
//! * discard mode (default geometry, 4 x 1 MiB) with a consumer thread on another CPU taking
//!   sub-buffers in place and releasing them: 8 B of event 1 (compact header, the int event's
//!   shape) and of event 1000 (always extended).
//! * the int event's shape through `Channel::cpu_rseq` (the one-path entry of a tracepoint's
//!   fast path): event 1, a constant 8-byte payload, in discard mode with a consumer as above
//!   and in overwrite mode without one (default geometry).
//! * batches of 24000 events on fresh 4 x 256 KiB channels: reserve + commit (the control),
//!   reserve only (reservations leaked), commit only (of reservations made untimed just
//!   before), reserve + drop (committed as a discarded record).
//! * the protocol rebuilt from `faultline_rseq` primitives on a private array, to split the
//!   cost: `current_cpu`; the reserve critical section with and without `rdtsc` inside; `rdtsc`
//!   outside + CS without; the LOCAL commit (`addv` + load of `remote`); and the whole
//!   sequence (CPU, reserve CS with TSC, header + payload stores, LOCAL commit, completion
//!   test) — the minimum the protocol needs, with no channel bookkeeping.

use faultline_ringbuf::{Channel, ChannelConfig, Mode, SyncMode};
use faultline_rseq::Cpu;
use std::hint::black_box;
use std::time::Instant;

type Bench<'a> = (String, Box<dyn FnMut(u64) -> f64 + 'a>);

fn time_ns(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn channel(sync: SyncMode, subbuf: u64) -> Channel {
    Channel::create(&ChannelConfig {
        subbuf_size: subbuf,
        num_subbuf: 4,
        mode: Mode::Overwrite,
        sync,
        ..Default::default()
    })
    .expect("channel")
}

/// Reserve + copy + commit on a channel (the `faultline bench` loop).
fn ring<'a>(ch: &'a Channel, payload: usize) -> Box<dyn FnMut(u64) -> f64 + 'a> {
    let src = vec![7u8; payload];
    // Warm-up: touch every page of the buffer once.
    for _ in 0..(ch.subbuf_size() * ch.num_subbuf() / 16) {
        if let Ok(mut r) = ch.reserve(1, payload) {
            r.payload().copy_from_slice(&src);
            r.commit();
        }
    }
    Box::new(move |iters| {
        time_ns(iters, |_| {
            if let Ok(mut r) = ch.reserve(1, black_box(payload)) {
                r.payload().copy_from_slice(&src);
                black_box(r.commit());
            }
        })
    })
}

fn lost_now(ch: &Channel) -> u64 {
    (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .map(|s| s.lost_total())
        .sum()
}

/// Reserve + copy + commit of event `id` on a discard-mode channel while a consumer thread,
/// pinned to another CPU and running for the whole program, takes complete sub-buffers in
/// place and releases them (what a `Session`'s consumer does, without the write to disk). A
/// round in which events were lost (the consumer fell behind: a lost event costs less than a
/// written one) counts as NaN, left out of the figures; `lost` counts them.
fn ring_consumed(
    ch: &'static Channel,
    id: u32,
    payload: usize,
    consumer_cpu: Option<u32>,
    lost: &'static std::sync::atomic::AtomicU64,
) -> Box<dyn FnMut(u64) -> f64> {
    use std::sync::atomic::Ordering;
    let src = vec![7u8; payload];
    spawn_consumer(ch, consumer_cpu);
    Box::new(move |iters| {
        let before = lost_now(ch);
        let ns = time_ns(iters, |_| {
            if let Ok(mut r) = ch.reserve(id, black_box(payload)) {
                r.payload().copy_from_slice(&src);
                black_box(r.commit());
            }
        });
        let l = lost_now(ch) - before;
        lost.fetch_add(l, Ordering::Relaxed);
        if l > 0 {
            f64::NAN
        } else {
            ns
        }
    })
}

/// A consumer thread, pinned to `consumer_cpu`, running for the whole program: it takes
/// complete sub-buffers of `ch` in place and releases them.
fn spawn_consumer(ch: &'static Channel, consumer_cpu: Option<u32>) {
    std::thread::spawn(move || {
        if let Some(c) = consumer_cpu {
            let _ = faultline_rseq::pin_to_cpu(c);
        }
        let cons = faultline_ringbuf::Consumer::new(ch);
        loop {
            let mut took = false;
            for cpu in cons.active_cpus() {
                while let Ok(Some(p)) = cons.take_in_place(cpu) {
                    cons.release(p);
                    took = true;
                }
            }
            if !took {
                cons.wait(std::time::Duration::from_millis(1));
            }
        }
    });
}

/// The int event's shape through the one-path entry a tracepoint's fast path uses
/// (`Channel::cpu_rseq`): event `id`, a constant 8-byte payload written as one store, commit.
/// With `consumer`, `ch` is drained as in [`ring_consumed`] (rounds that lost events count as
/// NaN and in `lost`).
fn ring_cpu_rseq(
    ch: &'static Channel,
    id: u32,
    consumer: Option<Option<u32>>,
    lost: &'static std::sync::atomic::AtomicU64,
) -> Box<dyn FnMut(u64) -> f64> {
    use std::sync::atomic::Ordering;
    if let Some(c) = consumer {
        spawn_consumer(ch, c);
    }
    // Warm-up: touch every page of the buffer once.
    for i in 0..(ch.subbuf_size() * ch.num_subbuf() / 16) {
        if let Ok(mut r) = ch.reserve(id, 8) {
            r.payload().copy_from_slice(&i.to_le_bytes());
            r.commit();
        }
    }
    let fast = ch.cpu_rseq();
    Box::new(move |iters| {
        let before = lost_now(ch);
        let ns = match fast {
            Some(fast) => time_ns(iters, |i| {
                if let Ok(mut r) = fast.reserve(id, 8) {
                    r.payload().copy_from_slice(&i.to_le_bytes());
                    black_box(r.commit());
                }
            }),
            // Not offered (a library before overwrite mode had it): `reserve`, as the
            // tracepoint layer then takes it (out of line there).
            None => time_ns(iters, |i| {
                if let Ok(mut r) = ch.reserve(id, 8) {
                    r.payload().copy_from_slice(&i.to_le_bytes());
                    black_box(r.commit());
                }
            }),
        };
        let l = lost_now(ch) - before;
        lost.fetch_add(l, Ordering::Relaxed);
        if l > 0 {
            f64::NAN
        } else {
            ns
        }
    })
}

/// Records per batch in the batch measurements: well under one lap of a 4 x 256 KiB buffer
/// (32768 records of 32 B), so reservations left uncommitted never block a later one.
const BATCH: usize = 24_000;
/// Batches per round (each on a fresh, warmed-up channel).
const BATCHES: usize = 4;

#[derive(Clone, Copy)]
enum Part {
    /// reserve + copy + commit, as `ring` (the control for the two below).
    Both,
    /// reserve + copy only; the reservations are leaked (`mem::forget`), the channel thrown away.
    ReserveOnly,
    /// commit only, of reservations made (and filled) untimed just before.
    CommitOnly,
    /// reserve + copy, then drop: the record is committed as discarded.
    Drop,
}

/// One part of the path, timed over fresh channels so that leaked reservations cost nothing
/// later.
fn batch(sync: SyncMode, payload: usize, part: Part) -> Box<dyn FnMut(u64) -> f64> {
    let src = vec![7u8; payload];
    Box::new(move |_| {
        let mut total = 0f64;
        for _ in 0..BATCHES {
            let ch = channel(sync, 256 * 1024);
            // Warm-up: one full lap, so every page is resident and every sub-buffer complete.
            for _ in 0..(256 * 1024 * 4 / 32 + 100) {
                if let Ok(mut r) = ch.reserve(1, payload) {
                    r.payload().copy_from_slice(&src);
                    r.commit();
                }
            }
            total += match part {
                Part::Both => time_ns(BATCH as u64, |_| {
                    if let Ok(mut r) = ch.reserve(1, black_box(payload)) {
                        r.payload().copy_from_slice(&src);
                        black_box(r.commit());
                    }
                }),
                Part::ReserveOnly => time_ns(BATCH as u64, |_| {
                    if let Ok(mut r) = ch.reserve(1, black_box(payload)) {
                        r.payload().copy_from_slice(&src);
                        std::mem::forget(black_box(r));
                    }
                }),
                Part::Drop => time_ns(BATCH as u64, |_| {
                    if let Ok(mut r) = ch.reserve(1, black_box(payload)) {
                        r.payload().copy_from_slice(&src);
                        drop(r);
                    }
                }),
                Part::CommitOnly => {
                    let mut rs = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        if let Ok(mut r) = ch.reserve(1, payload) {
                            r.payload().copy_from_slice(&src);
                            rs.push(r);
                        }
                    }
                    let mut it = rs.into_iter();
                    time_ns(BATCH as u64, |_| {
                        if let Some(r) = it.next() {
                            black_box(r.commit());
                        }
                    })
                }
            };
        }
        total / BATCHES as f64
    })
}

/// A private stand-in for one CPU buffer: write offset, LOCAL and REMOTE counters on separate
/// lines, and a data area.
#[repr(C, align(64))]
struct Fake {
    write_offset: u64,
    _p0: [u64; 7],
    local: u64,
    _p1: [u64; 7],
    remote: u64,
    _p2: [u64; 7],
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(11).max(1) as usize;
    let iters = args.get(1).copied().unwrap_or(2_000_000).max(1000);
    let rseq = faultline_rseq::available();
    let cpu = faultline_rseq::current_cpu();
    faultline_rseq::pin_to_cpu(cpu).expect("pin");
    // Pinning takes effect at the next scheduling point.
    std::thread::yield_now();
    let cpu = faultline_rseq::current_cpu();

    let syncs: Vec<SyncMode> = if rseq {
        vec![SyncMode::Rseq, SyncMode::Atomic]
    } else {
        vec![SyncMode::Atomic]
    };
    let chans: Vec<(SyncMode, u64, Channel)> = syncs
        .iter()
        .flat_map(|&s| [(s, 256 * 1024), (s, 4096)])
        .map(|(s, sb)| (s, sb, channel(s, sb)))
        .collect();
    // The same reserve + commit on buffers per concurrency id (keyed on rseq mm_cid).
    let cid_chan = faultline_ringbuf::channel::cid_supported().ok().map(|()| {
        Channel::create(&ChannelConfig {
            subbuf_size: 256 * 1024,
            num_subbuf: 4,
            mode: Mode::Overwrite,
            sync: SyncMode::Rseq,
            index: faultline_ringbuf::BufferIndex::Cid,
            ..Default::default()
        })
        .expect("per-cid channel")
    });
    // Discard mode with a consumer running on the other CPU (default 4 x 1 MiB): event 1
    // (compact header, the int event's shape) and 1000 (always extended).
    let consumed: Vec<(u32, &'static Channel)> = if rseq {
        [1u32, 1000]
            .into_iter()
            .map(|id| {
                let ch = Channel::create(&ChannelConfig {
                    mode: Mode::Discard,
                    sync: SyncMode::Rseq,
                    ..Default::default()
                })
                .expect("channel");
                // Lives as long as its consumer thread: the whole program.
                (id, &*Box::leak(Box::new(ch)))
            })
            .collect()
    } else {
        Vec::new()
    };
    let other_cpu = (0..faultline_rseq::possible_cpus()).find(|&c| c != cpu);
    let consumed_lost: &'static std::sync::atomic::AtomicU64 =
        Box::leak(Box::new(std::sync::atomic::AtomicU64::new(0)));
    let mut benches: Vec<Bench> = Vec::new();

    benches.push((
        "rdtsc".into(),
        Box::new(|n| {
            time_ns(n, |_| {
                black_box(faultline_rseq::rdtsc());
            })
        }),
    ));
    for payload in [16usize, 48] {
        let mut dst = vec![0u8; 4096];
        let src = vec![7u8; payload];
        benches.push((
            format!("rdtsc + {payload} B store (L1)"),
            Box::new(move |n| {
                time_ns(n, |i| {
                    let ts = faultline_rseq::rdtsc();
                    let at = ((i as usize) * 64) & 4095;
                    dst[at..at + payload].copy_from_slice(black_box(&src[..]));
                    black_box(ts);
                    black_box(&mut dst);
                })
            }),
        ));
    }
    {
        // 16 B header (timestamp, id, len) + 16 B payload, 32 B apart, through 1 MiB.
        let mut dst = vec![0u64; (1 << 20) / 8];
        let src = [7u8; 16];
        benches.push((
            "rdtsc + hdr + 16 B, 1 MiB stream".into(),
            Box::new(move |n| {
                let mask = dst.len() - 1;
                time_ns(n, |i| {
                    let ts = faultline_rseq::rdtsc();
                    let at = (i as usize * 4) & mask;
                    dst[at] = ts;
                    dst[at + 1] = 1 | (32 << 32);
                    let p = &mut dst[at + 2..at + 4];
                    // SAFETY: two u64s are 16 bytes, plain data.
                    let b =
                        unsafe { std::slice::from_raw_parts_mut(p.as_mut_ptr() as *mut u8, 16) };
                    b.copy_from_slice(black_box(&src[..]));
                    black_box(&mut dst);
                })
            }),
        ));
    }

    for (s, sb, ch) in &chans {
        for payload in [16usize, 48] {
            if *sb == 4096 && payload == 48 {
                continue;
            }
            benches.push((
                format!(
                    "reserve+commit {payload} B {} {}K",
                    format!("{s:?}").to_lowercase(),
                    sb / 1024
                ),
                ring(ch, payload),
            ));
        }
    }

    for (id, ch) in &consumed {
        benches.push((
            format!("reserve+commit 8 B id {id} discard+consumer"),
            ring_consumed(ch, *id, 8, other_cpu, consumed_lost),
        ));
    }

    if rseq {
        // The int event's shape through `Channel::cpu_rseq`, as a tracepoint's `__fire` takes
        // it: discard mode with a consumer (the int row of `faultline bench`), and overwrite
        // mode without one (its `no consumer, overwrite` row).
        for (mode, consumer) in [(Mode::Discard, Some(other_cpu)), (Mode::Overwrite, None)] {
            let ch: &'static Channel = Box::leak(Box::new(
                Channel::create(&ChannelConfig {
                    mode,
                    sync: SyncMode::Rseq,
                    ..Default::default()
                })
                .expect("channel"),
            ));
            let label = if consumer.is_some() {
                "discard+consumer"
            } else {
                "overwrite"
            };
            benches.push((
                format!("cpu_rseq 8 B id 1 {label}"),
                ring_cpu_rseq(ch, 1, consumer, consumed_lost),
            ));
        }
    }

    if let Some(ch) = &cid_chan {
        benches.push(("reserve+commit 16 B rseq per-cid 256K".into(), ring(ch, 16)));
    }

    for &s in &syncs {
        let name = format!("{s:?}").to_lowercase();
        for (label, part) in [
            ("reserve+commit", Part::Both),
            ("reserve only", Part::ReserveOnly),
            ("commit only", Part::CommitOnly),
            ("reserve+drop", Part::Drop),
        ] {
            benches.push((format!("batch 16 B {name}: {label}"), batch(s, 16, part)));
        }
    }

    if rseq {
        benches.push((
            "current_cpu".into(),
            Box::new(|n| {
                time_ns(n, |_| {
                    black_box(faultline_rseq::current_cpu());
                })
            }),
        ));
        let mut f = Box::new(Fake {
            write_offset: 0,
            _p0: [0; 7],
            local: 0,
            _p1: [0; 7],
            remote: 0,
            _p2: [0; 7],
        });
        let fp: *mut Fake = &mut *f;
        std::mem::forget(f);
        // SAFETY (for every closure below): `fp` points to a leaked Fake used only by this
        // (pinned) thread; its words are written only by rseq critical sections on this CPU.
        // SAFETY: `fp` is a live, leaked Fake (above); this only forms a field pointer.
        let wo = unsafe { std::ptr::addr_of_mut!((*fp).write_offset) };
        // SAFETY: as above.
        let lo = unsafe { std::ptr::addr_of_mut!((*fp).local) };
        // SAFETY: as above.
        let re = unsafe { std::ptr::addr_of_mut!((*fp).remote) };
        benches.push((
            "cs: cmp+store (no tsc)".into(),
            Box::new(move |n| {
                time_ns(n, |_| {
                    // SAFETY: see above.
                    unsafe {
                        let old = *wo;
                        black_box(
                            faultline_rseq::cmpeqv_storev_on::<Cpu>(cpu, wo, old, old + 32).is_ok(),
                        );
                    }
                })
            }),
        ));
        benches.push((
            "cs: cmp+rdtsc+store".into(),
            Box::new(move |n| {
                time_ns(n, |_| {
                    // SAFETY: see above.
                    unsafe {
                        let old = *wo;
                        let _ = black_box(faultline_rseq::cmpeqv_storev_tsc_on::<Cpu>(
                            cpu,
                            wo,
                            old,
                            old + 32,
                        ));
                    }
                })
            }),
        ));
        benches.push((
            "rdtsc; cs: cmp+store".into(),
            Box::new(move |n| {
                time_ns(n, |_| {
                    // SAFETY: see above.
                    unsafe {
                        let ts = faultline_rseq::rdtsc();
                        let old = *wo;
                        black_box(
                            faultline_rseq::cmpeqv_storev_on::<Cpu>(cpu, wo, old, old + 32).is_ok(),
                        );
                        black_box(ts);
                    }
                })
            }),
        ));
        benches.push((
            "cs: addv + load remote".into(),
            Box::new(move |n| {
                time_ns(n, |_| {
                    // SAFETY: see above.
                    unsafe {
                        let l = faultline_rseq::addv_on::<Cpu>(cpu, lo, 32).unwrap_or(0);
                        black_box(l.wrapping_add(std::ptr::read_volatile(re)) >= 1 << 40);
                    }
                })
            }),
        ));
        for (name, footprint) in [("L1 4K", 4096usize), ("1 MiB", 1 << 20)] {
            let mut data = vec![0u64; footprint / 8];
            let dp = data.as_mut_ptr();
            std::mem::forget(data);
            let src = [7u8; 16];
            benches.push((
                format!("protocol minimum 16 B, {name}"),
                Box::new(move |n| {
                    let mask = footprint as u64 - 1;
                    time_ns(n, |_| {
                        // SAFETY: see above; `dp` is a leaked array of `footprint` bytes and
                        // every record (32 B, 32 B aligned) lies inside it after masking.
                        unsafe {
                            let c = faultline_rseq::current_cpu();
                            let old = *wo;
                            let new = old + 32;
                            let Ok(ts) =
                                faultline_rseq::cmpeqv_storev_tsc_on::<Cpu>(c, wo, old, new)
                            else {
                                return;
                            };
                            let h = (dp as *mut u8).add((old & mask) as usize) as *mut u64;
                            *h = ts;
                            *h.add(1) = 1 | (32 << 32);
                            std::ptr::copy_nonoverlapping(
                                black_box(src.as_ptr()),
                                h.add(2) as *mut u8,
                                black_box(16),
                            );
                            let l = faultline_rseq::addv_on::<Cpu>(c, lo, 32).unwrap_or(0);
                            black_box(l.wrapping_add(std::ptr::read_volatile(re)) >= 1 << 60);
                        }
                    })
                }),
            ));
        }
    }

    let mut results: Vec<Vec<f64>> = vec![Vec::new(); benches.len()];
    for _ in 0..rounds {
        for (i, (_, b)) in benches.iter_mut().enumerate() {
            results[i].push(b(iters));
        }
    }
    println!(
        "rseq {} | pinned to CPU {cpu} | {rounds} rounds x {iters} iterations",
        if rseq { "available" } else { "UNAVAILABLE" }
    );
    println!(
        "events lost in the discard+consumer rows (consumer behind): {}",
        consumed_lost.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The 25th percentile as well: on a loaded machine, preemptions and neighbours' bursts
    // only ever add time, so the lower quantiles of many short rounds are the steadier figure.
    println!(
        "{:<44} {:>9} {:>9} {:>15}",
        "configuration", "ns/op", "p25", "spread"
    );
    for ((name, _), v) in benches.iter().zip(results) {
        // NaN: a round left out (events lost).
        let mut v: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            println!("{name:<44} (every round lost events)");
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<44} {:>9.2} {:>9.2} {:>15}",
            v[v.len() / 2],
            v[v.len() / 4],
            format!("{:.2}..{:.2}", v[0], v[v.len() - 1])
        );
    }
}
