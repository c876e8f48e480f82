//! The paused test clock: `pause`, `resume`, `advance`, auto-advance.
use kyoto_rt::runtime::{Builder, Runtime};
use kyoto_rt::time::{self, sleep, Instant};
use std::time::Duration;

fn current_thread(start_paused: bool) -> Runtime {
    Builder::new_current_thread()
        .start_paused(start_paused)
        .build()
        .expect("build a current-thread runtime")
}

#[test]
fn auto_advance_makes_an_hour_long_sleep_complete_instantly() {
    let real = std::time::Instant::now();
    current_thread(true).block_on(async {
        let start = Instant::now();
        assert!(time::is_paused());
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3600));
    });
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "{:?}",
        real.elapsed()
    );
}

#[test]
fn advance_is_exact_to_the_nanosecond_for_instant() {
    current_thread(true).block_on(async {
        let start = Instant::now();
        time::advance(Duration::from_nanos(1)).await;
        assert_eq!(Instant::now() - start, Duration::from_nanos(1));
        time::advance(Duration::from_micros(1500)).await;
        assert_eq!(Instant::now() - start, Duration::from_nanos(1_500_001));
        assert_eq!(start.elapsed(), Duration::from_nanos(1_500_001));
    });
}

#[test]
fn advance_fires_the_timers_that_came_due_and_no_others() {
    current_thread(true).block_on(async {
        let a = kyoto_rt::spawn(sleep(Duration::from_millis(10)));
        let b = kyoto_rt::spawn(sleep(Duration::from_millis(20)));
        kyoto_rt::task::yield_now().await;
        time::advance(Duration::from_millis(15)).await;
        kyoto_rt::task::yield_now().await;
        assert!(a.is_finished());
        assert!(!b.is_finished());
        time::advance(Duration::from_millis(5)).await;
        b.await.expect("completes");
    });
}

#[test]
fn a_sub_millisecond_deadline_is_rounded_up_and_never_fires_early() {
    current_thread(true).block_on(async {
        let start = Instant::now();
        let h = kyoto_rt::spawn(async move {
            sleep(Duration::from_micros(1500)).await;
            Instant::now()
        });
        let fired_at = h.await.expect("completes");
        assert!(fired_at - start >= Duration::from_micros(1500));
        assert_eq!(
            fired_at - start,
            Duration::from_millis(2),
            "auto-advance to the 2 ms tick"
        );
    });
}

#[test]
fn pause_and_resume_switch_the_clock_of_the_current_runtime() {
    current_thread(false).block_on(async {
        assert!(!time::is_paused());
        time::pause();
        assert!(time::is_paused());
        let frozen = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(Instant::now(), frozen);
        time::advance(Duration::from_secs(60)).await;
        time::resume();
        assert!(!time::is_paused());
        assert!(Instant::now() - frozen >= Duration::from_secs(60));
        // Timers still work against the resumed clock.
        let before = std::time::Instant::now();
        sleep(Duration::from_millis(5)).await;
        assert!(before.elapsed() >= Duration::from_millis(4));
    });
}

#[test]
fn instant_now_outside_the_runtime_ignores_its_paused_clock() {
    let rt = current_thread(true);
    let inside = rt.block_on(async {
        time::advance(Duration::from_secs(86_400)).await;
        Instant::now()
    });
    let outside = Instant::now();
    assert!(inside > outside, "the runtime's clock is a day ahead");
}

#[test]
fn a_running_blocking_task_inhibits_auto_advance() {
    current_thread(true).block_on(async {
        let r = time::timeout(
            Duration::from_secs(3),
            kyoto_rt::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50))),
        )
        .await;
        assert!(r.is_ok(), "auto-advanced while a blocking task ran");
    });
}

#[test]
#[should_panic(expected = "time is already paused")]
fn pausing_a_paused_clock_panics() {
    current_thread(true).block_on(async { time::pause() });
}

#[test]
#[should_panic(expected = "time is not paused")]
fn resuming_a_running_clock_panics() {
    current_thread(false).block_on(async { time::resume() });
}

#[test]
#[should_panic(expected = "only be advanced while it is paused")]
fn advancing_a_running_clock_panics() {
    current_thread(false).block_on(time::advance(Duration::from_millis(1)));
}

#[test]
#[should_panic(expected = "requires a current-thread runtime")]
fn pausing_a_multi_thread_runtime_panics() {
    Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime")
        .block_on(async { time::pause() });
}

#[test]
#[should_panic(expected = "must be called from within a kyoto runtime")]
fn pausing_outside_a_runtime_panics() {
    time::pause();
}
