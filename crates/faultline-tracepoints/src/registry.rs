//! Tracepoints, the global registry, and enabling by name or glob.
//!
//! # Discovery: `linkme`
//! [`tracepoint!`](crate::tracepoint) emits a `&'static Tracepoint` into the linker section
//! behind [`TRACEPOINTS`] (the `linkme` crate). The list of every tracepoint compiled into the
//! executable therefore exists before `main` runs, without constructors and without any
//! tracepoint having been hit: metadata can describe events that never fire. (Limit: a
//! tracepoint in a `dlopen`ed library is in that library's section, not in this list.)
//!
//! # Ids
//! On first use of the registry (any API call: listing, enabling, registering a probe) the
//! tracepoints are sorted by `(provider, name)` (address as tie-break) and numbered
//! `0..n`; the number is stored in the tracepoint ([`Tracepoint::id`]) and is the event id the
//! ring buffer records. Ids are stable for a given executable.
//!
//! # Enabled vs active
//! * *enabled* is the user's choice, per tracepoint: [`enable`], [`disable`], [`set_events`],
//!   and the `FAULTLINE_EVENTS` environment variable, read once when the registry is first used
//!   (comma-separated globs over `provider:name`, `*` and `?` wildcards; a `-glob` excludes; a
//!   tracepoint is enabled if it matches an inclusion and no exclusion; a list of exclusions
//!   only means "`*` except those"). Unset or empty: nothing enabled.
//! * *active* = enabled **and** at least one probe registered. It is the one flag the call site
//!   loads (`Relaxed`): a disabled or probe-less tracepoint costs one load and a not-taken
//!   branch, and the arguments are not evaluated.
//!
//! Who writes what: the registry state (enabled flags, probe lists, ids) is written only under
//! the registry mutex; each tracepoint's `active` flag and probe-array pointers are written only
//! under it too and read lock-free by the call sites.
//!
//! # Tracepoints registered at run time
//! [`register`] adds a tracepoint whose description is only known while the program runs (a
//! `tracing` callsite hit for the first time, for instance): the [`Tracepoint`] is leaked (it
//! lives as long as the process, like a static one) and gets the next id after every tracepoint
//! registered so far (ids of the link-time ones stay `0..n`; run-time ids follow, in order of
//! registration, and are never reused). Names are unique: registering a `provider:name` that
//! exists is refused. At most [`MAX_TRACEPOINTS`] tracepoints in all.
//!
//! Under the registry mutex, in this order: the id is assigned; the enabling rules in force are
//! applied (the last [`set_events`] spec, then the [`enable`]/[`disable`] globs given since);
//! every *listener* ([`subscribe`]) is called; the probes registered with
//! [`register_probe_following`](crate::register_probe_following) whose glob matches are
//! attached; only then can the tracepoint become active. So a listener (the consumer that
//! writes the trace metadata) learns of a class **before** any record of it can be committed.
//! Listeners run under the registry mutex: they must not call into this registry and should
//! not block for long.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use faultline_schema::EventDesc;

use crate::fast::FastSlot;
use crate::probe::{Probe, ProbeArray, ProbeKind};
use crate::srcu::{rcu_is_null, rcu_load, Flavour, Srcu};
use crate::TraceOutcome;

/// Every tracepoint linked into the executable (unordered; see [`tracepoints`] for the sorted,
/// numbered list).
#[linkme::distributed_slice]
pub static TRACEPOINTS: [&'static Tracepoint];

/// A tracepoint: static description plus the state its call sites read.
pub struct Tracepoint {
    /// enabled && has probes. The only word the disabled fast path reads.
    active: AtomicBool,
    id: AtomicU32,
    desc: &'static EventDesc,
    /// Whether a field copies untrusted memory: 0 not computed yet, 1 no, 2 yes.
    raw: AtomicU8,
    /// Probe arrays (null when empty), one per kind, each protected by its kind's SRCU domain.
    pub(crate) arrays: [AtomicPtr<ProbeArray>; 2],
    /// The recording fast path's slot (null: none), protected by the faultable domain
    /// (`fast.rs`).
    pub(crate) fast: AtomicPtr<FastSlot>,
}

impl Tracepoint {
    /// Used by [`tracepoint!`](crate::tracepoint).
    #[doc(hidden)]
    pub const fn new(desc: &'static EventDesc) -> Self {
        Tracepoint {
            active: AtomicBool::new(false),
            id: AtomicU32::new(u32::MAX),
            desc,
            raw: AtomicU8::new(0),
            arrays: [
                AtomicPtr::new(std::ptr::null_mut()),
                AtomicPtr::new(std::ptr::null_mut()),
            ],
            fast: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Schema of this event.
    pub fn desc(&self) -> &'static EventDesc {
        self.desc
    }

    /// Event id (see the module doc); assigns ids first if the registry was never used.
    #[inline]
    pub fn id(&self) -> u32 {
        // Relaxed: ids are written once, under the registry mutex, before any probe can be
        // registered; probes reach a tracepoint through the SeqCst pointer publication, which
        // orders the id store before their reads.
        let id = self.id.load(Ordering::Relaxed);
        if id != u32::MAX {
            return id;
        }
        registry();
        self.id.load(Ordering::Relaxed)
    }

    /// Whether the event has fields copied from untrusted memory (the `<name>_faulted` field
    /// [`tracepoint!`](crate::tracepoint) puts before each raw field). Computed once.
    pub fn has_raw_fields(&self) -> bool {
        // Relaxed: a cache of a pure function of the immutable description.
        match self.raw.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let raw = self
                    .desc
                    .fields
                    .iter()
                    .any(|f| f.name.ends_with("_faulted"));
                self.raw.store(1 + raw as u8, Ordering::Relaxed);
                raw
            }
        }
    }

    /// `provider:name`.
    pub fn full_name(&self) -> String {
        self.desc.full_name()
    }

    /// The call-site check: enabled and at least one probe. One Relaxed load.
    #[inline(always)]
    pub fn is_active(&self) -> bool {
        // Relaxed: a stale value only delays (or extends by one call) the effect of an
        // enable/disable; `fire` re-reads the probe arrays under SRCU protection.
        self.active.load(Ordering::Relaxed)
    }

    /// Whether the user enabled this tracepoint (independent of probes).
    pub fn is_enabled(&self) -> bool {
        let st = state();
        st.enabled.get(self.id() as usize).copied().unwrap_or(false)
    }

    /// Call every probe registered on this tracepoint with `payload`. Call sites reach it
    /// through [`trace!`](crate::trace) only when [`is_active`](Self::is_active); calling it
    /// directly is also fine. Never locks, never waits for a grace period.
    pub fn fire(&'static self, payload: &dyn crate::Payload) {
        // Peek at both arrays first (Relaxed, no dereference): a kind without probes costs one
        // load and a not-taken branch, and needs neither its domain nor a read-side section.
        if !rcu_is_null(&self.arrays[ProbeKind::NonFaultable as usize]) {
            self.fire_kind(ProbeKind::NonFaultable, payload);
        }
        if !rcu_is_null(&self.arrays[ProbeKind::Faultable as usize]) {
            self.fire_kind(ProbeKind::Faultable, payload);
        }
    }

    /// Call every probe registered on this tracepoint with `payload`, like
    /// [`fire`](Self::fire), and return what became of the event (see [`TraceOutcome`]):
    /// [`TraceOutcome::Disabled`] if no probe ran. Call sites reach it through
    /// [`try_trace!`](crate::try_trace).
    pub fn fire_outcome(&'static self, payload: &dyn crate::Payload) -> TraceOutcome {
        let mut out = TraceOutcome::Disabled;
        for kind in [ProbeKind::NonFaultable, ProbeKind::Faultable] {
            if rcu_is_null(&self.arrays[kind as usize]) {
                continue;
            }
            let Some(domains) = DOMAINS.get() else {
                return out;
            };
            let guard = domains[kind as usize].read_lock_fast();
            // SAFETY: as in `fire_kind`: `arrays[k]` only holds null or leaked
            // `Box<ProbeArray>`s published with rcu_swap, freed only after a grace period of
            // domain k, and we hold a read-side section of domain k.
            if let Some(a) = unsafe { rcu_load(&self.arrays[kind as usize], &guard) } {
                out = out.merge(a.call_all_outcome(self, payload));
            }
        }
        out
    }

    /// Call the probes of one kind inside a read-side section of that kind's domain.
    #[inline(always)]
    fn fire_kind(&'static self, kind: ProbeKind, payload: &dyn crate::Payload) {
        // A non-null array was published after the domains were created (register_probe
        // creates them first), so this is the initialized fast path of a OnceLock.
        let Some(domains) = DOMAINS.get() else {
            return;
        };
        // The rseq read side where it is set up (the faultable domain: `domains`), the atomic
        // one otherwise: on CPUs where a locked instruction does not overlap with its
        // neighbours, the atomic flavour's two locked increments were most of this function's
        // cost for a raw-field event (the libc preload's `write`: ~75 % of `fire`'s samples).
        let guard = domains[kind as usize].read_lock_fast();
        // SAFETY: `arrays[k]` only holds null or leaked `Box<ProbeArray>`s published with
        // rcu_swap, and retired arrays are freed only after a grace period of domain k
        // (probe.rs: reclaim_now()).
        if let Some(a) = unsafe { rcu_load(&self.arrays[kind as usize], &guard) } {
            a.call_all(self, payload);
        }
    }
}

/// The two SRCU domains: index `ProbeKind as usize`.
pub(crate) static DOMAINS: OnceLock<[Srcu; 2]> = OnceLock::new();

/// The domains, created on first use with the atomic read-side flavour, or the rseq one when
/// `FAULTLINE_SRCU=rseq` (and it is available); the faultable one also lets the recording fast
/// path's readers, and [`Tracepoint::fire`]'s, use the rseq read side when available
/// (`Srcu::enable_rseq_readers`, `Srcu::read_lock_fast`). Atomic is the default flavour because
/// it measured cheaper inside `fire` on an AMD EPYC VM (dispatch 4.6 ns atomic vs 5.7 ns rseq,
/// same run; see the `srcu` module docs, "Costs"); on an Intel Xeon VM, where a locked
/// instruction does not overlap with its neighbours, the atomic flavour's two locked
/// increments cost a raw-field event tens of nanoseconds, so `fire` takes the rseq side of the
/// faultable domain.
pub(crate) fn domains() -> &'static [Srcu; 2] {
    DOMAINS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        let n = if n > 0 { n as usize } else { 64 };
        let want = match std::env::var("FAULTLINE_SRCU") {
            Ok(v) if v.eq_ignore_ascii_case("rseq") => Flavour::Rseq,
            _ => Flavour::Atomic,
        };
        let d = [Srcu::new(n), Srcu::new(n)];
        for s in &d {
            s.set_flavour(want);
        }
        // The recording fast path (fast.rs) enters the faultable domain with read_lock_fast:
        // set its rseq read side up now, while no grace period can be running (doing it later,
        // under the registry mutex, could wait for one).
        d[ProbeKind::Faultable as usize].enable_rseq_readers();
        // The fast path's hazard records (fast.rs) need the updater's membarrier: allow them
        // only once one has worked (it also registers the process).
        if faultline_rseq::membarrier_private_expedited() {
            // Relaxed: a hint for new threads; a thread that misses it uses the SRCU read
            // side, which is always correct.
            crate::fast::HAZARDS_OK.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        d
    })
}

/// One registered probe (registry side).
pub(crate) struct ProbeEntry {
    pub(crate) handle: u64,
    pub(crate) kind: ProbeKind,
    pub(crate) probe: Arc<dyn Probe>,
}

/// A probe registered with [`register_probe_following`](crate::register_probe_following):
/// attached to every tracepoint registered later whose name matches `glob`.
pub(crate) struct FollowEntry {
    pub(crate) handle: u64,
    pub(crate) glob: String,
    pub(crate) kind: ProbeKind,
    pub(crate) probe: Arc<dyn Probe>,
}

/// Called for every tracepoint registered at run time (see the module docs).
pub type Listener = Arc<dyn Fn(&'static Tracepoint) + Send + Sync>;

/// Returned by [`subscribe`]; pass it to [`unsubscribe`].
#[must_use = "a listener stays registered until its handle is passed to unsubscribe"]
#[derive(Debug, PartialEq, Eq)]
pub struct ListenerHandle(u64);

/// The enabling rules in force: the last [`set_events`] spec, then the [`enable`] / [`disable`]
/// globs given since (a later rule wins; a repeated glob replaces its earlier entry).
#[derive(Default)]
pub(crate) struct Rules {
    spec: EventSpec,
    ops: Vec<(String, bool)>,
}

impl Rules {
    fn enabled(&self, full_name: &str) -> bool {
        let mut on = self.spec.matches(full_name);
        for (g, v) in &self.ops {
            if glob_match(g.as_bytes(), full_name.as_bytes()) {
                on = *v;
            }
        }
        on
    }

    fn push(&mut self, glob: &str, on: bool) {
        self.ops.retain(|(g, _)| g != glob);
        self.ops.push((glob.to_string(), on));
    }
}

pub(crate) struct State {
    /// Indexed by id (link-time tracepoints first, then the run-time ones).
    pub(crate) enabled: Vec<bool>,
    pub(crate) probes: Vec<Vec<ProbeEntry>>,
    pub(crate) next_handle: u64,
    /// Tracepoints registered at run time: id = number of link-time tracepoints + index.
    pub(crate) dynamic: Vec<&'static Tracepoint>,
    rules: Rules,
    pub(crate) follow: Vec<FollowEntry>,
    listeners: Vec<(u64, Listener)>,
}

impl State {
    /// The tracepoint with id `id`, if any.
    pub(crate) fn tp(&self, id: usize) -> Option<&'static Tracepoint> {
        let tps = &registry().tps;
        match id.checked_sub(tps.len()) {
            None => tps.get(id).copied(),
            Some(i) => self.dynamic.get(i).copied(),
        }
    }

    fn all(&self) -> impl Iterator<Item = &'static Tracepoint> + '_ {
        registry()
            .tps
            .iter()
            .copied()
            .chain(self.dynamic.iter().copied())
    }
}

/// Most tracepoints (link-time and run-time together) a process can have.
pub const MAX_TRACEPOINTS: usize = 1 << 16;

/// Why [`register`] refused a tracepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TracepointError {
    /// A tracepoint with this `provider:name` exists.
    Duplicate(String),
    /// [`MAX_TRACEPOINTS`] reached.
    TooMany,
}

impl std::fmt::Display for TracepointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TracepointError::Duplicate(n) => write!(f, "a tracepoint named `{n}` exists"),
            TracepointError::TooMany => {
                write!(f, "too many tracepoints (at most {MAX_TRACEPOINTS})")
            }
        }
    }
}

impl std::error::Error for TracepointError {}

/// Register a tracepoint described at run time (module docs, "Tracepoints registered at run
/// time"). `desc` must live for the rest of the process (leak it or keep it in a static).
pub fn register(desc: &'static EventDesc) -> Result<&'static Tracepoint, TracepointError> {
    let reg = registry();
    let mut st = state();
    let name = desc.full_name();
    if st.all().any(|tp| name_eq(tp, &name)) {
        return Err(TracepointError::Duplicate(name));
    }
    let id = reg.tps.len() + st.dynamic.len();
    if id >= MAX_TRACEPOINTS {
        return Err(TracepointError::TooMany);
    }
    let tp: &'static Tracepoint = Box::leak(Box::new(Tracepoint::new(desc)));
    // Relaxed: see Tracepoint::id (written under the mutex, before any probe can reach it).
    tp.id.store(id as u32, Ordering::Relaxed);
    st.dynamic.push(tp);
    let on = st.rules.enabled(&name);
    st.enabled.push(on);
    st.probes.push(Vec::new());
    // The consumer learns of the class before any record of it can exist.
    for (_, l) in &st.listeners {
        l(tp);
    }
    crate::probe::attach_following(&mut st, id);
    update_active(&st, id);
    Ok(tp)
}

/// Register `listener`, called for every tracepoint [`register`]ed from now on (module docs);
/// returns, atomically with the registration, every tracepoint that exists now (link-time and
/// run-time, by id), so that none is missed or seen twice.
pub fn subscribe(listener: Listener) -> (Vec<&'static Tracepoint>, ListenerHandle) {
    let mut st = state();
    let h = st.next_handle;
    st.next_handle += 1;
    st.listeners.push((h, listener));
    let all = st.all().collect();
    (all, ListenerHandle(h))
}

/// Remove a listener. When this returns the listener is not running and will not be called.
pub fn unsubscribe(h: ListenerHandle) {
    state().listeners.retain(|(id, _)| *id != h.0);
}

/// Every tracepoint, link-time and run-time, index = [`Tracepoint::id`] (a snapshot).
pub fn all_tracepoints() -> Vec<&'static Tracepoint> {
    state().all().collect()
}

pub(crate) struct Registry {
    /// Sorted by name; index = id.
    pub(crate) tps: Vec<&'static Tracepoint>,
    pub(crate) state: Mutex<State>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

pub(crate) fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let mut tps: Vec<&'static Tracepoint> = TRACEPOINTS.iter().copied().collect();
        tps.sort_by(|a, b| {
            (a.desc.provider, a.desc.name)
                .cmp(&(b.desc.provider, b.desc.name))
                .then((*a as *const Tracepoint).cmp(&(*b as *const Tracepoint)))
        });
        for (i, tp) in tps.iter().enumerate() {
            // Relaxed: see Tracepoint::id.
            tp.id.store(i as u32, Ordering::Relaxed);
        }
        let mut enabled = vec![false; tps.len()];
        let mut rules = Rules::default();
        if let Ok(spec) = std::env::var("FAULTLINE_EVENTS") {
            rules.spec = EventSpec::parse(&spec);
            for (e, tp) in enabled.iter_mut().zip(&tps) {
                *e = rules.spec.matches(&tp.full_name());
            }
        }
        let probes = tps.iter().map(|_| Vec::new()).collect();
        Registry {
            tps,
            state: Mutex::new(State {
                enabled,
                probes,
                next_handle: 1,
                dynamic: Vec::new(),
                rules,
                follow: Vec::new(),
                listeners: Vec::new(),
            }),
        }
    })
}

pub(crate) fn state() -> MutexGuard<'static, State> {
    crate::sync::lock(&registry().state)
}

/// Recompute tracepoint `id`'s active flag. Caller holds the state lock.
pub(crate) fn update_active(st: &State, id: usize) {
    let Some(tp) = st.tp(id) else {
        return;
    };
    let on = st.enabled.get(id).copied().unwrap_or(false)
        && st.probes.get(id).is_some_and(|p| !p.is_empty());
    // Relaxed: the flag is a hint for the call site (see is_active); the probe arrays it leads
    // to are published with SeqCst swaps.
    tp.active.store(on, Ordering::Relaxed);
}

/// The tracepoints linked into the executable, sorted by name, index = [`Tracepoint::id`]
/// (run-time ones: [`all_tracepoints`]).
pub fn tracepoints() -> &'static [&'static Tracepoint] {
    &registry().tps
}

/// The tracepoint named exactly `provider:name` (link-time or run-time).
pub fn find(full_name: &str) -> Option<&'static Tracepoint> {
    state().all().find(|tp| name_eq(tp, full_name))
}

fn name_eq(tp: &Tracepoint, full: &str) -> bool {
    full.split_once(':')
        .is_some_and(|(p, n)| p == tp.desc.provider && n == tp.desc.name)
}

/// Tracepoints whose `provider:name` matches `glob` (`*`, `?`; anything else literal).
pub fn matching(glob: &str) -> Vec<&'static Tracepoint> {
    all_tracepoints()
        .into_iter()
        .filter(|tp| glob_match(glob.as_bytes(), tp.full_name().as_bytes()))
        .collect()
}

/// Enable the tracepoints matching `glob`; returns how many matched.
pub fn enable(glob: &str) -> usize {
    state().rules.push(glob, true);
    set_enabled(|name| glob_match(glob.as_bytes(), name.as_bytes()).then_some(true))
}

/// Disable the tracepoints matching `glob`; returns how many matched.
pub fn disable(glob: &str) -> usize {
    state().rules.push(glob, false);
    set_enabled(|name| glob_match(glob.as_bytes(), name.as_bytes()).then_some(false))
}

/// Replace every tracepoint's enabled flag by what the spec says (same syntax as
/// `FAULTLINE_EVENTS`); returns how many are now enabled.
pub fn set_events(spec: &str) -> usize {
    let spec = EventSpec::parse(spec);
    state().rules = Rules {
        spec: spec.clone(),
        ops: Vec::new(),
    };
    set_enabled(|name| Some(spec.matches(name)));
    let st = state();
    st.enabled.iter().filter(|&&e| e).count()
}

fn set_enabled(f: impl Fn(&str) -> Option<bool>) -> usize {
    let mut st = state();
    let mut n = 0;
    let all: Vec<&'static Tracepoint> = st.all().collect();
    for (id, tp) in all.into_iter().enumerate() {
        if let Some(on) = f(&tp.full_name()) {
            n += 1;
            st.enabled[id] = on;
            update_active(&st, id);
        }
    }
    n
}

/// A parsed `FAULTLINE_EVENTS`-style list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventSpec {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl EventSpec {
    /// Parse `glob,glob,-glob`; blanks around items are ignored, empty items skipped.
    pub fn parse(spec: &str) -> Self {
        let mut s = EventSpec::default();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.strip_prefix('-') {
                Some(ex) => s.exclude.push(ex.trim().to_string()),
                None => s.include.push(item.to_string()),
            }
        }
        if s.include.is_empty() && !s.exclude.is_empty() {
            s.include.push("*".to_string());
        }
        s
    }

    /// Matches an inclusion and no exclusion.
    pub fn matches(&self, full_name: &str) -> bool {
        let n = full_name.as_bytes();
        self.include.iter().any(|g| glob_match(g.as_bytes(), n))
            && !self.exclude.iter().any(|g| glob_match(g.as_bytes(), n))
    }
}

/// Glob match with `*` (any run, including empty) and `?` (one byte); see
/// [`faultline_schema::glob_match_by`].
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    faultline_schema::glob_match_by(pat, s, b'*', b'?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        assert!(m("myapp:*", "myapp:request"));
        assert!(m("*:request", "myapp:request"));
        assert!(!m("*:request", "myapp:requests"));
        assert!(m("*", ""));
        assert!(m("?", "a"));
        assert!(!m("?", ""));
        assert!(!m("?", "ab"));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYb"));
        assert!(m("my?pp:re*", "myapp:request"));
        assert!(m("**", "x"));
        assert!(!m("", "x"));
        assert!(m("", ""));
    }

    #[test]
    fn event_spec() {
        let s = EventSpec::parse(" myapp:* , -myapp:secret,other:x ");
        assert!(s.matches("myapp:request"));
        assert!(!s.matches("myapp:secret"));
        assert!(s.matches("other:x"));
        assert!(!s.matches("other:y"));
        let s = EventSpec::parse("-myapp:*");
        assert!(s.matches("other:y"));
        assert!(!s.matches("myapp:y"));
        assert!(!EventSpec::parse("").matches("a:b"));
        assert!(!EventSpec::parse(",,").matches("a:b"));
    }
}
