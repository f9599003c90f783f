//! Real-abort tests: per-CPU counters updated only with rseq critical sections, under more
//! threads than CPUs, SIGUSR1 storms and forced migrations; the totals must be exact and
//! the kernel must actually have aborted some critical sections.

use faultline_rseq::{self as rseq, Cpu};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const SLOT: usize = 16; // u64s per CPU slot: 128 bytes, its own cache lines

struct PerCpu {
    words: Vec<std::cell::UnsafeCell<u64>>,
}
// SAFETY: every word of CPU k is only written by rseq critical sections running on CPU k
// (the rule the module doc states), and read only after all writers joined.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    fn new(n: u32) -> Self {
        PerCpu {
            words: (0..n as usize * SLOT)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        }
    }
    fn ptr(&self, cpu: u32, i: usize) -> *mut u64 {
        self.words[cpu as usize * SLOT + i].get()
    }
}

extern "C" fn on_usr1(_: libc::c_int) {}

fn install_usr1() {
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

#[test]
fn addv_exact_under_aborts_signals_and_migrations() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    install_usr1();
    let ncpu = rseq::possible_cpus();
    let cpus = rseq::allowed_cpus();
    let counters = Arc::new(PerCpu::new(ncpu));
    let stop = Arc::new(AtomicBool::new(false));
    let aborts_before = rseq::abort_count();
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 20_000;
    let tids = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let mut hs = Vec::new();
    for t in 0..THREADS {
        let (counters, tids, cpus) = (counters.clone(), tids.clone(), cpus.clone());
        hs.push(std::thread::spawn(move || {
            // SAFETY: pthread_self is always valid for the calling thread.
            tids[t].store(unsafe { libc::pthread_self() } as u64, Ordering::Release); // pairs with the signaller's Acquire load
            let mut mismatches = 0u64;
            for i in 0..PER_THREAD {
                if i % 1000 == 0 && cpus.len() > 1 {
                    let _ = rseq::pin_to_cpu(cpus[(i as usize / 1000 + t) % cpus.len()]);
                }
                loop {
                    let cpu = rseq::current_cpu();
                    // SAFETY: rseq available; the word belongs to `cpu`, written only by rseq
                    // on `cpu`.
                    match unsafe { rseq::addv_delayed_on::<Cpu>(cpu, counters.ptr(cpu, 0), 1, 200) }
                    {
                        Ok(_) => break,
                        Err(rseq::RseqError::CpuMismatch) => mismatches += 1,
                        Err(_) => {}
                    }
                }
            }
            mismatches
        }));
    }
    let signaller = {
        let (stop, tids) = (stop.clone(), tids.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for t in tids.iter() {
                    let id = t.load(Ordering::Acquire); // pairs with the worker's Release store
                    if id != 0 {
                        // SAFETY: the thread ids stay valid until the workers are joined, which
                        // happens before `stop` is set... so a late signal can only hit a thread
                        // that is still alive or has just exited; pthread_kill on an exited but
                        // unjoined thread is well defined (ESRCH or delivered to nobody).
                        unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
                        sent += 1;
                    }
                }
                std::thread::yield_now();
            }
            sent
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let sent = signaller.join().unwrap();
    // SAFETY: every writer thread has been joined, so nothing writes the counters any more;
    // ptr(c, 0) is inside the counters allocation for every c < ncpu.
    let total: u64 = (0..ncpu).map(|c| unsafe { *counters.ptr(c, 0) }).sum();
    let aborts = rseq::abort_count() - aborts_before;
    eprintln!("signals sent {sent}, aborts {aborts}");
    assert_eq!(
        total,
        THREADS as u64 * PER_THREAD,
        "every add counted exactly once"
    );
    assert!(
        aborts > 0,
        "the kernel aborted no critical section: the abort path never ran"
    );
}

#[test]
fn cmpeqv_storev_tsc_exact_and_monotonic_per_cpu() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available");
        return;
    }
    // Each CPU slot holds a counter advanced with compare-and-store; each successful store
    // also records the TSC read inside the CS; per CPU those must be strictly ordered by the
    // counter value.
    let ncpu = rseq::possible_cpus();
    let counters = Arc::new(PerCpu::new(ncpu));
    const THREADS: usize = 6;
    const PER_THREAD: usize = 20_000;
    let mut hs = Vec::new();
    for _ in 0..THREADS {
        let counters = counters.clone();
        hs.push(std::thread::spawn(move || {
            let mut got = Vec::with_capacity(PER_THREAD);
            for _ in 0..PER_THREAD {
                loop {
                    let cpu = rseq::current_cpu();
                    let p = counters.ptr(cpu, 0);
                    // SAFETY: plain read of a word only rseq on `cpu` writes; staleness is caught
                    // by the CS compare.
                    let old = unsafe { std::ptr::read_volatile(p) };
                    // SAFETY: rseq available, word owned by `cpu`.
                    match unsafe {
                        rseq::cmpeqv_storev_tsc_delayed_on::<Cpu>(cpu, p, old, old + 1, 50)
                    } {
                        Ok(tsc) => {
                            got.push((cpu, old, tsc));
                            break;
                        }
                        Err(_) => continue,
                    }
                }
            }
            got
        }));
    }
    let mut all: Vec<(u32, u64, u64)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    // SAFETY: every writer thread has been joined, so nothing writes the counters any more;
    // ptr(c, 0) is inside the counters allocation for every c < ncpu.
    let total: u64 = (0..ncpu).map(|c| unsafe { *counters.ptr(c, 0) }).sum();
    assert_eq!(total as usize, THREADS * PER_THREAD);
    // Per CPU: values 0..n each taken exactly once, and TSC increasing with the value.
    for w in all.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[1].1, w[0].1 + 1, "each value reserved exactly once");
            assert!(
                w[1].2 > w[0].2,
                "timestamps follow reservation order on one CPU"
            );
        }
    }
}

#[test]
fn wrong_cpu_is_refused_without_writing() {
    if !rseq::available() {
        return;
    }
    let cpus = rseq::allowed_cpus();
    let here = cpus[0];
    rseq::pin_to_cpu(here).unwrap();
    let mut w = 5u64;
    let other = here + 1;
    // SAFETY: `w` is a local only this thread touches.
    let r = unsafe { rseq::addv_on::<Cpu>(other, &mut w, 1) };
    assert_eq!(r, Err(rseq::RseqError::CpuMismatch));
    assert_eq!(w, 5);
    // SAFETY: as above.
    let r = unsafe { rseq::cmpeqv_storev_on::<Cpu>(here, &mut w, 4, 9) };
    assert_eq!(r, Err(rseq::RseqError::CompareFailed));
    assert_eq!(w, 5);
    // Retry: we may be preempted between reading the CPU and the CS.
    let mut ok = false;
    for _ in 0..100 {
        // SAFETY: as above.
        if unsafe { rseq::cmpeqv_storev_on::<Cpu>(here, &mut w, 5, 9) }.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    assert_eq!(w, 9);
    // SAFETY: as above.
    let n = (0..100).find_map(|_| unsafe { rseq::addv_on::<Cpu>(here, &mut w, 3) }.ok());
    assert_eq!(n, Some(12));
    assert_eq!(w, 12);
    rseq::allow_cpus(&cpus).unwrap();
}

#[test]
fn registration_is_glibcs() {
    match rseq::Registration::get() {
        Some(r) => {
            assert!(
                r.size >= 20,
                "glibc publishes at least the original 20-byte ABI"
            );
            assert!((rseq::current_cpu()) < rseq::possible_cpus());
        }
        None => eprintln!("rseq disabled in this process; fallback path in use"),
    }
    assert!(rseq::membarrier_register() || rseq::Registration::get().is_none());
}

/// The compact-header reserve section stores the compact value exactly when the timestamp it
/// read is within `window` of `floor`, the other one otherwise, and nothing on a failed compare.
#[test]
fn pick_section_stores_the_size_its_timestamp_allows() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    let cpu = rseq::current_cpu();
    rseq::pin_to_cpu(cpu).unwrap();
    let words = PerCpu::new(rseq::possible_cpus());
    let w = words.ptr(cpu, 0);
    let mut picked = (0, 0);
    for i in 0..2000u64 {
        let expect = i * 100;
        // Alternate a recent floor (compact) and an old one (extended).
        let floor = if i % 2 == 0 { rseq::rdtsc() } else { 0 };
        let r = loop {
            // SAFETY: `w` is CPU `cpu`'s word, written only by sections on `cpu` (pinned).
            match unsafe {
                rseq::cmpeqv_storev_tsc_pick_on::<rseq::Cpu>(
                    cpu,
                    w,
                    expect,
                    expect + 100,
                    expect + 1,
                    floor,
                    1 << 27,
                )
            } {
                Err(rseq::RseqError::Aborted) => continue,
                r => break r,
            }
        };
        let ts = r.unwrap();
        // SAFETY: only this thread writes the word.
        let stored = unsafe { *w };
        if ts.wrapping_sub(floor) < 1 << 27 {
            assert_eq!(stored, expect + 1);
            picked.0 += 1;
        } else {
            assert_eq!(stored, expect + 100);
            picked.1 += 1;
        }
        // SAFETY: as above.
        unsafe { *w = expect + 100 };
    }
    assert!(picked.0 > 0 && picked.1 > 0, "{picked:?}");
    // A failed compare stores nothing.
    // SAFETY: as above.
    let r = unsafe { rseq::cmpeqv_storev_tsc_pick_on::<rseq::Cpu>(cpu, w, 1, 2, 3, 0, 1 << 27) };
    assert!(matches!(r, Err(rseq::RseqError::CompareFailed)));
    // SAFETY: as above.
    assert_eq!(unsafe { *w }, 200_000);
}

/// The reserve section that writes its record header: it reads the floor at `v + 16`, and
/// when the timestamp is within the window of it stores the compact word and the shorter end,
/// otherwise both extended words and the longer end; a failed compare stores nothing.
#[test]
fn pick_hdr_section_writes_the_header_it_picks() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    const EXT_LO: u64 = 0xFF_FFFF_FE1F;
    let cpu = rseq::current_cpu();
    rseq::pin_to_cpu(cpu).unwrap();
    std::thread::yield_now();
    let cpu = rseq::current_cpu();
    let off = rseq::offset().unwrap();
    // Written only by this thread, pinned: only sections on `cpu` write it.
    let mut words = Box::new([0u64; 4]);
    let v = words.as_mut_ptr();
    let mut hdr = Box::new([0u8; 32]);
    let clo: u64 = 29 | 24 << 32;
    let word = |h: &[u8; 32], at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    let mut picked = (0, 0);
    for i in 0..2000u64 {
        let expect = i * 100;
        let floor = if i % 2 == 0 { rseq::rdtsc() } else { 0 };
        // SAFETY: this thread's own words (see above).
        unsafe {
            *v = expect;
            *v.add(2) = floor;
        }
        hdr.fill(0xaa);
        let (ts, compact) = loop {
            // SAFETY: `v` and `v + 16` are valid, written only here (pinned to `cpu`); `hdr`
            // is ours (32 bytes); `off` from rseq::offset().
            match unsafe {
                rseq::cmpeqv_storev_tsc_pick_hdr_on::<rseq::Cpu, false, EXT_LO, { 1 << 27 }, 9, 16>(
                    off,
                    cpu,
                    v,
                    expect,
                    expect + 100,
                    hdr.as_mut_ptr(),
                    clo,
                    0,
                )
            } {
                Err(rseq::RseqError::Aborted) => continue,
                r => break r.unwrap(),
            }
        };
        assert_eq!(compact, ts.wrapping_sub(floor) < 1 << 27);
        // SAFETY: as above.
        let (stored, new_floor) = unsafe { (*v, *v.add(2)) };
        assert_eq!(new_floor, ts, "the floor is the timestamp after the commit");
        if compact {
            assert_eq!(stored, expect + 91);
            assert_eq!(word(&hdr, 0), (ts << 5) as u32 as u64 | clo);
            assert_eq!(hdr[8..15], [0xaa; 7], "one word only");
            picked.0 += 1;
        } else {
            assert_eq!(stored, expect + 100);
            assert_eq!(
                word(&hdr, 0) & ((1 << 56) - 1),
                (ts << 40 | EXT_LO) & ((1 << 56) - 1)
            );
            assert_eq!(word(&hdr, 7), ts >> 16 | 24 << 48);
            picked.1 += 1;
        }
    }
    assert!(picked.0 > 0 && picked.1 > 0, "{picked:?}");
    hdr.fill(0xaa);
    // SAFETY: as above.
    let r = unsafe {
        rseq::cmpeqv_storev_tsc_pick_hdr_on::<rseq::Cpu, false, EXT_LO, { 1 << 27 }, 9, 16>(
            off,
            cpu,
            v,
            1,
            2,
            hdr.as_mut_ptr(),
            clo,
            0,
        )
    };
    assert!(matches!(r, Err(rseq::RseqError::CompareFailed)));
    assert_eq!(*hdr, [0xaa; 32], "nothing stored");
    // SAFETY: as above.
    assert_ne!(unsafe { *v.add(2) }, 0, "the floor is left alone");
    rseq::allow_cpus(&(0..rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// The LOCAL commit with its completion test: the add lands exactly once, and the section
/// reports completion exactly when the new value plus the other word reaches `complete`; on
/// another CPU's id it writes nothing.
#[test]
fn addv_sum_adds_and_reports_completion() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    let cpu = rseq::current_cpu();
    rseq::pin_to_cpu(cpu).unwrap();
    std::thread::yield_now();
    let cpu = rseq::current_cpu();
    let off = rseq::offset().unwrap();
    // words[0]: the rseq-owned word; words[8]: the other word (64 bytes on). Written only by
    // this thread, pinned.
    let mut words = Box::new([0u64; 16]);
    let v = words.as_mut_ptr();
    let mut done_seen = 0;
    for i in 1..=1000u64 {
        // SAFETY: this thread's own words.
        unsafe { *v.add(8) = i % 7 };
        let done = loop {
            // SAFETY: `v` and `v + 64` valid, written only here (pinned to `cpu`).
            match unsafe { rseq::addv_sum_at::<Cpu, 64>(off, cpu, v, 3, 1500) } {
                Err(rseq::RseqError::Aborted) => continue,
                r => break r.unwrap(),
            }
        };
        // SAFETY: as above.
        let local = unsafe { *v };
        assert_eq!(local, 3 * i);
        assert_eq!(done, local + i % 7 >= 1500, "at {i}");
        done_seen += done as u32;
    }
    assert!(done_seen > 0 && done_seen < 1000);
    // SAFETY: as above; the section refuses another id before touching `v`.
    let r = unsafe { rseq::addv_sum_at::<Cpu, 64>(off, cpu.wrapping_add(1), v, 3, 0) };
    assert_eq!(r, Err(rseq::RseqError::CpuMismatch));
    assert_eq!(words[0], 3000, "nothing added on a mismatch");
    rseq::allow_cpus(&(0..rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// Overwrite mode's reserve: the extended header is written after the commit store, and a
/// failed section (compare or id) writes neither the offset nor the header.
#[test]
fn hdr_after_section_writes_the_header_only_when_it_commits() {
    if !rseq::available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    const EXT_LO: u64 = 0xFF_FFFF_FE1F;
    let cpu = rseq::current_cpu();
    rseq::pin_to_cpu(cpu).unwrap();
    std::thread::yield_now();
    let cpu = rseq::current_cpu();
    let off = rseq::offset().unwrap();
    let mut words = Box::new([0u64; 4]);
    let v = words.as_mut_ptr();
    let mut hdr = Box::new([0xaau8; 32]);
    let word = |h: &[u8; 32], at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    let hi = 24u64 << 48;
    let mut last = 0;
    for i in 0..200u64 {
        hdr.fill(0xaa);
        let ts = loop {
            // SAFETY: `v` valid, written only here (pinned); `hdr` ours (32 bytes).
            match unsafe {
                rseq::cmpeqv_storev_tsc_hdr_after_on::<Cpu, EXT_LO>(
                    off,
                    cpu,
                    v,
                    i * 50,
                    (i + 1) * 50,
                    hdr.as_mut_ptr(),
                    hi,
                )
            } {
                Err(rseq::RseqError::Aborted) => continue,
                r => break r.unwrap(),
            }
        };
        assert!(ts >= last, "timestamps in offset order");
        last = ts;
        assert_eq!(words[0], (i + 1) * 50);
        assert_eq!(
            word(&hdr, 0) & ((1 << 56) - 1),
            (ts << 40 | EXT_LO) & ((1 << 56) - 1)
        );
        assert_eq!(word(&hdr, 7), ts >> 16 | hi);
        assert_eq!(hdr[15..], [0xaa; 17], "15 bytes only");
    }
    hdr.fill(0xaa);
    for (id, expect) in [(cpu, 1), (cpu.wrapping_add(1), words[0])] {
        // SAFETY: as above.
        let r = unsafe {
            rseq::cmpeqv_storev_tsc_hdr_after_on::<Cpu, EXT_LO>(
                off,
                id,
                v,
                expect,
                7,
                hdr.as_mut_ptr(),
                hi,
            )
        };
        assert!(r.is_err(), "{r:?}");
        assert_eq!(words[0], 200 * 50, "offset unchanged");
        assert_eq!(*hdr, [0xaa; 32], "nothing stored");
    }
    rseq::allow_cpus(&(0..rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}
