//! The scheduler keeps I/O and timers moving under load, and cancellation is prompt.
use kyoto_rt::io::{AsyncReadExt, AsyncWriteExt};
use kyoto_rt::net::{TcpListener, TcpStream};
use kyoto_rt::runtime::{Builder, Runtime};
use kyoto_rt::task;
use kyoto_rt::time::{sleep, timeout};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

fn runtimes() -> Vec<(&'static str, Runtime)> {
    vec![
        (
            "current_thread",
            Builder::new_current_thread().build().unwrap(),
        ),
        (
            "multi_thread",
            Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
        ),
    ]
}

/// Always ready to run again: wakes itself on every poll and never completes.
struct WakeSelf(Arc<AtomicUsize>);

impl Future for WakeSelf {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.fetch_add(1, SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn a_hundred_tasks_that_wake_themselves_constantly_do_not_stop_a_tcp_echo() {
    for (name, rt) in runtimes() {
        let polls = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let busy: Vec<_> = (0..100)
                .map(|_| task::spawn(WakeSelf(polls.clone())))
                .collect();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = task::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let echoed = timeout(Duration::from_secs(10), async {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(b"hello").await.unwrap();
                let mut buf = [0u8; 5];
                c.read_exact(&mut buf).await.unwrap();
                buf
            })
            .await
            .unwrap_or_else(|_| panic!("{name}: the echo starved"));
            assert_eq!(&echoed, b"hello");
            server.await.unwrap();
            for b in busy {
                b.abort();
            }
        });
        assert!(polls.load(SeqCst) > 100, "{name}: the busy tasks ran too");
    }
}

#[test]
fn while_one_task_loops_on_yield_now_a_pending_accept_completes() {
    for (name, rt) in runtimes() {
        let stop = Arc::new(AtomicBool::new(false));
        let yields = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let (s, y) = (stop.clone(), yields.clone());
            let spinner = task::spawn(async move {
                while !s.load(SeqCst) {
                    y.fetch_add(1, SeqCst);
                    task::yield_now().await;
                }
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = task::spawn(async move { listener.accept().await.map(|(_, a)| a) });
            // Connect from a plain thread: only the runtime's driver can notice the connection.
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let c = std::net::TcpStream::connect(addr);
                let _ = tx.send(());
                std::thread::sleep(Duration::from_millis(200));
                drop(c);
            });
            let accepted = timeout(Duration::from_secs(10), accept).await;
            assert!(
                matches!(accepted, Ok(Ok(Ok(_)))),
                "{name}: accept never completed"
            );
            rx.recv().unwrap();
            stop.store(true, SeqCst);
            spinner.await.unwrap();
        });
        assert!(yields.load(SeqCst) > 0, "{name}");
    }
}

/// Signals when dropped.
struct Captured(mpsc::Sender<Instant>);

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.0.send(Instant::now());
    }
}

#[test]
fn aborting_a_task_asleep_for_100_seconds_releases_what_it_captured_within_10_ms() {
    for (name, rt) in runtimes() {
        let (tx, rx) = mpsc::channel();
        rt.block_on(async {
            let captured = Captured(tx);
            let sleeper = task::spawn(async move {
                let _keep = captured;
                sleep(Duration::from_secs(100)).await;
            });
            // Let it start sleeping.
            sleep(Duration::from_millis(5)).await;
            let aborted_at = Instant::now();
            sleeper.abort();
            let err = sleeper.await.unwrap_err();
            assert!(err.is_cancelled(), "{name}");
            let dropped_at = rx.recv_timeout(Duration::from_secs(1)).expect("dropped");
            let took = dropped_at.saturating_duration_since(aborted_at);
            assert!(took < Duration::from_millis(10), "{name}: took {took:?}");
        });
    }
}
