//! Closing a sub-buffer: which loss and REMOTE commit counts its packet header carries.
//!
//! A packet header carries the CPU buffer's **cumulative** loss counters (`lost_full`,
//! `lost_stalled`, `lost_too_big`, and their sum `events_discarded`) and its cumulative count of
//! REMOTE commits (`remote_commits`: commits by writers that migrated off the buffer's CPU
//! between reserve and commit, rseq mode only). CTF readers and the trace
//! writer require them to never decrease from one packet of a CPU to the next. The counters are
//! incremented by writers on any CPU at any time (relaxed `fetch_add`, `Channel::lose`), so the
//! value a header gets is a *snapshot*, and the snapshots must be taken in packet order.
//!
//! ## The protocol
//! Sub-buffer N is closed by exactly one reservation: the one that moves `write_offset` from
//! inside N to N+1 (a writer's switch, or a flush). Reservations on a CPU buffer are totally
//! ordered by their successful compare-and-store of `write_offset`, so closes happen in packet
//! order. The closer takes its snapshot **between** its acquire load of `write_offset` (the
//! `old` it then replaces) and its compare-and-store ([`reserve_closing`]):
//!
//! * the closer of N+1 replaces an `old` that is, or comes after, the closer of N's new
//!   offset; its acquire load of `old` synchronises with that store (a release: plain x86 store
//!   in the rseq critical section, AcqRel CAS in atomic mode), which comes after N's snapshot
//!   in the closer of N's program order;
//! * so N's snapshot happens before N+1's, and by read-read coherence each counter read by
//!   N+1's closer is at least the value N's closer read (the counters only ever increase).
//!
//! If the compare-and-store fails, the snapshot is thrown away with the attempt.
//!
//! Taking the snapshot after the reservation instead (the original order) is wrong: the closer
//! of N can be preempted after reserving, N+1 can fill and be closed with a smaller snapshot,
//! losses can be counted, and N's header then carries more losses than N+1's — the trace writer
//! rejects N+1 and every following packet until the counts catch up. `tests/loom_delivery.rs`
//! model-checks [`reserve_closing`] and finds that execution in the old order.
//!
//! `remote_commits` is counted the same way (relaxed `fetch_add` by the migrated committer,
//! `Channel::commit_range`) and snapshotted with the loss counters, so the same argument makes
//! it non-decreasing along a CPU's packets. What it means: the REMOTE commits **counted by the
//! time the packet was closed**, on any sub-buffer of the CPU buffer. It is not the number of
//! REMOTE commits *into* this packet: a writer that reserved in the packet and migrated may
//! commit after the closer's snapshot (the packet is complete only once it has), and its
//! REMOTE commit is then counted by a later packet's snapshot (or by the consumer's final
//! synthetic packet). The difference between two consecutive packets of a CPU is therefore
//! "REMOTE commits counted while the later packet was being filled".
//!
//! Headers that do not come from a closer keep the rule: dead-writer recovery (`recover.rs`)
//! never writes a rewritten header counts above the next intact header's, and the consumer's
//! final synthetic packet (in the `faultline` crate) carries the final counts, which are at
//! least every snapshot.

/// Cumulative loss counters (and REMOTE commit count) of one CPU buffer, as a packet header
/// carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LostCounts {
    /// Events lost because the buffer was full (discard mode).
    pub full: u64,
    /// Events lost to a stalled writer.
    pub stalled: u64,
    /// Events lost because they were larger than a sub-buffer.
    pub too_big: u64,
    /// REMOTE commits counted so far (not a loss; snapshotted with the losses).
    pub remote: u64,
}

impl LostCounts {
    /// Component-wise minimum.
    pub fn min(self, o: LostCounts) -> LostCounts {
        LostCounts {
            full: self.full.min(o.full),
            stalled: self.stalled.min(o.stalled),
            too_big: self.too_big.min(o.too_big),
            remote: self.remote.min(o.remote),
        }
    }

    /// `events_discarded`: the sum, `None` if it overflows (only garbage counters do).
    pub fn total(self) -> Option<u64> {
        self.full
            .checked_add(self.stalled)
            .and_then(|s| s.checked_add(self.too_big))
    }
}

/// What [`reserve_closing`] needs of one CPU buffer.
pub trait CloseOps {
    /// The compare-and-store of `write_offset` from `old` to `new` on the buffer's CPU (rseq
    /// critical section, or AcqRel CAS); `Some(timestamp)` on success, `None` if `old` is stale
    /// or the attempt was aborted. The store is a release.
    fn try_reserve(&self, old: u64, new: u64) -> Option<u64>;
    /// Load the buffer's loss counters and REMOTE commit count (relaxed loads: the ordering comes from the acquire
    /// load of `old` before and the release store of [`CloseOps::try_reserve`] after).
    fn load_lost(&self) -> LostCounts;
}

/// Reserve `[old, new)`, a range that closes the sub-buffer holding `old`, and snapshot the
/// loss counters for its packet header (module docs). `old` must come from an **acquire** load
/// of `write_offset` made before this call. `None`: nothing reserved, start again.
#[inline(always)]
pub fn reserve_closing<O: CloseOps>(o: &O, old: u64, new: u64) -> Option<(u64, LostCounts)> {
    let lost = o.load_lost();
    let ts = o.try_reserve(old, new)?;
    Some((ts, lost))
}
