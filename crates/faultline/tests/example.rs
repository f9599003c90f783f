//! The example program `examples/hello.rs` depends on `faultline` alone: it builds, records
//! its three events, and its trace metadata declares its one tracepoint and nothing else (no
//! `demo:*`, `faultline_bench:*`, `faultline_study:*`... from the command line crate).
//! Also checks that `faultline`'s dependency tree holds none of the command line's crates.

use faultline_ctf::{Filter, Trace};
use faultline_schema::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>`, from this test's own path (`target/<profile>/deps/example-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether `examples/hello` was linked after the newest `faultline` library and after its
/// source changed. An unfiltered `cargo test` builds examples before running tests, so this
/// holds there; a filtered one (`--test example`) may leave it stale.
fn fresh(prof: &Path, bin: &Path) -> bool {
    let Some(built) = mtime(bin) else {
        return false;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.rs");
    let newest_lib = std::fs::read_dir(prof.join("deps"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libfaultline-") && n.ends_with(".rlib")
        })
        .filter_map(|e| mtime(&e.path()))
        .max();
    mtime(&src).is_some_and(|s| s <= built) && newest_lib.is_some_and(|l| l <= built)
}

/// `examples/hello`, built first if `cargo test` did not build it (fresh) already. Building it
/// from here with the workspace's full feature set would recompile shared dependencies, so
/// the build is only run when needed.
fn hello() -> PathBuf {
    let prof = profile_dir();
    let bin = prof.join("examples").join("hello");
    if fresh(&prof, &bin) {
        return bin;
    }
    let target = prof.parent().expect("target dir");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-q",
        "-p",
        "faultline",
        "--example",
        "hello",
        "--target-dir",
    ])
    .arg(target);
    match prof.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => panic!("unexpected test path {}", prof.display()),
    }
    let st = cmd.status().expect("run cargo");
    assert!(st.success(), "cargo build --example hello failed");
    bin
}

#[test]
fn example_trace_holds_only_its_own_tracepoint() {
    let bin = hello();
    let tmp = faultline_testkit::TmpDir::new("test-hello");
    let dir = tmp.join("trace");
    let out = Command::new(&bin)
        .arg(&dir)
        .env_remove("FAULTLINE_EVENTS")
        .env_remove("FAULTLINE_CHANNEL_FD")
        .output()
        .expect("run hello");
    assert!(
        out.status.success(),
        "hello failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = Trace::open(&dir).expect("open the example's trace");
    let names: Vec<String> = trace
        .schema()
        .events
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, vec!["hello:greet".to_string()], "metadata events");
    let mut ns = Vec::new();
    for ev in trace.events(&Filter::default()) {
        let ev = ev.expect("event");
        assert_eq!(ev.fields[1].1, Value::Str(b"world".to_vec()));
        let Value::U(n) = ev.fields[0].1 else {
            panic!("{:?}", ev.fields)
        };
        ns.push(n);
    }
    ns.sort_unstable();
    assert_eq!(ns, vec![0, 1, 2]);
}

#[test]
fn library_depends_on_nothing_of_the_command_line() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-q",
            "-p",
            "faultline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(crates.contains(&"faultline-recorder"), "{tree}");
    for banned in [
        "clap",
        "anyhow",
        "faultline-lttng",
        "faultline-uffd",
        "faultline-cli",
    ] {
        assert!(
            !crates.contains(&banned),
            "faultline depends on {banned}:\n{tree}"
        );
    }
}
