//! The channel's memfd is sealed against resizing, so a process it is shared with cannot make
//! the creator's mapping fault (SIGBUS after a shrink); `Channel::open` refuses a memfd whose
//! size could still change.

use faultline_ringbuf::*;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

fn small() -> ChannelConfig {
    ChannelConfig {
        subbuf_size: 4096,
        num_subbuf: 2,
        sync: SyncMode::Atomic,
        num_cpus: Some(2),
        ..Default::default()
    }
}

#[test]
fn created_memfd_cannot_be_resized_or_unsealed() {
    let ch = Channel::create(&small()).unwrap();
    let fd = ch.fd().as_raw_fd();
    let len = ch.map_len() as i64;
    for new_len in [4096, 0, len + 4096, 64 << 30] {
        // SAFETY: ftruncate on a descriptor the channel owns; it must fail.
        let r = unsafe { libc::ftruncate(fd, new_len) };
        let e = std::io::Error::last_os_error();
        assert_eq!(r, -1, "ftruncate to {new_len} succeeded");
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EPERM),
            "ftruncate to {new_len}: {e}"
        );
    }
    // Growing by writing past the end is refused too.
    let f = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
    assert!(std::os::unix::fs::FileExt::write_at(&f, b"x", len as u64 + 10).is_err());
    // SAFETY: fcntl on our descriptor, no memory passed.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(seals & want, want, "seals {seals:#x}");
    // SAFETY: as above; the seals are sealed, so adding one more fails.
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) },
        -1
    );
    assert_eq!(f.metadata().unwrap().len(), len as u64);
    // Opening it again works.
    assert!(Channel::open(f).is_ok());
}

#[test]
fn open_refuses_a_memfd_whose_size_can_change() {
    let ch = Channel::create(&small()).unwrap();
    let len = ch.map_len();
    // A copy of a valid channel in a memfd that does not allow sealing.
    let name = c"plain";
    // SAFETY: memfd_create with a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor owned by nobody else.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let orig = std::fs::File::from(ch.fd().as_fd().try_clone_to_owned().unwrap());
    let mut bytes = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&orig, &mut bytes, 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0).unwrap();
    match Channel::open(f) {
        Err(ChannelError::Corrupt(m)) => assert!(m.contains("not sealed"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an unsealed memfd was accepted"),
    }
    // One that allows sealing gets sealed by open.
    // SAFETY: as above.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor owned by nobody else.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0).unwrap();
    let raw = f.as_raw_fd();
    let ch2 = Channel::open(f).expect("open seals it");
    // SAFETY: fcntl on the descriptor the channel now owns.
    let seals = unsafe { libc::fcntl(raw, libc::F_GET_SEALS) };
    assert_eq!(seals & libc::F_SEAL_SHRINK, libc::F_SEAL_SHRINK);
    assert_eq!(ch2.map_len(), len);
}
