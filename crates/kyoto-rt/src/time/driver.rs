//! The time driver: the runtime's timer wheel, fired around each park of the I/O driver.
//!
//! # Design
//!
//! - One [`Wheel`] per runtime, behind a mutex in the time [`Handle`]. A timer's state that its
//!   future polls, [`TimerShared`], is an `Arc` shared by the future and the wheel slot: an atomic
//!   state word (pending, fired, shut down) and the waker. Polling a timer that has not fired reads the
//!   atomic and refreshes the waker under the timer's own small lock, never the wheel's.
//! - Deadlines are converted to ticks (whole ms since the driver started), rounded **up**, so a timer
//!   never fires early. The driver fires the timers of every tick up to the current time, rounded
//!   down.
//! - A timer is fired under the wheel lock (state set, waker taken) but woken after the lock is
//!   released, in batches of [`WAKE_BATCH`], so a woken task that re-registers cannot deadlock.
//! - **Unparking.** While the driver blocks it records until when ([`WakeAt`]). A registration with
//!   an earlier deadline unparks it (through the runtime driver handle's `mio::Waker`), so a timer
//!   created on another worker, or armed by an external event loop, is never late.
//! - **Paused clock.** The driver never blocks on real time: it polls I/O with a zero timeout and,
//!   when the caller is idle (`timeout == None`) and nothing inhibits auto-advance, moves the clock to
//!   the next timer and fires it.
use super::wheel::{Key, Wheel};
use super::{Clock, Instant};
use crate::loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use crate::loom::sync::{Mutex, MutexGuard};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// Wakers woken per lock release when firing timers.
const WAKE_BATCH: usize = 32;

/// The longest real-time wait of a driver whose paused clock may not auto-advance (a blocking task
/// runs): the driver re-checks at least this often, so a blocking task finishing without waking the
/// runtime cannot stall it.
const INHIBITED_POLL: Duration = Duration::from_millis(10);

const NANOS_PER_MILLI: u128 = 1_000_000;

/// The time driver: owns the I/O driver it parks in. Only the thread parking holds it.
pub(crate) struct Driver {
    park: crate::io::driver::Driver,
}

/// Shared access to the timers of a runtime: registration, the clock, the next expiration.
pub(crate) struct Handle {
    clock: Clock,
    /// Tick 0 of the wheel.
    start: Instant,
    inner: Mutex<Inner>,
    /// Number of timers in the wheel (a metric; exact under the lock, read without it).
    num_timers: AtomicUsize,
}

struct Inner {
    wheel: Wheel<Arc<TimerShared>>,
    wake_at: WakeAt,
    is_shutdown: bool,
}

/// What the thread that drives the timers is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeAt {
    /// Not blocked: it will look at the wheel before it next blocks.
    NotParked,
    /// Blocked (or an external event loop's timer armed) until this tick.
    Tick(u64),
    /// Blocked with no deadline.
    Never,
}

/// The state of one timer shared between its future ([`TimerEntry`]) and the wheel.
#[derive(Debug)]
pub(crate) struct TimerShared {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const SHUTDOWN: u8 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes a timer's waker. A timer may be polled with any waker (not only a task's); one that
/// panics must not unwind through the thread driving the timers (a worker would die with its
/// core, and the runtime's shutdown wait for it forever), nor cost the other timers their wake.
fn wake(w: Waker) {
    crate::runtime::wake_catching_panic(w);
}

/// `d` in whole milliseconds, rounded up.
fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(NANOS_PER_MILLI);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl TimerShared {
    pub(crate) fn new() -> TimerShared {
        TimerShared {
            state: AtomicU8::new(PENDING),
            waker: Mutex::new(None),
        }
    }

    /// `Some(Ok)` once fired, `Some(Err)` if the driver shut down, `None` while pending.
    pub(crate) fn result(&self) -> Option<Result<(), super::error::Error>> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            FIRED => Some(Ok(())),
            _ => Some(Err(super::error::Error::shutdown())),
        }
    }

    /// Stores the waker to wake when the timer fires (keeps the current one if equivalent).
    pub(crate) fn register_waker(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Marks the timer done; returns its waker. Called under the wheel lock.
    fn complete(&self, state: u8) -> Option<Waker> {
        self.state.store(state, Ordering::Release);
        lock(&self.waker).take()
    }
}

impl Driver {
    /// The time driver parking in `park`, and its handle; tick 0 is `clock.now()`.
    pub(crate) fn new(park: crate::io::driver::Driver, clock: Clock) -> (Driver, Handle) {
        let start = clock.now();
        let handle = Handle {
            clock,
            start,
            inner: Mutex::new(Inner {
                wheel: Wheel::new(),
                wake_at: WakeAt::NotParked,
                is_shutdown: false,
            }),
            num_timers: AtomicUsize::new(0),
        };
        (Driver { park }, handle)
    }

    /// Fires due timers, blocks in the I/O driver until the next timer, `timeout` or an unpark (never
    /// on real time while the clock is paused; see the module docs), then fires the timers that came
    /// due. `Some(Duration::ZERO)` only polls.
    pub(crate) fn park(
        &mut self,
        handle: &crate::runtime::driver::Handle,
        timeout: Option<Duration>,
    ) {
        let time = &handle.time;
        // Timers that came due while the caller was busy wake their tasks here, into the caller's
        // queue, which it looks at only after this park: it must not block then.
        let timeout = if time.process() > 0 {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        if time.clock.is_paused() {
            self.park_paused(handle, timeout);
        } else {
            let now = time.clock.now();
            let io_timeout = time.prepare_park(now, timeout, None);
            let _ = self.park.park(&handle.io, io_timeout);
        }
        time.process();
    }

    fn park_paused(&mut self, handle: &crate::runtime::driver::Handle, timeout: Option<Duration>) {
        let time = &handle.time;
        let can_auto_advance = timeout.is_none() && time.clock.can_auto_advance();
        let has_timers = time.next_tick().is_some();
        let io_timeout = match timeout {
            // The caller has work: look at I/O without waiting.
            Some(_) => Some(Duration::ZERO),
            // Idle with a timer to jump to.
            None if can_auto_advance && has_timers => Some(Duration::ZERO),
            // Idle, nothing to jump to: only I/O or an unpark can make progress.
            None if can_auto_advance => None,
            // Idle but a blocking task may still wake us: wait a little in real time.
            None => Some(INHIBITED_POLL),
        };
        let now = time.clock.now();
        let io_timeout = time.prepare_park(now, io_timeout, Some(io_timeout));
        let woke = self.park.park(&handle.io, io_timeout);
        // An I/O event or an unpark from another thread means the runtime is not idle after all.
        if can_auto_advance && has_timers && !woke {
            // Nothing happened: jump to the next timer and fire it.
            time.jump_to_earliest_timer();
        }
    }

    /// Completes every timer with a shutdown error (their futures resolve), refuses later
    /// registrations the same way, then shuts the I/O driver down.
    pub(crate) fn shutdown(&mut self, handle: &crate::runtime::driver::Handle) {
        handle.time.shutdown();
        self.park.shutdown(&handle.io);
    }

    /// The I/O driver this driver parks in (its poll fd is watched from Node's loop on Unix).
    #[cfg(unix)]
    pub(crate) fn io(&self) -> &crate::io::driver::Driver {
        &self.park
    }
}

impl Handle {
    /// The runtime's clock.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The instant the next timer is due (or entries must be cascaded, which is never after the
    /// earliest deadline), `None` without timers.
    ///
    /// For an external event loop driving a current-thread runtime: arm a timer for this instant
    /// (measured on [`clock`](Self::clock); with a paused clock this is a virtual instant), and a
    /// timer registered later with an earlier deadline unparks the driver, making its descriptor
    /// readable, so the loop can call this again.
    pub(crate) fn next_expiration(&self) -> Option<Instant> {
        let mut inner = lock(&self.inner);
        let next = inner.wheel.next_expiration();
        inner.wake_at = next.map_or(WakeAt::Never, WakeAt::Tick);
        next.map(|tick| self.tick_to_instant(tick))
    }

    /// Fires every timer due at the clock's current reading (for an embedder that moved a paused
    /// clock). Returns how many fired.
    pub(crate) fn fire_due(&self) -> usize {
        self.process()
    }

    /// Moves a paused clock to the next timer's deadline, however far away, and fires what came
    /// due. Returns whether it did (the clock moved or a timer fired); false, with nothing changed,
    /// when the clock runs or no timer is pending.
    pub(crate) fn advance_to_next_timer(&self) -> bool {
        if !self.clock.is_paused() {
            return false;
        }
        self.jump_to_earliest_timer()
    }

    /// Moves a paused clock straight to the earliest timer's deadline (not to the wheel's next
    /// cascade point, which for a timer decades away is one of many), then fires what is due.
    /// Returns whether the clock moved or a timer fired.
    fn jump_to_earliest_timer(&self) -> bool {
        let moved = {
            let inner = lock(&self.inner);
            let Some(tick) = inner.wheel.earliest_deadline() else {
                return false;
            };
            // Under the wheel lock (the clock's lock nests inside it, as in `register`): the timer
            // cannot be cancelled between the choice of the tick and the move.
            self.clock.advance_to(self.tick_to_instant(tick))
        };
        let fired = self.process();
        moved || fired > 0
    }

    /// Number of timers waiting in the wheel (a metric).
    #[allow(dead_code)] // For the runtime's metrics.
    pub(crate) fn num_timers(&self) -> usize {
        self.num_timers.load(Ordering::Relaxed)
    }

    /// Whether the driver has shut down.
    #[allow(dead_code)]
    pub(crate) fn is_shutdown(&self) -> bool {
        lock(&self.inner).is_shutdown
    }

    /// The tick `t` falls into, rounded up (for deadlines).
    fn deadline_to_tick(&self, t: Instant) -> u64 {
        ceil_millis(t.saturating_duration_since(self.start))
    }

    /// The last tick reached at `t` (for the current time).
    fn now_to_tick(&self, t: Instant) -> u64 {
        let ms = t.saturating_duration_since(self.start).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    fn tick_to_instant(&self, tick: u64) -> Instant {
        self.start
            .checked_add(Duration::from_millis(tick))
            .unwrap_or_else(Instant::far_future)
    }

    fn next_tick(&self) -> Option<u64> {
        lock(&self.inner).wheel.next_expiration()
    }

    /// Records until when the driver will block and returns the I/O timeout to block with:
    /// `timeout`, shortened to the next timer (in whole ms, rounded up) unless `fixed` gives it.
    fn prepare_park(
        &self,
        now: Instant,
        timeout: Option<Duration>,
        fixed: Option<Option<Duration>>,
    ) -> Option<Duration> {
        let mut inner = lock(&self.inner);
        let next = inner.wheel.next_expiration();
        let io_timeout = match fixed {
            Some(fixed) => fixed,
            None => {
                let until_next = next.map(|tick| {
                    let d = self.tick_to_instant(tick).saturating_duration_since(now);
                    Duration::from_millis(ceil_millis(d))
                });
                match (timeout, until_next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        inner.wake_at = match io_timeout {
            Some(Duration::ZERO) => WakeAt::NotParked,
            _ => next.map_or(WakeAt::Never, WakeAt::Tick),
        };
        io_timeout
    }

    /// Fires every timer due at the clock's current time; returns how many fired.
    fn process(&self) -> usize {
        let now = self.now_to_tick(self.clock.now());
        let mut wakers: Vec<Waker> = Vec::new();
        let mut total = 0;
        loop {
            let mut done = true;
            {
                let mut inner = lock(&self.inner);
                inner.wake_at = WakeAt::NotParked;
                let mut fired = 0;
                while fired < WAKE_BATCH {
                    let Some(shared) = inner.wheel.poll(now) else {
                        break;
                    };
                    fired += 1;
                    if let Some(w) = shared.complete(FIRED) {
                        wakers.push(w);
                    }
                }
                total += fired;
                if fired == WAKE_BATCH {
                    done = false;
                }
                self.num_timers.store(inner.wheel.len(), Ordering::Relaxed);
            }
            for w in wakers.drain(..) {
                wake(w);
            }
            if done {
                return total;
            }
        }
    }

    fn shutdown(&self) {
        let drained = {
            let mut inner = lock(&self.inner);
            inner.is_shutdown = true;
            self.num_timers.store(0, Ordering::Relaxed);
            inner.wheel.drain()
        };
        // Completed outside the wheel lock: nothing polls these under it, and no new entry can join.
        for shared in drained {
            if let Some(w) = shared.complete(SHUTDOWN) {
                wake(w);
            }
        }
    }

    /// (Re)registers `shared` to fire at `deadline`, first cancelling `old` if it is still `shared`'s
    /// entry. Fires it at once if the deadline has passed, or with a shutdown error if the driver has
    /// shut down. Returns the new wheel key and whether the driver must be unparked (the deadline is
    /// earlier than what it waits for).
    pub(crate) fn register(
        &self,
        shared: &Arc<TimerShared>,
        old: Option<Key>,
        deadline: Instant,
    ) -> (Option<Key>, bool) {
        let mut inner = lock(&self.inner);
        if let Some(key) = old {
            Self::remove_locked(&mut inner, shared, key);
        }
        if inner.is_shutdown {
            shared.state.store(SHUTDOWN, Ordering::Release);
            return (None, false);
        }
        if deadline <= self.clock.now() {
            shared.state.store(FIRED, Ordering::Release);
            self.num_timers.store(inner.wheel.len(), Ordering::Relaxed);
            return (None, false);
        }
        let when = self.deadline_to_tick(deadline);
        shared.state.store(PENDING, Ordering::Release);
        let result = match inner.wheel.insert(when, shared.clone()) {
            Ok(key) => {
                let unpark = match inner.wake_at {
                    WakeAt::NotParked => false,
                    WakeAt::Tick(t) => when < t,
                    WakeAt::Never => true,
                };
                if unpark {
                    // One unpark is enough until the driver re-parks.
                    inner.wake_at = WakeAt::NotParked;
                }
                (Some(key), unpark)
            }
            Err(_) => {
                shared.state.store(FIRED, Ordering::Release);
                (None, false)
            }
        };
        self.num_timers.store(inner.wheel.len(), Ordering::Relaxed);
        result
    }

    /// Cancels the entry `key` if it is still `shared`'s.
    pub(crate) fn cancel(&self, shared: &Arc<TimerShared>, key: Key) {
        let mut inner = lock(&self.inner);
        Self::remove_locked(&mut inner, shared, key);
        self.num_timers.store(inner.wheel.len(), Ordering::Relaxed);
    }

    fn remove_locked(inner: &mut Inner, shared: &Arc<TimerShared>, key: Key) {
        // The key may have been handed to another timer after ours fired: only remove our own.
        if inner
            .wheel
            .get(key)
            .is_some_and(|entry| Arc::ptr_eq(entry, shared))
        {
            inner.wheel.remove(key);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;

    #[test]
    fn the_handle_counts_registered_timers_and_forgets_cancelled_and_fired_ones() {
        let rt = crate::runtime::Builder::new_current_thread()
            .start_paused(true)
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let driver = crate::runtime::context::current_driver().expect("entered");
        let mut cx = Context::from_waker(Waker::noop());
        let mut a = crate::time::sleep(Duration::from_secs(60));
        let mut b = crate::time::sleep(Duration::from_secs(120));
        assert_eq!(driver.time.num_timers(), 0, "registered on the first poll");
        assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut b).poll(&mut cx).is_pending());
        assert_eq!(driver.time.num_timers(), 2);
        drop(a);
        assert_eq!(driver.time.num_timers(), 1);
        b.reset(driver.time.clock().now());
        assert_eq!(
            driver.time.num_timers(),
            0,
            "a deadline already reached fires at once"
        );
        assert!(Pin::new(&mut b).poll(&mut cx).is_ready());
        b.reset(driver.time.clock().now() + Duration::from_secs(1));
        assert_eq!(driver.time.num_timers(), 1, "re-armed after firing");
        let deadline = b.deadline();
        let next = driver
            .time
            .next_expiration()
            .expect("a timer is registered");
        assert!(
            next <= deadline,
            "never after the deadline: {next:?} > {deadline:?}"
        );
    }

    #[test]
    fn milliseconds_are_rounded_up() {
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(3)), 3);
        assert_eq!(ceil_millis(Duration::from_nanos(3_000_001)), 4);
        assert_eq!(
            ceil_millis(Duration::MAX),
            u64::try_from(Duration::MAX.as_nanos().div_ceil(NANOS_PER_MILLI)).unwrap_or(u64::MAX)
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The poll side stores its waker, then re-reads the state; the firing side sets the state, then
    /// takes the waker. Whatever the interleaving, the poller either sees the timer fired or is woken.
    #[test]
    fn a_timer_firing_while_it_is_polled_never_loses_the_wake_up() {
        loom::model(|| {
            let shared = Arc::new(TimerShared::new());
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let firer = {
                let shared = shared.clone();
                crate::loom::thread::spawn(move || {
                    if let Some(w) = shared.complete(FIRED) {
                        w.wake();
                    }
                })
            };
            let seen = shared.result().is_some() || {
                shared.register_waker(&waker);
                shared.result().is_some()
            };
            firer.join().expect("the firing thread does not panic");
            assert!(seen || flag.0.load(Ordering::SeqCst), "lost wake-up");
        });
    }
}
