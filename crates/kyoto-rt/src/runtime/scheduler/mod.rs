//! The two schedulers behind a runtime, and what is common to them.
pub(crate) mod current_thread;
pub(crate) mod multi_thread;

use crate::runtime::task::{Id, JoinHandle, OwnedTasks};
use crate::runtime::{blocking, driver};
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::task::Waker;

/// Scheduler tuning shared by both flavors.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Ticks between two non-blocking polls of the driver while tasks keep coming.
    pub(crate) event_interval: u32,
    /// Ticks between two looks at the global (remote) queue before the local one.
    pub(crate) global_queue_interval: u32,
    pub(crate) disable_lifo_slot: bool,
}

/// A handle to whichever scheduler a runtime runs.
#[derive(Clone)]
pub(crate) enum Handle {
    CurrentThread(Arc<current_thread::Handle>),
    MultiThread(Arc<multi_thread::Handle>),
}

/// The scheduler loop running on this thread (installed by `context::set_scheduler`).
pub(crate) enum Context {
    CurrentThread(current_thread::Context),
    MultiThread(multi_thread::Context),
}

impl Context {
    pub(crate) fn defer(&self, waker: &Waker) {
        match self {
            Context::CurrentThread(cx) => cx.defer(waker),
            Context::MultiThread(cx) => cx.defer(waker),
        }
    }
}

impl Handle {
    pub(crate) fn driver(&self) -> &Arc<driver::Handle> {
        match self {
            Handle::CurrentThread(h) => &h.driver,
            Handle::MultiThread(h) => &h.driver,
        }
    }

    pub(crate) fn blocking(&self) -> &blocking::Spawner {
        match self {
            Handle::CurrentThread(h) => &h.blocking,
            Handle::MultiThread(h) => &h.blocking,
        }
    }

    pub(crate) fn owned(&self) -> &OwnedTasks {
        match self {
            Handle::CurrentThread(h) => h.owned(),
            Handle::MultiThread(h) => h.owned(),
        }
    }

    pub(crate) fn spawn<F>(
        &self,
        future: F,
        id: Id,
        location: &'static Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Handle::CurrentThread(h) => current_thread::Handle::spawn(h, future, id, location),
            Handle::MultiThread(h) => multi_thread::Handle::spawn(h, future, id, location),
        }
    }

    pub(crate) fn ptr_eq(&self, other: &Handle) -> bool {
        match (self, other) {
            (Handle::CurrentThread(a), Handle::CurrentThread(b)) => Arc::ptr_eq(a, b),
            (Handle::MultiThread(a), Handle::MultiThread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
