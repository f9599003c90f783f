//! Tracepoints registered at run time: ids, enabling rules, listeners before activation,
//! probes that follow later registrations, duplicates refused.

use std::sync::{Arc, Mutex};

use faultline_schema::{EventDesc, FieldDesc, FieldType};
use faultline_tracepoints::{
    all_tracepoints, disable, enable, find, register, register_probe_following, set_events,
    subscribe, tracepoints, unregister, unsubscribe, EncodedPayload, Payload, Probe, ProbeKind,
    Tracepoint, TracepointError,
};

fn desc(provider: &'static str, name: &'static str) -> &'static EventDesc {
    static F: [FieldDesc; 1] = [FieldDesc {
        name: "v",
        ty: FieldType::U64,
    }];
    Box::leak(Box::new(EventDesc {
        provider,
        name,
        fields: &F,
    }))
}

#[derive(Default)]
struct Rec(Mutex<Vec<(u32, Vec<u8>)>>);
impl Probe for Rec {
    fn call(&self, tp: &'static Tracepoint, p: &dyn Payload) {
        let mut b = vec![0u8; p.size()];
        p.write(&mut b);
        self.0.lock().unwrap().push((tp.id(), b));
    }
}

// One test: the registry is process-wide and the steps depend on each other.
#[test]
fn run_time_tracepoints() {
    let n_static = tracepoints().len();
    set_events("dyn:*,-dyn:off");
    let rec = Arc::new(Rec::default());
    let h = register_probe_following("dyn:*", rec.clone(), ProbeKind::Faultable);

    // The listener sees the class while it cannot be active yet.
    let seen: Arc<Mutex<Vec<(u32, String, bool)>>> = Arc::default();
    let s2 = seen.clone();
    let (before, lh) = subscribe(Arc::new(move |tp: &'static Tracepoint| {
        s2.lock()
            .unwrap()
            .push((tp.id(), tp.full_name(), tp.is_active()));
    }));
    assert_eq!(before.len(), n_static);

    let a = register(desc("dyn", "a")).unwrap();
    assert_eq!(a.id() as usize, n_static);
    assert!(
        a.is_active(),
        "enabled by the spec and the following probe attached"
    );
    let off = register(desc("dyn", "off")).unwrap();
    assert_eq!(off.id() as usize, n_static + 1);
    assert!(!off.is_active(), "excluded by the spec");
    assert_eq!(
        register(desc("dyn", "a")).err(),
        Some(TracepointError::Duplicate("dyn:a".into()))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (a.id(), "dyn:a".to_string(), false),
            (off.id(), "dyn:off".to_string(), false)
        ]
    );
    assert_eq!(find("dyn:off").map(|t| t.id()), Some(off.id()));
    assert_eq!(all_tracepoints().len(), n_static + 2);

    // enable/disable apply now and to later registrations.
    enable("dyn:off");
    assert!(off.is_active());
    disable("dyn:late*");
    let late = register(desc("dyn", "late1")).unwrap();
    assert!(!late.is_active());
    enable("dyn:late*");
    assert!(late.is_active());

    a.fire(&EncodedPayload(&7u64.to_le_bytes()));
    assert_eq!(
        rec.0.lock().unwrap().as_slice(),
        &[(a.id(), 7u64.to_le_bytes().to_vec())]
    );

    unsubscribe(lh);
    let other = register(desc("dyn", "after_unsubscribe")).unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "late1 seen, not the last one"
    );
    assert!(other.is_active());
    unregister(h);
    assert!(!a.is_active() && !other.is_active());
    let none = register(desc("dyn", "after_unregister")).unwrap();
    assert!(!none.is_active(), "the probe no longer follows");
    none.fire(&EncodedPayload(&[0; 8]));
    assert_eq!(rec.0.lock().unwrap().len(), 1);
}

#[test]
fn encoded_payload_never_writes_a_cut_encoding() {
    let p = EncodedPayload(&[1, 2, 3]);
    let mut d = [9u8; 5];
    let o = p.write(&mut d);
    assert_eq!((o.written, o.truncated, d), (3, false, [1, 2, 3, 0, 0]));
    let mut d = [9u8; 2];
    let o = p.write(&mut d);
    assert_eq!((o.written, o.truncated, d), (0, true, [0, 0]));
}
