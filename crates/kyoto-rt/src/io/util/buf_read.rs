//! [`AsyncBufReadExt`]: `read_until`, `read_line` and `lines` on any [`AsyncBufRead`].
use super::lines::Lines;
use futures_io::AsyncBufRead;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Async methods for every [`AsyncBufRead`], such as a [`BufReader`](crate::io::BufReader) (import
/// the trait to call them).
pub trait AsyncBufReadExt: AsyncBufRead {
    /// Appends bytes to `buf` up to and including the first `byte`, or up to end of stream; returns
    /// how many bytes were appended (0 at end of stream).
    ///
    /// If the future is dropped early, the bytes read so far stay in `buf`.
    fn read_until<'a>(&'a mut self, byte: u8, buf: &'a mut Vec<u8>) -> ReadUntil<'a, Self>
    where
        Self: Unpin,
    {
        ReadUntil {
            reader: self,
            byte,
            buf,
            read: 0,
        }
    }

    /// Appends one line, including its `\n` (if the stream did not end first), to `buf`; returns how
    /// many bytes were appended (0 at end of stream).
    ///
    /// If the line is not valid UTF-8, returns an `InvalidData` error and leaves `buf` unchanged (the
    /// line's bytes are consumed). On an I/O error, the bytes read so far are appended if they are
    /// valid UTF-8. Not cancel-safe: if the future is dropped early, the bytes it read are lost and
    /// `buf` is unchanged; [`Lines`] keeps a partial line across cancellation.
    fn read_line<'a>(&'a mut self, buf: &'a mut String) -> ReadLine<'a, Self>
    where
        Self: Unpin,
    {
        ReadLine {
            reader: self,
            out: buf,
            bytes: Vec::new(),
            read: 0,
        }
    }

    /// Turns the reader into a stream of lines ([`Lines::next_line`]), without their `\n` or
    /// `\r\n`.
    fn lines(self) -> Lines<Self>
    where
        Self: Sized,
    {
        Lines::new(self)
    }
}

impl<R: AsyncBufRead + ?Sized> AsyncBufReadExt for R {}

/// Moves bytes from `reader` to `buf` until `delim` (included) or end of stream. `read` counts the
/// bytes moved across `Pending` returns; it is reset and returned when the call completes.
pub(super) fn poll_read_until<R: AsyncBufRead + ?Sized>(
    mut reader: Pin<&mut R>,
    cx: &mut Context<'_>,
    delim: u8,
    buf: &mut Vec<u8>,
    read: &mut usize,
) -> Poll<io::Result<usize>> {
    loop {
        let (done, used) = {
            let available = match reader.as_mut().poll_fill_buf(cx) {
                Poll::Ready(Ok(a)) => a,
                Poll::Ready(Err(e)) => {
                    *read = 0;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            };
            match available.iter().position(|&b| b == delim) {
                Some(i) => {
                    buf.extend_from_slice(&available[..=i]);
                    (true, i + 1)
                }
                None => {
                    buf.extend_from_slice(available);
                    (false, available.len())
                }
            }
        };
        reader.as_mut().consume(used);
        *read += used;
        if done || used == 0 {
            return Poll::Ready(Ok(std::mem::take(read)));
        }
    }
}

/// Future of [`AsyncBufReadExt::read_until`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadUntil<'a, R: ?Sized> {
    reader: &'a mut R,
    byte: u8,
    buf: &'a mut Vec<u8>,
    read: usize,
}

impl<R: AsyncBufRead + Unpin + ?Sized> Future for ReadUntil<'_, R> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        poll_read_until(
            Pin::new(&mut *this.reader),
            cx,
            this.byte,
            this.buf,
            &mut this.read,
        )
    }
}

/// Future of [`AsyncBufReadExt::read_line`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ReadLine<'a, R: ?Sized> {
    reader: &'a mut R,
    out: &'a mut String,
    /// The line so far; appended to `out` only once complete and valid UTF-8.
    bytes: Vec<u8>,
    read: usize,
}

pub(super) fn invalid_utf8() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "stream did not contain valid UTF-8",
    )
}

impl<R: AsyncBufRead + Unpin + ?Sized> Future for ReadLine<'_, R> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = ready!(poll_read_until(
            Pin::new(&mut *this.reader),
            cx,
            b'\n',
            &mut this.bytes,
            &mut this.read,
        ));
        let bytes = std::mem::take(&mut this.bytes);
        match res {
            Ok(n) => match String::from_utf8(bytes) {
                Ok(s) => {
                    this.out.push_str(&s);
                    Poll::Ready(Ok(n))
                }
                Err(_) => Poll::Ready(Err(invalid_utf8())),
            },
            Err(e) => {
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    this.out.push_str(s);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}
