//! `timeout` and `timeout_at`.
use kyoto_rt::runtime::{Builder, Runtime};
use kyoto_rt::time::{self, error::Elapsed, sleep, timeout, timeout_at, Instant};
use std::future::{pending, poll_fn, ready, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

fn paused() -> Runtime {
    Builder::new_current_thread()
        .start_paused(true)
        .build()
        .expect("build a paused runtime")
}

#[test]
fn a_ready_future_wins_against_a_zero_deadline() {
    paused().block_on(async {
        assert_eq!(timeout(Duration::ZERO, ready(7)).await, Ok(7));
    });
}

#[test]
fn a_ready_future_wins_against_a_deadline_in_the_past() {
    paused().block_on(async {
        let past = Instant::now();
        time::advance(Duration::from_secs(1)).await;
        assert_eq!(timeout_at(past, async { "done" }).await, Ok("done"));
    });
}

#[test]
fn a_pending_future_times_out_with_elapsed_at_the_deadline() {
    paused().block_on(async {
        let start = Instant::now();
        let r: Result<(), Elapsed> = timeout(Duration::from_millis(250), pending()).await;
        let e = r.expect_err("never completes");
        assert_eq!(e.to_string(), "deadline has elapsed");
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - start, Duration::from_millis(250));
    });
}

#[test]
fn a_future_finishing_before_the_deadline_returns_ok() {
    paused().block_on(async {
        let r = timeout(Duration::from_secs(2), async {
            sleep(Duration::from_secs(1)).await;
            5
        })
        .await;
        assert_eq!(r, Ok(5));
    });
}

#[test]
fn a_timeout_elapses_on_the_real_clock() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let start = std::time::Instant::now();
        let r = timeout(Duration::from_millis(20), pending::<()>()).await;
        assert!(r.is_err());
        assert!(start.elapsed() >= Duration::from_millis(20));
    });
}

/// A future that is always ready to do more work: it spends one unit of coop budget per poll step
/// and never completes, so only the budget makes it yield.
struct Busy;

impl Future for Busy {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut step = std::pin::pin!(kyoto_rt::task::consume_budget());
            if step.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[test]
fn a_future_that_spends_the_whole_budget_still_times_out() {
    paused().block_on(async {
        let start = Instant::now();
        let h = kyoto_rt::spawn(async { timeout(Duration::from_millis(10), Busy).await });
        // The paused clock only moves when idle or advanced; advance it past the deadline while
        // the busy task keeps the runtime from ever being idle.
        for _ in 0..20 {
            time::advance(Duration::from_millis(1)).await;
        }
        assert!(h.await.expect("task completes").is_err());
        assert!(Instant::now() - start >= Duration::from_millis(10));
    });
}

#[test]
fn the_wrapped_future_is_reachable_and_can_be_taken_back() {
    paused().block_on(async {
        let mut t = timeout(Duration::from_secs(1), ready(3));
        let _: &std::future::Ready<i32> = t.get_ref();
        let inner: &mut std::future::Ready<i32> = t.get_mut();
        assert!(std::mem::size_of_val(inner) > 0);
        let inner = t.into_inner();
        assert_eq!(inner.await, 3);
    });
}

#[test]
fn dropping_a_timeout_cancels_its_timer() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let _guard = rt.enter();
    let mut t = Box::pin(timeout(Duration::from_secs(3600), pending::<()>()));
    let waker = std::task::Waker::noop();
    assert!(t
        .as_mut()
        .poll(&mut Context::from_waker(waker))
        .is_pending());
    assert!(rt.drive(0).expect("current-thread").next_timer.is_some());
    drop(t);
    assert_eq!(rt.drive(0).expect("current-thread").next_timer, None);
}

#[test]
fn an_unrepresentable_duration_never_elapses() {
    paused().block_on(async {
        let mut t = timeout(Duration::MAX, pending::<()>());
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut t).poll(cx))).await;
        assert!(polled.is_pending());
        assert!(timeout(Duration::MAX, ready(1)).await.is_ok());
    });
}

#[test]
#[should_panic(expected = "no kyoto runtime")]
fn creating_a_timeout_outside_a_runtime_panics() {
    drop(timeout(Duration::from_secs(1), ready(())));
}
