//! The current-thread scheduler: every task runs on the thread that drives the runtime.
//!
//! The thread that holds the [`Core`] drives: inside `block_on`, or — for an embedder such as Node's
//! event loop — through `CurrentThread::drive`, which runs ready tasks, polls the driver without
//! blocking and returns, leaving the embedder to watch `CurrentThread::poller_fd` and the next timer
//! deadline. Wakes from the driving thread push to the local queue; wakes from other threads push to
//! the remote queue and unpark the driver (a `mio::Waker`, which also makes the poller fd readable).
//!
//! Same tick rules as the multi-thread scheduler: the driver is polled every `event_interval` tasks,
//! the remote queue is checked first every `global_queue_interval` tasks, `yield_now` wakes after the
//! next driver poll. No LIFO slot (a single thread gains nothing from it).
//!
//! A second thread calling `block_on` while the core is taken waits for its future with a plain
//! thread park, and takes the core over when the first thread returns it.
use super::multi_thread::queue::LOCAL_QUEUE_CAPACITY;
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use crate::loom::sync::Mutex;
use crate::runtime::task::{self, Id, JoinHandle, Notified, OwnedTasks, Schedule};
use crate::runtime::{blocking, context, coop, driver};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use super::Config;

/// The scheduler: the core, lent to whichever thread drives.
pub(crate) struct CurrentThread {
    core: Mutex<Option<Box<Core>>>,
    /// Threads blocked in `block_on` without the core; unparked when the core is returned.
    waiters: Mutex<Vec<std::thread::Thread>>,
    #[cfg(unix)]
    poller_fd: std::os::unix::io::RawFd,
}

pub(crate) struct Handle {
    shared: Shared,
    pub(crate) driver: Arc<driver::Handle>,
    pub(crate) blocking: blocking::Spawner,
}

struct Shared {
    /// Tasks woken from other threads. `None` once shut down.
    inject: Mutex<Option<VecDeque<Notified>>>,
    inject_len: AtomicUsize,
    owned: OwnedTasks,
    /// The `block_on` future was woken.
    woken: AtomicBool,
    config: Config,
    polls: AtomicU64,
    parks: AtomicU64,
    forced_yields: AtomicU64,
    local_queue_depth: AtomicUsize,
}

struct Core {
    tasks: VecDeque<Notified>,
    tick: u32,
    driver: Option<driver::Driver>,
    polls: u64,
    parks: u64,
}

/// The scheduler context of the driving thread.
pub(crate) struct Context {
    handle: Arc<Handle>,
    core: RefCell<Option<Box<Core>>>,
    defer: RefCell<Vec<Waker>>,
}

/// What one call to [`Runtime::drive`](crate::Runtime::drive) left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveOutcome {
    /// Tasks are still queued: call `drive` again soon (after letting the embedder's loop breathe).
    pub has_ready_tasks: bool,
    /// The earliest pending timer, if any: call `drive` again by then.
    pub next_timer: Option<crate::time::Instant>,
}

impl CurrentThread {
    pub(crate) fn new(
        driver: driver::Driver,
        driver_handle: Arc<driver::Handle>,
        blocking: blocking::Spawner,
        config: Config,
    ) -> (CurrentThread, Arc<Handle>) {
        #[cfg(unix)]
        let poller_fd = driver.as_raw_fd();
        let handle = Arc::new(Handle {
            shared: Shared {
                inject: Mutex::new(Some(VecDeque::new())),
                inject_len: AtomicUsize::new(0),
                owned: OwnedTasks::new(),
                woken: AtomicBool::new(false),
                config,
                polls: AtomicU64::new(0),
                parks: AtomicU64::new(0),
                forced_yields: AtomicU64::new(0),
                local_queue_depth: AtomicUsize::new(0),
            },
            driver: driver_handle,
            blocking,
        });
        let core = Box::new(Core {
            tasks: VecDeque::with_capacity(LOCAL_QUEUE_CAPACITY),
            tick: 0,
            driver: Some(driver),
            polls: 0,
            parks: 0,
        });
        (
            CurrentThread {
                core: Mutex::new(Some(core)),
                waiters: Mutex::new(Vec::new()),
                #[cfg(unix)]
                poller_fd,
            },
            handle,
        )
    }

    fn take_core(&self) -> Option<Box<Core>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn return_core(&self, core: Box<Core>) {
        *self.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        for t in waiters {
            t.unpark();
        }
    }

    /// Installs the scheduler context and runs `f` with the core.
    ///
    /// If `f` unwinds (the `block_on` future panicked), the core — which sits in the context
    /// whenever user code runs — goes back to the scheduler, so the runtime stays usable, as in
    /// Tokio; the yields deferred meanwhile are woken first so those tasks are not lost.
    fn drive_core<R>(
        &self,
        handle: &Arc<Handle>,
        core: Box<Core>,
        f: impl FnOnce(&Context, Box<Core>) -> (Box<Core>, R),
    ) -> (Box<Core>, R) {
        struct ReturnOnUnwind<'a>(&'a CurrentThread, &'a Context);
        impl Drop for ReturnOnUnwind<'_> {
            fn drop(&mut self) {
                if self.1.core.borrow().is_none() {
                    return; // `f` returned the core itself
                }
                self.1.wake_deferred_in_place();
                if let Some(core) = self.1.core.borrow_mut().take() {
                    self.0.return_core(core);
                }
            }
        }
        let _enter = context::set_current(&super::Handle::CurrentThread(handle.clone()));
        let cx = super::Context::CurrentThread(Context {
            handle: handle.clone(),
            core: RefCell::new(None),
            defer: RefCell::new(Vec::new()),
        });
        context::set_scheduler(&cx, || {
            let super::Context::CurrentThread(cx) = &cx else {
                unreachable!("a current-thread scheduler runs a current-thread context")
            };
            let _guard = ReturnOnUnwind(self, cx);
            f(cx, core)
        })
    }

    /// Runs `future` to completion on this thread, driving the scheduler meanwhile.
    pub(crate) fn block_on<F: Future>(&self, handle: &Arc<Handle>, future: F) -> F::Output {
        let mut future = pin!(future);
        let thread_waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        loop {
            if let Some(core) = self.take_core() {
                let (core, out) = self.drive_core(handle, core, |cx, core| {
                    cx.block_on_loop(core, future.as_mut())
                });
                self.return_core(core);
                match out {
                    Some(v) => return v,
                    // Shut down while blocking: nothing will ever complete the future.
                    None => panic!("the runtime shut down while `block_on` was waiting"),
                }
            }
            // Another thread drives: wait for our future, or for the core to come back. Listed
            // once: this loop turns at every wake and every 10 ms, and only `return_core` empties
            // the list.
            {
                let me = std::thread::current();
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                if !waiters.iter().any(|t| t.id() == me.id()) {
                    waiters.push(me);
                }
            }
            let mut cx = TaskContext::from_waker(&thread_waker);
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    /// Polls the driver once without blocking, then runs ready tasks (at most `max_tasks`), and
    /// returns. For embedders that own the event loop; returns `None` when another thread holds
    /// the core.
    ///
    /// Polling first means one `epoll_wait` per call picks up the I/O and timers that made the
    /// embedder call, and the same pass runs the tasks they woke (running first would need a
    /// second call, and a second poll, to get to them). Yields deferred during the pass are woken
    /// at its end: they still run only after a driver poll, the one the next call starts with.
    pub(crate) fn drive(&self, handle: &Arc<Handle>, max_tasks: usize) -> Option<DriveOutcome> {
        let core = self.take_core()?;
        let (core, ()) = self.drive_core(handle, core, |cx, mut core| {
            core = cx.park(core, Some(Duration::ZERO));
            for _ in 0..max_tasks {
                core.tick = core.tick.wrapping_add(1);
                match core.next_task(handle) {
                    Some(task) => core = cx.run_task(core, task),
                    None => break,
                }
            }
            core = cx.wake_deferred(core);
            (core, ())
        });
        let outcome = DriveOutcome {
            has_ready_tasks: !core.tasks.is_empty() || handle.shared.inject_len.load(Acquire) > 0,
            next_timer: handle.driver.time.next_expiration(),
        };
        self.return_core(core);
        Some(outcome)
    }

    /// The poller's descriptor (see [`DriveOutcome`]).
    #[cfg(unix)]
    pub(crate) fn poller_fd(&self) -> std::os::unix::io::RawFd {
        self.poller_fd
    }

    /// Cancels every task, drains the queues and shuts the driver down.
    pub(crate) fn shutdown(&self, handle: &Arc<Handle>) {
        // Close the remote queue first so wakes during cancellation are dropped, not queued.
        let remote = handle
            .shared
            .inject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(remote);
        handle.shared.inject_len.store(0, Release);
        let Some(core) = self.take_core() else {
            // A thread is inside `block_on` through a `Handle`; cancel what we can reach.
            handle.shared.owned.close_and_shutdown_all();
            return;
        };
        let (core, ()) = self.drive_core(handle, core, |cx, mut core| {
            // With the core in the context, tasks woken by the cancellations land in `core.tasks`.
            *cx.core.borrow_mut() = Some(core);
            handle.shared.owned.close_and_shutdown_all();
            let Some(c) = cx.core.borrow_mut().take() else {
                unreachable!("shutdown keeps the core in its context")
            };
            core = c;
            core.tasks.clear();
            cx.defer.borrow_mut().clear();
            if let Some(mut driver) = core.driver.take() {
                driver.shutdown(&handle.driver);
                core.driver = Some(driver);
            }
            (core, ())
        });
        self.return_core(core);
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark()
    }
}

/// Wakes the `block_on` future: flags it and unparks the driver.
struct BlockOnWaker(Arc<Handle>);

impl Wake for BlockOnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.shared.woken.store(true, Release);
        self.0.driver.unpark();
    }
}

impl Context {
    fn block_on_loop<F: Future>(
        &self,
        mut core: Box<Core>,
        mut future: std::pin::Pin<&mut F>,
    ) -> (Box<Core>, Option<F::Output>) {
        let handle = &self.handle;
        let waker = Waker::from(Arc::new(BlockOnWaker(handle.clone())));
        let mut cx = TaskContext::from_waker(&waker);
        handle.shared.woken.store(true, Release);
        'outer: loop {
            if handle.shared.woken.swap(false, AcqRel) {
                *self.core.borrow_mut() = Some(core);
                let res = coop::budget(|| future.as_mut().poll(&mut cx));
                core = self.take();
                if let Poll::Ready(v) = res {
                    return (core, Some(v));
                }
            }
            if handle.shared.owned.is_closed() {
                return (core, None);
            }
            // Up to `event_interval` tasks between two polls of the future even when it was woken
            // meanwhile (as in Tokio): a future that keeps waking itself (a spent coop budget, a
            // hand-rolled yield) must not starve the tasks and the driver it may be waiting on.
            for _ in 0..handle.shared.config.event_interval {
                core.tick = core.tick.wrapping_add(1);
                match core.next_task(handle) {
                    Some(task) => core = self.run_task(core, task),
                    None => {
                        let timeout = if self.defer.borrow().is_empty() {
                            None
                        } else {
                            Some(Duration::ZERO)
                        };
                        core = self.park(core, timeout);
                        continue 'outer;
                    }
                }
            }
            core = self.park(core, Some(Duration::ZERO));
        }
    }

    fn take(&self) -> Box<Core> {
        match self.core.borrow_mut().take() {
            Some(core) => core,
            None => unreachable!("the core is returned to the context after every poll"),
        }
    }

    fn run_task(&self, mut core: Box<Core>, task: Notified) -> Box<Core> {
        core.polls += 1;
        *self.core.borrow_mut() = Some(core);
        task.run();
        self.take()
    }

    /// Blocks in the driver (`None`: until woken; `Some(ZERO)`: only polls) unless work is queued.
    fn park(&self, mut core: Box<Core>, timeout: Option<Duration>) -> Box<Core> {
        let handle = &self.handle;
        let Some(mut driver) = core.driver.take() else {
            unreachable!("the driver lives in the core between parks")
        };
        let idle = core.tasks.is_empty()
            && handle.shared.inject_len.load(Acquire) == 0
            && !handle.shared.woken.load(Acquire);
        let timeout = if idle { timeout } else { Some(Duration::ZERO) };
        if timeout.is_none() {
            core.parks += 1;
        }
        self.publish(&core);
        *self.core.borrow_mut() = Some(core);
        driver.park(&handle.driver, timeout);
        self.wake_deferred_in_place();
        let mut core = self.take();
        core.driver = Some(driver);
        core
    }

    /// Wakes the yields deferred so far (into `core`'s queue).
    fn wake_deferred(&self, core: Box<Core>) -> Box<Core> {
        if self.defer.borrow().is_empty() {
            return core;
        }
        *self.core.borrow_mut() = Some(core);
        self.wake_deferred_in_place();
        self.take()
    }

    /// Wakes the deferred yields while the core sits in the context, so they queue locally.
    fn wake_deferred_in_place(&self) {
        let deferred = std::mem::take(&mut *self.defer.borrow_mut());
        for w in deferred {
            // `yield_now` may be polled with any waker, not only a task's.
            crate::runtime::wake_catching_panic(w);
        }
    }

    fn publish(&self, core: &Core) {
        let s = &self.handle.shared;
        s.polls.store(core.polls, Relaxed);
        s.parks.store(core.parks, Relaxed);
        s.local_queue_depth.store(core.tasks.len(), Relaxed);
        s.forced_yields
            .fetch_add(coop::take_forced_yields(), Relaxed);
    }

    pub(crate) fn defer(&self, waker: &Waker) {
        let mut defer = self.defer.borrow_mut();
        if !defer.last().is_some_and(|w| w.will_wake(waker)) {
            defer.push(waker.clone());
        }
    }
}

impl Core {
    fn next_task(&mut self, handle: &Handle) -> Option<Notified> {
        if self.tick % handle.shared.config.global_queue_interval == 0 {
            handle.pop_remote().or_else(|| self.tasks.pop_front())
        } else {
            self.tasks.pop_front().or_else(|| handle.pop_remote())
        }
    }
}

impl Handle {
    pub(crate) fn spawn<F>(
        me: &Arc<Handle>,
        future: F,
        id: Id,
        location: &'static std::panic::Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join) = task::new_task(
            future,
            me.clone(),
            id,
            crate::instrument::TaskKind::Spawn,
            location,
        );
        if !me.shared.owned.bind(&task) {
            task.shutdown();
            return join;
        }
        me.schedule(notified);
        join
    }

    fn pop_remote(&self) -> Option<Notified> {
        if self.shared.inject_len.load(Acquire) == 0 {
            return None;
        }
        let mut inject = self.shared.inject.lock().unwrap_or_else(|e| e.into_inner());
        let task = inject.as_mut()?.pop_front();
        if task.is_some() {
            self.shared.inject_len.fetch_sub(1, Release);
        }
        task
    }

    fn push_remote(&self, task: Notified) {
        {
            let mut inject = self.shared.inject.lock().unwrap_or_else(|e| e.into_inner());
            // Shut down: the task was cancelled through `OwnedTasks`; drop the reference.
            let Some(queue) = inject.as_mut() else { return };
            queue.push_back(task);
            self.shared.inject_len.fetch_add(1, Release);
        }
        self.driver.unpark();
    }

    pub(crate) fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    pub(crate) fn global_queue_depth(&self) -> usize {
        self.shared.inject_len.load(Relaxed)
    }

    pub(crate) fn polls(&self) -> u64 {
        self.shared.polls.load(Relaxed)
    }

    pub(crate) fn parks(&self) -> u64 {
        self.shared.parks.load(Relaxed)
    }

    pub(crate) fn forced_yields(&self) -> u64 {
        self.shared.forced_yields.load(Relaxed)
    }

    pub(crate) fn local_queue_depth(&self) -> usize {
        self.shared.local_queue_depth.load(Relaxed)
    }
}

impl Schedule for Arc<Handle> {
    fn schedule(&self, task: Notified) {
        let task = context::with_scheduler(|cx| {
            if let Some(super::Context::CurrentThread(cx)) = cx {
                if Arc::ptr_eq(&cx.handle, self) {
                    if let Ok(mut core) = cx.core.try_borrow_mut() {
                        if let Some(core) = core.as_mut() {
                            core.tasks.push_back(task);
                            return None;
                        }
                    }
                }
            }
            Some(task)
        });
        if let Some(task) = task {
            self.push_remote(task);
        }
    }

    fn release(&self, id: Id) {
        self.shared.owned.remove(id);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::runtime::blocking::BlockingPool;

    #[test]
    fn a_thread_waiting_for_the_core_is_listed_once_however_often_its_future_is_woken() {
        let (driver, driver_handle) = driver::Driver::new(driver::Cfg {
            nevents: 64,
            start_paused: false,
        })
        .expect("driver");
        let driver_handle = Arc::new(driver_handle);
        let pool = BlockingPool::new(
            "test".into(),
            1,
            Duration::from_secs(1),
            Arc::downgrade(&driver_handle),
        );
        let config = Config {
            event_interval: 61,
            global_queue_interval: 31,
            disable_lifo_slot: true,
        };
        let (scheduler, handle) =
            CurrentThread::new(driver, driver_handle, pool.spawner().clone(), config);
        let (driving_tx, driving_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = crate::sync::oneshot::channel::<()>();
        std::thread::scope(|s| {
            let driving = s.spawn(|| {
                scheduler.block_on(&handle, async move {
                    driving_tx.send(()).expect("the test waits");
                    let _ = done_rx.await;
                })
            });
            driving_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the first block_on holds the core");
            // A future that wakes itself on each of its first 20 polls: the waiting loop turns 20
            // times without the core.
            let mut polls = 0;
            scheduler.block_on(
                &handle,
                std::future::poll_fn(|cx| {
                    polls += 1;
                    if polls < 20 {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                }),
            );
            let listed = scheduler.waiters.lock().expect("not poisoned").len();
            drop(done_tx);
            driving.join().expect("the driving block_on returns");
            assert_eq!(listed, 1, "the waiting thread is listed once");
        });
        scheduler.shutdown(&handle);
        pool.shutdown(Duration::from_secs(1));
    }
}
