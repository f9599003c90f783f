//! A blocking connection to one `lttng-relayd` session: control and data sockets
//! ([`crate::proto`] for the bytes).
//!
//! [`Connection::open`] connects both sockets (bounded by a connect timeout), checks the
//! version (the relay must speak 2.11 or later), creates a session and its first trace chunk,
//! and adds the metadata stream. Every socket operation after that is bounded by the I/O
//! timeout given to `open`, so a relay that stops reading makes calls fail instead of hanging.
//! A reply other than `LTTNG_OK` is an error naming the command. One connection is used by one
//! thread (the streamer's sender thread).

use crate::proto::{self, Cmd, CreateSession, Index};
use crate::url::RelayUrl;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Name of the directory holding the streams in the relay's session directory.
pub const TRACE_PATH: &str = "faultline";
/// Channel (file) name of the metadata stream.
pub const METADATA_CHANNEL: &str = "metadata";

/// An error talking to the relay, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayError(pub String);

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RelayError {}

type Result<T> = std::result::Result<T, RelayError>;

/// Open control and data connections to a relay session.
pub struct Connection {
    control: TcpStream,
    data: TcpStream,
    /// The relay's own version.
    pub relay_version: (u32, u32),
    /// Session id the relay gave.
    pub session_id: u64,
    /// The session's directory, relative to the relay's output directory.
    pub output_path: String,
    /// Handle of the metadata stream.
    pub metadata_stream: u64,
}

fn connect(url: &RelayUrl, port: u16, timeout: Duration) -> Result<TcpStream> {
    let what = url.addr(port);
    let addrs = what
        .to_socket_addrs()
        .map_err(|e| RelayError(format!("cannot resolve {what}: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(RelayError(match last {
        Some(e) => format!("cannot connect to the relay at {what}: {e}"),
        None => format!("cannot resolve {what}: no address"),
    }))
}

impl Connection {
    /// Connect and set up a live session (module docs). `live_timer_us` 0 makes a session
    /// live viewers cannot attach to.
    pub fn open(
        url: &RelayUrl,
        session: &CreateSession,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Connection> {
        let control = connect(url, url.control_port, connect_timeout)?;
        let data = connect(url, url.data_port, connect_timeout)?;
        for s in [&control, &data] {
            let _ = s.set_nodelay(true);
            s.set_read_timeout(Some(io_timeout))
                .and_then(|_| s.set_write_timeout(Some(io_timeout)))
                .map_err(|e| RelayError(format!("relay socket: {e}")))?;
        }
        let mut c = Connection {
            control,
            data,
            relay_version: (0, 0),
            session_id: 0,
            output_path: String::new(),
            metadata_stream: 0,
        };
        c.command(
            Cmd::Version,
            &proto::version(proto::VERSION_MAJOR, proto::VERSION_MINOR),
        )?;
        let r = c.reply(8, Cmd::Version)?;
        let v = (
            proto::get32(&r, 0).unwrap_or(0),
            proto::get32(&r, 4).unwrap_or(0),
        );
        c.relay_version = v;
        if v.0 != proto::VERSION_MAJOR || v.1 < proto::MIN_MINOR {
            return Err(RelayError(format!(
                "the relay speaks protocol {}.{}; 2.{} or later is needed",
                v.0,
                v.1,
                proto::MIN_MINOR
            )));
        }
        if session.session_name.is_empty()
            || session.session_name.len() > proto::NAME_MAX
            || session.session_name.contains('/')
        {
            return Err(RelayError(format!(
                "session name {:?} must be 1 to {} bytes without '/'",
                session.session_name,
                proto::NAME_MAX
            )));
        }
        if session.hostname.is_empty()
            || session.hostname.len() >= proto::HOST_NAME_MAX
            || session.hostname.contains('/')
        {
            return Err(RelayError(format!(
                "host name {:?} must be 1 to {} bytes without '/'",
                session.hostname,
                proto::HOST_NAME_MAX - 1
            )));
        }
        c.command(Cmd::CreateSession, &proto::create_session(session))?;
        let r = c.reply(16, Cmd::CreateSession)?;
        let code = proto::get32(&r, 8).unwrap_or(0);
        if code != proto::LTTNG_OK {
            return Err(RelayError(format!(
                "the relay refused to create session {:?} of host {:?} (code {code})",
                session.session_name, session.hostname
            )));
        }
        c.session_id = proto::get64(&r, 0).unwrap_or(0);
        let plen = proto::get32(&r, 12).unwrap_or(0) as usize;
        if plen > 4096 {
            return Err(RelayError(format!(
                "create session: path length {plen} out of range"
            )));
        }
        let mut path = vec![0u8; plen];
        c.control
            .read_exact(&mut path)
            .map_err(|e| c.io_err(Cmd::CreateSession, e))?;
        if path.last() == Some(&0) {
            path.pop();
        }
        c.output_path = String::from_utf8_lossy(&path).into_owned();
        c.command(
            Cmd::CreateTraceChunk,
            &proto::create_trace_chunk(0, session.creation_time),
        )?;
        c.generic_reply(Cmd::CreateTraceChunk)?;
        c.metadata_stream = c.add_stream(METADATA_CHANNEL)?;
        Ok(c)
    }

    fn io_err(&self, cmd: Cmd, e: io::Error) -> RelayError {
        let what = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "timed out (the relay does not answer)".to_string()
            }
            io::ErrorKind::UnexpectedEof => "connection closed by the relay".to_string(),
            _ => e.to_string(),
        };
        RelayError(format!("relay {cmd:?}: {what}"))
    }

    fn command(&mut self, cmd: Cmd, payload: &[u8]) -> Result<()> {
        let h = proto::cmd_header(cmd, payload.len() as u64);
        write_all_vectored(&mut self.control, &[&h, payload]).map_err(|e| self.io_err(cmd, e))
    }

    fn reply(&mut self, n: usize, cmd: Cmd) -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.control
            .read_exact(&mut b)
            .map_err(|e| self.io_err(cmd, e))?;
        Ok(b)
    }

    fn generic_reply(&mut self, cmd: Cmd) -> Result<()> {
        let r = self.reply(4, cmd)?;
        let code = proto::get32(&r, 0).unwrap_or(0);
        if code != proto::LTTNG_OK {
            return Err(RelayError(format!("relay {cmd:?}: refused (code {code})")));
        }
        Ok(())
    }

    /// Clones of both sockets (to shut them down from another thread).
    pub fn socket_clones(&self) -> Vec<TcpStream> {
        [&self.control, &self.data]
            .iter()
            .filter_map(|s| s.try_clone().ok())
            .collect()
    }

    /// Add a stream `channel` under [`TRACE_PATH`]; returns its handle.
    pub fn add_stream(&mut self, channel: &str) -> Result<u64> {
        self.command(Cmd::AddStream, &proto::add_stream(channel, TRACE_PATH, 0))?;
        let r = self.reply(12, Cmd::AddStream)?;
        let code = proto::get32(&r, 8).unwrap_or(0);
        if code != proto::LTTNG_OK {
            return Err(RelayError(format!(
                "relay AddStream {channel}: refused (code {code})"
            )));
        }
        Ok(proto::get64(&r, 0).unwrap_or(0))
    }

    /// Publish the streams added so far to live viewers.
    pub fn streams_sent(&mut self) -> Result<()> {
        self.command(Cmd::StreamsSent, &[])?;
        self.generic_reply(Cmd::StreamsSent)
    }

    /// Append `text` to the metadata stream (no reply).
    pub fn send_metadata(&mut self, text: &[u8]) -> Result<()> {
        let hdr = proto::metadata_header(self.metadata_stream);
        let h = proto::cmd_header(Cmd::SendMetadata, (hdr.len() + text.len()) as u64);
        write_all_vectored(&mut self.control, &[&h, &hdr, text])
            .map_err(|e| self.io_err(Cmd::SendMetadata, e))
    }

    /// Send one packet on the data connection.
    pub fn send_packet(&mut self, stream: u64, net_seq_num: u64, bytes: &[u8]) -> Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| RelayError(format!("packet of {} bytes is too big", bytes.len())))?;
        let h = proto::data_header(stream, net_seq_num, len);
        write_all_vectored(&mut self.data, &[&h, bytes])
            .map_err(|e| RelayError(format!("relay data connection: {e}")))
    }

    /// Send an index (or a beacon: `packet_size == 0`).
    pub fn send_index(&mut self, i: &Index) -> Result<()> {
        self.command(Cmd::SendIndex, &proto::index(i))?;
        self.generic_reply(Cmd::SendIndex)
    }

    /// Whether the relay has not yet written the data and index of `stream` up to
    /// `last_net_seq_num`.
    pub fn data_pending(&mut self, stream: u64, last_net_seq_num: u64) -> Result<bool> {
        self.command(
            Cmd::DataPending,
            &proto::data_pending(stream, last_net_seq_num),
        )?;
        let r = self.reply(4, Cmd::DataPending)?;
        match proto::get32(&r, 0) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            other => Err(RelayError(format!(
                "relay DataPending: unexpected answer {other:?}"
            ))),
        }
    }

    /// Rotate streams `(handle, rotate_at_packet_seq_num)` to no trace chunk ([`proto`] docs:
    /// what a live viewer needs at the end).
    pub fn rotate_streams_to_none(&mut self, positions: &[(u64, u64)]) -> Result<()> {
        self.command(
            Cmd::RotateStreams,
            &proto::rotate_streams_to_none(positions),
        )?;
        self.generic_reply(Cmd::RotateStreams)
    }

    /// Close the session's trace chunk (created by [`Connection::open`], id 0).
    pub fn close_trace_chunk(&mut self, close_time: u64) -> Result<()> {
        self.command(
            Cmd::CloseTraceChunk,
            &proto::close_trace_chunk(0, close_time),
        )?;
        let r = self.reply(8, Cmd::CloseTraceChunk)?;
        let code = proto::get32(&r, 0).unwrap_or(0);
        let plen = proto::get32(&r, 4).unwrap_or(0) as usize;
        if code != proto::LTTNG_OK {
            return Err(RelayError(format!(
                "relay CloseTraceChunk: refused (code {code})"
            )));
        }
        if plen > 4096 {
            return Err(RelayError(format!(
                "close trace chunk: path length {plen} out of range"
            )));
        }
        let mut path = vec![0u8; plen];
        self.control
            .read_exact(&mut path)
            .map_err(|e| self.io_err(Cmd::CloseTraceChunk, e))?;
        Ok(())
    }

    /// Close a stream after its last packet `last_net_seq_num`.
    pub fn close_stream(&mut self, stream: u64, last_net_seq_num: u64) -> Result<()> {
        self.command(
            Cmd::CloseStream,
            &proto::close_stream(stream, last_net_seq_num),
        )?;
        self.generic_reply(Cmd::CloseStream)
    }
}

/// `write_all` of several buffers, one `writev` when the socket takes it all.
fn write_all_vectored(s: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut idx = 0usize;
    let mut off = 0usize;
    while idx < parts.len() {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() - idx);
        slices.push(IoSlice::new(&parts[idx][off..]));
        for p in &parts[idx + 1..] {
            slices.push(IoSlice::new(p));
        }
        let mut n = match s.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while idx < parts.len() && n > 0 {
            let left = parts[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
        while idx < parts.len() && parts[idx].len() == off {
            idx += 1;
            off = 0;
        }
    }
    Ok(())
}
