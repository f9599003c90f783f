//! Links the unwinder into `libfaultline_libc.so` (`build-support/static_unwinder.rs`): the
//! preloaded library adds as little as possible to every traced image's start. Its symbols
//! stay local to the library (a cdylib exports only the interposed functions), so a C++
//! program's exceptions still go through its own `libgcc_s`.

include!("../../build-support/static_unwinder.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../build-support/static_unwinder.rs");
    if let Some(arg) = static_unwinder_link_arg() {
        println!("cargo:rustc-link-arg-cdylib={arg}");
    }
}
