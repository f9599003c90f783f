//! Helpers shared by the recorder's integration tests (`mod common;` in each).

use faultline_recorder::{Policy, Recorder, RecorderConfig, Strategy};
use faultline_ringbuf::{Channel, ChannelConfig, Mode};
use std::sync::Arc;

/// A discard-mode channel of `n` sub-buffers of `subbuf` bytes.
pub fn channel(subbuf: u64, n: u64) -> Arc<Channel> {
    Arc::new(
        Channel::create(&ChannelConfig {
            subbuf_size: subbuf,
            num_subbuf: n,
            mode: Mode::Discard,
            ..ChannelConfig::default()
        })
        .unwrap(),
    )
}

/// A recorder into `ch` that gives every event strategy `s`.
pub fn recorder(ch: &Arc<Channel>, s: Strategy) -> Arc<Recorder> {
    Recorder::new(
        ch.clone(),
        RecorderConfig {
            policy: Policy::Fixed(s),
            ..RecorderConfig::default()
        },
    )
}
