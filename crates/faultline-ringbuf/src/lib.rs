//! # faultline ring buffer
//!
//! Per-CPU (or per-concurrency-id, [`BufferIndex`]) ring buffers in shared memory where a writer may fault, block or migrate between
//! reserving space and committing it (the "faultable tracepoints" design of the LKML thread).
//!
//! * [`layout`]: the shared-memory layout and who writes which word from which CPU; the bytes
//!   of packets and records are the wire format of [`wire`] (`faultline-wire`).
//! * [`channel`]: creating/mapping a channel; reserve, commit, sub-buffer switch, flush.
//! * [`commit`]: the LOCAL/REMOTE commit protocol and the missed-delivery answer.
//! * [`close`]: closing a sub-buffer — cumulative loss counters in packet headers never
//!   decrease along a CPU's packets.
//! * [`consumer`]: taking complete sub-buffers out, validating everything read.
//! * [`clock`]: TSC / monotonic timestamps.
//!
//! ## Hazards and where they are answered
//! The numbered hazards below are what the rest of the crate's docs refer to as "hazard N".
//! 1. Missed delivery: asymmetric fence (membarrier) on the REMOTE path + consumer poll
//!    backstop — [`commit`], model-checked in `tests/loom_delivery.rs` (with a broken variant
//!    that the checker catches).
//! 2. Commit to the reserving CPU's buffer: [`channel::Reservation`] keeps `(cpu, position)`.
//! 3. rseq-owned words written only on their CPU: flush runs pinned on the CPU
//!    ([`channel::Channel::flush_all`]); the consumer writes only `consumed`. Buffers per
//!    concurrency id ([`BufferIndex::Cid`]): written only by the writer process's sections
//!    keyed on the id; their flush marks the offset, which a writer of the id confirms or
//!    a membarrier makes safe to clear (`channel.rs`, model-checked in
//!    `tests/loom_cid_flush.rs`).
//! 4. A blocked copy holds its sub-buffer: writers drop (`lost_stalled`) instead of wrapping
//!    onto a sub-buffer whose previous lap is not fully committed.
//! 5. Dead writers: uncommitted records read as [`channel::PENDING_RECORD_ID`];
//!    [`Channel::recover_dead_writers`] completes their sub-buffers once every writer is dead
//!    ([`recover`]).
//! 6. Grace periods: not this layer (tracepoints).
//! 7. Timestamps read inside the reserve critical section.
//! 8. Nesting (signal handlers): no locks; commits are sums.
//! 9. Untrusted shared memory: [`consumer`] validates; writers only form masked pointers.
//! 10. Payload visible before commit: commits are release operations (x86 TSO plain store in
//!     rseq; AcqRel RMW remotely); the consumer acquires the counters.

/// The wire format (packet and record layout, reserved ids, the record walk), defined once in
/// `faultline-wire`.
pub use faultline_wire as wire;

pub mod channel;
pub mod clock;
pub mod close;
pub mod commit;
pub mod consumer;
pub mod layout;
pub mod recover;

pub use channel::{
    Channel, ChannelConfig, ChannelError, CpuRseq, CpuRseqReservation, CpuStats, FlushError,
    FlushOutcome, Lost, Reservation, DISCARDED_RECORD_ID, PENDING_RECORD_ID,
};
pub use close::LostCounts;
pub use commit::CommitKind;
pub use consumer::{records, Consumer, InPlacePacket, PacketInfo, ReadError, Record};
pub use layout::{BufferIndex, ClockKind, Mode, PacketHeader, RecordHeader, SyncMode};
pub use recover::{CpuRecovery, Recovery};
