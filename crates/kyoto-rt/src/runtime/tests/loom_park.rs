//! Parking a worker on its condvar (`multi_thread/park.rs`): an unpark is never lost, and a parker
//! holds at most one notification.
//!
//! The parkers share a `SharedDriver::without_driver`, so `park` finds the driver slot empty and
//! sleeps on the condvar — the path every worker but the driver's owner takes. A lost wake-up shows
//! up as a loom deadlock: the parker blocks with no thread left to wake it.
use super::check;
use super::park::{Parker, SharedDriver};
use crate::loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::loom::sync::Arc;
use crate::loom::thread;

fn parker() -> Parker {
    Parker::new(Arc::new(SharedDriver::without_driver()))
}

#[test]
fn loom_park_an_unpark_racing_a_park_is_never_lost() {
    check(4, || {
        let mut parker = parker();
        let unparker = parker.unparker();
        let t = thread::spawn(move || unparker.unpark());
        parker.park();
        t.join().unwrap();
    });
}

#[test]
fn loom_park_an_unpark_before_the_park_makes_it_return_at_once() {
    check(4, || {
        let mut parker = parker();
        parker.unparker().unpark();
        // With no other thread, blocking here would be reported as a deadlock.
        parker.park();
    });
}

#[test]
fn loom_park_two_unparks_leave_one_notification() {
    check(4, || {
        let mut parker = parker();
        let unparker = parker.unparker();
        unparker.unpark();
        unparker.unpark();
        parker.park();

        // The second park must wait for a fresh unpark: had the two unparks left two notifications,
        // it could return before the flag is set.
        let flag = Arc::new(AtomicUsize::new(0));
        let t = {
            let flag = flag.clone();
            thread::spawn(move || {
                flag.store(1, SeqCst);
                unparker.unpark();
            })
        };
        parker.park();
        assert_eq!(
            flag.load(SeqCst),
            1,
            "park returned on a stale notification"
        );
        t.join().unwrap();
    });
}

#[test]
fn loom_park_a_park_loop_sees_every_unpark_of_two_racing_unparkers() {
    check(4, || {
        // The worker's pattern: publish work, then unpark; the parker re-checks for work after every
        // return from `park` and parks again when it finds none.
        let mut parker = parker();
        let work = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (work, unparker) = (work.clone(), parker.unparker());
                thread::spawn(move || {
                    work.fetch_add(1, SeqCst);
                    unparker.unpark();
                })
            })
            .collect();
        while work.load(SeqCst) < 2 {
            parker.park();
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn loom_park_a_zero_timeout_park_never_sleeps_and_consumes_a_notification() {
    check(4, || {
        let mut parker = parker();
        let unparker = parker.unparker();
        // Nothing pending: returns at once (sleeping would deadlock the model).
        parker.park_timeout_zero();
        let flag = Arc::new(AtomicUsize::new(0));
        unparker.unpark();
        parker.park_timeout_zero();
        // The notification was consumed: the next park waits for the thread's unpark.
        let t = {
            let flag = flag.clone();
            thread::spawn(move || {
                flag.store(1, SeqCst);
                unparker.unpark();
            })
        };
        parker.park();
        assert_eq!(
            flag.load(SeqCst),
            1,
            "park returned on a consumed notification"
        );
        t.join().unwrap();
    });
}
