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
