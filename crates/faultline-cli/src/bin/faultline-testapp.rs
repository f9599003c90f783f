//! A small traced program for the tests of `faultline record`.
//!
//! `faultline-testapp --log FILE [--threads N] [--events N] [--pad BYTES] [--spin N]
//! [--pidfile FILE] [--cpu N] [--log-lost]`
//!
//! Starts a `faultline::Session` (attached when run by `faultline record`), then N threads each
//! emit `testapp:seq { thread, seq, pad }` events with consecutive sequence numbers from 0.
//! Only after an event is **committed** (the recorder says so) does the thread append the line
//! `<thread> <seq>` to FILE with one `write` on an `O_APPEND` descriptor, so the log survives a
//! `SIGKILL` and lists exactly events that must be in the trace. `--events 0` runs until killed.
//! `--spin N` busy-waits N iterations while encoding each payload, i.e. between reserve and
//! commit, so a kill often lands inside a reservation.
//! `--cpu N` pins every writer thread to CPU N (overload: many writers, one buffer).
//! `--log-lost` also logs `<thread> <seq> L` for each event the recorder did **not** record
//! (counted as lost by the ring buffer), so that every sequence number a writer finished is
//! in the log: committed (and in the trace, unless its packet was overwritten) or lost.
//!
//! `--hostile MODE [--hostile-ms N]` makes it attack the shared channel of `faultline record`
//! while its threads trace (the tests of a hostile traced program):
//! * `shrink` / `grow`: `ftruncate` the channel memfd to 4 KiB / 64 GiB and print the outcome
//!   (`faultline-testapp: ftruncate to N bytes: ...`), once on the inherited descriptor before
//!   starting the session and once on the session's while the threads trace; then trace on
//!   and stop normally;
//! * `garbage`: park the threads, flush, give the recorder 400 ms to take everything, log the
//!   line `garbage`, let the threads go on,
//!   overwrite every byte of the channel with random bytes, trace on 300 ms, `_exit(0)`;
//! * `flip`: the same, logging `flip`, then flip random bits of the write positions, consumed
//!   positions, loss counters and commit counters of every CPU buffer for N ms (default 500)
//!   while the threads trace, then a high bit of every write position, wait 300 ms, `_exit(0)`.
//! * `holdfd`: start `sleep 60` with a descriptor of the channel memfd (not mapped), log the
//!   line `holder PID`, and trace on until killed.
//!
//! Lines logged before the marker are events the recorder had every chance to take intact.
//!
//! `--sleep-us N` sleeps N microseconds after each event (a slow, steady program for live
//! viewing). Run alone (embedded session), `--output DIR`, `--relay URL` and
//! `--relay-session NAME` are the builder's `output_dir`, `relay` and `relay_session`.
//! `--print-cost` prints, at the end, `testapp: cost N ns/event` on stderr: the writers' wall
//! time per event (mean over threads), what tracing costs the program. `--no-log` writes no
//! log lines (so the cost is the tracing's, not the log's).

use faultline::Session;
use faultline_tracepoints::{tracepoint, Payload, WriteOutcome};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set to end the writer threads.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set to park the writer threads between events; `PARKED` counts the parked ones.
static PAUSE: AtomicBool = AtomicBool::new(false);
static PARKED: AtomicU64 = AtomicU64::new(0);

tracepoint!(pub TESTAPP_SEQ, "testapp", "seq", { thread: u32, seq: u64, pad: &[u8] });

/// The payload of `testapp:seq`, encoded by hand (so the app knows whether it was committed).
struct SeqPayload<'a> {
    thread: u32,
    seq: u64,
    pad: &'a [u8],
    spin: u64,
}

impl Payload for SeqPayload<'_> {
    fn size(&self) -> usize {
        4 + 8 + 4 + self.pad.len()
    }
    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        let n = self.size();
        if dst.len() < n {
            dst.fill(0);
            return WriteOutcome {
                written: 0,
                faulted: 0,
                truncated: true,
            };
        }
        for _ in 0..self.spin {
            std::hint::spin_loop();
        }
        dst[..4].copy_from_slice(&self.thread.to_le_bytes());
        dst[4..12].copy_from_slice(&self.seq.to_le_bytes());
        dst[12..16].copy_from_slice(&(self.pad.len() as u32).to_le_bytes());
        dst[16..n].copy_from_slice(self.pad);
        dst[n..].fill(0);
        WriteOutcome {
            written: n,
            faulted: 0,
            truncated: false,
        }
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(log) = args
        .iter()
        .position(|a| a == "--log")
        .and_then(|i| args.get(i + 1))
    else {
        eprintln!("usage: faultline-testapp --log FILE [--threads N] [--events N] [--pad BYTES] [--spin N]");
        std::process::exit(2);
    };
    let hostile = args
        .iter()
        .position(|a| a == "--hostile")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let hostile_ms = arg(&args, "--hostile-ms", 500);
    let threads = arg(&args, "--threads", 4) as u32;
    let events = arg(&args, "--events", 0);
    let pad = arg(&args, "--pad", 24) as usize;
    let spin = arg(&args, "--spin", 0);
    let pin: Option<u32> = args
        .iter()
        .position(|a| a == "--cpu")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let log_lost = args.iter().any(|a| a == "--log-lost");
    let log = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| {
                eprintln!("faultline-testapp: {log}: {e}");
                std::process::exit(2)
            }),
    );
    if let Some(pf) = args
        .iter()
        .position(|a| a == "--pidfile")
        .and_then(|i| args.get(i + 1))
    {
        let _ = std::fs::write(pf, std::process::id().to_string());
    }
    if let Some(m @ ("shrink" | "grow")) = hostile.as_deref() {
        // First on the inherited descriptor, before the session maps anything.
        let fd = std::env::var("FAULTLINE_CHANNEL_FD")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(-1);
        truncate(fd, m);
    }
    let sleep_us = arg(&args, "--sleep-us", 0);
    let print_cost = args.iter().any(|a| a == "--print-cost");
    let no_log = args.iter().any(|a| a == "--no-log");
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut builder = Session::builder();
    if let Some(d) = opt("--output") {
        builder = builder.output_dir(d);
    }
    if let Some(u) = opt("--relay") {
        builder = builder.relay(u);
    }
    if let Some(n) = opt("--relay-session") {
        builder = builder.relay_session(n);
    }
    let session = match builder.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faultline-testapp: {e}");
            std::process::exit(2);
        }
    };
    let Some(rec) = session.recorder().cloned() else {
        std::process::exit(2);
    };
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let rec = rec.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = pin {
                    if let Err(e) = faultline_rseq::pin_to_cpu(cpu) {
                        eprintln!("faultline-testapp: cannot pin to cpu {cpu}: {e}");
                        std::process::exit(2);
                    }
                }
                let padding: Vec<u8> = (0..pad).map(|i| (i as u8) ^ (t as u8)).collect();
                let id = TESTAPP_SEQ.id();
                let strategy = rec.strategy_for(&TESTAPP_SEQ);
                let mut seq = 0u64;
                let started = Instant::now();
                // Relaxed: a stop request only needs to be seen eventually.
                while (events == 0 || seq < events) && !STOP.load(Ordering::Relaxed) {
                    // Acquire/release: pairs with the main thread's stores of PAUSE and its
                    // reads of PARKED (a parked writer has finished its last event).
                    if PAUSE.load(Ordering::Acquire) {
                        PARKED.fetch_add(1, Ordering::AcqRel);
                        while PAUSE.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        PARKED.fetch_sub(1, Ordering::AcqRel);
                    }
                    let p = SeqPayload {
                        thread: t,
                        seq,
                        pad: &padding,
                        spin,
                    };
                    if TESTAPP_SEQ.is_active() && no_log {
                        let _ = rec.record(id, strategy, &p);
                    } else if TESTAPP_SEQ.is_active() {
                        let line = match rec.record(id, strategy, &p) {
                            Ok(_) => format!("{t} {seq}\n"),
                            Err(_) if log_lost => format!("{t} {seq} L\n"),
                            Err(_) => String::new(),
                        };
                        // One write on an O_APPEND descriptor: atomic, in the page cache at once.
                        if !line.is_empty() {
                            let _ = (&*log).write_all(line.as_bytes());
                        }
                    }
                    seq += 1;
                    if sleep_us > 0 {
                        std::thread::sleep(Duration::from_micros(sleep_us));
                    }
                }
                (started.elapsed().as_nanos() as f64, seq)
            })
        })
        .collect();
    if let Some(mode) = &hostile {
        attack(&session, mode, hostile_ms, &log, threads as u64);
        STOP.store(true, Ordering::Relaxed);
    }
    let mut cost = Vec::new();
    for h in hs {
        if let Ok((ns, n)) = h.join() {
            if n > 0 {
                cost.push(ns / n as f64);
            }
        }
    }
    if print_cost && !cost.is_empty() {
        eprintln!(
            "testapp: cost {:.1} ns/event",
            cost.iter().sum::<f64>() / cost.len() as f64
        );
    }
    match session.stop() {
        Ok(s) if !s.attached => s.print(),
        Ok(_) => {}
        Err(e) => eprintln!("faultline-testapp: {e}"),
    }
}

/// A small xorshift generator (no dependency; the seed is the time).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(t | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The channel memfd mapped once more, writable, as a hostile program would.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: i32) -> Mapping {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstat into a valid out-pointer.
        if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
            eprintln!(
                "faultline-testapp: fstat: {}",
                std::io::Error::last_os_error()
            );
            std::process::exit(2);
        }
        // SAFETY: fstat succeeded.
        let len = unsafe { st.assume_init() }.st_size as usize;
        // SAFETY: a new shared mapping of the whole file; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            eprintln!(
                "faultline-testapp: mmap: {}",
                std::io::Error::last_os_error()
            );
            std::process::exit(2);
        }
        Mapping {
            ptr: ptr as *mut u8,
            len,
        }
    }
    fn u64_at(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned (asserted); shared memory is read as an atomic.
        unsafe { (*(self.ptr.add(off) as *const AtomicU64)).load(Ordering::Relaxed) }
    }
    fn xor_u64(&self, off: usize, bits: u64) {
        if off + 8 > self.len || !off.is_multiple_of(8) {
            return;
        }
        // SAFETY: in bounds and aligned (checked); other processes access it atomically too.
        unsafe { (*(self.ptr.add(off) as *const AtomicU64)).fetch_xor(bits, Ordering::Relaxed) };
    }
}

/// `ftruncate` the channel to 4 KiB (`shrink`) or 64 GiB (`grow`) and say how it went.
fn truncate(fd: i32, mode: &str) {
    let len: i64 = if mode == "shrink" { 4096 } else { 64 << 30 };
    // SAFETY: ftruncate on a descriptor of the channel (that is the attack).
    let r = unsafe { libc::ftruncate(fd, len) };
    let what = if r == 0 {
        "done".to_string()
    } else {
        std::io::Error::last_os_error().to_string()
    };
    eprintln!("faultline-testapp: ftruncate to {len} bytes: {what}");
}

fn attack(session: &Session, mode: &str, ms: u64, log: &std::fs::File, threads: u64) {
    let Some(chan) = session.channel() else {
        eprintln!("faultline-testapp: no channel to attack");
        std::process::exit(2);
    };
    let fd = chan.fd().as_raw_fd();
    std::thread::sleep(Duration::from_millis(150));
    match mode {
        "shrink" | "grow" => {
            truncate(fd, mode);
            std::thread::sleep(Duration::from_millis(150));
        }
        "garbage" | "flip" => {
            // Every event logged so far is committed and flushed before the marker.
            // Release/acquire: pair with the writers' acquire loads of PAUSE and their AcqRel
            // updates of PARKED (a counted writer has finished its last event).
            PAUSE.store(true, Ordering::Release);
            while PARKED.load(Ordering::Acquire) < threads {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = chan.flush_all(false);
            std::thread::sleep(Duration::from_millis(400));
            let _ = (&*log).write_all(format!("{mode}\n").as_bytes());
            // Release: pairs with the parked writers' acquire loads of PAUSE.
            PAUSE.store(false, Ordering::Release);
            let m = Mapping::new(fd);
            let mut rng = Rng::new();
            if mode == "garbage" {
                for off in (0..m.len).step_by(8) {
                    let v = rng.next();
                    // Whatever is there, it becomes v.
                    m.xor_u64(off, m.u64_at(off) ^ v);
                }
            } else {
                // Geometry from the channel header (layout: num_cpus at 12, num_subbuf at 24,
                // buffer_stride at 32, buffers_offset at 40).
                let ncpu = (m.u64_at(8) >> 32) as usize;
                let nsub = m.u64_at(24) as usize;
                let stride = m.u64_at(32) as usize;
                let first = m.u64_at(40) as usize;
                // Buffer header words: write_offset, consumed, lost_full/stalled/too_big; then
                // per sub-buffer the local and remote commit counters.
                let mut words = vec![0usize, 64, 128, 136, 144];
                for i in 0..nsub {
                    words.push(256 + 128 * i);
                    words.push(256 + 128 * i + 64);
                }
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(ms) {
                    let cpu = rng.next() as usize % ncpu.max(1);
                    let w = words[rng.next() as usize % words.len()];
                    m.xor_u64(first + cpu * stride + w, 1 << (rng.next() % 64));
                    std::thread::sleep(Duration::from_micros(200));
                }
                for cpu in 0..ncpu {
                    m.xor_u64(first + cpu * stride, 1 << 45);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: ends the process at once, the writer threads included (no stop: the
            // session's teardown would work on the garbage we made).
            unsafe { libc::_exit(0) };
        }
        "holdfd" => {
            // SAFETY: F_DUPFD (without close-on-exec) on our channel descriptor.
            let keep = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
            let child = std::process::Command::new("sleep")
                .arg("60")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            // SAFETY: closing the duplicate we made; the child has its own copy.
            unsafe { libc::close(keep) };
            match child {
                Ok(c) => {
                    let _ = (&*log).write_all(format!("holder {}\n", c.id()).as_bytes());
                }
                Err(e) => {
                    eprintln!("faultline-testapp: cannot start sleep: {e}");
                    std::process::exit(2);
                }
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        m => {
            eprintln!("faultline-testapp: unknown --hostile mode {m:?}");
            std::process::exit(2);
        }
    }
}
