//! The event classes: one tracepoint per wrapped call (provider `libc`), plus two about the
//! tracing itself (provider `faultline`).
//!
//! Every `libc` event of a call that returns is recorded once, when it returns, with the
//! arguments, `ret` (the return value, `-1` on failure for most calls), `errno` (0 when the
//! call succeeded), `dur_ns` (entry to exit, nanoseconds), `pid` and `tid`. Paths are
//! [`CStrPtr`] (a `<name>_faulted` field is 1 when the pointer was bad); data buffers are
//! [`RawBuf`] holding the first N bytes (`faultline record --libc-data N`): what was written,
//! or what was read (only the `ret` bytes the call returned). The vector calls (`readv`,
//! `writev`, `preadv`, `pwritev`) record every buffer of the vector, concatenated, as one
//! [`RawIov`] field: the first N bytes, and `data_truncated` = the bytes of the call's data
//! (written, or read) not recorded. Calls that do not return when
//! they succeed (`execve` and friends, `exit`, `_exit`) are recorded when they are entered.
//! Socket addresses are decoded into text (`127.0.0.1:80`, `[::1]:80`, `unix:/path`,
//! `unix:@abstract`) plus `family`; `addr_faulted` counts unreadable bytes of the address.

// The statics and modules `tracepoint!` generates carry no doc comments of their own.
#![allow(missing_docs)]

use faultline_tracepoints::{tracepoint, CStrPtr, RawBuf, RawIov};

tracepoint!(pub OPEN, "libc", "open", { path: CStrPtr, flags: i32, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub OPENAT, "libc", "openat", { dirfd: i32, path: CStrPtr, flags: i32, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub CREAT, "libc", "creat", { path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub CLOSE, "libc", "close", { fd: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub READ, "libc", "read", { fd: i32, count: u64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub WRITE, "libc", "write", { fd: i32, count: u64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub PREAD, "libc", "pread", { fd: i32, count: u64, offset: i64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub PWRITE, "libc", "pwrite", { fd: i32, count: u64, offset: i64, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub READV, "libc", "readv", { fd: i32, iovcnt: i32, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub WRITEV, "libc", "writev", { fd: i32, iovcnt: i32, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub PREADV, "libc", "preadv", { fd: i32, iovcnt: i32, offset: i64, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub PWRITEV, "libc", "pwritev", { fd: i32, iovcnt: i32, offset: i64, data: RawIov,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub STAT, "libc", "stat", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub LSTAT, "libc", "lstat", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub FSTAT, "libc", "fstat", { fd: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub FSTATAT, "libc", "fstatat", { dirfd: i32, path: CStrPtr, flags: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub STATX, "libc", "statx", { dirfd: i32, path: CStrPtr, flags: i32, mask: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub ACCESS, "libc", "access", { path: CStrPtr, mode: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub UNLINK, "libc", "unlink", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub UNLINKAT, "libc", "unlinkat", { dirfd: i32, path: CStrPtr, flags: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub RENAME, "libc", "rename", { old: CStrPtr, new: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub RENAMEAT, "libc", "renameat", { olddirfd: i32, old: CStrPtr, newdirfd: i32,
    new: CStrPtr, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub MKDIR, "libc", "mkdir", { path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub MKDIRAT, "libc", "mkdirat", { dirfd: i32, path: CStrPtr, mode: u32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
// Recorded on entry (a successful exec does not return); a failure adds `execve_failed`.
tracepoint!(pub EXECVE, "libc", "execve", { path: CStrPtr, argv1: CStrPtr, pid: u32, tid: u32 });
tracepoint!(pub EXECVE_FAILED, "libc", "execve_failed", { path: CStrPtr,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
// Recorded in the parent and (fork only) in the child, where ret = 0.
tracepoint!(pub FORK, "libc", "fork", { ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub VFORK, "libc", "vfork", { ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
// `ret` is posix_spawn's return value (an error number, 0 on success), `child` the new pid.
tracepoint!(pub POSIX_SPAWN, "libc", "posix_spawn", { path: CStrPtr, child: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub SOCKET, "libc", "socket", { domain: i32, sock_type: i32, protocol: i32,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub CONNECT, "libc", "connect", { fd: i32, family: u16, addr_faulted: u32,
    addr: &str, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub BIND, "libc", "bind", { fd: i32, family: u16, addr_faulted: u32, addr: &str,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub ACCEPT, "libc", "accept", { fd: i32, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub SEND, "libc", "send", { fd: i32, count: u64, flags: i32, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub SENDTO, "libc", "sendto", { fd: i32, count: u64, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub RECV, "libc", "recv", { fd: i32, count: u64, flags: i32, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub RECVFROM, "libc", "recvfrom", { fd: i32, count: u64, flags: i32, family: u16,
    addr_faulted: u32, addr: &str, data: RawBuf,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub MMAP, "libc", "mmap", { addr: u64, len: u64, prot: i32, flags: i32, fd: i32,
    offset: i64, ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
tracepoint!(pub MUNMAP, "libc", "munmap", { addr: u64, len: u64,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });
// Recorded on entry: these do not return.
tracepoint!(pub EXIT, "libc", "exit", { status: i32, pid: u32, tid: u32 });
tracepoint!(pub EXIT_, "libc", "_exit", { status: i32, pid: u32, tid: u32 });
// A direct syscall(2): not decoded, but never silent.
tracepoint!(pub SYSCALL, "libc", "syscall", { nr: i64, a0: u64, a1: u64, a2: u64,
    ret: i64, errno: i32, dur_ns: u64, pid: u32, tid: u32 });

// A process image attached to the session: the first program, and every image a traced
// process executes (a fork child continues its parent's attachment and is seen through its
// `fork` event instead). `exe` is /proc/self/exe.
tracepoint!(pub PROCESS, "faultline", "process", { pid: u32, ppid: u32, exe: &str });
