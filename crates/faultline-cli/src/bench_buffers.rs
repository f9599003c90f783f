//! `faultline bench`: a `Session` with buffers per CPU against buffers per concurrency id
//! (`BufferIndex`), in the same run: cost per event, losses, the lossless rate, and the ring
//! buffer memory per process.
//!
//! * **Cost**: the `int` and `string` events, 1 writer thread pinned to the first allowed CPU,
//!   through a `Session` (its consumer writes CTF to disk) with each buffer index; median ns
//!   per event over the bench's rounds (`session_int_ns_cpu`, `session_int_ns_cid`,
//!   `session_string_ns_*`), and every event lost over those runs (`session_lost_*`; of
//!   them `session_lost_full_*`: the consumer was behind, `session_lost_stalled_*`).
//! * **Lossless rate**: the search of [`crate::bench_lossless`] once per buffer index
//!   (`lossless_mev_s_cpu`, `lossless_mev_s_cid`), same options as the default search.
//! * **Memory per process**: 3 writer threads, unpinned, write for a while through a
//!   `Session`; what the summary reports at the end is the memory figure: buffers any writer
//!   touched (`buffers_mapped_*`: each costs its pages; untouched buffers of the sparse memfd
//!   cost nothing) and the bytes of the channel's shared memory resident in the process
//!   (`buffer_bytes_*`). Once with every allowed CPU, once with the whole process restricted
//!   to its first allowed CPU as `taskset -c 0` would (`*_taskset1`): the affinity of every
//!   thread of this process is set for the run and restored after it, and threads created
//!   meanwhile (the writers, the session's consumer) inherit it. Per CPU, a buffer per CPU the
//!   writers ran on; per concurrency id, at most min(threads, allowed CPUs) buffers whatever
//!   the machine's CPU count (`buffers_possible`: buffers the channel has room for).
//!
//! Per-cid buffers need the kernel's rseq `mm_cid` (Linux 6.3+); without it the `*_cid`
//! keys are null and `buffers_missing` says why.

use crate::bench::{BENCH_INT, BENCH_STRING, MSG};
use crate::harness::run_writers;
use faultline::BufferIndex;
use faultline_tracepoints::trace;
use serde::Serialize;

/// Events per writer thread of the memory scenario, at most (and at least the bench's
/// `iters`, bounded below by 10,000).
const MEMORY_EVENTS: u64 = 300_000;

/// The numbers, flattened into the bench report (keys in the module docs): each
/// [`PerIndex`] value under its key with the index's name in it (`session_int_ns_cpu`,
/// `buffers_mapped_cid_taskset1`), the two indexes side by side, as
/// [`BuffersBench::serialize`] writes them.
#[derive(Debug, Clone, Default)]
pub struct BuffersBench {
    /// What a `Session` uses when nobody chooses (`cpu` or `cid`).
    pub buffers_default: String,
    /// Buffers per CPU.
    pub cpu: PerIndex,
    /// Buffers per concurrency id.
    pub cid: PerIndex,
    pub buffers_possible: Option<u32>,
    /// Why the per-cid keys are missing.
    pub buffers_missing: Option<String>,
}

/// One buffer index's numbers (module docs).
#[derive(Debug, Clone, Default)]
pub struct PerIndex {
    pub session_int_ns: Option<f64>,
    pub session_string_ns: Option<f64>,
    pub session_lost: Option<u64>,
    /// Of those, lost because the consumer was behind (`lost_full`) and at a stalled
    /// sub-buffer or, formerly, a flush mark (`lost_stalled`).
    pub session_lost_full: Option<u64>,
    pub session_lost_stalled: Option<u64>,
    pub lossless_mev_s: Option<f64>,
    pub buffers_mapped: Option<u32>,
    pub buffer_bytes: Option<u64>,
    pub buffers_mapped_taskset1: Option<u32>,
    pub buffer_bytes_taskset1: Option<u64>,
}

impl PerIndex {
    /// The report's (key, value) pairs for index `i` (`cpu`, `cid`), in the report's order.
    fn entries(&self, i: &str) -> [(String, serde_json::Value); 10] {
        use serde_json::json;
        [
            (format!("session_int_ns_{i}"), json!(self.session_int_ns)),
            (
                format!("session_string_ns_{i}"),
                json!(self.session_string_ns),
            ),
            (format!("session_lost_{i}"), json!(self.session_lost)),
            (
                format!("session_lost_full_{i}"),
                json!(self.session_lost_full),
            ),
            (
                format!("session_lost_stalled_{i}"),
                json!(self.session_lost_stalled),
            ),
            (format!("lossless_mev_s_{i}"), json!(self.lossless_mev_s)),
            (format!("buffers_mapped_{i}"), json!(self.buffers_mapped)),
            (format!("buffer_bytes_{i}"), json!(self.buffer_bytes)),
            (
                format!("buffers_mapped_{i}_taskset1"),
                json!(self.buffers_mapped_taskset1),
            ),
            (
                format!("buffer_bytes_{i}_taskset1"),
                json!(self.buffer_bytes_taskset1),
            ),
        ]
    }
}

impl Serialize for BuffersBench {
    /// The keys of the module docs, in the report's order: `buffers_default`, each
    /// [`PerIndex`] key per CPU then per cid, `buffers_possible` before the memory keys,
    /// `buffers_missing`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("buffers_default", &self.buffers_default)?;
        let (cpu, cid) = (self.cpu.entries("cpu"), self.cid.entries("cid"));
        for (k, (a, b)) in cpu.iter().zip(&cid).enumerate() {
            if k == 6 {
                m.serialize_entry("buffers_possible", &self.buffers_possible)?;
            }
            m.serialize_entry(&a.0, &a.1)?;
            m.serialize_entry(&b.0, &b.1)?;
        }
        m.serialize_entry("buffers_missing", &self.buffers_missing)?;
        m.end()
    }
}

/// What one `Session` run measured.
struct Run {
    ns: f64,
    lost: u64,
    /// lost_full, lost_stalled.
    causes: [u64; 2],
    used: u32,
    possible: u32,
    bytes: u64,
}

/// One index's cost rows over the rounds.
struct Side {
    int_ns: Vec<f64>,
    string_ns: Vec<f64>,
    /// `None` once a run failed.
    lost: Option<u64>,
    /// lost_full, lost_stalled.
    causes: [u64; 2],
}

impl Default for Side {
    fn default() -> Self {
        Side {
            int_ns: Vec::new(),
            string_ns: Vec::new(),
            lost: Some(0),
            causes: [0; 2],
        }
    }
}

/// The event a run writes.
#[derive(Clone, Copy, PartialEq)]
enum Ev {
    Int,
    String,
}

/// One `Session` with `index`: `threads` writers (pinned or not), `warmup + iters` events each.
fn session_run(
    index: BufferIndex,
    ev: Ev,
    threads: usize,
    pin: bool,
    warmup: u64,
    iters: u64,
) -> anyhow::Result<Run> {
    // Removed however the run ends (an error return, a panicking writer).
    let scratch = tempfile::Builder::new()
        .prefix("faultline-bench-buffers-")
        .tempdir()?;
    let dir = scratch.path().join("trace");
    // A session disables its events when it stops: enable ours again for every run.
    faultline_tracepoints::enable("faultline_bench:*");
    let session = faultline::session::Session::builder()
        .output_dir(&dir)
        .events(match ev {
            Ev::Int => "faultline_bench:int",
            Ev::String => "faultline_bench:string",
        })
        .buffer_index(index)
        .verbose(false)
        .start()
        .map_err(|e| anyhow::anyhow!("session ({} buffers): {e}", index.name()));
    let session = session?;
    let timed = match ev {
        Ev::Int => run_writers(threads, pin, warmup, iters, |_, i| {
            trace!(BENCH_INT, i);
        }),
        Ev::String => run_writers(threads, pin, warmup, iters, |_, i| {
            trace!(BENCH_STRING, i, MSG);
        }),
    };
    let sum = session.stop();
    drop(scratch);
    let sum = sum.map_err(|e| anyhow::anyhow!("session stop: {e}"))?;
    let mut ns = timed.per_thread_ns.clone();
    ns.sort_by(f64::total_cmp);
    Ok(Run {
        ns: ns.get(ns.len() / 2).copied().unwrap_or(f64::NAN),
        lost: sum.lost_total(),
        causes: [sum.lost_full, sum.lost_stalled],
        used: sum.buffers_used,
        possible: sum.buffers_possible,
        bytes: sum.buffer_memory_bytes,
    })
}

/// Run `f` with every thread of this process allowed only on `cpus` (as `taskset` would have
/// started it), then give each thread still alive its former affinity back.
fn with_process_affinity<T>(cpus: &[u32], f: impl FnOnce() -> T) -> T {
    let tids = || -> Vec<i32> {
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // SAFETY: cpu_set_t is plain data; CPU_SET with indexes below CPU_SETSIZE; the
    // affinity calls take a thread id and a valid set of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus
            .iter()
            .filter(|&&c| (c as usize) < libc::CPU_SETSIZE as usize)
        {
            libc::CPU_SET(c as usize, &mut set);
        }
        let mut saved = Vec::new();
        for tid in tids() {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(tid, size, &mut old) == 0
                && libc::sched_setaffinity(tid, size, &set) == 0
            {
                saved.push((tid, old));
            }
        }
        let r = f();
        for (tid, old) in saved {
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &old);
        }
        r
    }
}

/// Measure everything in the module docs; `lossless`: the search options (`None`: skipped).
pub fn run(
    rounds: usize,
    warmup: u64,
    iters: u64,
    lossless: Option<&crate::bench_lossless::LosslessOptions>,
    progress: bool,
) -> BuffersBench {
    let mut out = BuffersBench {
        buffers_default: faultline::session::default_buffer_index()
            .name()
            .to_string(),
        ..BuffersBench::default()
    };
    let mut indexes = vec![BufferIndex::Cpu];
    match faultline_ringbuf::channel::cid_supported() {
        Ok(()) => indexes.push(BufferIndex::Cid),
        Err(e) => out.buffers_missing = Some(e),
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    // Cost rows interleaved (each round runs both indexes), so that a change of machine load
    // during the run weighs on both alike.
    let mut acc: Vec<Side> = indexes.iter().map(|_| Side::default()).collect();
    for _ in 0..rounds.max(1) {
        for (&index, side) in indexes.iter().zip(acc.iter_mut()) {
            for ev in [Ev::Int, Ev::String] {
                match session_run(index, ev, 1, true, warmup, iters) {
                    Ok(r) => {
                        match ev {
                            Ev::Int => side.int_ns.push(r.ns),
                            Ev::String => side.string_ns.push(r.ns),
                        }
                        side.lost = side.lost.map(|l| l + r.lost);
                        side.causes[0] += r.causes[0];
                        side.causes[1] += r.causes[1];
                    }
                    Err(e) => {
                        out.buffers_missing = Some(format!("{}: {e:#}", index.name()));
                        side.lost = None;
                    }
                }
            }
        }
    }
    for (&index, side) in indexes.iter().zip(acc.iter_mut()) {
        let name = index.name();
        if progress {
            eprintln!("bench: buffers per {name}");
        }
        let Side {
            int_ns,
            string_ns,
            lost,
            causes,
        } = side;
        let lost = *lost;
        let lossless_mev_s = lossless.and_then(|lo| {
            crate::bench_lossless::search(lo, |rate, n| {
                // The search's first step is unpaced (rate infinite): the writer's own rate.
                if progress && rate.is_finite() {
                    eprintln!("bench: lossless per {name}: {:.2} Mev/s", rate / 1e6);
                } else if progress {
                    eprintln!("bench: lossless per {name}: the writer's own rate (unpaced)");
                }
                crate::bench_lossless::faultline_step_with(rate, n, Some(index))
            })
            .mev_s
        });
        let all = faultline_rseq::allowed_cpus();
        let events = iters.clamp(10_000, MEMORY_EVENTS);
        let free = session_run(index, Ev::Int, 3, false, 0, events).ok();
        let one = all.first().and_then(|&c| {
            with_process_affinity(&[c], || {
                session_run(index, Ev::Int, 3, false, 0, events).ok()
            })
        });
        if let Some(r) = free.as_ref().or(one.as_ref()) {
            out.buffers_possible = Some(r.possible);
        }
        let (used, bytes) = (
            free.as_ref().map(|r| r.used),
            free.as_ref().map(|r| r.bytes),
        );
        let (used1, bytes1) = (one.as_ref().map(|r| r.used), one.as_ref().map(|r| r.bytes));
        let numbers = PerIndex {
            session_int_ns: median(int_ns),
            session_string_ns: median(string_ns),
            session_lost: lost,
            session_lost_full: lost.map(|_| causes[0]),
            session_lost_stalled: lost.map(|_| causes[1]),
            lossless_mev_s,
            buffers_mapped: used,
            buffer_bytes: bytes,
            buffers_mapped_taskset1: used1,
            buffer_bytes_taskset1: bytes1,
        };
        match index {
            BufferIndex::Cpu => out.cpu = numbers,
            BufferIndex::Cid => out.cid = numbers,
        }
    }
    out
}

/// The comparison as a table for the bench's text report.
pub fn table(b: &BuffersBench) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
    let n = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    let kib = |v: Option<u64>| v.map_or("-".to_string(), |x| format!("{} KiB", x / 1024));
    let m = |v: Option<u32>| v.map_or("-".to_string(), |x| x.to_string());
    let mut s = format!(
        "\nbuffers per CPU vs per concurrency id (Session default: per {}):\n\
         | | per CPU | per cid |\n|---|---|---|\n",
        b.buffers_default
    );
    let cells = |p: &PerIndex| {
        [
            f(p.session_int_ns, 1),
            f(p.session_string_ns, 1),
            format!(
                "{} ({} / {})",
                n(p.session_lost),
                n(p.session_lost_full),
                n(p.session_lost_stalled)
            ),
            f(p.lossless_mev_s, 2),
            m(p.buffers_mapped),
            kib(p.buffer_bytes),
            m(p.buffers_mapped_taskset1),
            kib(p.buffer_bytes_taskset1),
        ]
    };
    let what = [
        "int, ns/event (Session, 1 thread)",
        "string, ns/event (Session, 1 thread)",
        "events lost in those runs (full / stalled)",
        "lossless rate, Mev/s",
        "buffers used, 3 threads",
        "buffer memory, 3 threads",
        "buffers used, 3 threads, taskset -c 0",
        "buffer memory, 3 threads, taskset -c 0",
    ];
    let rows = what.into_iter().zip(cells(&b.cpu)).zip(cells(&b.cid));
    for ((what, cpu), cid) in rows {
        s.push_str(&format!("| {what} | {cpu} | {cid} |\n"));
    }
    s.push_str(&format!(
        "\nBuffers the channel has room for: {}.\n",
        m(b.buffers_possible)
    ));
    if let Some(why) = &b.buffers_missing {
        s.push_str(&format!("Per-cid not measured: {why}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's keys and their order are a contract (the plot script and the docs read
    /// them): the same JSON as when each key was its own field.
    #[test]
    fn keys_and_order_of_the_report() {
        let p = |base: u64| PerIndex {
            session_int_ns: Some(base as f64 + 0.5),
            session_string_ns: Some(base as f64 + 2.5),
            session_lost: Some(base + 4),
            session_lost_full: Some(base + 6),
            session_lost_stalled: Some(base + 8),
            lossless_mev_s: Some(base as f64 + 10.5),
            buffers_mapped: Some(base as u32 + 13),
            buffer_bytes: Some(base + 15),
            buffers_mapped_taskset1: Some(base as u32 + 17),
            buffer_bytes_taskset1: Some(base + 19),
        };
        let b = BuffersBench {
            buffers_default: "cpu".into(),
            cpu: p(1),
            cid: p(2),
            buffers_possible: Some(13),
            buffers_missing: Some("why".into()),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            "{\"buffers_default\":\"cpu\",\"session_int_ns_cpu\":1.5,\"session_int_ns_cid\":2.5,\
             \"session_string_ns_cpu\":3.5,\"session_string_ns_cid\":4.5,\
             \"session_lost_cpu\":5,\"session_lost_cid\":6,\"session_lost_full_cpu\":7,\
             \"session_lost_full_cid\":8,\"session_lost_stalled_cpu\":9,\
             \"session_lost_stalled_cid\":10,\"lossless_mev_s_cpu\":11.5,\
             \"lossless_mev_s_cid\":12.5,\"buffers_possible\":13,\"buffers_mapped_cpu\":14,\
             \"buffers_mapped_cid\":15,\"buffer_bytes_cpu\":16,\"buffer_bytes_cid\":17,\
             \"buffers_mapped_cpu_taskset1\":18,\"buffers_mapped_cid_taskset1\":19,\
             \"buffer_bytes_cpu_taskset1\":20,\"buffer_bytes_cid_taskset1\":21,\
             \"buffers_missing\":\"why\"}"
        );
        // Not measured: every key present, null (as the fields were).
        let v = serde_json::to_value(BuffersBench::default()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 23);
        assert!(v["session_int_ns_cid"].is_null() && v["buffers_possible"].is_null());
    }
}
