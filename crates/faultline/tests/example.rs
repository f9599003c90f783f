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

/// Build (a no-op when `cargo test` already did) and return `examples/hello`.
fn hello() -> PathBuf {
    let prof = profile_dir();
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
    prof.join("examples").join("hello")
}

#[test]
fn example_trace_holds_only_its_own_tracepoint() {
    let bin = hello();
    let dir = std::env::temp_dir().join(format!("faultline-test-hello-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    let _ = std::fs::remove_dir_all(&dir);
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
