//! Shared test helpers: [`faultline_ctf::testing`] with the fallible helpers unwrapped.
#![allow(dead_code, unused_imports)]

pub use faultline_ctf::testing::*;
use faultline_schema::{FieldDesc, Value};

/// [`faultline_ctf::testing::encode`], panicking on a value that does not fit.
pub fn encode(fields: &[FieldDesc], values: &[Value]) -> Vec<u8> {
    faultline_ctf::testing::encode(fields, values).expect("values fit the fields")
}

/// [`faultline_ctf::testing::write_sample`], panicking on error.
pub fn write_sample(dir: &std::path::Path) -> Vec<Exp> {
    faultline_ctf::testing::write_sample(dir).unwrap()
}
