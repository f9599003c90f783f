//! The smallest traced program: one tracepoint, an embedded session, three events.
//!
//! `cargo run --release -p faultline --example hello -- [DIR]` writes the trace to DIR
//! (default `./faultline-hello-<pid>`); `faultline view DIR` or `babeltrace2 DIR` reads it.
//! Run as `faultline record -o DIR -- target/release/examples/hello`, the same program is
//! recorded by `faultline record` instead.

use faultline::{trace, tracepoint, Session};

tracepoint!(
    /// A greeting: its number and whom it greets.
    pub HELLO_GREET, "hello", "greet", { n: u64, who: &str }
);

fn main() {
    let mut session = Session::builder();
    if let Some(dir) = std::env::args_os().nth(1) {
        session = session.output_dir(dir);
    } else {
        session = session.output_dir(format!("faultline-hello-{}", std::process::id()));
    }
    let session = match session.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::exit(1);
        }
    };
    for n in 0..3 {
        trace!(HELLO_GREET, n, "world");
    }
    match session.stop() {
        Ok(summary) => summary.print(),
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::exit(1);
        }
    }
}
