//! [`timeout`], [`timeout_at`] and the [`Timeout`] future.
use super::error::Elapsed;
use super::{sleep_until, Instant, Sleep};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Runs `future` with a time limit: `Ok(output)` if it completes within `duration`, `Err(Elapsed)`
/// otherwise (the future is then dropped along with the `Timeout`).
///
/// The future is polled **before** the deadline is checked, so a future that is ready at once wins
/// even with a zero duration. If the future uses up the task's coop budget, the deadline is still
/// checked, so a busy future cannot starve its timeout. A duration too large to represent never
/// elapses (about 30 years).
///
/// # Panics
///
/// Outside a kyoto runtime.
#[track_caller]
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(Instant::far_future);
    Timeout::new(future.into_future(), deadline)
}

/// Runs `future` until `deadline`: see [`timeout`].
///
/// # Panics
///
/// Outside a kyoto runtime.
#[track_caller]
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    Timeout::new(future.into_future(), deadline)
}

/// The future returned by [`timeout`] and [`timeout_at`]. Dropping it cancels both the future and
/// the timer.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Timeout<T> {
    value: T,
    delay: Sleep,
}

impl<T> Timeout<T> {
    #[track_caller]
    fn new(value: T, deadline: Instant) -> Timeout<T> {
        Timeout {
            value,
            delay: sleep_until(deadline),
        }
    }

    /// The wrapped future.
    pub fn get_ref(&self) -> &T {
        &self.value
    }

    /// The wrapped future, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// Unwraps the future, dropping the timer.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T: Future> Future for Timeout<T> {
    type Output = Result<T::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Soundness: `value` is structurally pinned and `delay` is not. The pinned projection to `value`
        // is sound because `Timeout` never moves `value` out of a pinned `Timeout`: the only by-value
        // accessor, `into_inner`, takes an unpinned `self`; `get_mut` takes `&mut self`, which safe
        // code can only get from a pinned `Timeout` when `T: Unpin` (`Timeout<T>` is `Unpin` exactly
        // when `T` is, as `Sleep` is `Unpin`); `Timeout` has no `Drop` impl and is not
        // `#[repr(packed)]`. `delay` is only used through `&mut`, which is fine since `Sleep: Unpin`.
        // SAFETY: sound by the argument just above.
        let (value, delay) = unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.value), &mut this.delay)
        };

        let had_budget = crate::runtime::coop::has_budget_remaining();
        if let Poll::Ready(output) = value.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let mut poll_delay = || match Pin::new(&mut *delay).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new())),
            Poll::Pending => Poll::Pending,
        };
        if had_budget && !crate::runtime::coop::has_budget_remaining() {
            // The inner future spent the last of the budget: check the deadline anyway.
            crate::runtime::coop::with_unconstrained(poll_delay)
        } else {
            poll_delay()
        }
    }
}
