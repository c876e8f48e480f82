//! [`PollEvented`]: a mio source together with its registration; deregisters on drop.
use super::registration::{DriverHandle, Registration};
use super::scheduled_io::Direction;
use super::Interest;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::ops::Deref;
use std::task::{Context, Poll};

/// What [`PollEvented::new_deferring_write`] needs of its source: on unix, its descriptor.
#[cfg(unix)]
pub(crate) trait DeferrableSource: std::os::fd::AsRawFd {}
#[cfg(unix)]
impl<T: std::os::fd::AsRawFd> DeferrableSource for T {}
/// What [`PollEvented::new_deferring_write`] needs of its source: nothing beyond unix.
#[cfg(not(unix))]
pub(crate) trait DeferrableSource {}
#[cfg(not(unix))]
impl<T> DeferrableSource for T {}

/// Owns a non-blocking mio source registered with a reactor.
///
/// Dropping it deregisters the source from the poller *before* closing it (closing first could
/// leave a duplicated descriptor in the poller with a token that no longer names anything).
pub(crate) struct PollEvented<E: mio::event::Source> {
    io: Option<E>,
    registration: Registration,
}

impl<E: mio::event::Source> PollEvented<E> {
    /// Registers `io` for reading and writing with the current runtime's reactor.
    pub(crate) fn new(io: E) -> io::Result<Self> {
        Self::new_with_interest(io, Interest::READABLE | Interest::WRITABLE)
    }

    /// Registers `io` for `interest` with the current runtime's reactor.
    pub(crate) fn new_with_interest(mut io: E, interest: Interest) -> io::Result<Self> {
        let registration = Registration::new(&mut io, interest)?;
        Ok(PollEvented {
            io: Some(io),
            registration,
        })
    }

    /// Registers `io` with the current runtime's reactor, for writing only once a write would
    /// block (see `registration`'s module docs); elsewhere than unix, for both at once.
    pub(crate) fn new_deferring_write(io: E) -> io::Result<Self>
    where
        E: DeferrableSource,
    {
        #[cfg(unix)]
        {
            let mut io = io;
            let registration = Registration::new_deferring_write(&mut io)?;
            Ok(PollEvented {
                io: Some(io),
                registration,
            })
        }
        #[cfg(not(unix))]
        Self::new(io)
    }

    /// [`new_deferring_write`](Self::new_deferring_write) with the given runtime's reactor.
    #[cfg(unix)]
    pub(crate) fn new_deferring_write_with_handle(
        mut io: E,
        handle: DriverHandle,
    ) -> io::Result<Self>
    where
        E: DeferrableSource,
    {
        let registration = Registration::new_deferring_write_with_handle(&mut io, handle)?;
        Ok(PollEvented {
            io: Some(io),
            registration,
        })
    }

    /// Registers `io` for reading and writing with the given runtime's reactor.
    pub(crate) fn new_with_handle(mut io: E, handle: DriverHandle) -> io::Result<Self> {
        let registration = Registration::new_with_handle(
            &mut io,
            Interest::READABLE | Interest::WRITABLE,
            handle,
        )?;
        Ok(PollEvented {
            io: Some(io),
            registration,
        })
    }

    pub(crate) fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Deregisters and returns the source (still non-blocking).
    pub(crate) fn into_inner(mut self) -> io::Result<E> {
        match self.io.take() {
            Some(mut io) => {
                self.registration.deregister(&mut io)?;
                Ok(io)
            }
            None => Err(io::Error::other("the I/O source was already taken")),
        }
    }

    fn source(&self) -> &E {
        match &self.io {
            Some(io) => io,
            // `io` is `None` only inside `into_inner` and `drop`, which consume `self`.
            None => unreachable!("PollEvented used after its source was taken"),
        }
    }
}

impl<E: mio::event::Source> Deref for PollEvented<E> {
    type Target = E;
    fn deref(&self) -> &E {
        self.source()
    }
}

impl<E: mio::event::Source> PollEvented<E>
where
    for<'a> &'a E: Read,
{
    /// Reads into `buf`, waiting for readability. A short read proves the socket drained, so the
    /// cached readiness is cleared at once (saving the `WouldBlock` round trip).
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let event = std::task::ready!(self.registration.poll_read_ready(cx))?;
            let len = buf.len();
            match (&mut self.source()).read(buf) {
                Ok(n) => {
                    if n > 0 && n < len && cfg!(not(windows)) {
                        self.registration.clear_drained(event);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.registration.clear_readiness(event)
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Vectored [`poll_read`](Self::poll_read).
    pub(crate) fn poll_read_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.registration.poll_io(cx, Direction::Read, || {
            (&mut self.source()).read_vectored(bufs)
        })
    }
}

impl<E: mio::event::Source> PollEvented<E>
where
    for<'a> &'a E: Write,
{
    /// Writes from `buf`, waiting for writability. A short write proves the send buffer full, so the
    /// cached readiness is cleared at once.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let event = std::task::ready!(self.registration.poll_write_ready(cx))?;
            let len = buf.len();
            match (&mut self.source()).write(buf) {
                Ok(n) => {
                    if n > 0 && n < len && cfg!(not(windows)) {
                        self.registration.clear_drained(event);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.registration.clear_readiness(event)
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Vectored [`poll_write`](Self::poll_write).
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.registration.poll_io(cx, Direction::Write, || {
            (&mut self.source()).write_vectored(bufs)
        })
    }
}

impl<E: mio::event::Source> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            // Ignored on failure: the registration set then keeps the state alive (see driver.rs).
            let _ = self.registration.deregister(&mut io);
            drop(io);
        }
    }
}

impl<E: mio::event::Source + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollEvented").field("io", &self.io).finish()
    }
}
