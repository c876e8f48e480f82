//! The searching/parked bookkeeping (`multi_thread/idle.rs`): a task pushed by a remote thread while
//! the last searching worker gives up and parks is never left queued with every worker asleep.
//!
//! The worker side follows `worker.rs` step for step (`steal_work`'s last look at the injector,
//! `Core::transition_to_parked` → `Handle::notify_if_work_pending`, `Core::transition_from_parked`),
//! the remote side `Handle::schedule_task` (push, then `notify_parked_remote`).
use super::idle::Idle;
use super::park::{Parker, SharedDriver};
use super::{check, probes};
use crate::loom::sync::{Arc, Mutex};
use crate::loom::thread;
use crate::runtime::scheduler::multi_thread::queue::Inject;

#[test]
fn loom_idle_a_remote_push_racing_the_last_searcher_parking_leaves_a_worker_awake() {
    check(4, || {
        // Two workers: worker 0 is parked, worker 1 is the only searcher and finds nothing yet.
        let idle = Arc::new(Idle::new(2));
        assert!(!idle.transition_worker_to_parked(0, false));
        assert!(idle.transition_worker_to_searching());
        let inject = Arc::new(Inject::new());
        let woken = Arc::new(Mutex::new(Vec::new()));
        let (mut tasks, runs) = probes(1);

        let searcher = {
            let (idle, inject, woken) = (idle.clone(), inject.clone(), woken.clone());
            thread::spawn(move || {
                if let Some(task) = inject.pop() {
                    // Found work: the last searcher to stop searching wakes a peer.
                    if idle.transition_worker_from_searching() {
                        if let Some(w) = idle.worker_to_notify() {
                            woken.lock().unwrap().push(w);
                        }
                    }
                    task.run();
                    return;
                }
                if idle.transition_worker_to_parked(1, true) && !inject.is_empty() {
                    if let Some(w) = idle.worker_to_notify() {
                        woken.lock().unwrap().push(w);
                    }
                }
            })
        };
        let remote = {
            let (idle, inject, woken) = (idle.clone(), inject.clone(), woken.clone());
            let task = tasks.pop().unwrap();
            thread::spawn(move || {
                inject.push(task);
                if let Some(w) = idle.worker_to_notify() {
                    woken.lock().unwrap().push(w);
                }
            })
        };
        searcher.join().unwrap();
        remote.join().unwrap();

        let woken = woken.lock().unwrap().clone();
        if inject.is_empty() {
            runs.assert_each_ran_once();
        } else {
            assert!(
                !woken.is_empty(),
                "a task is queued and every worker is parked"
            );
            for w in &woken {
                assert!(
                    !idle.is_parked(*w),
                    "worker {w} was woken but is still listed parked"
                );
            }
            // The woken worker starts out searching.
            assert!(idle.num_searching() >= 1);
        }
        drop(inject);
        runs.assert_all_dropped();
    });
}

#[test]
fn loom_idle_a_worker_parking_as_a_remote_push_arrives_always_runs_the_task() {
    check(4, || {
        // One worker and its parker, end to end: the worker looks at the injector, finds nothing,
        // parks (waking itself if it was the last searcher and work arrived), and sleeps until it is
        // taken off the sleepers. A lost wake-up is a loom deadlock.
        let idle = Arc::new(Idle::new(1));
        let inject = Arc::new(Inject::new());
        let mut parker = Parker::new(Arc::new(SharedDriver::without_driver()));
        let unpark = [parker.unparker()];
        let (mut tasks, runs) = probes(1);

        let remote = {
            let (idle, inject, unpark) = (idle.clone(), inject.clone(), unpark.clone());
            let task = tasks.pop().unwrap();
            thread::spawn(move || {
                inject.push(task);
                if let Some(w) = idle.worker_to_notify() {
                    unpark[w].unpark();
                }
            })
        };

        let mut searching = idle.transition_worker_to_searching();
        assert!(searching);
        loop {
            if let Some(task) = inject.pop() {
                if searching {
                    idle.transition_worker_from_searching();
                }
                task.run();
                break;
            }
            let was_last_searcher = idle.transition_worker_to_parked(0, searching);
            if was_last_searcher && !inject.is_empty() {
                if let Some(w) = idle.worker_to_notify() {
                    unpark[w].unpark();
                }
            }
            // Asleep until `worker_to_notify` takes us off the sleepers (it counts us searching).
            loop {
                parker.park();
                if !idle.is_parked(0) {
                    searching = true;
                    break;
                }
            }
        }
        remote.join().unwrap();
        runs.assert_each_ran_once();
        assert!(inject.is_empty());
        drop(inject);
        runs.assert_all_dropped();
    });
}
