//! Framing: [`Decoder`]s cut a byte stream into frames, [`Encoder`]s turn frames into bytes;
//! [`Framed`](crate::io::Framed) runs them over a stream.
//!
//! Two codecs are provided, both with a size limit so a peer can never make the reader buffer
//! without bound:
//!
//! - [`LinesCodec`]: `\n`-terminated UTF-8 lines (`\r\n` accepted), at most `max_length` bytes each.
//! - [`LengthDelimitedCodec`]: a big-endian length header of 1, 2, 4 or 8 bytes, then the payload,
//!   at most `max_frame_length` bytes.
//!
//! After a frame is rejected (too long, invalid UTF-8), both codecs skip the offending bytes without
//! buffering them, so the next frame decodes; a caller that does not trust the peer any more simply
//! drops the stream.
mod length_delimited;
mod lines;

pub use length_delimited::LengthDelimitedCodec;
pub use lines::LinesCodec;

use std::fmt;
use std::io;
use std::ops::Deref;

/// Cuts frames out of the bytes read from a stream.
///
/// [`Framed`](crate::io::Framed) calls [`decode`](Decoder::decode) whenever it has new bytes, and
/// reads more while it returns `Ok(None)`; at end of stream it calls
/// [`decode_eof`](Decoder::decode_eof) until that returns `Ok(None)`.
pub trait Decoder {
    /// A decoded frame.
    type Item;

    /// Takes one frame from the front of `src`, or returns `Ok(None)` when `src` does not hold a
    /// whole frame yet (the decoder may consume bytes it has finished with, e.g. skipped ones).
    ///
    /// An error rejects the bytes at the front of `src`; it must consume them (or remember to skip
    /// them) so that calling `decode` again makes progress.
    fn decode(&mut self, src: &mut DecodeBuf) -> io::Result<Option<Self::Item>>;

    /// Like [`decode`](Decoder::decode), called at end of stream: the last call must return
    /// `Ok(None)` and should leave `src` empty.
    ///
    /// The default decodes complete frames, then reports leftover bytes as an `UnexpectedEof` error
    /// (discarding them), then returns `Ok(None)`.
    fn decode_eof(&mut self, src: &mut DecodeBuf) -> io::Result<Option<Self::Item>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                src.clear();
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended in the middle of a frame",
                ))
            }
        }
    }

    /// The most bytes this decoder ever needs buffered before [`decode`](Decoder::decode) returns a
    /// frame, consumes bytes or fails. [`Framed`](crate::io::Framed) never lets its read buffer grow
    /// past it. The default is unbounded (`usize::MAX`).
    fn max_buffered(&self) -> usize {
        usize::MAX
    }
}

/// Turns frames of type `Item` into bytes.
pub trait Encoder<Item> {
    /// Appends the encoding of `item` to `dst`. On error nothing should be appended (anything that
    /// was is removed by [`Framed`](crate::io::Framed)).
    fn encode(&mut self, item: Item, dst: &mut Vec<u8>) -> io::Result<()>;
}

/// The bytes a [`Decoder`] decodes from: a byte queue that is cheap to consume from the front.
///
/// It dereferences to the buffered bytes (`&[u8]`).
#[derive(Default)]
pub struct DecodeBuf {
    /// Always fully initialised; the buffered bytes are `data[start..end]` and `data[end..]` is room
    /// for the next read.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl DecodeBuf {
    /// An empty buffer.
    pub fn new() -> DecodeBuf {
        DecodeBuf::default()
    }

    /// How many bytes are buffered.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether no bytes are buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The buffered bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Discards the first `n` bytes (all of them if `n > len()`).
    pub fn advance(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Removes the first `n` bytes (all of them if `n > len()`) and returns them.
    pub fn split_to(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        let out = self.data[self.start..self.start + n].to_vec();
        self.advance(n);
        out
    }

    /// Discards every buffered byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let room = self.spare_mut(bytes.len(), usize::MAX);
        room.copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// How many bytes are allocated (buffered, consumed-but-not-yet-reclaimed and free).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Room for exactly `want` more bytes after the buffered ones, compacting first and growing as
    /// needed; growth is geometric but never past `limit` bytes in all (unless `len() + want`
    /// itself is larger). Follow with [`commit`](DecodeBuf::commit).
    pub(crate) fn spare_mut(&mut self, want: usize, limit: usize) -> &mut [u8] {
        if self.data.len() - self.end < want {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let need = self.end.saturating_add(want);
            if need > self.data.len() {
                if need > self.data.capacity() {
                    let target = self
                        .data
                        .capacity()
                        .saturating_mul(2)
                        .max(64)
                        .min(limit)
                        .max(need);
                    self.data.reserve_exact(target - self.data.len());
                }
                self.data.resize(need, 0);
            }
        }
        &mut self.data[self.end..self.end + want]
    }

    /// Marks `n` bytes of the room from [`spare_mut`](DecodeBuf::spare_mut) as buffered.
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }
}

impl Deref for DecodeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for DecodeBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeBuf")
            .field("len", &self.len())
            .field("allocated", &self.data.capacity())
            .finish()
    }
}

impl From<&[u8]> for DecodeBuf {
    fn from(bytes: &[u8]) -> DecodeBuf {
        let mut b = DecodeBuf::new();
        b.extend_from_slice(bytes);
        b
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::DecodeBuf;

    #[test]
    fn decode_buf_consumes_from_the_front_and_reuses_the_room() {
        let mut b = DecodeBuf::from(&b"hello world"[..]);
        assert_eq!(b.split_to(6), b"hello ");
        assert_eq!(&b[..], b"world");
        b.advance(100);
        assert!(b.is_empty());
        b.extend_from_slice(b"abc");
        assert_eq!(&b[..], b"abc");
        b.advance(1);
        // Compaction makes room without growing past what is needed.
        let room = b.spare_mut(10, 16);
        assert_eq!(room.len(), 10);
        room.copy_from_slice(b"0123456789");
        b.commit(10);
        assert_eq!(&b[..], b"bc0123456789");
        assert_eq!(b.split_to(usize::MAX), b"bc0123456789");
    }

    #[test]
    fn decode_buf_growth_stops_at_the_limit() {
        let mut b = DecodeBuf::new();
        for _ in 0..100 {
            let room = b.spare_mut(100, 1000);
            room.fill(1);
            b.commit(100);
            if b.len() >= 1000 {
                break;
            }
        }
        assert_eq!(b.len(), 1000);
        assert!(b.capacity() <= 1000, "allocated {}", b.capacity());
    }
}
