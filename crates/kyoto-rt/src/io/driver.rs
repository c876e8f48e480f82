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
//! # Shutdown
//!
//! `shutdown` marks every registered resource shut down (they wake their waiters and from then on
//! fail with "the runtime has shut down"), refuses new registrations, and stops dispatching: a `park`
//! after shutdown only waits.
use super::scheduled_io::{ScheduledIo, MAX_TICK};
use super::{Interest, Ready};
use crate::loom::sync::atomic::{AtomicU64, Ordering};
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
    registry: mio::Registry,
    waker: mio::Waker,
    synced: Mutex<Synced>,
    io_events: AtomicU64,
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
            registry,
            waker,
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
            for waker in self.wakers.drain(..) {
                waker.wake();
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
        // A failed wake leaves the poller to its timeout; nothing better can be done.
        let _ = self.waker.wake();
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
        if let Err(e) = self
            .registry
            .register(source, token_of(&io), interest.to_mio())
        {
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
        self.registry
            .reregister(&mut mio::unix::SourceFd(&fd), token_of(io), both)
    }

    /// Removes `source` from the poller and queues `io` for release at the next park.
    pub(crate) fn deregister_source(
        &self,
        io: &Arc<ScheduledIo>,
        source: &mut impl mio::event::Source,
    ) -> io::Result<()> {
        // On failure the source may still be in the OS poller, so `io` must stay alive: it stays in
        // the registration set until shutdown.
        self.registry.deregister(source)?;
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
