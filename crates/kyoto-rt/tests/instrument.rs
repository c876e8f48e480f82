//! Opt-in task instrumentation (`kyoto_rt::instrument`): what a consumer sees, and that nothing is
//! recorded without one. One test function: the consumer is process-wide.
use kyoto_rt::instrument::{Consumer, Outcome, TaskKind, TaskStats};
use kyoto_rt::runtime::Builder;
use kyoto_rt::time::sleep;
use std::collections::HashMap;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

#[derive(Debug, Clone)]
struct Seen {
    kind: TaskKind,
    file: &'static str,
    polls: u64,
    busy: Duration,
    wakes: u64,
    self_wakes: u64,
    clones: u64,
    drops: u64,
    outcome: Outcome,
    dropped: bool,
    first_poll: bool,
    reports: u32,
    poll_hist: u64,
    sched_hist: u64,
}

fn collect(c: &mut Consumer, seen: &mut HashMap<u64, Seen>) {
    c.poll(|s: &TaskStats, is_new| {
        let e = seen.entry(s.id()).or_insert_with(|| {
            assert!(
                is_new,
                "task {} reported as changed before it was new",
                s.id()
            );
            Seen {
                kind: s.kind(),
                file: s.location().file(),
                polls: 0,
                busy: Duration::ZERO,
                wakes: 0,
                self_wakes: 0,
                clones: 0,
                drops: 0,
                outcome: Outcome::Running,
                dropped: false,
                first_poll: false,
                reports: 0,
                poll_hist: 0,
                sched_hist: 0,
            }
        });
        e.polls = s.polls();
        e.busy = s.busy_time();
        e.wakes = s.wakes();
        e.self_wakes = s.self_wakes();
        e.clones = s.waker_clones();
        e.drops = s.waker_drops();
        e.outcome = s.outcome();
        e.dropped = s.dropped_at().is_some();
        e.first_poll = s.first_poll().is_some();
        e.reports += 1;
        e.poll_hist = s.poll_times().counts.iter().map(|&c| u64::from(c)).sum();
        e.sched_hist = s
            .scheduled_times()
            .counts
            .iter()
            .map(|&c| u64::from(c))
            .sum();
        assert_eq!(
            s.poll_times().counts.len(),
            kyoto_rt::instrument::histogram::LEN
        );
        if let (Some(d), c) = (s.dropped_at(), s.created_at()) {
            assert!(d >= c, "dropped before created");
        }
    });
}

#[test]
fn a_consumer_sees_spawns_polls_wakes_and_completion_and_nothing_is_recorded_without_one() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();

    // Before any consumer: an uninstrumented task.
    let before = rt.spawn(async { sleep(Duration::from_millis(30)).await });
    let before_id = before.id().as_u64();
    assert!(!Consumer::is_enabled());

    let mut c = Consumer::acquire().expect("the first consumer");
    assert!(Consumer::is_enabled());
    assert!(Consumer::acquire().is_none(), "one consumer at a time");

    let sleeper = rt.spawn(async {
        for _ in 0..3 {
            sleep(Duration::from_millis(5)).await;
        }
        7
    });
    let self_waker = rt.spawn(async {
        let mut n = 0;
        poll_fn(|cx| {
            n += 1;
            if n < 4 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    });
    let panicker = rt.spawn(async { panic!("boom") });
    let aborted = rt.spawn(std::future::pending::<()>());
    let blocking = rt.spawn_blocking(|| std::thread::sleep(Duration::from_millis(2)));

    let ids = [
        sleeper.id().as_u64(),
        self_waker.id().as_u64(),
        panicker.id().as_u64(),
        aborted.id().as_u64(),
        blocking.id().as_u64(),
    ];
    let mut seen = HashMap::new();
    collect(&mut c, &mut seen);
    aborted.abort();
    rt.block_on(async {
        assert_eq!(sleeper.await.unwrap(), 7);
        self_waker.await.unwrap();
        assert!(panicker.await.unwrap_err().is_panic());
        assert!(aborted.await.unwrap_err().is_cancelled());
        blocking.await.unwrap();
        before.await.unwrap();
    });
    collect(&mut c, &mut seen);
    assert!(
        !seen.contains_key(&before_id),
        "spawned before the consumer"
    );

    let s = &seen[&ids[0]];
    assert_eq!(s.kind, TaskKind::Spawn);
    assert!(
        s.file.ends_with("instrument.rs"),
        "spawn location {}",
        s.file
    );
    assert_eq!(s.polls, 4, "{s:?}");
    assert_eq!(s.wakes, 3, "{s:?}");
    assert_eq!(s.self_wakes, 0, "{s:?}");
    assert!(
        s.clones >= 3 && s.drops == s.clones,
        "the timer's waker clones all went back: {s:?}"
    );
    assert!(s.busy > Duration::ZERO && s.first_poll);
    assert!(s.dropped && s.outcome == Outcome::Ok);
    assert_eq!(
        s.poll_hist, s.polls,
        "every poll is in the poll-time histogram"
    );
    assert_eq!(
        s.sched_hist, 3,
        "one scheduled time per wake that led to a poll"
    );

    let s = &seen[&ids[1]];
    assert_eq!((s.polls, s.wakes, s.self_wakes), (4, 3, 3), "{s:?}");
    assert_eq!(
        s.clones, 0,
        "wake_by_ref on the lent waker clones nothing: {s:?}"
    );

    assert_eq!(seen[&ids[2]].outcome, Outcome::Panicked);
    assert_eq!(seen[&ids[3]].outcome, Outcome::Cancelled);
    let b = &seen[&ids[4]];
    assert_eq!(
        (b.kind, b.polls, b.outcome),
        (TaskKind::Blocking, 1, Outcome::Ok)
    );

    // Completed tasks were reported after completion and are forgotten: nothing changes now.
    let reports: HashMap<u64, u32> = seen.iter().map(|(k, v)| (*k, v.reports)).collect();
    collect(&mut c, &mut seen);
    for (k, v) in &seen {
        assert_eq!(
            v.reports, reports[k],
            "task {k} reported again after completion"
        );
    }
    assert_eq!(c.tracked(), 0);

    // On a current-thread runtime: a future whose destructor panics after it returned `Ready`, and
    // one that wakes itself by value through clones of its waker.
    let ct = Builder::new_current_thread().build().unwrap();
    let (dtor_id, by_value_id) = ct.block_on(async {
        let dtor = kyoto_rt::spawn(ReadyThenPanicOnDrop);
        let by_value = kyoto_rt::spawn(async {
            let mut n = 0;
            poll_fn(|cx| {
                n += 1;
                if n < 3 {
                    let kept = cx.waker().clone(); // counted as a clone, then as a drop
                    kept.wake();
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await
        });
        let ids = (dtor.id().as_u64(), by_value.id().as_u64());
        assert!(dtor.await.unwrap_err().is_panic());
        by_value.await.unwrap();
        ids
    });
    collect(&mut c, &mut seen);
    let s = &seen[&dtor_id];
    assert_eq!((s.polls, s.outcome), (1, Outcome::Panicked), "{s:?}");
    assert!(s.dropped, "{s:?}");
    let s = &seen[&by_value_id];
    assert_eq!(
        (s.polls, s.wakes, s.self_wakes, s.clones, s.drops, s.outcome),
        (3, 2, 2, 2, 2, Outcome::Ok),
        "a wake by value counts a wake and a drop: {s:?}"
    );
    assert_eq!(s.sched_hist, 2, "{s:?}");
    assert_eq!(c.tracked(), 0);

    drop(c);
    assert!(!Consumer::is_enabled());
    let after = rt.spawn(async { 1 });
    let after_id = after.id().as_u64();
    let mut c = Consumer::acquire().expect("a consumer again after the first was dropped");
    rt.block_on(async { after.await.unwrap() });
    let mut later = HashMap::new();
    collect(&mut c, &mut later);
    assert!(
        !later.contains_key(&after_id),
        "spawned while no consumer existed"
    );
}

/// Completes at its first poll; its destructor panics.
struct ReadyThenPanicOnDrop;

impl std::future::Future for ReadyThenPanicOnDrop {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Drop for ReadyThenPanicOnDrop {
    fn drop(&mut self) {
        panic!("a destructor that panics");
    }
}
