//! `faultline demo`: a built-in multi-threaded workload traced through an embedded
//! [`Session`], then a summary a newcomer can read and the commands to look at the trace.
//!
//! The workload: more threads than CPUs, each pinned to the next CPU every 200 events (forced
//! migrations), plus one thread whose payload page faults with the fault held 20 ms by
//! userfaultfd while the thread is moved to another CPU (so it commits REMOTE into the buffer it
//! reserved in), emitting seven tracepoints with every kind of field:
//! integers, floats, bools, strings, byte slices, and raw pointers handed to the probe as
//! untrusted memory — valid ones, and bad ones (null with a non-zero length, a `PROT_NONE`
//! page, an unmapped page, a C string running into a `PROT_NONE` page) which the recorder
//! copies with fault fix-ups and records as *faulted* (zero-filled, with the number of unread
//! bytes) instead of crashing.

use faultline::session::{group, Session, Summary};
use faultline_recorder::Strategy;
use faultline_tracepoints::{trace, tracepoint, CStrPtr, RawBuf};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

tracepoint!(pub DEMO_TICK, "demo", "tick", { thread: u32, seq: u64, cpu: u32 });
tracepoint!(pub DEMO_MESSAGE, "demo", "message", { thread: u32, seq: u64, text: &str });
tracepoint!(pub DEMO_BLOB, "demo", "blob", { thread: u32, seq: u64, data: &[u8] });
tracepoint!(pub DEMO_RAW, "demo", "raw", { thread: u32, seq: u64, kind: u8, buf: RawBuf });
tracepoint!(pub DEMO_CSTR, "demo", "cstr", { thread: u32, seq: u64, name: CStrPtr });
tracepoint!(pub DEMO_HELD, "demo", "held_fault", { seq: u64, page: RawBuf });
tracepoint!(pub DEMO_STATS, "demo", "stats", { thread: u32, ok: bool, ratio: f64, delta: i64 });

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Output directory; default `./faultline-demo-<unix time>` (a fresh name).
    pub dir: Option<PathBuf>,
    /// Worker threads (default: 2 x CPUs + 2, at least 6).
    pub threads: Option<usize>,
    /// Loop iterations per thread (each emits 2-4 events).
    pub iterations: u64,
    /// Ring buffers per CPU or per concurrency id (default: the session's default).
    pub buffers: Option<faultline::BufferIndex>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: None,
            threads: None,
            iterations: 5_000,
            buffers: None,
        }
    }
}

/// Memory the bad pointers point into.
struct BadMemory {
    none: *mut u8,
    unmapped: *mut u8,
    /// A C string that runs into the `PROT_NONE` page (no NUL before it).
    cstr_to_none: *const u8,
}

// SAFETY: only addresses are shared; nothing dereferences them except the fault-tolerant copies.
unsafe impl Send for BadMemory {}
// SAFETY: as above.
unsafe impl Sync for BadMemory {}

impl BadMemory {
    fn new() -> std::io::Result<BadMemory> {
        let page = 4096usize;
        // SAFETY: anonymous private mappings; the results are checked.
        unsafe {
            let two = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            let gone = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if two == libc::MAP_FAILED || gone == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let two = two as *mut u8;
            // The first page ends with "faultline" and no NUL; the second is PROT_NONE.
            let tail = b"faultline";
            let s = two.add(page - tail.len());
            std::ptr::copy_nonoverlapping(tail.as_ptr(), s, tail.len());
            if libc::mprotect(two.add(page) as *mut libc::c_void, page, libc::PROT_NONE) != 0
                || libc::munmap(gone, page) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(BadMemory {
                none: two.add(page),
                unmapped: gone as *mut u8,
                cstr_to_none: s,
            })
        }
    }
}

/// A fresh default output directory name.
pub fn default_dir() -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("faultline-demo-{t}");
    let mut p = PathBuf::from(&base);
    let mut i = 2;
    while p.exists() {
        p = PathBuf::from(format!("{base}-{i}"));
        i += 1;
    }
    p
}

/// Run the workload and return the session summary.
pub fn run(opt: &DemoOptions) -> anyhow::Result<Summary> {
    let dir = opt.dir.clone().unwrap_or_else(default_dir);
    faultline::session::check_trace_dir(&dir)?;
    let cpus = faultline_rseq::allowed_cpus();
    let ncpu = cpus.len().max(1);
    let threads = opt.threads.unwrap_or((2 * ncpu + 2).max(6));
    let bad = Arc::new(BadMemory::new()?);
    let mut builder = Session::builder();
    if let Some(b) = opt.buffers {
        builder = builder.buffer_index(b);
    }
    let session = builder
        .output_dir(&dir)
        .subbuf_size(256 * 1024)
        .num_subbuf(8)
        .events("demo:*")
        // The demo shows what was recorded: the verification pass counts the events per
        // tracepoint and per buffer (a few tens of ns per event, after tracing).
        .verify(true)
        .start()?;
    let iterations = opt.iterations;
    // One more thread whose payload source faults and is held (userfaultfd), and which is
    // moved to another CPU while blocked between reserve and commit: its commits go REMOTE.
    // Forced to reserve-copy-commit to show exactly that (the default policy would bounce).
    if let Some(rec) = session.recorder() {
        rec.set_strategy("demo:held_fault", Some(Strategy::ReserveCopyCommit));
    }
    let held = if cpus.len() > 1 {
        match faultline_uffd::HeldFaults::new(1, Duration::from_millis(20)) {
            Ok(region) => {
                let cpus = cpus.clone();
                Some(std::thread::spawn(move || held_faults(&region, &cpus)))
            }
            Err(_) => None, // no userfaultfd here: the rest of the demo still runs
        }
    } else {
        None
    };
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let bad = bad.clone();
            let cpus = cpus.clone();
            std::thread::spawn(move || worker(t as u32, iterations, &cpus, &bad))
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    if let Some(h) = held {
        let _ = h.join();
    }
    let _ = faultline_rseq::allow_cpus(&cpus);
    Ok(session.stop()?)
}

/// Trace a few events whose payload page is missing (its fault is held 20 ms), and migrate the
/// tracing thread to another CPU while it is blocked after reserving.
fn held_faults(region: &faultline_uffd::HeldFaults, cpus: &[u32]) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    for seq in 0..5u64 {
        if faultline_rseq::pin_to_cpu(cpus[0]).is_err() || region.rearm().is_err() {
            return;
        }
        let served = region.served();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let t0 = std::time::Instant::now();
                while region.holding() == 0 && region.served() == served {
                    if t0.elapsed() > Duration::from_secs(2) {
                        return;
                    }
                    std::thread::yield_now();
                }
                move_thread(tid, cpus[1]);
            });
            trace!(DEMO_HELD, seq, RawBuf(region.as_ptr(), 256));
        });
    }
}

fn move_thread(tid: libc::pid_t, cpu: u32) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn worker(t: u32, iterations: u64, cpus: &[u32], bad: &BadMemory) {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let good: Vec<u8> = (0..64u32).map(|i| (i * 7 + t) as u8).collect();
    let name = std::ffi::CString::new(format!("worker-{t}")).unwrap_or_default();
    for seq in 0..iterations {
        if seq.is_multiple_of(200) && cpus.len() > 1 {
            // A forced migration: the next reservation may be made on one CPU and committed
            // from another.
            let c = cpus[(t as usize + (seq / 200) as usize) % cpus.len()];
            let _ = faultline_rseq::allow_cpus(&[c]);
        }
        trace!(DEMO_TICK, t, seq, faultline_rseq::current_cpu());
        if seq.is_multiple_of(2) {
            let text = format!("{} {} from thread {t}", words[(seq % 6) as usize], seq);
            trace!(DEMO_MESSAGE, t, seq, &text);
        }
        if seq.is_multiple_of(3) {
            let n = (seq % 48) as usize;
            trace!(DEMO_BLOB, t, seq, &good[..n]);
        }
        if seq.is_multiple_of(5) {
            let (kind, buf) = match seq % 25 {
                0 => (1u8, RawBuf(std::ptr::null(), 16)),
                5 => (2, RawBuf(bad.none, 32)),
                10 => (3, RawBuf(bad.unmapped, 8)),
                _ => (0, RawBuf(good.as_ptr(), 24)),
            };
            trace!(DEMO_RAW, t, seq, kind, buf);
        }
        if seq.is_multiple_of(7) {
            let p = match seq % 21 {
                0 => CStrPtr(std::ptr::null()),
                7 => CStrPtr(bad.cstr_to_none as *const std::ffi::c_char),
                _ => CStrPtr(name.as_ptr()),
            };
            trace!(DEMO_CSTR, t, seq, p);
        }
        if seq.is_multiple_of(100) {
            trace!(
                DEMO_STATS,
                t,
                seq.is_multiple_of(200),
                seq as f64 / iterations as f64,
                seq as i64 - (iterations / 2) as i64
            );
        }
    }
}

/// Print the summary for a newcomer.
pub fn print(s: &Summary) {
    println!("faultline demo: several threads (more than CPUs), forced CPU migrations, strings,");
    println!("byte slices and raw pointers (some bad: null, PROT_NONE, unmapped) traced into");
    println!("per-CPU ring buffers and written as a CTF trace.");
    println!();
    s.print();
    println!();
    println!("What the numbers mean:");
    println!("  LOCAL commits finished on the CPU that reserved (an rseq store, no atomic);");
    println!("  REMOTE commits finished after the thread migrated (an atomic add).");
    println!(
        "  Faulted events had a bad pointer: the unreadable bytes are zero-filled and counted"
    );
    println!("  in the event's <field>_faulted field; the program did not crash.");
    println!(
        "  Lost events: {} (discard mode drops new events when the consumer falls behind).",
        group(s.lost_total())
    );
    if let Some(dir) = &s.dir {
        let d = shell_quote(dir);
        println!();
        // The binary that is running (e.g. target/release/faultline under `cargo run`), as a
        // path relative to the current directory when it is below it, so the commands work
        // as printed without `faultline` on the PATH.
        let exe = std::env::current_exe()
            .ok()
            .map(|e| match std::env::current_dir() {
                Ok(cwd) => e.strip_prefix(&cwd).map(|r| r.to_path_buf()).unwrap_or(e),
                Err(_) => e,
            })
            .map(|e| shell_quote(&e))
            .unwrap_or_else(|| "faultline".to_string());
        println!("Look at the trace:");
        println!("  {exe} view {d}");
        println!("  {exe} stats {d}");
        println!("  babeltrace2 {d}");
        println!();
        let page = shell_quote(&crate::timeline::page_path(dir));
        println!("See it on a timeline (one self-contained HTML page, works offline):");
        println!("  {exe} timeline {d} -o {page} && xdg-open {page}");
    }
}

fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_./+:".contains(&c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `faultline demo` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Trace a built-in multi-threaded workload (migrations, strings, bad pointers) and explain the result"
)]
pub struct DemoArgs {
    /// Output directory (default: a fresh ./faultline-demo-<time>)
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Worker threads (default: 2 x CPUs + 2, at least 6)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Loop iterations per thread
    #[arg(long, default_value_t = 5_000)]
    pub iterations: u64,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Ring buffers: per-cpu, or per-cid (one per concurrency id of the process: memory follows
    /// the threads actually running, not the CPU count). Default: per-cid where it wins (the
    /// process may run on more CPUs than it has threads plus the consumer) and the kernel
    /// supports it (rseq mm_cid, Linux 6.3+), else per-cpu; FAULTLINE_BUFFERS sets it too
    #[arg(long, value_parser = faultline::session::parse_buffer_index)]
    pub buffers: Option<faultline::BufferIndex>,
}

/// Entry point of `faultline demo`; returns the exit status.
pub fn main(a: &DemoArgs) -> i32 {
    let opt = DemoOptions {
        dir: a.output.clone(),
        threads: a.threads,
        iterations: a.iterations,
        buffers: a.buffers,
    };
    match run(&opt) {
        Ok(s) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                print(&s);
            }
            if s.write_error.is_some() {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("faultline demo: {e:#}");
            1
        }
    }
}
