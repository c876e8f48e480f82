//! [`interval`], [`interval_at`], [`Interval`] and [`MissedTickBehavior`].
use super::{sleep_until, Instant, Sleep};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How late a tick may be before it counts as missed.
const MISSED_TICK_TOLERANCE: Duration = Duration::from_millis(5);

/// A stream of ticks every `period`, the first one immediately.
///
/// Equivalent to [`interval_at(Instant::now(), period)`](interval_at).
///
/// # Panics
///
/// If `period` is zero, or outside a kyoto runtime.
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    assert!(period > Duration::ZERO, "`period` must be non-zero");
    interval_at(Instant::now(), period)
}

/// A stream of ticks every `period`, the first one at `start`.
///
/// # Panics
///
/// If `period` is zero, or outside a kyoto runtime.
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(period > Duration::ZERO, "`period` must be non-zero");
    Interval {
        delay: sleep_until(start),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when a tick is missed: when [`tick`](Interval::tick) is called more than
/// 5 ms after the tick was scheduled (the task was busy or blocked).
///
/// With a period of 100 ms, ticks scheduled at 0, 100, 200, … and a tick at 100 taken at 350:
///
/// | behaviour | next ticks |
/// |---|---|
/// | `Burst` | 200, 300 at once (catch up), then 400, 500, … |
/// | `Delay` | 450, 550, … (`now + period`) |
/// | `Skip`  | 400, 500, … (the next multiple of `period` from the start after `now`) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks as fast as possible until caught up: the next tick is scheduled at
    /// `missed + period`. The default.
    #[default]
    Burst,
    /// Start again from now: the next tick is scheduled at `now + period`.
    Delay,
    /// Skip the missed ticks: the next tick is scheduled at the first multiple of `period` (counted
    /// from the missed tick) after `now`, i.e. `now + period - ((now - missed) % period)`.
    Skip,
}

impl MissedTickBehavior {
    /// The instant after the missed tick `missed`, observed at `now`.
    fn next_timeout(self, missed: Instant, now: Instant, period: Duration) -> Instant {
        match self {
            MissedTickBehavior::Burst => add_or_far_future(missed, period),
            MissedTickBehavior::Delay => add_or_far_future(now, period),
            MissedTickBehavior::Skip => {
                let late = now.duration_since(missed).as_nanos();
                let into_period = late % period.as_nanos();
                // `into_period < period`, so it fits in a `Duration` from nanoseconds.
                let into_period = Duration::from_nanos(u64::try_from(into_period).unwrap_or(0));
                add_or_far_future(now, period.saturating_sub(into_period))
            }
        }
    }
}

fn add_or_far_future(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or_else(Instant::far_future)
}

/// Ticks every `period`; created by [`interval`] or [`interval_at`].
///
/// [`tick`](Self::tick) completes at each scheduled instant and returns **that** instant (not the
/// time it was observed). Ticks missed because the task was late are handled as the
/// [`MissedTickBehavior`] says (Burst by default).
#[derive(Debug)]
pub struct Interval {
    /// Completes at the next scheduled tick.
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    ///
    /// Cancel-safe: dropping the future before it completes loses no tick.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; `Ready(scheduled_instant)` when it is due. Registers the task's waker
    /// otherwise.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        std::task::ready!(Pin::new(&mut self.delay).poll(cx));
        let scheduled = self.delay.deadline();
        let now = Instant::now();
        let next = if now > add_or_far_future(scheduled, MISSED_TICK_TOLERANCE) {
            self.missed_tick_behavior
                .next_timeout(scheduled, now, self.period)
        } else {
            add_or_far_future(scheduled, self.period)
        };
        self.delay.reset(next);
        Poll::Ready(scheduled)
    }

    /// Schedules the next tick one period from now.
    pub fn reset(&mut self) {
        self.delay
            .reset(add_or_far_future(Instant::now(), self.period));
    }

    /// Schedules the next tick now (it completes on the next poll).
    pub fn reset_immediately(&mut self) {
        self.delay.reset(Instant::now());
    }

    /// Schedules the next tick `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        self.delay.reset(add_or_far_future(Instant::now(), after));
    }

    /// Schedules the next tick at `deadline`; later ticks follow every period from there.
    pub fn reset_at(&mut self, deadline: Instant) {
        self.delay.reset(deadline);
    }

    /// The behaviour for missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets the behaviour for missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn missed_tick_formulas_match_the_documented_table() {
        let t0 = Instant::from_std(std::time::Instant::now());
        let period = Duration::from_millis(100);
        let missed = at(t0, 100);
        let now = at(t0, 350);
        assert_eq!(
            MissedTickBehavior::Burst.next_timeout(missed, now, period),
            at(t0, 200)
        );
        assert_eq!(
            MissedTickBehavior::Delay.next_timeout(missed, now, period),
            at(t0, 450)
        );
        assert_eq!(
            MissedTickBehavior::Skip.next_timeout(missed, now, period),
            at(t0, 400)
        );
        // Late by an exact multiple of the period: Skip goes one full period ahead.
        assert_eq!(
            MissedTickBehavior::Skip.next_timeout(missed, at(t0, 300), period),
            at(t0, 400)
        );
    }
}
