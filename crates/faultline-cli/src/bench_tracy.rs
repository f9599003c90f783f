//! `faultline bench` rows for Tracy's client (the `tracy-client` crate and the C++ client it
//! bundles), with a capture connected, in the same run as faultline's rows.
//!
//! # Why a separate process
//! Tracy's C++ client initialises its allocator in a static constructor of every program
//! that links it, used or not: linked into `faultline` it cost every `faultline record` about
//! a tenth of its CPU time. So only the small binary `faultline-bench-tracy`
//! (src/bin/faultline-bench-tracy.rs, built with this package, found next to `faultline`)
//! links it; it runs the timed loops when this side asks ([`loop_command`]) and answers with
//! the loop's ns per event. Everything else (the reader, the byte counts, the medians) is
//! here.
//!
//! # Why a reader
//! Tracy's client queues events only for a connected server (in on-demand builds it drops
//! them while none is connected; in the default build used here it keeps them until one
//! connects), so timing it with nobody connected measures the wrong thing. The benchmark
//! connects its own reader on loopback.
//!
//! # What the reader does, exactly
//! 1. Before the client starts, the harness picks a free loopback port (binds port 0 and
//!    closes it) and starts the client process with it in `TRACY_PORT`, which the client
//!    reads when it starts (`tracy_client::Client::start`, the crate's `manual-lifetime`
//!    feature: nothing runs until then). The client listens on that port only
//!    (`only-localhost`, `only-ipv4`; no UDP broadcast, no sampling, no system or
//!    context-switch tracing, no crash handler).
//! 2. It connects and sends the handshake a Tracy server sends: the 8 bytes `TracyPrf`, then
//!    the protocol version of the bundled client ([`PROTOCOL_VERSION`], little-endian `u32`).
//! 3. It reads the one-byte handshake status (1 = welcome; 2 = protocol mismatch, reported as
//!    such) and the fixed-size welcome message ([`WELCOME_SIZE`] bytes, packed), and checks
//!    that the welcome's `pid` field is the client process (it is not some other program's
//!    client).
//! 4. From then on the client streams LZ4-compressed frames, each a little-endian `u32`
//!    length followed by that many bytes. The reader reads every frame (a length above the
//!    client's bound, [`MAX_FRAME`], is an error), counts frames and bytes, and discards
//!    them: it does not decompress them and it sends no queries (so the client never sends
//!    the strings it sends on request, such as thread and plot names; the per-event data
//!    does not depend on them).
//! 5. Before and after each measured loop the harness waits until a window of [`IDLE`]
//!    brings fewer than [`IDLE_BYTES`] (an idle client still sends a small CPU-usage report
//!    every 100 ms), so each loop's events are fully sent: bytes received in between /
//!    events = compressed bytes per event on the wire (the idle reports add well under 1 %).
//! 6. At the end the reader closes the connection and the client process's standard input;
//!    it exits (killed after 5 s if not) without shutting the profiler down (the crate asks
//!    for that on the starting thread with no Tracy call in flight).
//!
//! # What is timed
//! One pinned thread of the client process, the same loop shape as faultline's rows:
//! * `int`: `Client::plot(name, i as f64)`: a timestamped value, Tracy's closest equivalent
//!   of one integer field (the client has no integer event without formatting);
//! * `string`: `Client::message(MSG, 0)`: a timestamped 32-byte message, no call stack (the
//!   client copies the text into a heap allocation and queues a pointer to it).
//!
//! Tracy's queue is unbounded: the client drops nothing, so no loss is counted.

use crate::harness::median_spread;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `ProtocolVersion` of the client bundled with `tracy-client-sys` 0.30 (Tracy 0.12).
pub const PROTOCOL_VERSION: u32 = 82;
/// `sizeof(WelcomeMessage)` of that protocol (packed): eight 8-byte fields, flags, cpu
/// architecture, 12-byte manufacturer, 4-byte cpu id, 64-byte program name, 1024-byte host
/// information.
pub const WELCOME_SIZE: usize = 8 * 8 + 1 + 1 + 12 + 4 + 64 + 1024;
/// Offset of the `pid` field in the welcome message.
const WELCOME_PID: usize = 48;
/// Largest compressed frame the client sends: LZ4's bound for its 256 KiB frames.
pub const MAX_FRAME: usize = 256 * 1024 + 256 * 1024 / 255 + 16;
/// The client's queue is taken to be drained when a window of `IDLE` brings fewer than
/// [`IDLE_BYTES`]: an idle client still sends a small CPU-usage report every 100 ms (and a
/// keep-alive after 5 s).
pub const IDLE: Duration = Duration::from_millis(250);
/// See [`IDLE`].
pub const IDLE_BYTES: u64 = 2048;

/// Counters the reader thread updates.
#[derive(Default)]
struct Wire {
    bytes: AtomicU64,
    frames: AtomicU64,
}

/// A started Tracy client with the reader connected.
pub struct TracySide {
    /// The process that links Tracy's client (`faultline-bench-tracy`), its standard input and
    /// output (the loop commands and their answers).
    child: Option<Child>,
    to_client: Option<ChildStdin>,
    from_client: BufReader<ChildStdout>,
    wire: Arc<Wire>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Per round ns/event, and bytes/event, per event kind (0 int, 1 string).
    ns: [Vec<f64>; 2],
    bytes: [Vec<f64>; 2],
    events: [u64; 2],
}

/// The medians, for the report.
#[derive(Debug, Clone, Default)]
pub struct TracyNumbers {
    pub int_ns: (f64, f64, f64),
    pub string_ns: (f64, f64, f64),
    pub int_bytes: Option<f64>,
    pub string_bytes: Option<f64>,
    pub events: [u64; 2],
    pub frames: u64,
}

fn invariant_tsc() -> bool {
    // Tracy's client aborts the process at start-up without an invariant TSC (unless built
    // with a fallback timer); Linux shows it as `nonstop_tsc`.
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "nonstop_tsc"))
        })
        .unwrap_or(false)
}

fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        if Instant::now() > deadline {
            return Err("Tracy client: handshake timed out".into());
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err("Tracy client closed the connection during the handshake".into()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("Tracy client: {e}")),
        }
    }
    Ok(())
}

/// Connect to the client of process `pid` on `port` and do the handshake; the stream is
/// positioned at the first frame.
fn connect(port: u16, pid: u32) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "cannot connect to Tracy's client on 127.0.0.1:{port}: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut hello = Vec::with_capacity(12);
    hello.extend_from_slice(b"TracyPrf");
    hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    s.write_all(&hello)
        .map_err(|e| format!("Tracy handshake: {e}"))?;
    let mut status = [0u8; 1];
    read_exact_by(&mut s, &mut status, deadline)?;
    match status[0] {
        1 => {}
        2 => {
            return Err(format!(
                "Tracy client refused protocol version {PROTOCOL_VERSION} (protocol mismatch: \
                 the bundled client is another version)"
            ))
        }
        3 => return Err("Tracy client: not available (another reader was connected)".into()),
        other => return Err(format!("Tracy client: handshake status {other}")),
    }
    let mut welcome = vec![0u8; WELCOME_SIZE];
    read_exact_by(&mut s, &mut welcome, deadline)?;
    let theirs = u64::from_le_bytes(
        welcome[WELCOME_PID..WELCOME_PID + 8]
            .try_into()
            .expect("8 bytes"),
    );
    if theirs != u64::from(pid) {
        return Err(format!(
            "the Tracy client on port {port} belongs to pid {theirs}, not to the client \
             process {pid}"
        ));
    }
    Ok(s)
}

/// The reader loop: frames until `stop` or the connection ends.
fn read_frames(mut s: TcpStream, wire: &Wire, stop: &AtomicBool) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_FRAME];
    // Bytes of the current frame (4-byte length, then the body) read so far.
    let mut head = [0u8; 4];
    let mut have = 0usize;
    let mut body: Option<usize> = None;
    loop {
        // Acquire: pairs with `finish`'s release store.
        if stop.load(Ordering::Acquire) {
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
        let r = match body {
            None => s.read(&mut head[have..]),
            Some(len) => s.read(&mut buf[have..len]),
        };
        match r {
            Ok(0) => return Ok(()),
            Ok(n) => {
                have += n;
                match body {
                    None if have == 4 => {
                        let len = u32::from_le_bytes(head) as usize;
                        if len == 0 || len > MAX_FRAME {
                            return Err(format!("Tracy frame length {len} out of bounds"));
                        }
                        body = Some(len);
                        have = 0;
                    }
                    Some(len) if have == len => {
                        wire.bytes.fetch_add(4 + len as u64, Ordering::Relaxed);
                        wire.frames.fetch_add(1, Ordering::Relaxed);
                        body = None;
                        have = 0;
                    }
                    _ => {}
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("Tracy reader: {e}")),
        }
    }
}

/// What the client process is told per loop, one line on its standard input:
/// `KIND WARMUP ITERS` (KIND 0 = int, 1 = string); it answers one line on its standard output:
/// `ns NS_PER_EVENT`, or `err MESSAGE`.
pub fn loop_command(kind: usize, warmup: u64, iters: u64) -> String {
    format!("{kind} {warmup} {iters}\n")
}

/// The client process's side of [`loop_command`]: the parsed request, or an error line.
pub fn parse_loop_command(line: &str) -> Result<(usize, u64, u64), String> {
    let mut it = line.split_whitespace();
    let mut num = |what: &str| -> Result<u64, String> {
        it.next()
            .ok_or_else(|| format!("missing {what} in {line:?}"))?
            .parse::<u64>()
            .map_err(|e| format!("bad {what} in {line:?}: {e}"))
    };
    let kind = num("kind")?;
    let (warmup, iters) = (num("warmup")?, num("iters")?);
    if kind > 1 {
        return Err(format!("unknown loop kind {kind}"));
    }
    Ok((kind as usize, warmup, iters))
}

/// The client process: `faultline-bench-tracy` next to this executable.
fn client_program() -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    let dir = exe.parent().unwrap_or(std::path::Path::new("."));
    [
        dir.join(CLIENT_PROGRAM),
        dir.join("..").join(CLIENT_PROGRAM),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        format!(
            "{CLIENT_PROGRAM} not found next to {} (`cargo build --release -p faultline-cli` \
             builds it; `cargo run` builds only the binary it runs)",
            exe.display()
        )
    })
}

/// The binary that links Tracy's client (src/bin/faultline-bench-tracy.rs).
pub const CLIENT_PROGRAM: &str = "faultline-bench-tracy";

impl TracySide {
    /// Start the client process and connect the reader.
    pub fn start() -> Result<TracySide, String> {
        if !cfg!(target_arch = "x86_64") || !invariant_tsc() {
            return Err(
                "no invariant TSC (nonstop_tsc): Tracy's client would refuse to start".into(),
            );
        }
        let prog = client_program()?;
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port for Tracy: {e}"))?
            .port();
        let mut child = Command::new(&prog)
            .env("TRACY_PORT", port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the Tracy client process has no pipes".into());
        };
        let s = match connect(port, child.id()) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let wire = Arc::new(Wire::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (w, st) = (wire.clone(), stop.clone());
        let reader = std::thread::Builder::new()
            .name("tracy-reader".into())
            .spawn(move || read_frames(s, &w, &st))
            .map_err(|e| format!("cannot start the Tracy reader: {e}"))?;
        Ok(TracySide {
            child: Some(child),
            to_client: Some(stdin),
            from_client: BufReader::new(stdout),
            wire,
            stop,
            reader: Some(reader),
            ns: [Vec::new(), Vec::new()],
            bytes: [Vec::new(), Vec::new()],
            events: [0, 0],
        })
    }

    /// Wait until a window of [`IDLE`] brings fewer than [`IDLE_BYTES`] (bounded: 60 s);
    /// the bytes received so far.
    fn wait_idle(&self) -> Result<u64, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = self.wire.bytes.load(Ordering::Relaxed);
        loop {
            if self.reader.as_ref().is_none_or(|h| h.is_finished()) {
                return Err("the Tracy reader stopped (connection lost)".into());
            }
            std::thread::sleep(IDLE);
            let now = self.wire.bytes.load(Ordering::Relaxed);
            if now - before < IDLE_BYTES {
                return Ok(now);
            }
            if Instant::now() > deadline {
                return Err("Tracy's client kept sending for 60 s after the loop".into());
            }
            before = now;
        }
    }

    /// One loop in the client process: its ns per event.
    fn run_loop(&mut self, kind: usize, warmup: u64, iters: u64) -> Result<f64, String> {
        let to = self
            .to_client
            .as_mut()
            .ok_or("the Tracy client process is closed")?;
        to.write_all(loop_command(kind, warmup, iters).as_bytes())
            .and_then(|_| to.flush())
            .map_err(|e| format!("Tracy client process: {e}"))?;
        let mut line = String::new();
        match self.from_client.read_line(&mut line) {
            Ok(0) => Err("the Tracy client process exited".into()),
            Ok(_) => match line.trim_end().split_once(' ') {
                Some(("ns", v)) => v
                    .parse::<f64>()
                    .map_err(|e| format!("Tracy client process answered {line:?}: {e}")),
                Some(("err", m)) => Err(format!("Tracy client process: {m}")),
                _ => Err(format!("Tracy client process answered {line:?}")),
            },
            Err(e) => Err(format!("Tracy client process: {e}")),
        }
    }

    /// One round: the int and the string loop, `warmup` + `iters` events each.
    pub fn round(&mut self, warmup: u64, iters: u64) -> Result<(), String> {
        for k in 0..2 {
            let before = self.wait_idle()?;
            let ns = self.run_loop(k, warmup, iters)?;
            let after = self.wait_idle()?;
            let n = warmup + iters;
            self.ns[k].push(ns);
            self.bytes[k].push((after - before) as f64 / n as f64);
            self.events[k] += n;
        }
        Ok(())
    }

    /// Disconnect, end the client process and return the medians. The client process exits
    /// at the end of its standard input without shutting the profiler down (the crate asks
    /// for that on the starting thread with no Tracy call in flight); once disconnected, its
    /// worker thread only polls the listening socket.
    pub fn finish(mut self) -> Result<TracyNumbers, String> {
        let frames = self.wire.frames.load(Ordering::Relaxed);
        // Release: pairs with the reader's acquire load.
        self.stop.store(true, Ordering::Release);
        let read = self
            .reader
            .take()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("Tracy reader panicked".into()))
            })
            .unwrap_or(Ok(()));
        self.end_client();
        read?;
        let med = |v: &[f64]| (!v.is_empty()).then(|| median_spread(v).0);
        Ok(TracyNumbers {
            int_ns: median_spread(&self.ns[0]),
            string_ns: median_spread(&self.ns[1]),
            int_bytes: med(&self.bytes[0]),
            string_bytes: med(&self.bytes[1]),
            events: self.events,
            frames,
        })
    }

    /// Close the client's standard input (it exits), give it 5 s, then kill it.
    fn end_client(&mut self) {
        drop(self.to_client.take());
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TracySide {
    fn drop(&mut self) {
        // Release: pairs with the reader's acquire load, as in finish.
        self.stop.store(true, Ordering::Release);
        self.end_client();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake client on loopback: checks the handshake, answers with `status` and a welcome
    /// naming `pid`, then writes `frames` (raw bytes) and closes.
    fn fake_client(status: u8, pid: u64, frames: Vec<u8>) -> u16 {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut hello = [0u8; 12];
            s.read_exact(&mut hello).unwrap();
            assert_eq!(&hello[..8], b"TracyPrf");
            assert_eq!(
                u32::from_le_bytes(hello[8..].try_into().unwrap()),
                PROTOCOL_VERSION
            );
            s.write_all(&[status]).unwrap();
            if status != 1 {
                return;
            }
            let mut welcome = vec![0u8; WELCOME_SIZE];
            welcome[WELCOME_PID..WELCOME_PID + 8].copy_from_slice(&pid.to_le_bytes());
            s.write_all(&welcome).unwrap();
            // Split writes, so the reader sees partial lengths and bodies.
            for chunk in frames.chunks(3) {
                s.write_all(chunk).unwrap();
                s.flush().unwrap();
            }
        });
        port
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut v = (len as u32).to_le_bytes().to_vec();
        v.extend(std::iter::repeat_n(0xab, len));
        v
    }

    #[test]
    fn handshake_then_frames_are_counted() {
        let mut frames = frame(10);
        frames.extend(frame(1));
        frames.extend(frame(300));
        let port = fake_client(1, u64::from(std::process::id()), frames);
        let s = connect(port, std::process::id()).unwrap();
        let wire = Wire::default();
        read_frames(s, &wire, &AtomicBool::new(false)).unwrap();
        assert_eq!(wire.frames.load(Ordering::Relaxed), 3);
        assert_eq!(wire.bytes.load(Ordering::Relaxed), 3 * 4 + 10 + 1 + 300);
    }

    #[test]
    fn oversized_or_empty_frame_is_an_error() {
        for bad in [MAX_FRAME + 1, 0] {
            let port = fake_client(
                1,
                u64::from(std::process::id()),
                (bad as u32).to_le_bytes().to_vec(),
            );
            let s = connect(port, std::process::id()).unwrap();
            let err = read_frames(s, &Wire::default(), &AtomicBool::new(false)).unwrap_err();
            assert!(err.contains("out of bounds"), "{err}");
        }
    }

    #[test]
    fn protocol_mismatch_and_foreign_pid_are_refused() {
        let port = fake_client(2, 0, Vec::new());
        assert!(connect(port, std::process::id())
            .unwrap_err()
            .contains("protocol mismatch"));
        let port = fake_client(1, u64::from(std::process::id()) + 1, Vec::new());
        assert!(connect(port, std::process::id())
            .unwrap_err()
            .contains("not to the client process"));
    }

    #[test]
    fn loop_commands_round_trip_and_bad_ones_are_refused() {
        assert_eq!(
            parse_loop_command(&loop_command(1, 10, 20)),
            Ok((1, 10, 20))
        );
        assert!(parse_loop_command("2 1 1").unwrap_err().contains("kind"));
        assert!(parse_loop_command("0 1").unwrap_err().contains("iters"));
        assert!(parse_loop_command("0 x 1").unwrap_err().contains("warmup"));
    }

    #[test]
    fn welcome_layout_matches_the_protocol() {
        // timerMul, initBegin, initEnd, resolution, epoch, exectime, then pid.
        assert_eq!(WELCOME_PID, 6 * 8);
        assert_eq!(WELCOME_SIZE, 1170);
    }
}
