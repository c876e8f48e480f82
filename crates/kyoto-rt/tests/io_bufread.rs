//! `BufReader`, `read_line`, `read_until` and `lines`.
mod common;
use common::run;
use kyoto_rt::io::{duplex, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A reader over fixed bytes that hands out at most `chunk` bytes per read and counts its reads.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    reads: usize,
}

impl Chunked {
    fn new(data: &[u8], chunk: usize) -> Chunked {
        Chunked {
            data: data.to_vec(),
            pos: 0,
            chunk,
            reads: 0,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.reads += 1;
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

#[test]
fn lines_yields_hello_world_and_an_empty_line_then_none() {
    run(async {
        let mut lines = BufReader::new(Chunked::new(b"hello\r\nworld\n\n", 64)).lines();
        assert_eq!(
            lines.next_line().await.expect("1").as_deref(),
            Some("hello")
        );
        assert_eq!(
            lines.next_line().await.expect("2").as_deref(),
            Some("world")
        );
        assert_eq!(lines.next_line().await.expect("3").as_deref(), Some(""));
        assert_eq!(lines.next_line().await.expect("4"), None);
        assert_eq!(lines.next_line().await.expect("5"), None);
    });
}

#[test]
fn lines_span_buffer_refills_and_return_a_last_unterminated_line() {
    run(async {
        let reader = BufReader::with_capacity(3, Chunked::new(b"a long line\r\nend", 2));
        let mut lines = reader.lines();
        assert_eq!(
            lines.next_line().await.expect("1").as_deref(),
            Some("a long line")
        );
        assert_eq!(lines.next_line().await.expect("2").as_deref(), Some("end"));
        assert_eq!(lines.next_line().await.expect("3"), None);
    });
}

#[test]
fn read_line_appends_the_line_with_its_newline_and_returns_0_at_eof() {
    run(async {
        let mut r = BufReader::new(Chunked::new(b"one\ntwo", 2));
        let mut s = String::from(">");
        assert_eq!(r.read_line(&mut s).await.expect("line 1"), 4);
        assert_eq!(s, ">one\n");
        assert_eq!(r.read_line(&mut s).await.expect("line 2"), 3);
        assert_eq!(s, ">one\ntwo");
        assert_eq!(r.read_line(&mut s).await.expect("eof"), 0);
        assert_eq!(s, ">one\ntwo");
    });
}

#[test]
fn read_line_with_invalid_utf8_errors_and_leaves_the_string_unchanged() {
    run(async {
        let mut r = BufReader::new(Chunked::new(b"ok\nbad \xff\xfe line\nnext\n", 4));
        let mut s = String::new();
        r.read_line(&mut s).await.expect("valid line");
        assert_eq!(s, "ok\n");
        let err = r.read_line(&mut s).await.expect_err("invalid UTF-8");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(s, "ok\n", "the string is unchanged");
        r.read_line(&mut s).await.expect("the following line");
        assert_eq!(s, "ok\nnext\n");
    });
}

#[test]
fn read_until_stops_after_the_delimiter() {
    run(async {
        let mut r = BufReader::with_capacity(4, Chunked::new(b"key=value;rest", 3));
        let mut buf = Vec::new();
        assert_eq!(r.read_until(b'=', &mut buf).await.expect("key"), 4);
        assert_eq!(buf, b"key=");
        buf.clear();
        assert_eq!(r.read_until(b';', &mut buf).await.expect("value"), 6);
        assert_eq!(buf, b"value;");
        buf.clear();
        assert_eq!(r.read_until(b';', &mut buf).await.expect("rest"), 4);
        assert_eq!(buf, b"rest");
        assert_eq!(r.read_until(b';', &mut buf).await.expect("eof"), 0);
    });
}

#[test]
fn small_reads_are_served_from_one_large_inner_read() {
    run(async {
        let mut r = BufReader::new(Chunked::new(&[7u8; 1000], usize::MAX));
        let mut byte = [0u8; 1];
        for _ in 0..1000 {
            r.read_exact(&mut byte).await.expect("read");
        }
        assert_eq!(r.get_ref().reads, 1);
        assert_eq!(r.read(&mut byte).await.expect("eof"), 0);
    });
}

#[test]
fn a_large_read_into_an_empty_buffer_bypasses_it() {
    run(async {
        let mut r = BufReader::with_capacity(16, Chunked::new(&[1u8; 100], usize::MAX));
        let mut big = [0u8; 64];
        assert_eq!(r.read(&mut big).await.expect("read"), 64);
        assert!(
            r.buffer().is_empty(),
            "nothing was copied through the buffer"
        );
    });
}

#[test]
fn next_line_keeps_a_partial_line_when_cancelled() {
    run(async {
        let (mut tx, rx) = duplex(64);
        let mut lines = BufReader::new(rx).lines();
        tx.write_all(b"hel").await.expect("write");
        let cancelled = kyoto_rt::time::timeout(Duration::from_millis(30), lines.next_line()).await;
        assert!(cancelled.is_err(), "no complete line yet");
        tx.write_all(b"lo\n").await.expect("write");
        assert_eq!(
            lines.next_line().await.expect("line").as_deref(),
            Some("hello")
        );
        drop(tx);
        assert_eq!(lines.next_line().await.expect("eof"), None);
    });
}
