//! [`UdpSocket`], and the batch types for [`UdpSocket::recv_many`] / [`UdpSocket::send_many`].
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;
use crate::io::{Interest, Ready};
use crate::net::ToSocketAddrs;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::task::{Context, Poll};

/// A UDP socket.
///
/// - Not connected, it sends with [`send_to`](UdpSocket::send_to) and receives from anyone with
///   [`recv_from`](UdpSocket::recv_from).
/// - [`connect`](UdpSocket::connect) sets a default peer for [`send`](UdpSocket::send) /
///   [`recv`](UdpSocket::recv) **and** makes the kernel drop datagrams from every other address.
///   An ICMP "port unreachable" for a datagram sent to the peer is reported as `ECONNREFUSED` by a
///   later `recv` (or `send`) on Linux, the BSDs and macOS (`ConnectionReset` on Windows).
/// - A datagram larger than the buffer is truncated: the excess bytes are discarded.
/// - [`recv_many`](UdpSocket::recv_many) / [`send_many`](UdpSocket::send_many) move up to 64
///   datagrams per system call (`recvmmsg`/`sendmmsg` on Linux and Android, a loop elsewhere)
///   without allocating.
///
/// All methods take `&self`: share the socket (in an `Arc`) between a sending and a receiving task,
/// or among several receivers; every waiting task is woken.
pub struct UdpSocket {
    io: PollEvented<mio::net::UdpSocket>,
}

/// What [`UdpSocket::recv_many`] learned about one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes written into the datagram's buffer.
    pub len: usize,
    /// The sender.
    pub addr: SocketAddr,
    /// The datagram was larger than its buffer and lost its excess bytes. Exact on Linux and
    /// Android; always `false` elsewhere (the portable path cannot tell).
    pub truncated: bool,
}

impl Default for RecvMeta {
    fn default() -> RecvMeta {
        RecvMeta {
            len: 0,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            truncated: false,
        }
    }
}

/// One datagram for [`UdpSocket::send_many`].
#[derive(Clone, Copy, Debug)]
pub struct SendMsg<'a> {
    /// The payload.
    pub data: &'a [u8],
    /// The destination; `None` sends to the connected peer.
    pub addr: Option<SocketAddr>,
}

impl<'a> SendMsg<'a> {
    /// A datagram for `addr`.
    pub fn to(data: &'a [u8], addr: SocketAddr) -> SendMsg<'a> {
        SendMsg {
            data,
            addr: Some(addr),
        }
    }

    /// A datagram for the connected peer.
    pub fn connected(data: &'a [u8]) -> SendMsg<'a> {
        SendMsg { data, addr: None }
    }
}

/// A reusable arena for [`UdpSocket::recv_batch`]: `capacity` slots of `slot_size` bytes in one
/// allocation, plus each slot's [`RecvMeta`]. Receiving into it allocates nothing.
pub struct RecvBatch {
    arena: Box<[u8]>,
    slot_size: usize,
    meta: Box<[RecvMeta]>,
    len: usize,
}

impl RecvBatch {
    /// An arena for up to `capacity` datagrams of up to `slot_size` bytes each (larger ones are
    /// truncated). `slot_size` is at least 1.
    pub fn new(capacity: usize, slot_size: usize) -> RecvBatch {
        let slot_size = slot_size.max(1);
        RecvBatch {
            arena: vec![0; capacity.saturating_mul(slot_size)].into_boxed_slice(),
            slot_size,
            meta: vec![RecvMeta::default(); capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// How many datagrams fit.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// The size of each slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// How many datagrams the last receive stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last receive stored nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the last receive: its bytes and metadata.
    pub fn get(&self, i: usize) -> Option<(&[u8], &RecvMeta)> {
        if i >= self.len {
            return None;
        }
        let meta = &self.meta[i];
        let start = i * self.slot_size;
        let end = start + meta.len.min(self.slot_size);
        Some((&self.arena[start..end], meta))
    }

    /// The datagrams of the last receive, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &RecvMeta)> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size)
            .field("len", &self.len)
            .finish()
    }
}

impl UdpSocket {
    /// Binds to `addr`, trying each resolved address in turn; returns the last error if none binds.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let mut last_err = None;
        for addr in crate::net::resolve(addr)? {
            match mio::net::UdpSocket::bind(addr).and_then(UdpSocket::new) {
                Ok(socket) => return Ok(socket),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(crate::net::no_addresses))
    }

    fn new(sys: mio::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            io: PollEvented::new_deferring_write(sys)?,
        })
    }

    /// Wraps a bound std socket (switched to non-blocking) and registers it with the current runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        UdpSocket::new(mio::net::UdpSocket::from_std(socket))
    }

    /// Deregisters the socket and returns it as a std socket (still non-blocking).
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(self.io.into_inner()?.into())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The connected peer (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Sets the default peer, trying each resolved address; from then on only datagrams from that
    /// peer are received.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let mut last_err = None;
        for addr in crate::net::resolve(addr)? {
            match self.io.connect(addr) {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(crate::net::no_addresses))
    }

    /// Takes the socket's pending error (for example a queued ICMP error), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// Waits until any of `interest` is ready. Any number of tasks may wait.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        Ok(self.io.registration().readiness(interest).await?.ready)
    }

    /// Waits until a datagram (or an error) can be received.
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Interest::READABLE).await.map(|_| ())
    }

    /// Waits until a datagram can be sent.
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Interest::WRITABLE).await.map(|_| ())
    }

    /// Polls for receive readiness (single waker).
    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.registration().poll_read_ready(cx).map_ok(|_| ())
    }

    /// Polls for send readiness (single waker).
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.registration().poll_write_ready(cx).map_ok(|_| ())
    }

    /// Sends `buf` to the connected peer; returns the bytes sent.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration()
            .async_io(Interest::WRITABLE, || self.io.send(buf))
            .await
    }

    /// Polls a [`send`](Self::send) (single waker).
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Write, || self.io.send(buf))
    }

    /// Sends without waiting (`WouldBlock` if not cached as writable).
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration()
            .try_io(Interest::WRITABLE, || self.io.send(buf))
    }

    /// Receives one datagram from the connected peer into `buf`; excess bytes are discarded.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration()
            .async_io(Interest::READABLE, || sys::recv(&self.io, buf, false))
            .await
    }

    /// Polls a [`recv`](Self::recv) (single waker).
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Read, || sys::recv(&self.io, buf, false))
    }

    /// Receives without waiting (`WouldBlock` if nothing is cached as readable).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration()
            .try_io(Interest::READABLE, || sys::recv(&self.io, buf, false))
    }

    /// Sends `buf` to `target` (the first address it resolves to).
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = crate::net::resolve(target)?
            .next()
            .ok_or_else(crate::net::no_addresses)?;
        self.io
            .registration()
            .async_io(Interest::WRITABLE, || self.io.send_to(buf, target))
            .await
    }

    /// Polls a `send_to` (single waker).
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Write, || self.io.send_to(buf, target))
    }

    /// Sends to `target` without waiting.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.io
            .registration()
            .try_io(Interest::WRITABLE, || self.io.send_to(buf, target))
    }

    /// Receives one datagram into `buf`; returns its length (at most `buf.len()`, the excess is
    /// discarded) and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration()
            .async_io(Interest::READABLE, || sys::recv_from(&self.io, buf, false))
            .await
    }

    /// Polls a [`recv_from`](Self::recv_from) (single waker).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Read, || sys::recv_from(&self.io, buf, false))
    }

    /// Receives without waiting.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration()
            .try_io(Interest::READABLE, || sys::recv_from(&self.io, buf, false))
    }

    /// Like [`recv_from`](Self::recv_from) but leaves the datagram queued: the next receive returns
    /// it again.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration()
            .async_io(Interest::READABLE, || sys::recv_from(&self.io, buf, true))
            .await
    }

    /// Polls a [`peek_from`](Self::peek_from) (single waker).
    pub fn poll_peek_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.io
            .registration()
            .poll_io(cx, Direction::Read, || sys::recv_from(&self.io, buf, true))
    }

    /// Peeks without waiting.
    pub fn try_peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration()
            .try_io(Interest::READABLE, || sys::recv_from(&self.io, buf, true))
    }

    /// Like [`recv`](Self::recv) but leaves the datagram queued.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration()
            .async_io(Interest::READABLE, || sys::recv(&self.io, buf, true))
            .await
    }

    /// The sender of the next datagram, without consuming it.
    pub async fn peek_sender(&self) -> io::Result<SocketAddr> {
        let mut byte = [0u8; 1];
        self.peek_from(&mut byte).await.map(|(_, addr)| addr)
    }

    /// Receives up to `min(bufs.len(), meta.len(), 64)` queued datagrams in one system call:
    /// datagram `i` goes to `bufs[i]` (truncated to its length) and its length and sender to
    /// `meta[i]`. Waits until at least one is available; returns how many were received.
    ///
    /// Allocates nothing: pass the same buffers every time (see also [`RecvBatch`]).
    pub async fn recv_many(
        &self,
        bufs: &mut [&mut [u8]],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        if bufs.is_empty() || meta.is_empty() {
            return Ok(0);
        }
        self.io
            .registration()
            .async_io(Interest::READABLE, || {
                sys::recv_many(&self.io, bufs.iter_mut().map(|b| &mut **b), meta)
            })
            .await
    }

    /// [`recv_many`](Self::recv_many) without waiting (`WouldBlock` when nothing is cached as
    /// readable or nothing was queued).
    pub fn try_recv_many(
        &self,
        bufs: &mut [&mut [u8]],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        if bufs.is_empty() || meta.is_empty() {
            return Ok(0);
        }
        self.io.registration().try_io(Interest::READABLE, || {
            sys::recv_many(&self.io, bufs.iter_mut().map(|b| &mut **b), meta)
        })
    }

    /// [`recv_many`](Self::recv_many) into a [`RecvBatch`] arena; read the datagrams with
    /// [`RecvBatch::iter`]. Returns how many were received (also `batch.len()`).
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.len = 0;
        if batch.capacity() == 0 {
            return Ok(0);
        }
        let slot_size = batch.slot_size;
        let RecvBatch { arena, meta, .. } = &mut *batch;
        let n = self
            .io
            .registration()
            .async_io(Interest::READABLE, || {
                sys::recv_many(&self.io, arena.chunks_mut(slot_size), meta)
            })
            .await?;
        batch.len = n;
        Ok(n)
    }

    /// Sends up to `min(msgs.len(), 64)` datagrams in one system call; waits until the socket is
    /// writable and returns how many were sent (at least one). Send the rest with another call.
    pub async fn send_many(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        self.io
            .registration()
            .async_io(Interest::WRITABLE, || sys::send_many(&self.io, msgs))
            .await
    }

    /// [`send_many`](Self::send_many) without waiting.
    pub fn try_send_many(&self, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        self.io
            .registration()
            .try_io(Interest::WRITABLE, || sys::send_many(&self.io, msgs))
    }

    /// Whether `SO_BROADCAST` is on.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.broadcast()
    }

    /// Allows sending to broadcast addresses.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.set_broadcast(on)
    }

    /// Whether IPv4 multicast sent by this socket loops back to local receivers.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.io.multicast_loop_v4()
    }

    /// Sets IPv4 multicast loopback.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.io.set_multicast_loop_v4(on)
    }

    /// The IPv4 multicast time-to-live.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.io.multicast_ttl_v4()
    }

    /// Sets the IPv4 multicast time-to-live (1 keeps it on the local network).
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.io.set_multicast_ttl_v4(ttl)
    }

    /// Whether IPv6 multicast loops back.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.io.multicast_loop_v6()
    }

    /// Sets IPv6 multicast loopback.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.io.set_multicast_loop_v6(on)
    }

    /// The IPv6 multicast hop limit.
    pub fn multicast_hops_v6(&self) -> io::Result<u32> {
        socket2::SockRef::from(&*self.io).multicast_hops_v6()
    }

    /// Sets the IPv6 multicast hop limit.
    pub fn set_multicast_hops_v6(&self, hops: u32) -> io::Result<()> {
        socket2::SockRef::from(&*self.io).set_multicast_hops_v6(hops)
    }

    /// Joins IPv4 multicast group `multiaddr` on the interface with address `interface`
    /// (`0.0.0.0`: the system's choice).
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io.join_multicast_v4(&multiaddr, &interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io.leave_multicast_v4(&multiaddr, &interface)
    }

    /// Joins IPv6 multicast group `multiaddr` on interface index `interface` (0: any).
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.join_multicast_v6(multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.leave_multicast_v6(multiaddr, interface)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// Sets `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        socket2::SockRef::from(&*self.io).set_send_buffer_size(size as usize)
    }

    /// Sets `SO_RCVBUF` (raise it for bursts of datagrams).
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        socket2::SockRef::from(&*self.io).set_recv_buffer_size(size as usize)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawSocket for UdpSocket {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.io.as_raw_socket()
    }
}

/// `recvmmsg`/`sendmmsg` on Linux and Android.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use super::{RecvMeta, SendMsg};
    use socket2::{SockAddr, SockAddrStorage};
    use std::io;
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::os::unix::io::AsRawFd;

    /// Datagrams per system call. The structures live on the stack (about 13 KiB).
    const BATCH: usize = 64;

    /// `recv` / `peek` on a connected socket: Linux truncates an oversize datagram by itself.
    pub(super) fn recv(
        socket: &mio::net::UdpSocket,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<usize> {
        if peek {
            socket.peek(buf)
        } else {
            socket.recv(buf)
        }
    }

    /// `recv_from` / `peek_from`: Linux truncates an oversize datagram to `buf` by itself.
    pub(super) fn recv_from(
        socket: &mio::net::UdpSocket,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<(usize, SocketAddr)> {
        if peek {
            socket.peek_from(buf)
        } else {
            socket.recv_from(buf)
        }
    }

    fn unspecified() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    }

    fn zeroed_mmsghdr() -> libc::mmsghdr {
        // Soundness: `mmsghdr` is a plain C struct of integers and raw pointers (and, on some libcs,
        // private padding fields); the all-zero bit pattern is a valid value of each (null
        // pointers, zero lengths), which is how C code initialises it.
        // SAFETY: sound by the argument just above.
        unsafe { std::mem::zeroed() }
    }

    pub(super) fn recv_many<'a>(
        socket: &mio::net::UdpSocket,
        bufs: impl Iterator<Item = &'a mut [u8]>,
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let mut names: [SockAddrStorage; BATCH] =
            std::array::from_fn(|_| SockAddrStorage::zeroed());
        let mut hdrs: [libc::mmsghdr; BATCH] = std::array::from_fn(|_| zeroed_mmsghdr());

        let mut n = 0;
        for (buf, _) in bufs.zip(meta.iter()).take(BATCH) {
            iovecs[n] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut SockAddrStorage).cast();
            hdr.msg_namelen = names[i].size_of();
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
        }
        // Soundness: `hdrs[..n]` are initialised headers whose `msg_iov` point at `iovecs[i]` (each
        // describing a live, exclusively borrowed caller buffer of `iov_len` bytes) and whose
        // `msg_name` point at `names[i]` with its true size. All of these arrays outlive the call, the
        // fd is a live socket owned by `socket`, and `n <= BATCH` bounds the vector length.
        // SAFETY: sound by the argument just above.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for i in 0..received {
            let hdr = &hdrs[i];
            let namelen = hdr.msg_hdr.msg_namelen;
            let storage = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
            // SAFETY: the kernel wrote a socket address of `namelen` bytes (at most the storage's
            // size, which we passed in) into `storage` for every received message.
            let addr = unsafe { SockAddr::new(storage, namelen) };
            meta[i] = RecvMeta {
                len: hdr.msg_len as usize,
                addr: addr.as_socket().unwrap_or_else(unspecified),
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        Ok(received)
    }

    pub(super) fn send_many(
        socket: &mio::net::UdpSocket,
        msgs: &[SendMsg<'_>],
    ) -> io::Result<usize> {
        let n = msgs.len().min(BATCH);
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let names: [Option<SockAddr>; BATCH] =
            std::array::from_fn(|i| msgs.get(i).and_then(|m| m.addr).map(SockAddr::from));
        let mut hdrs: [libc::mmsghdr; BATCH] = std::array::from_fn(|_| zeroed_mmsghdr());
        for (i, msg) in msgs.iter().take(n).enumerate() {
            // `sendmmsg` never writes through `iov_base`; the cast to `*mut` is only the C type.
            iovecs[i] = libc::iovec {
                iov_base: msg.data.as_ptr() as *mut libc::c_void,
                iov_len: msg.data.len(),
            };
        }
        for i in 0..n {
            let hdr = &mut hdrs[i].msg_hdr;
            if let Some(name) = &names[i] {
                hdr.msg_name = name.as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = name.len();
            }
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
        }
        let (fd, count) = (socket.as_raw_fd(), n as libc::c_uint);
        // Soundness: `hdrs[..n]` are initialised headers whose `msg_iov` point at `iovecs[i]` (each
        // describing a live caller buffer the kernel only reads) and whose `msg_name`, when set, point
        // at `names[i]`, a valid socket address of `len()` bytes. The arrays outlive the call, the fd
        // is a live socket owned by `socket`, and `n <= BATCH` bounds the vector length.
        // SAFETY: sound by the argument just above.
        let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), count, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

/// The portable path: one `recv_from`/`send_to` per datagram until the socket would block.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod sys {
    use super::{RecvMeta, SendMsg};
    use std::io;
    use std::mem::MaybeUninit;
    use std::net::SocketAddr;

    /// One `recvmsg`/`WSARecvFrom` (flags e.g. `MSG_PEEK`): length, sender, and whether the datagram
    /// was larger than `buf` (its excess discarded). Windows reports that case as a `WSAEMSGSIZE`
    /// error, which socket2 turns into the flag, so here it is the documented truncation.
    pub(super) fn recv_from_flags(
        socket: &mio::net::UdpSocket,
        buf: &mut [u8],
        flags: i32,
    ) -> io::Result<(usize, SocketAddr, bool)> {
        let len = buf.len();
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the kernel only writes
        // initialized bytes into it, so `buf` stays initialized.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let mut bufs = [socket2::MaybeUninitSlice::new(uninit)];
        // Through mio's `try_io`: on Windows a `WouldBlock` must re-arm mio's AFD poll, or the
        // socket never reports readable again.
        let (n, rflags, addr) = socket.try_io(|| recv_vectored(socket, &mut bufs, flags))?;
        let addr = addr
            .as_socket()
            .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
        let truncated = rflags.is_truncated();
        Ok((if truncated { len } else { n }, addr, truncated))
    }

    #[cfg(not(windows))]
    fn recv_vectored(
        socket: &mio::net::UdpSocket,
        bufs: &mut [socket2::MaybeUninitSlice<'_>],
        flags: i32,
    ) -> io::Result<(usize, socket2::RecvFlags, socket2::SockAddr)> {
        socket2::SockRef::from(socket).recv_from_vectored_with_flags(bufs, flags)
    }

    /// Windows reports an ICMP port unreachable for an earlier send as WSAECONNRESET (or
    /// WSAENETRESET) on the next receive, on any socket. Unix reports it only on a connected socket,
    /// as ECONNREFUSED: do the same, and otherwise receive on.
    #[cfg(windows)]
    fn recv_vectored(
        socket: &mio::net::UdpSocket,
        bufs: &mut [socket2::MaybeUninitSlice<'_>],
        flags: i32,
    ) -> io::Result<(usize, socket2::RecvFlags, socket2::SockAddr)> {
        loop {
            match socket2::SockRef::from(socket).recv_from_vectored_with_flags(bufs, flags) {
                Err(e) if matches!(e.raw_os_error(), Some(10054 | 10052)) => {
                    if socket.peer_addr().is_ok() {
                        return Err(io::Error::from_raw_os_error(10061));
                    }
                }
                r => return r,
            }
        }
    }

    /// `recv` / `peek` on a connected socket, with truncation and port-unreachable as on Linux.
    pub(super) fn recv(
        socket: &mio::net::UdpSocket,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<usize> {
        recv_from(socket, buf, peek).map(|(n, _)| n)
    }

    /// `recv_from` / `peek_from` with truncation as on Linux (see [`recv_from_flags`]).
    pub(super) fn recv_from(
        socket: &mio::net::UdpSocket,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<(usize, SocketAddr)> {
        #[cfg(unix)]
        let flags = if peek { libc::MSG_PEEK } else { 0 };
        #[cfg(windows)]
        let flags = if peek { 2 } else { 0 }; // MSG_PEEK
        recv_from_flags(socket, buf, flags).map(|(n, addr, _)| (n, addr))
    }

    const BATCH: usize = 64;

    pub(super) fn recv_many<'a>(
        socket: &mio::net::UdpSocket,
        bufs: impl Iterator<Item = &'a mut [u8]>,
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let mut n = 0;
        for (buf, slot) in bufs.zip(meta.iter_mut()).take(BATCH) {
            match recv_from_flags(socket, buf, 0) {
                Ok((len, addr, truncated)) => {
                    *slot = RecvMeta {
                        len,
                        addr,
                        truncated,
                    };
                    n += 1;
                }
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if n > 0 => {
                    // Report what was received; the error comes again on the next call.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    pub(super) fn send_many(
        socket: &mio::net::UdpSocket,
        msgs: &[SendMsg<'_>],
    ) -> io::Result<usize> {
        let mut n = 0;
        for msg in msgs.iter().take(BATCH) {
            let res = match msg.addr {
                Some(addr) => socket.send_to(msg.data, addr),
                None => socket.send(msg.data),
            };
            match res {
                Ok(_) => n += 1,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
