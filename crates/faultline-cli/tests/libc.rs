//! `faultline record --libc`: real, unmodified programs (`cat`, `ls`, and the C program
//! `tests/libc/prog.c`, compiled here with `cc`) run with the preload library, and their traces
//! are checked event by event through `faultline view`, `faultline stats --json`, babeltrace2
//! and `strace -f` (each skipped, saying so, when the tool is missing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use common::{stats_json, BIN};

/// A fresh directory for one test, removed when the test ends, also when it fails
/// (`FAULTLINE_TEST_KEEP_TMP` keeps it for a post-mortem).
fn tmp(name: &str) -> common::TmpDir {
    common::tmp_dir("libc", name)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The test program, compiled once per test binary (None, after saying so, without `cc`), into
/// cargo's temporary directory for tests (under the target directory, not the system's
/// temporary directory: it outlives the tests that use it). Compiled under a name of this
/// process and renamed into place, so that two runs of this binary never run a half-written
/// program.
fn prog() -> Option<&'static Path> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libc/prog.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("faultline-libc-prog");
        let part = dir.join(format!("faultline-libc-prog.{}", std::process::id()));
        match Command::new("cc")
            .args(["-O2", "-Wall", "-pthread", "-o"])
            .arg(&part)
            .arg(&src)
            .status()
        {
            Ok(s) if s.success() && std::fs::rename(&part, &out).is_ok() => Some(out),
            r => {
                eprintln!("SKIPPED: cannot compile {} with cc ({r:?})", src.display());
                None
            }
        }
    })
    .as_deref()
}

/// `faultline record [extra] -o DIR -- cmd...`.
fn record(dir: &Path, extra: &[&str], cmd: &[&str]) -> Output {
    Command::new(BIN)
        .arg("record")
        .args(extra)
        .arg("-o")
        .arg(dir)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

/// One event of `faultline view`: name and fields (values as printed; strings unquoted).
#[derive(Debug, Clone)]
struct Ev {
    name: String,
    f: BTreeMap<String, String>,
}

impl Ev {
    fn get(&self, k: &str) -> &str {
        self.f
            .get(k)
            .unwrap_or_else(|| panic!("{} has no field {k}: {:?}", self.name, self.f))
    }
    fn int(&self, k: &str) -> i64 {
        self.get(k).parse().unwrap()
    }
}

/// Split `a = 1, b = "x, y", c = [01 02]` at the top-level commas.
fn fields(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let b = body.as_bytes();
    let mut push = |s: &str| {
        if let Some((k, v)) = s.split_once(" = ") {
            out.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'[' | b'{' if !quoted => depth += 1,
            b']' | b'}' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(&body[start..]);
    out
}

fn view(dir: &Path) -> Vec<Ev> {
    let out = Command::new(BIN).arg("view").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "view: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let rest = l.split_once("] cpu ").unwrap().1;
            let rest = rest.split_once(' ').unwrap().1;
            let (name, body) = rest.split_once(": { ").unwrap();
            Ev {
                name: name.to_string(),
                f: fields(body.trim_end_matches(" }")),
            }
        })
        .collect()
}

fn named<'a>(evs: &'a [Ev], name: &str) -> Vec<&'a Ev> {
    evs.iter().filter(|e| e.name == name).collect()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "record failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `faultline record EXTRA -o D/trace -- PROG MODE D/w` in the fresh directory D (`w` created
/// empty for the program's files), which must succeed: (D/w, D/trace, output).
fn record_prog(prog: &Path, d: &Path, extra: &[&str], mode: &str) -> (PathBuf, PathBuf, Output) {
    let work = d.join("w");
    std::fs::create_dir(&work).unwrap();
    let t = d.join("trace");
    let out = record(
        &t,
        extra,
        &[prog.to_str().unwrap(), mode, work.to_str().unwrap()],
    );
    ok(&out);
    (work, t, out)
}

#[test]
fn cat_of_a_file_records_its_open_and_keeps_its_stdout() {
    let d = tmp("cat");
    let file = d.join("hello.txt");
    std::fs::write(&file, "hello from the test\n").unwrap();
    let t = d.join("trace");
    // Buffered writes here (`--io buffered`); the other tests take the default (direct).
    let out = record(
        &t,
        &["--libc", "--io", "buffered"],
        &["cat", file.to_str().unwrap()],
    );
    ok(&out);
    // The program's stdout is only the program's; the report is on stderr.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the test\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited with status 0"), "{err}");
    let evs = view(&t);
    let p = named(&evs, "faultline:process");
    assert_eq!(p.len(), 1, "{evs:?}");
    assert_eq!(p[0].get("exe"), "/usr/bin/cat");
    let pid = p[0].int("pid");
    let opens: Vec<_> = named(&evs, "libc:open")
        .into_iter()
        .filter(|e| e.get("path") == file.to_str().unwrap())
        .collect();
    assert_eq!(opens.len(), 1, "{evs:?}");
    let o = opens[0];
    assert_eq!(o.int("path_faulted"), 0);
    assert_eq!(o.int("flags"), 0, "O_RDONLY");
    assert_eq!(o.int("errno"), 0);
    assert_eq!(
        o.int("ret"),
        3,
        "the program's first descriptor: the tracer's are out of the way"
    );
    assert_eq!(o.int("pid"), pid);
    assert_eq!(o.int("tid"), pid);
    assert!(o.int("dur_ns") > 0);
    let closes = named(&evs, "libc:close");
    assert!(
        closes.iter().any(|c| c.int("fd") == 3 && c.int("ret") == 0),
        "{evs:?}"
    );
    // stats --json agrees, and nothing was lost.
    let st = stats_json(&t);
    assert_eq!(st["events_total"].as_u64().unwrap() as usize, evs.len());
    assert_eq!(st["lost_total"].as_u64(), Some(0), "{st}");
}

#[test]
fn ls_root_is_traced() {
    let d = tmp("ls");
    let t = d.join("trace");
    let out = record(&t, &["--libc"], &["ls", "/"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == "usr"));
    let evs = view(&t);
    let p = named(&evs, "faultline:process");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].get("exe"), "/usr/bin/ls");
    // ls stats what it lists (statx on glibc >= 2.28); its directory reads and its output go
    // through libc internals (opendir, stdio), which interposition does not see.
    assert!(
        evs.iter().any(|e| e.name.starts_with("libc:")),
        "no libc event: {evs:?}"
    );
}

/// The (event, path) list of the `files` mode, in order, for paths in `dir`.
fn files_expected(dir: &str) -> Vec<(&'static str, String, i64, i64)> {
    let p = |n: &str| format!("{dir}/{n}");
    vec![
        ("libc:open", p("a.txt"), 3, 0),
        ("libc:open", p("a.txt"), 3, 0),
        ("libc:stat", p("a.txt"), 0, 0),
        ("libc:lstat", p("a.txt"), 0, 0),
        ("libc:open", dir.to_string(), 3, 0),
        ("libc:fstatat", "a.txt".into(), 0, 0),
        ("libc:statx", "a.txt".into(), 0, 0),
        ("libc:openat", "missing".into(), -1, 2),
        ("libc:access", p("a.txt"), 0, 0),
        ("libc:mkdir", p("sub"), 0, 0),
        ("libc:mkdirat", "sub2".into(), 0, 0),
        ("libc:creat", p("b.txt"), 4, 0),
        ("libc:rename", p("b.txt"), 0, 0),
        ("libc:renameat", "c.txt".into(), 0, 0),
        ("libc:unlink", p("d.txt"), 0, 0),
        ("libc:unlinkat", "sub2".into(), 0, 0),
    ]
}

fn path_of(e: &Ev) -> Option<&str> {
    e.f.get("path")
        .or_else(|| e.f.get("old"))
        .map(|s| s.as_str())
}

#[test]
fn file_calls_have_exact_arguments() {
    let Some(prog) = prog() else { return };
    let d = tmp("files");
    let (work, t, out) = record_prog(prog, &d, &["--libc"], "files");
    let w = work.to_str().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "read 23\n");
    let evs = view(&t);
    let got: Vec<(&str, String, i64, i64)> = evs
        .iter()
        .filter_map(|e| path_of(e).map(|p| (e, p)))
        .filter(|(_, p)| p.starts_with(w) || !p.starts_with('/'))
        .map(|(e, p)| (e.name.as_str(), p.to_string(), e.int("ret"), e.int("errno")))
        .collect();
    assert_eq!(got, files_expected(w));
    let one = |name: &str| {
        let v = named(&evs, name);
        assert_eq!(v.len(), 1, "{name}: {evs:?}");
        v[0].clone()
    };
    // Flags and modes as the program passed them.
    let opens = named(&evs, "libc:open");
    assert_eq!(
        opens[0].int("flags"),
        (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as i64
    );
    assert_eq!(opens[0].int("mode"), 0o640);
    assert_eq!(
        opens[2].int("flags"),
        (libc::O_RDONLY | libc::O_DIRECTORY) as i64
    );
    assert_eq!(opens[2].int("mode"), 0, "no O_CREAT: mode not recorded");
    assert_eq!(one("libc:mkdir").int("mode"), 0o750);
    assert_eq!(one("libc:unlinkat").int("flags"), libc::AT_REMOVEDIR as i64);
    assert_eq!(one("libc:statx").int("mask"), libc::STATX_SIZE as i64);
    let r = one("libc:rename");
    assert_eq!(r.get("new"), format!("{w}/c.txt"));
    let r = one("libc:renameat");
    assert_eq!((r.int("olddirfd"), r.get("new")), (3, "d.txt"));
    // Data: what was written, what was read (only the bytes read), sizes.
    let wr = one("libc:write");
    assert_eq!((wr.int("fd"), wr.int("count"), wr.int("ret")), (3, 17, 17));
    assert_eq!(
        wr.get("data"),
        "[68 65 6c 6c 6f 2c 20 66 61 75 6c 74 6c 69 6e 65 0a]"
    );
    assert_eq!(one("libc:pwrite").get("data"), "[48 45 4c 4c 4f]");
    // Vectors: every buffer, concatenated.
    let wv = one("libc:writev");
    assert_eq!(
        (wv.get("data"), wv.int("data_truncated"), wv.int("ret")),
        ("[61 62 63 64 65 66]", 0, 6),
        "both iovecs"
    );
    let pw = one("libc:pwritev");
    assert_eq!(
        (pw.int("offset"), pw.get("data"), pw.int("iovcnt")),
        (17, "[61 62 63 64 65 66]", 2)
    );
    let pv = one("libc:preadv");
    assert_eq!(
        (pv.int("offset"), pv.int("ret"), pv.get("data")),
        (0, 5, "[48 45 4c 4c 4f]")
    );
    let rd = one("libc:read");
    assert_eq!((rd.int("count"), rd.int("ret")), (64, 23));
    assert_eq!(
        rd.get("data"),
        "[48 45 4c 4c 4f 2c 20 66 61 75 6c 74 6c 69 6e 65 0a 61 62 63 64 65 66]"
    );
    let pr = one("libc:pread");
    assert_eq!((pr.int("offset"), pr.get("data")), (7, "[66 61 75 6c]"));
    assert_eq!(one("libc:fstat").int("fd"), 3);
    let m = one("libc:mmap");
    assert_eq!((m.int("len"), m.int("prot"), m.int("fd")), (8192, 3, -1));
    let mu = one("libc:munmap");
    assert_eq!(
        (mu.int("addr"), mu.int("len"), mu.int("ret")),
        (m.int("ret"), 8192, 0)
    );

    // babeltrace2 reads the same trace.
    if !have("babeltrace2") {
        eprintln!("SKIPPED babeltrace2 part: babeltrace2 not installed");
        return;
    }
    let bt = Command::new("babeltrace2").arg(&t).output().unwrap();
    assert!(
        bt.status.success(),
        "{}",
        String::from_utf8_lossy(&bt.stderr)
    );
    let text = String::from_utf8_lossy(&bt.stdout);
    assert_eq!(text.lines().count(), evs.len(), "{text}");
    assert!(
        text.lines().any(|l| l.contains("libc:openat")
            && l.contains("path = \"missing\"")
            && l.contains("errno = 2")),
        "{text}"
    );
}

#[test]
fn bad_pointers_are_recorded_as_faulted_and_libc_still_returns_efault() {
    let Some(prog) = prog() else { return };
    let d = tmp("bad");
    let (_, t, out) = record_prog(prog, &d, &["--libc"], "bad");
    // What the program saw: exactly libc's answers (-1, EFAULT), and it did not crash.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "open -1 14\nopen-null -1 14\nwrite -1 14\nread -1 14\nstat -1 14\n"
    );
    let evs = view(&t);
    let opens = named(&evs, "libc:open");
    for o in &opens[..2] {
        assert_eq!((o.int("path_faulted"), o.get("path")), (1, ""));
        assert_eq!((o.int("ret"), o.int("errno")), (-1, 14));
    }
    let writes = named(&evs, "libc:write");
    assert_eq!(
        (
            writes[0].int("count"),
            writes[0].int("data_faulted"),
            writes[0].int("errno")
        ),
        (100, 32, 14),
        "the default 32 data bytes, all unreadable"
    );
    let reads = named(&evs, "libc:read");
    assert_eq!(
        (reads[0].int("data_faulted"), reads[0].int("errno")),
        (32, 14)
    );
    let st = named(&evs, "libc:stat");
    assert_eq!((st[0].int("path_faulted"), st[0].int("errno")), (1, 14));
    // Exactly those five events carry a fault.
    let faulted = evs
        .iter()
        .filter(|e| e.f.iter().any(|(k, v)| k.ends_with("_faulted") && v != "0"))
        .count();
    assert_eq!(faulted, 5, "{evs:?}");
}

#[test]
fn fork_vfork_exec_and_posix_spawn_children_are_followed() {
    let Some(prog) = prog() else { return };
    let d = tmp("procs");
    let (work, t, out) = record_prog(prog, &d, &["--libc"], "procs");
    let w = work.to_str().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let child_pid = |prefix: &str| -> i64 {
        let l = stdout.lines().find(|l| l.starts_with(prefix)).unwrap();
        l.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (fork_child, vfork_child) = (child_pid("fork child"), child_pid("vfork child"));
    let evs = view(&t);
    let root = named(&evs, "faultline:process")[0].int("pid");
    // fork: one event in each process.
    let forks = named(&evs, "libc:fork");
    assert_eq!(forks.len(), 2, "{evs:?}");
    assert!(forks
        .iter()
        .any(|f| f.int("pid") == root && f.int("ret") == fork_child));
    assert!(forks
        .iter()
        .any(|f| f.int("pid") == fork_child && f.int("ret") == 0));
    // The forked child keeps tracing into its own pid.
    let opens = named(&evs, "libc:open");
    let by_path = |n: &str| {
        opens
            .iter()
            .find(|o| o.get("path") == format!("{w}/{n}"))
            .unwrap_or_else(|| panic!("no open of {n}: {evs:?}"))
    };
    assert_eq!(by_path("forked-child").int("pid"), fork_child);
    assert!(named(&evs, "libc:_exit")
        .iter()
        .any(|e| e.int("pid") == fork_child && e.int("status") == 3));
    // vfork: recorded in the parent; the image the child executes re-attaches.
    let vf = named(&evs, "libc:vfork");
    assert_eq!(
        (vf.len(), vf[0].int("ret"), vf[0].int("pid")),
        (1, vfork_child, root)
    );
    let procs = named(&evs, "faultline:process");
    assert_eq!(
        procs.len(),
        3,
        "first program, vfork+execve child, posix_spawn child"
    );
    assert!(procs
        .iter()
        .any(|p| p.int("pid") == vfork_child && p.int("ppid") == root));
    assert_eq!(by_path("exec").int("pid"), vfork_child);
    // posix_spawn: the new pid, and the spawned image's own events.
    let sp = named(&evs, "libc:posix_spawn");
    let spawned = sp[0].int("child");
    assert_eq!(
        (sp[0].int("ret"), sp[0].get("path")),
        (0, prog.to_str().unwrap())
    );
    assert_eq!(by_path("spawned").int("pid"), spawned);
    // A failed execve: entry event, then execve_failed with ENOENT.
    let ex: Vec<_> = named(&evs, "libc:execve")
        .into_iter()
        .filter(|e| e.int("pid") == root)
        .collect();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].get("path"), format!("{w}/no-such-program"));
    assert_eq!(ex[0].get("argv1"), "spawned");
    let f = named(&evs, "libc:execve_failed");
    assert_eq!((f.len(), f[0].int("errno")), (1, 2));
}

/// Every image reports its recorder counters (destructor, `_exit`, before `exec`), counting
/// only what it recorded itself: their sum is exactly what the trace holds.
#[test]
fn recorder_counters_of_every_image_add_up_to_the_trace() {
    let Some(prog) = prog() else { return };
    let d = tmp("counters");
    let (_, t, _) = record_prog(prog, &d, &["--libc"], "procs");
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join(".faultline-summary.json")).unwrap()).unwrap();
    let written = rep["summary"]["events_written"].as_u64().unwrap();
    let rec = &rep["summary"]["recorder"];
    assert!(rec.is_object(), "no recorder counters: {rep}");
    assert_eq!(rec["recorded"].as_u64(), Some(written), "{rep}");
    let c = &rep["counters"];
    assert_eq!(c["refused"].as_u64(), Some(0), "{c}");
    assert_eq!(c["final_received"].as_bool(), Some(true), "{c}");
    // The first image (twice: before its failed execve, at exit), the forked child (_exit),
    // the vfork+execve child, the posix_spawn child.
    assert!(c["accepted"].as_u64().unwrap() >= 5, "{c}");
    // The trace's env block carries them too (faultline stats).
    let st = stats_json(&t);
    assert!(st["recorder"].is_object(), "{st}");
}

#[test]
fn threads_record_under_their_own_tids() {
    let Some(prog) = prog() else { return };
    let d = tmp("threads");
    let (_, t, _) = record_prog(prog, &d, &["--libc=open,close"], "threads");
    let evs = view(&t);
    let mut per_thread: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for o in named(&evs, "libc:open") {
        per_thread
            .entry(o.get("path").to_string())
            .or_default()
            .insert(o.int("tid"));
    }
    assert_eq!(per_thread.len(), 4, "{per_thread:?}");
    let tids: BTreeSet<i64> = per_thread
        .values()
        .map(|s| {
            assert_eq!(s.len(), 1, "one thread per file");
            *s.iter().next().unwrap()
        })
        .collect();
    assert_eq!(tids.len(), 4);
    assert_eq!(named(&evs, "libc:open").len(), 200);
    assert_eq!(named(&evs, "libc:close").len(), 200);
    // --libc=open,close selected exactly those (plus the process event).
    assert!(evs
        .iter()
        .all(|e| ["libc:open", "libc:close", "faultline:process"].contains(&e.name.as_str())));
}

#[test]
fn loopback_sockets_with_addresses_and_data() {
    let Some(prog) = prog() else { return };
    let d = tmp("net");
    let t = d.join("trace");
    let out = record(
        &t,
        &["--libc"],
        &[prog.to_str().unwrap(), "net", d.to_str().unwrap()],
    );
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u16> = stdout
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let (tcp, udp) = (nums[0], nums[1]);
    let evs = view(&t);
    let c = &named(&evs, "libc:connect")[0];
    assert_eq!(
        (c.int("family"), c.get("addr"), c.int("ret")),
        (libc::AF_INET as i64, format!("127.0.0.1:{tcp}").as_str(), 0)
    );
    let b = named(&evs, "libc:bind");
    assert_eq!(b[0].get("addr"), "127.0.0.1:0");
    let a = &named(&evs, "libc:accept")[0];
    assert!(a.get("addr").starts_with("127.0.0.1:") && a.int("ret") >= 0);
    assert_eq!(named(&evs, "libc:send")[0].get("data"), "[70 69 6e 67]");
    let r = &named(&evs, "libc:recv")[0];
    assert_eq!((r.int("ret"), r.get("data")), (4, "[70 69 6e 67]"));
    let st = &named(&evs, "libc:sendto")[0];
    assert_eq!(st.get("addr"), format!("127.0.0.1:{udp}"));
    let rf = &named(&evs, "libc:recvfrom")[0];
    assert_eq!(
        (rf.get("addr"), rf.get("data")),
        (format!("127.0.0.1:{udp}").as_str(), "[64 67 72 61 6d]")
    );
    let socks = named(&evs, "libc:socket");
    assert_eq!(socks.len(), 3);
    assert_eq!(socks[2].int("sock_type"), libc::SOCK_DGRAM as i64);
}

#[test]
fn signal_handler_calls_and_direct_syscalls_are_recorded() {
    let Some(prog) = prog() else { return };
    let d = tmp("sig");
    let t = d.join("trace");
    let out = record(
        &t,
        &["--libc", "--libc-data=0"],
        &[prog.to_str().unwrap(), "signal", d.to_str().unwrap()],
    );
    ok(&out);
    let evs = view(&t);
    assert!(named(&evs, "libc:open")
        .iter()
        .any(|o| o.get("path").ends_with("/from-handler")));
    let w = &named(&evs, "libc:write")[0];
    assert_eq!(
        (w.get("data"), w.int("data_faulted")),
        ("[]", 0),
        "--libc-data=0"
    );
    let sc = &named(&evs, "libc:syscall")[0];
    assert_eq!(sc.int("nr"), libc::SYS_getppid);
    // The report says that the program bypassed the wrappers.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 direct syscall(2) call"), "{err}");
}

#[test]
fn data_bytes_limit_and_selection() {
    let Some(prog) = prog() else { return };
    let d = tmp("sel");
    let (_, t, _) = record_prog(
        prog,
        &d,
        &["--libc=write*,read*,-readv", "--libc-data=4"],
        "files",
    );
    let evs = view(&t);
    let names: BTreeSet<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "faultline:process",
            "libc:read",
            "libc:write",
            "libc:writev"
        ])
    );
    // A vector is cut at the limit across its buffers; the rest is counted.
    let wv = named(&evs, "libc:writev")[0];
    assert_eq!(
        (wv.get("data"), wv.int("data_truncated")),
        ("[61 62 63 64]", 2)
    );
    assert_eq!(named(&evs, "libc:write")[0].get("data"), "[68 65 6c 6c]");
    assert_eq!(named(&evs, "libc:read")[0].get("data"), "[48 45 4c 4c]");
}

#[test]
fn sigkill_mid_run_keeps_the_committed_calls() {
    let Some(prog) = prog() else { return };
    let d = tmp("kill");
    let t = d.join("trace");
    let rec = Command::new(BIN)
        .args(["record", "--libc=write", "--json", "-o"])
        .arg(&t)
        .arg("--")
        .arg(prog)
        .args(["forever", d.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The program is record's child: find it, let it write for a while, SIGKILL it.
    let children = format!("/proc/{}/task/{}/children", rec.id(), rec.id());
    let start = Instant::now();
    let pid: i32 = loop {
        let s = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(p) = s.split_whitespace().next() {
            break p.parse().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no child");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill on the pid of our grandchild, which record has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = rec.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["program"]["signal"].as_i64(),
        Some(libc::SIGKILL as i64)
    );
    // No process is left that could write: the kernel's write lease says so at once (the
    // /proc scan only where leases are disabled), and recovery runs.
    let leases =
        std::fs::read_to_string("/proc/sys/fs/leases-enable").map_or(true, |s| s.trim() != "0");
    assert_eq!(
        report["recovery"]["checked_by"],
        if leases { "lease" } else { "proc scan" },
        "{report}"
    );
    assert_eq!(report["recovery"]["ran"], true, "{report}");
    let st = stats_json(&t);
    let n = st["events_total"].as_u64().unwrap();
    assert!(n > 100, "{st}");
    assert_eq!(
        report["summary"]["events_written"].as_u64(),
        Some(n),
        "record wrote what stats reads"
    );
}

#[test]
fn call_path_pairs_match_strace() {
    let Some(prog) = prog() else { return };
    if !have("strace") {
        eprintln!("SKIPPED: strace not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let d = tmp("strace");
    let (w1, w2) = (d.join("w1"), d.join("w2"));
    std::fs::create_dir(&w1).unwrap();
    std::fs::create_dir(&w2).unwrap();
    // The same workload, once under strace -f, once under record --libc (in a directory of the
    // same name length, compared relative to it).
    let log = d.join("strace.log");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg(prog)
        .args(["files", w1.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let t = d.join("trace");
    ok(&record(
        &t,
        &["--libc"],
        &[prog.to_str().unwrap(), "files", w2.to_str().unwrap()],
    ));
    /// Calls that take a path, by family (libc names and the system calls glibc makes).
    fn family(name: &str) -> Option<&'static str> {
        Some(match name {
            "open" | "openat" | "creat" => "open",
            "stat" | "lstat" | "fstatat" | "newfstatat" | "statx" => "stat",
            "access" | "faccessat" | "faccessat2" => "access",
            "unlink" | "unlinkat" => "unlink",
            "rename" | "renameat" | "renameat2" => "rename",
            "mkdir" | "mkdirat" => "mkdir",
            _ => return None,
        })
    }
    let rel = |p: &str, w: &Path| -> Option<String> {
        let w = w.to_str().unwrap();
        if let Some(r) = p.strip_prefix(w) {
            Some(format!("W{r}"))
        } else if !p.starts_with('/') && !p.is_empty() {
            Some(p.to_string())
        } else {
            None
        }
    };
    let mut from_strace = BTreeSet::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        // `PID  call(...)`: strace pads short pids with extra spaces.
        let Some((_, call)) = line.split_once(' ').map(|(p, c)| (p, c.trim_start())) else {
            continue;
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        let Some(fam) = family(name) else { continue };
        // Quoted arguments are the paths of these calls.
        for (i, q) in args.split('"').enumerate() {
            if i % 2 == 1 {
                if let Some(p) = rel(q, &w1) {
                    from_strace.insert((fam, p));
                }
            }
        }
    }
    let mut from_trace = BTreeSet::new();
    for e in view(&t) {
        let Some(fam) = e.name.strip_prefix("libc:").and_then(family) else {
            continue;
        };
        for k in ["path", "old", "new"] {
            if let Some(p) = e.f.get(k).and_then(|p| rel(p, &w2)) {
                from_trace.insert((fam, p));
            }
        }
    }
    assert!(from_strace.len() >= 10, "{from_strace:?}");
    assert_eq!(from_trace, from_strace);
}

/// `source` written to `dir/file` and built by `compiler flag -o dir/<file stem>`; `None` when
/// the compiler fails (the caller says why it skips).
fn build(dir: &Path, compiler: &str, flag: &str, file: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(file);
    std::fs::write(&src, source).unwrap();
    let exe = src.with_extension("");
    let built = Command::new(compiler)
        .args([flag, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    built.then_some(exe)
}

#[test]
fn statically_linked_programs_are_reported_not_silently_ignored() {
    if !have("cc") {
        eprintln!("SKIPPED: no cc");
        return;
    }
    let d = tmp("static");
    let Some(exe) = build(
        &d,
        "cc",
        "-static",
        "s.c",
        "#include <unistd.h>\nint main(void){return write(1,\"hi\\n\",3)!=3;}\n",
    ) else {
        eprintln!("SKIPPED: cc -static does not work here (no static libc)");
        return;
    };
    let t = d.join("trace");
    let out = record(&t, &["--libc"], &[exe.to_str().unwrap()]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is statically linked"), "{err}");
    assert!(err.contains("the preload library did not attach"), "{err}");
}

/// One bracketed reading (TSC at the middle of the tightest of 16 brackets, CLOCK_MONOTONIC
/// ns), as the recorder takes them.
#[cfg(target_arch = "x86_64")]
fn tsc_and_monotonic() -> (u64, u64) {
    let mut best = (0u64, 0u64, u64::MAX);
    for _ in 0..16 {
        // SAFETY: rdtsc is available on every x86_64 CPU and touches no memory.
        let a = unsafe { core::arch::x86_64::_rdtsc() };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // SAFETY: as above.
        let b = unsafe { core::arch::x86_64::_rdtsc() };
        if b - a < best.2 {
            let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            best = (a + (b - a) / 2, ns, b - a);
        }
    }
    (best.0, best.1)
}

/// `record` calibrates the TSC in 0.2 ms before the program starts and measures its
/// frequency again over the whole run for the metadata: after a 0.4 s run the trace's clock
/// agrees with the frequency this test measures over the same stretch to within 2 ppm (the
/// start's 0.2 ms estimate alone is good to a few hundred ppm; a 2 ms calibration to ~20).
#[cfg(target_arch = "x86_64")]
#[test]
fn trace_clock_frequency_is_measured_over_the_whole_run() {
    let tsc =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc");
    if !tsc {
        eprintln!("SKIPPED: the TSC is not the clock source (record uses CLOCK_MONOTONIC)");
        return;
    }
    let d = tmp("clock");
    let t = d.join("trace");
    let (c0, t0) = tsc_and_monotonic();
    let out = record(&t, &["--libc"], &["sleep", "0.4"]);
    let (c1, t1) = tsc_and_monotonic();
    ok(&out);
    let want = (c1 - c0) as f64 * 1e9 / (t1 - t0) as f64;
    let meta = std::fs::read_to_string(t.join("metadata")).unwrap();
    let freq: f64 = meta
        .split("freq = ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no clock freq in the metadata:\n{meta}"));
    let ppm = (freq - want).abs() / want * 1e6;
    assert!(
        ppm < 2.0,
        "metadata freq {freq}, measured {want:.0}: {ppm:.2} ppm"
    );
}

/// A shell's children are traced: bash (and dash, as `sh`) build a child's environment from
/// the `envp` they got in `main`, not from `environ`, so every variable and descriptor a
/// later image needs must be the ones `record` gave the first process (issue 13, exec).
#[test]
fn children_of_a_shell_are_traced() {
    for shell in ["bash", "sh"] {
        if !have(shell) && Command::new(shell).arg("-c").arg("true").status().is_err() {
            eprintln!("SKIPPED: no {shell}");
            continue;
        }
        let d = tmp(&format!("shell-{shell}"));
        let (a, b) = (d.join("first.txt"), d.join("second.txt"));
        std::fs::write(&a, "a\n").unwrap();
        std::fs::write(&b, "b\n").unwrap();
        let t = d.join("trace");
        // Two children in a row (`; true` keeps the shell from exec'ing the last one itself),
        // the second after the first has exited.
        let script = format!(
            "cat {} >/dev/null; dd if={} of=/dev/null status=none; true",
            a.display(),
            b.display()
        );
        let out = record(&t, &["--libc"], &[shell, "-c", &script]);
        ok(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("not traced"), "{shell}: {err}");
        let evs = view(&t);
        let procs = named(&evs, "faultline:process");
        let root = procs[0].int("pid");
        for (exe, path) in [("/usr/bin/cat", &a), ("/usr/bin/dd", &b)] {
            let p = procs
                .iter()
                .find(|p| p.get("exe") == exe)
                .unwrap_or_else(|| panic!("{shell}: {exe} not attached: {err}\n{evs:?}"));
            assert_eq!(p.int("ppid"), root, "{shell}");
            let pid = p.int("pid");
            assert!(
                named(&evs, "libc:open")
                    .iter()
                    .any(|o| o.int("pid") == pid && o.get("path") == path.to_str().unwrap()),
                "{shell}: no open of {} by {exe}: {evs:?}",
                path.display()
            );
        }
        // One schema for the whole session, and every image's counters.
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(t.join(".faultline-summary.json")).unwrap())
                .unwrap();
        let c = &rep["counters"];
        assert_eq!(c["refused"].as_u64(), Some(0), "{shell}: {c}");
        assert!(c["accepted"].as_u64().unwrap() >= 3, "{shell}: {c}");
    }
}

/// The preload library carries its own unwinder (linked statically, its symbols local): a C++
/// program's exceptions, thrown between traced calls, still go through the program's own
/// `libgcc_s` and are caught; the calls are recorded.
#[test]
fn cxx_exceptions_are_caught_under_the_preload_library() {
    if !have("c++") {
        eprintln!("SKIPPED: no c++");
        return;
    }
    let d = tmp("cxx");
    let Some(exe) = build(
        &d,
        "c++",
        "-O1",
        "x.cpp",
        "#include <cstdio>\n#include <stdexcept>\n#include <fcntl.h>\n#include <unistd.h>\n\
         int main() { int caught = 0;\n\
         for (int i = 0; i < 3; i++) {\n\
           try { close(open(\"/dev/null\", O_RDONLY)); throw std::runtime_error(\"x\"); }\n\
           catch (const std::exception &) { caught++; } }\n\
         std::printf(\"caught %d\\n\", caught); return caught == 3 ? 0 : 1; }\n",
    ) else {
        eprintln!("SKIPPED: c++ cannot build a program here");
        return;
    };
    let t = d.join("trace");
    let out = record(&t, &["--libc"], &[exe.to_str().unwrap()]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "caught 3\n");
    let evs = view(&t);
    let opens = named(&evs, "libc:open")
        .into_iter()
        .filter(|e| path_of(e) == Some("/dev/null"))
        .count();
    assert_eq!(opens, 3, "{evs:?}");
}

/// The descriptors passed to the program sit below 1024 whatever the descriptor limit (a
/// table sized to a descriptor near a limit of 2^20 would be copied at every start).
#[test]
fn passed_descriptors_stay_below_1024() {
    let d = tmp("lowfd");
    let t = d.join("trace");
    let out = record(
        &t,
        &["--libc"],
        &[
            "sh",
            "-c",
            "echo $FAULTLINE_CHANNEL_FD $FAULTLINE_SCHEMA_FD $FAULTLINE_LIBC_STATS_FD",
        ],
    );
    ok(&out);
    let nums: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 3, "{nums:?}");
    assert!(nums.iter().all(|&n| (3..1024).contains(&n)), "{nums:?}");
}
