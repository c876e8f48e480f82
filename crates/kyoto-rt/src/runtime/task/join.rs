//! `JoinHandle` and `AbortHandle`.
use super::cell::Cell;
use super::{Id, JoinError, Schedule};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a handle needs from a task, erased over its future and scheduler types. Implemented by the
/// task `Cell` itself, so a handle is just another reference to the task allocation.
pub(crate) trait JoinTarget<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn abort(self: Arc<Self>);
    fn is_complete(&self) -> bool;
    fn drop_join_handle(&self);
    fn id(&self) -> Id;
}

impl<F, S> JoinTarget<F::Output> for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        Cell::poll_join(self, cx)
    }
    fn abort(self: Arc<Self>) {
        Cell::abort(&self)
    }
    fn is_complete(&self) -> bool {
        Cell::is_complete(self)
    }
    fn drop_join_handle(&self) {
        Cell::drop_join_handle(self)
    }
    fn id(&self) -> Id {
        Cell::id(self)
    }
}

/// An owned permission to await a spawned task's output.
///
/// Awaiting it yields `Ok(output)` or a [`JoinError`]. Dropping it **detaches** the task (it keeps
/// running); [`abort`](JoinHandle::abort) cancels it at its next `.await`.
pub struct JoinHandle<T> {
    target: Arc<dyn JoinTarget<T>>,
}

/// A handle that can abort a task without being able to await it. Cloneable.
#[derive(Clone)]
pub struct AbortHandle {
    target: Arc<dyn AbortTarget>,
}

trait AbortTarget: Send + Sync {
    fn abort(&self);
    fn is_complete(&self) -> bool;
    fn id(&self) -> Id;
}

impl<T, J: JoinTarget<T> + ?Sized> AbortTarget for AbortShim<T, J> {
    fn abort(&self) {
        self.0.clone().abort()
    }
    fn is_complete(&self) -> bool {
        self.0.is_complete()
    }
    fn id(&self) -> Id {
        self.0.id()
    }
}

struct AbortShim<T, J: ?Sized>(Arc<J>, std::marker::PhantomData<fn() -> T>);

impl<T: Send + 'static> JoinHandle<T> {
    pub(crate) fn new<F, S>(cell: Arc<Cell<F, S>>) -> Self
    where
        F: Future<Output = T> + Send + 'static,
        S: Schedule,
    {
        JoinHandle { target: cell }
    }

    /// Requests cancellation. The task stops at its next `.await` (or at once when idle); a task that
    /// completes before noticing keeps its output. Idempotent.
    pub fn abort(&self) {
        self.target.clone().abort()
    }

    /// Whether the task has completed (its future has been dropped).
    pub fn is_finished(&self) -> bool {
        self.target.is_complete()
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.target.id()
    }

    /// A cloneable handle that can only abort the task.
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle {
            target: Arc::new(AbortShim(self.target.clone(), std::marker::PhantomData)),
        }
    }
}

impl AbortHandle {
    /// See [`JoinHandle::abort`].
    pub fn abort(&self) {
        self.target.abort()
    }

    /// See [`JoinHandle::is_finished`].
    pub fn is_finished(&self) -> bool {
        self.target.is_complete()
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.target.id()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let coop = std::task::ready!(crate::runtime::coop::poll_proceed(cx));
        let ret = self.target.poll_join(cx);
        if ret.is_ready() {
            coop.made_progress();
        }
        ret
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.target.drop_join_handle()
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.target.id())
            .finish()
    }
}

impl std::fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortHandle")
            .field("id", &self.target.id())
            .finish()
    }
}
