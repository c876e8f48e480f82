//! [`TcpStream`]: a connected TCP socket.
use super::split::{self, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use crate::io::poll_evented::PollEvented;
use crate::io::registration::DriverHandle;
use crate::io::scheduled_io::Direction;
use crate::io::{AsyncRead, AsyncWrite, Interest, Ready};
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::net::ToSocketAddrs;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A TCP connection.
///
/// Read and write with [`AsyncReadExt`](crate::io::AsyncReadExt) /
/// [`AsyncWriteExt`](crate::io::AsyncWriteExt) (`read`, `read_exact`, `read_to_end`, `write`,
/// `write_all`, `shutdown`, ...), which work through this type's
/// [`AsyncRead`]/[`AsyncWrite`] implementations. `shutdown()` closes the write direction (a FIN) and
/// is idempotent. Dropping the stream closes the socket.
///
/// [`into_split`](TcpStream::into_split) gives halves that two tasks can use at once.
pub struct TcpStream {
    io: PollEvented<mio::net::TcpStream>,
    write_shut: AtomicBool,
}

impl TcpStream {
    /// Connects to `addr`, trying each resolved address in turn; returns the last error if none
    /// accepts.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let mut last_err = None;
        for addr in crate::net::resolve(addr)? {
            match TcpStream::connect_addr(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(crate::net::no_addresses))
    }

    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let sys = mio::net::TcpStream::connect(addr)?;
        TcpStream::connect_mio(sys).await
    }

    /// Registers a socket whose non-blocking connect is in progress and waits for its outcome.
    pub(crate) async fn connect_mio(sys: mio::net::TcpStream) -> io::Result<TcpStream> {
        let stream = TcpStream::new(sys)?;
        loop {
            let event = stream
                .io
                .registration()
                .readiness(Interest::WRITABLE)
                .await?;
            if let Some(e) = stream.io.take_error()? {
                return Err(e);
            }
            match stream.io.peer_addr() {
                Ok(_) => return Ok(stream),
                // Spurious writability before the handshake finished: wait again.
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.raw_os_error() == Some(not_connected_errno()) =>
                {
                    stream.io.registration().clear_readiness(event)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Registers a connected mio stream with the current runtime.
    pub(crate) fn new(sys: mio::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: PollEvented::new(sys)?,
            write_shut: AtomicBool::new(false),
        })
    }

    /// Registers a connected mio stream with the given runtime.
    pub(crate) fn new_with_handle(
        sys: mio::net::TcpStream,
        handle: DriverHandle,
    ) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: PollEvented::new_with_handle(sys, handle)?,
            write_shut: AtomicBool::new(false),
        })
    }

    /// Wraps a connected std stream (switched to non-blocking) and registers it with the current
    /// runtime.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::new(mio::net::TcpStream::from_std(stream))
    }

    /// Deregisters the stream and returns it as a std stream. It stays in non-blocking mode; call
    /// `set_nonblocking(false)` for blocking use.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let sys = self.io.into_inner()?;
        Ok(sys.into())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// Waits until any of `interest` is ready and returns the readiness (which may include closed
    /// states). Any number of tasks may wait at once. Follow with the `try_*` methods; they clear the
    /// readiness when they hit `WouldBlock`.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        let event = self.io.registration().readiness(interest).await?;
        Ok(event.ready)
    }

    /// Waits until the stream is readable.
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Interest::READABLE).await.map(|_| ())
    }

    /// Waits until the stream is writable.
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Interest::WRITABLE).await.map(|_| ())
    }

    /// Polls for read readiness. Only the last task to call this is woken (use
    /// [`readable`](Self::readable) for several waiters).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.registration().poll_read_ready(cx).map_ok(|_| ())
    }

    /// Polls for write readiness. Only the last task to call this is woken.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.registration().poll_write_ready(cx).map_ok(|_| ())
    }

    /// Reads without waiting: `WouldBlock` unless the stream is cached as readable. A short read
    /// clears the cached readiness (the socket is drained), so the next call returns `WouldBlock`
    /// without a system call until the reactor reports new data.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration()
            .try_transfer(Interest::READABLE, buf.len(), || (&mut &*self.io).read(buf))
    }

    /// Vectored [`try_read`](Self::try_read).
    pub fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.io
            .registration()
            .try_io(Interest::READABLE, || (&mut &*self.io).read_vectored(bufs))
    }

    /// Writes without waiting: `WouldBlock` unless the stream is cached as writable.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration()
            .try_transfer(Interest::WRITABLE, buf.len(), || {
                (&mut &*self.io).write(buf)
            })
    }

    /// Vectored [`try_write`](Self::try_write).
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.io
            .registration()
            .try_io(Interest::WRITABLE, || (&mut &*self.io).write_vectored(bufs))
    }

    /// Runs a custom non-blocking operation `f` on the socket if `interest` is cached as ready;
    /// clears the readiness if `f` returns `WouldBlock`.
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.io.registration().try_io(interest, f)
    }

    /// Waits for `interest` and runs `f`, again after each `WouldBlock`.
    pub async fn async_io<R>(
        &self,
        interest: Interest,
        f: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        self.io.registration().async_io(interest, f).await
    }

    /// Reads into `buf` without removing the data from the socket's queue.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration()
            .async_io(Interest::READABLE, || self.io.peek(buf))
            .await
    }

    /// Polls a [`peek`](Self::peek) (single waker).
    pub fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Read, || self.io.peek(buf))
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.nodelay()
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.set_nodelay(nodelay)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        socket2::SockRef::from(&*self.io).linger()
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes closing the socket send an RST.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(&*self.io).set_linger(linger)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// Whether `SO_KEEPALIVE` is on.
    pub fn keepalive(&self) -> io::Result<bool> {
        socket2::SockRef::from(&*self.io).keepalive()
    }

    /// Turns `SO_KEEPALIVE` on or off.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        socket2::SockRef::from(&*self.io).set_keepalive(keepalive)
    }

    /// Turns keepalive on with the first probe after `idle` of silence (Node's
    /// `setKeepAlive(true, initialDelay)`).
    pub fn set_keepalive_idle(&self, idle: Duration) -> io::Result<()> {
        let params = socket2::TcpKeepalive::new().with_time(idle);
        socket2::SockRef::from(&*self.io).set_tcp_keepalive(&params)
    }

    /// Splits into borrowed halves usable at the same time (in one task, e.g. with `select`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        split::split(self)
    }

    /// Splits into owned halves that can move to different tasks. Dropping the write half sends a
    /// FIN; [`OwnedReadHalf::reunite`] puts them back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split::into_split(self)
    }

    pub(crate) fn poll_read_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_read(cx, buf)
    }

    pub(crate) fn poll_read_vectored_priv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_read_vectored(cx, bufs)
    }

    pub(crate) fn poll_write_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_write(cx, buf)
    }

    pub(crate) fn poll_write_vectored_priv(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_write_vectored(cx, bufs)
    }

    /// Shuts the write direction down once; later calls (and a peer that already reset the
    /// connection) return `Ok`.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        if self.write_shut.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.io.shutdown(Shutdown::Write) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => return Err(e),
        }
        self.write_shut.store(true, Ordering::Release);
        Ok(())
    }
}

fn not_connected_errno() -> i32 {
    #[cfg(unix)]
    {
        libc::ENOTCONN
    }
    #[cfg(windows)]
    {
        // WSAENOTCONN
        10057
    }
    #[cfg(not(any(unix, windows)))]
    {
        -1
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_priv(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_vectored_priv(cx, bufs)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_priv(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_priv(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write direction down (a FIN). Idempotent.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawSocket for TcpStream {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.io.as_raw_socket()
    }
}
