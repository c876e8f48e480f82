//! [`UnixListener`]: accepts Unix-domain stream connections.
use super::{SocketAddr, UnixStream};
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;
use crate::io::Interest;
use std::fmt;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::task::{Context, Poll};

/// A listening Unix-domain stream socket. Dropping it does not remove the socket file.
pub struct UnixListener {
    io: PollEvented<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to `path` and listens (registers with the current runtime). Fails with `AddrInUse` if
    /// the file exists.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::new(mio::net::UnixListener::bind(path)?)
    }

    fn new(sys: mio::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: PollEvented::new_with_interest(sys, Interest::READABLE)?,
        })
    }

    /// Waits for and accepts a connection (cancel-safe). The new stream belongs to the listener's
    /// runtime.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (sys, addr) = self
            .io
            .registration()
            .async_io(Interest::READABLE, || self.io.accept())
            .await?;
        let stream = UnixStream::new_with_handle(sys, self.io.registration().handle().clone())?;
        Ok((stream, addr))
    }

    /// Polls an accept (single waker).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        let (sys, addr) =
            std::task::ready!(self
                .io
                .registration()
                .poll_io(cx, Direction::Read, || self.io.accept()))?;
        let stream = UnixStream::new_with_handle(sys, self.io.registration().handle().clone())?;
        Poll::Ready(Ok((stream, addr)))
    }

    /// Wraps a std listener (switched to non-blocking) and registers it with the current runtime.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        UnixListener::new(mio::net::UnixListener::from_std(listener))
    }

    /// Deregisters the listener and returns it as a std listener (still non-blocking).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        Ok(self.io.into_inner()?.into())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Takes the socket's pending error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.io.as_raw_fd()
    }
}

impl std::os::fd::AsFd for UnixListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}
