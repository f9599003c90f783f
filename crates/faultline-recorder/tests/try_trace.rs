//! `try_trace!` with the recorder as the probe: what it answers (committed, lost with the
//! right cause, disabled, delivered to a non-recording probe) matches what reached the
//! buffer and what the recorder and the buffer counted.
//!
//! Each test uses its own tracepoints (the registry is process-wide, tests run in parallel).

mod common;

use common::{channel, recorder};
use faultline_recorder::{attach, Strategy};
use faultline_ringbuf::{records, Channel, Consumer};
use faultline_tracepoints::{
    enable, register_probe, tracepoint, try_trace, unregister, CounterProbe, LossCause, ProbeKind,
    TraceOutcome,
};

tracepoint!(COMMITTED, "trytest", "committed", { seq: u64 });
tracepoint!(FULL, "trytest", "full", { seq: u64 });
tracepoint!(TOO_BIG, "trytest", "too_big", { body: &[u8] });
tracepoint!(DISABLED, "trytest", "disabled", { seq: u64 });
tracepoint!(COUNTED, "trytest", "counted", { seq: u64 });

/// Flush and count the records of event id `id` in the channel.
fn delivered(ch: &Channel, id: u32) -> u64 {
    let errs = ch.flush_all(false);
    assert!(errs.is_empty(), "{errs:?}");
    let c = Consumer::new(ch);
    let mut buf = Vec::new();
    let mut n = 0;
    for cpu in c.active_cpus() {
        while let Some(p) = c.next_packet(cpu, &mut buf).unwrap() {
            n += records(&buf, p.content_len)
                .filter(|r| r.as_ref().unwrap().id == id)
                .count() as u64;
        }
    }
    n
}

#[test]
fn committed_events_say_so_and_are_in_the_buffer() {
    for s in Strategy::ALL {
        let ch = channel(64 * 1024, 4);
        let rec = recorder(&ch, s);
        let h = attach(&rec, "trytest:committed").unwrap();
        assert_eq!(enable("trytest:committed"), 1);
        let mut local = 0u64;
        for i in 0..100u64 {
            match try_trace!(COMMITTED, i) {
                TraceOutcome::Committed { remote } => local += u64::from(!remote),
                other => panic!("{s}: event {i}: {other:?}"),
            }
        }
        faultline_tracepoints::disable("trytest:committed");
        unregister(h);
        assert_eq!(delivered(&ch, COMMITTED.id()), 100, "{s}");
        let st = rec.stats();
        assert_eq!(st.recorded, 100, "{s}");
        assert_eq!(100 - local, st.remote_commits, "{s}: REMOTE commits");
    }
}

#[test]
fn full_buffer_in_discard_mode_answers_lost_full() {
    // No consumer: once every sub-buffer of a CPU is full, discard mode loses new events.
    let ch = channel(4096, 2);
    let rec = recorder(&ch, Strategy::ReserveCopyCommit);
    let h = attach(&rec, "trytest:full").unwrap();
    assert_eq!(enable("trytest:full"), 1);
    let (mut committed, mut lost) = (0u64, 0u64);
    let mut first_loss = None;
    // Pinned: one CPU's buffer fills for sure (4 KiB x 2 holds a few hundred of these).
    let cpu = faultline_rseq::allowed_cpus()[0];
    let _ = faultline_rseq::pin_to_cpu(cpu);
    for i in 0..20_000u64 {
        match try_trace!(FULL, i) {
            TraceOutcome::Committed { .. } => committed += 1,
            TraceOutcome::Lost(c) => {
                assert_eq!(c, LossCause::Full, "event {i}");
                first_loss.get_or_insert(i);
                lost += 1;
            }
            other => panic!("event {i}: {other:?}"),
        }
    }
    faultline_tracepoints::disable("trytest:full");
    unregister(h);
    let first_loss = first_loss.expect("a full buffer must lose events");
    assert!(
        first_loss > 0 && committed >= first_loss,
        "{first_loss} {committed}"
    );
    assert_eq!(committed + lost, 20_000);
    // What the caller was told is what the recorder and the buffer counted...
    let st = rec.stats();
    assert_eq!(st.lost_full, lost);
    assert_eq!(st.recorded, committed);
    let buf_lost: u64 = (0..ch.num_cpus())
        .filter_map(|c| ch.cpu_stats(c))
        .map(|s| s.lost_full)
        .sum();
    assert_eq!(buf_lost, lost);
    // ... and every event answered "committed" is in the buffer.
    assert_eq!(delivered(&ch, FULL.id()), committed);
}

#[test]
fn too_big_events_answer_lost_too_big() {
    let ch = channel(4096, 2);
    let rec = recorder(&ch, Strategy::Bounce);
    let h = attach(&rec, "trytest:too_big").unwrap();
    assert_eq!(enable("trytest:too_big"), 1);
    let big = vec![7u8; 8192];
    let small = [1u8; 16];
    assert_eq!(
        try_trace!(TOO_BIG, &big),
        TraceOutcome::Lost(LossCause::TooBig)
    );
    assert!(try_trace!(TOO_BIG, &small).is_committed());
    faultline_tracepoints::disable("trytest:too_big");
    unregister(h);
    assert_eq!(rec.stats().lost_too_big, 1);
    assert_eq!(delivered(&ch, TOO_BIG.id()), 1);
}

#[test]
fn disabled_tracepoint_answers_disabled_without_evaluating_arguments() {
    let ch = channel(4096, 2);
    let rec = recorder(&ch, Strategy::ReserveCopyCommit);
    // A probe is registered but the tracepoint is not enabled.
    let h = attach(&rec, "trytest:disabled").unwrap();
    let mut evaluated = 0;
    let mut arg = || {
        evaluated += 1;
        5u64
    };
    let out = try_trace!(DISABLED, arg());
    assert_eq!(out, TraceOutcome::Disabled);
    assert_eq!(out.lost(), None);
    assert!(!out.is_committed());
    assert_eq!(
        evaluated, 0,
        "arguments of a disabled tracepoint were evaluated"
    );
    unregister(h);
    assert_eq!(rec.stats().recorded, 0);
    assert_eq!(delivered(&ch, DISABLED.id()), 0);
}

#[test]
fn non_recording_probe_answers_delivered_and_a_recorder_next_to_it_wins() {
    let counter = CounterProbe::new();
    let hc = register_probe("trytest:counted", counter.clone(), ProbeKind::NonFaultable).unwrap();
    assert_eq!(enable("trytest:counted"), 1);
    assert_eq!(try_trace!(COUNTED, 1), TraceOutcome::Delivered);
    let ch = channel(64 * 1024, 2);
    let rec = recorder(&ch, Strategy::ReserveCopyCommit);
    let hr = attach(&rec, "trytest:counted").unwrap();
    assert!(try_trace!(COUNTED, 2).is_committed());
    faultline_tracepoints::disable("trytest:counted");
    unregister(hr);
    unregister(hc);
    assert_eq!(counter.count(&COUNTED), 2);
    assert_eq!(delivered(&ch, COUNTED.id()), 1);
}
