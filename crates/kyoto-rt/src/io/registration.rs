//! A resource's link to its reactor: waits for readiness and runs non-blocking operations.
//!
//! # Deferred write interest (unix: datagram sockets and Unix-domain streams)
//!
//! A datagram socket registered for writability is woken by the kernel every time one of its sent
//! datagrams is freed (`sock_wfree` → the socket's write-space callback → every poller entry on
//! it): under load, one wake-up per datagram sent, for a socket that is almost never unwritable.
//! A Unix-domain stream is woken the same way each time its peer reads (`unix_write_space`), so
//! an echo's every reply wakes the other side's poller twice. (TCP has no such wake-up: it calls
//! its write-space callback only after a write found the send buffer full.)
//! [`Registration::new_deferring_write`] registers such a socket for reading only and caches it
//! as writable from the start, so writes are simply tried. The first write direction cleared by a
//! `WouldBlock` (or a short write) adds write interest to the poller registration, and it stays:
//! epoll/kqueue report a source that is already writable when its interest is widened, so the
//! waiter that saw `WouldBlock` is woken as if the interest had been there all along. (libuv
//! polls a UDP socket for `EPOLLOUT` only while it has queued sends, for the same reason.)
use super::driver;
use super::scheduled_io::{shutdown_error, Direction, ReadyEvent, ScheduledIo};
use super::Interest;
#[cfg(unix)]
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::Arc;
use std::io;
use std::task::{Context, Poll};

/// How resources hold their runtime's drivers. `runtime::context::current_driver` hands out a
/// `std::sync::Arc` (it is not a synchronisation primitive loom needs to model), so this stays std.
pub(crate) type DriverHandle = std::sync::Arc<crate::runtime::driver::Handle>;

/// The error for creating a socket on a thread that has not entered a kyoto runtime.
pub(crate) fn no_runtime_error() -> io::Error {
    io::Error::other(
        "there is no kyoto reactor running: create sockets inside a runtime (block_on, a spawned task, \
         or Handle::enter)",
    )
}

/// A registered resource: the runtime it belongs to and its readiness state.
///
/// The registration does not own the OS source; whoever does (see
/// [`PollEvented`](super::poll_evented::PollEvented)) must call [`Registration::deregister`] before
/// closing it.
pub(crate) struct Registration {
    handle: DriverHandle,
    shared: Arc<ScheduledIo>,
    /// Set for sources made by [`Registration::new_deferring_write`].
    #[cfg(unix)]
    deferred_write: Option<DeferredWrite>,
}

/// A source registered for reading only until a write would block (see the module docs).
#[cfg(unix)]
struct DeferredWrite {
    /// The source's descriptor; valid while the registration is (its owner deregisters before
    /// closing it).
    fd: std::os::fd::RawFd,
    /// Whether write interest was added to the poller registration.
    added: AtomicBool,
}

impl Registration {
    /// Registers `source` with the reactor of the runtime entered on this thread.
    pub(crate) fn new(
        source: &mut impl mio::event::Source,
        interest: Interest,
    ) -> io::Result<Self> {
        let handle = crate::runtime::context::current_driver().ok_or_else(no_runtime_error)?;
        Self::new_with_handle(source, interest, handle)
    }

    /// Registers `source` with the given runtime's reactor.
    pub(crate) fn new_with_handle(
        source: &mut impl mio::event::Source,
        interest: Interest,
        handle: DriverHandle,
    ) -> io::Result<Self> {
        let shared = handle.io.add_source(source, interest)?;
        Ok(Registration {
            handle,
            shared,
            #[cfg(unix)]
            deferred_write: None,
        })
    }

    /// Registers `source` with the current runtime's reactor for reading, and for writing only once
    /// a write would block (see the module docs). Until then it is cached as writable.
    #[cfg(unix)]
    pub(crate) fn new_deferring_write<S>(source: &mut S) -> io::Result<Self>
    where
        S: mio::event::Source + std::os::fd::AsRawFd,
    {
        let handle = crate::runtime::context::current_driver().ok_or_else(no_runtime_error)?;
        Self::new_deferring_write_with_handle(source, handle)
    }

    /// [`new_deferring_write`](Self::new_deferring_write) with the given runtime's reactor.
    #[cfg(unix)]
    pub(crate) fn new_deferring_write_with_handle<S>(
        source: &mut S,
        handle: DriverHandle,
    ) -> io::Result<Self>
    where
        S: mio::event::Source + std::os::fd::AsRawFd,
    {
        let fd = source.as_raw_fd();
        let mut registration = Self::new_with_handle(source, Interest::READABLE, handle)?;
        registration.shared.assume_ready(super::Ready::WRITABLE);
        registration.deferred_write = Some(DeferredWrite {
            fd,
            added: AtomicBool::new(false),
        });
        Ok(registration)
    }

    /// After the write direction's readiness was cleared: make sure the poller will report it.
    #[cfg(unix)]
    fn watch_writes(&self, cleared: super::Ready) {
        let Some(deferred) = &self.deferred_write else {
            return;
        };
        if !(cleared.is_writable() || cleared.is_write_closed())
            || deferred.added.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // The call can only fail once the poller itself is gone (runtime shutdown), and shutdown
        // marks every registered resource and wakes its waiters, so nobody is left waiting on it.
        let _ = self
            .io_handle()
            .add_write_interest(&self.shared, deferred.fd);
    }

    /// The runtime this resource is registered with (new resources it creates, such as accepted
    /// streams, register there too).
    pub(crate) fn handle(&self) -> &DriverHandle {
        &self.handle
    }

    fn io_handle(&self) -> &driver::Handle {
        &self.handle.io
    }

    /// Removes `source` from the poller. Must be called before the source is closed.
    pub(crate) fn deregister(&self, source: &mut impl mio::event::Source) -> io::Result<()> {
        self.io_handle().deregister_source(&self.shared, source)
    }

    /// Waits (single waker per direction) until the direction is ready.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        let coop = std::task::ready!(crate::runtime::coop::poll_proceed(cx));
        let event = std::task::ready!(self.shared.poll_readiness(cx, direction));
        coop.made_progress();
        if event.is_shutdown {
            return Poll::Ready(Err(shutdown_error()));
        }
        Poll::Ready(Ok(event))
    }

    /// `poll_ready(cx, Direction::Read)`.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<ReadyEvent>> {
        self.poll_ready(cx, Direction::Read)
    }

    /// `poll_ready(cx, Direction::Write)`.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<ReadyEvent>> {
        self.poll_ready(cx, Direction::Write)
    }

    /// Forgets the readiness in `event` after an operation returned `WouldBlock` (closed states
    /// included), unless a newer event arrived.
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        self.shared.clear_readiness(event, true);
        #[cfg(unix)]
        self.watch_writes(event.ready);
    }

    /// Forgets the readiness in `event` after a short read or write proved the socket drained or
    /// full; closed states stay (their edge will not be reported again).
    pub(crate) fn clear_drained(&self, event: ReadyEvent) {
        self.shared.clear_readiness(event, false);
        #[cfg(unix)]
        self.watch_writes(event.ready);
    }

    /// Runs `f` whenever the direction is ready, until it returns something other than `WouldBlock`.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let event = std::task::ready!(self.poll_ready(cx, direction))?;
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(event),
                res => return Poll::Ready(res),
            }
        }
    }

    /// A `WouldBlock` from an operation of one direction proves that direction open, so its closed
    /// state (if any was cached) is spurious and cleared too. An operation waiting on several
    /// directions proves nothing about any one of them: their closed states stay.
    fn clear_after_would_block(&self, interest: Interest, event: ReadyEvent) {
        if interest == Interest::READABLE || interest == Interest::WRITABLE {
            self.clear_readiness(event);
        } else {
            self.clear_drained(event);
        }
    }

    /// The cached readiness for `interest`: `WouldBlock` when none, the shutdown error after shutdown.
    fn cached_ready(&self, interest: Interest) -> io::Result<ReadyEvent> {
        match self.shared.ready_event(interest.mask()) {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(event) if event.is_shutdown => Err(shutdown_error()),
            Some(event) => Ok(event),
        }
    }

    /// Runs `f` once if the cached readiness matches `interest`; `WouldBlock` otherwise.
    pub(crate) fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        let event = self.cached_ready(interest)?;
        let res = f();
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.clear_after_would_block(interest, event);
        }
        res
    }

    /// [`try_io`](Self::try_io) for a read or write of `len` bytes: a short transfer proves the socket
    /// drained (or its send buffer full), so the cached readiness is cleared at once, saving the
    /// caller a read that would only return `WouldBlock`. Closed states stay (their edge is not
    /// reported again). Windows reports readiness differently, so there only `WouldBlock` clears.
    pub(crate) fn try_transfer(
        &self,
        interest: Interest,
        len: usize,
        f: impl FnOnce() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let event = self.cached_ready(interest)?;
        let res = f();
        match &res {
            Ok(n) if *n > 0 && *n < len && cfg!(not(windows)) => self.clear_drained(event),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.clear_after_would_block(interest, event)
            }
            _ => {}
        }
        res
    }

    /// Waits until readiness matching `interest` is cached (any number of tasks may wait at once).
    pub(crate) async fn readiness(&self, interest: Interest) -> io::Result<ReadyEvent> {
        let event = self.shared.readiness(interest).await;
        if event.is_shutdown {
            return Err(shutdown_error());
        }
        Ok(event)
    }

    /// Waits for `interest` and runs `f`, again after every `WouldBlock`.
    pub(crate) async fn async_io<R>(
        &self,
        interest: Interest,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let event = self.readiness(interest).await?;
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_after_would_block(interest, event)
                }
                res => return res,
            }
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}
