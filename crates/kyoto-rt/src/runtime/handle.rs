//! `Handle`: a cloneable reference to a runtime.
use super::scheduler;
use super::task::{Id, JoinHandle};
use super::{context, RuntimeFlavor, RuntimeMetrics};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
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

/// Why a test-clock operation on a [`Handle`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockError {
    /// The clock is already paused.
    AlreadyPaused,
    /// The clock is not paused.
    NotPaused,
    /// The new reading would not fit in an `Instant`.
    Overflow,
}

impl std::fmt::Display for ClockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClockError::AlreadyPaused => "time is already paused",
            ClockError::NotPaused => "time is not paused",
            ClockError::Overflow => "advancing the clock overflows Instant",
        })
    }
}

impl std::error::Error for ClockError {}

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

impl TryCurrentError {
    pub(crate) fn outside() -> TryCurrentError {
        TryCurrentError(())
    }
}

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
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner
            .spawn(future, Id::next(), std::panic::Location::caller())
    }

    /// Runs `f` on the blocking pool, inside this runtime (`Handle::current`, `spawn`, timers and
    /// `Instant::now` work in `f`, as in Tokio).
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        // The pool's threads belong to no runtime: each closure enters its own.
        let rt = self.inner.clone();
        self.inner.blocking().spawn_blocking(move || {
            let _enter = context::set_current(&rt);
            f()
        })
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

    /// Pauses this runtime's clock, on either flavor, for an embedder that decides itself when the
    /// runtime is idle (the Node binding: when its JS thread has nothing left to do). Unlike
    /// [`crate::time::pause`], the clock does not auto-advance: it moves only through
    /// [`advance_clock`](Self::advance_clock) and
    /// [`advance_clock_to_next_timer`](Self::advance_clock_to_next_timer).
    pub fn pause_clock(&self) -> Result<(), ClockError> {
        let driver = self.inner.driver();
        let clock = driver.time.clock();
        if driver.embedder_paused.swap(true, SeqCst) {
            return Err(ClockError::AlreadyPaused);
        }
        clock.inhibit_auto_advance();
        if !clock.try_pause() {
            clock.allow_auto_advance();
            driver.embedder_paused.store(false, SeqCst);
            return Err(ClockError::AlreadyPaused);
        }
        // A worker sleeping until a real-time deadline re-plans on the paused clock.
        driver.unpark();
        Ok(())
    }

    /// Restarts a clock paused by [`pause_clock`](Self::pause_clock) (or by
    /// [`crate::time::pause`] / `start_paused`) from its current, possibly advanced, reading.
    pub fn resume_clock(&self) -> Result<(), ClockError> {
        let driver = self.inner.driver();
        let clock = driver.time.clock();
        if !clock.try_resume() {
            return Err(ClockError::NotPaused);
        }
        if driver.embedder_paused.swap(false, SeqCst) {
            clock.allow_auto_advance();
        }
        driver.unpark();
        Ok(())
    }

    /// Whether this runtime's clock is paused.
    pub fn is_clock_paused(&self) -> bool {
        self.inner.driver().time.clock().is_paused()
    }

    /// The reading of this runtime's clock (virtual while paused).
    pub fn clock_now(&self) -> crate::time::Instant {
        self.inner.driver().time.clock().now()
    }

    /// Moves a paused clock forward by exactly `duration` and fires the timers that came due (their
    /// tasks are woken; a parked worker re-plans).
    pub fn advance_clock(&self, duration: std::time::Duration) -> Result<(), ClockError> {
        let driver = self.inner.driver();
        driver
            .time
            .clock()
            .try_advance(duration)
            .map_err(|e| match e {
                crate::time::AdvanceError::NotPaused => ClockError::NotPaused,
                crate::time::AdvanceError::Overflow => ClockError::Overflow,
            })?;
        driver.time.fire_due();
        driver.unpark();
        Ok(())
    }

    /// Moves a paused clock to the next pending timer's deadline, however far away, and fires it.
    /// Returns true when it did (the clock moved, or a timer already due fired); false, having
    /// changed nothing, when the clock runs or no timer is pending. The embedder calls this when it
    /// knows the runtime is idle — the auto-advance of a paused clock, under the embedder's control.
    pub fn advance_clock_to_next_timer(&self) -> bool {
        let driver = self.inner.driver();
        let advanced = driver.time.advance_to_next_timer();
        if advanced {
            driver.unpark();
        }
        advanced
    }

    /// When the next timer is due (on this runtime's clock), if any. May name an earlier point at
    /// which timers move between wheel levels; never later than the earliest deadline.
    pub fn next_timer(&self) -> Option<crate::time::Instant> {
        self.inner.driver().time.next_expiration()
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
