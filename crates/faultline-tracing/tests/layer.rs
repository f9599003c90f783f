//! The layer without a session: a probe following every run-time tracepoint captures the
//! encoded payloads, decoded with the class's own description. Typed fields, conversions of
//! later hits, missing values, name sanitising, span creation with explicit and contextual
//! parents, enter/exit/close with the thread id, classes created once per callsite,
//! `follows_from`, and the same through the standalone subscriber.

use faultline_schema::{decode, Value};
use faultline_tracepoints::{register_probe_following, Payload, Probe, ProbeKind, Tracepoint};
use std::sync::{Arc, Mutex};
use tracing_subscriber::prelude::*;

type Captured = Vec<(String, Vec<(String, Value)>)>;

#[derive(Default)]
struct Capture(Mutex<Captured>);

impl Probe for Capture {
    fn call(&self, tp: &'static Tracepoint, p: &dyn Payload) {
        let mut b = vec![0u8; p.size()];
        let o = p.write(&mut b);
        assert_eq!(o.written, b.len());
        let d = tp.desc();
        let vals = decode(d.fields, &b).expect("payload decodes with its class");
        let named = d
            .fields
            .iter()
            .map(|f| f.name.to_string())
            .zip(vals)
            .collect();
        self.0.lock().unwrap().push((tp.full_name(), named));
    }
}

fn s(v: &str) -> Value {
    Value::Str(v.as_bytes().to_vec())
}

fn fields(f: &[(String, Value)]) -> Vec<(&str, &Value)> {
    f.iter().map(|(n, v)| (n.as_str(), v)).collect()
}

// One test: the tracepoint registry and the layer's class table are process-wide.
#[test]
fn events_and_spans_are_encoded_with_their_classes() {
    faultline_tracepoints::set_events("*");
    let cap = Arc::new(Capture::default());
    let _h = register_probe_following("*", cap.clone(), ProbeKind::Faultable);
    let subscriber = tracing_subscriber::registry().with(faultline_tracing::layer());
    let before = faultline_tracing::stats();
    let tid = unsafe_free_tid();

    tracing::subscriber::with_default(subscriber, || {
        // The same callsite with values of different types on each hit.
        let values: [&dyn tracing::Value; 4] = [&5u64, &"text", &-3i64, &2.5f64];
        for v in values {
            tracing::warn!(target: "my_app::net", x = v, ok = true, "m");
        }
        let big = 1u128 << 100;
        tracing::event!(
            target: "my_app::net",
            tracing::Level::INFO,
            http.status = 200u64,
            r#type = "t",
            ratio = 0.5f64,
            big,
            err = %"shown",
            "sanitised"
        );
        let outer = tracing::info_span!(target: "my_app", "outer", k = 7i64);
        let outer_id = outer.id().expect("span id").into_u64();
        {
            let _e = outer.enter();
            let inner =
                tracing::debug_span!(target: "my_app", "inner", span = "user field named span");
            let _i = inner.enter();
            tracing::error!(target: "my_app", "inside");
            assert_ne!(inner.id().expect("id").into_u64(), outer_id);
        }
        let explicit = tracing::info_span!(target: "my_app", parent: &outer, "explicit");
        drop(explicit);
        drop(outer);
    });

    let got = cap.0.lock().unwrap().clone();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    let warn = |i: usize| fields(&got[i].1);
    assert!(
        names[0].starts_with("my_app.net:WARN.event_crates/faultline-tracing/tests/layer.rs_"),
        "{names:?}"
    );
    assert!(
        names[..4].iter().all(|n| *n == names[0]),
        "one class per callsite: {names:?}"
    );
    // First hit: u64. Then a string (cannot be converted: 0), an i64 (converted), a float.
    let xs: Vec<&Value> = (0..4).map(|i| warn(i)[1].1).collect();
    assert_eq!(xs, [&Value::U(5), &Value::U(0), &Value::U(0), &Value::U(2)]);
    assert_eq!(
        warn(0),
        [
            ("message", &s("m")),
            ("x", &Value::U(5)),
            ("ok", &Value::Bool(true))
        ]
    );
    let after = faultline_tracing::stats();
    assert_eq!(after.type_mismatches - before.type_mismatches, 1);

    let info = &got[4];
    assert!(info.0.starts_with("my_app.net:INFO.event_"), "{}", info.0);
    assert_eq!(
        fields(&info.1),
        [
            ("message", &s("sanitised")),
            ("http_status", &Value::U(200)),
            ("type", &s("t")),
            ("ratio", &Value::F(0.5)),
            ("big", &s(&(1u128 << 100).to_string())),
            ("err", &s("shown")),
        ]
    );

    let rest: Vec<(&str, Vec<(&str, &Value)>)> = got[5..]
        .iter()
        .map(|(n, f)| (n.as_str(), fields(f)))
        .collect();
    let id_of = |v: &Value| match v {
        Value::U(x) => *x,
        v => panic!("{v:?}"),
    };
    // outer created (root), entered; inner created (child of outer), entered; the error
    // event; exits and closes; explicit created with parent outer; closes.
    assert_eq!(rest[0].0, "my_app:INFO.span.outer");
    let outer = id_of(rest[0].1[0].1);
    assert_eq!(
        &rest[0].1[1..],
        [("parent", &Value::U(0)), ("k", &Value::I(7))]
    );
    assert_eq!(
        rest[1],
        (
            "tracing:span_enter",
            vec![("span", &Value::U(outer)), ("tid", &Value::U(tid))]
        )
    );
    assert_eq!(rest[2].0, "my_app:DEBUG.span.inner");
    let inner = id_of(rest[2].1[0].1);
    assert_eq!(
        &rest[2].1[1..],
        [
            ("parent", &Value::U(outer)),
            ("span_2", &s("user field named span"))
        ]
    );
    assert_eq!(
        rest[3],
        (
            "tracing:span_enter",
            vec![("span", &Value::U(inner)), ("tid", &Value::U(tid))]
        )
    );
    assert!(rest[4].0.starts_with("my_app:ERROR.event_"));
    assert_eq!(rest[4].1, [("message", &s("inside"))]);
    assert_eq!(
        rest[5],
        (
            "tracing:span_exit",
            vec![("span", &Value::U(inner)), ("tid", &Value::U(tid))]
        )
    );
    assert_eq!(
        rest[6],
        ("tracing:span_close", vec![("span", &Value::U(inner))])
    );
    assert_eq!(
        rest[7],
        (
            "tracing:span_exit",
            vec![("span", &Value::U(outer)), ("tid", &Value::U(tid))]
        )
    );
    assert_eq!(rest[8].0, "my_app:INFO.span.explicit");
    assert_eq!(rest[8].1[1], ("parent", &Value::U(outer)));
    let explicit = id_of(rest[8].1[0].1);
    assert_eq!(
        rest[9],
        ("tracing:span_close", vec![("span", &Value::U(explicit))])
    );
    assert_eq!(
        rest[10],
        ("tracing:span_close", vec![("span", &Value::U(outer))])
    );
    assert_eq!(rest.len(), 11, "{rest:?}");
    // warn, info, error events and outer, inner, explicit spans.
    assert_eq!(after.classes - before.classes, 6);
    assert_eq!(after.dropped_callsites, 0);

    // Values recorded after creation: one `span_record` class per span callsite, typed by its
    // first record, with the `recorded` mask of the fields each record carries.
    let start = cap.0.lock().unwrap().len();
    let subscriber = tracing_subscriber::registry().with(faultline_tracing::layer());
    tracing::subscriber::with_default(subscriber, || {
        let sp = tracing::info_span!(
            target: "rec",
            "req",
            id = 9u64,
            status = tracing::field::Empty,
            note = tracing::field::Empty
        );
        sp.record("status", 200u64);
        sp.record("note", "slow");
        sp.record("status", 404u64);
        drop(sp);
    });
    let got = cap.0.lock().unwrap()[start..].to_vec();
    let rest: Vec<(&str, Vec<(&str, &Value)>)> =
        got.iter().map(|(n, f)| (n.as_str(), fields(f))).collect();
    assert_eq!(rest.len(), 5, "{rest:?}");
    assert_eq!(rest[0].0, "rec:INFO.span.req");
    let id = id_of(rest[0].1[0].1);
    assert_eq!(
        &rest[0].1[1..],
        [
            ("parent", &Value::U(0)),
            ("id", &Value::U(9)),
            ("status", &s("")),
            ("note", &s(""))
        ]
    );
    // Owned values to compare with.
    let owned = |r: (&str, Vec<(&str, &Value)>)| {
        (
            r.0.to_string(),
            r.1.into_iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect::<Vec<_>>(),
        )
    };
    // The class's types come from its first record (status: u64); `id` and `note`, not in
    // that record, are strings.
    let want = [(200u64, "", 0b010u64), (0, "slow", 0b100), (404, "", 0b010)];
    for (i, (status, note, mask)) in want.into_iter().enumerate() {
        let st = Value::U(status);
        let nt = s(note);
        let mk = Value::U(mask);
        let idv = Value::U(id);
        let expect = owned((
            "rec:INFO.span_record.req",
            vec![
                ("span", &idv),
                ("recorded", &mk),
                ("id", &s("")),
                ("status", &st),
                ("note", &nt),
            ],
        ));
        assert_eq!(got[1 + i], expect, "record {i}");
    }
    assert_eq!(
        rest[4],
        ("tracing:span_close", vec![("span", &Value::U(id))])
    );

    fixed_size_classes(&cap);
    follows_from_and_standalone(&cap, tid);
}

/// A class without string fields is written straight into the record at its constant size:
/// every kind of value, in every slot, converted or counted and written as the default; a
/// missing value is the default too.
fn fixed_size_classes(cap: &Capture) {
    #[derive(Debug)]
    struct Dbg;
    let start = cap.0.lock().unwrap().len();
    let before = faultline_tracing::stats();
    let subscriber = tracing_subscriber::registry().with(faultline_tracing::layer());
    tracing::subscriber::with_default(subscriber, || {
        let hit = |a: &dyn tracing::Value, b: &dyn tracing::Value, c: &dyn tracing::Value| {
            tracing::info!(target: "fixed", a, b, c);
        };
        // First hit: i64, bool, f64.
        hit(&-7i64, &true, &1.5f64);
        // Numbers across the numeric slots, a number into the bool slot, a bool into a number.
        hit(&9u64, &0u64, &3i64);
        hit(&2.9f64, &2.0f64, &true);
        // Values that cannot be converted: a string, a Debug value, a Display value.
        hit(
            &"text",
            &tracing::field::debug(Dbg),
            &tracing::field::display("x"),
        );
        // Out of range: clamped.
        hit(&u64::MAX, &false, &u64::MAX);
        // Missing values.
        let empty = tracing::field::Empty;
        hit(&empty, &empty, &empty);
    });
    let got = since(cap, start);
    let rest = named(&got);
    let row = |a: Value, b: bool, c: f64| vec![("a", a), ("b", Value::Bool(b)), ("c", Value::F(c))];
    let want = [
        row(Value::I(-7), true, 1.5),
        row(Value::I(9), false, 3.0),
        row(Value::I(2), true, 1.0),
        row(Value::I(0), false, 0.0),
        row(Value::I(i64::MAX), false, u64::MAX as f64),
        row(Value::I(0), false, 0.0),
    ];
    assert_eq!(rest.len(), want.len(), "{rest:?}");
    for (i, (r, w)) in rest.iter().zip(&want).enumerate() {
        assert!(r.0.starts_with("fixed:INFO.event_"), "{}", r.0);
        let w: Vec<(&str, &Value)> = w.iter().map(|(n, v)| (*n, v)).collect();
        assert_eq!(r.1, w, "hit {i}");
    }
    let after = faultline_tracing::stats();
    assert_eq!(after.type_mismatches - before.type_mismatches, 3);
}

/// What was captured from index `start` on, owned.
fn since(cap: &Capture, start: usize) -> Captured {
    cap.0.lock().unwrap()[start..].to_vec()
}

fn named(got: &Captured) -> Vec<(&str, Vec<(&str, &Value)>)> {
    got.iter().map(|(n, f)| (n.as_str(), fields(f))).collect()
}

/// `Span::follows_from` through the layer, then spans, events, clones, records and
/// follows_from through the standalone subscriber (its own ids and span stacks).
fn follows_from_and_standalone(cap: &Capture, tid: u64) {
    let start = cap.0.lock().unwrap().len();
    let subscriber = tracing_subscriber::registry().with(faultline_tracing::layer());
    let (a, b) = tracing::subscriber::with_default(subscriber, || {
        let a = tracing::info_span!(target: "ff", "a");
        let b = tracing::info_span!(target: "ff", "b");
        b.follows_from(&a);
        (a.id().unwrap().into_u64(), b.id().unwrap().into_u64())
    });
    let got = since(cap, start);
    let rest = named(&got);
    assert_eq!(rest.len(), 5, "{rest:?}");
    assert_eq!((rest[0].0, rest[1].0), ("ff:INFO.span.a", "ff:INFO.span.b"));
    assert_eq!(
        rest[2],
        (
            "tracing:span_follows_from",
            vec![("span", &Value::U(b)), ("follows", &Value::U(a))]
        )
    );
    assert_eq!(
        rest[3],
        ("tracing:span_close", vec![("span", &Value::U(b))])
    );
    assert_eq!(
        rest[4],
        ("tracing:span_close", vec![("span", &Value::U(a))])
    );

    let start = cap.0.lock().unwrap().len();
    let (o, i, later) = tracing::subscriber::with_default(faultline_tracing::subscriber(), || {
        let outer = tracing::info_span!(target: "sa", "outer", late = tracing::field::Empty);
        let o = outer.id().unwrap().into_u64();
        let i;
        {
            let _e = outer.enter();
            let inner = tracing::info_span!(target: "sa", "inner");
            i = inner.id().unwrap().into_u64();
            inner.follows_from(&outer);
            let cloned = inner.clone();
            drop(inner); // a clone is alive: not closed
            tracing::info!(target: "sa", v = 1u64);
            drop(cloned);
        }
        outer.record("late", 5u64);
        drop(outer);
        // Ids are never reused.
        let later = tracing::info_span!(target: "sa", "later");
        (o, i, later.id().unwrap().into_u64())
    });
    assert!(o > 0 && i > o && later > i, "{o} {i} {later}");
    let got = since(cap, start);
    let rest = named(&got);
    assert_eq!(rest.len(), 11, "{rest:?}");
    assert_eq!(
        rest[0],
        (
            "sa:INFO.span.outer",
            vec![
                ("span", &Value::U(o)),
                ("parent", &Value::U(0)),
                ("late", &s(""))
            ]
        )
    );
    assert_eq!(
        rest[1],
        (
            "tracing:span_enter",
            vec![("span", &Value::U(o)), ("tid", &Value::U(tid))]
        )
    );
    assert_eq!(
        rest[2],
        (
            "sa:INFO.span.inner",
            vec![("span", &Value::U(i)), ("parent", &Value::U(o))]
        )
    );
    assert_eq!(
        rest[3],
        (
            "tracing:span_follows_from",
            vec![("span", &Value::U(i)), ("follows", &Value::U(o))]
        )
    );
    assert!(rest[4].0.starts_with("sa:INFO.event_"), "{}", rest[4].0);
    assert_eq!(rest[4].1, [("v", &Value::U(1))]);
    assert_eq!(
        rest[5],
        ("tracing:span_close", vec![("span", &Value::U(i))])
    );
    assert_eq!(
        rest[6],
        (
            "tracing:span_exit",
            vec![("span", &Value::U(o)), ("tid", &Value::U(tid))]
        )
    );
    assert_eq!(
        rest[7],
        (
            "sa:INFO.span_record.outer",
            vec![
                ("span", &Value::U(o)),
                ("recorded", &Value::U(1)),
                ("late", &Value::U(5))
            ]
        )
    );
    assert_eq!(
        rest[8],
        ("tracing:span_close", vec![("span", &Value::U(o))])
    );
    assert_eq!(rest[9].0, "sa:INFO.span.later");
    assert_eq!(
        rest[10],
        ("tracing:span_close", vec![("span", &Value::U(later))])
    );
}

/// The calling thread's kernel id, as the layer records it.
fn unsafe_free_tid() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("thread id")
}
