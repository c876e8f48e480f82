//! [`AsyncReadExt`]: `read`, `read_vectored`, `read_exact`, `read_to_end` on any [`AsyncRead`].
use futures_io::AsyncRead;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Async read methods for every [`AsyncRead`] (import the trait to call them).
///
/// The futures are cancel-safe except `read_exact` and `read_to_end`: dropping those loses no data
/// already read into `buf`, but how much was read is not reported.
pub trait AsyncReadExt: AsyncRead {
    /// Reads some bytes into `buf`; `Ok(0)` means end of stream (or an empty `buf`).
    fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> Read<'a, Self>
    where
        Self: Unpin,
    {
        Read { reader: self, buf }
    }

    /// Reads into several buffers at once (`readv`).
    fn read_vectored<'a, 'b>(
        &'a mut self,
        bufs: &'a mut [IoSliceMut<'b>],
    ) -> ReadVectored<'a, 'b, Self>
    where
        Self: Unpin,
    {
        ReadVectored { reader: self, bufs }
    }

    /// Fills `buf` completely; an `UnexpectedEof` error if the stream ends first.
    fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> ReadExact<'a, Self>
    where
        Self: Unpin,
    {
        ReadExact {
            reader: self,
            buf,
            filled: 0,
        }
    }

    /// Appends everything up to end of stream to `buf`; returns the number of bytes appended.
    fn read_to_end<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> ReadToEnd<'a, Self>
    where
        Self: Unpin,
    {
        let start = buf.len();
        ReadToEnd {
            reader: self,
            buf,
            start,
            window: MIN_READ_TO_END_WINDOW,
        }
    }
}

impl<R: AsyncRead + ?Sized> AsyncReadExt for R {}

/// Future of [`AsyncReadExt::read`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Read<'a, R: ?Sized> {
    reader: &'a mut R,
    buf: &'a mut [u8],
}

impl<R: AsyncRead + Unpin + ?Sized> Future for Read<'_, R> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Pin::new(&mut *this.reader).poll_read(cx, this.buf)
    }
}

/// Future of [`AsyncReadExt::read_vectored`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadVectored<'a, 'b, R: ?Sized> {
    reader: &'a mut R,
    bufs: &'a mut [IoSliceMut<'b>],
}

impl<R: AsyncRead + Unpin + ?Sized> Future for ReadVectored<'_, '_, R> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Pin::new(&mut *this.reader).poll_read_vectored(cx, this.bufs)
    }
}

/// Future of [`AsyncReadExt::read_exact`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadExact<'a, R: ?Sized> {
    reader: &'a mut R,
    buf: &'a mut [u8],
    filled: usize,
}

impl<R: AsyncRead + Unpin + ?Sized> Future for ReadExact<'_, R> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.filled < this.buf.len() {
            let n =
                ready!(Pin::new(&mut *this.reader).poll_read(cx, &mut this.buf[this.filled..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "early eof: the stream ended before the buffer was filled",
                )));
            }
            this.filled += n;
        }
        Poll::Ready(Ok(()))
    }
}

const MIN_READ_TO_END_WINDOW: usize = 512;
const MAX_READ_TO_END_WINDOW: usize = 1 << 16;

/// Future of [`AsyncReadExt::read_to_end`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadToEnd<'a, R: ?Sized> {
    reader: &'a mut R,
    buf: &'a mut Vec<u8>,
    start: usize,
    /// Bytes offered to the reader per attempt: starts small and doubles whenever a read fills it,
    /// so a stream of small reads does not pay for zeroing a large window each time.
    window: usize,
}

impl<R: AsyncRead + Unpin + ?Sized> Future for ReadToEnd<'_, R> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.buf.capacity() - this.buf.len() < 32 {
                // Grow geometrically (at least 32 bytes, at most 1 MiB at a time).
                let extra = this.buf.len().clamp(32, 1 << 20);
                this.buf.reserve(extra);
            }
            let old_len = this.buf.len();
            // Zero (and offer the reader) at most `window` bytes (≤ 64 KiB) per attempt, so neither
            // a reader that keeps returning `Pending` nor one that returns a few bytes at a time
            // costs a memset of the whole spare capacity on each poll.
            let end = this.buf.capacity().min(old_len + this.window);
            this.buf.resize(end, 0);
            let res = Pin::new(&mut *this.reader).poll_read(cx, &mut this.buf[old_len..]);
            match res {
                Poll::Ready(Ok(0)) => {
                    this.buf.truncate(old_len);
                    return Poll::Ready(Ok(old_len - this.start));
                }
                Poll::Ready(Ok(n)) => {
                    if n >= end - old_len {
                        this.window = (this.window * 2).min(MAX_READ_TO_END_WINDOW);
                    }
                    this.buf.truncate(old_len + n.min(end - old_len));
                }
                Poll::Ready(Err(e)) => {
                    this.buf.truncate(old_len);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.buf.truncate(old_len);
                    return Poll::Pending;
                }
            }
        }
    }
}
