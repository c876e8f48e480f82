//! [`LinesCodec`]: `\n`-terminated UTF-8 lines with a maximum length.
use super::{DecodeBuf, Decoder, Encoder};
use std::io;

/// Lines of UTF-8 text terminated by `\n` or `\r\n`, at most `max_length` bytes each (not counting
/// the terminator).
///
/// Decoding yields `String`s without the terminator. A longer line is an `InvalidData` error
/// ("line length limit exceeded") as soon as `max_length + 2` bytes arrived without a `\n`; the
/// codec then discards bytes up to the next `\n` without buffering them, and the line after it
/// decodes normally. A line that is not valid UTF-8 is consumed and reported as `InvalidData`. At
/// end of stream, a last line without a terminator is returned too.
///
/// Encoding appends `\n` to each line; a line longer than `max_length` is refused with
/// `InvalidInput` (the peer's codec would reject it). A `\n` inside an encoded line is sent as is
/// and therefore splits it into two lines for the reader.
#[derive(Debug, Clone)]
pub struct LinesCodec {
    max_length: usize,
    /// Where to resume looking for `\n`: the bytes before it were already searched.
    next_index: usize,
    /// Skipping the rest of a line that was too long.
    is_discarding: bool,
}

fn too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "line length limit exceeded")
}

fn to_string(line: Vec<u8>) -> io::Result<Option<String>> {
    match String::from_utf8(line) {
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line is not valid UTF-8",
        )),
    }
}

impl LinesCodec {
    /// The line length limit of [`LinesCodec::default`]: 64 KiB.
    pub const DEFAULT_MAX_LENGTH: usize = 64 * 1024;

    /// A codec for lines of at most `max_length` bytes (without the terminator).
    pub fn new(max_length: usize) -> LinesCodec {
        LinesCodec {
            max_length,
            next_index: 0,
            is_discarding: false,
        }
    }

    /// The maximum line length in bytes, not counting the terminator.
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

impl Default for LinesCodec {
    /// Lines of at most [`LinesCodec::DEFAULT_MAX_LENGTH`] bytes.
    fn default() -> LinesCodec {
        LinesCodec::new(LinesCodec::DEFAULT_MAX_LENGTH)
    }
}

impl Decoder for LinesCodec {
    type Item = String;

    fn decode(&mut self, src: &mut DecodeBuf) -> io::Result<Option<String>> {
        loop {
            if self.is_discarding {
                match src.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        src.advance(i + 1);
                        self.is_discarding = false;
                        self.next_index = 0;
                        continue;
                    }
                    None => {
                        src.clear();
                        return Ok(None);
                    }
                }
            }
            // A line of `max_length` bytes plus `\r\n` fits in this window; nothing longer does.
            let window_end = src.len().min(self.max_length.saturating_add(2));
            let start = self.next_index.min(window_end);
            match src[start..window_end].iter().position(|&b| b == b'\n') {
                Some(offset) => {
                    let newline = start + offset;
                    self.next_index = 0;
                    let len = if newline > 0 && src[newline - 1] == b'\r' {
                        newline - 1
                    } else {
                        newline
                    };
                    if len > self.max_length {
                        src.advance(newline + 1);
                        return Err(too_long());
                    }
                    let mut line = src.split_to(newline + 1);
                    line.truncate(len);
                    return to_string(line);
                }
                // `max_length` bytes and a `\r` could still be followed by `\n`; one byte more
                // without `\n` cannot be a valid line.
                None if src.len() > self.max_length.saturating_add(1) => {
                    src.advance(window_end);
                    self.next_index = 0;
                    self.is_discarding = true;
                    return Err(too_long());
                }
                None => {
                    self.next_index = window_end;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut DecodeBuf) -> io::Result<Option<String>> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        self.next_index = 0;
        if self.is_discarding {
            self.is_discarding = false;
            src.clear();
            return Ok(None);
        }
        if src.is_empty() {
            return Ok(None);
        }
        let mut line = src.split_to(src.len());
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max_length {
            return Err(too_long());
        }
        to_string(line)
    }

    fn max_buffered(&self) -> usize {
        self.max_length.saturating_add(2)
    }
}

impl<T: AsRef<str>> Encoder<T> for LinesCodec {
    fn encode(&mut self, line: T, dst: &mut Vec<u8>) -> io::Result<()> {
        let line = line.as_ref();
        if line.len() > self.max_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "line length limit exceeded",
            ));
        }
        dst.reserve(line.len() + 1);
        dst.extend_from_slice(line.as_bytes());
        dst.push(b'\n');
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LinesCodec, buf: &mut DecodeBuf) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        loop {
            match codec.decode(buf) {
                Ok(Some(l)) => out.push(Ok(l)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[test]
    fn lines_codec_strips_terminators_and_waits_for_partial_lines() {
        let mut c = LinesCodec::new(16);
        let mut b = DecodeBuf::from(&b"one\r\ntwo\n\nthr"[..]);
        let got = decode_all(&mut c, &mut b);
        assert_eq!(
            got,
            vec![Ok("one".into()), Ok("two".into()), Ok(String::new())]
        );
        b.extend_from_slice(b"ee\n");
        assert_eq!(c.decode(&mut b).expect("decode"), Some("three".into()));
        assert!(b.is_empty());
    }

    #[test]
    fn lines_codec_accepts_exactly_max_length_and_rejects_one_more() {
        let mut c = LinesCodec::new(4);
        let mut b = DecodeBuf::from(&b"abcd\r\nabcd\nabcde\nok\n"[..]);
        let got = decode_all(&mut c, &mut b);
        assert_eq!(
            got,
            vec![
                Ok("abcd".into()),
                Ok("abcd".into()),
                Err("line length limit exceeded".into()),
                Ok("ok".into())
            ]
        );
    }

    #[test]
    fn lines_codec_discards_a_long_line_arriving_in_pieces() {
        let mut c = LinesCodec::new(4);
        let mut b = DecodeBuf::new();
        let mut errors = 0;
        let mut lines = Vec::new();
        for chunk in [&b"abc"[..], b"def", b"ghi", b"jkl", b"m\nne", b"xt\n"] {
            b.extend_from_slice(chunk);
            for r in decode_all(&mut c, &mut b) {
                match r {
                    Ok(l) => lines.push(l),
                    Err(_) => errors += 1,
                }
            }
            assert!(b.len() <= c.max_buffered(), "buffered {}", b.len());
        }
        assert_eq!(errors, 1);
        assert_eq!(lines, vec!["next".to_string()]);
    }

    #[test]
    fn lines_codec_returns_a_last_unterminated_line_at_eof() {
        let mut c = LinesCodec::new(8);
        let mut b = DecodeBuf::from(&b"a\nlast"[..]);
        assert_eq!(c.decode_eof(&mut b).expect("eof"), Some("a".into()));
        assert_eq!(c.decode_eof(&mut b).expect("eof"), Some("last".into()));
        assert_eq!(c.decode_eof(&mut b).expect("eof"), None);
    }

    #[test]
    fn lines_codec_encodes_with_a_newline_and_refuses_long_lines() {
        let mut c = LinesCodec::new(3);
        let mut out = Vec::new();
        c.encode("abc", &mut out).expect("encode");
        c.encode(String::from("x"), &mut out).expect("encode");
        assert_eq!(out, b"abc\nx\n");
        let err = c.encode("abcd", &mut out).expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(out, b"abc\nx\n");
    }
}
