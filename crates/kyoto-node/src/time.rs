//! Timers for JS without a task per timer, and the conversion between JS milliseconds and the
//! runtime clock's `Instant`s.
//!
//! A JS timer is one [`kyoto_rt::time::Sleep`] registered directly in the runtime's timer wheel: it
//! is created under [`kyoto_rt::Handle::enter`] on the JS thread and polled once with a [`Waker`]
//! made from an `Arc<TimerOp>` that owns the `Sleep` and the bridge [`Op`]. When the wheel fires the
//! timer (on whichever thread drives the timers, or on the JS thread inside `advance`), the waker
//! drops the `Sleep` and completes the `Op`, which pushes the op id to the env's bridge queue.
//! Cancelling drops the `Sleep`, which removes it from the wheel. No task, no thread, no channel.
//!
//! The JS layer coalesces sleeps that end on the same 1 ms tick of the wheel into one such timer
//! (see `lib/time.ts`), so a million sleeps cost a few hundred wheel entries.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use kyoto_rt::time::{sleep_until, Instant, Sleep};
use kyoto_rt::Handle;

use crate::bridge::{Op, Value};

/// Furthest a JS timer may reach ahead of the clock: about 31 years (later deadlines are clamped
/// to it, like Tokio's far-future deadline). Relative to the clock, not to the origin: a paused
/// clock advanced by years must still give later sleeps their whole duration.
pub const MAX_AHEAD_MS: f64 = 1e12;

/// Bound of any instant given in ms since the origin (about 31,700 years): far beyond what the
/// clock reaches (`advance` moves it by at most [`MAX_AHEAD_MS`] per call, and JS refuses to move
/// it past 1e14 ms), small enough to stay exact in nanoseconds.
const MAX_MS: f64 = 1e15;

/// The process-wide origin of JS milliseconds: every runtime clock reading is reported to JS as
/// milliseconds since this instant, so `Instant`s of different runtimes compare (while their
/// clocks run).
pub fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// `t` in milliseconds since [`origin`] (negative before it).
pub fn to_ms(t: Instant) -> f64 {
    let t = t.into_std();
    let o = origin();
    if t >= o {
        (t - o).as_nanos() as f64 / 1e6
    } else {
        -((o - t).as_nanos() as f64 / 1e6)
    }
}

/// The instant `ms` milliseconds after [`origin`], to the nanosecond (`ms` is clamped to
/// `[-1e12, 1e12]`; NaN is treated as 0).
pub fn from_ms(ms: f64) -> Instant {
    let ms = if ms.is_nan() {
        0.0
    } else {
        ms.clamp(-MAX_MS, MAX_MS)
    };
    let nanos = (ms.abs() * 1e6).round() as u64;
    let d = Duration::from_nanos(nanos);
    let o = origin();
    let t = if ms >= 0.0 {
        o.checked_add(d)
    } else {
        o.checked_sub(d)
    };
    Instant::from_std(t.unwrap_or(o))
}

/// The offset, in ms within `[0, 1)`, of the runtime's wheel ticks from whole milliseconds since
/// [`origin`]: a deadline `phase + k` (integer `k`) lies exactly on a tick, so JS can group sleeps
/// by the tick they fire on. Measured with a probe timer (the wheel reports its next expiration as
/// `start + tick ms`).
pub fn tick_phase(handle: &Handle) -> f64 {
    let _enter = handle.enter();
    let mut probe = sleep_until(handle.clock_now() + Duration::from_secs(3600));
    let mut cx = Context::from_waker(Waker::noop());
    // The first poll registers the timer with the wheel.
    let _ = Pin::new(&mut probe).poll(&mut cx);
    let next = handle.next_timer();
    drop(probe);
    match next {
        Some(t) => {
            let t = t.into_std();
            let o = origin();
            let ns_per_ms = 1_000_000u128;
            let phase = if t >= o {
                (t - o).as_nanos() % ns_per_ms
            } else {
                (ns_per_ms - (o - t).as_nanos() % ns_per_ms) % ns_per_ms
            };
            phase as f64 / 1e6
        }
        None => 0.0,
    }
}

/// One JS timer: its registration in the wheel and the operation it completes.
struct TimerOp {
    state: Mutex<Option<(Sleep, Op)>>,
    /// Set by a wake that found the lock held: the holder polls again after releasing it.
    notified: AtomicBool,
}

impl TimerOp {
    /// Polls the sleep (with this op's waker) unless another thread is doing so; that thread then
    /// sees `notified` after releasing the lock and polls again, so no firing is lost.
    fn run(self: &Arc<Self>) {
        loop {
            let mut slot = match self.state.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            self.notified.store(false, Ordering::SeqCst);
            self.poll(&mut slot);
            drop(slot);
            // Pairs with the fence in `wake_by_ref` (store `notified`, fence, try_lock): either
            // the waker's try_lock sees the lock free, or this load sees its flag.
            fence(Ordering::SeqCst);
            if !self.notified.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Polls the sleep; completes the op when it is ready.
    fn poll(self: &Arc<Self>, slot: &mut Option<(Sleep, Op)>) {
        let Some((sleep, _)) = slot.as_mut() else {
            return;
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(result) = sleep.poll_elapsed(&mut cx) {
            if let Some((sleep, op)) = slot.take() {
                drop(sleep);
                match result {
                    Ok(()) => op.complete(Value::Undefined),
                    Err(_) => op.complete(Value::Error {
                        code: "ERR_RUNTIME_SHUTDOWN",
                        message: "the runtime was shut down".to_owned(),
                    }),
                }
            }
        }
    }
}

impl Wake for TimerOp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.run();
    }
}

/// Registers a timer completing `op` at `deadline_ms` (ms since [`origin`]) in `handle`'s wheel.
/// Returns a canceller that removes it (the op is then dropped without a completion if JS claimed
/// it first).
pub fn register(handle: &Handle, op: Op, deadline_ms: f64) -> Box<dyn FnOnce()> {
    let far = to_ms(handle.clock_now()) + MAX_AHEAD_MS;
    let deadline = from_ms(deadline_ms.min(far));
    let sleep = {
        let _enter = handle.enter();
        sleep_until(deadline)
    };
    let timer = Arc::new(TimerOp {
        state: Mutex::new(Some((sleep, op))),
        notified: AtomicBool::new(false),
    });
    timer.run();
    let weak = Arc::downgrade(&timer);
    // The wheel holds the timer (through the waker) until it fires; the returned canceller holds
    // only a weak reference, so a fired timer is freed at once.
    drop(timer);
    Box::new(move || {
        if let Some(timer) = weak.upgrade() {
            let taken = timer.state.lock().unwrap_or_else(|e| e.into_inner()).take();
            // Dropping the Sleep removes it from the wheel; the Op was claimed by the cancel.
            drop(taken);
        }
    })
}
