//! Streaming a recording to `lttng-relayd` ([`faultline_relay`]): the options shared by an
//! embedded [`crate::Session`] and `faultline record --relay`.
//!
//! [`connect`] opens the relay session for a channel and
//! returns the sink to give to the trace writer and the handle that reports the counters. The
//! sink only queues (the consumer never waits on the network); what the relay did not get is
//! counted in [`RelayStats`] and reported next to the local numbers.

use faultline_relay::{RelayConfig, RelayStreamer};
pub use faultline_relay::{RelayError, RelayHandle, RelaySink, RelayStats, RelayUrl};
use faultline_ringbuf::Channel;
use std::time::Duration;

/// Where and under which names to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// The relay (`net://HOST[:CTRL_PORT[:DATA_PORT]]`).
    pub url: RelayUrl,
    /// Session name (default: `auto-YYYYMMDD-HHMMSS`, as LTTng names an unnamed session).
    pub session: Option<String>,
    /// Host name the relay files the trace under (default: this machine's).
    pub hostname: Option<String>,
}

impl RelayOptions {
    /// Options for a relay URL (one-line error when it does not parse).
    pub fn parse(url: &str) -> Result<RelayOptions, String> {
        Ok(RelayOptions {
            url: RelayUrl::parse(url)?,
            session: None,
            hostname: None,
        })
    }
}

/// How long, at the end, the relay gets to take what is still queued.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Open the relay session for `chan` (module docs). `flush_interval` is the consumer's: live
/// beacons (sent as the consumer reports its flushes) go at the same pace.
pub fn connect(
    opts: &RelayOptions,
    chan: &Channel,
    flush_interval: Duration,
) -> Result<(RelaySink, RelayHandle), RelayError> {
    let mut cfg = RelayConfig::new(opts.url.clone());
    cfg.session_name = opts.session.clone();
    if let Some(h) = &opts.hostname {
        cfg.hostname = h.clone();
    }
    cfg.beacon_interval = flush_interval.max(Duration::from_millis(10));
    // Every buffer's stream exists from the start, beginning with an empty packet at this
    // time (faultline_relay::streamer docs, "Streams"): the connection is opened before the
    // traced code runs (record starts the program after it, a Session before it returns).
    cfg.streams = chan.num_cpus();
    cfg.start_ts = faultline_ringbuf::clock::now(chan.clock().kind);
    RelayStreamer::start(cfg, chan.uuid())
}

/// The live URL a viewer opens for a session streamed through a relay whose viewer port is
/// LTTng's default (5344): `net://HOST/host/HOSTNAME/SESSION`.
pub fn live_url(url: &RelayUrl, stats: &RelayStats) -> String {
    format!(
        "net://{}/host/{}/{}",
        url.addr(faultline_relay::url::DEFAULT_LIVE_PORT),
        stats.hostname,
        stats.session
    )
}
