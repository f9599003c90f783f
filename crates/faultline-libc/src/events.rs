//! The event classes: one tracepoint per wrapped call (provider `libc`), plus two about the
//! tracing itself (provider `faultline`).
//!
//! Every `libc` event of a call that returns is recorded once, when it returns, with the
//! arguments, `ret` (the return value, `-1` on failure for most calls), `errno` (0 when the
//! call succeeded), `dur_ns` (nanoseconds from the call's entry to the event's timestamp,
//! which is taken when the call has returned, after the wrapper's few bookkeeping steps and,
//! with the default copy strategy, after copying the event's arguments), `pid` and `tid`. Paths are
//! [`CStrPtr`] (a `<name>_faulted` field is 1 when the pointer was bad); data buffers are
//! [`RawBuf`] holding the first N bytes (`faultline record --libc-data N`): what was written,
//! or what was read (only the `ret` bytes the call returned). The vector calls (`readv`,
//! `writev`, `preadv`, `pwritev`) record every buffer of the vector, concatenated, as one
//! [`RawIov`] field: the first N bytes, and `data_truncated` = the bytes of the call's data
//! (written, or read) not recorded. Calls that do not return when
//! they succeed (`execve` and friends, `exit`, `_exit`) are recorded when they are entered.
//! Socket addresses are decoded into text (`127.0.0.1:80`, `[::1]:80`, `unix:/path`,
//! `unix:@abstract`) plus `family`; `addr_faulted` counts unreadable bytes of the address.

use faultline_recorder::{Recorder, Strategy};
use faultline_tracepoints::__private::{FieldType, FieldValue, Writer};
use faultline_tracepoints::{tracepoint, CStrPtr, RawBuf, RawIov};
use std::cell::Cell;

/// Under the default policy, every `libc` event is recorded with reserve-copy-commit (the
/// crate docs, "Copy strategy", say why).
pub(crate) fn default_strategy(recorder: &Recorder) {
    recorder.set_strategy("libc:*", Some(Strategy::ReserveCopyCommit));
}

/// A `u64` field set when its event is encoded: `dur_ns`, the nanoseconds from the call's
/// entry (`start`, clock ticks) to the event's timestamp ([`Duration::end`], called by the
/// recorder right before encoding: `Recorder::record_fields_stamped`). Encoded as a `u64`,
/// exactly as the declared field type.
pub(crate) struct Duration {
    start: u64,
    ns: Cell<u64>,
}

impl Duration {
    #[inline(always)]
    pub(crate) fn new(start: u64) -> Self {
        Duration {
            start,
            ns: Cell::new(0),
        }
    }

    /// The event's time, clock ticks.
    #[inline(always)]
    pub(crate) fn end(&self, t: u64) {
        self.ns.set(crate::thread::ns(self.start, t));
    }
}

impl FieldValue for Duration {
    const TYPE: FieldType = <u64 as FieldValue>::TYPE;
    const RAW: bool = false;
    const MIN_SIZE: usize = <u64 as FieldValue>::MIN_SIZE;
    #[inline(always)]
    fn size(&self) -> usize {
        self.ns.get().size()
    }
    #[inline(always)]
    fn wanted(&self) -> usize {
        self.ns.get().wanted()
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>, budget: usize) {
        self.ns.get().encode(w, budget)
    }
    #[inline(always)]
    fn exact_len(&self) -> usize {
        self.ns.get().exact_len()
    }
    #[inline(always)]
    unsafe fn write_exact(&self, len: usize, dst: *mut u8) {
        // SAFETY: the caller's contract, passed on unchanged (same length as a u64).
        unsafe { self.ns.get().write_exact(len, dst) }
    }
}

/// In `direct`'s functions, the value recorded for an argument: `dur_ns` (the entry time)
/// becomes a [`Duration`] ending at the event; the others are recorded as given.
macro_rules! field_value {
    (dur_ns, $v:ident) => {
        Duration::new($v)
    };
    ($f:ident, $v:ident) => {
        $v
    };
}

/// Ends the [`Duration`] of a `dur_ns` argument at `$t` (nothing for the others).
macro_rules! field_stamp {
    (dur_ns, $v:ident, $t:ident) => {
        $v.end($t)
    };
    ($f:ident, $v:ident, $t:ident) => {};
}

/// Declares the `libc` events: each one's tracepoint, and in [`direct`] a function of the same
/// name taking the same typed arguments, which records the event through this library's
/// recorder without the probe dispatch (see [`crate::record`]). The argument types are the
/// declared field types, so a call is type-checked like `trace!`'s; one argument is read
/// differently: `dur_ns` is the call's *entry time* in clock ticks (`thread::now`), and the
/// event records the nanoseconds from it to the event's own timestamp (see [`Duration`]).
macro_rules! libc_events {
    ($( $(#[$attr:meta])* pub $name:ident, $provider:expr, $event:expr,
        { $($field:ident : $ty:ty),* $(,)? } );* $(;)?) => {
        $( tracepoint!($(#[$attr])* pub $name, $provider, $event, { $($field: $ty),* }); )*

        /// One recording function per `libc` event (see `libc_events!`), called by
        /// `emit!` when the event is active.
        #[allow(non_snake_case, clippy::too_many_arguments, clippy::unused_unit)]
        pub(crate) mod direct {
            use super::*;
            $(
                #[inline(never)]
                pub(crate) fn $name($($field: $ty),*) {
                    $( let $field = field_value!($field, $field); )*
                    crate::record(
                        &super::$name,
                        faultline_tracepoints::__nest!($(&$field),*),
                        |t| {
                            let _ = t;
                            $( field_stamp!($field, $field, t); )*
                        },
                    );
                }
            )*
        }
    };
}

libc_events! {
    /// `libc:open`: a call to `open`.
    pub OPEN, "libc", "open", { path: CStrPtr, flags: i32, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:openat`: a call to `openat`.
    pub OPENAT, "libc", "openat", { dirfd: i32, path: CStrPtr, flags: i32, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:creat`: a call to `creat`.
    pub CREAT, "libc", "creat", { path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:close`: a call to `close`.
    pub CLOSE, "libc", "close", { fd: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:read`: a call to `read`.
    pub READ, "libc", "read", { fd: i32, count: u64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:write`: a call to `write`.
    pub WRITE, "libc", "write", { fd: i32, count: u64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:pread`: a call to `pread`.
    pub PREAD, "libc", "pread", { fd: i32, count: u64, offset: i64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:pwrite`: a call to `pwrite`.
    pub PWRITE, "libc", "pwrite", { fd: i32, count: u64, offset: i64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:readv`: a call to `readv`.
    pub READV, "libc", "readv", { fd: i32, iovcnt: i32, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:writev`: a call to `writev`.
    pub WRITEV, "libc", "writev", { fd: i32, iovcnt: i32, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:preadv`: a call to `preadv`.
    pub PREADV, "libc", "preadv", { fd: i32, iovcnt: i32, offset: i64, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:pwritev`: a call to `pwritev`.
    pub PWRITEV, "libc", "pwritev", { fd: i32, iovcnt: i32, offset: i64, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:stat`: a call to `stat`.
    pub STAT, "libc", "stat", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:lstat`: a call to `lstat`.
    pub LSTAT, "libc", "lstat", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:fstat`: a call to `fstat`.
    pub FSTAT, "libc", "fstat", { fd: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:fstatat`: a call to `fstatat`.
    pub FSTATAT, "libc", "fstatat", { dirfd: i32, path: CStrPtr, flags: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:statx`: a call to `statx`.
    pub STATX, "libc", "statx", { dirfd: i32, path: CStrPtr, flags: i32, mask: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:access`: a call to `access`.
    pub ACCESS, "libc", "access", { path: CStrPtr, mode: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:unlink`: a call to `unlink`.
    pub UNLINK, "libc", "unlink", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:unlinkat`: a call to `unlinkat`.
    pub UNLINKAT, "libc", "unlinkat", { dirfd: i32, path: CStrPtr, flags: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:rename`: a call to `rename`.
    pub RENAME, "libc", "rename", { old: CStrPtr, new: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:renameat`: a call to `renameat`.
    pub RENAMEAT, "libc", "renameat", { olddirfd: i32, old: CStrPtr, newdirfd: i32,
    new: CStrPtr, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:mkdir`: a call to `mkdir`.
    pub MKDIR, "libc", "mkdir", { path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:mkdirat`: a call to `mkdirat`.
    pub MKDIRAT, "libc", "mkdirat", { dirfd: i32, path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:execve`: a call to `execve` or another exec-like call (`execv`, …).
    ///
    /// Recorded on entry (a successful exec does not return); a failure adds `execve_failed`.
    pub EXECVE, "libc", "execve", { path: CStrPtr, argv1: CStrPtr, pid: u32, tid: u32 };
    /// `libc:execve_failed`: an `execve` (or another exec call) that returned, so failed.
    pub EXECVE_FAILED, "libc", "execve_failed", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:fork`: a call to `fork`.
    ///
    /// Recorded in the parent and (fork only) in the child, where ret = 0.
    pub FORK, "libc", "fork", { ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:vfork`: a call to `vfork`.
    pub VFORK, "libc", "vfork", { ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:posix_spawn`: a call to `posix_spawn`.
    ///
    /// `ret` is posix_spawn's return value (an error number, 0 on success), `child` the new pid.
    pub POSIX_SPAWN, "libc", "posix_spawn", { path: CStrPtr, child: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:socket`: a call to `socket`.
    pub SOCKET, "libc", "socket", { domain: i32, sock_type: i32, protocol: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:connect`: a call to `connect`.
    pub CONNECT, "libc", "connect", { fd: i32, family: u16, addr_faulted: u32,
    addr: &str, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:bind`: a call to `bind`.
    pub BIND, "libc", "bind", { fd: i32, family: u16, addr_faulted: u32, addr: &str,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:accept`: a call to `accept`.
    pub ACCEPT, "libc", "accept", { fd: i32, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:send`: a call to `send`.
    pub SEND, "libc", "send", { fd: i32, count: u64, flags: i32, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:sendto`: a call to `sendto`.
    pub SENDTO, "libc", "sendto", { fd: i32, count: u64, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:recv`: a call to `recv`.
    pub RECV, "libc", "recv", { fd: i32, count: u64, flags: i32, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:recvfrom`: a call to `recvfrom`.
    pub RECVFROM, "libc", "recvfrom", { fd: i32, count: u64, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:mmap`: a call to `mmap`.
    pub MMAP, "libc", "mmap", { addr: u64, len: u64, prot: i32, flags: i32, fd: i32,
    offset: i64, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:munmap`: a call to `munmap`.
    pub MUNMAP, "libc", "munmap", { addr: u64, len: u64,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
    /// `libc:exit`: a call to `exit`, recorded on entry (it does not return).
    ///
    /// Recorded on entry: these do not return.
    pub EXIT, "libc", "exit", { status: i32, pid: u32, tid: u32 };
    /// `libc:_exit`: a call to `_exit`, recorded on entry (it does not return).
    pub EXIT_, "libc", "_exit", { status: i32, pid: u32, tid: u32 };
    /// `libc:syscall`: a direct `syscall(2)` call.
    ///
    /// A direct syscall(2): not decoded, but never silent.
    pub SYSCALL, "libc", "syscall", { nr: i64, a0: u64, a1: u64, a2: u64,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 };
}

tracepoint!(
    /// `faultline:process`.
    ///
    /// A process image attached to the session: the first program, and every image a traced
    /// process executes (a fork child continues its parent's attachment and is seen through its
    /// `fork` event instead). `exe` is /proc/self/exe.
    pub PROCESS, "faultline", "process", { pid: u32, ppid: u32, exe: &str });
