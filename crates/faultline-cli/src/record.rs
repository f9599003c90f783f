//! `faultline record [options] -o DIR -- CMD [ARGS]`: trace another program.
//!
//! # Protocol between the two processes
//! 1. `record` creates the channel (memfd) and a pipe, and spawns CMD with both inherited
//!    (`FD_CLOEXEC` cleared in the child only) and the environment of
//!    [`crate::session`]: `FAULTLINE_CHANNEL_FD`, `FAULTLINE_CHANNEL_ID` (device:inode of the
//!    memfd), `FAULTLINE_SCHEMA_FD`, `FAULTLINE_EVENTS`, `FAULTLINE_STRATEGY`.
//! 2. The program's `faultline::Session::start()` maps the channel, writes its schema (a
//!    [`SchemaMessage`] line, [`faultline::schema_pipe`]) to the pipe, then enables its
//!    tracepoints. Events are only written after the schema, so nothing is lost waiting for it.
//!    The pipe stays open: event classes registered later (callsites first hit at run time)
//!    follow as `events` lines, each written before its class can be recorded.
//! 3. `record` reads the first message, writes the CTF metadata, and drains the channel as its
//!    single consumer ([`crate::drain`]) while the program runs, showing progress on a
//!    terminal; the drain reads the pipe for new classes after taking each packet and adds
//!    them to the metadata before writing it (so the schema grows while the program runs).
//! 4. When the program has exited (or was killed) and **no other process maps the channel**
//!    (checked in `/proc/*/maps` by device and inode: a forked child could still be writing),
//!    no writer can be alive, so `record` runs [`Channel::recover_dead_writers`]: sub-buffers
//!    held by reservations of threads that died between reserve and commit are completed, every
//!    committed event in them is written, and the uncommitted ones are counted as lost
//!    (`lost_stalled`, "writer died" in the summary). If another process still maps it,
//!    recovery is skipped and the summary says so.
//! 5. Final flush and drain, fsync, summary (also saved as `DIR/.faultline-summary.json`; the
//!    leading dot keeps CTF readers away from it), and `record` exits with the program's status
//!    (128 + signal number if it was killed).

use anyhow::{bail, Context};
use faultline::drain::{Drain, DrainConfig, DrainStats};
use faultline::schema_pipe::{self, Message, PipeClasses};
use faultline::session::{
    self, clock_desc, env_desc, fd_id, group, SchemaMessage, Summary, ENV_CHANNEL_FD,
    ENV_CHANNEL_ID, ENV_EVENTS, ENV_SCHEMA_FD, ENV_STRATEGY, SCHEMA_VERSION,
};
use faultline_ctf::{TraceDesc, TraceWriter};
use faultline_recorder::Policy;
use faultline_ringbuf::{Channel, ChannelConfig, ClockKind, Mode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `faultline record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub dir: PathBuf,
    pub cmd: Vec<OsString>,
    pub events: String,
    pub policy: Policy,
    pub mode: Mode,
    pub subbuf_size: u64,
    pub num_subbuf: u64,
    pub clock: Option<ClockKind>,
    /// Live progress on stderr (only shown when stderr is a terminal).
    pub progress: bool,
    /// Trace the program's libc calls through the preload library (`--libc`).
    pub libc: Option<crate::libc_preload::LibcOptions>,
}

/// What happened to the traced program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProgramExit {
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The status `record` exits with.
    pub status: i32,
}

/// Dead-writer recovery outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryInfo {
    pub ran: bool,
    /// Why it did not run.
    pub skipped: Option<String>,
    pub subbufs: u64,
    pub bytes: u64,
    /// Uncommitted records of dead writers (lost: writer died).
    pub records: u64,
    pub errors: Vec<String>,
}

/// Everything `record` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordReport {
    pub program: ProgramExit,
    /// The program published its schema (it started a `faultline::Session`, or `--libc`'s
    /// preload library attached).
    pub schema_received: bool,
    /// Recorded with `--libc`.
    pub libc: bool,
    pub recovery: RecoveryInfo,
    pub summary: Summary,
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Run the whole recording (module docs).
pub fn run(opt: &RecordOptions) -> anyhow::Result<RecordReport> {
    if opt.cmd.is_empty() {
        bail!("no command given (usage: faultline record -o DIR -- CMD [ARGS])");
    }
    faultline::session::check_trace_dir(&opt.dir)?;
    let cfg = ChannelConfig {
        subbuf_size: opt.subbuf_size,
        num_subbuf: opt.num_subbuf,
        mode: opt.mode,
        clock: opt
            .clock
            .unwrap_or_else(faultline_ringbuf::clock::default_kind),
        ..ChannelConfig::default()
    };
    let chan = Arc::new(Channel::create(&cfg).context("creating the channel")?);
    let chan_fd = chan.fd().as_raw_fd();
    let chan_id = fd_id(chan_fd).context("fstat of the channel")?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the schema pipe");
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wr_fd = wr.as_raw_fd();
    // Room for the first schema and bursts of classes registered at start-up (best effort:
    // the reader also runs all the time).
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 1 << 20) };
    let mut reader = schema_pipe::Reader::new(File::from(rd)).context("schema pipe")?;
    // Ctrl-C goes to the whole foreground group: let the program decide, and keep recording
    // until it is gone. A handler (not SIG_IGN) so that the child gets the default back at exec.
    // SAFETY: installing a handler that does nothing is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    let mut cmd = Command::new(&opt.cmd[0]);
    cmd.args(&opt.cmd[1..])
        .env(ENV_CHANNEL_FD, chan_fd.to_string())
        .env(ENV_CHANNEL_ID, &chan_id)
        .env(ENV_SCHEMA_FD, wr_fd.to_string())
        .env(ENV_EVENTS, &opt.events)
        .env(ENV_STRATEGY, opt.policy.to_string());
    let mut notes: Vec<String> = Vec::new();
    if let Some(l) = &opt.libc {
        let lib = crate::libc_preload::find_library()?;
        crate::libc_preload::apply(&mut cmd, &lib, l);
        cmd.env(ENV_EVENTS, crate::libc_preload::events_spec(&l.calls)?);
        if let Some(n) = crate::libc_preload::resolve_program(&opt.cmd[0])
            .and_then(|p| crate::libc_preload::static_note(&p))
        {
            eprintln!("faultline record: {n}");
            notes.push(n);
        }
    }
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, on descriptors that are
    // open in the child (inherited copies of ours).
    unsafe {
        cmd.pre_exec(move || {
            for fd in [chan_fd, wr_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {:?}", opt.cmd[0]))?;
    drop(wr);
    let pid = child.id();

    let tty = opt.progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut status = None;
    let mut schema: Option<SchemaMessage> = None;
    let mut schema_note: Option<String> = None;
    // Messages that came with the schema in the same read (classes registered right after).
    let mut early: Vec<Message> = Vec::new();
    // Phase 1: wait for the schema (or the end of the program).
    loop {
        reader.wait(Duration::from_millis(20));
        let (msgs, errs) = reader.read_available();
        notes.extend(errs);
        let mut it = msgs.into_iter();
        for m in it.by_ref() {
            match m {
                Message::Schema(s) => {
                    schema = Some(s);
                    break;
                }
                // Nothing may come before the schema.
                Message::Events(_) => {
                    notes.push("event classes sent before the schema were ignored".into())
                }
            }
        }
        early.extend(it);
        if schema.is_some() {
            break;
        }
        if reader.eof() {
            schema_note = Some(if opt.libc.is_some() {
                "the preload library did not attach (statically linked or setuid program, \
                 or LD_PRELOAD removed): no libc call was traced"
                    .into()
            } else {
                "the program published no schema (did it start a faultline::Session?)".into()
            });
            break;
        }
        if status.is_none() {
            status = child.try_wait().context("waiting for the program")?;
        }
    }
    if let Some(s) = &schema {
        if s.version != SCHEMA_VERSION {
            schema_note = Some(format!(
                "schema version {} (expected {SCHEMA_VERSION})",
                s.version
            ));
        }
    }
    let events: Vec<(u32, faultline_schema::EventDesc)> = schema
        .as_ref()
        .map(|s| s.events.iter().map(|e| (e.id, e.desc.leak())).collect())
        .unwrap_or_default();
    let names: BTreeMap<u32, String> = events.iter().map(|(i, d)| (*i, d.full_name())).collect();
    let procname = schema
        .as_ref()
        .map(|s| s.procname.clone())
        .unwrap_or_else(|| opt.cmd[0].to_string_lossy().into_owned());
    let desc = TraceDesc {
        uuid: chan.uuid(),
        clock: clock_desc(&chan),
        env: env_desc(&procname, &opt.policy.to_string(), chan.mode()),
        events: events.clone(),
    };
    let writer = TraceWriter::create(&opt.dir, &desc)
        .with_context(|| format!("creating the trace in {}", opt.dir.display()))?;
    let n_ids = events
        .iter()
        .map(|(i, _)| *i as usize + 1)
        .max()
        .unwrap_or(0);
    let mut drain = Drain::new(chan.clone(), writer, n_ids, DrainConfig::default());
    // Run-time classes: the rest of the pipe (and what came with the schema).
    let mut classes = PipeClasses::new(reader, events.iter().map(|(i, _)| *i));
    classes.push_early(early);
    drain.set_class_source(Box::new(classes));

    // Phase 2: drain while the program runs.
    let mut last_print = Instant::now();
    let mut last_events = 0u64;
    let status = loop {
        if drain.poll() == 0 {
            if let Some(st) = status.or(child.try_wait().context("waiting for the program")?) {
                break st;
            }
            drain.wait();
        }
        if tty && last_print.elapsed() >= Duration::from_millis(500) {
            let ev = drain.events_written();
            let dt = last_print.elapsed().as_secs_f64();
            // Saturating: shared-memory counters (garbage must not panic or wrap).
            let lost = (0..chan.num_cpus())
                .filter_map(|c| chan.cpu_stats(c))
                .fold(0u64, |a, s| a.saturating_add(s.lost_total()));
            eprint!(
                "\r  {} events ({}/s)  {} bytes  lost {}  [{:.0}s]   ",
                group(ev),
                group(((ev - last_events) as f64 / dt) as u64),
                group(drain.stats().stream_bytes),
                group(lost),
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            last_print = Instant::now();
            last_events = ev;
        }
    };
    if tty {
        eprintln!();
    }
    // The program is gone: take what is complete, then recover what dead writers held.
    while drain.poll() > 0 {}
    let mut recovery = RecoveryInfo::default();
    match other_mappers(&chan_id) {
        Ok(pids) if pids.is_empty() => {
            let r = chan.recover_dead_writers();
            recovery.ran = true;
            recovery.subbufs = r.subbufs();
            recovery.bytes = r.bytes();
            recovery.records = r.records();
            recovery.errors = r
                .cpus
                .iter()
                .filter_map(|c| c.error.as_ref().map(|e| format!("cpu {}: {e}", c.cpu)))
                .collect();
        }
        Ok(pids) => {
            recovery.skipped = Some(format!(
                "processes {pids:?} still map the channel; sub-buffers held by their writers \
                 are not recovered"
            ));
        }
        Err(e) => recovery.skipped = Some(format!("cannot scan /proc: {e}")),
    }
    let (ds, fin): (DrainStats, _) = drain.finish();
    let mut summary = Summary {
        dir: Some(opt.dir.clone()),
        ..Summary::default()
    };
    summary.add_drain(&ds, &names);
    summary.add_channel(&chan);
    summary.lost_writer_died = recovery.records;
    // Checked: shared-memory counters (garbage must not panic or wrap).
    for st in (0..chan.num_cpus()).filter_map(|c| chan.cpu_stats(c)) {
        match summary.commits_remote.checked_add(st.remote_commits) {
            Some(n) => summary.commits_remote = n,
            None => summary.shm_errors.push(format!(
                "CPU {} buffer corrupted: REMOTE commit count {} overflows the total; left out \
                 of it",
                st.cpu, st.remote_commits
            )),
        }
    }
    summary.commits_local = summary
        .events_written
        .saturating_sub(summary.commits_remote);
    if let Err(e) = fin {
        let msg = format!("finishing the trace: {e}");
        summary.write_error.get_or_insert(msg.clone());
        summary.last_write_error = Some(msg);
    }
    let program = ProgramExit {
        pid,
        code: status.code(),
        signal: status.signal(),
        status: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    };
    let mut report = RecordReport {
        program,
        schema_received: schema.is_some(),
        libc: opt.libc.is_some(),
        recovery,
        summary,
    };
    if let Some(n) = schema_note {
        report.recovery.errors.push(n);
    }
    report.recovery.errors.extend(notes);
    report.recovery.errors.extend(
        report
            .summary
            .drain
            .iter()
            .flat_map(|d| d.class_errors.clone()),
    );
    if opt.libc.is_some() {
        if let Some(&n) = report.summary.events.get("libc:syscall") {
            report.recovery.errors.push(format!(
                "the program made {n} direct syscall(2) call(s): recorded as libc:syscall \
                 (number and raw arguments, not decoded)"
            ));
        }
    }
    // The summary file is part of the trace directory's size.
    let path = opt.dir.join(".faultline-summary.json");
    if let Ok(j) = serde_json::to_string_pretty(&report) {
        let _ = std::fs::write(&path, j);
    }
    report.summary.bytes_on_disk = session::bytes_on_disk(&opt.dir);
    Ok(report)
}

/// Print a report for people.
pub fn print(r: &RecordReport) {
    let p = &r.program;
    match (p.code, p.signal) {
        (Some(c), _) => eprintln!("program (pid {}) exited with status {c}", p.pid),
        (_, Some(s)) => eprintln!(
            "program (pid {}) was killed by signal {s} ({})",
            p.pid,
            signal_name(s)
        ),
        _ => {}
    }
    if !r.schema_received {
        eprintln!("  the program published no schema: nothing was traced");
    }
    r.summary.eprint();
    let rc = &r.recovery;
    if rc.ran && r.libc && rc.records == 0 && rc.subbufs > 0 {
        // Normal with --libc: preloaded processes exit without a final flush.
        eprintln!(
            "  {} sub-buffer(s) left open by exited processes completed at the end ({} bytes)",
            rc.subbufs,
            group(rc.bytes)
        );
    } else if rc.ran && (rc.subbufs > 0 || rc.records > 0) {
        eprintln!(
            "  dead-writer recovery: {} sub-buffer(s) completed ({} bytes committed on behalf of \
             dead threads); {} uncommitted event(s) lost: writer died between reserve and commit",
            rc.subbufs,
            group(rc.bytes),
            rc.records
        );
    }
    if let Some(s) = &rc.skipped {
        eprintln!("  dead-writer recovery skipped: {s}");
    }
    for e in &rc.errors {
        eprintln!("  note: {e}");
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

/// Processes other than this one that map the file `<dev>:<ino>` (from `/proc/*/maps`).
fn other_mappers(id: &str) -> std::io::Result<Vec<u32>> {
    let ino = id.rsplit(':').next().unwrap_or("").to_string();
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Processes may vanish or be unreadable: skip them (an unreadable one is not ours).
        let Ok(maps) = std::fs::read_to_string(e.path().join("maps")) else {
            continue;
        };
        let hit = maps.lines().any(|l| {
            let mut f = l.split_whitespace();
            let inode = f.nth(4);
            inode == Some(ino.as_str()) && l.contains("memfd:faultline-channel")
        });
        if hit {
            out.push(pid);
        }
    }
    Ok(out)
}

/// `faultline record` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Trace a program that uses faultline tracepoints: faultline record -o DIR -- CMD [ARGS]"
)]
pub struct RecordArgs {
    /// Trace directory (must not hold a trace)
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Tracepoints to enable: glob,glob,-glob over provider:name
    #[arg(short = 'e', long, default_value = "*")]
    pub events: String,
    /// Copy strategy: auto, reserve-copy-commit, bounce, prefault-restart
    #[arg(long, default_value = "auto")]
    pub strategy: String,
    /// Overwrite the oldest sub-buffers instead of discarding new events (flight recorder)
    #[arg(long)]
    pub overwrite: bool,
    /// Sub-buffer size in bytes (power of two)
    #[arg(long, default_value_t = 1024 * 1024)]
    pub subbuf_size: u64,
    /// Sub-buffers per CPU (power of two)
    #[arg(long, default_value_t = 8)]
    pub subbufs: u64,
    /// Use CLOCK_MONOTONIC instead of the TSC
    #[arg(long)]
    pub monotonic: bool,
    /// Print the report as JSON (no progress line)
    #[arg(long)]
    pub json: bool,
    /// Trace the libc calls of an unmodified, dynamically linked program (preloads
    /// libfaultline_libc.so, found next to this binary). Optionally select calls by name:
    /// --libc=open*,read,-mmap. Events are libc:<call> (see `faultline record --help`)
    #[arg(long, value_name = "CALLS", num_args = 0..=1, require_equals = true,
          default_missing_value = "*")]
    pub libc: Option<String>,
    /// With --libc: bytes recorded from each data buffer (read, write, send, recv…; 0 = none)
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub libc_data: usize,
    /// The program and its arguments
    #[arg(last = true, required = true)]
    pub cmd: Vec<OsString>,
}

/// Entry point of `faultline record`; returns the exit status (the program's).
pub fn main(a: &RecordArgs) -> i32 {
    let policy = match a.strategy.parse::<Policy>() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("faultline record: {e}");
            return 2;
        }
    };
    let opt = RecordOptions {
        dir: a.output.clone(),
        cmd: a.cmd.clone(),
        events: a.events.clone(),
        policy,
        mode: if a.overwrite {
            Mode::Overwrite
        } else {
            Mode::Discard
        },
        subbuf_size: a.subbuf_size,
        num_subbuf: a.subbufs,
        clock: a.monotonic.then_some(ClockKind::Monotonic),
        progress: !a.json,
        libc: a
            .libc
            .as_ref()
            .map(|calls| crate::libc_preload::LibcOptions {
                calls: calls.clone(),
                data_bytes: a.libc_data,
            }),
    };
    match run(&opt) {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print(&r);
            }
            r.program.status
        }
        Err(e) => {
            eprintln!("faultline record: {e:#}");
            1
        }
    }
}
