//! Model check of the LOCAL/REMOTE commit protocol (`faultline_ringbuf::commit::commit`, the
//! real code) under loom's weak-memory exploration.
//!
//! Model: CPU k is a mutex; a per-CPU critical section (rseq) holds its CPU's mutex, so it is
//! atomic with respect to everything else on that CPU; a thread's current CPU is an atomic a
//! racing "scheduler" thread may change at any point (migration, including between reserve and
//! commit, or during the commit attempt, which then fails with NotOnCpu as an rseq CS would);
//! membarrier(cpu) is acquiring and releasing that CPU's mutex (everything that CPU did before
//! is visible after, everything it does after sees what came before). LOCAL stores are
//! release stores and loads are acquire loads, which is what x86 gives plain accesses —
//! store-buffering is still allowed, exactly the hazard.
//!
//! Property: when every commit of a sub-buffer is done, at least one committer saw it complete
//! (so it was delivered). The same check with a no-op barrier must fail.
//!
//! Second model, the loss snapshot of a sub-buffer close (`faultline_ringbuf::close`, the real
//! `reserve_closing`): two writers each make one reservation that closes the current
//! sub-buffer (whoever comes first closes sub-buffer 0, the other sub-buffer 1) while a third
//! thread counts a loss. The reservation is modelled both as in rseq mode (a critical section
//! holding the CPU's mutex: compare, then release store) and as in atomic mode (AcqRel CAS);
//! `write_offset` is read with an acquire load, the loss counter with relaxed loads. Property:
//! the snapshot in packet 0's header is not larger than packet 1's. The broken variant takes
//! the snapshot after the reservation (the original order) and must fail.

use faultline_ringbuf::close::{reserve_closing, CloseOps, LostCounts};
use faultline_ringbuf::commit::{commit, CommitCounters, CommitKind, NotOnCpu};
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

struct Model {
    local: AtomicU64,
    remote: AtomicU64,
    cpus: [Mutex<()>; 2],
    barrier: bool,
}

#[derive(Clone, Copy)]
struct Writer<'a> {
    m: &'a Model,
    /// The CPU this writer currently runs on.
    on: &'a AtomicU32,
}

impl CommitCounters for Writer<'_> {
    fn local_add(&self, cpu: u32, n: u64) -> Result<u64, NotOnCpu> {
        let _cs = self.m.cpus[cpu as usize].lock().unwrap();
        if self.on.load(Ordering::Relaxed) != cpu {
            return Err(NotOnCpu);
        }
        let v = self.m.local.load(Ordering::Relaxed) + n;
        self.m.local.store(v, Ordering::Release);
        Ok(v)
    }
    fn remote_add(&self, n: u64) -> u64 {
        self.m.remote.fetch_add(n, Ordering::AcqRel) + n
    }
    fn load_local(&self) -> u64 {
        self.m.local.load(Ordering::Acquire)
    }
    fn load_remote(&self) -> u64 {
        self.m.remote.load(Ordering::Acquire)
    }
    fn barrier_cpu(&self, cpu: u32) {
        if self.m.barrier {
            drop(self.m.cpus[cpu as usize].lock().unwrap());
        }
    }
}

/// Two writers reserved on CPU 0 (one byte each; complete = 2). Writer A stays on CPU 0.
/// Writer B is moved to CPU 1 by a scheduler thread racing with its commit (or, with
/// `forced`, has already migrated).
fn run(barrier: bool, forced: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let m = Arc::new(Model {
            local: AtomicU64::new(0),
            remote: AtomicU64::new(0),
            cpus: [Mutex::new(()), Mutex::new(())],
            barrier,
        });
        let on_b = Arc::new(AtomicU32::new(if forced { 1 } else { 0 }));
        let seen = Arc::new(AtomicU32::new(0));
        let a = {
            let (m, seen) = (m.clone(), seen.clone());
            thread::spawn(move || {
                let on = AtomicU32::new(0);
                let (k, done) = commit(&Writer { m: &m, on: &on }, 0, 1, 2);
                assert_eq!(k, CommitKind::Local);
                if done {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let sched = if forced {
            None
        } else {
            let on_b = on_b.clone();
            Some(thread::spawn(move || on_b.store(1, Ordering::Relaxed)))
        };
        let (_, done) = commit(&Writer { m: &m, on: &on_b }, 0, 1, 2);
        if done {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        a.join().unwrap();
        if let Some(s) = sched {
            s.join().unwrap();
        }
        assert_eq!(
            m.local.load(Ordering::Relaxed) + m.remote.load(Ordering::Relaxed),
            2
        );
        assert!(
            seen.load(Ordering::Relaxed) >= 1,
            "missed delivery: nobody saw the sub-buffer complete"
        );
    });
}

#[test]
fn delivery_never_missed_with_membarrier() {
    run(true, true);
}

#[test]
fn delivery_never_missed_with_racing_migration() {
    run(true, false);
}

/// The deliberately broken variant: no membarrier on the REMOTE path. loom must find the
/// store-buffering execution where neither committer sees the complete sum.
#[test]
#[should_panic(expected = "missed delivery")]
fn broken_variant_without_barrier_misses_delivery() {
    run(false, true);
}

struct CloseModel {
    write_offset: AtomicU64,
    lost: AtomicU64,
    cpu: Mutex<()>,
    rseq: bool,
}

impl CloseOps for &CloseModel {
    fn try_reserve(&self, old: u64, new: u64) -> Option<u64> {
        if self.rseq {
            let _cs = self.cpu.lock().unwrap();
            if self.write_offset.load(Ordering::Relaxed) != old {
                return None;
            }
            self.write_offset.store(new, Ordering::Release);
            Some(0)
        } else {
            self.write_offset
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                .ok()
                .map(|_| 0)
        }
    }
    fn load_lost(&self) -> LostCounts {
        LostCounts {
            stalled: self.lost.load(Ordering::Relaxed),
            ..LostCounts::default()
        }
    }
}

/// The original order: reserve, then read the counters.
fn snapshot_after_reserving<O: CloseOps>(o: &O, old: u64, new: u64) -> Option<(u64, LostCounts)> {
    let ts = o.try_reserve(old, new)?;
    Some((ts, o.load_lost()))
}

/// Sub-buffers of 10 bytes; the offset starts inside sub-buffer 0. Returns (sub-buffer closed,
/// loss snapshot).
fn close_one(m: &CloseModel, fixed: bool) -> (u64, u64) {
    loop {
        let old = m.write_offset.load(Ordering::Acquire);
        let new = (old / 10 + 1) * 10 + 5;
        let r = if fixed {
            reserve_closing(&m, old, new)
        } else {
            snapshot_after_reserving(&m, old, new)
        };
        match r {
            Some((_, lost)) => return (old / 10, lost.stalled),
            None => thread::yield_now(),
        }
    }
}

fn run_close(rseq: bool, fixed: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let m = Arc::new(CloseModel {
            write_offset: AtomicU64::new(5),
            lost: AtomicU64::new(0),
            cpu: Mutex::new(()),
            rseq,
        });
        let loser = {
            let m = m.clone();
            thread::spawn(move || {
                m.lost.fetch_add(1, Ordering::Relaxed);
            })
        };
        let other = {
            let m = m.clone();
            thread::spawn(move || close_one(&m, fixed))
        };
        let a = close_one(&m, fixed);
        let b = other.join().unwrap();
        loser.join().unwrap();
        let (first, second) = if a.0 == 0 { (a, b) } else { (b, a) };
        assert_eq!((first.0, second.0), (0, 1));
        assert!(
            first.1 <= second.1,
            "cumulative loss counter decreased: packet 0 has {}, packet 1 has {}",
            first.1,
            second.1
        );
    });
}

#[test]
fn close_snapshot_never_decreases_rseq() {
    run_close(true, true);
}

#[test]
fn close_snapshot_never_decreases_atomic() {
    run_close(false, true);
}

/// The deliberately broken variant (the order before the fix): the closer of packet 0 is
/// preempted after its reservation, packet 1 is closed, a loss is counted, then packet 0 reads
/// the counters. loom must find it.
#[test]
#[should_panic(expected = "cumulative loss counter decreased")]
fn broken_close_snapshot_after_reserving_decreases() {
    run_close(true, false);
}
