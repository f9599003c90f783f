//! Shared-memory fuzzing, bounded and deterministic (the cargo-fuzz target is `fuzz/` `shm`):
//! a few thousand seeded cases of a channel that a buggy or hostile traced program damaged —
//! patches aimed at positions, commit counters, loss counters, packet headers and records, with
//! values at the edges of the u64 range (overflow bait) or random, plus blasts of random words
//! and damaged channel headers — each run through the consumer, recovery, flushes, the drain
//! writing CTF, its summary and a read-back (`tests/shm/mod.rs` states the input format and
//! the properties). About 5% of the cases are undamaged and must round-trip exactly, so the
//! harness itself is checked.
//!
//! **Overflow checks.** The property "no arithmetic on shared-memory values overflows" needs a
//! build with overflow checks, which the workspace's `cargo test --release` does not have.
//! `.ci/run` therefore also runs this one test in the test profile (`cargo test -p faultline
//! --test shm_fuzz`: overflow checks on, opt-level 2 from `[profile.test]`), a second and
//! cheap command; under `--release` the same cases still run, for panics and the other
//! properties. The test prints which kind of build it ran in.

mod shm;

use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An interesting value for a word of shared memory.
fn value(r: &mut Rng, sub: u64) -> u64 {
    match r.below(12) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX - r.below(4096),
        4 => 1 << 62,
        5 => (1 << 62) - sub * (1 + r.below(4)),
        6 => 1 << 63,
        7 => r.below(8192),
        8 => sub * r.below(64), // a plausible position, a few laps on
        9 => sub * r.below(64) + 8 * r.below(64), // inside a sub-buffer
        10 => u64::from(u32::MAX) - r.below(16), // record ids near the reserved ones
        _ => r.next(),
    }
}

fn patch(d: &mut Vec<u8>, idx: u64, v: u64) {
    d.extend_from_slice(&(idx as u16).to_le_bytes());
    d.extend_from_slice(&v.to_le_bytes());
}

/// One input in the format of `shm::case`; `cpu`: the CPU the events go to.
fn input(r: &mut Rng, cpu: u32) -> Vec<u8> {
    let g = r.below(32) as u8;
    let sub = 256u64 << (g & 3);
    let nsub = 2u64 << (g >> 2 & 1);
    let mut d = vec![g, r.below(256) as u8, r.below(4) as u8];
    let n = match r.below(20) {
        0 => 0,                 // undamaged
        1 => 50 + r.below(150), // a blast of random words
        _ => 1 + r.below(12),
    };
    let data_word = 512u64; // the data area starts one page into the region (nsub <= 4)
    for _ in 0..n {
        let idx: u64 = match r.below(10) {
            0 => r.below(20), // buffer header: positions, losses
            1 | 2 => 32 + 16 * r.below(nsub) + [0, 8, 10][r.below(3) as usize], // commit counters
            3 | 4 => {
                // a packet header field
                data_word
                    + (r.below(nsub) * sub) / 8
                    + [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12][r.below(11) as usize]
            }
            5..=7 => data_word + (r.below(nsub) * sub + 128 + 8 * r.below((sub - 128) / 8)) / 8, // records
            8 => 0x8000 | r.below(32), // the channel header
            _ => r.below(0x8000),      // anywhere
        };
        let v = value(r, sub);
        patch(&mut d, idx, v);
    }
    if n > 0 && r.below(4) == 0 {
        // A coherent forgery: positions that agree with each other, a complete commit count
        // and a well-formed packet header where they point — at the edges of the range.
        let c = match r.below(4) {
            0 => 0u64.wrapping_sub(sub * (1 + r.below(4))),
            1 => (1u64 << 62).wrapping_sub(sub * r.below(3)),
            2 => (1u64 << 63) + sub * r.below(4),
            _ => sub * r.below(1 << 20),
        };
        let buf_shift = (sub * nsub).trailing_zeros();
        let idx = (c / sub) % nsub;
        let complete = ((c >> buf_shift).wrapping_add(1)) << sub.trailing_zeros();
        let hdr = data_word + idx * sub / 8;
        patch(&mut d, 8, c); // consumed
        patch(&mut d, 0, c.wrapping_add(8 * r.below(sub * nsub / 8 + 1))); // write_offset
        patch(&mut d, 32 + 16 * idx, complete); // local
        patch(&mut d, 32 + 16 * idx + 8, 0); // remote
        patch(
            &mut d,
            hdr,
            0xC1FC_1FC1 | u64::from(u32::from_le_bytes(*b"faul")) << 32,
        );
        patch(&mut d, hdr + 5, 128 * 8); // content_size
        patch(&mut d, hdr + 7, c / sub); // packet_seq_num
        patch(&mut d, hdr + 9, u64::from(cpu)); // cpu_id, flags
    }
    d
}

fn overflow_checks_on() -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let on = std::panic::catch_unwind(|| std::hint::black_box(u64::MAX) + std::hint::black_box(1))
        .is_err();
    std::panic::set_hook(hook);
    on
}

#[test]
fn damaged_shared_memory_never_panics_overflows_or_forges() {
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    std::thread::yield_now();
    let cpu = faultline_rseq::current_cpu();
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // Removed when the test ends, also when a case fails.
    let tmp = faultline_testkit::TmpDir::new_in(&base, "shm-fuzz");
    let dir = tmp.join("case");
    let mut r = Rng(0x5eed_0f5a_11f0_0d00);
    let t = Instant::now();
    let cases = 3000;
    for i in 0..cases {
        let d = input(&mut r, cpu);
        if let Err(e) = shm::case(&d, cpu, &dir) {
            panic!("case {i}: {e}\ninput: {d:02x?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "{cases} cases in {:.1} s, overflow checks {}",
        t.elapsed().as_secs_f64(),
        if overflow_checks_on() {
            "ON"
        } else {
            "off (release build)"
        }
    );
}
