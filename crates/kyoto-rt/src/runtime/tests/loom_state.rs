//! The task state word alone (`task/state.rs`), with the waker's data in a loom atomic, so the
//! memory model itself (not only the interleavings) is explored.
use super::check;
use super::state::{State, Submit, ToIdle, ToRunning};
use crate::loom::sync::atomic::{AtomicBool, Ordering::*};
use crate::loom::sync::Arc;
use crate::loom::thread;

/// Polls the task as a worker does — take `RUNNING`, "poll" (read the wakers' flags), go idle,
/// poll again when woken during the poll — and returns what the last poll read.
fn run(state: &State, flags: &[AtomicBool; 2]) -> [bool; 2] {
    assert_eq!(state.transition_to_running(), ToRunning::Poll);
    loop {
        let seen = [flags[0].load(Acquire), flags[1].load(Acquire)];
        match state.transition_to_idle() {
            ToIdle::Idle => return seen,
            ToIdle::Requeue => assert_eq!(state.transition_to_running(), ToRunning::Poll),
            ToIdle::Cancel => unreachable!("never aborted"),
        }
    }
}

#[test]
fn loom_state_a_wake_is_followed_by_a_poll_that_sees_the_wakers_writes() {
    check(4, || {
        // The contract of `Waker::wake`: a poll follows, and it sees what the waker wrote before
        // waking (a channel's sender pushes a message, then wakes the receiver).
        //
        // The task is idle. Two threads each set their flag, wake the task and, if their wake
        // submitted it, run it until it goes idle. The task's last poll must see both flags.
        //
        // It fails today: `transition_to_notified` loads the state and, finding it NOTIFIED
        // (queued), returns `Submit::No` without writing. That load may read a stale NOTIFIED:
        // the other thread's wake has queued the task and its poll has already taken RUNNING and
        // read the flags — without ours, since nothing orders our flag before that poll. Our wake
        // then neither sets NOTIFIED on the running task nor synchronizes with its poll, and the
        // task goes idle having missed our write. This is store buffering (our flag store, then
        // our state load; their state CAS, then their flag load), allowed for Acquire/Release
        // and on x86. An RMW in every wake (`fetch_or(NOTIFIED, AcqRel)`) closes it.
        let state = Arc::new(State::new());
        assert_eq!(state.transition_to_running(), ToRunning::Poll);
        assert_eq!(state.transition_to_idle(), ToIdle::Idle);
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);

        let wakers: Vec<_> = (0..2)
            .map(|i| {
                let (state, flags) = (state.clone(), flags.clone());
                thread::spawn(move || {
                    flags[i].store(true, Release);
                    (state.transition_to_notified() == Submit::Yes).then(|| run(&state, &flags))
                })
            })
            .collect();
        let last_polls: Vec<[bool; 2]> = wakers
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        // When both wakes submitted the task, the runs were one after the other and the later
        // one saw both flags; when one did, its run must have seen both.
        assert!(
            last_polls.contains(&[true, true]),
            "the task went idle without seeing a wake's write: {last_polls:?}"
        );
    });
}
