//! [`sleep`], [`sleep_until`] and the [`Sleep`] future.
use super::entry::TimerEntry;
use super::error::Error;
use super::Instant;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Waits until `duration` has elapsed on the runtime's clock.
///
/// Timers have a resolution of 1 ms and deadlines are rounded up to the next millisecond, so a sleep
/// never completes early but may complete up to about a millisecond late (plus scheduling delay).
/// `sleep(Duration::ZERO)` completes on its first poll. A duration too large to represent (such as
/// [`Duration::MAX`]) sleeps for about 30 years.
///
/// The timer is registered on the first poll and removed when the [`Sleep`] is dropped.
///
/// # Panics
///
/// Outside a kyoto runtime (the timer must know which runtime's clock and wheel it uses).
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(Instant::far_future);
    Sleep::new(deadline)
}

/// Waits until `deadline` on the runtime's clock. A deadline in the past completes on the first
/// poll. See [`sleep`].
///
/// # Panics
///
/// Outside a kyoto runtime.
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(deadline)
}

/// The future returned by [`sleep`] and [`sleep_until`]; completes with `()` at its deadline.
///
/// If the runtime's timer driver shuts down first, the `Sleep` completes at once (it never panics);
/// [`poll_elapsed`](Sleep::poll_elapsed) tells the two cases apart.
///
/// Unlike Tokio's, kyoto's `Sleep` is `Unpin`: it can be polled and reset through `&mut` without
/// pinning (pinned use, as in Tokio, works too).
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    entry: TimerEntry,
}

impl Sleep {
    #[track_caller]
    pub(crate) fn new(deadline: Instant) -> Sleep {
        Sleep {
            entry: TimerEntry::new(deadline),
        }
    }

    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.entry.deadline()
    }

    /// Whether the deadline has been reached (or the timer driver has shut down).
    pub fn is_elapsed(&self) -> bool {
        self.entry.is_elapsed()
    }

    /// Moves the deadline to `deadline`, whether or not the sleep has already completed; a deadline in
    /// the past makes it ready on the next poll. A task waiting on this sleep is woken at the new
    /// deadline.
    pub fn reset(&mut self, deadline: Instant) {
        self.entry.reset(deadline);
    }

    /// Polls the sleep, reporting a shut-down timer driver as an error: `Ready(Ok(()))` at the
    /// deadline, `Ready(Err(e))` with `e.is_shutdown()` if the runtime's timers shut down first.
    pub fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.entry.poll_elapsed(cx)
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().entry.poll_elapsed(cx).map(|_| ())
    }
}
