//! The interposed functions. Each one calls the real function (see [`crate::real`]) through
//! [`traced`], which times it and records its event when tracing is on for this thread.
//!
//! Variadic prototypes (`open`, `openat`'s `mode`; `syscall`'s arguments) are declared with
//! fixed integer parameters: on x86_64 the System V ABI passes the variadic integer arguments
//! of these calls in the same registers as fixed ones, so the wrapper receives the caller's
//! values (and, for an absent `mode`, whatever the register held: it is only recorded when
//! `O_CREAT`/`O_TMPFILE` says it was passed, and libc ignores it otherwise).

use crate::addr;
use crate::events::*;
use crate::real::real;
use crate::thread::{in_tracer, may_record, now, pid, set_errno, tid, traced};
use faultline_tracepoints::{copy_from_user, CStrPtr, RawBuf, RawIov};
use libc::{
    c_char, c_int, c_long, c_uint, c_void, iovec, mode_t, off_t, pid_t, size_t, sockaddr,
    socklen_t, ssize_t,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `emit!(EVENT, args...)`: record `EVENT` through `events::direct` (the recorder, no probe
/// dispatch: see [`crate::record`]) if it is active; like `trace!`, the arguments are only
/// evaluated then. The `dur_ns` argument is the call's entry time in clock ticks
/// ([`now`]): the event records the nanoseconds from it to the event (`events::direct`).
macro_rules! emit {
    ($tp:ident $(, $arg:expr)* $(,)?) => {
        if $tp.is_active() {
            crate::events::direct::$tp($($arg),*)
        }
    };
}
pub(crate) use emit;

/// Bytes of each data buffer recorded (`FAULTLINE_LIBC_DATA`).
static DATA_BYTES: AtomicUsize = AtomicUsize::new(32);

pub(crate) fn set_data_bytes(n: usize) {
    // Relaxed: written by the constructor before any tracepoint is enabled.
    DATA_BYTES.store(n.min(faultline_tracepoints::MAX_RAW_LEN), Ordering::Relaxed);
}

#[inline(always)]
fn data(p: *const c_void, len: usize) -> RawBuf {
    // Relaxed: constant after the constructor.
    RawBuf(p as *const u8, len.min(DATA_BYTES.load(Ordering::Relaxed)))
}

/// Bytes a read-like call returned (what to record of its buffer): `ret` if it succeeded,
/// else the request (so that a bad buffer shows up as faulted bytes).
#[inline(always)]
fn got(ret: i64, count: usize) -> usize {
    if ret >= 0 {
        ret as usize
    } else {
        count
    }
}

#[inline(always)]
fn mode_if(flags: c_int, mode: mode_t) -> u32 {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        mode
    } else {
        0
    }
}

/// Failure value of a wrapper whose real function is missing (errno `ENOSYS`).
trait Missing {
    fn missing() -> Self;
}
impl Missing for c_int {
    fn missing() -> Self {
        set_errno(libc::ENOSYS);
        -1
    }
}
impl Missing for c_long {
    fn missing() -> Self {
        set_errno(libc::ENOSYS);
        -1
    }
}
impl Missing for ssize_t {
    fn missing() -> Self {
        set_errno(libc::ENOSYS);
        -1
    }
}
impl Missing for *mut c_void {
    fn missing() -> Self {
        set_errno(libc::ENOSYS);
        libc::MAP_FAILED
    }
}

/// `wrapper!(fn name(args) -> R = SYM, TP, |ret, done| record)`: define the exported function
/// `name` with libc's prototype, recording through `TP` when its result is not `-1`-like…
/// (`failed` is `ret == -1`).
macro_rules! wrapper {
    ($name:ident($($a:ident: $t:ty),*) -> $r:ty = $sym:ident, $tp:ident, |$ret:ident, $d:ident| $rec:expr) => {
        #[doc = concat!("Interposed `", stringify!($name), "`: calls libc's and records `", stringify!($tp), "`.")]
        ///
        /// # Safety
        /// The C contract of the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
            let f = real!($sym, fn($($t),*) -> $r);
            traced(
                $tp.is_active(),
                || match f {
                    // SAFETY: the caller's arguments, unchanged, to the function it meant to
                    // call (our caller upholds its contract).
                    Some(f) => unsafe { f($($a),*) },
                    None => <$r as Missing>::missing(),
                },
                |r| r as i64 == -1,
                |$ret, $d| {
                    let $ret = $ret as i64;
                    $rec
                },
            )
        }
    };
}

// ---- files ----

wrapper!(open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int = open, OPEN,
    |r, d| emit!(OPEN, CStrPtr(path), flags, mode_if(flags, mode), r, d.errno, d.start, d.pid, d.tid));
wrapper!(open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int = open64, OPEN,
    |r, d| emit!(OPEN, CStrPtr(path), flags, mode_if(flags, mode), r, d.errno, d.start, d.pid, d.tid));
wrapper!(__open_2(path: *const c_char, flags: c_int) -> c_int = open_2, OPEN,
    |r, d| emit!(OPEN, CStrPtr(path), flags, 0u32, r, d.errno, d.start, d.pid, d.tid));
wrapper!(__open64_2(path: *const c_char, flags: c_int) -> c_int = open64_2, OPEN,
    |r, d| emit!(OPEN, CStrPtr(path), flags, 0u32, r, d.errno, d.start, d.pid, d.tid));
wrapper!(openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int = openat, OPENAT,
    |r, d| emit!(OPENAT, dirfd, CStrPtr(path), flags, mode_if(flags, mode), r, d.errno, d.start, d.pid, d.tid));
wrapper!(openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int = openat64, OPENAT,
    |r, d| emit!(OPENAT, dirfd, CStrPtr(path), flags, mode_if(flags, mode), r, d.errno, d.start, d.pid, d.tid));
wrapper!(__openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int = openat_2, OPENAT,
    |r, d| emit!(OPENAT, dirfd, CStrPtr(path), flags, 0u32, r, d.errno, d.start, d.pid, d.tid));
wrapper!(__openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int = openat64_2, OPENAT,
    |r, d| emit!(OPENAT, dirfd, CStrPtr(path), flags, 0u32, r, d.errno, d.start, d.pid, d.tid));
wrapper!(creat(path: *const c_char, mode: mode_t) -> c_int = creat, CREAT,
    |r, d| emit!(CREAT, CStrPtr(path), mode, r, d.errno, d.start, d.pid, d.tid));
wrapper!(creat64(path: *const c_char, mode: mode_t) -> c_int = creat64, CREAT,
    |r, d| emit!(CREAT, CStrPtr(path), mode, r, d.errno, d.start, d.pid, d.tid));
wrapper!(close(fd: c_int) -> c_int = close, CLOSE,
    |r, d| emit!(CLOSE, fd, r, d.errno, d.start, d.pid, d.tid));

wrapper!(read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t = read, READ,
    |r, d| emit!(READ, fd, count as u64, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(__read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t = read_chk, READ,
    |r, d| { let _ = buflen; emit!(READ, fd, count as u64, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t = write, WRITE,
    |r, d| emit!(WRITE, fd, count as u64, data(buf, count), r, d.errno, d.start, d.pid, d.tid));
wrapper!(pread(fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t = pread, PREAD,
    |r, d| emit!(PREAD, fd, count as u64, off, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(pread64(fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t = pread64, PREAD,
    |r, d| emit!(PREAD, fd, count as u64, off, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(__pread_chk(fd: c_int, buf: *mut c_void, count: size_t, off: off_t, buflen: size_t) -> ssize_t = pread_chk, PREAD,
    |r, d| { let _ = buflen; emit!(PREAD, fd, count as u64, off, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, off: off_t, buflen: size_t) -> ssize_t = pread64_chk, PREAD,
    |r, d| { let _ = buflen; emit!(PREAD, fd, count as u64, off, data(buf, got(r, count)), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(pwrite(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t = pwrite, PWRITE,
    |r, d| emit!(PWRITE, fd, count as u64, off, data(buf, count), r, d.errno, d.start, d.pid, d.tid));
wrapper!(pwrite64(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t = pwrite64, PWRITE,
    |r, d| emit!(PWRITE, fd, count as u64, off, data(buf, count), r, d.errno, d.start, d.pid, d.tid));

/// The data of every iovec, concatenated (the first `--libc-data` bytes), read from untrusted
/// memory: see [`RawIov`] (a bad iovec array is recorded as faulted bytes of the array
/// itself; `data_truncated` counts the bytes of `cap` not recorded).
fn iov_data(iov: *const iovec, iovcnt: c_int, cap: usize) -> RawIov {
    RawIov {
        iov: iov as *const u8,
        count: iovcnt.max(0) as usize,
        // Relaxed: constant after the constructor.
        limit: DATA_BYTES.load(Ordering::Relaxed),
        cap,
    }
}

wrapper!(readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t = readv, READV,
    |r, d| emit!(READV, fd, iovcnt, iov_data(iov, iovcnt, got(r, usize::MAX)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t = writev, WRITEV,
    |r, d| emit!(WRITEV, fd, iovcnt, iov_data(iov, iovcnt, usize::MAX), r, d.errno, d.start, d.pid, d.tid));
wrapper!(preadv(fd: c_int, iov: *const iovec, iovcnt: c_int, off: off_t) -> ssize_t = preadv, PREADV,
    |r, d| emit!(PREADV, fd, iovcnt, off, iov_data(iov, iovcnt, got(r, usize::MAX)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(preadv64(fd: c_int, iov: *const iovec, iovcnt: c_int, off: off_t) -> ssize_t = preadv64, PREADV,
    |r, d| emit!(PREADV, fd, iovcnt, off, iov_data(iov, iovcnt, got(r, usize::MAX)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, off: off_t) -> ssize_t = pwritev, PWRITEV,
    |r, d| emit!(PWRITEV, fd, iovcnt, off, iov_data(iov, iovcnt, usize::MAX), r, d.errno, d.start, d.pid, d.tid));
wrapper!(pwritev64(fd: c_int, iov: *const iovec, iovcnt: c_int, off: off_t) -> ssize_t = pwritev64, PWRITEV,
    |r, d| emit!(PWRITEV, fd, iovcnt, off, iov_data(iov, iovcnt, usize::MAX), r, d.errno, d.start, d.pid, d.tid));

// ---- stat family (glibc >= 2.33 exports stat/fstat/lstat/fstatat; older binaries call the
// versioned __xstat family, wrapped too) ----

type StatBuf = *mut libc::stat;
wrapper!(stat(path: *const c_char, buf: StatBuf) -> c_int = stat, STAT,
    |r, d| emit!(STAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid));
wrapper!(stat64(path: *const c_char, buf: StatBuf) -> c_int = stat64, STAT,
    |r, d| emit!(STAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid));
wrapper!(lstat(path: *const c_char, buf: StatBuf) -> c_int = lstat, LSTAT,
    |r, d| emit!(LSTAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid));
wrapper!(lstat64(path: *const c_char, buf: StatBuf) -> c_int = lstat64, LSTAT,
    |r, d| emit!(LSTAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid));
wrapper!(fstat(fd: c_int, buf: StatBuf) -> c_int = fstat, FSTAT,
    |r, d| emit!(FSTAT, fd, r, d.errno, d.start, d.pid, d.tid));
wrapper!(fstat64(fd: c_int, buf: StatBuf) -> c_int = fstat64, FSTAT,
    |r, d| emit!(FSTAT, fd, r, d.errno, d.start, d.pid, d.tid));
wrapper!(fstatat(dirfd: c_int, path: *const c_char, buf: StatBuf, flags: c_int) -> c_int = fstatat, FSTATAT,
    |r, d| emit!(FSTATAT, dirfd, CStrPtr(path), flags, r, d.errno, d.start, d.pid, d.tid));
wrapper!(fstatat64(dirfd: c_int, path: *const c_char, buf: StatBuf, flags: c_int) -> c_int = fstatat64, FSTATAT,
    |r, d| emit!(FSTATAT, dirfd, CStrPtr(path), flags, r, d.errno, d.start, d.pid, d.tid));
wrapper!(__xstat(ver: c_int, path: *const c_char, buf: StatBuf) -> c_int = xstat, STAT,
    |r, d| { let _ = ver; emit!(STAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__xstat64(ver: c_int, path: *const c_char, buf: StatBuf) -> c_int = xstat64, STAT,
    |r, d| { let _ = ver; emit!(STAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__lxstat(ver: c_int, path: *const c_char, buf: StatBuf) -> c_int = lxstat, LSTAT,
    |r, d| { let _ = ver; emit!(LSTAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__lxstat64(ver: c_int, path: *const c_char, buf: StatBuf) -> c_int = lxstat64, LSTAT,
    |r, d| { let _ = ver; emit!(LSTAT, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__fxstat(ver: c_int, fd: c_int, buf: StatBuf) -> c_int = fxstat, FSTAT,
    |r, d| { let _ = ver; emit!(FSTAT, fd, r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__fxstat64(ver: c_int, fd: c_int, buf: StatBuf) -> c_int = fxstat64, FSTAT,
    |r, d| { let _ = ver; emit!(FSTAT, fd, r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, buf: StatBuf, flags: c_int) -> c_int = fxstatat, FSTATAT,
    |r, d| { let _ = ver; emit!(FSTATAT, dirfd, CStrPtr(path), flags, r, d.errno, d.start, d.pid, d.tid) });
wrapper!(__fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, buf: StatBuf, flags: c_int) -> c_int = fxstatat64, FSTATAT,
    |r, d| { let _ = ver; emit!(FSTATAT, dirfd, CStrPtr(path), flags, r, d.errno, d.start, d.pid, d.tid) });
wrapper!(statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut c_void) -> c_int = statx, STATX,
    |r, d| emit!(STATX, dirfd, CStrPtr(path), flags, mask, r, d.errno, d.start, d.pid, d.tid));

wrapper!(access(path: *const c_char, mode: c_int) -> c_int = access, ACCESS,
    |r, d| emit!(ACCESS, CStrPtr(path), mode, r, d.errno, d.start, d.pid, d.tid));
wrapper!(unlink(path: *const c_char) -> c_int = unlink, UNLINK,
    |r, d| emit!(UNLINK, CStrPtr(path), r, d.errno, d.start, d.pid, d.tid));
wrapper!(unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int = unlinkat, UNLINKAT,
    |r, d| emit!(UNLINKAT, dirfd, CStrPtr(path), flags, r, d.errno, d.start, d.pid, d.tid));
wrapper!(rename(old: *const c_char, new: *const c_char) -> c_int = rename, RENAME,
    |r, d| emit!(RENAME, CStrPtr(old), CStrPtr(new), r, d.errno, d.start, d.pid, d.tid));
wrapper!(renameat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char) -> c_int = renameat, RENAMEAT,
    |r, d| emit!(RENAMEAT, olddirfd, CStrPtr(old), newdirfd, CStrPtr(new), r, d.errno, d.start, d.pid, d.tid));
wrapper!(mkdir(path: *const c_char, mode: mode_t) -> c_int = mkdir, MKDIR,
    |r, d| emit!(MKDIR, CStrPtr(path), mode, r, d.errno, d.start, d.pid, d.tid));
wrapper!(mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int = mkdirat, MKDIRAT,
    |r, d| emit!(MKDIRAT, dirfd, CStrPtr(path), mode, r, d.errno, d.start, d.pid, d.tid));

// ---- sockets ----

wrapper!(socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int = socket, SOCKET,
    |r, d| emit!(SOCKET, domain, ty, protocol, r, d.errno, d.start, d.pid, d.tid));
wrapper!(connect(fd: c_int, sa: *const sockaddr, len: socklen_t) -> c_int = connect, CONNECT,
    |r, d| { let a = addr::read(sa, len as usize); emit!(CONNECT, fd, a.family, a.faulted, a.text(), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(bind(fd: c_int, sa: *const sockaddr, len: socklen_t) -> c_int = bind, BIND,
    |r, d| { let a = addr::read(sa, len as usize); emit!(BIND, fd, a.family, a.faulted, a.text(), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(accept(fd: c_int, sa: *mut sockaddr, lenp: *mut socklen_t) -> c_int = accept, ACCEPT,
    |r, d| { let a = if r >= 0 { addr::read_out(sa, lenp) } else { addr::read(std::ptr::null(), 0) };
        emit!(ACCEPT, fd, 0i32, a.family, a.faulted, a.text(), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(accept4(fd: c_int, sa: *mut sockaddr, lenp: *mut socklen_t, flags: c_int) -> c_int = accept4, ACCEPT,
    |r, d| { let a = if r >= 0 { addr::read_out(sa, lenp) } else { addr::read(std::ptr::null(), 0) };
        emit!(ACCEPT, fd, flags, a.family, a.faulted, a.text(), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t = send, SEND,
    |r, d| emit!(SEND, fd, len as u64, flags, data(buf, len), r, d.errno, d.start, d.pid, d.tid));
wrapper!(sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, sa: *const sockaddr, alen: socklen_t) -> ssize_t = sendto, SENDTO,
    |r, d| { let a = addr::read(sa, alen as usize);
        emit!(SENDTO, fd, len as u64, flags, a.family, a.faulted, a.text(), data(buf, len), r, d.errno, d.start, d.pid, d.tid) });
wrapper!(recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t = recv, RECV,
    |r, d| emit!(RECV, fd, len as u64, flags, data(buf, got(r, len)), r, d.errno, d.start, d.pid, d.tid));
wrapper!(recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, sa: *mut sockaddr, lenp: *mut socklen_t) -> ssize_t = recvfrom, RECVFROM,
    |r, d| { let a = if r >= 0 { addr::read_out(sa, lenp) } else { addr::read(std::ptr::null(), 0) };
        emit!(RECVFROM, fd, len as u64, flags, a.family, a.faulted, a.text(), data(buf, got(r, len)), r, d.errno, d.start, d.pid, d.tid) });

// ---- memory ----

wrapper!(munmap(addr: *mut c_void, len: size_t) -> c_int = munmap, MUNMAP,
    |r, d| emit!(MUNMAP, addr as u64, len as u64, r, d.errno, d.start, d.pid, d.tid));

macro_rules! mmap_wrapper {
    ($name:ident, $sym:ident) => {
        #[doc = concat!("Interposed `", stringify!($name), "`: calls libc's and records `MMAP`.")]
        ///
        /// # Safety
        /// The C contract of `mmap`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            addr: *mut c_void,
            len: size_t,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: off_t,
        ) -> *mut c_void {
            let f = real!(
                $sym,
                fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void
            );
            traced(
                MMAP.is_active(),
                || match f {
                    // SAFETY: the caller's arguments, unchanged, to the function it meant to call.
                    Some(f) => unsafe { f(addr, len, prot, flags, fd, off) },
                    None => <*mut c_void as Missing>::missing(),
                },
                |r| r == libc::MAP_FAILED,
                |r, d| {
                    emit!(
                        MMAP,
                        addr as u64,
                        len as u64,
                        prot,
                        flags,
                        fd,
                        off,
                        r as i64,
                        d.errno,
                        d.start,
                        d.pid,
                        d.tid
                    )
                },
            )
        }
    };
}
mmap_wrapper!(mmap, mmap);
mmap_wrapper!(mmap64, mmap64);

// ---- processes ----

wrapper!(fork() -> pid_t = fork, FORK,
    |r, d| emit!(FORK, r, d.errno, d.start, d.pid, d.tid));

/// `argv[1]` of an argument vector in untrusted memory (an empty string if there is none).
fn argv1(argv: *const *const c_char) -> CStrPtr {
    if argv.is_null() {
        return CStrPtr(c"".as_ptr());
    }
    let mut raw = [0u8; 16];
    if copy_from_user(&mut raw, argv as *const u8) != 0 {
        return CStrPtr(std::ptr::null());
    }
    let a0 = usize::from_ne_bytes(raw[..8].try_into().unwrap_or([0; 8]));
    let a1 = usize::from_ne_bytes(raw[8..].try_into().unwrap_or([0; 8]));
    if a0 == 0 || a1 == 0 {
        CStrPtr(c"".as_ptr())
    } else {
        CStrPtr(a1 as *const c_char)
    }
}

/// An exec-like call: `execve` on entry, `execve_failed` if it returns.
#[inline(always)]
fn exec_like(
    path: *const c_char,
    argv: *const *const c_char,
    call: impl FnOnce() -> c_int,
) -> c_int {
    if may_record() {
        // The image is replaced: its counters go now (crate::stats).
        in_tracer(crate::stats::report);
    }
    let on = (EXECVE.is_active() || EXECVE_FAILED.is_active()) && may_record();
    if !on {
        return call();
    }
    in_tracer(|| emit!(EXECVE, CStrPtr(path), argv1(argv), pid(), tid()));
    let t0 = now();
    let r = call();
    let e = crate::thread::errno();
    in_tracer(|| emit!(EXECVE_FAILED, CStrPtr(path), r as i64, e, t0, pid(), tid()));
    set_errno(e);
    r
}

/// Interposed `execve`: records `execve` on entry (and `execve_failed` if it returns).
///
/// # Safety
/// The C contract of `execve`.
#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real!(
        execve,
        fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int
    );
    exec_like(path, argv, || match f {
        // SAFETY: the caller's arguments, unchanged, to the function it meant to call.
        Some(f) => unsafe { f(path, argv, envp) },
        None => c_int::missing(),
    })
}

/// Interposed `execv`.
///
/// # Safety
/// The C contract of `execv`.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    let f = real!(execv, fn(*const c_char, *const *const c_char) -> c_int);
    exec_like(path, argv, || match f {
        // SAFETY: as in `execve`.
        Some(f) => unsafe { f(path, argv) },
        None => c_int::missing(),
    })
}

/// Interposed `execvp` (`path` is the file name as given, before the `PATH` search).
///
/// # Safety
/// The C contract of `execvp`.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    let f = real!(execvp, fn(*const c_char, *const *const c_char) -> c_int);
    exec_like(file, argv, || match f {
        // SAFETY: as in `execve`.
        Some(f) => unsafe { f(file, argv) },
        None => c_int::missing(),
    })
}

/// Interposed `execvpe`.
///
/// # Safety
/// The C contract of `execvpe`.
#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real!(
        execvpe,
        fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int
    );
    exec_like(file, argv, || match f {
        // SAFETY: as in `execve`.
        Some(f) => unsafe { f(file, argv, envp) },
        None => c_int::missing(),
    })
}

type SpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

#[inline(always)]
fn spawn_like(pidp: *mut pid_t, path: *const c_char, call: impl FnOnce() -> c_int) -> c_int {
    traced(
        POSIX_SPAWN.is_active(),
        call,
        |r| r != 0,
        |r, d| {
            let mut child = [0u8; 4];
            let c = if r == 0
                && !pidp.is_null()
                && copy_from_user(&mut child, pidp as *const u8) == 0
            {
                i32::from_ne_bytes(child)
            } else {
                -1
            };
            // posix_spawn returns its error number instead of setting errno.
            emit!(
                POSIX_SPAWN,
                CStrPtr(path),
                c,
                r as i64,
                r,
                d.start,
                d.pid,
                d.tid
            )
        },
    )
}

/// Interposed `posix_spawn`.
///
/// # Safety
/// The C contract of `posix_spawn`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pidp: *mut pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let f: Option<SpawnFn> = real!(
        posix_spawn,
        fn(
            *mut pid_t,
            *const c_char,
            *const libc::posix_spawn_file_actions_t,
            *const libc::posix_spawnattr_t,
            *const *mut c_char,
            *const *mut c_char,
        ) -> c_int
    );
    spawn_like(pidp, path, || match f {
        // SAFETY: the caller's arguments, unchanged, to the function it meant to call.
        Some(f) => unsafe { f(pidp, path, fa, attr, argv, envp) },
        None => libc::ENOSYS,
    })
}

/// Interposed `posix_spawnp`.
///
/// # Safety
/// The C contract of `posix_spawnp`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pidp: *mut pid_t,
    file: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let f: Option<SpawnFn> = real!(
        posix_spawnp,
        fn(
            *mut pid_t,
            *const c_char,
            *const libc::posix_spawn_file_actions_t,
            *const libc::posix_spawnattr_t,
            *const *mut c_char,
            *const *mut c_char,
        ) -> c_int
    );
    spawn_like(pidp, file, || match f {
        // SAFETY: as in `posix_spawn`.
        Some(f) => unsafe { f(pidp, file, fa, attr, argv, envp) },
        None => libc::ENOSYS,
    })
}

/// Exit without returning through libc's `exit` when it cannot be found.
fn exit_group(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group has no memory arguments and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status as c_long) };
    }
}

/// Interposed `exit`: records `exit`, then runs libc's (atexit handlers, stdio flush).
///
/// # Safety
/// The C contract of `exit`.
#[no_mangle]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    if EXIT.is_active() && may_record() {
        in_tracer(|| emit!(EXIT, status, pid(), tid()));
    }
    match real!(exit, fn(c_int) -> !) {
        // SAFETY: the caller's argument to the function it meant to call.
        Some(f) => unsafe { f(status) },
        None => exit_group(status),
    }
}

/// Interposed `_exit`.
///
/// # Safety
/// The C contract of `_exit`.
#[no_mangle]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    if EXIT_.is_active() && may_record() {
        in_tracer(|| emit!(EXIT_, status, pid(), tid()));
    }
    if may_record() {
        // No destructor runs: this image's counters go now (crate::stats).
        in_tracer(crate::stats::report);
    }
    match real!(exit_, fn(c_int) -> !) {
        // SAFETY: the caller's argument to the function it meant to call.
        Some(f) => unsafe { f(status) },
        None => exit_group(status),
    }
}

/// Interposed `_Exit` (recorded as `_exit`).
///
/// # Safety
/// The C contract of `_Exit`.
#[no_mangle]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    if EXIT_.is_active() && may_record() {
        in_tracer(|| emit!(EXIT_, status, pid(), tid()));
    }
    if may_record() {
        // No destructor runs: this image's counters go now (crate::stats).
        in_tracer(crate::stats::report);
    }
    match real!(exit_upper, fn(c_int) -> !) {
        // SAFETY: the caller's argument to the function it meant to call.
        Some(f) => unsafe { f(status) },
        None => exit_group(status),
    }
}

/// Interposed `syscall(2)`: the system call is made unchanged and recorded undecoded (number,
/// first three arguments), so a program that bypasses the libc wrappers is visible in the
/// trace.
///
/// # Safety
/// The C contract of `syscall` (the arguments the system call expects).
#[no_mangle]
pub unsafe extern "C" fn syscall(
    nr: c_long,
    a0: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
) -> c_long {
    let f = real!(
        syscall,
        fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long
    );
    traced(
        SYSCALL.is_active(),
        || match f {
            // SAFETY: the caller's arguments, unchanged (see the module docs on variadics).
            Some(f) => unsafe { f(nr, a0, a1, a2, a3, a4, a5) },
            None => c_long::missing(),
        },
        |r| r == -1,
        |r, d| {
            emit!(SYSCALL, nr, a0 as u64, a1 as u64, a2 as u64, r, d.errno, d.start, d.pid, d.tid)
        },
    )
}
