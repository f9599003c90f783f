//! The interruption window really observes signals and migrations, and stays quiet otherwise.

use faultline_rseq::{allowed_cpus, available, interrupt, pin_to_cpu};

extern "C" fn on_usr1(_: libc::c_int) {}

#[test]
fn window_sees_signal_and_migration() {
    if !available() {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    }
    // SAFETY: installs a handler that does nothing (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            on_usr1 as extern "C" fn(libc::c_int) as usize,
        )
    };
    // A signal delivered to this thread inside the window is seen.
    assert!(interrupt::arm());
    // SAFETY: raise has no preconditions.
    unsafe { libc::raise(libc::SIGUSR1) };
    assert!(interrupt::interrupted(), "signal not observed");

    // A quiet window: retry a few times (the machine may preempt us at any moment), but at
    // least one short window must report no interruption.
    let quiet = (0..1000).any(|_| {
        interrupt::arm();
        let mut x = 0u64;
        for i in 0..100 {
            x = std::hint::black_box(x + i);
        }
        !interrupt::interrupted()
    });
    assert!(quiet, "every window reported an interruption");

    // A migration is seen.
    let cpus = allowed_cpus();
    if cpus.len() >= 2 {
        pin_to_cpu(cpus[0]).unwrap();
        assert!(interrupt::arm());
        pin_to_cpu(cpus[1]).unwrap();
        assert!(interrupt::interrupted(), "migration not observed");
    }
}
