//! The I/O driver: one `mio::Poll`, and the set of registered resources it dispatches readiness to.
//!
//! # Tokens
//!
//! A resource's mio token is the address of its [`ScheduledIo`]. The driver keeps an `Arc` of every
//! registered `ScheduledIo` in its registration set, so the address stays valid while the OS may still
//! report events for it. Deregistration (on the resource's drop) first removes the source from the OS
//! poller, then *queues* the `Arc` for release; the driver drops queued `Arc`s only at the start of its
//! next `park`, before calling `poll`. So every token in a batch of events refers to a live
//! `ScheduledIo`:
//!
//! - a source deregistered before the `poll` began cannot appear in its events, and its `Arc` is
//!   released no earlier than that `poll`'s start;
//! - a source deregistered while the driver dispatches a batch is queued, and the queue is processed
//!   only at the next park, after the batch is done.
//!
//! A source whose OS deregistration fails stays in the set (leaked until shutdown) rather than risk a
//! dangling token.
//!
//! # Wakers
//!
//! Readiness wakers are woken outside every lock, and each through
//! [`wake_catching_panic`](crate::runtime::wake_catching_panic): a waker that panics is skipped, the
//! thread dispatching (a worker) carries on.
//!
//! # Shutdown
//!
//! `shutdown` marks every registered resource shut down (they wake their waiters and from then on
//! fail with "the runtime has shut down"), refuses new registrations, and stops dispatching: a `park`
//! after shutdown only waits.
//!
//! It also closes the handle's two descriptors (the registry's duplicate of the poller and the
//! `mio::Waker`'s eventfd), which would otherwise stay open for as long as anything holds the
//! handle: a socket, a `runtime::Handle`, the JS object of a runtime not yet collected. They sit in
//! a [`Releasable`]: using them stays lock-free (the waker is on every unpark's path), and the last
//! user closes them once shutdown let go. From then on an unpark does nothing (nobody is left to
//! wake), a deregistration has nothing to undo, and a registration fails with the shutdown error.
use super::scheduled_io::{ScheduledIo, MAX_TICK};
use super::{Interest, Ready};
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::loom::sync::{Arc, Mutex, MutexGuard};
use std::io;
use std::sync::PoisonError;
use std::task::Waker;
use std::time::Duration;

/// The token of the `mio::Waker` that `Handle::unpark` uses. Never the address of a `ScheduledIo`.
const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Once this many deregistered resources wait for release, the driver is unparked to free them.
const RELEASE_BATCH: usize = 16;

/// Owns the poller; held by one thread at a time (the one parking).
pub(crate) struct Driver {
    poll: mio::Poll,
    events: mio::Events,
    /// The turn counter stamped on every readiness update (15 bits, wrapping).
    tick: u16,
    /// Reused buffer of wakers collected under a resource's lock and woken after it.
    wakers: Vec<Waker>,
    is_shutdown: bool,
}

/// Shared access to the reactor: registering resources and unparking the driver. Any thread.
pub(crate) struct Handle {
    /// The registry and the waker, closed at shutdown (see the module docs).
    fds: Releasable<Fds>,
    synced: Mutex<Synced>,
    io_events: AtomicU64,
}

/// The descriptors a [`Handle`] holds.
struct Fds {
    registry: mio::Registry,
    waker: mio::Waker,
}

/// A value any thread may use until it is released, then dropped by whoever uses it last, without
/// a lock.
///
/// `state` is [`OPEN`] (until [`release`](Self::release)) plus [`USER`] for every thread inside
/// [`with`](Self::with). A user enters only while `OPEN` is set (a CAS), so once it is clear the
/// count can only fall; the thread that brings the state to zero (the releaser if nobody is inside,
/// else the last user to leave) is the only one left, and drops the value.
pub(crate) struct Releasable<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
}

const OPEN: usize = 1;
const USER: usize = 2;

// SAFETY: the value is only shared as `&T` among the users inside `with` (so `T: Sync` is needed),
// and dropped by exactly one thread (so `T: Send`), after every user has left (see the type's docs).
unsafe impl<T: Send + Sync> Sync for Releasable<T> {}

impl<T> Releasable<T> {
    pub(crate) fn new(value: T) -> Releasable<T> {
        Releasable {
            state: AtomicUsize::new(OPEN),
            value: UnsafeCell::new(Some(value)),
        }
    }

    /// Calls `f` with the value, or returns `None` once it has been released.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let mut curr = self.state.load(Ordering::Acquire);
        loop {
            if curr & OPEN == 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                curr,
                curr + USER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => curr = actual,
            }
        }
        /// Leaves on unwind too, so a panicking `f` cannot keep the value forever.
        struct Leave<'a, T>(&'a Releasable<T>);
        impl<T> Drop for Leave<'_, T> {
            fn drop(&mut self) {
                // AcqRel: our use happens before the drop, and the last one out sees every use.
                if self.0.state.fetch_sub(USER, Ordering::AcqRel) == USER {
                    self.0.drop_value();
                }
            }
        }
        let leave = Leave(self);
        let out = self.value.with(|value| {
            // We entered while `OPEN` was set, and `drop_value` runs only once the state reached zero.
            // SAFETY: so the value is `Some`, alive until we leave, and only ever shared, never mutated.
            let value = unsafe { &*value };
            value.as_ref().map(f)
        });
        drop(leave);
        out
    }

    /// Stops new uses; the value is dropped now if nobody is using it, else by the last user.
    /// Idempotent.
    pub(crate) fn release(&self) {
        if self.state.fetch_and(!OPEN, Ordering::AcqRel) == OPEN {
            self.drop_value();
        }
    }

    /// Whether [`release`](Self::release) was called.
    #[allow(dead_code)]
    pub(crate) fn is_released(&self) -> bool {
        self.state.load(Ordering::Acquire) & OPEN == 0
    }

    fn drop_value(&self) {
        let value = self.value.with_mut(|value| {
            // SAFETY: called by the one thread that brought the state to zero: `OPEN` is clear, so
            // nobody can enter, and nobody is inside.
            unsafe { (*value).take() }
        });
        drop(value);
    }
}

/// The registration set, under the handle's lock.
struct Synced {
    is_shutdown: bool,
    /// Every registered resource, indexed by `ScheduledIo::slot`.
    slots: Vec<Option<Arc<ScheduledIo>>>,
    /// Free indices in `slots`.
    free: Vec<usize>,
    /// Deregistered resources, released at the start of the next park.
    pending_release: Vec<Arc<ScheduledIo>>,
}

impl Synced {
    fn remove(&mut self, io: &Arc<ScheduledIo>) {
        let slot = io.slot();
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.as_ref().is_some_and(|held| Arc::ptr_eq(held, io)) {
                *entry = None;
                self.free.push(slot);
            }
        }
    }
}

fn token_of(io: &Arc<ScheduledIo>) -> mio::Token {
    mio::Token(Arc::as_ptr(io) as usize)
}

impl Driver {
    /// Creates the poller (with room for `nevents` events per poll) and its handle.
    pub(crate) fn new(nevents: usize) -> io::Result<(Driver, Handle)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        let driver = Driver {
            poll,
            events: mio::Events::with_capacity(nevents.max(1)),
            tick: 0,
            wakers: Vec::new(),
            is_shutdown: false,
        };
        let handle = Handle {
            fds: Releasable::new(Fds { registry, waker }),
            synced: Mutex::new(Synced {
                is_shutdown: false,
                slots: Vec::new(),
                free: Vec::new(),
                pending_release: Vec::new(),
            }),
            io_events: AtomicU64::new(0),
        };
        Ok((driver, handle))
    }

    /// Blocks in the poller until an event, `timeout` or an unpark (`Some(ZERO)` only polls), then
    /// caches the readiness of every reported resource and wakes the tasks waiting for it. Returns
    /// whether anything happened (an I/O event or an unpark), which the paused clock needs to know
    /// before it auto-advances.
    pub(crate) fn park(&mut self, handle: &Handle, timeout: Option<Duration>) -> bool {
        if !self.is_shutdown {
            handle.release_pending();
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait: a spurious wake-up, not an error.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return false,
            // EBADF/EFAULT/EINVAL: the poller itself is broken, an invariant no caller can violate.
            Err(e) => panic!("unexpected error from the I/O poller: {e}"),
        }
        if self.is_shutdown {
            // The registration set was emptied at shutdown; tokens may no longer be live.
            return false;
        }
        let woke = !self.events.is_empty();
        self.tick = (self.tick + 1) & MAX_TICK;
        let mut dispatched = 0u64;
        for event in self.events.iter() {
            let token = event.token();
            if token == WAKE_TOKEN {
                continue;
            }
            dispatched += 1;
            let ready = Ready::from_mio(event);
            let ptr = token.0 as *const ScheduledIo;
            // Soundness: every token other than WAKE_TOKEN was registered by `Handle::add_source` as the
            // address of an `Arc<ScheduledIo>` that `Synced::slots` holds. That `Arc` is dropped only
            // by `release_pending` (called above, before this poll, and only for sources already
            // removed from the OS poller, which therefore cannot be in this batch) or by `shutdown`
            // (after which we return above without dispatching). So the pointee is alive here.
            // SAFETY: sound by the argument just above.
            let io = unsafe { &*ptr };
            io.set_readiness(self.tick, ready);
            io.take_wakers(ready, &mut self.wakers);
            // A resource may be polled with any waker, not only a task's: one that panics must not
            // unwind through the worker parked here, nor cost the wakers after it their wake-up.
            for waker in self.wakers.drain(..) {
                crate::runtime::wake_catching_panic(waker);
            }
        }
        if dispatched > 0 {
            handle.io_events.fetch_add(dispatched, Ordering::Relaxed);
        }
        woke
    }

    /// Wakes every registered resource with the shutdown error and refuses new registrations.
    pub(crate) fn shutdown(&mut self, handle: &Handle) {
        self.is_shutdown = true;
        let ios: Vec<Arc<ScheduledIo>> = {
            let mut synced = handle.lock();
            if synced.is_shutdown {
                return;
            }
            synced.is_shutdown = true;
            synced.free.clear();
            synced.pending_release.clear();
            synced.slots.drain(..).flatten().collect()
        };
        for io in ios {
            io.shutdown();
        }
        // Nothing will be registered or dispatched any more: close the handle's descriptors now,
        // not when the last holder of the handle lets go of it.
        handle.fds.release();
    }

    /// The epoll/kqueue descriptor: readable whenever a `park(Some(ZERO))` would find events.
    #[cfg(unix)]
    pub(crate) fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Synced> {
        // Every critical section below leaves `Synced` consistent at each step, so a poisoned lock
        // (a panic elsewhere while holding it) is still safe to use.
        self.synced.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a `park` in progress (or the next one) return at once.
    pub(crate) fn unpark(&self) {
        // A failed wake leaves the poller to its timeout; nothing better can be done. After
        // shutdown there is no waker, and no driver dispatching anything to wake.
        let _ = self.fds.with(|fds| fds.waker.wake());
    }

    /// Readiness events dispatched to resources since the driver started (a metric).
    pub(crate) fn io_events(&self) -> u64 {
        self.io_events.load(Ordering::Relaxed)
    }

    /// Resources currently registered (a metric; includes those awaiting release).
    #[allow(dead_code)]
    pub(crate) fn registered_count(&self) -> usize {
        let synced = self.lock();
        synced.slots.len() - synced.free.len()
    }

    /// Registers `source` for `interest` and returns its shared state.
    pub(crate) fn add_source(
        &self,
        source: &mut impl mio::event::Source,
        interest: Interest,
    ) -> io::Result<Arc<ScheduledIo>> {
        let io = {
            let mut synced = self.lock();
            if synced.is_shutdown {
                return Err(super::scheduled_io::shutdown_error());
            }
            let slot = match synced.free.pop() {
                Some(slot) => slot,
                None => {
                    synced.slots.push(None);
                    synced.slots.len() - 1
                }
            };
            let io = Arc::new(ScheduledIo::new(slot));
            synced.slots[slot] = Some(io.clone());
            io
        };
        let registered = self
            .fds
            .with(|fds| {
                fds.registry
                    .register(source, token_of(&io), interest.to_mio())
            })
            // Shut down since the check above.
            .unwrap_or_else(|| Err(super::scheduled_io::shutdown_error()));
        if let Err(e) = registered {
            // Never registered with the OS, so no event can name it: remove it at once.
            self.lock().remove(&io);
            return Err(e);
        }
        Ok(io)
    }

    /// Widens the registration of a source registered for reading only to reading and writing
    /// (see [`Registration::new_deferring_write`](super::registration::Registration)). The
    /// descriptor alone names the source to epoll/kqueue, so the owner's `&mut` is not needed.
    #[cfg(unix)]
    pub(crate) fn add_write_interest(
        &self,
        io: &Arc<ScheduledIo>,
        fd: std::os::fd::RawFd,
    ) -> io::Result<()> {
        let both = Interest::READABLE.add(Interest::WRITABLE).to_mio();
        self.fds
            .with(|fds| {
                fds.registry
                    .reregister(&mut mio::unix::SourceFd(&fd), token_of(io), both)
            })
            .unwrap_or_else(|| Err(super::scheduled_io::shutdown_error()))
    }

    /// Removes `source` from the poller and queues `io` for release at the next park.
    pub(crate) fn deregister_source(
        &self,
        io: &Arc<ScheduledIo>,
        source: &mut impl mio::event::Source,
    ) -> io::Result<()> {
        // On failure the source may still be in the OS poller, so `io` must stay alive: it stays in
        // the registration set until shutdown. After shutdown (no registry any more) nothing is
        // dispatched, and the set was emptied: there is nothing to undo.
        self.fds
            .with(|fds| fds.registry.deregister(source))
            .unwrap_or(Ok(()))?;
        io.clear_wakers();
        let notify = {
            let mut synced = self.lock();
            if synced.is_shutdown {
                false
            } else {
                synced.pending_release.push(io.clone());
                synced.pending_release.len() == RELEASE_BATCH
            }
        };
        if notify {
            self.unpark();
        }
        Ok(())
    }

    /// Drops the registration set's hold on every deregistered resource. Called by the driver before
    /// it polls, so none of these can be in the batch it is about to dispatch.
    fn release_pending(&self) {
        let released: Vec<Arc<ScheduledIo>> = {
            let mut synced = self.lock();
            if synced.pending_release.is_empty() {
                return;
            }
            let pending = std::mem::take(&mut synced.pending_release);
            for io in &pending {
                synced.remove(io);
            }
            pending
        };
        // The last references may drop here, outside the lock.
        drop(released);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;

    /// Counts its drops.
    struct Counted<'a>(&'a StdAtomicUsize);

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_released_value_is_dropped_at_once_when_unused_and_never_handed_out_again() {
        let drops = StdAtomicUsize::new(0);
        let cell = Releasable::new(Counted(&drops));
        assert_eq!(cell.with(|_| 7), Some(7));
        assert!(!cell.is_released());
        cell.release();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(cell.is_released());
        assert_eq!(cell.with(|_| 7), None);
        cell.release();
        drop(cell);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
    }

    #[test]
    fn a_value_released_while_in_use_is_dropped_by_its_last_user() {
        let drops = StdAtomicUsize::new(0);
        let cell = Releasable::new(Counted(&drops));
        cell.with(|_| {
            cell.with(|_| {
                cell.release();
                assert_eq!(drops.load(Ordering::SeqCst), 0, "still in use");
                assert!(cell.with(|_| ()).is_none(), "no new user once released");
            });
            assert_eq!(drops.load(Ordering::SeqCst), 0, "one user left");
        });
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(cell);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
    }

    #[test]
    fn a_value_never_released_is_dropped_with_its_cell() {
        let drops = StdAtomicUsize::new(0);
        drop(Releasable::new(Counted(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_shut_down_driver_lets_go_of_its_handle_s_descriptors_and_the_handle_still_answers() {
        let (mut driver, handle) = Driver::new(16).expect("driver");
        let mut early = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let io = handle
            .add_source(&mut early, Interest::READABLE)
            .expect("registered");
        handle.unpark();
        assert!(driver.park(&handle, Some(Duration::ZERO)), "the unpark");
        driver.shutdown(&handle);
        assert!(handle.fds.is_released());
        // Each use of the handle after shutdown has its usual answer, without the descriptors.
        handle.unpark();
        let mut late = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let err = handle
            .add_source(&mut late, Interest::READABLE)
            .err()
            .expect("refused");
        assert!(super::super::scheduled_io::is_shutdown_error(&err));
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let err = handle
                .add_write_interest(&io, early.as_raw_fd())
                .expect_err("refused");
            assert!(super::super::scheduled_io::is_shutdown_error(&err));
        }
        handle
            .deregister_source(&io, &mut early)
            .expect("nothing to undo");
        assert!(!driver.park(&handle, Some(Duration::ZERO)));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::atomic::AtomicUsize;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A user racing the release (as an unpark racing the driver's shutdown): the user either gets
    /// the value, which stays alive for the whole use, or is turned away; the value is dropped
    /// exactly once, by whichever of the two is last.
    #[test]
    fn a_use_racing_the_release_never_sees_a_dropped_value_and_the_value_drops_once() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let cell = Arc::new(Releasable::new(Counted(drops.clone())));
            let user = {
                let (cell, drops) = (cell.clone(), drops.clone());
                crate::loom::thread::spawn(move || {
                    cell.with(|_| {
                        assert_eq!(drops.load(Ordering::SeqCst), 0, "used after its drop");
                    })
                    .is_some()
                })
            };
            cell.release();
            let _used = user.join().expect("the user does not panic");
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            drop(cell);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        });
    }
}
