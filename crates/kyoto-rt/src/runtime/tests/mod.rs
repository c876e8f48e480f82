//! loom models of the scheduler's concurrency-critical parts.
//!
//! Run them with (`.ci/run` does)
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p kyoto-rt --lib --release loom_
//! ```
//!
//! - [`loom_queue`]: the bounded local queue overflowing into the injector while a peer steals and a
//!   remote thread injects; the shutdown drain racing a remote push.
//! - [`loom_park`]: park/unpark on the condvar path (no lost wake-up, one notification at most).
//! - [`loom_task`]: the task state machine through the real task cell — abort racing completion,
//!   wake racing completion and the drop of the `JoinHandle`, a wake during a poll, abort racing a
//!   wake, abort alone, runtime shutdown racing a poll or a spawn.
//! - [`loom_state`]: the state word alone, with the waker's data in loom atomics.
//! - [`loom_idle`]: the searching/parked bookkeeping of `Idle` racing a remote notification.
//!
//! `loom_state` and `loom_task_a_wake_during_a_poll_is_never_lost` found a lost wake-up in
//! `State::transition_to_notified` (a plain load of a stale `NOTIFIED`); they now guard its fix
//! (every wake is a read-modify-write).
//!
//! `park.rs`, `idle.rs` and `state.rs` are private modules; the models compile the very same source
//! files a second time, here, through `#[path]` (`queue` and the rest of `task` are reachable
//! directly). Under `cfg(loom)` the local queue holds [`LOCAL_QUEUE_CAPACITY`] = 4 tasks and
//! `SharedDriver::without_driver` gives parkers an empty driver slot, so every park takes the condvar
//! path (loom cannot run the real I/O driver).
//!
//! Every model runs inside [`check`], with a preemption bound small enough to finish in seconds in
//! release mode (`LOOM_MAX_PREEMPTIONS` overrides it for a deeper run).
//!
//! Futures polled by the models do no loom operation inside `poll` (their state is plain data, the
//! waker is stashed in a `std` mutex that is never contended): loom threads share one OS thread, so a
//! preemption inside a poll would interleave two polls' coop budgets in the shared thread-local.
//!
//! [`LOCAL_QUEUE_CAPACITY`]: crate::runtime::scheduler::multi_thread::queue::LOCAL_QUEUE_CAPACITY

mod loom_idle;
mod loom_park;
mod loom_queue;
mod loom_state;
mod loom_task;

/// `multi_thread/park.rs`, compiled again here because the module is private to the scheduler.
#[path = "../scheduler/multi_thread/park.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod park;

/// `task/state.rs`, compiled again here because the module is private to `task`.
#[path = "../task/state.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod state;

/// `multi_thread/idle.rs`, compiled again here because the module is private to the scheduler.
#[path = "../scheduler/multi_thread/idle.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod idle;

use crate::loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::loom::sync::{Arc, Mutex};
use crate::runtime::task::{self, Id, JoinHandle, Notified, OwnedTasks, RawTask, Schedule};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

/// Runs `f` under loom with at most `preemptions` preemptions per execution (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise). Prints how many executions it explored (shown with `--nocapture`).
pub(super) fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(preemptions);
    let iterations = StdArc::new(StdAtomicUsize::new(0));
    let counter = iterations.clone();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        f()
    });
    println!(
        "explored {} executions (preemption bound {:?})",
        iterations.load(Relaxed),
        builder.preemption_bound
    );
}

// ---------------------------------------------------------------------------------------------------
// A tiny scheduler for the task models.
// ---------------------------------------------------------------------------------------------------

/// A scheduler whose run queue is a loom `Mutex<VecDeque<Notified>>`, drained by the model threads
/// themselves. It checks the task module's "one queue entry" invariant on every `schedule`, counts
/// schedules and releases per task, and owns its tasks through the real [`OwnedTasks`].
#[derive(Clone)]
pub(super) struct TestSched(Arc<SchedInner>);

struct SchedInner {
    state: Mutex<SchedState>,
    owned: OwnedTasks,
}

#[derive(Default)]
struct SchedState {
    queue: VecDeque<Notified>,
    /// `Notified` references alive per task: queued, or popped and not yet run.
    in_flight: HashMap<Id, usize>,
    schedules: HashMap<Id, usize>,
    /// Schedules through `Schedule::yield_now`: the runner requeueing a task woken during its poll.
    requeues: HashMap<Id, usize>,
    releases: HashMap<Id, usize>,
}

impl TestSched {
    pub(super) fn new() -> TestSched {
        TestSched(Arc::new(SchedInner {
            state: Mutex::new(SchedState::default()),
            owned: OwnedTasks::new(),
        }))
    }

    /// Spawns `future` the way both real schedulers do: bind to the owned list (or cancel at once
    /// when it is closed), then queue the task's first `Notified`.
    pub(super) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join) = task::new_task(
            future,
            self.clone(),
            Id::next(),
            crate::instrument::TaskKind::Spawn,
            std::panic::Location::caller(),
        );
        if self.0.owned.bind(&task) {
            self.schedule(notified);
        } else {
            drop(notified);
            task.shutdown();
        }
        join
    }

    fn pop(&self) -> Option<Notified> {
        let mut state = self.0.state.lock().unwrap();
        let task = state.queue.pop_front()?;
        *state.in_flight.get_mut(&task.0.id()).expect("queued") -= 1;
        Some(task)
    }

    /// Runs queued tasks until the queue is empty.
    pub(super) fn run_all(&self) {
        while let Some(task) = self.pop() {
            task.run();
        }
    }

    pub(super) fn schedules(&self, id: Id) -> usize {
        let state = self.0.state.lock().unwrap();
        state.schedules.get(&id).copied().unwrap_or(0)
    }

    pub(super) fn requeues(&self, id: Id) -> usize {
        let state = self.0.state.lock().unwrap();
        state.requeues.get(&id).copied().unwrap_or(0)
    }

    pub(super) fn releases(&self, id: Id) -> usize {
        let state = self.0.state.lock().unwrap();
        state.releases.get(&id).copied().unwrap_or(0)
    }

    pub(super) fn queued(&self) -> usize {
        self.0.state.lock().unwrap().queue.len()
    }

    pub(super) fn owned(&self) -> &OwnedTasks {
        &self.0.owned
    }
}

impl Schedule for TestSched {
    fn schedule(&self, task: Notified) {
        let mut state = self.0.state.lock().unwrap();
        let id = task.0.id();
        let in_flight = state.in_flight.entry(id).or_default();
        assert_eq!(*in_flight, 0, "task {id} submitted to a run queue twice");
        *in_flight += 1;
        *state.schedules.entry(id).or_default() += 1;
        state.queue.push_back(task);
    }

    fn yield_now(&self, task: Notified) {
        *self
            .0
            .state
            .lock()
            .unwrap()
            .requeues
            .entry(task.0.id())
            .or_default() += 1;
        self.schedule(task);
    }

    fn release(&self, id: Id) {
        {
            let mut state = self.0.state.lock().unwrap();
            let releases = state.releases.entry(id).or_default();
            assert_eq!(*releases, 0, "task {id} completed twice");
            *releases += 1;
        }
        self.0.owned.remove(id);
    }
}

/// Drives `future` to completion on the current loom thread, sleeping on a loom `Notify` between
/// polls, so a lost wake-up is reported as a deadlock. (`loom::future::block_on` needs loom's
/// `futures` feature.)
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    struct NotifyWaker(loom::sync::Notify);

    impl std::task::Wake for NotifyWaker {
        fn wake(self: StdArc<Self>) {
            self.0.notify();
        }

        fn wake_by_ref(self: &StdArc<Self>) {
            self.0.notify();
        }
    }

    let notify = StdArc::new(NotifyWaker(loom::sync::Notify::new()));
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        notify.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------------
// Futures and values whose drops are counted.
// ---------------------------------------------------------------------------------------------------

/// Counts drops of the values that share it.
#[derive(Clone)]
pub(super) struct DropCount(Arc<AtomicUsize>);

impl DropCount {
    pub(super) fn new() -> DropCount {
        DropCount(Arc::new(AtomicUsize::new(0)))
    }

    pub(super) fn get(&self) -> usize {
        self.0.load(SeqCst)
    }

    pub(super) fn token(&self) -> Token {
        Token(self.clone())
    }
}

/// A value whose drop increments its [`DropCount`].
pub(super) struct Token(DropCount);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token")
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        (self.0).0.fetch_add(1, SeqCst);
    }
}

/// What a [`PendingN`] shares with the model: the waker of its last `Pending` poll, and how many
/// wakes the model had announced when its last poll began.
///
/// Plain `std` types on purpose: they are touched inside a poll, where a loom operation (a possible
/// preemption) must not happen. Loom runs every model thread on one OS thread and switches only at
/// loom operations, so the mutex is never contended and the counters need no modelling.
#[derive(Clone, Default)]
pub(super) struct WakerSlot(StdArc<SlotInner>);

#[derive(Default)]
struct SlotInner {
    waker: std::sync::Mutex<Option<Waker>>,
    wakes_announced: StdAtomicUsize,
    announced_at_last_poll: StdAtomicUsize,
}

impl WakerSlot {
    /// The waker of the last `Pending` poll.
    pub(super) fn take(&self) -> Waker {
        self.0
            .waker
            .lock()
            .unwrap()
            .take()
            .expect("the task returned Pending")
    }

    /// Call right before a wake: a poll that begins afterwards counts it as seen.
    pub(super) fn announce_wake(&self) {
        self.0.wakes_announced.fetch_add(1, Relaxed);
    }

    /// How many announced wakes the last poll could have seen.
    pub(super) fn announced_at_last_poll(&self) -> usize {
        self.0.announced_at_last_poll.load(Relaxed)
    }

    fn record_poll(&self, cx: &Context<'_>) {
        let announced = self.0.wakes_announced.load(Relaxed);
        self.0.announced_at_last_poll.store(announced, Relaxed);
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
    }
}

/// Returns `Pending` on its first `n` polls (leaving the waker in its slot each time), then its
/// output. Its own drop and its output's drop are counted.
pub(super) struct PendingN {
    pending: usize,
    output: Option<Token>,
    waker: WakerSlot,
    _drop: Token,
}

impl PendingN {
    /// The future, with its own drop counted by `future_drops` and its output's by `output_drops`.
    pub(super) fn new(
        n: usize,
        future_drops: &DropCount,
        output_drops: &DropCount,
    ) -> (PendingN, WakerSlot) {
        let waker = WakerSlot::default();
        let future = PendingN {
            pending: n,
            output: Some(output_drops.token()),
            waker: waker.clone(),
            _drop: future_drops.token(),
        };
        (future, waker)
    }
}

impl Future for PendingN {
    type Output = Token;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Token> {
        self.waker.record_poll(cx);
        if self.pending == 0 {
            return Poll::Ready(self.output.take().expect("polled after completion"));
        }
        self.pending -= 1;
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------------------------------
// A task stand-in for the queue models.
// ---------------------------------------------------------------------------------------------------

/// A fake task that only counts how many times it was run, so the queue models explore the queues'
/// own scheduling points and not the task machinery's (modelled in `loom_task`).
pub(super) struct Probe {
    id: Id,
    runs: StdArc<Vec<StdAtomicUsize>>,
}

/// `n` probes, ids `0..n`, and their run counters.
pub(super) fn probes(n: usize) -> (Vec<Notified>, ProbeRuns) {
    let runs: StdArc<Vec<_>> = StdArc::new((0..n).map(|_| StdAtomicUsize::new(0)).collect());
    let tasks = (0..n)
        .map(|i| {
            Notified(StdArc::new(Probe {
                id: Id(i as u64),
                runs: runs.clone(),
            }))
        })
        .collect();
    (tasks, ProbeRuns(runs))
}

/// The run counters of a set of probes.
pub(super) struct ProbeRuns(StdArc<Vec<StdAtomicUsize>>);

impl ProbeRuns {
    /// Panics unless every probe ran exactly once.
    pub(super) fn assert_each_ran_once(&self) {
        for (id, runs) in self.0.iter().enumerate() {
            let runs = runs.load(Relaxed);
            assert_eq!(runs, 1, "task {id} ran {runs} times");
        }
    }

    /// Panics unless every probe reference was dropped (none left in a queue).
    pub(super) fn assert_all_dropped(&self) {
        let refs = StdArc::strong_count(&self.0) - 1;
        assert_eq!(refs, 0, "{refs} task references outlived the queues");
    }
}

impl RawTask for Probe {
    fn id(&self) -> Id {
        self.id
    }

    fn run(self: StdArc<Self>) {
        self.runs[self.id.0 as usize].fetch_add(1, Relaxed);
    }

    fn shutdown(self: StdArc<Self>) {
        unreachable!("probes are never owned")
    }
}
