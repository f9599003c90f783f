//! Held page faults: a memory region whose pages, on first touch, block the touching thread
//! for a chosen time and are then filled with a known pattern. Built on `userfaultfd(2)`, for
//! the tests, stress runs and benchmarks that show what a faultable probe does while its
//! source memory is not resident.
//!
//! # How
//! [`HeldFaults::new`] maps an anonymous private region, registers it with a userfaultfd in
//! "missing" mode, and starts a handler thread. A thread touching a missing page sleeps in the
//! kernel until the handler, after sleeping for the current hold time, resolves the fault with
//! `UFFDIO_COPY` of a page filled with [`pattern`]. [`HeldFaults::rearm`] drops the pages
//! (`MADV_DONTNEED`) so the next touch faults again. Faults from user mode and from the
//! kernel (a system call reading the region) are both held.
//!
//! The `userfaultfd` crate was not used: its `-sys` crate runs bindgen (libclang) at build
//! time, which a fresh machine does not have. The few ioctl structures are declared here, as
//! in `<linux/userfaultfd.h>` (x86_64 layout, asserted).
//!
//! # Requirements
//! Linux with userfaultfd and either root/CAP_SYS_PTRACE or `vm.unprivileged_userfaultfd=1`;
//! [`HeldFaults::new`] returns the OS error otherwise, so callers can skip with a reason.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Page size assumed by the region (x86_64).
pub const PAGE: usize = 4096;

const UFFD_API: u64 = 0xAA;
const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
const UFFDIO_WAKE: libc::c_ulong = 0x8010_AA02;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `struct uffd_msg` for a page-fault event.
#[repr(C)]
#[derive(Clone, Copy)]
struct UffdMsg {
    event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    flags: u64,
    address: u64,
    ptid: u64,
}

const _: () = {
    assert!(std::mem::size_of::<UffdioApi>() == 24);
    assert!(std::mem::size_of::<UffdioRange>() == 16);
    assert!(std::mem::size_of::<UffdioRegister>() == 32);
    assert!(std::mem::size_of::<UffdioCopy>() == 40);
    assert!(std::mem::size_of::<UffdMsg>() == 32);
    assert!(std::mem::offset_of!(UffdMsg, address) == 16);
};

/// The byte found at `offset` of a region once its page has been served.
#[inline]
pub fn pattern(offset: usize) -> u8 {
    let x = (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset / PAGE) as u8
}

struct Shared {
    stop: AtomicBool,
    hold_ns: AtomicU64,
    served: AtomicU64,
    /// Faults currently being held (a thread is blocked in one).
    holding: AtomicU64,
}

/// A region of pages whose faults are held. See the module docs.
pub struct HeldFaults {
    addr: *mut u8,
    len: usize,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    _uffd: Arc<OwnedFd>,
}

// SAFETY: the region pointer is only an address handed to users; all mutation of the mapping
// goes through the kernel (faults, UFFDIO_COPY, madvise), which is thread-safe.
unsafe impl Send for HeldFaults {}
// SAFETY: as above; the shared state is atomics.
unsafe impl Sync for HeldFaults {}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl HeldFaults {
    /// A region of `pages` pages whose first touches block for `hold`.
    pub fn new(pages: usize, hold: Duration) -> io::Result<HeldFaults> {
        let len = pages.max(1) * PAGE;
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let uffd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API with a valid uffdio_api.
        cvt(unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api) })?;
        // SAFETY: anonymous private mapping; checked for MAP_FAILED.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: addr as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: registers our own fresh mapping.
        if let Err(e) = cvt(unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut reg) }) {
            // SAFETY: unmapping the mapping created above.
            unsafe { libc::munmap(addr, len) };
            return Err(e);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            hold_ns: AtomicU64::new(hold.as_nanos() as u64),
            served: AtomicU64::new(0),
            holding: AtomicU64::new(0),
        });
        let thread = {
            let shared = shared.clone();
            let uffd = uffd.clone();
            let base = addr as usize;
            std::thread::Builder::new()
                .name("uffd-holder".into())
                .spawn(move || serve(&uffd, &shared, base))?
        };
        Ok(HeldFaults {
            addr: addr as *mut u8,
            len,
            shared,
            thread: Some(thread),
            _uffd: uffd,
        })
    }

    /// Start of the region.
    pub fn as_ptr(&self) -> *const u8 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (a region has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Change how long faults are held from now on.
    pub fn set_hold(&self, hold: Duration) {
        self.shared
            .hold_ns
            .store(hold.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Faults served so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Faults being held right now (some thread is blocked touching the region).
    pub fn holding(&self) -> u64 {
        self.shared.holding.load(Ordering::Relaxed)
    }

    /// Drop every page so the next touch of each faults (and is held) again.
    pub fn rearm(&self) -> io::Result<()> {
        // SAFETY: our own mapping; MADV_DONTNEED on private anonymous memory just discards it.
        cvt(unsafe {
            libc::madvise(
                self.addr as *mut libc::c_void,
                self.len,
                libc::MADV_DONTNEED,
            )
        })
        .map(|_| ())
    }

    /// Drop the pages of `[offset, offset + len)` (rounded out to pages).
    pub fn rearm_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let start = offset / PAGE * PAGE;
        let end = (offset + len).div_ceil(PAGE) * PAGE;
        if end > self.len || start >= end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside the region",
            ));
        }
        // SAFETY: inside our own mapping (checked above).
        cvt(unsafe {
            libc::madvise(
                self.addr.add(start) as *mut libc::c_void,
                end - start,
                libc::MADV_DONTNEED,
            )
        })
        .map(|_| ())
    }
}

impl Drop for HeldFaults {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // SAFETY: our mapping; nobody may use the region after dropping its owner.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

fn serve(uffd: &OwnedFd, shared: &Shared, base: usize) {
    let fd = uffd.as_raw_fd();
    let mut page = vec![0u8; PAGE];
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 20) };
        if n <= 0 {
            continue;
        }
        let mut msg = std::mem::MaybeUninit::<UffdMsg>::zeroed();
        // SAFETY: reading at most one uffd_msg into a buffer of that size.
        let r = unsafe {
            libc::read(
                fd,
                msg.as_mut_ptr() as *mut libc::c_void,
                std::mem::size_of::<UffdMsg>(),
            )
        };
        if r != std::mem::size_of::<UffdMsg>() as isize {
            continue;
        }
        // SAFETY: fully written by the kernel (size checked); all-integer struct.
        let msg = unsafe { msg.assume_init() };
        if msg.event != UFFD_EVENT_PAGEFAULT {
            continue;
        }
        shared.holding.fetch_add(1, Ordering::Relaxed);
        let hold = shared.hold_ns.load(Ordering::Relaxed);
        if hold > 0 {
            std::thread::sleep(Duration::from_nanos(hold));
        }
        let at = (msg.address as usize) & !(PAGE - 1);
        let off = at - base;
        for (i, b) in page.iter_mut().enumerate() {
            *b = pattern(off + i);
        }
        let mut copy = UffdioCopy {
            dst: at as u64,
            src: page.as_ptr() as u64,
            len: PAGE as u64,
            mode: 0,
            copy: 0,
        };
        // SAFETY: UFFDIO_COPY of one page from our buffer into the registered region.
        let r = unsafe { libc::ioctl(fd, UFFDIO_COPY, &mut copy) };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // Already populated by a concurrent copy: just wake the faulting thread.
            let mut range = UffdioRange {
                start: at as u64,
                len: PAGE as u64,
            };
            // SAFETY: UFFDIO_WAKE on a range of the registered region.
            unsafe { libc::ioctl(fd, UFFDIO_WAKE, &mut range) };
        }
        shared.holding.fetch_sub(1, Ordering::Relaxed);
        shared.served.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The handler counts a fault as served after its copy has woken the faulting thread, so
    /// the reader can see the page before the count: wait (bounded) for the count.
    fn wait_served(h: &HeldFaults, n: u64) {
        let t = Instant::now();
        while h.served() < n && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(h.served(), n);
    }

    #[test]
    fn touch_is_held_and_filled() {
        let h = match HeldFaults::new(2, Duration::from_millis(30)) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("SKIPPED: userfaultfd unavailable: {e}");
                return;
            }
        };
        let t = Instant::now();
        // SAFETY: inside the region.
        let b = unsafe { std::ptr::read_volatile(h.as_ptr().add(PAGE + 5)) };
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(b, pattern(PAGE + 5));
        wait_served(&h, 1);
        // Resident now: no new fault.
        // SAFETY: inside the region.
        let b2 = unsafe { std::ptr::read_volatile(h.as_ptr().add(PAGE + 6)) };
        assert_eq!(b2, pattern(PAGE + 6));
        assert_eq!(h.served(), 1);
        h.rearm().unwrap();
        h.set_hold(Duration::ZERO);
        // SAFETY: inside the region.
        let b3 = unsafe { std::ptr::read_volatile(h.as_ptr().add(PAGE + 7)) };
        assert_eq!(b3, pattern(PAGE + 7));
        wait_served(&h, 2);
    }
}
