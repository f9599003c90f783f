//! Streaming reader of any CTF 1.8 trace directory.
//!
//! [`CtfTrace::open`] reads the `metadata` file (plain or packetized, see [`super::meta`]),
//! builds the decoding plan ([`super::layout`]) and lists the stream files: every regular file
//! of the directory except `metadata` and hidden files (LTTng's `index/` directory is skipped).
//!
//! Each stream file is read packet by packet. A packet's header and context are decoded from
//! the first bytes of the packet (read in growing probes), which gives its sizes: with
//! `packet_size` and/or `content_size` the packet is that long (the other one defaults to it),
//! without either it is the rest of the file. Checks: `content_size <= packet_size`, sizes
//! whole bytes, the packet inside the file and at most [`MAX_PACKET_BYTES`], `magic` (when
//! present) `0xC1FC1FC1`, `uuid` (when present) the trace's, `stream_id` a declared stream
//! class. Then the packet is read into the stream's buffer (the only per-stream memory besides
//! the current event's values) and events are decoded until the content end: event header
//! (event id = the last `id` integer of the header, so LTTng's compact and extended headers
//! work; a stream class with a single event class needs none), stream event context, event
//! context, payload. Clock-mapped integers update the stream's clock with CTF's wrap-around
//! reconstruction; an event's timestamp is the stream clock's value after its fields. An event
//! that occupies zero bits is an error (it would repeat forever).
//!
//! Packets report discarded events (delta of the wrapping `events_discarded` counter; the first
//! packet's delta is its value) and lost packets (gaps in `packet_seq_num`), see [`CtfPacket`].
//!
//! [`CtfTrace::events`] merges the streams by timestamp (k-way heap, ties by stream file
//! order), with the same [`Filter`] as faultline's own reader. Every error is a
//! [`CtfError::Format`]/[`CtfError::Metadata`] naming the file and byte offset; after an error
//! the iterators end.

use super::decode::{decode, DecodeError, Item, Out, State};
use super::layout::{display_name, Builder, Kind, NodeId, Plan};
use super::meta::{self, Clock, EnvVal, Metadata};
use crate::error::{CtfError, Result};
use crate::reader::{glob_match, Filter};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest packet read (bytes); a larger one is an error rather than a memory hazard.
pub const MAX_PACKET_BYTES: u64 = 256 << 20;
const FIRST_PROBE: usize = 4096;

/// One stream file.
#[derive(Debug, Clone)]
pub struct CtfStreamFile {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes when the trace was opened.
    pub len: u64,
}

/// A stream class, as the reader uses it.
#[derive(Debug, Clone)]
pub struct StreamClass {
    /// `stream.id`.
    pub id: u64,
    /// Root of the packet context.
    pub packet_context: Option<NodeId>,
    /// Root of the event header.
    pub event_header: Option<NodeId>,
    /// Root of the stream event context.
    pub event_context: Option<NodeId>,
    /// Event class index by event id.
    pub events: HashMap<u64, u32>,
    /// The clock of this stream's timestamps (index in [`CtfTrace::clocks`]).
    pub clock: Option<u32>,
    /// Nodes named `id` in the event header (the event id is the last one read).
    id_nodes: Vec<NodeId>,
    /// Top-level packet-context fields with a meaning: see [`PacketFields`].
    ctx: PacketFields,
}

/// An event class.
#[derive(Debug, Clone)]
pub struct EventClass {
    /// `name`.
    pub name: String,
    /// `id`.
    pub id: u64,
    /// Index in [`CtfTrace::stream_classes`].
    pub stream: u32,
    /// Root of the event context.
    pub context: Option<NodeId>,
    /// Root of the payload.
    pub fields: Option<NodeId>,
    /// `loglevel`.
    pub loglevel: Option<i64>,
}

#[derive(Debug, Clone, Default)]
struct PacketFields {
    magic: Option<NodeId>,
    uuid: Option<NodeId>,
    stream_id: Option<NodeId>,
    content_size: Option<NodeId>,
    packet_size: Option<NodeId>,
    ts_begin: Option<NodeId>,
    ts_end: Option<NodeId>,
    discarded: Option<(NodeId, u32)>,
    seq: Option<NodeId>,
    cpu_id: Option<NodeId>,
}

/// An opened CTF trace directory (see the module docs).
#[derive(Debug)]
pub struct CtfTrace {
    dir: PathBuf,
    metadata_path: PathBuf,
    metadata_len: u64,
    md: Metadata,
    plan: Plan,
    trace_header: Option<NodeId>,
    header_fields: PacketFields,
    classes: Vec<StreamClass>,
    events: Vec<EventClass>,
    streams: Vec<CtfStreamFile>,
}

fn top_child(plan: &Plan, root: Option<NodeId>, name: &str) -> Option<NodeId> {
    let Kind::Struct(kids) = &plan.nodes.get(root? as usize)?.kind else {
        return None;
    };
    kids.iter()
        .copied()
        .find(|&k| plan.nodes.get(k as usize).is_some_and(|n| n.name == name))
}

fn is_int(plan: &Plan, n: Option<NodeId>) -> Option<NodeId> {
    let id = n?;
    matches!(
        plan.nodes.get(id as usize)?.kind,
        Kind::Int { .. } | Kind::Enum { .. }
    )
    .then_some(id)
}

fn int_size(plan: &Plan, n: NodeId) -> u32 {
    match plan.nodes.get(n as usize).map(|x| &x.kind) {
        Some(Kind::Int { size, .. }) | Some(Kind::Enum { size, .. }) => *size,
        _ => 64,
    }
}

/// Clock of the first clock-mapped integer under `root`, and the nodes named `id`.
fn scan(plan: &Plan, root: NodeId, clock: &mut Option<u32>, ids: &mut Vec<NodeId>, depth: u32) {
    let Some(n) = plan.nodes.get(root as usize) else {
        return;
    };
    if depth > 300 {
        return;
    }
    match &n.kind {
        Kind::Int { clock: c, .. } | Kind::Enum { clock: c, .. } => {
            if clock.is_none() {
                *clock = *c;
            }
            if n.name == "id" {
                ids.push(root);
            }
        }
        Kind::Struct(kids) => {
            for &k in kids {
                scan(plan, k, clock, ids, depth + 1);
            }
        }
        Kind::Variant { table, .. } => {
            if let Some(t) = plan.variants.get(*table as usize) {
                for &k in &t.options {
                    scan(plan, k, clock, ids, depth + 1);
                }
            }
        }
        _ => {}
    }
}

impl CtfTrace {
    /// Open the trace in `dir` (see the module docs).
    pub fn open(dir: impl AsRef<Path>) -> Result<CtfTrace> {
        let dir = dir.as_ref().to_path_buf();
        let metadata_path = dir.join("metadata");
        let mut f =
            File::open(&metadata_path).map_err(|e| CtfError::io(&metadata_path, "open", e))?;
        let metadata_len = f
            .metadata()
            .map_err(|e| CtfError::io(&metadata_path, "stat", e))?
            .len();
        let merr = |offset: u64, msg: String| CtfError::Format {
            path: metadata_path.clone(),
            offset,
            msg: format!("metadata: {msg}"),
        };
        if metadata_len > meta::MAX_METADATA_BYTES {
            return Err(merr(
                0,
                format!(
                    "file is {metadata_len} bytes, larger than {}",
                    meta::MAX_METADATA_BYTES
                ),
            ));
        }
        let mut raw = Vec::with_capacity(metadata_len as usize);
        f.by_ref()
            .take(meta::MAX_METADATA_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| CtfError::io(&metadata_path, "read", e))?;
        let mt = meta::read_metadata(&raw).map_err(|e| merr(e.offset, e.msg))?;
        // Errors in the TSDL text also give the line (in the unpacked text).
        let line_of = |file_off: u64| {
            let t = mt.text_offset(file_off).min(mt.text.len() as u64) as usize;
            1 + mt.text[..t].iter().filter(|&&b| b == b'\n').count()
        };
        let mut md = meta::parse(&mt)
            .map_err(|e| merr(e.offset, format!("line {}: {}", line_of(e.offset), e.msg)))?;
        if md.clocks.is_empty() {
            // Implicit 1 GHz clock for unmapped `timestamp` fields (see the layout docs).
            md.clocks.push(Clock {
                name: String::new(),
                freq: 1_000_000_000,
                offset_s: 0,
                offset: 0,
                description: String::new(),
                uuid: None,
                absolute: false,
            });
        }
        let mut b = Builder::new(&md);
        let mut outer = [None; 6];
        let at = |o: u64, e: String| merr(o, e);
        let trace_header = match md.packet_header {
            Some(t) => Some(b.scope(t, 0, &outer).map_err(|e| at(0, e))?),
            None => None,
        };
        outer[0] = trace_header;
        let mut classes = Vec::new();
        let mut events = Vec::new();
        let mut by_stream: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in md.events.iter().enumerate() {
            by_stream.entry(e.stream_id).or_default().push(i);
        }
        for s in &md.streams {
            let mut o = outer;
            let mut sc = |t: Option<u32>, i: usize, o: &mut [Option<NodeId>; 6]| {
                let r = match t {
                    Some(t) => Some(b.scope(t, i, o).map_err(|e| at(s.offset, e))?),
                    None => None,
                };
                o[i] = r;
                Ok::<_, CtfError>(r)
            };
            let pc = sc(s.packet_context, 1, &mut o)?;
            let eh = sc(s.event_header, 2, &mut o)?;
            let ec = sc(s.event_context, 3, &mut o)?;
            let ci = classes.len() as u32;
            let mut map = HashMap::new();
            for e in by_stream
                .get(&s.id)
                .into_iter()
                .flatten()
                .map(|&i| &md.events[i])
            {
                let mut eo = o;
                let ctx = match e.context {
                    Some(t) => Some(b.scope(t, 4, &eo).map_err(|m| at(e.offset, m))?),
                    None => None,
                };
                eo[4] = ctx;
                let fields = match e.fields {
                    Some(t) => Some(b.scope(t, 5, &eo).map_err(|m| at(e.offset, m))?),
                    None => None,
                };
                map.insert(e.id, events.len() as u32);
                events.push(EventClass {
                    name: e.name.clone(),
                    id: e.id,
                    stream: ci,
                    context: ctx,
                    fields,
                    loglevel: e.loglevel,
                });
            }
            classes.push(StreamClass {
                id: s.id,
                packet_context: pc,
                event_header: eh,
                event_context: ec,
                events: map,
                clock: None,
                id_nodes: Vec::new(),
                ctx: PacketFields::default(),
            });
            // Remember the event header for the clock scan below.
            let _ = eh;
        }
        let plan = b.plan;
        for c in &mut classes {
            let mut clock = None;
            let mut ids = Vec::new();
            if let Some(eh) = c.event_header {
                scan(&plan, eh, &mut clock, &mut ids, 0);
            }
            if clock.is_none() {
                let mut unused = Vec::new();
                if let Some(pc) = c.packet_context {
                    scan(&plan, pc, &mut clock, &mut unused, 0);
                }
            }
            if clock.is_none() && md.clocks.len() == 1 {
                clock = Some(0);
            }
            c.clock = clock;
            c.id_nodes = ids;
            let pc = c.packet_context;
            c.ctx = PacketFields {
                content_size: is_int(&plan, top_child(&plan, pc, "content_size")),
                packet_size: is_int(&plan, top_child(&plan, pc, "packet_size")),
                ts_begin: is_int(&plan, top_child(&plan, pc, "timestamp_begin")),
                ts_end: is_int(&plan, top_child(&plan, pc, "timestamp_end")),
                discarded: is_int(&plan, top_child(&plan, pc, "events_discarded"))
                    .map(|n| (n, int_size(&plan, n))),
                seq: is_int(&plan, top_child(&plan, pc, "packet_seq_num")),
                cpu_id: is_int(&plan, top_child(&plan, pc, "cpu_id")),
                ..PacketFields::default()
            };
        }
        let header_fields = PacketFields {
            magic: is_int(&plan, top_child(&plan, trace_header, "magic")),
            uuid: top_child(&plan, trace_header, "uuid").filter(|&n| {
                matches!(
                    plan.nodes.get(n as usize).map(|x| &x.kind),
                    Some(Kind::Array { len: 16, .. })
                )
            }),
            stream_id: is_int(&plan, top_child(&plan, trace_header, "stream_id")),
            ..PacketFields::default()
        };
        let mut streams = Vec::new();
        let rd = std::fs::read_dir(&dir).map_err(|e| CtfError::io(&dir, "read directory", e))?;
        for ent in rd {
            let ent = ent.map_err(|e| CtfError::io(&dir, "read directory", e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name == "metadata" || name.starts_with('.') {
                continue;
            }
            let path = ent.path();
            let md = std::fs::metadata(&path).map_err(|e| CtfError::io(&path, "stat", e))?;
            if !md.is_file() {
                continue;
            }
            streams.push(CtfStreamFile {
                path,
                len: md.len(),
            });
        }
        streams.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(CtfTrace {
            dir,
            metadata_path,
            metadata_len,
            md,
            plan,
            trace_header,
            header_fields,
            classes,
            events,
            streams,
        })
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata file.
    pub fn metadata_path(&self) -> &Path {
        &self.metadata_path
    }

    /// The stream files, sorted by path.
    pub fn streams(&self) -> &[CtfStreamFile] {
        &self.streams
    }

    /// Event classes (index = [`CtfEvent::class`]).
    pub fn event_classes(&self) -> &[EventClass] {
        &self.events
    }

    /// Stream classes.
    pub fn stream_classes(&self) -> &[StreamClass] {
        &self.classes
    }

    /// Clock classes (an implicit 1 GHz one when the metadata declares none).
    pub fn clocks(&self) -> &[Clock] {
        &self.md.clocks
    }

    /// The clock of the first stream class that has one (timestamps are in its ticks).
    pub fn clock(&self) -> Option<&Clock> {
        self.classes
            .iter()
            .find_map(|c| c.clock)
            .and_then(|i| self.md.clocks.get(i as usize))
    }

    /// `env` entries.
    pub fn env(&self) -> &[(String, EnvVal)] {
        &self.md.env
    }

    /// `trace.uuid`.
    pub fn uuid(&self) -> Option<[u8; 16]> {
        self.md.uuid
    }

    /// The decoding plan (nodes of the values in [`Item`]s).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Metadata plus stream file sizes (at open time).
    pub fn bytes_on_disk(&self) -> u64 {
        self.streams
            .iter()
            .fold(self.metadata_len, |a, s| a.saturating_add(s.len))
    }

    fn freq(&self) -> u64 {
        self.clock().map_or(1_000_000_000, |c| c.freq.max(1))
    }

    /// Clock ticks to nanoseconds (durations).
    pub fn ticks_to_ns(&self, ticks: u64) -> u128 {
        ticks as u128 * 1_000_000_000 / self.freq() as u128
    }

    /// Nanoseconds to clock ticks (durations), saturating.
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        (ns as u128 * self.freq() as u128 / 1_000_000_000).min(u64::MAX as u128) as u64
    }

    /// Nanoseconds since the Unix epoch of `ts` (clock offsets applied).
    pub fn wall_ns(&self, ts: u64) -> i128 {
        let Some(c) = self.clock() else {
            return ts as i128;
        };
        let f = c.freq.max(1) as i128;
        let ticks = c.offset as i128 + ts as i128;
        c.offset_s as i128 * 1_000_000_000
            + ticks.div_euclid(f) * 1_000_000_000
            + ticks.rem_euclid(f) * 1_000_000_000 / f
    }

    /// Merged, filtered events of all streams in timestamp order. Records of faultline's
    /// padding class (`faultline:padding`, abandoned reservations: `faultline_wire`) are
    /// skipped like faultline's own reader does.
    pub fn events(&self, filter: &Filter) -> CtfEvents<'_> {
        let padding = |e: &EventClass| e.name == faultline_wire::PADDING_EVENT_NAME;
        let wanted = if filter.names.is_empty() && !self.events.iter().any(padding) {
            None
        } else {
            Some(
                self.events
                    .iter()
                    .map(|e| {
                        !padding(e)
                            && (filter.names.is_empty()
                                || filter.names.iter().any(|g| glob_match(g, &e.name)))
                    })
                    .collect(),
            )
        };
        CtfEvents {
            readers: (0..self.streams.len())
                .map(|i| StreamReader::new(self, i))
                .collect(),
            heap: BinaryHeap::new(),
            started: false,
            failed: false,
            refill: None,
            wanted,
            cpus: filter.cpus.clone(),
            ts_min: filter.ts_min,
            ts_max: filter.ts_max,
        }
    }

    /// The packets of stream file `i` in file order (headers and contexts only: the events
    /// are not read).
    pub fn packets(&self, i: usize) -> CtfPackets<'_> {
        let mut r = StreamReader::new(self, i);
        r.headers_only = true;
        CtfPackets { r, failed: false }
    }

    /// Events and packets of stream file `i` in file order, unfiltered.
    pub fn stream_items(&self, i: usize) -> StreamItems<'_> {
        StreamItems {
            r: StreamReader::new(self, i),
            failed: false,
            announced: false,
        }
    }
}

/// What one packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtfPacket {
    /// Index of the stream file.
    pub stream: usize,
    /// `cpu_id` of the packet context, or the stream file index without one.
    pub cpu: u32,
    /// Offset of the packet in its file.
    pub file_offset: u64,
    /// Packet size in bytes.
    pub packet_bytes: u64,
    /// Content size in bits.
    pub content_bits: u64,
    /// `timestamp_begin`.
    pub ts_begin: Option<u64>,
    /// `timestamp_end`.
    pub ts_end: Option<u64>,
    /// `packet_seq_num`.
    pub seq: Option<u64>,
    /// `events_discarded` of the packet context (a wrapping snapshot counter).
    pub events_discarded: Option<u64>,
    /// Events discarded since the previous packet of the stream (first packet: its counter).
    pub discarded: u64,
    /// Packets missing before this one (gap in `packet_seq_num`).
    pub lost_packets: u64,
}

struct StreamReader<'t> {
    t: &'t CtfTrace,
    idx: usize,
    file: Option<File>,
    buf: Vec<u8>,
    pkt_off: u64,
    next_off: u64,
    content_end: u64,
    pos: u64,
    in_packet: bool,
    class: u32,
    cpu: u32,
    st: State,
    pitems: Vec<Item>,
    ptext: Vec<u8>,
    items: Vec<Item>,
    text: Vec<u8>,
    prev_disc: Option<u64>,
    prev_seq: Option<u64>,
    packet: CtfPacket,
    cur: Cur,
    /// Read packet headers and contexts only (see [`CtfTrace::packets`]).
    headers_only: bool,
}

/// The decoded event of a reader: item ranges of its four scopes.
#[derive(Debug, Clone, Copy, Default)]
struct Cur {
    ts: u64,
    event: u32,
    file_offset: u64,
    scopes: [(u32, u32); 4],
}

fn find_u(items: &[Item], n: Option<NodeId>) -> Option<u64> {
    let n = n?;
    items.iter().rev().find_map(|it| match *it {
        Item::U(m, v) if m == n => Some(v),
        Item::I(m, v) if m == n => Some(v as u64),
        _ => None,
    })
}

impl<'t> StreamReader<'t> {
    fn new(t: &'t CtfTrace, idx: usize) -> Self {
        StreamReader {
            t,
            idx,
            file: None,
            buf: Vec::new(),
            pkt_off: 0,
            next_off: 0,
            content_end: 0,
            pos: 0,
            in_packet: false,
            class: 0,
            cpu: idx as u32,
            st: State {
                slots: vec![None; t.plan.slots as usize],
                clocks: vec![0; t.md.clocks.len()],
                clock_updated: false,
            },
            pitems: Vec::new(),
            ptext: Vec::new(),
            items: Vec::new(),
            text: Vec::new(),
            prev_disc: None,
            prev_seq: None,
            packet: CtfPacket::default(),
            cur: Cur::default(),
            headers_only: false,
        }
    }

    fn path(&self) -> &Path {
        self.t
            .streams
            .get(self.idx)
            .map_or(Path::new(""), |s| s.path.as_path())
    }

    fn err(&self, offset: u64, msg: impl Into<String>) -> CtfError {
        CtfError::format(self.path().to_path_buf(), offset, msg)
    }

    fn derr(&self, e: DecodeError) -> CtfError {
        self.err(self.pkt_off.saturating_add(e.bit / 8), e.msg)
    }

    /// Read `n` bytes at file offset `at` into `buf[have..]` (buf is resized to `have + n`).
    fn read_at(&mut self, at: u64, have: usize, n: usize) -> Result<()> {
        if self.file.is_none() {
            let p = self.path().to_path_buf();
            self.file = Some(File::open(&p).map_err(|e| CtfError::io(&p, "open", e))?);
        }
        let path = self.path().to_path_buf();
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        self.buf.resize(have + n, 0);
        f.seek(SeekFrom::Start(at))
            .map_err(|e| CtfError::io(&path, "seek", e))?;
        f.read_exact(&mut self.buf[have..])
            .map_err(|e| CtfError::io(&path, "read", e))
    }

    /// Load the next packet; `false` at the end of the file.
    fn next_packet(&mut self) -> Result<bool> {
        let t = self.t;
        let len = t.streams.get(self.idx).map_or(0, |s| s.len);
        let at = self.next_off;
        self.in_packet = false;
        if at >= len {
            return Ok(false);
        }
        self.pkt_off = at;
        let avail = len - at;
        let mut probe = (FIRST_PROBE as u64).min(avail);
        self.buf.clear();
        self.read_at(at, 0, probe as usize)?;
        // Decode header and context; grow the probe while they run past it.
        let (class, pos) = loop {
            match self.packet_preamble(probe * 8) {
                Ok(r) => break r,
                Err(e) if e.out_of_bounds && probe < avail.min(MAX_PACKET_BYTES) => {
                    let more = (probe * 4).min(avail).min(MAX_PACKET_BYTES);
                    let have = self.buf.len();
                    self.read_at(at + probe, have, (more - probe) as usize)?;
                    probe = more;
                }
                Err(e) => return Err(self.derr(e)),
            }
        };
        let sc = &t.classes[class as usize];
        let psize = find_u(&self.pitems, sc.ctx.packet_size);
        let csize = find_u(&self.pitems, sc.ctx.content_size);
        let (packet_bits, content_bits) = match (psize, csize) {
            (Some(p), Some(c)) => (p, c),
            (Some(p), None) => (p, p),
            (None, Some(c)) => (c.div_ceil(8) * 8, c),
            (None, None) => (avail.saturating_mul(8), avail.saturating_mul(8)),
        };
        let csize_at = at;
        if content_bits > packet_bits {
            return Err(self.err(
                csize_at,
                format!("content_size {content_bits} bits larger than packet_size {packet_bits}"),
            ));
        }
        if packet_bits % 8 != 0 {
            return Err(self.err(
                csize_at,
                format!("packet_size {packet_bits} bits is not whole bytes"),
            ));
        }
        let packet_bytes = packet_bits / 8;
        if packet_bytes == 0 {
            return Err(self.err(csize_at, "packet of 0 bytes"));
        }
        if packet_bytes > avail {
            return Err(self.err(
                csize_at,
                format!("packet_size {packet_bytes} bytes but only {avail} bytes left in the file"),
            ));
        }
        if packet_bytes > MAX_PACKET_BYTES {
            return Err(self.err(
                csize_at,
                format!("packet of {packet_bytes} bytes, larger than the reader's limit {MAX_PACKET_BYTES}"),
            ));
        }
        if pos > content_bits {
            return Err(self.err(
                csize_at,
                format!("packet header and context end at bit {pos}, after the content end (bit {content_bits})"),
            ));
        }
        let content_bytes = content_bits.div_ceil(8);
        if content_bytes > probe && !self.headers_only {
            let have = self.buf.len();
            self.read_at(at + probe, have, (content_bytes - probe) as usize)?;
        }
        // Packet-level info.
        let cpu = find_u(&self.pitems, sc.ctx.cpu_id).map_or(self.idx as u32, |c| c as u32);
        let disc = sc
            .ctx
            .discarded
            .and_then(|(n, _)| find_u(&self.pitems, Some(n)));
        let discarded = match (disc, self.prev_disc, sc.ctx.discarded) {
            (Some(d), Some(p), Some((_, size))) => {
                let m = if size >= 64 {
                    u64::MAX
                } else {
                    (1u64 << size) - 1
                };
                d.wrapping_sub(p) & m
            }
            (Some(d), None, _) => d,
            _ => 0,
        };
        let seq = find_u(&self.pitems, sc.ctx.seq);
        let lost_packets = match (seq, self.prev_seq) {
            (Some(s), Some(p)) if s > p => s - p - 1,
            (Some(s), None) => s,
            _ => 0,
        };
        if disc.is_some() {
            self.prev_disc = disc;
        }
        if seq.is_some() {
            self.prev_seq = seq;
        }
        self.class = class;
        self.cpu = cpu;
        self.packet = CtfPacket {
            stream: self.idx,
            cpu,
            file_offset: at,
            packet_bytes,
            content_bits,
            ts_begin: find_u(&self.pitems, sc.ctx.ts_begin),
            ts_end: find_u(&self.pitems, sc.ctx.ts_end),
            seq,
            events_discarded: disc,
            discarded,
            lost_packets,
        };
        self.content_end = content_bits;
        self.pos = pos;
        self.next_off = at + packet_bytes;
        self.in_packet = true;
        Ok(true)
    }

    /// Decode the trace packet header and the packet context within `end` bits; returns the
    /// stream class and the bit position after them.
    fn packet_preamble(&mut self, end: u64) -> Result<(u32, u64), DecodeError> {
        let t = self.t;
        self.pitems.clear();
        self.ptext.clear();
        let mut pos = 0u64;
        let bad = |bit: u64, msg: String| DecodeError {
            bit,
            msg,
            out_of_bounds: false,
        };
        if let Some(h) = t.trace_header {
            let mut out = Out {
                items: &mut self.pitems,
                text: &mut self.ptext,
            };
            decode(&t.plan, h, &self.buf, &mut pos, end, &mut self.st, &mut out)?;
            if let Some(m) = find_u(&self.pitems, t.header_fields.magic) {
                if m != 0xC1FC_1FC1 {
                    return Err(bad(
                        0,
                        format!("packet magic 0x{m:08x}, expected 0xc1fc1fc1"),
                    ));
                }
            }
            if let (Some(u), Some(want)) = (t.header_fields.uuid, t.md.uuid) {
                let got: Vec<u8> = match self.pitems.iter().position(|x| x.node() == Some(u)) {
                    Some(i) => match self.pitems[i] {
                        Item::Ints(_, at, 16) if at % 8 == 0 => {
                            let a = (at / 8) as usize;
                            self.buf.get(a..a + 16).unwrap_or(&[]).to_vec()
                        }
                        _ => self.pitems[i + 1..]
                            .iter()
                            .take(16)
                            .map(|x| match x {
                                Item::U(_, v) => *v as u8,
                                Item::I(_, v) => *v as u8,
                                _ => 0,
                            })
                            .collect(),
                    },
                    None => Vec::new(),
                };
                if got != want {
                    return Err(bad(32, "packet uuid differs from the trace uuid".into()));
                }
            }
        }
        let class = match find_u(&self.pitems, t.header_fields.stream_id) {
            Some(id) => match t.classes.iter().position(|c| c.id == id) {
                Some(c) => c as u32,
                None => return Err(bad(0, format!("packet of undeclared stream class {id}"))),
            },
            None if t.classes.len() == 1 => 0,
            None => {
                return Err(bad(
                    0,
                    "packet without stream_id in a trace with several stream classes".into(),
                ))
            }
        };
        if let Some(pc) = t.classes[class as usize].packet_context {
            let mut out = Out {
                items: &mut self.pitems,
                text: &mut self.ptext,
            };
            decode(
                &t.plan,
                pc,
                &self.buf,
                &mut pos,
                end,
                &mut self.st,
                &mut out,
            )?;
        }
        Ok((class, pos))
    }

    /// Decode the next event of the stream into `items`; `false` at the end of the stream.
    fn next_event(&mut self) -> Result<bool> {
        loop {
            if self.in_packet && self.pos < self.content_end {
                self.decode_event().map_err(|e| self.derr(e))?;
                return Ok(true);
            }
            if !self.next_packet()? {
                return Ok(false);
            }
        }
    }

    fn decode_event(&mut self) -> Result<(), DecodeError> {
        let t = self.t;
        let sc = &t.classes[self.class as usize];
        let start = self.pos;
        let end = self.content_end;
        self.items.clear();
        self.text.clear();
        let mut cur = Cur {
            file_offset: self.pkt_off + start / 8,
            ..Cur::default()
        };
        let bad = |bit: u64, msg: String| DecodeError {
            bit,
            msg,
            out_of_bounds: false,
        };
        let scope = |node: Option<NodeId>, this: &mut Self| -> Result<(u32, u32), DecodeError> {
            let a = this.items.len() as u32;
            if let Some(n) = node {
                let mut out = Out {
                    items: &mut this.items,
                    text: &mut this.text,
                };
                decode(
                    &t.plan,
                    n,
                    &this.buf,
                    &mut this.pos,
                    end,
                    &mut this.st,
                    &mut out,
                )?;
            }
            Ok((a, this.items.len() as u32))
        };
        cur.scopes[0] = scope(sc.event_header, self)?;
        let id = self.items[..cur.scopes[0].1 as usize]
            .iter()
            .rev()
            .find_map(|it| match *it {
                Item::U(n, v) if sc.id_nodes.contains(&n) => Some(v),
                Item::I(n, v) if sc.id_nodes.contains(&n) => Some(v as u64),
                _ => None,
            });
        let ev = match id {
            Some(id) => match sc.events.get(&id) {
                Some(&e) => e,
                None => {
                    return Err(bad(
                        start,
                        format!("unknown event id {id} in stream class {}", sc.id),
                    ))
                }
            },
            None if sc.events.len() == 1 => *sc.events.values().next().unwrap_or(&0),
            None => {
                return Err(bad(
                    start,
                    "event header without an `id` in a stream class with several event classes"
                        .into(),
                ))
            }
        };
        let ec = &t.events[ev as usize];
        cur.scopes[1] = scope(sc.event_context, self)?;
        cur.scopes[2] = scope(ec.context, self)?;
        cur.scopes[3] = scope(ec.fields, self)?;
        if self.pos == start {
            return Err(bad(
                start,
                format!("event `{}` occupies zero bits", ec.name),
            ));
        }
        cur.event = ev;
        cur.ts = sc
            .clock
            .and_then(|c| self.st.clocks.get(c as usize).copied())
            .unwrap_or(0);
        self.cur = cur;
        Ok(())
    }

    fn event(&self) -> CtfEvent<'_> {
        let c = &self.cur;
        let ec = &self.t.events[c.event as usize];
        CtfEvent {
            trace: self.t,
            ts: c.ts,
            cpu: self.cpu,
            stream: self.idx,
            name: &ec.name,
            class: c.event,
            file_offset: c.file_offset,
            items: &self.items,
            text: &self.text,
            buf: &self.buf,
            scopes: c.scopes,
        }
    }
}

/// One decoded event, borrowed from its stream reader until the iterator moves.
#[derive(Debug, Clone, Copy)]
pub struct CtfEvent<'a> {
    /// The trace.
    pub trace: &'a CtfTrace,
    /// Timestamp in clock ticks (0 without a clock).
    pub ts: u64,
    /// `cpu_id` of the packet context (the stream file index without one).
    pub cpu: u32,
    /// Index of the stream file.
    pub stream: usize,
    /// Event class name.
    pub name: &'a str,
    /// Index of the event class in [`CtfTrace::event_classes`].
    pub class: u32,
    /// Offset of the event in its stream file.
    pub file_offset: u64,
    items: &'a [Item],
    text: &'a [u8],
    buf: &'a [u8],
    scopes: [(u32, u32); 4],
}

/// The four event scopes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// Event header.
    Header = 0,
    /// Stream event context.
    StreamContext = 1,
    /// Event context.
    Context = 2,
    /// Payload.
    Payload = 3,
}

/// A decoded value (owned form, see [`CtfEvent::value`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CtfValue {
    /// Unsigned integer.
    U(u64),
    /// Signed integer.
    I(i64),
    /// Float.
    F(f64),
    /// Integer wider than 64 bits: sign and magnitude (little-endian 64-bit limbs).
    Wide {
        /// Negative (a signed integer with its top bit set).
        negative: bool,
        /// Absolute value, least significant limb first.
        magnitude: Vec<u64>,
    },
    /// String or text array (invalid UTF-8 replaced).
    Str(String),
    /// Enum value and the labels whose range holds it.
    Enum(i128, Vec<String>),
    /// Struct fields (names without the `_` escape).
    Struct(Vec<(String, CtfValue)>),
    /// Array or sequence.
    Array(Vec<CtfValue>),
    /// Selected option name and value.
    Variant(String, Box<CtfValue>),
}

impl<'a> CtfEvent<'a> {
    /// The items of one scope (empty when the scope is absent).
    pub fn scope_items(&self, s: EventScope) -> &'a [Item] {
        let (a, b) = self.scopes[s as usize];
        self.items.get(a as usize..b as usize).unwrap_or(&[])
    }

    /// The text arena the [`Item::Str`] ranges point into.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// The packet buffer the [`Item::Ints`] positions point into.
    pub fn packet(&self) -> &'a [u8] {
        self.buf
    }

    /// Element `k` of an [`Item::Ints`] array (as an item of the element node).
    pub fn int_at(&self, array: NodeId, start: u64, k: u64) -> Option<Item> {
        int_elem(self.trace.plan(), self.buf, array, start, k)
    }

    /// A scope as an owned value (a struct), `None` when absent.
    pub fn value(&self, s: EventScope) -> Option<CtfValue> {
        let items = self.scope_items(s);
        if items.is_empty() {
            return None;
        }
        let mut i = 0;
        Some(owned(self.trace.plan(), items, self.text, self.buf, &mut i))
    }

    /// Top-level payload fields as `(name, value)` (names without the CTF `_` escape).
    pub fn fields(&self) -> Vec<(String, CtfValue)> {
        match self.value(EventScope::Payload) {
            Some(CtfValue::Struct(f)) => f,
            _ => Vec::new(),
        }
    }
}

fn node_name<'p>(plan: &'p Plan, it: &Item) -> &'p str {
    it.node()
        .and_then(|n| plan.nodes.get(n as usize))
        .map_or("", |n| display_name(&n.name))
}

fn labels(plan: &Plan, n: NodeId, v: i128) -> Option<Vec<String>> {
    let Kind::Enum { maps, .. } = plan.nodes.get(n as usize)?.kind else {
        return None;
    };
    Some(
        plan.enums
            .get(maps as usize)?
            .iter()
            .filter(|m| m.lo <= v && v <= m.hi)
            .map(|m| m.label.clone())
            .collect(),
    )
}

/// Element `k` of an [`Item::Ints`] array starting at bit `start` of `buf`.
pub fn int_elem(plan: &Plan, buf: &[u8], array: NodeId, start: u64, k: u64) -> Option<Item> {
    let elem = match plan.nodes.get(array as usize)?.kind {
        Kind::Array { elem, .. } | Kind::Seq { elem, .. } => elem,
        _ => return None,
    };
    let Kind::Int {
        size, signed, be, ..
    } = plan.nodes.get(elem as usize)?.kind
    else {
        return None;
    };
    let at = start.checked_add(k.checked_mul(u64::from(size))?)?;
    let raw = super::decode::read_bits(buf, at, size, be, u64::MAX).ok()?;
    Some(if signed {
        let s = 64 - size;
        Item::I(elem, ((raw << s) as i64) >> s)
    } else {
        Item::U(elem, raw)
    })
}

fn owned(plan: &Plan, items: &[Item], text: &[u8], buf: &[u8], i: &mut usize) -> CtfValue {
    let Some(it) = items.get(*i).copied() else {
        return CtfValue::Struct(Vec::new());
    };
    *i += 1;
    match it {
        Item::U(n, v) => labels(plan, n, i128::from(v))
            .map_or(CtfValue::U(v), |l| CtfValue::Enum(i128::from(v), l)),
        Item::I(n, v) => labels(plan, n, i128::from(v))
            .map_or(CtfValue::I(v), |l| CtfValue::Enum(i128::from(v), l)),
        Item::F(_, v) => CtfValue::F(v),
        Item::Wide(n, pos) => match super::format::wide_at(plan, buf, n, pos) {
            Some((limbs, size, signed, _)) => {
                let (negative, magnitude) = super::format::wide_magnitude(&limbs, size, signed);
                CtfValue::Wide {
                    negative,
                    magnitude,
                }
            }
            None => CtfValue::Struct(Vec::new()),
        },
        Item::Str(_, a, b) => CtfValue::Str(
            String::from_utf8_lossy(text.get(a as usize..b as usize).unwrap_or(&[])).into_owned(),
        ),
        Item::End => CtfValue::Struct(Vec::new()),
        Item::Ints(n, start, len) => CtfValue::Array(
            (0..len)
                .map_while(|k| int_elem(plan, buf, n, start, k))
                .map(|it| match it {
                    Item::I(_, v) => CtfValue::I(v),
                    Item::U(_, v) => CtfValue::U(v),
                    _ => CtfValue::U(0),
                })
                .collect(),
        ),
        Item::Begin(n) => {
            let kind = plan.nodes.get(n as usize).map(|x| &x.kind);
            match kind {
                Some(Kind::Struct(_)) => {
                    let mut f = Vec::new();
                    while *i < items.len() && items[*i] != Item::End {
                        let name = node_name(plan, &items[*i]).to_string();
                        f.push((name, owned(plan, items, text, buf, i)));
                    }
                    *i += 1;
                    CtfValue::Struct(f)
                }
                Some(Kind::Variant { .. }) => {
                    let name = items.get(*i).map_or("", |x| node_name(plan, x)).to_string();
                    let v = owned(plan, items, text, buf, i);
                    *i += 1;
                    CtfValue::Variant(name, Box::new(v))
                }
                _ => {
                    let mut a = Vec::new();
                    while *i < items.len() && items[*i] != Item::End {
                        a.push(owned(plan, items, text, buf, i));
                    }
                    *i += 1;
                    CtfValue::Array(a)
                }
            }
        }
    }
}

/// Iterator of [`CtfTrace::events`]: use [`CtfEvents::next_event`].
pub struct CtfEvents<'t> {
    readers: Vec<StreamReader<'t>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    started: bool,
    failed: bool,
    refill: Option<usize>,
    wanted: Option<Vec<bool>>,
    cpus: Option<std::collections::BTreeSet<u32>>,
    ts_min: Option<u64>,
    ts_max: Option<u64>,
}

impl CtfEvents<'_> {
    fn fill(&mut self, i: usize) -> Result<()> {
        let Some(r) = self.readers.get_mut(i) else {
            return Ok(());
        };
        while r.next_event()? {
            let c = &r.cur;
            let keep = self
                .wanted
                .as_ref()
                .is_none_or(|w| w.get(c.event as usize).copied().unwrap_or(false))
                && self.cpus.as_ref().is_none_or(|s| s.contains(&r.cpu))
                && self.ts_min.is_none_or(|m| c.ts >= m)
                && self.ts_max.is_none_or(|m| c.ts <= m);
            if keep {
                self.heap.push(Reverse((c.ts, i)));
                return Ok(());
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<usize>> {
        if !self.started {
            self.started = true;
            for i in 0..self.readers.len() {
                self.fill(i)?;
            }
        }
        if let Some(i) = self.refill.take() {
            self.fill(i)?;
        }
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill = Some(i);
        Ok(Some(i))
    }

    /// The next event in timestamp order, borrowed until the next call; `None` at the end or
    /// after an error.
    pub fn next_event(&mut self) -> Option<Result<CtfEvent<'_>>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(i)) => self.readers.get(i).map(|r| Ok(r.event())),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator of [`CtfTrace::packets`].
pub struct CtfPackets<'t> {
    r: StreamReader<'t>,
    failed: bool,
}

impl Iterator for CtfPackets<'_> {
    type Item = Result<CtfPacket>;

    fn next(&mut self) -> Option<Result<CtfPacket>> {
        if self.failed {
            return None;
        }
        match self.r.next_packet() {
            Ok(true) => Some(Ok(self.r.packet)),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Item of [`StreamItems`].
#[derive(Debug, Clone, Copy)]
pub enum CtfStreamItem<'a> {
    /// A packet, before its events.
    Packet(CtfPacket),
    /// An event.
    Event(CtfEvent<'a>),
}

/// Iterator of [`CtfTrace::stream_items`]: use [`StreamItems::next_item`].
pub struct StreamItems<'t> {
    r: StreamReader<'t>,
    failed: bool,
    announced: bool,
}

impl StreamItems<'_> {
    /// The next packet (reported before its events) or event of the stream.
    pub fn next_item(&mut self) -> Option<Result<CtfStreamItem<'_>>> {
        if self.failed {
            return None;
        }
        let r = &mut self.r;
        let res: Result<Option<bool>> = (|| {
            if r.in_packet && r.pos < r.content_end && self.announced {
                r.decode_event().map_err(|e| r.derr(e))?;
                return Ok(Some(true));
            }
            if r.in_packet && !self.announced {
                self.announced = true;
                return Ok(Some(false));
            }
            if !r.next_packet()? {
                return Ok(None);
            }
            self.announced = true;
            Ok(Some(false))
        })();
        match res {
            Ok(Some(true)) => Some(Ok(CtfStreamItem::Event(self.r.event()))),
            Ok(Some(false)) => Some(Ok(CtfStreamItem::Packet(self.r.packet))),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
