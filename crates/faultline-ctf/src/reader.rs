//! Streaming trace reader.
//!
//! [`Trace::open`] reads and checks the `metadata` file (see [`crate::tsdl`]) and lists the
//! stream files `stream_<cpu>` of the directory (other files are ignored). Nothing else is read
//! up front.
//!
//! [`Trace::events`] is a k-way merge by timestamp across the CPU streams: each stream keeps one
//! packet's content in memory (bounded by the largest `packet_size`, never by the trace size)
//! and one pending record; a binary heap picks the smallest `(timestamp, cpu)`. Within a stream
//! records come in file order, so equal timestamps keep their order. The iterator yields owned
//! [`Event`]s; [`Events::next_ref`] yields the same events as [`EventRef`]s borrowed from the
//! packet buffer, with no allocation per event (payloads are decoded with
//! [`faultline_schema::decode_field`], the decoder the writers' side shares).
//!
//! Every packet is checked before its content is used: magic, uuid, `stream_id`, `cpu_id`
//! matching the file name, `1024 <= content_size <= packet_size`, `packet_size` within the file,
//! strictly increasing `packet_seq_num`, non-decreasing cumulative loss counters, the record
//! chain ending exactly at `content_size`, known event ids, payloads that decode to exactly
//! `len` bytes. Padding records (`faultline:padding`, abandoned reservations) are skipped; a
//! pending (uncommitted) record is an error. A violation is a [`CtfError::Format`] naming the stream file and the byte
//! offset in it; after an error the iterator ends.
//!
//! Loss accounting per packet ([`PacketInfo`]): the cumulative counters give per-packet deltas
//! (the first packet's delta is its cumulative value); a `packet_seq_num` gap of `g` means `g`
//! packets were lost (for the first packet, `packet_seq_num` packets before it).

use crate::desc::ClockDesc;
use crate::error::{CtfError, Result};
use crate::layout::{
    check_header, off, record_at, PacketHeader, PACKET_HEADER_SIZE, PADDING_ID, PENDING_ID,
};
use crate::tsdl::{self, EventSchema, FieldSchema, Schema};
use faultline_schema::{decode_field, FieldValue, Value};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest metadata file accepted.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// One stream file of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFile {
    /// CPU of the stream.
    pub cpu: u32,
    /// Path of the stream file.
    pub path: PathBuf,
    /// Size in bytes when the trace was opened.
    pub len: u64,
}

/// An opened trace directory.
#[derive(Debug)]
pub struct Trace {
    dir: PathBuf,
    metadata_path: PathBuf,
    metadata_len: u64,
    schema: Schema,
    by_id: HashMap<u32, usize>,
    streams: Vec<StreamFile>,
}

/// Loss counters (cumulative or deltas, depending on context).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Events lost, all causes.
    pub events_discarded: u64,
    /// Events lost because the buffer was full.
    pub lost_full: u64,
    /// Events lost to a stalled writer.
    pub lost_stalled: u64,
    /// Events lost because they were too big.
    pub lost_too_big: u64,
}

impl Losses {
    fn of(h: &PacketHeader) -> Self {
        Losses {
            events_discarded: h.events_discarded,
            lost_full: h.lost_full,
            lost_stalled: h.lost_stalled,
            lost_too_big: h.lost_too_big,
        }
    }
}

/// What one packet says, with its deltas relative to the previous packet of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// CPU of the stream.
    pub cpu: u32,
    /// Offset of the packet in its stream file.
    pub file_offset: u64,
    /// The packet's header.
    pub header: PacketHeader,
    /// Events discarded since the previous packet (first packet: since the start).
    pub discarded: Losses,
    /// Packets missing before this one according to `packet_seq_num`.
    pub lost_packets: u64,
    /// REMOTE commits counted on this CPU since the previous packet was closed (first packet:
    /// since the start); 0 in traces written before `remote_commits` existed.
    pub remote_commits: u64,
}

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'t> {
    /// Clock ticks.
    pub ts: u64,
    /// CPU of the stream the event came from.
    pub cpu: u32,
    /// Event id.
    pub id: u32,
    /// `provider:name`.
    pub name: &'t str,
    /// `(field name, value)` in declaration order; a `Bytes` field is one entry.
    pub fields: Vec<(&'t str, Value)>,
    /// Offset of the record in its stream file.
    pub file_offset: u64,
}

/// Which events [`Trace::events`] yields. The default yields everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Globs over `provider:name` (`*` any run, `?` one character); empty means all. An event
    /// is kept when any glob matches.
    pub names: Vec<String>,
    /// CPUs to read; `None` means all.
    pub cpus: Option<BTreeSet<u32>>,
    /// Inclusive range of timestamps, in clock ticks.
    pub ts_min: Option<u64>,
    /// Upper bound of that range.
    pub ts_max: Option<u64>,
}

impl Filter {
    /// Also keep events whose name matches `glob`.
    pub fn name(mut self, glob: &str) -> Self {
        self.names.push(glob.to_string());
        self
    }

    /// Only read these CPUs' streams.
    pub fn cpus(mut self, cpus: impl IntoIterator<Item = u32>) -> Self {
        self.cpus = Some(cpus.into_iter().collect());
        self
    }

    /// Only keep events with timestamps in `min..=max` (clock ticks; `None`: unbounded).
    pub fn time(mut self, min: Option<u64>, max: Option<u64>) -> Self {
        self.ts_min = min;
        self.ts_max = max;
        self
    }
}

/// Glob match: `*` matches any run of characters (also empty), `?` exactly one, anything else
/// itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    faultline_schema::glob_match_by(&p, &t, '*', '?')
}

fn is_stream_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("stream_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

impl Trace {
    /// Open a trace directory: parse `metadata`, list `stream_<cpu>` files.
    pub fn open(dir: impl AsRef<Path>) -> Result<Trace> {
        let dir = dir.as_ref().to_path_buf();
        let metadata_path = dir.join("metadata");
        let mut f =
            File::open(&metadata_path).map_err(|e| CtfError::io(&metadata_path, "open", e))?;
        let metadata_len = f
            .metadata()
            .map_err(|e| CtfError::io(&metadata_path, "stat", e))?
            .len();
        let meta_err = |line: u32, offset: u64, msg: String| CtfError::Metadata {
            path: metadata_path.clone(),
            line,
            offset,
            msg,
        };
        if metadata_len > MAX_METADATA_BYTES {
            return Err(meta_err(
                1,
                0,
                format!("file is {metadata_len} bytes, larger than {MAX_METADATA_BYTES}"),
            ));
        }
        let mut raw = Vec::with_capacity(metadata_len as usize);
        f.read_to_end(&mut raw)
            .map_err(|e| CtfError::io(&metadata_path, "read", e))?;
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t,
            Err(e) => {
                let at = e.valid_up_to();
                let line = 1 + raw[..at].iter().filter(|&&b| b == b'\n').count() as u32;
                return Err(meta_err(
                    line,
                    at as u64,
                    "invalid UTF-8 (binary or packetized metadata?)".into(),
                ));
            }
        };
        let schema = tsdl::parse(text).map_err(|e| meta_err(e.line, e.offset, e.msg))?;
        let by_id = schema
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
        let mut streams = Vec::new();
        let rd = std::fs::read_dir(&dir).map_err(|e| CtfError::io(&dir, "read directory", e))?;
        for ent in rd {
            let ent = ent.map_err(|e| CtfError::io(&dir, "read directory", e))?;
            let Some(cpu) = ent.file_name().to_str().and_then(is_stream_name) else {
                continue;
            };
            let path = ent.path();
            let md = std::fs::metadata(&path).map_err(|e| CtfError::io(&path, "stat", e))?;
            if !md.is_file() {
                continue;
            }
            streams.push(StreamFile {
                cpu,
                path,
                len: md.len(),
            });
        }
        streams.sort_by_key(|s| s.cpu);
        Ok(Trace {
            dir,
            metadata_path,
            metadata_len,
            schema,
            by_id,
            streams,
        })
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of its metadata file.
    pub fn metadata_path(&self) -> &Path {
        &self.metadata_path
    }

    /// What the metadata says (clock, env, event classes).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The trace clock.
    pub fn clock(&self) -> &ClockDesc {
        &self.schema.clock
    }

    /// The trace UUID.
    pub fn uuid(&self) -> [u8; 16] {
        self.schema.uuid
    }

    /// Stream files, sorted by CPU.
    pub fn streams(&self) -> &[StreamFile] {
        &self.streams
    }

    /// Event class of `id`.
    pub fn event_schema(&self, id: u32) -> Option<&EventSchema> {
        self.by_id.get(&id).and_then(|&i| self.schema.events.get(i))
    }

    /// Bytes on disk: metadata plus stream files (sizes at open time).
    pub fn bytes_on_disk(&self) -> u64 {
        self.streams
            .iter()
            .fold(self.metadata_len, |acc, s| acc.saturating_add(s.len))
    }

    /// Clock ticks to nanoseconds (durations).
    pub fn ticks_to_ns(&self, ticks: u64) -> u128 {
        ticks as u128 * 1_000_000_000 / self.schema.clock.freq_hz.max(1) as u128
    }

    /// Nanoseconds to clock ticks (durations), saturating.
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        let t = ns as u128 * self.schema.clock.freq_hz as u128 / 1_000_000_000;
        t.min(u64::MAX as u128) as u64
    }

    /// Nanoseconds since the Unix epoch of timestamp `ts` (clock offset applied).
    pub fn wall_ns(&self, ts: u64) -> i128 {
        let c = &self.schema.clock;
        let ticks = c.offset_ticks as u128 + ts as u128;
        c.offset_s as i128 * 1_000_000_000
            + (ticks * 1_000_000_000 / c.freq_hz.max(1) as u128) as i128
    }

    /// Merged, filtered events of all (selected) CPUs in timestamp order.
    pub fn events(&self, filter: &Filter) -> Events<'_> {
        let wanted: Option<HashSet<u32>> = if filter.names.is_empty() {
            None
        } else {
            Some(
                self.schema
                    .events
                    .iter()
                    .filter(|e| filter.names.iter().any(|g| glob_match(g, &e.name)))
                    .map(|e| e.id)
                    .collect(),
            )
        };
        let readers = self
            .streams
            .iter()
            .filter(|s| filter.cpus.as_ref().is_none_or(|c| c.contains(&s.cpu)))
            .map(|s| StreamReader::new(self, s))
            .collect();
        Events {
            trace: self,
            readers,
            pending: Vec::new(),
            heap: BinaryHeap::new(),
            started: false,
            failed: false,
            refill: None,
            keep: Keep {
                wanted,
                ts_min: filter.ts_min,
                ts_max: filter.ts_max,
            },
        }
    }

    /// Events of one stream in file order, unfiltered (used by stats).
    pub fn stream_events<'t>(&'t self, stream: &'t StreamFile) -> StreamEvents<'t> {
        StreamEvents {
            reader: StreamReader::new(self, stream),
            failed: false,
        }
    }

    /// Packet headers of one stream, without reading the records (cheap: one read per packet).
    pub fn packets<'t>(&'t self, stream: &'t StreamFile) -> Packets<'t> {
        Packets {
            reader: StreamReader::new(self, stream),
            failed: false,
        }
    }

    /// Decode a payload against an event class. `base` is the file offset of the payload, used
    /// in errors.
    pub fn decode<'t>(
        &'t self,
        ev: &'t EventSchema,
        payload: &[u8],
        path: &Path,
        base: u64,
    ) -> Result<Vec<(&'t str, Value)>> {
        let mut out = Vec::with_capacity(ev.fields.len());
        walk_fields(ev, payload, path, base, |name, v| {
            out.push((name, v.to_value()))
        })?;
        Ok(out)
    }
}

/// Decode `payload` field by field with [`faultline_schema::decode_field`], handing each value
/// to `each`; the payload must be consumed exactly. `base` is the file offset of the payload,
/// used in errors.
fn walk_fields<'t, 'p>(
    ev: &'t EventSchema,
    payload: &'p [u8],
    path: &Path,
    base: u64,
    mut each: impl FnMut(&'t str, FieldValue<'p>),
) -> Result<()> {
    let err = |at: usize, msg: String| {
        CtfError::format(
            path,
            base.saturating_add(at as u64),
            format!("event {}: {msg}", ev.name),
        )
    };
    let mut at = 0usize;
    for f in &ev.fields {
        let v = decode_field(f.ty, payload, &mut at)
            .map_err(|e| err(e.offset, e.kind.describe(&f.name)))?;
        each(&f.name, v);
    }
    if at != payload.len() {
        return Err(err(
            at,
            format!(
                "payload is {} bytes but its fields end at byte {at}",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// One event borrowed from the reader's packet buffer ([`Events::next_ref`]): nothing is
/// allocated; the payload has been checked, [`EventRef::fields`] decodes it on the fly.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a, 't> {
    /// Clock ticks.
    pub ts: u64,
    /// CPU of the stream the event came from.
    pub cpu: u32,
    /// Event id.
    pub id: u32,
    /// `provider:name`.
    pub name: &'t str,
    /// Offset of the record in its stream file.
    pub file_offset: u64,
    schema: &'t EventSchema,
    payload: &'a [u8],
}

impl<'a, 't> EventRef<'a, 't> {
    /// The raw payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// `(field name, value)` in declaration order.
    pub fn fields(&self) -> EventFields<'a, 't> {
        EventFields {
            fields: self.schema.fields.iter(),
            payload: self.payload,
            at: 0,
        }
    }

    /// The owned [`Event`].
    pub fn to_event(&self) -> Event<'t> {
        Event {
            ts: self.ts,
            cpu: self.cpu,
            id: self.id,
            name: self.name,
            fields: self.fields().map(|(n, v)| (n, v.to_value())).collect(),
            file_offset: self.file_offset,
        }
    }
}

/// Iterator of [`EventRef::fields`].
#[derive(Debug, Clone)]
pub struct EventFields<'a, 't> {
    fields: std::slice::Iter<'t, FieldSchema>,
    payload: &'a [u8],
    at: usize,
}

impl<'a, 't> Iterator for EventFields<'a, 't> {
    type Item = (&'t str, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.fields.next()?;
        // The payload was checked when the record was read, so this does not fail.
        let v = decode_field(f.ty, self.payload, &mut self.at).ok()?;
        Some((f.name.as_str(), v))
    }
}

/// A record pending in a stream reader.
#[derive(Debug, Clone, Copy)]
struct Pending {
    ts: u64,
    id: u32,
    /// Payload range in the packet buffer.
    start: usize,
    end: usize,
    /// File offset of the record.
    file_offset: u64,
    /// Bytes of its header.
    header_len: usize,
}

/// Reads one stream file packet by packet.
struct StreamReader<'t> {
    trace: &'t Trace,
    stream: &'t StreamFile,
    file: Option<File>,
    next_packet: u64,
    buf: Vec<u8>,
    packet_offset: u64,
    pos: Option<usize>,
    /// Timestamp of the previous record of the packet (its `timestamp_begin` before the
    /// first): compact headers are rebuilt from it (`faultline_wire`).
    prev_ts: u64,
    prev: Option<PacketHeader>,
}

impl<'t> StreamReader<'t> {
    fn new(trace: &'t Trace, stream: &'t StreamFile) -> Self {
        StreamReader {
            trace,
            stream,
            file: None,
            next_packet: 0,
            buf: Vec::new(),
            packet_offset: 0,
            pos: None,
            prev_ts: 0,
            prev: None,
        }
    }

    fn path(&self) -> &'t Path {
        &self.stream.path
    }

    fn err(&self, offset: u64, msg: impl Into<String>) -> CtfError {
        CtfError::format(self.path(), offset, msg)
    }

    fn file(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            let f = File::open(self.path()).map_err(|e| CtfError::io(self.path(), "open", e))?;
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| CtfError::format(self.stream.path.clone(), 0, "stream not open"))
    }

    fn read_at(&mut self, offset: u64, len: usize, into_buf_at: usize) -> Result<()> {
        let path = self.path();
        let end = into_buf_at + len;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let file = self.file()?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| CtfError::io(path, "seek", e))?;
        // Split borrow: take the buffer out while reading.
        let mut buf = std::mem::take(&mut self.buf);
        let r = match self.file.as_mut() {
            Some(f) => f.read_exact(&mut buf[into_buf_at..end]),
            None => Ok(()),
        };
        self.buf = buf;
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CtfError::format(path, offset, "stream file shrank while reading")
            } else {
                CtfError::io(path, "read", e)
            }
        })
    }

    /// Load the next packet (header checked, content in `buf`); `None` at end of file.
    /// With `content` false only the header is read.
    fn next_packet(&mut self, content: bool) -> Result<Option<PacketInfo>> {
        let at = self.next_packet;
        let len = self.stream.len;
        if at >= len {
            return Ok(None);
        }
        let avail = len - at;
        if avail < PACKET_HEADER_SIZE as u64 {
            return Err(self.err(
                at,
                format!(
                    "truncated packet: {avail} bytes left, a packet header is {PACKET_HEADER_SIZE}"
                ),
            ));
        }
        self.buf.clear();
        self.read_at(at, PACKET_HEADER_SIZE, 0)?;
        let h = match PacketHeader::parse_slice(&self.buf) {
            Some(h) => h,
            None => return Err(self.err(at, "short packet header")),
        };
        check_header(&h, avail).map_err(|(o, m)| self.err(at + o, m))?;
        if h.uuid != self.trace.schema.uuid {
            return Err(self.err(
                at + off::UUID as u64,
                "packet uuid differs from the trace uuid",
            ));
        }
        if h.cpu_id != self.stream.cpu {
            return Err(self.err(
                at + off::CPU_ID as u64,
                format!("cpu_id {} in file of cpu {}", h.cpu_id, self.stream.cpu),
            ));
        }
        let (discarded, lost_packets, remote_commits) = match &self.prev {
            None => (Losses::of(&h), h.packet_seq_num, h.remote_commits),
            Some(p) => {
                if h.packet_seq_num <= p.packet_seq_num {
                    return Err(self.err(
                        at + off::PACKET_SEQ_NUM as u64,
                        format!(
                            "packet_seq_num {} after {}",
                            h.packet_seq_num, p.packet_seq_num
                        ),
                    ));
                }
                let d = |cur: u64, prev: u64, o: usize| {
                    cur.checked_sub(prev).ok_or_else(|| {
                        CtfError::format(
                            self.stream.path.clone(),
                            at + o as u64,
                            format!("cumulative counter decreased from {prev} to {cur}"),
                        )
                    })
                };
                (
                    Losses {
                        events_discarded: d(
                            h.events_discarded,
                            p.events_discarded,
                            off::EVENTS_DISCARDED,
                        )?,
                        lost_full: d(h.lost_full, p.lost_full, off::LOST_FULL)?,
                        lost_stalled: d(h.lost_stalled, p.lost_stalled, off::LOST_STALLED)?,
                        lost_too_big: d(h.lost_too_big, p.lost_too_big, off::LOST_TOO_BIG)?,
                    },
                    h.packet_seq_num - p.packet_seq_num - 1,
                    d(h.remote_commits, p.remote_commits, off::REMOTE_COMMITS)?,
                )
            }
        };
        let content_bytes = h.content_bytes() as usize;
        if content {
            self.read_at(
                at + PACKET_HEADER_SIZE as u64,
                content_bytes - PACKET_HEADER_SIZE,
                PACKET_HEADER_SIZE,
            )?;
            self.buf.truncate(content_bytes);
            self.pos = (content_bytes > PACKET_HEADER_SIZE).then_some(PACKET_HEADER_SIZE);
            self.prev_ts = h.timestamp_begin;
        } else {
            self.pos = None;
        }
        self.packet_offset = at;
        self.next_packet = at + h.packet_bytes();
        self.prev = Some(h);
        Ok(Some(PacketInfo {
            cpu: self.stream.cpu,
            file_offset: at,
            header: h,
            discarded,
            lost_packets,
            remote_commits,
        }))
    }

    /// The next record (loading packets as needed); `None` at end of stream.
    fn next_record(&mut self) -> Result<Option<Pending>> {
        loop {
            if let Some(p) = self.record_in_packet()? {
                return Ok(Some(p));
            }
            if self.next_packet(true)?.is_none() {
                return Ok(None);
            }
        }
    }

    /// The next event record of the current packet (padding records skipped), `None` at the
    /// packet's end: the next packet is the caller's to take (and to report).
    fn record_in_packet(&mut self) -> Result<Option<Pending>> {
        loop {
            if let Some(pos) = self.pos {
                let base = self.packet_offset;
                let (rec, next) = record_at(&self.buf, pos, self.prev_ts)
                    .map_err(|(o, m)| self.err(base + o, m))?;
                self.prev_ts = rec.timestamp;
                if rec.id == PADDING_ID {
                    // An abandoned reservation (faultline_wire): skipped.
                    self.pos = next;
                    continue;
                }
                if rec.id == PENDING_ID {
                    return Err(self.err(
                        base + rec.offset as u64,
                        "uncommitted (pending) record in a complete packet",
                    ));
                }
                if self.trace.event_schema(rec.id).is_none() {
                    return Err(self.err(
                        base + rec.offset as u64,
                        format!("unknown event id {}", rec.id),
                    ));
                }
                let start = rec.payload_offset();
                let p = Pending {
                    ts: rec.timestamp,
                    id: rec.id,
                    start,
                    end: start + rec.payload.len(),
                    file_offset: base + rec.offset as u64,
                    header_len: rec.header_len,
                };
                self.pos = next;
                return Ok(Some(p));
            }
            return Ok(None);
        }
    }

    /// Check the payload of `p` (no allocation).
    fn check(&self, p: &Pending) -> Result<()> {
        let ev = self
            .trace
            .event_schema(p.id)
            .ok_or_else(|| self.err(p.file_offset + 8, format!("unknown event id {}", p.id)))?;
        let payload = self.buf.get(p.start..p.end).unwrap_or(&[]);
        let base = p.file_offset + p.header_len as u64;
        walk_fields(ev, payload, self.path(), base, |_, _| {})
    }

    /// `p` as an [`EventRef`] (after [`Self::check`]).
    fn event_ref(&self, p: &Pending) -> Option<EventRef<'_, 't>> {
        let schema = self.trace.event_schema(p.id)?;
        Some(EventRef {
            ts: p.ts,
            cpu: self.stream.cpu,
            id: p.id,
            name: &schema.name,
            file_offset: p.file_offset,
            schema,
            payload: self.buf.get(p.start..p.end).unwrap_or(&[]),
        })
    }

    fn decode(&self, p: &Pending) -> Result<Event<'t>> {
        self.check(p)?;
        self.event_ref(p)
            .map(|e| e.to_event())
            .ok_or_else(|| self.err(p.file_offset + 8, format!("unknown event id {}", p.id)))
    }
}

/// The filter as applied per record.
struct Keep {
    wanted: Option<HashSet<u32>>,
    ts_min: Option<u64>,
    ts_max: Option<u64>,
}

impl Keep {
    fn keep(&self, p: &Pending) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(&p.id))
            && self.ts_min.is_none_or(|m| p.ts >= m)
            && self.ts_max.is_none_or(|m| p.ts <= m)
    }
}

/// Iterator of [`Trace::events`].
pub struct Events<'t> {
    trace: &'t Trace,
    readers: Vec<StreamReader<'t>>,
    /// The pending (kept) record of each reader.
    pending: Vec<Option<Pending>>,
    /// `(ts, cpu, reader index)` of every reader with a pending record.
    heap: BinaryHeap<Reverse<(u64, u32, usize)>>,
    started: bool,
    failed: bool,
    /// The reader whose record was handed out last and must advance before the next one.
    refill: Option<usize>,
    keep: Keep,
}

impl<'t> Events<'t> {
    /// The trace being read.
    pub fn trace(&self) -> &'t Trace {
        self.trace
    }

    /// Advance reader `i` to its next kept record and push it on the heap.
    fn fill(&mut self, i: usize) -> Result<()> {
        let Some(r) = self.readers.get_mut(i) else {
            return Ok(());
        };
        while let Some(p) = r.next_record()? {
            if self.keep.keep(&p) {
                if let Some(slot) = self.pending.get_mut(i) {
                    *slot = Some(p);
                    self.heap.push(Reverse((p.ts, r.stream.cpu, i)));
                }
                return Ok(());
            }
            // Filtered out, but the payload still has to be valid.
            r.check(&p)?;
        }
        Ok(())
    }

    /// Advance to the next kept record: `(reader index, record)`.
    fn step(&mut self) -> Result<Option<(usize, Pending)>> {
        if !self.started {
            self.started = true;
            self.pending = vec![None; self.readers.len()];
            for i in 0..self.readers.len() {
                self.fill(i)?;
            }
        }
        if let Some(i) = self.refill.take() {
            self.fill(i)?;
        }
        let Some(Reverse((_, _, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let Some(p) = self.pending.get_mut(i).and_then(Option::take) else {
            return Ok(None);
        };
        if let Some(r) = self.readers.get(i) {
            r.check(&p)?;
        }
        self.refill = Some(i);
        Ok(Some((i, p)))
    }

    /// The next event, borrowed from the packet buffer until the next call: the allocation-free
    /// form of [`Iterator::next`] (same events, same errors; after an error it returns `None`).
    pub fn next_ref(&mut self) -> Option<Result<EventRef<'_, 't>>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some((i, p))) => self.readers.get(i)?.event_ref(&p).map(Ok),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<'t> Iterator for Events<'t> {
    type Item = Result<Event<'t>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(|e| e.to_event()))
    }
}

/// Iterator of [`Trace::stream_events`]: events of one stream in file order, with each packet
/// reported before its events (see [`StreamItem`]).
pub struct StreamEvents<'t> {
    reader: StreamReader<'t>,
    failed: bool,
}

/// Item of [`StreamEvents`]: packets are reported (before their events) so that a single pass
/// gives both event and loss accounting.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem<'t> {
    /// A packet, before its events.
    Packet(PacketInfo),
    /// An event.
    Event(Event<'t>),
}

impl<'t> StreamEvents<'t> {
    fn step(&mut self) -> Result<Option<StreamItem<'t>>> {
        let r = &mut self.reader;
        // A packet's records may end in padding: the packet after it is still reported.
        match r.record_in_packet()? {
            Some(p) => Ok(Some(StreamItem::Event(r.decode(&p)?))),
            None => Ok(r.next_packet(true)?.map(StreamItem::Packet)),
        }
    }
}

impl<'t> Iterator for StreamEvents<'t> {
    type Item = Result<StreamItem<'t>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// Iterator of [`Trace::packets`].
pub struct Packets<'t> {
    reader: StreamReader<'t>,
    failed: bool,
}

impl Iterator for Packets<'_> {
    type Item = Result<PacketInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.reader.next_packet(false).transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}
