//! Functional tests of the ring buffer: exact contents, exact loss counts per cause,
//! overwrite mode, REMOTE commits after migration, and a consumer facing garbage.

use faultline_ringbuf::*;
use std::collections::BTreeMap;

fn cfg(mode: Mode, sync: SyncMode, subbuf: u64, n: u64) -> ChannelConfig {
    ChannelConfig {
        subbuf_size: subbuf,
        num_subbuf: n,
        mode,
        sync,
        ..Default::default()
    }
}

fn syncs() -> Vec<SyncMode> {
    if faultline_rseq::available() {
        vec![SyncMode::Rseq, SyncMode::Atomic]
    } else {
        vec![SyncMode::Atomic]
    }
}

/// Drain everything: (cpu, ts, id, payload) in per-CPU order.
/// (cpu, timestamp, id, payload)
type Rec = (u32, u64, u32, Vec<u8>);

fn drain(ch: &Channel) -> (Vec<Rec>, Vec<PacketInfo>) {
    let cons = Consumer::new(ch);
    let mut out = Vec::new();
    let mut infos = Vec::new();
    let mut buf = Vec::new();
    for cpu in cons.active_cpus() {
        while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
            for r in records(&buf, info.content_len) {
                let r = r.unwrap();
                out.push((cpu, r.timestamp, r.id, r.payload.to_vec()));
            }
            infos.push(info);
        }
    }
    (out, infos)
}

fn all_cpus() -> Vec<u32> {
    (0..faultline_rseq::possible_cpus()).collect()
}

fn pin_first() -> u32 {
    let c = faultline_rseq::allowed_cpus()[0];
    faultline_rseq::pin_to_cpu(c).unwrap();
    c
}

fn payload_for(i: u64) -> Vec<u8> {
    let n = (i * 7 % 53) as usize;
    (0..n)
        .map(|k| (i as u8).wrapping_mul(31).wrapping_add(k as u8))
        .collect()
}

#[test]
fn records_round_trip_byte_exact_and_ordered() {
    for sync in syncs() {
        let ch = Channel::create(&cfg(Mode::Discard, sync, 4096, 8)).unwrap();
        let cons = Consumer::new(&ch);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for i in 0..5000u64 {
            let p = payload_for(i);
            let mut r = ch.reserve(i as u32, p.len()).unwrap();
            r.payload().copy_from_slice(&p);
            r.commit();
            for cpu in cons.active_cpus() {
                while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
                    for rec in records(&buf, info.content_len) {
                        let rec = rec.unwrap();
                        got.push((cpu, rec.timestamp, rec.id, rec.payload.to_vec()));
                    }
                }
            }
        }
        assert!(ch.flush_all(false).is_empty());
        let (rest, _) = drain(&ch);
        got.extend(rest);
        assert_eq!(got.len(), 5000, "{sync:?}");
        let mut by_id: Vec<_> = got.clone();
        by_id.sort_by_key(|g| g.2);
        for (i, g) in by_id.iter().enumerate() {
            assert_eq!(g.2 as usize, i);
            assert_eq!(g.3, payload_for(i as u64), "payload of record {i}");
        }
        // Per CPU, buffer order is timestamp order.
        let mut per_cpu: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for g in &got {
            per_cpu.entry(g.0).or_default().push(g.1);
        }
        for ts in per_cpu.values() {
            assert!(
                ts.windows(2).all(|w| w[0] <= w[1]),
                "timestamps ordered per CPU"
            );
        }
        let lost: u64 = (0..ch.num_cpus())
            .map(|c| ch.cpu_stats(c).unwrap().lost_total())
            .sum();
        assert_eq!(lost, 0);
    }
}

#[test]
fn discard_mode_drops_with_exact_counts_when_consumer_stops() {
    for sync in syncs() {
        let cpu = pin_first();
        let ch = Channel::create(&cfg(Mode::Discard, sync, 1024, 4)).unwrap();
        // 40-byte payload => 55-byte records with extended headers (packed); 128 + 55k + 55
        // < 1024 for k = 0..=15: 16 records per sub-buffer (a record must end strictly before
        // the sub-buffer end). With compact headers: the first (the switch) extended at
        // 128..183, then 46-byte compact records while an extended one would still fit (the
        // fast path's rule): 183 + 46k + 55 < 1024 for k = 0..=17, so 19 records.
        let per = if ch.compact_headers() { 19 } else { 16 };
        let mut ok = 0u64;
        let mut lost = 0u64;
        for i in 0..200u64 {
            match ch.reserve(1, 40) {
                Ok(mut r) => {
                    r.payload().fill(i as u8);
                    r.commit();
                    ok += 1;
                }
                Err(Lost::Full) => lost += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(
            ok,
            4 * per,
            "exactly four sub-buffers of {per} records fit, {sync:?}"
        );
        assert_eq!(lost, 200 - ok);
        let st = ch.cpu_stats(cpu).unwrap();
        assert_eq!(st.lost_full, lost);
        assert_eq!(st.lost_stalled + st.lost_too_big, 0);
        // The consumer takes 3 complete sub-buffers (the 4th is still open); their headers
        // carry the cumulative discarded count at close time.
        let (recs, infos) = drain(&ch);
        assert_eq!(infos.len(), 3);
        assert_eq!(recs.len() as u64, 3 * per);
        // After the consumer caught up, writing resumes; the next packet closes with the count.
        let mut r = ch.reserve(2, 40).unwrap();
        r.payload().fill(0xAA);
        r.commit();
        assert!(ch.flush_all(true).is_empty());
        let (recs2, infos2) = drain(&ch);
        assert_eq!(recs2.len() as u64, per + 1);
        let last = infos2.last().unwrap();
        assert_eq!(last.header.events_discarded, lost);
        assert_eq!(last.header.lost_full, lost);
        faultline_rseq::allow_cpus(&all_cpus()).unwrap();
    }
}

#[test]
fn overwrite_mode_keeps_the_newest_data() {
    for sync in syncs() {
        let cpu = pin_first();
        let ch = Channel::create(&cfg(Mode::Overwrite, sync, 1024, 4)).unwrap();
        for i in 0..1000u32 {
            let mut r = ch.reserve(i, 40).unwrap();
            r.payload().fill(i as u8);
            r.commit();
        }
        assert!(ch.flush_all(false).is_empty());
        let (recs, infos) = drain(&ch);
        assert_eq!(
            ch.cpu_stats(cpu).unwrap().lost_total(),
            0,
            "overwrite mode never drops at the writer"
        );
        // The newest record is there, the ids are contiguous up to it, the oldest are gone.
        let ids: Vec<u32> = recs.iter().map(|r| r.2).collect();
        assert_eq!(*ids.last().unwrap(), 999);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        assert!(
            ids[0] > 0 && ids.len() >= 3 * 15,
            "kept {} records from {}",
            ids.len(),
            ids[0]
        );
        for r in &recs {
            assert!(r.3.iter().all(|&b| b == r.2 as u8));
        }
        assert!(infos[0].overwritten_before > 0);
        faultline_rseq::allow_cpus(&all_cpus()).unwrap();
    }
}

#[test]
fn too_big_is_counted() {
    let ch = Channel::create(&cfg(Mode::Discard, syncs()[0], 1024, 2)).unwrap();
    let max = ch.max_payload();
    assert!(ch.reserve(1, max).is_ok());
    assert_eq!(ch.reserve(1, max + 1).err(), Some(Lost::TooBig));
    let total: u64 = (0..ch.num_cpus())
        .map(|c| ch.cpu_stats(c).unwrap().lost_too_big)
        .sum();
    assert_eq!(total, 1);
}

#[test]
fn stalled_writer_blocks_wrap_and_is_counted() {
    for sync in syncs() {
        let cpu = pin_first();
        let ch = Channel::create(&cfg(Mode::Overwrite, sync, 1024, 2)).unwrap();
        // A writer reserves and "blocks" (holds the reservation) in sub-buffer 0.
        let mut held = ch.reserve(7, 40).unwrap();
        let mut stalled = 0;
        for i in 0..100u32 {
            match ch.reserve(i, 40) {
                Ok(r) => {
                    r.commit();
                }
                Err(Lost::Stalled) => stalled += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        // 55-byte records: sub-buffer 0 holds 1 held + 15 records, sub-buffer 1 holds 16;
        // then every writer must refuse to wrap onto sub-buffer 0.
        assert_eq!(stalled, 100 - 15 - 16, "{sync:?}");
        assert_eq!(ch.cpu_stats(cpu).unwrap().lost_stalled, stalled);
        held.payload().fill(1);
        held.commit();
        // Now the writer can wrap again.
        assert!(ch.reserve(1, 40).is_ok());
        faultline_rseq::allow_cpus(&all_cpus()).unwrap();
    }
}

#[test]
fn migrated_writer_commits_remote_into_the_reserving_buffer() {
    if !faultline_rseq::available() || faultline_rseq::allowed_cpus().len() < 2 {
        eprintln!("SKIPPED: needs rseq and two CPUs");
        return;
    }
    let cpus = faultline_rseq::allowed_cpus();
    let ch = Channel::create(&cfg(Mode::Discard, SyncMode::Rseq, 4096, 4)).unwrap();
    let mut remote = 0;
    for i in 0..50u32 {
        let from = cpus[(i % 2) as usize];
        let to = cpus[((i + 1) % 2) as usize];
        faultline_rseq::pin_to_cpu(from).unwrap();
        while faultline_rseq::current_cpu() != from {
            std::thread::yield_now();
        }
        let mut r = ch.reserve(i, 8).unwrap();
        assert_eq!(r.cpu(), from);
        faultline_rseq::pin_to_cpu(to).unwrap();
        while faultline_rseq::current_cpu() != to {
            std::thread::yield_now();
        }
        r.payload().copy_from_slice(&(i as u64).to_le_bytes());
        if r.commit() == CommitKind::Remote {
            remote += 1;
        }
    }
    faultline_rseq::allow_cpus(&cpus).unwrap();
    assert_eq!(remote, 50);
    assert!(ch.flush_all(false).is_empty());
    let (recs, infos) = drain(&ch);
    assert_eq!(recs.len(), 50);
    for (cpu, _, id, p) in &recs {
        assert_eq!(
            *cpu,
            cpus[(*id % 2) as usize],
            "record stayed in the buffer it was reserved in"
        );
        assert_eq!(p.as_slice(), &(*id as u64).to_le_bytes());
    }
    let rc: u64 = cpus
        .iter()
        .map(|&c| ch.cpu_stats(c).unwrap().remote_commits)
        .sum();
    assert!(rc >= 50);
    // The packet headers carry the closer's snapshot of the cumulative REMOTE commit count:
    // non-decreasing along a CPU's packets, and the last one (closed by the flush, after every
    // commit) has them all.
    let mut in_headers = 0;
    for &c in &cpus {
        let mine: Vec<u64> = infos
            .iter()
            .filter(|i| i.cpu == c)
            .map(|i| i.header.remote_commits)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] <= w[1]), "cpu {c}: {mine:?}");
        let last = mine.last().copied().unwrap_or(0);
        assert_eq!(last, ch.cpu_stats(c).unwrap().remote_commits, "cpu {c}");
        in_headers += last;
    }
    assert_eq!(in_headers, rc);
}

#[test]
fn dropped_reservation_is_committed_as_discarded() {
    let ch = Channel::create(&cfg(Mode::Discard, syncs()[0], 1024, 2)).unwrap();
    {
        let _r = ch.reserve(5, 10).unwrap();
    }
    let mut r = ch.reserve(6, 3).unwrap();
    r.payload().copy_from_slice(b"abc");
    r.commit();
    assert!(ch.flush_all(false).is_empty());
    let (recs, _) = drain(&ch);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].2, 6);
}

#[test]
fn consumer_rejects_garbage_shared_memory() {
    use std::os::fd::AsFd;
    let ch = Channel::create(&cfg(Mode::Discard, SyncMode::Atomic, 1024, 4)).unwrap();
    for i in 0..40u32 {
        let mut r = ch.reserve(i, 20).unwrap();
        r.payload().fill(3);
        r.commit();
    }
    // Map the same memfd a second time and scribble over it, as a buggy writer could.
    let file = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
    let raw = memmap2::MmapOptions::new()
        .len(ch.map_len())
        .map_raw(&file)
        .unwrap();
    let base = raw.as_mut_ptr();
    let cons = Consumer::new(&ch);
    let cpu = cons.active_cpus()[0];
    let region = 4096 + cpu as usize * ch_stride(&ch);
    let mut buf = Vec::new();
    // SAFETY: test-only writes inside the mapping (offsets computed from the layout).
    unsafe {
        // consumed not aligned
        *(base.add(region + 64) as *mut u64) = 3;
        assert!(matches!(
            cons.next_packet(cpu, &mut buf),
            Err(ReadError::Corrupt { .. })
        ));
        // write offset far ahead
        *(base.add(region + 64) as *mut u64) = 0;
        let w = *(base.add(region) as *const u64);
        *(base.add(region) as *mut u64) = 1 << 40;
        assert!(matches!(
            cons.next_packet(cpu, &mut buf),
            Err(ReadError::Corrupt { .. })
        ));
        *(base.add(region) as *mut u64) = w;
        // packet magic destroyed
        // header (256) + 4 counters (512), page aligned: data starts one page into the region.
        let data = region + 4096;
        *(base.add(data) as *mut u32) = 0xdead;
        assert!(matches!(
            cons.next_packet(cpu, &mut buf),
            Err(ReadError::Corrupt { .. })
        ));
        *(base.add(data) as *mut u32) = 0xC1FC1FC1;
        // a record length pointing past the content
        // (the first record's header is extended: the u16 low bits of its length at 13)
        *(base.add(data + 128 + 13) as *mut u16) = 5000;
        assert!(matches!(
            cons.next_packet(cpu, &mut buf),
            Err(ReadError::Corrupt { .. })
        ));
        *(base.add(data + 128 + 13) as *mut u16) = 20; // the payload length
        assert!(cons.next_packet(cpu, &mut buf).unwrap().is_some());
    }
    // A garbage header is refused at open time.
    // SAFETY: test-only write of the magic.
    unsafe { *(base as *mut u64) = 42 };
    let f2 = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
    assert!(matches!(Channel::open(f2), Err(ChannelError::Corrupt(_))));
}

fn ch_stride(ch: &Channel) -> usize {
    // header(256) + counters(128 each), page aligned, then data, page aligned.
    let meta = (256 + 128 * ch.num_subbuf() as usize).div_ceil(4096) * 4096;
    meta + (ch.subbuf_size() * ch.num_subbuf()) as usize
}

/// Issue 9 C: positions near the top of the u64 range. Before the checks, `consumed +
/// sub-buffer size` wrapped (release) or panicked (overflow checks) and the consumer handed
/// out a packet the traced program had forged there; now it is a one-line error naming the
/// CPU buffer. Loss totals of garbage counters are an error too, never a wrapped sum.
#[test]
fn consumer_refuses_positions_whose_sums_would_overflow() {
    use std::os::fd::AsFd;
    for mode in [Mode::Discard, Mode::Overwrite] {
        let ch = Channel::create(&cfg(mode, SyncMode::Atomic, 1024, 4)).unwrap();
        let mut r = ch.reserve(1, 8).unwrap();
        r.payload().fill(1);
        r.commit();
        let cons = Consumer::new(&ch);
        let cpu = cons.active_cpus()[0];
        let file = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
        let raw = memmap2::MmapOptions::new()
            .len(ch.map_len())
            .map_raw(&file)
            .unwrap();
        let base = raw.as_mut_ptr();
        let region = 4096 + cpu as usize * ch_stride(&ch);
        let c: u64 = 0u64.wrapping_sub(1024); // the last sub-buffer of the u64 range
        let idx = ((c / 1024) % 4) as usize;
        let complete = ((c >> 12) + 1) << 10;
        // SAFETY: test-only writes inside the mapping (offsets computed from the layout).
        unsafe {
            *(base.add(region) as *mut u64) = c + 200; // write_offset
            *(base.add(region + 64) as *mut u64) = c; // consumed
            *(base.add(region + 256 + 128 * idx) as *mut u64) = complete; // local
            *(base.add(region + 256 + 128 * idx + 64) as *mut u64) = 0; // remote
                                                                        // A well-formed packet where the forged position says it is.
            let data = base.add(region + 4096 + idx * 1024);
            std::ptr::write_bytes(data, 0, 1024);
            *(data as *mut u32) = 0xC1FC1FC1;
            *(data.add(56) as *mut u64) = c / 1024; // packet_seq_num
            *(data.add(72) as *mut u32) = cpu; // cpu_id
            *(data.add(40) as *mut u64) = 128 * 8; // content_size
            *(data.add(48) as *mut u64) = 1024 * 8; // packet_size
        }
        let mut buf = Vec::new();
        match cons.next_packet(cpu, &mut buf) {
            Err(ReadError::Corrupt { cpu: c2, what }) => {
                assert_eq!(c2, cpu);
                assert!(!what.contains('\n'));
            }
            other => panic!("{mode:?}: forged packet accepted: {other:?}"),
        }
        // SAFETY: as above: lost_full and lost_stalled.
        unsafe {
            *(base.add(region + 128) as *mut u64) = u64::MAX;
            *(base.add(region + 136) as *mut u64) = 2;
        }
        let st = ch.cpu_stats(cpu).unwrap();
        let e = st.checked_lost_total().unwrap_err().to_string();
        assert!(e.starts_with(&format!("CPU {cpu} buffer corrupted")), "{e}");
        assert_eq!(st.lost_total(), u64::MAX, "saturates, never wraps");
    }
}

/// A reservation dropped without commit becomes a padding record (`faultline_wire`): the
/// reserved id, its payload length kept, its payload zeroed; the record walk yields it and
/// `records` skips it.
#[test]
fn dropped_reservation_is_a_zeroed_padding_record() {
    for sync in syncs() {
        let ch = Channel::create(&cfg(Mode::Discard, sync, 4096, 4)).unwrap();
        let mut r = ch.reserve(1, 8).unwrap();
        r.payload().fill(0x11);
        r.commit();
        let mut dropped = ch.reserve(2, 20).unwrap();
        dropped.payload().fill(0xAB);
        drop(dropped);
        let mut r = ch.reserve(3, 4).unwrap();
        r.payload().fill(0x33);
        r.commit();
        let _ = ch.flush_all(false);
        let cons = Consumer::new(&ch);
        let mut buf = Vec::new();
        let mut walked = Vec::new();
        let mut kept = Vec::new();
        for cpu in cons.active_cpus() {
            while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
                for rec in faultline_ringbuf::wire::Records::new(&buf[..info.content_len]) {
                    let rec = rec.unwrap();
                    walked.push((rec.id, rec.payload.to_vec()));
                }
                for rec in records(&buf, info.content_len) {
                    kept.push(rec.unwrap().id);
                }
            }
        }
        assert_eq!(
            walked,
            vec![
                (1, vec![0x11; 8]),
                // Compact padding gives 4 payload bytes to the padding id.
                (
                    faultline_ringbuf::wire::PADDING_ID,
                    vec![0; if ch.compact_headers() { 16 } else { 20 }]
                ),
                (3, vec![0x33; 4]),
            ],
            "{sync:?}"
        );
        assert_eq!(kept, vec![1, 3], "{sync:?}");
    }
}

/// Compact record headers from the real writer (`faultline_wire`, channel.rs "Compact
/// headers"): records close in time get the 6-byte header, a record after a gap of more than
/// 2^27 TSC ticks an extended one, a dropped compact reservation becomes compact padding with
/// its own timestamp, and the record walk rebuilds every timestamp exactly as the writer read
/// it. Atomic mode writes extended headers only.
#[test]
fn compact_headers_rebuild_the_exact_timestamps() {
    for sync in syncs() {
        let cpu = pin_first();
        let ch = Channel::create(&cfg(Mode::Discard, sync, 4096, 4)).unwrap();
        let expect_compact = sync == SyncMode::Rseq && ch.clock().kind == ClockKind::Tsc;
        assert_eq!(ch.compact_headers(), expect_compact, "{sync:?}");
        let mut want = Vec::new();
        let mut forms = Vec::new();
        let mut dropped_ts = 0;
        for i in 0..40u64 {
            if i == 20 {
                // 2^27 ticks is under 0.14 s for any TSC of 1 GHz or more.
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            let mut r = ch.reserve(3, 8).unwrap();
            forms.push(r.is_compact());
            r.payload().copy_from_slice(&i.to_le_bytes());
            if i == 10 {
                dropped_ts = r.timestamp();
                drop(r);
                continue;
            }
            want.push((r.timestamp(), i.to_le_bytes().to_vec()));
            r.commit();
        }
        assert!(ch.flush_all(false).is_empty());
        let cons = Consumer::new(&ch);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut padding = Vec::new();
        while let Some(info) = cons.next_packet(cpu, &mut buf).unwrap() {
            for r in faultline_ringbuf::wire::Records::new(&buf[..info.content_len]) {
                let r = r.unwrap();
                if r.is_padding() {
                    padding.push((r.timestamp, r.header_len, r.payload.to_vec()));
                } else {
                    got.push((r.timestamp, r.payload.to_vec()));
                }
            }
        }
        assert_eq!(got, want, "{sync:?}");
        if expect_compact {
            // The first record of the packet (the switch) and the one after the gap are
            // extended; every other one compact.
            let extended: Vec<usize> = (0..40).filter(|&i| !forms[i]).collect();
            assert_eq!(extended, vec![0, 20], "{sync:?}");
            assert_eq!(padding, vec![(dropped_ts, 10, vec![0; 4])], "{sync:?}");
        } else {
            assert!(forms.iter().all(|c| !c), "{sync:?}");
            assert_eq!(padding, vec![(dropped_ts, 15, vec![0; 8])], "{sync:?}");
        }
    }
    faultline_rseq::allow_cpus(&all_cpus()).unwrap();
}

/// Payloads beyond the 24-bit record length are refused as too big on every path, even where a
/// sub-buffer could hold them.
#[test]
fn payload_beyond_the_24_bit_len_is_too_big() {
    for sync in syncs() {
        pin_first();
        // Sparse memfd: only the pages written cost memory.
        let ch = Channel::create(&cfg(Mode::Discard, sync, 32 << 20, 2)).unwrap();
        assert_eq!(ch.max_payload(), (1 << 24) - 1);
        // A first small record so the next one could take the fast path.
        ch.reserve(1, 8).unwrap().commit();
        assert!(
            matches!(ch.reserve(1, 1 << 24), Err(Lost::TooBig)),
            "{sync:?}"
        );
        let mut r = ch.reserve(1, (1 << 24) - 1).unwrap();
        assert_eq!(r.payload().len(), (1 << 24) - 1);
        r.commit();
    }
    faultline_rseq::allow_cpus(&all_cpus()).unwrap();
}

/// `Channel::cpu_rseq` is offered exactly for discard-mode rseq channels with the TSC and
/// per-CPU buffers, and its reservations (one inlined path, the per-CPU rseq commit) write
/// what `reserve` + `commit` write: compact and extended headers, sub-buffer switches through
/// the general path, a dropped reservation as padding, every commit LOCAL. Overwrite-mode
/// reservations through `reserve` (its own inlined arm) write the same as through the
/// general path.
#[test]
fn cpu_rseq_reservations_write_what_reserve_writes() {
    for (sync, mode) in syncs()
        .into_iter()
        .flat_map(|s| [(s, Mode::Discard), (s, Mode::Overwrite)])
    {
        let cpu = pin_first();
        let ch = Channel::create(&cfg(mode, sync, 4096, 8)).unwrap();
        let offered =
            sync == SyncMode::Rseq && ch.clock().kind == ClockKind::Tsc && mode == Mode::Discard;
        assert_eq!(ch.cpu_rseq().is_some(), offered, "{sync:?}");
        let fast = ch.cpu_rseq();
        if let Some(fast) = fast {
            assert!(std::ptr::eq(fast.channel(), &ch));
        } else if sync != SyncMode::Rseq {
            continue;
        }
        let mut want = Vec::new();
        let mut forms = [0u32; 2];
        for i in 0..400u64 {
            // Ids up to 28 may get a compact header, 100 never does.
            let id = if i % 3 == 0 { 100 } else { 3 };
            let p = payload_for(i);
            if let (0, Some(fast)) = (i % 2, fast) {
                let mut r = fast.reserve(id, p.len()).unwrap();
                forms[r.is_compact() as usize] += 1;
                r.payload().copy_from_slice(&p);
                if i % 50 == 10 {
                    drop(r);
                    continue;
                }
                assert_eq!(r.commit(), CommitKind::Local);
            } else {
                let mut r = ch.reserve(id, p.len()).unwrap();
                forms[r.is_compact() as usize] += (mode == Mode::Overwrite) as u32;
                r.payload().copy_from_slice(&p);
                if i % 50 == 11 {
                    drop(r);
                    continue;
                }
                assert_eq!(r.commit(), CommitKind::Local);
            }
            want.push((cpu, id, p));
        }
        if mode == Mode::Discard {
            assert!(forms[0] > 0 && forms[1] > 0, "{forms:?}");
        } else {
            assert_eq!(forms, [400, 0], "overwrite mode: extended headers only");
        }
        assert!(ch.flush_all(false).is_empty());
        let (got, infos) = drain(&ch);
        assert!(infos.len() > 2, "the records span sub-buffer switches");
        let got: Vec<(u32, u32, Vec<u8>)> =
            got.into_iter().map(|(c, _, id, p)| (c, id, p)).collect();
        assert_eq!(got, want);
        let st = ch.cpu_stats(cpu).unwrap();
        assert_eq!((st.lost_total(), st.remote_commits), (0, 0));
    }
    faultline_rseq::allow_cpus(&all_cpus()).unwrap();
}
