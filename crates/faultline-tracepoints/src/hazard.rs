//! Asymmetric hazard pointers: the read side of the recording fast path's slot.
//!
//! A reader (a `trace!` call on the fast path, [`crate::fast`]) announces the slot it is about
//! to use in a per-thread *hazard record* with plain stores, no locked instruction, no fence
//! and no rseq critical section; an updater that retired a slot waits, before freeing it, until
//! no record announces it. The ordering a reader does not pay for is paid by the updater, once
//! per wait, with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (the same asymmetric fence as
//! the rseq flavour of [`crate::srcu`]).
//!
//! # Data
//! A domain ([`Hazards`]) is a push-only list of records ([`Record`]), never freed: a thread
//! takes a free record (or adds a new one) on its first fast-path call and gives it back when
//! it exits; the number of records is the peak number of threads that used the fast path at
//! once. A record has [`DEPTH`] hazard words; a call announces in the first null one (the
//! first, unless a signal handler traces inside a trace).
//!
//! # Who writes what
//! * `hz[i]` of a record: only the thread that holds the record (its fast path, or a signal
//!   handler running on that thread), with plain stores.
//! * `taken`: the thread taking the record (a compare-exchange from false) and the same thread
//!   when it exits (a store of false).
//! * `next`, `head`: written once per record, by the thread that pushes it (compare-exchange
//!   on `head`).
//! * Updaters only read.
//!
//! # Protocol
//! ```text
//! reader (holding record r):                    updater (retiring P_old):
//!   p = slot                         (load)       slot.swap(P_new)          (SeqCst)
//!   if p == null: no fast path                    fence(SeqCst)                U1
//!   d = first i with r.hz[i] == null              membarrier(PRIVATE_EXPEDITED) M
//!   r.hz[d] = p                      (store) H1   for every record r, word i:
//!   compiler barrier                                while r.hz[i] == P_old     (Acquire)
//!   if slot != p: release; no fast path   H2          backoff
//!   ... use *p: reserve, encode (may fault          free(P_old)
//!       and sleep), commit, count ...
//!   r.hz[d] = null          (Release store) H3
//! ```
//! # Why it is safe
//! Claim: if a reader passed H2 with `p == P_old`, its H3 happens-before `free(P_old)`.
//!
//! 1. *The updater sees the hazard, or the reader sees the swap* (store-buffering: reader
//!    store H1, load H2; updater store swap, load hz). `M` supplies the reader's barrier: each
//!    thread of the process executes a full barrier at some point `B` between the start and
//!    the end of `M` (an IPI if it is running, the scheduler otherwise). If `B` follows H1 in
//!    the reader's program order, H1 is visible to the updater's scan, which follows `M`. If
//!    `B` precedes H1, it precedes H2, which then reads the swapped value (the swap precedes
//!    `M`), not `P_old`: the reader backs out without using `P_old`.
//! 2. *Once the scan sees a value other than `P_old`, the reader is done with it*: a reader
//!    that announced `P_old` and passed H2 keeps it in `hz[d]` until H3; the Acquire load that
//!    reads H3's null (or a later value) synchronizes with H3, a Release store, so every use
//!    of `*p` happens-before the free. A later value in `hz[d]` is written after H3: by the
//!    same thread, or by a later holder of the record, which took it (Acquire) after this
//!    one gave it back (Release, after H3). Every store to a hazard word is a Release store
//!    (H1 too), so a scan that reads a later value still synchronizes with its writer, and
//!    through that chain H3 happens-before the free. (loom finds the use-after-free when H1
//!    is Relaxed and records are reused, although x86 would not show it.)
//!
//! The reader reads nothing through `p` before H2: an announced pointer may already be freed
//! (and its address reused), but then H2 sees a different value, or sees the new object at
//! the same address, which is live and published. Signal handlers: a handler that traces on
//! a thread inside the fast path finds the interrupted call's word non-null and takes a later
//! one, so it never overwrites an announced hazard; a handler that runs between the
//! interrupted call's check of `hz[d]` and its announcement finds the word null, uses it and
//! clears it again before returning, so the interrupted call then announces in a null word as
//! it expected. A handler leaves every word as it found it. With all [`DEPTH`] words taken
//! the caller falls back to the SRCU read side.
//!
//! `tests/loom.rs` model-checks this file (compiled unchanged against loom) and shows that an
//! updater that skips `M` frees under a reader.
//!
//! # Costs
//! Reader: a load of its first word, one store to enter and one to leave, one reload of the
//! slot; all on the thread's own record (one cache line). Updater: one `membarrier` system call and
//! a scan of `DEPTH` words per record. A reader blocked for a long time (page fault,
//! `userfaultfd`) delays only updaters retiring the slot it announced. A thread that dies
//! inside the fast path (a `pthread_exit` from a signal handler) leaves its hazard announced
//! for ever, and updaters retiring that slot never return: its record is not reused. Likewise
//! a `fork` child inherits the records of the parent's other threads as they were: one that
//! was inside the fast path at the fork announces its slot for ever in the child (the SRCU
//! domains have the same limit: such a reader's counts stay unbalanced).

use crate::sync::{asym_load, asym_store, compiler_fence, fence, membarrier, wait_backoff};
use crate::sync::{AtomicBool, AtomicPtr, Ordering};

/// Hazard words per record: the fast path nested this deep on one thread (signal handlers
/// tracing inside a trace) falls back to the SRCU read side.
pub const DEPTH: usize = 4;

/// One thread's hazard record (see the module docs), with `X`, data of the domain's user that
/// travels with the record (created with it, never freed, handed from thread to thread with
/// it; the crate's fast path keeps per-thread event counts there). `repr(C)`: the first
/// hazard word is at offset 0, so a pointer to a lone `AtomicPtr` whose value is never null
/// can stand in for a record whose first word is always taken ([`Record::first_word_free`]).
#[repr(C, align(128))]
pub struct Record<X = ()> {
    hz: [AtomicPtr<()>; DEPTH],
    /// Held by a live thread.
    taken: AtomicBool,
    /// The next record of the domain's list (written once, before the record is published).
    next: AtomicPtr<Record<X>>,
    /// The user's data (written only by the thread holding the record).
    pub extra: X,
}

/// A hazard-pointer domain: the list of every record.
pub struct Hazards<X = ()> {
    head: AtomicPtr<Record<X>>,
}

impl<X: Default> Default for Hazards<X> {
    fn default() -> Self {
        Self::empty()
    }
}

impl Hazards {
    /// An empty domain whose records carry no user data.
    #[allow(dead_code)] // the fast path's records carry counts (Hazards::empty)
    pub fn new() -> Self {
        Self::empty()
    }
}

/// The announcement made by [`Record::protect`]; pass it back to [`Record::release`].
/// The word that holds the announcement: all [`Record::release`] needs (one value to keep
/// across the protected use, not the record and an index).
#[derive(Clone, Copy)]
pub struct Announced<'r>(&'r AtomicPtr<()>);

impl<X: Default> Hazards<X> {
    /// An empty domain.
    pub fn empty() -> Self {
        Hazards {
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Take a free record, or add a new one. Records are never freed (the caller holds the
    /// reference for as long as the thread uses it, then calls [`Hazards::give_back`]).
    pub fn take(&self) -> &Record<X> {
        // Acquire: pairs with the Release compare-exchange that pushed each record, so its
        // fields are initialized when we read them.
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are leaked boxes, never freed.
            let r = unsafe { &*p };
            // A free record was given back with every word null by its last holder, and the
            // Acquire compare-exchange on `taken` below orders those stores before our loads
            // (it pairs with give_back's Release store). A record given back with a word
            // still announced (its holder died inside the fast path) stays taken for ever
            // once we took it here: it is never returned.
            if !r.taken.load(Ordering::Relaxed)
                && r.taken
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                && r.depth() == 0
            {
                return r;
            }
            // Acquire: see the head load.
            p = r.next.load(Ordering::Acquire);
        }
        let r = Box::into_raw(Box::new(Record {
            hz: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            taken: AtomicBool::new(true),
            next: AtomicPtr::new(std::ptr::null_mut()),
            extra: X::default(),
        }));
        // Relaxed: the push below publishes it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `r` is ours until the push succeeds.
            unsafe { &*r }.next.store(head, Ordering::Relaxed);
            // Release: publishes the record's initialized fields to scanners and takers
            // (their Acquire loads of head / next).
            match self
                .head
                .compare_exchange(head, r, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        // SAFETY: leaked, never freed.
        unsafe { &*r }
    }

    /// Give a record back (its thread exits). Every word must be null (no call announced).
    pub fn give_back(&self, r: &Record<X>) {
        // Release: pairs with the Acquire compare-exchange in take (the next holder sees the
        // cleared words).
        r.taken.store(false, Ordering::Release);
    }

    /// Wait until no reader can still use any of `old`, which the caller has already swapped
    /// out of every slot readers load them from. Readers may only use this domain in a
    /// process where the membarrier works (the caller checks it once, before the first
    /// reader); if it fails here (it cannot after a successful one, short of memory
    /// exhaustion) it is retried with backoff: the wait never proceeds without it.
    pub fn synchronize(&self, old: &[*const ()]) {
        self.synchronize_with(old, true)
    }

    /// [`Hazards::synchronize`] without the membarrier: **unsafe**, for the model checker to
    /// show that it is needed.
    #[allow(dead_code)]
    pub fn synchronize_without_membarrier(&self, old: &[*const ()]) {
        self.synchronize_with(old, false)
    }

    /// Every record of the domain, taken or not (for sums over the records' `extra`).
    #[allow(dead_code)] // the fast path's counts; not the model check
    pub fn for_each(&self, mut f: impl FnMut(&Record<X>)) {
        // Acquire: see take.
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are leaked boxes, never freed.
            let r = unsafe { &*p };
            f(r);
            // Acquire: see take.
            p = r.next.load(Ordering::Acquire);
        }
    }

    fn synchronize_with(&self, old: &[*const ()], use_membarrier: bool) {
        if old.is_empty() {
            return;
        }
        // SeqCst fence (U1): orders the caller's swap before the scan below.
        fence(Ordering::SeqCst);
        // M: stands in for the full barrier readers do not execute between H1 and H2 (module
        // doc, point 1).
        if use_membarrier {
            let mut polls = 0u32;
            while !membarrier() {
                polls = polls.saturating_add(1);
                wait_backoff(polls.saturating_add(32));
            }
        }
        // Acquire: see take.
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are leaked boxes, never freed.
            let r = unsafe { &*p };
            for w in &r.hz {
                let mut polls = 0u32;
                // Acquire: pairs with the reader's Release store H3 (module doc, point 2).
                while old.contains(&(w.load(Ordering::Acquire) as *const ())) {
                    polls = polls.saturating_add(1);
                    wait_backoff(polls);
                }
            }
            // Acquire: see take.
            p = r.next.load(Ordering::Acquire);
        }
    }
}

impl<X> Record<X> {
    /// Announce the value of `slot` and return it, if it is non-null and still there after
    /// the announcement (H1, H2); `None` if the slot is null, changed, or every word of the
    /// record is taken (nothing announced then). Only the thread holding the record (or a
    /// signal handler on it) may call this.
    #[allow(dead_code)] // the fast path uses protect_seen; tests/loom.rs this
    #[inline(always)]
    pub fn protect<T>(&self, slot: &AtomicPtr<T>) -> Option<(*const T, Announced<'_>)> {
        // Relaxed: a first look; what counts is the reload after the announcement.
        self.protect_seen(slot, slot.load(Ordering::Relaxed))
    }

    /// [`Record::protect`] for a caller that already loaded the slot (`p`, any earlier value
    /// of it, Relaxed): the announcement and the reload are the same.
    #[inline(always)]
    pub fn protect_seen<T>(
        &self,
        slot: &AtomicPtr<T>,
        p: *mut T,
    ) -> Option<(*const T, Announced<'_>)> {
        if p.is_null() {
            return None;
        }
        // The first word, inline; the others (signal handlers tracing inside a trace) out of
        // line.
        let d = if self.hz[0].load(Ordering::Relaxed).is_null() {
            0
        } else {
            self.free_word()?
        };
        self.announce(d, slot, p)
            .then(|| (p as *const T, Announced(&self.hz[d])))
    }

    /// [`Record::protect_seen`] in the first word only: `None` also when that word is taken
    /// (a signal handler tracing inside a trace; the caller then uses
    /// [`Record::protect_seen`], out of line). What it announced is released with
    /// [`Record::release_first`]. One word known at compile time: nothing to keep across the
    /// protected use but the record.
    #[inline(always)]
    #[allow(dead_code)] // the fast path uses its two halves; tests/loom.rs this
    pub fn protect_first<T>(&self, slot: &AtomicPtr<T>, p: *mut T) -> Option<*const T> {
        // SAFETY: `self` is a record.
        if p.is_null() || !unsafe { Self::first_word_free(self) } {
            return None;
        }
        self.announce_first(slot, p).then_some(p as *const T)
    }

    /// Whether the first hazard word of `rec` is null (the first half of
    /// [`Record::protect_first`]).
    ///
    /// # Safety
    /// `rec` points to a record, or to an `AtomicPtr<()>` that stays non-null for ever (a
    /// stand-in for "no record": then this is false, and the caller must not use `rec` as a
    /// record).
    #[inline(always)]
    pub unsafe fn first_word_free(rec: *const Self) -> bool {
        // SAFETY: `hz[0]` is at offset 0 (repr(C)); per the contract it is an AtomicPtr.
        let w = unsafe { &*(rec as *const AtomicPtr<()>) };
        // Relaxed: only this thread (and its signal handlers, which leave every word as they
        // found it) writes the record's words; a stand-in's never changes.
        w.load(Ordering::Relaxed).is_null()
    }

    /// The second half of [`Record::protect_first`]: H1 and H2 in the first word, which
    /// [`Record::first_word_free`] found null; `p` is non-null.
    #[inline(always)]
    pub fn announce_first<T>(&self, slot: &AtomicPtr<T>, p: *mut T) -> bool {
        self.announce(0, slot, p)
    }

    /// H1 and H2 in word `d` (null now): whether `p` is still the slot's value after the
    /// announcement (if not, the word is null again).
    #[inline(always)]
    fn announce<T>(&self, d: usize, slot: &AtomicPtr<T>, p: *mut T) -> bool {
        // H1 (a plain store): made visible to updaters' scans by their membarrier M. Release:
        // a scan that reads it synchronizes with it, and through the record's hand-over
        // (give_back / take) with the previous holder's H3 (module doc, point 2). A plain
        // `mov` on x86, like Relaxed.
        asym_store(&self.hz[d], p as *mut (), Ordering::Release);
        // Compiler barrier: H2 stays after H1 in program order; the hardware may still
        // perform H2 before H1 is visible, which M accounts for (module doc, point 1).
        compiler_fence(Ordering::SeqCst);
        // H2. Acquire: pairs with the updater's SeqCst swap that published *p (a plain load
        // on x86).
        if asym_load(slot, Ordering::Acquire) != p {
            self.release(Announced(&self.hz[d]));
            return false;
        }
        true
    }

    /// The first null word after the first (which the caller found taken), if any.
    #[cold]
    #[inline(never)]
    fn free_word(&self) -> Option<usize> {
        // Relaxed: only this thread (and its signal handlers, which leave every word as they
        // found it) writes these words.
        (1..DEPTH).find(|&i| self.hz[i].load(Ordering::Relaxed).is_null())
    }

    /// End the use of what [`Record::protect`] announced (H3).
    #[inline(always)]
    pub fn release(&self, a: Announced<'_>) {
        // Compiler barrier: every use of the protected object stays before H3.
        compiler_fence(Ordering::SeqCst);
        // Release (H3): pairs with the updater's Acquire scan; every use of the object
        // happens-before its free (module doc, point 2). A plain store on x86.
        a.0.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// End the use of what [`Record::protect_first`] announced (H3 in the first word).
    #[inline(always)]
    pub fn release_first(&self) {
        self.release(Announced(&self.hz[0]));
    }

    /// The number of words announced now: the nesting depth (for the holder, tests and
    /// diagnostics).
    pub fn depth(&self) -> usize {
        // Relaxed: a snapshot (see take for the ordering its caller there relies on).
        self.hz
            .iter()
            .filter(|w| !w.load(Ordering::Relaxed).is_null())
            .count()
    }
}
