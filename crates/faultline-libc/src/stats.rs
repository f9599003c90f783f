//! The recorder counters of every traced process image, reported to `faultline record` as
//! `recorder_stats` lines of [`faultline::schema_pipe`] (the numbers of the report's
//! `recorder` key and of the trace's `env` block).
//!
//! # Protocol
//! * `faultline record --libc` gives the program a second descriptor of the schema pipe's
//!   write end, high and inheritable, named by [`ENV_STATS_FD`] with the pipe's identity
//!   (device:inode) in [`ENV_STATS_ID`]; forked children and executed images inherit both, and
//!   every image makes it non-blocking when it takes it.
//! * Each process image sends its counters **once it ends**, as a *delta* since what it (or the
//!   process it was forked from) already reported, marked `final`: from the library's
//!   destructor (`exit`, return from `main`), from the `_exit`/`_Exit` wrappers (no destructors
//!   run), and before an `exec` (the image is replaced; if the `exec` fails, the later report
//!   only carries what came after). `record` adds every final report to the ones before it
//!   ([`faultline::schema_pipe::Counters`]), so the sum over images is the whole program's.
//! * `fork`: the `pthread_atfork` prepare handler notes the parent's counters and the child
//!   handler makes them the child's baseline — the child's recorder is a copy of the parent's,
//!   and only what the child records after the fork is its own. Events recorded by other
//!   threads of the parent between the two handlers are counted by both (a window of one
//!   `fork` call).
//! * Not reported: a process killed by a signal, or one whose report does not fit the pipe
//!   (`record` stopped reading: the write is non-blocking and `SIGPIPE` is blocked around it,
//!   so the program never blocks or dies of it); `record` then has the other reports (or
//!   none: `recorder` is null).
//! * Before writing, the descriptor is checked to still be the pipe (the program may have
//!   closed it and opened something else under that number): nothing is ever written into a
//!   file of the program's. The line is encoded into a stack buffer (no allocation) and
//!   written in one `write` (shorter than `PIPE_BUF`: atomic).

use faultline::schema_pipe::{encode_into, Message, StatsMessage};
use faultline::session::fd_id;
use faultline_recorder::RecorderStats;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Descriptor of the schema pipe's write end, for the counters.
pub const ENV_STATS_FD: &str = "FAULTLINE_LIBC_STATS_FD";
/// Its identity (device:inode), checked before every write.
pub const ENV_STATS_ID: &str = "FAULTLINE_LIBC_STATS_ID";

/// The pipe (-1: no reports).
static FD: AtomicI32 = AtomicI32::new(-1);
static ID: OnceLock<String> = OnceLock::new();
/// What this process image has reported so far (its baseline).
static REPORTED: Mutex<Option<RecorderStats>> = Mutex::new(None);
/// The parent's counters noted just before a `fork`.
static AT_FORK: Mutex<Option<RecorderStats>> = Mutex::new(None);

/// Report through `fd` (identity `id`) from now on.
pub(crate) fn set_pipe(fd: i32, id: String) {
    let _ = ID.set(id);
    // Relaxed: set by the constructor before any wrapper can report.
    FD.store(fd, Ordering::Relaxed);
}

/// `a - b`, counter by counter (saturating: a baseline is never above the counters it was
/// taken from, but the two reads are not one atomic snapshot).
pub fn delta(a: &RecorderStats, b: &RecorderStats) -> RecorderStats {
    let mut r = a.combine(b, u64::saturating_sub);
    // Consistent by construction: recorded is the sum of the per-strategy events, and
    // faulted events are among them.
    r.recorded = r.per_strategy.iter().map(|p| p.events).sum();
    r.faulted = r.faulted.min(r.recorded);
    r
}

fn current() -> Option<RecorderStats> {
    crate::recorder().map(|r| r.stats())
}

/// `pthread_atfork` prepare handler (parent, before `fork`).
pub(crate) fn before_fork() {
    if let (Some(s), Ok(mut g)) = (current(), AT_FORK.try_lock()) {
        *g = Some(s);
    }
}

/// `pthread_atfork` child handler: the parent's counters are not the child's.
pub(crate) fn after_fork_child() {
    // try_lock: another parent thread may have held the lock when the process forked.
    let at = AT_FORK.try_lock().ok().and_then(|g| *g);
    if let Ok(mut g) = REPORTED.try_lock() {
        *g = at;
    }
}

/// Send this image's counters since its last report (module docs). Call with the reentrancy
/// guard set (the pipe write must not be recorded) and only where the thread is not already in
/// tracer code (the recorder's statistics lock).
pub(crate) fn report() {
    // Relaxed: constant after the constructor.
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let Some(now) = current() else { return };
    // try_lock: never wait in an exit path (another thread may be reporting).
    let Ok(mut reported) = REPORTED.try_lock() else {
        return;
    };
    let d = match &*reported {
        Some(b) => delta(&now, b),
        None => now,
    };
    if d == RecorderStats::default() && reported.is_some() {
        return;
    }
    let Some(id) = ID.get() else { return };
    if fd_id(fd).ok().as_deref() != Some(id.as_str()) {
        return;
    }
    let mut buf = [0u8; 2048];
    let Some(n) = encode_into(
        &Message::RecorderStats(StatsMessage {
            last: true,
            stats: d,
        }),
        &mut buf,
    ) else {
        return;
    };
    if write_no_sigpipe(fd, &buf[..n]) {
        *reported = Some(now);
    }
}

/// One `write` with `SIGPIPE` blocked; a `SIGPIPE` it raised is taken back. True if all of
/// `data` was written.
fn write_no_sigpipe(fd: i32, data: &[u8]) -> bool {
    // SAFETY: sigset_t values initialised by sigemptyset/sigaddset; pthread_sigmask and
    // sigpending write only into them.
    unsafe {
        let mut pipe_set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_set);
        libc::sigaddset(&mut pipe_set, libc::SIGPIPE);
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_set, &mut old);
        // SAFETY (write): `data` is a valid buffer of `data.len()` bytes. Through the raw
        // system call, so that no wrapper of this library sees it.
        let r = libc::syscall(
            libc::SYS_write,
            fd as libc::c_long,
            data.as_ptr(),
            data.len(),
        );
        let epipe = r < 0 && crate::thread::errno() == libc::EPIPE;
        if epipe && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe_set, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r == data.len() as libc::c_long
    }
}
