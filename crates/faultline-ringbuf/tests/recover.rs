//! Dead-writer recovery (hazard 5 in the `faultline_ringbuf` crate docs) on its own: a writer
//! "dies" (its Reservation is leaked) after writing its header, or before writing it; recovery
//! completes the sub-buffer, every committed record is delivered, the dead one is counted.

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
        let h = if dead.is_compact() { 6 } else { 15 };
        let p = dead.payload().as_mut_ptr();
        // SAFETY: the record header (6 bytes compact, 15 extended) sits right before the
        // payload, inside the same exclusive reservation; nobody else writes it.
        unsafe { std::ptr::write_bytes(p.sub(h), 0, h) };
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

/// Records are packed, so recovery finds the record after a header-less reservation from the
/// first non-zero byte after it. A compact header of event 0 whose timestamp's low 3 bits are
/// zero starts with a zero byte: the record starts before that byte, and recovery must take
/// its true start, not the byte. Timestamps cannot be chosen (and this machine's TSC may never
/// read a multiple of 8), so the test clears those 3 bits in the committed header (the record
/// then reads 0..7 ticks earlier, still after the record before it).
#[test]
fn record_with_a_zero_first_byte_after_a_headerless_reservation() {
    if !faultline_rseq::available() {
        println!("SKIPPED: compact headers need rseq");
        return;
    }
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    for _ in 0..20 {
        let ch = channel(SyncMode::Rseq);
        if !ch.compact_headers() {
            println!("SKIPPED: no compact headers (no TSC clock)");
            return;
        }
        commit(&ch, 1, 0xa1);
        let mut dead = ch.reserve(2, 24).unwrap();
        assert!(dead.is_compact());
        let p = dead.payload().as_mut_ptr();
        // SAFETY: the 6-byte compact header sits right before the payload, inside the same
        // exclusive reservation; nobody else writes it.
        unsafe { std::ptr::write_bytes(p.sub(6), 0, 6) };
        dead.payload().fill(0);
        std::mem::forget(dead);
        let mut next = ch.reserve(0, 24).unwrap();
        assert!(next.is_compact());
        next.payload().fill(0xc3);
        let header = next.payload().as_mut_ptr().wrapping_sub(6);
        next.commit();
        // SAFETY: the committed record's header inside the channel's mapping (alive); its
        // sub-buffer cannot be consumed (the dead reservation keeps it incomplete) and no
        // other thread writes this channel.
        unsafe {
            let w = std::ptr::read_unaligned(header as *const u32);
            std::ptr::write_unaligned(header as *mut u32, w & !(7 << 5));
            assert_eq!(*header, 0, "event 0, timestamp bits 0..3 clear");
        }
        commit(&ch, 0, 0xc4);
        let rep = ch.recover_dead_writers();
        assert_eq!(rep.records(), 1, "{rep:?}");
        assert_eq!(
            drain(&ch),
            vec![
                (1, vec![0xa1; 24]),
                (0, vec![0xc3; 24]),
                (0, vec![0xc4; 24])
            ]
        );
    }
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
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

/// A second mapping of a channel's memfd, to play a writer that died at a chosen point.
struct Shm {
    raw: memmap2::MmapRaw,
    /// Offset of the CPU's region, of its data area, and the buffer size.
    region: usize,
    data: usize,
    buf_size: u64,
}

impl Shm {
    fn new(ch: &Channel, cpu: u32) -> Shm {
        use std::os::fd::AsFd;
        let file = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
        let raw = memmap2::MmapOptions::new()
            .len(ch.map_len())
            .map_raw(&file)
            .unwrap();
        // Layout (layout.rs): a 4 KiB channel header, then per CPU a 256-byte buffer header and
        // 128 bytes of counters per sub-buffer, page aligned, then the data.
        let buf_size = ch.subbuf_size() * ch.num_subbuf();
        let meta = (256 + 128 * ch.num_subbuf() as usize).div_ceil(4096) * 4096;
        let stride = (meta + buf_size as usize).div_ceil(4096) * 4096;
        let region = 4096 + cpu as usize * stride;
        Shm {
            raw,
            region,
            data: region + meta,
            buf_size,
        }
    }
    fn at(&self, off: usize) -> *mut u8 {
        assert!(off + 16 <= self.raw.len());
        // SAFETY: in bounds of the mapping (asserted).
        unsafe { self.raw.as_mut_ptr().add(off) }
    }
    fn data_at(&self, pos: u64) -> *mut u8 {
        self.at(self.data + (pos & (self.buf_size - 1)) as usize)
    }
    /// `BufferHeader::last_ts` (the compact-header floor; offset 16 of the buffer header).
    fn last_ts(&self) -> *mut u64 {
        self.at(self.region + 16) as *mut u64
    }
    /// The LOCAL commit counter of sub-buffer `idx`.
    fn local(&self, idx: u64) -> *mut u64 {
        self.at(self.region + 256 + 128 * idx as usize) as *mut u64
    }
    /// The REMOTE commit counter of sub-buffer `idx`.
    fn remote(&self, idx: u64) -> *mut u64 {
        self.at(self.region + 256 + 128 * idx as usize + 64) as *mut u64
    }
}

/// Every packet taken, in order: (header, records as (timestamp, id)).
type Packets = Vec<(PacketHeader, Vec<(u64, u32)>)>;

fn packets(ch: &Channel, cpu: u32) -> Packets {
    let cons = Consumer::new(ch);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
        let recs = records(&buf, info.content_len)
            .map(|r| r.map(|r| (r.timestamp, r.id)).unwrap())
            .collect();
        out.push((info.header, recs));
    }
    out
}

fn commit_id(ch: &Channel, id: u32) {
    let mut r = ch.reserve(id, 24).unwrap();
    r.payload().fill(id as u8);
    r.commit();
}

/// Issue 9 D: overwrite mode, fixed-size events, a writer dies between its reservation and its
/// header store. The slot still holds the record the previous lap wrote at the same offset;
/// recovery must not take it for a record of this lap.
#[test]
fn overwrite_mode_dead_writer_before_its_header_leaves_no_stale_record() {
    for sync in syncs() {
        let cpu = faultline_rseq::allowed_cpus()[0];
        faultline_rseq::pin_to_cpu(cpu).unwrap();
        let ch = Channel::create(&ChannelConfig {
            subbuf_size: 1024,
            num_subbuf: 4,
            mode: Mode::Overwrite,
            sync,
            ..Default::default()
        })
        .unwrap();
        let shm = Shm::new(&ch, cpu);
        // 39-byte records, 22 per sub-buffer: 100 records fill lap 0 (88) and 12 of lap 1.
        for i in 0..100 {
            commit_id(&ch, i);
        }
        // The next record goes where record 12 of lap 0 still is (records are packed).
        let pos = ch.cpu_stats(cpu).unwrap().write_offset;
        let mut stale = [0u8; 16];
        // SAFETY: test-only copy of 16 bytes inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(shm.data_at(pos), stale.as_mut_ptr(), 16) };
        // Overwrite mode writes extended headers only: the id is the u32 at 1.
        assert!(!ch.compact_headers());
        assert_eq!(u32::from_le_bytes(stale[1..5].try_into().unwrap()), 12);
        let dead = ch.reserve(100, 24).unwrap();
        // The writer dies before its header store: the header still reads lap 0's.
        // SAFETY: test-only write of 16 bytes inside the mapping, in the dead reservation.
        unsafe { std::ptr::copy_nonoverlapping(stale.as_ptr(), shm.data_at(pos), 16) };
        std::mem::forget(dead);
        for i in 101..104 {
            commit_id(&ch, i);
        }
        let rep = ch.recover_dead_writers();
        assert_eq!(
            rep.records(),
            1,
            "{sync:?}: the dead reservation is found: {rep:?}"
        );
        let got = packets(&ch, cpu);
        let ids: Vec<u32> = got.iter().flat_map(|p| p.1.iter().map(|r| r.1)).collect();
        let expect: Vec<u32> = (22..100).chain(101..104).collect();
        assert_eq!(ids, expect, "{sync:?}");
        for (h, recs) in &got {
            assert!(
                recs.iter()
                    .all(|r| r.0 >= h.timestamp_begin && r.0 <= h.timestamp_end),
                "{sync:?}: record timestamps within their packet: {h:?} {recs:?}"
            );
        }
        assert_eq!(ch.cpu_stats(cpu).unwrap().lost_stalled, 1);
    }
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// Issue 9 A, recovery side: a sub-buffer whose switcher died before writing its end fields
/// gets its header rewritten by recovery; its cumulative loss counts must not exceed those of
/// the intact packets after it (recovery's own finds are counted in a later packet).
#[test]
fn recovered_headers_keep_cumulative_counts_non_decreasing() {
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
    let shm = Shm::new(&ch, cpu);
    // Sub-buffer 0: 5 records, a dead (pending) one, 16 more: full at 22 records.
    for i in 0..5 {
        commit_id(&ch, i);
    }
    std::mem::forget(ch.reserve(5, 24).unwrap());
    for i in 6..22 {
        commit_id(&ch, i);
    }
    // The switch to sub-buffer 1 closes sub-buffer 0; then sub-buffer 1 fills and closes too
    // (its header gets the snapshot: no losses yet), and sub-buffer 2 gets one record.
    for i in 22..45 {
        commit_id(&ch, i);
    }
    assert_eq!(ch.cpu_stats(cpu).unwrap().write_offset >> 10, 2);
    // Make sub-buffer 0's closer a writer that died right after its reservation: end fields
    // never written (content_size 0) and its padding never committed.
    // SAFETY: test-only accesses inside the mapping (offsets from the layout).
    unsafe {
        let h = shm.data_at(0);
        let content = std::ptr::read_unaligned(h.add(40) as *const u64) / 8;
        std::ptr::write_unaligned(h.add(32) as *mut u64, 0);
        std::ptr::write_unaligned(h.add(40) as *mut u64, 0);
        let pad = 1024 - content;
        *shm.remote(0) -= pad;
        std::ptr::write_bytes(shm.data_at(content), 0, pad as usize);
    }
    let rep = ch.recover_dead_writers();
    assert_eq!(rep.records(), 1, "{rep:?}");
    let got = packets(&ch, cpu);
    assert_eq!(got.len(), 3);
    for w in got.windows(2) {
        let (p, h) = (&w[0].0, &w[1].0);
        assert!(
            h.lost_stalled >= p.lost_stalled && h.events_discarded >= p.events_discarded,
            "cumulative counts decreased: packet {} has {} stalled, packet {} has {}",
            p.packet_seq_num,
            p.lost_stalled,
            h.packet_seq_num,
            h.lost_stalled
        );
    }
    let ids: Vec<u32> = got.iter().flat_map(|p| p.1.iter().map(|r| r.1)).collect();
    let expect: Vec<u32> = (0..5).chain(6..45).collect();
    assert_eq!(ids, expect);
    assert_eq!(
        got[2].0.lost_stalled, 1,
        "the last packet carries the dead record"
    );
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// Found by the overload soak (`faultline stress --record`): the buffer full behind a
/// sub-buffer whose opener died before its packet header store (and its record header store).
/// Recovery had no time floor (the previous packet's slot holds a later sub-buffer) and wrote
/// `timestamp_begin` 0 (discard mode) or took a stale record of the slot's previous lap for the
/// first record (overwrite mode): a begin before the previous packet's end, so the trace writer
/// rejected the packet with every committed record in it.
fn dead_opener_in_a_full_buffer(mode: Mode, sync: SyncMode) {
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 1024,
        num_subbuf: 4,
        mode,
        sync,
        ..Default::default()
    })
    .unwrap();
    let shm = Shm::new(&ch, cpu);
    // 39-byte records (packed), 22 per sub-buffer. The ids are the record numbers, so only the
    // first sub-buffer's (ids up to MAX_COMPACT_ID = 28) can have compact headers: it then
    // holds 29 (one extended 39, then 30-byte compact ones while an extended one still fits:
    // 167 + 30k + 39 < 1024). Discard: fill sub-buffer 0. Overwrite (extended headers
    // only): a whole lap and sub-buffer 4 (slot 0 again), so slot 1 holds lap 0's header and
    // records.
    let per = 22;
    let first = if ch.compact_headers() { 29 } else { per };
    let before = if mode == Mode::Discard {
        first
    } else {
        5 * per
    };
    for i in 0..before {
        commit_id(&ch, i);
    }
    // The next reservation opens the next sub-buffer; its writer dies before its packet
    // header store and its record header store: those bytes stay what they were.
    let slot = ch
        .cpu_stats(cpu)
        .unwrap()
        .write_offset
        .next_multiple_of(1024);
    let mut old = [0u8; 144];
    // SAFETY: test-only copies of 144 bytes inside the mapping.
    unsafe { std::ptr::copy_nonoverlapping(shm.data_at(slot), old.as_mut_ptr(), 144) };
    let dead = ch.reserve(before, 24).unwrap();
    // SAFETY: as above, inside the dead reservation's sub-buffer. A writer that dies before its
    // header store has not stored its timestamp as the compact floor either: the floor is
    // still the 0 the opener stores before its reservation.
    unsafe {
        std::ptr::copy_nonoverlapping(old.as_ptr(), shm.data_at(slot), 144);
        *shm.last_ts() = 0;
    }
    std::mem::forget(dead);
    // The consumer takes what is complete, up to the packet the dead opener closed.
    let first = packets(&ch, cpu);
    let prev_end = first
        .last()
        .expect("packets before the dead opener")
        .0
        .timestamp_end;
    // Fill that sub-buffer, the next two and part of the next lap's: the buffer is full.
    for i in before + 1..before + 1 + (per - 1) + per + per + 5 {
        commit_id(&ch, i);
    }
    // Discard mode: recovery finds the time on its own. Overwrite mode: the slot holds an older
    // lap's record where the dead opener's should be; the consumer's floor tells them apart.
    let rep = if mode == Mode::Discard {
        ch.recover_dead_writers()
    } else {
        ch.recover_dead_writers_after(|_| prev_end)
    };
    assert_eq!(rep.records(), 1, "{mode:?} {sync:?}: {rep:?}");
    let got = packets(&ch, cpu);
    assert_eq!(got.len(), 4, "{mode:?} {sync:?}");
    let (h, recs) = &got[0];
    assert_eq!(recs.first().map(|r| r.1), Some(before + 1), "{mode:?}");
    assert!(
        h.timestamp_begin >= prev_end && h.timestamp_begin <= recs[0].0,
        "{mode:?} {sync:?}: begin {} not within [{prev_end}, {}]",
        h.timestamp_begin,
        recs[0].0
    );
    let mut last_end = prev_end;
    for (h, recs) in &got {
        assert!(h.timestamp_begin >= last_end, "{mode:?} {sync:?}: {h:?}");
        assert!(
            recs.iter()
                .all(|r| r.0 >= h.timestamp_begin && r.0 <= h.timestamp_end),
            "{mode:?} {sync:?}: {h:?} {recs:?}"
        );
        last_end = h.timestamp_end;
    }
}

#[test]
fn dead_opener_in_a_full_buffer_gets_a_begin_time() {
    for mode in [Mode::Discard, Mode::Overwrite] {
        for sync in syncs() {
            dead_opener_in_a_full_buffer(mode, sync);
        }
    }
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}

/// A writer killed right after the reserve section that closes a sub-buffer, in a later lap:
/// where headers are written inside the reserve section, the closed packet's content size is
/// there (the section stored it), while its other end fields, the padding commit and the next
/// packet's begin fields are not. Nothing zeroed the sub-buffer, and past the dead writer's
/// `old` lie the previous lap's smaller records, whose compact headers would read as this
/// lap's: recovery must end the content at the stored size. Fails if recovery ignores a
/// content size whose end timestamp is stale (it then walks into the previous lap's records).
#[test]
fn dead_switcher_in_a_later_lap_keeps_its_content_size() {
    if !faultline_rseq::available() {
        println!("SKIPPED: needs rseq");
        return;
    }
    let cpu = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(cpu).unwrap();
    let ch = channel(SyncMode::Rseq);
    if !ch.headers_in_reserve_section() || !ch.compact_headers() {
        println!("SKIPPED: no headers in the reserve section (no TSC clock)");
        return;
    }
    let shm = Shm::new(&ch, cpu);
    let s = ch.subbuf_size();
    let buf = s * ch.num_subbuf();
    let wo = || ch.cpu_stats(cpu).unwrap().write_offset;
    let cons = Consumer::new(&ch);
    let mut pkt = Vec::new();
    // Takes every complete packet; counts the records of 200 bytes in them.
    let take = |pkt: &mut Vec<u8>| {
        let mut n = 0;
        while let Some(info) = cons.next_packet(cpu, pkt).unwrap() {
            n += records(pkt, info.content_len)
                .filter(|r| r.as_ref().unwrap().payload.len() == 200)
                .count();
        }
        n
    };
    // Lap 0: small records (30 bytes, compact), consumed as they complete.
    while wo() < buf {
        commit(&ch, 1, 0xa1);
        take(&mut pkt);
    }
    // Lap 1: larger records (206 bytes), in the second sub-buffer up to where the dead
    // writer's record of 1000 bytes does not fit (it switches: the extended record, 15 + 1000
    // bytes, must end before the sub-buffer's end), so that a kilobyte of the previous lap's
    // records lies after it.
    let mut big = 0u64;
    let mut taken_big = 0usize;
    loop {
        let w = wo();
        if w >= buf + s && (w % s) + 15 + 1000 >= s {
            break;
        }
        let mut r = ch.reserve(1, 200).unwrap();
        r.payload().fill(0xb2);
        r.commit();
        big += 1;
        taken_big += take(&mut pkt);
    }
    let old = wo();
    let sb_old = old - old % s;
    let sb_new = sb_old + s;
    let idx = |p: u64| (p / s) % ch.num_subbuf();
    let save = |p: u64| {
        let mut b = [0u8; 128];
        // SAFETY: test-only copy of a packet header inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(shm.data_at(p), b.as_mut_ptr(), 128) };
        b
    };
    let (old_hdr, new_hdr) = (save(sb_old), save(sb_new));
    // SAFETY: test-only reads of the two commit counters (this thread is the only writer).
    let (l_old, l_new) = unsafe { (*shm.local(idx(sb_old)), *shm.local(idx(sb_new))) };
    let dead = ch.reserve(2, 1000).unwrap();
    assert!(dead.timestamp() > 0);
    std::mem::forget(dead);
    // Undo everything the writer did after its reserve section: the old packet's end fields
    // but its content size, the padding and packet header commits, the new packet's begin
    // fields.
    let cs = old % s * 8;
    // SAFETY: test-only writes inside the mapping; no other thread writes this channel.
    unsafe {
        assert_eq!(
            std::ptr::read_unaligned(shm.data_at(sb_old + 40) as *const u64),
            cs,
            "the closer stored the content size"
        );
        std::ptr::copy_nonoverlapping(old_hdr.as_ptr(), shm.data_at(sb_old), 40);
        std::ptr::copy_nonoverlapping(old_hdr[48..].as_ptr(), shm.data_at(sb_old + 48), 80);
        std::ptr::write_unaligned(shm.data_at(sb_old + 40) as *mut u64, cs);
        std::ptr::copy_nonoverlapping(new_hdr.as_ptr(), shm.data_at(sb_new), 128);
        *shm.local(idx(sb_old)) = l_old;
        *shm.local(idx(sb_new)) = l_new;
    }
    let rep = ch.recover_dead_writers();
    assert_eq!(rep.records(), 1, "the dead record: {rep:?}");
    let mut got = Vec::new();
    while let Some(info) = cons.next_packet(cpu, &mut pkt).unwrap() {
        for r in records(&pkt, info.content_len) {
            let r = r.unwrap();
            got.push((r.id, r.payload.len()));
        }
    }
    let want = vec![(1, 200); big as usize - taken_big];
    assert_eq!(
        got, want,
        "no record of the previous lap is taken for this lap's"
    );
    faultline_rseq::allow_cpus(&(0..faultline_rseq::possible_cpus()).collect::<Vec<_>>()).unwrap();
}
