//! [`Lines`]: the lines of an [`AsyncBufRead`], from
//! [`AsyncBufReadExt::lines`](super::AsyncBufReadExt::lines).
use super::buf_read::{invalid_utf8, poll_read_until};
use futures_io::AsyncBufRead;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The lines of a buffered reader, without their `\n` or `\r\n` terminators.
///
/// A final line without a terminator is returned too. A line that is not valid UTF-8 is consumed
/// and reported as an `InvalidData` error; the next call continues with the following line.
///
/// Lines are not length-limited: a peer that never sends `\n` makes the partial line grow without
/// bound. For untrusted input prefer [`Framed`](crate::io::Framed) with a
/// [`LinesCodec`](crate::io::codec::LinesCodec), which has a maximum line length.
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    /// The partial line, kept across `Pending` and cancellation.
    buf: Vec<u8>,
    read: usize,
}

impl<R> Lines<R> {
    pub(super) fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::new(),
            read: 0,
        }
    }

    /// The reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The reader, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// The reader; a partial line read so far is lost.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    /// The next line, or `None` at end of stream.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no data is lost; the next call
    /// continues the same line.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        std::future::poll_fn(|cx| self.poll_next_line(cx)).await
    }

    /// Polls for the next line: `Ready(Ok(None))` at end of stream.
    pub fn poll_next_line(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<String>>> {
        let n = ready!(poll_read_until(
            Pin::new(&mut self.reader),
            cx,
            b'\n',
            &mut self.buf,
            &mut self.read,
        ))?;
        if n == 0 && self.buf.is_empty() {
            return Poll::Ready(Ok(None));
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        match String::from_utf8(line) {
            Ok(s) => Poll::Ready(Ok(Some(s))),
            Err(_) => Poll::Ready(Err(invalid_utf8())),
        }
    }
}
