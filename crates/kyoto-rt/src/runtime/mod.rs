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

/// Wakes `waker`, catching a panic of its `wake`.
///
/// For every place a runtime thread wakes a waker it did not make: the drivers (I/O readiness,
/// timers, shutdown), deferred yields, join handles. A future may be polled with any waker, not only
/// a task's; one that panics must not unwind through a worker's loop (the worker would be lost, and
/// with it the runtime's shutdown, which waits for every worker), nor cost the wakers after it in the
/// same batch their wake-up. The panic has been reported by the panic hook; nothing more can be
/// done with it.
pub(crate) fn wake_catching_panic(waker: std::task::Waker) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || waker.wake()));
}
