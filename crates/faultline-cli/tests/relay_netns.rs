//! Several machines streaming to one `lttng-relayd`, simulated with network namespaces: one
//! namespace runs the relay, each other one a traced program under `faultline record --relay`
//! with its own host name (UTS namespace), linked to the relay's namespace by a veth pair.
//! Every host's trace arrives complete under its own name. A slow link — a rate limit (`tc`
//! `netem` where the kernel has it, else `tbf`) plus delay (`netem`, else a delaying TCP
//! proxy inside the host's namespace, [`DelayProxy`]) — leaves the traced program's event
//! cost alone; what the relay did not get is counted.
//!
//! Needs root (namespaces, links); skips with a message when they cannot be created. The
//! namespaces and links are removed on exit, also when an assertion fails.

#[path = "../../faultline-relay/tests/relayd/mod.rs"]
mod relayd;

use faultline_ctf::{stats, Trace};
use relayd::{run_bounded, Relayd};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tmp(name: &str) -> faultline_testkit::TmpDir {
    faultline_testkit::TmpDir::new(&format!("netns-{name}"))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A relay namespace and `n` host namespaces, each host linked to the relay by a veth pair on
/// its own /24 (relay side `10.N.i.1`, host side `10.N.i.2`). Dropping removes them all.
struct Net {
    relay_ns: String,
    hosts: Vec<String>,
    net: u8,
}

impl Net {
    fn create(tag: &str, n: usize) -> Result<Net, String> {
        let id = std::process::id() % 10000;
        let mut net = Net {
            relay_ns: format!("flr{tag}{id}r"),
            hosts: Vec::new(),
            net: 100 + (id % 100) as u8,
        };
        ip(&["netns", "add", &net.relay_ns])?;
        ip(&["-n", &net.relay_ns, "link", "set", "lo", "up"])?;
        for i in 0..n {
            let ns = format!("flr{tag}{id}h{i}");
            ip(&["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            let (a, b) = (format!("fr{tag}{id}a{i}"), format!("fr{tag}{id}b{i}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &net.relay_ns])?;
            ip(&["link", "set", &b, "netns", &ns])?;
            let (ra, ha) = (
                format!("10.{}.{i}.1/24", net.net),
                format!("10.{}.{i}.2/24", net.net),
            );
            ip(&["-n", &net.relay_ns, "addr", "add", &ra, "dev", &a])?;
            ip(&["-n", &net.relay_ns, "link", "set", &a, "up"])?;
            ip(&["-n", &ns, "addr", "add", &ha, "dev", &b])?;
            ip(&["-n", &ns, "link", "set", &b, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The relay address as host `i` sees it.
    fn relay_addr(&self, i: usize) -> String {
        format!("10.{}.{i}.1", self.net)
    }

    /// The host-side interface of host `i`.
    fn host_dev(&self, i: usize) -> String {
        format!("fr{}b{i}", &self.relay_ns[3..self.relay_ns.len() - 1])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it (and so their peers).
        for ns in self.hosts.iter().chain(std::iter::once(&self.relay_ns)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A TCP proxy that adds `delay` to every byte in each direction: a link delay where the kernel
/// has no `netem`. It listens on 127.0.0.1 of network namespace `ns` (its accepting thread
/// enters the namespace with `setns`; the sockets it makes there stay there) and forwards each
/// connection to `target`. Each direction is a reader thread stamping chunks with their due
/// time and a writer thread sending them when due, through a queue of 4 chunks of at most
/// 16 KiB: about the bandwidth-delay product of the shaped link, so the proxy holds back the
/// sender as the link would (it does not hide the link's slowness behind a big buffer).
/// Stops with the test: dropping it stops accepting; forwarding ends when either side closes.
struct DelayProxy {
    /// The listening port of each target, in the targets' order.
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    /// Bytes forwarded (both directions, all connections).
    bytes: Arc<AtomicU64>,
}

impl DelayProxy {
    fn start(ns: &str, targets: &[(String, u16)], delay: Duration) -> Result<DelayProxy, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, (host, port)) in targets.iter().enumerate() {
            let (ns, target) = (ns.to_string(), format!("{host}:{port}"));
            let (stop, bytes, tx) = (stop.clone(), bytes.clone(), tx.clone());
            std::thread::spawn(move || {
                let l = match enter_netns(&ns).and_then(|_| {
                    TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))
                }) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send((i, Err(e)));
                        return;
                    }
                };
                let _ = l.set_nonblocking(true);
                let _ = tx.send((i, Ok(l.local_addr().map(|a| a.port()).unwrap_or(0))));
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            // Connected from this thread: in the namespace.
                            let server = match TcpStream::connect(&target) {
                                Ok(s) => s,
                                Err(e) => {
                                    eprintln!("delay proxy: cannot connect to {target}: {e}");
                                    continue;
                                }
                            };
                            for (from, to) in [(&client, &server), (&server, &client)] {
                                if let (Ok(a), Ok(b)) = (from.try_clone(), to.try_clone()) {
                                    forward(a, b, delay, bytes.clone());
                                }
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        // The listeners come up in any order: each port goes to its target's index (taken in
        // arrival order, the control and data ports were swapped whenever the data listener
        // won the race, and the relay closed both connections on the first command).
        let mut ports = vec![0u16; targets.len()];
        for _ in targets {
            let (i, port) = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            ports[i] = port?;
        }
        Ok(DelayProxy { ports, stop, bytes })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Move this thread into network namespace `ns` (as `ip netns exec` does for a process).
fn enter_netns(ns: &str) -> Result<(), String> {
    let f =
        std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on a valid namespace descriptor; it affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// One direction of [`DelayProxy`].
fn forward(mut from: TcpStream, to: TcpStream, delay: Duration, bytes: Arc<AtomicU64>) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("delay proxy: read: {e}");
                    break;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    std::thread::spawn(move || deliver(rx, to, bytes));
}

fn deliver(rx: Receiver<(Instant, Vec<u8>)>, mut to: TcpStream, bytes: Arc<AtomicU64>) {
    while let Ok((due, chunk)) = rx.recv() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if to.write_all(&chunk).is_err() {
            break;
        }
        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn setup(tag: &str, n: usize) -> Option<Net> {
    if !relayd::available() {
        eprintln!("skipped: lttng-relayd is not installed (scripts/install-deps.sh)");
        return None;
    }
    match Net::create(tag, n) {
        Ok(net) => Some(net),
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces (needs root): {e}");
            None
        }
    }
}

/// `faultline record RECORD_ARGS` inside `ns` under host name `host`, streaming to `url` and
/// writing `local`; returns (exit code, JSON report, stderr).
fn record_in(
    ns: &str,
    host: &str,
    url: &str,
    local: &Path,
    record_args: &[&str],
    app: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "unshare", "--uts", "sh", "-c"])
        .arg(format!("hostname {host} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "record",
            "--json",
            "--relay",
            url,
            "--relay-session",
            "fleet",
        ])
        .args(record_args)
        .arg("-o")
        .arg(local)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_faultline-testapp"))
        .args(app);
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(120)).expect("record");
    (
        code,
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        err,
    )
}

fn events(dir: &Path) -> (u64, u64) {
    let t = Trace::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let s = stats(&t).unwrap();
    (s.events_total, s.lost_total)
}

fn log_lines(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count() as u64)
        .unwrap_or(0)
}

#[test]
fn three_hosts_stream_to_one_relay() {
    let Some(net) = setup("m", 3) else { return };
    let base = tmp("fleet");
    let relay = Relayd::start_with(&base, "0.0.0.0", Some(&net.relay_ns));
    let hs: Vec<_> = (0..3)
        .map(|i| {
            let ns = net.hosts[i].clone();
            let url = format!(
                "net://{}:{}:{}",
                net.relay_addr(i),
                relay.control,
                relay.data
            );
            let local = base.join(format!("local-{i}"));
            let log = base.join(format!("log-{i}"));
            std::thread::spawn(move || {
                let n = (1 + i as u64) * 10000;
                let r = record_in(
                    &ns,
                    &format!("host-{i}"),
                    &url,
                    &local,
                    &[],
                    &[
                        "--log",
                        log.to_str().unwrap(),
                        "--threads",
                        "2",
                        "--events",
                        &n.to_string(),
                    ],
                );
                (r, local, log, n)
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        let ((code, rep, err), local, log, n) = h.join().unwrap();
        assert_eq!(code, Some(0), "host {i}: {err}");
        let r = &rep["summary"]["relay"];
        assert_eq!(r["hostname"], format!("host-{i}"), "{rep}");
        assert_eq!(r["events_sent"], 2 * n, "{rep}");
        assert_eq!(r["events_confirmed"], 2 * n, "{rep}");
        assert_eq!(r["error"], serde_json::Value::Null, "{rep}");
        assert_eq!(log_lines(&log), 2 * n);
        assert_eq!(events(&local).0, 2 * n);
    }
    // One directory per host, each a complete trace.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let traces = relay.traces();
        let done = traces.len() == 3
            && (0..3).all(|i| {
                traces.iter().any(|t| {
                    t.to_string_lossy().contains(&format!("/host-{i}/fleet-"))
                        && Trace::open(t)
                            .ok()
                            .and_then(|tr| stats(&tr).ok())
                            .is_some_and(|s| s.events_total == 2 * (1 + i as u64) * 10000)
                })
            });
        if done {
            break;
        }
        assert!(Instant::now() < until, "relay traces: {traces:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(relay);
}

#[test]
fn slow_link_keeps_event_cost_and_counts_losses() {
    let Some(net) = setup("s", 1) else { return };
    let base = tmp("slow");
    let relay = Relayd::start_with(&base, "0.0.0.0", Some(&net.relay_ns));
    let url = format!(
        "net://{}:{}:{}",
        net.relay_addr(0),
        relay.control,
        relay.data
    );
    let app = |log: &Path| -> Vec<String> {
        [
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--events",
            "300000",
            "--print-cost",
            "--no-log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cost = |err: &str| -> f64 {
        err.lines()
            .find_map(|l| l.strip_prefix("testapp: cost "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no cost line: {err}"))
    };
    // 64 sub-buffers of 1 MiB per CPU hold the whole trace (~30 MB) even on one CPU, so it is
    // written complete even when the consumer gets no CPU until the program ends (a loaded
    // machine).
    // With the default 8, a starved consumer kept only 8 MiB, which the socket buffers and the
    // link took within the relay's finish timeout: nothing was left unsent to count.
    let ring = ["--subbufs", "64"];
    // Same workload over the fast link first.
    let log = base.join("log-fast");
    let a: Vec<String> = app(&log);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, fast, err) = record_in(&net.hosts[0], "fast", &url, &base.join("fast"), &ring, &a);
    assert_eq!(code, Some(0), "{err}");
    let fast_cost = cost(&err);
    // Then slow the link down: 4 Mbit/s and 50 ms each way — netem where the kernel has it,
    // else a tbf rate limit on the link and the delaying proxy in the host's namespace.
    let dev = net.host_dev(0);
    let tc = |args: &[&str]| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.hosts[0],
                "tc",
                "qdisc",
                "add",
                "dev",
                &dev,
                "root",
            ])
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut proxy = None;
    let (shaping, slow_url) = if tc(&["netem", "delay", "50ms", "rate", "4mbit"]) {
        ("netem delay 50ms rate 4mbit".to_string(), url.clone())
    } else {
        if !tc(&[
            "tbf", "rate", "4mbit", "burst", "32kbit", "latency", "400ms",
        ]) {
            eprintln!("skipped the slow part: neither netem nor tbf can shape the link");
            return;
        }
        let p = DelayProxy::start(
            &net.hosts[0],
            &[
                (net.relay_addr(0), relay.control),
                (net.relay_addr(0), relay.data),
            ],
            Duration::from_millis(50),
        )
        .expect("delay proxy in the host namespace");
        let u = format!("net://127.0.0.1:{}:{}", p.ports[0], p.ports[1]);
        proxy = Some(p);
        (
            "tbf rate 4mbit + 50 ms each way through a delaying proxy (no netem here)".to_string(),
            u,
        )
    };
    let log = base.join("log-slow");
    let a: Vec<String> = app(&log);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let (code, slow, err) = record_in(
        &net.hosts[0],
        "slow",
        &slow_url,
        &base.join("slow"),
        &ring,
        &a,
    );
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("recording locally only"),
        "the relay took the connection through the slow link: {err}"
    );
    let slow_cost = cost(&err);
    let r = &slow["summary"]["relay"];
    assert!(r.is_object(), "no relay report: {err}");
    let written = slow["summary"]["events_written"].as_u64().unwrap();
    let (local_events, local_lost) = events(&base.join("slow"));
    assert_eq!(local_events, written);
    assert_eq!(
        local_events + local_lost,
        600_000,
        "the local copy has every event the ring buffer kept, and counts the others"
    );
    let sent = r["events_sent"].as_u64().unwrap();
    let unsent = r["events_dropped"].as_u64().unwrap() + r["events_lost"].as_u64().unwrap();
    assert_eq!(sent + unsent, written, "every event accounted for: {r}");
    let confirmed = r["events_confirmed"].as_u64().unwrap();
    assert!(confirmed <= sent, "{r}");
    assert!(
        unsent > 0,
        "a 4 Mbit/s link cannot carry this trace in time: {r}"
    );
    // Bounded: the program's run plus the relay's finish timeout.
    assert!(took < Duration::from_secs(90), "{took:?}");
    if let Some(p) = &proxy {
        assert!(
            p.bytes.load(Ordering::Relaxed) > 0,
            "the trace went through the delay"
        );
    }
    // The writers never wait for the network: had they waited, 600,000 events (~30 MB of
    // trace) through 4 Mbit/s would cost each about 100 us. The bound is far above this
    // machine's noise (two writers and the consumer share two loaded vCPUs, so the cost varies
    // several-fold between runs) and far below what a link-bound writer would pay.
    assert!(
        slow_cost < (10.0 * fast_cost).max(20_000.0),
        "event cost {slow_cost:.1} ns on the slow link vs {fast_cost:.1} ns on the fast one"
    );
    eprintln!(
        "slow link ({shaping}): event cost {slow_cost:.1} ns vs {fast_cost:.1} ns on the fast \
         link; relay got {sent} of {written} events ({confirmed} confirmed written, {} \
         dropped: queue full, {} lost: connection ended); fast run relay: {}",
        r["events_dropped"], r["events_lost"], fast["summary"]["relay"]["events_sent"]
    );
    drop(relay);
}
