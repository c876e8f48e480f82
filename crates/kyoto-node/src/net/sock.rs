//! Native socket objects and the one task per socket that does its I/O.
//!
//! Reading is push-style: while JS has reading enabled, a stream's task reads whatever arrives and
//! queues it for JS, stopping when `UNDELIVERED_LIMIT` bytes wait for the JS thread or when JS pauses
//! the socket (its own buffer is full). Writes queued by JS go out from the JS thread directly when
//! the socket takes them (`current_thread` data path) or through the socket's task (`multi_thread`),
//! and what the kernel does not take waits in a bounded backlog that the task flushes.
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kyoto_rt::io::Interest;
use kyoto_rt::net::{RecvMeta, SendMsg, TcpListener, TcpStream, UdpSocket};
use kyoto_rt::task::AbortHandle;

use super::frame::{FrameErr, Framer, Sink};
use super::queue::*;
use super::zone;
use super::Shared;

/// Bytes a socket may have queued for the JS thread before its task stops reading.
pub const UNDELIVERED_LIMIT: usize = 256 * 1024;
/// Largest single read.
pub const READ_CHUNK: usize = 64 * 1024;
/// A write backlog above this marks the socket blocked (JS `write` waits for a drain).
pub const BACKLOG_HWM: usize = 64 * 1024;
/// Datagrams in a UDP send backlog above which the socket is blocked.
pub const DGRAM_HWM: usize = 256;
/// Datagrams received per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Buffer of one received datagram (the largest UDP payload).
const DGRAM_SLOT: usize = 65536;
/// The largest Unix datagram received whole: the whole receive scratch (2 MiB). Linux bounds a
/// Unix datagram by the sender's `SO_SNDBUF` (212 992 bytes by default), so only a sender that
/// raised it past this can have one cut; the receive arena JS delivers from (4 MiB) holds it.
pub const UNIX_DGRAM_MAX: usize = RECV_BATCH * DGRAM_SLOT;

pub const F_READING: u32 = 1;
pub const F_CLOSED: u32 = 2;
/// A native copy writes this stream: its task leaves the write side (the backlog) alone.
pub const F_COPY_WRITE: u32 = 4;
pub const F_ARMED: u32 = 8;
pub const F_EOF: u32 = 16;
pub const F_THROTTLED: u32 = 32;
pub const F_CONNECTING: u32 = 64;
pub const F_WRITE_FAILED: u32 = 128;
/// `framed()` claimed the stream: a [`Framer`] is installed.
pub const F_FRAMED: u32 = 256;
/// Framing is being set up: no reads until JS handed its buffered bytes over (`netFrameFeed`).
pub const F_FRAME_HOLD: u32 = 512;
/// The task still has to push `K_FRAME_SYNC`.
pub const F_FRAME_SYNC: u32 = 1024;
/// Reads go through the framer (set once JS's buffered bytes went through it first).
pub const F_FRAME_ACTIVE: u32 = 2048;
/// Closed by JS with written bytes the kernel has not taken yet: the task goes on sending them
/// (see [`poll_linger`]), then drops the socket.
pub const F_LINGER: u32 = 4096;
/// A lingering stream sent everything and its FIN: it waits for the peer's (see [`poll_linger`]).
pub const F_LINGER_FIN: u32 = 8192;
/// The socket's task runs on its env's own runtime or on the shared default one: what
/// `Runtime.default().shutdown()` ends for the calling thread (see `net_shutdown_default`).
pub const F_ON_DEFAULT: u32 = 16384;
/// Ended by `Runtime.default().shutdown()`: its task and copies report `ERR_RUNTIME_SHUTDOWN`.
pub const F_KILLED: u32 = 32768;
/// A native copy reads this stream: its task does not read it. Each direction of a stream has
/// its own flag, so a copy into a stream leaves its reads running, and one out of it its writes.
pub const F_COPY_READ: u32 = 65536;

/// The flags a native copy sets on (and clears from) its source and its destination: a
/// bidirectional copy reads and writes both.
pub fn copy_flags(bidi: bool) -> (u32, u32) {
    if bidi {
        (F_COPY_READ | F_COPY_WRITE, F_COPY_READ | F_COPY_WRITE)
    } else {
        (F_COPY_READ, F_COPY_WRITE)
    }
}

/// How long a closed stream goes on offering its unsent bytes to a peer that does not take them.
pub const LINGER_LIMIT: Duration = Duration::from_secs(60);

/// A connected byte stream: TCP, a Unix domain socket, or either end of a Windows named pipe.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(kyoto_rt::net::UnixStream),
    #[cfg(windows)]
    PipeServer(kyoto_rt::net::windows::named_pipe::NamedPipeServer),
    #[cfg(windows)]
    PipeClient(kyoto_rt::net::windows::named_pipe::NamedPipeClient),
}

macro_rules! each_stream {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Tcp($s) => $e,
            #[cfg(unix)]
            Stream::Unix($s) => $e,
            #[cfg(windows)]
            Stream::PipeServer($s) => $e,
            #[cfg(windows)]
            Stream::PipeClient($s) => $e,
        }
    };
}

impl Stream {
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        each_stream!(self, s => s.try_read(buf))
    }
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        each_stream!(self, s => s.try_write(buf))
    }
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_read_ready(cx))
    }
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_write_ready(cx))
    }
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        each_stream!(self, s => s.try_io(interest, f))
    }
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        each_stream!(self, s => s.take_error())
    }
    /// `shutdown(SHUT_WR)`; pipes have no half-close, so for them nothing (the peer sees end of
    /// stream at close).
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            #[cfg(windows)]
            Stream::PipeServer(_) | Stream::PipeClient(_) => Ok(()),
            _ => self.with_ref(|r| r.shutdown(std::net::Shutdown::Write)),
        }
    }

    /// Writes what the kernel takes now, without consulting cached readiness.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(windows)]
            Stream::PipeServer(p) => p.write_now(buf),
            #[cfg(windows)]
            Stream::PipeClient(p) => p.write_now(buf),
            _ => self.with_ref(|r| r.send(buf)),
        }
    }

    /// Polls a connect in progress to its end: for sockets, writability and then the socket's
    /// error and peer address; for a pipe server, its wait for a client.
    pub fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        #[cfg(windows)]
        if let Stream::PipeServer(p) = self {
            return p.poll_connect(cx);
        }
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let r = self.try_io(Interest::WRITABLE, || {
                if let Some(e) = self.take_error()? {
                    return Err(e);
                }
                match self.check_connected() {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            });
            match r {
                Err(e) if is_would_block(&e) => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Ok once the connection is established (`ENOTCONN` while a connect is in progress).
    fn check_connected(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|_| ()),
            #[cfg(unix)]
            Stream::Unix(s) => s.peer_addr().map(|_| ()),
            #[cfg(windows)]
            Stream::PipeServer(_) | Stream::PipeClient(_) => Ok(()),
        }
    }
    /// `"family|address|port"` of the local or peer address (`u|path|0` for Unix sockets).
    pub fn addr(&self, peer: bool) -> io::Result<String> {
        match self {
            Stream::Tcp(s) => {
                let a = if peer {
                    s.peer_addr()?
                } else {
                    s.local_addr()?
                };
                Ok(addr_text(&a))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                let a = if peer {
                    s.peer_addr()?
                } else {
                    s.local_addr()?
                };
                Ok(unix_addr_string(&a))
            }
            // A pipe has no addresses; JS keeps the name it opened.
            #[cfg(windows)]
            Stream::PipeServer(_) | Stream::PipeClient(_) => Ok("u||0".to_string()),
        }
    }
    /// Runs `f` on a borrowed `socket2` view of the socket; `ENOTSOCK` for a pipe.
    pub fn with_ref<R>(
        &self,
        f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            #[cfg(unix)]
            Stream::Tcp(s) => f(&socket2::SockRef::from(s)),
            #[cfg(unix)]
            Stream::Unix(s) => f(&socket2::SockRef::from(s)),
            #[cfg(windows)]
            Stream::Tcp(s) => {
                use std::os::windows::io::{AsRawSocket, BorrowedSocket};
                // SAFETY: the socket is owned by `s`, which outlives this borrow.
                let b = unsafe { BorrowedSocket::borrow_raw(s.as_raw_socket()) };
                f(&socket2::SockRef::from(&b))
            }
            #[cfg(windows)]
            Stream::PipeServer(_) | Stream::PipeClient(_) => {
                Err(io::Error::from_raw_os_error(10038)) // WSAENOTSOCK
            }
        }
    }
}

/// `u|path|0` (path empty for an unnamed socket; see [`unix_path_bytes`]).
#[cfg(unix)]
pub fn unix_addr_string(a: &kyoto_rt::net::unix::SocketAddr) -> String {
    let p = String::from_utf8_lossy(&unix_path_bytes(a)).into_owned();
    format!("u|{p}|0")
}

/// What JS is told a Unix socket address is: its path; on Linux `\0name` for an abstract name
/// (as node:net's `server.address()` reports one); empty for an unnamed socket.
#[cfg(unix)]
pub fn unix_path_bytes(a: &kyoto_rt::net::unix::SocketAddr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(p) = a.as_pathname() {
        return p.as_os_str().as_bytes().to_vec();
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = a.as_abstract_name() {
            let mut v = Vec::with_capacity(name.len() + 1);
            v.push(0);
            v.extend_from_slice(name);
            return v;
        }
    }
    Vec::new()
}

/// A listening socket: TCP or Unix.
pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(kyoto_rt::net::UnixListener),
}

impl Listener {
    /// Accepts one connection: the stream, and the peer's `port | family << 16` and address bytes
    /// (family 1 and the path for Unix sockets).
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, i32, Vec<u8>)>> {
        match self {
            Listener::Tcp(l) => l.poll_accept(cx).map_ok(|(s, a)| {
                let (pf, ip) = addr_parts(&a);
                (Stream::Tcp(s), pf, ip)
            }),
            #[cfg(unix)]
            Listener::Unix(l) => l
                .poll_accept(cx)
                .map_ok(|(s, a)| (Stream::Unix(s), 1 << 16, unix_path_bytes(&a))),
        }
    }

    pub fn addr(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => {
                let a = l.local_addr()?;
                Ok(addr_text(&a))
            }
            #[cfg(unix)]
            Listener::Unix(l) => Ok(unix_addr_string(&l.local_addr()?)),
        }
    }
}

pub enum Kind {
    Stream(Stream),
    /// Closed synchronously by `close`: a connect right after must be refused.
    Listener(Closable<Listener>),
    /// A Unix datagram socket (addresses are paths); closed synchronously like UDP (the readiness
    /// futures its task keeps hold clones, dropped by `close` too).
    #[cfg(unix)]
    UnixDgram(Closable<Arc<kyoto_rt::net::UnixDatagram>>),
    /// Closed synchronously by `close`, as node:dgram closes: a bind to its port right after
    /// succeeds, and a datagram sent to the port right after is refused.
    Udp(Closable<UdpSocket>),
}

/// A socket that JS closes synchronously: `close` takes it out, which deregisters it and closes
/// its descriptor at once, without waiting for its task to notice. Every user reaches it through
/// [`Closable::with`] and finds it gone afterwards.
///
/// Lock order: a `with` is taken before the socket's `St` lock, never inside it (the write lock of
/// `take` would otherwise wait on a reader that waits on `St`).
pub struct Closable<T>(std::sync::RwLock<Option<T>>);

impl<T> Closable<T> {
    pub fn new(socket: T) -> Closable<T> {
        Closable(std::sync::RwLock::new(Some(socket)))
    }

    /// Runs `f` on the socket; `None` once it was closed.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let g = self.0.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(f)
    }

    /// Runs a fallible `f` on the socket; `EBADF` once it was closed.
    pub fn try_with<R>(&self, f: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.with(f)
            .unwrap_or_else(|| Err(io::Error::from_raw_os_error(EBADF)))
    }

    /// Takes the socket out (dropping it closes it).
    pub fn take(&self) -> Option<T> {
        self.0.write().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub struct Dgram {
    pub data: Vec<u8>,
    pub addr: Option<SocketAddr>,
    /// Destination path of a Unix datagram (`None`: the connected peer).
    pub path: Option<std::path::PathBuf>,
}

#[derive(Default)]
pub struct St {
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub dout: VecDeque<Dgram>,
    pub waker: Option<Waker>,
    /// JS waits for a K_DRAIN (blocked write, `flush()`, `shutdown()`).
    pub drain_wanted: bool,
    pub shutdown_pending: bool,
    pub abort: Option<AbortHandle>,
    /// A listener out of descriptors, or a Unix datagram to a path whose receiver was full: the
    /// timer to wait out before trying again.
    pub retry: Option<Pin<Box<kyoto_rt::time::Sleep>>>,
    /// The last such Unix datagram wait (doubled on each retry that still finds the receiver full).
    pub dgram_backoff: Duration,
    /// A lingering stream's deadline ([`LINGER_LIMIT`] from its first linger poll).
    pub linger_until: Option<Pin<Box<kyoto_rt::time::Sleep>>>,
    /// Unix datagram sockets: pending readiness waits (they own an `Arc` of the socket).
    pub rd: Option<ReadyFut>,
    pub wr: Option<ReadyFut>,
    /// The errno of the write that failed ([`F_WRITE_FAILED`]): `flush()` and `shutdown()` report
    /// it, so they never confirm bytes the kernel refused.
    pub write_errno: i32,
}

pub type ReadyFut = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Polls a stored readiness wait, creating it with `make` when there is none; `Ready` consumes it.
#[cfg(unix)]
fn poll_stored(
    slot: &mut Option<ReadyFut>,
    make: impl FnOnce() -> ReadyFut,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let fut = slot.get_or_insert_with(make);
    match fut.as_mut().poll(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(_) => {
            *slot = None;
            Poll::Ready(())
        }
    }
}

impl St {
    pub fn backlog(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

pub struct Sock {
    pub h: u32,
    pub kind: Kind,
    pub shared: Arc<Shared>,
    pub flags: AtomicU32,
    pub undelivered: AtomicUsize,
    pub st: Mutex<St>,
    /// The stream's framer once `framed()` claimed it (see [`super::frame`]).
    pub framer: Mutex<Option<Framer>>,
}

impl Sock {
    pub fn new(h: u32, kind: Kind, shared: Arc<Shared>, flags: u32) -> Sock {
        Sock {
            h,
            kind,
            shared,
            flags: AtomicU32::new(flags),
            undelivered: AtomicUsize::new(0),
            st: Mutex::new(St::default()),
            framer: Mutex::new(None),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has(&self, f: u32) -> bool {
        self.flags.load(Ordering::Acquire) & f != 0
    }

    pub fn set(&self, f: u32) -> u32 {
        self.flags.fetch_or(f, Ordering::AcqRel)
    }

    pub fn clear(&self, f: u32) -> u32 {
        self.flags.fetch_and(!f, Ordering::AcqRel)
    }

    /// Wakes the socket's task (to notice new flags or backlog).
    pub fn wake(&self) {
        let w = self.lock().waker.clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    pub fn stream(&self) -> Option<&Stream> {
        match &self.kind {
            Kind::Stream(s) => Some(s),
            _ => None,
        }
    }

    /// Queues an event without bytes.
    pub fn push(&self, ev: Ev) {
        self.shared.q.push(ev, &[], &[]);
    }

    fn push_err(&self, e: &io::Error, sys: i32) {
        self.push(Ev::new(self.h, K_ERROR, errno(e), sys));
    }

    /// Queues read bytes for JS, counting them against the undelivered limit.
    fn push_data(self: &Arc<Self>, kind: i32, a: i32, b: i32, bytes: &[u8], extra: &[u8]) {
        self.undelivered.fetch_add(bytes.len(), Ordering::AcqRel);
        let mut ev = Ev::new(self.h, kind, a, b);
        ev.sock = Some(self.clone());
        self.shared.q.push(ev, bytes, extra);
    }

    /// The stream's framer slot (`None` until `framed()` claimed the stream).
    pub fn lock_framer(&self) -> MutexGuard<'_, Option<Framer>> {
        self.framer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `framer` over `chunk` (or, with `None`, over the end of the stream) and queues the
    /// result: one `K_FRAMES` event per run of segments, one `K_FRAME_ERR` per broken rule. The
    /// frame bytes and their range table count against the undelivered limit like read data.
    pub fn push_framed(self: &Arc<Self>, framer: &mut Framer, chunk: Option<&[u8]>) {
        FRAME_TABLE.with(|t| {
            let mut table = t.borrow_mut();
            table.clear();
            let mut sink = QueueSink {
                sock: self,
                pre: framer.prefix(),
                s: chunk.unwrap_or_default(),
                table: &mut table,
                first: 0,
                last_end: 0,
                count: 0,
                text: matches!(framer, Framer::Lines(_)),
            };
            match chunk {
                Some(c) => framer.feed(c, &mut sink),
                None => framer.finish(&mut sink),
            }
            sink.flush();
            if table.capacity() > 64 * 1024 {
                *table = Vec::new();
            }
        });
    }

    /// Called on the JS thread when a data event was delivered.
    pub fn delivered(&self, n: usize) {
        let before = self.undelivered.fetch_sub(n, Ordering::AcqRel);
        if before >= UNDELIVERED_LIMIT && before - n < UNDELIVERED_LIMIT && self.has(F_THROTTLED) {
            self.clear(F_THROTTLED);
            self.wake();
        }
    }

    fn may_read(&self) -> bool {
        let f = self.flags.load(Ordering::Acquire);
        if f & (F_READING | F_CLOSED | F_COPY_READ | F_EOF | F_CONNECTING | F_FRAME_HOLD)
            != F_READING
        {
            return false;
        }
        if self.undelivered.load(Ordering::Acquire) >= UNDELIVERED_LIMIT {
            self.set(F_THROTTLED);
            // Re-check: a delivery may have happened between the load and the flag.
            return self.undelivered.load(Ordering::Acquire) < UNDELIVERED_LIMIT;
        }
        true
    }
}

/// The errno JS reports for `e` (positive; `systemError` negates it): the OS's own number on Unix,
/// libuv's translation of the Win32/WinSock code on Windows (what Node's error map knows).
pub fn errno(e: &io::Error) -> i32 {
    // An operation that failed because the runtime shut down (a native copy, say) reports that,
    // not EIO.
    if kyoto_rt::io::is_shutdown_error(e) {
        return E_RUNTIME_SHUTDOWN;
    }
    let os = e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::UnexpectedEof => 0,
        io::ErrorKind::WriteZero => EPIPE,
        io::ErrorKind::TimedOut => ETIMEDOUT,
        io::ErrorKind::InvalidInput => EINVAL,
        _ => EIO,
    });
    #[cfg(windows)]
    {
        super::win_errno::uv_errno(os)
    }
    #[cfg(not(windows))]
    {
        os
    }
}

// OS error codes this module makes errors from (`io::Error::from_raw_os_error`). On Windows, the
// Win32/WinSock codes libuv translates to the same names.
#[cfg(unix)]
pub const EIO: i32 = libc::EIO;
#[cfg(unix)]
pub const EPIPE: i32 = libc::EPIPE;
#[cfg(unix)]
pub const ETIMEDOUT: i32 = libc::ETIMEDOUT;
#[cfg(unix)]
pub const EINVAL: i32 = libc::EINVAL;
#[cfg(unix)]
pub const EBADF: i32 = libc::EBADF;
#[cfg(unix)]
pub const ECANCELED: i32 = libc::ECANCELED;
/// ERROR_IO_DEVICE
#[cfg(windows)]
pub const EIO: i32 = 1117;
/// ERROR_NO_DATA ("the pipe is being closed")
#[cfg(windows)]
pub const EPIPE: i32 = 232;
/// WSAETIMEDOUT
#[cfg(windows)]
pub const ETIMEDOUT: i32 = 10060;
/// ERROR_INVALID_PARAMETER
#[cfg(windows)]
pub const EINVAL: i32 = 87;
/// ERROR_INVALID_HANDLE
#[cfg(windows)]
pub const EBADF: i32 = 6;
/// ERROR_OPERATION_ABORTED
#[cfg(windows)]
pub const ECANCELED: i32 = 995;

/// Set in [`addr_parts`]' `port | family << 16` when the 16 IPv6 bytes are followed by a scope id
/// (u32 LE) that Node would print as `%zone` ([`zone::printed_scope`]).
pub const ADDR_SCOPED: i32 = 1 << 25;

/// Port | family << 16 (| [`ADDR_SCOPED`]) of an address, and its IP bytes (then the scope id).
pub fn addr_parts(addr: &SocketAddr) -> (i32, Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => (addr.port() as i32 | 4 << 16, ip.octets().to_vec()),
        IpAddr::V6(ip) => {
            let mut bytes = ip.octets().to_vec();
            let mut pf = addr.port() as i32 | 6 << 16;
            if let Some(scope) = zone::printed_scope(addr) {
                bytes.extend_from_slice(&scope.to_le_bytes());
                pf |= ADDR_SCOPED;
            }
            (pf, bytes)
        }
    }
}

/// `"family|ip|port"`, the form JS's `parseNativeAddr` reads (the IP as Node prints it).
pub fn addr_text(a: &SocketAddr) -> String {
    format!(
        "{}|{}|{}",
        if a.is_ipv4() { 4 } else { 6 },
        zone::ip_text(a),
        a.port()
    )
}

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Whether an accept error means "out of descriptors/memory": retry later instead of failing.
fn is_resource_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Collects a framer's segments for one chunk into `K_FRAMES` events (see [`K_FRAMES`]).
struct QueueSink<'a> {
    sock: &'a Arc<Sock>,
    /// The held bytes the framer's ranges count from, then the chunk.
    pre: &'a [u8],
    s: &'a [u8],
    table: &'a mut Vec<u8>,
    /// Range of the input covered by the pending segments.
    first: usize,
    last_end: usize,
    count: u32,
    /// Text frames: flag events whose bytes are all ASCII (JS decodes them with one call).
    text: bool,
}

impl QueueSink<'_> {
    /// Queues the pending segments as one event: the bytes they cover, then their range table.
    fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        let (a, b) = covered(self.pre, self.s, self.first, self.last_end);
        let total = a.len() + b.len() + self.table.len();
        self.sock.undelivered.fetch_add(total, Ordering::AcqRel);
        let ascii = self.text && a.is_ascii() && b.is_ascii();
        let mut ev = Ev::new(self.sock.h, K_FRAMES, self.count as i32, i32::from(ascii));
        ev.sock = Some(self.sock.clone());
        self.sock.shared.q.push_parts(ev, &[a, b, self.table]);
        self.table.clear();
        self.count = 0;
    }
}

/// Bytes `first..last_end` of `pre` followed by `s`, as (the part in `pre`, the part in `s`).
pub fn covered<'a>(
    pre: &'a [u8],
    s: &'a [u8],
    first: usize,
    last_end: usize,
) -> (&'a [u8], &'a [u8]) {
    let p = pre.len();
    if first < p {
        (
            &pre[first..last_end.min(p)],
            &s[..last_end.saturating_sub(p)],
        )
    } else {
        (&s[first - p..last_end - p], &[])
    }
}

impl Sink for QueueSink<'_> {
    fn seg(&mut self, start: usize, len: usize, end: bool) {
        if self.count == 0 {
            self.first = start;
        }
        let rel = (start - self.first) as u32;
        let l = len as u32 | if end { 0 } else { 1 << 31 };
        self.table.extend_from_slice(&rel.to_le_bytes());
        self.table.extend_from_slice(&l.to_le_bytes());
        self.last_end = start + len;
        self.count += 1;
    }

    fn err(&mut self, e: FrameErr) {
        self.flush();
        let n = match e {
            FrameErr::FrameTooBig(n) => n,
            _ => 0,
        };
        self.sock.shared.q.push(
            Ev::new(self.sock.h, K_FRAME_ERR, e.code(), 0),
            &n.to_le_bytes(),
            &[],
        );
    }
}

thread_local! {
    /// The range table of the `K_FRAMES` event being built on this thread.
    static FRAME_TABLE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
    static DGRAM_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Shuts the write direction of a stream down (a FIN). Idempotent as far as callers are concerned.
pub fn shutdown_write(s: &Stream) -> io::Result<()> {
    match s.shutdown_write() {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Writes as much of the stream's backlog as the socket takes. `Ready(Err)` on a write error.
fn poll_flush_backlog(
    s: &Stream,
    st: &mut St,
    cx: Option<&mut Context<'_>>,
) -> Poll<io::Result<()>> {
    let mut cx = cx;
    while st.out_pos < st.out.len() {
        match s.try_write(&st.out[st.out_pos..]) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => st.out_pos += n,
            Err(e) if is_would_block(&e) => match cx.as_deref_mut() {
                Some(cx) => match s.poll_write_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                },
                None => return Poll::Pending,
            },
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    st.out.clear();
    st.out_pos = 0;
    Poll::Ready(Ok(()))
}

/// Writes what the socket takes of the backlog right now, as the socket closes: straight through
/// the descriptor, not the registration, whose cached readiness may not have seen the socket's
/// first writable edge yet (a stream written to and closed in the same turn as it was created).
pub fn flush_backlog_now(s: &Stream, st: &mut St) -> io::Result<()> {
    while st.out_pos < st.out.len() {
        match s.send_now(&st.out[st.out_pos..]) {
            Ok(0) => break,
            Ok(n) => st.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends `data` to the stream's backlog (the JS thread, `multi_thread` data path), or — when
/// `direct` — first writes what the socket takes right now. Returns whether the socket is blocked
/// (backlog above the high-water mark) and whether the task must be woken.
pub fn stream_write(sock: &Sock, data: &[u8], direct: bool) -> (bool, bool) {
    let Some(s) = sock.stream() else {
        return (false, false);
    };
    if sock.has(F_CLOSED | F_WRITE_FAILED) {
        return (false, false);
    }
    let mut st = sock.lock();
    let mut data = data;
    let was_empty = st.backlog() == 0;
    if direct && was_empty && !sock.has(F_COPY_WRITE | F_CONNECTING) {
        // A stream accepted in this turn has had no writable report yet, so its cached readiness
        // says "wait": with nothing queued, ask the socket itself once before queueing.
        let mut asked = false;
        loop {
            let r = match s.try_write(data) {
                Err(e) if is_would_block(&e) && !asked => {
                    asked = true;
                    s.send_now(data)
                }
                r => r,
            };
            match r {
                Ok(n) if n == data.len() => return (false, false),
                Ok(0) => break,
                Ok(n) => data = &data[n..],
                Err(e) if is_would_block(&e) => break,
                Err(e) => {
                    // Reported once, through the task's error event.
                    st.write_errno = errno(&e);
                    drop(st);
                    sock.set(F_WRITE_FAILED);
                    sock.push_err(&e, SYS_WRITE);
                    return (false, false);
                }
            }
        }
    }
    if st.out_pos > 0 && st.out_pos * 2 > st.out.len() {
        let pos = st.out_pos;
        st.out.drain(..pos);
        st.out_pos = 0;
    }
    st.out.extend_from_slice(data);
    let blocked = st.backlog() >= BACKLOG_HWM;
    if blocked {
        st.drain_wanted = true;
    }
    (blocked, was_empty)
}

/// Queues datagrams for a UDP socket's task, sending what the socket takes first when `direct`.
pub fn udp_send(sock: &Sock, msgs: &[SendMsg<'_>], direct: bool) -> (bool, bool) {
    let Kind::Udp(u) = &sock.kind else {
        return (false, false);
    };
    if sock.has(F_CLOSED) {
        return (false, false);
    }
    u.with(|u| udp_send_on(sock, u, msgs, direct))
        .unwrap_or((false, false))
}

fn udp_send_on(sock: &Sock, u: &UdpSocket, msgs: &[SendMsg<'_>], direct: bool) -> (bool, bool) {
    let mut st = sock.lock();
    let was_empty = st.dout.is_empty();
    let mut rest = msgs;
    if direct && was_empty {
        while !rest.is_empty() {
            match u.try_send_many(rest) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(e) if is_would_block(&e) => break,
                Err(e) => {
                    // UDP errors (e.g. ECONNREFUSED from an earlier ICMP) belong to the next recv;
                    // drop the first datagram so the rest can go.
                    sock.shared
                        .q
                        .push(Ev::new(sock.h, K_ERROR, errno(&e), SYS_SEND), &[], &[]);
                    rest = &rest[1..];
                }
            }
        }
    }
    for m in rest {
        st.dout.push_back(Dgram {
            data: m.data.to_vec(),
            addr: m.addr,
            path: None,
        });
    }
    let blocked = st.dout.len() >= DGRAM_HWM;
    if blocked {
        st.drain_wanted = true;
    }
    (blocked, was_empty && !rest.is_empty())
}

/// Before a UDP socket connects elsewhere or disconnects: its queued sends to the connected peer
/// (no address of their own) are given that peer's address, so they still go where they were sent
/// rather than to the next peer (or fail with `EDESTADDRREQ`). On macOS a send with an address on
/// a socket connected again fails (`EISCONN`) and reaches the next receive, as other send errors do.
pub fn udp_pin_queued_to_peer(sock: &Sock, u: &UdpSocket) {
    let mut st = sock.lock();
    if st.dout.iter().all(|d| d.addr.is_some()) {
        return;
    }
    let Ok(peer) = u.peer_addr() else {
        return;
    };
    for d in st.dout.iter_mut().filter(|d| d.addr.is_none()) {
        d.addr = Some(peer);
    }
}

/// The errno of the error events a socket gets when the runtime serving it shuts down (no OS
/// uses it; JS turns it into `ERR_RUNTIME_SHUTDOWN`).
pub const E_RUNTIME_SHUTDOWN: i32 = 0x4b59_0001;

/// The task that serves one socket.
pub struct SockTask {
    sock: Arc<Sock>,
    finished: bool,
}

impl SockTask {
    pub fn new(sock: Arc<Sock>) -> SockTask {
        SockTask {
            sock,
            finished: false,
        }
    }
}

impl Drop for SockTask {
    /// Dropped unfinished and not closed by JS: the runtime is shutting down (or the task was
    /// aborted for it). Every wait JS has on the socket must end, so report it in each direction.
    fn drop(&mut self) {
        let sock = &self.sock;
        if self.finished || sock.has(F_CLOSED) {
            return;
        }
        // A framed stream whose marker was still due: JS must get it first, or its framing would
        // wait for it forever (what follows are the errors below, no data).
        if sock.has(F_FRAME_SYNC) && sock.clear(F_FRAME_SYNC) & F_FRAME_SYNC != 0 {
            sock.push(Ev::new(sock.h, K_FRAME_SYNC, 0, 0));
        }
        let sys: &[i32] = match &sock.kind {
            Kind::Stream(_) if sock.has(F_CONNECTING) => &[SYS_CONNECT],
            Kind::Stream(_) => &[SYS_READ, SYS_WRITE],
            Kind::Listener(_) => &[SYS_ACCEPT],
            _ => &[SYS_RECV],
        };
        for &s in sys {
            sock.push(Ev::new(sock.h, K_ERROR, E_RUNTIME_SHUTDOWN, s));
        }
        // Native copies run on the env's own runtime, not necessarily this socket's: one between
        // this stream and a stream on a live runtime could wait on that one forever (for bytes
        // that never come) before it touched this dead one. End them now, with the same error,
        // and refuse new ones (`net_copy`).
        sock.set(F_KILLED);
        sock.shared.abort_copies(|h| h == sock.h);
        release_killed(sock);
    }
}

/// Sends the rest of a killed stream's backlog (what the kernel did not take at once) from a
/// thread of its own, as the kernel would after `close(2)`: the stream's reactor is gone, so
/// nothing else would wake for it. Gives up on an error, or after [`LINGER_LIMIT`]; the
/// descriptor closes when the thread lets the socket go.
fn linger_killed(sock: Arc<Sock>) {
    let run = move || {
        let Some(s) = sock.stream() else {
            return;
        };
        let deadline = std::time::Instant::now() + LINGER_LIMIT;
        loop {
            let mut st = sock.lock();
            if flush_backlog_now(s, &mut st).is_err() || st.backlog() == 0 {
                return;
            }
            drop(st);
            if std::time::Instant::now() >= deadline {
                return;
            }
            wait_writable(s);
        }
    };
    // No thread: the rest is dropped, as a reset would.
    let _ = std::thread::Builder::new()
        .name("kyoto-linger".into())
        .spawn(run);
}

/// Waits (up to 100 ms) for a stream with no reactor to take more bytes.
fn wait_writable(s: &Stream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let fd = match s {
            Stream::Tcp(t) => t.as_raw_fd(),
            Stream::Unix(u) => u.as_raw_fd(),
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the call, and `fd` stays open while `s` is borrowed.
        unsafe { libc::poll(&mut p, 1, 100) };
    }
    #[cfg(not(unix))]
    {
        let _ = s;
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Gives up the descriptor of a socket whose runtime is gone, as Tokio closes a runtime's sockets
/// with it: the peer of a stream sees its end (or a reset, if it left bytes unread, as with
/// `close(2)`), and a listener refuses new connections. A stream first offers the kernel what JS
/// had acknowledged (nothing is left to send the rest). Listeners and datagram sockets close now
/// and stay in the table (their JS calls fail with the error pushed above); a stream leaves the
/// table, so its descriptor closes with the last reference (this task's, or an aborted copy's):
/// never twice, as only that drop closes it. JS already failed every later call on it.
fn release_killed(sock: &Arc<Sock>) {
    match &sock.kind {
        Kind::Stream(s) => {
            // `try_lock`: a task aborted while its spawner holds the lock (`Shared::insert`) may
            // be dropped right there; its backlog is empty then.
            let mut left = false;
            if let Ok(mut st) = sock.st.try_lock() {
                if st.backlog() > 0 && !sock.has(F_WRITE_FAILED) {
                    left = flush_backlog_now(s, &mut st).is_ok() && st.backlog() > 0;
                }
                if !left {
                    st.out = Vec::new();
                    st.out_pos = 0;
                }
            }
            let taken = sock.shared.remove_killed(sock.h);
            if left {
                linger_killed(sock.clone());
            }
            drop(taken);
        }
        Kind::Listener(l) => drop(l.take()),
        Kind::Udp(u) => drop(u.take()),
        #[cfg(unix)]
        Kind::UnixDgram(u) => {
            let taken = u.take();
            let futures = sock
                .st
                .try_lock()
                .map(|mut st| (st.rd.take(), st.wr.take()));
            drop((futures, taken));
        }
    }
}

impl Future for SockTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let sock = &this.sock;
        if sock.has(F_CLOSED) {
            if sock.has(F_LINGER) && !poll_linger(sock, cx) {
                return Poll::Pending;
            }
            this.finished = true;
            return Poll::Ready(());
        }
        {
            let mut st = sock.lock();
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
        }
        let done = match &sock.kind {
            Kind::Stream(s) => poll_stream(sock, s, cx),
            Kind::Listener(l) => l.with(|l| poll_listener(sock, l, cx)).unwrap_or(true),
            Kind::Udp(u) => u.with(|u| poll_udp(sock, u, cx)).unwrap_or(true),
            #[cfg(unix)]
            Kind::UnixDgram(u) => u.with(|u| poll_unix_dgram(sock, u, cx)).unwrap_or(true),
        };
        if done {
            this.finished = true;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A stream JS closed while bytes it had acknowledged (`write()` resolved) were still in the
/// backlog: send them as the kernel would its own buffer after `close(2)`, then the FIN, then wait
/// for the peer's FIN before letting the socket go. Gives up (dropping the socket) on a write
/// error, a reset from the peer, or [`LINGER_LIMIT`] after the close. Returns true when done.
///
/// What the peer still sends meanwhile is read and dropped: nobody will read it, and left unread it
/// would fill the window and stall a peer that waits for room before it reads what it is owed
/// (an echo server answering a client that closed: each side would wait for the other until the
/// limit). Closing with such bytes unread would make the kernel answer with a reset, which can
/// destroy what the peer has not read yet; hence the FIN first and the wait for the peer's (the
/// "lingering close" of HTTP servers).
fn poll_linger(sock: &Sock, cx: &mut Context<'_>) -> bool {
    let Kind::Stream(s) = &sock.kind else {
        return true;
    };
    if !sock.has(F_EOF) && discard_input(sock, s, cx) {
        return true;
    }
    let mut st = sock.lock();
    if !sock.has(F_LINGER_FIN) {
        match poll_flush_backlog(s, &mut st, Some(cx)) {
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => {
                sock.set(F_LINGER_FIN);
                if shutdown_write(s).is_err() {
                    return true;
                }
            }
            Poll::Pending => {}
        }
    }
    if sock.has(F_LINGER_FIN) && sock.has(F_EOF) {
        return true;
    }
    let deadline = st
        .linger_until
        .get_or_insert_with(|| Box::pin(kyoto_rt::time::sleep(LINGER_LIMIT)));
    deadline.as_mut().poll(cx).is_ready()
}

/// Reads and drops what arrived on a lingering stream, until it would block (interest registered)
/// or the peer's FIN (then sets [`F_EOF`]). True on a read error: the peer reset the connection,
/// so nothing more can be delivered either.
fn discard_input(sock: &Sock, s: &Stream, cx: &mut Context<'_>) -> bool {
    for _ in 0..16 {
        match SCRATCH.with(|b| s.try_read(&mut b.borrow_mut()[..])) {
            Ok(0) => {
                sock.set(F_EOF);
                return false;
            }
            Ok(_) => {}
            Err(e) if is_would_block(&e) => match s.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return true,
            },
            Err(_) => return true,
        }
    }
    // A fast sender: let other tasks run, then go on.
    cx.waker().wake_by_ref();
    false
}

/// Returns true when the task is finished.
fn poll_stream(sock: &Arc<Sock>, s: &Stream, cx: &mut Context<'_>) -> bool {
    if sock.has(F_CONNECTING) {
        match s.poll_connected(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(e)) => {
                sock.push_err(&e, SYS_CONNECT);
                return true;
            }
            Poll::Ready(Ok(())) => {
                sock.clear(F_CONNECTING);
                sock.push(Ev::new(sock.h, K_CONNECTED, 0, 0));
            }
        }
    }
    // Write side: flush the backlog (unless a native copy writes the stream: the backlog follows
    // what it wrote, once it ended).
    if !sock.has(F_COPY_WRITE) {
        let mut st = sock.lock();
        if st.backlog() > 0 && !sock.has(F_WRITE_FAILED) {
            match poll_flush_backlog(s, &mut st, Some(cx)) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    // Marked failed before the backlog reads as empty (both under the lock):
                    // `net_drain`/`net_shutdown` on the JS thread must never see the lost bytes as
                    // a drained backlog, which JS would report as written.
                    st.write_errno = errno(&e);
                    sock.set(F_WRITE_FAILED);
                    st.out.clear();
                    st.out_pos = 0;
                    drop(st);
                    sock.push_err(&e, SYS_WRITE);
                    st = sock.lock();
                }
            }
        }
        if st.backlog() == 0 && (st.drain_wanted || st.shutdown_pending) {
            let mut err = None;
            if st.shutdown_pending {
                st.shutdown_pending = false;
                if let Err(e) = shutdown_write(s) {
                    err = Some(e);
                }
            }
            st.drain_wanted = false;
            drop(st);
            match err {
                Some(e) => sock.push_err(&e, SYS_SHUTDOWN),
                None => sock.push(Ev::new(sock.h, K_DRAIN, 0, 0)),
            }
        }
    }
    // Framing requested: everything read raw so far was pushed before this marker.
    if sock.has(F_FRAME_SYNC) && sock.clear(F_FRAME_SYNC) & F_FRAME_SYNC != 0 {
        sock.push(Ev::new(sock.h, K_FRAME_SYNC, 0, 0));
    }
    // Read side.
    let mut budget = 16;
    while sock.may_read() {
        if budget == 0 {
            cx.waker().wake_by_ref();
            return false;
        }
        budget -= 1;
        let r = SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            match s.try_read(&mut b[..]) {
                Ok(0) => Ok(0),
                Ok(n) => {
                    if sock.has(F_FRAME_ACTIVE) {
                        if let Some(f) = sock.lock_framer().as_mut() {
                            sock.push_framed(f, Some(&b[..n]));
                        }
                    } else {
                        sock.push_data(K_DATA, 0, 0, &b[..n], &[]);
                    }
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        });
        match r {
            Ok(0) => {
                sock.set(F_EOF);
                if sock.has(F_FRAME_ACTIVE) {
                    if let Some(f) = sock.lock_framer().as_mut() {
                        sock.push_framed(f, None);
                    }
                }
                sock.push(Ev::new(sock.h, K_EOF, 0, 0));
            }
            Ok(_) => {}
            Err(e) if is_would_block(&e) => match s.poll_read_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    sock.set(F_EOF);
                    sock.push_err(&e, SYS_READ);
                }
            },
            Err(e) => {
                sock.set(F_EOF);
                sock.push_err(&e, SYS_READ);
            }
        }
    }
    false
}

fn poll_listener(sock: &Arc<Sock>, l: &Listener, cx: &mut Context<'_>) -> bool {
    {
        let mut st = sock.lock();
        if let Some(sleep) = st.retry.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            st.retry = None;
        }
    }
    let mut budget = 64;
    while sock.has(F_ARMED) && !sock.has(F_CLOSED) {
        if budget == 0 {
            cx.waker().wake_by_ref();
            return false;
        }
        budget -= 1;
        match l.poll_accept(cx) {
            Poll::Pending => break,
            Poll::Ready(Ok((stream, pf, ip))) => {
                let shared = sock.shared.clone();
                // The stream is registered with this task's runtime: its task runs there too.
                let rt = kyoto_rt::Handle::try_current().unwrap_or_else(|_| shared.handle.clone());
                let Some(h) = shared.insert_on(&rt, |h| {
                    Sock::new(h, Kind::Stream(stream), shared.clone(), 0)
                }) else {
                    continue; // the env is gone
                };
                sock.shared
                    .q
                    .push(Ev::new(sock.h, K_ACCEPT, h as i32, pf), &ip, &[]);
            }
            Poll::Ready(Err(e)) if is_transient_accept_error(&e) => {}
            Poll::Ready(Err(e)) if is_resource_error(&e) => {
                // Out of descriptors: keep the connection queued and try again shortly.
                let mut sleep = Box::pin(kyoto_rt::time::sleep(Duration::from_millis(50)));
                if sleep.as_mut().poll(cx).is_pending() {
                    sock.lock().retry = Some(sleep);
                    return false;
                }
            }
            Poll::Ready(Err(e)) => {
                sock.push_err(&e, SYS_ACCEPT);
                sock.clear(F_ARMED);
            }
        }
    }
    false
}

fn poll_udp(sock: &Arc<Sock>, u: &UdpSocket, cx: &mut Context<'_>) -> bool {
    // Send side.
    {
        let mut st = sock.lock();
        while !st.dout.is_empty() {
            let msgs: Vec<SendMsg<'_>> = st
                .dout
                .iter()
                .take(64)
                .map(|d| SendMsg {
                    data: &d.data,
                    addr: d.addr,
                })
                .collect();
            match u.try_send_many(&msgs) {
                Ok(n) => {
                    drop(msgs);
                    let k = n.max(1).min(st.dout.len());
                    st.dout.drain(..k);
                }
                Err(e) if is_would_block(&e) => {
                    drop(msgs);
                    match u.poll_send_ready(cx) {
                        Poll::Pending => break,
                        Poll::Ready(_) => continue,
                    }
                }
                Err(e) => {
                    drop(msgs);
                    st.dout.pop_front();
                    sock.shared
                        .q
                        .push(Ev::new(sock.h, K_ERROR, errno(&e), SYS_SEND), &[], &[]);
                }
            }
        }
        if st.dout.is_empty() && st.drain_wanted {
            st.drain_wanted = false;
            drop(st);
            sock.push(Ev::new(sock.h, K_DRAIN, 0, 0));
        }
    }
    // Receive side.
    let mut budget = 8;
    while sock.may_read() {
        if budget == 0 {
            cx.waker().wake_by_ref();
            return false;
        }
        budget -= 1;
        let r = DGRAM_SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            if b.is_empty() {
                // Zeroed by calloc (fresh pages): only the bytes datagrams land on become resident.
                *b = vec![0u8; RECV_BATCH * DGRAM_SLOT];
            }
            let mut meta = [RecvMeta::default(); RECV_BATCH];
            let mut bufs: Vec<&mut [u8]> = b.chunks_mut(DGRAM_SLOT).collect();
            let n = u.try_recv_many(&mut bufs, &mut meta)?;
            for (buf, m) in bufs.iter().zip(meta.iter()).take(n) {
                let (pf, ip) = addr_parts(&m.addr);
                let pf = pf | (m.truncated as i32) << 24;
                let a = match m.addr.ip() {
                    IpAddr::V4(v4) => u32::from(v4) as i32,
                    IpAddr::V6(_) => -1,
                };
                let extra: &[u8] = if a == -1 { &ip } else { &[] };
                sock.push_data(K_DGRAM, a, pf, &buf[..m.len], extra);
            }
            Ok::<usize, io::Error>(n)
        });
        match r {
            Ok(_) => {}
            Err(e) if is_would_block(&e) => match u.poll_recv_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(_) => {}
            },
            Err(e) => {
                sock.shared
                    .q
                    .push(Ev::new(sock.h, K_ERROR, errno(&e), SYS_RECV), &[], &[]);
            }
        }
    }
    false
}

/// One direction of a native copy. Reads go into the thread's scratch buffer and are written at
/// once; only bytes the destination did not take are kept (so an idle or flowing copy holds no
/// buffer of its own, which matters with 10 000 connections).
struct Dir {
    src: Arc<Sock>,
    dst: Arc<Sock>,
    pending: Vec<u8>,
    pos: usize,
    read_done: bool,
    done: bool,
    n: u64,
    shutdown_on_eof: bool,
}

/// Most bytes one copy direction reads per poll before yielding (fairness).
const COPY_BUDGET: usize = 512 * 1024;

impl Dir {
    fn new(src: Arc<Sock>, dst: Arc<Sock>, shutdown_on_eof: bool) -> Dir {
        Dir {
            src,
            dst,
            pending: Vec::new(),
            pos: 0,
            read_done: false,
            done: false,
            n: 0,
            shutdown_on_eof,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), (io::Error, i32)>> {
        let (Some(src), Some(dst)) = (self.src.stream(), self.dst.stream()) else {
            return Poll::Ready(Ok(()));
        };
        let mut budget = COPY_BUDGET;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.src.has(F_CLOSED) || self.dst.has(F_CLOSED) {
                return Poll::Ready(Err((
                    io::Error::from_raw_os_error(EBADF),
                    SYS_READ | COPY_NO_FAULT,
                )));
            }
            // Bytes the destination did not take last time go first.
            while self.pos < self.pending.len() {
                match dst.try_write(&self.pending[self.pos..]) {
                    Ok(0) => return Poll::Ready(Err((io::ErrorKind::WriteZero.into(), SYS_WRITE))),
                    Ok(k) => {
                        self.pos += k;
                        self.n += k as u64;
                    }
                    Err(e) if is_would_block(&e) => match dst.poll_write_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((e, SYS_WRITE))),
                        Poll::Ready(Ok(())) => {}
                    },
                    Err(e) => return Poll::Ready(Err((e, SYS_WRITE))),
                }
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.pos = 0;
            }
            if self.read_done {
                if self.shutdown_on_eof {
                    if let Err(e) = shutdown_write(dst) {
                        return Poll::Ready(Err((e, SYS_SHUTDOWN)));
                    }
                }
                self.done = true;
                continue;
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let r = SCRATCH.with(|b| {
                let mut b = b.borrow_mut();
                let k = src.try_read(&mut b[..])?;
                if k == 0 {
                    return Ok(0);
                }
                // Write straight from the scratch buffer; keep only what is left.
                let mut off = 0;
                while off < k {
                    match dst.try_write(&b[off..k]) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                        Ok(w) => off += w,
                        Err(e) if is_would_block(&e) => break,
                        Err(e) => return Err(io::Error::new(e.kind(), WriteErr(e))),
                    }
                }
                self.n += off as u64;
                if off < k {
                    self.pending.extend_from_slice(&b[off..k]);
                    self.pos = 0;
                }
                Ok(k)
            });
            match r {
                Ok(0) => {
                    self.read_done = true;
                    self.src.set(F_EOF);
                }
                Ok(k) => budget = budget.saturating_sub(k),
                Err(e) if is_would_block(&e) => match src.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((e, SYS_READ))),
                    Poll::Ready(Ok(())) => {}
                },
                Err(e) => {
                    // A write error was wrapped to tell it apart from a read error.
                    if e.get_ref().is_some_and(|i| i.is::<WriteErr>()) {
                        if let Some(Ok(w)) = e.into_inner().map(|i| i.downcast::<WriteErr>()) {
                            return Poll::Ready(Err((w.0, SYS_WRITE)));
                        }
                        return Poll::Ready(Err((io::Error::from_raw_os_error(EPIPE), SYS_WRITE)));
                    }
                    let sys = if e.kind() == io::ErrorKind::WriteZero {
                        SYS_WRITE
                    } else {
                        SYS_READ
                    };
                    return Poll::Ready(Err((e, sys)));
                }
            }
        }
    }
}

/// Marks an error of the write side inside the copy's read closure.
#[derive(Debug)]
struct WriteErr(io::Error);

impl std::fmt::Display for WriteErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for WriteErr {}

/// A native `copy` (one direction) or `copyBidirectional` between two kyoto streams.
pub struct CopyTask {
    op: u32,
    q: Arc<super::Shared>,
    a: Dir,
    b: Option<Dir>,
    finished: bool,
}

impl CopyTask {
    pub fn new(
        op: u32,
        shared: Arc<Shared>,
        src: Arc<Sock>,
        dst: Arc<Sock>,
        bidi: bool,
    ) -> CopyTask {
        let b = bidi.then(|| Dir::new(dst.clone(), src.clone(), true));
        CopyTask {
            op,
            q: shared,
            a: Dir::new(src, dst, bidi),
            b,
            finished: false,
        }
    }

    fn finish(&mut self, err: Option<(io::Error, i32)>) {
        if self.finished {
            return;
        }
        self.finished = true;
        // Only this copy's flags: another copy may still read or write the other direction.
        let (rd, wr) = copy_flags(self.b.is_some());
        self.a.src.clear(rd);
        self.a.dst.clear(wr);
        for s in [&self.a.src, &self.a.dst] {
            s.wake();
        }
        let (a, b) = match &err {
            Some((e, sys)) => (errno(e), *sys),
            None => (0, 0),
        };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.a.n.to_le_bytes());
        bytes[8..].copy_from_slice(&self.b.as_ref().map_or(0, |d| d.n).to_le_bytes());
        self.q.q.push(Ev::new(self.op, K_COPY, a, b), &bytes, &[]);
    }
}

impl Future for CopyTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let ra = this.a.poll(cx);
        let rb = match this.b.as_mut() {
            Some(b) => b.poll(cx).map_err(|(e, sys)| (e, sys | COPY_REVERSE)),
            None => Poll::Ready(Ok(())),
        };
        match (ra, rb) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                this.finish(Some(e));
                Poll::Ready(())
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => {
                this.finish(None);
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }
}

impl Drop for CopyTask {
    fn drop(&mut self) {
        // Aborted (a stream closed, the env or runtime went away): settle the JS side anyway.
        let killed = [&self.a.src, &self.a.dst].iter().any(|s| s.has(F_KILLED));
        let why = if killed {
            E_RUNTIME_SHUTDOWN
        } else {
            ECANCELED
        };
        self.finish(Some((
            io::Error::from_raw_os_error(why),
            SYS_READ | COPY_NO_FAULT,
        )));
    }
}

/// Sends one Unix datagram now if the socket takes it, else queues it for the task. Returns
/// (blocked, wake the task), or an error for the caller.
#[cfg(unix)]
pub fn unix_dgram_send(
    sock: &Sock,
    data: &[u8],
    path: Option<std::path::PathBuf>,
) -> io::Result<(bool, bool)> {
    let Kind::UnixDgram(u) = &sock.kind else {
        return Err(io::Error::from_raw_os_error(EINVAL));
    };
    u.try_with(|u| unix_dgram_send_on(sock, u, data, path))
}

#[cfg(unix)]
fn unix_dgram_send_on(
    sock: &Sock,
    u: &kyoto_rt::net::UnixDatagram,
    data: &[u8],
    path: Option<std::path::PathBuf>,
) -> io::Result<(bool, bool)> {
    let mut st = sock.lock();
    let was_empty = st.dout.is_empty();
    // Not while a retry timer runs: the queued datagrams go first.
    if was_empty && st.retry.is_none() {
        let r = match &path {
            Some(p) => unix_send_to(u, data, p),
            None => u.try_send(data),
        };
        match r {
            Ok(_) => return Ok((false, false)),
            Err(e) if is_would_block(&e) => {}
            Err(e) => return Err(e),
        }
    }
    st.dout.push_back(Dgram {
        data: data.to_vec(),
        addr: None,
        path,
    });
    let blocked = st.dout.len() >= DGRAM_HWM;
    if blocked {
        st.drain_wanted = true;
    }
    Ok((blocked, was_empty))
}

/// The first and the longest wait before a Unix datagram to a full receiver is tried again.
#[cfg(unix)]
const BACKOFF_MIN: Duration = Duration::from_millis(1);
#[cfg(unix)]
const BACKOFF_MAX: Duration = Duration::from_millis(50);

/// Sends a datagram to the socket at `path` (a Linux abstract name when it starts with a NUL,
/// which the std/mio path API refuses). Not through the readiness registration: a send to a path
/// never waits for writability (see [`poll_unix_dgram`]).
#[cfg(unix)]
fn unix_send_to(
    u: &kyoto_rt::net::UnixDatagram,
    data: &[u8],
    path: &std::path::Path,
) -> io::Result<usize> {
    let addr = unix_sock_addr(path)?;
    socket2::SockRef::from(u).send_to(data, &addr)
}

/// The socket address of a Unix path: `EINVAL` for one with a NUL past its first byte (the kernel
/// would cut it there), a Linux abstract name for one that starts with a NUL.
#[cfg(unix)]
pub fn unix_sock_addr(path: &std::path::Path) -> io::Result<socket2::SockAddr> {
    use std::os::unix::ffi::OsStrExt;
    let b = path.as_os_str().as_bytes();
    if b.len() > 1 && b[1..].contains(&0) {
        return Err(io::Error::from_raw_os_error(EINVAL));
    }
    socket2::SockAddr::unix(path)
}

#[cfg(unix)]
fn poll_unix_dgram(
    sock: &Arc<Sock>,
    u: &Arc<kyoto_rt::net::UnixDatagram>,
    cx: &mut Context<'_>,
) -> bool {
    {
        let mut st = sock.lock();
        let st = &mut *st;
        let waiting = match st.retry.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Pending) => true,
            Some(Poll::Ready(())) => {
                st.retry = None;
                false
            }
            None => false,
        };
        while let Some(d) = st.dout.front().filter(|_| !waiting) {
            let r = match &d.path {
                Some(p) => unix_send_to(u, &d.data, p),
                None => u.try_send(&d.data),
            };
            if !matches!(&r, Err(e) if is_would_block(e)) {
                st.dgram_backoff = Duration::ZERO;
            }
            match r {
                Ok(_) => {
                    st.dout.pop_front();
                }
                Err(e) if is_would_block(&e) && d.path.is_some() => {
                    // An unconnected socket is writable whenever its own buffer is, however full
                    // the receiver's queue: waiting for that would spin. Poll on a timer instead.
                    st.dgram_backoff = (st.dgram_backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    let mut t = Box::pin(kyoto_rt::time::sleep(st.dgram_backoff));
                    if t.as_mut().poll(cx).is_pending() {
                        st.retry = Some(t);
                        break;
                    }
                }
                Err(e) if is_would_block(&e) => {
                    let u2 = u.clone();
                    match poll_stored(
                        &mut st.wr,
                        || Box::pin(async move { u2.writable().await }),
                        cx,
                    ) {
                        Poll::Pending => break,
                        Poll::Ready(()) => continue,
                    }
                }
                Err(e) => {
                    st.dout.pop_front();
                    sock.shared
                        .q
                        .push(Ev::new(sock.h, K_ERROR, errno(&e), SYS_SEND), &[], &[]);
                }
            }
        }
        if st.dout.is_empty() && st.drain_wanted {
            st.drain_wanted = false;
            sock.push(Ev::new(sock.h, K_DRAIN, 0, 0));
        }
    }
    let mut budget = 64;
    while sock.may_read() {
        if budget == 0 {
            cx.waker().wake_by_ref();
            return false;
        }
        budget -= 1;
        let r = DGRAM_SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            if b.is_empty() {
                *b = vec![0u8; RECV_BATCH * DGRAM_SLOT];
            }
            let (n, addr) = u.try_recv_from(&mut b[..UNIX_DGRAM_MAX])?;
            let path = unix_path_bytes(&addr);
            sock.push_data(K_DGRAM, -2, path.len() as i32, &b[..n], &path);
            Ok::<(), io::Error>(())
        });
        match r {
            Ok(()) => {}
            Err(e) if is_would_block(&e) => {
                let u2 = u.clone();
                let mut st = sock.lock();
                match poll_stored(
                    &mut st.rd,
                    || Box::pin(async move { u2.readable().await }),
                    cx,
                ) {
                    Poll::Pending => break,
                    Poll::Ready(()) => {}
                }
            }
            Err(e) => {
                sock.shared
                    .q
                    .push(Ev::new(sock.h, K_ERROR, errno(&e), SYS_RECV), &[], &[]);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn the_bytes_of_a_run_of_segments_span_the_held_prefix_and_the_chunk() {
        let (pre, s) = (&b"\r"[..], &b"abc\n"[..]);
        assert_eq!(covered(pre, s, 0, 4), (&b"\r"[..], &b"abc"[..]));
        assert_eq!(covered(pre, s, 0, 1), (&b"\r"[..], &b""[..]));
        assert_eq!(covered(pre, s, 1, 3), (&b"ab"[..], &b""[..]));
        assert_eq!(covered(b"", s, 2, 4), (&b"c\n"[..], &b""[..]));
    }
}
