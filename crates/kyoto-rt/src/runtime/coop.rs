//! Cooperative scheduling: a budget of 128 units per task poll.
//!
//! Every runtime resource (sockets, timers, channels, join handles) calls [`poll_proceed`] before doing
//! work; once the task has spent its budget, every resource reports `Pending` (and wakes the task at
//! once), so the task returns to the scheduler and a future that never runs out of ready work cannot
//! starve the others or the I/O driver. Outside a task poll the budget is unconstrained.
use std::cell::Cell;
use std::task::{Context, Poll};

/// Units a task may spend in one poll.
pub(crate) const BUDGET: u8 = 128;

thread_local! {
    /// `None`: unconstrained (not inside a task poll).
    static CURRENT: Cell<Option<u8>> = const { Cell::new(None) };
    static FORCED_YIELDS: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` (one task poll) with a fresh budget, restoring the previous budget afterwards.
pub(crate) fn budget<R>(f: impl FnOnce() -> R) -> R {
    with_budget(Some(BUDGET), f)
}

/// Runs `f` with no budget constraint.
pub(crate) fn with_unconstrained<R>(f: impl FnOnce() -> R) -> R {
    with_budget(None, f)
}

fn with_budget<R>(b: Option<u8>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<u8>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(self.0));
        }
    }
    let prev = CURRENT.with(|c| c.replace(b));
    let _reset = Reset(prev);
    f()
}

/// Whether the current task still has budget (always true outside a task poll).
pub(crate) fn has_budget_remaining() -> bool {
    CURRENT.with(|c| c.get() != Some(0))
}

/// A unit of budget taken by [`poll_proceed`]; given back on drop unless the operation made progress.
#[must_use]
pub(crate) struct RestoreOnPending(Cell<Option<u8>>);

impl RestoreOnPending {
    /// The operation completed: the unit stays spent.
    pub(crate) fn made_progress(&self) {
        self.0.set(None);
    }
}

impl Drop for RestoreOnPending {
    fn drop(&mut self) {
        if let Some(prev) = self.0.get() {
            let _ = CURRENT.try_with(|c| c.set(Some(prev)));
        }
    }
}

/// Takes one unit of budget, or returns `Pending` (after waking the task) when none is left.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<RestoreOnPending> {
    CURRENT.with(|c| match c.get() {
        None => Poll::Ready(RestoreOnPending(Cell::new(None))),
        Some(0) => {
            FORCED_YIELDS.with(|f| f.set(f.get() + 1));
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Some(n) => {
            c.set(Some(n - 1));
            Poll::Ready(RestoreOnPending(Cell::new(Some(n))))
        }
    })
}

/// Takes and resets this thread's count of budget-forced yields (added to the scheduler's metrics).
pub(crate) fn take_forced_yields() -> u64 {
    FORCED_YIELDS.with(|f| f.replace(0))
}

/// A future that charges one unit of budget and yields when the budget is spent.
pub async fn consume_budget() {
    std::future::poll_fn(|cx| {
        let restore = std::task::ready!(poll_proceed(cx));
        restore.made_progress();
        Poll::Ready(())
    })
    .await
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn the_budget_runs_out_after_128_units_and_is_restored_on_pending() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        budget(|| {
            for _ in 0..BUDGET {
                let r = poll_proceed(&mut cx);
                match r {
                    Poll::Ready(r) => r.made_progress(),
                    Poll::Pending => panic!("budget ran out early"),
                }
            }
            assert!(poll_proceed(&mut cx).is_pending());
            assert!(!has_budget_remaining());
        });
        assert!(has_budget_remaining(), "unconstrained outside a poll");
        budget(|| {
            // Dropping without progress gives the unit back.
            for _ in 0..1000 {
                drop(poll_proceed(&mut cx));
            }
            assert!(has_budget_remaining());
        });
    }
}
