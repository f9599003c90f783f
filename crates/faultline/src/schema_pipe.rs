//! The schema pipe between a traced program and `faultline record`: framing, message types and
//! the bounded reader the recording side uses.
//!
//! # Wire format
//! A stream of **lines**, each one JSON object with a `"type"` tag, terminated by `\n` (JSON
//! text never holds a raw newline). Written only by the traced program (one writer: every line
//! is written under a lock), read only by `faultline record`. The pipe stays open from the
//! program's first session to its exit (later sessions of the process announce their new
//! classes on it); EOF means the program is gone.
//!
//! | `type` | when | content |
//! |---|---|---|
//! | `schema` | first, once, at the process's first `Session::start` | [`SchemaMessage`]: pid, procname, hostname, policy, every event class known at start |
//! | `events` | whenever event classes are registered at run time | [`EventsMessage`]: the new classes (id, provider, name, typed fields) |
//! | `recorder_stats` | every 100 ms while the counters change, and once with `"final": true` at stop | [`StatsMessage`]: the recorder's cumulative counters (events per copy strategy, restarts, fallbacks, faulted events, losses) |
//!
//! Messages are **additive**: a reader ignores (and counts) lines whose `type` it does not know,
//! so newer programs can send more kinds of messages to older recorders.
//!
//! # Ordering: a class before its records
//! The program writes an `events` line from the tracepoint registry's listener, which runs
//! before the new tracepoint can become active (see `faultline_tracepoints::register`), so the
//! `write(2)` has returned before any record of the class is committed. The recorder reads the
//! pipe (non-blocking, everything available) *after* taking a packet from the ring buffer and
//! before writing it: the commit it observed happened after the write, so the line is already
//! in the pipe. A record whose id is still unknown is rejected by the trace writer (never
//! written under a wrong description).
//!
//! # Untrusted input
//! The recorder validates everything: a line longer than [`MAX_LINE`] is skipped (the reader
//! resynchronises at the next newline), malformed JSON or a malformed message is reported and
//! skipped, ids must be below [`faultline_tracepoints::MAX_TRACEPOINTS`] and new, and the
//! number of classes is bounded by the same limit. Names and field names are checked again
//! when the CTF metadata is generated. Nothing here panics or blocks on what the program sends.

use crate::session::{SchemaEvent, SchemaMessage};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Longest line accepted (bytes, newline excluded).
pub const MAX_LINE: usize = 16 << 20;

/// Event classes registered after the schema was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsMessage {
    /// The new classes (id, provider, name, typed fields).
    pub events: Vec<SchemaEvent>,
}

/// The recorder's cumulative counters, sent by an attached session (`recorder_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsMessage {
    /// The session stopped: these are the last counts.
    #[serde(rename = "final")]
    pub last: bool,
    /// The session recorder's cumulative counters.
    pub stats: faultline_recorder::RecorderStats,
}

/// One message of the pipe (see the module docs for the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `schema`: the first message.
    Schema(SchemaMessage),
    /// `events`: classes registered later.
    Events(EventsMessage),
    /// `recorder_stats`: the recorder's counters.
    RecorderStats(StatsMessage),
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Encode one message as a line (with its `\n`).
pub fn encode(m: &Message) -> Vec<u8> {
    let r = match m {
        Message::Schema(s) => serde_json::to_vec(&Tagged {
            ty: "schema",
            body: s,
        }),
        Message::Events(e) => serde_json::to_vec(&Tagged {
            ty: "events",
            body: e,
        }),
        Message::RecorderStats(m) => serde_json::to_vec(&Tagged {
            ty: "recorder_stats",
            body: m,
        }),
    };
    // Serializing these plain structs cannot fail; an empty line would be skipped anyway.
    let mut v = r.unwrap_or_default();
    v.push(b'\n');
    v
}

/// Encode one message as a line (with its `\n`) into `buf` without allocating (for senders
/// that may run where allocating is unsafe, e.g. a process exiting from a signal handler).
/// Returns the length, or `None` if it does not fit.
pub fn encode_into(m: &Message, buf: &mut [u8]) -> Option<usize> {
    let cap = buf.len();
    let mut w: &mut [u8] = buf;
    let r = match m {
        Message::Schema(s) => serde_json::to_writer(
            &mut w,
            &Tagged {
                ty: "schema",
                body: s,
            },
        ),
        Message::Events(e) => serde_json::to_writer(
            &mut w,
            &Tagged {
                ty: "events",
                body: e,
            },
        ),
        Message::RecorderStats(s) => serde_json::to_writer(
            &mut w,
            &Tagged {
                ty: "recorder_stats",
                body: s,
            },
        ),
    };
    r.ok()?;
    w.write_all(b"\n").ok()?;
    Some(cap - w.len())
}

/// Write one message (one `write_all` of one line).
pub fn send(pipe: &mut File, m: &Message) -> std::io::Result<()> {
    pipe.write_all(&encode(m))
}

/// Parse one line. `Ok(None)`: a well-formed message of a type this version does not know.
pub fn decode(line: &[u8]) -> Result<Option<Message>, String> {
    /// The type alone (every other member skipped, not built): the line is then parsed
    /// straight into its message's struct, without a `serde_json::Value` tree in between
    /// (a schema of a few hundred classes is tens of KB, read while the program waits).
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type", default)]
        ty: Option<serde_json::Value>,
    }
    let t: TypeOnly =
        serde_json::from_slice(line).map_err(|e| format!("unreadable schema message: {e}"))?;
    let ty = t.ty.as_ref().and_then(|t| t.as_str());
    let ty = ty.ok_or("schema message without a \"type\"")?;
    match ty {
        "schema" => serde_json::from_slice(line)
            .map(|m| Some(Message::Schema(m)))
            .map_err(|e| format!("bad schema message: {e}")),
        "events" => serde_json::from_slice(line)
            .map(|m| Some(Message::Events(m)))
            .map_err(|e| format!("bad events message: {e}")),
        "recorder_stats" => serde_json::from_slice(line)
            .map(|m| Some(Message::RecorderStats(m)))
            .map_err(|e| format!("bad recorder_stats message: {e}")),
        _ => Ok(None),
    }
}

/// The recording side: reads whatever is available without blocking, splits lines, bounds
/// them (module docs).
pub struct Reader {
    file: File,
    buf: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`]: drop bytes up to the next newline.
    skipping: bool,
    eof: bool,
    /// Lines of unknown type (ignored).
    pub unknown: u64,
}

impl Reader {
    /// Wrap the read end; sets it non-blocking.
    pub fn new(file: File) -> std::io::Result<Reader> {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor `file` owns.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Reader {
            file,
            buf: Vec::new(),
            skipping: false,
            eof: false,
            unknown: 0,
        })
    }

    /// The writer closed its end (all of its copies).
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Sleep until something can be read (or EOF) or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        if self.eof {
            std::thread::sleep(timeout);
            return;
        }
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
    }

    /// Read everything available now; returns the complete messages (and one error string per
    /// bad line). Never blocks.
    pub fn read_available(&mut self) -> (Vec<Message>, Vec<String>) {
        let mut out = Vec::new();
        let mut errs = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while !self.eof {
            match self.file.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.take(&chunk[..n], &mut out, &mut errs),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    errs.push(format!("reading the schema pipe: {e}"));
                    self.eof = true;
                }
            }
        }
        if self.eof && !self.buf.is_empty() && !self.skipping {
            // A last line without its newline (the program died mid-write): try it.
            let line = std::mem::take(&mut self.buf);
            self.line(&line, &mut out, &mut errs);
        }
        (out, errs)
    }

    fn take(&mut self, mut data: &[u8], out: &mut Vec<Message>, errs: &mut Vec<String>) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(nl);
            data = &rest[1..];
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.buf.len() + head.len() > MAX_LINE {
                self.buf.clear();
                errs.push(format!(
                    "schema message longer than {MAX_LINE} bytes skipped"
                ));
                continue;
            }
            let mut line = std::mem::take(&mut self.buf);
            line.extend_from_slice(head);
            self.line(&line, out, errs);
            line.clear();
            self.buf = line;
        }
        if self.skipping {
            return;
        }
        if self.buf.len() + data.len() > MAX_LINE {
            self.buf.clear();
            self.skipping = true;
            errs.push(format!(
                "schema message longer than {MAX_LINE} bytes skipped"
            ));
            return;
        }
        self.buf.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Message>, errs: &mut Vec<String>) {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        match decode(line) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => self.unknown += 1,
            Err(e) => errs.push(e),
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What arrived of the program's recorder counters (reported by `faultline record`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersInfo {
    /// Counter messages received and accepted.
    pub accepted: u64,
    /// Counter messages refused (inconsistent, going backwards, after the final one).
    pub refused: u64,
    /// Why the first one was refused.
    pub first_refusal: Option<String>,
    /// The session stopped and sent its final counters (otherwise the numbers are the last
    /// periodic report, if any: the program was killed or did not stop its session).
    pub final_received: bool,
}

/// The program's counters as the recording side keeps them: per session, the last ones that
/// passed [`crate::session::check_stats`] against the previous ones (untrusted input); a
/// series that follows a final report is a later session of the same process, added to the
/// sessions before it.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// The total: finished sessions plus the current one.
    pub last: Option<faultline_recorder::RecorderStats>,
    /// How many messages were accepted or refused, and whether the final one came.
    pub info: CountersInfo,
    /// The pipe reached EOF (no more messages can come).
    pub eof: bool,
    /// Sum of the sessions that sent their final report.
    done: Option<faultline_recorder::RecorderStats>,
    /// The current session's last accepted counters.
    current: Option<faultline_recorder::RecorderStats>,
}

impl Counters {
    /// Check and keep (or refuse) one message.
    pub fn take(&mut self, m: StatsMessage) {
        if self.info.final_received {
            // A new session of the same process: its counters start again.
            self.done = self.last;
            self.current = None;
            self.info.final_received = false;
        }
        if let Err(e) = crate::session::check_stats(self.current.as_ref(), &m.stats) {
            self.refuse(e);
            return;
        }
        let total = match &self.done {
            Some(d) => match d.try_combine(&m.stats, u64::checked_add) {
                Some(t) => t,
                None => {
                    self.refuse("the sessions' total overflows".into());
                    return;
                }
            },
            None => m.stats,
        };
        if let Err(e) = crate::session::check_stats(None, &total) {
            self.refuse(e);
            return;
        }
        self.current = Some(m.stats);
        self.last = Some(total);
        self.info.accepted += 1;
        self.info.final_received = m.last;
    }

    fn refuse(&mut self, e: String) {
        self.info.refused += 1;
        self.info.first_refusal.get_or_insert(format!(
            "the program sent inconsistent recorder counters: {e}"
        ));
    }

    /// Where the numbers come from, for the trace and the report.
    pub fn source(&self) -> &'static str {
        if self.info.final_received {
            "final report of the traced program"
        } else {
            "last periodic report of the traced program (it did not stop its session)"
        }
    }
}

/// Event classes that a drain must declare as they appear (see `Drain::set_class_source`).
pub trait ClassSource: Send {
    /// Classes published since the last call (id, description). Never blocks.
    fn poll(&mut self) -> Vec<(u32, faultline_schema::EventDesc)>;
    /// Problems met since the last call (bad messages, refused classes), for the report.
    fn take_errors(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The recording side's class source: `events` messages of the pipe, validated (fresh ids
/// below the limit, bounded count). Errors are kept for the report.
pub struct PipeClasses {
    reader: Reader,
    /// The `recorder_stats` messages, checked (shared with whoever reports them).
    counters: std::sync::Arc<std::sync::Mutex<Counters>>,
    known: std::collections::HashSet<u32>,
    /// Bad lines and refused classes not yet taken (at most 64 kept).
    errors: Vec<String>,
    early: Vec<Message>,
}

impl PipeClasses {
    /// `known`: the ids of the first schema.
    pub fn new(reader: Reader, known: impl IntoIterator<Item = u32>) -> PipeClasses {
        PipeClasses {
            reader,
            counters: Default::default(),
            known: known.into_iter().collect(),
            errors: Vec::new(),
            early: Vec::new(),
        }
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 64 {
            self.errors.push(e);
        }
    }

    /// The pipe reached EOF.
    pub fn eof(&self) -> bool {
        self.reader.eof()
    }

    /// The program's recorder counters as they arrive (and whether the pipe reached EOF).
    pub fn counters(&self) -> std::sync::Arc<std::sync::Mutex<Counters>> {
        self.counters.clone()
    }

    /// Messages read before this source existed (with the first schema), handled by the next
    /// [`ClassSource::poll`].
    pub fn push_early(&mut self, msgs: Vec<Message>) {
        self.early = msgs;
    }
}

impl ClassSource for PipeClasses {
    fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    fn poll(&mut self) -> Vec<(u32, faultline_schema::EventDesc)> {
        let (mut msgs, errs) = self.reader.read_available();
        lock(&self.counters).eof = self.reader.eof();
        if !self.early.is_empty() {
            let mut all = std::mem::take(&mut self.early);
            all.append(&mut msgs);
            msgs = all;
        }
        for e in errs {
            self.error(e);
        }
        let mut out = Vec::new();
        for m in msgs {
            let evs = match m {
                Message::Events(e) => e.events,
                Message::Schema(_) => {
                    self.error("a second schema message was ignored".into());
                    continue;
                }
                Message::RecorderStats(m) => {
                    lock(&self.counters).take(m);
                    continue;
                }
            };
            for e in evs {
                if e.id as usize >= faultline_tracepoints::MAX_TRACEPOINTS
                    || self.known.len() >= faultline_tracepoints::MAX_TRACEPOINTS
                {
                    self.error(format!("event class id {} refused: over the limit", e.id));
                    continue;
                }
                if !self.known.insert(e.id) {
                    self.error(format!("event class id {} declared twice", e.id));
                    continue;
                }
                out.push((e.id, e.desc.leak()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_schema::{FieldType, OwnedEventDesc, OwnedFieldDesc};
    use std::os::fd::{FromRawFd, OwnedFd};

    fn pipe() -> (File, File) {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into a valid array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe {
            (
                File::from(OwnedFd::from_raw_fd(fds[0])),
                File::from(OwnedFd::from_raw_fd(fds[1])),
            )
        }
    }

    #[test]
    fn encode_into_matches_encode_and_bounds_the_buffer() {
        let m = Message::RecorderStats(StatsMessage {
            last: true,
            stats: faultline_recorder::RecorderStats {
                recorded: 7,
                ..Default::default()
            },
        });
        let mut buf = [0u8; 4096];
        let n = encode_into(&m, &mut buf).unwrap();
        assert_eq!(&buf[..n], &encode(&m)[..]);
        assert_eq!(encode_into(&m, &mut buf[..n - 1]), None);
        assert_eq!(decode(&buf[..n - 1]).unwrap(), Some(m));
    }

    fn class(id: u32, name: &str) -> SchemaEvent {
        SchemaEvent {
            id,
            desc: OwnedEventDesc {
                provider: "p".into(),
                name: name.into(),
                fields: vec![OwnedFieldDesc {
                    name: "v".into(),
                    ty: FieldType::U64,
                }],
            },
        }
    }

    #[test]
    fn lines_round_trip_and_unknown_types_are_ignored() {
        let (r, mut w) = pipe();
        let mut rd = Reader::new(r).unwrap();
        let ev = Message::Events(EventsMessage {
            events: vec![class(3, "a")],
        });
        let line = encode(&ev);
        // Split in the middle of a line: nothing complete yet.
        w.write_all(&line[..5]).unwrap();
        assert_eq!(rd.read_available().0, vec![]);
        w.write_all(&line[5..]).unwrap();
        w.write_all(b"{\"type\":\"from_the_future\",\"x\":1}\n\n")
            .unwrap();
        w.write_all(&line).unwrap();
        let (msgs, errs) = rd.read_available();
        assert_eq!(msgs, vec![ev.clone(), ev]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(rd.unknown, 1);
        assert!(!rd.eof());
        drop(w);
        assert_eq!(rd.read_available().0, vec![]);
        assert!(rd.eof());
    }

    #[test]
    fn garbage_and_oversized_lines_are_skipped_with_an_error() {
        let (r, mut w) = pipe();
        let rd = Reader::new(r).unwrap();
        let good = encode(&Message::Events(EventsMessage {
            events: vec![class(1, "ok")],
        }));
        let mut src = PipeClasses::new(rd, [0]);
        // A writer thread: the oversized line is bigger than the pipe.
        let t = std::thread::spawn(move || {
            w.write_all(b"not json\n{\"type\":\"events\",\"events\":7}\n{\"no\":1}\n")
                .unwrap();
            w.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
            w.write_all(b"\n").unwrap();
            w.write_all(&good).unwrap();
            // Id 0 is known, id 1 now too, and one over the limit.
            let dup = encode(&Message::Events(EventsMessage {
                events: vec![
                    class(0, "dup"),
                    class(1, "dup2"),
                    class(faultline_tracepoints::MAX_TRACEPOINTS as u32, "big"),
                ],
            }));
            w.write_all(&dup).unwrap();
        });
        let mut got = Vec::new();
        let mut errors = Vec::new();
        while !src.eof() || !t.is_finished() {
            got.extend(src.poll());
            errors.extend(src.take_errors());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        t.join().unwrap();
        got.extend(src.poll());
        errors.extend(src.take_errors());
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.name), (1, "ok"));
        let all = errors.join("\n");
        assert_eq!(errors.len(), 7, "{all}");
        assert!(all.contains("unreadable schema message"), "{all}");
        assert!(all.contains("bad events message"), "{all}");
        assert!(all.contains("without a \"type\""), "{all}");
        assert!(all.contains("longer than"), "{all}");
        assert!(all.contains("id 0 declared twice"), "{all}");
        assert!(all.contains("id 1 declared twice"), "{all}");
        assert!(all.contains("over the limit"), "{all}");
    }
}
