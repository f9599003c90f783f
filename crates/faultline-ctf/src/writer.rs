//! Trace writer: the `metadata` file and one stream file per CPU.
//!
//! [`TraceWriter::create`] creates the directory (if needed) and writes `metadata` (the TSDL of
//! [`crate::metadata`]). Stream files `stream_<cpu>` are created on the first packet of that
//! CPU. Existing files are never overwritten: creating a trace where one exists is an error.
//!
//! [`TraceWriter::write_packet`] takes one whole packet (a ring sub-buffer, layout in
//! [`crate::layout`]), checks it, and appends it to the CPU's stream **truncated to its content
//! rounded up to 8 bytes**, with `packet_size` patched accordingly in the written copy (the
//! caller's buffer is not modified); the bytes between the content end and the 8-byte boundary
//! are written as zeros. One `write` per packet, no per-event copies.
//!
//! Checks, so that nothing the reader (or babeltrace2) would reject reaches the disk:
//! - the header: magic, trace uuid, `stream_id == 0`, `cpu_id == cpu`, sizes (whole bytes,
//!   `128 <= content <= packet_size <= buffer length`), `timestamp_begin <= timestamp_end`,
//!   `events_discarded == lost_full + lost_stalled + lost_too_big`;
//! - continuity on the CPU: `packet_seq_num` strictly increasing (gaps allowed: lost packets),
//!   `timestamp_begin >=` the previous packet's `timestamp_end`, cumulative counters
//!   non-decreasing;
//! - the record chain ends exactly at `content_size`, every record id is a declared event or
//!   padding (an abandoned reservation, kept and skipped by readers; a pending, uncommitted
//!   record is rejected), record timestamps are non-decreasing and within
//!   `[timestamp_begin, timestamp_end]`;
//! - every record's payload decodes, field by field with the shared decoder, to exactly its
//!   length (what the reader and babeltrace2 need to stay in step), so a packet whose bytes
//!   were damaged in shared memory never reaches the disk.
//!
//! # Event classes added while recording
//! [`TraceWriter::add_events`] declares more events (tracepoints registered at run time): the
//! whole metadata text is regenerated and replaces `metadata` atomically (written to
//! `metadata.tmp`, then renamed over it), so a reader sees the old or the new file, never a
//! partial one, and the final file declares every event. The new ids are accepted from then on;
//! a record of an id not yet added is rejected like any undeclared id, so the caller must add a
//! class before writing the first packet that holds one of its records.
//!
//! # Other destinations: a [`PacketSink`]
//! [`TraceWriter::set_sink`] adds one more receiver of what the writer writes (the relay
//! streamer of `faultline-relay`): the whole metadata text now and each time it changes, and
//! every packet that passed the checks, exactly as written to the stream file (header with the
//! patched `packet_size`, content, zero padding) — also when the local write failed, so a full
//! disk does not cost the remote copy. [`TraceWriter::create_without_files`] makes a writer
//! that checks packets and feeds its sink without writing any file (streaming only). A sink
//! must not block: it is called on the consumer's thread.
//!
//! A rejected packet is not written and leaves the writer's state unchanged. A failed write
//! (ENOSPC, EIO) is undone by truncating the file back to its previous length, so the stream
//! stays readable; the error names the path.

use crate::desc::{metadata, EnvValue, TraceDesc};
use crate::error::{CtfError, Result};
use crate::layout::{
    align8, check_header, off, PacketHeader, Records, PACKET_HEADER_SIZE, PADDING_ID, PENDING_ID,
    RECORD_HEADER_SIZE,
};
use faultline_schema::{decode_field, FieldDesc};
use serde::Serialize;
use std::collections::BTreeMap;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a writer has written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterCounters {
    /// Packets written (all CPUs).
    pub packets: u64,
    /// Event records in those packets (padding records not counted).
    pub events: u64,
    /// Bytes written to stream files.
    pub stream_bytes: u64,
    /// Bytes of the metadata file.
    pub metadata_bytes: u64,
}

/// Receives the metadata and the packets a [`TraceWriter`] writes (module docs, "Other
/// destinations"). Called on the consumer's thread: implementations must not block.
pub trait PacketSink: Send {
    /// The whole metadata text: once when the sink is set, then after each change.
    fn metadata(&mut self, text: &str);
    /// One checked packet of `cpu`, as written: `header` is its parsed header (with the
    /// written `packet_size`), `bytes` the packet (header included, padded to 8 bytes).
    fn packet(&mut self, cpu: u32, header: &PacketHeader, bytes: &[u8], events: u64);
    /// The trace is finished: nothing follows.
    fn finish(&mut self);
    /// Every packet holding an event older than `ts` (trace clock) has been handed to the sink
    /// (the consumer flushed at `ts` and took everything since). Live viewers may be told so.
    fn flushed(&mut self, _ts: u64) {}
}

struct CpuStream {
    path: PathBuf,
    /// `None` for a writer without files.
    file: Option<File>,
    len: u64,
    last: Option<PacketHeader>,
}

/// Writes a trace directory. See the module docs.
pub struct TraceWriter {
    dir: PathBuf,
    /// What the metadata was written from (rewritten by [`TraceWriter::add_events`] and
    /// [`TraceWriter::finish_with_env`]).
    desc: TraceDesc,
    uuid: [u8; 16],
    /// Declared event ids and their fields (checked for every record: a hash lookup per
    /// record was the consumer's main per-event cost).
    ids: IdSet,
    streams: BTreeMap<u32, CpuStream>,
    counters: WriterCounters,
    scratch: Vec<u8>,
    /// Whether stream and metadata files are written ([`TraceWriter::create_without_files`]).
    local: bool,
    sink: Option<Box<dyn PacketSink>>,
}

/// The declared events by id: a dense table when the ids are small (always, for ids a
/// registry assigns), a sorted list otherwise.
enum IdSet {
    Dense(Vec<Option<Fields>>),
    Sorted(Vec<(u32, Fields)>),
}

type Fields = &'static [FieldDesc];

impl IdSet {
    const DENSE_LIMIT: u32 = 1 << 16;

    fn insert(&mut self, id: u32, f: Fields) {
        match self {
            IdSet::Dense(d) if id < Self::DENSE_LIMIT => {
                if d.len() <= id as usize {
                    d.resize(id as usize + 1, None);
                }
                d[id as usize] = Some(f);
            }
            IdSet::Dense(d) => {
                let mut v: Vec<(u32, Fields)> = d
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| f.map(|f| (i as u32, f)))
                    .collect();
                v.push((id, f));
                *self = IdSet::Sorted(v);
            }
            IdSet::Sorted(v) => match v.binary_search_by_key(&id, |(i, _)| *i) {
                Ok(at) => v[at].1 = f,
                Err(at) => v.insert(at, (id, f)),
            },
        }
    }

    fn new(ids: impl Iterator<Item = (u32, Fields)>) -> IdSet {
        let mut v: Vec<(u32, Fields)> = ids.collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v.dedup_by_key(|(id, _)| *id);
        match v.last() {
            Some(&(max, _)) if max >= Self::DENSE_LIMIT => IdSet::Sorted(v),
            _ => {
                let mut d = vec![None; v.last().map_or(0, |&(m, _)| m as usize + 1)];
                for (id, f) in v {
                    d[id as usize] = Some(f);
                }
                IdSet::Dense(d)
            }
        }
    }

    #[inline]
    fn get(&self, id: u32) -> Option<Fields> {
        match self {
            IdSet::Dense(d) => d.get(id as usize).copied().flatten(),
            IdSet::Sorted(v) => v
                .binary_search_by_key(&id, |(i, _)| *i)
                .ok()
                .map(|i| v[i].1),
        }
    }
}

/// Check that `payload` decodes to exactly its length; the error names the field.
#[inline]
fn check_payload(fields: Fields, payload: &[u8]) -> std::result::Result<(), (usize, String)> {
    let mut at = 0usize;
    for f in fields {
        decode_field(f.ty, payload, &mut at).map_err(|e| (e.offset, e.kind.describe(f.name)))?;
    }
    if at != payload.len() {
        return Err((
            at,
            format!(
                "payload is {} bytes but its fields end at byte {at}",
                payload.len()
            ),
        ));
    }
    Ok(())
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CtfError::io(path, "create", e))
}

impl TraceWriter {
    /// Create `dir` (and parents) if needed and write `dir/metadata`.
    pub fn create(dir: impl AsRef<Path>, desc: &TraceDesc) -> Result<TraceWriter> {
        let dir = dir.as_ref().to_path_buf();
        let text = metadata(desc)?;
        std::fs::create_dir_all(&dir).map_err(|e| CtfError::io(&dir, "create directory", e))?;
        let path = dir.join("metadata");
        let mut f = create_new(&path)?;
        f.write_all(text.as_bytes())
            .map_err(|e| CtfError::io(&path, "write", e))?;
        Ok(TraceWriter {
            dir,
            desc: desc.clone(),
            uuid: desc.uuid,
            ids: IdSet::new(desc.events.iter().map(|(id, ev)| (*id, ev.fields))),
            streams: BTreeMap::new(),
            counters: WriterCounters {
                metadata_bytes: text.len() as u64,
                ..WriterCounters::default()
            },
            scratch: Vec::new(),
            local: true,
            sink: None,
        })
    }

    /// A writer that checks packets like [`TraceWriter::create`] but writes no file: what it
    /// accepts goes to its sink only ([`TraceWriter::set_sink`]). `dir` is only a name.
    pub fn create_without_files(dir: impl AsRef<Path>, desc: &TraceDesc) -> Result<TraceWriter> {
        let text = metadata(desc)?;
        Ok(TraceWriter {
            dir: dir.as_ref().to_path_buf(),
            desc: desc.clone(),
            uuid: desc.uuid,
            ids: IdSet::new(desc.events.iter().map(|(id, ev)| (*id, ev.fields))),
            streams: BTreeMap::new(),
            counters: WriterCounters {
                metadata_bytes: text.len() as u64,
                ..WriterCounters::default()
            },
            scratch: Vec::new(),
            local: false,
            sink: None,
        })
    }

    /// Also send the metadata and every accepted packet to `sink` (module docs, "Other
    /// destinations"); the current metadata goes to it now.
    pub fn set_sink(&mut self, mut sink: Box<dyn PacketSink>) -> Result<()> {
        sink.metadata(&metadata(&self.desc)?);
        self.sink = Some(sink);
        Ok(())
    }

    /// Tell the sink that every packet with an event older than `ts` has been written
    /// ([`PacketSink::flushed`]).
    pub fn flushed(&mut self, ts: u64) {
        if let Some(s) = self.sink.as_mut() {
            s.flushed(ts);
        }
    }

    /// Whether stream files are written (false for [`TraceWriter::create_without_files`]).
    pub fn writes_files(&self) -> bool {
        self.local
    }

    /// Declare more events (module docs, "Event classes added while recording"): checked with
    /// the ones already declared (distinct ids and names), then `metadata` is replaced
    /// atomically. On error nothing changes.
    pub fn add_events(&mut self, events: &[(u32, faultline_schema::EventDesc)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut desc = self.desc.clone();
        desc.events.extend_from_slice(events);
        let text = metadata(&desc)?;
        if self.local {
            let path = self.dir.join("metadata");
            let tmp = self.dir.join("metadata.tmp");
            std::fs::write(&tmp, text.as_bytes()).map_err(|e| CtfError::io(&tmp, "write", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| CtfError::io(&path, "replace", e))?;
        }
        if let Some(s) = self.sink.as_mut() {
            s.metadata(&text);
        }
        for (id, ev) in events {
            self.ids.insert(*id, ev.fields);
        }
        self.desc = desc;
        self.counters.metadata_bytes = text.len() as u64;
        Ok(())
    }

    /// Whether event id `id` is declared.
    pub fn has_event(&self, id: u32) -> bool {
        self.ids.get(id).is_some()
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `timestamp_end` of the last packet written for `cpu` (the earliest a next packet of that
    /// CPU may begin), if any.
    pub fn last_timestamp_end(&self, cpu: u32) -> Option<u64> {
        self.streams
            .get(&cpu)
            .and_then(|s| s.last.as_ref())
            .map(|h| h.timestamp_end)
    }

    /// Counters so far.
    pub fn counters(&self) -> WriterCounters {
        self.counters
    }

    /// Check `packet` for `cpu` against the layout and the CPU's previous packet; returns the
    /// header and the number of records.
    pub fn check_packet(&self, cpu: u32, packet: &[u8]) -> Result<(PacketHeader, u64)> {
        let bad = |offset: usize, msg: String| CtfError::Packet {
            cpu,
            offset: offset as u64,
            msg,
        };
        let h = PacketHeader::parse_slice(packet).ok_or_else(|| {
            bad(
                0,
                format!(
                    "packet of {} bytes is shorter than the {PACKET_HEADER_SIZE}-byte header",
                    packet.len()
                ),
            )
        })?;
        check_header(&h, packet.len() as u64).map_err(|(o, m)| bad(o as usize, m))?;
        if h.uuid != self.uuid {
            return Err(bad(off::UUID, "uuid differs from the trace uuid".into()));
        }
        if h.cpu_id != cpu {
            return Err(bad(off::CPU_ID, format!("cpu_id {} != {cpu}", h.cpu_id)));
        }
        if h.timestamp_begin > h.timestamp_end {
            return Err(bad(
                off::TIMESTAMP_END,
                format!(
                    "timestamp_end {} < timestamp_begin {}",
                    h.timestamp_end, h.timestamp_begin
                ),
            ));
        }
        let sum = h
            .lost_full
            .checked_add(h.lost_stalled)
            .and_then(|s| s.checked_add(h.lost_too_big));
        if sum != Some(h.events_discarded) {
            return Err(bad(
                off::EVENTS_DISCARDED,
                format!(
                    "events_discarded {} != lost_full + lost_stalled + lost_too_big ({} + {} + {})",
                    h.events_discarded, h.lost_full, h.lost_stalled, h.lost_too_big
                ),
            ));
        }
        if let Some(p) = self.streams.get(&cpu).and_then(|s| s.last.as_ref()) {
            if h.packet_seq_num <= p.packet_seq_num {
                return Err(bad(
                    off::PACKET_SEQ_NUM,
                    format!(
                        "packet_seq_num {} not after the previous {}",
                        h.packet_seq_num, p.packet_seq_num
                    ),
                ));
            }
            if h.timestamp_begin < p.timestamp_end {
                return Err(bad(
                    off::TIMESTAMP_BEGIN,
                    format!(
                        "timestamp_begin {} < previous packet's timestamp_end {}",
                        h.timestamp_begin, p.timestamp_end
                    ),
                ));
            }
            for (cur, prev, o) in [
                (h.lost_full, p.lost_full, off::LOST_FULL),
                (h.lost_stalled, p.lost_stalled, off::LOST_STALLED),
                (h.lost_too_big, p.lost_too_big, off::LOST_TOO_BIG),
                (h.remote_commits, p.remote_commits, off::REMOTE_COMMITS),
            ] {
                if cur < prev {
                    return Err(bad(
                        o,
                        format!("cumulative counter decreased from {prev} to {cur}"),
                    ));
                }
            }
        }
        let content = packet
            .get(..h.content_bytes() as usize)
            .ok_or_else(|| bad(off::CONTENT_SIZE, "content_size beyond the buffer".into()))?;
        let mut n = 0u64;
        let mut last_ts = h.timestamp_begin;
        for r in Records::new(content) {
            let r = r.map_err(|(o, m)| bad(o as usize, m))?;
            if r.id == PENDING_ID {
                return Err(bad(
                    r.offset + off::RECORD_ID,
                    "uncommitted (pending) record in a complete packet".into(),
                ));
            }
            if r.id == PADDING_ID {
                // An abandoned reservation: readers skip it; its time still counts for order.
                if r.timestamp < last_ts || r.timestamp > h.timestamp_end {
                    return Err(bad(
                        r.offset,
                        format!(
                            "padding record timestamp {} outside [{last_ts}, {}]",
                            r.timestamp, h.timestamp_end
                        ),
                    ));
                }
                last_ts = r.timestamp;
                continue;
            }
            let Some(fields) = self.ids.get(r.id) else {
                return Err(bad(r.offset + 8, format!("undeclared event id {}", r.id)));
            };
            check_payload(fields, r.payload).map_err(|(o, m)| {
                bad(
                    r.offset + RECORD_HEADER_SIZE + o,
                    format!("event id {}: {m}", r.id),
                )
            })?;
            if r.timestamp < last_ts || r.timestamp > h.timestamp_end {
                return Err(bad(
                    r.offset,
                    format!(
                        "record timestamp {} outside [{last_ts}, {}] (previous record or \
                         timestamp_begin, timestamp_end)",
                        r.timestamp, h.timestamp_end
                    ),
                ));
            }
            last_ts = r.timestamp;
            n += 1;
        }
        Ok((h, n))
    }

    /// Check and append one packet to `cpu`'s stream (see the module docs). Returns the number
    /// of bytes written.
    pub fn write_packet(&mut self, cpu: u32, packet: &[u8]) -> Result<u64> {
        let (h, records) = self.check_packet(cpu, packet)?;
        let content = h.content_bytes() as usize;
        let rounded = align8(content).unwrap_or(content);
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut hdr = h;
        hdr.packet_size = rounded as u64 * 8;
        out.extend_from_slice(&hdr.encode());
        out.extend_from_slice(packet.get(PACKET_HEADER_SIZE..content).unwrap_or(&[]));
        out.resize(rounded, 0);
        if let Some(s) = self.sink.as_mut() {
            s.packet(cpu, &hdr, &out, records);
        }
        let r = self.append(cpu, &out);
        self.scratch = out;
        r?;
        if let Some(s) = self.streams.get_mut(&cpu) {
            s.last = Some(h);
        }
        self.counters.packets += 1;
        self.counters.events += records;
        self.counters.stream_bytes += rounded as u64;
        Ok(rounded as u64)
    }

    fn append(&mut self, cpu: u32, bytes: &[u8]) -> Result<()> {
        if !self.streams.contains_key(&cpu) {
            let path = self.dir.join(format!("stream_{cpu}"));
            let file = if self.local {
                Some(create_new(&path)?)
            } else {
                None
            };
            self.streams.insert(
                cpu,
                CpuStream {
                    path,
                    file,
                    len: 0,
                    last: None,
                },
            );
        }
        let Some(s) = self.streams.get_mut(&cpu) else {
            return Ok(());
        };
        let Some(file) = s.file.as_mut() else {
            s.len += bytes.len() as u64;
            return Ok(());
        };
        match file.write_all(bytes) {
            Ok(()) => {
                s.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Undo a partial write so the stream stays a sequence of whole packets.
                use std::io::Seek;
                let _ = file.set_len(s.len);
                let _ = file.seek(std::io::SeekFrom::Start(s.len));
                Err(CtfError::io(&s.path, "write", e))
            }
        }
    }

    /// Like [`TraceWriter::finish`], after adding `extra` entries to the metadata's `env`
    /// block (values known only at the end, such as the recorder's counters). The metadata is
    /// replaced atomically (written to `metadata.tmp`, synced, renamed): a crash leaves either
    /// the old or the new file. If the new metadata cannot be made (an invalid key), the old
    /// one stays and the error is returned after the streams are synced.
    pub fn finish_with_env(mut self, extra: Vec<(String, EnvValue)>) -> Result<WriterCounters> {
        if extra.is_empty() {
            return self.finish();
        }
        let mut d = self.desc.clone();
        d.env
            .extra
            .retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        d.env.extra.extend(extra);
        let text = metadata(&d);
        if let (Ok(t), Some(s)) = (&text, self.sink.as_mut()) {
            s.metadata(t);
        }
        if !self.local {
            return match text {
                Ok(t) => {
                    self.counters.metadata_bytes = t.len() as u64;
                    self.desc = d;
                    self.finish()
                }
                Err(e) => {
                    self.finish()?;
                    Err(e)
                }
            };
        }
        let replaced = text.and_then(|text| {
            let tmp = self.dir.join("metadata.tmp");
            let meta = self.dir.join("metadata");
            let _ = std::fs::remove_file(&tmp);
            let mut f = create_new(&tmp)?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| CtfError::io(&tmp, "write", e))?;
            std::fs::rename(&tmp, &meta).map_err(|e| CtfError::io(&meta, "replace", e))?;
            Ok(text.len() as u64)
        });
        match replaced {
            Ok(n) => {
                self.counters.metadata_bytes = n;
                self.desc = d;
                self.finish()
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.dir.join("metadata.tmp"));
                self.finish()?;
                Err(e)
            }
        }
    }

    /// Flush everything to stable storage (fsync of every file and of the directory) and
    /// return the final counters.
    pub fn finish(mut self) -> Result<WriterCounters> {
        if let Some(s) = self.sink.as_mut() {
            s.finish();
        }
        if !self.local {
            return Ok(self.counters);
        }
        for s in self.streams.values() {
            if let Some(f) = &s.file {
                f.sync_all()
                    .map_err(|e| CtfError::io(&s.path, "fsync", e))?;
            }
        }
        let meta = self.dir.join("metadata");
        File::open(&meta)
            .and_then(|f| f.sync_all())
            .map_err(|e| CtfError::io(&meta, "fsync", e))?;
        File::open(&self.dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| CtfError::io(&self.dir, "fsync", e))?;
        Ok(self.counters)
    }
}
