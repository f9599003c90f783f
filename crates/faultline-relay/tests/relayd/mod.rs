//! Test harness: a real `lttng-relayd` on loopback (or a given address) with ephemeral ports,
//! killed on drop. Shared by this crate's tests and the command line's (`#[path]` include).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running relay.
pub struct Relayd {
    pub child: Child,
    pub host: String,
    pub control: u16,
    pub data: u16,
    pub live: u16,
    pub out: PathBuf,
    pub home: PathBuf,
}

/// Whether `lttng-relayd` is installed (tests skip with a message otherwise).
pub fn available() -> bool {
    Command::new("lttng-relayd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Three free TCP ports on `host` (bound then released; the relay binds them right after).
pub fn free_ports(host: &str) -> [u16; 3] {
    let ls: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind((host, 0)).expect("bind an ephemeral port"))
        .collect();
    let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    [p[0], p[1], p[2]]
}

fn wait_port(host: &str, port: u16, until: Instant) -> bool {
    while Instant::now() < until {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Relayd {
    /// Start a relay on 127.0.0.1 writing under `base/relay-out`.
    pub fn start(base: &Path) -> Relayd {
        Relayd::start_with(base, "127.0.0.1", None)
    }

    /// Start a relay on `host`; with `netns`, inside that network namespace.
    pub fn start_with(base: &Path, host: &str, netns: Option<&str>) -> Relayd {
        let out = base.join("relay-out");
        let home = base.join("relay-home");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        for attempt in 0..5 {
            let [c, d, l] = if netns.is_some() {
                [
                    15342 + attempt * 10,
                    15343 + attempt * 10,
                    15344 + attempt * 10,
                ]
            } else {
                free_ports(host)
            };
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "lttng-relayd"]);
                    c
                }
                None => Command::new("lttng-relayd"),
            };
            // LTTng's URLs: an IPv6 address in brackets after tcp6://.
            let at = |p: u16| {
                if host.contains(':') {
                    format!("tcp6://[{host}]:{p}")
                } else {
                    format!("tcp://{host}:{p}")
                }
            };
            cmd.arg("-C")
                .arg(at(c))
                .arg("-D")
                .arg(at(d))
                .arg("-L")
                .arg(at(l))
                .arg("-o")
                .arg(&out)
                .env("LTTNG_HOME", &home)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Debugging a test: FAULTLINE_TEST_RELAYD_LOG=FILE keeps the relay's verbose log.
            if let Some(f) = std::env::var_os("FAULTLINE_TEST_RELAYD_LOG")
                .and_then(|p| std::fs::File::create(p).ok())
            {
                cmd.arg("-vvv").stderr(f);
            }
            let mut child = cmd.spawn().expect("spawn lttng-relayd");
            let until = Instant::now() + Duration::from_secs(10);
            let up = if let Some(ns) = netns {
                // Ports inside the namespace are not reachable from here: wait for the process
                // to bind them (ss in the namespace).
                let mut ok = false;
                while Instant::now() < until {
                    let o = Command::new("ip")
                        .args(["netns", "exec", ns, "ss", "-ltn"])
                        .output();
                    if let Ok(o) = o {
                        let s = String::from_utf8_lossy(&o.stdout);
                        if [c, d, l].iter().all(|p| s.contains(&format!(":{p} "))) {
                            ok = true;
                            break;
                        }
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                ok
            } else {
                wait_port(host, c, until) && wait_port(host, d, until) && wait_port(host, l, until)
            };
            if up {
                return Relayd {
                    child,
                    host: host.to_string(),
                    control: c,
                    data: d,
                    live: l,
                    out,
                    home,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("lttng-relayd did not start");
    }

    /// `net://HOST:CTRL:DATA` for `--relay` (`net6://[ADDR]:CTRL:DATA` for IPv6).
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("net6://[{}]:{}:{}", self.host, self.control, self.data)
        } else {
            format!("net://{}:{}:{}", self.host, self.control, self.data)
        }
    }

    /// `net://HOST:LIVE/host/HOSTNAME/SESSION` for babeltrace2's lttng-live input.
    pub fn live_url(&self, hostname: &str, session: &str) -> String {
        format!(
            "net://{}:{}/host/{hostname}/{session}",
            self.host, self.live
        )
    }

    /// Kill the relay now (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The trace directories under the relay's output (directories holding `metadata`).
    pub fn traces(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.out.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "metadata") {
                    out.push(d.clone());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Relayd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run a command with a time bound (killed past it); returns (exit code, stdout, stderr).
pub fn run_bounded(
    mut cmd: Command,
    limit: Duration,
) -> Result<(Option<i32>, String, String), String> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(o)) => Ok((
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            // SAFETY: kill(2) of the child we spawned (not reaped yet: its waiter is blocked).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(format!("{cmd:?} timed out"))
        }
    }
}

/// Run babeltrace2 on a directory, bounded; returns stdout lines.
pub fn babeltrace(dir: &Path) -> Result<Vec<String>, String> {
    let mut cmd = Command::new("babeltrace2");
    cmd.arg(dir);
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(60))?;
    if code != Some(0) {
        return Err(format!("babeltrace2 failed: {err}"));
    }
    Ok(out.lines().map(String::from).collect())
}
