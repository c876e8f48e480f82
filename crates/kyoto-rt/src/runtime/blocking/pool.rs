//! A capped pool of threads for `spawn_blocking`.
//!
//! A blocking task is an ordinary task (same `JoinHandle`, same `JoinError`) whose future calls the
//! closure once. `spawn_blocking` queues it and starts a thread only when none is idle and the cap
//! (`max_blocking_threads`) is not reached; otherwise the work waits in the queue. Idle threads exit
//! after `keep_alive`. At shutdown, queued tasks are cancelled (they never start), running ones are
//! waited for at most the shutdown timeout, then abandoned (a started blocking task cannot be stopped).
//! While any blocking task runs, the paused test clock does not auto-advance.
use crate::loom::sync::{Arc, Condvar, Mutex};
use crate::runtime::driver;
use crate::runtime::task::{self, Id, JoinHandle, Notified, Schedule};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

thread_local! {
    /// The pool this thread belongs to (null: none), so a shutdown from a pool thread can tell.
    /// Only compared, never dereferenced; the thread keeps its pool alive while it runs.
    static POOL: std::cell::Cell<*const Inner> = const { std::cell::Cell::new(std::ptr::null()) };
}

pub(crate) struct BlockingPool {
    spawner: Spawner,
}

#[derive(Clone)]
pub(crate) struct Spawner {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Mutex<Shared>,
    condvar: Condvar,
    /// Signalled when the last thread exits after shutdown.
    exited: Condvar,
    thread_name: String,
    keep_alive: Duration,
    thread_cap: usize,
    driver: std::sync::Weak<driver::Handle>,
}

struct Shared {
    queue: VecDeque<Notified>,
    num_threads: usize,
    num_idle: usize,
    num_notify: usize,
    shutdown: bool,
    next_thread_id: usize,
}

impl BlockingPool {
    pub(crate) fn new(
        thread_name: String,
        thread_cap: usize,
        keep_alive: Duration,
        driver: std::sync::Weak<driver::Handle>,
    ) -> BlockingPool {
        BlockingPool {
            spawner: Spawner {
                inner: Arc::new(Inner {
                    shared: Mutex::new(Shared {
                        queue: VecDeque::new(),
                        num_threads: 0,
                        num_idle: 0,
                        num_notify: 0,
                        shutdown: false,
                        next_thread_id: 0,
                    }),
                    condvar: Condvar::new(),
                    exited: Condvar::new(),
                    thread_name,
                    keep_alive,
                    thread_cap: thread_cap.max(1),
                    driver,
                }),
            },
        }
    }

    pub(crate) fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    /// Cancels queued work and waits up to `timeout` for running work to finish.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        let inner = &self.spawner.inner;
        // `None`: the timeout is too long to matter; wait for as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        let mut shared = inner.lock();
        if shared.shutdown {
            return;
        }
        shared.shutdown = true;
        let queued = std::mem::take(&mut shared.queue);
        inner.condvar.notify_all();
        drop(shared);
        for task in queued {
            task.0.shutdown();
            inner.allow_auto_advance();
        }
        // Called from one of this pool's threads (a blocking task dropped its runtime), the caller
        // cannot wait for its own thread to exit: it waits for the others.
        let me = usize::from(POOL.with(|p| std::ptr::eq(p.get(), &**inner)));
        let mut shared = inner.lock();
        while shared.num_threads > me {
            shared = match deadline {
                None => inner.exited.wait(shared).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return;
                    }
                    inner
                        .exited
                        .wait_timeout(shared, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

impl Inner {
    /// A queued or running blocking task keeps a paused clock from auto-advancing: the runtime is
    /// not idle while it waits for that task's result.
    fn inhibit_auto_advance(&self) {
        if let Some(d) = self.driver.upgrade() {
            d.time.clock().inhibit_auto_advance();
        }
    }

    fn allow_auto_advance(&self) {
        if let Some(d) = self.driver.upgrade() {
            d.time.clock().allow_auto_advance();
        }
    }

    fn lock(&self) -> crate::loom::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Blocking tasks run to completion in one poll and are never woken, so they need no run queue.
#[derive(Clone, Copy)]
struct BlockingSchedule;

impl Schedule for BlockingSchedule {
    fn schedule(&self, _task: Notified) {}
    fn release(&self, _id: Id) {}
}

/// A future that runs a closure once, outside any coop budget.
struct BlockingTask<F>(Option<F>);

impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = match self.0.take() {
            Some(f) => f,
            None => unreachable!("a blocking task runs once"),
        };
        Poll::Ready(crate::runtime::coop::with_unconstrained(f))
    }
}

impl Spawner {
    #[track_caller]
    pub(crate) fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (task, notified, join) = task::new_task(
            BlockingTask(Some(f)),
            BlockingSchedule,
            Id::next(),
            crate::instrument::TaskKind::Blocking,
            std::panic::Location::caller(),
        );
        let inner = &self.inner;
        let mut shared = inner.lock();
        if shared.shutdown {
            drop(shared);
            task.shutdown();
            return join;
        }
        // Inhibited from queueing (not from start) until the task completed and woke its joiner.
        inner.inhibit_auto_advance();
        shared.queue.push_back(notified);
        if shared.num_idle == 0 {
            if shared.num_threads < inner.thread_cap {
                let id = shared.next_thread_id;
                shared.next_thread_id += 1;
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-blocking-{id}", inner.thread_name))
                    .spawn(move || me.run());
                match spawned {
                    Ok(_) => shared.num_threads += 1,
                    // No thread could be started: the work waits for a running thread, or fails
                    // at shutdown as cancelled, rather than panicking the caller.
                    Err(_) if shared.num_threads > 0 => {}
                    Err(_) => {
                        let queued = shared.queue.pop_back();
                        drop(shared);
                        drop(queued);
                        task.shutdown();
                        inner.allow_auto_advance();
                        return join;
                    }
                }
            }
        } else {
            shared.num_idle -= 1;
            shared.num_notify += 1;
            inner.condvar.notify_one();
        }
        join
    }

    fn run(&self) {
        let inner = &self.inner;
        POOL.with(|p| p.set(&**inner));
        let mut shared = inner.lock();
        'outer: loop {
            while let Some(task) = shared.queue.pop_front() {
                drop(shared);
                task.run();
                inner.allow_auto_advance();
                shared = inner.lock();
            }
            if shared.shutdown {
                break;
            }
            shared.num_idle += 1;
            let idle_since = Instant::now();
            loop {
                let waited = idle_since.elapsed();
                if waited >= inner.keep_alive {
                    // Idle for too long: exit (unless a notify raced in).
                    if shared.num_notify > 0 {
                        shared.num_notify -= 1;
                        continue 'outer;
                    }
                    shared.num_idle -= 1;
                    break 'outer;
                }
                shared = inner
                    .condvar
                    .wait_timeout(shared, inner.keep_alive - waited)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if shared.num_notify > 0 {
                    shared.num_notify -= 1;
                    continue 'outer;
                }
                if shared.shutdown {
                    shared.num_idle -= 1;
                    break 'outer;
                }
            }
        }
        shared.num_threads -= 1;
        // At 1 too: the one left may be a pool thread waiting in `shutdown` for the others.
        if shared.num_threads <= 1 {
            inner.exited.notify_all();
        }
    }

    pub(crate) fn num_threads(&self) -> usize {
        self.inner.lock().num_threads
    }

    pub(crate) fn num_idle_threads(&self) -> usize {
        self.inner.lock().num_idle
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.lock().queue.len()
    }
}
