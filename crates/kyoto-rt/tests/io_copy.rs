//! `copy` and `copy_bidirectional` over real sockets and over in-memory readers/writers.
mod common;
use common::run;
use kyoto_rt::io::{copy, copy_bidirectional, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kyoto_rt::net::{TcpListener, TcpStream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connected (client, server) pair.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = kyoto_rt::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let client = TcpStream::connect(addr).await.expect("connect");
    let server = accept.await.expect("accept task").expect("accept");
    (client, server)
}

#[test]
fn copy_bidirectional_returns_0_and_4_when_a_shuts_down_and_b_writes_four_bytes() {
    run(async {
        let (mut a_peer, mut a) = pair().await;
        let (mut b_peer, mut b) = pair().await;
        let proxy = kyoto_rt::spawn(async move { copy_bidirectional(&mut a, &mut b).await });

        a_peer.shutdown().await.expect("a's peer shuts down");
        // a reached EOF, so the proxy shuts b's writer down: b's peer reads end of stream.
        let mut buf = [0u8; 8];
        assert_eq!(b_peer.read(&mut buf).await.expect("b_peer read"), 0);

        b_peer.write_all(b"1234").await.expect("b_peer write");
        drop(b_peer);
        let mut got = Vec::new();
        a_peer.read_to_end(&mut got).await.expect("a_peer read");
        assert_eq!(got, b"1234");

        let counts = proxy.await.expect("proxy task").expect("proxy io");
        assert_eq!(counts, (0, 4));
    });
}

#[test]
fn copy_moves_a_megabyte_between_sockets_intact() {
    run(async {
        let (mut src_writer, mut src) = pair().await;
        let (mut dst, mut dst_reader) = pair().await;
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let expected = data.clone();
        let writer = kyoto_rt::spawn(async move {
            src_writer.write_all(&data).await?;
            src_writer.shutdown().await
        });
        let pump = kyoto_rt::spawn(async move {
            let n = copy(&mut src, &mut dst).await?;
            dst.shutdown().await?;
            io::Result::Ok(n)
        });
        let mut got = Vec::new();
        dst_reader.read_to_end(&mut got).await.expect("read_to_end");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrive in order and intact");
        assert_eq!(pump.await.expect("pump").expect("copy"), 1_000_000);
        writer.await.expect("writer").expect("write");
    });
}

/// An in-memory reader that returns its data in small pieces, with a `Pending` before each.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    pending_next: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending_next {
            self.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_next = true;
        let n = buf.len().min(3).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

/// An in-memory writer that counts flushes.
#[derive(Default)]
struct Recorder {
    data: Vec<u8>,
    flushes: usize,
    closed: bool,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.data.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

#[test]
fn copy_flushes_while_the_reader_is_pending_and_at_eof() {
    run(async {
        let mut reader = Trickle {
            data: b"a slow trickle of bytes".to_vec(),
            pos: 0,
            pending_next: true,
        };
        let mut writer = Recorder::default();
        let n = copy(&mut reader, &mut writer).await.expect("copy");
        assert_eq!(n, 23);
        assert_eq!(writer.data, b"a slow trickle of bytes");
        // Pending after each 3-byte piece: 8 pieces → a flush each time, plus one at EOF.
        assert!(writer.flushes >= 8, "flushed {} times", writer.flushes);
        assert!(!writer.closed, "copy does not shut the writer down");
    });
}

#[test]
fn copy_bidirectional_propagates_a_write_error_at_once() {
    struct Broken;
    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }
    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    run(async {
        let (mut peer, mut a) = pair().await;
        peer.write_all(b"data").await.expect("write");
        let mut b = Broken;
        let err = copy_bidirectional(&mut a, &mut b)
            .await
            .expect_err("b cannot be written");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    });
}
