//! The reactor: registrations dropped while events are in flight, shutdown, the coop budget, metrics.
use kyoto_rt::io::{AsyncReadExt, AsyncWriteExt};
use kyoto_rt::net::{TcpListener, TcpStream, UdpSocket};
use kyoto_rt::runtime::Builder;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn current_thread() -> kyoto_rt::Runtime {
    Builder::new_current_thread().build().expect("runtime")
}

fn multi_thread() -> kyoto_rt::Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn run<F: Future>(rt: &kyoto_rt::Runtime, f: F) -> F::Output {
    rt.block_on(async {
        kyoto_rt::time::timeout(LIMIT, f)
            .await
            .expect("the test finished within its time limit")
    })
}

/// Polls `f` on this (non-runtime) thread, parking between wake-ups, for at most `limit`.
fn block_on_plain_thread<F: Future>(f: F, limit: Duration) -> Option<F::Output> {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

async fn churn_registrations_while_readable(rounds: usize) {
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("sender");
    for round in 0..rounds {
        let mut receivers = Vec::new();
        for _ in 0..16 {
            let r = UdpSocket::bind("127.0.0.1:0").await.expect("receiver");
            let addr = r.local_addr().expect("addr");
            receivers.push((r, addr));
        }
        for (i, (_, addr)) in receivers.iter().enumerate() {
            sender
                .send_to(&[round as u8, i as u8], *addr)
                .await
                .expect("send");
        }
        // Let the driver see the readiness of every receiver, then drop every other one while
        // it is readable (and, on the multi-thread runtime, possibly while the driver is
        // dispatching its event).
        kyoto_rt::task::yield_now().await;
        let mut kept = Vec::new();
        for (i, (r, addr)) in receivers.into_iter().enumerate() {
            if i % 2 == 0 {
                drop(r);
            } else {
                kept.push((i, r, addr));
            }
        }
        // New registrations reuse the freed slots (and perhaps the freed memory).
        let fresh = UdpSocket::bind("127.0.0.1:0").await.expect("fresh");
        let fresh_addr = fresh.local_addr().expect("addr");
        sender
            .send_to(b"fresh", fresh_addr)
            .await
            .expect("send fresh");
        for (i, r, _) in &kept {
            let mut buf = [0u8; 4];
            let n = r.recv(&mut buf).await.expect("a kept receiver still works");
            assert_eq!(&buf[..n], &[round as u8, *i as u8]);
        }
        let mut buf = [0u8; 8];
        let n = fresh.recv(&mut buf).await.expect("fresh receiver");
        assert_eq!(&buf[..n], b"fresh");
    }
}

#[test]
fn dropping_a_registration_while_its_socket_is_readable_does_not_disturb_other_sockets() {
    run(&current_thread(), churn_registrations_while_readable(30));
}

#[test]
fn dropping_registrations_from_many_tasks_while_the_driver_dispatches_is_safe() {
    let rt = multi_thread();
    run(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(kyoto_rt::spawn(churn_registrations_while_readable(25)));
        }
        for t in tasks {
            t.await.expect("churn task");
        }
    });
    assert!(rt.metrics().io_events > 0, "events are counted");
}

#[test]
fn runtime_shutdown_wakes_a_pending_accept_with_an_error() {
    let rt = multi_thread();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let (pending_tx, pending_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut accept = pin!(listener.accept());
        let mut told = false;
        let res = block_on_plain_thread(
            std::future::poll_fn(|cx| {
                let r = accept.as_mut().poll(cx);
                if r.is_pending() && !told {
                    told = true;
                    let _ = pending_tx.send(());
                }
                r
            }),
            LIMIT,
        );
        let _ = done_tx.send(res.map(|r| r.map(|_| ())));
    });
    pending_rx
        .recv_timeout(LIMIT)
        .expect("the accept is waiting");
    rt.shutdown_timeout(Duration::from_secs(5));
    let res = done_rx
        .recv_timeout(LIMIT)
        .expect("the waiter finished")
        .expect("the accept was woken before the limit");
    let err = res.expect_err("the runtime is gone");
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert_eq!(err.to_string(), "the runtime has shut down");
    waiter.join().expect("waiter thread");
}

#[test]
fn sockets_of_a_shut_down_runtime_fail_at_once() {
    let rt = current_thread();
    let (socket, stream) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let stream = TcpStream::connect(addr).await.expect("connect");
        (socket, stream)
    });
    drop(rt);
    let mut buf = [0u8; 4];
    let res = block_on_plain_thread(socket.recv_from(&mut buf), LIMIT).expect("completes");
    assert_eq!(
        res.expect_err("shut down").to_string(),
        "the runtime has shut down"
    );
    let mut stream = stream;
    let res = block_on_plain_thread(stream.read(&mut buf), LIMIT).expect("completes");
    assert!(res.is_err());
    // Dropping sockets after the runtime is gone is fine.
    drop(socket);
    drop(stream);
}

#[test]
fn a_task_looping_on_a_ready_socket_yields_to_other_tasks() {
    let rt = current_thread();
    run(&rt, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        const BYTES: usize = 16 * 1024;
        client.write_all(&[1u8; BYTES]).await.expect("write");
        // Wait until every byte is queued on the server side.
        let mut probe = vec![0u8; BYTES];
        while server.peek(&mut probe).await.expect("peek") < BYTES {
            kyoto_rt::time::sleep(Duration::from_millis(1)).await;
        }

        let flag = Arc::new(AtomicBool::new(false));
        let seen = flag.clone();
        let reader = kyoto_rt::spawn(async move {
            let mut server = server;
            let mut byte = [0u8; 1];
            let mut seen_at = None;
            for i in 0..BYTES {
                server.read_exact(&mut byte).await.expect("read");
                if seen_at.is_none() && seen.load(Ordering::SeqCst) {
                    seen_at = Some(i);
                }
            }
            seen_at
        });
        let setter = kyoto_rt::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let seen_at = reader.await.expect("reader");
        setter.await.expect("setter");
        let seen_at = seen_at.expect("the other task ran before the reader drained the socket");
        assert!(
            seen_at < BYTES / 2,
            "the reader yielded early (at read {seen_at})"
        );
    });
    assert!(rt.metrics().budget_forced_yields > 0);
}

/// A waker that panics when woken.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("the socket's readiness waker panicked");
    }
}

/// Runs one task per worker of `rt`, each waiting (at most `limit`) until all of them run at the
/// same time: true when every worker took one.
fn every_worker_runs_a_task(rt: &kyoto_rt::Runtime, workers: usize, limit: Duration) -> bool {
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..workers {
        let (arrived, tx) = (arrived.clone(), tx.clone());
        rt.spawn(async move {
            arrived.fetch_add(1, Ordering::SeqCst);
            let end = Instant::now() + limit;
            // Blocks this worker on purpose: only another worker can bring the count up.
            while arrived.load(Ordering::SeqCst) < workers && Instant::now() < end {
                thread::yield_now();
            }
            let _ = tx.send(arrived.load(Ordering::SeqCst) >= workers);
        });
    }
    drop(tx);
    (0..workers).all(|_| rx.recv_timeout(limit * 2) == Ok(true))
}

#[test]
fn a_socket_whose_readiness_waker_panics_costs_no_worker_and_the_runtime_still_shuts_down() {
    const WORKERS: usize = 2;
    let rt = Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .build()
        .expect("runtime");
    let socket = {
        let _enter = rt.enter();
        let std = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        std.set_nonblocking(true).expect("non-blocking");
        Arc::new(kyoto_rt::net::UdpSocket::from_std(std).expect("register"))
    };
    let waker = Waker::from(Arc::new(PanickingWaker));
    assert!(socket
        .poll_recv_ready(&mut Context::from_waker(&waker))
        .is_pending());
    // A task waiting for the same readiness: the driver wakes it with the panicking waker.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let waiting = socket.clone();
    rt.spawn(async move {
        let _ = ready_tx.send(waiting.readable().await.is_ok());
    });
    // The datagram makes the socket readable: the worker holding the driver wakes both wakers.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the peer");
    peer.send_to(b"x", socket.local_addr().expect("address"))
        .expect("send");
    let woken = ready_rx.recv_timeout(Duration::from_secs(5));
    let all_run = every_worker_runs_a_task(&rt, WORKERS, Duration::from_secs(5));
    if !all_run {
        // Dropping a runtime that lost a worker would hang this test instead of failing it.
        std::mem::forget((rt, socket));
        panic!("a worker stopped running tasks after the panicking waker");
    }
    assert_eq!(woken, Ok(true), "the other waiter was woken too");
    // The socket still works, and the runtime shuts down in bounded time.
    let mut buf = [0u8; 4];
    let got = run(&rt, async {
        socket.recv_from(&mut buf).await.map(|(n, _)| n)
    });
    assert_eq!(got.expect("recv"), 1);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        drop(socket);
        drop(rt);
        let _ = tx.send(());
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(()),
        "the runtime shuts down"
    );
}

#[test]
fn a_socket_whose_readiness_waker_panics_does_not_unwind_through_block_on() {
    let rt = current_thread();
    let socket = {
        let _enter = rt.enter();
        let std = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        std.set_nonblocking(true).expect("non-blocking");
        kyoto_rt::net::UdpSocket::from_std(std).expect("register")
    };
    let waker = Waker::from(Arc::new(PanickingWaker));
    assert!(socket
        .poll_recv_ready(&mut Context::from_waker(&waker))
        .is_pending());
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the peer");
    peer.send_to(b"x", socket.local_addr().expect("address"))
        .expect("send");
    // `block_on` drives the driver on this thread, which dispatches the datagram's readiness.
    let mut buf = [0u8; 4];
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&rt, async {
            socket.recv_from(&mut buf).await.map(|(n, _)| n)
        })
    }));
    assert_eq!(got.expect("block_on did not unwind").expect("recv"), 1);
}
