//! `duplex`: the in-memory pipe pair (short writes, EOF, BrokenPipe, shutdown, budget, bulk transfer).
mod common;
use common::run;
use kyoto_rt::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kyoto_rt::runtime::Builder;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

fn poll_write_once<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(w).poll_write(&mut cx, buf)
}

fn poll_read_once<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(r).poll_read(&mut cx, buf)
}

#[test]
fn a_write_accepts_only_the_free_space_and_is_pending_when_the_buffer_is_full() {
    let (mut a, mut b) = duplex(8);
    match poll_write_once(&mut a, b"0123456789abcdef") {
        Poll::Ready(Ok(n)) => assert_eq!(n, 8, "a short write of the free space"),
        other => panic!("expected a short write, got {other:?}"),
    }
    assert!(poll_write_once(&mut a, b"x").is_pending(), "full: pending");

    let mut buf = [0u8; 3];
    assert!(matches!(
        poll_read_once(&mut b, &mut buf),
        Poll::Ready(Ok(3))
    ));
    assert_eq!(&buf, b"012");
    match poll_write_once(&mut a, b"XYZW") {
        Poll::Ready(Ok(n)) => assert_eq!(n, 3, "only the 3 freed bytes fit"),
        other => panic!("expected a short write, got {other:?}"),
    }
    let mut rest = [0u8; 16];
    match poll_read_once(&mut b, &mut rest) {
        Poll::Ready(Ok(n)) => assert_eq!(&rest[..n], b"34567XYZ"),
        other => panic!("expected the buffered bytes, got {other:?}"),
    }
}

#[test]
fn a_writer_blocked_on_a_full_buffer_resumes_when_the_reader_makes_room() {
    run(async {
        let (mut a, mut b) = duplex(4);
        let writer = kyoto_rt::spawn(async move {
            a.write_all(b"abcdefghij").await.expect("write_all");
            a
        });
        let mut got = [0u8; 10];
        b.read_exact(&mut got).await.expect("read_exact");
        assert_eq!(&got, b"abcdefghij");
        drop(writer.await.expect("writer task"));
    });
}

#[test]
fn reads_drain_the_buffer_then_return_eof_after_the_peer_is_dropped() {
    run(async {
        let (mut a, mut b) = duplex(64);
        a.write_all(b"last words").await.expect("write");
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read_to_end");
        assert_eq!(got, b"last words");
        let mut buf = [0u8; 4];
        assert_eq!(b.read(&mut buf).await.expect("read after eof"), 0);
    });
}

#[test]
fn a_reader_waiting_for_data_sees_eof_when_the_peer_is_dropped() {
    run(async {
        let (a, mut b) = duplex(64);
        let reader = kyoto_rt::spawn(async move {
            let mut buf = [0u8; 4];
            b.read(&mut buf).await
        });
        kyoto_rt::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert_eq!(reader.await.expect("reader task").expect("read"), 0);
    });
}

#[test]
fn writing_to_a_dropped_peer_fails_with_broken_pipe() {
    run(async {
        let (mut a, b) = duplex(64);
        drop(b);
        let err = a.write(b"hello").await.expect_err("peer is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn a_writer_blocked_on_a_full_buffer_gets_broken_pipe_when_the_peer_is_dropped() {
    run(async {
        let (mut a, b) = duplex(4);
        let writer = kyoto_rt::spawn(async move { a.write_all(b"more than four").await });
        kyoto_rt::time::sleep(Duration::from_millis(20)).await;
        drop(b);
        let err = writer
            .await
            .expect("writer task")
            .expect_err("peer is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn shutdown_makes_the_peer_read_eof_while_the_other_direction_keeps_working() {
    run(async {
        let (mut a, mut b) = duplex(64);
        a.write_all(b"req").await.expect("write");
        a.shutdown().await.expect("shutdown");
        a.shutdown().await.expect("shutdown is idempotent");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read_to_end");
        assert_eq!(got, b"req");

        let err = a.write(b"x").await.expect_err("write after shutdown");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);

        b.write_all(b"resp").await.expect("reply");
        drop(b);
        let mut reply = Vec::new();
        a.read_to_end(&mut reply).await.expect("read reply");
        assert_eq!(reply, b"resp");
    });
}

#[test]
fn a_mebibyte_through_a_64_byte_duplex_arrives_intact() {
    run(async {
        let (mut a, mut b) = duplex(64);
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
        let expected = data.clone();
        let writer = kyoto_rt::spawn(async move {
            a.write_all(&data).await.expect("write_all");
            a.shutdown().await.expect("shutdown");
        });
        // A fixed buffer rather than `read_to_end`, whose per-read zeroing of spare capacity is
        // slow in debug builds when every read returns 64 bytes.
        let mut got = Vec::with_capacity(expected.len());
        let mut buf = [0u8; 4096];
        loop {
            let n = b.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            assert!(n <= 64, "never more than the 64-byte buffer at once");
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.expect("writer task");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived intact and in order");
    });
}

#[test]
fn split_halves_read_and_write_from_different_tasks() {
    run(async {
        let (a, b) = duplex(16);
        let (mut ra, mut wa) = a.into_split();
        let echo = kyoto_rt::spawn(async move { kyoto_rt::io::copy(&mut ra, &mut wa).await });
        let payload: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let (mut rb, mut wb) = b.into_split();
        let send = payload.clone();
        let writer = kyoto_rt::spawn(async move {
            wb.write_all(&send).await.expect("write");
            // Dropping the write half shuts it down: the echo sees EOF and finishes.
        });
        let mut got = Vec::new();
        rb.read_to_end(&mut got).await.expect("read echo");
        writer.await.expect("writer task");
        assert_eq!(echo.await.expect("echo task").expect("copy"), 4096);
        assert_eq!(got, payload);
    });
}

#[test]
fn a_task_looping_on_an_always_ready_duplex_still_lets_other_tasks_run() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let other = kyoto_rt::spawn(async move { set.store(true, Ordering::SeqCst) });
        let busy = kyoto_rt::spawn(async move {
            let (mut a, mut b) = duplex(64);
            let mut byte = [0u8; 1];
            for i in 0..1_000_000u32 {
                if flag.load(Ordering::SeqCst) {
                    return Some(i);
                }
                // Both operations are always ready: only the budget makes this task yield.
                a.write_all(b"x").await.expect("write");
                b.read_exact(&mut byte).await.expect("read");
            }
            None
        });
        let yielded_after = busy.await.expect("busy task");
        other.await.expect("other task");
        let n = yielded_after.expect("the other task ran while the loop was busy");
        assert!(n <= 1_000, "yielded after {n} iterations");
    });
}
