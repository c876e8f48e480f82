//! Tasks on both schedulers: output, panics, cancellation, detaching, drop order, starvation.
use kyoto_rt::runtime::{Builder, Runtime};
use kyoto_rt::sync::oneshot;
use kyoto_rt::task::{self, JoinError};
use std::future::{pending, Future};
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

/// Sets a flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

#[test]
fn a_spawned_task_returns_its_output_through_the_join_handle() {
    for (name, rt) in runtimes() {
        let out = rt.block_on(async {
            let h = task::spawn(async { 6 * 7 });
            h.await.unwrap()
        });
        assert_eq!(out, 42, "{name}");
    }
}

#[test]
fn a_task_starts_running_at_spawn_without_being_awaited() {
    for (name, rt) in runtimes() {
        let (tx, rx) = oneshot::channel();
        let _detached = rt.spawn(async move {
            let _ = tx.send(1);
        });
        assert_eq!(rt.block_on(rx), Ok(1), "{name}");
    }
}

#[test]
fn a_panicking_task_reports_its_message_and_the_runtime_keeps_running() {
    for (name, rt) in runtimes() {
        let err: JoinError = rt.block_on(async {
            let h = task::spawn(async {
                if true {
                    panic!("boom");
                }
            });
            h.await.unwrap_err()
        });
        assert!(err.is_panic(), "{name}");
        assert_eq!(
            err.to_string(),
            format!("task {} panicked with message \"boom\"", err.id()),
            "{name}"
        );
        assert_eq!(
            rt.block_on(async { task::spawn(async { 1 }).await.unwrap() }),
            1
        );
    }
}

#[test]
fn an_aborted_task_reports_cancelled_and_its_future_is_dropped() {
    for (name, rt) in runtimes() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let err = rt.block_on(async move {
            let h = task::spawn(async move {
                let _flag = flag;
                pending::<()>().await
            });
            task::yield_now().await;
            h.abort();
            h.abort(); // idempotent
            h.await.unwrap_err()
        });
        assert!(err.is_cancelled(), "{name}");
        assert_eq!(err.to_string(), format!("task {} was cancelled", err.id()));
        assert!(
            dropped.load(SeqCst),
            "{name}: future dropped before completion was observable"
        );
    }
}

#[test]
fn a_task_that_finishes_before_noticing_the_abort_keeps_its_output() {
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let h = task::spawn(async { 5 });
        // Not yet polled: abort wins on a current-thread runtime...
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        let h = task::spawn(async { 5 });
        task::yield_now().await;
        // ...but once it completed, abort changes nothing.
        assert!(h.is_finished());
        h.abort();
        assert_eq!(h.await.unwrap(), 5);
    });
}

#[test]
fn dropping_a_join_handle_detaches_the_task() {
    for (name, rt) in runtimes() {
        let (tx, rx) = oneshot::channel::<u32>();
        let (done_tx, done_rx) = oneshot::channel::<u32>();
        rt.block_on(async move {
            drop(task::spawn(async move {
                let v = rx.await.unwrap();
                let _ = done_tx.send(v + 1);
            }));
            let _ = tx.send(1);
            assert_eq!(done_rx.await, Ok(2), "{name}");
        });
    }
}

#[test]
fn a_future_is_dropped_before_is_finished_reports_true() {
    for (name, rt) in runtimes() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let seen = rt.block_on(async move {
            let h = task::spawn(async move {
                let _flag = flag;
                task::yield_now().await;
            });
            while !h.is_finished() {
                task::yield_now().await;
            }
            dropped.load(SeqCst)
        });
        assert!(seen, "{name}");
    }
}

/// Respawns itself forever: each generation spawns the next and returns.
fn respawn_forever(count: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    if stop.load(SeqCst) {
        return;
    }
    count.fetch_add(1, SeqCst);
    task::spawn(async move { respawn_forever(count, stop) });
}

#[test]
fn a_task_that_respawns_itself_forever_does_not_starve_a_task_waiting_on_a_oneshot() {
    for (name, rt) in runtimes() {
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel::<()>();
        let (c, s) = (count.clone(), stop.clone());
        rt.block_on(async move {
            let waiter = task::spawn(async move { rx.await.is_ok() });
            task::spawn(async move { respawn_forever(c, s) });
            // Sent from another thread: the wake arrives through the remote queue.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let _ = tx.send(());
            });
            assert!(waiter.await.unwrap(), "{name}");
        });
        stop.store(true, SeqCst);
        assert!(count.load(SeqCst) > 0);
    }
}

#[test]
fn runtime_shutdown_drops_a_forever_pending_task() {
    for (name, rt) in runtimes() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let h = rt.spawn(async move {
            let _flag = flag;
            pending::<()>().await
        });
        rt.block_on(task::yield_now());
        rt.shutdown_timeout(Duration::from_secs(5));
        assert!(dropped.load(SeqCst), "{name}");
        assert!(h.is_finished(), "{name}");
    }
}

#[test]
fn a_task_spawned_after_shutdown_is_cancelled_at_once() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    rt.shutdown_timeout(Duration::from_secs(5));
    let h = handle.spawn(async { 1 });
    assert!(h.is_finished());
    let err = kyoto_rt::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(h)
        .unwrap_err();
    assert!(err.is_cancelled());
}

#[test]
fn ten_thousand_tasks_spawned_from_one_worker_finish_and_other_workers_steal() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    rt.block_on(async move {
        let spawner = task::spawn(async move {
            // Waves of 200 stay under the local queue's capacity (256), so nothing overflows to the
            // injector: the only way for the other worker to get work is to steal it.
            for _wave in 0..50 {
                let mut handles = Vec::with_capacity(200);
                for _ in 0..200 {
                    let d = d.clone();
                    handles.push(task::spawn(async move {
                        // A little work so that the spawning worker cannot drain its queue alone.
                        let mut x = 0u64;
                        for i in 0..2_000u64 {
                            x = x.wrapping_add(std::hint::black_box(i));
                        }
                        std::hint::black_box(x);
                        d.fetch_add(1, SeqCst);
                    }));
                }
                for h in handles {
                    h.await.unwrap();
                }
            }
        });
        spawner.await.unwrap();
    });
    assert_eq!(done.load(SeqCst), 10_000);
    // Let the workers publish their counters (they do at maintenance and park).
    std::thread::sleep(Duration::from_millis(50));
    let m = rt.metrics();
    assert_eq!(m.workers, 2);
    assert!(
        m.worker_steal_count.iter().sum::<u64>() > 0,
        "no steals: {m:?}"
    );
    assert!(m.spawned_tasks >= 10_001);
    assert_eq!(m.alive_tasks, 0);
}

#[test]
fn yield_now_lets_other_tasks_run() {
    for (name, rt) in runtimes() {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let ok = rt.block_on(async move {
            task::spawn(async move { f.store(true, SeqCst) });
            // On a multi-thread runtime `block_on` is not a worker: the spawned task runs elsewhere,
            // so give it real time rather than a fixed number of yields.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if flag.load(SeqCst) {
                    return true;
                }
                task::yield_now().await;
            }
            false
        });
        assert!(ok, "{name}");
    }
}

/// A future that is always ready to make progress but never finishes unless the budget stops it.
struct Spin(Arc<AtomicUsize>);

impl Future for Spin {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.fetch_add(1, SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn tasks_that_wake_themselves_constantly_do_not_starve_a_remote_wake() {
    for (name, rt) in runtimes() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel::<()>();
        let started = Instant::now();
        rt.block_on(async {
            let spinners: Vec<_> = (0..100).map(|_| task::spawn(Spin(polls.clone()))).collect();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                let _ = tx.send(());
            });
            rx.await.unwrap();
            for s in spinners {
                s.abort();
            }
        });
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
    }
}

#[test]
fn spawn_blocking_runs_on_the_pool_and_respects_the_cap() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let total: usize = rt.block_on(async {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (running, peak) = (running.clone(), peak.clone());
                task::spawn_blocking(move || {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, SeqCst);
                    i
                })
            })
            .collect();
        let mut total = 0;
        for h in hs {
            total += h.await.unwrap();
        }
        total
    });
    assert_eq!(total, 28);
    assert!(peak.load(SeqCst) <= 2);
    assert!(rt.metrics().blocking_threads <= 2);
}

#[test]
fn a_blocking_task_runs_inside_its_runtime() {
    for (name, rt) in runtimes() {
        let spawned = rt.block_on(async {
            task::spawn_blocking(|| {
                let handle = kyoto_rt::Handle::try_current().expect("inside the runtime");
                let _now = kyoto_rt::time::Instant::now();
                handle.block_on(kyoto_rt::spawn(async { 6 * 7 }))
            })
            .await
            .unwrap()
        });
        assert_eq!(spawned.map_err(|e| e.to_string()), Ok(42), "{name}");
    }
}

#[test]
fn shutdown_timeout_does_not_wait_for_a_running_blocking_task() {
    let rt = Builder::new_current_thread().build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let _h = rt.spawn_blocking(move || {
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_secs(3));
    });
    started_rx.recv().unwrap();
    let t = Instant::now();
    rt.shutdown_timeout(Duration::from_millis(50));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_panicking_blocking_task_reports_a_panic() {
    let rt = Builder::new_current_thread().build().unwrap();
    let err = rt
        .block_on(rt.spawn_blocking(|| {
            if true {
                panic!("blocking boom")
            }
        }))
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("blocking boom"));
}

#[test]
fn a_current_thread_runtime_can_be_driven_from_an_external_loop() {
    let rt = Builder::new_current_thread().build().unwrap();
    let (tx, mut rx) = oneshot::channel();
    let _h = rt.spawn(async move {
        task::yield_now().await;
        let _ = tx.send(9);
    });
    let mut rounds = 0;
    loop {
        let outcome = rt.drive(64).expect("this thread drives");
        if let Ok(v) = rx.try_recv() {
            assert_eq!(v, 9);
            break;
        }
        rounds += 1;
        assert!(rounds < 100, "never completed: {outcome:?}");
    }
    #[cfg(unix)]
    assert!(rt.poller_fd().is_some());
}

#[test]
fn one_drive_call_runs_the_task_its_poll_woke() {
    let rt = Builder::new_current_thread().build().unwrap();
    let sock = {
        let _g = rt.enter();
        kyoto_rt::net::UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .unwrap()
    };
    let to = sock.local_addr().unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let _h = rt.spawn(async move {
        let mut buf = [0u8; 16];
        let n = sock.recv(&mut buf).await.unwrap();
        g.store(n, SeqCst);
    });
    // The task runs, finds nothing and waits on the reactor.
    rt.drive(64).expect("this thread drives");
    assert_eq!(got.load(SeqCst), 0);
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"hello", to).unwrap();
    // Loopback delivered the datagram before send_to returned: one call polls and runs the task.
    let outcome = rt.drive(64).expect("this thread drives");
    assert_eq!(got.load(SeqCst), 5, "{outcome:?}");
}

#[test]
fn a_yield_inside_drive_runs_in_the_next_call_after_its_poll() {
    let rt = Builder::new_current_thread().build().unwrap();
    let steps = Arc::new(AtomicUsize::new(0));
    let s = steps.clone();
    let _h = rt.spawn(async move {
        s.store(1, SeqCst);
        task::yield_now().await;
        s.store(2, SeqCst);
    });
    let outcome = rt.drive(64).expect("this thread drives");
    assert_eq!(steps.load(SeqCst), 1, "the yield deferred the rest");
    assert!(outcome.has_ready_tasks, "the yielded task is queued again");
    rt.drive(64).expect("this thread drives");
    assert_eq!(steps.load(SeqCst), 2);
}

#[test]
fn handle_current_panics_outside_a_runtime_and_works_inside() {
    assert!(kyoto_rt::Handle::try_current().is_err());
    let rt = Runtime::new().unwrap();
    let flavor = rt.block_on(async { kyoto_rt::Handle::current().runtime_flavor() });
    assert_eq!(flavor, kyoto_rt::runtime::RuntimeFlavor::MultiThread);
    let _g = rt.enter();
    assert!(kyoto_rt::Handle::try_current().is_ok());
}

#[test]
fn block_on_inside_a_task_panics_instead_of_deadlocking() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let err = rt
        .block_on(rt.spawn(async {
            let inner = Builder::new_current_thread().build().unwrap();
            inner.block_on(async {});
        }))
        .unwrap_err();
    assert!(err.is_panic());
}

#[test]
fn a_current_thread_runtime_keeps_working_after_its_block_on_future_panicked() {
    let rt = Arc::new(Builder::new_current_thread().build().unwrap());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            // The task wakes this future, then yields: its wake is deferred to after the next
            // driver poll when the future panics, and it must not be lost with the `block_on`.
            let (tx, rx) = oneshot::channel();
            let _yielded = kyoto_rt::spawn(async move {
                let _ = tx.send(());
                task::yield_now().await;
            });
            let _ = rx.await;
            panic!("boom");
        })
    }));
    assert!(caught.is_err());
    // Run the next `block_on` on another thread so a lost core fails the test instead of hanging.
    let (tx, rx) = mpsc::channel();
    let r = rt.clone();
    std::thread::spawn(move || {
        let out = r.block_on(async {
            kyoto_rt::time::sleep(Duration::from_millis(1)).await;
            kyoto_rt::spawn(async { 4 }).await.unwrap()
        });
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        out,
        Ok(4),
        "block_on after a panicking block_on never completed"
    );
    assert_eq!(
        rt.metrics().alive_tasks,
        0,
        "the task that yielded before the panic ran to completion"
    );
}

#[test]
fn a_second_thread_blocking_on_a_current_thread_runtime_is_inside_the_runtime_while_it_waits() {
    let rt = Builder::new_current_thread().build().unwrap();
    let (driving_tx, driving_rx) = mpsc::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::scope(|s| {
        // This thread holds the core (drives) until the second one is done.
        let driver = s.spawn(|| {
            rt.block_on(async move {
                driving_tx.send(()).unwrap();
                let _ = done_rx.await;
            })
        });
        driving_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the first block_on started");
        let waiter = s.spawn(|| {
            let out = rt.block_on(async {
                let start = kyoto_rt::time::Instant::now();
                kyoto_rt::time::sleep(Duration::from_millis(1)).await;
                let v = kyoto_rt::spawn(async { 7 }).await.unwrap();
                assert!(start.elapsed() >= Duration::from_millis(1));
                v
            });
            drop(done_tx);
            out
        });
        assert_eq!(
            waiter.join().map_err(|_| "the waiting block_on panicked"),
            Ok(7)
        );
        driver.join().expect("the driving block_on returns");
    });
}

#[test]
fn dropping_a_multi_thread_runtime_from_one_of_its_own_tasks_shuts_it_down_without_hanging() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let pending_dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(pending_dropped.clone());
    rt.spawn(async move {
        let _flag = flag;
        pending::<()>().await
    });
    let owner = Arc::new(std::sync::Mutex::new(Some(rt)));
    let (tx, rx) = mpsc::channel();
    let o = owner.clone();
    handle.spawn(async move {
        let rt = o.lock().unwrap().take();
        drop(rt);
        let _ = tx.send(());
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(()),
        "the drop returned to the task"
    );
    let start = Instant::now();
    while !pending_dropped.load(SeqCst) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        pending_dropped.load(SeqCst),
        "the other tasks were cancelled"
    );
}

#[test]
fn dropping_a_multi_thread_runtime_whose_tasks_keep_yielding_returns() {
    // The shutdown's wake-up of a worker could be consumed by the driver poll that a yield waits
    // for; that worker then parked for good once its tasks were cancelled elsewhere.
    for round in 0..30 {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        for _ in 0..4 {
            rt.spawn(async {
                loop {
                    task::yield_now().await
                }
            });
        }
        std::thread::sleep(Duration::from_micros(round % 5 * 200));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            drop(rt);
            let _ = tx.send(());
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(()),
            "round {round}: the drop never returned"
        );
    }
}

/// A waker that panics when woken.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("the join handle's waker panicked");
    }
}

#[test]
fn a_join_handle_waker_that_panics_does_not_take_down_the_worker() {
    for (name, rt) in runtimes() {
        let (tx, rx) = oneshot::channel::<()>();
        let mut join = rt.spawn(async move {
            let _ = rx.await;
            1
        });
        // Polled from outside any task, with a waker of its own.
        let waker = std::task::Waker::from(Arc::new(PanickingWaker));
        let polled = Pin::new(&mut join).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending(), "{name}");
        tx.send(()).unwrap();
        // The completing task wakes that waker; the runtime must keep running tasks after it.
        let (done_tx, done_rx) = mpsc::channel();
        let handle = rt.handle().clone();
        let first = join.abort_handle();
        let r = Arc::new(rt);
        let driver = {
            let r = r.clone();
            std::thread::spawn(move || {
                let out = r.block_on(async {
                    for _ in 0..100_000 {
                        if first.is_finished() {
                            break;
                        }
                        task::yield_now().await;
                    }
                    assert!(first.is_finished(), "the first task completed");
                    let mut outs = Vec::new();
                    for i in 0..3 {
                        outs.push(handle.spawn(async move { i }).await.unwrap());
                    }
                    outs
                });
                let _ = done_tx.send(out);
            })
        };
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok(vec![0, 1, 2]),
            "{name}: tasks still run"
        );
        driver.join().unwrap();
        let (dropped_tx, dropped_rx) = mpsc::channel();
        std::thread::spawn(move || {
            drop(r);
            let _ = dropped_tx.send(());
        });
        assert_eq!(
            dropped_rx.recv_timeout(Duration::from_secs(10)),
            Ok(()),
            "{name}: the runtime shuts down"
        );
    }
}

#[test]
fn dropping_a_runtime_from_one_of_its_blocking_tasks_returns() {
    for (name, rt) in runtimes() {
        let handle = rt.handle().clone();
        let owner = Arc::new(std::sync::Mutex::new(Some(rt)));
        let (tx, rx) = mpsc::channel();
        let o = owner.clone();
        let _blocking = handle.spawn_blocking(move || {
            let rt = o.lock().unwrap().take();
            drop(rt);
            let _ = tx.send(());
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(()),
            "{name}: the drop never returned"
        );
    }
}

#[test]
fn a_join_error_is_send_and_sync_so_it_converts_into_a_boxed_error_like_tokios() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    let rt = Builder::new_current_thread().build().unwrap();
    let err = rt
        .block_on(rt.spawn(async {
            if true {
                panic!("boxed");
            }
        }))
        .unwrap_err();
    send_sync(&err);
    assert_eq!(err.panic_message(), Some("boxed"));
    let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
    assert!(boxed.to_string().contains("boxed"), "{boxed}");
    let err = rt
        .block_on(rt.spawn(async { std::panic::panic_any(7u8) }))
        .unwrap_err();
    assert_eq!(err.panic_message(), None);
    let payload = err.try_into_panic().expect("a panic");
    assert_eq!(payload.downcast_ref::<u8>(), Some(&7));
}

#[test]
fn a_block_on_future_that_keeps_waking_itself_lets_tasks_and_timers_run() {
    let rt = Builder::new_current_thread().build().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let finished = rt.block_on(async move {
        // The task needs a turn, then the driver (its timer), then a turn again.
        kyoto_rt::spawn(async move {
            kyoto_rt::time::sleep(Duration::from_millis(1)).await;
            d.store(true, SeqCst);
        });
        let start = Instant::now();
        let mut spins = 0u64;
        // Spends the coop budget over and over: each time the budget runs out the future is
        // woken at once and returns Pending.
        while !done.load(SeqCst) && spins < 50_000_000 && start.elapsed() < Duration::from_secs(10)
        {
            task::consume_budget().await;
            spins += 1;
        }
        done.load(SeqCst)
    });
    assert!(finished, "the spawned task never completed");
}
