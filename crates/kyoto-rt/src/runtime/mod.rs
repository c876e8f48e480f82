//! The runtime: schedulers, drivers, the blocking pool, and their handles.
//!
//! ```no_run
//! let rt = kyoto_rt::Runtime::new().unwrap();
//! let answer = rt.block_on(async {
//!     let task = kyoto_rt::spawn(async { 6 * 7 });
//!     task.await.unwrap()
//! });
//! assert_eq!(answer, 42);
//! ```
mod blocking;
mod builder;
pub(crate) mod context;
pub(crate) mod coop;
pub(crate) mod driver;
mod handle;
mod metrics;
#[allow(clippy::module_inception)]
mod runtime;
pub(crate) mod scheduler;
pub(crate) mod task;
#[cfg(all(test, loom))]
mod tests;

pub use builder::{worker_threads_from_env, Builder, WORKER_THREADS_ENV};
pub use handle::{ClockError, EnterGuard, Handle, TryCurrentError};
pub use metrics::RuntimeMetrics;
pub use runtime::{Runtime, RuntimeFlavor};
pub use scheduler::current_thread::DriveOutcome;
