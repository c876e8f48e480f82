//! Per-thread runtime context: which runtime this thread is in, and the running scheduler's state.
//!
//! - `CURRENT` is the runtime *entered* on this thread (a worker thread, inside `block_on`, or under
//!   `Handle::enter`); `spawn`, `sleep` and socket constructors find their runtime through it.
//! - `SCHEDULER` points at the scheduler loop running on this thread, if any, for the duration of that
//!   loop, so that a wake from inside a task can push to the local queue instead of the injector, and
//!   `yield_now` can defer its wake-up until after the next driver poll.
use super::driver;
use super::scheduler;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::task::Waker;

thread_local! {
    static CURRENT: RefCell<Option<scheduler::Handle>> = const { RefCell::new(None) };
    static SCHEDULER: Cell<*const scheduler::Context> = const { Cell::new(std::ptr::null()) };
    static IN_BLOCK_ON: Cell<bool> = const { Cell::new(false) };
}

/// Calls `f` with the runtime entered on this thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(&scheduler::Handle) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// The driver handle of the runtime entered on this thread (what timers and sockets register with).
pub(crate) fn current_driver() -> Option<Arc<driver::Handle>> {
    with_current(|h| h.driver().clone())
}

/// Restores the previously entered runtime when dropped.
pub(crate) struct SetCurrentGuard {
    prev: Option<scheduler::Handle>,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Enters `handle` on this thread until the guard drops.
pub(crate) fn set_current(handle: &scheduler::Handle) -> SetCurrentGuard {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(handle.clone()));
    SetCurrentGuard {
        prev,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for SetCurrentGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

/// Runs `f` with `cx` installed as this thread's scheduler context.
pub(crate) fn set_scheduler<R>(cx: &scheduler::Context, f: impl FnOnce() -> R) -> R {
    struct Reset(*const scheduler::Context);
    impl Drop for Reset {
        fn drop(&mut self) {
            SCHEDULER.with(|c| c.set(self.0));
        }
    }
    let prev = SCHEDULER.with(|c| c.replace(cx as *const _));
    let _reset = Reset(prev);
    f()
}

/// Calls `f` with this thread's scheduler context (`None` when no scheduler loop runs here).
pub(crate) fn with_scheduler<R>(f: impl FnOnce(Option<&scheduler::Context>) -> R) -> R {
    let ptr = SCHEDULER.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    // Soundness: the pointer is set only by `set_scheduler`, on this thread, to a context that outlives
    // the closure it runs, and is reset before that closure returns (also on unwind). So a non-null
    // pointer read here refers to a live `Context` borrowed by a frame below us on this stack.
    // SAFETY: sound by the argument just above.
    let cx = unsafe { ptr.as_ref() };
    f(cx)
}

/// Defers a `yield_now` wake until the scheduler has polled the driver; wakes at once outside one.
pub(crate) fn defer(waker: &Waker) {
    with_scheduler(|cx| match cx {
        Some(cx) => cx.defer(waker),
        None => waker.wake_by_ref(),
    })
}

/// Marks this thread as blocking on a future; nested `block_on` would deadlock the worker it runs on.
pub(crate) struct BlockOnGuard(());

pub(crate) fn enter_block_on() -> Option<BlockOnGuard> {
    let inside_worker = with_scheduler(|cx| cx.is_some());
    if inside_worker || IN_BLOCK_ON.with(|c| c.replace(true)) {
        return None;
    }
    Some(BlockOnGuard(()))
}

impl Drop for BlockOnGuard {
    fn drop(&mut self) {
        let _ = IN_BLOCK_ON.try_with(|c| c.set(false));
    }
}
