//! `Handle`: a cloneable reference to a runtime.
use super::scheduler;
use super::task::{Id, JoinHandle};
use super::{context, RuntimeFlavor, RuntimeMetrics};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A reference to a runtime: spawn on it, enter it, read its metrics — from any thread.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: scheduler::Handle,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("flavor", &self.runtime_flavor())
            .finish()
    }
}

/// There is no runtime entered on this thread.
#[derive(Debug)]
pub struct TryCurrentError(());

impl std::fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "there is no kyoto runtime running, must be called from the context of a kyoto runtime",
        )
    }
}

impl std::error::Error for TryCurrentError {}

/// Leaves the runtime's context when dropped (see [`Handle::enter`]).
pub struct EnterGuard<'a> {
    _guard: context::SetCurrentGuard,
    _handle: std::marker::PhantomData<&'a Handle>,
}

impl Handle {
    /// The runtime entered on this thread.
    ///
    /// # Panics
    /// Outside a runtime; see [`Handle::try_current`].
    pub fn current() -> Handle {
        match Handle::try_current() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// The runtime entered on this thread, if any.
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::with_current(|inner| Handle {
            inner: inner.clone(),
        })
        .ok_or(TryCurrentError(()))
    }

    /// Spawns a task: it starts running at once, on this runtime. Dropping the returned handle
    /// detaches the task.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn(future, Id::next())
    }

    /// Runs `f` on the blocking pool.
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.inner.blocking().spawn_blocking(f)
    }

    /// Enters the runtime's context on this thread until the guard drops.
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard {
            _guard: context::set_current(&self.inner),
            _handle: std::marker::PhantomData,
        }
    }

    /// Blocks this thread on `future` inside the runtime's context. On a current-thread runtime the
    /// tasks only run while some thread drives it (`Runtime::block_on` or `Runtime::drive`).
    ///
    /// # Panics
    /// Inside a runtime worker or another `block_on`.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let Some(_guard) = context::enter_block_on() else {
            panic!("Cannot start a runtime from within a runtime.");
        };
        let _enter = self.enter();
        park_on(future)
    }

    /// Which scheduler the runtime runs.
    pub fn runtime_flavor(&self) -> RuntimeFlavor {
        match self.inner {
            scheduler::Handle::CurrentThread(_) => RuntimeFlavor::CurrentThread,
            scheduler::Handle::MultiThread(_) => RuntimeFlavor::MultiThread,
        }
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics::collect(&self.inner)
    }

    /// Whether both handles refer to the same runtime.
    pub fn ptr_eq(&self, other: &Handle) -> bool {
        self.inner.ptr_eq(&other.inner)
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark()
    }
}

/// Polls `future` on this thread, parking the thread between wakes.
pub(crate) fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
