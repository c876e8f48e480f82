//! Time: [`sleep`], [`interval`], [`timeout`], [`Instant`] and a pausable test clock.
//!
//! Every runtime has one timer wheel (6 levels × 64 slots at 1 ms, see `wheel`) driven by its time
//! driver around each park of the I/O driver, and one clock. Timers have a resolution of 1 ms:
//! deadlines are rounded up to the next millisecond, so a timer never fires early.
//!
//! Timers belong to the runtime entered on the thread that creates them; creating one outside a
//! runtime panics. When a runtime shuts down, its pending timers complete (a [`Sleep`] resolves; it
//! never panics; [`Sleep::poll_elapsed`] reports [`error::Error::is_shutdown`]).
//!
//! # Test clock
//!
//! [`pause`] freezes the current runtime's clock (so does `Builder::start_paused(true)`): it then
//! moves only by [`advance`], and, whenever the runtime has nothing to do and no blocking task is
//! running, by *auto-advance* straight to the next timer. So `sleep(Duration::from_secs(3600))`
//! completes at once on a paused idle runtime, while [`Instant::now`] reports an hour later.
//! [`resume`] restarts the clock from its advanced reading.
mod clock;
pub(crate) mod driver;
mod entry;
pub mod error;
mod instant;
mod interval;
mod sleep;
mod timeout;
pub(crate) mod wheel;

pub(crate) use clock::{AdvanceError, Clock};
pub use error::{Elapsed, Error};
pub use instant::Instant;
pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Timeout};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

#[track_caller]
fn current_driver(what: &str) -> Arc<crate::runtime::driver::Handle> {
    match crate::runtime::context::current_driver() {
        Some(driver) => driver,
        None => panic!(
            "`kyoto_rt::time::{what}` must be called from within a kyoto runtime \
             (from a task or inside `Runtime::block_on`)"
        ),
    }
}

/// Freezes the current runtime's clock: [`Instant::now`] and every timer of the runtime stop
/// following real time. Time then moves by [`advance`], or by auto-advance to the next timer when the
/// runtime is idle.
///
/// Meant for tests. Only a current-thread runtime can be paused: on a multi-thread runtime other
/// workers keep running while one is idle, so "idle" (when auto-advance jumps) would be meaningless.
///
/// # Panics
///
/// Outside a kyoto runtime, on a multi-thread runtime, or if the clock is already paused.
#[track_caller]
pub fn pause() {
    let multi_thread = crate::runtime::context::with_current(|h| {
        matches!(h, crate::runtime::scheduler::Handle::MultiThread(_))
    });
    if multi_thread == Some(true) {
        panic!("`kyoto_rt::time::pause()` requires a current-thread runtime");
    }
    current_driver("pause").time.clock().pause();
}

/// Restarts the current runtime's paused clock from its current (possibly advanced) reading.
///
/// # Panics
///
/// Outside a kyoto runtime, or if the clock is not paused.
#[track_caller]
pub fn resume() {
    current_driver("resume").time.clock().resume();
}

/// Whether the current runtime's clock is paused.
///
/// # Panics
///
/// Outside a kyoto runtime.
#[track_caller]
pub fn is_paused() -> bool {
    current_driver("is_paused").time.clock().is_paused()
}

/// Moves the current runtime's paused clock forward by exactly `duration` (to the nanosecond, as
/// [`Instant::now`] shows), then yields once so that the runtime's driver runs and fires the timers
/// that came due. Every timer due in the window fires, in no guaranteed order, and a woken task may
/// need more than one poll of the caller to have run.
///
/// # Panics
///
/// When polled outside a kyoto runtime, or if the clock is not paused.
pub async fn advance(duration: Duration) {
    current_driver("advance").time.clock().advance(duration);
    YieldToDriver { yielded: false }.await
}

/// Returns `Pending` once, with its wake deferred until the scheduler has polled the driver.
struct YieldToDriver {
    yielded: bool,
}

impl Future for YieldToDriver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        crate::runtime::context::defer(cx.waker());
        Poll::Pending
    }
}
