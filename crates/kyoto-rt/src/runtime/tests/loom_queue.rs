//! The local queue, the injector and stealing (`multi_thread/queue.rs`): overflow, injection, steals
//! and the shutdown drain never lose or duplicate a task.
//!
//! Under loom the local queue holds `LOCAL_QUEUE_CAPACITY` = 4 tasks.
use super::{check, probes};
use crate::loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use crate::loom::sync::Arc;
use crate::loom::thread;
use crate::runtime::scheduler::multi_thread::queue::{self, Inject, Local, LOCAL_QUEUE_CAPACITY};
use crate::runtime::task::Notified;

/// The worker's order (`Core::next_task` without the LIFO slot): local queue first, then a batch
/// from the injector. Runs everything it finds.
fn run_local_then_injector(local: &mut Local, inject: &Inject) {
    loop {
        let task = match local.pop() {
            Some(task) => Some(task),
            None => inject.pop_batch_into(local),
        };
        match task {
            Some(task) => task.run(),
            None => return,
        }
    }
}

#[test]
fn loom_queue_overflow_steal_and_inject_run_every_task_exactly_once() {
    assert_eq!(
        LOCAL_QUEUE_CAPACITY, 4,
        "the model is sized for a capacity of 4"
    );
    check(3, || {
        // Tasks 0..3 already sit in the worker's queue; the worker pushes 3 and 4 (the second push
        // finds the queue full unless the thief got there first) while a peer steals and a remote
        // thread injects task 5.
        let (mut tasks, runs) = probes(6);
        let injected = tasks.pop().unwrap();
        let pushed: Vec<Notified> = tasks.drain(3..).collect();
        let inject = Arc::new(Inject::new());
        let (mut local, steal) = queue::local();
        for task in tasks {
            assert!(!local.push_back_or_overflow(task, &inject));
        }

        let worker = {
            let inject = inject.clone();
            thread::spawn(move || {
                for task in pushed {
                    local.push_back_or_overflow(task, &inject);
                }
                run_local_then_injector(&mut local, &inject);
                local
            })
        };
        let thief = {
            let inject = inject.clone();
            thread::spawn(move || {
                let (mut mine, _mine_steal) = queue::local();
                if let Some(task) = steal.steal_into(&mut mine) {
                    task.run();
                }
                run_local_then_injector(&mut mine, &inject);
                mine
            })
        };
        let remote = {
            let inject = inject.clone();
            thread::spawn(move || inject.push(injected))
        };

        remote.join().unwrap();
        let mut local = worker.join().unwrap();
        let mut mine = thief.join().unwrap();
        // Whatever the threads left (a task injected after both looked) runs now, once.
        run_local_then_injector(&mut local, &inject);
        run_local_then_injector(&mut mine, &inject);

        assert!(local.is_empty() && mine.is_empty() && inject.is_empty());
        runs.assert_each_ran_once();
        drop((local, mine));
        runs.assert_all_dropped();
    });
}

#[test]
fn loom_queue_a_full_local_queue_moves_its_older_half_to_the_injector() {
    check(4, || {
        // No thief: the overflow itself, against a remote push into the same injector.
        let (mut tasks, runs) = probes(6);
        let injected = tasks.pop().unwrap();
        let inject = Arc::new(Inject::new());
        let (mut local, _steal) = queue::local();
        let last = tasks.pop().unwrap();
        for task in tasks {
            assert!(!local.push_back_or_overflow(task, &inject));
        }
        let remote = {
            let inject = inject.clone();
            thread::spawn(move || inject.push(injected))
        };
        assert!(
            local.push_back_or_overflow(last, &inject),
            "the 5th push overflows"
        );
        assert_eq!(local.len(), LOCAL_QUEUE_CAPACITY / 2 + 1);
        remote.join().unwrap();
        assert_eq!(inject.len(), LOCAL_QUEUE_CAPACITY / 2 + 1);
        run_local_then_injector(&mut local, &inject);
        runs.assert_each_ran_once();
        drop(local);
        runs.assert_all_dropped();
    });
}

/// `Handle::push_remote_task` (`multi_thread/worker.rs`, a private function the models cannot call),
/// step for step: refuse after shutdown, push, and drain again if shutdown began meanwhile.
fn push_remote_task(is_shutdown: &AtomicBool, inject: &Inject, task: Notified) {
    if is_shutdown.load(SeqCst) {
        return;
    }
    inject.push(task);
    if is_shutdown.load(SeqCst) {
        while inject.pop().is_some() {}
    }
}

#[test]
fn loom_queue_shutdown_drain_racing_a_remote_push_leaves_the_injector_empty() {
    check(4, || {
        let (mut tasks, runs) = probes(2);
        let inject = Arc::new(Inject::new());
        let is_shutdown = Arc::new(AtomicBool::new(false));

        let remotes: Vec<_> = tasks
            .drain(..)
            .map(|task| {
                let (inject, is_shutdown) = (inject.clone(), is_shutdown.clone());
                thread::spawn(move || push_remote_task(&is_shutdown, &inject, task))
            })
            .collect();

        // `Handle::close`, then the last worker's drain in `Handle::shutdown_core`.
        assert!(!is_shutdown.swap(true, SeqCst));
        while inject.pop().is_some() {}

        for remote in remotes {
            remote.join().unwrap();
        }
        assert!(
            inject.is_empty(),
            "a task reference outlived the shutdown drain"
        );
        runs.assert_all_dropped();
    });
}
