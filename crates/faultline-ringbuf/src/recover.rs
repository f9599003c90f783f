//! Dead-writer recovery (hazard 5): completing sub-buffers whose writers died between reserve
//! and commit, once **no writer process is alive**.
//!
//! # The problem
//! A writer killed (e.g. `SIGKILL`) while holding a reservation never commits it: its
//! sub-buffer's commit sum stays below the complete value for ever, the consumer never takes
//! it, and every committed record in it would be lost with it.
//!
//! # What makes an uncommitted record recognisable
//! * [`Channel::reserve`] writes the record header with id [`PENDING_RECORD_ID`] right after the
//!   reservation; [`Reservation::commit`](crate::Reservation::commit) stores the real id just
//!   before the commit counter update (program order + the commit's release semantics, see
//!   there). So a headed record with a real id is committed or about to be; one still reading
//!   `PENDING_RECORD_ID` was not committed.
//! * In discard mode on the rseq path with the TSC (every channel with compact headers), the
//!   header is written inside the reserve critical section, before the offset store
//!   (`channel.rs`, "Record headers inside the reserve section"): every reservation of such a
//!   channel has its header, and a closed sub-buffer has its content size even when its closer
//!   died right after its section (recovery then rewrites the other end fields: the end
//!   timestamp, the closer's last store, is not this lap's). The rest of this list is about
//!   the other channels, and about garbage.
//! * Elsewhere a writer can die between its reservation (the offset store) and its header
//!   store, a window of a few instructions. Fresh memfd pages are zero: in a sub-buffer's first lap a
//!   zero record header marks a reservation whose header was never written; it extends to the
//!   next record or to the content end. Records are packed (`faultline_wire`), so the next
//!   record is found from the first non-zero byte after the reservation's 10-byte minimum:
//!   extended and padding headers start with a non-zero byte, a compact header's length (at
//!   least 4) is non-zero, so the record starts at most 5 bytes before that byte; of those
//!   starts, the one from which the most records read as this lap's, back to back, wins (a
//!   wrong start reads a timestamp byte as a length, so it rarely yields even one). Two such
//!   reservations back to back read as one: counts of header-less records are a lower bound.
//! * In later laps nothing zeroes a sub-buffer (`consumer.rs`, "Nothing is zeroed"): the slot
//!   of a writer that died
//!   before its header store still holds an older lap's bytes, often a well-formed record (with
//!   fixed-size events, exactly the record the previous lap wrote there). What tells them
//!   apart is time: timestamps are taken in offset order (inside the reserve critical section,
//!   or after the load of the offset the reservation replaces), so every record of the current
//!   lap has a timestamp at or after its packet's `timestamp_begin` (written by the opener, in
//!   this lap) and at or after the record before it, while anything an older lap left is
//!   older. **A header is taken as a record of this lap only if its length fits and its
//!   timestamp lies between that floor and now** (plus a second of slack for other CPUs'
//!   clocks). Anything else — stale bytes, or garbage in either mode — starts a header-less
//!   reservation that extends to the next header that passes the test (or to the content end).
//!   The same test applies to the end fields: a packet's `content_size` counts only when its
//!   `timestamp_end` is not before its begin (stale end fields are older).
//! * Compact record headers (`faultline_wire`; discard mode, rseq and the TSC only) hold 27 timestamp bits: the
//!   walk rebuilds them from the previous record's timestamp (the floor), so they always lie
//!   at or after it; they are exact because a writer's compact floor is a record of the same
//!   packet whose header exists (`channel.rs`, "Compact headers"), which the walk has seen. A
//!   compact header is only taken with the payload of at least 4 bytes every writer gives it,
//!   so zeroed memory never reads as one. Time cannot tell an older lap's compact header from
//!   this lap's (the rebuild always lands after the floor), which is why such channels write
//!   every header inside the reserve section: no slot of this lap is ever header-less there.
//!   (Before that, the consumer zeroed every sub-buffer it handed back, so that a header-less
//!   slot read as zero as in the first lap.) A pending compact record becomes compact padding in
//!   place (10-byte header, its 27 timestamp bits kept), a pending extended one extended
//!   padding; a header-less reservation becomes padding with the previous record's timestamp
//!   (compact padding, at least 10 bytes, where compact headers are possible; extended, at
//!   least 16, elsewhere, where every record is extended and a compact-looking header is
//!   never taken); shorter ones can only be the last of the content, which then ends before
//!   them. Padding longer than one padding record holds
//!   is a chain of them (`faultline_wire::fill_padding`). A cut chain ends at the last
//!   record's end.
//! * A writer that died inside a sub-buffer switch may have left the old packet's end fields
//!   (then `timestamp_end` is an older lap's; `content_size` too, except where the reserve
//!   section wrote it) or the new packet's begin fields (bad magic/sequence) unwritten:
//!   recovery writes them. When the old packet's end is unknown its content ends at the first
//!   zero header (the padding of the dead switcher, in a first lap).
//!
//! # Who writes what
//! [`Channel::recover_dead_writers`] is the only writer of the buffers while it runs (the
//! precondition: every process that maps the channel as a writer is dead; the caller must know
//! it, e.g. `faultline record` after the traced process was reaped and no other process maps the
//! memfd). It therefore writes the rseq-owned `write_offset` with a plain atomic store (closing
//! the current, partially filled sub-buffer), rewrites record ids and packet header fields
//! inside incomplete sub-buffers, and adds each incomplete sub-buffer's missing bytes to its
//! REMOTE counter (release `fetch_add`, pairing with the consumer's acquire loads of the
//! counters) and to its `recovered` word. Uncommitted records found are added to the CPU's
//! `lost_stalled` counter (a writer that stalled for ever); the caller's final packets carry
//! the new cumulative count, and the [`Recovery`] report gives the "writer died" breakdown.
//!
//! # Cumulative loss counts stay non-decreasing
//! A header whose end fields recovery writes gets the current loss counters, but never more
//! (component-wise) than the snapshot in any intact header after it: packets after it were
//! closed earlier, by live writers, with smaller snapshots ([`crate::close`]). So the counts
//! along a CPU's packets still never decrease; what recovery itself finds is reported by the
//! last packet (the current sub-buffer it closes) or by the consumer's final packet.
//!
//! Nothing read here is trusted (hazard 9): positions are checked against each other, every
//! record length against its sub-buffer, every timestamp against its floor, and every pointer
//! is masked into the data area. A walk over a sub-buffer reads each byte a bounded number of
//! times (linear in the sub-buffer size whatever the bytes are: the search for a record after
//! a header-less reservation probes at most 6 starts and 64 records from each).

use crate::channel::{Channel, DISCARDED_RECORD_ID, PENDING_RECORD_ID};
use crate::close::LostCounts;
use crate::layout::*;
use std::sync::atomic::Ordering;

/// What recovery did on one CPU buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuRecovery {
    /// The CPU buffer.
    pub cpu: u32,
    /// Incomplete sub-buffers completed.
    pub subbufs: u64,
    /// Commit bytes added on behalf of dead writers (padding of a closed current sub-buffer
    /// included).
    pub bytes: u64,
    /// Uncommitted records found (now padding records; added to `lost_stalled`).
    pub records: u64,
    /// Packet headers whose begin or end fields recovery had to write.
    pub repaired_headers: u64,
    /// Set when the buffer was left alone because its positions are inconsistent.
    pub error: Option<String>,
}

/// Report of [`Channel::recover_dead_writers`], one entry per active CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// One entry per active CPU buffer.
    pub cpus: Vec<CpuRecovery>,
}

impl Recovery {
    /// Uncommitted records over all CPUs.
    pub fn records(&self) -> u64 {
        self.cpus.iter().map(|c| c.records).sum()
    }
    /// Sub-buffers completed over all CPUs.
    pub fn subbufs(&self) -> u64 {
        self.cpus.iter().map(|c| c.subbufs).sum()
    }
    /// Commit bytes added over all CPUs.
    pub fn bytes(&self) -> u64 {
        self.cpus.iter().map(|c| c.bytes).sum()
    }
}

impl Channel {
    fn rd_u64(&self, cpu: u32, pos: u64) -> u64 {
        // SAFETY: data_ptr masks `pos` into the data area; callers pass positions at least 8
        // bytes before their sub-buffer's end, so the read stays in the mapping.
        unsafe { std::ptr::read_unaligned(self.data_ptr(cpu, pos) as *const u64) }
    }

    fn rd_u8(&self, cpu: u32, pos: u64) -> u8 {
        // SAFETY: data_ptr masks `pos` into the data area; callers pass positions inside a
        // sub-buffer.
        unsafe { *self.data_ptr(cpu, pos) }
    }

    /// First non-zero byte of `[from, to)` of the sub-buffer at `sb` (offsets in it), if any.
    fn first_nonzero(&self, cpu: u32, sb: u64, from: u64, to: u64) -> Option<u64> {
        let mut x = from;
        while x < to {
            // Whole words where they fit: zeroed stretches are long.
            if x + 8 <= to && self.rd_u64(cpu, sb + x) == 0 {
                x += 8;
                continue;
            }
            if self.rd_u8(cpu, sb + x) != 0 {
                return Some(x);
            }
            x += 1;
        }
        None
    }

    /// Cover `len` bytes at `pos` (inside one sub-buffer) with padding records of timestamp
    /// `ts` (`faultline_wire::fill_padding`): compact padding when `form` is compact (the
    /// caller may use a compact header at `ts`), extended otherwise.
    fn wr_padding(&self, cpu: u32, pos: u64, ts: u64, len: u64, form: faultline_wire::HeaderForm) {
        // SAFETY: callers pass a span inside one sub-buffer of the data area (a record, or a
        // reservation bounded by its sub-buffer's end), which data_ptr maps contiguously; no
        // writer is alive (precondition of recover_dead_writers), and no other reference to
        // these bytes exists while the slice does.
        let span = unsafe { std::slice::from_raw_parts_mut(self.data_ptr(cpu, pos), len as usize) };
        // Callers pass at least one header's worth of bytes of that form.
        let _ = faultline_wire::fill_padding(span, ts, form);
    }

    /// Complete every sub-buffer left incomplete by writers that died between reserve and
    /// commit, close each CPU's partially filled sub-buffer, and count what was lost (module
    /// docs). Afterwards the consumer can take every sub-buffer; a final
    /// [`Channel::flush_all`] is not needed (write offsets are left at sub-buffer boundaries).
    ///
    /// **Only valid when every writer of the channel is dead** (no process other than the
    /// caller maps it, and the caller does not write to it): recovery writes words that live
    /// writers own. With a live writer it would corrupt the buffers. Safe to call more than
    /// once; a second call finds nothing to do.
    pub fn recover_dead_writers(&self) -> Recovery {
        self.recover_dead_writers_after(|_| 0)
    }

    /// [`Channel::recover_dead_writers`] with a time floor per CPU from the consumer:
    /// `floor(cpu)` is the `timestamp_end` of the last packet it took from that CPU's buffer (0
    /// when none). A sub-buffer whose opener died before its packet header store gets a
    /// `timestamp_begin` no earlier than that, and records older than it (an older lap's, in
    /// overwrite mode) are not taken for this lap's. Without it, when the buffer is full (the
    /// previous packet's slot reused), recovery can only take the begin from the first record
    /// it recognises, which in overwrite mode may be an older lap's.
    pub fn recover_dead_writers_after(&self, floor: impl Fn(u32) -> u64) -> Recovery {
        let mut rep = Recovery::default();
        for cpu in 0..self.geo.num_cpus {
            if !self.is_active(cpu) {
                continue;
            }
            let mut r = CpuRecovery {
                cpu,
                ..CpuRecovery::default()
            };
            if let Err(e) = self.recover_cpu(cpu, &mut r, floor(cpu)) {
                r.error = Some(e);
            }
            rep.cpus.push(r);
        }
        rep
    }

    fn recover_cpu(&self, cpu: u32, r: &mut CpuRecovery, floor: u64) -> Result<(), String> {
        let g = self.geo;
        let s = g.subbuf_size;
        let b = self.buf(cpu);
        // Acquire: pairs with the (dead) writers' offset stores and the consumer's release of
        // `consumed`; nobody changes them concurrently any more.
        let w = b.write_offset.load(Ordering::Acquire);
        let c = b.consumed.load(Ordering::Acquire);
        // Real positions are byte counts written since creation: far below 2^62 (decades at
        // memory bandwidth). Larger ones are garbage and would overflow the arithmetic below.
        if c & g.sb_mask != 0 || w < c || w >= 1 << 62 {
            return Err(format!(
                "inconsistent positions: write {w:#x}, consumed {c:#x}"
            ));
        }
        let cur = w & !g.sb_mask;
        let partial = w & g.sb_mask != 0;
        let end_sb = if partial { cur + s } else { cur };
        let mut start = c;
        if end_sb - start > g.buf_size {
            if g.mode == Mode::Discard {
                return Err(format!(
                    "write offset {w:#x} more than a buffer ahead of consumed {c:#x}"
                ));
            }
            start = end_sb - g.buf_size;
        }
        // Time floor: the previous packet's end (nothing overwrites it before the slot's next
        // switch), unless its slot has been reused by a sub-buffer we are about to visit.
        let mut last_ts = if start >= s && end_sb - start < g.buf_size {
            self.rd_u64(cpu, start - s + 32)
        } else {
            0
        }
        .max(floor);
        // Latest plausible record timestamp: now, plus a second of slack for clocks of other
        // CPUs (atomic mode) running slightly ahead.
        let ts_max = crate::clock::now(g.clock).saturating_add(self.clock().freq);
        let ceilings = self.later_snapshots(cpu, start, end_sb);
        let mut unreported = 0u64;
        let mut sb = start;
        while sb < end_sb {
            let idx = g.idx(sb);
            let sum = self.commit_sum(cpu, idx);
            let complete = g.complete(sb);
            let h = self.packet_header(cpu, sb);
            let begin_ok = h.magic == PACKET_MAGIC && h.packet_seq_num == sb / s && h.cpu_id == cpu;
            if sum >= complete {
                if begin_ok {
                    last_ts = last_ts.max(h.timestamp_end);
                }
                sb += s;
                continue;
            }
            if sum < complete - s {
                return Err(format!(
                    "sub-buffer {idx}: commit count {sum} behind its previous lap"
                ));
            }
            let missing = complete - sum;
            let is_current = partial && sb == cur;
            if begin_ok {
                last_ts = last_ts.max(h.timestamp_begin);
            }
            let ts_begin = if begin_ok {
                h.timestamp_begin
            } else if last_ts == 0 {
                // No time floor (the buffer is full, so the previous packet's slot holds a later
                // sub-buffer) and the opener died before its header store: the earliest time of
                // this lap is its first record's, taken after the opener's switch.
                self.first_record_ts(cpu, sb, ts_max)
            } else {
                last_ts
            };
            // End fields of this lap: a valid size and an end not before the begin (stale end
            // fields of an older lap, overwrite mode, end before this lap began).
            let ends_written = end_fields_ok(&h, s) && h.timestamp_end >= ts_begin;
            // Where headers are written inside the reserve section, the closer of a sub-buffer
            // before the current one stored its content size there (this lap: module docs),
            // even if it died before its other end fields (`timestamp_end` is its last store).
            let end_known = is_current
                || ends_written
                || (self.headers_in_reserve_section() && end_fields_ok(&h, s));
            let end = if is_current {
                w - cur
            } else if end_known {
                h.content_size / 8
            } else {
                s
            };
            // Records of this lap have timestamps from the packet's begin on, non-decreasing
            // (module docs): `floor` is the earliest the next one may carry.
            let mut floor = ts_begin;
            let mut x = PACKET_HEADER_SIZE;
            let mut content = end;
            // A header-less reservation is at least the smallest record a writer of this
            // channel reserves (a compact one with its 4 payload bytes where compact headers
            // are possible, an extended one elsewhere) and becomes a padding record of that
            // form.
            let (min_hole, hole_form) = if self.compact_headers() {
                (
                    faultline_wire::COMPACT_PADDING_HEADER_SIZE as u64,
                    faultline_wire::HeaderForm::CompactPadding,
                )
            } else {
                (
                    faultline_wire::EXTENDED_HEADER_SIZE as u64,
                    faultline_wire::HeaderForm::Extended,
                )
            };
            // End of the last record walked.
            let mut chain_end = PACKET_HEADER_SIZE;
            while x < end {
                if x + faultline_wire::COMPACT_HEADER_SIZE as u64 > end {
                    // Too short for a record: only a cut chain.
                    content = chain_end;
                    break;
                }
                if let Some((ts, id, len, form)) = self.record_at(cpu, sb, x, end, floor, ts_max) {
                    if id == PENDING_RECORD_ID {
                        // A padding record now (compact padding for a compact record, its 27
                        // timestamp bits kept), and zeros over what the dead writer may have
                        // half-copied.
                        self.wr_padding(cpu, sb + x, ts, len, form);
                        r.records += 1;
                    }
                    // Padding records stay in the packet (readers skip them, but their time
                    // still counts for order), so `timestamp_end` covers them too.
                    last_ts = last_ts.max(ts);
                    floor = ts;
                    chain_end = x + len;
                    x += len;
                    continue;
                }
                if x + min_hole > end {
                    // Not a record, and too short for a padding record: a cut chain (or a
                    // header-less last reservation, left out of the content).
                    content = chain_end;
                    break;
                }
                // Not a record of this lap: a reservation whose header was never written
                // (module docs). Where does it end?
                let found = if g.mode == Mode::Discard
                    && self.first_nonzero(cpu, sb, x, x + min_hole).is_none()
                {
                    // Zeroed memory: at the record whose header holds the first non-zero byte.
                    self.first_nonzero(cpu, sb, x + min_hole, end)
                        .map(|b| self.pick_start(cpu, sb, x + min_hole, b, end, floor, ts_max))
                } else {
                    // Stale bytes of an older lap (overwrite mode) or garbage: at the next
                    // header that reads as a record of this lap.
                    let mut y = x + min_hole;
                    while y + faultline_wire::COMPACT_HEADER_SIZE as u64 <= end
                        && self.record_at(cpu, sb, y, end, floor, ts_max).is_none()
                    {
                        y += 1;
                    }
                    (y + faultline_wire::COMPACT_HEADER_SIZE as u64 <= end).then_some(y)
                };
                if found.is_none() && !end_known {
                    // The dead switcher's padding: the content ends here.
                    content = chain_end;
                    break;
                }
                let y = found.unwrap_or(end);
                // The floor is the previous record's timestamp (or the packet's begin): a
                // compact padding header rebuilds it exactly.
                self.wr_padding(cpu, sb + x, floor, y - x, hole_form);
                r.records += 1;
                chain_end = y;
                x = y;
            }
            if ends_written && !is_current {
                // The switcher's end stays in the header unless rewritten below: the next
                // packet may not begin before it (a begin recovery supplies is `last_ts`).
                last_ts = last_ts.max(h.timestamp_end);
            }
            let hp = self.data_ptr(cpu, sb) as *mut PacketHeader;
            let mut repaired = false;
            if !begin_ok {
                // SAFETY: the header of a sub-buffer inside the data area, sub-buffer aligned;
                // no writer is alive.
                unsafe {
                    (*hp).magic = PACKET_MAGIC;
                    (*hp).uuid = g.uuid;
                    (*hp).stream_id = 0;
                    (*hp).timestamp_begin = ts_begin;
                    (*hp).packet_size = s * 8;
                    (*hp).packet_seq_num = sb / s;
                    (*hp).cpu_id = cpu;
                    (*hp).flags = 0;
                    (*hp).reserved = [0; 2];
                }
                repaired = true;
            }
            if is_current || !ends_written || content != end {
                b.lost_stalled
                    .fetch_add(r.records.wrapping_sub(unreported), Ordering::Relaxed);
                unreported = r.records;
                let now = LostCounts {
                    full: b.lost_full.load(Ordering::Relaxed),
                    stalled: b.lost_stalled.load(Ordering::Relaxed),
                    too_big: b.lost_too_big.load(Ordering::Relaxed),
                    remote: b.remote_commits.load(Ordering::Relaxed),
                };
                // Cumulative counts never above the next intact header's (close.rs): what
                // recovery found here is reported by a later packet.
                let lost = match ceilings.get(((sb - start) / s) as usize) {
                    Some(Some(ceil)) => now.min(*ceil),
                    _ => now,
                };
                // SAFETY: as above.
                unsafe {
                    (*hp).timestamp_end = last_ts.max(ts_begin);
                    (*hp).content_size = content * 8;
                    (*hp).lost_full = lost.full;
                    (*hp).lost_stalled = lost.stalled;
                    (*hp).lost_too_big = lost.too_big;
                    (*hp).remote_commits = lost.remote;
                    // Saturating: the counters are shared memory (garbage must not panic or
                    // wrap; the trace writer rejects a packet whose sum does not add up).
                    (*hp).events_discarded = lost.total().unwrap_or(u64::MAX);
                }
                repaired |= !is_current;
            }
            if repaired {
                r.repaired_headers += 1;
            }
            if is_current {
                // Release: pairs with the consumer's acquire load of write_offset. A plain
                // store of an rseq-owned word is allowed only because no writer is alive.
                b.write_offset.store(cur + s, Ordering::Release);
            }
            let cn = self.counters(cpu, idx);
            cn.recovered.fetch_add(missing, Ordering::Relaxed);
            // Release: publishes the repairs above to the consumer, which acquire-loads the
            // commit counters before copying the sub-buffer.
            cn.remote.fetch_add(missing, Ordering::AcqRel);
            r.subbufs += 1;
            r.bytes += missing;
            last_ts = last_ts.max(ts_begin);
            sb += s;
        }
        b.lost_stalled
            .fetch_add(r.records - unreported, Ordering::Relaxed);
        Ok(())
    }

    /// Copy of the packet header of the sub-buffer at `sb`.
    fn packet_header(&self, cpu: u32, sb: u64) -> PacketHeader {
        let mut hb = [0u8; PACKET_HEADER_SIZE as usize];
        // SAFETY: the header lies at the start of a sub-buffer inside the data area.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data_ptr(cpu, sb),
                hb.as_mut_ptr(),
                PACKET_HEADER_SIZE as usize,
            )
        };
        PacketHeader::parse(&hb)
    }

    /// The record header at offset `x` of the sub-buffer at `sb` as `(timestamp, id, len,
    /// form)` — `len` the record's bytes, header included — if it reads as a record of the
    /// current lap: it fits before `end`, its timestamp (a compact one rebuilt from `floor`, the
    /// previous record's) lies in `[floor, ts_max]` (module docs), and a compact record has the
    /// payload of at least [`faultline_wire::MIN_COMPACT_PAYLOAD`] bytes every writer gives it
    /// (so zeroed memory never reads as one). The caller checks `x + 7 <= end`.
    fn record_at(
        &self,
        cpu: u32,
        sb: u64,
        x: u64,
        end: u64,
        floor: u64,
        ts_max: u64,
    ) -> Option<(u64, u32, u64, faultline_wire::HeaderForm)> {
        let n = (end - x).min(RECORD_HEADER_SIZE) as usize;
        let mut hb = [0u8; RECORD_HEADER_SIZE as usize];
        // SAFETY: [sb + x, sb + x + n) lies inside the sub-buffer (x + n <= end <= its size),
        // which data_ptr maps into the data area; no writer is alive.
        unsafe { std::ptr::copy_nonoverlapping(self.data_ptr(cpu, sb + x), hb.as_mut_ptr(), n) };
        let h = faultline_wire::RecordHeader::parse_at(&hb[..n], 0, floor).ok()?;
        let len = h.record_len()? as u64;
        let compact = h.form != faultline_wire::HeaderForm::Extended;
        // A channel whose writers never write compact headers (overwrite mode, atomic mode,
        // the monotonic clock: channel.rs) has none, recovery's padding included: a
        // compact-looking header there is an older lap's bytes or garbage, whose 27 timestamp
        // bits would always pass the time test.
        if compact && !self.compact_headers() {
            return None;
        }
        let short_compact = compact
            && h.len < faultline_wire::MIN_COMPACT_PAYLOAD as u32
            && h.id != DISCARDED_RECORD_ID;
        let fits = len <= end - x;
        (fits && !short_compact && h.timestamp >= floor && h.timestamp <= ts_max).then_some((
            h.timestamp,
            h.id,
            len,
            h.form,
        ))
    }

    /// Where the record after a header-less reservation in zeroed memory starts, given `b`,
    /// the first non-zero byte at or after `lo` (the reservation's smallest end). Extended and
    /// padding headers have a non-zero first byte; a compact header's first bytes are zero
    /// when its id is 0 and its timestamp bits are, but its length (at least 4) is not, so the
    /// record starts in `[b - 5, b]`. Each candidate (from `lo` on) is scored by the records
    /// that then read as this lap's, back to back ([`Self::chain_score`]); the best wins, the
    /// earliest on a tie. A wrong start only reads as a chain by accident: its first length is
    /// made of the true header's timestamp bytes.
    #[allow(clippy::too_many_arguments)]
    fn pick_start(
        &self,
        cpu: u32,
        sb: u64,
        lo: u64,
        b: u64,
        end: u64,
        floor: u64,
        ts_max: u64,
    ) -> u64 {
        let first = b
            .saturating_sub(faultline_wire::COMPACT_HEADER_SIZE as u64 - 1)
            .max(lo);
        let mut best = (b, 0);
        for c in first..=b {
            let score = self.chain_score(cpu, sb, c, end, floor, ts_max);
            if score > best.1 {
                best = (c, score);
            }
        }
        best.0
    }

    /// How many records read as this lap's, back to back, from offset `x` (at most
    /// [`CHAIN_PROBE`]; a chain that ends exactly at `end` counts as the maximum). Bounded,
    /// so a walk over hostile bytes stays linear.
    fn chain_score(
        &self,
        cpu: u32,
        sb: u64,
        mut x: u64,
        end: u64,
        mut floor: u64,
        ts_max: u64,
    ) -> u32 {
        let mut n = 0;
        while n < CHAIN_PROBE {
            if x == end {
                return CHAIN_PROBE;
            }
            if x + faultline_wire::COMPACT_HEADER_SIZE as u64 > end {
                break;
            }
            let Some((ts, _, len, _)) = self.record_at(cpu, sb, x, end, floor, ts_max) else {
                break;
            };
            floor = ts;
            x += len;
            n += 1;
        }
        n
    }

    /// Time floor of the sub-buffer at `sb` whose opener died before its packet header store,
    /// when nothing else gives one: the time of its first record of this lap. The slot's
    /// `timestamp_end` word holds either the end of its previous lap (not closed in this lap;
    /// nothing overwrites it before the switch) — every record of this lap is later —
    /// or this lap's end, which no record is after; so a record at or after that word is
    /// looked for first, then any record (in a sub-buffer's first lap nothing older is there;
    /// in later laps this may find an older lap's: the caller's floor, see
    /// [`Channel::recover_dead_writers_after`], avoids that). Byte steps from the packet
    /// header on (records are packed), past zeroed or stale bytes; only extended headers count
    /// (a compact one's time is rebuilt from the floor, so it says nothing, and zero bytes
    /// before an extended header read as one; a packet's first record is extended: its
    /// opener's floor is 0); with no record at all, now.
    fn first_record_ts(&self, cpu: u32, sb: u64, ts_max: u64) -> u64 {
        let s = self.geo.subbuf_size;
        let word = self.rd_u64(cpu, sb + 32);
        for floor in [word.max(1), 1] {
            let mut x = PACKET_HEADER_SIZE;
            while x + faultline_wire::COMPACT_HEADER_SIZE as u64 <= s {
                if let Some((ts, _, _, faultline_wire::HeaderForm::Extended)) =
                    self.record_at(cpu, sb, x, s, floor, ts_max)
                {
                    return ts;
                }
                x += 1;
            }
        }
        crate::clock::now(self.geo.clock)
    }

    /// For each sub-buffer of `[start, end_sb)`, the component-wise minimum of the loss
    /// snapshots in the intact headers after it (begin fields of the right lap, end fields
    /// written): the most a rewritten header may carry (close.rs). `None`: no intact header
    /// after it.
    fn later_snapshots(&self, cpu: u32, start: u64, end_sb: u64) -> Vec<Option<LostCounts>> {
        let s = self.geo.subbuf_size;
        let n = ((end_sb - start) / s) as usize;
        let mut out = vec![None; n];
        let mut ceil: Option<LostCounts> = None;
        for i in (0..n).rev() {
            out[i] = ceil;
            let sb = start + i as u64 * s;
            let h = self.packet_header(cpu, sb);
            let intact = h.magic == PACKET_MAGIC
                && h.packet_seq_num == sb / s
                && h.cpu_id == cpu
                && end_fields_ok(&h, s)
                && h.timestamp_end >= h.timestamp_begin;
            if intact {
                let l = LostCounts {
                    full: h.lost_full,
                    stalled: h.lost_stalled,
                    too_big: h.lost_too_big,
                    remote: h.remote_commits,
                };
                ceil = Some(ceil.map_or(l, |c| c.min(l)));
            }
        }
        out
    }
}

/// Records [`Channel::chain_score`] reads at most after a candidate record start.
const CHAIN_PROBE: u32 = 64;

/// Whether a packet header's `content_size` can be a closer's (sub-buffer size `s`).
fn end_fields_ok(h: &PacketHeader, s: u64) -> bool {
    let cs = h.content_size;
    cs.is_multiple_of(8) && cs >= PACKET_HEADER_SIZE * 8 && cs < s * 8
}
