//! The runtime's clock: the system's monotonic clock, or a paused one that only moves when advanced.
use super::Instant;
use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use std::time::Duration;

/// A runtime's clock. Every timer of the runtime, and [`Instant::now`] on its threads, reads it.
///
/// While running it follows the system's monotonic clock (plus whatever it was advanced by while
/// paused). While paused it stands still until [`advance`](Clock::advance)d; the time driver
/// auto-advances it to the next timer when the runtime is idle, unless auto-advance is inhibited
/// ([`inhibit_auto_advance`](Clock::inhibit_auto_advance), a counter: the blocking pool holds it
/// while blocking tasks run, since they may wake the runtime in real time).
///
/// All methods take `&self` and are thread-safe.
/// Why [`Clock::try_advance`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdvanceError {
    NotPaused,
    Overflow,
}

#[derive(Debug)]
pub(crate) struct Clock {
    /// False until the clock is first paused: until then `now()` is the system clock, read without
    /// taking the lock.
    altered: AtomicBool,
    inner: Mutex<Inner>,
    /// Number of outstanding `inhibit_auto_advance` calls.
    inhibit: AtomicUsize,
}

#[derive(Debug)]
struct Inner {
    /// The clock's reading when `unfrozen` was taken (or now, if paused).
    base: std::time::Instant,
    /// The system instant at which the clock last started running; `None` while paused.
    unfrozen: Option<std::time::Instant>,
}

impl Inner {
    fn now(&self) -> std::time::Instant {
        match self.unfrozen {
            Some(unfrozen) => self.base + unfrozen.elapsed(),
            None => self.base,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> crate::loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Clock {
    /// A clock reading the system's time, paused at once if `start_paused`.
    pub(crate) fn new(start_paused: bool) -> Clock {
        let now = std::time::Instant::now();
        Clock {
            altered: AtomicBool::new(start_paused),
            inner: Mutex::new(Inner {
                base: now,
                unfrozen: (!start_paused).then_some(now),
            }),
            inhibit: AtomicUsize::new(0),
        }
    }

    /// The clock's current reading.
    pub(crate) fn now(&self) -> Instant {
        if !self.altered.load(Ordering::Acquire) {
            return Instant::from_std(std::time::Instant::now());
        }
        Instant::from_std(lock(&self.inner).now())
    }

    /// Whether the clock is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.altered.load(Ordering::Acquire) && lock(&self.inner).unfrozen.is_none()
    }

    /// Stops the clock at its current reading.
    ///
    /// # Panics
    ///
    /// If the clock is already paused.
    pub(crate) fn pause(&self) {
        if !self.try_pause() {
            panic!("time is already paused");
        }
    }

    /// Stops the clock at its current reading; false (and no change) if it is already paused.
    pub(crate) fn try_pause(&self) -> bool {
        // Switch readers to the locked path first, so none reads the system clock once paused.
        self.altered.store(true, Ordering::Release);
        let mut inner = lock(&self.inner);
        let Some(unfrozen) = inner.unfrozen.take() else {
            return false;
        };
        inner.base += unfrozen.elapsed();
        true
    }

    /// Restarts a paused clock from its current reading.
    ///
    /// # Panics
    ///
    /// If the clock is not paused.
    pub(crate) fn resume(&self) {
        if !self.try_resume() {
            panic!("time is not paused");
        }
    }

    /// Restarts a paused clock; false (and no change) if it is running.
    pub(crate) fn try_resume(&self) -> bool {
        let mut inner = lock(&self.inner);
        if inner.unfrozen.is_some() {
            return false;
        }
        inner.unfrozen = Some(std::time::Instant::now());
        true
    }

    /// Moves a paused clock forward by exactly `duration`.
    ///
    /// # Panics
    ///
    /// If the clock is not paused, or if the new reading cannot be represented by an `Instant`.
    pub(crate) fn advance(&self, duration: Duration) {
        match self.try_advance(duration) {
            Ok(()) => {}
            Err(AdvanceError::NotPaused) => panic!("time can only be advanced while it is paused"),
            Err(AdvanceError::Overflow) => {
                panic!("advancing the clock by {duration:?} overflows `Instant`")
            }
        }
    }

    /// Moves a paused clock forward by exactly `duration`, or says why it cannot.
    pub(crate) fn try_advance(&self, duration: Duration) -> Result<(), AdvanceError> {
        let mut inner = lock(&self.inner);
        if inner.unfrozen.is_some() {
            return Err(AdvanceError::NotPaused);
        }
        inner.base = inner
            .base
            .checked_add(duration)
            .ok_or(AdvanceError::Overflow)?;
        Ok(())
    }

    /// Moves a paused clock forward to `target`, if it is later than the current reading. Returns
    /// whether the clock moved. Does nothing on a running clock.
    pub(crate) fn advance_to(&self, target: Instant) -> bool {
        let mut inner = lock(&self.inner);
        if inner.unfrozen.is_some() || target.into_std() <= inner.base {
            return false;
        }
        inner.base = target.into_std();
        true
    }

    /// Stops auto-advance until a matching [`allow_auto_advance`](Self::allow_auto_advance).
    #[allow(dead_code)] // Called by the blocking pool.
    pub(crate) fn inhibit_auto_advance(&self) {
        self.inhibit.fetch_add(1, Ordering::SeqCst);
    }

    /// Undoes one [`inhibit_auto_advance`](Self::inhibit_auto_advance).
    #[allow(dead_code)] // Called by the blocking pool.
    pub(crate) fn allow_auto_advance(&self) {
        let prev = self.inhibit.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(prev > 0, "allow_auto_advance without inhibit_auto_advance");
        if prev == 0 {
            // Unbalanced call: keep the counter at zero rather than wrapping around.
            self.inhibit.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether the time driver may auto-advance a paused clock (nothing inhibits it).
    pub(crate) fn can_auto_advance(&self) -> bool {
        self.inhibit.load(Ordering::SeqCst) == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_running_clock_follows_the_system_clock() {
        let clock = Clock::new(false);
        assert!(!clock.is_paused());
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[test]
    fn a_paused_clock_stands_still_and_advances_exactly() {
        let clock = Clock::new(true);
        assert!(clock.is_paused());
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), a);
        clock.advance(Duration::from_nanos(1_500_001));
        assert_eq!(clock.now() - a, Duration::from_nanos(1_500_001));
    }

    #[test]
    fn resuming_continues_from_the_advanced_reading() {
        let clock = Clock::new(false);
        clock.pause();
        let a = clock.now();
        clock.advance(Duration::from_secs(3600));
        clock.resume();
        assert!(!clock.is_paused());
        assert!(clock.now() - a >= Duration::from_secs(3600));
    }

    #[test]
    fn advancing_to_an_earlier_instant_does_nothing() {
        let clock = Clock::new(true);
        let a = clock.now();
        assert!(!clock.advance_to(a));
        assert!(clock.advance_to(a + Duration::from_millis(7)));
        assert_eq!(clock.now(), a + Duration::from_millis(7));
    }

    #[test]
    fn auto_advance_is_inhibited_while_any_inhibitor_remains() {
        let clock = Clock::new(true);
        assert!(clock.can_auto_advance());
        clock.inhibit_auto_advance();
        clock.inhibit_auto_advance();
        clock.allow_auto_advance();
        assert!(!clock.can_auto_advance());
        clock.allow_auto_advance();
        assert!(clock.can_auto_advance());
    }

    #[test]
    #[should_panic(expected = "time is already paused")]
    fn pausing_twice_panics() {
        let clock = Clock::new(true);
        clock.pause();
    }

    #[test]
    #[should_panic(expected = "only be advanced while it is paused")]
    fn advancing_a_running_clock_panics() {
        Clock::new(false).advance(Duration::from_millis(1));
    }
}
