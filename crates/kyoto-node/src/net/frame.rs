//! Native framing for `kyoto/io`'s `framed(stream, codec)`: splits what a stream's task reads into
//! frames before anything reaches JavaScript.
//!
//! A [`Framer`] never buffers frame bytes: it only says, for each chunk it is fed, which byte ranges
//! belong to which frame (a [`Sink`] receives the ranges in order, each marked as ending its frame or
//! not) and where the stream broke a codec rule. The socket task then sends the chunk's frame bytes
//! and that range table to JS in one event, and JS glues a frame's pieces when a frame spans reads.
//! What the framer itself holds between reads is at most 8 bytes (an incomplete length header, or a
//! trailing `\r` that may belong to a `\r\n`): the frame size limits are enforced before any byte of
//! an oversize frame is handed over, so no side ever holds more than the limit plus one read.
//!
//! Semantics (the JS fallback in `lib/io.ts` implements the same):
//! - **Lines**: frames end at `\n`; one `\r` before the `\n` is dropped; at end of stream a last
//!   unterminated line is a frame too (a trailing `\r` dropped). A line whose content (without its
//!   terminator) exceeds `max` is reported once as [`FrameErr::LineTooLong`] as soon as that is
//!   certain; the rest of it, up to and including the next `\n`, is discarded without being held,
//!   and the line after it is decoded normally.
//! - **Length-delimited**: a big-endian header of 1–8 bytes gives the payload length. A length
//!   above `max` is reported as [`FrameErr::FrameTooBig`] right after the header; that many payload
//!   bytes are then skipped as they arrive (never held) and the next frame is decoded normally. A
//!   stream that ends inside a header or a payload reports [`FrameErr::EofInHeader`] /
//!   [`FrameErr::EofInFrame`].

/// A codec rule the stream broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameErr {
    /// A line longer than the limit.
    LineTooLong,
    /// A header announced this many payload bytes, more than the limit.
    FrameTooBig(u64),
    /// The stream ended inside a length header.
    EofInHeader,
    /// The stream ended inside a frame's payload.
    EofInFrame,
}

impl FrameErr {
    /// The code JS receives in a `K_FRAME_ERR` record.
    pub fn code(self) -> i32 {
        match self {
            FrameErr::LineTooLong => 1,
            FrameErr::FrameTooBig(_) => 2,
            FrameErr::EofInHeader => 3,
            FrameErr::EofInFrame => 4,
        }
    }
}

/// Receives a framer's output for one chunk, in stream order.
pub trait Sink {
    /// Bytes `start..start + len` of the fed input belong to the current frame; `end`: they
    /// complete it.
    fn seg(&mut self, start: usize, len: usize, end: bool);
    /// The stream broke a codec rule here; a frame in progress is abandoned.
    fn err(&mut self, e: FrameErr);
}

/// A codec's splitting state.
#[derive(Debug, Clone)]
pub enum Framer {
    /// `\n`-terminated lines.
    Lines(Lines),
    /// Length-prefixed frames.
    Length(LengthDelimited),
}

impl Framer {
    /// A lines framer: content longer than `max` bytes is an error.
    pub fn lines(max: u64) -> Framer {
        Framer::Lines(Lines {
            max,
            cur: 0,
            held_cr: false,
            discarding: false,
        })
    }

    /// A length-delimited framer with a `field_bytes`-byte header (1–8) and payloads of at most
    /// `max` bytes. `None` for another header size.
    pub fn length_delimited(field_bytes: usize, max: u64) -> Option<Framer> {
        if !(1..=8).contains(&field_bytes) {
            return None;
        }
        Some(Framer::Length(LengthDelimited {
            field_bytes,
            max,
            hdr: [0; 8],
            have: 0,
            state: LdState::Head,
        }))
    }

    /// Bytes the framer holds back from the previous chunk that belong in front of the next one
    /// (`\r` that turned out to be content): the input of [`Framer::feed`] is these bytes followed
    /// by the new chunk, and the sink's ranges count from the first of them.
    pub fn prefix(&self) -> &'static [u8] {
        match self {
            Framer::Lines(l) if l.held_cr => b"\r",
            _ => b"",
        }
    }

    /// Bytes the framer holds between chunks (at most 8).
    pub fn held(&self) -> usize {
        match self {
            Framer::Lines(l) => usize::from(l.held_cr),
            Framer::Length(d) => d.have,
        }
    }

    /// Splits `chunk` (preceded by [`Framer::prefix`], which the caller read just before).
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl Sink) {
        match self {
            Framer::Lines(l) => {
                let v = Virt {
                    pre: if l.held_cr { b"\r" } else { b"" },
                    s: chunk,
                };
                l.held_cr = false;
                l.feed(v, sink);
            }
            Framer::Length(d) => d.feed(chunk, sink),
        }
    }

    /// The stream ended: completes or reports what is in progress (ranges refer to
    /// [`Framer::prefix`] as the input), and resets the state.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        match self {
            Framer::Lines(l) => l.finish(sink),
            Framer::Length(d) => d.finish(sink),
        }
    }
}

/// A chunk with up to one held byte in front of it.
#[derive(Clone, Copy)]
struct Virt<'a> {
    pre: &'a [u8],
    s: &'a [u8],
}

impl Virt<'_> {
    fn len(&self) -> usize {
        self.pre.len() + self.s.len()
    }

    fn get(&self, i: usize) -> u8 {
        if i < self.pre.len() {
            self.pre[i]
        } else {
            self.s[i - self.pre.len()]
        }
    }

    /// The first `\n` at or after `from`.
    fn find_nl(&self, from: usize) -> Option<usize> {
        let p = self.pre.len();
        if from < p {
            if let Some(i) = self.pre[from..].iter().position(|&b| b == b'\n') {
                return Some(from + i);
            }
        }
        let start = from.max(p) - p;
        find_byte(&self.s[start..], b'\n').map(|i| p + start + i)
    }
}

/// `memchr`: the position of the first `b` in `s`.
fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    #[cfg(unix)]
    {
        if s.is_empty() {
            return None;
        }
        // SAFETY: `s` is a live slice of `s.len()` readable bytes; memchr reads no further.
        let p = unsafe { libc::memchr(s.as_ptr().cast(), i32::from(b), s.len()) };
        if p.is_null() {
            None
        } else {
            Some(p as usize - s.as_ptr() as usize)
        }
    }
    #[cfg(not(unix))]
    {
        s.iter().position(|&x| x == b)
    }
}

/// State of the lines framer.
#[derive(Debug, Clone)]
pub struct Lines {
    max: u64,
    /// Content bytes of the current line already handed to the sink.
    cur: u64,
    /// The last chunk ended in `\r` (not handed over: it may be half of a `\r\n`).
    held_cr: bool,
    /// Skipping the rest of a line that was too long.
    discarding: bool,
}

impl Lines {
    fn feed(&mut self, v: Virt<'_>, sink: &mut impl Sink) {
        let n = v.len();
        let mut pos = 0;
        while pos < n {
            if self.discarding {
                match v.find_nl(pos) {
                    Some(i) => {
                        self.discarding = false;
                        self.cur = 0;
                        pos = i + 1;
                        continue;
                    }
                    None => return,
                }
            }
            match v.find_nl(pos) {
                Some(i) => {
                    let mut end = i;
                    if end > pos && v.get(end - 1) == b'\r' {
                        end -= 1;
                    }
                    if self.cur + (end - pos) as u64 > self.max {
                        sink.err(FrameErr::LineTooLong);
                    } else {
                        sink.seg(pos, end - pos, true);
                    }
                    self.cur = 0;
                    pos = i + 1;
                }
                None => {
                    let mut end = n;
                    let cr = v.get(n - 1) == b'\r';
                    if cr {
                        end -= 1;
                    }
                    let total = self.cur + (end - pos) as u64;
                    if total > self.max {
                        sink.err(FrameErr::LineTooLong);
                        self.discarding = true;
                        self.cur = 0;
                    } else {
                        if end > pos {
                            sink.seg(pos, end - pos, false);
                        }
                        self.cur = total;
                        self.held_cr = cr;
                    }
                    return;
                }
            }
        }
    }

    fn finish(&mut self, sink: &mut impl Sink) {
        if !self.discarding && (self.cur > 0 || self.held_cr) {
            // The last line had no `\n`; a trailing `\r` is dropped like a terminator's.
            sink.seg(0, 0, true);
        }
        self.cur = 0;
        self.held_cr = false;
        self.discarding = false;
    }
}

#[derive(Debug, Clone, Copy)]
enum LdState {
    /// Collecting a header (`have` bytes so far).
    Head,
    /// This many payload bytes of the current frame still to come.
    Data(u64),
    /// This many bytes of a rejected frame still to skip.
    Skip(u64),
}

/// State of the length-delimited framer.
#[derive(Debug, Clone)]
pub struct LengthDelimited {
    field_bytes: usize,
    max: u64,
    hdr: [u8; 8],
    have: usize,
    state: LdState,
}

impl LengthDelimited {
    fn feed(&mut self, s: &[u8], sink: &mut impl Sink) {
        let n = s.len();
        let mut pos = 0;
        while pos < n {
            match self.state {
                LdState::Head => {
                    let take = (self.field_bytes - self.have).min(n - pos);
                    self.hdr[self.have..self.have + take].copy_from_slice(&s[pos..pos + take]);
                    self.have += take;
                    pos += take;
                    if self.have < self.field_bytes {
                        return;
                    }
                    self.have = 0;
                    let len = self.hdr[..self.field_bytes]
                        .iter()
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                    if len > self.max {
                        sink.err(FrameErr::FrameTooBig(len));
                        self.state = LdState::Skip(len);
                    } else if len == 0 {
                        sink.seg(pos, 0, true);
                    } else {
                        self.state = LdState::Data(len);
                    }
                }
                LdState::Data(rem) => {
                    let take = rem.min((n - pos) as u64) as usize;
                    let end = take as u64 == rem;
                    sink.seg(pos, take, end);
                    pos += take;
                    self.state = if end {
                        LdState::Head
                    } else {
                        LdState::Data(rem - take as u64)
                    };
                }
                LdState::Skip(rem) => {
                    let take = rem.min((n - pos) as u64) as usize;
                    pos += take;
                    self.state = if take as u64 == rem {
                        LdState::Head
                    } else {
                        LdState::Skip(rem - take as u64)
                    };
                }
            }
        }
    }

    fn finish(&mut self, sink: &mut impl Sink) {
        match self.state {
            LdState::Head if self.have > 0 => sink.err(FrameErr::EofInHeader),
            LdState::Data(_) => sink.err(FrameErr::EofInFrame),
            // Nothing in progress, or a rejected frame that was already reported.
            LdState::Head | LdState::Skip(_) => {}
        }
        self.have = 0;
        self.state = LdState::Head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects whole frames (as the JS side assembles them) and errors.
    #[derive(Default)]
    struct Collect {
        input: Vec<u8>,
        part: Vec<u8>,
        out: Vec<Result<Vec<u8>, FrameErr>>,
    }

    impl Sink for Collect {
        fn seg(&mut self, start: usize, len: usize, end: bool) {
            self.part.extend_from_slice(&self.input[start..start + len]);
            if end {
                self.out.push(Ok(std::mem::take(&mut self.part)));
            }
        }
        fn err(&mut self, e: FrameErr) {
            self.part.clear();
            self.out.push(Err(e));
        }
    }

    /// Feeds `chunks` one by one, then the end of stream.
    fn run(mut f: Framer, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameErr>> {
        let mut c = Collect::default();
        for ch in chunks {
            c.input = [f.prefix(), ch].concat();
            f.feed(ch, &mut c);
            assert!(f.held() <= 8);
        }
        c.input = f.prefix().to_vec();
        f.finish(&mut c);
        c.out
    }

    fn ok(s: &str) -> Result<Vec<u8>, FrameErr> {
        Ok(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_split_on_newline_and_drop_one_carriage_return() {
        let out = run(Framer::lines(100), &[b"hello\r\nworld\n\n"]);
        assert_eq!(out, vec![ok("hello"), ok("world"), ok("")]);
    }

    #[test]
    fn a_last_line_without_newline_is_a_frame_at_end_of_stream() {
        assert_eq!(
            run(Framer::lines(100), &[b"a\nlast"]),
            vec![ok("a"), ok("last")]
        );
        assert_eq!(
            run(Framer::lines(100), &[b"a\nlast\r"]),
            vec![ok("a"), ok("last")]
        );
        assert_eq!(run(Framer::lines(100), &[b"a\n"]), vec![ok("a")]);
        assert_eq!(run(Framer::lines(100), &[b"\r"]), vec![ok("")]);
    }

    #[test]
    fn lines_split_into_one_byte_chunks_decode_the_same() {
        let text = b"ab\r\ncd\rx\n\r\r\n\nend\r";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let expect = vec![ok("ab"), ok("cd\rx"), ok("\r"), ok(""), ok("end")];
        assert_eq!(run(Framer::lines(100), &chunks), expect);
        assert_eq!(run(Framer::lines(100), &[text]), expect);
    }

    #[test]
    fn a_held_carriage_return_that_is_content_counts_toward_the_limit() {
        // "abc\r" then "d\n": the line is "abc\rd", 5 bytes.
        assert_eq!(
            run(Framer::lines(5), &[b"abc\r", b"d\n"]),
            vec![ok("abc\rd")]
        );
        assert_eq!(
            run(Framer::lines(4), &[b"abc\r", b"d\nok\n"]),
            vec![Err(FrameErr::LineTooLong), ok("ok")]
        );
        // A line of exactly the limit followed by "\r\n" split between chunks is fine.
        assert_eq!(
            run(Framer::lines(3), &[b"abc\r", b"\nx\n"]),
            vec![ok("abc"), ok("x")]
        );
    }

    #[test]
    fn an_overlong_line_errors_once_and_is_discarded_up_to_its_newline() {
        let out = run(Framer::lines(4), &[b"12", b"345", b"6789", b"0\nnext\n"]);
        assert_eq!(out, vec![Err(FrameErr::LineTooLong), ok("next")]);
        let out = run(Framer::lines(4), &[b"123456\nok\n"]);
        assert_eq!(out, vec![Err(FrameErr::LineTooLong), ok("ok")]);
        // End of stream while discarding: nothing more.
        let out = run(Framer::lines(2), &[b"abcdef"]);
        assert_eq!(out, vec![Err(FrameErr::LineTooLong)]);
    }

    #[test]
    fn an_overlong_line_is_reported_before_more_than_the_limit_is_handed_over() {
        struct Count(usize, bool);
        impl Sink for Count {
            fn seg(&mut self, _s: usize, len: usize, _e: bool) {
                self.0 += len;
            }
            fn err(&mut self, _e: FrameErr) {
                self.1 = true;
            }
        }
        let mut f = Framer::lines(1000);
        let mut c = Count(0, false);
        let chunk = [b'x'; 300];
        for _ in 0..10_000 {
            f.feed(&chunk, &mut c);
        }
        assert!(c.1);
        assert!(c.0 <= 1000, "handed over {}", c.0);
    }

    fn ld(bytes: usize, payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            v.extend_from_slice(&(p.len() as u64).to_be_bytes()[8 - bytes..]);
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn length_delimited_frames_round_trip_with_every_header_size() {
        for bytes in 1..=8 {
            let wire = ld(bytes, &[b"one", b"", b"three"]);
            let f = Framer::length_delimited(bytes, 255).expect("size");
            assert_eq!(
                run(f.clone(), &[&wire]),
                vec![ok("one"), ok(""), ok("three")]
            );
            let chunks: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(run(f, &chunks), vec![ok("one"), ok(""), ok("three")]);
        }
        assert!(Framer::length_delimited(0, 1).is_none());
        assert!(Framer::length_delimited(9, 1).is_none());
    }

    #[test]
    fn an_oversize_frame_is_reported_after_its_header_and_skipped() {
        let mut wire = ld(2, &[b"0123456789"]);
        wire.extend_from_slice(&ld(2, &[b"ok"]));
        let f = Framer::length_delimited(2, 4).expect("size");
        assert_eq!(
            run(f.clone(), &[&wire]),
            vec![Err(FrameErr::FrameTooBig(10)), ok("ok")]
        );
        let chunks: Vec<&[u8]> = wire.chunks(3).collect();
        assert_eq!(
            run(f, &chunks),
            vec![Err(FrameErr::FrameTooBig(10)), ok("ok")]
        );
    }

    #[test]
    fn a_stream_ending_inside_a_header_or_a_payload_is_an_error() {
        let f = Framer::length_delimited(4, 100).expect("size");
        assert_eq!(run(f.clone(), &[&[0, 0]]), vec![Err(FrameErr::EofInHeader)]);
        assert_eq!(
            run(f.clone(), &[&[0, 0, 0, 3, b'a']]),
            vec![Err(FrameErr::EofInFrame)]
        );
        assert_eq!(run(f, &[&[0, 0, 0, 1, b'a']]), vec![ok("a")]);
    }

    #[test]
    fn any_chunking_of_a_stream_decodes_like_the_whole_stream() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let alphabet = b"ab\r\n";
            let text: Vec<u8> = (0..rnd(200)).map(|_| alphabet[rnd(4) as usize]).collect();
            let mut wire = Vec::new();
            for _ in 0..rnd(8) {
                let len = rnd(12) as usize;
                wire.extend_from_slice(&(len as u64).to_be_bytes()[6..]);
                wire.extend((0..len).map(|i| i as u8));
            }
            let framers = [
                (Framer::lines(5 + round % 7), text),
                (Framer::length_delimited(2, 8).expect("size"), wire),
            ];
            for (f, input) in framers {
                let whole = run(f.clone(), &[&input]);
                let mut chunks = Vec::new();
                let mut rest = &input[..];
                while !rest.is_empty() {
                    let k = (1 + rnd(9) as usize).min(rest.len());
                    chunks.push(&rest[..k]);
                    rest = &rest[k..];
                }
                assert_eq!(run(f, &chunks), whole, "round {round}");
            }
        }
    }
}
