//! `faultline stress`: the torture run of the ring buffer.
//!
//! N writer threads (default 8) on however many CPUs the machine has, random payload sizes,
//! writers forced to migrate between reserve and commit (`sched_setaffinity` to another CPU
//! while holding the reservation), SIGUSR1 storms whose handler traces too (nesting on the
//! same buffer), optional abort injection inside the reserve critical section, and a consumer
//! draining concurrently. Each event carries (thread, stream, sequence) and a payload derived
//! from them, so the check at the end is exact: every sequence number of every thread was
//! delivered exactly once, in order, byte-exact — or counted as lost by the writer, and the
//! writers' loss counts equal the buffers' loss counters.
//!
//! # Through the recorder
//! With `--strategy` (or `--fault-ms` / `--bad-pointers`), the main events go through the
//! ring-buffer recorder probe (`faultline-recorder`) with the chosen copy strategy (`mixed`:
//! thread `t` uses strategy `t mod 3`), and the forced migration happens *inside the payload
//! copy* (between reserve and commit for reserve-copy-commit). Some events then also:
//! * `--fault-ms MS`: copy part of their payload from a page of a userfaultfd region whose
//!   fault is held `MS` ms (one page per writer, dropped again after each use, so every such
//!   event faults); the recorded bytes must equal the page's known pattern;
//! * `--bad-pointers`: copy part of their payload from a `PROT_NONE` page; the event must be
//!   recorded with those bytes zero-filled and counted as faulted.
//!
//! Which events do what is a pure function of (thread, sequence), so the checker knows the
//! exact expected bytes and the exact number of faulted events.

use faultline_recorder::{Policy, Recorder, RecorderConfig, Strategy};
use faultline_ringbuf::{
    records, Channel, ChannelConfig, CommitKind, Consumer, Lost, Mode, SyncMode,
};
use faultline_tracepoints::{Payload, WriteOutcome};
use faultline_uffd::HeldFaults;
use serde::Serialize;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of a stress run.
#[derive(Debug, Clone)]
pub struct StressOptions {
    pub threads: usize,
    pub events_per_thread: u64,
    pub max_payload: usize,
    pub subbuf_size: u64,
    pub num_subbuf: u64,
    pub mode: Mode,
    pub sync: SyncMode,
    /// Per mille of events whose writer is migrated between reserve and commit.
    pub migrate_permille: u32,
    pub signals: bool,
    pub inject_spins: u64,
    pub seed: u64,
    /// How main events are written: `None` = straight into the ring buffer; `Some` = through
    /// the recorder probe with this copy strategy.
    pub strategy: Option<StrategyChoice>,
    /// Hold userfaultfd faults this long in some events' payload copy (0 = off).
    pub fault_ms: u64,
    /// One event in this many (per writer) takes a held fault.
    pub fault_every: u64,
    /// Some events copy from a `PROT_NONE` page.
    pub bad_pointers: bool,
}

/// Copy strategy of a stress run through the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyChoice {
    One(Strategy),
    /// Thread `t` uses `Strategy::ALL[t % 3]`.
    Mixed,
}

impl std::str::FromStr for StrategyChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mixed" {
            return Ok(StrategyChoice::Mixed);
        }
        s.parse::<Strategy>()
            .map(StrategyChoice::One)
            .map_err(|e| format!("{e}, or mixed"))
    }
}

impl StrategyChoice {
    fn for_thread(self, t: usize) -> Strategy {
        match self {
            StrategyChoice::One(s) => s,
            StrategyChoice::Mixed => Strategy::ALL[t % 3],
        }
    }
    fn name(self) -> String {
        match self {
            StrategyChoice::One(s) => s.name().to_string(),
            StrategyChoice::Mixed => "mixed".to_string(),
        }
    }
}

impl Default for StressOptions {
    fn default() -> Self {
        StressOptions {
            threads: 8,
            events_per_thread: 100_000,
            max_payload: 200,
            subbuf_size: 64 * 1024,
            num_subbuf: 8,
            mode: Mode::Discard,
            sync: if faultline_rseq::available() {
                SyncMode::Rseq
            } else {
                SyncMode::Atomic
            },
            migrate_permille: 5,
            signals: true,
            inject_spins: 8,
            seed: 0x5eed,
            strategy: None,
            fault_ms: 0,
            fault_every: 2000,
            bad_pointers: false,
        }
    }
}

/// The machine-readable summary (`faultline stress --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StressReport {
    pub threads: usize,
    pub sync: String,
    pub mode: String,
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub lost_full: u64,
    pub lost_stalled: u64,
    pub lost_too_big: u64,
    /// Sum of the per-CPU loss counters in shared memory (must equal `lost`).
    pub lost_in_buffers: u64,
    pub duplicates: u64,
    pub unexplained: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
    pub local_commits: u64,
    pub remote_commits: u64,
    pub rseq_aborts: u64,
    pub migrations: u64,
    pub signals_sent: u64,
    pub handler_events: u64,
    pub packets: u64,
    /// `direct` (ring buffer API) or the recorder's copy strategy (`mixed`: per thread).
    pub strategy: String,
    /// Events recorded with faulted (zero-filled) bytes, as counted by the recorder.
    pub faulted: u64,
    /// Delivered events the checker expected to be faulted (must equal `faulted`).
    pub faulted_expected: u64,
    /// userfaultfd faults held and served.
    pub held_faults: u64,
    /// Per copy strategy: events, restarts, fallbacks (recorder runs only).
    pub per_strategy: BTreeMap<String, faultline_recorder::StrategyStats>,
    pub seconds: f64,
    pub ok: bool,
}

const EVENT_MAIN: u32 = 1;
const EVENT_HANDLER: u32 = 2;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn payload_len(tid: u32, stream: u32, seq: u64, max: usize) -> usize {
    16 + (mix(((tid as u64) << 40) ^ ((stream as u64) << 32) ^ seq)
        % (max.saturating_sub(16) as u64 + 1)) as usize
}

fn fill(buf: &mut [u8], tid: u32, stream: u32, seq: u64) {
    buf[0..4].copy_from_slice(&tid.to_le_bytes());
    buf[4..8].copy_from_slice(&stream.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    let k = mix(seq ^ ((tid as u64) << 48) ^ stream as u64);
    for (i, b) in buf[16..].iter_mut().enumerate() {
        *b = (k >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
}

fn check_payload(kinds: &KindRule, p: &[u8]) -> Option<(u32, u32, u64, Kind)> {
    if p.len() < 16 {
        return None;
    }
    let tid = u32::from_le_bytes(p[0..4].try_into().ok()?);
    let stream = u32::from_le_bytes(p[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(p[8..16].try_into().ok()?);
    let mut want = vec![0u8; p.len()];
    let k = expected(kinds, &mut want, tid, stream, seq);
    (want == p).then_some((tid, stream, seq, k))
}

/// Per-writer counters, also touched by that writer's signal handler.
#[derive(Default)]
struct WriterStats {
    emitted: AtomicU64,
    local: AtomicU64,
    remote: AtomicU64,
    lost: [AtomicU64; 3],
    handler_emitted: AtomicU64,
    handler_lost: AtomicU64,
    migrations: AtomicU64,
}

struct Shared {
    chan: Arc<Channel>,
    stats: Vec<WriterStats>,
    max_payload: usize,
    rec: Option<Arc<Recorder>>,
    region: Option<HeldFaults>,
    /// A PROT_NONE page (bad-pointer events), or null.
    bad: usize,
    kinds: KindRule,
}

/// What a main event's payload contains beyond the pattern (recorder runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pattern = 0,
    HeldFault = 1,
    BadPointer = 2,
}

#[derive(Debug, Clone, Copy)]
struct KindRule {
    recorder: bool,
    fault_every: u64,
    bad: bool,
}

impl KindRule {
    fn kind(&self, tid: u32, seq: u64) -> Kind {
        if !self.recorder {
            return Kind::Pattern;
        }
        let h = mix(seq ^ ((tid as u64) << 40) ^ 0xfa17);
        if self.fault_every > 0 && h.is_multiple_of(self.fault_every) {
            Kind::HeldFault
        } else if self.bad && (h >> 20).is_multiple_of(64) {
            Kind::BadPointer
        } else {
            Kind::Pattern
        }
    }
}

/// Offset of the kind byte and of the copied part in a main event (recorder runs).
const KIND_AT: usize = 16;
const DATA_AT: usize = 17;

/// The bytes a main event must hold.
fn expected(kinds: &KindRule, out: &mut [u8], tid: u32, stream: u32, seq: u64) -> Kind {
    fill(out, tid, stream, seq);
    if stream != 0 || !kinds.recorder || out.len() <= DATA_AT {
        return Kind::Pattern;
    }
    let k = kinds.kind(tid, seq);
    out[KIND_AT] = k as u8;
    match k {
        Kind::Pattern => {}
        Kind::HeldFault => {
            let base = tid as usize * faultline_uffd::PAGE;
            for (i, b) in out[DATA_AT..].iter_mut().enumerate() {
                *b = faultline_uffd::pattern(base + i);
            }
        }
        Kind::BadPointer => out[DATA_AT..].fill(0),
    }
    k
}

/// A main event as a recorder payload: the migration and the risky copies happen inside
/// `write`, i.e. between reserve and commit for reserve-copy-commit.
struct StressPayload<'a> {
    sh: &'a Shared,
    tid: u32,
    seq: u64,
    len: usize,
    kind: Kind,
    /// Migrate to this CPU during the copy.
    migrate_to: Option<u32>,
    migrated: std::cell::Cell<bool>,
}

impl StressPayload<'_> {
    fn src(&self) -> *const u8 {
        match self.kind {
            Kind::HeldFault => match &self.sh.region {
                Some(r) => r
                    .as_ptr()
                    .wrapping_add(self.tid as usize * faultline_uffd::PAGE),
                None => std::ptr::null(),
            },
            Kind::BadPointer => self.sh.bad as *const u8,
            Kind::Pattern => std::ptr::null(),
        }
    }
}

impl Payload for StressPayload<'_> {
    fn size(&self) -> usize {
        self.len
    }
    fn prefault(&self) -> usize {
        if self.kind == Kind::HeldFault {
            let mut b = [0u8; 1];
            faultline_tracepoints::copy_from_user(&mut b, self.src());
        }
        self.len
    }
    fn write(&self, dst: &mut [u8]) -> WriteOutcome {
        if let Some(to) = self.migrate_to {
            if !self.migrated.get() && faultline_rseq::pin_to_cpu(to).is_ok() {
                self.migrated.set(true);
            }
        }
        let n = dst.len().min(self.len);
        let dst = &mut dst[..n];
        fill(dst, self.tid, 0, self.seq);
        let mut faulted = 0;
        if n > DATA_AT {
            dst[KIND_AT] = self.kind as u8;
            if self.kind != Kind::Pattern {
                faulted = faultline_tracepoints::copy_from_user(&mut dst[DATA_AT..], self.src());
            }
        }
        WriteOutcome {
            written: n,
            faulted,
            truncated: false,
        }
    }
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
thread_local! {
    static TID: Cell<u32> = const { Cell::new(u32::MAX) };
    static HANDLER_SEQ: Cell<u64> = const { Cell::new(0) };
}

fn lost_slot(l: Lost) -> usize {
    match l {
        Lost::Full => 0,
        Lost::Stalled => 1,
        Lost::TooBig | Lost::NoBuffer => 2,
    }
}

extern "C" fn on_usr1(_: libc::c_int) {
    // Acquire: pairs with the release store publishing SHARED before signals are sent.
    let sh = SHARED.load(Ordering::Acquire);
    if sh.is_null() {
        return;
    }
    // SAFETY: SHARED points to an Arc'd Shared kept alive until after the signaller stopped
    // and every writer joined (run() clears it first); a handler only runs on writer threads.
    let sh = unsafe { &*sh };
    let tid = TID.with(|t| t.get());
    if tid as usize >= sh.stats.len() {
        return;
    }
    // Async-signal-safe: no allocation, no locks; const-initialised thread locals.
    let seq = HANDLER_SEQ.with(|s| {
        let v = s.get();
        s.set(v + 1);
        v
    });
    let st = &sh.stats[tid as usize];
    st.handler_emitted.fetch_add(1, Ordering::Relaxed);
    let len = payload_len(tid, 1, seq, sh.max_payload.min(64));
    match sh.chan.reserve(EVENT_HANDLER, len) {
        Ok(mut r) => {
            fill(r.payload(), tid, 1, seq);
            match r.commit() {
                CommitKind::Local => st.local.fetch_add(1, Ordering::Relaxed),
                CommitKind::Remote => st.remote.fetch_add(1, Ordering::Relaxed),
            };
        }
        Err(l) => {
            st.handler_lost.fetch_add(1, Ordering::Relaxed);
            st.lost[lost_slot(l)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the consumer saw of one (thread, stream).
#[derive(Default)]
struct Seen {
    /// (timestamp, seq) in delivery order per CPU, merged later.
    events: Vec<(u64, u64)>,
}

/// Run the torture test.
pub fn run(opt: &StressOptions, progress: bool) -> anyhow::Result<StressReport> {
    anyhow::ensure!(
        opt.threads >= 1 && opt.threads <= 1024,
        "--threads must be between 1 and 1024"
    );
    let cfg = ChannelConfig {
        subbuf_size: opt.subbuf_size,
        num_subbuf: opt.num_subbuf,
        mode: opt.mode,
        sync: opt.sync,
        inject_spins: opt.inject_spins,
        ..Default::default()
    };
    let chan = Arc::new(Channel::create(&cfg)?);
    anyhow::ensure!(
        opt.max_payload >= 16 && opt.max_payload <= chan.max_payload(),
        "--max-payload must be between 16 and {}",
        chan.max_payload()
    );
    let strategy = match opt.strategy {
        None if opt.fault_ms > 0 || opt.bad_pointers => Some(StrategyChoice::Mixed),
        s => s,
    };
    let recorder = strategy.is_some();
    anyhow::ensure!(
        !recorder || opt.max_payload >= 32,
        "--max-payload must be at least 32 when events go through the recorder"
    );
    let region = if opt.fault_ms > 0 {
        Some(
            HeldFaults::new(opt.threads, Duration::from_millis(opt.fault_ms)).map_err(|e| {
                anyhow::anyhow!(
                    "--fault-ms needs userfaultfd (root or vm.unprivileged_userfaultfd=1): {e}"
                )
            })?,
        )
    } else {
        None
    };
    let bad = if opt.bad_pointers {
        // SAFETY: a fresh anonymous PROT_NONE page, never accessed except through the
        // fault-tolerant copies; unmapped at the end of the run.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        anyhow::ensure!(
            p != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        faultline_tracepoints::install_fault_handler()?;
        p as usize
    } else {
        0
    };
    let rec = strategy.map(|_| {
        Recorder::new(
            chan.clone(),
            RecorderConfig {
                policy: Policy::Auto,
                ..RecorderConfig::default()
            },
        )
    });
    let kinds = KindRule {
        recorder,
        fault_every: if opt.fault_ms > 0 {
            opt.fault_every.max(1)
        } else {
            0
        },
        bad: opt.bad_pointers,
    };
    let shared = Arc::new(Shared {
        chan,
        stats: (0..opt.threads).map(|_| WriterStats::default()).collect(),
        max_payload: opt.max_payload,
        rec,
        region,
        bad,
        kinds,
    });
    // Release: pairs with the handler's acquire load.
    SHARED.store(Arc::as_ptr(&shared) as *mut Shared, Ordering::Release);
    if opt.signals {
        // SAFETY: the handler only does async-signal-safe work (see on_usr1).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
    }
    let aborts0 = faultline_rseq::abort_count();
    let cpus = faultline_rseq::allowed_cpus();
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let writers_done = Arc::new(AtomicU64::new(0));
    let lost_main: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); opt.threads]));
    let pthreads: Arc<Vec<AtomicU64>> =
        Arc::new((0..opt.threads).map(|_| AtomicU64::new(0)).collect());

    // Consumer.
    let consumer = {
        let (shared, done) = (shared.clone(), done.clone());
        let nthreads = opt.threads;
        std::thread::spawn(move || -> anyhow::Result<(Vec<[Seen; 2]>, u64, u64, u64)> {
            let cons = Consumer::new(&shared.chan);
            let kinds = shared.kinds;
            let mut faulted = 0u64;
            let mut seen: Vec<[Seen; 2]> = (0..nthreads)
                .map(|_| [Seen::default(), Seen::default()])
                .collect();
            let mut buf = Vec::new();
            let (mut packets, mut corrupt) = (0u64, 0u64);
            let mut drain = |cons: &Consumer, seen: &mut Vec<[Seen; 2]>| -> anyhow::Result<bool> {
                let mut any = false;
                for cpu in cons.active_cpus() {
                    while let Some(info) = cons.next_packet(cpu, &mut buf)? {
                        any = true;
                        packets += 1;
                        for r in records(&buf, info.content_len) {
                            let r = r.map_err(|e| anyhow::anyhow!(e))?;
                            match check_payload(&kinds, r.payload) {
                                Some((tid, stream, seq, kind))
                                    if (tid as usize) < nthreads && stream < 2 =>
                                {
                                    faulted += (kind == Kind::BadPointer) as u64;
                                    seen[tid as usize][stream as usize]
                                        .events
                                        .push((r.timestamp, seq))
                                }
                                _ => corrupt += 1,
                            }
                        }
                    }
                }
                Ok(any)
            };
            loop {
                let finished = done.load(Ordering::Acquire); // pairs with the main thread's release store after the final flush
                let any = drain(&cons, &mut seen)?;
                if finished {
                    while drain(&cons, &mut seen)? {}
                    break;
                }
                if !any {
                    cons.wait(Duration::from_millis(5));
                }
            }
            Ok((seen, packets, corrupt, faulted))
        })
    };

    // Writers.
    let mut hs = Vec::new();
    for t in 0..opt.threads {
        let (shared, lost_main, pthreads, cpus, writers_done) = (
            shared.clone(),
            lost_main.clone(),
            pthreads.clone(),
            cpus.clone(),
            writers_done.clone(),
        );
        let opt = opt.clone();
        hs.push(std::thread::spawn(move || {
            TID.with(|c| c.set(t as u32));
            // SAFETY: pthread_self has no preconditions.
            pthreads[t].store(unsafe { libc::pthread_self() } as u64, Ordering::Release); // pairs with the signaller's acquire load
            let st = &shared.stats[t];
            let mut rng = mix(opt.seed ^ t as u64) | 1;
            let mut lost = Vec::new();
            let strategy = strategy.map(|s| s.for_thread(t));
            if let Some(rec) = &shared.rec {
                // Signal handlers trace on this thread (directly into the ring buffer), but
                // allocate the recorder's per-thread state outside them anyway.
                rec.prepare_thread(opt.max_payload);
            }
            for seq in 0..opt.events_per_thread {
                rng = mix(rng);
                let len = payload_len(t as u32, 0, seq, opt.max_payload);
                st.emitted.fetch_add(1, Ordering::Relaxed);
                if let (Some(rec), Some(strategy)) = (&shared.rec, strategy) {
                    let migrate = cpus.len() > 1 && (rng % 1000) < opt.migrate_permille as u64;
                    let here = faultline_rseq::current_cpu();
                    let p = StressPayload {
                        sh: &shared,
                        tid: t as u32,
                        seq,
                        len: len.max(DATA_AT + 8),
                        kind: shared.kinds.kind(t as u32, seq),
                        migrate_to: if migrate {
                            cpus.iter().copied().find(|&c| c != here)
                        } else {
                            None
                        },
                        migrated: std::cell::Cell::new(false),
                    };
                    match rec.record(EVENT_MAIN, strategy, &p) {
                        Ok(CommitKind::Local) => st.local.fetch_add(1, Ordering::Relaxed),
                        Ok(CommitKind::Remote) => st.remote.fetch_add(1, Ordering::Relaxed),
                        Err(l) => {
                            lost.push(seq);
                            st.lost[lost_slot(l)].fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    if p.migrated.get() {
                        st.migrations.fetch_add(1, Ordering::Relaxed);
                        let _ = faultline_rseq::allow_cpus(&cpus);
                    }
                    if p.kind == Kind::HeldFault {
                        if let Some(r) = &shared.region {
                            let _ = r.rearm_range(t * faultline_uffd::PAGE, faultline_uffd::PAGE);
                        }
                    }
                    continue;
                }
                match shared.chan.reserve(EVENT_MAIN, len) {
                    Ok(mut r) => {
                        let migrate = cpus.len() > 1 && (rng % 1000) < opt.migrate_permille as u64;
                        if migrate {
                            let here = r.cpu();
                            let to = *cpus.iter().find(|&&c| c != here).unwrap_or(&here);
                            if faultline_rseq::pin_to_cpu(to).is_ok() {
                                st.migrations.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        fill(r.payload(), t as u32, 0, seq);
                        match r.commit() {
                            CommitKind::Local => st.local.fetch_add(1, Ordering::Relaxed),
                            CommitKind::Remote => st.remote.fetch_add(1, Ordering::Relaxed),
                        };
                        if migrate {
                            let _ = faultline_rseq::allow_cpus(&cpus);
                        }
                    }
                    Err(l) => {
                        st.lost[lost_slot(l)].fetch_add(1, Ordering::Relaxed);
                        lost.push(seq);
                    }
                }
            }
            lost_main.lock().unwrap()[t] = lost;
            writers_done.fetch_add(1, Ordering::Release); // pairs with the signaller's acquire load
        }));
    }

    // Signal storm.
    let signaller = {
        let (pthreads, writers_done) = (pthreads.clone(), writers_done.clone());
        let (n, on) = (opt.threads as u64, opt.signals);
        std::thread::spawn(move || {
            let mut sent = 0u64;
            let mut i = 0usize;
            // Acquire (both): pair with the writers' release increment of writers_done and
            // release store of their pthread id.
            while on && writers_done.load(Ordering::Acquire) < n {
                let id = pthreads[i % pthreads.len()].load(Ordering::Acquire);
                i += 1;
                if id != 0 {
                    // SAFETY: writer threads are joined only after this thread stops, so `id`
                    // names a live or exited-but-unjoined thread; pthread_kill is defined for both.
                    if unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) } == 0 {
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            sent
        })
    };

    let mut last = Instant::now();
    // Acquire: pairs with each writer's release increment after it stored its lost list.
    while writers_done.load(Ordering::Acquire) < opt.threads as u64 {
        std::thread::sleep(Duration::from_millis(20));
        if progress && last.elapsed() > Duration::from_secs(1) {
            last = Instant::now();
            let e: u64 = shared
                .stats
                .iter()
                .map(|s| s.emitted.load(Ordering::Relaxed))
                .sum();
            eprintln!("  ... {e} events emitted");
        }
    }
    let signals_sent = signaller.join().unwrap();
    for h in hs {
        h.join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    }
    // Release: pairs with the handler's acquire load; no handler runs after this (signaller stopped).
    SHARED.store(std::ptr::null_mut(), Ordering::Release);
    let flush_errors = shared.chan.flush_all(true);
    anyhow::ensure!(flush_errors.is_empty(), "flush failed: {flush_errors:?}");
    done.store(true, Ordering::Release);
    let (seen, packets, corrupt, faulted_expected) = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    let seconds = start.elapsed().as_secs_f64();

    // Verification.
    let lost_main = lost_main.lock().unwrap();
    let mut rep = StressReport {
        threads: opt.threads,
        sync: format!("{:?}", opt.sync).to_lowercase(),
        mode: format!("{:?}", opt.mode).to_lowercase(),
        corrupt,
        packets,
        signals_sent,
        seconds,
        rseq_aborts: faultline_rseq::abort_count() - aborts0,
        strategy: strategy.map_or("direct".to_string(), |s| s.name()),
        faulted_expected,
        held_faults: shared.region.as_ref().map_or(0, |r| r.served()),
        ..Default::default()
    };
    if let Some(rec) = &shared.rec {
        let rs = rec.stats();
        rep.faulted = rs.faulted;
        for s in Strategy::ALL {
            if strategy.is_some_and(|c| (0..opt.threads).any(|t| c.for_thread(t) == s)) {
                rep.per_strategy
                    .insert(s.name().to_string(), *rs.strategy(s));
            }
        }
    }
    for (t, st) in shared.stats.iter().enumerate() {
        let emitted = st.emitted.load(Ordering::Relaxed);
        let h_emitted = st.handler_emitted.load(Ordering::Relaxed);
        rep.emitted += emitted + h_emitted;
        rep.handler_events += h_emitted;
        rep.local_commits += st.local.load(Ordering::Relaxed);
        rep.remote_commits += st.remote.load(Ordering::Relaxed);
        rep.migrations += st.migrations.load(Ordering::Relaxed);
        rep.lost_full += st.lost[0].load(Ordering::Relaxed);
        rep.lost_stalled += st.lost[1].load(Ordering::Relaxed);
        rep.lost_too_big += st.lost[2].load(Ordering::Relaxed);
        // Main stream: exact identity of every sequence number.
        let mut state = vec![0u8; emitted as usize]; // 0 missing, 1 delivered, 2 lost
        for &s in &lost_main[t] {
            if let Some(x) = state.get_mut(s as usize) {
                *x = 2;
            }
        }
        for (stream, seen_stream) in seen[t].iter().enumerate() {
            let mut ev = seen_stream.events.clone();
            rep.delivered += ev.len() as u64;
            ev.sort_by_key(|e| e.0);
            rep.out_of_order += ev.windows(2).filter(|w| w[1].1 <= w[0].1).count() as u64;
            if stream == 0 {
                for &(_, s) in &ev {
                    match state.get_mut(s as usize) {
                        Some(x @ 0) => *x = 1,
                        _ => rep.duplicates += 1, // delivered twice, delivered although lost, or never emitted
                    }
                }
                rep.unexplained += state.iter().filter(|&&x| x == 0).count() as u64;
            } else {
                let mut seqs: Vec<u64> = ev.iter().map(|e| e.1).collect();
                seqs.sort_unstable();
                let n = seqs.len() as u64;
                seqs.dedup();
                rep.duplicates += n - seqs.len() as u64;
                rep.duplicates += seqs.iter().filter(|&&s| s >= h_emitted).count() as u64;
                let h_lost = st.handler_lost.load(Ordering::Relaxed);
                rep.unexplained += h_emitted.saturating_sub(seqs.len() as u64 + h_lost);
            }
        }
    }
    rep.lost = rep.lost_full + rep.lost_stalled + rep.lost_too_big;
    rep.lost_in_buffers = (0..shared.chan.num_cpus())
        .filter_map(|c| shared.chan.cpu_stats(c))
        .map(|s| s.lost_total())
        .sum();
    if bad != 0 {
        // SAFETY: the PROT_NONE page mapped above; no writer runs any more.
        unsafe { libc::munmap(bad as *mut libc::c_void, 4096) };
    }
    rep.ok = rep.duplicates == 0
        && rep.faulted == rep.faulted_expected
        && rep.unexplained == 0
        && rep.out_of_order == 0
        && rep.corrupt == 0
        && rep.lost == rep.lost_in_buffers
        && rep.delivered + rep.lost == rep.emitted;
    Ok(rep)
}

/// Human-readable summary.
pub fn print_report(r: &StressReport) {
    println!(
        "faultline stress: {} threads, {} path, {} mode, {:.2} s",
        r.threads, r.sync, r.mode, r.seconds
    );
    println!(
        "  events emitted     {:>12}  ({} from SIGUSR1 handlers)",
        r.emitted, r.handler_events
    );
    println!(
        "  delivered          {:>12}  in {} packets",
        r.delivered, r.packets
    );
    println!(
        "  lost (counted)     {:>12}  full {} / stalled writer {} / too big {}; buffers' counters say {}",
        r.lost, r.lost_full, r.lost_stalled, r.lost_too_big, r.lost_in_buffers
    );
    if r.strategy != "direct" {
        println!(
            "  through recorder   {:>12}  faulted {} (expected {}), held faults served {}",
            r.strategy, r.faulted, r.faulted_expected, r.held_faults
        );
        for (name, st) in &r.per_strategy {
            println!(
                "    {name:<20} {:>10} events, {} restarts, {} fallbacks",
                st.events, st.restarts, st.fallbacks
            );
        }
    }
    println!("  duplicates         {:>12}", r.duplicates);
    println!("  unexplained gaps   {:>12}", r.unexplained);
    println!("  out of order       {:>12}", r.out_of_order);
    println!("  corrupt payloads   {:>12}", r.corrupt);
    println!("  LOCAL commits      {:>12}", r.local_commits);
    println!(
        "  REMOTE commits     {:>12}  ({} forced migrations between reserve and commit)",
        r.remote_commits, r.migrations
    );
    println!(
        "  rseq aborts        {:>12}  ({} signals sent)",
        r.rseq_aborts, r.signals_sent
    );
    println!(
        "  verdict: {}",
        if r.ok {
            "OK: every event delivered exactly once, in order, byte-exact, or counted as lost"
        } else {
            "FAILED"
        }
    );
}
