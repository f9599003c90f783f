//! Reserve and commit with one inlined path: the per-CPU rseq fast path with the TSC.
//!
//! [`Channel::reserve`] inlines one copy of its fast path per channel configuration (per-CPU
//! or per-concurrency-id buffers, with or without abort injection) and chooses among them on
//! every call, and [`Reservation::commit`] chooses between the rseq and atomic, per-CPU and
//! per-id commits on every call. A caller that records many events into one channel can ask
//! once, with [`Channel::cpu_rseq`], whether the channel is of the common configuration (rseq
//! sync, TSC clock, per-CPU buffers, discard mode, no abort injection: record headers written
//! inside the reserve section, compact where they can be); the [`CpuRseq`] it gets back is the
//! proof, and its [`CpuRseq::reserve`] inlines only that configuration's fast path (the rest,
//! as in `reserve`, goes to the out-of-line general path) and returns a reservation whose
//! commit is the per-CPU rseq commit, with no choice left. Same protocol, same records, same
//! counters as `reserve` + `commit`: only the choices made per call are gone.

use super::{Channel, Lost, Reservation, FAST_RSEQ};
use crate::commit::CommitKind;
use crate::layout::{BufferIndex, SyncMode};
use faultline_rseq::Cpu;

/// A channel whose writers in this process take the per-CPU rseq fast path (module docs).
#[derive(Clone, Copy)]
pub struct CpuRseq<'a>(&'a Channel);

/// A reservation made through [`CpuRseq::reserve`]: [`Reservation`] with a commit that is
/// always the per-CPU rseq one. Dropped without commit, it is committed as a discarded record,
/// like a `Reservation`.
pub struct CpuRseqReservation<'a>(Reservation<'a>);

impl Channel {
    /// `Some` if this channel's writers take the per-CPU rseq fast path (rseq sync, TSC clock,
    /// per-CPU buffers, discard mode, no abort injection): fixed for the life of the mapping
    /// (module docs).
    #[inline(always)]
    pub fn cpu_rseq(&self) -> Option<CpuRseq<'_>> {
        (self.path == FAST_RSEQ).then_some(CpuRseq(self))
    }
}

impl<'a> CpuRseq<'a> {
    /// [`Channel::cpu_rseq`] without the test, for a caller that already asked it of this
    /// channel (the answer is fixed for the life of the mapping) and kept the answer.
    ///
    /// # Safety
    /// `chan.cpu_rseq()` is `Some`.
    #[inline(always)]
    pub unsafe fn new_unchecked(chan: &'a Channel) -> Self {
        debug_assert!(chan.cpu_rseq().is_some());
        CpuRseq(chan)
    }

    /// The channel.
    pub fn channel(self) -> &'a Channel {
        self.0
    }

    /// [`Channel::reserve`] with only the per-CPU rseq fast path inlined.
    #[inline(always)]
    pub fn reserve(self, id: u32, payload_len: usize) -> Result<CpuRseqReservation<'a>, Lost> {
        match self.try_reserve(id, payload_len) {
            Some(r) => Ok(r),
            None => self.reserve_general(id, payload_len),
        }
    }

    /// The inlined fast path alone: `None` when it does not apply (a sub-buffer switch, a loss,
    /// an aborted or raced critical section, a buffer's first use), having reserved nothing;
    /// the caller then goes to [`CpuRseq::reserve_general`]. For a caller that wants the
    /// general path's result handled out of line too (nothing merges with the fast result).
    #[inline(always)]
    pub fn try_reserve(self, id: u32, payload_len: usize) -> Option<CpuRseqReservation<'a>> {
        self.0
            .reserve_fast::<false, true, Cpu>(id, payload_len)
            .map(CpuRseqReservation)
    }

    /// The general path of [`Channel::reserve`] (out of line), which runs every step.
    #[inline(always)]
    pub fn reserve_general(
        self,
        id: u32,
        payload_len: usize,
    ) -> Result<CpuRseqReservation<'a>, Lost> {
        self.0
            .reserve_general_result(id, payload_len)
            .map(CpuRseqReservation)
    }
}

impl CpuRseqReservation<'_> {
    /// The payload bytes (exactly the reserved length), as [`Reservation::payload`].
    #[inline(always)]
    pub fn payload(&mut self) -> &mut [u8] {
        self.0.payload()
    }

    /// Whether the record has a compact header, as [`Reservation::is_compact`].
    #[inline(always)]
    pub fn is_compact(&self) -> bool {
        self.0.is_compact()
    }

    /// Publish the record, as [`Reservation::commit`].
    #[inline(always)]
    pub fn commit(self) -> CommitKind {
        // As in Reservation::commit: no Drop (it would commit a second time).
        let r = std::mem::ManuallyDrop::new(self.0);
        r.store_id();
        // Only a CpuRseq makes these: the channel is rseq with per-CPU buffers.
        r.chan.commit_range_in(
            r.cpu as u32,
            r.pos,
            r.commit_len,
            SyncMode::Rseq,
            BufferIndex::Cpu,
        )
    }
}
