//! The `faultline` command line's building blocks: `demo`, `record`, `view`, `stats`, `export`,
//! `timeline`, the ring buffer's stress harness, the benchmarks and the copy-strategy study.
pub mod bench;
pub mod bench_buffers;
pub mod bench_lossless;
pub mod bench_scaling;
pub mod bench_tracing;
pub mod bench_tracy;
pub mod channel_lease;
pub mod demo;
pub mod export;
pub mod harness;
pub mod libc_bench;
pub mod libc_preload;
pub mod record;
pub mod record_wait;
pub mod relay_bench;
pub mod soak;
pub mod stats;
pub mod stress;
pub mod study;
pub mod timeline;
pub mod trace_input;
pub mod uffd;
pub mod view;
