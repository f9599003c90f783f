//! What became of one event: the answer of [`try_trace!`](crate::try_trace).
//!
//! [`trace!`](crate::trace) returns nothing and costs nothing extra.
//! [`try_trace!`](crate::try_trace) takes the same arguments and returns a [`TraceOutcome`]:
//! the tracepoint was disabled, or each probe that ran reported what it did with the event
//! through [`Probe::call_outcome`](crate::Probe::call_outcome). A probe that records into a
//! buffer (the ring-buffer recorder) reports a commit or a loss with its cause; other probes
//! report [`TraceOutcome::Delivered`]. With several probes the outcomes are combined by
//! [`TraceOutcome::merge`]: a loss anywhere wins, then a commit, then a plain delivery.
//!
//! The outcome is computed on the calling thread, synchronously, from the probes' return
//! values: no shared state is written to report it.

/// Why a recording probe lost an event (the ring buffer's causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossCause {
    /// Discard mode, no free sub-buffer: the consumer is behind.
    Full,
    /// The next sub-buffer still holds an uncommitted reservation (a stalled writer).
    Stalled,
    /// The record is larger than a sub-buffer can hold.
    TooBig,
    /// The current CPU has no buffer (CPU id beyond the channel's CPU count).
    NoBuffer,
}

impl LossCause {
    /// Short name, as in statistics (`full`, `stalled`, `too-big`, `no-buffer`).
    pub fn name(self) -> &'static str {
        match self {
            LossCause::Full => "full",
            LossCause::Stalled => "stalled",
            LossCause::TooBig => "too-big",
            LossCause::NoBuffer => "no-buffer",
        }
    }
}

impl std::fmt::Display for LossCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossCause::Full => "buffer full (consumer behind)",
            LossCause::Stalled => "next sub-buffer held by a stalled writer",
            LossCause::TooBig => "event larger than a sub-buffer",
            LossCause::NoBuffer => "no buffer for this CPU",
        })
    }
}

/// What became of one event hit with [`try_trace!`](crate::try_trace).
#[must_use = "try_trace! exists to look at the outcome; use trace! to ignore it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceOutcome {
    /// The tracepoint was not active (disabled, or no probe): nothing ran and the arguments
    /// were not evaluated.
    Disabled,
    /// The probes ran, and none of them records into a buffer (e.g. a counter).
    Delivered,
    /// Committed to the ring buffer. `remote`: the thread had migrated between reserve and
    /// commit, so the commit was REMOTE (atomic) instead of LOCAL (rseq).
    Committed {
        /// The commit went REMOTE.
        remote: bool,
    },
    /// Lost, and why. The loss is also counted in the recorder's and the buffer's statistics.
    Lost(LossCause),
}

impl TraceOutcome {
    /// Whether the event was committed to a buffer.
    pub fn is_committed(self) -> bool {
        matches!(self, TraceOutcome::Committed { .. })
    }

    /// The cause, if the event was lost.
    pub fn lost(self) -> Option<LossCause> {
        match self {
            TraceOutcome::Lost(c) => Some(c),
            _ => None,
        }
    }

    /// Combine the outcomes of two probes of the same event: a loss wins (the first one
    /// seen), then a commit (REMOTE if either was), then a delivery, then disabled.
    pub fn merge(self, other: TraceOutcome) -> TraceOutcome {
        use TraceOutcome::*;
        match (self, other) {
            (Lost(c), _) | (_, Lost(c)) => Lost(c),
            (Committed { remote: a }, Committed { remote: b }) => Committed { remote: a || b },
            (c @ Committed { .. }, _) | (_, c @ Committed { .. }) => c,
            (Delivered, _) | (_, Delivered) => Delivered,
            (Disabled, Disabled) => Disabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LossCause, TraceOutcome::*};

    #[test]
    fn merge_order_loss_commit_delivered_disabled() {
        let all = [
            Disabled,
            Delivered,
            Committed { remote: false },
            Committed { remote: true },
            Lost(LossCause::Full),
        ];
        for a in all {
            assert_eq!(a.merge(Disabled), a);
            assert_eq!(Disabled.merge(a), a);
            assert!(a.merge(Lost(LossCause::Stalled)).lost().is_some());
        }
        assert_eq!(
            Delivered.merge(Committed { remote: false }),
            Committed { remote: false }
        );
        assert_eq!(
            Committed { remote: false }.merge(Committed { remote: true }),
            Committed { remote: true }
        );
        assert_eq!(
            Lost(LossCause::Full).merge(Lost(LossCause::TooBig)),
            Lost(LossCause::Full)
        );
    }
}
