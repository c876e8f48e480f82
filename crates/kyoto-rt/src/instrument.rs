//! Opt-in per-task instrumentation, read by tools such as `kyoto/console` (which serves it to the
//! `tokio-console` CLI).
//!
//! # Off unless a consumer exists
//!
//! Instrumentation is switched on by acquiring the process-wide [`Consumer`] and off again when it is
//! dropped. While it is off:
//!
//! - `spawn` (every runtime of the process, and `spawn_blocking`) does **one relaxed load** of a
//!   global flag and spawns the future as it is;
//! - the task is the plain one: no stats field, no branch in its poll, waker or completion paths;
//! - the task's waker is the ordinary one, with no counting of any kind.
//!
//! While it is on, `spawn` wraps the future in an `Instrumented` future (see `future.rs`) that
//! records everything below around the polls of the future it wraps, so the task itself stays
//! free of instrumentation either way.
//!
//! Tokio reaches the same place only with `--cfg tokio_unstable` and a `tracing` subscriber; here the
//! switch is at run time.
//!
//! While it is on, each task spawned gets a [`TaskStats`]: spawn time and place (`#[track_caller]`),
//! polls, busy time (sum of poll durations), scheduled time (from the first wake after a poll to the
//! next poll), wakes and self-wakes (a wake from inside the task's own poll), waker clones and drops
//! (the wakers a future stored away; the waker lent to every poll is not counted, as in Tokio), and
//! the completion time and outcome. Tasks spawned before the consumer existed stay uninstrumented.
//!
//! Each task also keeps two [`histogram`]s (poll durations, scheduled durations) in
//! HdrHistogram's counts layout, so a console can serialize them for tokio-console's task view.
//!
//! The consumer sees new and changed tasks with [`Consumer::poll`]; a completed task is reported once
//! more after it completed and then forgotten.
mod future;

pub(crate) use future::Instrumented;

use crate::loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use crate::loom::sync::Mutex;
use std::cell::Cell;
use std::panic::Location;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Tasks spawned and not yet handed to the consumer, at most this many (beyond, new tasks go
/// uninstrumented and are counted in [`Consumer::dropped_tasks`]).
const PENDING_CAP: usize = 1 << 16;

#[cfg(not(loom))]
static ENABLED: AtomicBool = AtomicBool::new(false);
#[cfg(not(loom))]
static TAKEN: AtomicBool = AtomicBool::new(false);
#[cfg(not(loom))]
static DROPPED: AtomicU64 = AtomicU64::new(0);
#[cfg(not(loom))]
static PENDING: Mutex<Vec<Arc<TaskStats>>> = Mutex::new(Vec::new());

#[cfg(loom)]
loom::lazy_static! {
    static ref ENABLED: AtomicBool = AtomicBool::new(false);
    static ref TAKEN: AtomicBool = AtomicBool::new(false);
    static ref DROPPED: AtomicU64 = AtomicU64::new(0);
    static ref PENDING: Mutex<Vec<Arc<TaskStats>>> = Mutex::new(Vec::new());
}

thread_local! {
    /// The instrumented task being polled on this thread (null: none), to tell self-wakes.
    static POLLING: Cell<*const TaskStats> = const { Cell::new(std::ptr::null()) };
}

/// The instant all timestamps are measured from, and the wall-clock time it corresponds to.
fn base() -> &'static (Instant, SystemTime) {
    static BASE: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    BASE.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Nanoseconds since [`base`], plus one (0 means "never").
fn now() -> u64 {
    let since = base().0.elapsed();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

fn wall(t: u64) -> Option<SystemTime> {
    (t != 0).then(|| base().1 + Duration::from_nanos(t - 1))
}

/// Duration histograms in HdrHistogram's layout: lowest discernible value 1 ns, highest trackable
/// value [`HIGH`](histogram::HIGH) (1 s, as console-subscriber's defaults), 1 significant digit (a
/// bucket is at most 1/16 of its value wide). A longer duration is an *outlier*: counted apart and
/// recorded at `HIGH`, as console-subscriber does.
pub mod histogram {
    /// Lowest discernible value, ns.
    pub const LOW: u64 = 1;
    /// Highest trackable value, ns (1 s).
    pub const HIGH: u64 = 1_000_000_000;
    /// Significant value digits.
    pub const SIGFIG: u32 = 1;
    /// log2 of the sub-bucket count (2 × 10^SIGFIG = 20, rounded up to 32).
    const SUB_BUCKET_COUNT_MAGNITUDE: u32 = 5;
    const SUB_BUCKET_HALF_COUNT_MAGNITUDE: u32 = SUB_BUCKET_COUNT_MAGNITUDE - 1;
    const SUB_BUCKET_HALF_COUNT: usize = 1 << SUB_BUCKET_HALF_COUNT_MAGNITUDE;
    const SUB_BUCKET_MASK: u64 = (1 << SUB_BUCKET_COUNT_MAGNITUDE) - 1;
    /// 26 buckets cover `HIGH` (32 × 2^25 > 10^9); HdrHistogram keeps (buckets + 1) half-buckets.
    pub const LEN: usize = 27 * SUB_BUCKET_HALF_COUNT;

    /// The counts index of `value` (ns, at most `HIGH`), as HdrHistogram computes it.
    pub fn index(value: u64) -> usize {
        let value = value.min(HIGH);
        let bucket = (64 - SUB_BUCKET_COUNT_MAGNITUDE) - (value | SUB_BUCKET_MASK).leading_zeros();
        let sub_bucket = (value >> bucket) as usize;
        ((bucket as usize + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + sub_bucket
            - SUB_BUCKET_HALF_COUNT
    }
}

/// A duration histogram of one task (see [`histogram`]).
#[derive(Debug)]
pub(crate) struct Histogram {
    counts: Box<[AtomicU32]>,
    outliers: AtomicU64,
    max_outlier: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..histogram::LEN).map(|_| AtomicU32::new(0)).collect(),
            outliers: AtomicU64::new(0),
            max_outlier: AtomicU64::new(0),
        }
    }

    fn record(&self, ns: u64) {
        if ns > histogram::HIGH {
            self.outliers.fetch_add(1, Ordering::Relaxed);
            self.max_outlier.fetch_max(ns, Ordering::Relaxed);
        }
        self.counts[histogram::index(ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            outliers: self.outliers.load(Ordering::Relaxed),
            max_outlier: match self.max_outlier.load(Ordering::Relaxed) {
                0 => None,
                v => Some(v),
            },
        }
    }
}

/// A copy of a task's duration histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Counts in HdrHistogram's layout ([`histogram::LEN`] entries, see [`histogram::index`]).
    pub counts: Vec<u32>,
    /// Durations above [`histogram::HIGH`] (also counted at `HIGH`).
    pub outliers: u64,
    /// The longest of them, ns.
    pub max_outlier: Option<u64>,
}

/// How a task was spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// `spawn` on a runtime.
    Spawn,
    /// `spawn_blocking`: the closure runs on the blocking pool in one poll.
    Blocking,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Running,
    /// Completed with its output.
    Ok,
    /// Its future (or its destructor) panicked.
    Panicked,
    /// Aborted, or cancelled by runtime shutdown.
    Cancelled,
}

impl Outcome {
    fn from_u8(v: u8) -> Outcome {
        match v {
            1 => Outcome::Ok,
            2 => Outcome::Panicked,
            3 => Outcome::Cancelled,
            _ => Outcome::Running,
        }
    }
}

/// The statistics of one instrumented task. Every counter is updated with relaxed atomics by the
/// task's poller and wakers; a reader sees each value exactly but not a consistent cut of all of them.
#[derive(Debug)]
pub struct TaskStats {
    id: u64,
    kind: TaskKind,
    location: &'static Location<'static>,
    created: u64,
    dropped: AtomicU64,
    outcome: AtomicU8,
    polls: AtomicU64,
    busy: AtomicU64,
    scheduled: AtomicU64,
    first_poll: AtomicU64,
    last_poll_started: AtomicU64,
    last_poll_ended: AtomicU64,
    wakes: AtomicU64,
    self_wakes: AtomicU64,
    waker_clones: AtomicU64,
    waker_drops: AtomicU64,
    last_wake: AtomicU64,
    /// The first wake since the last poll started (0: none): where the scheduled time starts.
    woken: AtomicU64,
    /// Changed since the consumer last looked.
    dirty: AtomicBool,
    poll_times: Histogram,
    scheduled_times: Histogram,
}

/// Called by `new_task`: a stats record when instrumentation is on (the task is then spawned as an
/// [`Instrumented`] future), else `None` after one relaxed load.
#[inline]
pub(crate) fn on_spawn(
    id: u64,
    kind: TaskKind,
    location: &'static Location<'static>,
) -> Option<Arc<TaskStats>> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    register(id, kind, location)
}

#[cold]
#[inline(never)]
fn register(
    id: u64,
    kind: TaskKind,
    location: &'static Location<'static>,
) -> Option<Arc<TaskStats>> {
    let stats = Arc::new(TaskStats {
        id,
        kind,
        location,
        created: now(),
        dropped: AtomicU64::new(0),
        outcome: AtomicU8::new(0),
        polls: AtomicU64::new(0),
        busy: AtomicU64::new(0),
        scheduled: AtomicU64::new(0),
        first_poll: AtomicU64::new(0),
        last_poll_started: AtomicU64::new(0),
        last_poll_ended: AtomicU64::new(0),
        wakes: AtomicU64::new(0),
        self_wakes: AtomicU64::new(0),
        waker_clones: AtomicU64::new(0),
        waker_drops: AtomicU64::new(0),
        last_wake: AtomicU64::new(0),
        woken: AtomicU64::new(0),
        dirty: AtomicBool::new(true),
        poll_times: Histogram::new(),
        scheduled_times: Histogram::new(),
    });
    let mut pending = lock(&PENDING);
    if pending.len() >= PENDING_CAP {
        drop(pending);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    pending.push(stats.clone());
    Some(stats)
}

fn lock<T>(m: &Mutex<T>) -> crate::loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a poll hands back to [`TaskStats::poll_end`].
pub(crate) struct PollGuard {
    started: u64,
    prev: *const TaskStats,
}

impl TaskStats {
    /// A poll begins (on the thread that holds the task's `RUNNING` bit).
    pub(crate) fn poll_start(&self) -> PollGuard {
        let t = now();
        if self.first_poll.load(Ordering::Relaxed) == 0 {
            self.first_poll.store(t, Ordering::Relaxed);
        }
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.last_poll_started.store(t, Ordering::Relaxed);
        let woken = self.woken.swap(0, Ordering::Relaxed);
        if woken != 0 && woken < t {
            self.scheduled.fetch_add(t - woken, Ordering::Relaxed);
            self.scheduled_times.record(t - woken);
        }
        self.dirty.store(true, Ordering::Relaxed);
        let prev = POLLING.with(|p| p.replace(self as *const TaskStats));
        PollGuard { started: t, prev }
    }

    /// The poll begun with `g` returned.
    pub(crate) fn poll_end(&self, g: PollGuard) {
        POLLING.with(|p| p.set(g.prev));
        let t = now();
        let took = t.saturating_sub(g.started);
        self.busy.fetch_add(took, Ordering::Relaxed);
        self.poll_times.record(took);
        self.last_poll_ended.store(t, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The task's waker was used (from any thread).
    pub(crate) fn wake(&self) {
        let t = now();
        self.wakes.fetch_add(1, Ordering::Relaxed);
        if POLLING.with(|p| std::ptr::eq(p.get(), self)) {
            self.self_wakes.fetch_add(1, Ordering::Relaxed);
        }
        self.last_wake.store(t, Ordering::Relaxed);
        let _ = self
            .woken
            .compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// A future cloned the task's waker.
    pub(crate) fn waker_cloned(&self) {
        self.waker_clones.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// A counted waker was dropped (or consumed by `wake`).
    pub(crate) fn waker_dropped(&self) {
        self.waker_drops.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The task completed (its future is gone).
    pub(crate) fn complete(&self, outcome: Outcome) {
        let v = match outcome {
            Outcome::Running => 0,
            Outcome::Ok => 1,
            Outcome::Panicked => 2,
            Outcome::Cancelled => 3,
        };
        self.outcome.store(v, Ordering::Relaxed);
        // `dirty` before `dropped`: a consumer that sees `dropped` also sees this change as dirty.
        self.dirty.store(true, Ordering::Release);
        self.dropped.store(now(), Ordering::Release);
    }

    /// The task's id (`kyoto_rt::task::Id::as_u64`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How it was spawned.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// Where it was spawned (the caller of `spawn`/`spawn_blocking`).
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// When it was spawned.
    pub fn created_at(&self) -> SystemTime {
        wall(self.created).unwrap_or(base().1)
    }

    /// When it completed, if it has.
    pub fn dropped_at(&self) -> Option<SystemTime> {
        wall(self.dropped.load(Ordering::Acquire))
    }

    /// How it ended ([`Outcome::Running`] while it runs).
    pub fn outcome(&self) -> Outcome {
        Outcome::from_u8(self.outcome.load(Ordering::Relaxed))
    }

    /// Number of polls begun.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Total time spent in finished polls.
    pub fn busy_time(&self) -> Duration {
        Duration::from_nanos(self.busy.load(Ordering::Relaxed))
    }

    /// Total time from a wake to the poll it caused.
    pub fn scheduled_time(&self) -> Duration {
        Duration::from_nanos(self.scheduled.load(Ordering::Relaxed))
    }

    /// When the first poll began.
    pub fn first_poll(&self) -> Option<SystemTime> {
        wall(self.first_poll.load(Ordering::Relaxed))
    }

    /// When the latest poll began.
    pub fn last_poll_started(&self) -> Option<SystemTime> {
        wall(self.last_poll_started.load(Ordering::Relaxed))
    }

    /// When the latest poll returned.
    pub fn last_poll_ended(&self) -> Option<SystemTime> {
        wall(self.last_poll_ended.load(Ordering::Relaxed))
    }

    /// Number of wakes (including self-wakes).
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Wakes issued from inside the task's own poll.
    pub fn self_wakes(&self) -> u64 {
        self.self_wakes.load(Ordering::Relaxed)
    }

    /// Clones of the waker made by the task's future (the waker lent to each poll is not counted).
    pub fn waker_clones(&self) -> u64 {
        self.waker_clones.load(Ordering::Relaxed)
    }

    /// Drops of those clones (a wake by value counts as one).
    pub fn waker_drops(&self) -> u64 {
        self.waker_drops.load(Ordering::Relaxed)
    }

    /// When the task was last woken.
    pub fn last_wake(&self) -> Option<SystemTime> {
        wall(self.last_wake.load(Ordering::Relaxed))
    }

    /// The durations of its polls so far.
    pub fn poll_times(&self) -> HistogramSnapshot {
        self.poll_times.snapshot()
    }

    /// The durations from a wake to the poll it caused, so far.
    pub fn scheduled_times(&self) -> HistogramSnapshot {
        self.scheduled_times.snapshot()
    }

    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire) != 0
    }
}

/// The one reader of the instrumentation. Instrumentation is on exactly while it exists.
#[derive(Debug)]
pub struct Consumer {
    tracked: Vec<Arc<TaskStats>>,
}

impl Consumer {
    /// Switches instrumentation on and returns the consumer, or `None` if one already exists in
    /// this process.
    pub fn acquire() -> Option<Consumer> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        lock(&PENDING).clear();
        DROPPED.store(0, Ordering::Relaxed);
        ENABLED.store(true, Ordering::Release);
        Some(Consumer {
            tracked: Vec::new(),
        })
    }

    /// Whether instrumentation is on (a consumer exists).
    pub fn is_enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// Calls `f(stats, is_new)` for every task spawned since the last call (`is_new`) and every
    /// tracked task whose stats changed since. A completed task is reported once after its
    /// completion and then forgotten.
    pub fn poll(&mut self, mut f: impl FnMut(&TaskStats, bool)) {
        let new = std::mem::take(&mut *lock(&PENDING));
        for s in new {
            let was_dropped = s.is_dropped();
            s.dirty.swap(false, Ordering::AcqRel);
            f(&s, true);
            if !was_dropped {
                self.tracked.push(s);
            }
        }
        self.tracked.retain(|s| {
            let was_dropped = s.is_dropped();
            if s.dirty.swap(false, Ordering::AcqRel) {
                f(s, false);
            }
            !was_dropped
        });
    }

    /// Tasks that went uninstrumented since the last call because the consumer had not polled for
    /// too long (more than 65 536 spawns waiting).
    pub fn dropped_tasks(&self) -> u64 {
        DROPPED.swap(0, Ordering::Relaxed)
    }

    /// Number of tasks being tracked (alive, or completed and not yet reported).
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// A task by id: spawned since the last [`Consumer::poll`], or tracked (alive, or completed
    /// and not yet reported).
    pub fn task(&self, id: u64) -> Option<Arc<TaskStats>> {
        if let Some(s) = self.tracked.iter().find(|s| s.id == id) {
            return Some(s.clone());
        }
        lock(&PENDING).iter().find(|s| s.id == id).cloned()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Release);
        lock(&PENDING).clear();
        TAKEN.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::histogram::{index, HIGH, LEN};

    #[test]
    fn histogram_indices_follow_hdrhistogram_with_one_significant_digit() {
        // Bucket 0 holds 0..32 one per slot; each later bucket doubles the width of its 16 slots.
        assert_eq!(index(0), 0);
        assert_eq!(index(31), 31);
        assert_eq!(index(32), 32);
        assert_eq!(index(33), 32);
        assert_eq!(index(34), 33);
        assert_eq!(index(64), 48);
        assert_eq!(index(1_000), 16 * 6 + (1_000 >> 5) - 16);
        assert_eq!(index(HIGH), 429);
        assert!(index(HIGH) < LEN);
        assert_eq!(index(u64::MAX), index(HIGH), "clamped");
        let mut last = 0;
        for v in (0..HIGH).step_by(7_777) {
            let i = index(v);
            assert!(i >= last, "monotonic");
            last = i;
        }
    }
}
