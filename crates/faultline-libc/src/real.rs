//! The real libc functions behind the wrappers: `dlsym(RTLD_NEXT, name)`, cached.
//!
//! Every interposed symbol has a slot ([`Sym`] names it). [`resolve_all`] fills every slot in
//! the library constructor, so that later wrapper calls — including calls from signal handlers,
//! where `dlsym` is not safe — only load a pointer. A call that arrives before the constructor
//! (another preloaded library's constructor) resolves its own slot on the spot. A symbol the
//! next objects do not define stays null: the wrapper then fails with `ENOSYS` instead of
//! calling through a null pointer.
//!
//! `dlsym` itself may allocate (its error buffer) but calls none of the interposed functions,
//! so resolution cannot recurse into a wrapper.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

macro_rules! symbols {
    ($($id:ident = $name:literal;)*) => {
        /// One interposed symbol.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        pub(crate) enum Sym { $($id),* }

        const NAMES: &[&CStr] = &[$($name),*];
    };
}

symbols! {
    open = c"open"; open64 = c"open64"; open_2 = c"__open_2"; open64_2 = c"__open64_2";
    openat = c"openat"; openat64 = c"openat64"; openat_2 = c"__openat_2";
    openat64_2 = c"__openat64_2";
    creat = c"creat"; creat64 = c"creat64"; close = c"close";
    read = c"read"; read_chk = c"__read_chk"; write = c"write";
    pread = c"pread"; pread64 = c"pread64"; pread_chk = c"__pread_chk";
    pread64_chk = c"__pread64_chk"; pwrite = c"pwrite"; pwrite64 = c"pwrite64";
    readv = c"readv"; writev = c"writev"; preadv = c"preadv"; preadv64 = c"preadv64";
    pwritev = c"pwritev"; pwritev64 = c"pwritev64";
    stat = c"stat"; stat64 = c"stat64"; lstat = c"lstat"; lstat64 = c"lstat64";
    fstat = c"fstat"; fstat64 = c"fstat64"; fstatat = c"fstatat"; fstatat64 = c"fstatat64";
    xstat = c"__xstat"; xstat64 = c"__xstat64"; lxstat = c"__lxstat";
    lxstat64 = c"__lxstat64"; fxstat = c"__fxstat"; fxstat64 = c"__fxstat64";
    fxstatat = c"__fxstatat"; fxstatat64 = c"__fxstatat64";
    statx = c"statx"; access = c"access";
    unlink = c"unlink"; unlinkat = c"unlinkat"; rename = c"rename"; renameat = c"renameat";
    mkdir = c"mkdir"; mkdirat = c"mkdirat";
    execve = c"execve"; execv = c"execv"; execvp = c"execvp"; execvpe = c"execvpe";
    fork = c"fork"; posix_spawn = c"posix_spawn"; posix_spawnp = c"posix_spawnp";
    socket = c"socket"; connect = c"connect"; bind = c"bind"; accept = c"accept";
    accept4 = c"accept4"; send = c"send"; sendto = c"sendto"; recv = c"recv";
    recvfrom = c"recvfrom";
    mmap = c"mmap"; mmap64 = c"mmap64"; munmap = c"munmap";
    exit = c"exit"; exit_ = c"_exit"; exit_upper = c"_Exit";
    syscall = c"syscall";
}

const N: usize = NAMES.len();

static SLOTS: [AtomicPtr<c_void>; N] = [const { AtomicPtr::new(std::ptr::null_mut()) }; N];

fn lookup(s: Sym) -> *mut c_void {
    let name = NAMES[s as usize];
    // SAFETY: RTLD_NEXT is a valid pseudo-handle in a shared object; `name` is NUL-terminated.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

/// The real function for `s`, or null if no later object defines it.
#[inline(always)]
pub(crate) fn get(s: Sym) -> *mut c_void {
    // Relaxed: a pointer value published by any thread is as good as our own lookup (the
    // function it points to is immutable code); a race only repeats the lookup.
    let p = SLOTS[s as usize].load(Ordering::Relaxed);
    if !p.is_null() {
        return p;
    }
    let p = lookup(s);
    SLOTS[s as usize].store(p, Ordering::Relaxed);
    p
}

/// Resolve every slot now (library constructor).
pub(crate) fn resolve_all() {
    for (i, slot) in SLOTS.iter().enumerate() {
        let name = NAMES[i];
        // SAFETY: as in `lookup`.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        // Relaxed: see `get`.
        slot.store(p, Ordering::Relaxed);
    }
}

/// `real!(Sym::open, fn(*const c_char, c_int, mode_t) -> c_int)`: the real function as a typed
/// `Option<unsafe extern "C" fn ...>` (`None` if libc does not define it).
macro_rules! real {
    ($s:ident, fn($($t:ty),* $(,)?) $(-> $r:ty)?) => {{
        let p = $crate::real::get($crate::real::Sym::$s);
        if p.is_null() {
            None
        } else {
            // SAFETY: `p` is libc's definition of this symbol, whose C prototype is the one
            // written here (checked against the glibc headers; `libc` crate types).
            Some(unsafe {
                std::mem::transmute::<*mut std::ffi::c_void, unsafe extern "C" fn($($t),*) $(-> $r)?>(p)
            })
        }
    }};
}
pub(crate) use real;
