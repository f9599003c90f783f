//! The Tracy side of `faultline bench` (see `faultline_cli::bench_tracy`): the only binary of
//! the workspace that links Tracy's client, whose C++ static constructors would otherwise run
//! at every start of `faultline`.
//!
//! Started by the benchmark with `TRACY_PORT` set and its reader about to connect. It starts
//! the client, then reads loop commands (`KIND WARMUP ITERS`, one per line) on standard input
//! and answers each on standard output with `ns NS_PER_EVENT` (one pinned thread) or
//! `err MESSAGE`. It exits at the end of its standard input, without shutting the profiler
//! down.

use faultline_cli::bench::MSG;
use faultline_cli::bench_tracy::parse_loop_command;
use faultline_cli::harness::run_writers;
use std::io::{BufRead, Write};

const SEQ: tracy_client::PlotName = tracy_client::plot_name!("seq");

fn main() {
    if std::env::var_os("TRACY_PORT").is_none() {
        eprintln!("faultline-bench-tracy: run by `faultline bench` (TRACY_PORT is not set)");
        std::process::exit(2);
    }
    let client = tracy_client::Client::start();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match parse_loop_command(&line) {
            Ok((kind, warmup, iters)) => {
                let timed = if kind == 0 {
                    run_writers(1, true, warmup, iters, |_, i| {
                        client.plot(SEQ, i as f64);
                    })
                } else {
                    run_writers(1, true, warmup, iters, |_, _| {
                        client.message(MSG, 0);
                    })
                };
                format!("ns {}\n", timed.per_thread_ns[0])
            }
            Err(e) => format!("err {e}\n"),
        };
        if out
            .write_all(answer.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
}
