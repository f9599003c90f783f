// Shared by the build scripts of faultline-libc (the preload library) and faultline-cli (the
// `faultline` binary), with `include!`: both link the unwinder (`libgcc_eh.a`) statically
// instead of depending on `libgcc_s.so.1`. Every process that loads `libgcc_s` pays for its
// loading and for its constructor's `cpuid` probes (each an exit to the hypervisor on a
// virtual machine): ~0.13 ms of a traced program's start, and as much of `faultline`'s own.

/// `-Wl,--whole-archive,<libgcc_eh.a>,...` when the target links glibc's dynamic unwinder and
/// the C compiler that links knows the archive; `None` otherwise (then `libgcc_s` is linked as
/// usual).
fn static_unwinder_link_arg() -> Option<String> {
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
    {
        return None;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // An archive the compiler does not know is printed back as its bare name.
    if !out.status.success() || !path.starts_with('/') || !std::path::Path::new(&path).is_file()
    {
        return None;
    }
    // Whole archive: the link arguments come after the standard library's `-lgcc_s`, which
    // `--as-needed` then drops because nothing is left for it to define.
    Some(format!("-Wl,--push-state,--whole-archive,{path},--pop-state"))
}
