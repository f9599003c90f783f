//! Several machines streaming to one `lttng-relayd`, simulated with network namespaces: one
//! namespace runs the relay, each other one a traced program under `faultline record --relay`
//! with its own host name (UTS namespace), linked to the relay's namespace by a veth pair.
//! Every host's trace arrives complete under its own name. A slow link (rate limit, plus
//! delay where the kernel has `netem`) leaves the traced program's event cost alone; what the
//! relay did not get is counted.
//!
//! Needs root (namespaces, links); skips with a message when they cannot be created. The
//! namespaces and links are removed on exit, also when an assertion fails.

#[path = "../../faultline-relay/tests/relayd/mod.rs"]
mod relayd;

use faultline_ctf::{stats, Trace};
use relayd::{run_bounded, Relayd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-netns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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

/// `faultline record` inside `ns` under host name `host`, streaming to `url` and writing
/// `local`; returns (exit code, JSON report, stderr).
fn record_in(
    ns: &str,
    host: &str,
    url: &str,
    local: &Path,
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
            "-o",
        ])
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
    let _ = std::fs::remove_dir_all(&base);
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
    // Same workload over the fast link first.
    let log = base.join("log-fast");
    let a: Vec<String> = app(&log);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, fast, err) = record_in(&net.hosts[0], "fast", &url, &base.join("fast"), &a);
    assert_eq!(code, Some(0), "{err}");
    let fast_cost = cost(&err);
    // Then slow the link down: 4 Mbit/s (and 50 ms each way where netem exists).
    let dev = net.host_dev(0);
    let netem = ip(&[
        "netns",
        "exec",
        &net.hosts[0],
        "tc",
        "qdisc",
        "add",
        "dev",
        &dev,
        "root",
        "netem",
        "delay",
        "50ms",
        "rate",
        "4mbit",
    ]);
    let shaping = match netem {
        Ok(()) => "netem delay 50ms rate 4mbit".to_string(),
        Err(_) => {
            let r = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net.hosts[0],
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    &dev,
                ])
                .args([
                    "root", "tbf", "rate", "4mbit", "burst", "32kbit", "latency", "400ms",
                ])
                .status();
            if !r.map(|s| s.success()).unwrap_or(false) {
                eprintln!("skipped the slow part: neither netem nor tbf can shape the link");
                return;
            }
            "tbf rate 4mbit (no netem in this kernel: no added delay)".to_string()
        }
    };
    let log = base.join("log-slow");
    let a: Vec<String> = app(&log);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let (code, slow, err) = record_in(&net.hosts[0], "slow", &url, &base.join("slow"), &a);
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "{err}");
    let slow_cost = cost(&err);
    let r = &slow["summary"]["relay"];
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
    assert!(
        unsent > 0,
        "a 4 Mbit/s link cannot carry this trace in time: {r}"
    );
    // Bounded: the program's run plus the relay's finish timeout.
    assert!(took < Duration::from_secs(60), "{took:?}");
    eprintln!(
        "slow link ({shaping}): event cost {slow_cost:.1} ns vs {fast_cost:.1} ns on the fast \
         link; relay got {sent} of {written} events ({} dropped: queue full, {} lost: \
         connection ended); fast run relay: {}",
        r["events_dropped"], r["events_lost"], fast["summary"]["relay"]["events_sent"]
    );
    drop(relay);
    let _ = std::fs::remove_dir_all(&base);
}
