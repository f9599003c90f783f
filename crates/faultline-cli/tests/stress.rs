//! The torture run as a test: exact accounting, and proof that the LOCAL, REMOTE and abort
//! paths all ran.

use faultline_cli::stress::{run, StrategyChoice, StressOptions};
use faultline_recorder::Strategy;
use faultline_ringbuf::SyncMode;

fn check(opt: &StressOptions) -> faultline_cli::stress::StressReport {
    let r = run(opt, false).unwrap();
    assert_eq!(r.duplicates, 0, "{r:?}");
    assert_eq!(r.unexplained, 0, "{r:?}");
    assert_eq!(r.out_of_order, 0, "{r:?}");
    assert_eq!(r.corrupt, 0, "{r:?}");
    assert_eq!(
        r.lost, r.lost_in_buffers,
        "writers' loss counts equal the buffers' counters"
    );
    assert_eq!(r.delivered + r.lost, r.emitted);
    assert!(r.ok);
    if opt.sync == SyncMode::Rseq {
        // Both commit paths and the kernel's abort path ran.
        assert!(r.local_commits > 0, "{r:?}");
        // Migrations happen between reserve and commit only on the direct path and with
        // reserve-copy-commit (bounce and prefault-restart migrate before reserving or
        // restart after the migration).
        let holds_across_copy = matches!(
            opt.strategy,
            None | Some(StrategyChoice::One(Strategy::ReserveCopyCommit))
        ) && opt.fault_ms == 0
            && !opt.bad_pointers;
        // A forced migration between reserve and commit makes that commit REMOTE. (With tiny
        // buffers nearly every reservation may fail, leaving nothing to migrate.)
        if holds_across_copy && r.migrations > 0 {
            assert!(r.remote_commits > 0, "{r:?}");
        }
    } else {
        // Atomic path: every commit is an atomic add on the shared counter.
        assert_eq!(r.local_commits, 0);
        assert_eq!(r.remote_commits, r.delivered);
    }
    r
}

// One test drives both paths in sequence: the harness installs a process-wide SIGUSR1 handler.
#[test]
fn stress_exactly_once_or_counted() {
    let mut opt = StressOptions {
        events_per_thread: 30_000,
        inject_spins: 64,
        ..Default::default()
    };
    if faultline_rseq::available() {
        let r = check(&opt);
        if faultline_rseq::allowed_cpus().len() > 1 {
            assert!(r.migrations > 0 && r.remote_commits > 0, "{r:?}");
        }
    }
    opt.sync = SyncMode::Atomic;
    check(&opt);
    // Small buffers: heavy losses, still exact.
    opt.sync = StressOptions::default().sync;
    opt.subbuf_size = 4096;
    opt.num_subbuf = 2;
    check(&opt);

    // Through the recorder, each strategy, with held userfaultfd faults mid-copy and bad
    // pointers: still exactly once or counted, byte-exact, faulted events counted exactly.
    let uffd = faultline_uffd::HeldFaults::new(1, std::time::Duration::ZERO).is_ok();
    for s in Strategy::ALL {
        let opt = StressOptions {
            events_per_thread: 10_000,
            strategy: Some(StrategyChoice::One(s)),
            fault_ms: if uffd { 2 } else { 0 },
            fault_every: 1000,
            bad_pointers: true,
            ..Default::default()
        };
        let r = check(&opt);
        assert_eq!(r.strategy, s.name());
        assert!(r.faulted > 0, "{r:?}");
        assert_eq!(r.faulted, r.faulted_expected, "{r:?}");
        assert!(!uffd || r.held_faults > 0, "{r:?}");
        let st = &r.per_strategy[s.name()];
        // Main events go through the recorder (handler events straight into the buffer).
        let main = opt.threads as u64 * opt.events_per_thread;
        assert!(
            st.events >= r.delivered.saturating_sub(r.handler_events),
            "{r:?}"
        );
        assert!(st.events <= main, "{r:?}");
    }
    // Mixed strategies on the atomic path.
    check(&StressOptions {
        events_per_thread: 10_000,
        sync: SyncMode::Atomic,
        strategy: Some(StrategyChoice::Mixed),
        bad_pointers: true,
        ..Default::default()
    });
}
