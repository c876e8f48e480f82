//! The task state word and its transitions.
//!
//! ```text
//!            wake                      dequeue                  poll → Pending
//!   idle ──────────▶ NOTIFIED ───────────────────▶ RUNNING ────────────────────▶ idle
//!    ▲                                             │   │  (NOTIFIED set while running:
//!    │                                             │   │   re-submitted by the runner)
//!    └─────────────────────────────────────────────┘   └──── poll → Ready / cancel ──▶ COMPLETE
//! ```
//!
//! `CANCELLED` can be added in any state but `COMPLETE`; whoever holds `RUNNING` next sees it and
//! drops the future instead of polling it.
use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};

const RUNNING: usize = 0b0001;
const COMPLETE: usize = 0b0010;
const NOTIFIED: usize = 0b0100;
const CANCELLED: usize = 0b1000;

pub(crate) struct State(AtomicUsize);

/// What the dequeuing worker must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToRunning {
    /// Poll the future.
    Poll,
    /// Drop the future and complete as cancelled.
    Cancel,
    /// The task completed meanwhile (shutdown cancelled it): just drop the reference.
    Skip,
}

/// What the runner must do after a poll returned `Pending`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToIdle {
    /// Nothing: the task waits for a wake.
    Idle,
    /// It was woken during the poll: queue it again (behind the others).
    Requeue,
    /// It was aborted during the poll: drop the future and complete as cancelled.
    Cancel,
}

/// Whether a state change obliges the caller to submit the task to a run queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Submit {
    Yes,
    No,
}

impl State {
    /// A new task is born notified: `spawn` queues it at once.
    pub(crate) fn new() -> State {
        State(AtomicUsize::new(NOTIFIED))
    }

    fn update<R>(&self, mut f: impl FnMut(usize) -> (Option<usize>, R)) -> R {
        let mut cur = self.0.load(Acquire);
        loop {
            let (next, ret) = f(cur);
            let Some(next) = next else { return ret };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return ret,
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn transition_to_running(&self) -> ToRunning {
        self.update(|cur| {
            // COMPLETE or RUNNING: runtime shutdown took the task while it sat in a queue.
            if cur & (COMPLETE | RUNNING) != 0 {
                return (None, ToRunning::Skip);
            }
            debug_assert!(cur & NOTIFIED != 0, "state {cur:#b}");
            let next = (cur | RUNNING) & !NOTIFIED;
            let action = if cur & CANCELLED != 0 {
                ToRunning::Cancel
            } else {
                ToRunning::Poll
            };
            (Some(next), action)
        })
    }

    pub(crate) fn transition_to_idle(&self) -> ToIdle {
        self.update(|cur| {
            debug_assert!(cur & RUNNING != 0, "state {cur:#b}");
            if cur & CANCELLED != 0 {
                // Keep RUNNING: the caller still owns the future and now drops it.
                return (None, ToIdle::Cancel);
            }
            let next = cur & !RUNNING;
            if cur & NOTIFIED != 0 {
                (Some(next), ToIdle::Requeue)
            } else {
                (Some(next), ToIdle::Idle)
            }
        })
    }

    /// A wake. Submits the task only when it was idle.
    ///
    /// Always a read-modify-write, even when the task already looks notified: a plain load may read
    /// a stale `NOTIFIED` while the poll it stands for already runs without this waker's writes (the
    /// store-buffering pattern; found by the `loom_state`/`loom_task` models). The RMW either
    /// precedes that poll's `RUNNING` CAS, which then synchronizes with it, or follows it and sets
    /// `NOTIFIED` on the running task, which is requeued. `NOTIFIED` on a `COMPLETE` task is inert.
    pub(crate) fn transition_to_notified(&self) -> Submit {
        let prev = self.0.fetch_or(NOTIFIED, AcqRel);
        if prev & (COMPLETE | NOTIFIED | RUNNING) == 0 {
            Submit::Yes
        } else {
            Submit::No
        }
    }

    /// `abort()`. Submits the task when it was idle, so that a worker drops its future promptly.
    pub(crate) fn transition_to_notified_and_cancel(&self) -> Submit {
        self.update(|cur| {
            if cur & (COMPLETE | CANCELLED) != 0 {
                (None, Submit::No)
            } else if cur & (RUNNING | NOTIFIED) != 0 {
                (Some(cur | CANCELLED), Submit::No)
            } else {
                (Some(cur | CANCELLED | NOTIFIED), Submit::Yes)
            }
        })
    }

    /// Runtime shutdown. Returns true when the caller took `RUNNING` and must cancel the task itself;
    /// false when it is running elsewhere (that poll will see `CANCELLED`) or already complete.
    pub(crate) fn transition_to_shutdown(&self) -> bool {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                (None, false)
            } else if cur & RUNNING != 0 {
                (Some(cur | CANCELLED), false)
            } else {
                (Some(cur | CANCELLED | RUNNING), true)
            }
        })
    }

    pub(crate) fn transition_to_complete(&self) {
        let prev = self.0.fetch_xor(RUNNING | COMPLETE, AcqRel);
        debug_assert!(
            prev & RUNNING != 0 && prev & COMPLETE == 0,
            "state {prev:#b}"
        );
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.0.load(Acquire) & COMPLETE != 0
    }

    #[cfg(test)]
    pub(crate) fn bits(&self) -> usize {
        self.0.load(Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_wake_while_running_requeues_once_the_poll_ends() {
        let s = State::new();
        assert_eq!(s.transition_to_running(), ToRunning::Poll);
        assert_eq!(s.transition_to_notified(), Submit::No);
        assert_eq!(s.transition_to_notified(), Submit::No);
        assert_eq!(s.transition_to_idle(), ToIdle::Requeue);
        assert_eq!(s.bits(), NOTIFIED);
    }

    #[test]
    fn an_idle_task_is_submitted_by_exactly_one_wake() {
        let s = State::new();
        s.transition_to_running();
        assert_eq!(s.transition_to_idle(), ToIdle::Idle);
        assert_eq!(s.transition_to_notified(), Submit::Yes);
        assert_eq!(s.transition_to_notified(), Submit::No);
    }

    #[test]
    fn abort_of_an_idle_task_submits_it_for_cancellation() {
        let s = State::new();
        s.transition_to_running();
        s.transition_to_idle();
        assert_eq!(s.transition_to_notified_and_cancel(), Submit::Yes);
        assert_eq!(s.transition_to_notified_and_cancel(), Submit::No);
        assert_eq!(s.transition_to_running(), ToRunning::Cancel);
    }

    #[test]
    fn abort_during_a_poll_cancels_when_the_poll_returns() {
        let s = State::new();
        s.transition_to_running();
        assert_eq!(s.transition_to_notified_and_cancel(), Submit::No);
        assert_eq!(s.transition_to_idle(), ToIdle::Cancel);
        s.transition_to_complete();
        assert!(s.is_complete());
        assert_eq!(s.transition_to_notified(), Submit::No);
    }

    #[test]
    fn shutdown_takes_an_idle_task_but_not_a_running_one() {
        let s = State::new();
        assert!(s.transition_to_shutdown(), "a queued task is taken");
        let r = State::new();
        r.transition_to_running();
        assert!(!r.transition_to_shutdown());
        assert_eq!(r.transition_to_idle(), ToIdle::Cancel);
    }
}
