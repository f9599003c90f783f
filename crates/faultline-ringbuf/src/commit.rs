//! The commit protocol: split LOCAL/REMOTE commit counters and how delivery is never missed.
//!
//! A reservation made on CPU `k` is committed into **CPU k's** buffer, in the sub-buffer
//! recorded at reserve time (hazard 2), whatever CPU the writer runs on at commit time:
//!
//! * still on `k`: LOCAL commit, an rseq load-add-store of `local` on `k` (no atomic);
//! * migrated: REMOTE commit, an atomic `fetch_add` on `remote`.
//!
//! Readers always use `local + remote`. The committer that brings the sum to the sub-buffer's
//! complete value delivers it (wakes the consumer).
//!
//! ## The missed-delivery race (hazard 1) and its answer
//! A LOCAL committer does `store local; load remote` (plain store, plain load) and a REMOTE
//! committer does `rmw remote; load local`. That is the store-buffering pattern: on x86 the
//! LOCAL committer's store may still sit in its store buffer when the REMOTE committer loads
//! `local`, while the LOCAL committer loads the old `remote`. Both then see an incomplete sum,
//! nobody delivers, and the consumer waits for a sub-buffer that is complete.
//!
//! Answer: an **asymmetric fence paid only on the rare REMOTE path**. If the REMOTE committer
//! does not see completion on its first read, it calls `membarrier(PRIVATE_EXPEDITED_RSEQ,
//! FLAG_CPU, k)` and reads `local` again. When membarrier returns, CPU `k` has executed a full
//! barrier, so either the LOCAL committer's store was before it (the re-read sees it) or its
//! later load of `remote` comes after the barrier (and sees the REMOTE add). At least one of
//! them sees the complete sum. Backstop: the consumer also reads the counters itself when its
//! periodic timer fires, so even a missed wake-up (e.g. membarrier unavailable, or committers
//! in several processes) only delays delivery by one timer period.
//!
//! The function [`commit`] below is the protocol, generic over the counter operations so the
//! same code runs on shared memory with rseq (`ShmCounters` in `channel.rs`) and under the
//! loom model checker (`tests/loom_delivery.rs`), where CPUs are modelled as mutexes, rseq
//! critical sections as sections holding their CPU's mutex, migrations as a racing thread, and
//! membarrier as acquiring and releasing the target CPU's mutex. The model check passes with
//! the barrier and finds the lost delivery when the barrier is a no-op.

/// Where a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// On the reserving CPU, by an rseq critical section (no atomic instruction).
    Local,
    /// From another CPU (the writer migrated), by an atomic add.
    Remote,
}

/// The writer is no longer on the CPU it reserved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOnCpu;

/// Counter operations the protocol needs for one sub-buffer.
///
/// `Copy` because the rare REMOTE path takes the counters by value: an implementation that is
/// a pair of pointers then travels in two registers, and the inlined LOCAL fast path never has
/// to build it in memory just so the cold path can borrow it.
pub trait CommitCounters: Copy {
    /// LOCAL add of `n` as a per-CPU critical section on `cpu`; returns the new `local`.
    /// Retries internally on aborts; fails only if the caller runs on another CPU.
    fn local_add(&self, cpu: u32, n: u64) -> Result<u64, NotOnCpu>;
    /// Atomic add of `n` to `remote` (acquire-release); returns the new `remote`.
    fn remote_add(&self, n: u64) -> u64;
    /// Acquire load of `local`.
    fn load_local(&self) -> u64;
    /// Acquire load of `remote`.
    fn load_remote(&self) -> u64;
    /// Full barrier on `cpu` (membarrier); a no-op in the deliberately broken model.
    fn barrier_cpu(&self, cpu: u32);
    /// The LOCAL half of [`commit`]: [`CommitCounters::local_add`], then
    /// [`CommitCounters::load_remote`]; whether `local + remote >= complete`. An
    /// implementation may fuse the two (the ring buffer does it in one asm block, the same
    /// accesses in the same order), never reorder them.
    #[inline(always)]
    fn local_commit(&self, cpu: u32, n: u64, complete: u64) -> Result<bool, NotOnCpu> {
        let local = self.local_add(cpu, n)?;
        Ok(local.wrapping_add(self.load_remote()) >= complete)
    }
}

/// Commit `n` bytes of a reservation made on `cpu` whose sub-buffer is complete at sum
/// `complete`. Returns where the commit went and whether this committer saw the sub-buffer
/// complete (and so must deliver it).
#[inline(always)]
pub fn commit<C: CommitCounters>(c: &C, cpu: u32, n: u64, complete: u64) -> (CommitKind, bool) {
    match c.local_commit(cpu, n, complete) {
        Ok(done) => (CommitKind::Local, done),
        Err(NotOnCpu) => (CommitKind::Remote, remote_commit(*c, cpu, n, complete)),
    }
}

#[cold]
#[inline(never)]
fn remote_commit<C: CommitCounters>(c: C, cpu: u32, n: u64, complete: u64) -> bool {
    let remote = c.remote_add(n);
    if c.load_local().wrapping_add(remote) >= complete {
        return true;
    }
    // Not complete as far as we can see; but a LOCAL commit on `cpu` may be hidden in its store
    // buffer. Fence that CPU, then look again.
    c.barrier_cpu(cpu);
    c.load_local().wrapping_add(remote) >= complete
}
