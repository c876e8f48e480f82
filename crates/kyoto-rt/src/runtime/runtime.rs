//! `Runtime`: owns the scheduler, the drivers and the blocking pool.
use super::blocking::BlockingPool;
use super::scheduler::current_thread::{CurrentThread, DriveOutcome};
use super::scheduler::multi_thread::MultiThread;
use super::scheduler::{self};
use super::task::JoinHandle;
use super::{context, Builder, EnterGuard, Handle, RuntimeMetrics};
use std::future::Future;
use std::io;
use std::time::Duration;

/// Which scheduler a runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFlavor {
    /// Every task runs on the thread driving the runtime.
    CurrentThread,
    /// Tasks run on a pool of work-stealing worker threads.
    MultiThread,
}

pub(crate) enum Kind {
    CurrentThread(CurrentThread),
    MultiThread(MultiThread),
}

/// A kyoto runtime. Dropping it shuts it down: every task is cancelled (its future dropped), and the
/// drop waits for running blocking tasks; use [`Runtime::shutdown_timeout`] to bound that wait.
/// Dropped (or shut down) by one of its own multi-thread workers, it does not wait at all.
pub struct Runtime {
    kind: Kind,
    handle: Handle,
    blocking_pool: BlockingPool,
    shut_down: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("flavor", &self.handle.runtime_flavor())
            .finish()
    }
}

impl Runtime {
    pub(crate) fn from_parts(kind: Kind, handle: Handle, blocking_pool: BlockingPool) -> Runtime {
        Runtime {
            kind,
            handle,
            blocking_pool,
            shut_down: false,
        }
    }

    /// A multi-thread runtime with default settings.
    pub fn new() -> io::Result<Runtime> {
        Builder::new_multi_thread().build()
    }

    /// A handle to this runtime, cheap to clone and usable from any thread.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns a task on this runtime (see [`crate::spawn`]).
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `f` on the blocking pool (see [`crate::spawn_blocking`]).
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// Runs a future to completion on the current thread, inside this runtime's context.
    /// A current-thread runtime runs its tasks on this thread meanwhile.
    ///
    /// # Panics
    /// When called from inside a runtime's worker or another `block_on` (it would deadlock).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let Some(_guard) = context::enter_block_on() else {
            panic!(
                "Cannot start a runtime from within a runtime. This happens because a function \
                 (like `block_on`) attempted to block the current thread while the thread is being \
                 used to drive asynchronous tasks."
            );
        };
        // Entered for the whole call: a current-thread `block_on` that waits for another thread
        // to hand over the core polls its future outside the core's context meanwhile.
        let _enter = self.handle.enter();
        match (&self.kind, &self.handle.inner) {
            (Kind::CurrentThread(s), scheduler::Handle::CurrentThread(h)) => s.block_on(h, future),
            _ => super::handle::park_on(future),
        }
    }

    /// Enters this runtime's context on the current thread until the guard drops, so `spawn`,
    /// `sleep` and socket constructors work outside a task.
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Current-thread only: polls the driver without blocking, runs up to `max_tasks` ready tasks
    /// (those it woke included), and reports what is left, for an embedder that owns the event loop (it watches
    /// [`Runtime::poller_fd`] and the returned timer deadline). `None` for a multi-thread runtime or
    /// while another thread drives.
    pub fn drive(&self, max_tasks: usize) -> Option<DriveOutcome> {
        match (&self.kind, &self.handle.inner) {
            (Kind::CurrentThread(s), scheduler::Handle::CurrentThread(h)) => s.drive(h, max_tasks),
            _ => None,
        }
    }

    /// Current-thread only: the descriptor that becomes readable when [`Runtime::drive`] has I/O
    /// or remote wake-ups to process.
    #[cfg(unix)]
    pub fn poller_fd(&self) -> Option<std::os::unix::io::RawFd> {
        match &self.kind {
            Kind::CurrentThread(s) => Some(s.poller_fd()),
            Kind::MultiThread(_) => None,
        }
    }

    /// Shuts down: cancels every task, fires pending timers and sockets with a shutdown error, and
    /// waits at most `timeout` for workers and running blocking tasks.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown_inner(Some(timeout));
    }

    /// Shuts down without waiting for blocking tasks (`shutdown_timeout(0)`).
    pub fn shutdown_background(self) {
        self.shutdown_timeout(Duration::ZERO)
    }

    fn shutdown_inner(&mut self, timeout: Option<Duration>) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let timeout = if self.on_own_worker() {
            // Dropped by one of its own tasks: that worker cannot finish shutting down while it
            // waits here, so waiting would deadlock it. Shut down in the background instead.
            Duration::ZERO
        } else {
            timeout.unwrap_or(Duration::MAX)
        };
        let start = std::time::Instant::now();
        match (&mut self.kind, &self.handle.inner) {
            (Kind::CurrentThread(s), scheduler::Handle::CurrentThread(h)) => s.shutdown(h),
            (Kind::MultiThread(s), scheduler::Handle::MultiThread(h)) => s.shutdown(h, timeout),
            _ => unreachable!("a runtime's scheduler and handle have the same flavor"),
        }
        self.blocking_pool
            .shutdown(timeout.saturating_sub(start.elapsed()));
    }

    /// Whether the calling thread is one of this (multi-thread) runtime's workers.
    fn on_own_worker(&self) -> bool {
        let scheduler::Handle::MultiThread(h) = &self.handle.inner else {
            return false;
        };
        context::with_scheduler(
            |cx| matches!(cx, Some(scheduler::Context::MultiThread(cx)) if cx.is_worker_of(h)),
        )
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner(None);
    }
}
