//! [`duplex`]: an in-memory, bidirectional byte pipe with a bounded buffer per direction.
//!
//! Each direction is one [`Pipe`] behind a lock: a ring of at most `max_buf` bytes, the waker of a
//! reader waiting for bytes and of a writer waiting for room, and two flags, "the writer is gone" (the
//! reader drains, then reads end of stream) and "the reader is gone" (the writer gets `BrokenPipe`).
//! A [`DuplexStream`] is the read end of one pipe and the write end of the other; dropping it closes
//! both ends it holds. Wakers are woken, and replaced wakers dropped, after the lock is released.
use crate::loom::sync::{Arc, Mutex, MutexGuard};
use crate::runtime::coop;
use futures_io::{AsyncRead, AsyncWrite};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

/// Creates a connected pair of in-memory streams: bytes written to one are read from the other.
///
/// Each direction buffers at most `max_buf_size` bytes (a `max_buf_size` of 0 is treated as 1). A
/// write accepts at most the free space (a short write) and is `Pending` while the buffer is full.
///
/// - [`shutdown`](crate::io::AsyncWriteExt::shutdown) (`poll_close`) on one stream makes the other
///   read the buffered bytes and then end of stream (`Ok(0)`); a later write on the shut-down stream
///   fails with `BrokenPipe`.
/// - Dropping one stream does both: the survivor drains what was written to it, then reads end of
///   stream, and its writes fail with `BrokenPipe`.
///
/// Reads and writes spend the task's cooperative budget like socket operations, so a task copying
/// through a duplex in a loop still yields to others.
///
/// ```
/// # kyoto_rt::Runtime::new().unwrap().block_on(async {
/// use kyoto_rt::io::{duplex, AsyncReadExt, AsyncWriteExt};
/// let (mut a, mut b) = duplex(64);
/// a.write_all(b"ping").await?;
/// let mut buf = [0u8; 4];
/// b.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"ping");
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub fn duplex(max_buf_size: usize) -> (DuplexStream, DuplexStream) {
    let one = Arc::new(Mutex::new(Pipe::new(max_buf_size)));
    let two = Arc::new(Mutex::new(Pipe::new(max_buf_size)));
    let a = DuplexStream {
        read: DuplexReadHalf { pipe: one.clone() },
        write: DuplexWriteHalf { pipe: two.clone() },
    };
    let b = DuplexStream {
        read: DuplexReadHalf { pipe: two },
        write: DuplexWriteHalf { pipe: one },
    };
    (a, b)
}

/// One end of an in-memory pipe pair, from [`duplex`]. Implements
/// [`AsyncRead`](crate::io::AsyncRead) and [`AsyncWrite`](crate::io::AsyncWrite).
pub struct DuplexStream {
    read: DuplexReadHalf,
    write: DuplexWriteHalf,
}

/// The read half of a [`DuplexStream`], from [`DuplexStream::into_split`]. Dropping it makes the
/// peer's writes fail with `BrokenPipe` and discards the bytes still buffered for it.
pub struct DuplexReadHalf {
    pipe: Arc<Mutex<Pipe>>,
}

/// The write half of a [`DuplexStream`], from [`DuplexStream::into_split`]. Dropping it (or shutting
/// it down) makes the peer read end of stream once the buffered bytes are drained.
pub struct DuplexWriteHalf {
    pipe: Arc<Mutex<Pipe>>,
}

/// One direction of a duplex pair.
struct Pipe {
    buf: VecDeque<u8>,
    max_buf: usize,
    /// The writing end was shut down or dropped: reads drain `buf`, then return end of stream.
    write_closed: bool,
    /// The reading end was dropped: writes fail with `BrokenPipe`.
    read_closed: bool,
    /// A reader waiting for bytes (or for end of stream).
    read_waker: Option<Waker>,
    /// A writer waiting for room (or for the reader to go away).
    write_waker: Option<Waker>,
}

fn lock(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    // A panic while holding the lock cannot leave the pipe inconsistent (every update is a single
    // buffer operation plus flags), so a poisoned lock is still usable.
    pipe.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stores `cx`'s waker in `slot` unless it would wake the same task; returns the replaced waker, to
/// be dropped after the lock is released.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) -> Option<Waker> {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => None,
        _ => slot.replace(cx.waker().clone()),
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other end of the duplex stream was closed",
    )
}

impl Pipe {
    fn new(max_buf: usize) -> Pipe {
        Pipe {
            buf: VecDeque::new(),
            max_buf: max_buf.max(1),
            write_closed: false,
            read_closed: false,
            read_waker: None,
            write_waker: None,
        }
    }

    /// Moves up to `bufs`' total length of buffered bytes out; `None` when nothing is buffered.
    fn take_into(&mut self, bufs: &mut [IoSliceMut<'_>]) -> Option<usize> {
        if self.buf.is_empty() {
            return None;
        }
        let mut n = 0;
        {
            let (front, back) = self.buf.as_slices();
            let mut src = [front, back];
            let mut si = 0;
            for dst in bufs.iter_mut() {
                let mut filled = 0;
                while filled < dst.len() && si < src.len() {
                    let k = (dst.len() - filled).min(src[si].len());
                    dst[filled..filled + k].copy_from_slice(&src[si][..k]);
                    src[si] = &src[si][k..];
                    filled += k;
                    if src[si].is_empty() {
                        si += 1;
                    }
                }
                n += filled;
                if si == src.len() {
                    break;
                }
            }
        }
        self.buf.drain(..n);
        Some(n)
    }

    /// Appends as much of `bufs` as fits; returns how many bytes that was.
    fn put(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        let mut written = 0;
        for b in bufs {
            let free = self.max_buf.saturating_sub(self.buf.len());
            if free == 0 {
                break;
            }
            let n = free.min(b.len());
            self.buf.extend(&b[..n]);
            written += n;
        }
        written
    }
}

impl DuplexStream {
    /// Splits the stream into a read half and a write half that can be used from different tasks.
    pub fn into_split(self) -> (DuplexReadHalf, DuplexWriteHalf) {
        (self.read, self.write)
    }

    /// Joins halves from [`into_split`](DuplexStream::into_split) again. Halves of different streams
    /// also join (the result reads from one pipe and writes to another).
    pub fn from_split(read: DuplexReadHalf, write: DuplexWriteHalf) -> DuplexStream {
        DuplexStream { read, write }
    }
}

impl DuplexReadHalf {
    fn poll_read_vectored_inner(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let budget = ready!(coop::poll_proceed(cx));
        let mut pipe = lock(&self.pipe);
        if let Some(n) = pipe.take_into(bufs) {
            let waker = pipe.write_waker.take();
            drop(pipe);
            budget.made_progress();
            if let Some(w) = waker {
                w.wake();
            }
            return Poll::Ready(Ok(n));
        }
        if pipe.write_closed {
            budget.made_progress();
            return Poll::Ready(Ok(0));
        }
        let replaced = register(&mut pipe.read_waker, cx);
        drop(pipe);
        drop(replaced);
        Poll::Pending
    }
}

impl DuplexWriteHalf {
    fn poll_write_vectored_inner(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let budget = ready!(coop::poll_proceed(cx));
        let mut pipe = lock(&self.pipe);
        if pipe.read_closed || pipe.write_closed {
            budget.made_progress();
            return Poll::Ready(Err(broken_pipe()));
        }
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let n = pipe.put(bufs);
        if n == 0 {
            let replaced = register(&mut pipe.write_waker, cx);
            drop(pipe);
            drop(replaced);
            return Poll::Pending;
        }
        let waker = pipe.read_waker.take();
        drop(pipe);
        budget.made_progress();
        if let Some(w) = waker {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    /// Marks the write end closed: the reader drains what is buffered, then reads end of stream.
    fn close_write(&self) {
        let mut pipe = lock(&self.pipe);
        pipe.write_closed = true;
        let waker = pipe.read_waker.take();
        drop(pipe);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for DuplexReadHalf {
    fn drop(&mut self) {
        let mut pipe = lock(&self.pipe);
        pipe.read_closed = true;
        // Nobody can read these bytes any more.
        pipe.buf = VecDeque::new();
        let waker = pipe.write_waker.take();
        let stale = pipe.read_waker.take();
        drop(pipe);
        drop(stale);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for DuplexWriteHalf {
    fn drop(&mut self) {
        self.close_write();
        let stale = lock(&self.pipe).write_waker.take();
        drop(stale);
    }
}

impl AsyncRead for DuplexReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_vectored_inner(cx, &mut [IoSliceMut::new(buf)])
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_vectored_inner(cx, bufs)
    }
}

impl AsyncWrite for DuplexWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_inner(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_inner(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write direction down; idempotent.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_write();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for DuplexStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read
            .poll_read_vectored_inner(cx, &mut [IoSliceMut::new(buf)])
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.read.poll_read_vectored_inner(cx, bufs)
    }
}

impl AsyncWrite for DuplexStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write
            .poll_write_vectored_inner(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write.poll_write_vectored_inner(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write direction down (the peer reads end of stream); idempotent.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.close_write();
        Poll::Ready(Ok(()))
    }
}

fn fmt_pipe(f: &mut fmt::DebugStruct<'_, '_>, name: &str, pipe: &Mutex<Pipe>) {
    let p = lock(pipe);
    f.field(
        name,
        &format_args!(
            "{{ buffered: {}, max: {}, write_closed: {}, read_closed: {} }}",
            p.buf.len(),
            p.max_buf,
            p.write_closed,
            p.read_closed
        ),
    );
}

impl fmt::Debug for DuplexStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DuplexStream");
        fmt_pipe(&mut d, "read", &self.read.pipe);
        fmt_pipe(&mut d, "write", &self.write.pipe);
        d.finish()
    }
}

impl fmt::Debug for DuplexReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DuplexReadHalf");
        fmt_pipe(&mut d, "pipe", &self.pipe);
        d.finish()
    }
}

impl fmt::Debug for DuplexWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DuplexWriteHalf");
        fmt_pipe(&mut d, "pipe", &self.pipe);
        d.finish()
    }
}
