//! Tasks: one allocation per spawned future, shared by its wakers, its `JoinHandle` and the scheduler.
//!
//! # Design
//!
//! A task is an `Arc<Cell<F, S>>` (see [`cell`]): the future `F`, the scheduler `S` it belongs to, an
//! atomic [`State`](state::State) and a small mutex-protected join slot for the output and the
//! `JoinHandle`'s waker. The scheduler sees it type-erased as [`Task`] (`Arc<dyn RawTask>`); wakers are
//! built from the same `Arc` through `std::task::Wake`, so no hand-written vtable is needed.
//!
//! The `Arc` is deliberately `std::sync::Arc` even under loom: loom's `Arc` cannot be unsized into
//! `Arc<dyn RawTask>`. Loom still explores every transition of the state word, which is where the
//! races are.
//!
//! # Invariants
//!
//! - **Exclusive polling.** Only the holder of the `RUNNING` bit touches the future. `RUNNING` is taken
//!   from a `NOTIFIED` task by whoever dequeued it (`transition_to_running`), or by runtime shutdown from
//!   an idle task (`transition_to_shutdown`).
//! - **One queue entry.** A task is in at most one run queue: a wake only submits it on the transition
//!   that sets `NOTIFIED` on an idle task. A wake while `RUNNING` only sets `NOTIFIED`; the runner then
//!   re-submits the task itself when the poll returns `Pending`.
//! - **Drop before complete.** The future is dropped before `COMPLETE` is published, so a `JoinHandle`
//!   (or `is_finished`) can never observe completion while the future's destructor is still running.
//! - **Cancellation is cooperative.** `abort` sets `CANCELLED`; an idle task is submitted so that a
//!   worker drops its future; a running task is cancelled when its current poll returns `Pending`. A
//!   task that completes first keeps its output.
//! - **Owned.** Every live task is in its scheduler's [`OwnedTasks`](list::OwnedTasks) until it
//!   completes, so shutdown can cancel tasks that sit in no queue (idle, waiting on a timer or socket).
mod cell;
mod error;
mod id;
mod join;
pub(crate) mod list;
mod state;

pub use error::JoinError;
pub use id::Id;
pub use join::{AbortHandle, JoinHandle};

pub(crate) use list::OwnedTasks;

use std::sync::Arc;

/// A type-erased reference to a task, in any state.
pub(crate) type Task = Arc<dyn RawTask>;

/// The operations a scheduler performs on a task without knowing its future's type.
pub(crate) trait RawTask: Send + Sync + 'static {
    /// The task's id.
    fn id(&self) -> Id;

    /// Polls the task once. Called only with a [`Notified`] reference, by the scheduler that owns it.
    fn run(self: Arc<Self>);

    /// Cancels the task at runtime shutdown: drops its future (unless it is being polled elsewhere, in
    /// which case that poll finishes the cancellation) and completes it with a cancelled `JoinError`.
    fn shutdown(self: Arc<Self>);
}

/// A task whose `NOTIFIED` bit this reference owns: it sits in (or is about to enter) a run queue.
pub(crate) struct Notified(pub(crate) Task);

impl Notified {
    /// Polls the task.
    pub(crate) fn run(self) {
        self.0.run()
    }
}

impl std::fmt::Debug for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notified").field(&self.0.id()).finish()
    }
}

/// What a scheduler offers its tasks.
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// Queues a task that was woken (from any thread).
    fn schedule(&self, task: Notified);

    /// Queues a task that was woken while it was being polled, so it must not jump ahead of the others
    /// (it goes to the back of the queue, never to a LIFO slot).
    fn yield_now(&self, task: Notified) {
        self.schedule(task)
    }

    /// The task completed: drop the scheduler's own reference to it.
    fn release(&self, id: Id);
}

/// Allocates a task for `future`, owned by `scheduler`. Returns the join handle and a `Notified` to
/// queue; the caller must first insert the task into its `OwnedTasks` (see [`OwnedTasks::bind`]).
///
/// `kind` and `location` (the caller of the public `spawn`) are recorded only when instrumentation is
/// on (see [`crate::instrument`]): the task then runs the future wrapped in an
/// [`Instrumented`](crate::instrument::Instrumented), which does all the recording, so the task cell
/// itself never carries instrumentation. Otherwise this costs one relaxed load.
pub(crate) fn new_task<F, S>(
    future: F,
    scheduler: S,
    id: Id,
    kind: crate::instrument::TaskKind,
    location: &'static std::panic::Location<'static>,
) -> (Task, Notified, JoinHandle<F::Output>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    match crate::instrument::on_spawn(id.0, kind, location) {
        None => new_cell(future, scheduler, id),
        Some(stats) => new_instrumented(future, scheduler, id, stats),
    }
}

/// The instrumented spawn, out of line so that `new_task` stays as small as it was without it.
#[cold]
#[inline(never)]
fn new_instrumented<F, S>(
    future: F,
    scheduler: S,
    id: Id,
    stats: Arc<crate::instrument::TaskStats>,
) -> (Task, Notified, JoinHandle<F::Output>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    new_cell(
        crate::instrument::Instrumented::new(future, stats),
        scheduler,
        id,
    )
}

fn new_cell<F, S>(future: F, scheduler: S, id: Id) -> (Task, Notified, JoinHandle<F::Output>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let cell = cell::Cell::new(future, scheduler, id);
    let task: Task = cell.clone();
    let notified = Notified(cell.clone());
    (task, notified, JoinHandle::new(cell))
}
