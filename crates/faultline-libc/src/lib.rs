//! `libfaultline_libc.so`: the library `faultline record --libc -- CMD` preloads
//! (`LD_PRELOAD`) into a program nobody instrumented, to record its libc calls with their
//! arguments — including the paths, buffers and socket addresses they point to, read with
//! faultline's fault-tolerant copies.
//!
//! # What is interposed
//! The dynamic linker resolves a program's calls to `open`, `read`, … to the first object that
//! defines them; a preloaded library comes before libc. Each wrapper here ([`wrap`]) calls the
//! real function and records one event (the classes are in [`events`]): `open`, `openat`,
//! `creat`, `close`, `read`, `write`, `pread`, `pwrite`, `readv`, `writev`, `preadv`, `pwritev`, `stat`, `lstat`,
//! `fstat`, `fstatat`, `statx`, `access`, `unlink(at)`, `rename(at)`, `mkdir(at)`, `execve`
//! (and `execv`, `execvp`, `execvpe`), `fork`, `vfork`, `posix_spawn(p)`, `socket`,
//! `connect`, `bind`, `accept(4)`, `send(to)`, `recv(from)`, `mmap`, `munmap`, `exit`,
//! `_exit`/`_Exit`, and `syscall(2)` (recorded undecoded, so that a program bypassing the
//! wrappers is visible). The large-file and fortified aliases that programs actually import
//! (`open64`, `__open_2`, `pread64`, `__read_chk`, `fstatat64`, the pre-2.33 `__xstat`
//! family, …) record the same events as their plain names.
//!
//! **Only calls that go through the dynamic symbol are seen.** libc's own internal calls do
//! not: `printf`/`fwrite` write through libc's internal `write`, `fopen`, `opendir`,
//! `setlocale` and `dlopen` open files internally, and `posix_spawn`/`system` execute the
//! new program internally. A statically linked program has no dynamic symbols at all
//! (`faultline record --libc` says so before running it); raw system calls made with
//! inline assembly are invisible. This is the inherent limit of interposition; `strace`
//! (ptrace) sees every system call, at a much higher cost.
//!
//! # One event per call
//! A call is recorded once, when it returns, with its entry-to-exit duration (`dur_ns`), its
//! result (`ret`) and `errno` (0 on success) next to its arguments. Entry/exit pairs would
//! double the events and make every reader pair them; one record carries all of a call and its
//! timestamp (the return) orders it among the others. The cost of that choice: a call that
//! never returns (the program is killed while blocked in `read`) leaves no event. Calls that do
//! not return when they succeed are recorded on entry: `execve` (plus `execve_failed` if it
//! returns), `exit`, `_exit`.
//!
//! # Resolving the real functions without recursion
//! [`real`] finds each real function with `dlsym(RTLD_NEXT, name)`, all of them in the
//! constructor (so that wrappers called from signal handlers never call `dlsym`). The tracer
//! itself calls libc while recording — `mmap` through the allocator, `futex` through
//! `syscall`, `fstat` when mapping the channel — and those calls land in these same wrappers.
//! A per-thread reentrancy flag ([`thread`]) is set around every piece of tracer code; a
//! wrapper that finds it set calls libc directly. It is only set while recording, never
//! during the real call, so a signal handler that interrupts a blocked `read` and calls
//! `write` is recorded; one that interrupts the ~100 ns of recording is not (its calls go
//! straight to libc).
//!
//! # `errno`
//! The wrapper reads `errno` right after the real call, records, and writes it back before
//! returning: the caller sees exactly what libc left, whatever the tracer did meanwhile. A
//! bad pointer is the program's problem and stays so: `open(bad)` returns `EFAULT` from libc,
//! and the recorded path has `path_faulted = 1` (read with
//! [`faultline_tracepoints::strncpy_from_user`], which survives the fault).
//!
//! # Attaching: before, during, after
//! The library does nothing unless `FAULTLINE_LIBC` is set (by `faultline record --libc`).
//! Its constructor (an `.init_array` entry, run before the program's `main` and its own
//! constructors) attaches, using the environment of [`faultline::session`]:
//! 1. checks that `FAULTLINE_CHANNEL_FD` is the recorder's channel (`FAULTLINE_CHANNEL_ID`),
//!    maps it, creates the recorder probe and registers it on every event of this library;
//! 2. in the **first** process (the one that finds `FAULTLINE_SCHEMA_FD`): moves the channel
//!    descriptor to a high number out of the program's way (`fcntl(F_DUPFD)` from
//!    `RLIMIT_NOFILE - 64`, *inheritable*), publishes the schema (a `schema` line of
//!    [`faultline::schema_pipe`], as an instrumented program does; the library's event
//!    classes are all known at start: nothing is registered later), keeps the pipe for the
//!    recorder counters of every image ([`stats`]), and rewrites the environment:
//!    `FAULTLINE_CHANNEL_FD` = the new number, `FAULTLINE_SCHEMA_FD` removed,
//!    `FAULTLINE_LIBC_SCHEMA` = a hash of the event list, `FAULTLINE_LIBC_STATS_FD`/`_ID` =
//!    the pipe;
//! 3. in a **later image** (a traced process executed a program: `LD_PRELOAD` and the
//!    variables are inherited, and so is the descriptor): maps the same channel and checks that
//!    its event list hashes to `FAULTLINE_LIBC_SCHEMA` (same library, same ids) — no schema is
//!    published twice — and takes the counters' pipe if it is still the one named;
//! 4. installs the fault handler of the copies, resolves the real functions, registers a
//!    `pthread_atfork` child handler (new pid and tid caches), prepares the thread, enables the
//!    events named by `FAULTLINE_EVENTS`, and records `faultline:process`.
//!
//! Calls made before that (other preloaded libraries' constructors) find their tracepoint
//! inactive and go to libc untouched. There is no detach: the process writes events until it
//! exits (atexit handlers and destructors included); `faultline record` flushes and drains
//! what the dead writers left. If attaching fails, one line goes to the program's stderr
//! (`faultline-libc: pid N (exe): not traced: …`) and the program runs untraced.
//!
//! # Children
//! * `fork`: the child keeps the mapping, the recorder and the attachment; its events carry
//!   its own `pid` (the atfork handler refreshes the caches before `fork` returns in it). Both
//!   sides record a `fork` event (`ret` = child pid / 0).
//! * `exec`: the new image re-attaches (step 3) and records `faultline:process`.
//! * `vfork`: see [`vfork`]: the child does not record (it borrows the parent's memory and has
//!   no rseq registration); the image it executes re-attaches.
//! * `posix_spawn`: recorded in the parent; the new image re-attaches.
//! * Limits: a program that clears its environment for a child (`env -i`, setuid programs,
//!   which the dynamic linker starts without `LD_PRELOAD`), or closes every descriptor before
//!   exec (the channel's included), starts that child untraced. A child that outlives the
//!   traced program is still writing when `faultline record` finishes; `record` says so
//!   ("processes … still map the channel").
//!
//! # Signal handlers and threads
//! A wrapper called in a signal handler records like any other (the recorder is
//! async-signal-safe once the thread's state exists). That state (statistics shard, bounce
//! buffer) is allocated by the constructor for the main thread and by the first recorded call
//! on any other thread: if that very first call is made from a signal handler that interrupted
//! `malloc`, the allocation can deadlock — the one window this library does not close. The
//! fault handler of the copies is installed for `SIGSEGV`/`SIGBUS` and chains to the
//! program's; a program that later installs its own handler without chaining makes a bad
//! pointer in a traced call crash *in the tracer* instead of being recorded as faulted.
//!
//! # Copy strategy
//! Under the default policy (`--strategy auto`) the `libc` events are recorded with
//! reserve-copy-commit (`events::default_strategy`), although they have raw fields (which
//! the recorder's own default would bounce): the memory they copy — a path, a buffer, an
//! iovec array — was handed to the kernel by the very call being recorded, so it is resident
//! and the copy straight into the reserved slot does not sleep while holding it; a bad pointer
//! costs the fault handler's fix-up, a few microseconds. It saves the bounce buffer's second
//! copy and gives the event's `dur_ns` its end for free (the record's own timestamp). The
//! exception is a buffer a failed call never touched (`write` to a bad descriptor from a
//! file mapping not yet read): its copy may wait for the page. `--strategy bounce` restores
//! the recorder's default.
//!
//! # Costs
//! A wrapped call whose event is disabled costs one relaxed load on top of libc. An enabled
//! one costs one clock read (the entry; the end is the event's timestamp), a thread-local
//! flag, and one event with its copies, recorded straight into the recorder
//! (`record`; numbers: `faultline bench --libc`, `docs/BENCHMARKS.md`).

#![allow(clippy::missing_safety_doc)]

pub mod addr;
pub mod events;
mod real;
pub mod stats;
pub mod thread;
pub mod vfork;
pub mod wrap;

use faultline::schema_pipe;
use faultline::session::{
    fd_id, hostname, procname, SchemaEvent, SchemaMessage, ENV_CHANNEL_FD, ENV_CHANNEL_ID,
    ENV_EVENTS, ENV_SCHEMA_FD, ENV_STRATEGY, SCHEMA_VERSION,
};
use faultline_recorder::{Policy, Recorder, RecorderConfig};
use faultline_ringbuf::Channel;
use faultline_schema::OwnedEventDesc;
use faultline_tracepoints::trace;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};

/// Set (to anything) by `faultline record --libc`: the library attaches. Unset: it stays
/// passive (every wrapper goes straight to libc).
pub const ENV_LIBC: &str = "FAULTLINE_LIBC";
/// Bytes recorded from each data buffer (default [`DEFAULT_DATA_BYTES`]; 0 allowed).
pub const ENV_LIBC_DATA: &str = "FAULTLINE_LIBC_DATA";
/// Hash of the event list, set by the first process for the images it executes.
pub const ENV_LIBC_SCHEMA: &str = "FAULTLINE_LIBC_SCHEMA";
/// File name of this library, as cargo builds it.
pub const LIB_NAME: &str = "libfaultline_libc.so";
/// Default of [`ENV_LIBC_DATA`].
pub const DEFAULT_DATA_BYTES: usize = 32;

/// What stays alive for the life of the process.
struct Attached {
    _recorder: Arc<Recorder>,
    _handle: Option<faultline_tracepoints::ProbeHandle>,
}

static ATTACHED: OnceLock<Attached> = OnceLock::new();

/// The process's recorder, once attached.
pub(crate) fn recorder() -> Option<&'static Arc<Recorder>> {
    ATTACHED.get().map(|a| &a._recorder)
}

/// Record one `libc` event (`events::direct`, called when `tp` is active): straight into this
/// process's recorder with [`Recorder::record_fields_stamped`] (`stamp` gets the event's time,
/// for its `dur_ns`) — its copy strategies, statistics and
/// bad-pointer handling, sized and encoded by code generated for the event's field types —
/// instead of through [`Tracepoint::fire`](faultline_tracepoints::Tracepoint::fire)'s probe
/// dispatch (a read-side section, a virtual call, the payload behind `dyn`). That is the same
/// event: the recorder is the only probe this library registers on its tracepoints, nothing
/// else can reach them (they live in this library's own registry), and it is never
/// unregistered ([`ATTACHED`] keeps it for the life of the process). Before attaching no
/// tracepoint is active; the generic path stays as a fallback all the same.
#[inline(always)]
pub(crate) fn record<F: faultline_tracepoints::__private::Fields>(
    tp: &'static faultline_tracepoints::Tracepoint,
    fields: F,
    stamp: impl FnOnce(u64),
) {
    match recorder() {
        Some(r) => {
            let _ = r.record_fields_stamped(tp, fields, stamp);
        }
        None => {
            stamp(thread::now());
            tp.fire(&faultline_tracepoints::__private::FieldsPayload(fields));
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

/// Destructor (`exit`, return from `main`): this image's counters ([`stats`]).
extern "C" fn fini() {
    if thread::may_record() {
        thread::in_tracer(stats::report);
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    thread::in_tracer(|| {
        if std::env::var_os(ENV_LIBC).is_none() {
            return;
        }
        real::resolve_all();
        thread::reset_ids();
        if let Err(e) = attach() {
            let line = format!(
                "faultline-libc: pid {} ({}): not traced: {e}\n",
                thread::pid(),
                procname()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    });
}

extern "C" fn atfork_child() {
    thread::reset_ids();
    stats::after_fork_child();
}

extern "C" fn atfork_prepare() {
    if thread::may_record() {
        thread::in_tracer(stats::before_fork);
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

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Lowest descriptor number the library uses: `RLIMIT_NOFILE - 64`, out of the program's way
/// (programs expect `open` to return the lowest free number, and often get 3).
fn high_base() -> i32 {
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
    (soft - 64).max(3)
}

/// Move `fd` to a high, inheritable descriptor; returns the new one (or `fd` if there is no
/// room up there).
fn move_high(fd: i32) -> i32 {
    // SAFETY: fcntl on a descriptor checked to be open (fd_id succeeded).
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD, high_base()) };
    if high < 0 {
        return fd;
    }
    // SAFETY: `fd` was inherited for us (the FAULTLINE_CHANNEL_FD contract); `high` replaces
    // it and is what the environment names from now on.
    unsafe { libc::close(fd) };
    high
}

fn attach() -> Result<(), String> {
    // Read once: the schema's procname and the faultline:process event.
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fd = env_fd(ENV_CHANNEL_FD)?;
    let want = std::env::var(ENV_CHANNEL_ID).unwrap_or_default();
    let got = fd_id(fd).map_err(|e| format!("{ENV_CHANNEL_FD}={fd}: {e}"))?;
    if got != want {
        return Err(format!(
            "fd {fd} is not the recorder's channel (id {got}, expected {want:?})"
        ));
    }
    let schema_fd = std::env::var_os(ENV_SCHEMA_FD)
        .is_some()
        .then(|| env_fd(ENV_SCHEMA_FD))
        .transpose()?;
    let keep = if schema_fd.is_some() {
        move_high(fd)
    } else {
        fd
    };
    // The channel maps a close-on-exec duplicate (also high); `keep` stays open for executed
    // images.
    // SAFETY: fcntl on an open descriptor.
    let dup = unsafe { libc::fcntl(keep, libc::F_DUPFD_CLOEXEC, high_base()) };
    if dup < 0 {
        return Err(format!(
            "cannot duplicate fd {keep}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(dup) });
    let chan = Arc::new(Channel::open(file).map_err(|e| format!("channel: {e}"))?);
    let ci = chan.clock();
    thread::set_clock(ci.kind, ci.freq);
    let policy = match std::env::var(ENV_STRATEGY) {
        Ok(s) => s
            .parse::<Policy>()
            .map_err(|e| format!("{ENV_STRATEGY}: {e}"))?,
        Err(_) => Policy::Auto,
    };
    let data = match std::env::var(ENV_LIBC_DATA) {
        Ok(s) => s
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("{ENV_LIBC_DATA}={s:?} is not a byte count"))?,
        Err(_) => DEFAULT_DATA_BYTES,
    };
    wrap::set_data_bytes(data);
    let recorder = Recorder::new(
        chan.clone(),
        RecorderConfig {
            policy,
            ..RecorderConfig::default()
        },
    );
    if policy == Policy::Auto {
        events::default_strategy(&recorder);
    }
    let events: Vec<SchemaEvent> = faultline_tracepoints::tracepoints()
        .iter()
        .map(|tp| SchemaEvent {
            id: tp.id(),
            desc: OwnedEventDesc::from(tp.desc()),
        })
        .collect();
    let hash = format!(
        "{:016x}",
        fnv(&serde_json::to_vec(&events).map_err(|e| e.to_string())?)
    );
    match schema_fd {
        Some(sfd) => {
            let msg = SchemaMessage {
                version: SCHEMA_VERSION,
                pid: thread::pid(),
                procname: match exe.rsplit('/').next() {
                    Some(n) if !n.is_empty() => n.to_string(),
                    _ => procname(),
                },
                hostname: hostname(),
                policy: policy.to_string(),
                events,
            };
            // SAFETY: the schema fd was inherited for us (ENV_SCHEMA_FD contract); we take
            // ownership and close it after writing.
            let mut pipe = File::from(unsafe { OwnedFd::from_raw_fd(sfd) });
            schema_pipe::send(&mut pipe, &schema_pipe::Message::Schema(msg))
                .map_err(|e| format!("cannot publish the schema on fd {sfd}: {e}"))?;
            // The pipe stays open for the counters of every image ([`stats`]): high,
            // inheritable, non-blocking (a report never makes the program wait).
            let sfd = move_high(pipe.into_raw_fd());
            // SAFETY: fcntl on the descriptor we now own.
            unsafe {
                let fl = libc::fcntl(sfd, libc::F_GETFL);
                if fl >= 0 {
                    libc::fcntl(sfd, libc::F_SETFL, fl | libc::O_NONBLOCK);
                }
            }
            if let Ok(id) = fd_id(sfd) {
                std::env::set_var(stats::ENV_STATS_FD, sfd.to_string());
                std::env::set_var(stats::ENV_STATS_ID, &id);
                stats::set_pipe(sfd, id);
            }
            // The constructor runs before main: no other thread reads the environment yet.
            std::env::remove_var(ENV_SCHEMA_FD);
            std::env::set_var(ENV_CHANNEL_FD, keep.to_string());
            std::env::set_var(ENV_LIBC_SCHEMA, &hash);
        }
        None => {
            let want = std::env::var(ENV_LIBC_SCHEMA).unwrap_or_default();
            if want != hash {
                return Err(format!(
                    "this library's events (hash {hash}) are not the session's ({want:?}): \
                     was a different faultline-libc preloaded?"
                ));
            }
            // The counters' pipe, if it is still the one the first process named.
            if let (Ok(fd), Ok(id)) = (
                env_fd(stats::ENV_STATS_FD),
                std::env::var(stats::ENV_STATS_ID),
            ) {
                if fd_id(fd).ok().as_deref() == Some(id.as_str()) {
                    stats::set_pipe(fd, id);
                }
            }
        }
    }
    let _ = faultline_tracepoints::install_fault_handler();
    // SAFETY: registering handlers that note the counters (prepare) and refresh two caches and
    // the counters' baseline (child; no allocation, try_lock only).
    unsafe { libc::pthread_atfork(Some(atfork_prepare), None, Some(atfork_child)) };
    let handle = faultline_recorder::attach(&recorder, "*").ok();
    recorder.prepare_thread(faultline_tracepoints::MAX_CSTR_LEN * 2 + data + 512);
    let spec = std::env::var(ENV_EVENTS).unwrap_or_else(|_| "*".into());
    let _ = ATTACHED.set(Attached {
        _recorder: recorder,
        _handle: handle,
    });
    faultline_tracepoints::set_events(&spec);
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() } as u32;
    trace!(events::PROCESS, thread::pid(), ppid, exe.as_str());
    Ok(())
}
