//! `RecorderStats`' counter list: every counter is in it exactly once, and the combinators
//! apply to each.

use faultline_recorder::{RecorderStats, StrategyStats};
use std::collections::BTreeSet;

/// Every counter a different value (1..=18), so a counter listed twice or missed shows.
fn distinct() -> RecorderStats {
    RecorderStats {
        recorded: 1,
        faulted: 2,
        faulted_bytes: 3,
        resized: 4,
        remote_commits: 5,
        lost_full: 6,
        lost_stalled: 7,
        lost_too_big: 8,
        lost_no_buffer: 9,
        per_strategy: [
            StrategyStats {
                events: 10,
                restarts: 11,
                fallbacks: 12,
            },
            StrategyStats {
                events: 13,
                restarts: 14,
                fallbacks: 15,
            },
            StrategyStats {
                events: 16,
                restarts: 17,
                fallbacks: 18,
            },
        ],
    }
}

#[test]
fn counters_lists_every_field_once_in_order() {
    let c = distinct().counters();
    assert_eq!(c.len(), RecorderStats::N_COUNTERS);
    let values: Vec<u64> = c.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, (1..=18).collect::<Vec<u64>>());
    let names: BTreeSet<&str> = c.iter().map(|(k, _)| *k).collect();
    assert_eq!(names.len(), c.len(), "names are distinct");
    assert_eq!(c[0], ("recorded", 1));
    assert_eq!(c[8], ("lost_no_buffer", 9));
    assert_eq!(c[12], ("bounce.events", 13));
    assert_eq!(c[17], ("prefault.fallbacks", 18));
}

#[test]
fn combine_applies_to_every_counter() {
    let a = distinct();
    let sum = a.combine(&a, |x, y| x + y);
    let want: Vec<u64> = (1..=18).map(|v| 2 * v).collect();
    assert_eq!(
        sum.counters().iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        want
    );
    assert_eq!(sum.combine(&a, u64::saturating_sub), a);
    assert_eq!(
        a.combine(&sum, u64::saturating_sub),
        RecorderStats::default()
    );
}

#[test]
fn try_combine_stops_at_the_first_none() {
    let a = distinct();
    assert_eq!(
        a.try_combine(&a, u64::checked_sub),
        Some(RecorderStats::default())
    );
    let mut big = RecorderStats::default();
    big.per_strategy[2].fallbacks = u64::MAX;
    assert_eq!(big.try_combine(&a, u64::checked_add), None);
    assert_eq!(
        big.try_combine(&RecorderStats::default(), u64::checked_add),
        Some(big)
    );
}
