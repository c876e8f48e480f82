//! The multi-thread scheduler's workers.
//!
//! # Run loop
//!
//! Each worker thread owns a [`Core`]: a bounded local run queue, a LIFO slot, its parker and its
//! counters. It loops:
//!
//! 1. every `event_interval` ticks, poll the driver without blocking (so I/O and timers make progress
//!    even when the queues never drain) and publish its counters;
//! 2. take a task: every `global_queue_interval` ticks the injector first (so remote spawns are not
//!    starved by local ones), otherwise the LIFO slot, the local queue, then a batch from the injector;
//! 3. if there was none, steal half of a random peer's queue (at most half the workers search);
//! 4. otherwise park: in the driver if no other worker holds it, else on the worker's condvar.
//!
//! A task woken by the task being polled goes into the LIFO slot (message passing ping-pongs stay hot
//! in cache); the slot's previous occupant moves to the back of the local queue. At most
//! [`MAX_LIFO_POLLS_PER_TICK`] LIFO polls run back to back before the chain goes behind the queue, so a
//! pair of tasks waking each other cannot starve the rest.
//!
//! While a task runs — and while the worker is parked — the core sits in the thread's scheduler
//! context, so wakes from that task (or from the driver this worker is blocked in) reach the local
//! queue without a lock. Wakes from any other thread go to the injector and unpark one idle worker.
//!
//! Under overload, wakes from the driver (I/O readiness, timers) on a polling pass (step 1) go to
//! the injector once the local queue is full or the injector already holds tasks, so that every
//! woken task waits its turn behind the older ones: a connection served a moment ago cannot overtake
//! one that has waited in the injector since before. With one worker and 10 000 echo connections
//! this took p99 from 0.6–1.2 s (tokio: 0.6–1.1 s) to 0.13–0.15 s at 0.95× tokio's throughput.
//! Without overload they take the LIFO path like any other wake.
//!
//! # Shutdown protocol
//!
//! 1. [`Handle::close`] sets `is_shutdown` (the injector then refuses tasks) and unparks every worker.
//! 2. Each worker notices at its next maintenance or unpark, leaves its loop, and cancels every task
//!    of the runtime (`OwnedTasks::close_and_shutdown_all`, idempotent across workers): futures are
//!    dropped, join handles see `JoinError::Cancelled`. Tasks being polled elsewhere finish that poll
//!    and then cancel themselves (they see `CANCELLED`).
//! 3. Each worker hands its core to `shutdown_cores`. The last one drains every core's queues and the
//!    injector (dropping references to already-cancelled tasks), shuts the driver down (pending
//!    timers and sockets complete with a shutdown error) and signals `shutdown_done`, which
//!    `Runtime::shutdown_timeout` waits on.
//!
//! A worker that dies of a panic escaping its loop (none should: user code is called under
//! `catch_unwind`) closes the runtime and hands over no core; the last worker counts it all the same.
//!
//! A push that races with step 3 re-checks `is_shutdown` after pushing and drains the injector
//! itself, so no task reference is left behind in a queue (which would leak the scheduler through
//! the task's own reference to it).
use super::idle::Idle;
use super::park::{Parker, SharedDriver, Unparker};
use super::queue::{self, Inject, Local, Steal};
use super::stats::{Stats, WorkerMetrics};
use crate::loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use crate::loom::sync::{Arc as LoomArc, Condvar, Mutex};
use crate::runtime::blocking;
use crate::runtime::context;
use crate::runtime::driver;
use crate::runtime::scheduler::{self, Config};
use crate::runtime::task::{self, Id, JoinHandle, Notified, OwnedTasks, Schedule};
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// How many times in a row a worker may run the task in its LIFO slot.
pub(crate) const MAX_LIFO_POLLS_PER_TICK: usize = 3;

/// What every thread can reach of the scheduler.
pub(crate) struct Handle {
    pub(super) shared: Shared,
    pub(crate) driver: Arc<driver::Handle>,
    pub(crate) blocking: blocking::Spawner,
}

pub(super) struct Shared {
    remotes: Box<[Remote]>,
    pub(super) inject: Inject,
    idle: Idle,
    pub(super) owned: OwnedTasks,
    is_shutdown: AtomicBool,
    // Cores travel between threads boxed so handing one over moves a pointer, not the struct.
    #[allow(clippy::vec_box)]
    /// The cores of the workers that left their loop (`None`: a worker that died with its core).
    shutdown_cores: Mutex<Vec<Option<Box<Core>>>>,
    shutdown_done: (Mutex<bool>, Condvar),
    driver: LoomArc<SharedDriver>,
    config: Config,
    pub(super) metrics: Box<[WorkerMetrics]>,
}

struct Remote {
    steal: Steal,
    unpark: Unparker,
}

/// A worker's private state; exactly one thread holds it at a time.
pub(super) struct Core {
    index: usize,
    tick: u32,
    lifo_slot: Option<Notified>,
    /// Set only while the worker polls its driver without parking (maintenance, deferred yields):
    /// wakes then come from I/O or timers, and the worker runs the injector next.
    polling_driver: bool,
    /// A polling pass pushed driver wakes into the injector (peers may need waking).
    injected: bool,
    run_queue: Local,
    is_searching: bool,
    is_shutdown: bool,
    park: Option<Parker>,
    stats: Stats,
    rand: FastRand,
}

/// The scheduler context of a worker thread (see `runtime::context`).
pub(crate) struct Context {
    handle: Arc<Handle>,
    index: usize,
    core: RefCell<Option<Box<Core>>>,
    defer: RefCell<Vec<Waker>>,
}

/// Builds the handle and one core per worker; the caller starts a thread per core with [`run`].
#[allow(clippy::vec_box)]
pub(super) fn create(
    size: usize,
    driver: driver::Driver,
    driver_handle: Arc<driver::Handle>,
    blocking: blocking::Spawner,
    config: Config,
) -> (Arc<Handle>, Vec<Box<Core>>) {
    let shared_driver = LoomArc::new(SharedDriver::new(driver, driver_handle.clone()));
    let mut cores = Vec::with_capacity(size);
    let mut remotes = Vec::with_capacity(size);
    for index in 0..size {
        let (run_queue, steal) = queue::local();
        let park = Parker::new(shared_driver.clone());
        remotes.push(Remote {
            steal,
            unpark: park.unparker(),
        });
        cores.push(Box::new(Core {
            index,
            tick: 0,
            lifo_slot: None,
            polling_driver: false,
            injected: false,
            run_queue,
            is_searching: false,
            is_shutdown: false,
            park: Some(park),
            stats: Stats::default(),
            rand: FastRand::new(index as u64 + 1),
        }));
    }
    let handle = Arc::new(Handle {
        shared: Shared {
            remotes: remotes.into_boxed_slice(),
            inject: Inject::new(),
            idle: Idle::new(size),
            owned: OwnedTasks::new(),
            is_shutdown: AtomicBool::new(false),
            shutdown_cores: Mutex::new(Vec::with_capacity(size)),
            shutdown_done: (Mutex::new(false), Condvar::new()),
            driver: shared_driver,
            config,
            metrics: (0..size).map(|_| WorkerMetrics::default()).collect(),
        },
        driver: driver_handle,
        blocking,
    });
    (handle, cores)
}

/// A worker thread's body.
///
/// Every call into user code on this thread catches its panics (task polls, wakers woken by the
/// drivers or for deferred yields). Should a panic escape all the same, the worker's core is lost:
/// the runtime then shuts down (tasks cancelled, the driver shut down) rather than run on with a
/// worker its peers would go on handing work to and its shutdown would wait for forever.
pub(super) fn run(handle: Arc<Handle>, core: Box<Core>) {
    let index = core.index;
    let worker = {
        let handle = handle.clone();
        move || {
            let _enter = context::set_current(&scheduler::Handle::MultiThread(handle.clone()));
            let cx = scheduler::Context::MultiThread(Context {
                index,
                handle,
                core: RefCell::new(None),
                defer: RefCell::new(Vec::new()),
            });
            context::set_scheduler(&cx, || {
                let scheduler::Context::MultiThread(cx) = &cx else {
                    unreachable!("a multi-thread worker runs a multi-thread context")
                };
                cx.run(core)
            });
        }
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(worker)).is_err() {
        // The panic was reported by the hook; what is left is to let the others shut down.
        handle.close();
        handle.shared.owned.close_and_shutdown_all();
        handle.shutdown_core(None);
    }
}

impl Context {
    fn run(&self, mut core: Box<Core>) {
        while !core.is_shutdown {
            core.tick = core.tick.wrapping_add(1);
            core = self.maintenance(core);
            if core.is_shutdown {
                break;
            }
            if let Some(task) = core.next_task(&self.handle) {
                core = self.run_task(task, core);
                continue;
            }
            if let Some(task) = core.steal_work(&self.handle) {
                core = self.run_task(task, core);
                continue;
            }
            core = if self.defer.borrow().is_empty() {
                self.park(core)
            } else {
                // Yielded tasks wait for one driver poll, not for a real park.
                let mut core = self.park_internal(core, Some(Duration::ZERO));
                // That poll may have consumed the unpark of `Handle::close`: read the flag it
                // stands for now, or the next park would sleep through the shutdown.
                core.maintenance(&self.handle);
                core
            };
        }
        self.handle.shared.owned.close_and_shutdown_all();
        self.handle.shutdown_core(Some(core));
    }

    fn maintenance(&self, mut core: Box<Core>) -> Box<Core> {
        if core.tick % self.handle.shared.config.event_interval == 0 {
            core = self.park_internal(core, Some(Duration::ZERO));
            core.maintenance(&self.handle);
        }
        core
    }

    fn run_task(&self, task: Notified, mut core: Box<Core>) -> Box<Core> {
        core.transition_from_searching(&self.handle);
        core.stats.polls += 1;
        *self.core.borrow_mut() = Some(core);
        task.run();
        let mut lifo_polls = 0;
        loop {
            let Some(mut core) = self.core.borrow_mut().take() else {
                unreachable!("the core is returned to the context after every poll")
            };
            let Some(task) = core.lifo_slot.take() else {
                return core;
            };
            lifo_polls += 1;
            if lifo_polls > MAX_LIFO_POLLS_PER_TICK {
                // The chain has had its turn: the rest waits behind the queued tasks.
                core.push_back(task, &self.handle);
                self.handle.notify_parked_local();
                return core;
            }
            core.stats.polls += 1;
            *self.core.borrow_mut() = Some(core);
            task.run();
        }
    }

    fn park(&self, mut core: Box<Core>) -> Box<Core> {
        if core.transition_to_parked(&self.handle) {
            while !core.is_shutdown {
                core.stats.parks += 1;
                core = self.park_internal(core, None);
                core.maintenance(&self.handle);
                if core.transition_from_parked(&self.handle) {
                    break;
                }
            }
        }
        core
    }

    /// Parks (or, with `Some(ZERO)`, only polls the driver) with the core in the context, so that
    /// tasks woken by the driver land in this worker's queues.
    fn park_internal(&self, mut core: Box<Core>, timeout: Option<Duration>) -> Box<Core> {
        let Some(mut park) = core.park.take() else {
            unreachable!("a worker's parker is only taken while it parks")
        };
        let depth = core.run_queue.len();
        core.stats
            .submit(&self.handle.shared.metrics[self.index], depth);
        core.polling_driver = timeout.is_some();
        *self.core.borrow_mut() = Some(core);
        match timeout {
            Some(_) => park.park_timeout_zero(),
            None => park.park(),
        }
        if let Some(core) = self.core.borrow_mut().as_mut() {
            core.polling_driver = false; // deferred yields below are task wakes, not driver wakes
        }
        self.wake_deferred();
        let Some(mut core) = self.core.borrow_mut().take() else {
            unreachable!("the core is returned to the context after parking")
        };
        core.park = Some(park);
        let injected = std::mem::take(&mut core.injected);
        if core.should_notify_others() || (injected && !core.is_searching) {
            self.handle.notify_parked_local();
        }
        core
    }

    fn wake_deferred(&self) {
        // Take the list first: waking may defer again (a task that yields on every poll).
        let deferred = std::mem::take(&mut *self.defer.borrow_mut());
        for waker in deferred {
            // `yield_now` may be polled with any waker, not only a task's.
            crate::runtime::wake_catching_panic(waker);
        }
    }

    /// Whether this is a worker of the runtime `handle`.
    pub(crate) fn is_worker_of(&self, handle: &Handle) -> bool {
        std::ptr::eq(&*self.handle, handle)
    }

    pub(crate) fn defer(&self, waker: &Waker) {
        let mut defer = self.defer.borrow_mut();
        // A task that yields twice before the driver runs needs one wake.
        if !defer.last().is_some_and(|w| w.will_wake(waker)) {
            defer.push(waker.clone());
        }
    }
}

impl Core {
    fn next_task(&mut self, h: &Handle) -> Option<Notified> {
        if self.tick % h.shared.config.global_queue_interval == 0 {
            if let Some(task) = h.shared.inject.pop() {
                return Some(task);
            }
            return self.next_local_task();
        }
        if let Some(task) = self.next_local_task() {
            return Some(task);
        }
        if h.shared.inject.is_empty() {
            return None;
        }
        h.shared.inject.pop_batch_into(&mut self.run_queue)
    }

    fn next_local_task(&mut self) -> Option<Notified> {
        self.lifo_slot.take().or_else(|| self.run_queue.pop())
    }

    fn steal_work(&mut self, h: &Handle) -> Option<Notified> {
        if !self.transition_to_searching(h) {
            return None;
        }
        let remotes = &h.shared.remotes;
        let n = remotes.len();
        let start = self.rand.below(n);
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            let before = self.run_queue.len();
            if let Some(task) = remotes[victim].steal.steal_into(&mut self.run_queue) {
                self.stats.steals += (self.run_queue.len() - before) as u64 + 1;
                return Some(task);
            }
        }
        h.shared.inject.pop_batch_into(&mut self.run_queue)
    }

    fn push_back(&mut self, task: Notified, h: &Handle) {
        if self.run_queue.push_back_or_overflow(task, &h.shared.inject) {
            self.stats.overflows += 1;
        }
    }

    fn transition_to_searching(&mut self, h: &Handle) -> bool {
        if !self.is_searching {
            self.is_searching = h.shared.idle.transition_worker_to_searching();
        }
        self.is_searching
    }

    fn transition_from_searching(&mut self, h: &Handle) {
        if !self.is_searching {
            return;
        }
        self.is_searching = false;
        // The last searcher found work: there may be more, so wake a peer to keep looking.
        if h.shared.idle.transition_worker_from_searching() {
            h.notify_parked_local();
        }
    }

    fn has_tasks(&self) -> bool {
        self.lifo_slot.is_some() || !self.run_queue.is_empty()
    }

    fn should_notify_others(&self) -> bool {
        // A searching worker will wake others when it finds work; otherwise share a surplus.
        !self.is_searching && self.lifo_slot.is_some() as usize + self.run_queue.len() > 1
    }

    fn transition_to_parked(&mut self, h: &Handle) -> bool {
        if self.has_tasks() {
            return false;
        }
        let was_last_searcher = h
            .shared
            .idle
            .transition_worker_to_parked(self.index, self.is_searching);
        self.is_searching = false;
        if was_last_searcher {
            h.notify_if_work_pending();
        }
        true
    }

    fn transition_from_parked(&mut self, h: &Handle) -> bool {
        if self.has_tasks() {
            // The driver woke tasks into our own queue: we are up, whether someone woke us or not.
            // If `worker_to_notify` already took us off the sleepers it counted us as searching.
            self.is_searching = !h.shared.idle.unpark_worker_by_id(self.index);
            return true;
        }
        if h.shared.idle.is_parked(self.index) {
            return false;
        }
        // Woken by `worker_to_notify`, which counted us as searching.
        self.is_searching = true;
        true
    }

    fn maintenance(&mut self, h: &Handle) {
        let depth = self.run_queue.len();
        self.stats.submit(&h.shared.metrics[self.index], depth);
        if !self.is_shutdown {
            self.is_shutdown = h.shared.is_shutdown.load(SeqCst);
        }
    }

    /// Drops every queued reference (the tasks themselves were cancelled through `OwnedTasks`).
    fn drain(&mut self) {
        drop(self.lifo_slot.take());
        while self.run_queue.pop().is_some() {}
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
            // Spawned during shutdown: cancelled at once.
            task.shutdown();
            return join;
        }
        me.schedule_task(notified, false);
        join
    }

    fn schedule_task(&self, task: Notified, is_yield: bool) {
        let task = context::with_scheduler(|cx| {
            if let Some(scheduler::Context::MultiThread(cx)) = cx {
                if std::ptr::eq(&*cx.handle, self) {
                    if let Ok(mut core) = cx.core.try_borrow_mut() {
                        if let Some(core) = core.as_mut() {
                            self.schedule_local(core, task, is_yield);
                            return None;
                        }
                    }
                }
            }
            Some(task)
        });
        if let Some(task) = task {
            self.push_remote_task(task);
            self.notify_parked_remote();
        }
    }

    fn schedule_local(&self, core: &mut Core, task: Notified, is_yield: bool) {
        // Overload: a polling pass of the driver (I/O, timers) finds the local queue full or the
        // injector already holding tasks. The wake then goes behind the injector's tasks, so that
        // no connection is served twice while another waits there (the worker is not parked: it
        // runs the injector next). Otherwise driver wakes take the LIFO path like any other: the
        // socket that just became ready is the one whose state is warm in cache.
        if core.polling_driver
            && (core.run_queue.len() >= queue::LOCAL_QUEUE_CAPACITY
                || !self.shared.inject.is_empty())
        {
            self.shared.inject.push(task);
            core.injected = true;
            return; // the worker wakes a peer for it once the driver returns
        }
        let should_notify = if is_yield || self.shared.config.disable_lifo_slot {
            core.push_back(task, self);
            true
        } else {
            match core.lifo_slot.replace(task) {
                Some(prev) => {
                    core.push_back(prev, self);
                    true
                }
                // The LIFO task runs next on this worker; nobody needs waking for it.
                None => false,
            }
        };
        // `park` is None while this worker is parked in the driver: it re-checks after the park.
        if should_notify && core.park.is_some() {
            self.notify_parked_local();
        }
    }

    fn push_remote_task(&self, task: Notified) {
        if self.shared.is_shutdown.load(SeqCst) {
            // The task was (or is about to be) cancelled through `OwnedTasks`.
            return;
        }
        self.shared.inject.push(task);
        if self.shared.is_shutdown.load(SeqCst) {
            // Raced with the final drain: drain again so no reference outlives the scheduler.
            while self.shared.inject.pop().is_some() {}
        }
    }

    pub(super) fn notify_parked_local(&self) {
        if let Some(index) = self.shared.idle.worker_to_notify() {
            self.shared.remotes[index].unpark.unpark();
        }
    }

    fn notify_parked_remote(&self) {
        self.notify_parked_local()
    }

    fn notify_if_work_pending(&self) {
        let pending = self.shared.remotes.iter().any(|r| !r.steal.is_empty())
            || !self.shared.inject.is_empty();
        if pending {
            self.notify_parked_local();
        }
    }

    /// Starts shutdown (see the module docs). Idempotent.
    pub(crate) fn close(&self) {
        if self.shared.is_shutdown.swap(true, SeqCst) {
            return;
        }
        for (index, remote) in self.shared.remotes.iter().enumerate() {
            self.shared.idle.unpark_worker_by_id(index);
            remote.unpark.unpark();
        }
    }

    /// Hands a worker's core over for the final drain; `None` for a worker that died with its core.
    fn shutdown_core(&self, core: Option<Box<Core>>) {
        let mut cores = self
            .shared
            .shutdown_cores
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cores.push(core);
        if cores.len() != self.shared.remotes.len() {
            return;
        }
        // The last worker out finalizes.
        let mut cores = std::mem::take(&mut *cores);
        for core in cores.iter_mut().flatten() {
            core.drain();
        }
        while self.shared.inject.pop().is_some() {}
        if let Some(mut driver) = self.shared.driver.take() {
            driver.shutdown(&self.driver);
        }
        drop(cores);
        let (done, cv) = &self.shared.shutdown_done;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits until the last worker finalized shutdown, at most `timeout`. True when it did.
    pub(crate) fn wait_shutdown(&self, timeout: Duration) -> bool {
        let (done, cv) = &self.shared.shutdown_done;
        // `None`: the timeout is too long to matter; wait for as long as it takes.
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut guard = done.lock().unwrap_or_else(|e| e.into_inner());
        while !*guard {
            guard = match deadline {
                None => cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    cv.wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }

    pub(crate) fn owned(&self) -> &OwnedTasks {
        &self.shared.owned
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.shared.remotes.len()
    }

    pub(crate) fn global_queue_depth(&self) -> usize {
        self.shared.inject.len()
    }

    pub(crate) fn worker_metrics(&self, index: usize) -> &WorkerMetrics {
        &self.shared.metrics[index]
    }
}

impl Schedule for Arc<Handle> {
    fn schedule(&self, task: Notified) {
        self.schedule_task(task, false)
    }

    fn yield_now(&self, task: Notified) {
        self.schedule_task(task, true)
    }

    fn release(&self, id: Id) {
        self.shared.owned.remove(id);
    }
}

/// xorshift64*: picks the first steal victim. Quality is irrelevant; speed and no shared state matter.
struct FastRand(u64);

impl FastRand {
    fn new(seed: u64) -> FastRand {
        FastRand(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n.max(1)
    }
}
