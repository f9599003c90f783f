//! A standalone [`Subscriber`]: the same event classes and encoding as the layer, without
//! `tracing_subscriber`'s `Registry` underneath.
//!
//! # Not offered
//! It exists so that `faultline bench` can measure it next to the layer in the same run
//! (rows `info!(…) -> faultline-tracing subscriber`, keys `tracing_sub_*`); it is hidden
//! from the documentation because it is not measurably faster. Per event, the layer adds to
//! this subscriber only `Layered`'s forwarding and the `Registry`'s no-op `event` — a few
//! inlined calls next to tracing's own dispatch, the encoding and the ring buffer, which both
//! pay — and the standalone one loses what the `Registry` gives: other layers, `EnvFilter`
//! and per-target filters, and lock-free span storage (its span table takes a mutex per
//! span creation, clone and close).
//!
//! # Span ids and span stacks
//! Span ids come from one process-wide counter starting at 1: never reused (the `Registry`
//! reuses the slots of closed spans), so an id names one span in the whole trace. Each live
//! span has an entry (its callsite and reference count) in a table of [`SHARDS`] mutexes,
//! picked by id: `new_span` inserts, `clone_span` / `try_close` count, the last `try_close`
//! removes the entry and records `tracing:span_close`, `record` reads the callsite. An id the
//! table does not hold (closed already, or never made here) is ignored.
//!
//! Each thread keeps its stack of entered spans (a thread-local vector, written only by its
//! thread): `enter` pushes, `exit` removes the innermost entry of that id; its top is the
//! contextual parent of new spans and the thread's [`Subscriber::current_span`].
//!
//! Filtering is by level only ([`FaultlineSubscriber::with_max_level`]) plus faultline's event
//! globs; `EnvFilter` and per-target filters are layers and need the [`crate::layer`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracing_core::span::{Attributes, Current, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};

/// Number of span-table shards.
const SHARDS: usize = 16;

/// A live span: its callsite and how many handles refer to it.
struct Entry {
    meta: &'static Metadata<'static>,
    refs: usize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static SPANS: [Mutex<Option<HashMap<u64, Entry>>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

thread_local! {
    /// This thread's entered spans, innermost last.
    static STACK: RefCell<Vec<(u64, &'static Metadata<'static>)>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on the shard of span `id` (a poisoned shard is used as is: entries stay valid).
fn with_shard<R>(id: u64, f: impl FnOnce(&mut HashMap<u64, Entry>) -> R) -> R {
    let mut g = SPANS[(id % SHARDS as u64) as usize]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// A `tracing` [`Subscriber`] recording into faultline on its own (module docs; not offered:
/// use [`crate::layer`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct FaultlineSubscriber {
    max_level: LevelFilter,
}

impl Default for FaultlineSubscriber {
    fn default() -> Self {
        FaultlineSubscriber {
            max_level: LevelFilter::TRACE,
        }
    }
}

/// The standalone subscriber (every level; see [`FaultlineSubscriber::with_max_level`]).
#[doc(hidden)]
pub fn subscriber() -> FaultlineSubscriber {
    FaultlineSubscriber::default()
}

impl FaultlineSubscriber {
    /// Record only events and spans at `level` or more severe.
    pub fn with_max_level(self, level: impl Into<LevelFilter>) -> Self {
        FaultlineSubscriber {
            max_level: level.into(),
        }
    }
}

impl Subscriber for FaultlineSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.max_level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let parent = if attrs.is_root() {
            0
        } else if let Some(p) = attrs.parent() {
            p.into_u64()
        } else {
            top().map_or(0, |(id, _)| id)
        };
        with_shard(id, |m| {
            m.insert(
                id,
                Entry {
                    meta: attrs.metadata(),
                    refs: 1,
                },
            )
        });
        crate::record_new_span(attrs, id, parent);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let id = span.into_u64();
        if let Some(meta) = with_shard(id, |m| m.get(&id).map(|e| e.meta)) {
            crate::record_span_values(meta, id, values);
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        crate::record_follows_from(span.into_u64(), follows.into_u64());
    }

    fn event(&self, event: &Event<'_>) {
        crate::record_event(event);
    }

    fn enter(&self, span: &Id) {
        let id = span.into_u64();
        let Some(meta) = with_shard(id, |m| m.get(&id).map(|e| e.meta)) else {
            return;
        };
        let _ = STACK.try_with(|s| s.borrow_mut().push((id, meta)));
        crate::span_edge(crate::SpanEdge::Enter, id);
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        let _ = STACK.try_with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|&(x, _)| x == id) {
                s.remove(i);
            }
        });
        crate::span_edge(crate::SpanEdge::Exit, id);
    }

    fn clone_span(&self, span: &Id) -> Id {
        let id = span.into_u64();
        with_shard(id, |m| {
            if let Some(e) = m.get_mut(&id) {
                e.refs += 1;
            }
        });
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let id = span.into_u64();
        let closed = with_shard(id, |m| match m.get_mut(&id) {
            Some(e) if e.refs > 1 => {
                e.refs -= 1;
                false
            }
            Some(_) => {
                m.remove(&id);
                true
            }
            None => false,
        });
        if closed {
            crate::span_edge(crate::SpanEdge::Close, id);
        }
        closed
    }

    fn current_span(&self) -> Current {
        match top() {
            Some((id, meta)) => Current::new(Id::from_u64(id), meta),
            None => Current::none(),
        }
    }
}

/// The innermost span entered on this thread.
fn top() -> Option<(u64, &'static Metadata<'static>)> {
    STACK
        .try_with(|s| s.try_borrow().ok().and_then(|s| s.last().copied()))
        .ok()
        .flatten()
}
