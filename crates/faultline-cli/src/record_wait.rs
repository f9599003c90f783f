//! How `faultline record` waits: on events, never on fixed sleeps, so that tracing a program
//! that runs for a few milliseconds costs about as much wall time as the program itself.
//!
//! Three things end a wait of `record`:
//! - **the program exits**: a pidfd (`pidfd_open(2)`) of the program becomes readable. `record`
//!   polls it next to the schema pipe while it waits for the schema, and while it drains, an
//!   [`ExitWake`] thread polls it and then wakes the drain's futex sleep
//!   ([`Channel::wake_consumer`]);
//! - **a message or the end of the schema pipe**: `record` polls a duplicate of the pipe's read
//!   end (the reader itself belongs to the drain's class source);
//! - **a sub-buffer is delivered**: the writer wakes the consumer's futex (the ring buffer's
//!   own protocol).
//!
//! Every wait still has a timeout (the backstop: a kernel without `pidfd_open`, or a wake-up
//! that slipped in between `record`'s check of the program and the start of its sleep — the
//! wake thread repeats its wake-up every [`REWAKE`] until `record` stops it, which bounds that
//! case).

use faultline_ringbuf::Channel;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the wake thread repeats its wake-up once the program has exited, until `record`
/// has left its drain loop (bounds the case of a wake-up that came just before the sleep).
pub const REWAKE: Duration = Duration::from_millis(2);

/// A pidfd for `pid` (readable once the process has exited), or `None` when the kernel has no
/// `pidfd_open` (before 5.3) or a seccomp filter refuses it; callers then fall back to timeouts.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (integers) and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Wait until one of `fds` is readable (or hung up), or `timeout` passes (`None`: no limit).
/// Returns which descriptors are ready. An interrupted poll returns with nothing ready.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        // Round up: a 0.5 ms timeout must not become a busy poll.
        let ms = t.as_micros().div_ceil(1000);
        ms.min(i32::MAX as u128) as i32
    });
    // SAFETY: `p` is a valid array of `p.len()` pollfd structures.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

/// Duplicate `fd` (close-on-exec): a second handle on the same pipe, for polling.
pub fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller keeps open.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// A thread that wakes the consumer of `chan` when the process of a pidfd exits (module docs).
/// Dropping it stops and joins the thread.
pub struct ExitWake {
    /// Write end of the stop pipe: dropping it hangs up the thread's read end.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl ExitWake {
    /// Start watching `pidfd` (the descriptor is duplicated; the caller keeps its own).
    pub fn start(chan: Arc<Channel>, pidfd: &OwnedFd) -> std::io::Result<Self> {
        let pid = dup(pidfd.as_raw_fd())?;
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into a valid array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let thread = std::thread::Builder::new()
            .name("record-exit-wake".into())
            .spawn(move || {
                let (p, s) = (pid.as_raw_fd(), rd.as_raw_fd());
                loop {
                    let r = poll_readable(&[p, s], None);
                    if r[1] {
                        return;
                    }
                    if r[0] {
                        break;
                    }
                }
                loop {
                    chan.wake_consumer();
                    if poll_readable(&[s], Some(REWAKE))[0] {
                        return;
                    }
                }
            })?;
        Ok(Self {
            stop: Some(wr),
            thread: Some(thread),
        })
    }
}

impl Drop for ExitWake {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_ringbuf::{ChannelConfig, Consumer};
    use std::time::Instant;

    /// The drain's futex sleep ends when the watched process exits, long before its timeout.
    #[test]
    fn exit_wakes_the_consumer() {
        let chan = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf: 2,
                ..ChannelConfig::default()
            })
            .unwrap(),
        );
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pidfd = pidfd_open(child.id()).expect("pidfd_open");
        let _w = ExitWake::start(chan.clone(), &pidfd).unwrap();
        let t = Instant::now();
        let c = Consumer::new(&chan);
        // Sleeps until woken: a wake-up that arrives before the sleep starts is repeated.
        while child.try_wait().unwrap().is_none() {
            c.wait(Duration::from_secs(20));
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    /// Dropping the watcher stops its thread even though the process still runs.
    #[test]
    fn drop_stops_the_thread() {
        let chan = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf: 2,
                ..ChannelConfig::default()
            })
            .unwrap(),
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pidfd = pidfd_open(child.id()).expect("pidfd_open");
        let w = ExitWake::start(chan, &pidfd).unwrap();
        let t = Instant::now();
        drop(w);
        assert!(t.elapsed() < Duration::from_secs(5));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn poll_times_out_and_sees_hangup() {
        let mut fds = [0i32; 2];
        // SAFETY: valid array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        assert_eq!(
            poll_readable(&[rd.as_raw_fd()], Some(Duration::from_millis(5))),
            [false]
        );
        drop(wr);
        assert_eq!(poll_readable(&[rd.as_raw_fd()], None), [true]);
    }
}
