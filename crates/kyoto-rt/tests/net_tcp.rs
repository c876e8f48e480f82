//! TCP on loopback: connect/accept/echo, shutdown semantics, split halves, options and error kinds.
use kyoto_rt::io::{copy, AsyncReadExt, AsyncWriteExt, Interest};
use kyoto_rt::net::{TcpListener, TcpSocket, TcpStream};
use kyoto_rt::runtime::Builder;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::time::Duration;

/// Every test body runs under this bound so a bug hangs no CI run.
const LIMIT: Duration = Duration::from_secs(20);

fn current_thread() -> kyoto_rt::Runtime {
    Builder::new_current_thread()
        .build()
        .expect("build a current-thread runtime")
}

fn multi_thread() -> kyoto_rt::Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a multi-thread runtime")
}

fn run<F: std::future::Future>(rt: &kyoto_rt::Runtime, f: F) -> F::Output {
    rt.block_on(async {
        kyoto_rt::time::timeout(LIMIT, f)
            .await
            .expect("the test finished within its time limit")
    })
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    (listener, addr)
}

/// A connected (client, server) pair.
async fn pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener().await;
    let accept = kyoto_rt::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let client = TcpStream::connect(addr).await.expect("connect");
    let server = accept.await.expect("accept task").expect("accept");
    (client, server)
}

async fn echo_round_trip() {
    let (listener, addr) = listener().await;
    let server = kyoto_rt::spawn(async move {
        let (mut stream, peer) = listener.accept().await?;
        assert_eq!(stream.peer_addr()?, peer);
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return io::Result::Ok(());
            }
            stream.write_all(&buf[..n]).await?;
        }
    });
    let mut client = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(client.peer_addr().expect("peer_addr"), addr);
    for round in 0..50u32 {
        let msg = format!("message number {round}");
        client.write_all(msg.as_bytes()).await.expect("write_all");
        let mut back = vec![0u8; msg.len()];
        client.read_exact(&mut back).await.expect("read_exact");
        assert_eq!(back, msg.as_bytes());
    }
    client.shutdown().await.expect("shutdown");
    server.await.expect("server task").expect("server io");
}

#[test]
fn a_client_connects_and_the_server_echoes_its_bytes_on_a_current_thread_runtime() {
    run(&current_thread(), echo_round_trip());
}

#[test]
fn a_client_connects_and_the_server_echoes_its_bytes_on_a_multi_thread_runtime() {
    run(&multi_thread(), echo_round_trip());
}

#[test]
fn client_shutdown_ends_the_servers_copy_and_the_client_then_reads_eof() {
    run(&multi_thread(), async {
        let (listener, addr) = listener().await;
        let server = kyoto_rt::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let (mut r, mut w) = stream.split();
            let copied = copy(&mut r, &mut w).await?;
            // Dropping the stream closes it: the client sees end of stream after the echo.
            io::Result::Ok(copied)
        });
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        client.shutdown().await.expect("shutdown");
        let copied = server.await.expect("server task").expect("server copy");
        assert_eq!(copied, 5);
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.expect("read_to_end");
        assert_eq!(echoed, b"hello");
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).await.expect("read at eof"), 0);
    });
}

#[test]
fn three_shutdown_calls_all_succeed() {
    run(&current_thread(), async {
        let (mut client, mut server) = pair().await;
        client.shutdown().await.expect("first shutdown");
        client.shutdown().await.expect("second shutdown");
        client.shutdown().await.expect("third shutdown");
        let mut buf = [0u8; 4];
        assert_eq!(server.read(&mut buf).await.expect("server read"), 0);
        // The read direction still works after shutting down writes.
        server.write_all(b"late").await.expect("server write");
        client.read_exact(&mut buf).await.expect("client read");
        assert_eq!(&buf, b"late");
    });
}

#[test]
fn dropping_the_owned_write_half_sends_fin_and_the_read_half_keeps_working() {
    run(&multi_thread(), async {
        let (client, mut server) = pair().await;
        let (mut read_half, write_half) = client.into_split();
        drop(write_half);
        let mut buf = [0u8; 16];
        assert_eq!(
            server.read(&mut buf).await.expect("server read"),
            0,
            "a FIN"
        );
        server.write_all(b"still here").await.expect("server write");
        let mut got = [0u8; 10];
        read_half.read_exact(&mut got).await.expect("read half");
        assert_eq!(&got, b"still here");
    });
}

#[test]
fn forgetting_the_owned_write_half_does_not_send_fin() {
    run(&current_thread(), async {
        let (client, mut server) = pair().await;
        let (read_half, write_half) = client.into_split();
        write_half.forget();
        let mut buf = [0u8; 1];
        let waited =
            kyoto_rt::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
        assert!(
            waited.is_err(),
            "no FIN and no data: the read is still pending"
        );
        drop(read_half);
        assert_eq!(server.read(&mut buf).await.expect("read after close"), 0);
    });
}

#[test]
fn owned_halves_work_in_separate_tasks_and_reunite() {
    run(&multi_thread(), async {
        let (client, mut server) = pair().await;
        let (mut r, mut w) = client.into_split();
        let writer = kyoto_rt::spawn(async move {
            w.write_all(b"ping").await?;
            io::Result::Ok(w)
        });
        let reader = kyoto_rt::spawn(async move {
            let mut buf = [0u8; 4];
            r.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"pong");
            io::Result::Ok(r)
        });
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.expect("server read");
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.expect("server write");
        let w = writer.await.expect("writer task").expect("writer io");
        let r = reader.await.expect("reader task").expect("reader io");
        let stream = r.reunite(w).expect("the halves belong together");
        assert!(stream.peer_addr().is_ok());

        let (c2, _s2) = pair().await;
        let (r1, _w1) = stream.into_split();
        let (_r2, w2) = c2.into_split();
        assert!(r1.reunite(w2).is_err(), "halves of different streams");
    });
}

#[test]
fn read_exact_reports_unexpected_eof_and_read_to_end_collects_everything() {
    run(&current_thread(), async {
        let (mut client, mut server) = pair().await;
        server.write_all(b"abc").await.expect("write");
        server.shutdown().await.expect("shutdown");
        let mut buf = [0u8; 8];
        let err = client
            .read_exact(&mut buf)
            .await
            .expect_err("only 3 bytes came");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let (mut client, mut server) = pair().await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = kyoto_rt::spawn(async move {
            server.write_all(&data).await?;
            server.shutdown().await
        });
        let mut all = Vec::new();
        let n = client.read_to_end(&mut all).await.expect("read_to_end");
        assert_eq!(n, expected.len());
        assert_eq!(all, expected);
        writer.await.expect("writer task").expect("writer io");
    });
}

#[test]
fn vectored_reads_and_writes_move_all_slices() {
    run(&current_thread(), async {
        let (mut client, mut server) = pair().await;
        let n = client
            .write_vectored(&[IoSlice::new(b"abc"), IoSlice::new(b"defg")])
            .await
            .expect("write_vectored");
        assert_eq!(n, 7);
        let mut a = [0u8; 2];
        let mut b = [0u8; 5];
        let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        // One 7-byte write on loopback arrives as one segment, so one read takes it all.
        let n = server
            .read_vectored(&mut bufs)
            .await
            .expect("read_vectored");
        assert_eq!(n, 7);
        assert_eq!(&a, b"ab");
        assert_eq!(&b, b"cdefg");
    });
}

#[test]
fn peek_leaves_the_bytes_for_the_next_read() {
    run(&current_thread(), async {
        let (mut client, server) = pair().await;
        client.write_all(b"peekaboo").await.expect("write");
        let mut buf = [0u8; 8];
        let mut seen = 0;
        while seen < 8 {
            seen = server.peek(&mut buf).await.expect("peek");
        }
        assert_eq!(&buf, b"peekaboo");
        let (mut r, _w) = server.into_split();
        let mut again = [0u8; 8];
        r.read_exact(&mut again).await.expect("read");
        assert_eq!(&again, b"peekaboo");
    });
}

#[test]
fn try_read_and_try_write_follow_the_cached_readiness() {
    run(&current_thread(), async {
        let (client, server) = pair().await;
        let mut buf = [0u8; 16];
        let err = server.try_read(&mut buf).expect_err("nothing sent yet");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        client.writable().await.expect("writable");
        assert_eq!(client.try_write(b"xyz").expect("try_write"), 3);

        let mut got = 0;
        for _ in 0..100 {
            let ready = server
                .ready(Interest::READABLE | Interest::WRITABLE)
                .await
                .expect("ready");
            if !ready.is_readable() {
                // Only writable so far: let the driver report the data (`ready` does not wait
                // while the socket is writable).
                kyoto_rt::task::yield_now().await;
                continue;
            }
            match server.try_read(&mut buf[got..]) {
                Ok(n) => {
                    got += n;
                    if got == 3 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("try_read failed: {e}"),
            }
        }
        assert_eq!(&buf[..3], b"xyz");
    });
}

#[test]
fn stream_options_can_be_set_and_read_back() {
    run(&current_thread(), async {
        let (client, _server) = pair().await;
        client.set_nodelay(true).expect("set_nodelay");
        assert!(client.nodelay().expect("nodelay"));
        client.set_ttl(42).expect("set_ttl");
        assert_eq!(client.ttl().expect("ttl"), 42);
        client.set_keepalive(true).expect("set_keepalive");
        assert!(client.keepalive().expect("keepalive"));
        client
            .set_keepalive_idle(Duration::from_secs(30))
            .expect("set_keepalive_idle");
        client
            .set_linger(Some(Duration::from_secs(1)))
            .expect("set_linger");
        assert_eq!(
            client.linger().expect("linger"),
            Some(Duration::from_secs(1))
        );
        assert!(client.local_addr().expect("local_addr").ip().is_loopback());
    });
}

#[test]
fn a_tcp_socket_configured_first_listens_and_connects() {
    run(&current_thread(), async {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        assert!(socket.reuseaddr().expect("reuseaddr?"));
        #[cfg(unix)]
        socket.set_reuseport(true).expect("reuseport");
        socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
        socket.set_send_buffer_size(64 * 1024).expect("sndbuf");
        assert!(socket.recv_buffer_size().expect("rcvbuf?") > 0);
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let addr = socket.local_addr().expect("local_addr");
        let listener = socket.listen(16).expect("listen");
        assert_eq!(listener.local_addr().expect("listener addr"), addr);
        listener.set_ttl(60).expect("listener ttl");
        assert_eq!(listener.ttl().expect("ttl?"), 60);

        let accept = kyoto_rt::spawn(async move { listener.accept().await });
        let client_socket = TcpSocket::new_v4().expect("client socket");
        client_socket.set_nodelay(true).expect("nodelay");
        client_socket.set_keepalive(true).expect("keepalive");
        client_socket.set_linger(None).expect("linger");
        let mut client = client_socket.connect(addr).await.expect("connect");
        let (mut server, peer) = accept.await.expect("accept task").expect("accept");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        client.write_all(b"via TcpSocket").await.expect("write");
        let mut buf = [0u8; 13];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"via TcpSocket");
    });
}

#[test]
fn ipv6_loopback_works_when_the_host_has_it() {
    run(&current_thread(), async {
        let listener = match TcpListener::bind("[::1]:0").await {
            Ok(l) => l,
            // A host without IPv6 (some containers): nothing to test.
            Err(_) => return,
        };
        let addr = listener.local_addr().expect("addr");
        let accept = kyoto_rt::spawn(async move { listener.accept().await });
        let socket = TcpSocket::new_v6().expect("v6 socket");
        let mut client = socket.connect(addr).await.expect("connect");
        let (mut server, _) = accept.await.expect("task").expect("accept");
        client.write_all(b"six").await.expect("write");
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"six");
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused_with_econnrefused() {
    run(&current_thread(), async {
        let (l, addr) = listener().await;
        drop(l);
        let err = TcpStream::connect(addr).await.expect_err("nobody listens");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        #[cfg(unix)]
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    });
}

#[test]
fn binding_an_address_in_use_fails_with_eaddrinuse() {
    run(&current_thread(), async {
        let (_l, addr) = listener().await;
        let err = TcpListener::bind(addr)
            .await
            .expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        #[cfg(unix)]
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    });
}

#[test]
fn connect_tries_each_resolved_address_and_returns_the_last_error() {
    run(&current_thread(), async {
        let (l1, closed) = listener().await;
        drop(l1);
        let (l2, open) = listener().await;
        let accept = kyoto_rt::spawn(async move { l2.accept().await });
        let addrs = [closed, open];
        let stream = TcpStream::connect(&addrs[..])
            .await
            .expect("second address");
        assert_eq!(stream.peer_addr().expect("peer"), open);
        accept.await.expect("task").expect("accept");

        let err = TcpStream::connect(&[closed][..])
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let none: &[SocketAddr] = &[];
        let err = TcpStream::connect(none).await.expect_err("no address");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn std_streams_convert_in_and_out() {
    let rt = current_thread();
    run(&rt, async {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("std bind");
        let addr = std_listener.local_addr().expect("addr");
        let listener = TcpListener::from_std(std_listener).expect("from_std");
        let accept = kyoto_rt::spawn(async move { listener.accept().await });
        let std_client = std::net::TcpStream::connect(addr).expect("std connect");
        let mut client = TcpStream::from_std(std_client).expect("from_std");
        let (server, _) = accept.await.expect("task").expect("accept");
        client.write_all(b"std").await.expect("write");
        let mut std_server = server.into_std().expect("into_std");
        std_server.set_nonblocking(false).expect("blocking");
        let mut buf = [0u8; 3];
        std::io::Read::read_exact(&mut std_server, &mut buf).expect("blocking read");
        assert_eq!(&buf, b"std");
    });
}

#[test]
fn creating_a_socket_outside_a_runtime_is_an_error_not_a_panic() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("std bind");
    let err = TcpListener::from_std(std_listener).expect_err("no runtime entered");
    assert_eq!(err.kind(), io::ErrorKind::Other);
    let std_udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("std udp");
    assert!(kyoto_rt::net::UdpSocket::from_std(std_udp).is_err());
    assert!(TcpSocket::new_v4()
        .expect("a plain socket needs no runtime")
        .listen(1)
        .is_err());
}
