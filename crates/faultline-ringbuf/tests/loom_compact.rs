//! Model check of the compact-header decision (`channel.rs`, "Compact headers") under loom.
//!
//! Model: one CPU buffer. Its rseq critical section is a mutex (atomic with respect to every
//! other section on that CPU); `write_offset` counts records (slot `k` is the k-th record);
//! the clock is an atomic that advances 0.75 × 2^27 ticks per read, so a record is compact
//! exactly when the floor it read is the timestamp of the clock read right before its own.
//! Each writer: acquire load of `write_offset`, relaxed load of the floor `last_ts`, then the
//! section (compare, read the clock, decide compact with the real
//! `faultline_wire::compact_fits`, store the header (the timestamp and the form into the
//! slot), store the new offset with release), then the relaxed store of its timestamp as the
//! floor. A reader then rebuilds every compact timestamp from the previous record's, with the
//! real `faultline_wire::rebuild_timestamp`, from the packet's `timestamp_begin` (0) on. An
//! observer thread meanwhile acquire-loads `write_offset` once and looks at every slot below
//! it: what dead-writer recovery would find if every writer were killed at that moment.
//!
//! Properties: every rebuilt timestamp equals the one written; no reservation is ever visible
//! without its header (`channel.rs`, "Record headers inside the reserve section"). Broken
//! variants: the clock read (and the decision) before the section, as a writer computing the
//! record size up front would: loom finds the execution where a later reservation carries an
//! older timestamp; the header stored after the section (the layout-3 writer): loom finds the
//! observer seeing a reservation without its header.

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

const STEP: u64 = 3 << 25; // 0.75 × 2^27
const SLOTS: usize = 4;

struct Buf {
    cpu: Mutex<()>,
    write_offset: AtomicU64,
    last_ts: AtomicU64,
    clock: AtomicU64,
    /// Per slot: timestamp << 1 | compact, 0 = no header yet.
    slots: [AtomicU64; SLOTS],
}

fn now(b: &Buf) -> u64 {
    b.clock.fetch_add(STEP, Ordering::Relaxed) + STEP
}

fn reserve(b: &Buf, decide_inside: bool, header_inside: bool) {
    loop {
        // Broken: the timestamp (hence the record size) taken first, as a writer sizing its
        // record before it looks at the buffer would.
        let early = (!decide_inside).then(|| now(b));
        let old = b.write_offset.load(Ordering::Acquire);
        let floor = b.last_ts.load(Ordering::Relaxed);
        let ts = {
            let _cs = b.cpu.lock().unwrap();
            if b.write_offset.load(Ordering::Relaxed) != old {
                continue;
            }
            let ts = early.unwrap_or_else(|| now(b));
            if header_inside {
                let compact = faultline_wire::compact_fits(0, 8, floor, ts);
                b.slots[old as usize].store(ts << 1 | compact as u64, Ordering::Relaxed);
            }
            b.write_offset.store(old + 1, Ordering::Release);
            ts
        };
        if !header_inside {
            let compact = faultline_wire::compact_fits(0, 8, floor, ts);
            b.slots[old as usize].store(ts << 1 | compact as u64, Ordering::Relaxed);
        }
        b.last_ts.store(ts, Ordering::Relaxed);
        return;
    }
}

/// Two writers of `per_writer` reservations each; with `observe`, the observer thread too.
fn run(decide_inside: bool, header_inside: bool, per_writer: usize, observe: bool) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let b = Arc::new(Buf {
            cpu: Mutex::new(()),
            write_offset: AtomicU64::new(0),
            last_ts: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            slots: Default::default(),
        });
        let observer = observe.then(|| {
            let b = b.clone();
            thread::spawn(move || {
                // Timestamps start above 0, so a written slot is never 0.
                // Acquire: pairs with the writer's release store of write_offset (the model's
                // section commit), so the slots below it hold what was stored before it.
                let w = b.write_offset.load(Ordering::Acquire) as usize;
                for (k, s) in b.slots[..w.min(SLOTS)].iter().enumerate() {
                    assert_ne!(
                        s.load(Ordering::Relaxed),
                        0,
                        "record {k}: reservation visible without its header"
                    );
                }
            })
        });
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || {
                    for _ in 0..per_writer {
                        reserve(&b, decide_inside, header_inside);
                    }
                })
            })
            .collect();
        if let Some(o) = observer {
            o.join().unwrap();
        }
        for h in hs {
            h.join().unwrap();
        }
        let mut prev = 0u64; // timestamp_begin
        for (k, s) in b.slots[..2 * per_writer].iter().enumerate() {
            let v = s.load(Ordering::Relaxed);
            let (ts, compact) = (v >> 1, v & 1 == 1);
            let got = if compact {
                faultline_wire::rebuild_timestamp(prev, faultline_wire::compact_word(0, ts) >> 5)
            } else {
                ts
            };
            assert_eq!(got, ts, "record {k}: compact timestamp rebuilt wrong");
            prev = ts;
        }
    });
}

#[test]
fn compact_decision_inside_the_section_is_exact() {
    run(true, true, 2, false);
}

/// The observer (a writer killed at any moment, as recovery would find the buffer) never sees
/// a reservation without its header.
#[test]
fn header_inside_the_section_is_never_missing() {
    run(true, true, 1, true);
}

/// The deliberately broken variant: the timestamp (and so the size) chosen before the section.
#[test]
#[should_panic(expected = "compact timestamp rebuilt wrong")]
fn compact_decision_before_the_section_is_caught() {
    run(false, true, 2, false);
}

/// The deliberately broken variant: the header stored after the section (layout 3).
#[test]
#[should_panic(expected = "reservation visible without its header")]
fn header_after_the_section_is_caught() {
    run(true, false, 1, true);
}
