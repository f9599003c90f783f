//! The input describes a channel's shared memory as a buggy or hostile traced program left it
//! (geometry, valid traffic, then patches of any word: format in
//! `crates/faultline/tests/shm/mod.rs`, which this target includes). The consumer, dead-writer
//! recovery, flushes and the drain writing CTF run over it; a property violation (a panic, an
//! overflow in a build with overflow checks, an error that is not one line naming the CPU
//! buffer, a broken packet handed out, an unreadable trace) panics, which libFuzzer reports as
//! a crash.
#![no_main]

#[path = "../../crates/faultline/tests/shm/mod.rs"]
mod shm;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The CPU this process is pinned to (events go to its buffer).
fn cpu() -> u32 {
    static CPU: OnceLock<u32> = OnceLock::new();
    *CPU.get_or_init(|| {
        let cpu = faultline_rseq::allowed_cpus()[0];
        faultline_rseq::pin_to_cpu(cpu).expect("pin");
        std::thread::yield_now();
        faultline_rseq::current_cpu()
    })
}

fuzz_target!(|data: &[u8]| {
    // Removed after the case, also when it panics.
    let tmp = faultline_testkit::TmpDir::new("fuzz-shm");
    if let Err(broken) = shm::case(data, cpu(), &tmp.join("trace")) {
        panic!("{broken}");
    }
});
