//! Per-worker counters: kept in plain integers by the worker and published to atomics when it parks
//! or runs maintenance, so the hot path never pays for a shared write.
use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// What other threads read (`Runtime::metrics`).
#[derive(Default)]
pub(crate) struct WorkerMetrics {
    pub(crate) polls: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) overflows: AtomicU64,
    pub(crate) forced_yields: AtomicU64,
    pub(crate) local_queue_depth: AtomicUsize,
}

/// The worker's private tally.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) parks: u64,
    pub(crate) overflows: u64,
}

impl Stats {
    pub(crate) fn submit(&mut self, to: &WorkerMetrics, local_queue_depth: usize) {
        to.polls.fetch_add(std::mem::take(&mut self.polls), Relaxed);
        to.steals
            .fetch_add(std::mem::take(&mut self.steals), Relaxed);
        to.parks.fetch_add(std::mem::take(&mut self.parks), Relaxed);
        to.overflows
            .fetch_add(std::mem::take(&mut self.overflows), Relaxed);
        to.forced_yields
            .fetch_add(crate::runtime::coop::take_forced_yields(), Relaxed);
        to.local_queue_depth.store(local_queue_depth, Relaxed);
    }
}
