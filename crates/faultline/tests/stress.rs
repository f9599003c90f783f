//! The torture run as a test: exact accounting, and proof that the LOCAL, REMOTE and abort
//! paths all ran.

use faultline::stress::{run, StressOptions};
use faultline_ringbuf::SyncMode;

fn check(opt: &StressOptions) -> u64 {
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
        if faultline_rseq::allowed_cpus().len() > 1 {
            assert!(r.remote_commits > 0, "{r:?}");
        }
    } else {
        // Atomic path: every commit is an atomic add on the shared counter.
        assert_eq!(r.local_commits, 0);
        assert_eq!(r.remote_commits, r.delivered);
    }
    r.rseq_aborts
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
        check(&opt);
    }
    opt.sync = SyncMode::Atomic;
    check(&opt);
    // Small buffers: heavy losses, still exact.
    opt.sync = StressOptions::default().sync;
    opt.subbuf_size = 4096;
    opt.num_subbuf = 2;
    check(&opt);
}
