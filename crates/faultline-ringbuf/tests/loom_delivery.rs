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
//!
//! Third model, buffers indexed by concurrency id (`BufferIndex::Cid`): a writer whose id
//! changed between reserve and commit commits REMOTE into the buffer it reserved in (broken
//! variant: into its current id's buffer, which never completes the reserved sub-buffer). The
//! flush of a concurrency-id buffer has its own model, `tests/loom_cid_flush.rs`.

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

// Third model: buffers indexed by concurrency id (`BufferIndex::Cid`). An id is a mutex like a
// CPU (a critical section keyed on id k runs while its thread holds k; the kernel moves ids
// between threads only while they are not running, which aborts their sections). Writer A
// reserved one byte in buffer 0 while holding id 0; a scheduler thread then gives id 0 to
// writer B and id 1 to A (A was descheduled); B reserves the other byte of the sub-buffer and
// commits LOCAL; A commits with the real `commit`, naming the buffer it reserved in. The
// membarrier of a per-cid REMOTE commit fences every CPU: acquiring and releasing every id's
// mutex. Property: buffer 0's sub-buffer completes and someone delivers it. The broken variant
// commits into the buffer of A's *current* id (the slot recomputed at commit): buffer 0 never
// completes.

struct CidModel {
    local: [AtomicU64; 2],
    remote: [AtomicU64; 2],
    ids: [Mutex<()>; 2],
}

#[derive(Clone, Copy)]
struct CidWriter<'a> {
    m: &'a CidModel,
    /// The buffer this commit goes to.
    buf: usize,
    /// The concurrency id the writer holds now.
    id: &'a AtomicU32,
}

impl CommitCounters for CidWriter<'_> {
    fn local_add(&self, id: u32, n: u64) -> Result<u64, NotOnCpu> {
        let _cs = self.m.ids[id as usize].lock().unwrap();
        if self.id.load(Ordering::Relaxed) != id {
            return Err(NotOnCpu);
        }
        let v = self.m.local[self.buf].load(Ordering::Relaxed) + n;
        self.m.local[self.buf].store(v, Ordering::Release);
        Ok(v)
    }
    fn remote_add(&self, n: u64) -> u64 {
        self.m.remote[self.buf].fetch_add(n, Ordering::AcqRel) + n
    }
    fn load_local(&self) -> u64 {
        self.m.local[self.buf].load(Ordering::Acquire)
    }
    fn load_remote(&self) -> u64 {
        self.m.remote[self.buf].load(Ordering::Acquire)
    }
    fn barrier_cpu(&self, _id: u32) {
        // membarrier on every CPU: whoever holds any id has finished its section.
        for m in &self.m.ids {
            drop(m.lock().unwrap());
        }
    }
}

fn run_cid(commit_to_reserved: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let m = Arc::new(CidModel {
            local: [AtomicU64::new(0), AtomicU64::new(0)],
            remote: [AtomicU64::new(0), AtomicU64::new(0)],
            ids: [Mutex::new(()), Mutex::new(())],
        });
        // A holds id 0 and has reserved byte 0 of buffer 0's sub-buffer (complete at 2).
        let id_a = Arc::new(AtomicU32::new(0));
        let id_b = Arc::new(AtomicU32::new(u32::MAX));
        let seen = Arc::new(AtomicU32::new(0));
        let sched = {
            let (m, id_a, id_b) = (m.clone(), id_a.clone(), id_b.clone());
            thread::spawn(move || {
                // The handoff happens while neither runs a section on id 0.
                let _g0 = m.ids[0].lock().unwrap();
                id_a.store(1, Ordering::Relaxed);
                id_b.store(0, Ordering::Release);
            })
        };
        let writer_b = {
            let (m, id_b, seen) = (m.clone(), id_b.clone(), seen.clone());
            thread::spawn(move || {
                // B runs once it holds id 0; its reservation is byte 1 of buffer 0.
                while id_b.load(Ordering::Acquire) != 0 {
                    thread::yield_now();
                }
                let w = CidWriter {
                    m: &m,
                    buf: 0,
                    id: &id_b,
                };
                let (k, done) = commit(&w, 0, 1, 2);
                assert_eq!(k, CommitKind::Local);
                if done {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // A commits its reservation made in buffer 0 with id 0.
        let (buf, reserved_id) = if commit_to_reserved {
            (0, 0)
        } else {
            // Broken: the buffer of the id A holds at commit time.
            let now = id_a.load(Ordering::Relaxed);
            (now as usize, now)
        };
        let w = CidWriter {
            m: &m,
            buf,
            id: &id_a,
        };
        let (kind, done) = commit(&w, reserved_id, 1, 2);
        if done {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        sched.join().unwrap();
        writer_b.join().unwrap();
        if commit_to_reserved && id_a.load(Ordering::Relaxed) == 1 && kind == CommitKind::Local {
            // A LOCAL commit is only possible before the handoff (A still held id 0).
            assert_eq!(m.local[0].load(Ordering::Relaxed), 2);
        }
        assert_eq!(
            m.local[0].load(Ordering::Relaxed) + m.remote[0].load(Ordering::Relaxed),
            2,
            "buffer 0's sub-buffer never completes"
        );
        assert!(seen.load(Ordering::Relaxed) >= 1, "missed delivery");
    });
}

#[test]
fn cid_changed_between_reserve_and_commit_commits_remote_into_reserved_buffer() {
    run_cid(true);
}

/// The deliberately broken variant: commit into the buffer of the id held at commit time.
#[test]
#[should_panic(expected = "never completes")]
fn broken_cid_commit_into_current_id_buffer_never_completes() {
    run_cid(false);
}
