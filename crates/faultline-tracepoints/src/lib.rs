//! Typed tracepoints, probes with safe (SRCU) reclamation, and copies from untrusted memory.
//!
//! ```
//! use faultline_tracepoints::{tracepoint, trace, CStrPtr, RawBuf};
//!
//! tracepoint!(pub MYAPP_REQUEST, "myapp", "request",
//!     { id: u64, ok: bool, path: &str, body: &[u8], name: CStrPtr, buf: RawBuf });
//!
//! fn handle(id: u64, path: &str, body: &[u8]) {
//!     let name = CStrPtr(c"worker".as_ptr());
//!     let buf = RawBuf(body.as_ptr(), body.len());
//!     trace!(MYAPP_REQUEST, id, true, path, body, name, buf);
//! }
//! # fn main() { handle(1, "/", b"x"); }
//! ```
//!
//! # Layers
//! * [`registry`] — [`Tracepoint`], the link-time list of every tracepoint
//!   ([`TRACEPOINTS`], `linkme`), tracepoints registered at run time ([`register`], with
//!   [`subscribe`] for the consumer that must describe them), ids, enable/disable by glob and
//!   `FAULTLINE_EVENTS`.
//! * [`payload`] — the [`Payload`] handed to probes and its byte encoding (the
//!   `faultline-schema` contract), robust to memory changing between sizing and writing.
//! * [`probe`] — [`Probe`], registration, dispatch, [`unregister`] /
//!   [`unregister_deferred`], the [`CounterProbe`].
//! * [`fast`] — the recording fast path: `trace!` into the ring buffer when a recorder is the
//!   only probe.
//! * [`srcu`] — the reader/updater protocol protecting probe arrays (model-checked with loom in
//!   `tests/loom.rs`).
//! * `hazard` — asymmetric hazard pointers (plain per-thread stores; the updater pays with
//!   `membarrier`), the usual read side of the fast path's slot (also model-checked in
//!   `tests/loom.rs`).
//! * [`uaccess`] — [`copy_from_user`] and friends: asm copy routines plus a
//!   `SIGSEGV`/`SIGBUS` fix-up handler (read its doc for what it does to signal handling).
//!
//! # Call-site cost
//! [`trace!`] expands to `if TP.is_active() { cold_path(); TP::__fire(args...) }`: a disabled
//! tracepoint is one relaxed load and a not-taken branch (the call laid out of the way, as
//! `std::hint::cold_path` asks), and the arguments are not evaluated. `__fire` is a generated
//! `#[inline(never)]` function taking the declared argument types (so arguments are
//! type-checked like a function call); it builds the payload (references to the arguments, no
//! copy) and calls `Tracepoint::fire_fields`: the recording fast path ([`fast`]: straight into
//! the ring buffer, encoding generated for the tracepoint's field types with constant-size
//! stores and lengths summed at compile time where they are constants, no virtual call) when
//! a recorder is the tracepoint's only probe, and [`Tracepoint::fire`] (every probe, through
//! [`Probe::call`]) otherwise. (`__fire` itself is not `#[cold]`: measured, the hot-path code
//! LLVM lays out for a cold function cost the event about half a nanosecond.)
//!
//! [`try_trace!`] is the same call site returning a [`TraceOutcome`] (committed, lost and why,
//! delivered to non-recording probes, or disabled): it calls the generated `__try_fire`, which
//! calls [`Tracepoint::fire_outcome`], which asks each probe through
//! [`Probe::call_outcome`] ([`outcome`]). `trace!` does not pay for it.
//!
//! # The recorder
//! A ring-buffer recorder is one more [`Probe`]: in `call` it takes `tp.id()`, asks
//! `payload.size()` (may fault; preemptible), reserves that many bytes, then
//! `payload.write(slot)` (never writes more than the slot) and commits
//! `WriteOutcome::written` bytes (or the whole slot: the tail is zero-filled).

mod cpu;
pub mod fast;
mod hazard;
pub mod outcome;
pub mod payload;
pub mod probe;
pub mod registry;
pub mod srcu;
mod sync;
pub mod uaccess;

pub use fast::{FastCounts, FastTarget};
pub use faultline_schema as schema;
pub use outcome::{LossCause, TraceOutcome};
pub use payload::{
    CStrPtr, EncodedPayload, Payload, RawBuf, RawIov, WriteOutcome, MAX_CSTR_LEN, MAX_IOV,
    MAX_RAW_LEN,
};
pub use probe::{
    grace_period_busy_polls, reclaim_barrier, refresh_fast, register_probe,
    register_probe_following, set_srcu_flavour, srcu_flavour, unregister, unregister_deferred,
    CounterProbe, Probe, ProbeHandle, ProbeKind, RegisterError,
};
pub use registry::{
    all_tracepoints, disable, enable, find, glob_match, matching, register, set_events, subscribe,
    tracepoints, unsubscribe, EventSpec, Listener, ListenerHandle, Tracepoint, TracepointError,
    MAX_TRACEPOINTS, TRACEPOINTS,
};
pub use srcu::Flavour;
pub use uaccess::{
    copy_from_user, copy_from_user_vm, fault_handler_installed, install_fault_handler,
    strncpy_from_user, strnlen_user, StrFault,
};

/// Items the macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::payload::{FieldValue, Fields, FieldsPayload, Writer};
    pub use faultline_schema::{EventDesc, FieldDesc, FieldType};
    pub use linkme;
}

/// Declare a tracepoint. Must be used at module level (not inside a function body: the
/// generated module refers to the static through `super::`):
/// `tracepoint!(VIS NAME, "provider", "name", { field: Type, ... });`. Doc comments and
/// attributes written before `VIS NAME`, inside the call, go on the static.
///
/// Field types: `u8`..`u64`, `i8`..`i64`, `f32`, `f64`, `bool`, `&str`, `&[u8]`, [`CStrPtr`],
/// [`RawBuf`]. Defines `static NAME: Tracepoint` (registered in [`TRACEPOINTS`] at link time)
/// and a hidden module `NAME` with its [`EventDesc`](faultline_schema::EventDesc) and the
/// `__fire` function [`trace!`] calls.
#[macro_export]
macro_rules! tracepoint {
    ($(#[$attr:meta])* $vis:vis $name:ident, $provider:expr, $event:expr, { $($field:ident : $ty:ty),* $(,)? } $(,)?) => {
        $(#[$attr])*
        $vis static $name: $crate::Tracepoint = $crate::Tracepoint::new(&$name::DESC);

        #[allow(non_snake_case, unused_imports, dead_code, unused_mut, unused_assignments)]
        #[allow(clippy::too_many_arguments)]
        #[doc(hidden)]
        $vis mod $name {
            use super::*;

            const N: usize = 0 $(+ 1 + (<$ty as $crate::__private::FieldValue>::RAW as usize)
                + (<$ty as $crate::__private::FieldValue>::TRUNCATED as usize))*;

            pub(super) static FIELDS: [$crate::__private::FieldDesc; N] = {
                let mut out = [$crate::__private::FieldDesc {
                    name: "",
                    ty: $crate::__private::FieldType::U8,
                }; N];
                let mut i = 0usize;
                $(
                    if <$ty as $crate::__private::FieldValue>::RAW {
                        out[i] = $crate::__private::FieldDesc {
                            name: concat!(stringify!($field), "_faulted"),
                            ty: $crate::__private::FieldType::U32,
                        };
                        i += 1;
                    }
                    if <$ty as $crate::__private::FieldValue>::TRUNCATED {
                        out[i] = $crate::__private::FieldDesc {
                            name: concat!(stringify!($field), "_truncated"),
                            ty: $crate::__private::FieldType::U64,
                        };
                        i += 1;
                    }
                    out[i] = $crate::__private::FieldDesc {
                        name: stringify!($field),
                        ty: <$ty as $crate::__private::FieldValue>::TYPE,
                    };
                    i += 1;
                )*
                out
            };

            pub static DESC: $crate::__private::EventDesc = $crate::__private::EventDesc {
                provider: $provider,
                name: $event,
                fields: &FIELDS,
            };

            #[$crate::__private::linkme::distributed_slice($crate::TRACEPOINTS)]
            #[linkme(crate = $crate::__private::linkme)]
            static REGISTERED: &'static $crate::Tracepoint = &super::$name;

            #[inline(never)]
            pub fn __fire($($field: $ty),*) {
                super::$name.fire_fields($crate::__nest!($(&$field),*));
            }

            #[inline(never)]
            pub fn __try_fire($($field: $ty),*) -> $crate::TraceOutcome {
                let payload = $crate::__private::FieldsPayload($crate::__nest!($(&$field),*));
                super::$name.fire_outcome(&payload)
            }
        }
    };
}

/// Hit a tracepoint: `trace!(NAME, arg, ...)` (or `trace!(path::to::NAME, ...)`). The arguments
/// are evaluated only if the tracepoint is active.
#[macro_export]
macro_rules! trace {
    ($($tp:ident)::+ $(, $arg:expr)* $(,)?) => {
        if $($tp)::+.is_active() {
            ::std::hint::cold_path();
            $($tp)::+::__fire($($arg),*);
        }
    };
}

/// Hit a tracepoint and learn what became of the event: `try_trace!(NAME, arg, ...)` takes
/// the arguments of [`trace!`] and returns a [`TraceOutcome`]. The arguments are evaluated
/// only if the tracepoint is active; otherwise the answer is [`TraceOutcome::Disabled`].
///
/// ```
/// use faultline_tracepoints::{tracepoint, try_trace, TraceOutcome};
///
/// tracepoint!(pub UPLOAD, "myapp", "upload", { bytes: u64 });
///
/// fn upload(bytes: u64, lost: &mut u64) {
///     match try_trace!(UPLOAD, bytes) {
///         TraceOutcome::Lost(cause) => {
///             *lost += 1;
///             eprintln!("upload event lost: {cause}");
///         }
///         TraceOutcome::Committed { .. } | TraceOutcome::Delivered | TraceOutcome::Disabled => {}
///     }
/// }
/// # fn main() { let mut n = 0; upload(1, &mut n); assert_eq!(n, 0); }
/// ```
#[macro_export]
macro_rules! try_trace {
    ($($tp:ident)::+ $(, $arg:expr)* $(,)?) => {
        if $($tp)::+.is_active() {
            $($tp)::+::__try_fire($($arg),*)
        } else {
            $crate::TraceOutcome::Disabled
        }
    };
}

/// Builds the payload cons list `(a, (b, (c, ())))`.
#[doc(hidden)]
#[macro_export]
macro_rules! __nest {
    () => { () };
    ($h:expr $(, $t:expr)*) => { ($h, $crate::__nest!($($t),*)) };
}
