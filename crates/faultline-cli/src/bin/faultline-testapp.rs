//! A small traced program for the tests of `faultline record`.
//!
//! `faultline-testapp --log FILE [--threads N] [--events N] [--pad BYTES] [--spin N]
//! [--pidfile FILE] [--cpu N] [--log-lost]`
//!
//! Starts a `faultline::Session` (attached when run by `faultline record`), then N threads each
//! emit `testapp:seq { thread, seq, pad }` events with consecutive sequence numbers from 0.
//! Only after an event is **committed** (the recorder says so) does the thread append the line
//! `<thread> <seq>` to FILE with one `write` on an `O_APPEND` descriptor, so the log survives a
//! `SIGKILL` and lists exactly events that must be in the trace. `--events 0` runs until killed.
//! `--spin N` busy-waits N iterations while encoding each payload, i.e. between reserve and
//! commit, so a kill often lands inside a reservation.
//! `--cpu N` pins every writer thread to CPU N (overload: many writers, one buffer).
//! `--log-lost` also logs `<thread> <seq> L` for each event the recorder did **not** record
//! (counted as lost by the ring buffer), so that every sequence number a writer finished is
//! in the log: committed (and in the trace, unless its packet was overwritten) or lost.

use faultline::Session;
use faultline_tracepoints::{tracepoint, Payload, WriteOutcome};
use std::io::Write;
use std::sync::Arc;

tracepoint!(pub TESTAPP_SEQ, "testapp", "seq", { thread: u32, seq: u64, pad: &[u8] });

/// The payload of `testapp:seq`, encoded by hand (so the app knows whether it was committed).
struct SeqPayload<'a> {
    thread: u32,
    seq: u64,
    pad: &'a [u8],
    spin: u64,
}

impl Payload for SeqPayload<'_> {
    fn size(&self) -> usize {
        4 + 8 + 4 + self.pad.len()
    }
    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        let n = self.size();
        if dst.len() < n {
            dst.fill(0);
            return WriteOutcome {
                written: 0,
                faulted: 0,
                truncated: true,
            };
        }
        for _ in 0..self.spin {
            std::hint::spin_loop();
        }
        dst[..4].copy_from_slice(&self.thread.to_le_bytes());
        dst[4..12].copy_from_slice(&self.seq.to_le_bytes());
        dst[12..16].copy_from_slice(&(self.pad.len() as u32).to_le_bytes());
        dst[16..n].copy_from_slice(self.pad);
        dst[n..].fill(0);
        WriteOutcome {
            written: n,
            faulted: 0,
            truncated: false,
        }
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(log) = args
        .iter()
        .position(|a| a == "--log")
        .and_then(|i| args.get(i + 1))
    else {
        eprintln!("usage: faultline-testapp --log FILE [--threads N] [--events N] [--pad BYTES] [--spin N]");
        std::process::exit(2);
    };
    let threads = arg(&args, "--threads", 4) as u32;
    let events = arg(&args, "--events", 0);
    let pad = arg(&args, "--pad", 24) as usize;
    let spin = arg(&args, "--spin", 0);
    let pin: Option<u32> = args
        .iter()
        .position(|a| a == "--cpu")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let log_lost = args.iter().any(|a| a == "--log-lost");
    let log = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| {
                eprintln!("faultline-testapp: {log}: {e}");
                std::process::exit(2)
            }),
    );
    if let Some(pf) = args
        .iter()
        .position(|a| a == "--pidfile")
        .and_then(|i| args.get(i + 1))
    {
        let _ = std::fs::write(pf, std::process::id().to_string());
    }
    let session = match Session::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faultline-testapp: {e}");
            std::process::exit(2);
        }
    };
    let Some(rec) = session.recorder().cloned() else {
        std::process::exit(2);
    };
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let rec = rec.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = pin {
                    if let Err(e) = faultline_rseq::pin_to_cpu(cpu) {
                        eprintln!("faultline-testapp: cannot pin to cpu {cpu}: {e}");
                        std::process::exit(2);
                    }
                }
                let padding: Vec<u8> = (0..pad).map(|i| (i as u8) ^ (t as u8)).collect();
                let id = TESTAPP_SEQ.id();
                let strategy = rec.strategy_for(&TESTAPP_SEQ);
                let mut seq = 0u64;
                while events == 0 || seq < events {
                    let p = SeqPayload {
                        thread: t,
                        seq,
                        pad: &padding,
                        spin,
                    };
                    if TESTAPP_SEQ.is_active() {
                        let line = match rec.record(id, strategy, &p) {
                            Ok(_) => format!("{t} {seq}\n"),
                            Err(_) if log_lost => format!("{t} {seq} L\n"),
                            Err(_) => String::new(),
                        };
                        // One write on an O_APPEND descriptor: atomic, in the page cache at once.
                        if !line.is_empty() {
                            let _ = (&*log).write_all(line.as_bytes());
                        }
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    match session.stop() {
        Ok(s) if !s.attached => s.print(),
        Ok(_) => {}
        Err(e) => eprintln!("faultline-testapp: {e}"),
    }
}
