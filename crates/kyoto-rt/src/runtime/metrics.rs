//! `RuntimeMetrics`: a snapshot of what the runtime is doing.
use super::scheduler::{self};
use super::RuntimeFlavor;
use std::sync::atomic::Ordering::Relaxed;

/// Counters of one runtime at one moment. Per-worker counters are published by each worker when it
/// parks or runs maintenance (every `event_interval` polls), so they may trail by that much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeMetrics {
    /// The scheduler.
    pub flavor: RuntimeFlavor,
    /// Worker threads (1 for current-thread).
    pub workers: usize,
    /// Tasks spawned and not yet completed.
    pub alive_tasks: usize,
    /// Tasks ever spawned (blocking tasks excluded).
    pub spawned_tasks: u64,
    /// Tasks in the global (remote) queue.
    pub global_queue_depth: usize,
    /// Task polls, per worker.
    pub worker_poll_count: Vec<u64>,
    /// Tasks stolen from other workers, per worker.
    pub worker_steal_count: Vec<u64>,
    /// Times each worker parked.
    pub worker_park_count: Vec<u64>,
    /// Tasks in each worker's local queue.
    pub worker_local_queue_depth: Vec<usize>,
    /// Times each worker's local queue overflowed into the global queue.
    pub worker_overflow_count: Vec<u64>,
    /// I/O readiness events dispatched by the driver.
    pub io_events: u64,
    /// Polls that returned early because the task spent its coop budget.
    pub budget_forced_yields: u64,
    /// Threads in the blocking pool.
    pub blocking_threads: usize,
    /// Idle threads in the blocking pool.
    pub idle_blocking_threads: usize,
    /// Blocking tasks waiting for a thread.
    pub blocking_queue_depth: usize,
}

impl RuntimeMetrics {
    pub(crate) fn collect(handle: &scheduler::Handle) -> RuntimeMetrics {
        let blocking = handle.blocking();
        let owned = handle.owned();
        let mut m = RuntimeMetrics {
            flavor: RuntimeFlavor::CurrentThread,
            workers: 1,
            alive_tasks: owned.alive(),
            spawned_tasks: owned.spawned(),
            global_queue_depth: 0,
            worker_poll_count: Vec::new(),
            worker_steal_count: Vec::new(),
            worker_park_count: Vec::new(),
            worker_local_queue_depth: Vec::new(),
            worker_overflow_count: Vec::new(),
            io_events: handle.driver().io.io_events(),
            budget_forced_yields: 0,
            blocking_threads: blocking.num_threads(),
            idle_blocking_threads: blocking.num_idle_threads(),
            blocking_queue_depth: blocking.queue_depth(),
        };
        match handle {
            scheduler::Handle::CurrentThread(h) => {
                m.global_queue_depth = h.global_queue_depth();
                m.worker_poll_count.push(h.polls());
                m.worker_steal_count.push(0);
                m.worker_park_count.push(h.parks());
                m.worker_local_queue_depth.push(h.local_queue_depth());
                m.worker_overflow_count.push(0);
                m.budget_forced_yields = h.forced_yields();
            }
            scheduler::Handle::MultiThread(h) => {
                m.flavor = RuntimeFlavor::MultiThread;
                m.workers = h.num_workers();
                m.global_queue_depth = h.global_queue_depth();
                for i in 0..m.workers {
                    let w = h.worker_metrics(i);
                    m.worker_poll_count.push(w.polls.load(Relaxed));
                    m.worker_steal_count.push(w.steals.load(Relaxed));
                    m.worker_park_count.push(w.parks.load(Relaxed));
                    m.worker_local_queue_depth
                        .push(w.local_queue_depth.load(Relaxed));
                    m.worker_overflow_count.push(w.overflows.load(Relaxed));
                    m.budget_forced_yields += w.forced_yields.load(Relaxed);
                }
            }
        }
        m
    }
}
