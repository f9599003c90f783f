//! The consumer's in-place path (`Consumer::take_in_place`, `take_in_place_after`,
//! `release`): consecutive sub-buffers held together and released in order; nothing zeroed on
//! release (dead-writer recovery tells the previous lap's bytes from this lap's by time where
//! every header is extended; where compact headers are possible no reservation is ever
//! without its header).

use faultline_ringbuf::*;

fn syncs() -> Vec<SyncMode> {
    if faultline_rseq::available() {
        vec![SyncMode::Rseq, SyncMode::Atomic]
    } else {
        vec![SyncMode::Atomic]
    }
}

fn commit_id(ch: &Channel, id: u32) {
    let mut r = ch.reserve(id, 24).unwrap();
    r.payload().fill(id as u8);
    r.commit();
}

/// Take everything complete on `cpu` in place, several sub-buffers at a time, and release it;
/// returns the ids of the records (walked from the mapping while held).
fn take_all(ch: &Channel, cpu: u32) -> Vec<u32> {
    let cons = Consumer::new(ch);
    let mut ids = Vec::new();
    loop {
        let mut held: Vec<InPlacePacket> = Vec::new();
        loop {
            let next = match held.last() {
                None => cons.take_in_place(cpu).unwrap(),
                Some(p) => cons.take_in_place_after(p).unwrap(),
            };
            match next {
                Some(p) => held.push(p),
                None => break,
            }
        }
        if held.is_empty() {
            return ids;
        }
        for (k, p) in held.iter().enumerate() {
            if k > 0 {
                assert_eq!(
                    p.info.header.packet_seq_num,
                    held[k - 1].info.header.packet_seq_num + 1
                );
            }
            let mut buf = vec![0u8; p.info.content_len];
            // SAFETY: content_len bytes of a sub-buffer we hold, inside the mapping.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), buf.as_mut_ptr(), buf.len()) };
            ids.extend(records(&buf, buf.len()).map(|r| r.unwrap().id));
        }
        for p in held {
            cons.release(p);
        }
    }
}

/// A second mapping of the channel, for the test to play the dead writer.
struct Shm(memmap2::MmapRaw);

impl Shm {
    fn new(ch: &Channel) -> Shm {
        use std::os::fd::AsFd;
        let file = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
        Shm(memmap2::MmapOptions::new()
            .len(ch.map_len())
            .map_raw(&file)
            .unwrap())
    }

    /// `cpu`'s data area at byte position `pos` (masked).
    fn data_at(&self, ch: &Channel, cpu: u32, pos: u64) -> *mut u8 {
        // Layout (layout.rs): a 4 KiB channel header, then per CPU a 256-byte buffer header
        // and 128 bytes of counters per sub-buffer, page aligned, then the data.
        let buf_size = ch.subbuf_size() * ch.num_subbuf();
        let meta = (256 + 128 * ch.num_subbuf() as usize).div_ceil(4096) * 4096;
        let stride = (meta + buf_size as usize).div_ceil(4096) * 4096;
        let off = 4096 + cpu as usize * stride + meta + (pos & (buf_size - 1)) as usize;
        assert!(off + 16 <= self.0.len());
        // SAFETY: in bounds of the mapping (asserted).
        unsafe { self.0.as_mut_ptr().add(off) }
    }
}

/// Discard mode, fixed-size events, the consumer taking sub-buffers in place: after a lap the
/// slot of the next record still holds the previous lap's record (nothing zeroed it; before
/// layout 4 the consumer zeroed it where compact headers are possible). Where every header is
/// extended (atomic mode) a writer that dies between its reservation and its header store
/// leaves that slot as it was, and recovery must not take it for a record of this lap. Where
/// the header is written inside the reserve section (rseq), a writer killed right after its
/// reservation leaves its pending header over the previous lap's bytes, and recovery finds it.
#[test]
fn dead_writer_over_the_previous_lap_is_found() {
    for sync in syncs() {
        let cpu = faultline_rseq::allowed_cpus()[0];
        faultline_rseq::pin_to_cpu(cpu).unwrap();
        let ch = Channel::create(&ChannelConfig {
            subbuf_size: 1024,
            num_subbuf: 4,
            mode: Mode::Discard,
            sync,
            ..Default::default()
        })
        .unwrap();
        let shm = Shm::new(&ch);
        let buf_size = ch.subbuf_size() * ch.num_subbuf();
        // A whole lap and a few records of the next, the consumer keeping up.
        let mut taken = Vec::new();
        let mut n = 0u32;
        while ch.cpu_stats(cpu).unwrap().write_offset < buf_size + 300 {
            commit_id(&ch, n);
            taken.extend(take_all(&ch, cpu));
            n += 1;
        }
        let k = taken.len() as u32;
        assert!(k > 0 && k < n, "{sync:?}: {k} of {n} taken");
        assert_eq!(taken, (0..k).collect::<Vec<u32>>(), "{sync:?}");
        assert_eq!(ch.cpu_stats(cpu).unwrap().lost_total(), 0);
        // The next record's slot, as the previous lap left it (after the consumer; records
        // are packed).
        let pos = ch.cpu_stats(cpu).unwrap().write_offset;
        let mut stale = [0u8; 16];
        // SAFETY: test-only copy of 16 bytes inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(shm.data_at(&ch, cpu, pos), stale.as_mut_ptr(), 16)
        };
        assert_ne!(
            stale, [0u8; 16],
            "{sync:?}: the previous lap's bytes are still there (nothing zeroed)"
        );
        let dead = ch.reserve(n, 24).unwrap();
        if ch.headers_in_reserve_section() {
            // Killed right after its reserve section: the section wrote the pending header,
            // the payload bytes are still the previous lap's.
            let mut now = [0u8; 16];
            // SAFETY: test-only copy of 16 bytes inside the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(shm.data_at(&ch, cpu, pos), now.as_mut_ptr(), 16)
            };
            let h = faultline_wire::RecordHeader::parse_at(&now, 0, dead.timestamp()).unwrap();
            assert_eq!(h.id, PENDING_RECORD_ID, "{sync:?}");
            assert_eq!(h.timestamp, dead.timestamp(), "{sync:?}");
            assert_eq!(h.len, 24, "{sync:?}");
        } else {
            // The writer dies before its header store: the slot still reads as before.
            // SAFETY: test-only write of 16 bytes inside the mapping, in the dead reservation.
            unsafe {
                std::ptr::copy_nonoverlapping(stale.as_ptr(), shm.data_at(&ch, cpu, pos), 16)
            };
        }
        std::mem::forget(dead);
        for i in n + 1..n + 4 {
            commit_id(&ch, i);
        }
        let rep = ch.recover_dead_writers();
        assert_eq!(
            rep.records(),
            1,
            "{sync:?}: the dead reservation is found: {rep:?}"
        );
        let ids = take_all(&ch, cpu);
        let expect: Vec<u32> = (k..n).chain(n + 1..n + 4).collect();
        assert_eq!(ids, expect, "{sync:?}");
        assert_eq!(ch.cpu_stats(cpu).unwrap().lost_stalled, 1);
    }
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// Several complete sub-buffers are held at once and released in order; while they are held
/// the writers cannot reuse them (discard mode: events beyond the buffer are lost as "full").
#[test]
fn consecutive_sub_buffers_are_held_together() {
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 1024,
        num_subbuf: 4,
        mode: Mode::Discard,
        sync: SyncMode::Atomic,
        ..Default::default()
    })
    .unwrap();
    // Three sub-buffers complete (66 records), the fourth open.
    for i in 0..67 {
        commit_id(&ch, i);
    }
    let cons = Consumer::new(&ch);
    let a = cons.take_in_place(cpu).unwrap().unwrap();
    let b = cons.take_in_place_after(&a).unwrap().unwrap();
    let c = cons.take_in_place_after(&b).unwrap().unwrap();
    assert!(
        cons.take_in_place_after(&c).unwrap().is_none(),
        "the fourth is open"
    );
    let seqs: Vec<u64> = [&a, &b, &c]
        .iter()
        .map(|p| p.info.header.packet_seq_num)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    // Held: the writer fills the fourth and loses the rest.
    for i in 67..100 {
        let _ = ch.reserve(i, 24).map(|mut r| {
            r.payload().fill(0);
            r.commit()
        });
    }
    assert!(ch.cpu_stats(cpu).unwrap().lost_full > 0);
    for p in [a, b, c] {
        cons.release(p);
    }
    // Released in order; the next record closes the fourth, which is the next take.
    commit_id(&ch, 100);
    let d = cons.take_in_place(cpu).unwrap().unwrap();
    assert_eq!(d.info.header.packet_seq_num, 3);
    cons.release(d);
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}
