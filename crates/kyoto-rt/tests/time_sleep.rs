//! `sleep`, `sleep_until` and `Sleep` against the real runtime.
use kyoto_rt::runtime::{Builder, Runtime};
use kyoto_rt::time::{self, sleep, sleep_until, Instant, Sleep};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .build()
        .expect("build a current-thread runtime")
}

fn paused() -> Runtime {
    Builder::new_current_thread()
        .start_paused(true)
        .build()
        .expect("build a paused runtime")
}

/// Polls `fut` once with the caller's waker.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn a_sleep_of_zero_completes_on_its_first_poll() {
    current_thread().block_on(async {
        let mut s = sleep(Duration::ZERO);
        assert!(poll_once(&mut s).await.is_ready());
        assert!(s.is_elapsed());
    });
}

#[test]
fn a_sleep_until_a_past_instant_completes_on_its_first_poll() {
    current_thread().block_on(async {
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("the clock started more than a second ago");
        let mut s = sleep_until(past);
        assert!(poll_once(&mut s).await.is_ready());
    });
}

#[test]
fn a_sleep_never_completes_before_its_deadline_on_the_real_clock() {
    current_thread().block_on(async {
        for ms in [1u64, 3, 10, 25] {
            let start = std::time::Instant::now();
            sleep(Duration::from_millis(ms)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(ms), "{ms} ms took {took:?}");
            assert!(
                took < Duration::from_millis(ms + 500),
                "{ms} ms took {took:?}"
            );
        }
    });
}

#[test]
fn a_sleep_on_the_multi_thread_runtime_completes_on_time_even_when_another_worker_is_parked_long() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a multi-thread runtime");
    rt.block_on(async {
        // A long timer makes the parked driver sleep for a long time; a shorter timer registered
        // later from another task must unpark it.
        let long = kyoto_rt::spawn(async { sleep(Duration::from_secs(30)).await });
        kyoto_rt::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(20));
        let start = std::time::Instant::now();
        kyoto_rt::spawn(async { sleep(Duration::from_millis(30)).await })
            .await
            .expect("the sleeping task completes");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(5), "not unparked: {took:?}");
        long.abort();
    });
}

#[test]
fn many_sleeps_with_different_deadlines_complete_in_deadline_order() {
    paused().block_on(async {
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for ms in [700u64, 5, 64, 4096, 65, 1, 300_000, 3_600_000] {
            let order = order.clone();
            tasks.push(kyoto_rt::spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                order.lock().expect("not poisoned").push(ms);
            }));
        }
        for t in tasks {
            t.await.expect("task completes");
        }
        let order = order.lock().expect("not poisoned").clone();
        assert_eq!(order, vec![1, 5, 64, 65, 700, 4096, 300_000, 3_600_000]);
    });
}

#[test]
fn dropping_a_registered_sleep_removes_it_from_the_wheel() {
    let rt = current_thread();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = sleep(Duration::from_secs(3600));
    assert!(Pin::new(&mut s).poll(&mut cx).is_pending(), "registered");
    let next = rt.drive(0).expect("current-thread").next_timer;
    assert!(next.is_some_and(|t| t <= s.deadline()), "{next:?}");
    drop(s);
    assert_eq!(rt.drive(0).expect("current-thread").next_timer, None);
}

#[test]
fn an_external_event_loop_sees_the_next_timer_and_fires_it_by_driving() {
    let rt = current_thread();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = sleep(Duration::from_millis(20));
    assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
    loop {
        let outcome = rt.drive(16).expect("current-thread");
        if Pin::new(&mut s).poll(&mut cx).is_ready() {
            break;
        }
        let next = outcome.next_timer.expect("the sleep is still registered");
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    assert!(Instant::now() >= s.deadline());
}

#[test]
fn a_reset_sleep_completes_at_its_new_deadline_and_keeps_its_waiter() {
    paused().block_on(async {
        let start = Instant::now();
        let mut s = sleep(Duration::from_secs(10));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(start + Duration::from_secs(2));
        assert_eq!(s.deadline(), start + Duration::from_secs(2));
        (&mut s).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        // After completing, a reset re-arms it.
        s.reset(start + Duration::from_secs(5));
        assert!(!s.is_elapsed());
        (&mut s).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        // A reset to the past makes it ready at the next poll.
        s.reset(start);
        assert!(poll_once(&mut s).await.is_ready());
    });
}

#[test]
fn a_pinned_sleep_can_be_reset_through_its_pin_like_in_tokio() {
    paused().block_on(async {
        let start = Instant::now();
        let mut s = Box::pin(sleep(Duration::from_secs(10)));
        s.as_mut().reset(start + Duration::from_millis(1));
        s.as_mut().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(1));
    });
}

#[test]
fn shutting_down_the_runtime_completes_pending_sleeps_without_panicking() {
    let rt = current_thread();
    let (mut registered, mut unregistered) = rt.block_on(async {
        let mut registered = sleep(Duration::from_secs(3600));
        assert!(poll_once(&mut registered).await.is_pending());
        (registered, sleep(Duration::from_secs(3600)))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let mut cx = Context::from_waker(Waker::noop());
    for s in [&mut registered, &mut unregistered] {
        match s.poll_elapsed(&mut cx) {
            Poll::Ready(Err(e)) => assert!(e.is_shutdown(), "{e}"),
            other => panic!("expected a shutdown error, got {other:?}"),
        }
        assert!(Pin::new(&mut *s).poll(&mut cx).is_ready());
        assert!(s.is_elapsed());
    }
}

#[test]
fn a_task_sleeping_when_the_runtime_shuts_down_is_dropped_cleanly() {
    let rt = current_thread();
    let handle = rt.spawn(async {
        sleep(Duration::from_secs(3600)).await;
    });
    rt.block_on(async { kyoto_rt::task::yield_now().await });
    drop(rt);
    drop(handle);
}

#[test]
#[should_panic(expected = "no kyoto runtime")]
fn creating_a_sleep_outside_a_runtime_panics_with_a_clear_message() {
    drop(sleep(Duration::from_millis(1)));
}

#[test]
fn sleeps_are_send_sync_and_unpin() {
    fn check<T: Send + Sync + Unpin>() {}
    check::<Sleep>();
    check::<time::Interval>();
    check::<time::Timeout<std::future::Ready<()>>>();
}

#[test]
fn a_sleep_that_comes_due_while_its_worker_is_busy_still_completes() {
    let runtimes = [
        ("current_thread", current_thread()),
        (
            "multi_thread",
            Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .expect("build a multi-thread runtime"),
        ),
    ];
    for (name, rt) in runtimes {
        let rt = std::sync::Arc::new(rt);
        let (tx, rx) = std::sync::mpsc::channel();
        let r = rt.clone();
        std::thread::spawn(move || {
            let out = r.block_on(async {
                let sleeper = kyoto_rt::spawn(async {
                    sleep(Duration::from_millis(1)).await;
                    1
                });
                // Keeps the only thread busy past the sleep's deadline: the timer is then fired
                // when the thread next parks, and its task must run before the thread blocks.
                let busy = kyoto_rt::spawn(async {
                    std::thread::sleep(Duration::from_millis(20));
                    2
                });
                (sleeper.await.unwrap(), busy.await.unwrap())
            });
            let _ = tx.send(out);
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok((1, 2)),
            "{name}: the sleeping task was never woken"
        );
    }
}

/// A waker that panics when woken.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        panic!("the sleep's waker panicked");
    }
}

#[test]
fn a_sleep_polled_with_a_waker_that_panics_does_not_stop_the_runtime() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let mut bad = {
        let _enter = rt.enter();
        sleep(Duration::from_millis(1))
    };
    let waker = Waker::from(std::sync::Arc::new(PanickingWaker));
    let polled = Pin::new(&mut bad).poll(&mut Context::from_waker(&waker));
    assert!(polled.is_pending());
    // The worker fires that timer; later sleeps and tasks must still complete.
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        let out = handle.block_on(handle.spawn(async {
            sleep(Duration::from_millis(20)).await;
            7
        }));
        let _ = tx.send(out.ok());
    });
    let out = rx.recv_timeout(Duration::from_secs(10));
    if out != Ok(Some(7)) {
        // Dropping a runtime whose worker died would hang this test instead of failing it.
        std::mem::forget(rt);
        panic!("tasks and timers stopped after the panicking waker: {out:?}");
    }
    assert!(bad.is_elapsed());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(rt);
        let _ = tx.send(());
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(()),
        "the runtime shuts down"
    );
}
