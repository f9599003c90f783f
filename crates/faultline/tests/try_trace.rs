//! `faultline::try_trace!` through a session (the session's recorder is the probe): every
//! event answered "committed" is in the trace, and the answers add up to the summary.

use faultline::{tracepoint, try_trace, LossCause, Mode, Session, TraceOutcome};
use faultline_ctf::{Filter, Trace};

tracepoint!(TRY_EV, "trysess", "ev", { n: u64 });
tracepoint!(TRY_BIG, "trysess", "big", { body: &[u8] });

#[test]
fn session_answers_match_the_trace() {
    let tmp = faultline_testkit::TmpDir::new("test-try");
    let dir = tmp.join("trace");
    let s = Session::builder()
        .output_dir(&dir)
        .mode(Mode::Discard)
        .subbuf_size(4096)
        .num_subbuf(2)
        .events("trysess:*")
        .verbose(false)
        .start()
        .unwrap();
    let (mut committed, mut lost_full) = (0u64, 0u64);
    for n in 0..2000u64 {
        match try_trace!(TRY_EV, n) {
            TraceOutcome::Committed { .. } => committed += 1,
            // The consumer may fall behind this tight loop on a small buffer.
            TraceOutcome::Lost(LossCause::Full) => lost_full += 1,
            other => panic!("event {n}: {other:?}"),
        }
    }
    let big = vec![0u8; 8192];
    assert_eq!(
        try_trace!(TRY_BIG, &big),
        TraceOutcome::Lost(LossCause::TooBig)
    );
    let sum = s.stop().unwrap();
    assert_eq!(committed + lost_full, 2000);
    assert_eq!(sum.events_written, committed);
    assert_eq!(sum.lost_full, lost_full);
    assert_eq!(sum.lost_too_big, 1);
    let trace = Trace::open(&dir).unwrap();
    assert_eq!(trace.events(&Filter::default()).count() as u64, committed);
    // After the session: nothing is recording, the tracepoint answers disabled.
    assert_eq!(try_trace!(TRY_EV, 0), TraceOutcome::Disabled);
}
