//! Socket addresses read from untrusted memory and rendered as text, without allocating.

use faultline_tracepoints::copy_from_user;
use std::fmt::Write;

/// A rendered address: `family`, the text, and how many bytes of the address were unreadable.
pub(crate) struct Addr {
    pub family: u16,
    pub faulted: u32,
    buf: [u8; 128],
    len: usize,
}

impl Addr {
    /// The text (`127.0.0.1:80`, `[::1]:80`, `unix:/path`, `unix:@name`, `family N`, or empty
    /// when there is no address).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn empty() -> Self {
        Addr {
            family: 0,
            faulted: 0,
            buf: [0; 128],
            len: 0,
        }
    }
}

impl Write for Addr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        // Cut at a character boundary so `text` stays valid UTF-8.
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Read `len` bytes of a `struct sockaddr` at `p` (any pointer: a bad one is counted in
/// `faulted`, never dereferenced directly) and render it.
pub(crate) fn read(p: *const libc::sockaddr, len: usize) -> Addr {
    let mut a = Addr::empty();
    if p.is_null() || len == 0 {
        return a;
    }
    let mut raw = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let n = len.min(raw.len());
    let left = copy_from_user(&mut raw[..n], p as *const u8);
    a.faulted = left as u32;
    let ok = n - left;
    if ok < 2 {
        return a;
    }
    a.family = u16::from_ne_bytes([raw[0], raw[1]]);
    let _ = match a.family as i32 {
        libc::AF_INET if ok >= 8 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            write!(a, "{}.{}.{}.{}:{port}", raw[4], raw[5], raw[6], raw[7])
        }
        libc::AF_INET6 if ok >= 24 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let mut b = [0u8; 16];
            b.copy_from_slice(&raw[8..24]);
            write!(a, "[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        libc::AF_UNIX => {
            let path = &raw[2..ok];
            if path.first() == Some(&0) && path.len() > 1 {
                let name = &path[1..];
                let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let s = std::str::from_utf8(&name[..end]).unwrap_or("?");
                write!(a, "unix:@{s}")
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                let s = std::str::from_utf8(&path[..end]).unwrap_or("?");
                write!(a, "unix:{s}")
            }
        }
        f => write!(a, "family {f}"),
    };
    a
}

/// Like [`read`] for an address whose length the kernel wrote to `*lenp` (accept, recvfrom).
pub(crate) fn read_out(p: *const libc::sockaddr, lenp: *const libc::socklen_t) -> Addr {
    if p.is_null() || lenp.is_null() {
        return Addr::empty();
    }
    let mut l = [0u8; 4];
    if copy_from_user(&mut l, lenp as *const u8) != 0 {
        let mut a = Addr::empty();
        a.faulted = 4;
        return a;
    }
    read(p, u32::from_ne_bytes(l) as usize)
}
