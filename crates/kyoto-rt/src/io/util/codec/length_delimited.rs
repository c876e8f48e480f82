//! [`LengthDelimitedCodec`]: frames prefixed by a big-endian length header.
use super::{DecodeBuf, Decoder, Encoder};
use std::io;

/// Frames made of a big-endian length header of 1, 2, 4 or 8 bytes followed by that many payload
/// bytes (the length does not count the header).
///
/// Decoding yields each payload as a `Vec<u8>`. A header announcing more than `max_frame_length`
/// bytes is an `InvalidData` error as soon as the header is read, before any payload is buffered;
/// the codec then skips that many bytes as they arrive (never holding them) and decodes the frame
/// after it. A stream that ends inside a frame is an `UnexpectedEof` error.
///
/// Encoding refuses (with `InvalidInput`) a payload longer than `max_frame_length`.
///
/// `max_frame_length` is capped at what the header can express (255 for a 1-byte header, 65535 for 2
/// bytes, 2³² − 1 for 4 bytes).
#[derive(Debug, Clone)]
pub struct LengthDelimitedCodec {
    field_bytes: usize,
    max_frame_length: usize,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a header.
    Head,
    /// Waiting for a payload of this many bytes.
    Data(usize),
    /// Skipping this many bytes of a rejected frame.
    Skip(u64),
}

impl LengthDelimitedCodec {
    /// The frame size limit of [`LengthDelimitedCodec::default`]: 8 MiB.
    pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

    /// A codec with a `length_field_bytes`-byte header (1, 2, 4 or 8) and frames of at most
    /// `max_frame_length` payload bytes. Any other header size is an `InvalidInput` error.
    pub fn new(length_field_bytes: usize, max_frame_length: usize) -> io::Result<Self> {
        if !matches!(length_field_bytes, 1 | 2 | 4 | 8) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the length field must be 1, 2, 4 or 8 bytes, not {length_field_bytes}"),
            ));
        }
        let field_max = if length_field_bytes == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * length_field_bytes)) - 1
        };
        let max = (max_frame_length as u64).min(field_max);
        Ok(LengthDelimitedCodec {
            field_bytes: length_field_bytes,
            // `max` is at most `max_frame_length`, so it fits.
            max_frame_length: usize::try_from(max).unwrap_or(max_frame_length),
            state: State::Head,
        })
    }

    /// The size of the length header in bytes.
    pub fn length_field_bytes(&self) -> usize {
        self.field_bytes
    }

    /// The largest payload accepted, after capping to what the header can express.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    fn too_big(&self, len: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame length {len} exceeds the limit of {} bytes",
                self.max_frame_length
            ),
        )
    }
}

impl Default for LengthDelimitedCodec {
    /// A 4-byte header and frames of at most [`LengthDelimitedCodec::DEFAULT_MAX_FRAME_LENGTH`].
    fn default() -> LengthDelimitedCodec {
        LengthDelimitedCodec {
            field_bytes: 4,
            max_frame_length: LengthDelimitedCodec::DEFAULT_MAX_FRAME_LENGTH,
            state: State::Head,
        }
    }
}

impl Decoder for LengthDelimitedCodec {
    type Item = Vec<u8>;

    fn decode(&mut self, src: &mut DecodeBuf) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.state {
                State::Head => {
                    if src.len() < self.field_bytes {
                        return Ok(None);
                    }
                    let len = src[..self.field_bytes]
                        .iter()
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                    src.advance(self.field_bytes);
                    match usize::try_from(len) {
                        Ok(n) if n <= self.max_frame_length => self.state = State::Data(n),
                        _ => {
                            self.state = State::Skip(len);
                            return Err(self.too_big(len));
                        }
                    }
                }
                State::Data(n) => {
                    if src.len() < n {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    return Ok(Some(src.split_to(n)));
                }
                State::Skip(remaining) => {
                    let n = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                    src.advance(n);
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Skip(remaining);
                        return Ok(None);
                    }
                    self.state = State::Head;
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut DecodeBuf) -> io::Result<Option<Vec<u8>>> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let state = std::mem::replace(&mut self.state, State::Head);
        match state {
            State::Head if src.is_empty() => Ok(None),
            // The rejected frame was already reported.
            State::Skip(_) => {
                src.clear();
                Ok(None)
            }
            _ => {
                src.clear();
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended in the middle of a frame",
                ))
            }
        }
    }

    fn max_buffered(&self) -> usize {
        self.max_frame_length.saturating_add(self.field_bytes)
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for LengthDelimitedCodec {
    fn encode(&mut self, frame: T, dst: &mut Vec<u8>) -> io::Result<()> {
        let payload = frame.as_ref();
        if payload.len() > self.max_frame_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame length {} exceeds the limit of {} bytes",
                    payload.len(),
                    self.max_frame_length
                ),
            ));
        }
        let header = (payload.len() as u64).to_be_bytes();
        dst.reserve(self.field_bytes + payload.len());
        dst.extend_from_slice(&header[8 - self.field_bytes..]);
        dst.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn length_delimited_rejects_other_header_sizes() {
        for n in [0, 3, 5, 16] {
            let err = LengthDelimitedCodec::new(n, 10).expect_err("bad size");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn length_delimited_caps_the_limit_to_the_header() {
        let c = LengthDelimitedCodec::new(1, 1000).expect("codec");
        assert_eq!(c.max_frame_length(), 255);
        let c = LengthDelimitedCodec::new(2, usize::MAX).expect("codec");
        assert_eq!(c.max_frame_length(), 65535);
        assert_eq!(c.max_buffered(), 65537);
    }

    #[test]
    fn length_delimited_skips_an_oversize_frame_and_decodes_the_next() {
        let mut c = LengthDelimitedCodec::new(2, 4).expect("codec");
        let mut b = DecodeBuf::from(&[0u8, 6, 1, 2, 3][..]);
        let err = c.decode(&mut b).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(c.decode(&mut b).expect("skip"), None);
        assert!(b.is_empty());
        b.extend_from_slice(&[4, 5, 6, 0, 2, b'o', b'k']);
        assert_eq!(c.decode(&mut b).expect("next"), Some(b"ok".to_vec()));
    }

    #[test]
    fn length_delimited_reports_a_truncated_frame_at_eof() {
        let mut c = LengthDelimitedCodec::new(4, 64).expect("codec");
        let mut b = DecodeBuf::from(&[0u8, 0, 0, 3, b'a'][..]);
        let err = c.decode_eof(&mut b).expect_err("truncated");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(c.decode_eof(&mut b).expect("then done"), None);
    }
}
