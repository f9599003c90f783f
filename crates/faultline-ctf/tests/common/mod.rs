//! Shared test helpers: [`faultline_testkit::ctf`] with the fallible helpers unwrapped.
#![allow(dead_code, unused_imports)]

use faultline_schema::{FieldDesc, Value};
pub use faultline_testkit::ctf::*;
pub use faultline_testkit::TmpDir;

/// [`faultline_testkit::ctf::encode`], panicking on a value that does not fit.
pub fn encode(fields: &[FieldDesc], values: &[Value]) -> Vec<u8> {
    faultline_testkit::ctf::encode(fields, values).expect("values fit the fields")
}

/// [`faultline_testkit::ctf::write_sample`], panicking on error.
pub fn write_sample(dir: &std::path::Path) -> Vec<Exp> {
    faultline_testkit::ctf::write_sample(dir).unwrap()
}
