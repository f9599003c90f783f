//! Record [`tracing`](https://docs.rs/tracing) events and spans into faultline traces.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let session = faultline::Session::start().expect("faultline session");
//! tracing_subscriber::registry().with(faultline_tracing::layer()).init();
//! tracing::info!(answer = 42, "hello");
//! drop(session); // stops the session: the trace is complete (CTF, readable by babeltrace2)
//! ```
//!
//! [`layer()`] is a [`tracing_subscriber::Layer`]: it composes with other layers (a `fmt`
//! layer on the terminal, …) and takes tracing's filters as a per-layer filter
//! (`faultline_tracing::layer().with_filter(EnvFilter::from_default_env())`, a `LevelFilter`,
//! `Targets`). faultline's own event globs apply as well (`FAULTLINE_EVENTS`,
//! `SessionBuilder::events`, `faultline record -e`), on the names below.
//!
//! # Event classes
//! Every callsite becomes one faultline event class, registered at run time with
//! `faultline_tracepoints::register` on its first hit (the trace's metadata grows: embedded
//! sessions and `faultline record` alike declare the class before its first record):
//!
//! | what | class name | fields |
//! |---|---|---|
//! | `info!(…)` etc. | `<target>:<LEVEL>.<callsite name>` | the event's fields, in declaration order |
//! | span creation | `<target>:<LEVEL>.span.<span name>` | `span` (id), `parent` (id, 0 = root), the span's fields |
//! | values recorded later (`Span::record`) | `<target>:<LEVEL>.span_record.<span name>` | `span` (id), `recorded` (bit `i` set: field `i` carries a value), the span's fields |
//! | span entered | `tracing:span_enter` | `span`, `tid` (the thread's kernel id) |
//! | span exited | `tracing:span_exit` | `span`, `tid` |
//! | span closed | `tracing:span_close` | `span` |
//! | `Span::follows_from` | `tracing:span_follows_from` | `span`, `follows` (the span it follows from) |
//!
//! e.g. `info!` at line 12 of `src/main.rs` in crate `myapp` is `myapp:INFO.event_src/main.rs_12`,
//! and `#[instrument] fn handle` in module `myapp::server` creates
//! `myapp.server:INFO.span.handle`. The level is the name's first part, so
//! `FAULTLINE_EVENTS='*:ERROR.*,*:WARN.*'` keeps errors and warnings only. Names are made
//! acceptable to CTF: `::` in a target becomes `.`; spaces, `:`, quotes, backslashes and
//! non-ASCII become `_`; a name already taken gets `#2`, `#3`, … Field names become
//! identifiers (`a.b` → `a_b`, no leading `_`, no `__`), made unique with `_2`, `_3`, …
//!
//! Field types come from the callsite's **first hit**: `i64` → `i64`, `u64` → `u64`, `f64` →
//! `f64`, `bool` → `bool`, `&str`, `Debug` and `Display` values (including the `message`),
//! errors and 128-bit integers → `string` (at most [`MAX_STRING`] bytes, cut at a NUL). A field
//! without a value on the first hit is a `string`. Later hits are converted to the declared
//! type (numbers between each other, numbers into strings as decimal); a value that cannot be
//! converted (a string into a number slot) is written as 0 and counted
//! ([`Stats::type_mismatches`]); a missing value is 0, `false` or empty.
//!
//! # Hot path
//! After a callsite's first hit an event costs: one lookup in a lock-free open-addressing table
//! keyed by the callsite's `Metadata` address (per-callsite slot; no lock, no allocation), one
//! relaxed load (is the class active?), one visit of the field values, and the recording
//! fast path of `trace!` when faultline's recorder is the class's only probe (a session,
//! embedded or under `faultline record`; else the probes one by one). A class whose fields
//! are all numbers and bools has a constant payload size: the record is reserved first and
//! the values are written straight into it (no buffer, no copy); a class with string fields
//! is encoded into a reused per-thread buffer first (no allocation once it has grown to the
//! largest event) and copied into the record (`encode` module docs: why). Span edges
//! (enter, exit, close, follows-from) are constant-size `trace!` events. Class creation (first
//! hit) takes a lock, allocates and leaks the class description, registers the tracepoint
//! and may write to the schema pipe. At most [`MAX_CALLSITES`] callsites get a class; the events of any
//! further ones are dropped and counted ([`Stats::dropped_callsites`]).
//!
//! Span enter/exit record the kernel thread id, so per-thread span stacks can be rebuilt from
//! the trace (tokio tasks move between threads). `span.follows_from(&other)` records
//! `tracing:span_follows_from` with both ids (a causal link that is not a parent).
//!
//! Only the layer is offered: a standalone `Subscriber` without the `Registry` was built and
//! measured next to it by `faultline bench` (rows `… -> faultline-tracing subscriber`) and was
//! not measurably faster per event (the `Registry` adds a no-op call to tracing's own
//! dispatch), while it would lose composition with other layers and `EnvFilter`.
//!
//! # Values recorded after creation
//! `span.record("status", 200)` (typically on a field declared `tracing::field::Empty`) writes
//! one `span_record` event: the span's id, the `recorded` mask and all the span's fields in
//! the creation class's order and names, those not carried by this record at their missing
//! value (0, `false`, empty) with their bit clear in `recorded` (bit `i` stands for the span's
//! `i`-th field in declaration order, the first field after `recorded` being bit 0; fields
//! from the 65th on have no bit). The class is
//! the span callsite's second class, created on its first `record` like an event class: its
//! field types come from that first record (a field it does not carry is a `string`), later
//! records are converted as for events. The span's current value of a field is its last
//! `span_record` value with the bit set, else its creation value. Spans are looked up in the
//! subscriber's span registry (`LookupSpan`, e.g. `tracing_subscriber::registry()`).

mod encode;
mod subscriber;
#[doc(hidden)]
pub use subscriber::{subscriber, FaultlineSubscriber};

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use faultline_schema::{EventDesc, FieldDesc, FieldType};
use faultline_tracepoints::{Tracepoint, TracepointError};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Longest string field recorded (bytes; longer values are cut).
pub const MAX_STRING: usize = 4096;
/// Most callsites that get an event class.
pub const MAX_CALLSITES: usize = TABLE_SIZE / 4 * 3;

const TABLE_SIZE: usize = 1 << 14;

/// The `tracing` layer that records into faultline (module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultlineLayer {
    _private: (),
}

/// The layer: `tracing_subscriber::registry().with(faultline_tracing::layer())`.
pub fn layer() -> FaultlineLayer {
    FaultlineLayer::default()
}

/// Counters of the layer (process-wide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Event classes created (callsites seen; a span callsite whose spans get values with
    /// `Span::record` has a second class, `span_record`).
    pub classes: u64,
    /// Events of callsites over [`MAX_CALLSITES`] or whose class could not be registered.
    pub dropped_callsites: u64,
    /// Values that could not be converted to their field's declared type (written as 0).
    pub type_mismatches: u64,
}

static CLASSES: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// The layer's counters so far.
pub fn stats() -> Stats {
    Stats {
        classes: CLASSES.load(Ordering::Relaxed),
        dropped_callsites: DROPPED.load(Ordering::Relaxed),
        type_mismatches: MISMATCHES.load(Ordering::Relaxed),
    }
}

/// One callsite's class: its tracepoint and the declared type of each field, indexed by the
/// field's index in the callsite's `FieldSet`. Leaked: lives as long as the process.
struct Class {
    tp: Option<&'static Tracepoint>,
    types: Box<[FieldType]>,
    /// The payload size when it is the same for every hit (no string field; prefix included).
    fixed: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// The per-callsite table.
//
// Open addressing, linear probing, keys are `Metadata` addresses (never 0). Written only under
// `CREATE` (one writer); read lock-free. A slot is filled by storing `class` first, then `key`
// with Release; a reader loads `key` with Acquire (pairs with that Release store) and then
// `class`, so a reader that sees the key sees the class. Slots are never removed or changed.
// ---------------------------------------------------------------------------------------------

struct Slot {
    key: AtomicUsize,
    class: AtomicPtr<Class>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    key: AtomicUsize::new(0),
    class: AtomicPtr::new(std::ptr::null_mut()),
};

static TABLE: [Slot; TABLE_SIZE] = [EMPTY_SLOT; TABLE_SIZE];
/// Serialises class creation and table inserts.
static CREATE: Mutex<usize> = Mutex::new(0);

#[inline(always)]
fn home(key: usize) -> usize {
    // Fibonacci hashing of the address (metadata statics are at least 8-byte aligned).
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - TABLE_SIZE.trailing_zeros()))
        & (TABLE_SIZE - 1)
}

#[inline(always)]
fn lookup(key: usize) -> Option<&'static Class> {
    let mut i = home(key);
    for _ in 0..TABLE_SIZE {
        let s = &TABLE[i];
        // Acquire: pairs with the Release store of `key` in `insert`.
        let k = s.key.load(Ordering::Acquire);
        if k == key {
            let c = s.class.load(Ordering::Relaxed);
            // SAFETY: `class` was set to a leaked `Box<Class>` before `key` was published
            // and is never changed or freed.
            return unsafe { c.as_ref() };
        }
        if k == 0 {
            return None;
        }
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    None
}

/// Insert under `CREATE` (the caller holds it; `count` is the number of classes in the table).
fn insert(count: &mut usize, key: usize, class: &'static Class) -> bool {
    if *count >= MAX_CALLSITES {
        return false;
    }
    let mut i = home(key);
    loop {
        let s = &TABLE[i];
        if s.key.load(Ordering::Relaxed) == 0 {
            s.class
                .store(class as *const Class as *mut Class, Ordering::Relaxed);
            // Release: pairs with the Acquire load in `lookup`.
            s.key.store(key, Ordering::Release);
            *count += 1;
            return true;
        }
        i = (i + 1) & (TABLE_SIZE - 1);
    }
}

/// What a class records: a callsite's events, a span callsite's creations, or the values
/// recorded on its spans later (`Span::record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Span,
    SpanRecord,
}

/// The table key of a callsite's class of `kind`. `Metadata` is at least 8-byte aligned, so
/// the address + 1 of a span callsite (its `SpanRecord` class) is never another callsite's
/// address.
fn meta_key(m: &'static Metadata<'static>, kind: Kind) -> usize {
    m as *const Metadata<'static> as usize + (kind == Kind::SpanRecord) as usize
}

/// The class of a callsite, created on its first hit from the values `record` visits.
#[inline(always)]
fn class_of(
    meta: &'static Metadata<'static>,
    record: impl FnOnce(&mut dyn Visit),
    kind: Kind,
) -> Option<&'static Class> {
    let key = meta_key(meta, kind);
    match lookup(key) {
        Some(c) => Some(c),
        None => create(meta, record, kind),
    }
}

#[cold]
#[inline(never)]
fn create(
    meta: &'static Metadata<'static>,
    record: impl FnOnce(&mut dyn Visit),
    kind: Kind,
) -> Option<&'static Class> {
    let mut count = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let key = meta_key(meta, kind);
    if let Some(c) = lookup(key) {
        return Some(c);
    }
    if *count >= MAX_CALLSITES {
        return None;
    }
    // The types of this first hit.
    let n = meta.fields().len();
    let mut types = vec![FieldType::String; n];
    let mut tv = TypeVisitor { types: &mut types };
    record(&mut tv);
    let mut fields: Vec<FieldDesc> = Vec::with_capacity(n + 2);
    let mut used: Vec<String> = Vec::new();
    let prefix: &[&'static str] = match kind {
        Kind::Event => &[],
        Kind::Span => &["span", "parent"],
        Kind::SpanRecord => &["span", "recorded"],
    };
    {
        for &f in prefix {
            used.push(f.to_string());
            fields.push(FieldDesc {
                name: f,
                ty: FieldType::U64,
            });
        }
    }
    for (f, ty) in meta.fields().iter().zip(&types) {
        let name = unique(field_name(f.name()), &mut used, "_");
        fields.push(FieldDesc {
            name: leak(name),
            ty: *ty,
        });
    }
    let provider = leak(name_part(meta.target()));
    let base = format!(
        "{}.{}{}",
        meta.level(),
        match kind {
            Kind::Event => "",
            Kind::Span => "span.",
            Kind::SpanRecord => "span_record.",
        },
        name_part(meta.name())
    );
    let fields: &'static [FieldDesc] = Box::leak(fields.into_boxed_slice());
    let mut tp = None;
    for k in 1..=64u32 {
        let name = if k == 1 {
            base.clone()
        } else {
            format!("{base}#{k}")
        };
        let desc: &'static EventDesc = Box::leak(Box::new(EventDesc {
            provider,
            name: leak(name),
            fields,
        }));
        match faultline_tracepoints::register(desc) {
            Ok(t) => {
                tp = Some(t);
                break;
            }
            Err(TracepointError::Duplicate(_)) => continue,
            Err(TracepointError::TooMany) => break,
        }
    }
    let class: &'static Class = Box::leak(Box::new(Class {
        tp,
        fixed: encode::fixed_size(prefix.len(), &types),
        types: types.into_boxed_slice(),
    }));
    if !insert(&mut count, key, class) {
        return None;
    }
    CLASSES.fetch_add(1, Ordering::Relaxed);
    Some(class)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A provider or event-name part acceptable to the CTF metadata (module docs).
fn name_part(s: &str) -> String {
    let s = s.replace("::", ".");
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// A field name acceptable to the CTF metadata: `[A-Za-z][A-Za-z0-9_]*` without `__`.
fn field_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    if out.ends_with('_') {
        out.pop();
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'f');
        if out.len() > 1 && !out[1..].starts_with('_') {
            out.insert(1, '_');
        }
    }
    out
}

fn unique(name: String, used: &mut Vec<String>, sep: &str) -> String {
    let mut cand = name.clone();
    let mut k = 2;
    while used.contains(&cand) {
        cand = format!("{name}{sep}{k}");
        k += 1;
    }
    used.push(cand.clone());
    cand
}

struct TypeVisitor<'a> {
    types: &'a mut [FieldType],
}

impl TypeVisitor<'_> {
    fn set(&mut self, f: &Field, ty: FieldType) {
        if let Some(t) = self.types.get_mut(f.index()) {
            *t = ty;
        }
    }
}

impl Visit for TypeVisitor<'_> {
    fn record_i64(&mut self, f: &Field, _: i64) {
        self.set(f, FieldType::I64)
    }
    fn record_u64(&mut self, f: &Field, _: u64) {
        self.set(f, FieldType::U64)
    }
    fn record_f64(&mut self, f: &Field, _: f64) {
        self.set(f, FieldType::F64)
    }
    fn record_bool(&mut self, f: &Field, _: bool) {
        self.set(f, FieldType::Bool)
    }
    fn record_str(&mut self, f: &Field, _: &str) {
        self.set(f, FieldType::String)
    }
    fn record_debug(&mut self, f: &Field, _: &dyn std::fmt::Debug) {
        self.set(f, FieldType::String)
    }
}

thread_local! {
    /// This thread's kernel id (0 = not asked yet).
    static TID: Cell<u32> = const { Cell::new(0) };
}

fn tid() -> u32 {
    TID.try_with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::gettid() } as u32;
        t.set(v);
        v
    })
    .unwrap_or(0)
}

/// The classes of span edges, registered on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpanEdge {
    /// `tracing:span_enter` (`span`, `tid`).
    Enter = 0,
    /// `tracing:span_exit` (`span`, `tid`).
    Exit = 1,
    /// `tracing:span_close` (`span`).
    Close = 2,
    /// `tracing:span_follows_from` (`span`, `follows`).
    FollowsFrom = 3,
}

fn span_tp(which: SpanEdge) -> Option<&'static Tracepoint> {
    static TPS: [OnceLock<Option<&'static Tracepoint>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    static WITH_TID: [FieldDesc; 2] = [
        FieldDesc {
            name: "span",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "tid",
            ty: FieldType::U32,
        },
    ];
    static SPAN_ONLY: [FieldDesc; 1] = [FieldDesc {
        name: "span",
        ty: FieldType::U64,
    }];
    static FOLLOWS: [FieldDesc; 2] = [
        FieldDesc {
            name: "span",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "follows",
            ty: FieldType::U64,
        },
    ];
    static ENTER: EventDesc = EventDesc {
        provider: "tracing",
        name: "span_enter",
        fields: &WITH_TID,
    };
    static EXIT: EventDesc = EventDesc {
        provider: "tracing",
        name: "span_exit",
        fields: &WITH_TID,
    };
    static CLOSE: EventDesc = EventDesc {
        provider: "tracing",
        name: "span_close",
        fields: &SPAN_ONLY,
    };
    static FOLLOWS_FROM: EventDesc = EventDesc {
        provider: "tracing",
        name: "span_follows_from",
        fields: &FOLLOWS,
    };
    let desc: &'static EventDesc = [&ENTER, &EXIT, &CLOSE, &FOLLOWS_FROM][which as usize];
    *TPS[which as usize].get_or_init(|| match faultline_tracepoints::register(desc) {
        Ok(t) => Some(t),
        Err(_) => faultline_tracepoints::find(&desc.full_name()),
    })
}

/// Enter, exit (with the thread id) or close of span `id`.
fn span_edge(which: SpanEdge, id: u64) {
    let Some(tp) = span_tp(which) else {
        return;
    };
    if !tp.is_active() {
        return;
    }
    // The entry point `trace!` uses, with the same constant-size encoding.
    if which == SpanEdge::Close {
        tp.fire_fields((&id, ()));
    } else {
        tp.fire_fields((&id, (&tid(), ())));
    }
}

/// The class of a callsite and its tracepoint when that tracepoint is active. A callsite that
/// has no class (table full) or no tracepoint (registration refused) is counted in `DROPPED`;
/// an inactive tracepoint is skipped silently.
fn active_class(
    meta: &'static Metadata<'static>,
    record: impl FnOnce(&mut dyn Visit),
    kind: Kind,
) -> Option<(&'static Class, &'static Tracepoint)> {
    let Some(tp) = class_of(meta, record, kind).and_then(|c| c.tp.map(|tp| (c, tp))) else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    tp.1.is_active().then_some(tp)
}

/// The `recorded` field of a `span_record` class: bit `i` set when the record carries a value
/// for the span's field `i` (fields 64 and over have no bit).
struct RecordedMask(u64);

impl Visit for RecordedMask {
    fn record_debug(&mut self, f: &Field, _: &dyn std::fmt::Debug) {
        if let Some(bit) = 1u64.checked_shl(f.index() as u32) {
            self.0 |= bit;
        }
    }
}

/// Record one event (both front ends).
#[inline]
fn record_event(event: &Event<'_>) {
    let meta = event.metadata();
    let Some((class, tp)) = active_class(meta, |v| event.record(v), Kind::Event) else {
        return;
    };
    encode::emit(tp, &class.types, class.fixed, &[], |v| event.record(v));
}

/// Record a span's creation with its id and its parent's (0: root).
fn record_new_span(attrs: &Attributes<'_>, id: u64, parent: u64) {
    let meta = attrs.metadata();
    let Some((class, tp)) = active_class(meta, |v| attrs.record(v), Kind::Span) else {
        return;
    };
    encode::emit(tp, &class.types, class.fixed, &[id, parent], |v| {
        attrs.record(v)
    });
}

/// Record values given to span `id` (of callsite `meta`) after its creation.
fn record_span_values(meta: &'static Metadata<'static>, id: u64, values: &Record<'_>) {
    let Some((class, tp)) = active_class(meta, |v| values.record(v), Kind::SpanRecord) else {
        return;
    };
    let mut mask = RecordedMask(0);
    values.record(&mut mask);
    encode::emit(tp, &class.types, class.fixed, &[id, mask.0], |v| {
        values.record(v)
    });
}

/// `tracing:span_follows_from`: span `span` follows from span `follows`.
fn record_follows_from(span: u64, follows: u64) {
    let Some(tp) = span_tp(SpanEdge::FollowsFrom) else {
        return;
    };
    if !tp.is_active() {
        return;
    }
    tp.fire_fields((&span, (&follows, ())));
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for FaultlineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        record_event(event);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = if attrs.is_root() {
            0
        } else if let Some(p) = attrs.parent() {
            p.into_u64()
        } else {
            ctx.current_span().id().map_or(0, Id::into_u64)
        };
        record_new_span(attrs, id.into_u64(), parent);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // The span's callsite: from the registry (`LookupSpan`), else from the dispatcher.
        let Some(meta) = ctx.metadata(id) else {
            return;
        };
        record_span_values(meta, id.into_u64(), values);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, _ctx: Context<'_, S>) {
        record_follows_from(span.into_u64(), follows.into_u64());
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        span_edge(SpanEdge::Enter, id.into_u64());
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        span_edge(SpanEdge::Exit, id.into_u64());
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        span_edge(SpanEdge::Close, id.into_u64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_acceptable() {
        assert_eq!(name_part("my_app::server"), "my_app.server");
        assert_eq!(name_part("event src/main.rs:42"), "event_src/main.rs_42");
        assert_eq!(name_part("a\"b\\c é"), "a_b_c__");
        assert_eq!(name_part(""), "_");
        assert_eq!(field_name("message"), "message");
        assert_eq!(field_name("http.status_code"), "http_status_code");
        assert_eq!(field_name("a__b"), "a_b");
        assert_eq!(field_name("_x"), "x");
        assert_eq!(field_name("9lives"), "f_9lives");
        assert_eq!(field_name("__"), "f");
        assert_eq!(field_name("x_"), "x");
        let mut used = vec!["span".to_string()];
        assert_eq!(unique("span".into(), &mut used, "_"), "span_2");
        assert_eq!(unique("span".into(), &mut used, "_"), "span_3");
    }
}
