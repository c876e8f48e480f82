//! kyoto's runtime core: a small Tokio.
//!
//! The crate is pure Rust and knows nothing of Node. It provides
//!
//! - [`runtime`]: a multi-thread work-stealing scheduler (one `crossbeam-deque` worker per thread, a
//!   global injector, a LIFO slot, a cooperative budget) and a current-thread scheduler that can also be
//!   driven from an external event loop; a blocking pool; shutdown; metrics.
//! - [`task`]: `spawn`, `JoinHandle`, `JoinError`, `yield_now`, `spawn_blocking`.
//! - [`time`]: a hierarchical timer wheel (6 levels × 64 slots at 1 ms) behind `sleep`, `interval`,
//!   `timeout`, `Instant` and a pausable test clock.
//! - [`net`]: TCP, UDP and Unix sockets on one `mio::Poll` reactor.
//!
//! Every atomic, lock and cell is imported through one internal `loom` module so the concurrency-critical
//! parts run unchanged under the `loom` model checker (`RUSTFLAGS="--cfg loom"`).
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod loom;

pub mod instrument;
pub mod io;
pub mod net;
pub mod runtime;
pub mod sync;
pub mod task;
pub mod time;

pub use runtime::{Builder, Handle, Runtime};
pub use task::{spawn, spawn_blocking, yield_now, JoinError, JoinHandle};
