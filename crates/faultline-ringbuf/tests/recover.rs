//! Dead-writer recovery (brief §3.5) on its own: a writer "dies" (its Reservation is leaked)
//! after writing its header, or before writing it; recovery completes the sub-buffer, every
//! committed record is delivered, the dead one is counted.

use faultline_ringbuf::*;

fn channel(sync: SyncMode) -> Channel {
    Channel::create(&ChannelConfig {
        subbuf_size: 4096,
        num_subbuf: 4,
        mode: Mode::Discard,
        sync,
        ..Default::default()
    })
    .unwrap()
}

fn syncs() -> Vec<SyncMode> {
    if faultline_rseq::available() {
        vec![SyncMode::Rseq, SyncMode::Atomic]
    } else {
        vec![SyncMode::Atomic]
    }
}

/// (id, payload) of every delivered record.
fn drain(ch: &Channel) -> Vec<(u32, Vec<u8>)> {
    let cons = Consumer::new(ch);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for cpu in cons.active_cpus() {
        while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
            for r in records(&buf, info.content_len) {
                let r = r.unwrap();
                out.push((r.id, r.payload.to_vec()));
            }
        }
    }
    out
}

fn commit(ch: &Channel, id: u32, byte: u8) {
    let mut r = ch.reserve(id, 24).unwrap();
    r.payload().fill(byte);
    r.commit();
}

/// Run `die` on a reservation of 24 bytes between two committed records, then recover.
fn scenario(sync: SyncMode, zero_header: bool) {
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    let ch = channel(sync);
    commit(&ch, 1, 0xa1);
    let mut dead = ch.reserve(2, 24).unwrap();
    if zero_header {
        // The writer died between its reservation and its header store: header and payload
        // are still the zeros a fresh (or consumer-zeroed) sub-buffer holds.
        let p = dead.payload().as_mut_ptr();
        // SAFETY: the 16-byte record header sits right before the payload, inside the same
        // exclusive reservation; nobody else writes it.
        unsafe { std::ptr::write_bytes(p.sub(16), 0, 16) };
        dead.payload().fill(0);
    } else {
        dead.payload().fill(0xdd); // died while copying, after the header
    }
    std::mem::forget(dead); // never committed, never dropped: the writer is gone
    commit(&ch, 3, 0xc3);
    // Without recovery the sub-buffer never completes, even after a flush.
    let _ = ch.flush_all(false);
    assert!(
        drain(&ch).is_empty(),
        "{sync:?}: incomplete sub-buffer delivered"
    );
    let rep = ch.recover_dead_writers();
    assert_eq!(
        rep.records(),
        1,
        "{sync:?} zero_header={zero_header}: {rep:?}"
    );
    assert!(rep.subbufs() >= 1);
    let got = drain(&ch);
    assert_eq!(
        got,
        vec![(1, vec![0xa1; 24]), (3, vec![0xc3; 24])],
        "{sync:?} zero_header={zero_header}"
    );
    let st = ch.cpu_stats(cpu).unwrap();
    assert_eq!(st.lost_stalled, 1, "the dead record is counted");
    // A second call finds nothing to do.
    assert_eq!(ch.recover_dead_writers().records(), 0);
}

#[test]
fn dead_writer_after_its_header_is_recovered() {
    for s in syncs() {
        scenario(s, false);
    }
}

#[test]
fn dead_writer_before_its_header_is_recovered() {
    for s in syncs() {
        scenario(s, true);
    }
}

/// Recovery reads shared memory it cannot trust: garbage anywhere in a CPU's buffer (counters,
/// offsets, packet headers, records) must give a report or an error, never a panic or an
/// out-of-bounds access.
#[test]
fn recovery_on_garbage_never_panics() {
    use std::os::fd::AsFd;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let ch = Channel::create(&ChannelConfig {
            subbuf_size: 1024,
            num_subbuf: 4,
            mode: if round % 2 == 0 {
                Mode::Discard
            } else {
                Mode::Overwrite
            },
            sync: SyncMode::Atomic,
            ..Default::default()
        })
        .unwrap();
        for i in 0..30u32 {
            let mut r = ch.reserve(i, 20).unwrap();
            r.payload().fill(i as u8);
            r.commit();
        }
        std::mem::forget(ch.reserve(99, 20).unwrap());
        let file = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
        let raw = memmap2::MmapOptions::new()
            .len(ch.map_len())
            .map_raw(&file)
            .unwrap();
        let base = raw.as_mut_ptr();
        // Scribble over the CPU regions (everything after the 4 KiB channel header).
        let n = 1 + (next() % 64) as usize;
        for _ in 0..n {
            let at = (4096 + (next() as usize % (ch.map_len() - 4096 - 8))) & !7;
            let v = match next() % 4 {
                0 => 0,
                1 => u64::MAX,
                2 => next() % 8192,
                _ => next(),
            };
            // SAFETY: test-only write of 8 bytes inside the mapping (bounds above).
            unsafe { std::ptr::write_unaligned(base.add(at) as *mut u64, v) };
        }
        let _ = ch.recover_dead_writers();
        let cons = Consumer::new(&ch);
        let mut buf = Vec::new();
        for cpu in cons.active_cpus() {
            for _ in 0..16 {
                match cons.next_packet(cpu, &mut buf) {
                    Ok(Some(info)) => {
                        for r in records(&buf, info.content_len) {
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                    _ => break,
                }
            }
        }
    }
}
