//! `faultline record [options] -o DIR -- CMD [ARGS]`: trace another program.
//!
//! # Protocol between the two processes
//! 1. `record` makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`: descendants of the
//!    program that outlive it are re-parented to `record`, so they stay in its process tree),
//!    creates the channel (a memfd sealed against resizing: the program cannot make the
//!    recorder's mapping fault) and a pipe, and spawns CMD with both inherited (`FD_CLOEXEC`
//!    cleared in the child only) and the environment of [`crate::session`]:
//!    `FAULTLINE_CHANNEL_FD`, `FAULTLINE_CHANNEL_ID` (device:inode of the memfd),
//!    `FAULTLINE_SCHEMA_FD`, `FAULTLINE_EVENTS`, `FAULTLINE_STRATEGY`.
//! 2. The program's `faultline::Session::start()` maps the channel, sends its schema on the
//!    pipe (the first of the line-delimited JSON messages of [`faultline::schema_pipe`]), then
//!    enables its tracepoints. Events are only written after the schema, so nothing is lost
//!    waiting for it. The pipe stays open: event classes registered later (callsites first hit
//!    at run time) follow as `events` lines, and the recorder's counters (faulted events, events
//!    per copy strategy, restarts, fallbacks) as `recorder_stats` lines every 100 ms when they
//!    change and once more when the session stops. `record` bounds every message, ignores types
//!    it does not know, and keeps the last counters that pass [`session::check_stats`]
//!    (consistent, never going backwards).
//! 3. `record` writes the CTF metadata and drains the channel as its single consumer
//!    ([`faultline::drain`]) while the program runs, showing progress on a terminal; the drain
//!    reads the pipe for new classes after taking each packet and adds them to the metadata
//!    before writing it (so the schema grows while the program runs).
//! 4. When the program has exited (or was killed), `record` reaps the descendants that exited
//!    too and decides whether **any process can still write the channel**. First by asking the
//!    kernel for a write lease on `record`'s own open file description of the memfd
//!    ([`crate::channel_lease`]: the program was given another one, and the lease is granted
//!    only when no other open description exists, as a descriptor or behind a mapping); if it
//!    is refused, by scanning `/proc` ([`channel_holders`]), which also names the holders: a
//!    process that has the memfd open (`/proc/PID/fd`) or mapped (`/proc/PID/maps`, device and
//!    inode) can; a descendant of `record` whose `/proc` entries cannot be read might. If none
//!    can, no writer can be alive, so `record` runs [`Channel::recover_dead_writers_after`]
//!    (with the end of the last packet written per CPU as time floor): sub-buffers held by
//!    reservations of threads that died between reserve and commit are completed, every
//!    committed event in them is written, and the uncommitted ones are counted
//!    as lost (`lost_stalled`, "writer died" in the summary). Otherwise recovery is skipped and
//!    the report names the processes. What this cannot see: a process outside `record`'s
//!    process tree whose `/proc` entries `record` may not read (another user's, without root)
//!    and that got the descriptor passed explicitly (`SCM_RIGHTS`, `pidfd_getfd`, opening
//!    `/proc/<record>/fd/N`); and a thread created without `CLONE_FILES` whose private
//!    descriptor table holds the memfd without a mapping.
//! 5. Final flush and drain. When step 4 found that no process can write the channel, its
//!    buffers cannot change any more, so the last packets are written through the page cache
//!    instead of by direct I/O ([`Drain::writers_gone`]): neither their write nor the
//!    verification's read-back waits for the device. The recorder counters go into the trace's
//!    metadata `env` block (`faultline stats` shows them) and the report; `fsync` with
//!    `--fsync` (without it the trace is complete in the page cache when `record` exits, as
//!    `strace -o`'s log is, and the kernel writes it back later: the four device flushes of a
//!    trace directory cost 2-40 ms, more than the rest of a short run), summary (also saved as
//!    `DIR/.faultline-summary.json`; the leading dot keeps CTF readers away from it).
//!
//! # Clock
//! With the TSC clock, `record` does not make the program wait for a calibration: the
//! channel gets a frequency measured over [`faultline_ringbuf::clock::QUICK_CALIBRATION`]
//! from the start of the `faultline` process (its argument parsing and `record`'s set-up are
//! most of that interval; the rest is spun), good to a few hundred ppm at worst, tens in
//! practice. The program's own measurements, such as `--libc`'s `dur_ns`, use it. At the
//! end `record` measures the frequency again over the whole run, from the first reading of
//! that calibration to the end (at least [`faultline_ringbuf::clock::CALIBRATION`]: a
//! shorter run waits for the rest), and replaces the metadata's clock with it
//! ([`faultline_ringbuf::clock::refine_tsc`]). The timestamps themselves are ticks,
//! unchanged; the reference point (a TSC value and the Unix time read with it) is the
//! start's, so the longer the run, the more exact the frequency. A `record` killed before
//! its end leaves the start's estimate in the metadata. With `--relay` (whose copy of the
//! metadata only grows) the TSC is calibrated before the program starts, as embedded
//! sessions do.
//!
//! `record` never sleeps for a fixed time: it waits on the program's exit (a pidfd), on the
//! pipe and on the channel's wake-up word, with timeouts only as backstops
//! ([`crate::record_wait`]), so a program that runs for milliseconds is traced in about as
//! much wall time.
//!
//! # Exit status
//! The program's status (128 + N if it was killed by signal N) — except **3** when that is 0
//! but the trace is incomplete because the program damaged the shared buffers (one line per
//! damaged CPU buffer on stderr, `damage` in the report; every packet that was valid is kept);
//! **1** when `record` itself cannot run (directory holds a trace, program not found, ...);
//! **2** for invalid arguments. Every shared-memory value is validated: `record` does not die
//! of a signal, panic or hang whatever the program writes there.
//!
//! With `--libc` ([`crate::libc_preload`]) the program is started with `LD_PRELOAD` naming
//! the `faultline-libc` library, which plays the program's part of step 2 from its
//! constructor (and lets the images the program executes re-attach to the same channel); the
//! report then goes to stderr like every report (stdout is the traced program's). Step 1
//! differs: every descriptor and variable is final before the program starts, because no
//! image can pass a change on (bash gives its children the environment it got in `main`):
//! the channel is passed at a high number (from [`session::high_fd_base`], 960 under the
//! usual limit), the pipe's write end twice, one descriptor for the schema (with its
//! identity, `FAULTLINE_SCHEMA_ID`: the image that publishes closes it, which is how the
//! others know) and one for the counters of every
//! image (`FAULTLINE_LIBC_STATS_FD`/`_ID`), and `FAULTLINE_LIBC_ID` names the library file
//! ([`crate::libc_preload::pass_descriptors`]; the `faultline-libc` crate's "Attaching").

use anyhow::{bail, Context};
use faultline::drain::{CorruptBuffer, Drain, DrainConfig, DrainStats};
use faultline::schema_pipe::{self, CountersInfo, Message, PipeClasses};
use faultline::session::{
    self, clock_desc, env_desc, fd_id, group, recorder_counts, SchemaMessage, Summary,
    ENV_CHANNEL_FD, ENV_CHANNEL_ID, ENV_EVENTS, ENV_SCHEMA_FD, ENV_STRATEGY, SCHEMA_VERSION,
};
use faultline_ctf::{TraceDesc, TraceWriter};
use faultline_recorder::Policy;
use faultline_ringbuf::{Channel, ChannelConfig, ClockKind, Mode};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status of `record` when the program exited 0 but damaged the shared buffers.
pub const EXIT_DAMAGED: i32 = 3;

/// How long `record` waits, once the program has exited, for the end of its messages (a
/// descendant may keep the pipe open).
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Options of `faultline record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Local trace directory (`None`: streamed to the relay only).
    pub dir: Option<PathBuf>,
    /// Stream to an `lttng-relayd` too (`--relay`).
    pub relay: Option<faultline::relay::RelayOptions>,
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
    /// Sync the trace to stable storage before exiting (`--fsync`).
    pub fsync: bool,
    /// Write the streams by direct I/O (`--io`; [`DrainConfig::direct_io`]).
    pub direct_io: bool,
}

/// What happened to the traced program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProgramExit {
    pub pid: u32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The program's status (128 + signal number if it was killed). `record` exits with it
    /// unless the trace is damaged ([`RecordReport::exit_status`]).
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
    /// How `record` decided that no process could still write the channel: `lease` (the
    /// kernel's count of open descriptions, [`crate::channel_lease`]) or `proc scan`
    /// ([`channel_holders`]).
    pub checked_by: String,
}

/// Where `record`'s own time went (wall clock, milliseconds), for `faultline bench --libc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    /// From the start of `record`'s work (after its own start-up and argument parsing) to the
    /// program's start: the channel (and the short TSC calibration, module docs "Clock"), the
    /// pipe, `posix_spawn`.
    pub setup_ms: f64,
    /// From the program's start to its schema (the preload library's constructor, or the
    /// program's `Session::start`), or to giving up waiting for one.
    pub attach_ms: f64,
    /// From the schema to the program's exit.
    pub run_ms: f64,
    /// From the program's exit to the report: its last messages, the final drain, the holder
    /// check, recovery, the trace's final flush and `fsync`.
    pub shutdown_ms: f64,
    /// Part of `shutdown_ms`: deciding whether a process can still write the channel.
    pub holders_ms: f64,
    /// Part of `shutdown_ms`: finishing the trace (the clock measured over the run, last
    /// packets, verification, metadata, fsync).
    pub finish_ms: f64,
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
    /// The program's recorder counters: where they come from (the numbers are in
    /// `summary.recorder`).
    pub counters: CountersInfo,
    /// One line per CPU buffer the program damaged (see [`faultline::drain`]).
    pub damage: Vec<String>,
    /// What `record` exits with (module docs).
    pub exit_status: i32,
    /// Where `record`'s time went.
    pub timing: Timing,
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Run the whole recording (module docs).
pub fn run(opt: &RecordOptions) -> anyhow::Result<RecordReport> {
    let t_setup = Instant::now();
    let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
    if opt.cmd.is_empty() {
        bail!("no command given (usage: faultline record -o DIR -- CMD [ARGS])");
    }
    if let Some(d) = &opt.dir {
        faultline::session::check_trace_dir(d)?;
    } else if opt.relay.is_none() {
        bail!("no output: give -o DIR, --relay URL, or both");
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("becoming a child subreaper");
    }
    // `--libc`'s library, call list and static-program check need no channel: done first,
    // they fill part of the TSC calibration's interval (module docs, "Clock") instead of a
    // spin.
    let preload = match &opt.libc {
        Some(l) => {
            let lib = crate::libc_preload::find_library()?;
            // Absolute: images started in another directory check the same file.
            let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
            let spec = crate::libc_preload::events_spec(&l.calls)?;
            let note = crate::libc_preload::resolve_program(&opt.cmd[0])
                .and_then(|p| crate::libc_preload::static_note(&p));
            Some((l, lib, spec, note))
        }
        None => None,
    };
    let cfg = ChannelConfig {
        subbuf_size: opt.subbuf_size,
        num_subbuf: opt.num_subbuf,
        mode: opt.mode,
        clock: opt
            .clock
            .unwrap_or_else(faultline_ringbuf::clock::default_kind),
        ..ChannelConfig::default()
    };
    // The TSC's frequency is measured over the whole run and the metadata's clock replaced at
    // the end (module docs, step 5): the program does not wait for a calibration. Not when
    // streaming: the relay's copy of the metadata only grows.
    let refine_clock = cfg.clock == ClockKind::Tsc
        && opt.relay.is_none()
        && faultline_ringbuf::clock::calibrate_quick();
    let chan = Arc::new(Channel::create(&cfg).context("creating the channel")?);
    // The relay is reached before the program starts: unreachable is an error at once (or,
    // with -o, a warning and a local recording).
    let relay = match &opt.relay {
        Some(r) => match faultline::relay::connect(r, &chan, DrainConfig::default().flush_interval)
        {
            Ok((sink, handle)) => {
                let st = handle.stats();
                eprintln!(
                    "faultline record: streaming to {} as {}/{} (live: babeltrace2 \
                     --input-format=lttng-live {})",
                    r.url,
                    st.hostname,
                    st.relay_path.rsplit('/').next().unwrap_or(""),
                    faultline::relay::live_url(&r.url, &st)
                );
                Some((sink, handle))
            }
            Err(e) if opt.dir.is_some() => {
                eprintln!("faultline record: warning: {e}; recording locally only");
                None
            }
            Err(e) => bail!("{e}"),
        },
        None => None,
    };
    let chan_fd = chan.fd().as_raw_fd();
    // The program gets its own open file description of the channel, `record` keeps another
    // for the end's write lease (crate::channel_lease); without /proc, the program shares
    // the channel's (and the end falls back to the /proc scan).
    let opens = crate::channel_lease::ChannelOpens::new(chan_fd).ok();
    let child_fd = opens.as_ref().map_or(chan_fd, |o| o.child.as_raw_fd());
    let chan_id = fd_id(chan_fd).context("fstat of the channel")?;
    let chan_file =
        std::fs::metadata(format!("/proc/self/fd/{chan_fd}")).context("fstat of the channel")?;
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
    // A second handle on the pipe for polling (the reader goes to the drain).
    let pipe_watch = crate::record_wait::dup(fds[0]).context("schema pipe")?;
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
        .env(ENV_CHANNEL_FD, child_fd.to_string())
        .env(ENV_CHANNEL_ID, &chan_id)
        .env(ENV_SCHEMA_FD, wr_fd.to_string())
        .env(ENV_EVENTS, &opt.events)
        .env(ENV_STRATEGY, opt.policy.to_string());
    let mut notes: Vec<String> = Vec::new();
    // What the program inherits (inheritable only for the spawn).
    let mut passed = vec![child_fd, wr_fd];
    let mut high_fds: Vec<OwnedFd> = Vec::new();
    if let Some((l, lib, spec, note)) = preload {
        crate::libc_preload::apply(&mut cmd, &lib, l);
        high_fds = crate::libc_preload::pass_descriptors(&mut cmd, &lib, child_fd, wr_fd)?;
        passed = high_fds.iter().map(|f| f.as_raw_fd()).collect();
        cmd.env(ENV_EVENTS, spec);
        if let Some(n) = note {
            eprintln!("faultline record: {n}");
            notes.push(n);
        }
    }
    // The program inherits these: inheritable from here until they are closed right after
    // the spawn (record starts no other process meanwhile). No `pre_exec` closure, so that the
    // standard library can use `posix_spawn` (a `vfork`-like clone: no copy of record's page
    // tables, which cost a millisecond per run).
    for &fd in &passed {
        // SAFETY: fcntl(F_SETFD) on descriptors we own.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("passing the channel on");
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {:?}", opt.cmd[0]))?;
    drop(wr);
    drop(high_fds);
    if opens.is_none() {
        // The channel's own descriptor was passed on: close-on-exec again.
        // SAFETY: fcntl(F_SETFD) on a descriptor the channel keeps open.
        unsafe { libc::fcntl(chan_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // The program's description: only the program (and its descendants) hold it from now on.
    let lease_file = opens.map(|o| o.lease);
    let pid = child.id();
    let t_spawned = Instant::now();
    // Readable once the program has exited (None: fall back to timeouts).
    let pidfd = crate::record_wait::pidfd_open(pid);
    // While the program starts: the trace directory (the trace writer creates it if needed
    // too, and reports what fails then).
    if let Some(d) = &opt.dir {
        let _ = std::fs::create_dir_all(d);
    }

    let tty = opt.progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut status = None;
    let mut exited_at: Option<Instant> = None;
    let mut schema: Option<SchemaMessage> = None;
    let mut schema_note: Option<String> = None;
    // Messages that came with the schema in the same read (classes registered right after).
    let mut early: Vec<Message> = Vec::new();
    // Phase 1: wait for the schema (or the end of the program).
    loop {
        // Until a message, the end of the pipe or the program's exit (timeouts are backstops).
        let mut watch = vec![pipe_watch.as_raw_fd()];
        let timeout = match (&pidfd, exited_at) {
            (_, Some(t)) => PIPE_GRACE.saturating_sub(t.elapsed()),
            (Some(p), None) => {
                watch.push(p.as_raw_fd());
                Duration::from_secs(1)
            }
            (None, None) => Duration::from_millis(20),
        };
        crate::record_wait::poll_readable(&watch, Some(timeout));
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
                // Counters are only sent after the schema.
                Message::RecorderStats(_) => {
                    notes.push("recorder counters sent before the schema were ignored".into())
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
        // The program is gone but a descendant may hold the pipe: do not wait for ever.
        if status.is_some() {
            let t = *exited_at.get_or_insert_with(Instant::now);
            if t.elapsed() >= PIPE_GRACE {
                schema_note = Some(
                    "the program published no schema (did it start a faultline::Session?)".into(),
                );
                break;
            }
        }
    }
    let t_schema = Instant::now();
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
    let (relay_sink, relay_handle) = match relay {
        Some((s, h)) => (Some(s), Some(h)),
        None => (None, None),
    };
    let mut writer = match &opt.dir {
        Some(d) => TraceWriter::create(d, &desc)
            .with_context(|| format!("creating the trace in {}", d.display()))?,
        None => TraceWriter::create_without_files("relay", &desc)?,
    };
    writer.set_sync(opt.fsync);
    if let Some(s) = relay_sink {
        writer.set_sink(Box::new(s))?;
    }
    let dcfg = DrainConfig {
        direct_io: opt.direct_io,
        ..DrainConfig::default()
    };
    let mut drain = Drain::new(chan.clone(), writer, dcfg);
    // Run-time classes: the rest of the pipe (and what came with the schema).
    let mut classes = PipeClasses::new(reader, events.iter().map(|(i, _)| *i));
    classes.push_early(early);
    let counters = classes.counters();
    drain.set_class_source(Box::new(classes));

    // Phase 2: drain while the program runs; its exit interrupts the drain's sleep (no
    // thread for that when it has exited already, as a short program has by now).
    if status.is_none() {
        status = child.try_wait().context("waiting for the program")?;
    }
    let exit_wake = pidfd
        .as_ref()
        .filter(|_| status.is_none())
        .and_then(|p| crate::record_wait::ExitWake::start(chan.clone(), p).ok());
    let mut last_print = Instant::now();
    let mut last_bytes = 0u64;
    let status = loop {
        if drain.poll() == 0 {
            if let Some(st) = status.or(child.try_wait().context("waiting for the program")?) {
                break st;
            }
            // Idle: verify what was written so far, not all of it after the program's end.
            drain.verify_written();
            drain.wait();
        }
        if tty && last_print.elapsed() >= Duration::from_millis(500) {
            // Bytes, not events: the consumer does not look at records (they are counted
            // when the trace is verified at the end).
            let bytes = drain.stats().stream_bytes;
            let dt = last_print.elapsed().as_secs_f64();
            // Saturating: shared-memory counters (garbage must not panic or wrap).
            let lost = (0..chan.num_cpus())
                .filter_map(|c| chan.cpu_stats(c))
                .fold(0u64, |a, s| a.saturating_add(s.lost_total()));
            eprint!(
                "\r  {} bytes ({}/s)  {} packets  lost {} events  [{:.0}s]   ",
                group(bytes),
                group((bytes.saturating_sub(last_bytes) as f64 / dt) as u64),
                group(drain.stats().packets_written),
                group(lost),
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            last_print = Instant::now();
            last_bytes = bytes;
        }
    };
    let t_exit = Instant::now();
    drop(exit_wake);
    if tty {
        eprintln!();
    }
    // The program is gone: its last messages (final counters), bounded by a grace period.
    let grace = Instant::now();
    loop {
        drain.poll_classes();
        let c = schema_pipe_lock(&counters);
        if c.eof || c.info.final_received || grace.elapsed() >= PIPE_GRACE {
            break;
        }
        drop(c);
        crate::record_wait::poll_readable(
            &[pipe_watch.as_raw_fd()],
            Some(PIPE_GRACE.saturating_sub(grace.elapsed())),
        );
    }
    // Who can still write, then take what is complete, then recover what dead writers held.
    reap_descendants();
    let mut recovery = RecoveryInfo::default();
    let t_holders = Instant::now();
    // Held until recovery is done: nobody can open the channel meanwhile.
    let lease = lease_file
        .as_ref()
        .and_then(crate::channel_lease::Lease::take);
    let holders = if lease.is_some() {
        recovery.checked_by = "lease".into();
        Ok(Holders::default())
    } else {
        recovery.checked_by = "proc scan".into();
        channel_holders(
            Path::new("/proc"),
            chan_file.dev(),
            chan_file.ino(),
            std::process::id(),
        )
    };
    let holders_ms = ms(t_holders, Instant::now());
    if matches!(&holders, Ok(h) if h.is_empty()) {
        // Nothing can change the shared buffers any more: the rest goes through the page
        // cache, without waiting for the device (module docs, step 5).
        drain.writers_gone();
    }
    while drain.poll() > 0 {}
    match holders {
        Ok(h) if h.is_empty() => {
            // The drain's last written packet per CPU is the time floor of what recovery
            // completes (the trace writer accepts nothing that begins earlier).
            let r = chan.recover_dead_writers_after(|cpu| drain.last_timestamp_end(cpu));
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
        Ok(h) => recovery.skipped = Some(h.describe()),
        Err(e) => recovery.skipped = Some(format!("cannot scan /proc: {e}")),
    }
    drop(lease);
    drain.poll_classes();
    let counters = schema_pipe_lock(&counters).clone();
    let env = counters
        .last
        .map(|s| recorder_counts(&s, counters.source()).to_env())
        .unwrap_or_default();
    let t_finish = Instant::now();
    if refine_clock {
        if let Some(c) = faultline_ringbuf::clock::refine_tsc(&chan.clock()) {
            if let Err(e) = drain.set_clock(session::clock_desc_of(&c)) {
                notes.push(format!(
                    "the clock frequency measured over the run was not written: {e} (the \
                     metadata keeps the estimate of the start)"
                ));
            }
        }
    }
    let (ds, fin): (DrainStats, _) = drain.finish_with_env(env);
    let finish_ms = ms(t_finish, Instant::now());
    let mut summary = Summary {
        dir: opt.dir.clone(),
        recorder: counters.last,
        relay: relay_handle.map(|h| h.finish(faultline::relay::FINISH_TIMEOUT)),
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
    let damage: Vec<String> = ds
        .corrupt
        .iter()
        .map(|(cpu, c): (&u32, &CorruptBuffer)| c.line(*cpu))
        .collect();
    let exit_status = if program.status == 0 && !damage.is_empty() {
        EXIT_DAMAGED
    } else {
        program.status
    };
    let mut report = RecordReport {
        program,
        schema_received: schema.is_some(),
        libc: opt.libc.is_some(),
        recovery,
        summary,
        counters: counters.info,
        damage,
        exit_status,
        timing: Timing {
            setup_ms: ms(t_setup, t_spawned),
            attach_ms: ms(t_spawned, t_schema),
            run_ms: ms(t_schema, t_exit),
            shutdown_ms: 0.0,
            holders_ms,
            finish_ms,
        },
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
    report.timing.shutdown_ms = ms(t_exit, Instant::now());
    // The summary file is part of the trace directory's size.
    if let Some(dir) = &opt.dir {
        let path = dir.join(".faultline-summary.json");
        if let Ok(j) = serde_json::to_string_pretty(&report) {
            let _ = std::fs::write(&path, j);
        }
        report.summary.bytes_on_disk = session::bytes_on_disk(dir);
    }
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
    if r.summary.recorder.is_some() {
        eprintln!(
            "  (recorder counters: {})",
            if r.counters.final_received {
                "final report of the program"
            } else {
                "last periodic report of the program: it did not stop its session"
            }
        );
    }
    if let Some(e) = &r.counters.first_refusal {
        eprintln!("  note: {e} ({} message(s) refused)", r.counters.refused);
    }
    let rc = &r.recovery;
    if rc.ran && r.libc && rc.records == 0 && rc.subbufs > 0 {
        // Normal with --libc: preloaded processes exit without a final flush. The bytes are
        // the sub-buffers' unused ends, committed as padding records in the shared buffer;
        // the trace's packets end at their content (a 1 MiB sub-buffer holding one event
        // becomes a packet of a few hundred bytes).
        eprintln!(
            "  {} sub-buffer(s) left open by exited processes completed at the end ({} unused \
             bytes closed as padding)",
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
    for d in &r.damage {
        eprintln!("  DAMAGED: {d}");
    }
    if r.exit_status != p.status {
        eprintln!(
            "  exit status {}: the trace is incomplete (the program damaged the shared buffers)",
            r.exit_status
        );
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

fn schema_pipe_lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reap every descendant that has exited (they are re-parented to us: child subreaper), so
/// that zombies do not count as holders. Called once the program itself has been waited for.
fn reap_descendants() {
    loop {
        // SAFETY: waitpid with a null status pointer; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if r <= 0 {
            return;
        }
    }
}

/// Processes that can, or might, still write a channel ([`channel_holders`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    /// Processes that have the memfd open or mapped.
    pub certain: Vec<u32>,
    /// Descendants whose `/proc` entries could not be read, with the reason.
    pub unknown: Vec<(u32, String)>,
}

impl Holders {
    pub fn is_empty(&self) -> bool {
        self.certain.is_empty() && self.unknown.is_empty()
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.certain.is_empty() {
            parts.push(format!(
                "processes {:?} still have the channel open or mapped",
                self.certain
            ));
        }
        if !self.unknown.is_empty() {
            let u: Vec<String> = self
                .unknown
                .iter()
                .map(|(p, e)| format!("{p} ({e})"))
                .collect();
            parts.push(format!(
                "descendant processes whose /proc entries cannot be read might: {}",
                u.join(", ")
            ));
        }
        format!(
            "{}; sub-buffers held by their writers are not recovered",
            parts.join("; ")
        )
    }
}

/// Which processes other than `me` can still write the file `(dev, ino)`: those that have it
/// open (`PROC/PID/fd/*` resolves to it) or mapped (`PROC/PID/maps`), and, as "maybe",
/// descendants of `me` (by the parent links of `PROC/PID/stat`) whose entries cannot be read.
/// A process that exits during the scan is not counted. Unreadable processes outside `me`'s
/// tree are not counted (see the module docs for what that misses).
pub fn channel_holders(proc_root: &Path, dev: u64, ino: u64, me: u32) -> std::io::Result<Holders> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir(proc_root)? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid != me {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    // The parent links are only needed when some process cannot be read: read them then
    // (one `stat` per process is a third of the scan's system calls).
    let mut parent: Option<BTreeMap<u32, u32>> = None;
    let parents = || -> BTreeMap<u32, u32> {
        let mut m = BTreeMap::new();
        for &pid in pids.iter().chain([&me]) {
            if let Some(pp) = read_ppid(&proc_root.join(pid.to_string())) {
                m.insert(pid, pp);
            }
        }
        m
    };
    let descends = |parent: &BTreeMap<u32, u32>, mut p: u32| {
        let mut seen = BTreeSet::new();
        while let Some(&pp) = parent.get(&p) {
            if pp == me {
                return true;
            }
            if !seen.insert(pp) {
                return false;
            }
            p = pp;
        }
        false
    };
    let mut h = Holders::default();
    for &pid in &pids {
        let dir = proc_root.join(pid.to_string());
        match holds(&dir, dev, ino) {
            Ok(true) => h.certain.push(pid),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // exited meanwhile
            Err(e) => {
                let parent = parent.get_or_insert_with(parents);
                if descends(parent, pid) {
                    h.unknown.push((pid, e.to_string()));
                }
            }
        }
    }
    Ok(h)
}

/// The parent pid from `DIR/stat` (`pid (comm) state ppid ...`; comm may hold anything).
fn read_ppid(dir: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the process of `/proc` directory `dir` has `(dev, ino)` open or mapped.
fn holds(dir: &Path, dev: u64, ino: u64) -> std::io::Result<bool> {
    for e in std::fs::read_dir(dir.join("fd"))? {
        let Ok(e) = e else { continue };
        // stat follows the magic link to the open file itself.
        if let Ok(m) = std::fs::metadata(e.path()) {
            if m.dev() == dev && m.ino() == ino {
                return Ok(true);
            }
        }
    }
    let maps = std::fs::read_to_string(dir.join("maps"))?;
    let want_dev = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let want_ino = ino.to_string();
    Ok(maps.lines().any(|l| {
        let mut f = l.split_whitespace();
        let d = f.nth(3);
        let i = f.next();
        i == Some(want_ino.as_str()) && d == Some(want_dev.as_str())
    }))
}

/// `faultline record` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Trace a program that uses faultline tracepoints, or any dynamically linked program's libc calls with --libc: faultline record [--libc] -o DIR -- CMD [ARGS]",
    after_help = "Exit status: the program's own status (128+N when it was killed by signal N); \
3 when the program exited 0 but damaged the shared buffers it writes (the trace keeps every \
valid packet; one line on stderr names each damaged CPU buffer); 1 when record cannot run \
(the directory holds a trace, the program cannot be started, ...); 2 for invalid arguments. \
Whatever the program writes into the shared memory, record does not crash or hang."
)]
pub struct RecordArgs {
    /// Trace directory (must not hold a trace); optional with --relay
    #[arg(short = 'o', long = "output", required_unless_present = "relay")]
    pub output: Option<PathBuf>,
    /// Stream the trace to an lttng-relayd (LTTng's URL convention and default ports 5342 and
    /// 5343); live viewers read it with babeltrace2 --input-format=lttng-live
    /// net://HOST/host/HOSTNAME/SESSION. With -o the local trace is written too
    #[arg(long, value_name = "net://HOST[:CTRL_PORT[:DATA_PORT]]")]
    pub relay: Option<String>,
    /// Session name on the relay (default auto-YYYYMMDD-HHMMSS; a given name gets the
    /// creation date appended in the relay's output directory, as with LTTng)
    #[arg(long, value_name = "NAME", requires = "relay")]
    pub relay_session: Option<String>,
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
    /// --libc=open*,read,-mmap. Each call is one event libc:<call> with its arguments, ret,
    /// errno, dur_ns, pid and tid; faultline:process marks each program image attached
    #[arg(long, value_name = "CALLS", num_args = 0..=1, require_equals = true,
          default_missing_value = "*")]
    pub libc: Option<String>,
    /// With --libc: bytes recorded from each data buffer (read, write, send, recv…; 0 = none)
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub libc_data: usize,
    /// Sync the trace files to stable storage (fsync) before exiting. Without it the trace is
    /// complete when record exits, in the page cache (as strace -o or perf record leave
    /// theirs), but a power loss right after may lose its end
    #[arg(long)]
    pub fsync: bool,
    /// How the streams are written: direct (the default: O_DIRECT from the shared buffers, no
    /// copy and no page cache, but each write, and the read-back that verifies it, waits for
    /// the device; the last packets, written once no process can change the buffers, go
    /// through the page cache) or buffered (through the page cache, as strace -o writes its
    /// log: a copy of every byte and dirty pages)
    #[arg(long, value_name = "direct|buffered", default_value = "direct")]
    pub io: IoMode,
    /// The program and its arguments
    #[arg(last = true, required = true)]
    pub cmd: Vec<OsString>,
}

/// `record --io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    Direct,
    Buffered,
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
    let relay = match &a.relay {
        Some(u) => match faultline::relay::RelayOptions::parse(u) {
            Ok(mut r) => {
                r.session = a.relay_session.clone();
                Some(r)
            }
            Err(e) => {
                eprintln!("faultline record: {e}");
                return 2;
            }
        },
        None => None,
    };
    let opt = RecordOptions {
        dir: a.output.clone(),
        relay,
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
        fsync: a.fsync,
        direct_io: a.io == IoMode::Direct,
    };
    match run(&opt) {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print(&r);
            }
            r.exit_status
        }
        Err(e) => {
            eprintln!("faultline record: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline::session::check_stats;
    use faultline_recorder::{RecorderStats, StrategyStats};

    fn stats(events: [u64; 3], faulted: u64) -> RecorderStats {
        let mut s = RecorderStats {
            recorded: events.iter().sum(),
            faulted,
            ..RecorderStats::default()
        };
        for (i, e) in events.iter().enumerate() {
            s.per_strategy[i] = StrategyStats {
                events: *e,
                restarts: 1,
                fallbacks: 0,
            };
        }
        s
    }

    /// Whatever the program writes on the pipe, the reader keeps bounded memory, reports
    /// problems, and only consistent, non-decreasing counters are kept.
    #[test]
    fn pipe_counters_are_bounded_and_checked() {
        use faultline::schema_pipe::{encode, ClassSource, Reader, StatsMessage, MAX_LINE};
        let mut fds = [0; 2];
        // SAFETY: pipe2 into a valid array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let st = |s: RecorderStats, last: bool| {
            encode(&Message::RecorderStats(StatsMessage { last, stats: s }))
        };
        let writer = std::thread::spawn(move || {
            let mut w = File::from(wr);
            w.write_all(&st(stats([5, 0, 1], 2), false)).unwrap();
            // Going backwards, then an inconsistent sum, then faulted > recorded.
            w.write_all(&st(stats([4, 0, 1], 2), false)).unwrap();
            let mut bad = stats([7, 0, 1], 2);
            bad.recorded = 100;
            w.write_all(&st(bad, false)).unwrap();
            w.write_all(&st(stats([7, 0, 1], 9), false)).unwrap();
            // Out of range for a trace.
            w.write_all(&st(stats([u64::MAX / 2, 0, 0], 0), false))
                .unwrap();
            // A type from a later version, garbage, an endless line.
            w.write_all(b"{\"type\":\"later\",\"x\":[]}\n").unwrap();
            w.write_all(b"{not json\n").unwrap();
            w.write_all(&vec![b'x'; MAX_LINE + 4096]).unwrap();
            w.write_all(b"\n").unwrap();
            w.write_all(&st(stats([7, 1, 1], 3), true)).unwrap();
            // A later session of the process: a new series, added to the first.
            w.write_all(&st(stats([2, 0, 0], 1), false)).unwrap();
            w.write_all(&st(stats([1, 0, 0], 1), false)).unwrap();
            w.write_all(&st(stats([3, 0, 0], 1), true)).unwrap();
        });
        let mut classes = PipeClasses::new(Reader::new(File::from(rd)).unwrap(), []);
        let counters = classes.counters();
        let mut errors = Vec::new();
        let t0 = Instant::now();
        while !schema_pipe_lock(&counters).eof {
            assert!(classes.poll().is_empty());
            errors.extend(classes.take_errors());
            assert!(t0.elapsed() < Duration::from_secs(20), "no EOF");
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.join().unwrap();
        let c = schema_pipe_lock(&counters).clone();
        // Both sessions: every strategy has 1 restart in each.
        let mut total = stats([10, 1, 1], 4);
        for p in &mut total.per_strategy {
            p.restarts = 2;
        }
        assert_eq!(c.last, Some(total));
        assert!(c.info.final_received);
        assert_eq!(c.info.accepted, 4);
        // 4 in the first session, the backwards one in the second.
        assert_eq!(c.info.refused, 5, "{:?}", c.info);
        let first = c.info.first_refusal.unwrap();
        assert!(
            first.contains("recorded went backwards from 6 to 5"),
            "{first}"
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("unreadable")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("longer than")),
            "{errors:?}"
        );
    }

    #[test]
    fn counter_checks() {
        assert_eq!(check_stats(None, &stats([1, 2, 3], 6)), Ok(()));
        assert!(check_stats(None, &stats([1, 2, 3], 7))
            .unwrap_err()
            .contains("faulted = 7 > recorded = 6"));
        let mut s = stats([1, 2, 3], 0);
        s.recorded = 5;
        assert!(check_stats(None, &s).unwrap_err().contains("not the sum"));
        let mut s = stats([u64::MAX, 1, 0], 0);
        s.recorded = 0;
        assert!(check_stats(None, &s).unwrap_err().contains("out of range"));
        let mut s = stats([1, 2, 3], 0);
        s.lost_full = 9;
        let mut t = s;
        t.lost_full = 8;
        assert!(check_stats(Some(&s), &t)
            .unwrap_err()
            .contains("lost_full went backwards from 9 to 8"));
        assert_eq!(check_stats(Some(&t), &s), Ok(()));
    }

    /// A fake `/proc`: who holds the file `f` (open or mapped), who cannot be read.
    #[test]
    fn holders_from_proc() {
        let root = faultline_testkit::TmpDir::new("fakeproc");
        let target = root.join("the-channel");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&target, b"x").unwrap();
        let m = std::fs::metadata(&target).unwrap();
        let (dev, ino) = (m.dev(), m.ino());
        let me = 50u32;
        // pid, ppid, fd entry pointing at the channel, maps line with it, fd dir unreadable.
        let procs: &[(u32, u32, bool, bool, bool)] = &[
            (50, 1, true, false, false),     // me: never counted
            (100, 50, true, false, false),   // child holding the fd
            (101, 100, false, true, false),  // grandchild mapping it
            (102, 100, false, false, false), // grandchild holding nothing
            (103, 101, false, false, true),  // unreadable descendant: maybe
            (200, 1, false, false, true),    // unreadable stranger: not counted
            (201, 1, true, false, false),    // stranger with the fd open: counted
        ];
        for &(pid, ppid, fd, map, unreadable) in procs {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("stat"),
                format!("{pid} (a (weird) name) S {ppid} 1 1 0"),
            )
            .unwrap();
            if unreadable {
                // Not a directory: reading it fails like a permission error would.
                std::fs::write(d.join("fd"), b"").unwrap();
            } else {
                std::fs::create_dir_all(d.join("fd")).unwrap();
                std::os::unix::fs::symlink("/dev/null", d.join("fd/0")).unwrap();
                if fd {
                    std::os::unix::fs::symlink(&target, d.join("fd/7")).unwrap();
                }
            }
            let maps = if map {
                format!(
                    "7f00-7f10 rw-s 00000000 {:02x}:{:02x} {ino}   /memfd:faultline-channel (deleted)\n",
                    libc::major(dev),
                    libc::minor(dev)
                )
            } else {
                format!(
                    "7f00-7f10 rw-s 00000000 {:02x}:{:02x} {}   /other\n",
                    libc::major(dev),
                    libc::minor(dev),
                    ino + 1
                )
            };
            std::fs::write(d.join("maps"), maps).unwrap();
        }
        let h = channel_holders(&root, dev, ino, me).unwrap();
        assert_eq!(h.certain, vec![100, 101, 201]);
        assert_eq!(h.unknown.len(), 1);
        assert_eq!(h.unknown[0].0, 103);
        assert!(h.describe().contains("[100, 101, 201]"), "{}", h.describe());
        assert!(h.describe().contains("103 ("), "{}", h.describe());
        let none = channel_holders(&root, dev, ino + 5, me).unwrap();
        assert!(none.certain.is_empty() && none.unknown.len() == 1);
    }
}
