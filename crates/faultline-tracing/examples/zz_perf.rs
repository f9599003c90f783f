use faultline_tracepoints::{trace, tracepoint};
use tracing_subscriber::prelude::*;
use std::time::Instant;
tracepoint!(RAW_INT, "perf", "int", { seq: u64 });
tracepoint!(RAW_STR, "perf", "str", { seq: u64, msg: &str });
const MSG: &str = "0123456789abcdef0123456789abcdef";
fn main() {
    let n: u64 = 200_000;
    let dir = format!("/tmp/zzperf-{}", std::process::id());
    let s = faultline::Session::builder().output_dir(&dir).verbose(false).start().unwrap();
    tracing_subscriber::registry().with(faultline_tracing::layer()).init();
    let mut best = [f64::MAX; 4];
    for _ in 0..30 {
        let t = Instant::now(); for i in 0..n { tracing::info!(seq = i) } best[0] = best[0].min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now(); for i in 0..n { trace!(RAW_INT, i) } best[1] = best[1].min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now(); for i in 0..n { tracing::info!(seq = i, msg = MSG) } best[2] = best[2].min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now(); for i in 0..n { trace!(RAW_STR, i, MSG) } best[3] = best[3].min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let sum = s.stop().unwrap();
    eprintln!("best ns: tracing int {:.1} raw int {:.1} tracing str {:.1} raw str {:.1}; written {} lost {}", best[0], best[1], best[2], best[3], sum.events_written, sum.lost_total());
    let _ = std::fs::remove_dir_all(&dir);
}
