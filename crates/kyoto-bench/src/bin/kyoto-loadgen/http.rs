//! HTTP mode (`--http PATH`): a request is `GET PATH HTTP/1.1` on a keep-alive connection (`--inflight`
//! of them pipelined); it completes when a whole `200` response has arrived, its body framed by
//! `Content-Length` or chunked (what Node's `res.end()` sends after `writeHead`). Anything else
//! (another status, an unframed body, a head or chunk line over 64 KiB, trailers) is a
//! verification error and closes the connection: a load generator that guessed at framing would
//! count garbage as answers.

/// The longest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// The bytes of one request for `path`.
pub fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: kyoto-loadgen\r\n\r\n").into_bytes()
}

/// What [`ResponseReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole response, with this many body bytes.
    Response { body: usize },
    /// Not a whole response yet.
    Partial,
    /// Not a response this mode accepts.
    Bad,
}

/// One connection's received bytes, split into responses.
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    /// Where the next response starts in `buf`.
    start: usize,
}

impl ResponseReader {
    pub fn push(&mut self, data: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= MAX_HEAD {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Takes the next whole response, if there is one.
    pub fn next(&mut self) -> Next {
        let b = &self.buf[self.start..];
        let Some(head_end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if b.len() > MAX_HEAD {
                Next::Bad
            } else {
                Next::Partial
            };
        };
        let head = &b[..head_end];
        if !(head.starts_with(b"HTTP/1.1 200 ") || head.starts_with(b"HTTP/1.0 200 ")) {
            return Next::Bad;
        }
        let mut len = None;
        let mut chunked = false;
        for line in head.split(|&c| c == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                return Next::Bad;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-length") {
                match std::str::from_utf8(value).map(|v| v.trim().parse::<usize>()) {
                    Ok(Ok(n)) => len = Some(n),
                    _ => return Next::Bad,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Next::Bad;
                }
                chunked = true;
            }
        }
        let (total, body) = match (len, chunked) {
            (Some(len), false) => (head_end + 4 + len, len),
            (None, true) => match chunked_len(&b[head_end + 4..]) {
                Ok(Some((wire, body))) => (head_end + 4 + wire, body),
                Ok(None) => return Next::Partial,
                Err(()) => return Next::Bad,
            },
            _ => return Next::Bad,
        };
        if b.len() < total {
            return Next::Partial;
        }
        self.start += total;
        Next::Response { body }
    }
}

/// The length on the wire and the payload of the chunked body at the start of `b` (None: not all
/// of it is here yet).
fn chunked_len(b: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let (mut at, mut body) = (0, 0usize);
    loop {
        let rest = &b[at..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if rest.len() > MAX_HEAD {
                Err(())
            } else {
                Ok(None)
            };
        };
        let size = std::str::from_utf8(&rest[..eol]).map_err(|_| ())?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| ())?;
        let end = at + eol + 2 + size + 2;
        if b.len() < end {
            return Ok(None);
        }
        if &b[end - 2..end] != b"\r\n" {
            return Err(()); // a trailer, or a chunk longer than it said
        }
        body += size;
        at = end;
        if size == 0 {
            return Ok(Some((at, body)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello";

    #[test]
    fn pipelined_responses_split_at_their_content_length_wherever_the_reads_break() {
        let mut two = OK.to_vec();
        two.extend_from_slice(OK);
        for cut in 0..two.len() {
            let mut r = ResponseReader::default();
            let mut got = 0;
            for part in [&two[..cut], &two[cut..]] {
                r.push(part);
                while let Next::Response { body } = r.next() {
                    assert_eq!(body, 5);
                    got += 1;
                }
            }
            assert_eq!(got, 2, "cut at {cut}");
            assert_eq!(r.next(), Next::Partial);
        }
    }

    #[test]
    fn chunked_responses_complete_at_their_last_chunk() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nhello world\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        let mut two = chunked.to_vec();
        two.extend_from_slice(OK);
        for cut in 0..two.len() {
            let mut r = ResponseReader::default();
            let mut bodies = vec![];
            for part in [&two[..cut], &two[cut..]] {
                r.push(part);
                while let Next::Response { body } = r.next() {
                    bodies.push(body);
                }
            }
            assert_eq!(bodies, [15, 5], "cut at {cut}");
        }
    }

    #[test]
    fn another_status_or_a_body_without_a_length_is_refused() {
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello world\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
        ] {
            let mut r = ResponseReader::default();
            r.push(bad);
            assert_eq!(r.next(), Next::Bad, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_request_names_its_path_and_asks_for_keep_alive_by_default() {
        assert_eq!(
            request("/x"),
            b"GET /x HTTP/1.1\r\nHost: kyoto-loadgen\r\n\r\n".to_vec()
        );
    }
}
