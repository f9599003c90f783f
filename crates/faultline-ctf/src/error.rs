//! Error type of the crate.
//!
//! Every error caused by the content of a file names the file and the byte offset in it where the
//! problem was found ([`CtfError::Format`], [`CtfError::Metadata`]); every I/O error names the path
//! ([`CtfError::Io`]). Errors caused by the caller's arguments (an invalid [`crate::TraceDesc`], a
//! packet handed to [`crate::TraceWriter::write_packet`] that does not follow the layout) are
//! [`CtfError::Desc`] and [`CtfError::Packet`].

use std::path::PathBuf;

/// Everything that can go wrong writing or reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum CtfError {
    /// An operating-system error on `path` (ENOSPC, EACCES, ...).
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`create`, `write`, `read`, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A stream file does not follow the packet layout.
    #[error("{path}: byte offset {offset}: {msg}")]
    Format {
        /// The stream file.
        path: PathBuf,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// The metadata file is not TSDL as written by this crate.
    #[error("not a faultline trace: metadata: line {line}: {msg} ({path}, byte offset {offset})")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// Line (1-based).
        line: u32,
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// The trace description cannot be expressed in TSDL (bad identifier, duplicate id, ...).
    #[error("invalid trace description: {0}")]
    Desc(String),
    /// A packet given to the writer does not follow the layout; `offset` is relative to the
    /// start of the packet.
    #[error("invalid packet for cpu {cpu}: byte offset {offset}: {msg}")]
    Packet {
        /// The CPU whose stream the packet was for.
        cpu: u32,
        /// Byte offset in the packet.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
}

impl CtfError {
    /// [`CtfError::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        CtfError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// The same error again (one I/O error that fails several packets): an I/O error keeps
    /// its OS error code (or its kind and message).
    pub(crate) fn again(&self) -> Self {
        match self {
            CtfError::Io { path, op, source } => CtfError::Io {
                path: path.clone(),
                op,
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            CtfError::Format { path, offset, msg } => CtfError::Format {
                path: path.clone(),
                offset: *offset,
                msg: msg.clone(),
            },
            CtfError::Metadata {
                path,
                line,
                offset,
                msg,
            } => CtfError::Metadata {
                path: path.clone(),
                line: *line,
                offset: *offset,
                msg: msg.clone(),
            },
            CtfError::Desc(m) => CtfError::Desc(m.clone()),
            CtfError::Packet { cpu, offset, msg } => CtfError::Packet {
                cpu: *cpu,
                offset: *offset,
                msg: msg.clone(),
            },
        }
    }

    /// [`CtfError::Format`] at byte `offset` of `path`.
    pub fn format(path: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Self {
        CtfError::Format {
            path: path.into(),
            offset,
            msg: msg.into(),
        }
    }

    /// The byte offset in the offending file, when the error is about file content.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CtfError::Format { offset, .. }
            | CtfError::Metadata { offset, .. }
            | CtfError::Packet { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The offending file, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            CtfError::Io { path, .. }
            | CtfError::Format { path, .. }
            | CtfError::Metadata { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = CtfError> = std::result::Result<T, E>;
