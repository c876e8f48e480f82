//! Run queues: a bounded local queue per worker over `crossbeam-deque`, and the global injector.
//!
//! `crossbeam_deque::Worker` is unbounded; kyoto bounds it at [`LOCAL_QUEUE_CAPACITY`] so one busy
//! worker cannot hoard work its peers could steal: when a push finds the queue full, the older half
//! moves to the injector in one go (Tokio's "overflow half" rule). Stealing uses
//! `Stealer::steal_batch_and_pop`, which takes about half of a victim's queue (crossbeam caps a batch
//! at 32) and runs one task at once.
//!
//! Under loom, crossbeam's lock-free deques are replaced by a mutex-guarded `VecDeque` with the same
//! interface (crossbeam's internals are crossbeam's to verify), so the models check kyoto's own logic:
//! overflow, injection, stealing and the shutdown drain never lose or duplicate a task.
use crate::runtime::task::Notified;

/// How many tasks a worker's local queue holds before half of them overflow to the injector.
#[cfg(not(loom))]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 256;
/// Under loom the local queue holds 4 tasks, so that a model overflows it with a handful of tasks
/// (every task is several scheduling points; 257 would make the model intractable).
#[cfg(loom)]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 4;

#[cfg(not(loom))]
mod imp {
    use super::*;
    use crossbeam_deque::{Injector, Steal, Stealer, Worker};

    pub(crate) struct Local(Worker<Notified>);
    pub(crate) struct Steal_(Stealer<Notified>);
    pub(crate) struct Inject(Injector<Notified>);

    pub(crate) fn local() -> (Local, Steal_) {
        let w = Worker::new_fifo();
        let s = w.stealer();
        (Local(w), Steal_(s))
    }

    impl Local {
        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        pub(crate) fn pop(&mut self) -> Option<Notified> {
            self.0.pop()
        }
        pub(crate) fn push_unbounded(&mut self, task: Notified) {
            self.0.push(task)
        }
    }

    impl Steal_ {
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        /// Moves a batch into `dst` and returns one task to run. Retries crossbeam's `Retry`.
        pub(crate) fn steal_into(&self, dst: &mut Local) -> Option<Notified> {
            loop {
                match self.0.steal_batch_and_pop(&dst.0) {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => return None,
                    Steal::Retry => crate::loom::spin_loop(),
                }
            }
        }
    }

    impl Inject {
        pub(crate) fn new() -> Inject {
            Inject(Injector::new())
        }
        pub(crate) fn push(&self, task: Notified) {
            self.0.push(task)
        }
        pub(crate) fn pop(&self) -> Option<Notified> {
            loop {
                match self.0.steal() {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => return None,
                    Steal::Retry => crate::loom::spin_loop(),
                }
            }
        }
        /// Moves a batch into `dst` and returns one task to run.
        pub(crate) fn pop_batch_into(&self, dst: &mut Local) -> Option<Notified> {
            loop {
                match self.0.steal_batch_and_pop(&dst.0) {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => return None,
                    Steal::Retry => crate::loom::spin_loop(),
                }
            }
        }
        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::*;
    use crate::loom::sync::{Arc, Mutex};
    use std::collections::VecDeque;

    type Shared = Arc<Mutex<VecDeque<Notified>>>;

    pub(crate) struct Local(Shared);
    pub(crate) struct Steal_(Shared);
    pub(crate) struct Inject(Mutex<VecDeque<Notified>>);

    pub(crate) fn local() -> (Local, Steal_) {
        let q: Shared = Arc::new(Mutex::new(VecDeque::new()));
        (Local(q.clone()), Steal_(q))
    }

    impl Local {
        pub(crate) fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
        pub(crate) fn pop(&mut self) -> Option<Notified> {
            self.0.lock().unwrap().pop_front()
        }
        pub(crate) fn push_unbounded(&mut self, task: Notified) {
            self.0.lock().unwrap().push_back(task)
        }
    }

    impl Steal_ {
        pub(crate) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
        pub(crate) fn steal_into(&self, dst: &mut Local) -> Option<Notified> {
            let mut src = self.0.lock().unwrap();
            let first = src.pop_front()?;
            let n = src.len() / 2;
            let batch: Vec<_> = src.drain(..n).collect();
            drop(src);
            let mut d = dst.0.lock().unwrap();
            d.extend(batch);
            Some(first)
        }
    }

    impl Inject {
        pub(crate) fn new() -> Inject {
            Inject(Mutex::new(VecDeque::new()))
        }
        pub(crate) fn push(&self, task: Notified) {
            self.0.lock().unwrap().push_back(task)
        }
        pub(crate) fn pop(&self) -> Option<Notified> {
            self.0.lock().unwrap().pop_front()
        }
        pub(crate) fn pop_batch_into(&self, dst: &mut Local) -> Option<Notified> {
            let mut src = self.0.lock().unwrap();
            let first = src.pop_front()?;
            let n = src.len().min(32) / 2;
            let batch: Vec<_> = src.drain(..n).collect();
            drop(src);
            dst.0.lock().unwrap().extend(batch);
            Some(first)
        }
        pub(crate) fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
    }
}

pub(crate) use imp::{local, Inject, Local, Steal_ as Steal};

impl Local {
    /// Pushes a task, first moving the older half of a full queue to the injector. Returns true when
    /// it overflowed.
    pub(crate) fn push_back_or_overflow(&mut self, task: Notified, inject: &Inject) -> bool {
        let overflowed = self.len() >= LOCAL_QUEUE_CAPACITY;
        if overflowed {
            for _ in 0..LOCAL_QUEUE_CAPACITY / 2 {
                match self.pop() {
                    Some(t) => inject.push(t),
                    None => break,
                }
            }
        }
        self.push_unbounded(task);
        overflowed
    }
}
