//! UDP on loopback: send/recv, connect filtering, peek, truncation, ICMP errors, batches, options.
mod common;
use common::run;
use kyoto_rt::net::{RecvBatch, RecvMeta, SendMsg, UdpSocket};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

async fn bound() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("local_addr");
    (socket, addr)
}

#[test]
fn send_to_and_recv_from_carry_a_datagram_and_its_sender() {
    run(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        assert_eq!(a.send_to(b"hi there", b_addr).await.expect("send_to"), 8);
        let mut buf = [0u8; 64];
        let (n, from) = b.recv_from(&mut buf).await.expect("recv_from");
        assert_eq!(&buf[..n], b"hi there");
        assert_eq!(from, a_addr);
    });
}

#[test]
fn a_connected_udp_socket_ignores_other_senders() {
    run(async {
        let (receiver, r_addr) = bound().await;
        let (peer, p_addr) = bound().await;
        let (stranger, _) = bound().await;
        receiver.connect(p_addr).await.expect("connect");
        assert_eq!(receiver.peer_addr().expect("peer_addr"), p_addr);
        stranger
            .send_to(b"from a stranger", r_addr)
            .await
            .expect("stranger send");
        peer.send_to(b"from the peer", r_addr)
            .await
            .expect("peer send");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"from the peer");
        // Nothing else is queued: the stranger's datagram was dropped by the kernel.
        let err = receiver.try_recv(&mut buf).expect_err("nothing more");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // send() goes to the peer.
        receiver.send(b"reply").await.expect("send");
        let (n, from) = peer.recv_from(&mut buf).await.expect("peer recv");
        assert_eq!((&buf[..n], from), (&b"reply"[..], r_addr));
    });
}

#[test]
fn peek_from_twice_returns_the_same_datagram_and_recv_from_then_consumes_it() {
    run(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        a.send_to(b"first", b_addr).await.expect("send 1");
        a.send_to(b"second", b_addr).await.expect("send 2");
        let mut buf = [0u8; 32];
        let (n1, from1) = b.peek_from(&mut buf).await.expect("peek 1");
        assert_eq!((&buf[..n1], from1), (&b"first"[..], a_addr));
        let (n2, from2) = b.peek_from(&mut buf).await.expect("peek 2");
        assert_eq!((&buf[..n2], from2), (&b"first"[..], a_addr));
        assert_eq!(b.peek_sender().await.expect("peek_sender"), a_addr);
        let (n, _) = b.recv_from(&mut buf).await.expect("recv 1");
        assert_eq!(&buf[..n], b"first");
        let (n, _) = b.recv_from(&mut buf).await.expect("recv 2");
        assert_eq!(&buf[..n], b"second");

        b.connect(a_addr).await.expect("connect");
        a.send_to(b"third", b_addr).await.expect("send 3");
        let n = b.peek(&mut buf).await.expect("peek");
        assert_eq!(&buf[..n], b"third");
        let n = b.recv(&mut buf).await.expect("recv 3");
        assert_eq!(&buf[..n], b"third");
    });
}

#[test]
fn sending_to_a_closed_udp_port_surfaces_econnrefused_on_a_later_recv() {
    run(async {
        let (gone, gone_addr) = bound().await;
        drop(gone);
        let (socket, _) = bound().await;
        socket.connect(gone_addr).await.expect("connect");
        socket.send(b"anyone?").await.expect("send");
        let mut buf = [0u8; 16];
        let err = socket.recv(&mut buf).await.expect_err("port unreachable");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        #[cfg(unix)]
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    });
}

#[test]
fn an_oversize_datagram_is_truncated_and_its_excess_discarded() {
    run(async {
        let (a, _) = bound().await;
        let (b, b_addr) = bound().await;
        let big = [7u8; 100];
        a.send_to(&big, b_addr).await.expect("send big");
        a.send_to(b"next", b_addr).await.expect("send next");
        let mut small = [0u8; 10];
        let (n, _) = b.recv_from(&mut small).await.expect("recv big");
        assert_eq!(n, 10);
        assert_eq!(small, [7u8; 10]);
        let mut buf = [0u8; 100];
        let (n, _) = b.recv_from(&mut buf).await.expect("recv next");
        assert_eq!(&buf[..n], b"next", "the excess 90 bytes are gone");
    });
}

#[test]
fn recv_many_and_send_many_round_trip_64_datagrams() {
    run(async {
        let (sender, s_addr) = bound().await;
        let (receiver, r_addr) = bound().await;
        receiver
            .set_recv_buffer_size(1 << 20)
            .expect("a big enough receive buffer");
        let payloads: Vec<Vec<u8>> = (0..64u32)
            .map(|i| format!("datagram {i:02}").into_bytes())
            .collect();
        let msgs: Vec<SendMsg<'_>> = payloads.iter().map(|p| SendMsg::to(p, r_addr)).collect();
        let mut sent = 0;
        while sent < msgs.len() {
            let n = sender.send_many(&msgs[sent..]).await.expect("send_many");
            assert!(n > 0);
            sent += n;
        }

        let mut storage = vec![[0u8; 64]; 64];
        let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
        let mut meta = vec![RecvMeta::default(); 64];
        let mut received: Vec<Vec<u8>> = Vec::new();
        while received.len() < 64 {
            let n = receiver
                .recv_many(&mut bufs, &mut meta)
                .await
                .expect("recv_many");
            assert!(n > 0);
            for i in 0..n {
                assert_eq!(meta[i].addr, s_addr);
                assert!(!meta[i].truncated);
                received.push(bufs[i][..meta[i].len].to_vec());
            }
        }
        assert_eq!(received, payloads);
    });
}

#[test]
fn recv_batch_reuses_one_arena_and_flags_truncation() {
    run(async {
        let (sender, s_addr) = bound().await;
        let (receiver, r_addr) = bound().await;
        sender.connect(r_addr).await.expect("connect");
        let long = [1u8; 40];
        let msgs = [
            SendMsg::connected(b"one"),
            SendMsg::connected(&long),
            SendMsg::to(b"three", r_addr),
        ];
        let mut sent = 0;
        while sent < msgs.len() {
            sent += sender.send_many(&msgs[sent..]).await.expect("send_many");
        }
        let mut batch = RecvBatch::new(8, 16);
        assert_eq!(batch.capacity(), 8);
        let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
        while got.len() < 3 {
            let n = receiver.recv_batch(&mut batch).await.expect("recv_batch");
            assert_eq!(n, batch.len());
            for (data, meta) in batch.iter() {
                assert_eq!(meta.addr, s_addr);
                got.push((data.to_vec(), meta.truncated));
            }
        }
        assert_eq!(got[0].0, b"one");
        assert_eq!(got[1].0, vec![1u8; 16], "cut to the slot size");
        assert_eq!(got[2].0, b"three");
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert_eq!(
                got.iter().map(|g| g.1).collect::<Vec<_>>(),
                [false, true, false]
            );
        }
    });
}

#[test]
fn try_recv_many_would_block_when_nothing_is_queued() {
    run(async {
        let (receiver, _) = bound().await;
        let mut storage = [[0u8; 8]; 2];
        let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
        let mut meta = [RecvMeta::default(); 2];
        let err = receiver
            .try_recv_many(&mut bufs, &mut meta)
            .expect_err("empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            receiver
                .recv_many(&mut [], &mut meta)
                .await
                .expect("no buffers"),
            0
        );
    });
}

#[test]
fn several_tasks_waiting_on_one_socket_are_all_served() {
    run(async {
        let (receiver, r_addr) = bound().await;
        let receiver = Arc::new(receiver);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let receiver = receiver.clone();
            tasks.push(kyoto_rt::spawn(async move {
                let mut buf = [0u8; 8];
                receiver.recv(&mut buf).await.map(|n| buf[..n].to_vec())
            }));
        }
        // Let every task reach its wait before anything arrives.
        kyoto_rt::time::sleep(Duration::from_millis(50)).await;
        let (sender, _) = bound().await;
        for i in 0..4u8 {
            sender.send_to(&[i], r_addr).await.expect("send");
        }
        let mut got = Vec::new();
        for task in tasks {
            got.extend(task.await.expect("task").expect("recv"));
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
    });
}

#[test]
fn broadcast_ttl_and_multicast_options_can_be_set_and_read_back() {
    run(async {
        let (socket, _) = bound().await;
        socket.set_broadcast(true).expect("set_broadcast");
        assert!(socket.broadcast().expect("broadcast"));
        socket.set_ttl(7).expect("set_ttl");
        assert_eq!(socket.ttl().expect("ttl"), 7);
        socket.set_multicast_loop_v4(false).expect("loop v4");
        assert!(!socket.multicast_loop_v4().expect("loop v4?"));
        socket.set_multicast_ttl_v4(3).expect("mcast ttl");
        assert_eq!(socket.multicast_ttl_v4().expect("mcast ttl?"), 3);
    });
}

#[test]
fn a_multicast_group_joined_on_loopback_receives_its_datagrams() {
    run(async {
        let group = Ipv4Addr::new(239, 255, 42, 99);
        let receiver = UdpSocket::bind("0.0.0.0:0").await.expect("bind any");
        let port = receiver.local_addr().expect("addr").port();
        if receiver
            .join_multicast_v4(group, Ipv4Addr::LOCALHOST)
            .is_err()
        {
            // No multicast on this host's loopback interface: nothing to test.
            return;
        }
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind sender");
        sender.set_multicast_loop_v4(true).expect("loop");
        sender.set_multicast_ttl_v4(1).expect("ttl");
        // Sent from a loopback-bound socket, so the datagram goes out (and loops back) on `lo`.
        let target = SocketAddr::from((group, port));
        if sender.send_to(b"to the group", target).await.is_err() {
            return;
        }
        let mut buf = [0u8; 32];
        // Some sandboxes route multicast nowhere (then only the join and leave are checked).
        if let Ok(Ok((n, _))) =
            kyoto_rt::time::timeout(Duration::from_secs(2), receiver.recv_from(&mut buf)).await
        {
            assert_eq!(&buf[..n], b"to the group");
        }
        receiver
            .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
            .expect("leave");
    });
}

#[test]
fn udp_over_ipv6_loopback_works_when_the_host_has_it() {
    run(async {
        let a = match UdpSocket::bind("[::1]:0").await {
            Ok(s) => s,
            Err(_) => return,
        };
        let b = UdpSocket::bind("[::1]:0").await.expect("second v6 socket");
        let b_addr = b.local_addr().expect("addr");
        a.send_to(b"v6", b_addr).await.expect("send");
        let mut buf = [0u8; 4];
        let (n, from) = b.recv_from(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"v6");
        assert_eq!(from, a.local_addr().expect("a addr"));
        a.set_multicast_loop_v6(true).expect("loop v6");
        assert!(a.multicast_loop_v6().expect("loop v6?"));
    });
}

#[test]
fn a_port_unreachable_error_wakes_a_receiver_of_a_socket_polled_for_reading_only() {
    // UDP sockets are registered for writability only after a write would block: the error event
    // of an ICMP "port unreachable" must still reach a waiting receive (current-thread runtime).
    let rt = kyoto_rt::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    rt.block_on(async {
        kyoto_rt::time::timeout(common::LIMIT, async {
            let (gone, gone_addr) = bound().await;
            drop(gone);
            let (socket, _) = bound().await;
            socket.connect(gone_addr).await.expect("connect");
            socket.try_send(b"anyone?").expect("send");
            let mut buf = [0u8; 16];
            let err = socket.recv(&mut buf).await.expect_err("port unreachable");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        })
        .await
        .expect("in time");
    });
}
