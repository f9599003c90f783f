//! `faultline record --libc`: run an unmodified program with `libfaultline_libc.so` preloaded
//! (the `faultline-libc` crate documents what it records and how).
//!
//! # Where the library comes from
//! It is **found next to the `faultline` binary**: `<dir>/deps/libfaultline_libc.so` (where
//! cargo builds a dependency, refreshed with every build of the binary) or else
//! `<dir>/libfaultline_libc.so` (an installed layout), or wherever `FAULTLINE_LIBC_PATH`
//! points. `faultline-cli` depends on `faultline-libc` (without linking it), so every cargo
//! build of the binary — `cargo run -p faultline-cli`, `cargo test` — builds the library into
//! the same directory. Embedding it in the binary and writing it out at run time would need
//! the library's bytes while the binary compiles, which cargo only offers through unstable
//! artifact dependencies or a nested cargo build of the whole dependency tree; and it would
//! leave a file to clean up after every run. An installed `faultline` needs the library
//! installed beside it (or `FAULTLINE_LIBC_PATH`).

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides where the preload library is looked for.
pub const ENV_LIBC_PATH: &str = "FAULTLINE_LIBC_PATH";
/// File name of the library (`faultline_libc::LIB_NAME`; not imported, see the module docs).
pub const LIB_NAME: &str = "libfaultline_libc.so";
/// Environment the library reads (the constants of the `faultline-libc` crate).
pub const ENV_LIBC: &str = "FAULTLINE_LIBC";
/// Bytes recorded per data buffer.
pub const ENV_LIBC_DATA: &str = "FAULTLINE_LIBC_DATA";

/// `<st_dev>:<st_ino>` of the preloaded library file (the constant of the `faultline-libc`
/// crate): every image checks it was loaded from that file.
pub const ENV_LIBC_ID: &str = "FAULTLINE_LIBC_ID";
/// The counters' descriptor and its pipe's identity (the `faultline-libc` crate's `stats`).
pub const ENV_LIBC_STATS_FD: &str = "FAULTLINE_LIBC_STATS_FD";
pub const ENV_LIBC_STATS_ID: &str = "FAULTLINE_LIBC_STATS_ID";

/// Options of `record --libc`.
#[derive(Debug, Clone)]
pub struct LibcOptions {
    /// Calls to record: `glob,glob,-glob` over call names (`open*`, `read`, `-mmap`).
    pub calls: String,
    /// Bytes recorded from each data buffer.
    pub data_bytes: usize,
}

/// The preload library: `FAULTLINE_LIBC_PATH`, else next to this executable.
pub fn find_library() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_LIBC_PATH) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{ENV_LIBC_PATH}={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the faultline executable")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    // deps/ first: cargo rebuilds it with every build of this binary, while the copy next to
    // the binary is only refreshed by a build of faultline-libc itself and may be stale.
    let candidates = [dir.join("deps").join(LIB_NAME), dir.join(LIB_NAME)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "{LIB_NAME} not found next to {} (build it with `cargo build --release -p \
         faultline-libc`, or set {ENV_LIBC_PATH})",
        exe.display()
    )
}

/// The registry spec (`FAULTLINE_EVENTS`) for a `--libc=GLOB` list: each call glob becomes
/// `libc:GLOB`; `faultline:*` (process starts) is always on.
pub fn events_spec(calls: &str) -> anyhow::Result<String> {
    let items: Vec<&str> = calls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    if items.iter().all(|s| s.starts_with('-')) {
        out.push("libc:*".into());
    }
    for it in items {
        let (neg, name) = match it.strip_prefix('-') {
            Some(n) => ("-", n),
            None => ("", it),
        };
        if name.is_empty() || name.contains(':') {
            bail!("--libc: {it:?} is not a call name or glob (e.g. open*,read,-mmap)");
        }
        out.push(format!("{neg}libc:{name}"));
    }
    out.push("faultline:*".into());
    Ok(out.join(","))
}

/// Set up `cmd` to preload the library with these options.
pub fn apply(cmd: &mut Command, lib: &Path, opt: &LibcOptions) {
    let mut preload = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    cmd.env("LD_PRELOAD", preload)
        .env(ENV_LIBC, "1")
        .env(ENV_LIBC_DATA, opt.data_bytes.to_string());
}

fn dup_high(fd: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller owns.
    let h = unsafe {
        libc::fcntl(
            fd,
            libc::F_DUPFD_CLOEXEC,
            faultline::session::high_fd_base(),
        )
    };
    if h < 0 {
        return Err(std::io::Error::last_os_error()).context("duplicating a descriptor");
    }
    // SAFETY: `h` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(h) })
}

/// The descriptors and environment of a `--libc` program, all final before it starts (the
/// `faultline-libc` crate's "Attaching"): no image moves a descriptor or changes a variable,
/// because programs such as bash give their children the environment they got in `main`.
/// The channel (`chan`, the program's open file description) goes to a high number, the
/// schema pipe's write end (`schema`) to two: one named by `FAULTLINE_SCHEMA_FD`/`_ID`, which
/// the first image to attach publishes the schema on and closes, one for every image's
/// counters (`FAULTLINE_LIBC_STATS_FD`/`_ID`); `FAULTLINE_LIBC_ID` names the library file.
/// Returns the high descriptors, close-on-exec: the caller makes them inheritable for the
/// spawn and closes them after it.
pub fn pass_descriptors(
    cmd: &mut Command,
    lib: &Path,
    chan: i32,
    schema: i32,
) -> anyhow::Result<Vec<OwnedFd>> {
    use faultline::session::{fd_id, ENV_CHANNEL_FD, ENV_SCHEMA_FD, ENV_SCHEMA_ID};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(lib).with_context(|| format!("{}", lib.display()))?;
    let (c, s, st) = (dup_high(chan)?, dup_high(schema)?, dup_high(schema)?);
    let pipe_id = fd_id(schema).context("fstat of the schema pipe")?;
    cmd.env(ENV_CHANNEL_FD, c.as_raw_fd().to_string())
        .env(ENV_SCHEMA_FD, s.as_raw_fd().to_string())
        .env(ENV_SCHEMA_ID, &pipe_id)
        .env(ENV_LIBC_STATS_FD, st.as_raw_fd().to_string())
        .env(ENV_LIBC_STATS_ID, &pipe_id)
        .env(ENV_LIBC_ID, format!("{}:{}", m.dev(), m.ino()));
    Ok(vec![c, s, st])
}

/// The program file `cmd` names (a `PATH` search when it has no slash).
pub fn resolve_program(cmd: &std::ffi::OsStr) -> Option<PathBuf> {
    let p = Path::new(cmd);
    if p.components().count() > 1 || cmd.to_string_lossy().contains('/') {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// Why preloading cannot trace `prog`, if the ELF header says so: a statically linked
/// executable (no `PT_INTERP`) has no dynamic symbols to interpose. `None` for dynamic
/// executables and for files that are not ELF (scripts: their interpreter is what runs).
pub fn static_note(prog: &Path) -> Option<String> {
    let mut f = std::fs::File::open(prog).ok()?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    head.truncate(n);
    let interp = elf_has_interp(&head)?;
    (!interp).then(|| {
        format!(
            "{} is statically linked: its libc calls cannot be interposed, nothing will be \
             traced (use strace for it)",
            prog.display()
        )
    })
}

/// Whether a 64-bit little-endian ELF image (its first bytes) has a `PT_INTERP` program
/// header; `None` if it is not such an ELF file or its headers are not within `head`.
fn elf_has_interp(head: &[u8]) -> Option<bool> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| -> Option<u16> {
        Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?))
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?))
    };
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    if phentsize < 4 {
        return None;
    }
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let ty = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        if ty == 3 {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_translation() {
        assert_eq!(events_spec("*").unwrap(), "libc:*,faultline:*");
        assert_eq!(
            events_spec("open*,read").unwrap(),
            "libc:open*,libc:read,faultline:*"
        );
        assert_eq!(
            events_spec("-mmap,-munmap").unwrap(),
            "libc:*,-libc:mmap,-libc:munmap,faultline:*"
        );
        assert!(events_spec("libc:open").is_err());
    }

    #[test]
    fn elf_interp() {
        let ls = resolve_program("ls".as_ref()).expect("ls on PATH");
        assert_eq!(static_note(&ls), None, "ls is dynamically linked");
        assert_eq!(elf_has_interp(b"#!/bin/sh\n"), None);
        // A truncated header is not an answer, never a panic.
        let mut h = std::fs::read(&ls).unwrap();
        h.truncate(70);
        assert_eq!(elf_has_interp(&h), None);
    }
}
