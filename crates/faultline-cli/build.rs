//! Links the unwinder into the `faultline` binary (`build-support/static_unwinder.rs`):
//! `faultline record`'s own start is part of every traced run. Only that binary: the others
//! (test programs, the Tracy bench, which links C++ and with it `libgcc_s`) keep the default.

include!("../../build-support/static_unwinder.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../build-support/static_unwinder.rs");
    if let Some(arg) = static_unwinder_link_arg() {
        println!("cargo:rustc-link-arg-bin=faultline={arg}");
    }
}
