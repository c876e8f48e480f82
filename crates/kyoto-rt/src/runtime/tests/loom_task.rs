//! The task state machine (`task/state.rs`, `task/cell.rs`, `task/join.rs`, `task/list.rs`) against
//! a [`TestSched`] whose queue the model threads drain themselves.
//!
//! What every model checks besides its own claim:
//! - the future is dropped exactly once and its output (kept inside it until it completes) exactly
//!   once, wherever it ends (in the `JoinHandle`'s owner, at completion, or with the future);
//! - a task is never in a run queue twice (`TestSched::schedule` asserts it) and is released once;
//! - the future is only touched by one thread at a time (its slot is a loom `UnsafeCell`, which
//!   reports unsynchronised accesses);
//! - nothing leaks: the task holds the scheduler through a loom `Arc`, and the scheduler holds the
//!   task in its `OwnedTasks` until completion, so a task that never completes (or a reference left
//!   in a queue) fails the model with "Arc leaked".
use super::{block_on, check, DropCount, PendingN, TestSched};
use crate::loom::thread;
use crate::runtime::task::{Id, JoinHandle};

/// A spawned task that was polled once and now waits for a wake.
struct IdleTask {
    sched: TestSched,
    join: JoinHandle<super::Token>,
    waker: std::task::Waker,
    /// Where the future leaves its waker at every `Pending` poll.
    slot: super::WakerSlot,
    id: Id,
    future_drops: DropCount,
    output_drops: DropCount,
}

fn spawn_idle() -> IdleTask {
    spawn_pending(1)
}

/// Spawns a task that returns `Pending` `n` times, and runs its first poll.
fn spawn_pending(n: usize) -> IdleTask {
    let sched = TestSched::new();
    let (future_drops, output_drops) = (DropCount::new(), DropCount::new());
    let (future, slot) = PendingN::new(n, &future_drops, &output_drops);
    let join = sched.spawn(future);
    let id = join.id();
    sched.run_all();
    assert_eq!(sched.schedules(id), 1);
    IdleTask {
        waker: slot.take(),
        slot,
        sched,
        join,
        id,
        future_drops,
        output_drops,
    }
}

/// The checks common to every model, once all its threads are joined and the queue drained: the
/// future and its output were dropped once, the task released once, nothing is left queued or owned.
fn assert_ended_cleanly(
    sched: &TestSched,
    id: Id,
    future_drops: &DropCount,
    output_drops: &DropCount,
) {
    assert_eq!(
        future_drops.get(),
        1,
        "future dropped more or less than once"
    );
    assert_eq!(
        output_drops.get(),
        1,
        "output dropped more or less than once"
    );
    assert_eq!(
        sched.releases(id),
        1,
        "task released more or less than once"
    );
    assert_eq!(sched.queued(), 0);
    assert!(sched.owned().alive() == 0);
}

#[test]
fn loom_task_abort_racing_completion_yields_the_output_or_cancelled() {
    check(3, || {
        let IdleTask {
            sched,
            mut join,
            waker,
            id,
            future_drops,
            output_drops,
            ..
        } = spawn_idle();
        let abort = join.abort_handle();

        // The wake leads to the poll that completes the task; the abort races it. Both threads then
        // run what they queued, while the owner of the JoinHandle awaits it.
        let waking = {
            let sched = sched.clone();
            thread::spawn(move || {
                waker.wake();
                sched.run_all();
            })
        };
        let aborting = {
            let sched = sched.clone();
            thread::spawn(move || {
                abort.abort();
                sched.run_all();
                abort
            })
        };

        let out = block_on(&mut join);
        assert!(
            join.is_finished(),
            "is_finished is false after the output was returned"
        );
        assert_eq!(
            future_drops.get(),
            1,
            "completion observable before the future's drop"
        );
        match out {
            Ok(token) => {
                assert_eq!(output_drops.get(), 0);
                drop(token);
            }
            Err(e) => {
                assert!(e.is_cancelled(), "{e:?}");
                assert_eq!(
                    output_drops.get(),
                    1,
                    "the cancelled future kept its output"
                );
            }
        }
        waking.join().unwrap();
        let abort = aborting.join().unwrap();

        // Aborting a finished task is a no-op.
        abort.abort();
        assert!(abort.is_finished());
        sched.run_all();
        assert_eq!(
            sched.schedules(id),
            2,
            "the spawn, then one of the wake and the abort"
        );
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}

#[test]
fn loom_task_wake_racing_completion_and_join_handle_drop_schedules_once_and_drops_output_once() {
    check(4, || {
        let IdleTask {
            sched,
            join,
            waker,
            id,
            future_drops,
            output_drops,
            ..
        } = spawn_idle();
        let second_waker = waker.clone();

        // One thread wakes the task and runs it to completion; another wakes it again (before,
        // during or after that poll, or after the last reference but its own is gone); the
        // JoinHandle is dropped meanwhile, so the output is dropped at completion or by the handle.
        let completing = {
            let sched = sched.clone();
            thread::spawn(move || {
                waker.wake();
                sched.run_all();
            })
        };
        let waking = {
            let sched = sched.clone();
            thread::spawn(move || {
                second_waker.wake_by_ref();
                drop(second_waker);
                sched.run_all();
            })
        };
        drop(join);

        completing.join().unwrap();
        waking.join().unwrap();
        sched.run_all();

        assert_eq!(
            sched.schedules(id),
            2,
            "the spawn, then one schedule for two wakes"
        );
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}

/// Two threads wake a task that returns `Pending` twice and run the queue. A wake that lands while
/// the task is being polled must not queue it (the runner requeues it when the poll ends), so it is
/// never in the queue twice nor polled by two threads at once. With `strict`, also checks that no
/// wake is lost: a task left idle must have started its last poll after both wakes.
fn wake_during_a_poll(strict: bool) {
    // Executions in which a wake landed during a poll (counted outside loom, across executions).
    let requeued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requeued.clone();
    check(4, move || {
        let IdleTask {
            sched,
            mut join,
            waker,
            slot,
            id,
            future_drops,
            output_drops,
        } = spawn_pending(2);
        let threads: Vec<_> = [waker.clone(), waker]
            .into_iter()
            .map(|waker| {
                let (sched, slot) = (sched.clone(), slot.clone());
                thread::spawn(move || {
                    slot.announce_wake();
                    waker.wake();
                    sched.run_all();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sched.run_all();
        if join.is_finished() {
            // Each wake made its own poll.
            assert_eq!(sched.schedules(id), 3);
        } else {
            // The two wakes made one poll together: both must have landed before it began. A
            // wake that came during that poll and was dropped is a lost wake-up.
            if strict {
                assert_eq!(
                    slot.announced_at_last_poll(),
                    2,
                    "a wake during a poll was lost"
                );
            }
            assert_eq!(sched.schedules(id), 2);
            // One more wake finishes the task.
            slot.take().wake();
            sched.run_all();
        }
        if sched.requeues(id) > 0 {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let out = block_on(&mut join).expect("the task completes");
        drop(out);
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
    assert!(
        requeued.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no execution woke the task during a poll"
    );
}

#[test]
fn loom_task_a_wake_during_a_poll_requeues_the_task_instead_of_scheduling_it() {
    wake_during_a_poll(false);
}

/// The lost wake-up of `loom_state_a_wake_is_followed_by_a_poll_that_sees_the_wakers_writes`,
/// through the real task cell and scheduler.
#[test]
fn loom_task_a_wake_during_a_poll_is_never_lost() {
    wake_during_a_poll(true);
}

#[test]
fn loom_task_abort_of_an_idle_task_racing_a_wake_schedules_it_once() {
    check(4, || {
        let IdleTask {
            sched,
            mut join,
            waker,
            id,
            future_drops,
            output_drops,
            ..
        } = spawn_idle();
        let abort = join.abort_handle();

        let waking = thread::spawn(move || waker.wake());
        let aborting = thread::spawn(move || abort.abort());
        waking.join().unwrap();
        aborting.join().unwrap();

        // Whichever came first submitted the task; the other only set its bit.
        assert_eq!(
            sched.schedules(id),
            2,
            "the spawn, then exactly one schedule"
        );
        assert!(!join.is_finished());
        sched.run_all();
        // The abort landed before the task ran again: it is cancelled, whatever the order.
        let err = block_on(&mut join).expect_err("an aborted task completed");
        assert!(err.is_cancelled());
        assert!(join.is_finished());
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}

#[test]
fn loom_task_abort_of_an_idle_task_alone_cancels_it() {
    check(4, || {
        // Nothing else will ever wake the task: the abort itself must get it to a worker, which drops
        // its future, while the JoinHandle's owner waits.
        let IdleTask {
            sched,
            mut join,
            waker,
            id,
            future_drops,
            output_drops,
            ..
        } = spawn_idle();
        drop(waker);
        let abort = join.abort_handle();
        let aborting = {
            let sched = sched.clone();
            thread::spawn(move || {
                abort.abort();
                sched.run_all();
            })
        };
        let err = block_on(&mut join).expect_err("an aborted task completed");
        assert!(err.is_cancelled());
        aborting.join().unwrap();
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}

#[test]
fn loom_task_runtime_shutdown_racing_a_poll_cancels_the_task_once() {
    check(4, || {
        // The task is queued; one thread polls it (it returns Pending) while the runtime shuts down
        // (`OwnedTasks::close_and_shutdown_all`). Whether shutdown finds it queued, running or idle,
        // it ends cancelled, its future dropped once, its queue entry skipped.
        let sched = TestSched::new();
        let (future_drops, output_drops) = (DropCount::new(), DropCount::new());
        let (future, slot) = PendingN::new(1, &future_drops, &output_drops);
        let mut join = sched.spawn(future);
        let id = join.id();

        let polling = {
            let sched = sched.clone();
            thread::spawn(move || sched.run_all())
        };
        sched.owned().close_and_shutdown_all();
        polling.join().unwrap();
        sched.run_all();

        let err = block_on(&mut join).expect_err("shutdown let the task complete");
        assert!(err.is_cancelled());
        drop(slot);
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}

#[test]
fn loom_task_spawn_racing_runtime_shutdown_is_cancelled_either_way() {
    check(4, || {
        // A spawn binds the task to the owned list unless it is closed; shutdown closes the list and
        // cancels what it holds. A task bound just before the close must not escape it.
        let sched = TestSched::new();
        let (future_drops, output_drops) = (DropCount::new(), DropCount::new());
        let spawning = {
            let sched = sched.clone();
            let (future_drops, output_drops) = (future_drops.clone(), output_drops.clone());
            thread::spawn(move || {
                let (future, _slot) = PendingN::new(1, &future_drops, &output_drops);
                sched.spawn(future)
            })
        };
        sched.owned().close_and_shutdown_all();
        let mut join = spawning.join().unwrap();
        let id = join.id();
        // A worker would still pop the queued entry: it must be skipped, not polled.
        sched.run_all();

        let err = block_on(&mut join).expect_err("a task escaped the shutdown");
        assert!(err.is_cancelled());
        assert_ended_cleanly(&sched, id, &future_drops, &output_drops);
    });
}
