//! Copies from untrusted memory that survive bad pointers: [`copy_from_user`],
//! [`strncpy_from_user`], [`strnlen_user`].
//!
//! # Mechanism (the user-space version of the kernel's exception table)
//!
//! The three copy routines are written in x86_64 assembly (`global_asm!`) in one text section
//! that starts at the hidden symbol `faultline_tp_uaccess_start`. Every instruction in them that
//! reads the untrusted source has an entry in a small exception table (also emitted by the
//! assembler, as offsets from the start symbol, so it needs no relocation): *faulting
//! instruction -> recovery label*.
//!
//! A `SIGSEGV`/`SIGBUS` handler (installed once, lazily on the first copy or explicitly with
//! [`install_fault_handler`], with `SA_SIGINFO | SA_ONSTACK | SA_NODEFER`) reads the
//! interrupted `RIP` from the `ucontext`. If it is one of the table's faulting instructions, the
//! handler rewrites `RIP` to the recovery label and returns; the kernel resumes the routine
//! there, with the registers as they were at the fault. The routines keep their progress in
//! registers, so the recovery code knows exactly how far it got:
//!
//! * `copy`: 8-byte words (or `rep movsb` for >= 256 bytes) until the first fault, then byte by
//!   byte from where the fast loop stopped until the exact faulting byte; `rcx` is the number of
//!   bytes not copied. A word load that straddles into a bad page faults as a whole, and
//!   `rep movsb` leaves `rsi`/`rdi`/`rcx` describing the completed iterations, so falling back to
//!   bytes makes the count byte-exact whatever the fast path did.
//! * `strnlen` / `strncpy`: bytes up to 8-byte alignment of the source, then aligned words
//!   (an aligned word never crosses a page: no page is read that bytes would not read), then
//!   bytes from the first word that holds a NUL or faults; the index register is the readable
//!   length, so a fault on a word resumes in the byte loop, which faults on its first byte.
//!
//! When nothing faults the cost is the copy itself: no syscall, no check, no `setjmp`.
//!
//! # What this does to the program's signal handling
//!
//! * faultline becomes the process's `SIGSEGV` and `SIGBUS` handler (`sigaction` is
//!   process-wide). The previous dispositions are saved at install time.
//! * A fault whose `RIP` is not in the table is **chained**: the previous handler is called with
//!   the same `(signo, siginfo, ucontext)` (or just `signo` if it was installed without
//!   `SA_SIGINFO`), with its `sa_mask` (plus the signal unless it used `SA_NODEFER`) blocked for
//!   the duration of the call. If there was no handler (`SIG_DFL`), or the signal was ignored
//!   (the kernel does not let a synchronous fault be ignored), the default disposition is
//!   restored and the handler returns: the faulting instruction runs again and the process dies
//!   of the signal as it would have without faultline. A `SIGSEGV` *sent* with `kill` under
//!   `SIG_DFL` is re-raised. Rust's own stack-overflow handler is such a previous handler and
//!   keeps working.
//! * `SA_RESETHAND` of a previous handler is not emulated (faultline's handler stays).
//! * A handler installed *after* faultline's replaces it: copies then crash on bad pointers
//!   unless that handler chains to the one it replaced. [`fault_handler_installed`] reports
//!   whether faultline's handler is still the current one; [`install_fault_handler`] can be
//!   called again to reinstall it (it then chains to the newer handler).
//! * `SA_NODEFER` lets a probe copy bad memory inside a signal handler that is itself handling
//!   `SIGSEGV` (a blocked synchronous `SIGSEGV` would kill the process instead).
//! * `SA_ONSTACK`: the handler runs on the thread's alternate signal stack if it has one (Rust
//!   threads do); it uses a few hundred bytes of stack.
//!
//! If the handler cannot be installed, copies fall back to `process_vm_readv(2)` on the
//! process itself (one syscall per copy; see [`copy_from_user_vm`]).
//!
//! # Limits
//! These functions accept any pointer value, including dangling and null ones; they only read
//! it. Reading memory that has side effects on read (device memory, a `userfaultfd` range) has
//! those side effects, and a read of a `userfaultfd` range blocks until the fault is resolved.

use std::ffi::c_char;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use libc::{c_int, c_void, siginfo_t};

std::arch::global_asm!(
    ".pushsection .text.faultline_tp_uaccess,\"ax\",@progbits",
    ".p2align 4",
    ".globl faultline_tp_uaccess_start",
    ".hidden faultline_tp_uaccess_start",
    "faultline_tp_uaccess_start:",
    // usize faultline_tp_copy(u8 *dst /*rdi*/, const u8 *src /*rsi*/, usize n /*rdx*/)
    // returns the number of bytes NOT copied (rax).
    ".globl faultline_tp_copy",
    ".hidden faultline_tp_copy",
    ".type faultline_tp_copy,@function",
    "faultline_tp_copy:",
    "    mov rcx, rdx",
    "    cmp rcx, 256",
    "    jb 2f",
    ".Lfl_copy_rep:",
    "    rep movsb",
    "    jmp .Lfl_copy_tail",
    "2:",
    "    cmp rcx, 8",
    "    jb .Lfl_copy_tail",
    "3:",
    ".Lfl_copy_word:",
    "    mov rax, qword ptr [rsi]",
    "    mov qword ptr [rdi], rax",
    "    add rsi, 8",
    "    add rdi, 8",
    "    sub rcx, 8",
    "    cmp rcx, 8",
    "    jae 3b",
    ".Lfl_copy_tail:",
    "    test rcx, rcx",
    "    jz .Lfl_copy_done",
    "4:",
    ".Lfl_copy_byte:",
    "    mov al, byte ptr [rsi]",
    "    mov byte ptr [rdi], al",
    "    inc rsi",
    "    inc rdi",
    "    dec rcx",
    "    jnz 4b",
    ".Lfl_copy_done:",
    "    mov rax, rcx",
    "    ret",
    ".size faultline_tp_copy, . - faultline_tp_copy",
    // {usize len, usize status} faultline_tp_strnlen(const u8 *src /*rdi*/, usize max /*rsi*/)
    // status 0: stopped at a NUL (len = its index) or at max (len = max); 1: fault at src[len].
    // Bytes until src + len is 8-aligned, then aligned 8-byte words while 8 bytes remain
    // before max (an aligned word never crosses a page, so no page is touched that the byte
    // loop would not touch), then bytes again from the first word holding a NUL (or after a
    // fault on a word: the byte loop then faults on that word's first byte, exactly).
    ".globl faultline_tp_strnlen",
    ".hidden faultline_tp_strnlen",
    ".type faultline_tp_strnlen,@function",
    "faultline_tp_strnlen:",
    "    xor eax, eax",
    "    xor edx, edx",
    "    mov r8, 0x0101010101010101",
    "    mov r9, 0x8080808080808080",
    ".Lfl_strnlen_head_loop:",
    "    lea rcx, [rdi + rax]",
    "    test cl, 7",
    "    jz .Lfl_strnlen_words",
    "    cmp rax, rsi",
    "    jae .Lfl_strnlen_done",
    ".Lfl_strnlen_head:",
    "    movzx ecx, byte ptr [rdi + rax]",
    "    test ecx, ecx",
    "    jz .Lfl_strnlen_done",
    "    inc rax",
    "    jmp .Lfl_strnlen_head_loop",
    ".Lfl_strnlen_words:",
    "    lea rcx, [rax + 8]",
    "    cmp rcx, rsi",
    "    ja .Lfl_strnlen_bytes",
    ".Lfl_strnlen_word:",
    "    mov rcx, qword ptr [rdi + rax]",
    // A zero byte in rcx iff (rcx - 0x01..01) & !rcx & 0x80..80 != 0.
    "    mov r10, rcx",
    "    sub r10, r8",
    "    not rcx",
    "    and r10, rcx",
    "    and r10, r9",
    "    jnz .Lfl_strnlen_bytes",
    "    add rax, 8",
    "    jmp .Lfl_strnlen_words",
    ".Lfl_strnlen_bytes:",
    "    cmp rax, rsi",
    "    jae .Lfl_strnlen_done",
    ".Lfl_strnlen_load:",
    "    movzx ecx, byte ptr [rdi + rax]",
    "    test ecx, ecx",
    "    jz .Lfl_strnlen_done",
    "    inc rax",
    "    jmp .Lfl_strnlen_bytes",
    ".Lfl_strnlen_done:",
    "    ret",
    ".Lfl_strnlen_fault:",
    "    mov edx, 1",
    "    ret",
    ".size faultline_tp_strnlen, . - faultline_tp_strnlen",
    // {usize len, usize status} faultline_tp_strncpy(u8 *dst /*rdi*/, const u8 *src /*rsi*/,
    //                                               usize n /*rdx*/)
    // status 0: copied a NUL to dst[len]; 1: no NUL in n bytes (len = n); 2: fault at src[len].
    // The same loops as strnlen; a word is stored only when it holds no NUL and fits before
    // n, so dst is written exactly up to the NUL (or the fault, or n) as the byte loop does.
    ".globl faultline_tp_strncpy",
    ".hidden faultline_tp_strncpy",
    ".type faultline_tp_strncpy,@function",
    "faultline_tp_strncpy:",
    "    xor eax, eax",
    "    mov r8, 0x0101010101010101",
    "    mov r9, 0x8080808080808080",
    ".Lfl_strncpy_head_loop:",
    "    lea rcx, [rsi + rax]",
    "    test cl, 7",
    "    jz .Lfl_strncpy_words",
    "    cmp rax, rdx",
    "    jae .Lfl_strncpy_full",
    ".Lfl_strncpy_head:",
    "    movzx ecx, byte ptr [rsi + rax]",
    "    mov byte ptr [rdi + rax], cl",
    "    test ecx, ecx",
    "    jz .Lfl_strncpy_nul",
    "    inc rax",
    "    jmp .Lfl_strncpy_head_loop",
    ".Lfl_strncpy_words:",
    "    lea rcx, [rax + 8]",
    "    cmp rcx, rdx",
    "    ja .Lfl_strncpy_bytes",
    ".Lfl_strncpy_word:",
    "    mov rcx, qword ptr [rsi + rax]",
    "    mov r10, rcx",
    "    sub r10, r8",
    "    mov r11, rcx",
    "    not r11",
    "    and r10, r11",
    "    and r10, r9",
    "    jnz .Lfl_strncpy_bytes",
    "    mov qword ptr [rdi + rax], rcx",
    "    add rax, 8",
    "    jmp .Lfl_strncpy_words",
    ".Lfl_strncpy_bytes:",
    "    cmp rax, rdx",
    "    jae .Lfl_strncpy_full",
    ".Lfl_strncpy_load:",
    "    movzx ecx, byte ptr [rsi + rax]",
    "    mov byte ptr [rdi + rax], cl",
    "    test ecx, ecx",
    "    jz .Lfl_strncpy_nul",
    "    inc rax",
    "    jmp .Lfl_strncpy_bytes",
    ".Lfl_strncpy_nul:",
    "    xor edx, edx",
    "    ret",
    ".Lfl_strncpy_full:",
    "    mov edx, 1",
    "    ret",
    ".Lfl_strncpy_fault:",
    "    mov edx, 2",
    "    ret",
    ".size faultline_tp_strncpy, . - faultline_tp_strncpy",
    ".globl faultline_tp_uaccess_end",
    ".hidden faultline_tp_uaccess_end",
    "faultline_tp_uaccess_end:",
    ".popsection",
    // Exception table: pairs of (faulting instruction, recovery label), as u32 offsets from
    // faultline_tp_uaccess_start.
    ".pushsection .rodata.faultline_tp_extable,\"a\",@progbits",
    ".p2align 2",
    ".globl faultline_tp_extable",
    ".hidden faultline_tp_extable",
    "faultline_tp_extable:",
    ".long .Lfl_copy_rep - faultline_tp_uaccess_start, .Lfl_copy_tail - faultline_tp_uaccess_start",
    ".long .Lfl_copy_word - faultline_tp_uaccess_start, .Lfl_copy_tail - faultline_tp_uaccess_start",
    ".long .Lfl_copy_byte - faultline_tp_uaccess_start, .Lfl_copy_done - faultline_tp_uaccess_start",
    ".long .Lfl_strnlen_head - faultline_tp_uaccess_start, .Lfl_strnlen_fault - faultline_tp_uaccess_start",
    ".long .Lfl_strnlen_word - faultline_tp_uaccess_start, .Lfl_strnlen_bytes - faultline_tp_uaccess_start",
    ".long .Lfl_strnlen_load - faultline_tp_uaccess_start, .Lfl_strnlen_fault - faultline_tp_uaccess_start",
    ".long .Lfl_strncpy_head - faultline_tp_uaccess_start, .Lfl_strncpy_fault - faultline_tp_uaccess_start",
    ".long .Lfl_strncpy_word - faultline_tp_uaccess_start, .Lfl_strncpy_bytes - faultline_tp_uaccess_start",
    ".long .Lfl_strncpy_load - faultline_tp_uaccess_start, .Lfl_strncpy_fault - faultline_tp_uaccess_start",
    ".popsection",
);

/// Number of entries in `faultline_tp_extable` (must match the `.long` lines above).
const EXTABLE_LEN: usize = 9;

#[repr(C)]
struct Pair {
    a: usize,
    b: usize,
}

extern "C" {
    static faultline_tp_uaccess_start: u8;
    static faultline_tp_uaccess_end: u8;
    static faultline_tp_extable: [[u32; 2]; EXTABLE_LEN];
    fn faultline_tp_copy(dst: *mut u8, src: *const u8, n: usize) -> usize;
    fn faultline_tp_strnlen(src: *const u8, max: usize) -> Pair;
    fn faultline_tp_strncpy(dst: *mut u8, src: *const u8, n: usize) -> Pair;
}

/// Where execution resumes if the instruction at `rip` faulted, or `None` if `rip` is not one of
/// the copy routines' source reads. Async-signal-safe: reads only immutable static data.
fn fixup_for(rip: usize) -> Option<usize> {
    let start = &raw const faultline_tp_uaccess_start as usize;
    let end = &raw const faultline_tp_uaccess_end as usize;
    if rip < start || rip >= end {
        return None;
    }
    let off = rip - start;
    // SAFETY: the table is immutable data emitted by the global_asm above, with exactly
    // EXTABLE_LEN entries.
    let table = unsafe { &faultline_tp_extable };
    table
        .iter()
        .find(|e| e[0] as usize == off)
        .map(|e| start + e[1] as usize)
}

const HANDLED_SIGNALS: [c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The dispositions that were in place before faultline's handler, one per handled signal.
struct PrevActions {
    actions: [std::cell::UnsafeCell<MaybeUninit<libc::sigaction>>; 2],
    valid: [AtomicBool; 2],
}

// SAFETY: `actions[i]` is written only by `install_fault_handler` (serialized by INSTALL_LOCK)
// *before* `valid[i]` is set with Release and before faultline's handler is installed for that
// signal; the handler reads it only after an Acquire load of `valid[i]` returned true.
unsafe impl Sync for PrevActions {}

static PREV: PrevActions = PrevActions {
    actions: [
        std::cell::UnsafeCell::new(MaybeUninit::uninit()),
        std::cell::UnsafeCell::new(MaybeUninit::uninit()),
    ],
    valid: [AtomicBool::new(false), AtomicBool::new(false)],
};

const STATE_UNTRIED: u8 = 0;
const STATE_INSTALLED: u8 = 1;
const STATE_FAILED: u8 = 2;

/// Whether the fault handler is installed; written under INSTALL_LOCK.
static STATE: AtomicU8 = AtomicU8::new(STATE_UNTRIED);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

fn sig_slot(sig: c_int) -> Option<usize> {
    HANDLED_SIGNALS.iter().position(|&s| s == sig)
}

/// Install (or reinstall) faultline's `SIGSEGV`/`SIGBUS` handler, saving the current
/// dispositions to chain to. Idempotent while faultline's handler is still current.
pub fn install_fault_handler() -> io::Result<()> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ours = on_fault as *const () as usize;
    let mut result = Ok(());
    for (i, &sig) in HANDLED_SIGNALS.iter().enumerate() {
        let mut cur = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: query only (act = NULL); `cur` is a valid out-pointer.
        if unsafe { libc::sigaction(sig, std::ptr::null(), cur.as_mut_ptr()) } != 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
        // SAFETY: sigaction succeeded and filled `cur`.
        let cur = unsafe { cur.assume_init() };
        if cur.sa_sigaction == ours {
            continue; // still ours: keep the saved previous disposition
        }
        // Unpublish while rewriting, so a concurrent chained fault cannot read a torn value.
        // Relaxed suffices: the next Release store below orders the rewrite.
        PREV.valid[i].store(false, Ordering::Relaxed);
        // SAFETY: INSTALL_LOCK serializes writers; readers (the handler) only read after the
        // Acquire load of `valid[i]` that pairs with the Release store below.
        unsafe { (*PREV.actions[i].get()).write(cur) };
        // Release: pairs with the Acquire load in `chain`, publishing the write above.
        PREV.valid[i].store(true, Ordering::Release);

        let mut act = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: zeroed sigaction is a valid "empty" value; we fill the fields we use.
        let act = unsafe {
            let p = act.as_mut_ptr();
            (*p).sa_sigaction = ours;
            (*p).sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut (*p).sa_mask);
            act.assume_init()
        };
        // SAFETY: `act` is fully initialized; the old action is not needed (saved above).
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
    }
    let state = if result.is_ok() {
        STATE_INSTALLED
    } else {
        STATE_FAILED
    };
    // Release: pairs with the Acquire load in `ensure_handler`; a copier that sees INSTALLED
    // runs after the handler is in place.
    STATE.store(state, Ordering::Release);
    result
}

/// Whether faultline's handler is currently the process's `SIGSEGV` and `SIGBUS` handler (one
/// `sigaction` query per signal; not for hot paths).
pub fn fault_handler_installed() -> bool {
    let ours = on_fault as *const () as usize;
    HANDLED_SIGNALS.iter().all(|&sig| {
        let mut cur = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: query only; `cur` is a valid out-pointer.
        let ok = unsafe { libc::sigaction(sig, std::ptr::null(), cur.as_mut_ptr()) } == 0;
        // SAFETY: zero-initialized, possibly filled by the kernel: valid either way.
        ok && unsafe { cur.assume_init() }.sa_sigaction == ours
    })
}

/// True when the copy routines may rely on the fault handler.
#[inline]
fn ensure_handler() -> bool {
    // Acquire: pairs with the Release store at the end of `install_fault_handler`.
    match STATE.load(Ordering::Acquire) {
        STATE_INSTALLED => true,
        STATE_FAILED => false,
        _ => install_fault_handler().is_ok(),
    }
}

/// The signal handler. Async-signal-safe: the fix-up path touches only the ucontext and static
/// data; the chaining path calls only `sigaction`, `pthread_sigmask` and `raise`.
extern "C" fn on_fault(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let uc = ctx as *mut libc::ucontext_t;
    if !uc.is_null() {
        // SAFETY: with SA_SIGINFO the kernel passes a valid ucontext_t as the third argument;
        // it lives on the signal stack for the duration of this handler.
        let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
        let rip = gregs[libc::REG_RIP as usize] as usize;
        if let Some(fix) = fixup_for(rip) {
            gregs[libc::REG_RIP as usize] = fix as i64;
            return;
        }
    }
    // SAFETY: arguments are exactly what the kernel gave us.
    unsafe { chain(sig, info, ctx) };
}

/// Was this signal generated by the kernel for a fault (as opposed to `kill`/`raise`)?
///
/// # Safety
/// `info` is null or the kernel-provided siginfo.
unsafe fn kernel_generated(info: *const siginfo_t) -> bool {
    // SAFETY: caller guarantees `info` is null or valid.
    !info.is_null() && unsafe { (*info).si_code } > 0
}

/// Restore the default disposition; for a fault, returning re-executes the instruction and the
/// default action (terminate + core) happens; a sent signal is re-raised.
///
/// # Safety
/// Called from the signal handler with the kernel-provided `info`.
unsafe fn die_by_default(sig: c_int, info: *const siginfo_t) {
    let mut dfl = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: zeroed sigaction = SIG_DFL with an empty mask and no flags.
    unsafe {
        (*dfl.as_mut_ptr()).sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, dfl.as_ptr(), std::ptr::null_mut());
        if !kernel_generated(info) {
            libc::raise(sig);
        }
    }
}

/// Hand a foreign fault to whatever handled the signal before faultline.
///
/// # Safety
/// Called from the signal handler with the kernel-provided arguments.
unsafe fn chain(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: __errno_location is the calling thread's errno; saved/restored so the
    // interrupted code does not see it change.
    let errno = unsafe { *libc::__errno_location() };
    let slot = sig_slot(sig);
    // Acquire: pairs with the Release store in `install_fault_handler`.
    let prev = match slot {
        Some(i) if PREV.valid[i].load(Ordering::Acquire) => {
            // SAFETY: valid[i] == true means actions[i] was initialized before it was set.
            Some(unsafe { (*PREV.actions[i].get()).assume_init_ref() })
        }
        _ => None,
    };
    match prev {
        None => {
            // SAFETY: as documented on die_by_default.
            unsafe { die_by_default(sig, info) }
        }
        Some(p) if p.sa_sigaction == libc::SIG_DFL => {
            // SAFETY: as above.
            unsafe { die_by_default(sig, info) }
        }
        Some(p) if p.sa_sigaction == libc::SIG_IGN => {
            // The kernel never lets a synchronous fault be ignored; a sent one is ignored.
            // SAFETY: `info` is the kernel's.
            if unsafe { kernel_generated(info) } {
                // SAFETY: as above.
                unsafe { die_by_default(sig, info) }
            }
        }
        Some(p) => {
            let mut mask = p.sa_mask;
            let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
            // SAFETY: `mask` is a copy of a valid sigset; pthread_sigmask is async-signal-safe.
            unsafe {
                if p.sa_flags & libc::SA_NODEFER == 0 {
                    libc::sigaddset(&mut mask, sig);
                }
                libc::pthread_sigmask(libc::SIG_BLOCK, &mask, old.as_mut_ptr());
            }
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the saved value is a 3-argument handler.
                let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the saved value is a 1-argument handler.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
        }
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = errno };
}

/// Copy `dst.len()` bytes from `src`, which may be any address (null, unmapped, `PROT_NONE`,
/// partly mapped). Returns the number of bytes **not** copied: the copy stops at the first
/// unreadable byte, the bytes before it are in `dst`, and the rest of `dst` is zero-filled.
// Safe by design: `src` is never dereferenced by Rust code, only read by the fault-tolerant
// routine (or the kernel), so every pointer value is acceptable.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn copy_from_user(dst: &mut [u8], src: *const u8) -> usize {
    if dst.is_empty() {
        return 0;
    }
    if !ensure_handler() {
        return copy_from_user_vm(dst, src);
    }
    // SAFETY: `dst` is valid for dst.len() bytes of writes. The routine reads the source only
    // through instructions listed in the exception table, so a fault on the source resumes in
    // the routine's recovery code (handler installed, checked above) instead of killing us.
    let left = unsafe { faultline_tp_copy(dst.as_mut_ptr(), src, dst.len()) };
    let left = left.min(dst.len());
    if left != 0 {
        // Only after a fault: an unconditional `fill` of the (usually empty) tail is a
        // `memset` call on every copy.
        let copied = dst.len() - left;
        dst[copied..].fill(0);
    }
    left
}

/// Copy through `process_vm_readv(2)` on this process: no signal handler involved, one syscall
/// per copy (split at page boundaries so a partly mapped source copies exactly its readable
/// prefix). Same contract as [`copy_from_user`].
// Safe by design: `src` is never dereferenced by Rust code, only read by the fault-tolerant
// routine (or the kernel), so every pointer value is acceptable.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn copy_from_user_vm(dst: &mut [u8], src: *const u8) -> usize {
    let page = page_size();
    let mut done = 0usize;
    while done < dst.len() {
        let addr = (src as usize).wrapping_add(done);
        let to_page_end = page - (addr % page);
        let n = to_page_end.min(dst.len() - done);
        let local = libc::iovec {
            iov_base: dst[done..].as_mut_ptr() as *mut c_void,
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut c_void,
            iov_len: n,
        };
        // SAFETY: `local` describes writable memory inside `dst`; the kernel validates
        // `remote` and returns an error or a short count instead of faulting.
        let r = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if r <= 0 {
            break;
        }
        done += r as usize;
        if (r as usize) < n {
            break;
        }
    }
    dst[done..].fill(0);
    dst.len() - done
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// A C string read stopped at an unreadable byte: `readable` bytes (none of them NUL) could be
/// read before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrFault {
    /// Bytes read before the unreadable one.
    pub readable: usize,
}

/// Length of the NUL-terminated string at `src`, looking at no more than `max` bytes.
/// `Ok(n)`: `src[n]` is NUL, or `n == max` and there is no NUL in the first `max` bytes.
/// `Err(f)`: byte `f.readable` could not be read and there is no NUL before it.
// Safe by design: `src` is never dereferenced by Rust code, only read by the fault-tolerant
// routine (or the kernel), so every pointer value is acceptable.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn strnlen_user(src: *const c_char, max: usize) -> Result<usize, StrFault> {
    if max == 0 {
        return Ok(0);
    }
    if src.is_null() {
        return Err(StrFault { readable: 0 });
    }
    if !ensure_handler() {
        return strnlen_vm(src as *const u8, max);
    }
    // SAFETY: the routine only reads `src[..max]` through exception-table instructions; a fault
    // resumes in its recovery code (handler installed, checked above).
    let r = unsafe { faultline_tp_strnlen(src as *const u8, max) };
    if r.b == 0 {
        Ok(r.a.min(max))
    } else {
        Err(StrFault {
            readable: r.a.min(max),
        })
    }
}

/// Copy the NUL-terminated string at `src` into `dst`, including the NUL, reading at most
/// `dst.len()` bytes (like the kernel's `strncpy_from_user`).
/// `Ok(n)` with `n < dst.len()`: `dst[..n]` is the string and `dst[n] == 0`.
/// `Ok(n)` with `n == dst.len()`: no NUL in the first `dst.len()` bytes; `dst` is full and
/// **not** terminated. `Err(f)`: byte `f.readable` could not be read; `dst[..f.readable]` holds
/// the readable prefix (no NUL in it) and `dst[f.readable]`, if it exists, is set to 0.
/// The rest of `dst` is left untouched.
// Safe by design: `src` is never dereferenced by Rust code, only read by the fault-tolerant
// routine (or the kernel), so every pointer value is acceptable.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn strncpy_from_user(dst: &mut [u8], src: *const c_char) -> Result<usize, StrFault> {
    if dst.is_empty() {
        return Ok(0);
    }
    let r = if src.is_null() {
        Err(StrFault { readable: 0 })
    } else if !ensure_handler() {
        strncpy_vm(dst, src as *const u8)
    } else {
        // SAFETY: `dst` is writable for dst.len() bytes and the routine writes at most that
        // many; source reads are exception-table instructions (handler installed).
        let r = unsafe { faultline_tp_strncpy(dst.as_mut_ptr(), src as *const u8, dst.len()) };
        let n = r.a.min(dst.len());
        match r.b {
            0 | 1 => Ok(n),
            _ => Err(StrFault { readable: n }),
        }
    };
    if let Err(f) = r {
        if let Some(b) = dst.get_mut(f.readable) {
            *b = 0;
        }
    }
    r
}

fn strnlen_vm(src: *const u8, max: usize) -> Result<usize, StrFault> {
    let mut chunk = [0u8; 256];
    let mut done = 0usize;
    while done < max {
        let n = chunk.len().min(max - done);
        let left = copy_from_user_vm(&mut chunk[..n], src.wrapping_add(done));
        let got = n - left;
        if let Some(i) = chunk[..got].iter().position(|&b| b == 0) {
            return Ok(done + i);
        }
        done += got;
        if left > 0 {
            return Err(StrFault { readable: done });
        }
    }
    Ok(max)
}

fn strncpy_vm(dst: &mut [u8], src: *const u8) -> Result<usize, StrFault> {
    let len = match strnlen_vm(src, dst.len()) {
        Ok(n) => n,
        Err(f) => {
            let left = copy_from_user_vm(&mut dst[..f.readable], src);
            return Err(StrFault {
                readable: f.readable - left,
            });
        }
    };
    let n = (len + 1).min(dst.len());
    let left = copy_from_user_vm(&mut dst[..n], src);
    if left > 0 {
        return Err(StrFault { readable: n - left });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extable_entries_point_into_routines() {
        let start = &raw const faultline_tp_uaccess_start as usize;
        let end = &raw const faultline_tp_uaccess_end as usize;
        // SAFETY: immutable static table.
        let table = unsafe { &faultline_tp_extable };
        for e in table {
            assert!(start + (e[0] as usize) < end);
            assert!(start + (e[1] as usize) < end);
            assert_eq!(
                fixup_for(start + e[0] as usize),
                Some(start + e[1] as usize)
            );
        }
        assert_eq!(fixup_for(start + table[0][0] as usize + 1), None);
        assert_eq!(fixup_for(fixup_for as *const () as usize), None);
    }

    #[test]
    fn copies_readable_memory() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 255, 256, 257, 1000] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut dst = vec![0xAAu8; len];
            assert_eq!(copy_from_user(&mut dst, src.as_ptr()), 0);
            assert_eq!(dst, src);
            let mut dst = vec![0xAAu8; len];
            assert_eq!(copy_from_user_vm(&mut dst, src.as_ptr()), 0);
            assert_eq!(dst, src);
        }
    }
}
