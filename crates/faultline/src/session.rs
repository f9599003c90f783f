//! Tracing sessions: `Session::builder()...start()` in the traced program.
//!
//! # Two kinds of session, one call
//! * **Embedded** (the default): [`SessionBuilder::start`] creates a channel (per-CPU ring
//!   buffers in a memfd), registers a [`Recorder`] probe on every tracepoint of the executable,
//!   writes the CTF metadata of all of them into the output directory, starts a consumer thread
//!   ([`crate::drain`]) and enables the selected tracepoints. [`Session::stop`] (or `Drop`)
//!   disables them, unregisters the recorder (waiting for calls still inside it), flushes and
//!   drains every buffer, finishes the trace (fsync) and returns a [`Summary`].
//! * **Attached** (the program runs under `faultline record`): the environment names an
//!   inherited memfd ([`ENV_CHANNEL_FD`], checked against [`ENV_CHANNEL_ID`]) and an inherited
//!   pipe ([`ENV_SCHEMA_FD`]). `start` maps that channel instead of creating one, registers the
//!   recorder, **publishes the schema** (a [`SchemaMessage`] line — event ids, providers,
//!   names, typed fields — on the pipe, see [`crate::schema_pipe`]; the pipe stays open for the
//!   life of the process and carries the event classes registered later) and enables the events
//!   named by `FAULTLINE_EVENTS` with the copy strategy of [`ENV_STRATEGY`]. There is no consumer
//!   thread: the `faultline record` process drains the channel and writes the trace. Both
//!   inherited descriptors are closed by `start` (the channel is re-opened close-on-exec), so a
//!   program the traced one executes does not attach to the channel by accident; if the
//!   variables are set but the descriptor is not that channel, `start` fails. A later session
//!   of the same process (after `stop`) attaches to the same channel and pipe again — kept for
//!   the life of the process — and, instead of a second schema, announces only the classes
//!   registered since (an `events` line): its events go to the same trace.
//!
//! # Settings under `faultline record`
//! `record` creates the channel and writes the trace, so it owns these builder settings; when
//! the program set one to a different value, `start` prints one line per setting on stderr
//! (`faultline: under `faultline record`, mode overwrite is replaced by record's discard
//! (--overwrite)`) and [`Session::overridden`] lists them:
//!
//! | builder setting | embedded | under `faultline record` |
//! |---|---|---|
//! | `output_dir` | the trace directory | ignored: `record -o DIR` |
//! | `mode`, `subbuf_size`, `num_subbuf`, `clock` | the channel's | `record`'s `--overwrite`, `--subbuf-size`, `--subbufs`, `--monotonic` |
//! | `policy` | the recorder's | `record --strategy` (`FAULTLINE_STRATEGY`) |
//! | `events` | used; else `FAULTLINE_EVENTS`; else `*` | `FAULTLINE_EVENTS` (`record --events`, default `*`); else the builder's |
//! | `max_restarts` | used | used |
//! | `flush_interval`, `verbose`, `verify` | the consumer thread's | no effect (`record` is the consumer; it verifies) |
//! | `relay`, `relay_session` | streamed by the consumer thread ([`crate::relay`]) | ignored: `record --relay` |
//!   While attached, a reporter thread sends the session's recorder counters as
//!   `recorder_stats` lines ([`crate::schema_pipe::StatsMessage`]) every [`STATS_INTERVAL`]
//!   when they changed (so a killed program still leaves its last counts), and once more with
//!   `"final": true` when the session stops, after the last flush (a later session starts a
//!   new series, which `faultline record` adds to the previous ones). The reporter writes with
//!   SIGPIPE blocked in its thread, so a recorder that went away makes writes fail instead of
//!   killing the program.
//!
//! # Event classes registered at run time
//! Tracepoints registered while the session runs (`faultline_tracepoints::register`, e.g. by
//! `faultline-tracing` on a callsite's first hit) are recorded too: the recorder follows every
//! new tracepoint, and the session's registry listener hands each new class to the consumer
//! before the class can be active — to the drain thread (embedded), which adds it to the
//! metadata before writing the packet that holds its first record, or as an `events` line on
//! the schema pipe (attached). The final metadata declares every class.
//!
//! # Who writes what
//! The traced program's threads write the ring buffers (through the recorder); only the
//! consumer (this process's drain thread, or `faultline record`) writes `consumed` and the
//! trace files. One session per process at a time: the tracepoint registry is process-wide.

use crate::drain::{Drain, DrainConfig, DrainStats};
use crate::schema_pipe::{self, ClassSource, EventsMessage, Message, StatsMessage};
use faultline_ctf::{
    ClockDesc, CtfError, EnvDesc, EnvValue, RecorderCounts, StrategyCounts, TraceDesc, TraceWriter,
};
use faultline_recorder::{Policy, Recorder, RecorderConfig, RecorderStats, Strategy};
use faultline_ringbuf::{BufferIndex, Channel, ChannelConfig, ClockKind, Mode};
use faultline_schema::{EventDesc, OwnedEventDesc};
use faultline_tracepoints::{ListenerHandle, ProbeHandle, ProbeKind, Tracepoint};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Ring buffers of an embedded session: `per-cpu` or `per-cid`
/// ([`SessionBuilder::buffer_index`]).
pub const ENV_BUFFERS: &str = "FAULTLINE_BUFFERS";

/// Key of the trace metadata's `env` block saying what the streams are indexed by: `"cpu"`
/// (stream N holds CPU N's buffer; also when the key is absent) or `"cid"` (concurrency id N
/// of the traced process).
pub const ENV_KEY_BUFFERS: &str = "faultline_buffers";

/// `per-cpu` / `per-cid` (also `cpu` / `cid`) as a [`BufferIndex`].
pub fn parse_buffer_index(s: &str) -> Result<BufferIndex, String> {
    match s {
        "per-cpu" | "cpu" => Ok(BufferIndex::Cpu),
        "per-cid" | "cid" => Ok(BufferIndex::Cid),
        _ => Err(format!(
            "buffers {s:?}: expected per-cpu or per-cid ({ENV_BUFFERS}, --buffers)"
        )),
    }
}

/// What an embedded session's buffers are indexed by when neither
/// [`SessionBuilder::buffer_index`] nor [`ENV_BUFFERS`] says: per concurrency id where that
/// wins, per CPU elsewhere.
///
/// Per CPU, a process's buffers are those of every CPU its writers ever ran on: up to the
/// CPUs it may run on (`A`), and threads that migrate get there over time. Per concurrency
/// id, at most min(threads, `A`). Both cost the same per event and lose nothing at the same
/// rates (`faultline bench`, docs/INSTRUMENTING.md), so per-cid wins exactly when the process
/// has fewer threads than CPUs to run on: it is the default when the process may run on
/// more CPUs than it has threads now plus the session's consumer thread, and the kernel
/// supports it (rseq `mm_cid`, Linux 6.3+, and membarrier). Otherwise per CPU — also for
/// programs that `fork` and trace in the children: per-cid buffers take events from the
/// creating process only (the child's are counted lost, `lost_no_buffer`), so such programs
/// should ask for per-CPU buffers.
pub fn default_buffer_index() -> BufferIndex {
    default_index_for(
        allowed_cpus().unwrap_or(0),
        process_threads().unwrap_or(usize::MAX),
        || faultline_ringbuf::channel::cid_supported().is_ok(),
    )
}

/// CPUs the calling thread may run on (its affinity mask, which threads it creates inherit).
fn allowed_cpus() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity(0) fills the caller's set of the
    // size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then(|| libc::CPU_COUNT(&set) as usize)
    }
}

/// [`default_buffer_index`]'s rule: `allowed` CPUs, `threads` now, and whether per-cid works
/// (asked only when it would win).
fn default_index_for(allowed: usize, threads: usize, cid_ok: impl FnOnce() -> bool) -> BufferIndex {
    if allowed > threads.saturating_add(1) && cid_ok() {
        BufferIndex::Cid
    } else {
        BufferIndex::Cpu
    }
}

/// This process's thread count (`Threads:` of `/proc/self/status`).
fn process_threads() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Inherited memfd of the channel (decimal fd number).
pub const ENV_CHANNEL_FD: &str = "FAULTLINE_CHANNEL_FD";
/// `<st_dev>:<st_ino>` of that memfd, so a stale variable cannot make us map another file.
pub const ENV_CHANNEL_ID: &str = "FAULTLINE_CHANNEL_ID";
/// Inherited write end of the schema pipe (decimal fd number).
pub const ENV_SCHEMA_FD: &str = "FAULTLINE_SCHEMA_FD";
/// `<st_dev>:<st_ino>` of that pipe (set by `faultline record --libc`, whose preload library
/// publishes the schema only while the descriptor is still that pipe).
pub const ENV_SCHEMA_ID: &str = "FAULTLINE_SCHEMA_ID";

/// Lowest descriptor number for the descriptors a recorder hands to a traced program and that
/// the `--libc` preload library makes for itself: 64 below the soft `RLIMIT_NOFILE`, capped at
/// 1024 (so 960 under the usual limit), out of the program's way (programs expect `open` to
/// return the lowest free number, and often get 3; `select` needs numbers below 1024). Not
/// higher under a larger limit: the kernel sizes a process's descriptor table to its highest
/// open descriptor, and every `fork` and process start copies that table (at 20,000 it cost
/// each start ~0.1 ms, at the 2^20 of some containers it would be 8 MiB). At least 3.
pub fn high_fd_base() -> i32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as i32
    } else {
        1024
    };
    (soft.min(1024) - 64).max(3)
}
/// Tracepoints to enable (the registry's syntax: `glob,glob,-glob`).
pub const ENV_EVENTS: &str = "FAULTLINE_EVENTS";
/// Copy strategy policy: `auto`, `reserve-copy-commit`, `bounce` or `prefault-restart`.
pub const ENV_STRATEGY: &str = "FAULTLINE_STRATEGY";

/// Version of [`SchemaMessage`].
pub const SCHEMA_VERSION: u32 = 1;

/// How often an attached session reports its recorder counters (when they changed).
pub const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Check counters received from a traced program (untrusted) against themselves and against
/// the previous accepted ones: every count fits an `i64` (what a trace can carry), `recorded`
/// is the sum of the per-strategy events, `faulted <= recorded`, and no counter goes
/// backwards.
pub fn check_stats(prev: Option<&RecorderStats>, s: &RecorderStats) -> Result<(), String> {
    let now = s.counters();
    if let Some((k, v)) = now.iter().find(|(_, v)| *v > i64::MAX as u64) {
        return Err(format!("{k} = {v} is out of range"));
    }
    let sum = s
        .per_strategy
        .iter()
        .try_fold(0u64, |a, p| a.checked_add(p.events));
    if sum != Some(s.recorded) {
        return Err(format!(
            "recorded = {} is not the sum of the per-strategy events",
            s.recorded
        ));
    }
    if s.faulted > s.recorded {
        return Err(format!(
            "faulted = {} > recorded = {}",
            s.faulted, s.recorded
        ));
    }
    if let Some(p) = prev {
        for ((k, v), (_, old)) in now.iter().zip(p.counters()) {
            if *v < old {
                return Err(format!("{k} went backwards from {old} to {v}"));
            }
        }
    }
    Ok(())
}

/// The recorder counters in the form a trace carries ([`RecorderCounts`]).
pub fn recorder_counts(r: &RecorderStats, source: &str) -> RecorderCounts {
    RecorderCounts {
        source: source.to_string(),
        events: r.recorded,
        faulted: r.faulted,
        faulted_bytes: r.faulted_bytes,
        resized: r.resized,
        strategies: Strategy::ALL
            .iter()
            .map(|s| {
                let st = r.strategy(*s);
                (
                    s.to_string(),
                    StrategyCounts {
                        events: st.events,
                        restarts: st.restarts,
                        fallbacks: st.fallbacks,
                    },
                )
            })
            .collect(),
    }
}

/// One event of a published schema: one JSON object, `id` next to the members of
/// [`OwnedEventDesc`] (`provider`, `name`, `fields`).
///
/// Read and written through plain structs ([`SchemaEventWire`], [`SchemaEventRef`]) rather
/// than `#[serde(flatten)]`, which makes serde buffer every object into an untyped tree
/// first: a schema of a few hundred classes is read by `faultline record` while the program
/// starts, and that tree cost most of its ~0.2 ms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "SchemaEventWire")]
pub struct SchemaEvent {
    /// Event id, as in the record headers.
    pub id: u32,
    /// Provider, name and typed fields.
    pub desc: OwnedEventDesc,
}

/// How a [`SchemaEvent`] is read (unknown members are skipped, as before).
#[derive(Deserialize)]
struct SchemaEventWire {
    id: u32,
    provider: String,
    name: String,
    fields: Vec<faultline_schema::OwnedFieldDesc>,
}

impl From<SchemaEventWire> for SchemaEvent {
    fn from(w: SchemaEventWire) -> Self {
        SchemaEvent {
            id: w.id,
            desc: OwnedEventDesc {
                provider: w.provider,
                name: w.name,
                fields: w.fields,
            },
        }
    }
}

/// How a [`SchemaEvent`] is written: the same members, in the same order.
#[derive(Serialize)]
struct SchemaEventRef<'a> {
    id: u32,
    provider: &'a str,
    name: &'a str,
    fields: &'a [faultline_schema::OwnedFieldDesc],
}

impl Serialize for SchemaEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SchemaEventRef {
            id: self.id,
            provider: &self.desc.provider,
            name: &self.desc.name,
            fields: &self.desc.fields,
        }
        .serialize(s)
    }
}

/// What an attached session publishes to `faultline record` (JSON, one message, then EOF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaMessage {
    /// [`SCHEMA_VERSION`] of the sender.
    pub version: u32,
    /// Process id of the traced program.
    pub pid: u32,
    /// Its executable's file name.
    pub procname: String,
    /// Its host name.
    pub hostname: String,
    /// The copy strategy policy in use (`auto`, or a strategy name).
    pub policy: String,
    /// Every event class known when the session started.
    pub events: Vec<SchemaEvent>,
}

/// Errors starting or stopping a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Only one session runs at a time in a process.
    #[error("a faultline session is already running in this process")]
    AlreadyRunning,
    /// Creating or mapping the channel failed.
    #[error("channel: {0}")]
    Channel(#[from] faultline_ringbuf::ChannelError),
    /// Creating the trace failed.
    #[error("trace: {0}")]
    Trace(#[from] CtfError),
    /// The `faultline record` environment variables are set but do not name its channel and pipe.
    #[error("{ENV_CHANNEL_FD}/{ENV_SCHEMA_FD} are set but {0} (is this program run by `faultline record`?)")]
    Inherited(String),
    /// A setting or environment variable is invalid, or a thread could not be started.
    #[error("{0}")]
    Config(String),
    /// The output directory already holds a trace (`metadata`); traces are never overwritten.
    /// `faultline record` and `faultline demo` say the same.
    #[error("{} already holds a trace; choose another directory", .0.display())]
    TraceExists(PathBuf),
    /// The embedded consumer thread panicked.
    #[error("the consumer thread panicked")]
    DrainPanicked,
    /// The relay cannot be reached or refused the session (and there is no local output
    /// directory to fall back on).
    #[error("{0}")]
    Relay(String),
}

/// Session options. See [`Session::builder`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    dir: Option<PathBuf>,
    mode: Mode,
    subbuf_size: u64,
    num_subbuf: u64,
    clock: Option<ClockKind>,
    policy: Policy,
    max_restarts: u32,
    events: Option<String>,
    buffer_index: Option<BufferIndex>,
    drain: DrainConfig,
    relay: Option<String>,
    relay_session: Option<String>,
    /// Which of the settings `faultline record` owns were set by the program.
    explicit: Explicit,
}

/// Settings of a [`SessionBuilder`] the program set explicitly (the others are defaults).
#[derive(Debug, Clone, Copy, Default)]
struct Explicit {
    mode: bool,
    subbuf_size: bool,
    num_subbuf: bool,
    policy: bool,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            dir: None,
            mode: Mode::Discard,
            subbuf_size: 1024 * 1024,
            num_subbuf: 8,
            clock: None,
            policy: Policy::Auto,
            max_restarts: RecorderConfig::default().max_restarts,
            events: None,
            buffer_index: None,
            // Events are counted at the recorder: no verification pass (module docs).
            // Its drain has a thread of its own: it may move it to each buffer's CPU.
            drain: DrainConfig {
                verify: false,
                follow_cpus: true,
                ..DrainConfig::default()
            },
            relay: None,
            relay_session: None,
            explicit: Explicit::default(),
        }
    }
}

impl SessionBuilder {
    /// Trace directory (must not hold a trace yet). Default: `./faultline-trace-<pid>`.
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// Discard (default) or overwrite (flight recorder).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.explicit.mode = true;
        self
    }
    /// Sub-buffer size in bytes (power of two; default 1 MiB).
    pub fn subbuf_size(mut self, bytes: u64) -> Self {
        self.subbuf_size = bytes;
        self.explicit.subbuf_size = true;
        self
    }
    /// Sub-buffers per CPU (power of two; default 8).
    pub fn num_subbuf(mut self, n: u64) -> Self {
        self.num_subbuf = n;
        self.explicit.num_subbuf = true;
        self
    }
    /// Timestamp clock (default: TSC when the kernel uses it, else CLOCK_MONOTONIC).
    pub fn clock(mut self, clock: ClockKind) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Copy strategy policy (default [`Policy::Auto`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self.explicit.policy = true;
        self
    }
    /// Restarts allowed per event by prefault-restart.
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }
    /// Tracepoints to enable, `glob,glob,-glob` over `provider:name`. Default:
    /// `FAULTLINE_EVENTS` if set, else `*`.
    pub fn events(mut self, spec: impl Into<String>) -> Self {
        self.events = Some(spec.into());
        self
    }
    /// Ring buffers per CPU ([`BufferIndex::Cpu`]) or per concurrency id of this process
    /// ([`BufferIndex::Cid`]: at most min(threads, CPUs the process may run on) buffers are
    /// ever used, so memory follows the program's concurrency, not the machine's CPU count).
    /// Default: `FAULTLINE_BUFFERS` (`per-cpu` or `per-cid`) if set, else
    /// [`default_buffer_index`]: per-cid where it wins (the process may run on more CPUs than
    /// it has threads) and the kernel supports it, per CPU otherwise. Per-cid needs rseq
    /// `mm_cid` (Linux 6.3+) and membarrier; an explicit per-cid request that the kernel
    /// cannot honour makes `start` fail. Per-cid buffers take events from this process only:
    /// a program that forks and traces in its children should ask for per-CPU buffers. Under
    /// `faultline record` the buffers are always per CPU (several processes share them).
    pub fn buffer_index(mut self, index: BufferIndex) -> Self {
        self.buffer_index = Some(index);
        self
    }
    /// How often the consumer flushes quiet buffers (default 200 ms).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.drain.flush_interval = d;
        self
    }
    /// Verify the trace when the session stops (default off; [`crate::drain`], "Protocol"):
    /// the consumer thread re-reads every packet it wrote, checks every record, removes
    /// packets that fail and counts the events per name ([`Summary::events`],
    /// [`CpuSummary::events`]). It costs tens of ns of consumer CPU per event, after tracing.
    /// Without it the consumer hands packets to the disk without reading their records (a
    /// few ns per event), `events_written` is what the recorder committed less what could
    /// not be written, and the per-name counts are empty; `faultline stats` counts (and
    /// checks) a trace's events afterwards.
    pub fn verify(mut self, on: bool) -> Self {
        self.drain.verify = on;
        self
    }
    /// Stream the trace to an `lttng-relayd` at `url` (`net://HOST[:CTRL_PORT[:DATA_PORT]]`,
    /// [`crate::relay`]). Without [`SessionBuilder::output_dir`] no local trace is written; with
    /// it, both. A relay that cannot be reached makes `start` fail — or, with an output
    /// directory, prints a warning and records locally only.
    pub fn relay(mut self, url: impl Into<String>) -> Self {
        self.relay = Some(url.into());
        self
    }
    /// Session name on the relay (default `auto-YYYYMMDD-HHMMSS`; a given name gets the
    /// creation date appended in the relay's directory, as with LTTng).
    pub fn relay_session(mut self, name: impl Into<String>) -> Self {
        self.relay_session = Some(name.into());
        self
    }
    /// Whether the consumer prints errors on stderr as they happen (default true).
    pub fn verbose(mut self, v: bool) -> Self {
        self.drain.verbose = v;
        self
    }

    /// Start the session: attached when run by `faultline record`, embedded otherwise (module
    /// docs). Under `record`, the settings `record` owns replace the builder's (module docs,
    /// "Settings under `faultline record`"), with a warning on stderr for each that differs.
    /// Fails with [`SessionError::TraceExists`] if the (embedded) output directory already
    /// holds a trace.
    pub fn start(self) -> Result<Session, SessionError> {
        // AcqRel: the acquire pairs with the Release stores of `false` (a failed start, the end
        // of the previous session), so this one starts after that one finished.
        if ACTIVE.swap(true, Ordering::AcqRel) {
            return Err(SessionError::AlreadyRunning);
        }
        let r = if std::env::var_os(ENV_CHANNEL_FD).is_some() {
            self.start_attached()
        } else {
            self.start_embedded()
        };
        if r.is_err() {
            // Release: pairs with the AcqRel swap of the next start.
            ACTIVE.store(false, Ordering::Release);
        }
        r
    }

    fn recorder_config(&self, policy: Policy) -> RecorderConfig {
        RecorderConfig {
            policy,
            max_restarts: self.max_restarts,
        }
    }

    fn start_embedded(self) -> Result<Session, SessionError> {
        let relay_opts = match &self.relay {
            Some(u) => {
                let mut o = crate::relay::RelayOptions::parse(u).map_err(SessionError::Config)?;
                o.session = self.relay_session.clone();
                Some(o)
            }
            None => None,
        };
        // Streaming only: no local files unless a directory was given.
        let local = self.dir.is_some() || relay_opts.is_none();
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("faultline-trace-{}", std::process::id())));
        if local {
            check_trace_dir(&dir)?;
        }
        let defaults = ChannelConfig::default();
        let index = match (self.buffer_index, std::env::var(ENV_BUFFERS).ok()) {
            (Some(i), _) => i,
            (None, Some(v)) => parse_buffer_index(&v).map_err(SessionError::Config)?,
            (None, None) => default_buffer_index(),
        };
        let cfg = ChannelConfig {
            subbuf_size: self.subbuf_size,
            num_subbuf: self.num_subbuf,
            mode: self.mode,
            clock: self
                .clock
                .unwrap_or_else(faultline_ringbuf::clock::default_kind),
            index,
            ..defaults
        };
        let chan = Arc::new(Channel::create(&cfg)?);
        let relay = match &relay_opts {
            Some(o) => match crate::relay::connect(o, &chan, self.drain.flush_interval) {
                Ok(r) => Some(r),
                Err(e) if local => {
                    eprintln!("faultline: {e}; recording locally only");
                    None
                }
                Err(e) => return Err(SessionError::Relay(e.to_string())),
            },
            None => None,
        };
        let late = Arc::new(Mutex::new(Vec::new()));
        let late2 = late.clone();
        let (all, listener) = faultline_tracepoints::subscribe(Arc::new(move |tp| {
            lock(&late2).push((tp.id(), *tp.desc()));
        }));
        let events: Vec<(u32, EventDesc)> = all.iter().map(|tp| (tp.id(), *tp.desc())).collect();
        let desc = TraceDesc {
            uuid: chan.uuid(),
            clock: clock_desc(&chan),
            env: {
                let mut env = env_desc(&procname(), &self.policy.to_string(), chan.mode());
                // What stream N is: CPU N or concurrency id N (absent: per CPU).
                env.extra.push((
                    ENV_KEY_BUFFERS.into(),
                    EnvValue::Str(chan.buffer_index().name().into()),
                ));
                env
            },
            events: events.clone(),
        };
        let created = if local {
            TraceWriter::create(&dir, &desc)
        } else {
            TraceWriter::create_without_files(&dir, &desc)
        };
        let (relay_sink, relay_handle) = match relay {
            Some((s, h)) => (Some(s), Some(h)),
            None => (None, None),
        };
        let writer = match created.and_then(|mut w| {
            if let Some(s) = relay_sink {
                w.set_sink(Box::new(s))?;
            }
            Ok(w)
        }) {
            Ok(w) => w,
            Err(e) => {
                faultline_tracepoints::unsubscribe(listener);
                return Err(match e {
                    // Created meanwhile by someone else: the same answer as the check above.
                    CtfError::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        SessionError::TraceExists(dir.clone())
                    }
                    e => e.into(),
                });
            }
        };
        let recorder = Recorder::new(chan.clone(), self.recorder_config(self.policy));
        let handle = attach_all(&recorder);
        let stop = Arc::new(AtomicBool::new(false));
        let final_env: Arc<Mutex<FinalCounts>> = Arc::default();
        let mut drain = Drain::new(chan.clone(), writer, self.drain);
        drain.set_class_source(Box::new(LateClasses(late)));
        let stop2 = stop.clone();
        let env2 = final_env.clone();
        let thread = std::thread::Builder::new()
            .name("faultline-drain".into())
            .spawn(move || {
                drain.run_until(&stop2);
                let (env, committed) =
                    std::mem::take(&mut *env2.lock().unwrap_or_else(|e| e.into_inner()));
                drain.finish_counted(env, committed)
            })
            .map_err(|e| SessionError::Config(format!("cannot start the consumer thread: {e}")))?;
        let spec = self
            .events
            .clone()
            .or_else(|| std::env::var(ENV_EVENTS).ok())
            .unwrap_or_else(|| "*".into());
        faultline_tracepoints::set_events(&spec);
        Ok(Session {
            inner: Some(Inner {
                chan,
                recorder,
                handle,
                events,
                listener: Some(listener),
                kind: Kind::Embedded {
                    dir: local.then_some(dir),
                    relay: relay_handle,
                    stop,
                    final_env,
                    thread: Some(thread),
                },
            }),
        })
    }

    fn start_attached(self) -> Result<Session, SessionError> {
        let bad = |m: String| SessionError::Inherited(m);
        let policy = match std::env::var(ENV_STRATEGY) {
            Ok(s) => s
                .parse::<Policy>()
                .map_err(|e| SessionError::Config(format!("{ENV_STRATEGY}: {e}")))?,
            Err(_) => self.policy,
        };
        // A later session of this process reuses what the first one set up: the inherited
        // descriptors are gone by then and the schema is already published.
        let mut attached = lock(&ATTACHED);
        let (chan, pipe, sent, first_sfd) = match attached.as_ref() {
            Some(a) => (a.chan.clone(), a.pipe.clone(), a.sent.clone(), None),
            None => {
                let (chan, sfd) = open_inherited()?;
                // SAFETY: the schema fd was inherited for us (ENV_SCHEMA_FD contract); we take
                // ownership, make it close-on-exec, and keep it for the life of the process.
                let pipe = unsafe {
                    libc::fcntl(sfd, libc::F_SETFD, libc::FD_CLOEXEC);
                    File::from(OwnedFd::from_raw_fd(sfd))
                };
                let sent = Arc::new(Mutex::new(HashSet::new()));
                (chan, Arc::new(Mutex::new(pipe)), sent, Some(sfd))
            }
        };
        let (pipe2, sent2) = (pipe.clone(), sent.clone());
        // Each class registered from now on: one `events` line, written before the class can
        // be active (schema_pipe module docs), once per process. A failed write (recorder
        // gone) loses only the description; the records would be rejected by nobody, so
        // nothing else to do.
        let (all, listener) = faultline_tracepoints::subscribe(Arc::new(move |tp| {
            if !lock(&sent2).insert(tp.id()) {
                return;
            }
            let m = Message::Events(EventsMessage {
                events: vec![SchemaEvent {
                    id: tp.id(),
                    desc: OwnedEventDesc::from(tp.desc()),
                }],
            });
            let _ = schema_pipe::send(&mut lock(&pipe2), &m);
        }));
        let events: Vec<(u32, EventDesc)> = all.iter().map(|tp| (tp.id(), *tp.desc())).collect();
        // The classes this process has not announced yet: all of them for the first session,
        // those registered between two sessions for a later one.
        let unsent: Vec<SchemaEvent> = {
            let mut sent = lock(&sent);
            events
                .iter()
                .filter(|(id, _)| sent.insert(*id))
                .map(|(id, d)| SchemaEvent {
                    id: *id,
                    desc: OwnedEventDesc::from(d),
                })
                .collect()
        };
        let recorder = Recorder::new(chan.clone(), self.recorder_config(policy));
        let handle = attach_all(&recorder);
        let report_pipe = pipe.clone();
        if let Some(sfd) = first_sfd {
            let msg = SchemaMessage {
                version: SCHEMA_VERSION,
                pid: std::process::id(),
                procname: procname(),
                hostname: hostname(),
                policy: policy.to_string(),
                events: unsent,
            };
            // The listener is registered: a class registered now waits for this lock, so its
            // line follows the schema line.
            let published = schema_pipe::send(&mut lock(&pipe), &Message::Schema(msg));
            if let Err(e) = published {
                faultline_tracepoints::unsubscribe(listener);
                if let Some(h) = handle {
                    faultline_tracepoints::unregister(h);
                }
                return Err(bad(format!("cannot publish the schema on fd {sfd}: {e}")));
            }
            *attached = Some(Attachment {
                chan: chan.clone(),
                pipe,
                sent,
            });
        } else if !unsent.is_empty() {
            let m = Message::Events(EventsMessage { events: unsent });
            let _ = schema_pipe::send(&mut lock(&pipe), &m);
        }
        drop(attached);
        let reporter = Reporter::start(report_pipe, recorder.clone())
            .map_err(|e| SessionError::Config(format!("cannot start the reporter thread: {e}")))?;
        // Under `faultline record` its event list wins over the program's own choice.
        let spec = std::env::var(ENV_EVENTS)
            .ok()
            .or_else(|| self.events.clone())
            .unwrap_or_else(|| "*".into());
        let overridden = self.overridden_by_record(&chan, policy, &spec);
        for o in &overridden {
            eprintln!("faultline: under `faultline record`, {o}");
        }
        faultline_tracepoints::set_events(&spec);
        Ok(Session {
            inner: Some(Inner {
                chan,
                recorder,
                handle,
                events,
                listener: Some(listener),
                kind: Kind::Attached {
                    overridden,
                    reporter: Some(reporter),
                },
            }),
        })
    }

    /// The settings of this builder that `faultline record` replaces with its own, one
    /// sentence each (module docs, "Settings under `faultline record`").
    fn overridden_by_record(&self, chan: &Channel, policy: Policy, events: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            out.push(format!(
                "output_dir {} is ignored: the trace goes to record's -o directory",
                dir.display()
            ));
        }
        let name = |m: Mode| match m {
            Mode::Discard => "discard",
            Mode::Overwrite => "overwrite",
        };
        if self.explicit.mode && self.mode != chan.mode() {
            out.push(format!(
                "mode {} is replaced by record's {} (--overwrite)",
                name(self.mode),
                name(chan.mode())
            ));
        }
        if self.explicit.subbuf_size && self.subbuf_size != chan.subbuf_size() {
            out.push(format!(
                "subbuf_size {} is replaced by record's {} (--subbuf-size)",
                self.subbuf_size,
                chan.subbuf_size()
            ));
        }
        if self.explicit.num_subbuf && self.num_subbuf != chan.num_subbuf() {
            out.push(format!(
                "num_subbuf {} is replaced by record's {} (--subbufs)",
                self.num_subbuf,
                chan.num_subbuf()
            ));
        }
        if let Some(c) = self.clock {
            if c != chan.clock().kind {
                out.push(format!(
                    "clock {c:?} is replaced by record's {:?} (--monotonic)",
                    chan.clock().kind
                ));
            }
        }
        if self.explicit.policy && self.policy != policy {
            out.push(format!(
                "copy strategy {} is replaced by record's {policy} (--strategy)",
                self.policy
            ));
        }
        if let Some(u) = &self.relay {
            out.push(format!(
                "relay {u} is ignored: record streams the trace (--relay)"
            ));
        }
        if let Some(e) = &self.events {
            if e != events {
                out.push(format!(
                    "events {e:?} are replaced by record's {events:?} (--events)"
                ));
            }
        }
        out
    }
}

/// What the first session of the process attached under `faultline record` set up, reused
/// by later sessions: the channel, the schema pipe (open for the life of the process), and the
/// ids of the event classes announced on it (each is announced once).
struct Attachment {
    chan: Arc<Channel>,
    pipe: Arc<Mutex<File>>,
    sent: Arc<Mutex<HashSet<u32>>>,
}

static ATTACHED: Mutex<Option<Attachment>> = Mutex::new(None);

/// Map the channel `faultline record` handed down ([`ENV_CHANNEL_FD`], checked against
/// [`ENV_CHANNEL_ID`]); return it and the schema pipe ([`ENV_SCHEMA_FD`]). The inherited
/// channel descriptor is closed (the channel keeps a close-on-exec copy).
fn open_inherited() -> Result<(Arc<Channel>, i32), SessionError> {
    let bad = |m: String| SessionError::Inherited(m);
    let fd: i32 = env_fd(ENV_CHANNEL_FD).map_err(bad)?;
    let sfd: i32 = env_fd(ENV_SCHEMA_FD).map_err(bad)?;
    let want = std::env::var(ENV_CHANNEL_ID).unwrap_or_default();
    let got = fd_id(fd).map_err(|e| bad(format!("fd {fd}: {e}")))?;
    if got != want {
        return Err(bad(format!(
            "fd {fd} is not the recorder's channel (id {got}, expected {want:?})"
        )));
    }
    // Our own close-on-exec copy; the inherited descriptor is closed.
    // SAFETY: fcntl on an fd number we just checked is open.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(bad(format!(
            "cannot duplicate fd {fd}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else; `fd` was inherited for us
    // (the contract of ENV_CHANNEL_FD) and is not used again.
    let file = unsafe {
        libc::close(fd);
        File::from(OwnedFd::from_raw_fd(dup))
    };
    let chan = Arc::new(Channel::open(file)?);
    Ok((chan, sfd))
}

static ACTIVE: AtomicBool = AtomicBool::new(false);

fn attach_all(recorder: &Arc<Recorder>) -> Option<ProbeHandle> {
    // Every tracepoint, including the ones registered later (none at all is not an error).
    Some(faultline_tracepoints::register_probe_following(
        "*",
        recorder.clone(),
        ProbeKind::Faultable,
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The embedded drain's class source: what the registry listener collected.
struct LateClasses(Arc<Mutex<Vec<(u32, EventDesc)>>>);

impl ClassSource for LateClasses {
    fn poll(&mut self) -> Vec<(u32, EventDesc)> {
        std::mem::take(&mut *lock(&self.0))
    }
}

fn env_fd(name: &str) -> Result<i32, String> {
    let v = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
    v.trim()
        .parse::<i32>()
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(|| format!("{name}={v:?} is not a descriptor number"))
}

/// Refuse an output directory that already holds a trace (its `metadata` exists): traces are
/// never overwritten. Embedded sessions, `faultline record` and `faultline demo` all check
/// with this, so they say the same ([`SessionError::TraceExists`]).
pub fn check_trace_dir(dir: &Path) -> Result<(), SessionError> {
    if dir.join("metadata").exists() {
        return Err(SessionError::TraceExists(dir.to_path_buf()));
    }
    Ok(())
}

/// `<st_dev>:<st_ino>` of an open descriptor.
pub fn fd_id(fd: i32) -> Result<String, std::io::Error> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes a struct stat into a valid out-pointer; a bad fd is an error.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and initialised it.
    let st = unsafe { st.assume_init() };
    Ok(format!("{}:{}", st.st_dev, st.st_ino))
}

/// The host name (empty if unknown).
pub fn hostname() -> String {
    // uname(2): one system call (reading /proc/sys/kernel/hostname takes five), made in every
    // traced image's start-up under `record --libc`.
    let mut u = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: uname fills a valid, zero-initialised struct utsname.
    if unsafe { libc::uname(u.as_mut_ptr()) } == 0 {
        // SAFETY: zero-initialised and filled by the kernel: valid either way.
        let u = unsafe { u.assume_init() };
        // NUL-terminated by the kernel; bounded by the array all the same.
        let raw: Vec<u8> = u
            .nodename
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let n = String::from_utf8_lossy(&raw).trim().to_string();
        if !n.is_empty() {
            return n;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// This executable's file name.
pub fn procname() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

/// The CTF clock of a channel: its tick frequency and the offset that maps ticks to the Unix
/// epoch (from the channel's reference point).
pub fn clock_desc(chan: &Channel) -> ClockDesc {
    clock_desc_of(&chan.clock())
}

/// The CTF clock of a clock description ([`clock_desc`] of a channel's).
pub fn clock_desc_of(c: &faultline_ringbuf::clock::ClockInfo) -> ClockDesc {
    let freq = c.freq.max(1) as i128;
    // Ticks at the epoch, relative to tick 0: ref_unix_ns * freq / 1e9 - ref_ticks.
    let off = (c.ref_unix_ns as i128) * freq / 1_000_000_000 - c.ref_ticks as i128;
    let (name, description) = match c.kind {
        ClockKind::Tsc => ("tsc", "x86 time-stamp counter (rdtsc), calibrated"),
        ClockKind::Monotonic => ("monotonic", "CLOCK_MONOTONIC in nanoseconds"),
    };
    ClockDesc {
        name: name.into(),
        freq_hz: c.freq.max(1),
        offset_s: off
            .div_euclid(freq)
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        offset_ticks: off.rem_euclid(freq) as u64,
        description: description.into(),
    }
}

/// The CTF `env` block.
pub fn env_desc(procname: &str, policy: &str, mode: Mode) -> EnvDesc {
    EnvDesc {
        hostname: hostname(),
        procname: procname.to_string(),
        tracer_major: 0,
        tracer_minor: 1,
        extra: vec![
            (
                "faultline_mode".into(),
                EnvValue::Str(
                    match mode {
                        Mode::Discard => "discard",
                        Mode::Overwrite => "overwrite",
                    }
                    .into(),
                ),
            ),
            ("faultline_policy".into(), EnvValue::Str(policy.into())),
        ],
    }
}

/// Bytes of the regular files directly in `dir`.
pub fn bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The attached session's reporter thread: sends the recorder counters on the schema pipe
/// (module docs), with SIGPIPE blocked in that thread, so a recorder that went away makes the
/// writes fail (EPIPE) instead of killing the program.
struct Reporter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    fn start(pipe: Arc<Mutex<File>>, recorder: Arc<Recorder>) -> std::io::Result<Reporter> {
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("faultline-report".into())
            .spawn(move || {
                block_sigpipe();
                let mut last: Option<RecorderStats> = None;
                loop {
                    let (m, cv) = &*stop2;
                    let g = m.lock().unwrap_or_else(|e| e.into_inner());
                    let (g, _) = cv
                        .wait_timeout_while(g, STATS_INTERVAL, |stopped| !*stopped)
                        .unwrap_or_else(|e| e.into_inner());
                    let stopped = *g;
                    drop(g);
                    let stats = recorder.stats();
                    if !stopped && last == Some(stats) {
                        continue;
                    }
                    let msg = Message::RecorderStats(StatsMessage {
                        last: stopped,
                        stats,
                    });
                    let sent = schema_pipe::send(&mut lock(&pipe), &msg).is_ok();
                    if stopped || !sent {
                        // The recorder is gone or we are done: close the pipe.
                        return;
                    }
                    last = Some(stats);
                }
            })?;
        Ok(Reporter {
            stop,
            thread: Some(thread),
        })
    }

    /// Send the final counters and close the pipe.
    fn finish(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Block SIGPIPE in the calling thread (a write to a pipe without a reader then fails with
/// EPIPE; the signal, directed at this thread, stays pending and is discarded when it ends).
fn block_sigpipe() {
    // SAFETY: sigemptyset/sigaddset initialise a local set; pthread_sigmask changes only the
    // calling thread's mask.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
}

/// What the drain thread gets when the session stops: metadata `env` entries and the number
/// of events the recorder committed ([`Drain::finish_counted`]).
type FinalCounts = (Vec<(String, EnvValue)>, Option<u64>);

enum Kind {
    Embedded {
        /// `None` when streaming only.
        dir: Option<PathBuf>,
        /// The relay the trace is streamed to.
        relay: Option<crate::relay::RelayHandle>,
        stop: Arc<AtomicBool>,
        /// `env` entries for the metadata when the trace is finished (the recorder counters).
        final_env: Arc<Mutex<FinalCounts>>,
        #[allow(clippy::type_complexity)]
        thread: Option<
            std::thread::JoinHandle<(DrainStats, Result<faultline_ctf::WriterCounters, CtfError>)>,
        >,
    },
    Attached {
        /// Builder settings `faultline record` replaced (also printed on stderr at start).
        overridden: Vec<String>,
        reporter: Option<Reporter>,
    },
}

struct Inner {
    chan: Arc<Channel>,
    recorder: Arc<Recorder>,
    handle: Option<ProbeHandle>,
    events: Vec<(u32, EventDesc)>,
    /// The registry listener that forwards run-time classes to the consumer.
    listener: Option<ListenerHandle>,
    kind: Kind,
}

/// A running session. [`Session::stop`] ends it; dropping it stops it too (errors are then
/// printed on stderr).
pub struct Session {
    inner: Option<Inner>,
}

/// Per-CPU part of a [`Summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuSummary {
    /// Events written, per event name (counted by the verification pass,
    /// [`SessionBuilder::verify`]; empty without it).
    pub events: BTreeMap<String, u64>,
    /// Events written from this CPU's buffer (the same; 0 without it).
    pub events_total: u64,
    /// Events lost on this CPU: buffer full (discard mode).
    pub lost_full: u64,
    /// Events lost on this CPU: stalled writer.
    pub lost_stalled: u64,
    /// Events lost on this CPU: larger than a sub-buffer.
    pub lost_too_big: u64,
    /// Commits (events, packet headers and paddings) that went REMOTE on this CPU's buffer.
    pub remote_commits: u64,
}

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The trace directory (embedded sessions and `faultline record`).
    pub dir: Option<PathBuf>,
    /// Attached to `faultline record`: the recording process has the trace-side numbers.
    pub attached: bool,
    /// Events written to the trace: counted by the verification pass
    /// ([`SessionBuilder::verify`]), or else the events the recorder committed less those the
    /// consumer could not write ([`crate::drain::Drain::finish_counted`]).
    pub events_written: u64,
    /// Events written per event name (verification pass only; empty without it).
    pub events: BTreeMap<String, u64>,
    /// Per-CPU details.
    pub per_cpu: BTreeMap<u32, CpuSummary>,
    /// Events lost in the ring buffer, by cause: no free sub-buffer (consumer behind) ...
    pub lost_full: u64,
    /// ... next sub-buffer held by an uncommitted reservation (a stalled or dead writer) ...
    pub lost_stalled: u64,
    /// ... larger than a sub-buffer ...
    pub lost_too_big: u64,
    /// ... the CPU had no buffer.
    pub lost_no_buffer: u64,
    /// Of `lost_stalled`: reservations of writers that died before committing (record only).
    pub lost_writer_died: u64,
    /// Events taken from the ring buffer but not written (disk errors, rejected packets).
    pub not_written: u64,
    /// Values read from shared memory that failed a check (one line each, naming the CPU
    /// buffer); empty in any run whose traced program did not corrupt its buffers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shm_errors: Vec<String>,
    /// First and last disk error, if any.
    pub write_error: Option<String>,
    /// The last disk error, if any.
    pub last_write_error: Option<String>,
    /// Event commits done LOCAL (rseq, no atomic) and REMOTE (the writer had migrated).
    pub commits_local: u64,
    /// Event commits done REMOTE.
    pub commits_remote: u64,
    /// The recorder's own counters (strategies, faulted events, restarts...), when known.
    pub recorder: Option<RecorderStats>,
    /// Bytes of the trace directory.
    pub bytes_on_disk: u64,
    /// What the embedded consumer did, when known.
    pub drain: Option<DrainStats>,
    /// What the relay got, when the trace was streamed ([`crate::relay`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<crate::relay::RelayStats>,
    /// What the ring buffers are indexed by: `"cpu"` or `"cid"` (concurrency id); `per_cpu`
    /// is then keyed by that.
    pub buffer_index: String,
    /// Ring buffers any writer used.
    pub buffers_used: u32,
    /// Ring buffers the channel has room for (possible CPUs).
    pub buffers_possible: u32,
    /// Bytes of the channel's shared memory resident in this process at the end (header and
    /// the buffers used; the others are never allocated).
    pub buffer_memory_bytes: u64,
}

impl Summary {
    /// All losses; saturating (the per-cause sums already saturate on garbage counters and
    /// say so in `shm_errors`).
    pub fn lost_total(&self) -> u64 {
        self.lost_full
            .saturating_add(self.lost_stalled)
            .saturating_add(self.lost_too_big)
            .saturating_add(self.lost_no_buffer)
    }

    /// The consumer's CPU time per event written ([`DrainStats::consumer_ns_per_event`]),
    /// when this process ran the consumer and wrote events.
    pub fn consumer_ns_per_event(&self) -> Option<f64> {
        self.drain.as_ref().and_then(|d| d.consumer_ns_per_event())
    }

    /// Fill the trace-side fields from a drain's stats.
    pub fn add_drain(&mut self, d: &DrainStats, names: &BTreeMap<u32, String>) {
        self.events_written = d.events_written;
        for (&cpu, by_id) in &d.events {
            let cs = self.per_cpu.entry(cpu).or_default();
            for (id, &n) in by_id {
                let name = names
                    .get(id)
                    .or_else(|| d.late_events.get(id))
                    .cloned()
                    .unwrap_or_else(|| format!("id {id}"));
                *cs.events.entry(name.clone()).or_insert(0) += n;
                *self.events.entry(name).or_insert(0) += n;
                cs.events_total += n;
            }
        }
        self.not_written = d.events_failed + d.events_rejected;
        self.write_error = d.first_write_error.clone();
        self.last_write_error = d.last_write_error.clone();
        self.drain = Some(d.clone());
    }

    /// Fill the ring-buffer-side fields from the channel's counters. They are shared memory:
    /// sums are checked; a CPU whose counters would overflow a total is left out of the totals
    /// and named in `shm_errors` (never a wrapped total).
    pub fn add_channel(&mut self, chan: &Channel) {
        self.buffer_index = chan.buffer_index().name().to_string();
        self.buffers_used = chan.active_buffers();
        self.buffers_possible = chan.num_cpus();
        self.buffer_memory_bytes = chan.resident_bytes().unwrap_or(0);
        for cpu in 0..chan.num_cpus() {
            let Some(st) = chan.cpu_stats(cpu) else {
                continue;
            };
            if !st.active {
                continue;
            }
            let cs = self.per_cpu.entry(cpu).or_default();
            cs.lost_full = st.lost_full;
            cs.lost_stalled = st.lost_stalled;
            cs.lost_too_big = st.lost_too_big;
            cs.remote_commits = st.remote_commits;
            let sums = (
                self.lost_full.checked_add(st.lost_full),
                self.lost_stalled.checked_add(st.lost_stalled),
                self.lost_too_big.checked_add(st.lost_too_big),
                st.checked_lost_total(),
            );
            match sums {
                (Some(f), Some(s), Some(b), Ok(_)) => {
                    self.lost_full = f;
                    self.lost_stalled = s;
                    self.lost_too_big = b;
                }
                (.., Err(e)) => self.shm_errors.push(e.to_string()),
                _ => self.shm_errors.push(format!(
                    "CPU {cpu} buffer corrupted: loss counters (full {}, stalled {}, too big {}) \
                     overflow the totals; left out of them",
                    st.lost_full, st.lost_stalled, st.lost_too_big
                )),
            }
        }
    }

    /// Print for people (stdout).
    pub fn print(&self) {
        print!("{}", self.render());
    }

    /// Print for people on stderr (`faultline record`: stdout is the traced program's).
    pub fn eprint(&self) {
        eprint!("{}", self.render());
    }

    /// The text [`Summary::print`] prints.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let w = |n: u64| group(n);
        if let Some(d) = &self.dir {
            let _ = writeln!(out, "trace: {}", d.display());
        }
        let _ = writeln!(
            out,
            "events written: {}   lost: {}   not written (disk): {}",
            w(self.events_written),
            w(self.lost_total()),
            w(self.not_written)
        );
        if let Some(r) = &self.relay {
            let _ = writeln!(out, "  {}", r.line());
        }
        if !self.events.is_empty() {
            let _ = writeln!(out, "  per tracepoint:");
            for (name, n) in &self.events {
                let _ = writeln!(out, "    {name:<28} {:>12}", w(*n));
            }
        }
        let per_cid = self.buffer_index == "cid";
        // Per-buffer event counts come from the verification pass only.
        let counted = self.drain.as_ref().is_none_or(|d| d.verified);
        if !self.per_cpu.is_empty() {
            let _ = writeln!(
                out,
                "  per {}:",
                if per_cid { "concurrency id" } else { "CPU" }
            );
            let label = if per_cid { "cid" } else { "cpu" };
            for (cpu, c) in &self.per_cpu {
                let _ = writeln!(
                    out,
                    "    {label} {cpu:<3} events {:>12}   lost full {} stalled {} too-big {}   REMOTE commits {}",
                    if counted { w(c.events_total) } else { "-".into() },
                    w(c.lost_full),
                    w(c.lost_stalled),
                    w(c.lost_too_big),
                    w(c.remote_commits)
                );
            }
            if !counted {
                let _ = writeln!(
                    out,
                    "    (events per buffer and per tracepoint are counted by a verification pass: \
                     SessionBuilder::verify(true), or `faultline stats` on the trace)"
                );
            }
        }
        let _ = writeln!(
                    out,
            "  losses by cause: consumer behind (full) {}, stalled/dead writer {}{}, too big {}, no buffer {}",
            w(self.lost_full),
            w(self.lost_stalled),
            if self.lost_writer_died > 0 {
                format!(" (writer died: {})", w(self.lost_writer_died))
            } else {
                String::new()
            },
            w(self.lost_too_big),
            w(self.lost_no_buffer)
        );
        let _ = writeln!(
                    out,
            "  commits: LOCAL {} (rseq, no atomic)   REMOTE {} (writer migrated between reserve and commit)",
            w(self.commits_local),
            w(self.commits_remote)
        );
        if let Some(r) = &self.recorder {
            let _ = writeln!(
                out,
                "  faulted events (bad pointers, zero-filled): {} ({} bytes unreadable)",
                w(r.faulted),
                w(r.faulted_bytes)
            );
            let per: Vec<String> = Strategy::ALL
                .iter()
                .map(|s| {
                    let st = r.strategy(*s);
                    format!(
                        "{s} {} (restarts {}, fallbacks {})",
                        w(st.events),
                        st.restarts,
                        st.fallbacks
                    )
                })
                .collect();
            let _ = writeln!(out, "  copy strategies: {}", per.join(", "));
        }
        for e in &self.shm_errors {
            println!("  SHARED MEMORY: {e}");
        }
        if let Some(e) = &self.write_error {
            let _ = writeln!(out, "  DISK ERROR: {e}");
            if self.last_write_error.as_ref() != Some(e) {
                if let Some(l) = &self.last_write_error {
                    let _ = writeln!(out, "  last disk error: {l}");
                }
            }
        }
        if !self.buffer_index.is_empty() {
            let _ = writeln!(
                out,
                "  ring buffers: per {}, {} used of {}, {} bytes of shared memory resident",
                if per_cid { "concurrency id" } else { "CPU" },
                self.buffers_used,
                self.buffers_possible,
                w(self.buffer_memory_bytes)
            );
        }
        let _ = writeln!(out, "  trace size: {} bytes", w(self.bytes_on_disk));
        out
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Session {
    /// A builder with the defaults (discard mode, 8 x 1 MiB sub-buffers per CPU, automatic
    /// copy strategy, every tracepoint unless `FAULTLINE_EVENTS` says otherwise).
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// Start with the defaults (see [`SessionBuilder::start`]).
    pub fn start() -> Result<Session, SessionError> {
        SessionBuilder::default().start()
    }

    /// Whether this session is attached to `faultline record`.
    pub fn is_attached(&self) -> bool {
        matches!(
            self.inner.as_ref().map(|i| &i.kind),
            Some(Kind::Attached { .. })
        )
    }

    /// The builder settings `faultline record` replaced with its own, one sentence each (empty
    /// for an embedded session). Each was also printed on stderr when the session started.
    pub fn overridden(&self) -> &[String] {
        match self.inner.as_ref().map(|i| &i.kind) {
            Some(Kind::Attached { overridden, .. }) => overridden,
            _ => &[],
        }
    }

    /// The channel written to.
    pub fn channel(&self) -> Option<&Arc<Channel>> {
        self.inner.as_ref().map(|i| &i.chan)
    }

    /// The recorder probe.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.inner.as_ref().map(|i| &i.recorder)
    }

    /// The trace directory (embedded sessions).
    pub fn dir(&self) -> Option<&Path> {
        match self.inner.as_ref().map(|i| &i.kind) {
            Some(Kind::Embedded { dir, .. }) => dir.as_deref(),
            _ => None,
        }
    }

    /// Disable, unregister, flush, drain, finish the trace; return what happened.
    pub fn stop(mut self) -> Result<Summary, SessionError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<Summary, SessionError> {
        let Some(mut inner) = self.inner.take() else {
            return Ok(Summary::default());
        };
        faultline_tracepoints::set_events("");
        if let Some(l) = inner.listener.take() {
            faultline_tracepoints::unsubscribe(l);
        }
        if let Some(h) = inner.handle.take() {
            // Waits until no call can still be inside the recorder.
            faultline_tracepoints::unregister(h);
        }
        let rs = inner.recorder.stats();
        let mut sum = Summary {
            lost_no_buffer: rs.lost_no_buffer,
            commits_remote: rs.remote_commits,
            commits_local: rs.recorded - rs.remote_commits,
            recorder: Some(rs),
            ..Summary::default()
        };
        let names: BTreeMap<u32, String> = inner
            .events
            .iter()
            .map(|(id, d)| (*id, d.full_name()))
            .collect();
        let result = match &mut inner.kind {
            Kind::Attached { reporter, .. } => {
                // The recording process drains; hand it our partial sub-buffers now, then the
                // final counters.
                let _ = inner.chan.flush_all(false);
                if let Some(r) = reporter.as_mut() {
                    r.finish();
                }
                sum.attached = true;
                sum.add_channel(&inner.chan);
                Ok(())
            }
            Kind::Embedded {
                dir,
                relay,
                stop,
                final_env,
                thread,
            } => {
                // The recorder is unregistered: `recorded` is every event committed into the
                // channel, which the drain reports as written less what it could not write.
                *final_env.lock().unwrap_or_else(|e| e.into_inner()) = (
                    recorder_counts(&rs, "the session's recorder").to_env(),
                    Some(rs.recorded),
                );
                // Release: pairs with the drain thread's acquire load in run_until.
                stop.store(true, Ordering::Release);
                let joined = thread.take().map(|t| t.join());
                match joined {
                    Some(Ok((ds, fin))) => {
                        sum.add_drain(&ds, &names);
                        sum.add_channel(&inner.chan);
                        if let Some(dir) = dir {
                            sum.dir = Some(dir.clone());
                            sum.bytes_on_disk = bytes_on_disk(dir);
                        }
                        if let Some(h) = relay.take() {
                            sum.relay = Some(h.finish(crate::relay::FINISH_TIMEOUT));
                        }
                        if let Err(e) = fin {
                            // fsync failed: report it with the rest of the summary.
                            let msg = format!("finishing the trace: {e}");
                            if sum.write_error.is_none() {
                                sum.write_error = Some(msg.clone());
                            }
                            sum.last_write_error = Some(msg);
                        }
                        Ok(())
                    }
                    _ => Err(SessionError::DrainPanicked),
                }
            }
        };
        // Release: pairs with the AcqRel swap of the next start.
        ACTIVE.store(false, Ordering::Release);
        result.map(|_| sum)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.inner.is_some() {
            if let Err(e) = self.stop_inner() {
                eprintln!("faultline: stopping the session: {e}");
            }
        }
    }
}

/// Tracepoint name → id map of the executable (for tests and tools).
pub fn event_ids() -> BTreeMap<String, u32> {
    faultline_tracepoints::tracepoints()
        .iter()
        .map(|tp: &&'static Tracepoint| (tp.full_name(), tp.id()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form of a schema event is one flat object (`id` next to the description's
    /// members, in that order), read back equal, with unknown members skipped.
    #[test]
    fn schema_event_is_one_flat_object() {
        let e = SchemaEvent {
            id: 7,
            desc: OwnedEventDesc {
                provider: "libc".into(),
                name: "open".into(),
                fields: vec![faultline_schema::OwnedFieldDesc {
                    name: "path".into(),
                    ty: faultline_schema::FieldType::String,
                }],
            },
        };
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(
            j,
            r#"{"id":7,"provider":"libc","name":"open","fields":[{"name":"path","type":"string"}]}"#
        );
        assert_eq!(serde_json::from_str::<SchemaEvent>(&j).unwrap(), e);
        let extra = r#"{"name":"open","later":[1,{"x":2}],"id":7,"fields":[{"name":"path","type":"string"}],"provider":"libc"}"#;
        assert_eq!(serde_json::from_str::<SchemaEvent>(extra).unwrap(), e);
        assert!(serde_json::from_str::<SchemaEvent>(r#"{"id":7,"provider":"libc"}"#).is_err());
    }

    /// Per-cid where the process has fewer threads (plus the consumer) than CPUs to run on and
    /// the kernel supports it; per CPU otherwise.
    #[test]
    fn default_buffers_per_cid_only_where_it_wins() {
        // 64 CPUs, 3 threads: per-cid bounds the buffers at 4, per CPU at 64.
        assert_eq!(default_index_for(64, 3, || true), BufferIndex::Cid);
        assert_eq!(default_index_for(64, 3, || false), BufferIndex::Cpu);
        // taskset -c 0 (or 2 CPUs and a thread): per CPU is as small.
        assert_eq!(default_index_for(1, 1, || true), BufferIndex::Cpu);
        assert_eq!(default_index_for(2, 1, || true), BufferIndex::Cpu);
        assert_eq!(default_index_for(3, 1, || true), BufferIndex::Cid);
        assert_eq!(default_index_for(8, usize::MAX, || true), BufferIndex::Cpu);
    }

    /// The thread count comes from /proc and counts this test's thread; the CPU count from
    /// the affinity mask.
    #[test]
    fn process_threads_and_allowed_cpus() {
        assert!(process_threads().is_some_and(|n| n >= 1));
        assert!(allowed_cpus().is_some_and(|n| n >= 1));
    }
}
