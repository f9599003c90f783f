//! An async (tokio) program instrumented with `tracing`, recorded by faultline.
//!
//! Embedded (the program writes its own trace):
//!     cargo run --release -p faultline-tracing --example tokio_app -- /tmp/tokio-trace
//! Under the recorder (a separate process writes the trace):
//!     faultline record -o /tmp/tokio-trace -- target/release/examples/tokio_app
//! Then `faultline view /tmp/tokio-trace` or `babeltrace2 /tmp/tokio-trace`.
//! `RUST_LOG` filters what faultline records (tracing's `EnvFilter`, default `info`).

use std::time::Duration;
use tracing::{info, instrument, warn};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Request {
    id: u64,
    path: &'static str,
}

/// `status` is recorded on the span once known (`Span::record`).
#[instrument(fields(status = tracing::field::Empty))]
async fn handle(req: Request, worker: u64) -> u64 {
    info!(id = req.id, path = req.path, "handling");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let bytes = req.id * 100;
    info!(bytes, ok = true, ratio = bytes as f64 / 7.0, "done");
    tracing::Span::current().record("status", bytes);
    bytes
}

/// A callsite first hit well after the session (and, under `faultline record`, its schema)
/// started. Its span follows from `after` (a causal link that is not a parent).
#[instrument(skip(after), fields(phase = "late"))]
async fn late_phase(total: u64, after: Option<tracing::Id>) {
    tracing::Span::current().follows_from(after);
    warn!(total, reason = %"first hit late", "late callsite");
}

/// The program; `dir` is the trace directory of an embedded session (ignored under
/// `faultline record`, which owns the output directory).
pub async fn run(dir: Option<String>) -> u64 {
    let mut b = faultline::Session::builder();
    if let Some(d) = dir {
        b = b.output_dir(d);
    }
    let session = b.start().expect("starting the faultline session");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(faultline_tracing::layer().with_filter(filter))
        .init();

    // The span of the spawning loop (the tasks' spans are roots: each task runs on its own).
    let spawning = tracing::info_span!("spawning", tasks = 8u64);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(handle(
                Request {
                    id: i,
                    path: "/index",
                },
                i % 2,
            ))
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    // Let the consumer write what it has, so the next class appears after packets were
    // written (the schema grows while recording).
    tokio::time::sleep(Duration::from_millis(300)).await;
    late_phase(total, spawning.id()).await;
    drop(spawning);
    let summary = session.stop().expect("stopping the session");
    eprintln!(
        "tokio_app: total {total}, {} events written (0 when run by `faultline record`: it has the numbers), {} lost",
        summary.events_written,
        summary.lost_total()
    );
    total
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run(std::env::args().nth(1)).await;
}
