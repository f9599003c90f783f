//! Bad-pointer copies and signal-handler chaining. Crash cases run in a child process (this test
//! binary re-executed with `FL_CHILD_CASE` set, running only `child_entry`).

use std::ffi::c_char;
use std::process::Command;

use faultline_tracepoints::{
    copy_from_user, copy_from_user_vm, fault_handler_installed, strncpy_from_user, strnlen_user,
    StrFault,
};

const PAGE: usize = 4096;

/// Tests that rely on an address staying unmapped hold this lock, and so does every test that
/// maps memory or spawns threads/processes (their stacks are mmapped), so a hole made by one
/// test is not refilled by another before it is used. Threads started *inside* a test that
/// holds an unmapped hole would also refill it: such tests use PROT_NONE pages instead.
//
// Tests that need a genuinely unmapped hole run in a child process: the parent's test harness
// spawns threads (mmapped stacks) outside any lock of ours.
static MAP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn map_lock() -> std::sync::MutexGuard<'static, ()> {
    MAP_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `pages` fresh read-write pages.
fn map(pages: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping, no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as *mut u8
}

fn unmap(p: *mut u8, pages: usize) {
    // SAFETY: `p` is a mapping of at least `pages` pages from `map`.
    assert_eq!(unsafe { libc::munmap(p as *mut _, pages * PAGE) }, 0);
}

/// Two pages, the first filled with a pattern, the second unmapped. Returns the first page.
fn half_mapped() -> *mut u8 {
    let p = map(2);
    for i in 0..PAGE {
        // SAFETY: inside the first, mapped page.
        unsafe { *p.add(i) = (i % 251) as u8 + 1 };
    }
    // SAFETY: the second page is part of the mapping.
    unmap(unsafe { p.add(PAGE) }, 1);
    p
}

type Copy = fn(&mut [u8], *const u8) -> usize;
const COPIES: [(&str, Copy); 2] = [("fixup", copy_from_user), ("vm", copy_from_user_vm)];

#[test]
fn null_pointer_with_length() {
    let _g = map_lock();
    for (name, copy) in COPIES {
        let mut dst = [0xAAu8; 100];
        assert_eq!(copy(&mut dst, std::ptr::null()), 100, "{name}");
        assert!(dst.iter().all(|&b| b == 0), "{name}: rest zero-filled");
    }
}

fn case_dangling_munmapped_pointer() {
    let p = map(3);
    unmap(p, 3);
    for (name, copy) in COPIES {
        for len in [1usize, 8, 33, 300, 5000] {
            let mut dst = vec![0xAAu8; len];
            assert_eq!(copy(&mut dst, p.wrapping_add(17)), len, "{name} {len}");
            assert!(dst.iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn prot_none_page() {
    let _g = map_lock();
    let p = map(1);
    // SAFETY: `p` is our page.
    let r = unsafe { libc::mprotect(p as *mut _, PAGE, libc::PROT_NONE) };
    assert_eq!(r, 0);
    for (name, copy) in COPIES {
        let mut dst = [0xAAu8; 64];
        assert_eq!(copy(&mut dst, p), 64, "{name}");
        assert!(dst.iter().all(|&b| b == 0));
    }
    unmap(p, 1);
}

fn case_second_half_unmapped_copies_exact_prefix() {
    let p = half_mapped();
    for (name, copy) in COPIES {
        // Every length class of the asm (bytes, words, rep movsb) and every alignment.
        for len in [
            1usize, 2, 7, 8, 9, 16, 31, 32, 33, 64, 255, 256, 257, 1000, 3000,
        ] {
            for readable in [0usize, 1, 3, 7, 8, 9, 15, 64, 100, 255, 256, 999] {
                if readable > len {
                    continue;
                }
                let src = p.wrapping_add(PAGE - readable);
                let mut dst = vec![0xAAu8; len];
                let left = copy(&mut dst, src);
                assert_eq!(left, len - readable, "{name} len {len} readable {readable}");
                for (i, &b) in dst.iter().enumerate() {
                    let want = if i < readable {
                        ((PAGE - readable + i) % 251) as u8 + 1
                    } else {
                        0
                    };
                    assert_eq!(b, want, "{name} len {len} readable {readable} byte {i}");
                }
            }
        }
    }
    unmap(p, 1);
}

#[test]
fn strings_clean_truncated_and_faulting() {
    let _g = map_lock();
    let s = c"hello, world";
    assert_eq!(strnlen_user(s.as_ptr(), 100), Ok(12));
    assert_eq!(strnlen_user(s.as_ptr(), 5), Ok(5));
    let mut dst = [0xAAu8; 32];
    assert_eq!(strncpy_from_user(&mut dst, s.as_ptr()), Ok(12));
    assert_eq!(&dst[..13], b"hello, world\0");
    let mut small = [0xAAu8; 5];
    assert_eq!(strncpy_from_user(&mut small, s.as_ptr()), Ok(5));
    assert_eq!(&small, b"hello");
    let mut exact = [0xAAu8; 13];
    assert_eq!(strncpy_from_user(&mut exact, s.as_ptr()), Ok(12));
    assert_eq!(exact[12], 0);

    assert_eq!(
        strnlen_user(std::ptr::null(), 10),
        Err(StrFault { readable: 0 })
    );
    let mut dst = [0xAAu8; 8];
    assert_eq!(
        strncpy_from_user(&mut dst, std::ptr::null()),
        Err(StrFault { readable: 0 })
    );
    assert_eq!(dst[0], 0);
}

#[test]
fn strings_at_every_alignment_length_and_bound() {
    // The copies read bytes up to 8-byte alignment, then aligned words, then bytes again:
    // every source alignment, string length and bound, against the plain definition.
    let mut buf = [0u8; 128];
    for off in 0..16 {
        for len in 0..48 {
            buf.fill(b'x');
            buf[off + len] = 0;
            let src = buf[off..].as_ptr() as *const c_char;
            for max in [0, 1, len.saturating_sub(1), len, len + 1, len + 9, 64] {
                let ctx = format!("off {off} len {len} max {max}");
                assert_eq!(strnlen_user(src, max), Ok(len.min(max)), "{ctx}");
                let mut dst = vec![0xAAu8; max];
                let r = strncpy_from_user(&mut dst, src);
                if len < max {
                    assert_eq!(r, Ok(len), "{ctx}");
                    assert!(dst[..len].iter().all(|&b| b == b'x'), "{ctx}");
                    assert_eq!(dst[len], 0, "{ctx}");
                    assert!(
                        dst[len + 1..].iter().all(|&b| b == 0xAA),
                        "{ctx}: untouched"
                    );
                } else {
                    assert_eq!(r, Ok(max), "{ctx}");
                    assert!(dst.iter().all(|&b| b == b'x'), "{ctx}");
                }
            }
        }
    }
}

fn case_string_running_into_unmapped_page() {
    let p = half_mapped(); // no NUL anywhere in the mapped page
                           // Every way the byte head, the aligned words and the byte tail can meet the hole.
    for readable in [0usize, 1, 5, 7, 8, 9, 15, 16, 17, 23, 63, 100] {
        let src = p.wrapping_add(PAGE - readable) as *const c_char;
        assert_eq!(
            strnlen_user(src, 4096),
            Err(StrFault { readable }),
            "{readable}"
        );
        let mut dst = [0xAAu8; 256];
        assert_eq!(
            strncpy_from_user(&mut dst, src),
            Err(StrFault { readable }),
            "{readable}"
        );
        // SAFETY: the `readable` bytes before the hole are mapped.
        let want = unsafe { std::slice::from_raw_parts(src as *const u8, readable) };
        assert_eq!(&dst[..readable], want);
        assert_eq!(dst[readable], 0, "cut string is terminated");
        // A bound reached before the hole is not a fault.
        if readable > 0 {
            assert_eq!(strnlen_user(src, readable), Ok(readable));
        }
    }
    unmap(p, 1);
}

#[test]
fn sigbus_beyond_end_of_file_is_recovered() {
    let _g = map_lock();
    let path = std::env::temp_dir().join(format!("faultline-tp-sigbus-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    // Unlinked at once: the mapping needs only the open file, and nothing stays behind when
    // an assertion below fails.
    std::fs::remove_file(&path).unwrap();
    f.set_len(0).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: shared read mapping of a file; touching it would raise SIGBUS (file is empty).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let mut dst = [0xAAu8; 40];
    assert_eq!(copy_from_user(&mut dst, p as *const u8), 40);
    assert!(dst.iter().all(|&b| b == 0));
    unmap(p as *mut u8, 1);
    drop(f);
}

/// Run `child_entry` in a child process with `case`.
fn run_child(case: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("FL_CHILD_CASE", case)
        .output()
        .unwrap()
}

fn no_core_dump() {
    let r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &r) };
}

extern "C" fn own_handler_siginfo(
    _sig: libc::c_int,
    _i: *mut libc::siginfo_t,
    _c: *mut libc::c_void,
) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(1, b"OWN-HANDLER\n".as_ptr() as *const _, 12);
        libc::_exit(42);
    }
}

extern "C" fn own_handler_plain(_sig: libc::c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(1, b"OWN-PLAIN\n".as_ptr() as *const _, 10);
        libc::_exit(43);
    }
}

fn install_own(siginfo: bool) {
    // SAFETY: zeroed sigaction, then the fields we need; plain sigaction call.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        if siginfo {
            act.sa_sigaction = own_handler_siginfo as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO;
        } else {
            act.sa_sigaction = own_handler_plain as *const () as usize;
        }
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &act, std::ptr::null_mut()),
            0
        );
    }
}

fn set_default() {
    // SAFETY: resetting a disposition to SIG_DFL.
    unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
}

/// A bad-pointer copy that must be recovered by faultline (and not reach any other handler).
fn recovered_copy() {
    let mut dst = [1u8; 16];
    if copy_from_user(&mut dst, 8 as *const u8) != 16 {
        std::process::exit(3);
    }
    if !fault_handler_installed() {
        std::process::exit(4);
    }
    println!("COPY-RECOVERED");
}

fn genuine_fault() -> ! {
    // SAFETY: deliberately not safe: this read of an unmapped address must kill the process
    // (or run the program's own handler, which exits).
    unsafe { std::ptr::read_volatile(16 as *const u8) };
    std::process::exit(5);
}

/// Runs in a child process (only one test thread there, nothing else mapping memory), so the
/// hole it makes cannot be refilled by the parent's other test threads.
#[test]
fn dangling_munmapped_pointer() {
    let _g = map_lock();
    let out = run_child("dangling_munmapped_pointer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs in a child process (only one test thread there, nothing else mapping memory), so the
/// hole it makes cannot be refilled by the parent's other test threads.
#[test]
fn second_half_unmapped_copies_exact_prefix() {
    let _g = map_lock();
    let out = run_child("second_half_unmapped_copies_exact_prefix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs in a child process (only one test thread there, nothing else mapping memory), so the
/// hole it makes cannot be refilled by the parent's other test threads.
#[test]
fn string_running_into_unmapped_page() {
    let _g = map_lock();
    let out = run_child("string_running_into_unmapped_page");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn child_entry() {
    let Ok(case) = std::env::var("FL_CHILD_CASE") else {
        return;
    };
    no_core_dump();
    match case.as_str() {
        "segv" => {
            // Previous handler: Rust's std stack-overflow handler.
            recovered_copy();
            genuine_fault();
        }
        "segv-dfl" => {
            set_default();
            recovered_copy();
            genuine_fault();
        }
        "own-siginfo" | "own-plain" => {
            install_own(case == "own-siginfo");
            recovered_copy();
            genuine_fault();
        }
        "kill" => {
            set_default();
            recovered_copy();
            // SAFETY: raise is always safe to call.
            unsafe { libc::raise(libc::SIGSEGV) };
            std::process::exit(6);
        }
        "dangling_munmapped_pointer" => case_dangling_munmapped_pointer(),
        "second_half_unmapped_copies_exact_prefix" => {
            case_second_half_unmapped_copies_exact_prefix()
        }
        "string_running_into_unmapped_page" => case_string_running_into_unmapped_page(),
        _ => std::process::exit(7),
    }
    println!("CHILD-OK");
}

#[test]
fn genuine_segfault_still_kills_with_sigsegv() {
    let _g = map_lock();
    use std::os::unix::process::ExitStatusExt;
    for case in ["segv", "segv-dfl"] {
        let out = run_child(case);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("COPY-RECOVERED"), "{case}: {stdout}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "{case}: {:?}",
            out.status
        );
    }
}

/// A `SIGSEGV` sent with `raise` under `SIG_DFL` is re-raised with the default action.
#[test]
fn sent_sigsegv_still_kills() {
    let _g = map_lock();
    use std::os::unix::process::ExitStatusExt;
    let out = run_child("kill");
    assert!(String::from_utf8_lossy(&out.stdout).contains("COPY-RECOVERED"));
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{:?}", out.status);
}

#[test]
fn programs_own_handler_runs_for_foreign_faults() {
    let _g = map_lock();
    let out = run_child("own-siginfo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("COPY-RECOVERED"), "{stdout}");
    assert!(stdout.contains("OWN-HANDLER"), "{stdout}");
    assert_eq!(out.status.code(), Some(42), "{:?}", out.status);

    let out = run_child("own-plain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("COPY-RECOVERED"), "{stdout}");
    assert!(stdout.contains("OWN-PLAIN"), "{stdout}");
    assert_eq!(out.status.code(), Some(43), "{:?}", out.status);
}

#[test]
fn copies_from_many_threads_at_once() {
    let _g = map_lock();
    // The threads' stacks are mmapped: keep the hole reserved (PROT_NONE) so they cannot land
    // in it.
    let p = map(2);
    // SAFETY: our mapping; first page stays readable, second becomes inaccessible.
    let r = unsafe { libc::mprotect(p.add(PAGE) as *mut _, PAGE, libc::PROT_NONE) };
    assert_eq!(r, 0);
    let addr = p as usize;
    let ths: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..2000usize {
                    let readable = (i * 7 + t) % 64;
                    let mut dst = [0u8; 64];
                    let left = copy_from_user(&mut dst, (addr + PAGE - readable) as *const u8);
                    assert_eq!(left, 64 - readable);
                }
            })
        })
        .collect();
    for t in ths {
        t.join().unwrap();
    }
    unmap(p, 2);
}
