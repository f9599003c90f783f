//! Helpers shared by the integration tests of several faultline crates. Only ever a
//! dev-dependency: no library crate of the workspace depends on it, so test-harness code stays
//! out of the libraries.
//!
//! * [`lttng_trace_bench`]: the LTTng-UST harness set up to keep its traces, or `None` (with
//!   a `SKIPPED` line naming what is missing) where LTTng or babeltrace2 is not installed.

use faultline_lttng::{babeltrace_available, check_available, LttngBench, LttngOptions};
use std::time::Duration;

/// An [`LttngBench`] that keeps its traces (for tests that read them back and compare with
/// babeltrace2), its commands bounded at 60 s. `None`, after printing why, when LTTng-UST or
/// babeltrace2 is missing (`scripts/install-deps.sh` installs both); panics when they are
/// installed but the harness cannot start.
pub fn lttng_trace_bench() -> Option<LttngBench> {
    if let Err(why) = check_available() {
        println!("{}\n({why})", faultline_lttng::SKIP_MESSAGE);
        return None;
    }
    if !babeltrace_available() {
        println!("SKIPPED: babeltrace2 not installed (run scripts/install-deps.sh)");
        return None;
    }
    let bench = LttngBench::with_options(LttngOptions {
        keep_traces: true,
        command_timeout: Duration::from_secs(60),
        ..LttngOptions::default()
    })
    .expect("LTTng is installed but the harness could not start");
    Some(bench)
}
