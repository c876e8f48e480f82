//! The task allocation: state, future, scheduler and join slot in one `Arc`.
use super::state::{State, Submit, ToIdle, ToRunning};
use super::{Id, JoinError, Notified, RawTask, Schedule, Task};
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::Mutex;
use crate::runtime::coop;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub(crate) struct Cell<F: Future, S> {
    state: State,
    id: Id,
    scheduler: S,
    /// The future while it runs; `None` once it completed or was cancelled. Only the holder of the
    /// `RUNNING` bit touches it.
    future: UnsafeCell<Option<F>>,
    /// A waker for this task, made at the first poll and lent to every poll after, so a poll costs
    /// no reference-count traffic of its own. It is a reference to the task itself, so it is
    /// dropped together with the future (at completion or cancellation), breaking the cycle. Only
    /// the holder of `RUNNING` touches it.
    poll_waker: UnsafeCell<Option<Waker>>,
    join: Mutex<JoinSlot<F::Output>>,
}

/// What the `JoinHandle` and the completing worker share. A mutex rather than more state bits: it is
/// touched once at completion and when the handle is polled, never on the poll path of the task.
pub(crate) struct JoinSlot<T> {
    pub(crate) output: Option<Result<T, JoinError>>,
    pub(crate) waker: Option<Waker>,
    /// False once the `JoinHandle` is dropped: the output is then dropped at completion.
    pub(crate) interest: bool,
}

// SAFETY: the future is only accessed by the thread holding the RUNNING bit (see the module
// invariants), so `Cell` can be shared between threads as long as `F` can be sent between them.
unsafe impl<F: Future + Send, S: Send + Sync> Sync for Cell<F, S> {}

impl<F, S> Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    pub(crate) fn new(future: F, scheduler: S, id: Id) -> Arc<Self> {
        Arc::new(Cell {
            state: State::new(),
            id,
            scheduler,
            future: UnsafeCell::new(Some(future)),
            poll_waker: UnsafeCell::new(None),
            join: Mutex::new(JoinSlot {
                output: None,
                waker: None,
                interest: true,
            }),
        })
    }

    /// Polls the future once. Must hold `RUNNING`.
    fn poll_future(self: &Arc<Self>) -> Result<Poll<F::Output>, Box<dyn std::any::Any + Send>> {
        // Soundness: we hold RUNNING, so no other thread touches `poll_waker`; the reference lives
        // only for this poll, and the slot is cleared only by `drop_future`, also under RUNNING.
        let (slot, make) = (&self.poll_waker, || Waker::from(self.clone()));
        // SAFETY: sound by the argument just above.
        let waker: &Waker = slot.with_mut(|w| unsafe { (*w).get_or_insert_with(make) });
        let mut cx = Context::from_waker(waker);
        catch_unwind(AssertUnwindSafe(|| {
            coop::budget(|| {
                self.future.with_mut(|ptr| {
                    // SAFETY: we hold RUNNING, so no other thread accesses the future; it is pinned
                    // because it never moves out of this `Arc` allocation until it is dropped in place.
                    let fut = unsafe { &mut *ptr };
                    match fut {
                        // SAFETY: see above — the future stays at this address until dropped.
                        Some(f) => unsafe { Pin::new_unchecked(f) }.poll(&mut cx),
                        None => unreachable!("a completed task is never polled"),
                    }
                })
            })
        }))
    }

    /// Drops the future in place, catching a panicking destructor. Must hold `RUNNING`.
    fn drop_future(&self) -> Option<Box<dyn std::any::Any + Send>> {
        let panic = catch_unwind(AssertUnwindSafe(|| {
            self.future.with_mut(|ptr| {
                // SAFETY: we hold RUNNING (exclusive access); setting the slot to None drops the
                // pinned future in place, which is allowed.
                unsafe { *ptr = None };
            })
        }))
        .err();
        // The cached waker is a reference to this task: drop it with the future, or the task would
        // keep itself alive. Taken out first so its drop runs outside the cell.
        // SAFETY: we hold RUNNING (exclusive access to `poll_waker`).
        let waker = self.poll_waker.with_mut(|w| unsafe { (*w).take() });
        drop(waker);
        panic
    }

    /// Publishes the output, wakes the join handle and releases the task from its scheduler.
    /// The future has been dropped already.
    fn complete(self: &Arc<Self>, output: Result<F::Output, JoinError>) {
        let mut discard = None;
        let waker = {
            let mut slot = lock(&self.join);
            if slot.interest {
                slot.output = Some(output);
            } else {
                discard = Some(output);
            }
            // Publish COMPLETE under the lock so that a polling JoinHandle sees output and state agree.
            self.state.transition_to_complete();
            slot.waker.take()
        };
        // A detached task's output is dropped here; a panicking destructor must not take the worker.
        if let Some(out) = discard {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
        }
        // The join handle may have been polled with any waker; one that panics must not take the
        // worker (and the runtime's shutdown) with it.
        if let Some(w) = waker {
            crate::runtime::wake_catching_panic(w);
        }
        self.scheduler.release(self.id);
    }

    fn cancel(self: &Arc<Self>) {
        let err = match self.drop_future() {
            Some(panic) => JoinError::panic(self.id, panic),
            None => JoinError::cancelled(self.id),
        };
        self.complete(Err(err));
    }

    fn schedule_if(self: &Arc<Self>, submit: Submit) {
        if submit == Submit::Yes {
            self.scheduler.schedule(Notified(self.clone()));
        }
    }

    // ---- used by JoinHandle / AbortHandle ----

    pub(crate) fn abort(self: &Arc<Self>) {
        let submit = self.state.transition_to_notified_and_cancel();
        self.schedule_if(submit);
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.state.is_complete()
    }

    pub(crate) fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let mut slot = lock(&self.join);
        if let Some(out) = slot.output.take() {
            return Poll::Ready(out);
        }
        assert!(
            !self.state.is_complete(),
            "JoinHandle polled after it returned its output"
        );
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub(crate) fn drop_join_handle(&self) {
        let (out, waker) = {
            let mut slot = lock(&self.join);
            slot.interest = false;
            (slot.output.take(), slot.waker.take())
        };
        drop(waker);
        if let Some(out) = out {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
        }
    }

    pub(crate) fn id(&self) -> Id {
        self.id
    }
}

fn lock<T>(m: &Mutex<T>) -> crate::loom::sync::MutexGuard<'_, T> {
    // A poisoned join slot only means a waker panicked while we held it; the data is still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<F, S> RawTask for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn id(&self) -> Id {
        self.id
    }

    fn run(self: Arc<Self>) {
        match self.state.transition_to_running() {
            ToRunning::Skip => return,
            ToRunning::Cancel => return self.cancel(),
            ToRunning::Poll => {}
        }
        match self.poll_future() {
            Ok(Poll::Ready(out)) => {
                let out = match self.drop_future() {
                    None => Ok(out),
                    Some(panic) => Err(JoinError::panic(self.id, panic)),
                };
                self.complete(out);
            }
            Ok(Poll::Pending) => match self.state.transition_to_idle() {
                ToIdle::Idle => {}
                ToIdle::Requeue => self.scheduler.yield_now(Notified(self.clone())),
                ToIdle::Cancel => self.cancel(),
            },
            Err(panic) => {
                // The future is in an unknown state; drop it (a second panic is swallowed: the first
                // one is what the JoinHandle reports).
                let _ = self.drop_future();
                self.complete(Err(JoinError::panic(self.id, panic)));
            }
        }
    }

    fn shutdown(self: Arc<Self>) {
        if self.state.transition_to_shutdown() {
            self.cancel();
        }
    }
}

impl<F, S> Wake for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let submit = self.state.transition_to_notified();
        self.schedule_if(submit);
    }
}

/// Keeps `Task` nameable for callers that only need the erased form.
#[allow(dead_code)]
fn _assert_object_safe(_: &Task) {}
