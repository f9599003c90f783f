//! Helpers shared by the integration tests of several faultline crates. Only ever a
//! dev-dependency: no library crate of the workspace depends on it, so test-harness code stays
//! out of the libraries.
//!
//! * [`lttng_trace_bench`]: the LTTng-UST harness set up to keep its traces, or `None` (with
//!   a `SKIPPED` line naming what is missing) where LTTng or babeltrace2 is not installed.
//! * [`ctf`]: small CTF trace builders and the trace reader's fuzz property, shared by the
//!   tests of `faultline-ctf`, `faultline-relay` and the command line and by the fuzz targets
//!   in `fuzz/`.
//! * [`TmpDir`]: a test's scratch directory, removed when the test ends (passed or panicked).

pub mod ctf;

use faultline_lttng::{babeltrace_available, check_available, LttngBench, LttngOptions};
use std::path::Path;
use std::time::Duration;

/// A fresh, empty directory `faultline-<name>-<random>` under the system temp dir, removed
/// with everything in it when dropped — also when the test panics, so failed runs leave
/// nothing behind either. Derefs to its [`Path`] (`dir.join(..)`, `&dir` as `&Path`).
/// Debugging a test: with `FAULTLINE_TEST_KEEP_TMP` set, the directories stay (each one
/// printed on stderr when created).
pub struct TmpDir(tempfile::TempDir);

impl TmpDir {
    /// Create the directory; panics when the temp dir is not writable (a test cannot run).
    pub fn new(name: &str) -> TmpDir {
        TmpDir::new_in(&std::env::temp_dir(), name)
    }

    /// The same directory under `parent` instead of the system temp dir (`/dev/shm` for a
    /// test that wants its files in memory).
    pub fn new_in(parent: &Path, name: &str) -> TmpDir {
        let keep = std::env::var_os("FAULTLINE_TEST_KEEP_TMP").is_some();
        let d = tempfile::Builder::new()
            .prefix(&format!("faultline-{name}-"))
            .disable_cleanup(keep)
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {name}: {e}"));
        if keep {
            eprintln!("kept (FAULTLINE_TEST_KEEP_TMP): {}", d.path().display());
        }
        TmpDir(d)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// For `Command::arg(&dir)`.
impl AsRef<std::ffi::OsStr> for TmpDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

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
