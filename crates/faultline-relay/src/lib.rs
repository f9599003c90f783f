//! Streaming faultline traces to `lttng-relayd`, LTTng's trace collector.
//!
//! A fleet's traces go to one relay over the network: it writes each host's trace under
//! `HOST/SESSION/` in its output directory and serves live sessions that `babeltrace2
//! --input-format=lttng-live` reads while they are recorded. faultline streams the CTF packets
//! its trace writer produces, unchanged, plus the metadata, with the per-packet index that live
//! viewers need.
//!
//! - [`url`]: `net://HOST[:CTRL_PORT[:DATA_PORT]]`, LTTng's convention and default ports.
//! - [`proto`]: the control and data connection wire format (relay protocol 2.11+, as relayd
//!   2.13 speaks it).
//! - [`client`]: one blocking session connection (handshake, session, chunk, streams, packets,
//!   indexes, close).
//! - [`streamer`]: the [`faultline_ctf::PacketSink`] that queues packets for a sender thread,
//!   so the consumer (and therefore the traced program) never waits on the network; losses of
//!   the remote copy are counted.

pub mod client;
pub mod proto;
pub mod streamer;
pub mod url;

pub use client::{Connection, RelayError};
pub use streamer::{RelayConfig, RelayHandle, RelaySink, RelayStats, RelayStreamer};
pub use url::RelayUrl;
