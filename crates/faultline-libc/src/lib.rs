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
//! **No image moves a descriptor or changes a variable**: programs such as bash build their
//! children's environment from the `envp` they got in `main`, not from `environ`, so whatever
//! an image changed would not reach the programs it runs. `record` sets everything up before
//! the program starts, with the variables of [`faultline::session`] and of this crate: the
//! channel at a high, inheritable descriptor (`FAULTLINE_CHANNEL_FD`, numbers from
//! `faultline::session::high_fd_base()` up, 960 under the usual limit, out of the program's
//! way: programs expect `open` to return the lowest free number, and often get 3), the schema pipe's write end twice —
//! `FAULTLINE_SCHEMA_FD` with its identity `FAULTLINE_SCHEMA_ID` (device:inode), for the
//! schema, and `FAULTLINE_LIBC_STATS_FD`/`_ID` for the counters ([`stats`]) — and
//! `FAULTLINE_LIBC_ID`, the identity of this library's file. Each image's constructor (an
//! `.init_array` entry, run before the program's `main` and its own constructors):
//! 1. checks that `FAULTLINE_CHANNEL_FD` is the recorder's channel (`FAULTLINE_CHANNEL_ID`)
//!    and that it was loaded from the file `FAULTLINE_LIBC_ID` names (same event list, same
//!    ids as the published schema), maps the channel (through a close-on-exec duplicate: the
//!    inherited descriptor stays where it is for the images to come), creates the recorder
//!    probe and registers it on every event of this library;
//! 2. publishes the schema if `FAULTLINE_SCHEMA_FD` is still the pipe `FAULTLINE_SCHEMA_ID`
//!    names — a `schema` line of [`faultline::schema_pipe`], as an instrumented program does;
//!    the library's event classes are all known at start: nothing is registered later — and
//!    closes that descriptor. The first image to attach does; its constructor runs before it
//!    can start anything, so in every later image (forked, executed, or a child of one) the
//!    number is closed, or reused by a file of the program's whose identity differs: no
//!    schema is published twice, and a reused number is never mistaken for the pipe;
//! 3. takes the counters' descriptor if it is still the pipe named, and makes it
//!    non-blocking (a flag of the pipe's open file description, which all images share; the
//!    schema is written before the first image sets it);
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
//! * `exec`: the new image re-attaches (steps 1, 3 and 4 with the inherited environment) and
//!   records `faultline:process`; so do the children a shell or `make` executes.
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
    ENV_EVENTS, ENV_SCHEMA_FD, ENV_SCHEMA_ID, ENV_STRATEGY, SCHEMA_VERSION,
};
use faultline_recorder::{Policy, Recorder, RecorderConfig};
use faultline_ringbuf::Channel;
use faultline_schema::OwnedEventDesc;
use faultline_tracepoints::trace;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};

/// Set (to anything) by `faultline record --libc`: the library attaches. Unset: it stays
/// passive (every wrapper goes straight to libc).
pub const ENV_LIBC: &str = "FAULTLINE_LIBC";
/// Bytes recorded from each data buffer (default [`DEFAULT_DATA_BYTES`]; 0 allowed).
pub const ENV_LIBC_DATA: &str = "FAULTLINE_LIBC_DATA";
/// `<st_dev>:<st_ino>` of the library file `faultline record` preloads: every image checks
/// that it was loaded from that file (same event list, same ids as the published schema).
pub const ENV_LIBC_ID: &str = "FAULTLINE_LIBC_ID";
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

/// `<st_dev>:<st_ino>` of the file this library was loaded from (found with `dladdr`), to
/// compare with [`ENV_LIBC_ID`].
fn library_id() -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: `Dl_info` is plain data; dladdr fills it for an address inside a loaded object
    // (this function's own code) and returns 0 otherwise.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `info` is a valid out-pointer.
    let ok = unsafe { libc::dladdr(library_id as *const libc::c_void, &mut info) } != 0;
    if !ok || info.dli_fname.is_null() {
        return Err("cannot find this library's file (dladdr)".into());
    }
    // SAFETY: dladdr succeeded: dli_fname is the loaded object's NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("{}:{}", m.dev(), m.ino()))
}

/// The schema pipe's descriptor if this image is the one to publish the schema: the
/// descriptor [`ENV_SCHEMA_FD`] names is still the pipe [`ENV_SCHEMA_ID`] names. The
/// publisher closes it, so in every later image the number is closed, or reused by another
/// file (whose identity differs).
fn schema_fd_to_publish() -> Option<i32> {
    let fd = env_fd(ENV_SCHEMA_FD).ok()?;
    let want = std::env::var(ENV_SCHEMA_ID).ok()?;
    (fd_id(fd).ok()? == want).then_some(fd)
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
    // Same library file as `record` preloaded: same event list, same ids as the schema.
    let lib = library_id()?;
    let want_lib = std::env::var(ENV_LIBC_ID).unwrap_or_default();
    if lib != want_lib {
        return Err(format!(
            "this library (id {lib}) is not the one faultline record preloaded ({want_lib:?}): \
             was LD_PRELOAD changed?"
        ));
    }
    let schema_fd = schema_fd_to_publish();
    // The channel maps a close-on-exec duplicate (also high); `fd` stays open, at the number
    // `record` chose, for executed images.
    // SAFETY: fcntl on an open descriptor.
    let dup = unsafe {
        libc::fcntl(
            fd,
            libc::F_DUPFD_CLOEXEC,
            faultline::session::high_fd_base(),
        )
    };
    if dup < 0 {
        return Err(format!(
            "cannot duplicate fd {fd}: {}",
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
    if let Some(sfd) = schema_fd {
        let events: Vec<SchemaEvent> = faultline_tracepoints::tracepoints()
            .iter()
            .map(|tp| SchemaEvent {
                id: tp.id(),
                desc: OwnedEventDesc::from(tp.desc()),
            })
            .collect();
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
        // SAFETY: the schema fd was inherited for us (ENV_SCHEMA_FD contract, identity checked);
        // we take ownership and close it after writing: that closed number is what tells
        // every later image that the schema is published.
        let mut pipe = File::from(unsafe { OwnedFd::from_raw_fd(sfd) });
        schema_pipe::send(&mut pipe, &schema_pipe::Message::Schema(msg))
            .map_err(|e| format!("cannot publish the schema on fd {sfd}: {e}"))?;
    }
    // The counters' pipe (`record` duplicated the schema pipe's write end for it), if the
    // number still holds it. Non-blocking from the first image on (a report never makes the
    // program wait; the flag belongs to the pipe's open file description, which every image
    // shares, and the schema is written before it is set).
    if let (Ok(sfd), Ok(id)) = (
        env_fd(stats::ENV_STATS_FD),
        std::env::var(stats::ENV_STATS_ID),
    ) {
        if fd_id(sfd).ok().as_deref() == Some(id.as_str()) {
            // SAFETY: fcntl on a descriptor checked to be the pipe.
            unsafe {
                let fl = libc::fcntl(sfd, libc::F_GETFL);
                if fl >= 0 && fl & libc::O_NONBLOCK == 0 {
                    libc::fcntl(sfd, libc::F_SETFL, fl | libc::O_NONBLOCK);
                }
            }
            stats::set_pipe(sfd, id);
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
