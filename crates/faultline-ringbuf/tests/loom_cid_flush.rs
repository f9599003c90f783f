//! Model check of the flush of a concurrency-id buffer (`Channel::flush_all` on
//! `BufferIndex::Cid` channels; `channel.rs`, "Flushing a concurrency-id buffer").
//!
//! Model: one buffer of 10-byte sub-buffers (1-byte packet header) whose `write_offset` starts
//! at 5, inside sub-buffer 0. Two writers, A and B, make one 2-byte reservation each. Both may
//! hold concurrency id 0 (at different times): a critical section keyed on id 0 holds id 0's
//! mutex — the kernel aborts a section whose thread stops running, and two running threads
//! never hold the same id, so sections on one id never overlap — and does its compare and its
//! commit store inside it. The flusher, another thread that holds no particular id, closes the
//! sub-buffer holding the offset: it reads the end timestamp, compare-and-swaps `old` ->
//! `new | MARK`, issues the membarrier (acquiring and releasing id 0's mutex: the section in
//! progress, if any, has finished), then compare-and-swaps `new | MARK` -> `new`; the range
//! `[old, new)` is its own if that succeeds **or** if `flush_ack` holds the mark. A writer
//! that reads a marked offset confirms it in a section on id 0 (`flush_ack = mark`, then the
//! offset unmarked) and starts again; it never waits for the flusher and never drops its
//! event.
//!
//! Properties, over every interleaving: the reservations (the writers' and the flusher's) are
//! disjoint; every sub-buffer below the final offset's was closed exactly once (by a writer's
//! switch or by the flusher) and none twice; each writer reserved (none dropped); timestamps
//! are ordered within the buffer (every record of a sub-buffer is no later than its end
//! timestamp, every record of a later sub-buffer no earlier).
//!
//! Deliberately broken variants, each of which must fail: a writer that gives up at the mark
//! (the former protocol, where it waited a few yields and then dropped its event); without the
//! membarrier (a section
//! that compared `old` before the mark overwrites the flusher's unmarking: overlap); a
//! flusher that ignores `flush_ack` (a confirmed flush is taken for a lost race, and
//! sub-buffer 0 is never closed); a confirmation outside a section of the id (it races with
//! a section that compared `old`: overlap); the end timestamp read after the membarrier, as
//! the flush did when writers could not confirm (a writer that confirmed has already written
//! the next sub-buffer with an earlier timestamp).
//!
//! Every shared word is a value under a loom mutex (sequentially consistent): the protocol is
//! about which interleavings of sections and compare-and-swaps are possible, and x86 gives
//! the locked compare-and-swap and the sections' plain accesses a single order. Modelled with
//! loom atomics, loom 0.7 accepts executions C11 forbids (a compare-and-swap reading a value
//! older than a store that happens before it), and the model would fail for the model
//! checker's reasons, not the protocol's.

use loom::sync::{Arc, Mutex};
use loom::thread;

const MARK: u64 = 1 << 62;
const SUBBUF: u64 = 10;
const HEADER: u64 = 1;
const RECORD: u64 = 2;
const START: u64 = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Correct,
    NoMembarrier,
    IgnoreAck,
    ConfirmOutsideSection,
    TimestampAfterMembarrier,
    DropAtMark,
}

/// A shared word, sequentially consistent.
struct Word(Mutex<u64>);

impl Word {
    fn new(v: u64) -> Self {
        Word(Mutex::new(v))
    }
    fn load(&self) -> u64 {
        *self.0.lock().unwrap()
    }
    fn store(&self, v: u64) {
        *self.0.lock().unwrap() = v;
    }
    fn cas(&self, old: u64, new: u64) -> bool {
        let mut g = self.0.lock().unwrap();
        if *g != old {
            return false;
        }
        *g = new;
        true
    }
    /// The clock: each read returns a larger value.
    fn tick(&self) -> u64 {
        let mut g = self.0.lock().unwrap();
        *g += 1;
        *g
    }
}

struct Buf {
    write_offset: Word,
    flush_ack: Word,
    /// Concurrency id 0: held by a critical section keyed on it.
    id0: Mutex<()>,
    clock: Word,
    /// (range start, range end) of every reservation.
    reservations: Mutex<Vec<(u64, u64)>>,
    /// (record position, timestamp) of every record.
    records: Mutex<Vec<(u64, u64)>>,
    /// (sub-buffer, end timestamp) of every close.
    closes: Mutex<Vec<(u64, u64)>>,
}

/// One writer: one record, whatever happens.
fn write(b: &Buf, v: Variant) {
    loop {
        let raw = b.write_offset.load();
        if raw & MARK != 0 {
            if v == Variant::DropAtMark {
                return;
            }
            if v == Variant::ConfirmOutsideSection {
                b.flush_ack.store(raw);
                b.write_offset.cas(raw, raw & !MARK);
            } else {
                // confirm_flush: compare, try-store the acknowledgement, commit.
                let _cs = b.id0.lock().unwrap();
                if b.write_offset.load() == raw {
                    b.flush_ack.store(raw);
                    b.write_offset.store(raw & !MARK);
                }
            }
            continue;
        }
        let sb_off = raw % SUBBUF;
        let (pos, closes) = if sb_off != 0 && sb_off + RECORD < SUBBUF {
            (raw, false)
        } else {
            // Switch: pad out the current sub-buffer (closing it if it holds anything) and
            // open the next one.
            let next = if sb_off == 0 {
                raw
            } else {
                raw - sb_off + SUBBUF
            };
            (next + HEADER, sb_off != 0)
        };
        let end = pos + RECORD;
        let ts = {
            // The reserve section: compare, read the clock, commit.
            let _cs = b.id0.lock().unwrap();
            if b.write_offset.load() != raw {
                continue;
            }
            let ts = b.clock.tick();
            b.write_offset.store(end);
            ts
        };
        b.reservations.lock().unwrap().push((raw, end));
        b.records.lock().unwrap().push((pos, ts));
        if closes {
            b.closes.lock().unwrap().push((raw / SUBBUF, ts));
        }
        return;
    }
}

/// The flusher: close the sub-buffer holding the offset, if it holds a record.
fn flush(b: &Buf, v: Variant) {
    loop {
        let old = b.write_offset.load();
        let sb_off = old % SUBBUF;
        if sb_off == 0 || sb_off == HEADER {
            return;
        }
        let new = old - sb_off + SUBBUF;
        let mark = new | MARK;
        let mut ts = b.clock.tick();
        if !b.write_offset.cas(old, mark) {
            continue;
        }
        if v != Variant::NoMembarrier {
            drop(b.id0.lock().unwrap());
        }
        if v == Variant::TimestampAfterMembarrier {
            ts = b.clock.tick();
        }
        let unmarked = b.write_offset.cas(mark, new);
        if unmarked || (v != Variant::IgnoreAck && b.flush_ack.load() == mark) {
            b.reservations.lock().unwrap().push((old, new));
            b.closes.lock().unwrap().push((old / SUBBUF, ts));
            return;
        }
    }
}

fn model(v: Variant) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let b = Arc::new(Buf {
            write_offset: Word::new(START),
            flush_ack: Word::new(0),
            id0: Mutex::new(()),
            clock: Word::new(0),
            reservations: Mutex::new(vec![(0, START)]),
            records: Mutex::new(vec![(HEADER, 0)]),
            closes: Mutex::new(Vec::new()),
        });
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || write(&b, v))
            })
            .collect();
        flush(&b, v);
        for w in writers {
            w.join().unwrap();
        }
        let mut res = b.reservations.lock().unwrap().clone();
        res.sort();
        for p in res.windows(2) {
            assert!(p[0].1 <= p[1].0, "overlapping reservations: {res:?}");
        }
        let recs = b.records.lock().unwrap().clone();
        assert_eq!(recs.len(), 3, "a writer dropped its event");
        let closes = b.closes.lock().unwrap().clone();
        let last = b.write_offset.load() / SUBBUF;
        for sb in 0..=last {
            let n = closes.iter().filter(|c| c.0 == sb).count();
            let want = usize::from(sb < last);
            assert_eq!(
                n, want,
                "sub-buffer {sb} closed {n} times: {closes:?}, {res:?}"
            );
        }
        for &(sb, end_ts) in &closes {
            for &(pos, ts) in &recs {
                let ok = if pos / SUBBUF <= sb {
                    ts <= end_ts
                } else {
                    ts >= end_ts
                };
                assert!(
                    ok,
                    "time order: record at {pos} (t {ts}) vs end of sub-buffer {sb} (t {end_ts})"
                );
            }
        }
    });
}

#[test]
fn cid_flush_with_confirming_writers_is_exact() {
    model(Variant::Correct);
}

#[test]
#[should_panic(expected = "overlapping reservations")]
fn broken_cid_flush_without_membarrier_overlaps() {
    model(Variant::NoMembarrier);
}

#[test]
#[should_panic(expected = "sub-buffer 0 closed 0 times")]
fn broken_cid_flush_ignoring_the_acknowledgement_never_closes() {
    model(Variant::IgnoreAck);
}

#[test]
#[should_panic(expected = "overlapping reservations")]
fn broken_cid_flush_confirmed_outside_a_section_overlaps() {
    model(Variant::ConfirmOutsideSection);
}

#[test]
#[should_panic(expected = "time order")]
fn broken_cid_flush_timestamp_after_membarrier_breaks_time_order() {
    model(Variant::TimestampAfterMembarrier);
}

#[test]
#[should_panic(expected = "a writer dropped its event")]
fn broken_cid_flush_writer_giving_up_at_the_mark_drops() {
    model(Variant::DropAtMark);
}
