//! Unix-domain sockets: stream pairs, listeners on a path, peer credentials, datagrams.
#![cfg(unix)]
mod common;
use common::run;
use kyoto_rt::io::{copy, AsyncReadExt, AsyncWriteExt};
use kyoto_rt::net::{UnixDatagram, UnixListener, UnixStream};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh socket path in the temp dir, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("kyoto-{tag}-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_unix_stream_pair_echoes_and_reports_the_peers_credentials() {
    run(async {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let echo = kyoto_rt::spawn(async move {
            let (mut r, mut w) = b.into_split();
            copy(&mut r, &mut w).await
        });
        a.write_all(b"over a socketpair").await.expect("write");
        let mut buf = [0u8; 17];
        a.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"over a socketpair");
        a.shutdown().await.expect("shutdown");
        assert_eq!(echo.await.expect("task").expect("copy"), 17);
        assert_eq!(a.read(&mut buf).await.expect("eof"), 0);

        let cred = a.peer_cred().expect("peer_cred");
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!(cred.uid(), uid);
        assert_eq!(cred.gid(), gid);
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert_eq!(cred.pid(), Some(std::process::id() as i32));
        }
    });
}

#[test]
fn a_unix_listener_accepts_a_connection_made_by_path() {
    run(async {
        let path = TempPath::new("listener");
        let listener = UnixListener::bind(&path.0).expect("bind");
        assert_eq!(
            listener.local_addr().expect("addr").as_pathname(),
            Some(path.0.as_path())
        );
        let server = kyoto_rt::spawn(async move {
            let (mut stream, _addr) = listener.accept().await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            stream.write_all(&buf).await?;
            io::Result::Ok(buf)
        });
        let client = UnixStream::connect(&path.0).await.expect("connect");
        let (mut r, mut w) = client.into_split();
        w.write_all(b"by path").await.expect("write");
        drop(w); // FIN: the server's read_to_end completes.
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.expect("read back");
        assert_eq!(back, b"by path");
        assert_eq!(server.await.expect("task").expect("server"), b"by path");
    });
}

#[test]
fn binding_an_existing_unix_path_fails_with_eaddrinuse_and_connecting_to_none_fails() {
    run(async {
        let path = TempPath::new("inuse");
        let _listener = UnixListener::bind(&path.0).expect("bind");
        let err = UnixListener::bind(&path.0).expect_err("the path exists");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));

        let missing = TempPath::new("missing");
        let err = UnixStream::connect(&missing.0)
            .await
            .expect_err("nothing there");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    });
}

#[test]
fn a_unix_datagram_pair_exchanges_datagrams_both_ways() {
    run(async {
        let (a, b) = UnixDatagram::pair().expect("pair");
        assert_eq!(a.send(b"ping").await.expect("send"), 4);
        let mut buf = [0u8; 16];
        let n = b.recv(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"ping");
        b.send(b"pong!").await.expect("send back");
        let n = a.recv(&mut buf).await.expect("recv back");
        assert_eq!(&buf[..n], b"pong!");
        let err = a.try_recv(&mut buf).expect_err("empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    });
}

#[test]
fn a_datagram_sender_blocked_by_a_full_send_buffer_resumes_when_the_peer_reads() {
    // A datagram socket is polled for writability only after a write would block (the reactor's
    // deferred write interest): the blocked sender must still be woken once the peer reads.
    run(async {
        let (a, b) = UnixDatagram::pair().expect("pair");
        let payload = [7u8; 1024];
        let mut queued = 0usize;
        loop {
            match a.try_send(&payload) {
                Ok(n) => {
                    assert_eq!(n, payload.len());
                    queued += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
            assert!(queued < 100_000, "the send buffer never filled");
        }
        assert!(queued > 0);
        let a = std::sync::Arc::new(a);
        let sender = {
            let a = a.clone();
            kyoto_rt::spawn(async move {
                for _ in 0..3 {
                    a.send(b"after the wait")
                        .await
                        .expect("send after the wait");
                }
            })
        };
        // Give the sender time to hit `WouldBlock` and park before the peer drains.
        kyoto_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !sender.is_finished(),
            "the send buffer should still be full"
        );
        let mut buf = [0u8; 2048];
        for _ in 0..queued {
            let n = b.recv(&mut buf).await.expect("recv a queued datagram");
            assert_eq!(n, payload.len());
        }
        sender.await.expect("the sender finished");
        for _ in 0..3 {
            let n = b.recv(&mut buf).await.expect("recv a later datagram");
            assert_eq!(&buf[..n], b"after the wait");
        }
    });
}

/// Fills `w`'s send path until a write would block, then has a task write `more` bytes (which
/// must wait), and checks that `r` reads everything once it starts draining.
async fn blocked_writer_resumes_when_the_reader_drains(w: UnixStream, mut r: UnixStream) {
    let chunk = [5u8; 16 * 1024];
    let mut queued = 0usize;
    loop {
        match w.try_write(&chunk) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(queued < 64 << 20, "the send buffer never filled");
    }
    assert!(queued > 0);
    let more = 256 * 1024;
    let writer = kyoto_rt::spawn(async move {
        let mut w = w;
        w.write_all(&vec![6u8; more])
            .await
            .expect("write after the wait");
        w
    });
    // Give the writer time to hit `WouldBlock` and park before the peer drains.
    kyoto_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !writer.is_finished(),
        "the send buffer should still be full"
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < queued + more {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "early EOF after {got} bytes");
        got += n;
    }
    assert_eq!(got, queued + more);
    drop(writer.await.expect("the writer finished"));
}

#[test]
fn a_unix_stream_writer_blocked_by_a_full_buffer_resumes_when_the_peer_reads() {
    // Unix streams are polled for writability only after a write would block (the reactor's
    // deferred write interest): a blocked writer must still be woken once its peer reads, on a
    // pair, on a connected stream and on an accepted one.
    run(async {
        let (a, b) = UnixStream::pair().expect("pair");
        blocked_writer_resumes_when_the_reader_drains(a, b).await;

        let path = TempPath::new("blocked");
        let listener = UnixListener::bind(&path.0).expect("bind");
        let client = UnixStream::connect(&path.0).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        blocked_writer_resumes_when_the_reader_drains(client, server).await;

        let client = UnixStream::connect(&path.0).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        blocked_writer_resumes_when_the_reader_drains(server, client).await;
    });
}

#[test]
fn unbound_and_bound_unix_datagram_sockets_talk_by_path() {
    run(async {
        let server_path = TempPath::new("dgram-server");
        let client_path = TempPath::new("dgram-client");
        let server = UnixDatagram::bind(&server_path.0).expect("bind server");
        let anonymous = UnixDatagram::unbound().expect("unbound");
        anonymous
            .send_to(b"anonymous", &server_path.0)
            .await
            .expect("send_to");
        let mut buf = [0u8; 32];
        let (n, from) = server.recv_from(&mut buf).await.expect("recv_from");
        assert_eq!(&buf[..n], b"anonymous");
        assert!(from.is_unnamed());

        let client = UnixDatagram::bind(&client_path.0).expect("bind client");
        client.connect(&server_path.0).expect("connect");
        client.send(b"named").await.expect("send");
        let (n, from) = server.recv_from(&mut buf).await.expect("recv_from");
        assert_eq!(&buf[..n], b"named");
        assert_eq!(from.as_pathname(), Some(client_path.0.as_path()));
        server
            .send_to(b"reply", &client_path.0)
            .await
            .expect("reply");
        let n = client.recv(&mut buf).await.expect("recv reply");
        assert_eq!(&buf[..n], b"reply");
        assert_eq!(
            client.peer_addr().expect("peer").as_pathname(),
            Some(server_path.0.as_path())
        );
    });
}

#[test]
fn unix_streams_convert_to_and_from_std() {
    run(async {
        let (std_a, std_b) = std::os::unix::net::UnixStream::pair().expect("std pair");
        let mut a = UnixStream::from_std(std_a).expect("from_std");
        let mut b = UnixStream::from_std(std_b).expect("from_std");
        a.write_all(b"std").await.expect("write");
        let mut buf = [0u8; 3];
        b.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"std");
        let std_again = a.into_std().expect("into_std");
        assert!(std_again.peer_addr().is_ok());
    });
}
