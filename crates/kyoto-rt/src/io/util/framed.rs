//! [`Framed`], [`FramedRead`], [`FramedWrite`]: run a codec over a stream, so callers exchange
//! whole frames instead of bytes.
//!
//! The read side keeps a [`DecodeBuf`] and alternates "decode what is buffered" with "read more",
//! never reading more than the decoder's [`max_buffered`](Decoder::max_buffered) allows. The write
//! side encodes into a `Vec<u8>` and writes it out; `send` also flushes. All state lives in the
//! framed value, so dropping a `next`/`send` future loses nothing.
use super::codec::{DecodeBuf, Decoder, Encoder};
use super::DEFAULT_BUF_SIZE;
use futures_io::{AsyncRead, AsyncWrite};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// `feed` writes the buffered frames out before encoding another once this many bytes wait.
const BACKPRESSURE_BOUNDARY: usize = DEFAULT_BUF_SIZE;

/// The read half of the framing state.
#[derive(Debug, Default)]
struct ReadState {
    buf: DecodeBuf,
    /// The stream reported end of stream; only `decode_eof` runs from now on.
    eof: bool,
    /// `decode_eof` returned `None`: the frame stream is over.
    done: bool,
}

impl ReadState {
    fn poll_next<T, D>(
        &mut self,
        io: &mut T,
        codec: &mut D,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<D::Item>>>
    where
        T: AsyncRead + Unpin + ?Sized,
        D: Decoder + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.eof {
                return Poll::Ready(match codec.decode_eof(&mut self.buf) {
                    Ok(Some(frame)) => Some(Ok(frame)),
                    Ok(None) => {
                        self.done = true;
                        self.buf.clear();
                        None
                    }
                    Err(e) => Some(Err(e)),
                });
            }
            match codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            let limit = codec.max_buffered();
            let room = limit.saturating_sub(self.buf.len());
            if room == 0 {
                // The decoder broke its promise to make progress within `max_buffered` bytes; drop
                // the bytes rather than buffer without bound or loop forever.
                self.buf.clear();
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the decoder made no progress within its buffer limit",
                ))));
            }
            let want = room.min(DEFAULT_BUF_SIZE);
            let spare = self.buf.spare_mut(want, limit);
            match ready!(Pin::new(&mut *io).poll_read(cx, spare)) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.commit(n.min(want)),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// The write half of the framing state: encoded bytes, of which `buf[..pos]` are written.
#[derive(Debug, Default)]
struct WriteState {
    buf: Vec<u8>,
    pos: usize,
}

impl WriteState {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn encode<I, E: Encoder<I> + ?Sized>(&mut self, codec: &mut E, item: I) -> io::Result<()> {
        let before = self.buf.len();
        codec.encode(item, &mut self.buf).inspect_err(|_| {
            self.buf.truncate(before);
        })
    }

    /// Writes buffered bytes until at most `keep` remain unwritten.
    fn poll_write_out<T: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
        keep: usize,
    ) -> Poll<io::Result<()>> {
        while self.buf.len() - self.pos > keep {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the stream accepted no bytes of a frame",
                )));
            }
            self.pos = (self.pos + n).min(self.buf.len());
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= BACKPRESSURE_BOUNDARY {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush<T: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(io, cx, 0))?;
        Pin::new(io).poll_flush(cx)
    }

    fn poll_close<T: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(io, cx))?;
        Pin::new(io).poll_close(cx)
    }
}

/// What [`Framed::into_parts`] returns: the stream, the codec and the bytes still buffered.
#[derive(Debug)]
#[non_exhaustive]
pub struct FramedParts<T, C> {
    /// The stream.
    pub io: T,
    /// The codec, in its current state.
    pub codec: C,
    /// Bytes read from the stream but not yet decoded into a frame.
    pub read_buf: Vec<u8>,
    /// Encoded bytes not yet written to the stream.
    pub write_buf: Vec<u8>,
}

/// A stream with a codec: [`next`](Framed::next) returns decoded frames, [`send`](Framed::send)
/// encodes and writes one.
///
/// The read buffer never holds more than the codec's [`max_buffered`](Decoder::max_buffered)
/// bytes (for [`LinesCodec`](crate::io::codec::LinesCodec) `max_length + 2`, for
/// [`LengthDelimitedCodec`](crate::io::codec::LengthDelimitedCodec) `max_frame_length` plus the
/// header), whatever the peer sends.
///
/// To read and write from different tasks, split the stream first (e.g. `TcpStream::into_split`)
/// and use a [`FramedRead`] and a [`FramedWrite`].
///
/// ```
/// # kyoto_rt::Runtime::new().unwrap().block_on(async {
/// use kyoto_rt::io::{codec::LinesCodec, duplex, Framed};
/// let (a, b) = duplex(64);
/// let mut a = Framed::new(a, LinesCodec::new(100));
/// let mut b = Framed::new(b, LinesCodec::new(100));
/// a.send("hello").await?;
/// assert_eq!(b.next().await.transpose()?, Some("hello".to_string()));
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub struct Framed<T, C> {
    io: T,
    codec: C,
    read: ReadState,
    write: WriteState,
}

impl<T, C> Framed<T, C> {
    /// Frames `io` with `codec`.
    pub fn new(io: T, codec: C) -> Framed<T, C> {
        Framed {
            io,
            codec,
            read: ReadState::default(),
            write: WriteState::default(),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The stream, mutably. Reading or writing it directly bypasses the frame buffers.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The codec, mutably.
    pub fn codec_mut(&mut self) -> &mut C {
        &mut self.codec
    }

    /// Bytes read but not yet decoded.
    pub fn read_buffer(&self) -> &DecodeBuf {
        &self.read.buf
    }

    /// Encoded bytes not yet written.
    pub fn write_buffer(&self) -> &[u8] {
        self.write.pending()
    }

    /// The stream; buffered bytes in either direction are lost (see
    /// [`into_parts`](Framed::into_parts)).
    pub fn into_inner(self) -> T {
        self.io
    }

    /// The stream, the codec and the buffered bytes.
    pub fn into_parts(self) -> FramedParts<T, C> {
        FramedParts {
            io: self.io,
            codec: self.codec,
            read_buf: self.read.buf.to_vec(),
            write_buf: self.write.pending().to_vec(),
        }
    }
}

impl<T: AsyncRead + Unpin, C: Decoder> Framed<T, C> {
    /// The next frame; `None` once the stream ended and every buffered frame was returned.
    ///
    /// A decode error (such as a frame over the codec's limit) is returned as `Some(Err(..))` and
    /// the following call continues with the next frame, as far as the codec can resynchronise. An
    /// I/O error is returned as is. Cancel-safe: dropping the future loses no data.
    pub async fn next(&mut self) -> Option<io::Result<C::Item>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next frame (see [`next`](Framed::next)).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<C::Item>>> {
        self.read.poll_next(&mut self.io, &mut self.codec, cx)
    }
}

impl<T: AsyncWrite + Unpin, C> Framed<T, C> {
    /// Encodes `item`, then writes and flushes everything buffered.
    ///
    /// An encode error (such as a frame over the codec's limit) buffers nothing. If the future is
    /// dropped after encoding, the frame stays buffered and goes out with the next `send`/`flush`.
    pub async fn send<I>(&mut self, item: I) -> io::Result<()>
    where
        C: Encoder<I>,
    {
        self.feed(item).await?;
        self.flush().await
    }

    /// Encodes `item` into the write buffer without flushing; first writes buffered frames out if
    /// more than 8 KiB wait. Follow with [`flush`](Framed::flush).
    pub async fn feed<I>(&mut self, item: I) -> io::Result<()>
    where
        C: Encoder<I>,
    {
        std::future::poll_fn(|cx| {
            self.write
                .poll_write_out(&mut self.io, cx, BACKPRESSURE_BOUNDARY)
        })
        .await?;
        self.write.encode(&mut self.codec, item)
    }

    /// Writes every buffered frame and flushes the stream.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Flushes, then shuts the stream's write direction down.
    pub async fn close(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.write.poll_close(&mut self.io, cx)).await
    }

    /// Polls writing every buffered frame and flushing the stream.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_flush(&mut self.io, cx)
    }
}

/// The read side of framing alone: a reader and a [`Decoder`].
pub struct FramedRead<T, D> {
    io: T,
    decoder: D,
    state: ReadState,
}

impl<T, D> FramedRead<T, D> {
    /// Frames `io`'s input with `decoder`.
    pub fn new(io: T, decoder: D) -> FramedRead<T, D> {
        FramedRead {
            io,
            decoder,
            state: ReadState::default(),
        }
    }

    /// The reader.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The reader, mutably. Reading it directly bypasses the frame buffer.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The decoder.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// The decoder, mutably.
    pub fn decoder_mut(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// Bytes read but not yet decoded.
    pub fn read_buffer(&self) -> &DecodeBuf {
        &self.state.buf
    }

    /// The reader; buffered bytes are lost.
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncRead + Unpin, D: Decoder> FramedRead<T, D> {
    /// The next frame; `None` once the stream ended (see [`Framed::next`]).
    pub async fn next(&mut self) -> Option<io::Result<D::Item>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next frame.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<D::Item>>> {
        self.state.poll_next(&mut self.io, &mut self.decoder, cx)
    }
}

/// The write side of framing alone: a writer and an [`Encoder`].
pub struct FramedWrite<T, E> {
    io: T,
    encoder: E,
    state: WriteState,
}

impl<T, E> FramedWrite<T, E> {
    /// Frames output to `io` with `encoder`.
    pub fn new(io: T, encoder: E) -> FramedWrite<T, E> {
        FramedWrite {
            io,
            encoder,
            state: WriteState::default(),
        }
    }

    /// The writer.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The writer, mutably. Writing it directly bypasses the frame buffer.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The encoder.
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// The encoder, mutably.
    pub fn encoder_mut(&mut self) -> &mut E {
        &mut self.encoder
    }

    /// Encoded bytes not yet written.
    pub fn write_buffer(&self) -> &[u8] {
        self.state.pending()
    }

    /// The writer; unwritten bytes are lost.
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncWrite + Unpin, E> FramedWrite<T, E> {
    /// Encodes `item`, then writes and flushes everything buffered (see [`Framed::send`]).
    pub async fn send<I>(&mut self, item: I) -> io::Result<()>
    where
        E: Encoder<I>,
    {
        self.feed(item).await?;
        self.flush().await
    }

    /// Encodes `item` without flushing (see [`Framed::feed`]).
    pub async fn feed<I>(&mut self, item: I) -> io::Result<()>
    where
        E: Encoder<I>,
    {
        std::future::poll_fn(|cx| {
            self.state
                .poll_write_out(&mut self.io, cx, BACKPRESSURE_BOUNDARY)
        })
        .await?;
        self.state.encode(&mut self.encoder, item)
    }

    /// Writes every buffered frame and flushes the writer.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Flushes, then shuts the writer down.
    pub async fn close(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.state.poll_close(&mut self.io, cx)).await
    }

    /// Polls writing every buffered frame and flushing the writer.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.poll_flush(&mut self.io, cx)
    }
}

impl<T: fmt::Debug, C: fmt::Debug> fmt::Debug for Framed<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("io", &self.io)
            .field("codec", &self.codec)
            .field("read_buffered", &self.read.buf.len())
            .field("write_buffered", &self.write.pending().len())
            .finish()
    }
}

impl<T: fmt::Debug, D: fmt::Debug> fmt::Debug for FramedRead<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedRead")
            .field("io", &self.io)
            .field("decoder", &self.decoder)
            .field("read_buffered", &self.state.buf.len())
            .finish()
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for FramedWrite<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedWrite")
            .field("io", &self.io)
            .field("encoder", &self.encoder)
            .field("write_buffered", &self.state.pending().len())
            .finish()
    }
}
