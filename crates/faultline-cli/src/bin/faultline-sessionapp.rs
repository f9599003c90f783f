//! A traced program that starts several sessions one after the other, for the tests of
//! `faultline record` (a second `Session::start()` in the same process) and of the builder
//! settings `record` overrides.
//!
//! `faultline-sessionapp --dir BASE [--sessions N] [--events N] [--mode discard|overwrite]
//! [--subbuf-size BYTES] [--subbufs N] [--only GLOB]`
//!
//! Session `i` (from 0) is built with `output_dir("BASE-i")` and the given settings, emits
//! `sessionapp:ev { session: i, seq }` for seq in `0..events`, and stops. For each session the
//! program prints `session i attached=BOOL overridden=N` on stdout. Exit status 1 (with the
//! error on stderr) if a session fails to start or stop.

use faultline::{trace, tracepoint, Mode, Session};

tracepoint!(pub SESSIONAPP_EV, "sessionapp", "ev", { session: u32, seq: u64 });

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number(args: &[String], name: &str, default: u64) -> u64 {
    match value(args, name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("faultline-sessionapp: {name} {v:?} is not a number");
            std::process::exit(2)
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(base) = value(&args, "--dir") else {
        eprintln!("usage: faultline-sessionapp --dir BASE [--sessions N] [--events N] [--mode discard|overwrite] [--subbuf-size BYTES] [--subbufs N] [--only GLOB]");
        std::process::exit(2)
    };
    let sessions = number(&args, "--sessions", 2) as u32;
    let events = number(&args, "--events", 100);
    for i in 0..sessions {
        let mut b = Session::builder().output_dir(format!("{base}-{i}"));
        match value(&args, "--mode") {
            Some("overwrite") => b = b.mode(Mode::Overwrite),
            Some("discard") => b = b.mode(Mode::Discard),
            Some(m) => {
                eprintln!("faultline-sessionapp: unknown mode {m:?}");
                std::process::exit(2)
            }
            None => {}
        }
        if value(&args, "--subbuf-size").is_some() {
            b = b.subbuf_size(number(&args, "--subbuf-size", 0));
        }
        if value(&args, "--subbufs").is_some() {
            b = b.num_subbuf(number(&args, "--subbufs", 0));
        }
        if let Some(g) = value(&args, "--only") {
            b = b.events(g);
        }
        let s = match b.start() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("faultline-sessionapp: session {i}: {e}");
                std::process::exit(1)
            }
        };
        println!(
            "session {i} attached={} overridden={}",
            s.is_attached(),
            s.overridden().len()
        );
        for seq in 0..events {
            trace!(SESSIONAPP_EV, i, seq);
        }
        if let Err(e) = s.stop() {
            eprintln!("faultline-sessionapp: session {i}: {e}");
            std::process::exit(1)
        }
    }
}
