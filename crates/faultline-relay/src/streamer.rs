//! Streaming a trace to a relay without ever making the consumer wait.
//!
//! [`RelayStreamer::start`] opens the [`Connection`] (so an unreachable relay is reported at
//! once) and starts a sender thread; it returns a [`RelaySink`] to give to the trace writer
//! ([`faultline_ctf::TraceWriter::set_sink`]) and a [`RelayHandle`] for the counters and the
//! end.
//!
//! # Who does what
//! * The **consumer thread** calls the sink: it copies each packet into a queue bounded in
//!   bytes ([`RelayConfig::queue_bytes`]) and returns. When the queue is full (the link is
//!   slower than the trace) the packet is *dropped* for the relay and counted
//!   (`packets_dropped`, `events_dropped`); once the connection has failed, packets are counted
//!   as *lost* (`packets_lost`, `events_lost`). The local trace, if any, is written by the
//!   writer whatever happens here.
//! * The **sender thread** owns the connection. It first adds the streams of every buffer
//!   ("Streams" below); for each packet it sends the packet on the data connection with the
//!   stream's next `net_seq_num`, and its index (from the packet header: sizes, timestamps,
//!   `events_discarded`, `stream_id`, the CPU as `stream_instance_id`, `packet_seq_num`) on the
//!   control connection. Metadata changes that extend the text already sent are appended
//!   (event classes added while recording, the recorder counters `record` adds at the end as a
//!   second `env` block); other changes cannot be expressed to a live session and are counted
//!   (`metadata_updates_skipped`). **Metadata**: each append is sent behind the comment
//!   [`METADATA_APPEND_SIGNATURE`] (`/* CTF 1.8 */`), which babeltrace2's live reader wants at
//!   the start of every piece of plain-text metadata; the relay's `metadata` file is the text
//!   with these comment lines between the pieces.
//! * **Beacons** (live): the consumer tells the sink when everything older than a time `T`
//!   has been handed over (it flushed the buffers at `T` and took every packet since:
//!   [`PacketSink::flushed`]); that mark travels through the queue behind those packets. Every
//!   [`RelayConfig::beacon_interval`], each stream that sent no packet since the previous
//!   round gets a beacon with `timestamp_end = T` (the latest mark) when that is after its
//!   last packet's end, so a viewer may go past `T` on that stream. A packet that arrives
//!   beginning before a beacon already sent (a writer that reserved before the flush and
//!   committed after it) is still sent and is counted (`late_packets`).
//! * **Streams.** A live viewer merges the streams by time: a stream that appears after the
//!   viewer printed later events of other streams (a CPU that starts tracing late) stops it
//!   (babeltrace2: "timestamp is less than ... last returned"), and a stream without any
//!   packet cannot be declared idle (the relay ignores beacons until a stream has an index),
//!   so it holds the viewer back. As LTTng does, every buffer's stream (`stream_<n>`, the
//!   local trace's file names) is therefore added when streaming starts
//!   ([`RelayConfig::streams`]) and begins with an **empty packet** (a header, no event,
//!   counters 0) at [`RelayConfig::start_ts`]. To keep each stream's `packet_seq_num`
//!   strictly increasing, the relay's copy numbers the trace writer's packets one further
//!   (`packet_seq_num + 1`, header re-encoded); gaps, and so lost-packet counts, are the
//!   same. The relay's copy therefore holds exactly the local trace's events and discarded
//!   counts, plus one empty packet per stream (and an empty stream file for a buffer that
//!   never traced). A buffer beyond [`RelayConfig::streams`] gets its stream and empty packet
//!   (at its first packet's begin time) when its first packet comes.
//! * **The end** ([`RelayHandle::finish`]): once the relay has written everything
//!   (`DATA_PENDING`), every stream is rotated to no trace chunk and the chunk is closed
//!   (`chunk_closed`), then the streams are closed — what LTTng does when a session is
//!   destroyed, and what lets a live viewer that is behind read the last packets
//!   ([`crate::proto`] docs).
//! * **Sent and confirmed.** A packet counts as *sent* (`packets_sent`, `events_sent`,
//!   `bytes_sent`) once its bytes are written to the data connection and the relay has
//!   answered its index (`SEND_INDEX`, on the control connection). That is not proof the
//!   relay has the data: the two connections are read independently, and what sits in the
//!   data connection's socket buffers when the relay dies is lost. The relay says what it has
//!   written only through `DATA_PENDING` (stream, net_seq_num): "nothing pending" means every
//!   packet of that stream up to that number is in its files. Every
//!   [`RelayConfig::confirm_interval`], each stream that has packets not yet confirmed is asked
//!   about one of them: the newest it had at the previous round (one round old, so normally
//!   written already), or, while that one is still pending (a link that stays behind), one
//!   halfway back towards the oldest unconfirmed, and so on; at the end it is asked about its
//!   last packet until that is written or the end budget runs out, with the same steps in
//!   between. The packets a "nothing pending" answer covers count as *confirmed*
//!   (`packets_confirmed`, `events_confirmed`). So
//!   `events_confirmed <= events_sent` always; after a clean end the two are equal, and the
//!   relay's copy holds at least `events_confirmed` of the trace's events.
//! * A socket error or timeout ends the connection: the error is kept (`error`), what was
//!   queued is counted as lost. [`RelayHandle::finish`] waits, bounded, for the queue to be
//!   sent, written by the relay (`DATA_PENDING`) and the streams closed; past its deadline the sockets are shut down and the rest is
//!   counted as lost.

use crate::client::{Connection, RelayError};
use crate::proto::{CreateSession, Index};
use crate::url::RelayUrl;
use faultline_ctf::layout::PACKET_HEADER_SIZE;
use faultline_ctf::{PacketHeader, PacketSink};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What every metadata append begins with (module docs, "Metadata").
pub const METADATA_APPEND_SIGNATURE: &[u8] = b"/* CTF 1.8 */\n";

/// Streaming options.
#[derive(Clone)]
pub struct RelayConfig {
    /// Where the relay listens.
    pub url: RelayUrl,
    /// Session name; `None`: `auto-YYYYMMDD-HHMMSS` (local time), as LTTng names an unnamed
    /// session. A given name gets `-YYYYMMDD-HHMMSS` appended by the relay, as for LTTng.
    pub session_name: Option<String>,
    /// Host name the relay files the trace under.
    pub hostname: String,
    /// Live beacons period (also announced to the relay as the live timer).
    pub beacon_interval: Duration,
    /// Bound of the send queue in bytes.
    pub queue_bytes: usize,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Timeout of every socket read and write.
    pub io_timeout: Duration,
    /// Buffers (CPUs) whose streams are added when streaming starts, `stream_0` to
    /// `stream_<streams - 1>` (module docs, "Streams"); a packet of a buffer beyond them adds
    /// its stream when it comes.
    pub streams: u32,
    /// Trace clock time at which streaming starts: the time of the empty packet each stream
    /// begins with (module docs, "Streams"). No event of the trace may be older.
    pub start_ts: u64,
    /// How often the relay is asked what it has written (module docs, "Sent and
    /// confirmed"): one `DATA_PENDING` round trip per stream with unconfirmed packets.
    pub confirm_interval: Duration,
}

impl RelayConfig {
    /// Defaults for `url`: this machine's host name, beacons every 200 ms, a 64 MiB queue, 3 s
    /// to connect, 5 s per socket operation, a confirmation round every second.
    pub fn new(url: RelayUrl) -> RelayConfig {
        RelayConfig {
            url,
            session_name: None,
            hostname: hostname(),
            beacon_interval: Duration::from_millis(200),
            queue_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(5),
            streams: 0,
            start_ts: 0,
            confirm_interval: Duration::from_secs(1),
        }
    }
}

/// This machine's host name (its UTS namespace's).
pub fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if h.is_empty() {
        "localhost".into()
    } else {
        h
    }
}

/// What streaming did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// The relay address.
    pub url: String,
    /// Host name the trace is filed under.
    pub hostname: String,
    /// Session name.
    pub session: String,
    /// The session's directory in the relay's output directory.
    pub relay_path: String,
    /// Packets sent: written to the data connection, their index answered by the relay. Not
    /// proof that the relay has them (module docs, "Sent and confirmed"): see
    /// `packets_confirmed`.
    pub packets_sent: u64,
    /// Events in the packets sent.
    pub events_sent: u64,
    /// Bytes of the packets sent.
    pub bytes_sent: u64,
    /// Packets the relay confirmed having written (`DATA_PENDING` answered "nothing
    /// pending" up to them); at most `packets_sent`.
    pub packets_confirmed: u64,
    /// Events in the packets confirmed; at most `events_sent`.
    pub events_confirmed: u64,
    /// Metadata bytes sent.
    pub metadata_bytes: u64,
    /// Packets not sent because the queue was full (slow link).
    pub packets_dropped: u64,
    /// Events in them.
    pub events_dropped: u64,
    /// Packets not sent because the connection failed.
    pub packets_lost: u64,
    /// Events in them.
    pub events_lost: u64,
    /// Live beacons sent.
    pub beacons: u64,
    /// Packets that began before a beacon already sent on their stream.
    pub late_packets: u64,
    /// Metadata changes that could not be sent (module docs).
    pub metadata_updates_skipped: u64,
    /// Streams closed cleanly at the end.
    pub streams_closed: u64,
    /// The trace chunk was closed at the end (after every stream rotated out of it).
    pub chunk_closed: bool,
    /// The error that ended the connection, if any.
    pub error: Option<String>,
}

impl RelayStats {
    /// Whether the relay got everything: nothing dropped or lost, no error, every packet sent
    /// confirmed written.
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && self.packets_dropped == 0
            && self.packets_lost == 0
            && self.packets_confirmed == self.packets_sent
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let mut s = format!(
            "relay {}: {} packets, {} events, {} bytes sent to {}/{}",
            self.url,
            self.packets_sent,
            self.events_sent,
            self.bytes_sent,
            self.hostname,
            self.relay_path.rsplit('/').next().unwrap_or(&self.session)
        );
        if self.packets_confirmed < self.packets_sent {
            s += &format!(
                "; {} of them ({} events) not confirmed written by the relay",
                self.packets_sent - self.packets_confirmed,
                self.events_sent.saturating_sub(self.events_confirmed)
            );
        }
        if self.packets_dropped > 0 {
            s += &format!(
                "; {} packets ({} events) dropped: the link was slower than the trace",
                self.packets_dropped, self.events_dropped
            );
        }
        if self.packets_lost > 0 || self.error.is_some() {
            s += &format!(
                "; {} packets ({} events) lost: {}",
                self.packets_lost,
                self.events_lost,
                self.error.as_deref().unwrap_or("connection ended")
            );
        }
        s
    }
}

enum Item {
    Metadata(Vec<u8>),
    Packet {
        cpu: u32,
        header: PacketHeader,
        bytes: Vec<u8>,
        events: u64,
    },
    Flushed(u64),
    Finish,
}

struct Shared {
    queue: VecDeque<Item>,
    queued_bytes: usize,
    /// The connection failed: the sink counts packets as lost.
    failed: bool,
    /// The sender thread has ended.
    done: bool,
    stats: RelayStats,
}

struct Inner {
    shared: Mutex<Shared>,
    wake: Condvar,
}

fn lock(i: &Inner) -> MutexGuard<'_, Shared> {
    i.shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts streaming (module docs).
pub struct RelayStreamer;

impl RelayStreamer {
    /// Connect and start the sender thread. The error (relay unreachable, refused, too old)
    /// is one line.
    pub fn start(
        cfg: RelayConfig,
        sender_uuid: [u8; 16],
    ) -> Result<(RelaySink, RelayHandle), RelayError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (session_name, contains) = match &cfg.session_name {
            Some(n) => (n.clone(), false),
            None => (format!("auto-{}", local_datetime(now)), true),
        };
        let trace_uuid = sender_uuid;
        let mut uuid = sender_uuid;
        if uuid == [0; 16] {
            uuid[0] = 1; // the relay reserves the nil UUID
        }
        let cs = CreateSession {
            session_name: session_name.clone(),
            hostname: cfg.hostname.clone(),
            live_timer_us: cfg.beacon_interval.as_micros().clamp(1, u32::MAX as u128) as u32,
            name_contains_creation_time: contains,
            sender_uuid: uuid,
            sender_session_id: std::process::id() as u64,
            creation_time: now,
        };
        let conn = Connection::open(&cfg.url, &cs, cfg.connect_timeout, cfg.io_timeout)?;
        let sockets = conn.sockets();
        let stats = RelayStats {
            url: cfg.url.to_string(),
            hostname: cfg.hostname.clone(),
            session: session_name,
            relay_path: conn.output_path.clone(),
            ..RelayStats::default()
        };
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                queued_bytes: 0,
                failed: false,
                done: false,
                stats,
            }),
            wake: Condvar::new(),
        });
        let i2 = inner.clone();
        let cfg2 = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("faultline-relay".into())
            .spawn(move || Sender::new(conn, cfg2, i2, trace_uuid).run())
            .map_err(|e| RelayError(format!("cannot start the relay sender thread: {e}")))?;
        Ok((
            RelaySink {
                inner: inner.clone(),
                limit: cfg.queue_bytes,
                last_meta: String::new(),
            },
            RelayHandle {
                inner,
                thread: Some(thread),
                sockets,
            },
        ))
    }
}

impl Connection {
    fn sockets(&self) -> Vec<TcpStream> {
        self.socket_clones()
    }
}

/// The writer's side (module docs): never blocks on the network.
pub struct RelaySink {
    inner: Arc<Inner>,
    limit: usize,
    last_meta: String,
}

impl PacketSink for RelaySink {
    fn metadata(&mut self, text: &str) {
        let mut s = lock(&self.inner);
        if !text.starts_with(self.last_meta.as_str()) {
            s.stats.metadata_updates_skipped += 1;
            return;
        }
        if text.len() == self.last_meta.len() {
            return;
        }
        // Each append starts with the plain-text signature: babeltrace2's live reader (2.0)
        // checks it at the start of every piece of metadata it receives. A comment in TSDL.
        let mut add = Vec::new();
        if !self.last_meta.is_empty() {
            add.extend_from_slice(METADATA_APPEND_SIGNATURE);
        }
        add.extend_from_slice(&text.as_bytes()[self.last_meta.len()..]);
        self.last_meta = text.to_string();
        if !s.failed && !s.done {
            s.queue.push_back(Item::Metadata(add));
            self.inner.wake.notify_one();
        }
    }

    fn packet(&mut self, cpu: u32, header: &PacketHeader, bytes: &[u8], events: u64) {
        let mut s = lock(&self.inner);
        if s.failed || s.done {
            s.stats.packets_lost += 1;
            s.stats.events_lost += events;
            return;
        }
        if s.queued_bytes.saturating_add(bytes.len()) > self.limit {
            s.stats.packets_dropped += 1;
            s.stats.events_dropped += events;
            return;
        }
        s.queued_bytes += bytes.len();
        s.queue.push_back(Item::Packet {
            cpu,
            header: *header,
            bytes: bytes.to_vec(),
            events,
        });
        self.inner.wake.notify_one();
    }

    fn finish(&mut self) {
        let mut s = lock(&self.inner);
        s.queue.push_back(Item::Finish);
        self.inner.wake.notify_one();
    }

    fn flushed(&mut self, ts: u64) {
        let mut s = lock(&self.inner);
        if !s.failed && !s.done {
            s.queue.push_back(Item::Flushed(ts));
        }
    }
}

/// Counters and the end of streaming.
pub struct RelayHandle {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    sockets: Vec<TcpStream>,
}

impl RelayHandle {
    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        lock(&self.inner).stats.clone()
    }

    /// Whether the connection has failed.
    pub fn failed(&self) -> bool {
        lock(&self.inner).failed
    }

    /// Wait until the sender thread has sent everything queued and closed the streams (the
    /// sink's `finish` must have been called, or is called here), at most `timeout`; then shut
    /// the connection down and count what is left as lost. Returns the final counters.
    pub fn finish(mut self, timeout: Duration) -> RelayStats {
        self.end(timeout)
    }

    fn end(&mut self, timeout: Duration) -> RelayStats {
        let deadline = Instant::now() + timeout;
        {
            let mut s = lock(&self.inner);
            if !s.queue.iter().any(|i| matches!(i, Item::Finish)) && !s.done {
                s.queue.push_back(Item::Finish);
                self.inner.wake.notify_one();
            }
        }
        let Some(t) = self.thread.take() else {
            return self.stats();
        };
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !t.is_finished() {
            // Unblock the sender: its socket calls fail at once.
            for s in &self.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
            let mut s = lock(&self.inner);
            if s.stats.error.is_none() {
                s.stats.error = Some(format!(
                    "the relay did not take the rest of the trace within {:.1} s",
                    timeout.as_secs_f64()
                ));
            }
            s.failed = true;
            drop(s);
            self.inner.wake.notify_all();
        }
        let _ = t.join();
        self.stats()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.end(Duration::from_secs(1));
        }
    }
}

struct StreamState {
    handle: u64,
    next_seq: u64,
    /// `packet_seq_num` of the last packet sent, as the relay's copy numbers it.
    last_packet_seq: u64,
    last_end: u64,
    beacon_ts: u64,
    sent_since_beacon: bool,
    /// Packets sent and not yet confirmed, oldest first: (net_seq_num, events).
    unconfirmed: VecDeque<(u64, u64)>,
    /// The packet the next confirmation step asks about ([`confirm_step`]).
    ask: Option<u64>,
}

struct Sender {
    conn: Option<Connection>,
    cfg: RelayConfig,
    inner: Arc<Inner>,
    streams: BTreeMap<u32, StreamState>,
    last_beacon: Instant,
    /// The latest consumer mark (module docs, "Beacons").
    flushed: u64,
    /// The trace's uuid (for the streams' first, empty packets).
    uuid: [u8; 16],
    last_confirm: Instant,
}

impl Sender {
    fn new(conn: Connection, cfg: RelayConfig, inner: Arc<Inner>, uuid: [u8; 16]) -> Sender {
        Sender {
            uuid,
            conn: Some(conn),
            cfg,
            inner,
            streams: BTreeMap::new(),
            last_beacon: Instant::now(),
            flushed: 0,
            last_confirm: Instant::now(),
        }
    }

    fn run(mut self) {
        if let Err(e) = self.add_streams(self.cfg.streams) {
            self.fail(e);
        }
        let mut finished = false;
        while !finished {
            let items: Vec<Item> = {
                let mut s = lock(&self.inner);
                if s.queue.is_empty() {
                    let wait = self
                        .cfg
                        .beacon_interval
                        .saturating_sub(self.last_beacon.elapsed())
                        .max(Duration::from_millis(1));
                    s = self
                        .inner
                        .wake
                        .wait_timeout(s, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                s.queued_bytes = 0;
                s.queue.drain(..).collect()
            };
            for item in items {
                // Also between the packets of a batch: on a slow link one batch can take the
                // whole run.
                if self.last_confirm.elapsed() >= self.cfg.confirm_interval {
                    self.confirm_round();
                }
                match item {
                    Item::Finish => finished = true,
                    Item::Flushed(ts) => self.flushed = self.flushed.max(ts),
                    Item::Metadata(text) => {
                        let r = self.conn_mut().and_then(|c| c.send_metadata(&text));
                        match r {
                            Ok(()) => lock(&self.inner).stats.metadata_bytes += text.len() as u64,
                            Err(e) => self.fail(e),
                        }
                    }
                    Item::Packet {
                        cpu,
                        mut header,
                        mut bytes,
                        events,
                    } => {
                        // The relay's copy numbers packets one further (module docs,
                        // "Streams"); the writer's packets are at least a header long.
                        header.packet_seq_num = header.packet_seq_num.saturating_add(1);
                        if let Some(h) = bytes.get_mut(..PACKET_HEADER_SIZE) {
                            h.copy_from_slice(&header.encode());
                        }
                        let r = self.send_packet(cpu, &header, &bytes);
                        if r.is_ok() {
                            if let Some(st) = self.streams.get_mut(&cpu) {
                                st.unconfirmed.push_back((st.next_seq - 1, events));
                            }
                        }
                        let mut s = lock(&self.inner);
                        match r {
                            Ok(late) => {
                                s.stats.packets_sent += 1;
                                s.stats.events_sent += events;
                                s.stats.bytes_sent += bytes.len() as u64;
                                s.stats.late_packets += late as u64;
                            }
                            Err(e) => {
                                s.stats.packets_lost += 1;
                                s.stats.events_lost += events;
                                drop(s);
                                self.fail(e);
                            }
                        }
                    }
                }
            }
            if !finished && self.last_beacon.elapsed() >= self.cfg.beacon_interval {
                self.beacons();
            }
            if !finished && self.last_confirm.elapsed() >= self.cfg.confirm_interval {
                self.confirm_round();
            }
        }
        self.close();
        let mut s = lock(&self.inner);
        s.done = true;
        // Anything pushed after the end is lost.
        for i in s.queue.drain(..).collect::<Vec<_>>() {
            if let Item::Packet { events, .. } = i {
                s.stats.packets_lost += 1;
                s.stats.events_lost += events;
            }
        }
    }

    fn conn_mut(&mut self) -> Result<&mut Connection, RelayError> {
        self.conn
            .as_mut()
            .ok_or_else(|| RelayError("connection closed".into()))
    }

    fn fail(&mut self, e: RelayError) {
        self.conn = None;
        let mut s = lock(&self.inner);
        s.failed = true;
        if s.stats.error.is_none() {
            s.stats.error = Some(e.0);
        }
    }

    /// Add the streams of buffers `0..n` and publish them (module docs, "Streams").
    fn add_streams(&mut self, n: u32) -> Result<(), RelayError> {
        if n == 0 {
            return Ok(());
        }
        for cpu in 0..n {
            self.add_stream(cpu)?;
        }
        self.conn_mut()?.streams_sent()?;
        for cpu in 0..n {
            self.first_packet(cpu, self.cfg.start_ts)?;
        }
        Ok(())
    }

    fn add_stream(&mut self, cpu: u32) -> Result<(), RelayError> {
        let handle = self.conn_mut()?.add_stream(&format!("stream_{cpu}"))?;
        self.streams.insert(
            cpu,
            StreamState {
                handle,
                next_seq: 0,
                last_packet_seq: 0,
                last_end: 0,
                beacon_ts: 0,
                sent_since_beacon: false,
                unconfirmed: VecDeque::new(),
                ask: None,
            },
        );
        Ok(())
    }

    /// The empty packet a stream begins with (module docs, "Streams"), at time `ts`.
    fn first_packet(&mut self, cpu: u32, ts: u64) -> Result<(), RelayError> {
        let h = PacketHeader {
            magic: faultline_ctf::layout::MAGIC,
            uuid: self.uuid,
            timestamp_begin: ts,
            timestamp_end: ts,
            content_size: PACKET_HEADER_SIZE as u64 * 8,
            packet_size: PACKET_HEADER_SIZE as u64 * 8,
            packet_seq_num: 0,
            cpu_id: cpu,
            ..PacketHeader::default()
        };
        self.send_packet(cpu, &h, &h.encode()).map(|_| ())
    }

    /// Send one packet and its index; returns whether it began before a beacon.
    fn send_packet(
        &mut self,
        cpu: u32,
        h: &PacketHeader,
        bytes: &[u8],
    ) -> Result<bool, RelayError> {
        if !self.streams.contains_key(&cpu) {
            self.add_stream(cpu)?;
            self.conn_mut()?.streams_sent()?;
            self.first_packet(cpu, h.timestamp_begin)?;
        }
        let (handle, seq, late) = match self.streams.get_mut(&cpu) {
            Some(st) => {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.last_packet_seq = h.packet_seq_num;
                st.last_end = h.timestamp_end;
                st.sent_since_beacon = true;
                (st.handle, seq, st.beacon_ts > h.timestamp_begin)
            }
            None => return Err(RelayError("stream vanished".into())),
        };
        let c = self.conn_mut()?;
        c.send_packet(handle, seq, bytes)?;
        c.send_index(&Index {
            relay_stream: handle,
            net_seq_num: seq,
            packet_size: bytes.len() as u64 * 8,
            content_size: h.content_size,
            timestamp_begin: h.timestamp_begin,
            timestamp_end: h.timestamp_end,
            events_discarded: h.events_discarded,
            stream_id: h.stream_id as u64,
            stream_instance_id: h.cpu_id as u64,
            packet_seq_num: h.packet_seq_num,
        })?;
        Ok(late)
    }

    fn beacons(&mut self) {
        self.last_beacon = Instant::now();
        if self.conn.is_none() || self.flushed == 0 {
            return;
        }
        let ts = self.flushed;
        let mut sent = 0;
        let mut err = None;
        for st in self.streams.values_mut() {
            if std::mem::take(&mut st.sent_since_beacon) || ts <= st.last_end || ts <= st.beacon_ts
            {
                continue;
            }
            let Some(c) = self.conn.as_mut() else { break };
            let r = c.send_index(&Index {
                relay_stream: st.handle,
                net_seq_num: st.next_seq.saturating_sub(1),
                timestamp_end: ts,
                ..Index::default()
            });
            match r {
                Ok(()) => {
                    st.beacon_ts = ts;
                    sent += 1;
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        lock(&self.inner).stats.beacons += sent;
        if let Some(e) = err {
            self.fail(e);
        }
    }

    /// Ask the relay what it has written (module docs, "Sent and confirmed"): for each stream,
    /// whether the packet that was its newest unconfirmed one at the previous round is still
    /// pending.
    fn confirm_round(&mut self) {
        self.last_confirm = Instant::now();
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        let mut err = None;
        for st in self.streams.values_mut() {
            if let Err(e) = confirm_step(c, &self.inner, st) {
                err = Some(e);
                break;
            }
        }
        if let Some(e) = err {
            self.fail(e);
        }
    }

    fn close(&mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        // Wait until the relay has written everything (proto docs), bounded by the handle's
        // deadline (which shuts the sockets down).
        for st in self.streams.values_mut() {
            if st.next_seq == 0 {
                continue;
            }
            loop {
                match c.data_pending(st.handle, st.next_seq - 1) {
                    Ok(true) => {
                        // Confirm what is written meanwhile, should the end budget run out.
                        if let Err(e) = confirm_step(&mut c, &self.inner, st) {
                            let mut s = lock(&self.inner);
                            if s.stats.error.is_none() {
                                s.stats.error = Some(e.0);
                            }
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(false) => {
                        confirm(&self.inner, &mut st.unconfirmed, st.next_seq - 1);
                        break;
                    }
                    Err(e) => {
                        let mut s = lock(&self.inner);
                        if s.stats.error.is_none() {
                            s.stats.error = Some(e.0);
                        }
                        return;
                    }
                }
            }
        }
        // As LTTng at a session's end (proto docs): rotate every stream to no chunk, so a
        // live viewer still behind keeps reading the chunk to its end, and close the chunk.
        let meta = c.metadata_stream;
        let mut positions: Vec<(u64, u64)> = self
            .streams
            .values()
            .filter(|st| st.next_seq > 0)
            .map(|st| (st.handle, st.last_packet_seq.saturating_add(1)))
            .collect();
        positions.push((meta, 0));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ended = c
            .rotate_streams_to_none(&positions)
            .and_then(|_| c.close_trace_chunk(now));
        match ended {
            Ok(()) => lock(&self.inner).stats.chunk_closed = true,
            Err(e) => {
                let mut s = lock(&self.inner);
                if s.stats.error.is_none() {
                    s.stats.error = Some(e.0);
                }
                return;
            }
        }
        let mut closed = 0;
        for st in self.streams.values() {
            // A stream that never had a packet closes after "packet -1" (nothing to wait
            // for), as LTTng's consumer closes one.
            if c.close_stream(st.handle, st.next_seq.wrapping_sub(1))
                .is_err()
            {
                break;
            }
            closed += 1;
        }
        if c.close_stream(meta, 0).is_ok() {
            closed += 1;
        }
        lock(&self.inner).stats.streams_closed = closed;
    }
}

/// One confirmation step for a stream (module docs, "Sent and confirmed"): ask whether the
/// packet `st.ask` is still pending. Written: its packets and the older ones are confirmed, and
/// the next step asks about the newest unconfirmed packet. Pending: the next step asks about
/// the one halfway between the oldest unconfirmed packet and this one, so that on a link that
/// stays behind the confirmations still follow what the relay has written.
fn confirm_step(c: &mut Connection, inner: &Inner, st: &mut StreamState) -> Result<(), RelayError> {
    let newest = |st: &StreamState| st.unconfirmed.back().map(|&(seq, _)| seq);
    let Some(seq) = st.ask else {
        st.ask = newest(st);
        return Ok(());
    };
    if c.data_pending(st.handle, seq)? {
        let i = st.unconfirmed.partition_point(|&(s, _)| s < seq);
        st.ask = st.unconfirmed.get(i / 2).map(|&(s, _)| s);
    } else {
        confirm(inner, &mut st.unconfirmed, seq);
        st.ask = newest(st);
    }
    Ok(())
}

/// Count the packets of `unconfirmed` up to `net_seq_num` as confirmed (the relay answered
/// "nothing pending" for it) and forget them.
fn confirm(inner: &Inner, unconfirmed: &mut VecDeque<(u64, u64)>, net_seq_num: u64) {
    let (mut packets, mut events) = (0, 0);
    while let Some(&(seq, ev)) = unconfirmed.front() {
        if seq > net_seq_num {
            break;
        }
        unconfirmed.pop_front();
        packets += 1;
        events += ev;
    }
    let mut s = lock(inner);
    s.stats.packets_confirmed += packets;
    s.stats.events_confirmed += events;
}

/// `YYYYMMDD-HHMMSS` in local time (LTTng's session date format).
fn local_datetime(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value; localtime_r writes into it from a valid time_t
    // pointer and returns NULL on failure (then the zero fields give 19000100-000000).
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
