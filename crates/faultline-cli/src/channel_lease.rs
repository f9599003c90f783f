//! Whether any process other than `faultline record` can still write the channel, asked of
//! the kernel in one system call: a **write lease** (`fcntl(F_SETLEASE, F_WRLCK)`).
//!
//! # Why it answers the question
//! A process can only write the channel through a shared writable mapping of the memfd, and a
//! mapping keeps the *open file description* it was made from alive after every descriptor is
//! closed. The kernel counts, per inode, the open file descriptions opened for writing by
//! `open(2)` (`i_writecount`), and grants a write lease only when the one asking for it is
//! the only such description (and no description is open read-only). So:
//! 1. `record` never hands its own descriptor of the memfd to anybody. It opens the memfd
//!    again through `/proc/self/fd/N` twice ([`ChannelOpens::new`]): one description is
//!    `record`'s own ([`ChannelOpens::lease`]), the other is the one the program inherits
//!    ([`ChannelOpens::child`]) and that every traced process after it shares (the preload
//!    library and `faultline::Session` map and duplicate the inherited descriptor; `fork`
//!    shares it). `record` closes its copy of the child's as soon as the program is started.
//! 2. At the end, the lease is granted on `record`'s description only if no process holds
//!    the child's description (as a descriptor or through a mapping) nor any other open of
//!    the memfd: then no process can write the channel and dead-writer recovery is safe. The
//!    memfd's own creation descriptor (an anonymous file, not counted by the kernel) stays
//!    inside `record`.
//! 3. While `record` holds the lease, any `open` of the memfd by another process blocks (the
//!    kernel breaks the lease by signalling its holder, and gives up waiting after
//!    `/proc/sys/fs/lease-break-time`); `record` ignores `SIGIO`, the signal of a lease
//!    break, and releases the lease as soon as recovery is done ([`Lease`]'s `Drop`).
//!
//! When the lease is refused (a holder is alive, or leases are disabled,
//! `/proc/sys/fs/leases-enable` = 0) or the memfd cannot be reopened, `record` falls back to
//! scanning `/proc` ([`crate::record::channel_holders`]), which also names the holders for the
//! report. The lease answers in microseconds what the scan answers in milliseconds (it reads
//! the descriptors and memory maps of every process on the machine).
//!
//! What the lease does not see: a duplicate of `record`'s own creation descriptor taken from
//! `record` itself (`pidfd_getfd(2)`, which needs ptrace rights over `record`).

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

/// The two extra open file descriptions of the channel `record` makes (module docs).
pub struct ChannelOpens {
    /// `record`'s own: the lease is asked on it.
    pub lease: File,
    /// The program's (inherited), until the program is started.
    pub child: File,
}

impl ChannelOpens {
    /// Open the memfd `fd` twice more, read-write, close-on-exec.
    pub fn new(fd: RawFd) -> std::io::Result<ChannelOpens> {
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
        };
        Ok(ChannelOpens {
            lease: open()?,
            child: open()?,
        })
    }
}

/// A write lease held on `record`'s description of the channel; released on drop.
pub struct Lease<'a> {
    file: &'a File,
}

impl Lease<'_> {
    /// The lease, if the kernel grants it: no other open file description of the memfd exists
    /// (module docs). `SIGIO` is ignored from now on (a lease break must not kill `record`).
    pub fn take(file: &File) -> Option<Lease<'_>> {
        // SAFETY: setting a signal's disposition to SIG_IGN has no memory arguments.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        // SAFETY: fcntl(F_SETLEASE) on a descriptor `file` keeps open; integer arguments.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
        (r == 0).then_some(Lease { file })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `take`.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn memfd() -> File {
        // SAFETY: memfd_create with a valid C string; the result is checked.
        let fd = unsafe { libc::memfd_create(c"lease-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor owned by nobody else.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(4096).unwrap();
        f
    }

    /// Granted, allowing for another test of this binary that forks while we ask (its child
    /// holds copies of our descriptors until it executes).
    fn granted(f: &File) -> bool {
        (0..100).any(|_| {
            Lease::take(f).is_some() || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                false
            }
        })
    }

    fn map(f: &File) -> *mut libc::c_void {
        // SAFETY: a shared mapping of a 4096-byte file; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p
    }

    /// The lease is granted exactly when no other description can write: not while the
    /// child's is open, nor while it is only mapped (descriptor closed), nor while a forked
    /// process keeps that mapping, nor with a read-only open; granted once every holder is
    /// gone. `record`'s own mapping, through the creation descriptor, does not count.
    #[test]
    fn lease_sees_descriptors_and_mappings() {
        if std::fs::read_to_string("/proc/sys/fs/leases-enable").is_ok_and(|s| s.trim() == "0") {
            eprintln!("skipped: leases are disabled (fs.leases-enable = 0)");
            return;
        }
        let m = memfd();
        let own = map(&m);
        let ChannelOpens { lease, child } = ChannelOpens::new(m.as_raw_fd()).unwrap();
        assert!(
            Lease::take(&lease).is_none(),
            "granted with the child's fd open"
        );
        let p = map(&child);
        drop(child);
        assert!(Lease::take(&lease).is_none(), "granted while mapped");
        // SAFETY: fork in a test; the child only sleeps and exits without unwinding.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: async-signal-safe calls only.
            unsafe {
                libc::usleep(200_000);
                libc::_exit(0);
            }
        }
        assert!(pid > 0);
        // SAFETY: our own mapping of 4096 bytes.
        unsafe { libc::munmap(p, 4096) };
        assert!(
            Lease::take(&lease).is_none(),
            "granted while a forked process maps the channel"
        );
        let mut st = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(granted(&lease), "refused with no holder left");
        let ro = File::open(format!("/proc/self/fd/{}", lease.as_raw_fd())).unwrap();
        assert!(
            Lease::take(&lease).is_none(),
            "granted with a read-only open"
        );
        drop(ro);
        assert!(granted(&lease));
        // SAFETY: our own mapping of 4096 bytes.
        unsafe { libc::munmap(own, 4096) };
    }
}
