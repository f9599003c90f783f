//! The LTTng-UST 2.13 side of faultline's side-by-side benchmark.
//!
//! # What it does
//!
//! [`LttngBench::new`] compiles a small C program (sources in this crate's `c/`
//! directory, embedded with `include_str!`) against `liblttng-ust` with the system
//! `cc`, into a fresh temporary directory. It is compiled at run time rather than in a
//! `build.rs` so that the crate builds on machines without LTTng. The program defines
//! two tracepoints:
//!
//! * `faultline_bench:int_event` — one `uint64_t` field (`seq`);
//! * `faultline_bench:string_event` — a `uint64_t` (`seq`) and a string (`msg`); every
//!   call passes the same 32-byte string.
//!
//! It then starts a *private* `lttng-sessiond` (see below) and, for every
//! [`LttngBench::run`]:
//!
//! 1. `lttng create` a session writing to a new directory inside the temp dir;
//! 2. `lttng enable-channel --userspace --buffers-uid --discard faultline` with LTTng's
//!    default sub-buffer size and count (read back with `lttng list` and reported in
//!    [`ChannelConfig`]; 2.13 uses 4 x 512 KiB per CPU for per-UID UST channels);
//! 3. `lttng enable-event --userspace 'faultline_bench:*'`, `lttng start`;
//! 4. runs the program: each thread (pinned one per allowed CPU when
//!    `threads <= CPUs`) emits a warm-up batch, meets the others at a barrier, then
//!    emits `events_per_thread` events in a tight loop between two
//!    `clock_gettime(CLOCK_MONOTONIC)` reads, and prints its ns/event;
//!    With [`LttngBench::run_paced`] one thread emits at a given rate instead: it reads
//!    the clock every 64 events and spins until that batch is due, and the trace is
//!    not decoded (losses come from the daemon's statistics, step 5);
//! 5. `lttng stop` (waits until the consumer has the data), `lttng list` for the
//!    channel's attributes and discard statistics, `lttng destroy`;
//! 6. adds up the trace's file sizes and, if `babeltrace2` is installed, decodes the
//!    trace to count the recorded events and sum its "Tracer discarded N events"
//!    warnings. Without `babeltrace2` both counts are `None` (unknown).
//!
//! The trace directory is deleted after it has been measured.
//!
//! # Isolation from any system LTTng
//!
//! The daemon gets its own `LTTNG_HOME` (and `HOME`) inside the temp dir, and so do the
//! `lttng` client calls (always with `--no-sessiond`, so the client never spawns a
//! daemon of its own) and the traced program. The daemon is started without
//! `--daemonize` so that it stays the harness's direct child in its own process group:
//! [`Drop`] sends SIGTERM, waits up to 5 s, SIGKILLs the whole group (consumer daemons
//! included), and reaps it, all with deadlines.
//!
//! LTTng ignores `LTTNG_HOME` for root: a root daemon always uses `/var/run/lttng`, and a
//! root `lttng` client always talks to it. So when the harness runs as root it runs the
//! daemon, every `lttng` command and the traced program as `nobody` (uid/gid 65534,
//! supplementary groups cleared), which makes them an ordinary per-user LTTng setup
//! under the private `LTTNG_HOME`. As a non-root user the harness refuses to start if the
//! user is in the `tracing` group while a root daemon is running, because the `lttng`
//! client would then talk to that daemon instead of ours.
//!
//! # Making sure the program is traced
//!
//! liblttng-ust's constructor waits up to `LTTNG_UST_REGISTER_TIMEOUT` ms for the
//! session daemon to finish registering the application (the harness sets 10 s by
//! default, see [`LttngOptions::register_timeout_ms`]). The program then also polls
//! `lttng_ust_tracepoint_enabled()` for the event it will emit and exits with an error
//! if it never becomes enabled, so nothing is timed before the tracepoint is live. After
//! the run, a trace with 0 recorded events is an error, not a fast result.
//!
//! The base-address and procname state dumps are disabled in the traced program
//! (`LTTNG_UST_WITHOUT_BADDR_STATEDUMP`, `LTTNG_UST_WITHOUT_PROCNAME_STATEDUMP`): their
//! events are not enabled anyway, and the dump would run concurrently with warm-up.
//!
//! # Numbers reported
//!
//! [`LttngResult::ns_per_event`] is the median of the per-thread ns/event values (mean
//! of the two middle values for an even thread count); all per-thread values are in
//! [`LttngResult::ns_per_event_per_thread`]. Warm-up events are recorded in the trace
//! too, so [`LttngResult::events_emitted`] counts them: the accounting identity is
//! `events_recorded + events_discarded == events_emitted`.
//! [`LttngResult::bytes_on_disk`] is the sum of the apparent sizes of all files of the
//! trace (data streams, indexes, metadata); data streams contain sub-buffers padded to a
//! page, so for small runs padding and metadata are a visible part of
//! [`LttngResult::bytes_per_event`]. [`LttngResult::data_bytes`] is the data streams only.
//!
//! # Caveats
//!
//! * Pinning keeps the benchmark threads apart, not alone: the consumer daemon (which
//!   copies sub-buffers to disk while the benchmark runs), the session daemon and
//!   anything else on the machine share the same CPUs. On a 2-CPU machine with other
//!   load the numbers move by 10-20 %; repeat runs. With more threads than CPUs nobody
//!   is pinned.
//! * In discard mode, events that do not fit are dropped by the tracer; a discard costs
//!   less than a recorded event, so a run with many discards looks faster. With the
//!   default 4 x 512 KiB sub-buffers the consumer cannot always keep up with a tight
//!   loop of 47-byte string events (about 450 MB/s), so long string runs often discard.
//!   Compare runs with `events_discarded == Some(0)`, or report both numbers.
//! * A system-wide root `lttng-sessiond` with a userspace session enabling
//!   `faultline_bench:*` (or `*`) would also trace the program (liblttng-ust registers
//!   with the root daemon as well as with the per-user one) and slow it down.
//! * The temp dir must not be on a `noexec` mount (the compiled program runs from it).
//! * Counting uses babeltrace2's default text output; on a very large trace decoding
//!   dominates the time of a run (roughly 1.5 µs per event).

mod parse;
mod process;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::parse::{
    is_bench_event_line, median, parse_babeltrace_warnings, parse_channel_listing,
    parse_result_output, BabeltraceCounts,
};
use crate::process::{capture, find_in_path, run_checked, run_command, Sessiond, TempDir};

const BENCH_C: &str = include_str!("../c/faultline_bench.c");
const BENCH_TP_H: &str = include_str!("../c/faultline_bench_tp.h");

/// Name of the channel every run creates.
pub const CHANNEL_NAME: &str = "faultline";

/// Upper bound on threads accepted by the C program.
pub const MAX_THREADS: usize = 1024;

/// Message printed by tests when LTTng is missing.
pub const SKIP_MESSAGE: &str = "SKIPPED: LTTng-UST not installed (run scripts/install-deps.sh)";

/// uid/gid the harness drops to when it runs as root (`nobody` on Debian).
const UNPRIVILEGED_ID: u32 = 65534;

/// The two benchmark events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `faultline_bench:int_event`: one 64-bit integer.
    Int,
    /// `faultline_bench:string_event`: a 64-bit integer and a 32-byte string.
    String,
}

impl EventKind {
    /// Both kinds, in reporting order.
    pub const ALL: [EventKind; 2] = [EventKind::Int, EventKind::String];

    /// The name used on the C program's command line and in its result line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Int => "int",
            EventKind::String => "string",
        }
    }

    /// Full LTTng event name.
    pub fn tracepoint(self) -> &'static str {
        match self {
            EventKind::Int => "faultline_bench:int_event",
            EventKind::String => "faultline_bench:string_event",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "int" => Ok(EventKind::Int),
            "string" => Ok(EventKind::String),
            other => Err(format!(
                "unknown event kind {other:?} (expected int or string)"
            )),
        }
    }
}

/// How the channel was configured, as reported back by `lttng list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Channel name ([`CHANNEL_NAME`]).
    pub name: String,
    /// Always `"per-uid"` (`--buffers-uid`).
    pub buffering: String,
    /// `"discard"` expected.
    pub event_loss_mode: Option<String>,
    /// Bytes per sub-buffer (LTTng's default; not set by the harness).
    pub subbuf_size: Option<u64>,
    /// Sub-buffers per CPU buffer (LTTng's default).
    pub subbuf_count: Option<u64>,
    /// `"mmap"` expected.
    pub output_mode: Option<String>,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct LttngResult {
    /// Event emitted.
    pub kind: EventKind,
    /// Emitting threads.
    pub threads: usize,
    /// Timed events per thread.
    pub events_per_thread: u64,
    /// Untimed warm-up events per thread (also recorded in the trace).
    pub warmup_per_thread: u64,
    /// `threads * (events_per_thread + warmup_per_thread)`.
    pub events_emitted: u64,
    /// Whether the threads were pinned one per CPU.
    pub pinned: bool,
    /// Median over threads of each thread's timed-loop ns per event.
    pub ns_per_event: f64,
    /// Each thread's ns per event, in thread order.
    pub ns_per_event_per_thread: Vec<f64>,
    /// Events of the `faultline_bench` provider decoded by babeltrace2; `None` when
    /// babeltrace2 is not installed.
    pub events_recorded: Option<u64>,
    /// Events the tracer discarded, from babeltrace2's warnings; `None` when
    /// babeltrace2 is not installed or reported an unknown count.
    pub events_discarded: Option<u64>,
    /// Discarded events as counted by the session daemon (`lttng list` statistics after
    /// `lttng stop`); an independent cross-check of `events_discarded`.
    pub tracer_discarded: Option<u64>,
    /// Packets babeltrace2 reported lost (expected 0 in discard mode).
    pub packets_lost: Option<u64>,
    /// Apparent size of every file of the trace (streams, indexes, metadata).
    pub bytes_on_disk: u64,
    /// Apparent size of the data stream files only.
    pub data_bytes: u64,
    /// `bytes_on_disk / events_recorded`; `None` when the count is unknown.
    pub bytes_per_event: Option<f64>,
    /// Channel configuration used.
    pub channel: ChannelConfig,
    /// The trace directory, when [`LttngOptions::keep_traces`] is set (it lives in the
    /// harness's temporary directory, deleted with the [`LttngBench`]).
    pub trace_dir: Option<PathBuf>,
}

impl LttngResult {
    /// `Some(true)` if every emitted event is accounted for as recorded or discarded.
    pub fn accounted(&self) -> Option<bool> {
        let recorded = self.events_recorded?;
        let discarded = self.events_discarded?;
        Some(recorded.checked_add(discarded) == Some(self.events_emitted))
    }
}

/// One [`LttngBench::run_streamed`] measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedRun {
    /// The session name (the relay's directory is `HOST/SESSION-DATE/`).
    pub session: String,
    /// Events the program emitted (warm-up included).
    pub events_emitted: u64,
    /// Median over threads of the program's ns per timed event.
    pub ns_per_event: f64,
    /// From the program's start to the return of `lttng stop`.
    pub wall: Duration,
    /// Discarded events as `lttng list` reports them.
    pub tracer_discarded: Option<u64>,
}

/// Knobs for [`LttngBench::with_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LttngOptions {
    /// Warm-up events per thread; `None` means `min(events_per_thread / 10, 10_000)`.
    pub warmup_per_thread: Option<u64>,
    /// `LTTNG_UST_REGISTER_TIMEOUT` for the traced program, in ms, and also how long
    /// the program waits for its tracepoint to become enabled.
    pub register_timeout_ms: u32,
    /// Deadline for each `lttng` command and for the daemon's start-up.
    pub command_timeout: Duration,
    /// Keep each run's trace (until the bench is dropped) instead of deleting it after
    /// measuring; its path is in [`LttngResult::trace_dir`]. For tests that read it.
    pub keep_traces: bool,
}

impl Default for LttngOptions {
    fn default() -> Self {
        LttngOptions {
            warmup_per_thread: None,
            register_timeout_ms: 10_000,
            command_timeout: Duration::from_secs(30),
            keep_traces: false,
        }
    }
}

/// Checks that everything needed to run the LTTng benchmark is installed: `lttng`,
/// `lttng-sessiond`, `cc`, `pkg-config` and the `lttng-ust` development files.
/// `babeltrace2` is optional (without it event counts are unknown).
pub fn check_available() -> Result<(), String> {
    let mut missing = Vec::new();
    for bin in ["lttng", "lttng-sessiond", "cc", "pkg-config"] {
        if find_in_path(bin).is_none() {
            missing.push(format!("`{bin}` not found in PATH"));
        }
    }
    if find_in_path("pkg-config").is_some() {
        let ok = run_command(
            Command::new("pkg-config").args(["--exists", "lttng-ust"]),
            Duration::from_secs(20),
            "pkg-config --exists lttng-ust",
            capture,
        )
        .map(|o| o.status.success())
        .unwrap_or(false);
        if !ok {
            missing.push("lttng-ust development files (pkg-config lttng-ust) not found".into());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "LTTng-UST benchmark unavailable: {}. Run scripts/install-deps.sh \
             (installs lttng-tools, liblttng-ust-dev, babeltrace2, gcc, pkg-config)",
            missing.join("; ")
        ))
    }
}

/// Whether `babeltrace2` is on `PATH` (needed to count recorded and discarded events).
pub fn babeltrace_available() -> bool {
    find_in_path("babeltrace2").is_some()
}

/// Environment shared by every LTTng-side child process.
struct ChildEnv {
    /// Private `LTTNG_HOME`.
    home: PathBuf,
    /// `PATH` passed on.
    path: OsString,
    /// `(uid, gid)` to drop to when running as root.
    run_as: Option<(u32, u32)>,
}

impl ChildEnv {
    /// A command with a clean environment, the private LTTng home, and (as root) the
    /// unprivileged identity.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("LTTNG_HOME", &self.home)
            .env("LC_ALL", "C")
            .current_dir(&self.home);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn lttng(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut cmd = self.command("lttng");
        cmd.arg("--no-sessiond").args(args);
        let what = format!("lttng {}", args.first().copied().unwrap_or(""));
        run_checked(&mut cmd, timeout, &what)
    }
}

/// The LTTng-UST benchmark: a compiled benchmark program and a private session daemon.
///
/// Dropping it stops the daemon (bounded) and deletes its temporary directory.
pub struct LttngBench {
    // Field order matters: the daemon must be gone before its directory is removed.
    sessiond: Sessiond,
    env: ChildEnv,
    program: PathBuf,
    options: LttngOptions,
    babeltrace: Option<PathBuf>,
    tools_version: String,
    ust_version: String,
    runs: u64,
    dir: TempDir,
}

impl LttngBench {
    /// Compiles the benchmark program and starts the private session daemon, with
    /// default [`LttngOptions`].
    pub fn new() -> Result<LttngBench> {
        LttngBench::with_options(LttngOptions::default())
    }

    /// Like [`LttngBench::new`] with explicit options.
    pub fn with_options(options: LttngOptions) -> Result<LttngBench> {
        check_available().map_err(anyhow::Error::msg)?;
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        if !is_root && client_would_reach_root_daemon() {
            bail!(
                "this user is in the `tracing` group and a root lttng-sessiond is running: \
                 the lttng client would control that daemon instead of a private one; \
                 stop it or run the benchmark as a user outside the tracing group"
            );
        }

        let dir = TempDir::new("faultline-lttng-")?;
        let run_as = is_root.then_some((UNPRIVILEGED_ID, UNPRIVILEGED_ID));
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {}", dir.path().display()))?;
        }
        let home = dir.path().join("home");
        fs::create_dir(&home).with_context(|| format!("mkdir {}", home.display()))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", home.display()))?;
        }

        let program = compile_program(
            dir.path(),
            options.command_timeout.max(Duration::from_secs(120)),
        )?;

        let env = ChildEnv {
            home,
            path: std::env::var_os("PATH")
                .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin")),
            run_as,
        };

        let tools_version = run_checked(
            env.command("lttng").arg("--version"),
            options.command_timeout,
            "lttng --version",
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
        let ust_version = run_checked(
            Command::new("pkg-config").args(["--modversion", "lttng-ust"]),
            options.command_timeout,
            "pkg-config --modversion lttng-ust",
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());

        let mut sessiond_cmd = env.command("lttng-sessiond");
        sessiond_cmd.arg("--no-kernel");
        let lttng_dir = env.home.join(".lttng");
        let ready_env = ChildEnv {
            home: env.home.clone(),
            path: env.path.clone(),
            run_as: env.run_as,
        };
        let probe_timeout = Duration::from_secs(5).min(options.command_timeout);
        let sessiond = Sessiond::start(
            &mut sessiond_cmd,
            dir.path().join("sessiond.log"),
            options.command_timeout,
            || {
                lttng_dir.join("client-lttng-sessiond").exists()
                    && lttng_dir.join("lttng-ust-sock-8").exists()
                    && ready_env.lttng(&["list"], probe_timeout).is_ok()
            },
        )?;

        Ok(LttngBench {
            sessiond,
            env,
            program,
            options,
            babeltrace: find_in_path("babeltrace2"),
            tools_version,
            ust_version,
            runs: 0,
            dir,
        })
    }

    /// Whether runs will count events (babeltrace2 present).
    pub fn counts_events(&self) -> bool {
        self.babeltrace.is_some()
    }

    /// `lttng --version` output, e.g. `lttng (LTTng Trace Control) 2.13.9 - Nordicité`.
    pub fn lttng_tools_version(&self) -> &str {
        &self.tools_version
    }

    /// `pkg-config --modversion lttng-ust`, e.g. `2.13.5`.
    pub fn lttng_ust_version(&self) -> &str {
        &self.ust_version
    }

    /// One measurement: a fresh session, the program with `threads` threads each
    /// emitting `events_per_thread` timed events (after a warm-up), then the trace
    /// measured and deleted.
    pub fn run(
        &mut self,
        kind: EventKind,
        threads: usize,
        events_per_thread: u64,
    ) -> Result<LttngResult> {
        self.run_inner(kind, threads, events_per_thread, None)
    }

    /// One paced measurement: one thread emitting `events` events at `rate` events per
    /// second (the program checks the clock every 64 events and spins until the next
    /// batch is due; it cannot go faster than its unpaced loop). The trace is not
    /// decoded (at millions of events per second babeltrace2 would take minutes): losses
    /// are the session daemon's discarded-event count ([`LttngResult::tracer_discarded`],
    /// `lttng list` after `lttng stop`), and [`LttngResult::events_recorded`] is `None`.
    /// The achieved rate is `1e9 / ns_per_event`.
    pub fn run_paced(&mut self, kind: EventKind, events: u64, rate: f64) -> Result<LttngResult> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("rate must be a positive number of events per second, got {rate}");
        }
        self.run_inner(kind, 1, events, Some(rate))
    }

    fn run_inner(
        &mut self,
        kind: EventKind,
        threads: usize,
        events_per_thread: u64,
        pace: Option<f64>,
    ) -> Result<LttngResult> {
        if threads == 0 || threads > MAX_THREADS {
            bail!("threads must be in 1..={MAX_THREADS}, got {threads}");
        }
        if events_per_thread == 0 {
            bail!("events_per_thread must be at least 1");
        }
        let warmup = self
            .options
            .warmup_per_thread
            .unwrap_or_else(|| (events_per_thread / 10).min(10_000));
        let emitted = events_per_thread
            .checked_add(warmup)
            .and_then(|e| e.checked_mul(threads as u64))
            .context("event count overflows u64")?;
        if !self.sessiond.alive() {
            bail!(
                "the private lttng-sessiond has exited; log: {}",
                self.sessiond.log_tail()
            );
        }

        self.runs += 1;
        let session = format!("faultline-bench-{}", self.runs);
        let trace_dir = self.dir.path().join(format!("trace-{}", self.runs));
        let trace_str = trace_dir
            .to_str()
            .context("temporary directory path is not UTF-8")?
            .to_string();
        let t = self.options.command_timeout;

        self.env
            .lttng(&["create", &session, &format!("--output={trace_str}")], t)?;
        let outcome = self.traced_run(
            &session,
            kind,
            threads,
            events_per_thread,
            warmup,
            emitted,
            pace,
        );
        let destroyed = self.env.lttng(&["destroy", &session], t);
        let (line, listing, _) = outcome?;
        destroyed?;

        let measured = self.measure(&trace_dir, pace.is_none());
        if !self.options.keep_traces {
            let _ = fs::remove_dir_all(&trace_dir);
        }
        let (bytes_on_disk, data_bytes, counts) = measured?;

        if line.kind != kind
            || line.threads != threads
            || line.events_per_thread != events_per_thread
        {
            bail!("benchmark program reported a different configuration: {line:?}");
        }
        if line.emitted != emitted {
            bail!(
                "benchmark program emitted {} events, expected {emitted}",
                line.emitted
            );
        }
        if let Some(c) = &counts {
            if c.events == 0 {
                bail!(
                    "the trace holds 0 faultline_bench events: the program was not traced \
                     (did it register with the session daemon?)"
                );
            }
        } else if data_bytes == 0 {
            bail!("the trace has no data: the program was not traced");
        }

        let ns_per_event =
            median(&line.ns_per_event).context("benchmark program reported no threads")?;
        let events_recorded = counts.as_ref().map(|c| c.events);
        Ok(LttngResult {
            kind,
            threads,
            events_per_thread,
            warmup_per_thread: warmup,
            events_emitted: emitted,
            pinned: line.pinned,
            ns_per_event,
            ns_per_event_per_thread: line.ns_per_event,
            events_recorded,
            events_discarded: counts.as_ref().and_then(|c| c.discarded_events),
            tracer_discarded: listing.discarded_events,
            packets_lost: counts.as_ref().map(|c| c.lost_packets),
            bytes_on_disk,
            data_bytes,
            bytes_per_event: events_recorded
                .filter(|&n| n > 0)
                .map(|n| bytes_on_disk as f64 / n as f64),
            channel: ChannelConfig {
                name: CHANNEL_NAME.to_string(),
                buffering: "per-uid".to_string(),
                event_loss_mode: listing.event_loss_mode,
                subbuf_size: listing.subbuf_size,
                subbuf_count: listing.subbuf_count,
                output_mode: listing.output_mode,
            },
            trace_dir: self.options.keep_traces.then_some(trace_dir),
        })
    }

    /// Like [`LttngBench::run`], but the session streams to an `lttng-relayd` at `url`
    /// (`lttng create --set-url=URL`, live with `live_timer_us` when given) instead of
    /// writing a local trace: LTTng's own consumer daemon sends the packets. Nothing is
    /// measured on disk here (the trace is in the relay's output directory, under the
    /// session name returned); the wall time runs from the program's start to the return of
    /// `lttng stop`, which waits until the relay has every packet.
    pub fn run_streamed(
        &mut self,
        kind: EventKind,
        threads: usize,
        events_per_thread: u64,
        url: &str,
        live_timer_us: Option<u32>,
    ) -> Result<StreamedRun> {
        if threads == 0 || threads > MAX_THREADS {
            bail!("threads must be in 1..={MAX_THREADS}, got {threads}");
        }
        let warmup = self
            .options
            .warmup_per_thread
            .unwrap_or_else(|| (events_per_thread / 10).min(10_000));
        let emitted = events_per_thread
            .checked_add(warmup)
            .and_then(|e| e.checked_mul(threads as u64))
            .context("event count overflows u64")?;
        self.runs += 1;
        let session = format!("faultline-bench-{}", self.runs);
        let t = self.options.command_timeout;
        let mut args = vec![
            "create".to_string(),
            session.clone(),
            format!("--set-url={url}"),
        ];
        if let Some(l) = live_timer_us {
            args.push(format!("--live={l}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.lttng(&args, t)?;
        let outcome = self.traced_run(
            &session,
            kind,
            threads,
            events_per_thread,
            warmup,
            emitted,
            None,
        );
        let destroyed = self.env.lttng(&["destroy", &session], t);
        let (line, listing, wall) = outcome?;
        destroyed?;
        Ok(StreamedRun {
            session,
            events_emitted: emitted,
            ns_per_event: median(&line.ns_per_event)
                .context("benchmark program reported no threads")?,
            wall,
            tracer_discarded: listing.discarded_events,
        })
    }

    /// Channel, rule, start, program, stop, listing. The caller destroys the session.
    /// Also returns the time from the program's start to the return of `lttng stop`.
    #[allow(clippy::too_many_arguments)]
    fn traced_run(
        &self,
        session: &str,
        kind: EventKind,
        threads: usize,
        events_per_thread: u64,
        warmup: u64,
        emitted: u64,
        pace: Option<f64>,
    ) -> Result<(parse::ResultLine, parse::ChannelListing, Duration)> {
        let t = self.options.command_timeout;
        let session_arg = format!("--session={session}");
        self.env.lttng(
            &[
                "enable-channel",
                "--userspace",
                &session_arg,
                "--buffers-uid",
                "--discard",
                CHANNEL_NAME,
            ],
            t,
        )?;
        let channel_arg = format!("--channel={CHANNEL_NAME}");
        self.env.lttng(
            &[
                "enable-event",
                "--userspace",
                &session_arg,
                &channel_arg,
                "faultline_bench:*",
            ],
            t,
        )?;
        self.env.lttng(&["start", session], t)?;

        let reg_ms = self.options.register_timeout_ms;
        let mut cmd = self.env.command(&self.program);
        cmd.arg(kind.as_str())
            .arg(threads.to_string())
            .arg(events_per_thread.to_string())
            .arg(warmup.to_string())
            .arg(reg_ms.to_string())
            // Events per second per thread; 0 = as fast as possible.
            .arg(format!("{:.0}", pace.unwrap_or(0.0)))
            .env("LTTNG_UST_REGISTER_TIMEOUT", reg_ms.to_string())
            .env("LTTNG_UST_WITHOUT_BADDR_STATEDUMP", "1")
            .env("LTTNG_UST_WITHOUT_PROCNAME_STATEDUMP", "1");
        // Generous: 5 µs per event (or twice the paced duration) on top of start-up and
        // registration.
        let paced_ms = pace.map_or(0, |r| (2e3 * emitted as f64 / r) as u64);
        let program_timeout = Duration::from_secs(30)
            + Duration::from_millis(u64::from(reg_ms) * 2)
            + Duration::from_micros(emitted.saturating_mul(5))
            + Duration::from_millis(paced_ms);
        let started = std::time::Instant::now();
        let program_run = run_command(&mut cmd, program_timeout, "benchmark program", capture);

        // Stop even if the program failed, so the destroy that follows is quick.
        let stopped = self.env.lttng(&["stop", session], t);
        let wall = started.elapsed();
        let out = program_run?;
        stopped?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let why = match out.status.code() {
                Some(3) => {
                    " (its tracepoint never became enabled: it did not register with \
                            the session daemon)"
                }
                Some(2) => " (usage error)",
                _ => "",
            };
            bail!(
                "benchmark program failed: {}{why}; stderr: {}",
                out.status,
                out.stderr.trim()
            );
        }
        let line = parse_result_output(&stdout).map_err(anyhow::Error::msg)?;
        let listing_text = self
            .env
            .lttng(&["list", session, &channel_arg], t)
            .unwrap_or_default();
        Ok((line, parse_channel_listing(&listing_text), wall))
    }

    /// Sizes on disk and, with babeltrace2, event counts.
    fn measure(
        &self,
        trace_dir: &Path,
        decode: bool,
    ) -> Result<(u64, u64, Option<BabeltraceCounts>)> {
        let mut total = 0u64;
        let mut data = 0u64;
        walk_sizes(trace_dir, 0, &mut total, &mut data)
            .with_context(|| format!("measuring {}", trace_dir.display()))?;
        let Some(bt) = self.babeltrace.as_ref().filter(|_| decode) else {
            return Ok((total, data, None));
        };
        let mut cmd = Command::new(bt);
        cmd.arg(trace_dir)
            .env("LC_ALL", "C")
            .env("BABELTRACE_TERM_COLOR", "NEVER");
        // babeltrace2 decodes roughly 1-2 µs per event; allow far more.
        let timeout =
            Duration::from_secs(60) + Duration::from_micros((total / 8).saturating_mul(20));
        let out = run_command(&mut cmd, timeout, "babeltrace2", count_event_lines)?;
        if !out.status.success() {
            bail!(
                "babeltrace2 failed on the trace ({}): {}",
                out.status,
                out.stderr.trim()
            );
        }
        let (discarded, lost) = parse_babeltrace_warnings(&out.stderr);
        Ok((
            total,
            data,
            Some(BabeltraceCounts {
                events: out.stdout,
                discarded_events: discarded,
                lost_packets: lost,
            }),
        ))
    }
}

/// Counts our provider's event lines in babeltrace2's text output, streaming.
fn count_event_lines(out: std::process::ChildStdout) -> u64 {
    let mut reader = BufReader::with_capacity(1 << 16, out);
    let mut line = Vec::with_capacity(256);
    let mut count = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if is_bench_event_line(&String::from_utf8_lossy(&line)) {
                    count += 1;
                }
            }
        }
    }
    count
}

/// Adds up apparent file sizes under `dir` (no symlinks followed). `data` gets the
/// stream files: everything except `metadata` and files under `index/`.
fn walk_sizes(dir: &Path, depth: u32, total: &mut u64, data: &mut u64) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            walk_sizes(&entry.path(), depth + 1, total, data)?;
        } else if meta.is_file() {
            *total = total.saturating_add(meta.len());
            let is_index = dir.file_name().map(|n| n == "index").unwrap_or(false);
            if !is_index && entry.file_name() != "metadata" {
                *data = data.saturating_add(meta.len());
            }
        }
    }
    Ok(())
}

/// Writes the C sources into `dir/c` and compiles `dir/faultline_bench`.
fn compile_program(dir: &Path, timeout: Duration) -> Result<PathBuf> {
    let src_dir = dir.join("c");
    fs::create_dir(&src_dir).with_context(|| format!("mkdir {}", src_dir.display()))?;
    let c_file = src_dir.join("faultline_bench.c");
    fs::write(&c_file, BENCH_C).context("write faultline_bench.c")?;
    fs::write(src_dir.join("faultline_bench_tp.h"), BENCH_TP_H)
        .context("write faultline_bench_tp.h")?;
    let flags = run_checked(
        Command::new("pkg-config").args(["--cflags", "--libs", "lttng-ust"]),
        timeout,
        "pkg-config --cflags --libs lttng-ust",
    )?;
    let program = dir.join("faultline_bench");
    let mut cc = Command::new("cc");
    cc.args(["-O2", "-Wall", "-Wextra", "-pthread", "-I"])
        .arg(&src_dir)
        .arg("-o")
        .arg(&program)
        .arg(&c_file)
        .args(flags.split_whitespace())
        .arg("-lpthread");
    run_checked(
        &mut cc,
        timeout,
        "cc (compiling the LTTng benchmark program)",
    )?;
    Ok(program)
}

/// True if a non-root `lttng` client would connect to a running root session daemon
/// (the user is in the `tracing` group and the root daemon's client socket exists).
fn client_would_reach_root_daemon() -> bool {
    if !Path::new("/var/run/lttng/client-lttng-sessiond").exists() {
        return false;
    }
    let Some(tracing_gid) = group_id("tracing") else {
        return false;
    };
    // SAFETY: getegid has no preconditions.
    if unsafe { libc::getegid() } == tracing_gid {
        return true;
    }
    // SAFETY: a zero-length query returns the number of groups.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups = vec![0 as libc::gid_t; len];
    // SAFETY: `groups` has room for `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    let Ok(got) = usize::try_from(got) else {
        return false;
    };
    groups.iter().take(got).any(|&g| g == tracing_gid)
}

/// gid of a group by name, via getgrnam_r.
fn group_id(name: &str) -> Option<libc::gid_t> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: group is plain data filled in by getgrnam_r.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let r = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if r != 0 || result.is_null() {
        return None;
    }
    Some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kind_strings() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert!(k.tracepoint().starts_with("faultline_bench:"));
        }
        assert!("float".parse::<EventKind>().is_err());
        assert!("".parse::<EventKind>().is_err());
    }

    #[test]
    fn c_sources_embedded() {
        assert!(BENCH_C.contains("FAULTLINE_LTTNG_RESULT"));
        assert!(BENCH_C.contains("CLOCK_MONOTONIC"));
        assert!(BENCH_TP_H.contains("int_event"));
        assert!(BENCH_TP_H.contains("string_event"));
    }

    #[test]
    fn walk_sizes_splits_metadata_and_index() {
        let d = TempDir::new("faultline-lttng-test-").unwrap();
        let base = d.path().join("ust/uid/0/64-bit");
        fs::create_dir_all(base.join("index")).unwrap();
        fs::write(base.join("ch_0"), vec![0u8; 100]).unwrap();
        fs::write(base.join("metadata"), vec![0u8; 10]).unwrap();
        fs::write(base.join("index/ch_0.idx"), vec![0u8; 5]).unwrap();
        let (mut total, mut data) = (0, 0);
        walk_sizes(d.path(), 0, &mut total, &mut data).unwrap();
        assert_eq!((total, data), (115, 100));
        assert!(walk_sizes(&d.path().join("missing"), 0, &mut total, &mut data).is_err());
    }

    #[test]
    fn accounted() {
        let mut r = LttngResult {
            kind: EventKind::Int,
            threads: 1,
            events_per_thread: 10,
            warmup_per_thread: 0,
            events_emitted: 10,
            pinned: true,
            ns_per_event: 1.0,
            ns_per_event_per_thread: vec![1.0],
            events_recorded: Some(7),
            events_discarded: Some(3),
            tracer_discarded: Some(3),
            packets_lost: Some(0),
            bytes_on_disk: 0,
            data_bytes: 0,
            bytes_per_event: None,
            trace_dir: None,
            channel: ChannelConfig {
                name: CHANNEL_NAME.into(),
                buffering: "per-uid".into(),
                event_loss_mode: None,
                subbuf_size: None,
                subbuf_count: None,
                output_mode: None,
            },
        };
        assert_eq!(r.accounted(), Some(true));
        r.events_discarded = Some(2);
        assert_eq!(r.accounted(), Some(false));
        r.events_recorded = None;
        assert_eq!(r.accounted(), None);
    }
}
