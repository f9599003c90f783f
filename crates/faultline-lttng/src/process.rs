//! Child processes with deadlines, a self-deleting temporary directory, and the private
//! `lttng-sessiond`.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long reader threads may outlive their child before we give up on them.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Result of [`run_command`].
pub(crate) struct CmdOutput<T> {
    pub status: ExitStatus,
    pub stdout: T,
    pub stderr: String,
}

/// Reads a child's whole stdout.
pub(crate) fn capture(mut out: ChildStdout) -> Vec<u8> {
    let mut buf = Vec::new();
    // A read error just truncates the capture; the exit status still tells success.
    let _ = out.read_to_end(&mut buf);
    buf
}

/// Runs `cmd` to completion or until `timeout`, whichever comes first.
///
/// The child gets stdin from /dev/null and its own process group, so a timeout kills
/// it together with anything it forked. `on_stdout` consumes stdout on a separate
/// thread (so a large output never blocks the child); stderr is captured as text.
pub(crate) fn run_command<T, F>(
    cmd: &mut Command,
    timeout: Duration,
    what: &str,
    on_stdout: F,
) -> Result<CmdOutput<T>>
where
    T: Send + 'static,
    F: FnOnce(ChildStdout) -> T + Send + 'static,
{
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let pid = child.id();

    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        thread::spawn(move || {
            let _ = out_tx.send(on_stdout(out));
        });
    }
    if let Some(mut err) = child.stderr.take() {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = err_tx.send(buf);
        });
    }

    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(anyhow!(e).context(format!("waiting for {what}")));
            }
        }
        if start.elapsed() >= timeout {
            kill_group(pid);
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}; killed it");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };

    // The child has exited; its pipes close unless something it forked still holds
    // them. Give the readers a grace period, then kill the rest of the group.
    let stdout = match out_rx.recv_timeout(PIPE_DRAIN_GRACE) {
        Ok(v) => v,
        Err(_) => {
            kill_group(pid);
            out_rx
                .recv_timeout(Duration::from_secs(1))
                .map_err(|_| anyhow!("{what}: stdout was not closed after the process exited"))?
        }
    };
    let stderr = err_rx
        .recv_timeout(PIPE_DRAIN_GRACE)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(CmdOutput {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run_command`] but captures stdout as text and fails on a non-zero exit.
pub(crate) fn run_checked(cmd: &mut Command, timeout: Duration, what: &str) -> Result<String> {
    let out = run_command(cmd, timeout, what, capture)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            stdout.trim(),
            if out.stderr.trim().is_empty() {
                String::new()
            } else {
                format!(" / {}", out.stderr.trim())
            }
        );
    }
    Ok(stdout)
}

/// SIGKILL to the process group led by `pid` (which must be our unreaped child or
/// have been one a moment ago, so the group id cannot have been recycled).
fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid only sends a signal.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Has our child `pid` exited? Does not reap it (WNOWAIT), so its pid and process
/// group id stay reserved until we call `wait`.
fn exited_without_reaping(pid: u32) -> bool {
    let id: libc::id_t = pid;
    // SAFETY: siginfo_t is plain data; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a siginfo_t we own.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        // ECHILD: already reaped (or not ours): nothing left to wait for.
        return true;
    }
    // SAFETY: after a successful waitid, si_pid is valid (0 when nothing changed).
    unsafe { info.si_pid() != 0 }
}

/// Waits (polling) until our child `pid` has exited, without reaping it.
fn wait_exit(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if exited_without_reaping(pid) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Searches `PATH` for an executable named `name`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| OsStr::new("/usr/local/bin:/usr/bin:/bin").to_os_string());
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A directory made with `mkdtemp(3)` under the system temp dir, removed on drop.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Result<TempDir> {
        let template = std::env::temp_dir().join(format!("{prefix}XXXXXX"));
        let c = CString::new(template.as_os_str().as_bytes())
            .context("temporary directory path contains a NUL byte")?;
        let mut bytes = c.into_bytes_with_nul();
        // SAFETY: `bytes` is a writable NUL-terminated template ending in XXXXXX.
        let r = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if r.is_null() {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mkdtemp {}", template.display()));
        }
        bytes.pop(); // the NUL
        Ok(TempDir {
            path: PathBuf::from(OsStr::from_bytes(&bytes)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A private `lttng-sessiond`, our direct child, leader of its own process group.
///
/// It runs in the foreground from its own point of view (no `--daemonize`) so that it
/// stays our child: on drop we can signal it, wait for it with a deadline, kill its
/// whole process group (consumer daemons, run-as helpers) and reap it.
pub(crate) struct Sessiond {
    child: Option<Child>,
    log: PathBuf,
}

impl Sessiond {
    /// Spawns `cmd` (an `lttng-sessiond` command line with environment set) with output
    /// to `log`, then waits until `ready()` returns true or `timeout` passes.
    pub(crate) fn start(
        cmd: &mut Command,
        log: PathBuf,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Sessiond> {
        let log_file =
            fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let log_err = log_file.try_clone().context("dup sessiond log")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        let child = cmd.spawn().context("cannot start lttng-sessiond")?;
        let sessiond = Sessiond {
            child: Some(child),
            log,
        };
        let start = Instant::now();
        loop {
            if let Some(child) = sessiond.child.as_ref() {
                if exited_without_reaping(child.id()) {
                    bail!(
                        "lttng-sessiond exited during start-up; log: {}",
                        sessiond.log_tail()
                    );
                }
            }
            if ready() {
                return Ok(sessiond);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "lttng-sessiond not ready within {timeout:?}; log: {}",
                    sessiond.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Is the daemon still running?
    pub(crate) fn alive(&self) -> bool {
        self.child
            .as_ref()
            .map(|c| !exited_without_reaping(c.id()))
            .unwrap_or(false)
    }

    /// Last lines of the daemon's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        let tail = lines[from..].join("\n");
        if tail.is_empty() {
            "(empty)".to_string()
        } else {
            tail
        }
    }

    /// SIGTERM, up to 5 s for a clean exit, then SIGKILL to the whole process group,
    /// then reap. Bounded: a daemon that survives even SIGKILL is left behind with a
    /// message rather than hanging the caller.
    pub(crate) fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        if !exited_without_reaping(pid) {
            if let Ok(p) = libc::pid_t::try_from(pid) {
                // SAFETY: signals our own unreaped child.
                unsafe {
                    libc::kill(p, libc::SIGTERM);
                }
            }
            wait_exit(pid, Duration::from_secs(5));
        }
        // Still unreaped, so the group id is still ours: sweep consumerd & co.
        kill_group(pid);
        if wait_exit(pid, Duration::from_secs(5)) {
            let _ = child.wait();
        } else {
            eprintln!("faultline-lttng: lttng-sessiond (pid {pid}) did not exit after SIGKILL");
        }
    }
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills() {
        let start = Instant::now();
        let r = run_command(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(200),
            "sleeper",
            capture,
        );
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn captures_output() {
        let out = run_checked(
            Command::new("sh").args(["-c", "echo hi; echo err >&2"]),
            Duration::from_secs(10),
            "echo",
        )
        .unwrap();
        assert_eq!(out, "hi\n");
        assert!(run_checked(&mut Command::new("false"), Duration::from_secs(10), "false").is_err());
        assert!(run_checked(
            &mut Command::new("/nonexistent/binary"),
            Duration::from_secs(10),
            "missing"
        )
        .is_err());
    }

    #[test]
    fn tempdir_removed() {
        let d = TempDir::new("faultline-lttng-test-").unwrap();
        let p = d.path().to_path_buf();
        fs::write(p.join("f"), b"x").unwrap();
        assert!(p.is_dir());
        drop(d);
        assert!(!p.exists());
    }
}
