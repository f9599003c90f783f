//! Probes: registration, dispatch and safe reclamation.
//!
//! # Data
//! Each tracepoint has two pointers to immutable probe arrays (`Box<ProbeArray>` leaked into an
//! `AtomicPtr`, null when empty): one for [`ProbeKind::NonFaultable`] probes, one for
//! [`ProbeKind::Faultable`] ones. Each kind has its own SRCU domain (`srcu.rs`), so a faultable
//! probe blocked in a page fault for minutes delays only the grace periods of faultable
//! probes: unregistering a non-faultable probe is not held up by it (the kernel splits its
//! faultable tracepoints the same way). User space has no preemption-off region to offer the
//! non-faultable kind, so both kinds use the same reader scheme; the difference is the contract
//! (a non-faultable probe must not block, so its domain's grace periods stay short) and the
//! isolation.
//!
//! Next to the arrays, a tracepoint has a *fast slot* (the recording fast path, see
//! [`fast`](crate::fast)): a cache of its probe list, non-null when the only probe is a
//! faultable one that offers a [`FastTarget`]. Every update that republishes an array
//! recomputes it; it is published and retired like a faultable array.
//!
//! # Who writes what
//! * Call sites (readers): `Tracepoint::fire` peeks each pointer (no dereference), enters that
//!   kind's SRCU read section, loads the pointer, calls the probes, leaves. No lock, no wait,
//!   no allocation.
//! * Updaters ([`register_probe`], [`unregister`], [`unregister_deferred`], enabling): under the
//!   registry mutex, build a new array from the registry's probe list, publish it with a SeqCst
//!   swap, and *retire* the old one. The mutex is released before any grace-period wait.
//! * Retired arrays (and the `Arc<dyn Probe>` they hold) are dropped only after a grace period
//!   of their kind's domain: synchronously in [`unregister`] (which is what makes "returns only
//!   after no call can still be inside the old probe" true), or by the background reclaimer
//!   thread for [`register_probe`] and [`unregister_deferred`]. Nothing on the tracing path ever
//!   waits for a grace period.
//!
//! # Hazards
//! * Do not call [`unregister`] from inside a probe (it would wait for itself): use
//!   [`unregister_deferred`].
//! * A probe that never returns (or a thread that exits inside one) makes [`unregister`] of
//!   that kind wait for ever; [`unregister_deferred`] never blocks the caller.
//! * A panicking probe unwinds into the traced code; the SRCU guard is released on unwind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use faultline_ringbuf::{CommitKind, Lost};

use crate::fast::{slot_of, slot_word, FastSlot, FastTarget};
use crate::registry::{self, domains, update_active, ProbeEntry, Tracepoint};
use crate::srcu::{rcu_swap, Flavour};
use crate::{Payload, TraceOutcome};

/// A probe: called synchronously by every hit of the tracepoints it is registered on.
pub trait Probe: Send + Sync + 'static {
    /// Handle one event. `payload` can be sized and encoded (see [`Payload`]); `tp` gives the
    /// event id and schema.
    fn call(&self, tp: &'static Tracepoint, payload: &dyn Payload);

    /// Handle one event like [`call`](Probe::call) and say what became of it; called instead
    /// of `call` by [`try_trace!`](crate::try_trace). The default calls `call` and answers
    /// [`TraceOutcome::Delivered`]; a probe that records into a buffer overrides it to report
    /// the commit or the loss and its cause.
    fn call_outcome(&self, tp: &'static Tracepoint, payload: &dyn Payload) -> TraceOutcome {
        self.call(tp, payload);
        TraceOutcome::Delivered
    }

    /// Offer to record `tp`'s events without being called (the recording fast path, see
    /// [`fast`](crate::fast)): asked whenever `tp`'s probe arrays are republished while this
    /// is its only probe (a faultable one). `None` (the default): always call the probe.
    /// A probe that answers must also answer [`fast_counter`](Probe::fast_counter) and count
    /// what [`fast_unusual`](Probe::fast_unusual) reports.
    fn fast_target(&self, tp: &'static Tracepoint) -> Option<FastTarget> {
        let _ = tp;
        None
    }

    /// This thread's counter of events the fast path committed for this probe, or null (not
    /// counted). Called once per thread (the answer is cached per thread by
    /// [`FastTarget::owner_id`]): the counter must stay valid as long as the calling thread
    /// runs, and be written only by it (the fast path adds with a relaxed load and store).
    fn fast_counter(&self) -> *const AtomicU64 {
        std::ptr::null()
    }

    /// The fast path committed an event of `tp` REMOTE (`Ok`, already counted as an event)
    /// or lost it (`Err`). Out of line; the default does nothing.
    fn fast_unusual(&self, tp: &'static Tracepoint, what: Result<CommitKind, Lost>) {
        let _ = (tp, what);
    }
}

/// How a probe may behave, which decides which grace-period domain protects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Never blocks (no page faults on untrusted memory, no locks that can be held long).
    NonFaultable = 0,
    /// May sleep or take page faults (e.g. copies of user strings).
    Faultable = 1,
}

/// Registered probe; pass to [`unregister`]/[`unregister_deferred`]. Dropping it leaves the
/// probe registered for the life of the process.
#[must_use = "a probe registration is only undone by passing its handle to unregister"]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProbeHandle {
    id: u64,
    /// Ids of the tracepoints it was attached to.
    tracepoints: Vec<u32>,
}

impl ProbeHandle {
    /// Number of tracepoints the probe is attached to.
    pub fn tracepoint_count(&self) -> usize {
        self.tracepoints.len()
    }
}

/// Errors from [`register_probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// No tracepoint matches the name or glob.
    NoMatch(String),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::NoMatch(g) => write!(f, "no tracepoint matches `{g}`"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// An immutable probe array as published to readers (never empty).
pub(crate) struct ProbeArray {
    /// `Arc::as_ptr(&probes[0])`, so that the common one-probe dispatch reaches the probe's
    /// vtable with one load less (no walk through the boxed slice, no `ArcInner` offset).
    first: *const dyn Probe,
    /// Owns the probes (and keeps `first` alive).
    probes: Box<[Arc<dyn Probe>]>,
}

impl ProbeArray {
    fn new(probes: Box<[Arc<dyn Probe>]>) -> Self {
        ProbeArray {
            first: Arc::as_ptr(&probes[0]),
            probes,
        }
    }

    /// Call every probe, in registration order.
    #[inline(always)]
    pub(crate) fn call_all(&self, tp: &'static Tracepoint, payload: &dyn Payload) {
        // SAFETY: `first` points into the Arc held by `probes[0]`, which lives as long as
        // `self` (the array is immutable after publication).
        unsafe { &*self.first }.call(tp, payload);
        for p in self.probes[1..].iter() {
            p.call(tp, payload);
        }
    }

    /// Call every probe, in registration order, through [`Probe::call_outcome`], and
    /// combine their outcomes ([`TraceOutcome::merge`]).
    #[inline]
    pub(crate) fn call_all_outcome(
        &self,
        tp: &'static Tracepoint,
        payload: &dyn Payload,
    ) -> TraceOutcome {
        // SAFETY: as in `call_all`: `first` points into the Arc held by `probes[0]`, which
        // lives as long as `self`.
        let mut out = unsafe { &*self.first }.call_outcome(tp, payload);
        for p in self.probes[1..].iter() {
            out = out.merge(p.call_outcome(tp, payload));
        }
        out
    }
}

/// A retired probe array or fast slot, to drop after a grace period of domain `kind`.
struct Retired {
    kind: ProbeKind,
    ptr: *mut ProbeArray,
    /// A retired fast slot word (null: none), as published (perhaps tagged: `slot_word`; the
    /// hazard wait compares announcements with it); always of the faultable kind.
    fast: *mut FastSlot,
}

// SAFETY: a retired array is no longer reachable by new readers; it is only moved to the thread
// that frees it after the grace period. Its contents (Arc<dyn Probe>) are Send + Sync.
unsafe impl Send for Retired {}

impl Retired {
    /// Free the array.
    ///
    /// # Safety
    /// A full grace period of domain `self.kind` must have elapsed since it was swapped out.
    unsafe fn free(self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from Box::into_raw in `publish` and, per the caller, no reader
            // can still hold it.
            drop(unsafe { Box::from_raw(self.ptr) });
        }
        if !self.fast.is_null() {
            // SAFETY: as above, from Box::into_raw in `publish_fast`.
            drop(unsafe { Box::from_raw(slot_of(self.fast)) });
        }
    }
}

/// Rebuild tracepoint `id`'s `kind` array (and its fast slot) from the registry list and
/// publish them; returns what they replaced. Caller holds the state lock. Only the kind that changed is republished,
/// so an update never has to wait for the other kind's readers.
fn publish(st: &registry::State, id: usize, kind: ProbeKind) -> Vec<Retired> {
    let Some(tp) = st.tp(id) else {
        return Vec::new();
    };
    let probes: Box<[Arc<dyn Probe>]> = st.probes[id]
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.probe.clone())
        .collect();
    let new = if probes.is_empty() {
        std::ptr::null_mut()
    } else {
        Box::into_raw(Box::new(ProbeArray::new(probes)))
    };
    let old = rcu_swap(&tp.arrays[kind as usize], new);
    update_active(st, id);
    let mut out: Vec<Retired> = Vec::new();
    if !old.is_null() {
        out.push(Retired {
            kind,
            ptr: old,
            fast: std::ptr::null_mut(),
        });
    }
    out.extend(publish_fast(st, id));
    out
}

/// Recompute tracepoint `id`'s fast slot (`fast.rs`) from its probe list: a slot when its
/// only probe is a faultable one that offers a [`FastTarget`]; returns the old slot, if any.
/// Caller holds the state lock.
fn publish_fast(st: &registry::State, id: usize) -> Option<Retired> {
    let tp = st.tp(id)?;
    let list = st.probes.get(id)?;
    let new = match list.as_slice() {
        // Readers of the slot use the rseq read side if `domains()` could set it up.
        [only] if only.kind == ProbeKind::Faultable => only.probe.fast_target(tp).map(|t| {
            slot_word(Box::into_raw(Box::new(FastSlot::new(
                only.probe.clone(),
                t,
            ))))
        }),
        _ => None,
    }
    .unwrap_or(std::ptr::null_mut());
    if new.is_null() && tp.fast.load(Ordering::Relaxed).is_null() {
        return None;
    }
    let old = rcu_swap(&tp.fast, new);
    (!old.is_null()).then_some(Retired {
        kind: ProbeKind::Faultable,
        ptr: std::ptr::null_mut(),
        fast: old,
    })
}

/// Recompute the fast slots (see [`fast`](crate::fast)) of the tracepoints with these ids,
/// e.g. after a probe changed what [`Probe::fast_target`] answers. Never waits for a grace
/// period (the old slots go to the background reclaimer).
pub fn refresh_fast(ids: &[u32]) {
    let st = registry::state();
    let retired: Vec<Retired> = ids
        .iter()
        .filter_map(|&id| publish_fast(&st, id as usize))
        .collect();
    drop(st);
    defer(retired);
}

/// For each kind: wait for a grace period of its domain, then free its retired arrays (the
/// non-faultable kind first, so its arrays are not held up by a long faultable grace period).
fn reclaim_now(retired: Vec<Retired>) {
    let d = domains();
    let mut retired = retired;
    for kind in [ProbeKind::NonFaultable, ProbeKind::Faultable] {
        let (now, later): (Vec<Retired>, Vec<Retired>) =
            retired.into_iter().partition(|r| r.kind == kind);
        retired = later;
        if now.is_empty() {
            continue;
        }
        d[kind as usize].synchronize();
        // Fast slots are also read under hazard pointers (fast.rs): wait for those readers.
        let slots: Vec<*const ()> = now
            .iter()
            .filter(|r| !r.fast.is_null())
            .map(|r| r.fast as *const ())
            .collect();
        crate::fast::HAZARDS.synchronize(&slots);
        for r in now {
            // SAFETY: a grace period of r.kind's domain, and for a fast slot a hazard wait,
            // started after r was swapped out (the swap happened before this function was
            // called) and have ended.
            unsafe { r.free() };
        }
    }
}

/// Attach `probe` to every tracepoint matching `tracepoint_or_glob` (`provider:name`, `*`,
/// `?`). Does not enable the tracepoints (see [`enable`](crate::enable)). Never waits for a
/// grace period (the replaced arrays go to the background reclaimer).
pub fn register_probe(
    tracepoint_or_glob: &str,
    probe: Arc<dyn Probe>,
    kind: ProbeKind,
) -> Result<ProbeHandle, RegisterError> {
    register_inner(tracepoint_or_glob, probe, kind, false)
}

/// Like [`register_probe`], and also attach `probe` to every tracepoint
/// [`register`](crate::register)ed later whose name matches `glob` (until [`unregister`]).
/// Matching nothing now is not an error.
pub fn register_probe_following(glob: &str, probe: Arc<dyn Probe>, kind: ProbeKind) -> ProbeHandle {
    match register_inner(glob, probe, kind, true) {
        Ok(h) => h,
        // Unreachable: `follow` never reports NoMatch; an empty handle is still correct.
        Err(_) => ProbeHandle {
            id: 0,
            tracepoints: Vec::new(),
        },
    }
}

/// Attach the following probes whose glob matches to run-time tracepoint `id` (just
/// registered: its arrays are null, so nothing is retired). Caller holds the state lock.
pub(crate) fn attach_following(st: &mut registry::State, id: usize) {
    let Some(tp) = st.tp(id) else {
        return;
    };
    let name = tp.full_name();
    let add: Vec<ProbeEntry> = st
        .follow
        .iter()
        .filter(|f| registry::glob_match(f.glob.as_bytes(), name.as_bytes()))
        .map(|f| ProbeEntry {
            handle: f.handle,
            kind: f.kind,
            probe: f.probe.clone(),
        })
        .collect();
    if add.is_empty() {
        return;
    }
    let mut kinds = [false; 2];
    for e in add {
        kinds[e.kind as usize] = true;
        if let Some(list) = st.probes.get_mut(id) {
            list.push(e);
        }
    }
    let mut retired = Vec::new();
    for kind in [ProbeKind::NonFaultable, ProbeKind::Faultable] {
        if kinds[kind as usize] {
            retired.extend(publish(st, id, kind));
        }
    }
    // A fresh tracepoint had no arrays; should there be any, free them safely.
    defer(retired);
}

fn register_inner(
    tracepoint_or_glob: &str,
    probe: Arc<dyn Probe>,
    kind: ProbeKind,
    follow: bool,
) -> Result<ProbeHandle, RegisterError> {
    domains();
    let mut st = registry::state();
    let n = st.probes.len();
    let ids: Vec<usize> = (0..n)
        .filter(|&i| {
            st.tp(i).is_some_and(|tp| {
                registry::glob_match(tracepoint_or_glob.as_bytes(), tp.full_name().as_bytes())
            })
        })
        .collect();
    if ids.is_empty() && !follow {
        return Err(RegisterError::NoMatch(tracepoint_or_glob.to_string()));
    }
    let handle = st.next_handle;
    st.next_handle += 1;
    if follow {
        st.follow.push(registry::FollowEntry {
            handle,
            glob: tracepoint_or_glob.to_string(),
            kind,
            probe: probe.clone(),
        });
    }
    let mut retired = Vec::new();
    for &id in &ids {
        st.probes[id].push(ProbeEntry {
            handle,
            kind,
            probe: probe.clone(),
        });
        retired.extend(publish(&st, id, kind));
    }
    drop(st);
    defer(retired);
    Ok(ProbeHandle {
        id: handle,
        tracepoints: ids.iter().map(|&i| i as u32).collect(),
    })
}

/// Detach the probe and remove it from the arrays; returns the retired arrays.
fn detach(handle: &ProbeHandle) -> Vec<Retired> {
    let mut st = registry::state();
    let mut retired = Vec::new();
    st.follow.retain(|f| f.handle != handle.id);
    // Every tracepoint: a following probe may have been attached after the handle was made.
    for id in 0..st.probes.len() {
        let Some(list) = st.probes.get_mut(id) else {
            continue;
        };
        let mut kinds = [false; 2];
        list.retain(|e| {
            let keep = e.handle != handle.id;
            if !keep {
                kinds[e.kind as usize] = true;
            }
            keep
        });
        for kind in [ProbeKind::NonFaultable, ProbeKind::Faultable] {
            if kinds[kind as usize] {
                retired.extend(publish(&st, id, kind));
            }
        }
    }
    retired
}

/// Detach the probe and return once no call can still be inside it (waiting, if needed, for
/// calls blocked in page faults). Only the grace period of the probe's own kind is waited for.
/// The arrays this call retires are freed before it returns; arrays retired earlier by
/// [`register_probe`] (which may also hold the probe) are freed by the background reclaimer
/// ([`reclaim_barrier`] waits for that).
pub fn unregister(handle: ProbeHandle) {
    let retired = detach(&handle);
    reclaim_now(retired);
}

/// Detach the probe and return at once; the grace-period wait and the release of the registry's
/// references to the probe happen on the background reclaimer thread. [`reclaim_barrier`] waits
/// for it.
pub fn unregister_deferred(handle: ProbeHandle) {
    let retired = detach(&handle);
    defer(retired);
}

struct Reclaimer {
    queue: Mutex<Queue>,
    work: Condvar,
    done: Condvar,
}

struct Queue {
    items: Vec<Retired>,
    /// Batches handed in / completed; a barrier waits for `completed >= submitted-at-call`.
    submitted: u64,
    completed: u64,
    started: bool,
}

static RECLAIMER: Reclaimer = Reclaimer {
    queue: Mutex::new(Queue {
        items: Vec::new(),
        submitted: 0,
        completed: 0,
        started: false,
    }),
    work: Condvar::new(),
    done: Condvar::new(),
};

/// Hand retired arrays to the reclaimer thread (started on first use). Never blocks on a grace
/// period. If the thread cannot be started the arrays are leaked (safe: never freed early).
fn defer(retired: Vec<Retired>) {
    if retired.is_empty() {
        return;
    }
    let mut q = crate::sync::lock(&RECLAIMER.queue);
    if !q.started {
        let spawned = std::thread::Builder::new()
            .name("faultline-reclaim".into())
            .spawn(reclaimer_main);
        if spawned.is_err() {
            std::mem::forget(retired);
            return;
        }
        q.started = true;
    }
    q.items.extend(retired);
    q.submitted += 1;
    RECLAIMER.work.notify_one();
}

fn reclaimer_main() {
    let mut q = crate::sync::lock(&RECLAIMER.queue);
    loop {
        while q.items.is_empty() {
            q = RECLAIMER.work.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        let batch = std::mem::take(&mut q.items);
        let upto = q.submitted;
        drop(q);
        // One grace period per domain for the whole batch.
        reclaim_now(batch);
        q = crate::sync::lock(&RECLAIMER.queue);
        q.completed = upto;
        RECLAIMER.done.notify_all();
    }
}

/// Wait until everything handed to the background reclaimer before this call has been freed
/// (like `rcu_barrier`). Must not be called from inside a probe.
pub fn reclaim_barrier() {
    let mut q = crate::sync::lock(&RECLAIMER.queue);
    let target = q.submitted;
    while q.completed < target {
        q = RECLAIMER.done.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// Grace-period polls so far that found readers inside, per kind (diagnostics; tests use it to
/// see an `unregister` waiting).
pub fn grace_period_busy_polls(kind: ProbeKind) -> u64 {
    domains()[kind as usize].busy_polls()
}

/// Choose the read-side flavour of both domains (see [`srcu`](crate::srcu)): the rseq flavour
/// (no locked instruction on the tracing path; chosen at start-up with `FAULTLINE_SRCU=rseq`)
/// or the atomic one (two `lock xadd` per event; the default and the fallback: it measured
/// cheaper inside `fire` on our development machine). Returns the flavour in effect (asking
/// for [`Flavour::Rseq`] where it is not available gives [`Flavour::Atomic`]). Safe at any
/// time, with probes running; may wait for a grace period in progress. Must not be called from
/// inside a probe.
pub fn set_srcu_flavour(flavour: Flavour) -> Flavour {
    let d = domains();
    let got = d[0].set_flavour(flavour);
    d[1].set_flavour(got);
    got
}

/// The read-side flavour new read-side sections of `kind`'s domain use.
pub fn srcu_flavour(kind: ProbeKind) -> Flavour {
    domains()[kind as usize].flavour()
}

/// The simplest real probe: counts calls per tracepoint (relaxed atomic add on a per-tracepoint
/// counter indexed by event id).
pub struct CounterProbe {
    counts: Box<[AtomicU64]>,
}

impl CounterProbe {
    /// A counter for every tracepoint in the executable.
    pub fn new() -> Arc<Self> {
        let n = registry::tracepoints().len();
        Arc::new(CounterProbe {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Calls seen for `tp`.
    pub fn count(&self, tp: &Tracepoint) -> u64 {
        self.counts
            .get(tp.id() as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Calls seen over all tracepoints.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl Probe for CounterProbe {
    #[inline]
    fn call(&self, tp: &'static Tracepoint, _payload: &dyn Payload) {
        if let Some(c) = self.counts.get(tp.id() as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}
