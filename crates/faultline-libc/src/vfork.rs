//! `vfork`, which a C wrapper cannot interpose by calling the real one: the child returns from
//! the wrapper first and reuses its stack frame, which the suspended parent then returns
//! through.
//!
//! So `vfork` here is the system call itself, like libc's: a naked function pops its return
//! address into a register (`rdx`), makes the `vfork` system call, and pushes the address back
//! — the parent's copy of `rdx` survives whatever the child did to the stack. Before the system
//! call it reads the clock ([`vfork_enter`], kept in `r8`, which the system call preserves).
//! After it, each side tail-jumps into Rust with the return address on top of the stack, as if
//! the caller had called that function directly:
//! * the child ([`vfork_child`]) sets the thread's `VFORK_CHILD` flag and returns 0. The child
//!   borrows the parent thread's memory *and thread-local storage*, and rseq is not registered
//!   for it (the kernel drops the registration for `CLONE_VM` children), so it must not write
//!   the ring buffer: with the flag set every wrapper calls libc directly until the child
//!   executes a new image (which re-attaches through the environment and records a
//!   `faultline:process` event) or exits;
//! * the parent ([`vfork_parent`]) clears the flag (the child set it in the parent thread's
//!   TLS), sets `errno` on failure, and records the `vfork` event with the child's pid.

use crate::events::VFORK;
use crate::thread::{in_tracer, may_record, now, pid, set_errno, tid, STATE, VFORK_CHILD};
use libc::pid_t;

extern "C" fn vfork_enter() -> u64 {
    now()
}

extern "C" fn vfork_child() -> pid_t {
    let _ = STATE.try_with(|s| s.flags.set(s.flags.get() | VFORK_CHILD));
    0
}

extern "C" fn vfork_parent(raw: i64, t0: u64) -> pid_t {
    let _ = STATE.try_with(|s| s.flags.set(s.flags.get() & !VFORK_CHILD));
    let (ret, e) = if raw < 0 {
        (-1, (-raw) as i32)
    } else {
        (raw as pid_t, 0)
    };
    if VFORK.is_active() && may_record() {
        in_tracer(|| crate::wrap::emit!(VFORK, ret as i64, e, t0, pid(), tid()));
    }
    if e != 0 {
        set_errno(e);
    }
    ret
}

/// Interposed `vfork` (module docs).
///
/// # Safety
/// The C contract of `vfork`: the child may only call `execve`-like functions or `_exit`.
#[no_mangle]
#[unsafe(naked)]
pub unsafe extern "C" fn vfork() -> pid_t {
    std::arch::naked_asm!(
        // Align the stack for the call (rsp is 8 mod 16 at entry).
        "sub rsp, 8",
        "call {enter}",
        "add rsp, 8",
        "mov r8, rax",
        "pop rdx",
        "mov eax, 58", // SYS_vfork
        "syscall",
        "push rdx",
        "test rax, rax",
        "jz 2f",
        "mov rdi, rax",
        "mov rsi, r8",
        "jmp {parent}",
        "2:",
        "jmp {child}",
        enter = sym vfork_enter,
        parent = sym vfork_parent,
        child = sym vfork_child,
    )
}
