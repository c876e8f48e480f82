//! [`copy_bidirectional`]: pump two streams into each other.
use super::copy::CopyBuffer;
use super::DEFAULT_BUF_SIZE;
use futures_io::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

enum Transfer {
    Running(CopyBuffer),
    ShuttingDown(u64),
    Done(u64),
}

fn transfer_one_direction<R, W>(
    cx: &mut Context<'_>,
    state: &mut Transfer,
    mut reader: Pin<&mut R>,
    mut writer: Pin<&mut W>,
) -> Poll<io::Result<u64>>
where
    R: AsyncRead + ?Sized,
    W: AsyncWrite + ?Sized,
{
    loop {
        match state {
            Transfer::Running(buf) => {
                let amt = ready!(buf.poll_copy(cx, reader.as_mut(), writer.as_mut()))?;
                *state = Transfer::ShuttingDown(amt);
            }
            Transfer::ShuttingDown(amt) => {
                ready!(writer.as_mut().poll_close(cx))?;
                *state = Transfer::Done(*amt);
            }
            Transfer::Done(amt) => return Poll::Ready(Ok(*amt)),
        }
    }
}

/// Copies `a` into `b` and `b` into `a` at the same time, until both reach end of stream; returns
/// `(bytes a→b, bytes b→a)`.
///
/// When one side's reader reaches end of stream, the other side's writer is shut down (for a socket,
/// a FIN), and the other direction keeps going. Any error ends the whole call at once. Each
/// direction uses an 8 KiB buffer.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    copy_bidirectional_with_sizes(a, b, DEFAULT_BUF_SIZE, DEFAULT_BUF_SIZE).await
}

/// [`copy_bidirectional`] with chosen buffer sizes for the a→b and b→a directions.
pub async fn copy_bidirectional_with_sizes<A, B>(
    a: &mut A,
    b: &mut B,
    a_to_b_size: usize,
    b_to_a_size: usize,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut a_to_b = Transfer::Running(CopyBuffer::new(a_to_b_size));
    let mut b_to_a = Transfer::Running(CopyBuffer::new(b_to_a_size));
    std::future::poll_fn(|cx| {
        let forward = transfer_one_direction(cx, &mut a_to_b, Pin::new(&mut *a), Pin::new(&mut *b));
        let backward =
            transfer_one_direction(cx, &mut b_to_a, Pin::new(&mut *b), Pin::new(&mut *a));
        match (forward, backward) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(forward)), Poll::Ready(Ok(backward))) => {
                Poll::Ready(Ok((forward, backward)))
            }
            _ => Poll::Pending,
        }
    })
    .await
}
