//! `Framed` with `LinesCodec` and `LengthDelimitedCodec`, over TCP, duplex pipes and scripted readers.
mod common;
use common::run;
use kyoto_rt::io::codec::{LengthDelimitedCodec, LinesCodec};
use kyoto_rt::io::{duplex, AsyncRead, AsyncWriteExt, Framed, FramedRead, FramedWrite};
use kyoto_rt::net::{TcpListener, TcpStream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connected (client, server) pair on loopback.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = kyoto_rt::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let client = TcpStream::connect(addr).await.expect("connect");
    let server = accept.await.expect("accept task").expect("accept");
    (client, server)
}

/// A reader over fixed bytes that counts how many it handed out.
struct Source {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

fn kind<T: std::fmt::Debug>(r: Option<io::Result<T>>) -> io::ErrorKind {
    match r {
        Some(Err(e)) => e.kind(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn lines_codec_over_tcp_reports_a_too_long_line_then_decodes_the_next_line() {
    run(async {
        let (mut client, server) = pair().await;
        let max = 16;
        let writer = kyoto_rt::spawn(async move {
            client.write_all(b"short\r\n").await.expect("write");
            // 200 KiB without a newline: far more than the limit, sent in pieces.
            let long = vec![b'x'; 8 * 1024];
            for _ in 0..25 {
                client.write_all(&long).await.expect("write long");
            }
            client.write_all(b"\nafter\nlast").await.expect("write");
        });
        let mut framed = Framed::new(server, LinesCodec::new(max));
        assert_eq!(
            framed.next().await.transpose().expect("short"),
            Some("short".into())
        );
        let err = match framed.next().await {
            Some(Err(e)) => e,
            other => panic!("expected the length error, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "line length limit exceeded");
        assert!(framed.read_buffer().capacity() <= max + 2);
        assert_eq!(
            framed.next().await.transpose().expect("after"),
            Some("after".into())
        );
        assert!(
            framed.read_buffer().capacity() <= max + 2,
            "the read buffer never grew past max + 2 ({} bytes)",
            framed.read_buffer().capacity()
        );
        writer.await.expect("writer task");
        assert_eq!(
            framed.next().await.transpose().expect("last"),
            Some("last".into())
        );
        assert!(framed.next().await.is_none());
        assert!(framed.next().await.is_none(), "stays at the end");
    });
}

#[test]
fn framed_lines_echo_over_tcp_in_both_directions() {
    run(async {
        let (client, server) = pair().await;
        let echo = kyoto_rt::spawn(async move {
            let mut f = Framed::new(server, LinesCodec::new(1024));
            while let Some(line) = f.next().await {
                let line = line.expect("line");
                f.send(format!("echo: {line}")).await.expect("send");
            }
        });
        let mut f = Framed::new(client, LinesCodec::new(1024));
        for i in 0..100 {
            f.send(format!("line {i}")).await.expect("send");
            let reply = f.next().await.transpose().expect("reply");
            assert_eq!(reply, Some(format!("echo: line {i}")));
        }
        f.close().await.expect("close");
        assert!(f.next().await.is_none());
        echo.await.expect("echo task");
    });
}

#[test]
fn length_delimited_round_trips_with_1_2_4_and_8_byte_headers() {
    run(async {
        for field in [1usize, 2, 4, 8] {
            let codec = || LengthDelimitedCodec::new(field, 1000).expect("codec");
            let max = codec().max_frame_length();
            let (a, b) = duplex(128);
            let mut tx = Framed::new(a, codec());
            let mut rx = Framed::new(b, codec());
            let frames: Vec<Vec<u8>> = [0usize, 1, 7, max]
                .iter()
                .map(|&n| (0..n).map(|i| (i * 31 + field) as u8).collect())
                .collect();
            let sent = frames.clone();
            let sender = kyoto_rt::spawn(async move {
                for f in &sent {
                    tx.send(f.as_slice()).await.expect("send");
                }
                tx.close().await.expect("close");
                tx
            });
            for f in &frames {
                let got = rx.next().await.transpose().expect("frame");
                assert_eq!(
                    got.as_ref(),
                    Some(f),
                    "{field}-byte header, {} bytes",
                    f.len()
                );
            }
            assert!(rx.next().await.is_none(), "{field}-byte header: end");
            let tx = sender.await.expect("sender task");
            assert!(tx.write_buffer().is_empty());
        }
    });
}

#[test]
fn the_length_header_is_big_endian_and_excludes_itself() {
    run(async {
        let (a, b) = duplex(64);
        let mut tx = FramedWrite::new(a, LengthDelimitedCodec::new(2, 1000).expect("codec"));
        tx.send(&b"abc"[..]).await.expect("send");
        drop(tx);
        let mut raw = Vec::new();
        let mut b = b;
        kyoto_rt::io::AsyncReadExt::read_to_end(&mut b, &mut raw)
            .await
            .expect("read");
        assert_eq!(raw, [0, 3, b'a', b'b', b'c']);
    });
}

#[test]
fn an_oversize_header_errors_without_buffering_the_payload() {
    run(async {
        let max = 16;
        let mut data = Vec::new();
        data.extend_from_slice(&(1u32 << 20).to_be_bytes());
        data.extend(std::iter::repeat_n(0xAB, 1 << 20));
        data.extend_from_slice(&[0, 0, 0, 2, b'o', b'k']);
        let source = Source { data, pos: 0 };
        let mut framed = FramedRead::new(source, LengthDelimitedCodec::new(4, max).expect("codec"));

        let err = match framed.next().await {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            framed.get_ref().pos <= 4 + max,
            "only header + max bytes were read before the error, not the payload ({})",
            framed.get_ref().pos
        );
        assert!(framed.read_buffer().capacity() <= 4 + max);

        // The payload is skipped as it arrives, and the frame after it decodes.
        let next = framed.next().await.transpose().expect("next frame");
        assert_eq!(next, Some(b"ok".to_vec()));
        assert!(framed.read_buffer().capacity() <= 4 + max);
        assert!(framed.next().await.is_none());
    });
}

#[test]
fn a_frame_split_across_many_1_byte_writes_decodes() {
    run(async {
        // A 1-byte pipe: every read sees exactly one byte.
        let (a, b) = duplex(1);
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 256) as u8).collect();
        let mut encoded = Vec::new();
        encoded.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        encoded.extend_from_slice(&payload);
        let writer = kyoto_rt::spawn(async move {
            let mut a = a;
            for byte in &encoded {
                a.write_all(std::slice::from_ref(byte))
                    .await
                    .expect("write");
            }
        });
        let mut rx = FramedRead::new(b, LengthDelimitedCodec::default());
        let got = rx.next().await.transpose().expect("frame");
        assert_eq!(got, Some(payload));
        writer.await.expect("writer task");
        assert!(rx.next().await.is_none());
    });
}

#[test]
fn encoding_an_oversize_frame_fails_and_writes_nothing() {
    run(async {
        // Room for the whole frame: nobody reads until the writer is dropped.
        let (a, b) = duplex(512);
        let mut tx = Framed::new(a, LengthDelimitedCodec::new(1, 4000).expect("codec"));
        let err = tx
            .send(vec![0u8; 256])
            .await
            .expect_err("too big for 1 byte");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(tx.write_buffer().is_empty());
        tx.send(vec![9u8; 255]).await.expect("fits");
        drop(tx);
        let mut rx = FramedRead::new(b, LengthDelimitedCodec::new(1, 4000).expect("codec"));
        assert_eq!(
            rx.next().await.transpose().expect("frame"),
            Some(vec![9u8; 255])
        );
        assert!(rx.next().await.is_none());

        let mut lines = Framed::new(duplex(8).0, LinesCodec::new(3));
        let err = lines.send("four").await.expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn a_stream_ending_inside_a_frame_is_unexpected_eof() {
    run(async {
        let source = Source {
            data: vec![0, 0, 0, 9, 1, 2, 3],
            pos: 0,
        };
        let mut rx = FramedRead::new(source, LengthDelimitedCodec::default());
        assert_eq!(kind(rx.next().await), io::ErrorKind::UnexpectedEof);
        assert!(rx.next().await.is_none());
    });
}

#[test]
fn split_tcp_halves_read_and_write_frames_from_different_tasks() {
    run(async {
        let (client, server) = pair().await;
        let (sr, sw) = server.into_split();
        let echo = kyoto_rt::spawn(async move {
            let mut rx = FramedRead::new(sr, LengthDelimitedCodec::default());
            let mut tx = FramedWrite::new(sw, LengthDelimitedCodec::default());
            let mut n = 0;
            while let Some(frame) = rx.next().await {
                let mut frame = frame.expect("frame");
                frame.reverse();
                tx.feed(frame).await.expect("feed");
                n += 1;
            }
            tx.close().await.expect("close");
            n
        });
        let (cr, cw) = client.into_split();
        let sender = kyoto_rt::spawn(async move {
            let mut tx = FramedWrite::new(cw, LengthDelimitedCodec::default());
            for i in 0..200u32 {
                tx.feed(i.to_be_bytes().to_vec()).await.expect("feed");
            }
            tx.close().await.expect("close");
        });
        let mut rx = FramedRead::new(cr, LengthDelimitedCodec::default());
        for i in 0..200u32 {
            let mut want = i.to_be_bytes().to_vec();
            want.reverse();
            assert_eq!(rx.next().await.transpose().expect("reply"), Some(want));
        }
        assert!(rx.next().await.is_none());
        sender.await.expect("sender task");
        assert_eq!(echo.await.expect("echo task"), 200);
    });
}

#[test]
fn into_parts_returns_the_undecoded_bytes() {
    run(async {
        let source = Source {
            data: b"one\ntwo\npartial".to_vec(),
            pos: 0,
        };
        let mut f = Framed::new(source, LinesCodec::new(64));
        assert_eq!(f.next().await.transpose().expect("one"), Some("one".into()));
        let parts = f.into_parts();
        assert_eq!(parts.read_buf, b"two\npartial");
        assert!(parts.write_buf.is_empty());
    });
}
