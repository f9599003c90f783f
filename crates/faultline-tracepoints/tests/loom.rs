//! Model check of the SRCU reader/updater protocol (`src/srcu.rs`) with loom, in both
//! read-side flavours.
//!
//! `src/srcu.rs` is compiled here unchanged, against a `sync` module backed by loom's atomics,
//! mutex and scheduler, so loom explores the production code. Protected objects hold a loom
//! `UnsafeCell`: the reader reads it, the updater poisons it after the grace period (standing in
//! for the free). A grace period that ends too early is a read concurrent with a write, which
//! loom reports (and the reader's assertion catches the poisoned value).
//!
//! # Modelling rseq and membarrier
//! * CPU `k` is a mutex. An rseq critical section holds its CPU's mutex, so it is atomic with
//!   respect to everything else that runs on that CPU (which is what the kernel's restart on
//!   preemption, migration or signal gives). Inside it the counter is updated with a plain
//!   load and a `Release` store: the rseq commit is a plain `mov`, and on x86-TSO every store
//!   is a release store; store-buffering (the store becoming visible after a later load) is
//!   still allowed by the model, which is exactly the hazard.
//! * A thread's CPU is a loom thread-local the test sets; a reader may "migrate" between its
//!   lock and its unlock (lock on CPU 0, unlock on CPU 1).
//! * `membarrier` is locking and unlocking every CPU's mutex in turn. Sound for this protocol:
//!   the real call guarantees that each thread executes a full barrier at some point `B`
//!   between the call's start and end (a CPU's timeline is sequential, so `B` splits the
//!   critical sections that ran on that CPU into before and after). The mutex gives exactly
//!   that split, at a CS boundary: a CS released before the updater takes the mutex
//!   happens-before the updater's later loads (the CS's store is visible); a CS that takes
//!   the mutex after the updater released it happens-after the updater's earlier pointer swap
//!   (the reader's later pointer load sees it). A real `B` can only fall between
//!   instructions, and the only effect of the CS is its final store, so no real `B` splits a CS
//!   in a way the model leaves out. The model is weaker than reality elsewhere (a reader's
//!   accesses *outside* its CSs get no ordering from the mutex), which can only make loom
//!   report more, not less.
//! * The atomic flavour's `SeqCst` RMWs are `AcqRel` in loom; `sc_fence_for_model` adds the
//!   `fence(SeqCst)` that gives loom the total order the real build gets (see src/sync.rs).
//!
//! Runs are bounded (`preemption_bound`), so each model takes seconds.

#![allow(dead_code)]

mod sync {
    use std::cell::Cell;

    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::Mutex;

    loom::lazy_static! {
        /// The CPUs of the model: an rseq critical section on CPU k holds CPUS[k].
        static ref CPUS: [Mutex<()>; 2] = [Mutex::new(()), Mutex::new(())];
    }

    loom::lazy_static! {
        /// The timelines of the model's threads (`hazard.rs`): thread k's accesses that the
        /// updater orders with membarrier run holding THREADS[k].
        static ref THREADS: [Mutex<()>; 3] = [Mutex::new(()), Mutex::new(()), Mutex::new(())];
    }

    loom::thread_local! {
        /// The CPU the current model thread runs on.
        static CPU: Cell<usize> = Cell::new(0);
        /// The timeline of the current model thread.
        static THREAD: Cell<usize> = Cell::new(0);
    }

    /// Name the calling model thread's timeline `k` (each reader its own).
    pub(crate) fn set_thread(k: usize) {
        THREAD.with(|t| t.set(k));
    }

    /// Run `f` at one point of the calling thread's timeline (test code only: a reader taking
    /// its hazard record, whose only store that matters to the updater is the single
    /// compare-exchange that pushes the record; the real membarrier orders it like H1).
    pub(crate) fn timeline<R>(f: impl FnOnce() -> R) -> R {
        let _t = THREADS[THREAD.with(|t| t.get())].lock().unwrap();
        f()
    }

    /// A hazard announcement (H1): a plain store at one point of the thread's timeline.
    pub(crate) fn asym_store<T>(a: &AtomicPtr<T>, v: *mut T, o: Ordering) {
        let _t = THREADS[THREAD.with(|t| t.get())].lock().unwrap();
        a.store(v, o)
    }

    /// The slot reload (H2): a plain load at one point of the thread's timeline.
    pub(crate) fn asym_load<T>(a: &AtomicPtr<T>, o: Ordering) -> *mut T {
        let _t = THREADS[THREAD.with(|t| t.get())].lock().unwrap();
        a.load(o)
    }

    /// Move the calling model thread to CPU `k` (a migration).
    pub(crate) fn set_cpu(k: usize) {
        CPU.with(|c| c.set(k));
    }

    /// Compiler barriers do nothing in the model (loom never reorders program order).
    pub(crate) fn compiler_fence(_: Ordering) {}

    /// loom treats SeqCst accesses as AcqRel; the fence gives it the SeqCst total order the real
    /// build gets from its SeqCst accesses (see src/sync.rs).
    pub(crate) fn sc_fence_for_model() {
        fence(Ordering::SeqCst)
    }

    pub(crate) fn cpu_hint() -> usize {
        CPU.with(|c| c.get())
    }

    pub(crate) fn percpu_available() -> Option<isize> {
        Some(0)
    }

    /// An rseq critical section adding 1 to the current CPU's word.
    pub(crate) fn percpu_inc<S>(_off: isize, slots: &[S], word: impl Fn(&S) -> &AtomicU64) -> bool {
        let cpu = cpu_hint();
        assert!(cpu < slots.len() && cpu < 2);
        let _cs = CPUS[cpu].lock().unwrap();
        let w = word(&slots[cpu]);
        // Relaxed: under the CPU's mutex, the only writers of the word.
        let v = w.load(Ordering::Relaxed);
        // Release: what a plain x86 store is (see the module doc).
        w.store(v + 1, Ordering::Release);
        true
    }

    std::thread_local! {
        /// Test knob (per OS thread, i.e. per test: loom runs a model's threads on the thread
        /// that called it): a deliberately wrong membarrier that skips CPU 0.
        pub(crate) static MEMBARRIER_SKIPS_CPU0: std::cell::Cell<bool> =
            const { std::cell::Cell::new(false) };
    }

    /// membarrier(PRIVATE_EXPEDITED): a barrier on every CPU (see the module doc).
    pub(crate) fn membarrier() -> bool {
        let skip0 = MEMBARRIER_SKIPS_CPU0.with(|s| s.get());
        for (k, c) in CPUS.iter().enumerate() {
            if k == 0 && skip0 {
                continue;
            }
            drop(c.lock().unwrap());
        }
        // Every thread's barrier point B: splits its timeline (hazard.rs, and the module doc).
        for t in THREADS.iter() {
            drop(t.lock().unwrap());
        }
        true
    }

    pub(crate) fn wait_backoff(_polls: u32) {
        loom::thread::yield_now();
    }

    pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
        m.lock().unwrap()
    }
}

#[path = "../src/srcu.rs"]
mod srcu;

#[path = "../src/hazard.rs"]
mod hazard;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicPtr;
use loom::sync::Arc;
use srcu::{rcu_load, rcu_swap, Broken, Flavour, Srcu};

const DEAD: u64 = 0xdead;

struct Obj {
    val: UnsafeCell<u64>,
}

fn new_obj(v: u64) -> *mut Obj {
    Box::into_raw(Box::new(Obj {
        val: UnsafeCell::new(v),
    }))
}

/// Poison an object the updater retired (after its grace period), standing in for the free.
/// The memory itself is released by [`free_all`] once every reader has been joined, so a
/// reader that still reaches it is reported as a data race (poisoning concurrent with its
/// read) or sees the poison, never as a loom-internal error.
fn reclaim(p: *mut Obj) {
    // SAFETY: `p` came from new_obj and is only freed by free_all after the readers finished.
    let o = unsafe { &*p };
    o.val.with_mut(|v| {
        // SAFETY: loom checks that no reader access is concurrent with this write.
        unsafe { *v = DEAD }
    });
}

/// Free retired objects (no reader is left).
fn free_all(retired: Vec<*mut Obj>) {
    for p in retired {
        // SAFETY: from new_obj, freed once, after every reader thread was joined.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// One read-side section: entered on CPU `cpus.0`, left on CPU `cpus.1` (a migration if they
/// differ); loads the pointer and reads the object.
fn reader(d: &Srcu, p: &AtomicPtr<Obj>, cpus: (usize, usize)) {
    reader_with(d, p, cpus, false)
}

/// [`reader`], entering with `read_lock_fast` (the tracing fast path's read side) if `fast`.
fn reader_with(d: &Srcu, p: &AtomicPtr<Obj>, cpus: (usize, usize), fast: bool) {
    sync::set_cpu(cpus.0);
    let g = if fast {
        d.read_lock_fast()
    } else {
        d.read_lock()
    };
    // SAFETY: `p` only holds objects from new_obj, reclaimed after a grace period.
    if let Some(o) = unsafe { rcu_load(p, &g) } {
        let v = o.val.with(|v| {
            // SAFETY: loom checks this read against the updater's poisoning write.
            unsafe { *v }
        });
        assert_ne!(v, DEAD, "reader saw a reclaimed object");
    }
    sync::set_cpu(cpus.1);
    drop(g);
}

#[derive(Clone, Copy)]
enum Gp {
    Correct,
    Broken(Broken),
}

/// Reader threads (reader k enters on CPU `cpus[k].0` and leaves on `cpus[k].1`) race with an
/// updater (the main thread, on CPU 0 when it matters) that replaces the object `updates`
/// times, each followed by a grace period and reclamation of the old object.
fn model(flavour: Flavour, gp: Gp, cpus: &'static [(usize, usize)], updates: u64, bound: usize) {
    model_switching(flavour, None, gp, cpus, updates, bound)
}

/// [`model`], with the updater switching the domain to flavour `switch` (if any) while the
/// readers run, just before its first update: readers may then be in either flavour.
fn model_switching(
    flavour: Flavour,
    switch: Option<Flavour>,
    gp: Gp,
    cpus: &'static [(usize, usize)],
    updates: u64,
    bound: usize,
) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    let execs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let e2 = execs.clone();
    b.check(move || {
        e2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = Arc::new(Srcu::new(2));
        assert_eq!(d.set_flavour(flavour), flavour);
        let p = Arc::new(AtomicPtr::new(new_obj(1)));
        let ths: Vec<_> = cpus
            .iter()
            .map(|&c| {
                let (d, p) = (d.clone(), p.clone());
                loom::thread::spawn(move || reader(&d, &p, c))
            })
            .collect();
        if let Some(f) = switch {
            assert_eq!(d.set_flavour(f), f);
        }
        let mut retired = Vec::new();
        for u in 0..updates {
            let old = rcu_swap(&p, new_obj(2 + u));
            match gp {
                Gp::Correct => d.synchronize(),
                Gp::Broken(br) => d.synchronize_broken(br),
            }
            reclaim(old);
            retired.push(old);
        }
        for t in ths {
            t.join().unwrap();
        }
        retired.push(rcu_swap(&p, std::ptr::null_mut()));
        free_all(retired);
    });
    println!(
        "loom explored {} executions",
        execs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// The tracing fast path: the domain stays in the atomic flavour for ordinary readers, but
/// `enable_rseq_readers` lets `read_lock_fast` readers use the rseq counters. Reader k uses
/// `read_lock_fast` if `fast[k]`. The grace period must still issue the membarrier.
fn model_fast(gp: Gp, cpus: &'static [(usize, usize)], fast: &'static [bool], bound: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(move || {
        let d = Arc::new(Srcu::new(2));
        assert_eq!(d.set_flavour(Flavour::Atomic), Flavour::Atomic);
        assert!(d.enable_rseq_readers());
        assert_eq!(d.flavour(), Flavour::Atomic);
        let p = Arc::new(AtomicPtr::new(new_obj(1)));
        let ths: Vec<_> = cpus
            .iter()
            .zip(fast)
            .map(|(&c, &f)| {
                let (d, p) = (d.clone(), p.clone());
                loom::thread::spawn(move || reader_with(&d, &p, c, f))
            })
            .collect();
        let old = rcu_swap(&p, new_obj(2));
        match gp {
            Gp::Correct => d.synchronize(),
            Gp::Broken(br) => d.synchronize_broken(br),
        }
        reclaim(old);
        for t in ths {
            t.join().unwrap();
        }
        free_all(vec![old, rcu_swap(&p, std::ptr::null_mut())]);
    });
}

fn expect_failure(
    flavour: Flavour,
    gp: Gp,
    cpus: &'static [(usize, usize)],
    updates: u64,
    bound: usize,
) {
    let r = std::panic::catch_unwind(|| model(flavour, gp, cpus, updates, bound));
    let Err(e) = r else {
        panic!("loom did not find the bug in the broken grace period");
    };
    let msg = e
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| e.downcast_ref::<&str>().copied())
        .unwrap_or("");
    // The failure must be the use-after-free itself, not some other panic.
    assert!(
        msg.contains("Concurrent read and write") || msg.contains("reader saw a reclaimed"),
        "unexpected failure: {msg}"
    );
    println!("loom found it: {}", msg.lines().next().unwrap_or(""));
}

const ONE: &[(usize, usize)] = &[(0, 0)];
const ONE_MIGRATING: &[(usize, usize)] = &[(0, 1)];
const TWO: &[(usize, usize)] = &[(0, 0), (1, 1)];
const TWO_MIGRATING: &[(usize, usize)] = &[(0, 1), (1, 0)];

// ---- atomic flavour (lock xadd readers, SeqCst fence in the updater) ----

#[test]
fn atomic_correct_one_reader_one_update() {
    model(Flavour::Atomic, Gp::Correct, ONE, 1, 3);
}

#[test]
fn atomic_correct_one_reader_two_updates() {
    // Covers the straggler: a reader that read `phase` before the first flip and increments
    // its counter after the first grace period.
    model(Flavour::Atomic, Gp::Correct, ONE, 2, 4);
}

#[test]
fn atomic_correct_two_readers_on_two_slots() {
    model(Flavour::Atomic, Gp::Correct, TWO, 1, 3);
}

#[test]
fn atomic_correct_two_readers_two_updates() {
    model(Flavour::Atomic, Gp::Correct, TWO, 2, 2);
}

#[test]
fn atomic_broken_skip_active_wait_is_caught() {
    // A reader inside the active phase when the updater flips is not waited for.
    expect_failure(
        Flavour::Atomic,
        Gp::Broken(Broken::SkipActiveWait),
        ONE,
        1,
        3,
    );
}

#[test]
fn atomic_broken_skip_inactive_wait_is_caught() {
    // Needs two updates: the reader reads phase 0, stalls through the first grace period,
    // then counts itself on index 0 which is inactive during the second one.
    expect_failure(
        Flavour::Atomic,
        Gp::Broken(Broken::SkipInactiveWait),
        ONE,
        2,
        3,
    );
}

// ---- rseq flavour (per-CPU plain increments, membarrier in the updater) ----

#[test]
fn rseq_correct_one_reader_one_update() {
    model(Flavour::Rseq, Gp::Correct, ONE, 1, 5);
}

#[test]
fn rseq_correct_migrating_reader_one_update() {
    model(Flavour::Rseq, Gp::Correct, ONE_MIGRATING, 1, 5);
}

#[test]
fn rseq_correct_one_reader_two_updates() {
    // The straggler case, as in the atomic flavour.
    model(Flavour::Rseq, Gp::Correct, ONE_MIGRATING, 2, 4);
}

#[test]
fn rseq_correct_two_migrating_readers() {
    model(Flavour::Rseq, Gp::Correct, TWO_MIGRATING, 1, 3);
}

#[test]
fn rseq_correct_two_readers_two_updates() {
    model(Flavour::Rseq, Gp::Correct, TWO, 2, 2);
}

#[test]
fn rseq_broken_skip_membarrier_is_caught() {
    // Store-buffering: the reader's plain lock increment is not yet visible when the updater
    // sums the counters, and its pointer load ran before the swap became visible to it.
    expect_failure(Flavour::Rseq, Gp::Broken(Broken::OmitMembarrier), ONE, 1, 3);
}

#[test]
fn mixed_flavours_switch_to_atomic() {
    // Readers enter in either flavour; the updater must still issue the membarrier (the rseq
    // flavour was enabled once) and sum both sets of counters.
    model_switching(
        Flavour::Rseq,
        Some(Flavour::Atomic),
        Gp::Correct,
        TWO_MIGRATING,
        1,
        3,
    );
}

#[test]
fn mixed_flavours_switch_to_rseq() {
    model_switching(
        Flavour::Atomic,
        Some(Flavour::Rseq),
        Gp::Correct,
        TWO_MIGRATING,
        1,
        3,
    );
}

#[test]
fn rseq_membarrier_missing_a_cpu_is_caught() {
    // The model's membarrier must reach the reader's CPU: one that skips CPU 0 lets the
    // store-buffering outcome through (checks that the model is not vacuously strong).
    sync::MEMBARRIER_SKIPS_CPU0.with(|s| s.set(true));
    expect_failure(Flavour::Rseq, Gp::Correct, ONE, 1, 3);
    sync::MEMBARRIER_SKIPS_CPU0.with(|s| s.set(false));
}

#[test]
fn rseq_broken_skip_active_wait_is_caught() {
    expect_failure(Flavour::Rseq, Gp::Broken(Broken::SkipActiveWait), ONE, 1, 3);
}

#[test]
fn rseq_broken_skip_inactive_wait_is_caught() {
    expect_failure(
        Flavour::Rseq,
        Gp::Broken(Broken::SkipInactiveWait),
        ONE,
        2,
        3,
    );
}

// ---- the tracing fast path's read side (read_lock_fast on an atomic-flavour domain) ----

#[test]
fn fast_readers_correct_with_an_atomic_reader() {
    model_fast(Gp::Correct, TWO, &[true, false], 3);
}

#[test]
fn fast_reader_correct_migrating() {
    model_fast(Gp::Correct, ONE_MIGRATING, &[true], 3);
}

#[test]
fn fast_reader_broken_skip_membarrier_is_caught() {
    // The domain's own flavour is atomic, but a fast reader's increment is a plain store:
    // a grace period without the membarrier frees under it.
    let r = std::panic::catch_unwind(|| {
        model_fast(Gp::Broken(Broken::OmitMembarrier), ONE, &[true], 3)
    });
    let Err(e) = r else {
        panic!("loom did not find the bug in the broken grace period");
    };
    let msg = e
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| e.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        msg.contains("Concurrent read and write") || msg.contains("reader saw a reclaimed"),
        "unexpected failure: {msg}"
    );
}

// ---- the fast path's hazard pointers (src/hazard.rs) ----

/// Reader threads (each its own timeline, 1..) announce the slot's object, read it, and leave;
/// reader k nests `nest[k]` deep (a signal handler tracing inside a trace). The updater (the
/// main thread, timeline 0) replaces the object, waits (with or without the membarrier), and
/// poisons the old one.
fn model_hazard(with_membarrier: bool, nest: &'static [usize], bound: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(move || {
        let hz = Arc::new(hazard::Hazards::new());
        let p = Arc::new(AtomicPtr::new(new_obj(1)));
        let ths: Vec<_> = nest
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let (hz, p) = (hz.clone(), p.clone());
                loom::thread::spawn(move || {
                    sync::set_thread(k + 1);
                    let rec = sync::timeline(|| hz.take());
                    let mut held = Vec::new();
                    for i in 0..n {
                        if i == 0 {
                            // The fast path's inline form: the first word only.
                            let seen = p.load(sync::Ordering::Relaxed);
                            if let Some(o) = rec.protect_first(&p, seen) {
                                held.push((o, None));
                            }
                        } else if let Some((o, a)) = rec.protect(&p) {
                            held.push((o, Some(a)));
                        }
                    }
                    for &(o, _) in &held {
                        // SAFETY: announced and confirmed; the updater poisons it only after
                        // its hazard wait.
                        let v = unsafe { &*o }.val.with(|v| {
                            // SAFETY: loom checks this read against the poisoning write.
                            unsafe { *v }
                        });
                        assert_ne!(v, DEAD, "reader saw a reclaimed object");
                    }
                    for (_, a) in held.into_iter().rev() {
                        match a {
                            Some(a) => rec.release(a),
                            None => rec.release_first(),
                        }
                    }
                    assert_eq!(rec.depth(), 0);
                    hz.give_back(rec);
                })
            })
            .collect();
        sync::set_thread(0);
        let old = rcu_swap(&p, new_obj(2));
        if with_membarrier {
            hz.synchronize(&[old as *const ()]);
        } else {
            hz.synchronize_without_membarrier(&[old as *const ()]);
        }
        reclaim(old);
        for t in ths {
            t.join().unwrap();
        }
        free_all(vec![old, rcu_swap(&p, std::ptr::null_mut())]);
    });
}

#[test]
fn hazard_correct_one_reader() {
    model_hazard(true, &[1], 3);
}

#[test]
fn hazard_correct_nested_reader() {
    model_hazard(true, &[2], 3);
}

#[test]
fn hazard_correct_two_readers() {
    model_hazard(true, &[1, 1], 2);
}

#[test]
fn hazard_broken_skip_membarrier_is_caught() {
    // Without the membarrier, the reader's announcement (a plain store) and the updater's
    // swap can each miss the other (store buffering): the updater frees under the reader.
    let r = std::panic::catch_unwind(|| model_hazard(false, &[1], 3));
    let Err(e) = r else {
        panic!("loom did not find the bug in the broken hazard wait");
    };
    let msg = e
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| e.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        msg.contains("Concurrent read and write") || msg.contains("reader saw a reclaimed"),
        "unexpected failure: {msg}"
    );
    println!("loom found it: {}", msg.lines().next().unwrap_or(""));
}
