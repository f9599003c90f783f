//! Buffers indexed by concurrency id (`BufferIndex::Cid`) on the real kernel.
//!
//! Each scenario runs in a child process (this test binary re-executed) whose CPU affinity is
//! set before it starts, as `taskset -c LIST` would: concurrency ids are bounded by the
//! threads and the allowed CPUs of the *whole* process, so the test harness's own threads must
//! not be part of it. The child writes, flushes, drains everything, checks every event and the
//! per-buffer time order, and prints one `RESULT` line that the parent checks: buffers used,
//! bytes resident in the channel's mapping.
//!
//! Skipped (with a message) where the kernel does not maintain `mm_cid` (Linux < 6.3).

use faultline_ringbuf::*;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Barrier};

const CHILD: &str = "FAULTLINE_CID_TEST_CHILD";
/// Events per writer thread.
const EVENTS: u64 = 2_000;
/// Slots of the channel: as if the machine had 64 CPUs (the memfd is sized for all of them).
const SLOTS: u32 = 64;

fn supported() -> bool {
    match faultline_ringbuf::channel::cid_supported() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn channel(index: BufferIndex) -> Channel {
    Channel::create(&ChannelConfig {
        subbuf_size: 64 * 1024,
        num_subbuf: 4,
        mode: Mode::Discard,
        sync: SyncMode::Rseq,
        num_cpus: Some(SLOTS.max(faultline_rseq::possible_cpus())),
        index,
        ..Default::default()
    })
    .unwrap()
}

/// What a child reports.
#[derive(Debug, PartialEq)]
struct Outcome {
    active: u32,
    used: Vec<u32>,
    resident: u64,
    mapped: u64,
    remote: u64,
}

fn parse(out: &str) -> Outcome {
    let line = out
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child printed no RESULT line:\n{out}"));
    let mut m = BTreeMap::new();
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap();
        m.insert(k.to_string(), v.to_string());
    }
    let num = |k: &str| m[k].parse::<u64>().unwrap();
    Outcome {
        active: num("active") as u32,
        used: m["used"]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect(),
        resident: num("resident"),
        mapped: num("mapped"),
        remote: num("remote"),
    }
}

/// Run `scenario` in a child process allowed only on `cpus`.
fn in_child(test: &str, scenario: &str, cpus: &[u32]) -> Outcome {
    let exe = std::env::current_exe().unwrap();
    let cpus = cpus.to_vec();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario);
    // SAFETY: the closure only calls sched_setaffinity (async-signal-safe) on plain data
    // prepared before fork.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &cpus {
            libc::CPU_SET(c as usize, &mut set);
        }
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {scenario} on {cpus:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let o = parse(&stdout);
    eprintln!("{scenario} on CPUs {cpus:?}: {o:?}");
    o
}

/// The child's side: `threads` writers, each `EVENTS` events (payload: writer, sequence),
/// yielding now and then so they interleave; then flush, drain and check everything.
fn child_write(index: BufferIndex, threads: u64) {
    let ch = Arc::new(channel(index));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let ch = ch.clone();
            std::thread::spawn(move || {
                for i in 0..EVENTS {
                    let mut r = ch.reserve(1, 16).expect("no loss in this test");
                    r.payload()[..8].copy_from_slice(&t.to_le_bytes());
                    r.payload()[8..].copy_from_slice(&i.to_le_bytes());
                    r.commit();
                    if i % 512 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    report(&ch, threads);
}

/// Flush, drain, check and print the RESULT line.
fn report(ch: &Channel, threads: u64) {
    assert!(ch.flush_all(true).is_empty());
    let resident = ch.resident_bytes().unwrap();
    let cons = Consumer::new(ch);
    let mut next = vec![0u64; threads as usize];
    let mut buf = Vec::new();
    let mut used = Vec::new();
    let mut remote = 0;
    for b in cons.active_cpus() {
        used.push(b);
        let mut last_ts = 0;
        while let Some(info) = cons.next_packet(b, &mut buf).unwrap() {
            for r in records(&buf, info.content_len) {
                let r = r.unwrap();
                assert!(r.timestamp >= last_ts, "time order broken in buffer {b}");
                last_ts = r.timestamp;
                let t = u64::from_le_bytes(r.payload[..8].try_into().unwrap());
                let i = u64::from_le_bytes(r.payload[8..16].try_into().unwrap());
                // Per writer, events appear in order within one buffer; across buffers the
                // sequence numbers are counted below.
                assert!(i < EVENTS);
                next[t as usize] += 1;
            }
        }
        remote += ch.cpu_stats(b).unwrap().remote_commits;
    }
    assert_eq!(
        next,
        vec![EVENTS; threads as usize],
        "every event read back"
    );
    let used_s: Vec<String> = used.iter().map(|b| b.to_string()).collect();
    println!(
        "RESULT active={} used={} resident={} mapped={} remote={}",
        ch.active_buffers(),
        used_s.join(","),
        resident,
        ch.map_len(),
        remote
    );
}

/// The child's side of the REMOTE scenario (needs CPUs 0 and 1): writer A reserves in the
/// buffer of its concurrency id on CPU 0, then waits; thread B, pinned to CPU 0, runs (taking
/// the id CPU 0 holds) and keeps running while A is moved to CPU 1 and commits — with another
/// id than the one it reserved with. The commit must go REMOTE into the reserved buffer.
fn child_id_change() {
    let ch = Arc::new(channel(BufferIndex::Cid));
    faultline_rseq::pin_to_cpu(0).unwrap();
    let mut kinds = Vec::new();
    for round in 0..20u64 {
        let go = Arc::new(Barrier::new(2));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let (go, stop, ch) = (go.clone(), stop.clone(), ch.clone());
            std::thread::spawn(move || {
                faultline_rseq::pin_to_cpu(0).unwrap();
                go.wait();
                // Write a little while holding CPU 0's id (LOCAL commits into that buffer
                // meanwhile), then keep the id by running until A has committed.
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if n < 50 {
                        let mut r = ch.reserve(2, 16).unwrap();
                        r.payload()[..8].copy_from_slice(&1u64.to_le_bytes());
                        r.payload()[8..].copy_from_slice(&0u64.to_le_bytes());
                        r.commit();
                        n += 1;
                    }
                    std::hint::spin_loop();
                }
            })
        };
        let mut r = ch.reserve(1, 16).unwrap();
        let reserved_in = r.cpu();
        r.payload()[..8].copy_from_slice(&0u64.to_le_bytes());
        r.payload()[8..].copy_from_slice(&round.to_le_bytes());
        go.wait();
        faultline_rseq::pin_to_cpu(1).unwrap();
        while faultline_rseq::current_cpu() != 1 {
            std::thread::yield_now();
        }
        let now = faultline_rseq::current_mm_cid().unwrap();
        let kind = r.commit();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        faultline_rseq::pin_to_cpu(0).unwrap();
        if now != reserved_in {
            assert_eq!(
                kind,
                CommitKind::Remote,
                "id changed, commit must be REMOTE"
            );
        }
        kinds.push((reserved_in, now, kind));
    }
    let changed = kinds.iter().filter(|k| k.0 != k.1).count();
    assert!(changed > 0, "the id never changed: {kinds:?}");
    assert!(ch.flush_all(true).is_empty());
    // Everything is readable and each buffer is in time order.
    let cons = Consumer::new(&ch);
    let mut buf = Vec::new();
    let mut mine = 0;
    for b in cons.active_cpus() {
        let mut last = 0;
        while let Some(info) = cons.next_packet(b, &mut buf).unwrap() {
            for r in records(&buf, info.content_len) {
                let r = r.unwrap();
                assert!(r.timestamp >= last);
                last = r.timestamp;
                if r.id == 1 {
                    mine += 1;
                }
            }
        }
    }
    assert_eq!(mine, 20);
    let remote: u64 = (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .map(|s| s.remote_commits)
        .sum();
    println!(
        "RESULT active={} used= resident=0 mapped=0 remote={remote}",
        ch.active_buffers()
    );
}

fn child_scenario() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// `taskset -c 0` with 3 writer threads: one concurrency id, one buffer (and its memory).
#[test]
fn cid_three_threads_on_one_cpu_use_one_buffer() {
    if !supported() {
        return;
    }
    match child_scenario().as_deref() {
        Some("cid3") => return child_write(BufferIndex::Cid, 3),
        Some("cpu3") => return child_write(BufferIndex::Cpu, 3),
        Some(_) => return,
        None => {}
    }
    let name = "cid_three_threads_on_one_cpu_use_one_buffer";
    let last = *faultline_rseq::allowed_cpus().last().unwrap();
    let cid = in_child(name, "cid3", &[last]);
    assert_eq!(cid.active, 1);
    assert_eq!(cid.used, vec![0], "concurrency id 0 whatever the CPU");
    let cpu = in_child(name, "cpu3", &[last]);
    assert_eq!(cpu.used, vec![last], "per CPU: the buffer of the CPU");
    // One buffer resident out of 64: the header page plus one buffer region at most.
    let region = 4096 + 4 * 64 * 1024 + 4096;
    assert!(cid.resident <= 4096 + region, "{cid:?}");
    assert!(cid.mapped >= 64 * 4 * 64 * 1024, "{cid:?}");
}

/// 3 writer threads free on every CPU: at most min(threads, CPUs) buffers, whatever the
/// number of slots (64).
#[test]
fn cid_buffers_bounded_by_threads_and_cpus() {
    if !supported() {
        return;
    }
    match child_scenario().as_deref() {
        Some("cid3free") => return child_write(BufferIndex::Cid, 3),
        Some(_) => return,
        None => {}
    }
    let cpus = faultline_rseq::allowed_cpus();
    let o = in_child("cid_buffers_bounded_by_threads_and_cpus", "cid3free", &cpus);
    // The child's main thread and 3 writers: 4 threads.
    let bound = (cpus.len() as u32).min(4);
    assert!(o.active >= 1 && o.active <= bound, "{o:?}, bound {bound}");
    assert!(o.used.iter().all(|&b| b < bound), "{o:?}");
}

/// The child's side of the migration scenario: one writer thread moved between every allowed
/// CPU every 250 events (the scheduler's migrations, forced).
fn child_migrate(index: BufferIndex) {
    let ch = Arc::new(channel(index));
    let cpus = faultline_rseq::allowed_cpus();
    let ch2 = ch.clone();
    std::thread::spawn(move || {
        for i in 0..EVENTS {
            if i % 250 == 0 {
                let c = cpus[(i / 250) as usize % cpus.len()];
                faultline_rseq::pin_to_cpu(c).unwrap();
                while faultline_rseq::current_cpu() != c {
                    std::thread::yield_now();
                }
            }
            let mut r = ch2.reserve(1, 16).unwrap();
            r.payload()[..8].copy_from_slice(&0u64.to_le_bytes());
            r.payload()[8..].copy_from_slice(&i.to_le_bytes());
            r.commit();
        }
    })
    .join()
    .unwrap();
    report(&ch, 1);
}

/// One thread migrating over every CPU: per CPU it fills a buffer on each; per concurrency id
/// the id travels with the thread, so it uses at most min(threads, CPUs) buffers (here the
/// child's main thread and the writer: 2).
#[test]
fn cid_migrating_thread_uses_fewer_buffers_than_per_cpu() {
    if !supported() {
        return;
    }
    match child_scenario().as_deref() {
        Some("mig-cid") => return child_migrate(BufferIndex::Cid),
        Some("mig-cpu") => return child_migrate(BufferIndex::Cpu),
        Some(_) => return,
        None => {}
    }
    let cpus = faultline_rseq::allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs 2 CPUs");
        return;
    }
    let name = "cid_migrating_thread_uses_fewer_buffers_than_per_cpu";
    let cpu = in_child(name, "mig-cpu", &cpus);
    let cid = in_child(name, "mig-cid", &cpus);
    assert_eq!(cpu.active as usize, cpus.len(), "{cpu:?}");
    assert!(cid.active <= 2, "{cid:?}");
}

/// A writer whose concurrency id changed between reserve and commit commits REMOTE into the
/// buffer it reserved in; nothing is lost and time order holds per buffer.
#[test]
fn cid_changed_between_reserve_and_commit_commits_remote() {
    if !supported() {
        return;
    }
    match child_scenario().as_deref() {
        Some("idchange") => return child_id_change(),
        Some(_) => return,
        None => {}
    }
    let cpus = faultline_rseq::allowed_cpus();
    if !(cpus.contains(&0) && cpus.contains(&1)) {
        eprintln!("skipped: needs CPUs 0 and 1");
        return;
    }
    let o = in_child(
        "cid_changed_between_reserve_and_commit_commits_remote",
        "idchange",
        &[0, 1],
    );
    assert!(o.remote >= 1, "{o:?}");
}

/// A `fork` child must not write the parent's per-cid buffers (its concurrency ids collide
/// with the parent's): every reservation is refused.
#[test]
fn cid_fork_child_cannot_write() {
    if !supported() || child_scenario().is_some() {
        return;
    }
    let ch = channel(BufferIndex::Cid);
    ch.reserve(1, 8).unwrap().commit();
    // SAFETY: the child only reserves (no allocation on the refused path besides the cached
    // pid reset by the atfork handler) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match ch.reserve(1, 8) {
            Err(Lost::NoBuffer) => 0,
            Err(_) => 2,
            Ok(r) => {
                std::mem::forget(r);
                1
            }
        };
        let code = if ch.flush_all(true).is_empty() {
            3
        } else {
            code
        };
        // SAFETY: _exit never returns and runs no destructors in the child.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "1: the child reserved, 2: wrong error, 3: the child flushed"
    );
    // The parent still writes.
    ch.reserve(1, 8).unwrap().commit();
}

/// Per-cid channels need rseq; an atomic-mode one is refused, and the header records the index.
#[test]
fn cid_header_records_the_index() {
    if !supported() || child_scenario().is_some() {
        return;
    }
    let ch = channel(BufferIndex::Cid);
    assert_eq!(ch.buffer_index(), BufferIndex::Cid);
    use std::os::fd::AsFd;
    let file = std::fs::File::from(ch.fd().try_clone_to_owned().unwrap());
    let _ = ch.fd().as_fd();
    let other = Channel::open(file).unwrap();
    assert_eq!(other.buffer_index(), BufferIndex::Cid);
    assert!(Channel::create(&ChannelConfig {
        sync: SyncMode::Atomic,
        index: BufferIndex::Cid,
        num_cpus: Some(2),
        ..Default::default()
    })
    .is_err());
}
