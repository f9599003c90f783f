//! One case of shared-memory fuzzing, shared by the deterministic test `tests/shm_fuzz.rs` and
//! the cargo-fuzz target `fuzz/fuzz_targets/shm.rs` (which includes this file by path).
//!
//! The input describes a channel and what a buggy or hostile traced program did to it:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | geometry: sub-buffer size `256 << (b & 3)`, `2 << (b >> 2 & 1)` sub-buffers, overwrite mode if bit 3, one extra CPU buffer if bit 4 |
//! | 1 | events written first (id 0 with an 8-byte payload / id 1 empty, alternating; every 37th reservation is left uncommitted, a dead writer) |
//! | 2 | packets the consumer takes before the damage (`b % 4`) |
//! | 3.. | patches of 10 bytes: `u16` word index, `u64` value (little-endian). Index bit 15 set: word `index % 32` of the channel header; otherwise word `index & 0x7fff` (modulo the span) from the start of the written CPU's buffer region |
//!
//! [`case`] builds the channel (atomic sync mode, on the CPU the caller is pinned to), applies the
//! patches through a second mapping, then runs what `faultline record` runs on such memory:
//! the consumer on every CPU buffer, dead-writer recovery, flushes, and — on a byte-for-byte
//! copy of the damaged memory — the drain writing a CTF trace, its summary, and a read-back of
//! the trace. Properties (a violation is an `Err`; libFuzzer turns it into a crash):
//! no panic (and, in a build with overflow checks, no arithmetic overflow); every error is one
//! line and names the CPU buffer; every packet the consumer hands out has a sound record chain;
//! the trace directory opens; without patches, nothing is rejected, the trace reads back
//! whole, and in discard mode every committed event (not taken before) is in it.

use faultline::drain::{Drain, DrainConfig};
use faultline::Summary;
use faultline_ctf::{ClockDesc, EnvDesc, Filter, Trace, TraceDesc, TraceWriter};
use faultline_ringbuf::{records, Channel, ChannelConfig, ClockKind, Consumer, Mode, SyncMode};
use faultline_schema::{EventDesc, FieldDesc, FieldType};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const UUID: [u8; 16] = *b"faultline-shmfuz";

const COUNT: EventDesc = EventDesc {
    provider: "shm",
    name: "count",
    fields: &[FieldDesc {
        name: "n",
        ty: FieldType::U64,
    }],
};
const TICK: EventDesc = EventDesc {
    provider: "shm",
    name: "tick",
    fields: &[],
};

fn desc() -> TraceDesc {
    TraceDesc {
        uuid: UUID,
        clock: ClockDesc {
            name: "monotonic".into(),
            freq_hz: 1_000_000_000,
            offset_s: 0,
            offset_ticks: 0,
            description: "CLOCK_MONOTONIC".into(),
        },
        env: EnvDesc {
            hostname: "fuzz".into(),
            procname: "fuzz".into(),
            tracer_major: 0,
            tracer_minor: 1,
            extra: vec![],
        },
        events: vec![(0, COUNT), (1, TICK)],
    }
}

/// A second mapping of a channel's memory (what the traced program sees).
struct Shm(memmap2::MmapRaw);

impl Shm {
    fn new(ch: &Channel) -> Result<Shm, String> {
        let fd = ch.fd().try_clone_to_owned().map_err(|e| e.to_string())?;
        let raw = memmap2::MmapOptions::new()
            .len(ch.map_len())
            .map_raw(&std::fs::File::from(fd))
            .map_err(|e| e.to_string())?;
        Ok(Shm(raw))
    }
    fn write_u64(&self, off: usize, v: u64) {
        assert!(off + 8 <= self.0.len());
        // SAFETY: in bounds (asserted); the memory is shared with the channel under test,
        // which must cope with any value anywhere (that is the point).
        unsafe { std::ptr::write_unaligned(self.0.as_mut_ptr().add(off) as *mut u64, v) }
    }
}

/// Byte offset of `cpu`'s region in a channel's memory (layout.rs: a 4 KiB channel header,
/// then per CPU a 256-byte header and 128 bytes of counters per sub-buffer, page aligned, then
/// the data, page aligned).
fn region(ch: &Channel, cpu: u32) -> usize {
    let buf = (ch.subbuf_size() * ch.num_subbuf()) as usize;
    let meta = (256 + 128 * ch.num_subbuf() as usize).div_ceil(4096) * 4096;
    4096 + cpu as usize * (meta + buf).div_ceil(4096) * 4096
}

fn one_line(what: &str, msg: &str) -> Result<(), String> {
    if msg.is_empty() || msg.contains('\n') {
        return Err(format!("{what}: not one line: {msg:?}"));
    }
    Ok(())
}

fn names_cpu(what: &str, msg: &str) -> Result<(), String> {
    one_line(what, msg)?;
    if !msg.contains("CPU ") {
        return Err(format!("{what}: does not name the CPU buffer: {msg}"));
    }
    Ok(())
}

/// Take up to `max` packets of `cpu`, checking what the consumer hands out; returns the
/// number of events in them.
fn take(cons: &Consumer, cpu: u32, max: usize) -> Result<u64, String> {
    let mut events = 0;
    let mut buf = Vec::new();
    let sub = cons.channel().subbuf_size() as usize;
    for _ in 0..max {
        match cons.next_packet(cpu, &mut buf) {
            Ok(Some(info)) => {
                if info.cpu != cpu || info.header.cpu_id != cpu {
                    return Err(format!(
                        "packet of CPU {cpu} says CPU {}",
                        info.header.cpu_id
                    ));
                }
                if info.content_len < 128 || info.content_len >= sub || buf.len() != sub {
                    return Err(format!("content length {} of {sub}", info.content_len));
                }
                for r in records(&buf, info.content_len) {
                    r.map_err(|e| format!("consumer handed out a broken record chain: {e}"))?;
                    events += 1;
                }
            }
            Ok(None) => return Ok(events),
            Err(e) => {
                let msg = e.to_string();
                names_cpu("consumer error", &msg)?;
                if !msg.starts_with(&format!("CPU {cpu} buffer corrupted")) {
                    return Err(format!("consumer error names another buffer: {msg}"));
                }
                return Ok(events);
            }
        }
    }
    Ok(events)
}

/// Run one case (module docs). `cpu`: the CPU the calling thread is pinned to; `dir`: a path
/// for the trace (must not exist; removed afterwards).
pub fn case(data: &[u8], cpu: u32, dir: &Path) -> Result<(), String> {
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let (g, n_events, n_taken) = (b(0), b(1) as u32, b(2) % 4);
    let cfg = ChannelConfig {
        subbuf_size: 256 << (g & 3),
        num_subbuf: 2 << (g >> 2 & 1),
        mode: if g & 8 != 0 {
            Mode::Overwrite
        } else {
            Mode::Discard
        },
        sync: SyncMode::Atomic,
        clock: ClockKind::Monotonic,
        num_cpus: Some(cpu + 1 + (g >> 4 & 1) as u32),
        index: faultline_ringbuf::BufferIndex::Cpu,
        uuid: UUID,
        inject_spins: 0,
    };
    let ch = Channel::create(&cfg).map_err(|e| format!("create: {e}"))?;
    // Traffic: what a correct writer leaves.
    let mut committed = 0u64;
    for i in 0..n_events {
        let id = i % 2;
        let Ok(mut r) = ch.reserve(id, if id == 0 { 8 } else { 0 }) else {
            continue;
        };
        if i % 37 == 36 {
            std::mem::forget(r); // a writer that died between reserve and commit
            continue;
        }
        if id == 0 {
            r.payload().copy_from_slice(&(i as u64).to_le_bytes());
        }
        r.commit();
        committed += 1;
    }
    let cons = Consumer::new(&ch);
    let taken = take(&cons, cpu, n_taken as usize)?;
    // The damage.
    let shm = Shm::new(&ch)?;
    let (start, len) = (region(&ch, cpu), ch.map_len());
    let span = (len - start) / 8;
    let mut patches = data.get(3..).unwrap_or(&[]).chunks_exact(10).peekable();
    let patched = patches.peek().is_some();
    let mut header_patched = false;
    for p in patches {
        let idx = u16::from_le_bytes([p[0], p[1]]) as usize;
        let v = u64::from_le_bytes(p[2..10].try_into().unwrap());
        if idx & 0x8000 != 0 {
            header_patched = true;
            shm.write_u64((idx % 32) * 8, v);
        } else {
            shm.write_u64(start + ((idx & 0x7fff) % span) * 8, v);
        }
    }
    if header_patched {
        // Opening a damaged channel (what a recorder handed a memfd does) fails cleanly.
        let fd = ch.fd().try_clone_to_owned().map_err(|e| e.to_string())?;
        if let Err(e) = Channel::open(std::fs::File::from(fd)) {
            one_line("open error", &e.to_string())?;
        }
    }
    // A byte-for-byte copy for the drain, before the consumer below changes anything.
    let ch2 = Arc::new(Channel::create(&cfg).map_err(|e| format!("create: {e}"))?);
    {
        let shm2 = Shm::new(&ch2)?;
        // SAFETY: both mappings are `len` bytes long; distinct memfds, so no overlap.
        unsafe { std::ptr::copy_nonoverlapping(shm.0.as_ptr(), shm2.0.as_mut_ptr(), len) };
    }

    // 1. The consumer, recovery and flushes on every CPU buffer.
    let max = 2 * ch.num_subbuf() as usize + 4;
    for c in 0..ch.num_cpus() {
        let _ = cons.ready(c);
        if let Some(st) = ch.cpu_stats(c) {
            if let Err(e) = st.checked_lost_total() {
                names_cpu("loss total", &e.to_string())?;
            }
        }
        take(&cons, c, max)?;
    }
    for r in &ch.recover_dead_writers().cpus {
        if let Some(e) = &r.error {
            one_line("recovery error", e)?;
        }
    }
    for c in 0..ch.num_cpus() {
        take(&cons, c, max)?;
    }
    for e in ch.flush_all(true) {
        names_cpu("flush error", &e.to_string())?;
    }
    for c in 0..ch.num_cpus() {
        take(&cons, c, max)?;
    }

    // 2. The drain, as `faultline record` runs it: poll, recover (the program is gone), finish.
    let writer = TraceWriter::create(dir, &desc()).map_err(|e| format!("trace writer: {e}"))?;
    let dcfg = DrainConfig {
        flush_interval: Duration::ZERO,
        wait_timeout: Duration::from_millis(1),
        verbose: false,
        ..DrainConfig::default()
    };
    let mut drain = Drain::new(ch2.clone(), writer, dcfg);
    drain.poll();
    ch2.recover_dead_writers();
    drain.poll();
    let (stats, fin) = drain.finish();
    if let Err(e) = &fin {
        one_line("finish error", &e.to_string())?;
    }
    for e in &stats.read_errors {
        names_cpu("drain read error", e)?;
    }
    for e in stats.flush_errors.iter().chain(&stats.first_write_error) {
        one_line("drain error", e)?;
    }
    let names: BTreeMap<u32, String> = [(0, "shm:count".into()), (1, "shm:tick".into())].into();
    let mut summary = Summary::default();
    summary.add_drain(&stats, &names);
    summary.add_channel(&ch2);
    for e in &summary.shm_errors {
        names_cpu("summary", e)?;
    }
    let _ = summary.lost_total();
    // Undamaged: nothing rejected; in discard mode every committed event is in the trace
    // (overwrite mode loses the oldest by design).
    let expect = (cfg.mode == Mode::Discard).then(|| committed - taken);
    if !patched
        && (stats.packets_rejected != 0
            || !stats.read_errors.is_empty()
            || expect.is_some_and(|n| n != stats.events_written))
    {
        return Err(format!(
            "undamaged channel: {committed} events committed, {taken} taken before, {} written, \
             {} packets rejected ({:?}, {:?})",
            stats.events_written, stats.packets_rejected, stats.last_write_error, stats.read_errors
        ));
    }
    // 3. The trace stays readable.
    let trace = Trace::open(dir).map_err(|e| format!("the trace does not open: {e}"))?;
    let mut read = 0u64;
    for ev in trace.events(&Filter::default()).take(100_000) {
        match ev {
            Ok(_) => read += 1,
            Err(e) => {
                one_line("read-back error", &e.to_string())?;
                if !patched {
                    return Err(format!("undamaged channel: read-back error {e}"));
                }
                break;
            }
        }
    }
    if !patched && read != stats.events_written {
        return Err(format!(
            "undamaged channel: {} events written, {read} read back",
            stats.events_written
        ));
    }
    drop(trace);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
