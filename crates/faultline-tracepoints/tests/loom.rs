//! Model check of the SRCU reader/updater protocol (`src/srcu.rs`) with loom.
//!
//! `src/srcu.rs` is compiled here unchanged, against a `sync` module backed by loom's atomics,
//! mutex and scheduler, so loom explores the production code. Protected objects hold a loom
//! `UnsafeCell`: the reader reads it, the updater poisons it after the grace period (standing in
//! for the free). A grace period that ends too early is a read concurrent with a write, which
//! loom reports (and the reader's assertion catches the poisoned value).
//!
//! Runs are bounded (`preemption_bound`), so each model takes seconds.

#![allow(dead_code)]

mod sync {
    pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::Mutex;

    /// loom treats SeqCst accesses as AcqRel; the fence gives it the SeqCst total order the real
    /// build gets from its SeqCst accesses (see src/sync.rs).
    pub(crate) fn sc_fence_for_model() {
        fence(Ordering::SeqCst)
    }

    pub(crate) fn cpu_hint() -> usize {
        0
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

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicPtr;
use loom::sync::Arc;
use srcu::{rcu_load, rcu_swap, Broken, Srcu};

const DEAD: u64 = 0xdead;

struct Obj {
    val: UnsafeCell<u64>,
}

fn new_obj(v: u64) -> *mut Obj {
    Box::into_raw(Box::new(Obj {
        val: UnsafeCell::new(v),
    }))
}

/// Poison then free an object the updater retired (after its grace period).
fn reclaim(p: *mut Obj) {
    // SAFETY: `p` came from new_obj and was swapped out; the caller ran a grace period.
    let b = unsafe { Box::from_raw(p) };
    b.val.with_mut(|v| {
        // SAFETY: loom checks that no reader access is concurrent with this write.
        unsafe { *v = DEAD }
    });
}

/// One read-side section on `slot`: load the pointer and read the object.
fn reader(d: &Srcu, p: &AtomicPtr<Obj>, slot: usize) {
    let g = d.read_lock_on(slot);
    // SAFETY: `p` only holds objects from new_obj, reclaimed after a grace period.
    if let Some(o) = unsafe { rcu_load(p, &g) } {
        let v = o.val.with(|v| {
            // SAFETY: loom checks this read against the updater's poisoning write.
            unsafe { *v }
        });
        assert_ne!(v, DEAD, "reader saw a reclaimed object");
    }
    drop(g);
}

#[derive(Clone, Copy)]
enum Gp {
    Correct,
    Broken(Broken),
}

/// `readers` reader threads (reader k uses slot k, modelling different CPUs) race with an
/// updater that replaces the object `updates` times, each followed by a grace period and
/// reclamation of the old object.
fn model(gp: Gp, readers: usize, updates: u64, bound: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    let execs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let e2 = execs.clone();
    b.check(move || {
        e2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = Arc::new(Srcu::new(2));
        let p = Arc::new(AtomicPtr::new(new_obj(1)));
        let ths: Vec<_> = (0..readers)
            .map(|k| {
                let (d, p) = (d.clone(), p.clone());
                loom::thread::spawn(move || reader(&d, &p, k))
            })
            .collect();
        for u in 0..updates {
            let old = rcu_swap(&p, new_obj(2 + u));
            match gp {
                Gp::Correct => d.synchronize(),
                Gp::Broken(br) => d.synchronize_broken(br),
            }
            reclaim(old);
        }
        for t in ths {
            t.join().unwrap();
        }
        let last = rcu_swap(&p, std::ptr::null_mut());
        reclaim(last);
    });
    println!(
        "loom explored {} executions",
        execs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn expect_failure(gp: Gp, readers: usize, updates: u64, bound: usize) {
    let r = std::panic::catch_unwind(|| model(gp, readers, updates, bound));
    assert!(
        r.is_err(),
        "loom did not find the bug in the broken grace period"
    );
}

#[test]
fn correct_one_reader_one_update() {
    model(Gp::Correct, 1, 1, 3);
}

#[test]
fn correct_one_reader_two_updates() {
    // Covers the straggler: a reader that read `phase` before the first flip and increments
    // its counter after the first grace period.
    model(Gp::Correct, 1, 2, 4);
}

#[test]
fn correct_two_readers_on_two_slots() {
    model(Gp::Correct, 2, 1, 3);
}

#[test]
fn correct_two_readers_two_updates() {
    model(Gp::Correct, 2, 2, 2);
}

#[test]
fn broken_skip_active_wait_is_caught() {
    // A reader inside the active phase when the updater flips is not waited for.
    expect_failure(Gp::Broken(Broken::SkipActiveWait), 1, 1, 3);
}

#[test]
fn broken_skip_inactive_wait_is_caught() {
    // Needs two updates: the reader reads phase 0, stalls through the first grace period,
    // then counts itself on index 0 which is inactive during the second one.
    expect_failure(Gp::Broken(Broken::SkipInactiveWait), 1, 2, 3);
}
