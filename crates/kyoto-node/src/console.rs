//! The native half of `kyoto/console`: hands kyoto-rt's task instrumentation
//! ([`kyoto_rt::instrument`]) to the JS aggregator, which serves it to `tokio-console`.
//!
//! One JS thread at a time owns the process-wide consumer (instrumentation is on exactly while it is
//! owned). It lives in a thread-local, so a Worker that exits without detaching gives it back when
//! its thread ends.
use kyoto_rt::instrument::{Consumer, Outcome, TaskKind, TaskStats};
use napi_derive::napi;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CONSUMER: RefCell<Option<Consumer>> = const { RefCell::new(None) };
}

/// One native task that is new or changed since the previous snapshot.
#[napi(object)]
pub struct NativeTaskRecord {
    /// The kyoto-rt task id (unique in the process).
    pub id: f64,
    /// `'task'` (spawned on a runtime) or `'blocking'` (`spawn_blocking`).
    pub kind: String,
    /// First report of this task: the static fields below are set.
    pub is_new: bool,
    /// Source file of the spawn site (new tasks only).
    pub file: Option<String>,
    /// Line of the spawn site (new tasks only).
    pub line: Option<u32>,
    /// Column of the spawn site (new tasks only).
    pub column: Option<u32>,
    /// Spawn time, ms since the Unix epoch.
    pub created: f64,
    /// Completion time, ms since the Unix epoch.
    pub dropped: Option<f64>,
    /// `'running'`, `'ok'`, `'panicked'` or `'cancelled'`.
    pub outcome: String,
    /// Polls begun.
    pub polls: f64,
    /// Time spent in finished polls, ns.
    pub busy_ns: f64,
    /// Time from wakes to the polls they caused, ns.
    pub scheduled_ns: f64,
    /// First poll start, ms since the Unix epoch.
    pub first_poll: Option<f64>,
    /// Latest poll start, ms since the Unix epoch.
    pub last_poll_started: Option<f64>,
    /// Latest poll end, ms since the Unix epoch.
    pub last_poll_ended: Option<f64>,
    /// Wakes (self-wakes included).
    pub wakes: f64,
    /// Wakes from inside the task's own poll.
    pub self_wakes: f64,
    /// Waker clones made by the task's future.
    pub waker_clones: f64,
    /// Drops of those clones.
    pub waker_drops: f64,
    /// Latest wake, ms since the Unix epoch.
    pub last_wake: Option<f64>,
}

/// A task's duration histograms: counts in HdrHistogram's layout (`kyoto_rt::instrument::histogram`:
/// 1 ns .. 1 s, 1 significant digit), plus the outliers above 1 s.
#[napi(object)]
pub struct NativeTaskHistograms {
    /// Poll durations.
    pub poll: Vec<u32>,
    /// Polls longer than 1 s.
    pub poll_outliers: f64,
    /// The longest of them, ns.
    pub poll_max_outlier: Option<f64>,
    /// Durations from a wake to the poll it caused.
    pub scheduled: Vec<u32>,
    /// Those longer than 1 s.
    pub scheduled_outliers: f64,
    /// The longest of them, ns.
    pub scheduled_max_outlier: Option<f64>,
}

/// The tasks that are new or changed since the previous snapshot.
#[napi(object)]
pub struct NativeTaskSnapshot {
    /// New or changed tasks.
    pub tasks: Vec<NativeTaskRecord>,
    /// Tasks that went uninstrumented because no snapshot was taken for too long.
    pub dropped_events: f64,
}

fn ms(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(_) => 0.0,
    }
}

fn record(s: &TaskStats, is_new: bool) -> NativeTaskRecord {
    let loc = s.location();
    NativeTaskRecord {
        id: s.id() as f64,
        kind: match s.kind() {
            TaskKind::Spawn => "task",
            TaskKind::Blocking => "blocking",
        }
        .to_owned(),
        is_new,
        file: is_new.then(|| loc.file().to_owned()),
        line: is_new.then(|| loc.line()),
        column: is_new.then(|| loc.column()),
        created: ms(s.created_at()),
        dropped: s.dropped_at().map(ms),
        outcome: match s.outcome() {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
        }
        .to_owned(),
        polls: s.polls() as f64,
        busy_ns: s.busy_time().as_nanos() as f64,
        scheduled_ns: s.scheduled_time().as_nanos() as f64,
        first_poll: s.first_poll().map(ms),
        last_poll_started: s.last_poll_started().map(ms),
        last_poll_ended: s.last_poll_ended().map(ms),
        wakes: s.wakes() as f64,
        self_wakes: s.self_wakes() as f64,
        waker_clones: s.waker_clones() as f64,
        waker_drops: s.waker_drops() as f64,
        last_wake: s.last_wake().map(ms),
    }
}

/// Switches native task instrumentation on for this thread's console. Returns false when another
/// thread of the process already owns it (this thread's console then shows JS tasks only).
/// Idempotent on the owning thread.
#[napi(catch_unwind)]
pub fn console_attach() -> bool {
    CONSUMER.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Consumer::acquire();
        }
        c.is_some()
    })
}

/// Switches native task instrumentation off (if this thread owns it).
#[napi(catch_unwind)]
pub fn console_detach() {
    let consumer = CONSUMER.with(|c| c.borrow_mut().take());
    drop(consumer);
}

/// The histograms of a tracked native task (alive, or completed and not yet in a snapshot); `null`
/// when unknown or when this thread does not own the instrumentation.
#[napi(catch_unwind)]
pub fn console_task_histograms(id: f64) -> Option<NativeTaskHistograms> {
    if !(id >= 0.0 && id <= u64::MAX as f64) {
        return None;
    }
    CONSUMER.with(|c| {
        let c = c.borrow();
        let s = c.as_ref()?.task(id as u64)?;
        let (p, q) = (s.poll_times(), s.scheduled_times());
        Some(NativeTaskHistograms {
            poll: p.counts,
            poll_outliers: p.outliers as f64,
            poll_max_outlier: p.max_outlier.map(|v| v as f64),
            scheduled: q.counts,
            scheduled_outliers: q.outliers as f64,
            scheduled_max_outlier: q.max_outlier.map(|v| v as f64),
        })
    })
}

/// The native tasks that are new or changed since the previous call; `null` when this thread does
/// not own the instrumentation.
#[napi(catch_unwind)]
pub fn console_snapshot() -> Option<NativeTaskSnapshot> {
    CONSUMER.with(|c| {
        let mut c = c.borrow_mut();
        let consumer = c.as_mut()?;
        let mut tasks = Vec::new();
        consumer.poll(|s, is_new| tasks.push(record(s, is_new)));
        Some(NativeTaskSnapshot {
            tasks,
            dropped_events: consumer.dropped_tasks() as f64,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owning_thread_sees_native_tasks_and_detaching_turns_instrumentation_off() {
        assert!(console_snapshot().is_none(), "not attached yet");
        assert!(console_attach());
        assert!(console_attach(), "idempotent on the owning thread");
        let other = std::thread::spawn(console_attach).join().unwrap();
        assert!(!other, "one owner per process");

        let rt = kyoto_rt::Builder::new_current_thread().build().unwrap();
        let join = rt.spawn(async { 5 });
        let id = join.id().as_u64() as f64;
        assert_eq!(rt.block_on(join).unwrap(), 5);
        let h = console_task_histograms(id).expect("tracked until reported");
        assert_eq!(h.poll.iter().sum::<u32>(), 1);
        assert_eq!(h.poll.len(), kyoto_rt::instrument::histogram::LEN);
        assert!(console_task_histograms(-1.0).is_none());

        let snap = console_snapshot().expect("attached");
        let r = snap
            .tasks
            .iter()
            .find(|r| r.id == id)
            .expect("the task is reported");
        assert!(r.is_new);
        assert_eq!(r.kind, "task");
        assert!(r.file.as_deref().unwrap().ends_with("console.rs"));
        assert_eq!((r.polls, r.outcome.as_str()), (1.0, "ok"));
        assert!(r.dropped.unwrap() >= r.created);

        console_detach();
        assert!(console_snapshot().is_none());
        assert!(!kyoto_rt::instrument::Consumer::is_enabled());
    }
}
