//! The input is `stream_0` of a trace whose `metadata` and `stream_1` are valid (the sample
//! trace of `faultline_testkit::ctf`). Reading it must not panic, and an error must name a file
//! of the trace, on one line, with an offset inside that file.
#![no_main]

use faultline_testkit::ctf::{fuzz_case, FuzzFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = fuzz_case(FuzzFile::Stream0, data) {
        panic!("{broken}");
    }
});
