//! Measurement harness shared by `faultline bench` and the copy-strategy study
//! (`faultline bench --study`): a consumer thread that drains a channel and counts what it
//! saw ([`Drainer`], [`Drained`]), writers started together and timed ([`run_writers`]), the
//! median and spread of a set of rounds, and the machine's load.
//!
//! The consumer is the channel's single consumer while it runs; its stop flag is written
//! once by [`Drainer::finish`] (release) after the final flush and read by the consumer
//! thread (acquire) before its last drain.
//!
//! Ways to take packets out ([`DrainMode`]): [`Drainer::spawn`] copies each whole sub-buffer
//! out with [`Consumer::next_packet`] (which walks the record chain to check it) and walks it
//! again to count the records ([`DrainMode::Copy`]); [`Drainer::spawn_in_place`] takes each
//! sub-buffer in place ([`Consumer::take_in_place`]), copies only its content, hands it back
//! at once ([`Consumer::release`]), and walks the copy once, checking and counting in the same
//! walk — right away ([`DrainMode::InPlace`]) or after the writers are done
//! ([`DrainMode::Deferred`], the way a `Session` works: during tracing its consumer only moves
//! bytes to the trace files, and its verification pass walks the records at the end). A
//! deferred drainer keeps every packet's content until [`Drainer::finish`]: it copies into
//! buffers of a process-wide pool, reused by the next drainer, so the copies do not fault in
//! fresh pages once the pool has grown to a run's size. The CPU time of the deferred walk is
//! reported apart ([`Drained::verify_cpu_ns`]).
//!
//! [`Drainer::spawn_library`] ([`DrainMode::Library`]) is no copy of a consumer: it runs the
//! library's own [`faultline::drain::Drain`], as a `Session` does (sub-buffers written in place
//! to CTF stream files in a temporary directory by direct I/O, its thread following each
//! buffer's CPU), with the drain's verification pass at the end, after the writers are done:
//! that pass re-reads the streams from disk, walks and counts every record (the delivered
//! count) and its CPU time is reported apart. The directory is removed afterwards.

use faultline_ringbuf::{records, Channel, Consumer, PacketInfo, ReadError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The 1-minute load average (NaN when `/proc/loadavg` cannot be read).
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// (median, min, max); NaN for an empty set.
pub fn median_spread(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (m, v[0], v[n - 1])
}

// ---------------------------------------------------------------------------------------
// Consumer

/// What a draining consumer saw.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    pub packets: u64,
    pub records: u64,
    /// Bytes of packet content taken out (headers, records, alignment).
    pub content_bytes: u64,
    /// Records per event id (index = id; ids beyond [`MAX_COUNTED_ID`] go to `other_ids`).
    pub per_id: Vec<u64>,
    pub other_ids: u64,
    /// Per packet: ns from the packet's end timestamp (when it was closed) to the consumer
    /// taking it out.
    pub delays_ns: Vec<f64>,
    pub errors: Vec<String>,
    /// Time the consumer spent taking packets out and walking them, and its wake-ups.
    pub busy_ns: u64,
    pub wakeups: u64,
    /// CPU time of the consumer thread (`getrusage(RUSAGE_THREAD)`, user + system) from its
    /// start to the end of its final drain.
    pub cpu_ns: u64,
    /// CPU time of the deferred walk ([`DrainMode::Deferred`]) after the final drain.
    pub verify_cpu_ns: u64,
}

/// How a [`Drainer`] takes packets out and walks their records (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainMode {
    /// [`Consumer::next_packet`]: whole sub-buffer copied out, chain walked twice.
    Copy,
    /// In place: content copied out, sub-buffer handed back, copy walked once at once.
    InPlace,
    /// In place, the walk deferred to [`Drainer::finish`].
    Deferred,
    /// The library's drain to a temporary trace, verified at the end (module docs).
    Library,
}

/// Content buffers of deferred drainers, reused across drainers (module docs).
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Highest event id counted individually by [`Drained::per_id`].
pub const MAX_COUNTED_ID: u32 = 4095;

impl Drained {
    #[inline]
    fn count_id(&mut self, id: u32) {
        if id > MAX_COUNTED_ID {
            self.other_ids += 1;
            return;
        }
        let i = id as usize;
        if self.per_id.len() <= i {
            self.per_id.resize(i + 1, 0);
        }
        self.per_id[i] += 1;
    }

    /// Records delivered with event id `id`.
    pub fn count(&self, id: u32) -> u64 {
        self.per_id.get(id as usize).copied().unwrap_or(0)
    }
}

/// A consumer thread draining a channel until told to stop.
pub struct Drainer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Drained>,
}

impl Drainer {
    /// Start draining `chan`, on CPU `pin` if given, at nice value `nice` if given (the study
    /// raises its consumer's priority so that losses come from the strategies, not from the
    /// consumer waiting behind other load).
    pub fn spawn(chan: Arc<Channel>, pin: Option<u32>, nice: Option<i32>) -> Drainer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            if let Some(cpu) = pin {
                let _ = faultline_rseq::pin_to_cpu(cpu);
            }
            if let Some(n) = nice {
                // SAFETY: setpriority on this thread's own id; failure (no privilege) is
                // harmless, the consumer then runs at the default priority.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, n);
                }
            }
            drain_loop(&chan, &s, DrainMode::Copy)
        });
        Drainer { stop, handle }
    }

    /// Start draining `chan` (a discard-mode channel) in place, walking the records at once
    /// or at the end (`mode` is [`DrainMode::InPlace`] or [`DrainMode::Deferred`]; module
    /// docs).
    pub fn spawn_in_place(chan: Arc<Channel>, mode: DrainMode) -> Drainer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || drain_loop(&chan, &s, mode));
        Drainer { stop, handle }
    }

    /// Drain `chan` with the library's consumer ([`DrainMode::Library`], module docs) into a
    /// fresh directory under the temporary directory, removed when done. The trace declares
    /// every tracepoint registered now: records of other ids fail the verification (errors).
    pub fn spawn_library(chan: Arc<Channel>) -> anyhow::Result<Drainer> {
        use faultline::drain::{Drain, DrainConfig};
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "faultline-bench-drain-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let desc = faultline_ctf::TraceDesc {
            uuid: chan.uuid(),
            clock: faultline::session::clock_desc(&chan),
            env: faultline::session::env_desc("faultline-bench", "auto", chan.mode()),
            events: faultline_tracepoints::all_tracepoints()
                .into_iter()
                .map(|tp| (tp.id(), *tp.desc()))
                .collect(),
        };
        let writer = faultline_ctf::TraceWriter::create(&dir, &desc)?;
        let cfg = DrainConfig {
            verbose: false,
            verify: true,
            // FAULTLINE_BENCH_FOLLOW=0: the consumer stays wherever the scheduler puts it
            // (for comparison; the library's default for a Session is to follow).
            follow_cpus: std::env::var("FAULTLINE_BENCH_FOLLOW").as_deref() != Ok("0"),
            ..DrainConfig::default()
        };
        let mut drain = Drain::new(chan, writer, cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-drain".into())
            .spawn(move || {
                drain.run_until(&s);
                let (st, fin) = drain.finish();
                let _ = std::fs::remove_dir_all(&dir);
                let cpu_ns = st.consumer_cpu_ns.saturating_sub(st.verify_cpu_ns);
                let mut d = Drained {
                    packets: st.packets_taken,
                    records: st.events_written,
                    content_bytes: st.content_bytes,
                    busy_ns: cpu_ns,
                    cpu_ns,
                    verify_cpu_ns: st.verify_cpu_ns,
                    ..Drained::default()
                };
                for (id, n) in st.events.values().flatten() {
                    if *id > MAX_COUNTED_ID {
                        d.other_ids += n;
                    } else {
                        let i = *id as usize;
                        if d.per_id.len() <= i {
                            d.per_id.resize(i + 1, 0);
                        }
                        d.per_id[i] += n;
                    }
                }
                d.errors.extend(st.read_errors);
                d.errors.extend(st.first_write_error);
                d.errors
                    .extend(st.corrupt.iter().map(|(cpu, c)| c.line(*cpu)));
                if st.packets_rejected > 0 {
                    d.errors.push(format!(
                        "{} packets ({} events) rejected",
                        st.packets_rejected, st.events_rejected
                    ));
                }
                if let Err(e) = fin {
                    d.errors.push(format!("trace: {e}"));
                }
                d
            })?;
        Ok(Drainer { stop, handle })
    }

    /// Flush the channel's partial sub-buffers, drain everything, stop the thread.
    pub fn finish(self, chan: &Channel) -> Drained {
        let errs = chan.flush_all(false);
        // Release: pairs with the consumer's acquire load; everything flushed before is then
        // visible to its final drain.
        self.stop.store(true, Ordering::Release);
        let mut d = self.handle.join().unwrap_or_else(|_| Drained {
            errors: vec!["consumer thread panicked".into()],
            ..Default::default()
        });
        d.errors.extend(errs.into_iter().map(|e| e.to_string()));
        d
    }
}

/// Take the next complete packet of `cpu` in place, copy its content into `buf`, hand the
/// sub-buffer back; the copy is then the caller's to walk.
fn take_copy(
    cons: &Consumer<'_>,
    cpu: u32,
    buf: &mut Vec<u8>,
) -> Result<Option<PacketInfo>, ReadError> {
    let Some(p) = cons.take_in_place(cpu)? else {
        return Ok(None);
    };
    let len = p.info.content_len;
    buf.clear();
    buf.reserve(len);
    // SAFETY: take_in_place checked content_len < sub-buffer size, so [as_ptr, as_ptr + len)
    // lies inside the taken sub-buffer of the mapping, read as raw bytes (no reference into
    // shared memory is formed); `buf` has room for `len` bytes (reserved above), which the
    // copy initialises before set_len.
    unsafe {
        std::ptr::copy_nonoverlapping(p.as_ptr(), buf.as_mut_ptr(), len);
        buf.set_len(len);
    }
    let info = p.info;
    cons.release(p);
    Ok(Some(info))
}

/// Count (and check) the records of one packet's content copied out.
fn walk(d: &mut Drained, content: &[u8], content_len: usize) {
    for r in records(content, content_len) {
        match r {
            Ok(r) => {
                d.records += 1;
                d.count_id(r.id);
            }
            Err(e) => d.errors.push(e),
        }
    }
}

fn drain_loop(chan: &Channel, stop: &AtomicBool, mode: DrainMode) -> Drained {
    let cpu0 = faultline::drain::thread_cpu_ns();
    let cons = Consumer::new(chan);
    let clock = chan.clock();
    let mut d = Drained::default();
    let mut buf = Vec::new();
    // Deferred mode: (content length, content) of every packet taken, walked at the end.
    let mut staged: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut pool = match mode {
        DrainMode::Deferred => std::mem::take(&mut *POOL.lock().unwrap_or_else(|e| e.into_inner())),
        _ => Vec::new(),
    };
    let mut once = |d: &mut Drained| -> bool {
        let t0 = Instant::now();
        d.wakeups += 1;
        let mut any = false;
        for cpu in cons.active_cpus() {
            loop {
                if mode == DrainMode::Deferred && buf.capacity() == 0 {
                    buf = pool.pop().unwrap_or_default();
                }
                let taken = match mode {
                    DrainMode::Copy => cons.next_packet(cpu, &mut buf),
                    // Library is not drained here (Drainer::spawn_library); taken as InPlace.
                    DrainMode::InPlace | DrainMode::Deferred | DrainMode::Library => {
                        take_copy(&cons, cpu, &mut buf)
                    }
                };
                match taken {
                    Ok(Some(info)) => {
                        let now = faultline_ringbuf::clock::now(clock.kind);
                        any = true;
                        d.packets += 1;
                        d.content_bytes += info.content_len as u64;
                        d.delays_ns.push(
                            clock.ticks_to_ns(now.saturating_sub(info.header.timestamp_end)) as f64,
                        );
                        if mode == DrainMode::Deferred {
                            staged.push((info.content_len, std::mem::take(&mut buf)));
                        } else {
                            walk(d, &buf, info.content_len);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        d.errors.push(e.to_string());
                        break;
                    }
                }
            }
        }
        d.busy_ns += t0.elapsed().as_nanos() as u64;
        any
    };
    loop {
        // Acquire: pairs with Drainer::finish's release store after the final flush.
        let stopping = stop.load(Ordering::Acquire);
        let any = once(&mut d);
        if stopping {
            while once(&mut d) {}
            break;
        }
        if !any {
            cons.wait(Duration::from_millis(2));
        }
    }
    let cpu1 = faultline::drain::thread_cpu_ns();
    d.cpu_ns = cpu1.saturating_sub(cpu0);
    if mode == DrainMode::Deferred {
        pool.push(buf);
        for (len, content) in staged {
            walk(&mut d, &content, len);
            pool.push(content);
        }
        d.verify_cpu_ns = faultline::drain::thread_cpu_ns().saturating_sub(cpu1);
        POOL.lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut pool);
    }
    d
}

// ---------------------------------------------------------------------------------------
// Writers

/// Per-thread loop times of one round.
pub struct Timed {
    pub per_thread_ns: Vec<f64>,
    /// Wall time of the timed section (first start to last end).
    pub wall_ns: f64,
    /// Timed events over all threads.
    pub timed: u64,
}

/// Run `threads` writers (pinned one per allowed CPU when `pin`), each `warmup` untimed then
/// `iters` timed calls of `f(thread, i)`, started together after a barrier.
pub fn run_writers<F>(threads: usize, pin: bool, warmup: u64, iters: u64, f: F) -> Timed
where
    F: Fn(usize, u64) + Sync,
{
    let cpus = faultline_rseq::allowed_cpus();
    let barrier = Barrier::new(threads);
    let res: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier, cpus) = (&f, &barrier, &cpus);
                s.spawn(move || {
                    if pin && !cpus.is_empty() {
                        let _ = faultline_rseq::pin_to_cpu(cpus[t % cpus.len()]);
                    }
                    for i in 0..warmup {
                        f(t, i);
                    }
                    barrier.wait();
                    let t0 = Instant::now();
                    for i in 0..iters {
                        f(t, i);
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer")).collect()
    });
    let first = res.iter().map(|r| r.0).min().expect("threads");
    let last = res.iter().map(|r| r.1).max().expect("threads");
    Timed {
        per_thread_ns: res
            .iter()
            .map(|(a, b)| (*b - *a).as_nanos() as f64 / iters.max(1) as f64)
            .collect(),
        wall_ns: (last - first).as_nanos() as f64,
        timed: iters * threads as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_ringbuf::{ChannelConfig, Mode};

    faultline_tracepoints::tracepoint!(HARNESS_TEST, "faultline_harness_test", "v", { seq: u64 });

    /// The library drain (a temporary CTF trace, verified at the end) delivers every event
    /// the channel did not count lost, all of the declared tracepoint, and counts their bytes.
    #[test]
    fn library_drain_accounts_for_every_event() {
        let chan = Arc::new(
            Channel::create(&ChannelConfig {
                subbuf_size: 4096,
                num_subbuf: 4,
                mode: Mode::Discard,
                ..ChannelConfig::default()
            })
            .expect("channel"),
        );
        let rec = faultline_recorder::Recorder::new(
            chan.clone(),
            faultline_recorder::RecorderConfig::default(),
        );
        faultline_tracepoints::enable("faultline_harness_test:*");
        let handle = faultline_recorder::attach(&rec, "faultline_harness_test:*").expect("attach");
        let d = Drainer::spawn_library(chan.clone()).expect("drainer");
        let n = 40_000u64;
        for i in 0..n {
            faultline_tracepoints::trace!(HARNESS_TEST, i);
            if i % 100 == 99 {
                // Let the consumer keep up now and then, so many packets go through it.
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        faultline_tracepoints::unregister(handle);
        let d = d.finish(&chan);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let lost: u64 = (0..chan.num_cpus())
            .filter_map(|c| chan.cpu_stats(c))
            .map(|s| s.lost_total())
            .sum();
        assert_eq!(d.records + lost, n, "delivered {} lost {lost}", d.records);
        assert_eq!(d.count(HARNESS_TEST.id()), d.records);
        assert!(d.packets > 10, "{} packets", d.packets);
        assert!(
            d.content_bytes >= d.records * 8,
            "{} bytes",
            d.content_bytes
        );
    }

    /// Every drain mode delivers every record not counted lost, with the right ids; small
    /// sub-buffers so many packets go through the deferred drainer's pool.
    #[test]
    fn every_drain_mode_accounts_for_every_record() {
        for mode in [DrainMode::Copy, DrainMode::InPlace, DrainMode::Deferred] {
            let chan = Arc::new(
                Channel::create(&ChannelConfig {
                    subbuf_size: 4096,
                    num_subbuf: 4,
                    mode: Mode::Discard,
                    ..ChannelConfig::default()
                })
                .expect("channel"),
            );
            let d = match mode {
                DrainMode::Copy => Drainer::spawn(chan.clone(), None, None),
                _ => Drainer::spawn_in_place(chan.clone(), mode),
            };
            let n = 50_000u64;
            let (mut reserved, mut attempts, mut retries) = (0u64, 0u64, 0u32);
            for i in 0..n {
                let id = 7 + (i % 3) as u32;
                loop {
                    attempts += 1;
                    if let Ok(mut r) = chan.reserve(id, 8) {
                        r.payload().copy_from_slice(&i.to_le_bytes());
                        r.commit();
                        reserved += 1;
                        break;
                    }
                    // Full (lost, counted): give the consumer time, a bounded number of
                    // times in all, so that many packets go through it even on a loaded
                    // machine.
                    if retries >= 5_000 {
                        break;
                    }
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let d = d.finish(&chan);
            assert!(d.errors.is_empty(), "{mode:?}: {:?}", d.errors);
            let lost: u64 = (0..chan.num_cpus())
                .filter_map(|c| chan.cpu_stats(c))
                .map(|s| s.lost_total())
                .sum();
            assert_eq!(reserved + lost, attempts, "{mode:?}");
            assert_eq!(d.records, reserved, "{mode:?}: delivered");
            assert_eq!(d.count(7) + d.count(8) + d.count(9), reserved, "{mode:?}");
            assert!(d.packets > 10, "{mode:?}: {} packets", d.packets);
        }
    }
}
