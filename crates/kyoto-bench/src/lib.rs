//! Benchmark tools for kyoto (see `bench/` at the repository root for the drivers).
//!
//! - `kyoto-loadgen`: a native TCP/UDP echo load generator on `mio`, run as its own process.
//! - `kyoto-echo`: a TCP/UDP echo server on `kyoto_rt` (native Rust, no Node).
//! - `examples/tokio-echo.rs`: the same server on the `tokio` crate, for comparison only.
//!
//! This library holds what the binaries share: argument parsing and process statistics.
#![warn(missing_docs)]

pub mod args;
pub mod proc_stats;
