//! The reactor's state for one registered resource: cached readiness, a tick, and the tasks waiting.
//!
//! The readiness word packs three things so that one atomic operation reads or updates them together:
//!
//! ```text
//! bit 31      bits 16..31          bits 0..16
//! SHUTDOWN |  tick (15 bits)   |   Ready bits
//! ```
//!
//! mio is edge-triggered: the OS reports a transition once. So readiness is *cached* here, and an
//! operation clears it only after the OS said `WouldBlock`. Between the moment a task reads the cached
//! readiness and the moment it clears it, the driver may have dispatched a newer event for the same
//! resource; clearing then would lose that edge and the task would sleep forever. The tick guards this:
//! the driver stamps every dispatch with its turn counter, the task remembers the tick it saw
//! ([`ReadyEvent`]), and the clear is skipped when the tick has moved on.
use super::{Interest, Ready};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

const READINESS_BITS: usize = 0xFFFF;
const TICK_SHIFT: u32 = 16;
/// The tick wraps at this value (15 bits).
pub(crate) const MAX_TICK: u16 = 0x7FFF;
const TICK_BITS: usize = (MAX_TICK as usize) << TICK_SHIFT;
const SHUTDOWN: usize = 1 << 31;

fn tick_of(word: usize) -> u16 {
    ((word & TICK_BITS) >> TICK_SHIFT) as u16
}

/// The payload of [`shutdown_error`], so callers can tell that error from the OS's
/// ([`is_shutdown_error`]).
#[derive(Debug)]
struct RuntimeShutDown;

impl std::fmt::Display for RuntimeShutDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the runtime has shut down")
    }
}

impl std::error::Error for RuntimeShutDown {}

/// The error every operation on a resource returns once its runtime has shut down.
pub(crate) fn shutdown_error() -> std::io::Error {
    std::io::Error::other(RuntimeShutDown)
}

/// Whether `e` is the error an I/O resource returns because its runtime has shut down.
pub fn is_shutdown_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<RuntimeShutDown>())
}

/// One direction of a resource, for the `poll_*_ready` methods that keep a single waker each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Reading (and accepting, receiving).
    Read,
    /// Writing (and connecting, sending).
    Write,
}

impl Direction {
    pub(crate) fn mask(self) -> Ready {
        match self {
            Direction::Read => Interest::READABLE.mask(),
            Direction::Write => Interest::WRITABLE.mask(),
        }
    }
}

/// A readiness snapshot: what was ready and at which driver tick, to pass back to `clear_readiness`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    pub(crate) tick: u16,
    pub(crate) ready: Ready,
    pub(crate) is_shutdown: bool,
}

struct Waiter {
    mask: Ready,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Waiters {
    /// The task in `poll_read_ready` (one at a time: the last caller wins).
    reader: Option<Waker>,
    /// The task in `poll_write_ready`.
    writer: Option<Waker>,
    /// Tasks in `readiness(interest).await`; any number may wait at once. A slot stays allocated
    /// (with `waker: None` once woken) until its future is dropped, so indices are stable.
    list: Vec<Option<Waiter>>,
}

impl Waiters {
    fn take_matching(&mut self, ready: Ready, out: &mut Vec<Waker>) {
        if !(ready & Direction::Read.mask()).is_empty() {
            out.extend(self.reader.take());
        }
        if !(ready & Direction::Write.mask()).is_empty() {
            out.extend(self.writer.take());
        }
        for waiter in self.list.iter_mut().flatten() {
            if !(waiter.mask & ready).is_empty() {
                out.extend(waiter.waker.take());
            }
        }
    }
}

/// The shared state between a resource's [`Registration`](super::registration::Registration) and
/// the driver.
pub(crate) struct ScheduledIo {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
    /// This resource's index in the driver's registration set.
    slot: usize,
}

impl ScheduledIo {
    pub(crate) fn new(slot: usize) -> ScheduledIo {
        ScheduledIo {
            readiness: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
            slot,
        }
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    fn lock(&self) -> crate::loom::sync::MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave `Waiters` inconsistent (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// ORs `ready` into the cached readiness, keeping its tick: readiness a new resource is known
    /// to have before the poller reported it (no task can be waiting on it yet).
    #[cfg(unix)]
    pub(crate) fn assume_ready(&self, ready: Ready) {
        self.readiness.fetch_or(ready.as_usize(), Ordering::AcqRel);
    }

    /// Driver: ORs `ready` into the cached readiness and stamps it with `tick`.
    pub(crate) fn set_readiness(&self, tick: u16, ready: Ready) {
        let tick = ((tick & MAX_TICK) as usize) << TICK_SHIFT;
        let mut curr = self.readiness.load(Ordering::Acquire);
        loop {
            let next = (curr & (SHUTDOWN | READINESS_BITS)) | ready.as_usize() | tick;
            match self.readiness.compare_exchange_weak(
                curr,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => curr = actual,
            }
        }
    }

    /// Clears the states of `event` unless the driver dispatched a newer event since.
    ///
    /// `include_closed`: also clear the closed states. Right after an operation returned
    /// `WouldBlock` that is sound (a closed direction returns end of stream or an error, never
    /// `WouldBlock`) and it keeps a spurious closed state (mio maps `EPOLLERR|EPOLLOUT` on a UDP
    /// socket to write-closed) from making every later operation spin. After a short read or write
    /// the closed states must stay: the edge that reported them will not come again.
    pub(crate) fn clear_readiness(&self, event: ReadyEvent, include_closed: bool) {
        let clear = if include_closed {
            event.ready
        } else {
            event.ready - Ready::CLOSED
        };
        let clear = clear.as_usize();
        let mut curr = self.readiness.load(Ordering::Acquire);
        loop {
            if tick_of(curr) != event.tick {
                return;
            }
            let next = curr & !clear;
            if next == curr {
                return;
            }
            match self.readiness.compare_exchange_weak(
                curr,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => curr = actual,
            }
        }
    }

    /// Marks the resource shut down and wakes every waiter.
    pub(crate) fn shutdown(&self) {
        self.readiness.fetch_or(SHUTDOWN, Ordering::AcqRel);
        let mut wakers = Vec::new();
        {
            let mut waiters = self.lock();
            waiters.take_matching(Ready::ALL, &mut wakers);
        }
        for waker in wakers {
            // Called by the thread shutting the driver down (a worker): see the I/O driver's docs.
            crate::runtime::wake_catching_panic(waker);
        }
    }

    /// Driver: moves the wakers interested in `ready` into `out` (the caller wakes them unlocked).
    pub(crate) fn take_wakers(&self, ready: Ready, out: &mut Vec<Waker>) {
        self.lock().take_matching(ready, out);
    }

    /// Drops every stored waker (the resource is being deregistered).
    pub(crate) fn clear_wakers(&self) {
        let dropped: Vec<Waker> = {
            let mut waiters = self.lock();
            let mut dropped: Vec<Waker> = waiters
                .list
                .iter_mut()
                .flatten()
                .filter_map(|waiter| waiter.waker.take())
                .collect();
            dropped.extend(waiters.reader.take());
            dropped.extend(waiters.writer.take());
            dropped
        };
        // Dropped outside the lock: dropping a task's last waker may free the task, and with it
        // anything (even another handle to this resource) that takes this lock.
        drop(dropped);
    }

    /// The readiness matching `mask` right now, if any (a shut-down resource always matches).
    pub(crate) fn ready_event(&self, mask: Ready) -> Option<ReadyEvent> {
        let curr = self.readiness.load(Ordering::Acquire);
        let tick = tick_of(curr);
        if curr & SHUTDOWN != 0 {
            return Some(ReadyEvent {
                tick,
                ready: mask,
                is_shutdown: true,
            });
        }
        let ready = Ready::from_usize(curr) & mask;
        if ready.is_empty() {
            None
        } else {
            Some(ReadyEvent {
                tick,
                ready,
                is_shutdown: false,
            })
        }
    }

    /// Returns the direction's readiness, or stores `cx`'s waker in the direction's slot.
    pub(crate) fn poll_readiness(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
    ) -> Poll<ReadyEvent> {
        let mask = direction.mask();
        if let Some(event) = self.ready_event(mask) {
            return Poll::Ready(event);
        }
        let (replaced, result) = {
            let mut waiters = self.lock();
            let slot = match direction {
                Direction::Read => &mut waiters.reader,
                Direction::Write => &mut waiters.writer,
            };
            let replaced = match slot {
                Some(w) if w.will_wake(cx.waker()) => None,
                _ => slot.replace(cx.waker().clone()),
            };
            // Checked again under the lock: the driver sets readiness before taking the lock to
            // collect wakers, so either we see its readiness here or it sees the waker just stored.
            let result = match self.ready_event(mask) {
                Some(event) => Poll::Ready(event),
                None => Poll::Pending,
            };
            (replaced, result)
        };
        // The previous waiter's waker is dropped unlocked (see `clear_wakers`).
        drop(replaced);
        result
    }

    /// A future resolving when readiness matching `interest` is cached (any number of tasks may wait).
    pub(crate) fn readiness(&self, interest: Interest) -> Readiness<'_> {
        Readiness {
            io: self,
            mask: interest.mask(),
            slot: None,
        }
    }
}

/// Future returned by [`ScheduledIo::readiness`].
pub(crate) struct Readiness<'a> {
    io: &'a ScheduledIo,
    mask: Ready,
    /// Our index in `Waiters::list` once we have waited.
    slot: Option<usize>,
}

impl Readiness<'_> {
    fn release_slot(&mut self) {
        if let Some(slot) = self.slot.take() {
            let removed = {
                let mut waiters = self.io.lock();
                waiters.list.get_mut(slot).and_then(Option::take)
            };
            drop(removed);
        }
    }
}

impl Future for Readiness<'_> {
    type Output = ReadyEvent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReadyEvent> {
        let this = self.get_mut();
        let coop = match crate::runtime::coop::poll_proceed(cx) {
            Poll::Ready(coop) => coop,
            Poll::Pending => return Poll::Pending,
        };
        if let Some(event) = this.io.ready_event(this.mask) {
            coop.made_progress();
            this.release_slot();
            return Poll::Ready(event);
        }
        let (replaced, removed, ready) = {
            let mut waiters = this.io.lock();
            let waiter = Waiter {
                mask: this.mask,
                waker: Some(cx.waker().clone()),
            };
            let replaced = match this.slot {
                Some(slot) if slot < waiters.list.len() => waiters.list[slot].replace(waiter),
                _ => {
                    let slot = match waiters.list.iter().position(Option::is_none) {
                        Some(free) => {
                            waiters.list[free] = Some(waiter);
                            free
                        }
                        None => {
                            waiters.list.push(Some(waiter));
                            waiters.list.len() - 1
                        }
                    };
                    this.slot = Some(slot);
                    None
                }
            };
            // Re-checked under the lock, as in `poll_readiness`.
            let ready = this.io.ready_event(this.mask);
            let removed = match ready {
                Some(_) => this
                    .slot
                    .take()
                    .and_then(|slot| waiters.list.get_mut(slot).and_then(Option::take)),
                None => None,
            };
            (replaced, removed, ready)
        };
        // Wakers are dropped unlocked (see `ScheduledIo::clear_wakers`).
        drop((replaced, removed));
        match ready {
            Some(event) => {
                coop.made_progress();
                Poll::Ready(event)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Readiness<'_> {
    fn drop(&mut self) {
        self.release_slot();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn clearing_with_a_stale_tick_keeps_the_newer_event() {
        let io = ScheduledIo::new(0);
        io.set_readiness(1, Ready::READABLE);
        let seen = io.ready_event(Direction::Read.mask()).expect("readable");
        assert_eq!(seen.tick, 1);
        // A newer edge arrives (driver turn 2) before the task clears after its WouldBlock.
        io.set_readiness(2, Ready::READABLE);
        io.clear_readiness(seen, true);
        assert!(io.ready_event(Direction::Read.mask()).is_some());
        // With the current tick the clear goes through.
        let seen = io.ready_event(Direction::Read.mask()).expect("readable");
        io.clear_readiness(seen, true);
        assert!(io.ready_event(Direction::Read.mask()).is_none());
    }

    #[test]
    fn closed_states_survive_a_drained_clear_and_shutdown_is_always_ready() {
        let io = ScheduledIo::new(0);
        io.set_readiness(3, Ready::READABLE | Ready::READ_CLOSED);
        let seen = io.ready_event(Direction::Read.mask()).expect("readable");
        io.clear_readiness(seen, false);
        let after = io
            .ready_event(Direction::Read.mask())
            .expect("still read-closed");
        assert!(after.ready.is_read_closed());
        assert!(io.ready_event(Direction::Write.mask()).is_none());
        io.shutdown();
        assert!(
            io.ready_event(Direction::Write.mask())
                .expect("shut down")
                .is_shutdown
        );
    }

    #[test]
    fn a_would_block_clear_also_drops_a_spurious_closed_state() {
        let io = ScheduledIo::new(0);
        // A UDP socket with a queued ICMP error: EPOLLERR|EPOLLOUT, which mio calls write-closed.
        io.set_readiness(4, Ready::WRITABLE | Ready::WRITE_CLOSED | Ready::ERROR);
        let seen = io.ready_event(Direction::Write.mask()).expect("writable");
        io.clear_readiness(seen, true);
        assert!(io.ready_event(Direction::Write.mask()).is_none());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::atomic::AtomicBool;
    use crate::loom::sync::Arc;
    use std::task::Wake;

    /// A waker recording that it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn dispatch(io: &ScheduledIo, tick: u16) {
        io.set_readiness(tick, Ready::READABLE);
        let mut wakers = Vec::new();
        io.take_wakers(Ready::READABLE, &mut wakers);
        for waker in wakers {
            waker.wake();
        }
    }

    /// A task clears readiness after `WouldBlock` and waits again while the driver dispatches a
    /// new edge: either the task sees the new readiness or it is woken. Never neither.
    #[test]
    fn an_edge_racing_a_clear_and_a_wait_is_never_lost() {
        loom::model(|| {
            let io = Arc::new(ScheduledIo::new(0));
            io.set_readiness(1, Ready::READABLE);
            let seen = io.ready_event(Direction::Read.mask());
            let driver = {
                let io = io.clone();
                crate::loom::thread::spawn(move || dispatch(&io, 2))
            };
            if let Some(seen) = seen {
                io.clear_readiness(seen, true);
            }
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            let polled = io.poll_readiness(&mut cx, Direction::Read);
            let _ = driver.join();
            assert!(polled.is_ready() || flag.0.load(Ordering::SeqCst));
        });
    }

    /// The same for a `readiness()` waiter in the list.
    #[test]
    fn an_edge_racing_a_listed_waiter_is_never_lost() {
        loom::model(|| {
            let io = Arc::new(ScheduledIo::new(0));
            let driver = {
                let io = io.clone();
                crate::loom::thread::spawn(move || dispatch(&io, 1))
            };
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            let mut wait = io.readiness(Interest::READABLE);
            let polled = Pin::new(&mut wait).poll(&mut cx);
            let _ = driver.join();
            assert!(polled.is_ready() || flag.0.load(Ordering::SeqCst));
        });
    }
}
