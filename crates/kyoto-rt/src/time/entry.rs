//! [`TimerEntry`]: a future's registration with its runtime's timer wheel.
use super::driver::TimerShared;
use super::error::Error;
use super::wheel::Key;
use super::Instant;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A timer owned by one future (`Sleep`): registered with the wheel on first poll, moved on reset,
/// removed on drop.
pub(crate) struct TimerEntry {
    /// The runtime the timer belongs to (the one entered when it was created).
    driver: Arc<crate::runtime::driver::Handle>,
    shared: Arc<TimerShared>,
    deadline: Instant,
    /// The wheel entry, while one may exist. A fired entry leaves the wheel on its own, so this key
    /// may be stale; the driver checks that the entry under a key is still ours before touching it.
    key: Option<Key>,
    /// Whether the timer has been registered (polled) since its creation or last reset.
    registered: bool,
}

impl TimerEntry {
    /// A timer for `deadline` on the runtime entered on this thread.
    ///
    /// # Panics
    ///
    /// Outside a kyoto runtime.
    #[track_caller]
    pub(crate) fn new(deadline: Instant) -> TimerEntry {
        let Some(driver) = crate::runtime::context::current_driver() else {
            panic!(
                "there is no kyoto runtime on this thread: timers (`sleep`, `interval`, `timeout`) \
                 must be created from a task or inside `Runtime::block_on` / `Handle::enter`"
            );
        };
        TimerEntry {
            driver,
            shared: Arc::new(TimerShared::new()),
            deadline,
            key: None,
            registered: false,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the timer fired (or its runtime shut down), or its deadline has passed on the
    /// runtime's clock.
    pub(crate) fn is_elapsed(&self) -> bool {
        (self.registered && self.shared.result().is_some())
            || self.deadline <= self.driver.time.clock().now()
    }

    /// Moves the timer to `deadline`. A timer that was already registered is re-registered at once,
    /// keeping the waker of its last poll, so a task waiting on it is woken at the new deadline.
    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if self.registered {
            self.register();
        }
    }

    fn register(&mut self) {
        let (key, unpark) = self
            .driver
            .time
            .register(&self.shared, self.key.take(), self.deadline);
        self.key = key;
        self.registered = true;
        if unpark {
            self.driver.unpark();
        }
    }

    /// `Ready(Ok)` once the deadline is reached, `Ready(Err)` if the runtime's timer driver has shut
    /// down. Honours the coop budget.
    pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let restore = std::task::ready!(crate::runtime::coop::poll_proceed(cx));
        if !self.registered {
            self.register();
        }
        if let Some(result) = self.shared.result() {
            restore.made_progress();
            return Poll::Ready(result);
        }
        self.shared.register_waker(cx.waker());
        // The timer may have fired between the first check and the waker's registration.
        match self.shared.result() {
            Some(result) => {
                restore.made_progress();
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for TimerEntry {
    fn drop(&mut self) {
        // A timer that has completed is no longer in the wheel (it left under the wheel lock before
        // its state changed), so only a pending one needs the lock.
        if let Some(key) = self.key.take() {
            if self.shared.result().is_none() {
                self.driver.time.cancel(&self.shared, key);
            }
        }
    }
}

impl std::fmt::Debug for TimerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerEntry")
            .field("deadline", &self.deadline)
            .field("registered", &self.registered)
            .field("state", &self.shared.result())
            .finish()
    }
}
