//! `percpu_inc`: the per-CPU increment that reads the CPU id inside its critical section.
//! Exact totals under more threads than CPUs, signal storms and forced migrations; a CPU id
//! beyond the array does nothing.

use faultline_rseq as rseq;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Per-CPU words at the stride `percpu_inc` expects, read only after the writers joined.
struct Words(Vec<std::cell::UnsafeCell<u64>>);
// SAFETY: word `c * PERCPU_STRIDE` is only written by `percpu_inc` running on CPU `c` (its
// contract) and read after every writer joined.
unsafe impl Sync for Words {}

impl Words {
    fn new(n: usize) -> Self {
        Words(
            (0..n.max(1) * rseq::PERCPU_STRIDE)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        )
    }
    fn base(&self) -> *mut u64 {
        self.0[0].get()
    }
    fn total(&self) -> u64 {
        // SAFETY: called after every writer joined; nothing writes the words any more.
        self.0
            .iter()
            .step_by(rseq::PERCPU_STRIDE)
            .map(|w| unsafe { *w.get() })
            .sum()
    }
}

extern "C" fn on_usr1(_: libc::c_int) {}

#[test]
fn percpu_inc_exact_under_signals_and_migrations() {
    let Some(reg) = rseq::Registration::get() else {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    };
    let off = reg.offset;
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let ncpu = rseq::possible_cpus() as usize;
    let cpus = rseq::allowed_cpus();
    let words = Arc::new(Words::new(ncpu));
    const THREADS: usize = 6;
    const PER_THREAD: u64 = 50_000;
    let tids = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..THREADS {
        let (words, tids, cpus) = (words.clone(), tids.clone(), cpus.clone());
        hs.push(std::thread::spawn(move || {
            // SAFETY: pthread_self is always valid for the calling thread.
            tids[t].store(unsafe { libc::pthread_self() } as u64, Ordering::Release); // pairs with the signaller's Acquire load
            let mut aborted = 0u64;
            for i in 0..PER_THREAD {
                if i % 5000 == 0 && cpus.len() > 1 {
                    let _ = rseq::pin_to_cpu(cpus[(i as usize / 5000 + t) % cpus.len()]);
                }
                loop {
                    // SAFETY: rseq registered, `off` is glibc's offset; the words cover every
                    // possible CPU at the expected stride and are written only by this CS.
                    match unsafe { rseq::percpu_inc(off, words.base(), ncpu) } {
                        rseq::PercpuInc::Done => break,
                        rseq::PercpuInc::Aborted => aborted += 1,
                        rseq::PercpuInc::OutOfRange => panic!("cpu id beyond possible CPUs"),
                    }
                }
            }
            aborted
        }));
    }
    let signaller = {
        let (stop, tids) = (stop.clone(), tids.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for t in tids.iter() {
                    let id = t.load(Ordering::Acquire); // pairs with the worker's Release store
                    if id != 0 {
                        // SAFETY: workers are joined before `stop` is set, so the id names a
                        // live or exited-but-unjoined thread (pthread_kill is defined for both).
                        unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
                    }
                }
                std::thread::yield_now();
            }
        })
    };
    let aborted: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    signaller.join().unwrap();
    eprintln!("aborted (retried) critical sections: {aborted}");
    assert_eq!(words.total(), THREADS as u64 * PER_THREAD);
}

#[test]
fn percpu_inc_out_of_range_does_nothing() {
    let Some(reg) = rseq::Registration::get() else {
        eprintln!("SKIPPED: rseq not available in this process");
        return;
    };
    let words = Words::new(1);
    // n = 0: every CPU id is out of range.
    // SAFETY: with n = 0 no word is written; rseq registered, offset from the registration.
    let r = unsafe { rseq::percpu_inc(reg.offset, words.base(), 0) };
    assert_eq!(r, rseq::PercpuInc::OutOfRange);
    assert_eq!(words.total(), 0);
}
