//! [`Instant`]: a point in time of the runtime's clock.
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A measurement of a monotonically nondecreasing clock, like [`std::time::Instant`], except that
/// [`Instant::now`] follows the clock of the kyoto runtime entered on the calling thread: when that
/// clock is paused ([`pause`](crate::time::pause)) it only moves when advanced, by
/// [`advance`](crate::time::advance) or by auto-advance. Outside a runtime it is the system's
/// monotonic clock.
///
/// `Instant` is `Copy`, ordered and hashable; it converts to and from [`std::time::Instant`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    std: std::time::Instant,
}

impl Instant {
    /// The current instant of the runtime's clock (see the type docs).
    pub fn now() -> Instant {
        crate::runtime::context::with_current(|h| h.driver().time.clock().now())
            .unwrap_or_else(|| Instant::from_std(std::time::Instant::now()))
    }

    /// Wraps a [`std::time::Instant`].
    pub fn from_std(std: std::time::Instant) -> Instant {
        Instant { std }
    }

    /// The underlying [`std::time::Instant`].
    pub fn into_std(self) -> std::time::Instant {
        self.std
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.std.checked_duration_since(earlier.std)
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// The time elapsed since `self` on the runtime's clock ([`Instant::now`]), zero if `self` is later.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + duration`, or `None` if that cannot be represented.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_add(duration).map(Instant::from_std)
    }

    /// `self - duration`, or `None` if that cannot be represented.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_sub(duration).map(Instant::from_std)
    }

    /// An instant about 30 years from now: the deadline used for durations too large to represent.
    pub(crate) fn far_future() -> Instant {
        let now = Instant::now();
        now.checked_add(Duration::from_secs(86_400 * 365 * 30))
            .unwrap_or(now)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(std: std::time::Instant) -> Instant {
        Instant::from_std(std)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(instant: Instant) -> std::time::Instant {
        instant.into_std()
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// If the result cannot be represented (use [`Instant::checked_add`] to avoid this).
    fn add(self, rhs: Duration) -> Instant {
        Instant::from_std(self.std + rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// If the result cannot be represented (use [`Instant::checked_sub`] to avoid this).
    fn sub(self, rhs: Duration) -> Instant {
        Instant::from_std(self.std - rhs)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        *self = *self - rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// The time from `rhs` to `self`, saturating at zero.
    fn sub(self, rhs: Instant) -> Duration {
        self.duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.std.fmt(f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn duration_since_a_later_instant_saturates_at_zero() {
        let a = Instant::from_std(std::time::Instant::now());
        let b = a + Duration::from_millis(5);
        assert_eq!(b.duration_since(a), Duration::from_millis(5));
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), None);
        assert_eq!(b.checked_sub(Duration::from_millis(5)), Some(a));
        assert_eq!(b - Duration::from_millis(5), a);
        assert_eq!(a.checked_add(Duration::MAX), None);
    }

    #[test]
    fn outside_a_runtime_now_is_the_system_clock() {
        let before = std::time::Instant::now();
        let now = Instant::now().into_std();
        assert!(now >= before && now <= std::time::Instant::now());
    }
}
