//! The input is a whole foreign CTF trace for the general reader: a u32 (little-endian)
//! metadata length, the `metadata` file (plain or packetized), then one stream file (see
//! `faultline_testkit::ctf::general_case_input`). Reading it must not panic, and an error must
//! name a file of the trace, on one line, with an offset inside that file.
#![no_main]

use faultline_testkit::ctf::fuzz_general_case;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = fuzz_general_case(data) {
        panic!("{broken}");
    }
});
