//! Tasks: spawning, joining, yielding, and the blocking pool.
//!
//! A task is a future the runtime polls until it completes. It starts running at [`spawn`]; the
//! returned [`JoinHandle`] is a future of its output. Dropping the handle detaches the task;
//! [`JoinHandle::abort`] cancels it at its next `.await`.
use crate::runtime::{context, Handle};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use crate::runtime::coop::consume_budget;
pub use crate::runtime::task::{AbortHandle, Id, JoinError, JoinHandle};

/// Spawns a task on the runtime entered on this thread.
///
/// # Panics
/// Outside a runtime (use [`Handle::spawn`] from other threads).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The spawn site, for instrumentation (a closure does not forward `#[track_caller]`).
    let location = std::panic::Location::caller();
    // Borrow the entered runtime rather than cloning its handle (two atomics per spawn).
    match context::with_current(|h| h.spawn(future, crate::runtime::task::Id::next(), location)) {
        Some(join) => join,
        None => panic!(
            "spawn called outside a runtime: {}",
            crate::runtime::TryCurrentError::outside()
        ),
    }
}

/// Runs a blocking closure on the runtime's blocking pool. A started blocking task cannot be
/// aborted; `abort` before it starts prevents it from running.
///
/// # Panics
/// Outside a runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(f),
        Err(e) => panic!("spawn_blocking called outside a runtime: {e}"),
    }
}

/// Yields to the scheduler: the task is resumed only after the runtime has polled its I/O and timer
/// driver, so a task looping on `yield_now` cannot keep sockets and timers from making progress.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        context::defer(cx.waker());
        Poll::Pending
    }
}
