//! The embedder's test-clock control on `Handle`: pause on either flavor, move only on request.
use kyoto_rt::runtime::{Builder, ClockError};
use kyoto_rt::sync::oneshot;
use kyoto_rt::time::sleep;
use std::future::Future;
use std::time::Duration;

#[test]
fn a_multi_thread_runtime_paused_by_the_embedder_moves_only_when_told() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let h = rt.handle().clone();
    h.pause_clock().unwrap();
    assert!(h.is_clock_paused());
    assert_eq!(h.pause_clock(), Err(ClockError::AlreadyPaused));
    let start = h.clock_now();
    let (tx, mut rx) = oneshot::channel();
    rt.spawn(async move {
        sleep(Duration::from_secs(3600)).await;
        let _ = tx.send(());
    });
    // No auto-advance: an hour of virtual time does not pass by itself.
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err());
    assert!(h.next_timer().is_some());
    // The embedder decides the runtime is idle and jumps to the next timer.
    let mut jumps = 0;
    while rx.try_recv().is_err() {
        if !h.advance_clock_to_next_timer() {
            std::thread::sleep(Duration::from_millis(1));
        }
        jumps += 1;
        assert!(jumps < 1000, "the sleep never completed");
    }
    assert!(h.clock_now().duration_since(start) >= Duration::from_secs(3600));
    h.resume_clock().unwrap();
    assert_eq!(h.resume_clock(), Err(ClockError::NotPaused));
}

#[test]
fn advance_clock_moves_a_paused_clock_exactly_and_fires_due_timers() {
    let rt = Builder::new_current_thread().build().unwrap();
    let h = rt.handle().clone();
    assert_eq!(
        h.advance_clock(Duration::from_millis(1)),
        Err(ClockError::NotPaused)
    );
    h.pause_clock().unwrap();
    let t0 = h.clock_now();
    h.advance_clock(Duration::from_nanos(1_500_000)).unwrap();
    assert_eq!(
        h.clock_now().duration_since(t0),
        Duration::from_nanos(1_500_000)
    );
    let done = rt.block_on(async {
        let s = kyoto_rt::spawn(sleep(Duration::from_millis(20)));
        kyoto_rt::task::yield_now().await;
        h.advance_clock(Duration::from_millis(25)).unwrap();
        s.await.is_ok()
    });
    assert!(done);
    assert!(!h.advance_clock_to_next_timer(), "no timer left");
}

#[test]
fn advancing_to_a_timer_decades_away_reaches_it_in_one_call_and_says_so() {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    for years in [1, 3, 40, 100, 1000] {
        let rt = Builder::new_current_thread().build().unwrap();
        let h = rt.handle().clone();
        h.pause_clock().unwrap();
        let start = h.clock_now();
        let mut far = {
            let _enter = rt.enter();
            Box::pin(sleep(YEAR * years))
        };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(far.as_mut().poll(&mut cx).is_pending(), "registered");
        assert!(
            h.advance_clock_to_next_timer(),
            "{years} years: the clock moved to the timer and fired it"
        );
        assert!(
            h.clock_now().duration_since(start) >= YEAR * years,
            "{years} years: the clock reached the deadline"
        );
        assert!(
            far.as_mut().poll(&mut cx).is_ready(),
            "{years} years: fired"
        );
        // Nothing pending any more: false, and the clock stays where it is.
        let at = h.clock_now();
        assert!(!h.advance_clock_to_next_timer());
        assert_eq!(h.clock_now(), at, "{years} years: false moved the clock");
    }
}
