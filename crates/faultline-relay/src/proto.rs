//! The `lttng-relayd` wire format (protocol 2.11 and later, as relayd 2.13 speaks it).
//!
//! Every integer is **big-endian**; every structure is packed (no padding).
//!
//! # Control connection (default port 5342)
//! Each command is a 24-byte header — `circuit_id: u64` (always 0), `data_size: u64` (bytes of
//! payload that follow), `cmd: u32`, `cmd_version: u32` (always 0) — then `data_size` bytes of
//! payload. Every command except [`Cmd::SendMetadata`] gets a reply, read before the next
//! command is sent; most replies are a 4-byte return code, [`LTTNG_OK`] on success.
//!
//! | command | payload | reply |
//! |---|---|---|
//! | `VERSION` (5) | `major: u32, minor: u32` | `major: u32, minor: u32` (the relay's; both sides then use the lower minor) |
//! | `CREATE_SESSION` (2) | [`create_session`] | `session_id: u64, ret: u32, path_len: u32, path[path_len]` |
//! | `CREATE_TRACE_CHUNK` (19) | `chunk_id: u64, creation_time: u64, name_len: u32` | `ret: u32` |
//! | `ADD_STREAM` (1) | [`add_stream`] | `handle: u64, ret: u32` |
//! | `STREAMS_SENT` (16) | none | `ret: u32` (streams added so far become visible to live viewers) |
//! | `SEND_METADATA` (6) | `stream: u64, padding: u32, text` | **none** |
//! | `SEND_INDEX` (13) | [`index`] (80 bytes) | `ret: u32` |
//! | `DATA_PENDING` (8) | `stream: u64, last_net_seq_num: u64` | `u32`: 1 while that packet's data or index is not written yet, 0 once it is |
//! | `ROTATE_STREAMS` (18) | [`rotate_streams`]: `count: u32, new_chunk: {is_set: u8, id: u64}`, then per stream `stream: u64, rotate_at_packet_seq_num: u64` | `ret: u32` |
//! | `CLOSE_TRACE_CHUNK` (20) | `chunk_id: u64, close_time: u64, command: {is_set: u8, value: u32}` | `ret: u32, path_len: u32, path[path_len]` (the path only when `ret` is `LTTNG_OK`) |
//! | `CLOSE_STREAM` (7) | `stream: u64, last_net_seq_num: u64` | `ret: u32` |
//!
//! Before closing, the client waits with `DATA_PENDING` until the relay has written every
//! packet: the two connections are read independently, and a live viewer is told the stream
//! ended (no more indexes) as soon as the control connection is closed. Then, as LTTng does
//! when a session is destroyed, it rotates every stream to *no* chunk (`ROTATE_STREAMS` with
//! `new_chunk` unset, at the packet after each stream's last `packet_seq_num`) and closes the
//! trace chunk: a stream closed without that loses, for a live viewer still behind, the files
//! it was reading (the relay drops a closed stream's chunk), so the viewer never gets the last
//! packets; after a rotation to no chunk the viewer keeps reading the old chunk to its end.
//!
//! # Data connection (default port 5343)
//! No handshake: each packet is a 32-byte header — `circuit_id: u64` (0), `stream: u64` (the
//! handle `ADD_STREAM` returned), `net_seq_num: u64` (per stream, from 0, +1 per packet),
//! `data_size: u32`, `padding_size: u32` (zeros the relay appends) — then the packet bytes.
//! The relay pairs each packet with the index of the same `(stream, net_seq_num)` sent on the
//! control connection, in either order, and writes both (`index/<channel>.idx`).
//!
//! # Live beacons
//! An index with `packet_size == 0` is a *beacon*: `timestamp_end` promises live viewers that
//! the stream holds no event before that time, so they can go on merging the other streams
//! while this one is idle.

/// Protocol version this client announces (the relay answers with its own; the lower minor is
/// used by both sides).
pub const VERSION_MAJOR: u32 = 2;
/// See [`VERSION_MAJOR`].
pub const VERSION_MINOR: u32 = 13;
/// The oldest relay minor version spoken here (the 2.11 forms of the commands).
pub const MIN_MINOR: u32 = 11;
/// `LTTNG_OK`, the success return code.
pub const LTTNG_OK: u32 = 10;
/// Size of the control command header.
pub const CMD_HDR_LEN: usize = 24;
/// Size of the data packet header.
pub const DATA_HDR_LEN: usize = 32;
/// Size of a `SEND_INDEX` payload (index format 1.1, relay minor >= 8).
pub const INDEX_LEN: usize = 80;
/// Size of the fixed part of a 2.11 `CREATE_SESSION` payload.
pub const CREATE_SESSION_FIXED_LEN: usize = 59;
/// Size of the fixed part of a 2.11 `ADD_STREAM` payload.
pub const ADD_STREAM_FIXED_LEN: usize = 32;
/// Longest name the relay accepts (session and path names; `LTTNG_NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest host name the relay accepts (`LTTNG_HOST_NAME_MAX`).
pub const HOST_NAME_MAX: usize = 64;

/// Control commands used here (`enum lttcomm_relayd_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Cmd {
    /// Add a stream.
    AddStream = 1,
    /// Create a session.
    CreateSession = 2,
    /// Announce the protocol version.
    Version = 5,
    /// Append to a metadata stream.
    SendMetadata = 6,
    /// Close a stream.
    CloseStream = 7,
    /// Whether a stream's data up to a packet is still being written.
    DataPending = 8,
    /// Index of one packet (or a beacon).
    SendIndex = 13,
    /// The streams added so far are complete: publish them to viewers.
    StreamsSent = 16,
    /// Rotate streams to another trace chunk (or to none).
    RotateStreams = 18,
    /// Create a trace chunk.
    CreateTraceChunk = 19,
    /// Close a trace chunk.
    CloseTraceChunk = 20,
}

impl Cmd {
    /// The command for a number, if it is one of these.
    pub fn from_u32(v: u32) -> Option<Cmd> {
        Some(match v {
            1 => Cmd::AddStream,
            2 => Cmd::CreateSession,
            5 => Cmd::Version,
            6 => Cmd::SendMetadata,
            7 => Cmd::CloseStream,
            8 => Cmd::DataPending,
            13 => Cmd::SendIndex,
            16 => Cmd::StreamsSent,
            18 => Cmd::RotateStreams,
            19 => Cmd::CreateTraceChunk,
            20 => Cmd::CloseTraceChunk,
            _ => return None,
        })
    }
}

fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// Read a big-endian `u64` at `at` (None when out of bounds).
pub fn get64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(s.try_into().ok()?))
}

/// Read a big-endian `u32` at `at` (None when out of bounds).
pub fn get32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

/// A control command header for `cmd` with `len` bytes of payload.
pub fn cmd_header(cmd: Cmd, len: u64) -> [u8; CMD_HDR_LEN] {
    let mut v = Vec::with_capacity(CMD_HDR_LEN);
    put64(&mut v, 0);
    put64(&mut v, len);
    put32(&mut v, cmd as u32);
    put32(&mut v, 0);
    let mut out = [0u8; CMD_HDR_LEN];
    out.copy_from_slice(&v);
    out
}

/// A parsed control command header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdHeader {
    /// Bytes of payload that follow.
    pub data_size: u64,
    /// The command number.
    pub cmd: u32,
}

/// Parse a control command header.
pub fn parse_cmd_header(b: &[u8; CMD_HDR_LEN]) -> CmdHeader {
    CmdHeader {
        data_size: get64(b, 8).unwrap_or(0),
        cmd: get32(b, 16).unwrap_or(0),
    }
}

/// A data packet header.
pub fn data_header(stream: u64, net_seq_num: u64, len: u32) -> [u8; DATA_HDR_LEN] {
    let mut v = Vec::with_capacity(DATA_HDR_LEN);
    put64(&mut v, 0);
    put64(&mut v, stream);
    put64(&mut v, net_seq_num);
    put32(&mut v, len);
    put32(&mut v, 0);
    let mut out = [0u8; DATA_HDR_LEN];
    out.copy_from_slice(&v);
    out
}

/// A parsed data packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Relay stream handle.
    pub stream: u64,
    /// Per-stream packet number.
    pub net_seq_num: u64,
    /// Packet bytes that follow.
    pub data_size: u32,
    /// Zeros the relay appends.
    pub padding_size: u32,
}

/// Parse a data packet header.
pub fn parse_data_header(b: &[u8; DATA_HDR_LEN]) -> DataHeader {
    DataHeader {
        stream: get64(b, 8).unwrap_or(0),
        net_seq_num: get64(b, 16).unwrap_or(0),
        data_size: get32(b, 24).unwrap_or(0),
        padding_size: get32(b, 28).unwrap_or(0),
    }
}

/// `ROTATE_STREAMS` payload rotating `(stream, rotate_at_packet_seq_num)` to no trace chunk
/// (the packed 2.11 form: the optional chunk id is `is_set: u8` then `id: u64`).
pub fn rotate_streams_to_none(positions: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(13 + 16 * positions.len());
    put32(&mut v, positions.len() as u32);
    v.push(0);
    put64(&mut v, 0);
    for &(stream, at) in positions {
        put64(&mut v, stream);
        put64(&mut v, at);
    }
    v
}

/// `CLOSE_TRACE_CHUNK` payload: close `chunk_id` at `close_time` (seconds since the epoch)
/// with no close command (the chunk stays where it is).
pub fn close_trace_chunk(chunk_id: u64, close_time: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(21);
    put64(&mut v, chunk_id);
    put64(&mut v, close_time);
    v.push(0);
    put32(&mut v, 0);
    v
}

/// `VERSION` payload.
pub fn version(major: u32, minor: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    put32(&mut v, major);
    put32(&mut v, minor);
    v
}

/// What a 2.11 `CREATE_SESSION` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSession {
    /// Session name (the relay's directory is `HOST/NAME-DATETIME`, or `HOST/NAME` when
    /// `name_contains_creation_time`).
    pub session_name: String,
    /// Host name of the traced machine (the relay's first directory level).
    pub hostname: String,
    /// Live timer in microseconds (0: not a live session; viewers cannot attach).
    pub live_timer_us: u32,
    /// The session name already ends with its creation date and time.
    pub name_contains_creation_time: bool,
    /// Identifies the sender instance (must not be all zeros).
    pub sender_uuid: [u8; 16],
    /// The sender's id for this session.
    pub sender_session_id: u64,
    /// Creation time, seconds since the epoch.
    pub creation_time: u64,
}

/// `CREATE_SESSION` payload (2.11 form, no base path, no current chunk).
pub fn create_session(c: &CreateSession) -> Vec<u8> {
    let name = c.session_name.as_bytes();
    let host = c.hostname.as_bytes();
    let mut v = Vec::with_capacity(CREATE_SESSION_FIXED_LEN + name.len() + host.len() + 2);
    put32(&mut v, name.len() as u32 + 1);
    put32(&mut v, host.len() as u32 + 1);
    put32(&mut v, 0); // base path: none
    put32(&mut v, c.live_timer_us);
    v.push(0); // not a snapshot session
    v.push(c.name_contains_creation_time as u8);
    v.extend_from_slice(&c.sender_uuid);
    put64(&mut v, c.sender_session_id);
    put64(&mut v, c.creation_time);
    v.push(0); // current chunk: not set
    put64(&mut v, 0);
    debug_assert_eq!(v.len(), CREATE_SESSION_FIXED_LEN);
    v.extend_from_slice(name);
    v.push(0);
    v.extend_from_slice(host);
    v.push(0);
    v
}

/// Parse a `CREATE_SESSION` payload (what a relay reads; used by the tests' fake relay).
pub fn parse_create_session(b: &[u8]) -> Option<CreateSession> {
    let name_len = get32(b, 0)? as usize;
    let host_len = get32(b, 4)? as usize;
    let base_len = get32(b, 8)? as usize;
    let live = get32(b, 12)?;
    let contains = *b.get(17)? != 0;
    let uuid: [u8; 16] = b.get(18..34)?.try_into().ok()?;
    let sid = get64(b, 34)?;
    let ctime = get64(b, 42)?;
    let mut at = CREATE_SESSION_FIXED_LEN;
    let mut cstr = |len: usize| -> Option<String> {
        let s = b.get(at..at.checked_add(len)?)?;
        at += len;
        let (last, body) = s.split_last()?;
        (*last == 0).then(|| String::from_utf8_lossy(body).into_owned())
    };
    let session_name = cstr(name_len)?;
    let hostname = cstr(host_len)?;
    if base_len > 0 {
        cstr(base_len)?;
    }
    Some(CreateSession {
        session_name,
        hostname,
        live_timer_us: live,
        name_contains_creation_time: contains,
        sender_uuid: uuid,
        sender_session_id: sid,
        creation_time: ctime,
    })
}

/// `CREATE_TRACE_CHUNK` payload (no name override: the chunk is the session directory).
pub fn create_trace_chunk(chunk_id: u64, creation_time: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    put64(&mut v, chunk_id);
    put64(&mut v, creation_time);
    put32(&mut v, 0);
    v
}

/// `ADD_STREAM` payload (2.11 form): the stream's file is `PATH/CHANNEL` in the session
/// directory, without size-based rotation.
pub fn add_stream(channel: &str, path: &str, chunk_id: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(ADD_STREAM_FIXED_LEN + channel.len() + path.len() + 2);
    put32(&mut v, channel.len() as u32 + 1);
    put32(&mut v, path.len() as u32 + 1);
    put64(&mut v, 0); // tracefile_size: unlimited
    put64(&mut v, 0); // tracefile_count
    put64(&mut v, chunk_id);
    v.extend_from_slice(channel.as_bytes());
    v.push(0);
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    v
}

/// Parse an `ADD_STREAM` payload: `(channel, path)`.
pub fn parse_add_stream(b: &[u8]) -> Option<(String, String)> {
    let cl = get32(b, 0)? as usize;
    let pl = get32(b, 4)? as usize;
    let c = b.get(ADD_STREAM_FIXED_LEN..ADD_STREAM_FIXED_LEN.checked_add(cl)?)?;
    let p = b.get(ADD_STREAM_FIXED_LEN + cl..(ADD_STREAM_FIXED_LEN + cl).checked_add(pl)?)?;
    let s = |x: &[u8]| -> Option<String> {
        let (last, body) = x.split_last()?;
        (*last == 0).then(|| String::from_utf8_lossy(body).into_owned())
    };
    Some((s(c)?, s(p)?))
}

/// `SEND_METADATA` payload header (the text follows).
pub fn metadata_header(stream: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    put64(&mut v, stream);
    put32(&mut v, 0);
    v
}

/// One packet's index, as the relay stores it (sizes in bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Index {
    /// Relay stream handle.
    pub relay_stream: u64,
    /// The packet's `net_seq_num` on the data connection.
    pub net_seq_num: u64,
    /// Packet size in bits (0 for a beacon).
    pub packet_size: u64,
    /// Content size in bits.
    pub content_size: u64,
    /// First timestamp of the packet.
    pub timestamp_begin: u64,
    /// Last timestamp of the packet (a beacon's promise).
    pub timestamp_end: u64,
    /// Cumulative discarded events of the stream.
    pub events_discarded: u64,
    /// CTF stream class id.
    pub stream_id: u64,
    /// Instance of the stream class (the CPU here).
    pub stream_instance_id: u64,
    /// The packet's sequence number in its stream.
    pub packet_seq_num: u64,
}

/// `SEND_INDEX` payload.
pub fn index(i: &Index) -> Vec<u8> {
    let mut v = Vec::with_capacity(INDEX_LEN);
    for x in [
        i.relay_stream,
        i.net_seq_num,
        i.packet_size,
        i.content_size,
        i.timestamp_begin,
        i.timestamp_end,
        i.events_discarded,
        i.stream_id,
        i.stream_instance_id,
        i.packet_seq_num,
    ] {
        put64(&mut v, x);
    }
    v
}

/// Parse a `SEND_INDEX` payload.
pub fn parse_index(b: &[u8]) -> Option<Index> {
    let g = |k: usize| get64(b, k * 8);
    Some(Index {
        relay_stream: g(0)?,
        net_seq_num: g(1)?,
        packet_size: g(2)?,
        content_size: g(3)?,
        timestamp_begin: g(4)?,
        timestamp_end: g(5)?,
        events_discarded: g(6)?,
        stream_id: g(7)?,
        stream_instance_id: g(8)?,
        packet_seq_num: g(9)?,
    })
}

/// `DATA_PENDING` payload (the same layout as `CLOSE_STREAM`'s).
pub fn data_pending(stream: u64, last_net_seq_num: u64) -> Vec<u8> {
    close_stream(stream, last_net_seq_num)
}

/// `CLOSE_STREAM` payload.
pub fn close_stream(stream: u64, last_net_seq_num: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    put64(&mut v, stream);
    put64(&mut v, last_net_seq_num);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_big_endian_and_packed() {
        let h = cmd_header(Cmd::SendIndex, 80);
        assert_eq!(&h[..8], &[0; 8]);
        assert_eq!(&h[8..16], &80u64.to_be_bytes());
        assert_eq!(&h[16..20], &13u32.to_be_bytes());
        assert_eq!(&h[20..24], &[0; 4]);
        assert_eq!(
            parse_cmd_header(&h),
            CmdHeader {
                data_size: 80,
                cmd: 13
            }
        );
        let d = data_header(7, 3, 4096);
        assert_eq!(&d[8..16], &7u64.to_be_bytes());
        assert_eq!(&d[16..24], &3u64.to_be_bytes());
        assert_eq!(&d[24..28], &4096u32.to_be_bytes());
        let p = parse_data_header(&d);
        assert_eq!((p.stream, p.net_seq_num, p.data_size), (7, 3, 4096));
    }

    #[test]
    fn create_session_layout_round_trips() {
        let c = CreateSession {
            session_name: "s1".into(),
            hostname: "hostA".into(),
            live_timer_us: 200_000,
            name_contains_creation_time: true,
            sender_uuid: [9; 16],
            sender_session_id: 42,
            creation_time: 1_700_000_000,
        };
        let b = create_session(&c);
        // Fixed part, then "s1\0hostA\0".
        assert_eq!(b.len(), CREATE_SESSION_FIXED_LEN + 3 + 6);
        assert_eq!(&b[0..4], &3u32.to_be_bytes());
        assert_eq!(&b[4..8], &6u32.to_be_bytes());
        assert_eq!(&b[12..16], &200_000u32.to_be_bytes());
        assert_eq!(b[16], 0, "snapshot");
        assert_eq!(b[17], 1);
        assert_eq!(&b[18..34], &[9; 16]);
        assert_eq!(&b[34..42], &42u64.to_be_bytes());
        assert_eq!(b[50], 0, "current chunk not set");
        assert_eq!(&b[59..], b"s1\0hostA\0");
        assert_eq!(parse_create_session(&b), Some(c));
        assert_eq!(parse_create_session(&b[..60]), None);
    }

    #[test]
    fn add_stream_and_index_layouts() {
        let b = add_stream("stream_3", "faultline", 0);
        assert_eq!(b.len(), ADD_STREAM_FIXED_LEN + 9 + 10);
        assert_eq!(
            parse_add_stream(&b),
            Some(("stream_3".into(), "faultline".into()))
        );
        let i = Index {
            relay_stream: 1,
            net_seq_num: 2,
            packet_size: 3,
            content_size: 4,
            timestamp_begin: 5,
            timestamp_end: 6,
            events_discarded: 7,
            stream_id: 8,
            stream_instance_id: 9,
            packet_seq_num: 10,
        };
        let b = index(&i);
        assert_eq!(b.len(), INDEX_LEN);
        assert_eq!(&b[72..80], &10u64.to_be_bytes());
        assert_eq!(parse_index(&b), Some(i));
        assert_eq!(parse_index(&b[..79]), None);
    }
}
