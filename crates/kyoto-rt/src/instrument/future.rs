//! The future an instrumented task runs in place of its own: [`Instrumented`].
//!
//! Instrumentation lives entirely here, outside the task `Cell`, so that a task spawned while
//! instrumentation is off is exactly the uninstrumented `Cell<F, S>` — no stats field, no branch in
//! its poll, waker or completion paths. A task spawned while it is on is a `Cell<Instrumented<F>, S>`
//! instead (see `runtime::task::new_task`).
//!
//! What the wrapper records, and where:
//!
//! - **polls, busy time, poll-time histogram, first/last poll:** [`TaskStats::poll_start`] before
//!   and [`TaskStats::poll_end`] after each poll of the inner future; the end is recorded by a drop
//!   guard, so a poll that panics (the `Cell` catches the panic outside this wrapper) is still
//!   counted and timed;
//! - **scheduled time (wake → poll), scheduled-time histogram:** the first wake after a poll stores
//!   its time; `poll_start` turns it into a scheduled duration;
//! - **wakes, self-wakes, waker clones and drops:** the inner future is polled with a *counting
//!   waker* that wraps the task's own waker (the one the `Cell` lends to every poll). It is made at
//!   the first poll and lent to every poll after, like the `Cell`'s; its wakes are counted, its
//!   clones are counted, and the drops of those clones (or their wakes by value) are counted — the
//!   lent waker's own drop is not (as in Tokio);
//! - **outcome and completion time:** recorded when the wrapper is dropped (the `Cell` drops the
//!   future before it publishes completion): `Ok` if the inner future returned `Ready`, `Panicked`
//!   if a poll of it panicked or its destructor panics (the thread is panicking while the wrapper's
//!   fields are dropped), otherwise `Cancelled` (aborted, or cancelled by runtime shutdown).
use super::{Outcome, PollGuard, TaskStats};
use crate::loom::thread;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// A future with its task's statistics. Spawned instead of the future itself when instrumentation
/// is on at spawn.
pub(crate) struct Instrumented<F> {
    /// Structurally pinned: never moved out of; dropped in place with the wrapper (which has no
    /// `Drop` impl of its own, and is `Unpin` only when `F` is).
    future: F,
    /// The counting waker lent to every poll of `future`, made at the first poll. It wraps the task
    /// waker of that poll; a poll with another task waker (which the `Cell`, lending the same one to
    /// every poll, never does) makes a new one.
    waker: Option<Waker>,
    /// The identity (data and vtable addresses) of the task waker `waker` was made for. Compared
    /// with the waker itself rather than with `will_wake` on a clone, whose vtable may be another
    /// copy of the same table. The addresses cannot be reused by another waker meanwhile: `waker`
    /// holds a clone of that task waker.
    task_waker: (usize, usize),
    /// Declared after `future`, so dropped after it: records the outcome once the future is gone.
    record: Record,
}

/// Records the task's outcome when dropped (see the module documentation).
struct Record {
    stats: Arc<TaskStats>,
    /// The inner future returned `Ready`.
    ready: bool,
    /// A poll of the inner future panicked.
    poll_panicked: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        // `panicking()` here means the inner future's destructor panicked: the fields of the wrapper
        // are dropped in order, and this one is still dropped while that panic unwinds.
        let outcome = if self.poll_panicked || thread::panicking() {
            Outcome::Panicked
        } else if self.ready {
            Outcome::Ok
        } else {
            Outcome::Cancelled
        };
        self.stats.complete(outcome);
    }
}

/// Ends the poll begun with `started` when dropped: on return, or while a panic of the inner poll
/// unwinds through the wrapper.
struct Polling<'a> {
    record: &'a mut Record,
    started: Option<PollGuard>,
    returned: bool,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.started.take() {
            self.record.stats.poll_end(g);
        }
        if !self.returned {
            self.record.poll_panicked = true;
        }
    }
}

impl<F: Future> Instrumented<F> {
    pub(crate) fn new(future: F, stats: Arc<TaskStats>) -> Instrumented<F> {
        Instrumented {
            future,
            waker: None,
            task_waker: (0, 0),
            record: Record {
                stats,
                ready: false,
                poll_panicked: false,
            },
        }
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: only `future` is pinned (structurally, see its field), and it is neither moved
        // here nor anywhere else; `waker` and `record` are not pinned and may be used by `&mut`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `future` is structurally pinned: `this` was pinned and the field never moves.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        let task = cx.waker();
        let identity = (
            task.data() as usize,
            std::ptr::from_ref(task.vtable()) as usize,
        );
        if this.waker.is_none() || this.task_waker != identity {
            this.task_waker = identity;
            this.waker = Some(counting_waker(Arc::new(Counting {
                stats: this.record.stats.clone(),
                task: task.clone(),
            })));
        }
        let Some(lent) = &this.waker else {
            unreachable!("made just above")
        };
        let mut polling = Polling {
            started: Some(this.record.stats.poll_start()),
            record: &mut this.record,
            returned: false,
        };
        let out = future.poll(&mut Context::from_waker(lent));
        polling.returned = true;
        polling.record.ready = out.is_ready();
        drop(polling);
        out
    }
}

/// What a counting waker points to: the task's stats and the task's own waker.
struct Counting {
    stats: Arc<TaskStats>,
    task: Waker,
}

/// The lent waker: wakes are counted, clones are counted (and become `COUNTED`), its own drop is not.
static LENT: RawWakerVTable = RawWakerVTable::new(
    counting_clone,
    counting_wake_lent,
    counting_wake_by_ref,
    counting_drop_lent,
);

/// A clone the future made: wakes, clones and its drop (or wake by value) are counted.
static COUNTED: RawWakerVTable = RawWakerVTable::new(
    counting_clone,
    counting_wake_counted,
    counting_wake_by_ref,
    counting_drop_counted,
);

// Reference counting of the counting wakers: the data pointer of every `LENT` or `COUNTED` waker is
// `Arc::into_raw` of an `Arc<Counting>`, and each such waker owns exactly one strong reference of it.
// `counting_clone` adds one for the new waker; `counting_drop_*` and `counting_wake_*` by value
// (which consume their waker) give theirs back; `counting_wake_by_ref` only borrows. So the count
// never reaches zero while a waker that points to it exists, and the `Counting` (with the task waker
// and stats it holds) is freed when the last of them goes.

/// Makes the lent waker out of `counting`, whose strong reference it takes over.
fn counting_waker(counting: Arc<Counting>) -> Waker {
    let ptr = Arc::into_raw(counting).cast::<()>();
    // Soundness: `ptr` carries one strong reference to a `Counting`, and the functions of `LENT`
    // honour the `RawWaker` contract for it by the reference-count argument above. `Counting` is
    // `Send + Sync` (an `Arc<TaskStats>` and a `Waker`), so the waker may be used from any thread.
    // SAFETY: sound by the argument just above.
    unsafe { Waker::from_raw(RawWaker::new(ptr, &LENT)) }
}

unsafe fn counting_clone(ptr: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned owns a strong reference `ptr` stands for (see the argument
    // above), so the count is at least one while we add one for the new waker.
    unsafe { Arc::increment_strong_count(ptr.cast::<Counting>()) };
    // SAFETY: `ptr` points to a live `Counting` (the reference the caller's waker owns).
    let c = unsafe { &*ptr.cast::<Counting>() };
    c.stats.waker_cloned();
    RawWaker::new(ptr, &COUNTED)
}

unsafe fn counting_wake_by_ref(ptr: *const ()) {
    // SAFETY: borrowed from the caller's waker, which owns a strong reference for the whole call.
    let c = unsafe { &*ptr.cast::<Counting>() };
    c.stats.wake();
    c.task.wake_by_ref();
}

unsafe fn counting_wake_lent(ptr: *const ()) {
    // SAFETY: a wake by value consumes the waker: its strong reference is taken back here and
    // released at the end of this function.
    let c = unsafe { Arc::from_raw(ptr.cast::<Counting>()) };
    // The lent waker is never woken by value in practice: only the wrapper owns it.
    c.stats.wake();
    c.task.wake_by_ref();
}

unsafe fn counting_wake_counted(ptr: *const ()) {
    // SAFETY: a wake by value consumes the waker: its strong reference is taken back here and
    // released at the end of this function.
    let c = unsafe { Arc::from_raw(ptr.cast::<Counting>()) };
    c.stats.wake();
    c.stats.waker_dropped();
    c.task.wake_by_ref();
}

unsafe fn counting_drop_counted(ptr: *const ()) {
    // SAFETY: borrowed before the dropped waker's reference is given back just below.
    unsafe { &*ptr.cast::<Counting>() }.stats.waker_dropped();
    // SAFETY: the dropped waker's strong reference is given back.
    unsafe { Arc::decrement_strong_count(ptr.cast::<Counting>()) };
}

unsafe fn counting_drop_lent(ptr: *const ()) {
    // SAFETY: the dropped waker's strong reference is given back.
    unsafe { Arc::decrement_strong_count(ptr.cast::<Counting>()) };
}
