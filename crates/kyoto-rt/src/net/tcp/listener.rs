//! [`TcpListener`]: accepts TCP connections.
use super::TcpStream;
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;
use crate::io::Interest;
use crate::net::ToSocketAddrs;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

/// The backlog `TcpListener::bind` listens with (the kernel caps it at `somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening TCP socket.
///
/// [`bind`](TcpListener::bind) sets `SO_REUSEADDR` on Unix (so a restarted server can bind while old
/// connections linger in TIME_WAIT) and listens with a backlog of 1024; use
/// [`TcpSocket`](super::TcpSocket) for other options.
pub struct TcpListener {
    io: PollEvented<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr`, trying each resolved address in turn; returns the last error if none binds.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let mut last_err = None;
        for addr in crate::net::resolve(addr)? {
            match TcpListener::bind_addr(addr) {
                Ok(listener) => return Ok(listener),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(crate::net::no_addresses))
    }

    fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
        // Not `mio::net::TcpListener::bind`: it listens with std's backlog of 128, which drops
        // connection bursts (10 000 clients connecting at once) that a server should absorb.
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        #[cfg(not(windows))]
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        TcpListener::new(mio::net::TcpListener::from_std(socket.into()))
    }

    pub(crate) fn new(sys: mio::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: PollEvented::new_with_interest(sys, Interest::READABLE)?,
        })
    }

    /// Waits for and accepts a connection. Cancel-safe: dropping the future loses no connection.
    /// The new stream belongs to the listener's runtime.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sys, addr) = self
            .io
            .registration()
            .async_io(Interest::READABLE, || self.io.accept())
            .await?;
        let stream = TcpStream::new_with_handle(sys, self.io.registration().handle().clone())?;
        Ok((stream, addr))
    }

    /// Polls an accept (single waker: only the last task to call this is woken).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (sys, addr) =
            std::task::ready!(self
                .io
                .registration()
                .poll_io(cx, Direction::Read, || self.io.accept()))?;
        let stream = TcpStream::new_with_handle(sys, self.io.registration().handle().clone())?;
        Poll::Ready(Ok((stream, addr)))
    }

    /// Wraps a listening std socket (switched to non-blocking) and registers it with the current
    /// runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::new(mio::net::TcpListener::from_std(listener))
    }

    /// Deregisters the listener and returns it as a std listener (still non-blocking).
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        Ok(self.io.into_inner()?.into())
    }

    /// The bound address (with the chosen port if bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The IP time-to-live of accepted connections.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// Takes the socket's pending error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawSocket for TcpListener {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.io.as_raw_socket()
    }
}
