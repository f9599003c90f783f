//! Trace writer: the `metadata` file and one stream file per CPU.
//!
//! [`TraceWriter::create`] creates the directory (if needed) and writes `metadata` (the TSDL of
//! [`crate::metadata`]). Stream files `stream_<cpu>` are created on the first packet of that
//! CPU. Existing files are never overwritten: creating a trace where one exists is an error.
//!
//! [`TraceWriter::write_packet`] takes one whole packet (a ring sub-buffer, layout in
//! [`crate::layout`]), checks it (header and records), and appends it to the CPU's stream **truncated to its content
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
//! # Fast path and verification
//! [`TraceWriter::write_packet_raw`] is the consumer's common path: the caller hands its own
//! (checked) copy of the packet header and a pointer to the packet where it lies (a shared
//! mapping); the header gets every check above, then one `pwritev` writes the header copy,
//! the content from the pointer and the zero padding. The records are not read by this
//! process at all (with a sink, or without files, the packet is copied once: "Other
//! destinations" below). [`TraceWriter::verify`] checks them afterwards, on the bytes **as
//! written** (re-read from the stream file): the record checks above, a count per CPU and id
//! (the writer's `events` counter includes such packets only once verified), removal of
//! records of ids the caller names (reservations abandoned in the ring buffer), and removal
//! of any packet that fails. A stream is rewritten (to `stream_<cpu>.tmp`, renamed over it)
//! only when one of its packets changes; the other packets, and the continuity between
//! them, stay as they were. Run it before [`TraceWriter::finish`]: until then a stream may
//! hold a packet whose records are damaged, which readers must (and do) detect.
//!
//! # Direct I/O
//! With [`TraceWriter::set_direct_io`] each stream file is opened a second time with
//! `O_DIRECT` (a file system that refuses it, such as tmpfs, keeps the buffered path), and
//! every packet of that stream is padded on disk to a multiple of [`DIRECT_ALIGN`] (4 KiB)
//! instead of 8 bytes (`packet_size` says so; readers skip the bytes after `content_size`), so
//! that every packet starts at an aligned offset. [`TraceWriter::write_packets_raw`] then
//! writes consecutive packets whose memory is page aligned (sub-buffers of at least 4 KiB)
//! in **one** `pwritev` that the device reads straight from the caller's mapping: no copy
//! into the page cache. Only each packet's first 4 KiB block is copied, into an aligned
//! buffer of the writer, with the checked header copy in front, so the header on disk is
//! still never the shared bytes. The bytes between a packet's content and its padded end
//! are the sub-buffer's (older records of the same buffer, or zeros). A write the file
//! system refuses with `EINVAL` is done again buffered and the stream stays buffered (same
//! padding). With a sink, or without files, the copying path below is taken instead.
//! [`TraceWriter::verify`] reads back through the buffered descriptor.
//! [`TraceWriter::set_through_cache`] sends the same iovecs through the buffered descriptor
//! for as long as the caller asks (a consumer whose device lags): same padding, same layout,
//! a write that does not wait for the device.
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
//! disk does not cost the remote copy. The `env` entries [`TraceWriter::finish_with_env`] adds go to the
//! sink as the metadata it has plus a second `env` block ([`crate::desc::env_addendum`]), so
//! an append-only copy carries them too. [`TraceWriter::create_without_files`] makes a writer
//! that checks packets and feeds its sink without writing any file (streaming only). A sink
//! must not block: it is called on the consumer's thread.
//!
//! On the fast path ([`TraceWriter::write_packet_raw`]) with a sink, the packet is copied
//! once and the same bytes go to the sink and to the file: the sink gets it **when it is
//! written, before [`TraceWriter::verify`]**, with the number of records its chain holds. A
//! packet verification rejects later is removed from the local trace but was already sent;
//! [`Verification::rejected_sent`] counts those. A writer without files cannot read packets
//! back, so there `write_packet_raw` copies the packet and takes the checked path of
//! [`TraceWriter::write_packet`] (records checked before anything is sent; `verify` then only
//! reports the counts).
//!
//! A rejected packet is not written and leaves the writer's state unchanged. A failed write
//! (ENOSPC, EIO) is undone by truncating the file back to its previous length, so the stream
//! stays readable; the error names the path.

use crate::desc::{env_addendum, metadata, ClockDesc, EnvValue, TraceDesc};
use crate::error::{CtfError, Result};
use crate::layout::{
    check_header, off, PacketHeader, Records, PACKET_HEADER_SIZE, PADDING_ID, PENDING_ID,
};
use faultline_schema::{decode_field, FieldDesc, FieldErrorKind, FieldType};
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
    /// The same file opened again with `O_DIRECT` (module docs, "Direct I/O"), while packets
    /// can still go that way.
    direct: Option<File>,
    /// Packets are padded on disk to a multiple of this: 8, or [`DIRECT_ALIGN`] for a stream
    /// opened for direct I/O (so that every packet starts at an aligned offset).
    align: usize,
    len: u64,
    last: Option<PacketHeader>,
    /// File offsets of the packets written by [`TraceWriter::write_packet_raw`] and not
    /// verified yet.
    unverified: Vec<u64>,
    /// Records per id of the packets [`TraceWriter::write_packet`] checked and wrote since the
    /// last [`TraceWriter::verify`], and their padding records.
    counted: IdCounts,
    counted_padding: u64,
}

/// Records per event id: dense for the ids a registry assigns, a map beyond.
#[derive(Default)]
struct IdCounts {
    dense: Vec<u64>,
    sparse: BTreeMap<u32, u64>,
}

impl IdCounts {
    fn add(&mut self, id: u32) {
        match self.dense.get_mut(id as usize) {
            Some(c) => *c += 1,
            None if id < IdSet::DENSE_LIMIT => {
                self.dense.resize(id as usize + 1, 0);
                self.dense[id as usize] += 1;
            }
            None => *self.sparse.entry(id).or_insert(0) += 1,
        }
    }

    /// The non-zero counts, by id.
    fn into_row(self) -> BTreeMap<u32, u64> {
        self.dense
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(id, &n)| (id as u32, n))
            .chain(self.sparse)
            .collect()
    }
}

/// What [`TraceWriter::verify`] found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Records of the verified packets, per CPU and event id.
    pub events: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Padding records (abandoned reservations, kept; readers skip them) in those packets.
    pub padding: u64,
    /// Packets removed from the trace: (CPU, its `packet_seq_num`, the error, the records it
    /// held as far as its record chain goes).
    pub rejected: Vec<(u32, u64, CtfError, u64)>,
    /// How many of the `rejected` packets had already gone to the sink
    /// ([`TraceWriter::set_sink`]): a sink gets packets when they are written, before
    /// verification, so a remote copy may hold packets the local trace does not.
    pub rejected_sent: u64,
}

/// Zeros for the padding after a packet's content.
static ZEROS: [u8; DIRECT_ALIGN] = [0; DIRECT_ALIGN];

/// Alignment of file offsets, lengths and memory for direct I/O (module docs, "Direct I/O"):
/// a page, which every Linux file system that takes `O_DIRECT` accepts.
pub const DIRECT_ALIGN: usize = 4096;

/// One packet for [`TraceWriter::write_packets_raw`]: the caller's checked copy of its header
/// and where the packet lies.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket {
    /// The caller's copy of the packet header (the one written).
    pub header: [u8; PACKET_HEADER_SIZE],
    /// The packet's first byte (in a shared mapping, typically).
    pub data: *const u8,
    /// Bytes readable from `data` (the sub-buffer size).
    pub available: usize,
}

/// A packet's first [`DIRECT_ALIGN`] bytes with the checked header in front, in memory
/// aligned for direct I/O.
#[repr(C, align(4096))]
struct Block([u8; DIRECT_ALIGN]);
const _: () = assert!(std::mem::align_of::<Block>() == DIRECT_ALIGN);

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
    /// The copy [`TraceWriter::write_packet_raw`] makes for a sink or a writer without files.
    copy: Vec<u8>,
    /// Event ids of the packet [`TraceWriter::write_packet`] is checking.
    ids_scratch: Vec<u32>,
    /// Open new streams for direct I/O too ([`TraceWriter::set_direct_io`]).
    direct_io: bool,
    /// Remember the packets written without their records checked, for
    /// [`TraceWriter::verify`] ([`TraceWriter::set_verify_later`]).
    verify_later: bool,
    /// First blocks of the packets of one direct write.
    blocks: Vec<Block>,
    /// Write the streams opened for direct I/O through the page cache for now
    /// ([`TraceWriter::set_through_cache`]).
    through_cache: bool,
    /// Whether finishing syncs the files to stable storage ([`TraceWriter::set_sync`]).
    sync: bool,
    /// The description changed since `metadata` was written ([`TraceWriter::set_clock`]).
    metadata_stale: bool,
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

/// `pwritev` all of `iov` at `at`, continuing after partial writes.
///
/// # Safety
/// Every iovec must point at memory valid for reads of its length.
unsafe fn pwritev_all(file: &File, iov: &[libc::iovec], at: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut v: Vec<libc::iovec> = iov.iter().filter(|i| i.iov_len > 0).copied().collect();
    let mut at = at;
    let mut first = 0usize;
    while first < v.len() {
        let off = libc::off_t::try_from(at)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::FileTooLarge))?;
        // SAFETY: the caller's promise; v[first..] are valid iovecs (at most 3).
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                v[first..].as_ptr(),
                (v.len() - first) as libc::c_int,
                off,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut n = n as usize;
        at += n as u64;
        while n > 0 && first < v.len() {
            let take = n.min(v[first].iov_len);
            // SAFETY: take <= iov_len: still inside the same buffer.
            v[first].iov_base = unsafe { (v[first].iov_base as *mut u8).add(take) } as *mut _;
            v[first].iov_len -= take;
            n -= take;
            if v[first].iov_len == 0 {
                first += 1;
            }
        }
    }
    Ok(())
}

/// Read the packet this writer wrote at `at` into `buf` (header and content rounded up to 8
/// bytes, as written); returns its header and its length in the file.
fn read_packet(file: &File, at: u64, buf: &mut Vec<u8>) -> std::io::Result<(PacketHeader, usize)> {
    use std::os::unix::fs::FileExt;
    let mut hb = [0u8; PACKET_HEADER_SIZE];
    file.read_exact_at(&mut hb, at)?;
    let h = PacketHeader::parse(&hb);
    // Our own header (packet_size patched to the rounded content): bounded anyway.
    let len = usize::try_from(h.packet_bytes())
        .ok()
        .filter(|&n| (PACKET_HEADER_SIZE..=1 << 32).contains(&n))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("packet at byte {at}: bad packet_size"),
            )
        })?;
    buf.clear();
    buf.resize(len, 0);
    buf[..PACKET_HEADER_SIZE].copy_from_slice(&hb);
    file.read_exact_at(
        &mut buf[PACKET_HEADER_SIZE..],
        at + PACKET_HEADER_SIZE as u64,
    )?;
    Ok((h, len))
}

/// The bytes of `blocks`.
fn blocks_bytes(blocks: &[Block]) -> &[u8] {
    // SAFETY: `Block` is `repr(C)` around a byte array: the blocks are contiguous bytes,
    // borrowed for as long as `blocks` is.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, blocks.len() * DIRECT_ALIGN) }
}

/// [`read_packet`] through the stream's direct descriptor, for a packet written by direct I/O
/// (at an aligned offset, its size a multiple of [`DIRECT_ALIGN`]) into `blocks`; any other
/// packet is an error (the caller reads it buffered).
fn read_packet_direct(
    file: &File,
    at: u64,
    blocks: &mut Vec<Block>,
) -> std::io::Result<(PacketHeader, usize)> {
    use std::os::unix::fs::FileExt;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if blocks.is_empty() {
        blocks.push(Block([0; DIRECT_ALIGN]));
    }
    file.read_exact_at(&mut blocks[0].0, at)?;
    let h = PacketHeader::parse(
        blocks[0].0[..PACKET_HEADER_SIZE]
            .try_into()
            .map_err(|_| bad("short block"))?,
    );
    // Our own header: bounded anyway.
    let len = usize::try_from(h.packet_bytes())
        .ok()
        .filter(|&n| (DIRECT_ALIGN..=1 << 32).contains(&n) && n.is_multiple_of(DIRECT_ALIGN))
        .ok_or_else(|| bad("not a direct-I/O packet"))?;
    let n = len / DIRECT_ALIGN;
    if blocks.len() < n {
        blocks.resize_with(n, || Block([0; DIRECT_ALIGN]));
    }
    if n > 1 {
        // SAFETY: blocks 1..n are contiguous bytes we own (repr(C) byte arrays), aligned for
        // direct I/O; no other reference to them lives during the read.
        let rest = unsafe {
            std::slice::from_raw_parts_mut(
                blocks[1..].as_mut_ptr() as *mut u8,
                (n - 1) * DIRECT_ALIGN,
            )
        };
        file.read_exact_at(rest, at + DIRECT_ALIGN as u64)?;
    }
    Ok((h, len))
}

/// Check that `payload` decodes to exactly its length; the error names the field.
#[inline]
fn check_payload(fields: Fields, payload: &[u8]) -> std::result::Result<(), (usize, String)> {
    let mut at = 0usize;
    for f in fields {
        match f.ty.fixed_size() {
            // Numbers take any bit pattern: only their room is checked, nothing is decoded
            // (the check runs for every record the consumer writes). Same error as
            // decode_field's: truncated at the field's start. `at <= payload.len()`: no
            // overflow.
            Some(n) if f.ty != FieldType::Bool => {
                if payload.len() - at < n {
                    return Err((at, FieldErrorKind::Truncated.describe(f.name)));
                }
                at += n;
            }
            _ => {
                decode_field(f.ty, payload, &mut at)
                    .map_err(|e| (e.offset, e.kind.describe(f.name)))?;
            }
        }
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

/// Put `tmp` in place of the existing file `path`, atomically (a reader, or a crash, sees the
/// old or the new file): by exchanging the two names (`renameat2(RENAME_EXCHANGE)`) and then
/// removing `tmp`, which holds the old file; by `rename` where the file system cannot
/// exchange. Not a plain `rename` first: on ext4, replacing a file by `rename` starts the
/// writeback of the new one (`auto_da_alloc`), which at the end of a short `faultline record`
/// cost ~0.07 ms of a few, and milliseconds when the device is busy.
fn replace_file(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    if let (Ok(t), Ok(d)) = (c(tmp), c(path)) {
        // SAFETY: two NUL-terminated paths that outlive the call; no other pointers.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::AT_FDCWD,
                d.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            // The old file, now under the temporary name. Left behind only if this fails,
            // as a `rename` interrupted before it would leave the new one.
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        }
    }
    std::fs::rename(tmp, path)
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
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
            copy: Vec::new(),
            ids_scratch: Vec::new(),
            direct_io: false,
            verify_later: true,
            blocks: Vec::new(),
            through_cache: false,
            sync: true,
            metadata_stale: false,
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
            copy: Vec::new(),
            ids_scratch: Vec::new(),
            direct_io: false,
            verify_later: true,
            blocks: Vec::new(),
            through_cache: false,
            sync: true,
            metadata_stale: false,
        })
    }

    /// Whether [`TraceWriter::finish`] syncs every file and the directory to stable storage
    /// (`fsync`; the default). Off, the trace is complete in the page cache when `finish`
    /// returns (readable by every process, as the output of `strace -o` or `perf record` is)
    /// but a power loss soon after may lose its end.
    pub fn set_sync(&mut self, on: bool) {
        self.sync = on;
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

    /// Write packets taken in place by direct I/O where possible (module docs, "Direct I/O");
    /// applies to the streams created from now on. Off by default.
    pub fn set_direct_io(&mut self, on: bool) {
        self.direct_io = on;
    }

    /// While `on`, the packets [`TraceWriter::write_packets_raw`] would write by direct I/O
    /// go through the page cache instead (module docs, "Direct I/O": same iovecs, same 4 KiB
    /// padding, so the stream stays ready for direct writes and its layout does not change):
    /// the write returns once the kernel has copied the bytes, whatever the device is doing.
    /// For a consumer whose writers are about to run out of buffer (a device that lags);
    /// off again, the next write goes direct. Off by default.
    pub fn set_through_cache(&mut self, on: bool) {
        self.through_cache = on;
    }

    /// Stop writing by direct I/O, also on the streams opened for it: from now on every packet
    /// goes through the page cache (a write that does not wait for the device), with the
    /// stream's padding unchanged (as after a write the file system refused). For the end of a
    /// recording whose shared buffers nobody can change any more.
    pub fn stop_direct_io(&mut self) {
        self.direct_io = false;
        for s in self.streams.values_mut() {
            s.direct = None;
        }
    }

    /// Replace the clock of the metadata (a frequency measured over the whole recording): the
    /// next metadata written has it ([`TraceWriter::finish`] writes it if nothing else did, by
    /// atomic replacement as [`TraceWriter::add_events`] does; a clock the metadata cannot
    /// hold is reported there). Not with a sink, whose copy of the metadata only grows (an
    /// error, nothing changes).
    pub fn set_clock(&mut self, clock: ClockDesc) -> Result<()> {
        if self.sink.is_some() {
            return Err(CtfError::Desc(
                "the clock of a trace sent to a sink cannot change".into(),
            ));
        }
        self.desc.clock = clock;
        self.metadata_stale = true;
        Ok(())
    }

    /// Whether packets written without their records checked
    /// ([`TraceWriter::write_packet_raw`], [`TraceWriter::write_packets_raw`]) are remembered
    /// for [`TraceWriter::verify`] (the default). A caller that never verifies turns it off,
    /// so the list does not grow with the trace; `verify` then checks only the packets
    /// written while it was on.
    pub fn set_verify_later(&mut self, on: bool) {
        self.verify_later = on;
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
        self.metadata_stale = false;
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

    /// Parse and check `packet`'s header for `cpu` (layout and the CPU's previous packet) and
    /// return it with the packet's content (`content_size` bytes, header included).
    fn header_and_content<'p>(
        &self,
        cpu: u32,
        packet: &'p [u8],
    ) -> Result<(PacketHeader, &'p [u8])> {
        let h = PacketHeader::parse_slice(packet).ok_or_else(|| CtfError::Packet {
            cpu,
            offset: 0,
            msg: format!(
                "packet of {} bytes is shorter than the {PACKET_HEADER_SIZE}-byte header",
                packet.len()
            ),
        })?;
        self.check_header_for(cpu, &h, packet.len() as u64)?;
        let content = packet
            .get(..h.content_bytes() as usize)
            .ok_or(CtfError::Packet {
                cpu,
                offset: off::CONTENT_SIZE as u64,
                msg: "content_size beyond the buffer".into(),
            })?;
        Ok((h, content))
    }

    /// Check `packet` for `cpu` against the layout and the CPU's previous packet; returns the
    /// header and the number of records.
    pub fn check_packet(&self, cpu: u32, packet: &[u8]) -> Result<(PacketHeader, u64)> {
        let (h, content) = self.header_and_content(cpu, packet)?;
        let n = self.check_records(cpu, &h, content, |_| {})?.0;
        Ok((h, n))
    }

    /// The header checks of [`TraceWriter::check_packet`] (module docs): the layout, the trace,
    /// the CPU, the loss counters and continuity with the CPU's previous packet; `available`
    /// is the number of bytes the packet occupies in its buffer.
    fn check_header_for(&self, cpu: u32, h: &PacketHeader, available: u64) -> Result<()> {
        let prev = self.streams.get(&cpu).and_then(|s| s.last);
        self.check_header_after(cpu, h, available, prev.as_ref())
    }

    /// [`TraceWriter::check_header_for`] with `prev` as the CPU's previous packet.
    fn check_header_after(
        &self,
        cpu: u32,
        h: &PacketHeader,
        available: u64,
        prev: Option<&PacketHeader>,
    ) -> Result<()> {
        let bad = |offset: usize, msg: String| CtfError::Packet {
            cpu,
            offset: offset as u64,
            msg,
        };
        let h = *h;
        check_header(&h, available).map_err(|(o, m)| bad(o as usize, m))?;
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
        if let Some(p) = prev {
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
        Ok(())
    }

    /// The record checks of [`TraceWriter::check_packet`] on `content` (the packet's first
    /// `content_size / 8` bytes): the chain ends exactly at the content end, ids are declared,
    /// payloads decode to exactly their length, timestamps are ordered inside the packet.
    /// Padding records are checked for order only and not counted; `each` sees the id of
    /// every event record. Returns (event records, padding records).
    fn check_records(
        &self,
        cpu: u32,
        h: &PacketHeader,
        content: &[u8],
        mut each: impl FnMut(u32),
    ) -> Result<(u64, u64)> {
        let bad = |offset: usize, msg: String| CtfError::Packet {
            cpu,
            offset: offset as u64,
            msg,
        };
        let mut n = 0u64;
        let mut padding = 0u64;
        let mut last_ts = h.timestamp_begin;
        for r in Records::new(content) {
            let r = r.map_err(|(o, m)| bad(o as usize, m))?;
            if r.id == PENDING_ID {
                return Err(bad(
                    r.offset,
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
                padding += 1;
                continue;
            }
            let Some(fields) = self.ids.get(r.id) else {
                return Err(bad(r.offset + 8, format!("undeclared event id {}", r.id)));
            };
            check_payload(fields, r.payload)
                .map_err(|(o, m)| bad(r.payload_offset() + o, format!("event id {}: {m}", r.id)))?;
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
            each(r.id);
        }
        Ok((n, padding))
    }

    /// Check and append one packet to `cpu`'s stream (see the module docs). Returns the number
    /// of bytes written. Its records are counted per id for the next [`TraceWriter::verify`]
    /// (which has nothing left to check in them).
    pub fn write_packet(&mut self, cpu: u32, packet: &[u8]) -> Result<u64> {
        let (h, content) = self.header_and_content(cpu, packet)?;
        let mut ids = std::mem::take(&mut self.ids_scratch);
        ids.clear();
        let checked = self.check_records(cpu, &h, content, |id| ids.push(id));
        let (records, padding) = match checked {
            Ok(v) => v,
            Err(e) => {
                self.ids_scratch = ids;
                return Err(e);
            }
        };
        let content = h.content_bytes() as usize;
        let rounded = match self.pad_to(cpu) {
            Ok(a) => content.next_multiple_of(a),
            Err(e) => {
                self.ids_scratch = ids;
                return Err(e);
            }
        };
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
        if let Err(e) = r {
            self.ids_scratch = ids;
            return Err(e);
        }
        if let Some(s) = self.streams.get_mut(&cpu) {
            s.last = Some(h);
            for &id in &ids {
                s.counted.add(id);
            }
            s.counted_padding += padding;
        }
        self.ids_scratch = ids;
        self.counters.packets += 1;
        self.counters.events += records;
        self.counters.stream_bytes += rounded as u64;
        Ok(rounded as u64)
    }

    /// Append one packet to `cpu`'s stream **straight from where it lies** (module docs,
    /// "Fast path"): `header` is the caller's copy of the packet header, `data` the packet
    /// (its first `content_size / 8` bytes are written, the header from `header`). Only the
    /// header is checked here (as [`TraceWriter::write_packet`] checks it); the records are
    /// checked by [`TraceWriter::verify`], which must run before the trace is finished.
    /// Events are counted there too. One `pwritev`; a failed write is undone.
    ///
    /// With a sink ([`TraceWriter::set_sink`]) the packet is copied once and the same bytes
    /// go to the sink and to the file; the sink gets them before verification, with the
    /// number of records their chain holds (module docs, "Other destinations"). A writer
    /// without files ([`TraceWriter::create_without_files`]) has nothing to read back: there
    /// the copy takes the checked path of [`TraceWriter::write_packet`].
    ///
    /// # Safety
    /// `data` must be valid for reads of `available` bytes for the whole call. It may be
    /// memory another process writes concurrently (a shared mapping): it is read only by the
    /// kernel, and whatever bytes it holds are checked by [`TraceWriter::verify`].
    pub unsafe fn write_packet_raw(
        &mut self,
        cpu: u32,
        header: &[u8; PACKET_HEADER_SIZE],
        data: *const u8,
        available: usize,
    ) -> Result<u64> {
        let p = [RawPacket {
            header: *header,
            data,
            available,
        }];
        // SAFETY: the caller's promise, passed on.
        let mut r = unsafe { self.write_packets_raw(cpu, &p) };
        r.pop().unwrap_or(Ok(0))
    }

    /// [`TraceWriter::write_packet_raw`] for consecutive packets of `cpu`, in order: one
    /// result per packet. Each header is checked against the one before it (rejected packets
    /// are left out, the others still go); on a stream opened for direct I/O the accepted
    /// packets go to the disk in **one** `pwritev` (module docs, "Direct I/O"), so an I/O
    /// error fails them all.
    ///
    /// # Safety
    /// Each packet's `data` must be valid for reads of its `available` bytes for the whole
    /// call (see [`TraceWriter::write_packet_raw`]).
    pub unsafe fn write_packets_raw(
        &mut self,
        cpu: u32,
        packets: &[RawPacket],
    ) -> Vec<Result<u64>> {
        let mut res: Vec<Option<Result<u64>>> = Vec::with_capacity(packets.len());
        let mut ok: Vec<(usize, PacketHeader)> = Vec::with_capacity(packets.len());
        let mut prev = self.streams.get(&cpu).and_then(|s| s.last);
        for (i, p) in packets.iter().enumerate() {
            let h = PacketHeader::parse(&p.header);
            match self.check_header_after(cpu, &h, p.available as u64, prev.as_ref()) {
                Ok(()) => {
                    ok.push((i, h));
                    prev = Some(h);
                    res.push(None);
                }
                Err(e) => res.push(Some(Err(e))),
            }
        }
        if !ok.is_empty() {
            match self.direct_stream(cpu, packets, &ok) {
                Ok(true) => {
                    // SAFETY: the caller's promise, passed on.
                    let r = unsafe { self.write_direct(cpu, packets, &ok) };
                    for ((i, _), r) in ok.iter().zip(r) {
                        res[*i] = Some(r);
                    }
                }
                Ok(false) => {
                    for &(i, h) in &ok {
                        let p = &packets[i];
                        // SAFETY: the caller's promise, passed on.
                        res[i] = Some(unsafe { self.write_raw_checked(cpu, h, p.data) });
                    }
                }
                Err(e) => {
                    for &(i, _) in &ok {
                        res[i] = Some(Err(e.again()));
                    }
                }
            }
        }
        res.into_iter().map(|r| r.unwrap_or(Ok(0))).collect()
    }

    /// The padding unit of `cpu`'s stream (created now if needed).
    fn pad_to(&mut self, cpu: u32) -> Result<usize> {
        Ok(self.stream(cpu)?.align)
    }

    /// Whether the accepted packets `ok` of `packets` can go to `cpu`'s stream by direct I/O:
    /// a local writer without sink, a stream opened for it, its length and every packet's
    /// address and size aligned. A stream that holds nothing yet and gets a packet that does
    /// not fit gives direct I/O up (8-byte padding from then on).
    fn direct_stream(
        &mut self,
        cpu: u32,
        packets: &[RawPacket],
        ok: &[(usize, PacketHeader)],
    ) -> Result<bool> {
        let plain = self.sink.is_some() || !self.local;
        let s = self.stream(cpu)?;
        if s.direct.is_none() {
            return Ok(false);
        }
        let fits = ok.iter().all(|&(i, _)| {
            let p = &packets[i];
            (p.data as usize).is_multiple_of(DIRECT_ALIGN)
                && p.available.is_multiple_of(DIRECT_ALIGN)
                && p.available >= DIRECT_ALIGN
        });
        if !fits && s.len == 0 && s.unverified.is_empty() {
            s.direct = None;
            s.align = 8;
        }
        Ok(fits && !plain && s.direct.is_some() && s.len.is_multiple_of(DIRECT_ALIGN as u64))
    }

    /// Write the accepted packets by direct I/O (module docs, "Direct I/O"): each packet's
    /// first block is copied (with the checked header in front), the rest goes from where it
    /// lies, the whole in one `pwritev` at the stream's end.
    ///
    /// # Safety
    /// As [`TraceWriter::write_packets_raw`]; [`TraceWriter::direct_stream`] said yes.
    unsafe fn write_direct(
        &mut self,
        cpu: u32,
        packets: &[RawPacket],
        ok: &[(usize, PacketHeader)],
    ) -> Vec<Result<u64>> {
        let mut blocks = std::mem::take(&mut self.blocks);
        if blocks.len() < ok.len() {
            blocks.resize_with(ok.len(), || Block([0; DIRECT_ALIGN]));
        }
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(2 * ok.len());
        let mut sizes: Vec<usize> = Vec::with_capacity(ok.len());
        for (&(i, h), b) in ok.iter().zip(blocks.iter_mut()) {
            let p = &packets[i];
            // check_header: 128 <= content <= available, and available is a multiple of
            // DIRECT_ALIGN (direct_stream): the rounded size stays inside the caller's bytes.
            let rounded = (h.content_bytes() as usize).next_multiple_of(DIRECT_ALIGN);
            let mut hdr = h;
            hdr.packet_size = rounded as u64 * 8;
            // SAFETY: DIRECT_ALIGN <= available bytes are readable from `data` (the caller's
            // promise, direct_stream); the block is ours, no overlap.
            unsafe { std::ptr::copy_nonoverlapping(p.data, b.0.as_mut_ptr(), DIRECT_ALIGN) };
            b.0[..PACKET_HEADER_SIZE].copy_from_slice(&hdr.encode());
            iov.push(libc::iovec {
                iov_base: b.0.as_mut_ptr() as *mut libc::c_void,
                iov_len: DIRECT_ALIGN,
            });
            if rounded > DIRECT_ALIGN {
                iov.push(libc::iovec {
                    // SAFETY: DIRECT_ALIGN < rounded <= available: inside the caller's bytes.
                    iov_base: unsafe { p.data.add(DIRECT_ALIGN) } as *mut libc::c_void,
                    iov_len: rounded - DIRECT_ALIGN,
                });
            }
            sizes.push(rounded);
        }
        let total: usize = sizes.iter().sum();
        let r = match self.streams.get_mut(&cpu) {
            Some(s) => {
                let at = s.len;
                // Through the page cache when asked (set_through_cache): the same bytes at
                // the same offset; the pages are 4 KiB aligned, so no page holds bytes of a
                // packet written directly, and a later direct read of the range (the
                // verification) first writes them back.
                let f = if self.through_cache {
                    s.file.as_ref()
                } else {
                    s.direct.as_ref()
                };
                let r = match f {
                    // SAFETY: every iovec points at memory valid for its length (our blocks,
                    // the caller's promise for the packets).
                    Some(f) => unsafe { pwritev_all(f, &iov, at) },
                    None => Err(std::io::ErrorKind::Unsupported.into()),
                };
                match r {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EINVAL)
                            && s.len == at
                            && !self.through_cache =>
                    {
                        // The file system refused this alignment after all: buffered from
                        // now on (same padding, so the stream's layout does not change).
                        s.direct = None;
                        let r = match s.file.as_ref() {
                            // SAFETY: as above.
                            Some(f) => unsafe { pwritev_all(f, &iov, at) },
                            None => Err(std::io::ErrorKind::Unsupported.into()),
                        };
                        (at, r)
                    }
                    r => (at, r),
                }
            }
            None => (0, Err(std::io::ErrorKind::NotFound.into())),
        };
        self.blocks = blocks;
        let Some(s) = self.streams.get_mut(&cpu) else {
            let e = CtfError::io(&self.dir, "write", std::io::ErrorKind::NotFound.into());
            return ok.iter().map(|_| Err(e.again())).collect();
        };
        match r {
            (at, Ok(())) => {
                let mut off = at;
                for (&(_, h), &n) in ok.iter().zip(&sizes) {
                    if self.verify_later {
                        s.unverified.push(off);
                    }
                    s.last = Some(h);
                    off += n as u64;
                }
                s.len = at + total as u64;
                self.counters.packets += ok.len() as u64;
                self.counters.stream_bytes += total as u64;
                sizes.into_iter().map(|n| Ok(n as u64)).collect()
            }
            (at, Err(e)) => {
                // Undo a partial write so the stream stays a sequence of whole packets.
                if let Some(f) = s.file.as_ref() {
                    let _ = f.set_len(at);
                }
                let e = CtfError::io(&s.path, "write", e);
                ok.iter().map(|_| Err(e.again())).collect()
            }
        }
    }

    /// One packet whose header passed the checks, by the buffered path: see
    /// [`TraceWriter::write_packet_raw`].
    ///
    /// # Safety
    /// As [`TraceWriter::write_packet_raw`], with `h` parsed from the caller's header copy
    /// and checked (so `128 <= content <= available`).
    unsafe fn write_raw_checked(
        &mut self,
        cpu: u32,
        h: PacketHeader,
        data: *const u8,
    ) -> Result<u64> {
        let content = h.content_bytes() as usize;
        let align = self.pad_to(cpu)?;
        let rounded = content.next_multiple_of(align);
        let mut hdr = h;
        hdr.packet_size = rounded as u64 * 8;
        let hb = hdr.encode();
        // SAFETY: PACKET_HEADER_SIZE <= content <= available (check_header), so the address is
        // inside the caller's `available` bytes.
        let body = unsafe { data.add(PACKET_HEADER_SIZE) };
        if self.sink.is_some() || !self.local {
            let mut out = std::mem::take(&mut self.copy);
            out.clear();
            out.extend_from_slice(&hb);
            out.resize(rounded, 0);
            // SAFETY: `body` is valid for reads of content - PACKET_HEADER_SIZE bytes (the
            // caller's promise, content <= available), `out` holds `rounded >= content` bytes
            // and is our own buffer: no overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    body,
                    out.as_mut_ptr().add(PACKET_HEADER_SIZE),
                    content - PACKET_HEADER_SIZE,
                )
            };
            let r = self.write_copy(cpu, h, hdr, &out);
            self.copy = out;
            return r;
        }
        // rounded - content < align <= ZEROS.len().
        let iov = [
            libc::iovec {
                iov_base: hb.as_ptr() as *mut libc::c_void,
                iov_len: hb.len(),
            },
            libc::iovec {
                iov_base: body as *mut libc::c_void,
                iov_len: content - PACKET_HEADER_SIZE,
            },
            libc::iovec {
                iov_base: ZEROS.as_ptr() as *mut libc::c_void,
                iov_len: rounded - content,
            },
        ];
        let later = self.verify_later;
        let s = self.stream(cpu)?;
        let Some(file) = s.file.as_ref() else {
            return Err(CtfError::io(
                &s.path,
                "write",
                std::io::ErrorKind::Unsupported.into(),
            ));
        };
        let at = s.len;
        // SAFETY: every iovec points at memory valid for its length (our locals, and the
        // caller's promise for `data`).
        if let Err(e) = unsafe { pwritev_all(file, &iov, at) } {
            // Undo a partial write so the stream stays a sequence of whole packets.
            let _ = file.set_len(at);
            return Err(CtfError::io(&s.path, "write", e));
        }
        s.len = at + rounded as u64;
        if later {
            s.unverified.push(at);
        }
        s.last = Some(h);
        self.counters.packets += 1;
        self.counters.stream_bytes += rounded as u64;
        Ok(rounded as u64)
    }

    /// [`TraceWriter::write_packet_raw`] with a copy `out` of the packet as it is written
    /// (`hdr`: its header with the written `packet_size`; `h`: as taken).
    fn write_copy(
        &mut self,
        cpu: u32,
        h: PacketHeader,
        hdr: PacketHeader,
        out: &[u8],
    ) -> Result<u64> {
        if !self.local {
            // Nothing to read back later: every check now.
            return self.write_packet(cpu, out);
        }
        let content = h.content_bytes() as usize;
        if let Some(sink) = self.sink.as_mut() {
            // Not verified yet: the records the chain holds (verification may still reject
            // the packet; the sink has it then — counted in `Verification::rejected_sent`).
            let events = Records::new(&out[..content])
                .map_while(|r| r.ok())
                .filter(|r| !faultline_wire::is_reserved_id(r.id))
                .count() as u64;
            sink.packet(cpu, &hdr, out, events);
        }
        let at = self.stream(cpu)?.len;
        self.append(cpu, out)?;
        let later = self.verify_later;
        let s = self.stream(cpu)?;
        if later {
            s.unverified.push(at);
        }
        s.last = Some(h);
        self.counters.packets += 1;
        self.counters.stream_bytes += out.len() as u64;
        Ok(out.len() as u64)
    }

    /// Check the records of every packet written by [`TraceWriter::write_packet_raw`] since
    /// the last call (module docs, "Verification"), count them per CPU and id, remove records
    /// and remove packets that fail a check from
    /// the trace (their streams are rewritten; the rest of the stream is kept). Streams are
    /// re-read from the page cache; nothing is rewritten when every packet passes and holds
    /// nothing to remove.
    pub fn verify(&mut self) -> Result<Verification> {
        let mut out = Verification::default();
        let cpus: Vec<u32> = self.streams.keys().copied().collect();
        let mut ids = std::mem::take(&mut self.ids_scratch);
        for cpu in cpus {
            let Some(s) = self.streams.get_mut(&cpu) else {
                continue;
            };
            // Packets write_packet checked already: counted there.
            let mut counts = std::mem::take(&mut s.counted);
            out.padding += std::mem::take(&mut s.counted_padding);
            let offsets = std::mem::take(&mut s.unverified);
            // Offsets of the packets to remove.
            let mut drop = std::collections::BTreeSet::new();
            let mut buf = std::mem::take(&mut self.scratch);
            let mut blocks = std::mem::take(&mut self.blocks);
            for at in offsets {
                let s = &self.streams[&cpu];
                let Some(file) = s.file.as_ref() else {
                    break;
                };
                // Packets written by direct I/O are read back the same way (no copy out of
                // the page cache, which they are not in); the buffered read otherwise, or if
                // that fails.
                let direct = s
                    .direct
                    .as_ref()
                    .filter(|_| at.is_multiple_of(DIRECT_ALIGN as u64))
                    .and_then(|d| read_packet_direct(d, at, &mut blocks).ok());
                let (h, len, bytes) = match direct {
                    Some((h, len)) => (h, len, blocks_bytes(&blocks)),
                    None => {
                        let (h, len) = read_packet(file, at, &mut buf)
                            .map_err(|e| CtfError::io(&s.path, "read back", e))?;
                        (h, len, &buf[..])
                    }
                };
                let content = &bytes[..(h.content_bytes() as usize).min(len)];
                ids.clear();
                match self.check_records(cpu, &h, content, |id| ids.push(id)) {
                    Ok((n, padding)) => {
                        for &id in &ids {
                            counts.add(id);
                        }
                        self.counters.events += n;
                        out.padding += padding;
                    }
                    Err(e) => {
                        // The records the packet held, as far as its chain goes.
                        let held = Records::new(content)
                            .map_while(|r| r.ok())
                            .filter(|r| !faultline_wire::is_reserved_id(r.id))
                            .count() as u64;
                        out.rejected
                            .push((cpu, h.packet_seq_num, e, held.max(ids.len() as u64)));
                        if self.sink.is_some() {
                            // write_packet_raw hands every packet to the sink as written.
                            out.rejected_sent += 1;
                        }
                        drop.insert(at);
                    }
                }
            }
            self.blocks = blocks;
            let row = counts.into_row();
            if !row.is_empty() {
                out.events.insert(cpu, row);
            }
            let r = if drop.is_empty() {
                Ok(())
            } else {
                self.rewrite(cpu, &drop, &mut buf)
            };
            self.scratch = buf;
            if let Err(e) = r {
                self.ids_scratch = ids;
                return Err(e);
            }
        }
        self.ids_scratch = ids;
        Ok(out)
    }

    /// Rewrite `cpu`'s stream without the packets at the offsets in `drop`.
    fn rewrite(
        &mut self,
        cpu: u32,
        drop: &std::collections::BTreeSet<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(s) = self.streams.get_mut(&cpu) else {
            return Ok(());
        };
        let Some(&first) = drop.first() else {
            return Ok(());
        };
        let Some(file) = s.file.as_ref() else {
            return Ok(());
        };
        let tmp = self.dir.join(format!("stream_{cpu}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = create_new(&tmp)?;
        let io = |e| CtfError::io(&tmp, "write", e);
        {
            use std::io::{Read, Seek};
            let mut src = file;
            src.seek(std::io::SeekFrom::Start(0))
                .map_err(|e| CtfError::io(&s.path, "read back", e))?;
            std::io::copy(&mut src.take(first), &mut f).map_err(io)?;
        }
        let (mut at, mut len, mut packets, mut bytes) = (first, first, 0i64, 0i64);
        while at < s.len {
            let (_, n) =
                read_packet(file, at, buf).map_err(|e| CtfError::io(&s.path, "read back", e))?;
            let n = n as u64;
            if drop.contains(&at) {
                packets -= 1;
                bytes -= n as i64;
            } else {
                f.write_all(&buf[..n as usize]).map_err(io)?;
                len += n;
            }
            at += n;
        }
        std::fs::rename(&tmp, &s.path).map_err(|e| CtfError::io(&s.path, "replace", e))?;
        s.file = Some(f);
        // The direct descriptor is the old file's: buffered from now on (same padding).
        s.direct = None;
        s.len = len;
        self.counters.packets = self.counters.packets.saturating_add_signed(packets);
        self.counters.stream_bytes = self.counters.stream_bytes.saturating_add_signed(bytes);
        Ok(())
    }

    /// `cpu`'s stream, created on its first packet.
    fn stream(&mut self, cpu: u32) -> Result<&mut CpuStream> {
        use std::collections::btree_map::Entry;
        match self.streams.entry(cpu) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let path = self.dir.join(format!("stream_{cpu}"));
                let file = if self.local {
                    Some(create_new(&path)?)
                } else {
                    None
                };
                // Direct I/O where the file system takes it (module docs); tmpfs, for one,
                // refuses O_DIRECT: buffered then.
                let direct = if self.local && self.direct_io {
                    use std::os::unix::fs::OpenOptionsExt;
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(&path)
                        .ok()
                } else {
                    None
                };
                let align = if direct.is_some() { DIRECT_ALIGN } else { 8 };
                Ok(v.insert(CpuStream {
                    path,
                    file,
                    direct,
                    align,
                    len: 0,
                    last: None,
                    unverified: Vec::new(),
                    counted: IdCounts::default(),
                    counted_padding: 0,
                }))
            }
        }
    }

    fn append(&mut self, cpu: u32, bytes: &[u8]) -> Result<()> {
        let s = self.stream(cpu)?;
        let Some(file) = s.file.as_ref() else {
            s.len += bytes.len() as u64;
            return Ok(());
        };
        use std::os::unix::fs::FileExt;
        match file.write_all_at(bytes, s.len) {
            Ok(()) => {
                s.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Undo a partial write so the stream stays a sequence of whole packets.
                let _ = file.set_len(s.len);
                Err(CtfError::io(&s.path, "write", e))
            }
        }
    }

    /// Like [`TraceWriter::finish`], after adding `extra` entries to the metadata's `env`
    /// block (values known only at the end, such as the recorder's counters). The metadata is
    /// replaced atomically (written to `metadata.tmp`, synced unless [`TraceWriter::set_sync`]
    /// turned that off, exchanged with the old file, which is then removed, or renamed over
    /// it: [`replace_file`]): a crash leaves either the old or the new file. If the new metadata cannot be made (an invalid key), the old
    /// one stays and the error is returned after the streams are synced.
    pub fn finish_with_env(mut self, extra: Vec<(String, EnvValue)>) -> Result<WriterCounters> {
        if extra.is_empty() && !(self.metadata_stale && self.local) {
            return self.finish();
        }
        let mut d = self.desc.clone();
        d.env
            .extra
            .retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        d.env.extra.extend(extra.iter().cloned());
        let text = metadata(&d);
        if let Some(s) = self.sink.as_mut() {
            // An append-only copy (a relay) gets the same entries as a second `env` block
            // after the text it has; a replaced value can only be sent as the new text.
            match (
                metadata(&self.desc),
                env_addendum(&self.desc, &extra),
                &text,
            ) {
                (Ok(old), Ok(add), _) => s.metadata(&(old + &add)),
                (_, _, Ok(t)) => s.metadata(t),
                _ => {}
            }
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
            let sync = self.sync;
            f.write_all(text.as_bytes())
                .and_then(|_| if sync { f.sync_all() } else { Ok(()) })
                .map_err(|e| CtfError::io(&tmp, "write", e))?;
            replace_file(&tmp, &meta).map_err(|e| CtfError::io(&meta, "replace", e))?;
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

    /// Flush everything to stable storage (fsync of every file and of the directory; not with
    /// [`TraceWriter::set_sync`]`(false)`) and return the final counters.
    pub fn finish(mut self) -> Result<WriterCounters> {
        if let Some(s) = self.sink.as_mut() {
            s.finish();
        }
        if !self.local || !self.sync {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The new file takes the old one's name and the temporary name is gone, whether the old
    /// file exists (exchange) or not (rename).
    #[test]
    fn replace_file_exchanges_then_removes_the_old() {
        let dir = faultline_testkit::TmpDir::new("replace");
        let (tmp, path) = (dir.join("metadata.tmp"), dir.join("metadata"));
        std::fs::write(&path, "old").unwrap();
        std::fs::write(&tmp, "new").unwrap();
        replace_file(&tmp, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!tmp.exists());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&tmp, "newer").unwrap();
        replace_file(&tmp, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer");
        assert!(!tmp.exists());
    }

    /// The check as it was: every field through decode_field.
    fn check_by_decoding(
        fields: Fields,
        payload: &[u8],
    ) -> std::result::Result<(), (usize, String)> {
        let mut at = 0usize;
        for f in fields {
            decode_field(f.ty, payload, &mut at)
                .map_err(|e| (e.offset, e.kind.describe(f.name)))?;
        }
        if at != payload.len() {
            return Err((at, "length".into()));
        }
        Ok(())
    }

    #[test]
    fn payload_check_skipping_numbers_finds_what_decoding_finds() {
        const F: &[FieldDesc] = &[
            FieldDesc {
                name: "a",
                ty: FieldType::U32,
            },
            FieldDesc {
                name: "ok",
                ty: FieldType::Bool,
            },
            FieldDesc {
                name: "s",
                ty: FieldType::String,
            },
            FieldDesc {
                name: "b",
                ty: FieldType::Bytes,
            },
            FieldDesc {
                name: "d",
                ty: FieldType::F64,
            },
            FieldDesc {
                name: "c",
                ty: FieldType::I16,
            },
        ];
        let mut good = vec![1, 2, 3, 4, 1, b'h', b'i', 0, 2, 0, 0, 0, 9, 9];
        good.extend_from_slice(&[0u8; 8]);
        good.extend_from_slice(&[5, 6]);
        assert_eq!(check_payload(F, &good), Ok(()));
        // Every truncation, and a bad bool: the same offset and message.
        let mut bad_bool = good.clone();
        bad_bool[4] = 2;
        let cases = (0..good.len())
            .map(|n| good[..n].to_vec())
            .chain([bad_bool]);
        for p in cases {
            let fast = check_payload(F, &p).unwrap_err();
            let slow = check_by_decoding(F, &p).unwrap_err();
            if slow.1 == "length" {
                assert_eq!(fast.0, slow.0, "{p:?}");
            } else {
                assert_eq!(fast, slow, "{p:?}");
            }
        }
    }
}
