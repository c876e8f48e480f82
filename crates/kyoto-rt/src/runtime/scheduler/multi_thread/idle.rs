//! Which workers are searching for work and which are parked.
//!
//! `state` packs two counters in one atomic so they change together: the number of *unparked* workers
//! (high bits) and, among them, the number *searching* (stealing) for work (low 16 bits).
//!
//! Rules (Tokio's):
//! - At most half of the workers search at once ([`Idle::transition_worker_to_searching`]), so a burst
//!   of wake-ups does not turn every core into a thief.
//! - A task submitted while some worker is already searching wakes nobody: the searcher will find it.
//!   Otherwise one parked worker is woken, and it starts out searching.
//! - The *last* searcher to find work (or to park) wakes one more worker if work is still pending, so
//!   work never sits in a queue while every worker sleeps.
//! - `sleepers` is the list of parked workers. A worker woken without being removed from it (a
//!   spurious wake-up, or the driver returning) goes back to sleep.
use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};
use crate::loom::sync::Mutex;

const UNPARK_SHIFT: usize = 16;
const SEARCH_MASK: usize = (1 << UNPARK_SHIFT) - 1;

pub(crate) struct Idle {
    state: AtomicUsize,
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

fn searching(s: usize) -> usize {
    s & SEARCH_MASK
}

fn unparked(s: usize) -> usize {
    s >> UNPARK_SHIFT
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            // Every worker starts unparked and not searching.
            state: AtomicUsize::new(num_workers << UNPARK_SHIFT),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    fn lock(&self) -> crate::loom::sync::MutexGuard<'_, Vec<usize>> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn should_wake_one(&self) -> bool {
        let s = self.state.load(SeqCst);
        searching(s) == 0 && unparked(s) < self.num_workers
    }

    /// Picks a parked worker to wake for new work, counting it as unparked and searching. `None` when
    /// a worker is already searching or none is parked.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        // The fence pairs with the one in `transition_worker_to_parked`: either the parking worker
        // sees the task we just queued, or we see it parked.
        crate::loom::sync::atomic::fence(SeqCst);
        if !self.should_wake_one() {
            return None;
        }
        let mut sleepers = self.lock();
        if !self.should_wake_one() {
            return None;
        }
        let worker = sleepers.pop()?;
        self.state.fetch_add((1 << UNPARK_SHIFT) | 1, SeqCst);
        Some(worker)
    }

    /// A worker with no work parks. Returns true when it was the last searcher, in which case the
    /// caller must wake a peer if work is pending.
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.lock();
        let dec = (1 << UNPARK_SHIFT) | usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(worker);
        is_searching && searching(prev) == 1
    }

    /// Whether a worker may start searching (stealing). At most half of the workers search.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let s = self.state.load(SeqCst);
        if 2 * searching(s) >= self.num_workers {
            return false;
        }
        // Racy by design (as in Tokio): a few extra searchers are harmless, the bound is a heuristic.
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// A searching worker found work (or gave up). Returns true when it was the last searcher.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        debug_assert!(searching(prev) > 0);
        searching(prev) == 1
    }

    /// Removes `worker` from the sleepers (shutdown, or a parked worker that found local work).
    /// Returns true when it was parked.
    pub(crate) fn unpark_worker_by_id(&self, worker: usize) -> bool {
        let mut sleepers = self.lock();
        match sleepers.iter().position(|&w| w == worker) {
            Some(i) => {
                sleepers.swap_remove(i);
                self.state.fetch_add(1 << UNPARK_SHIFT, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether `worker` is still listed as parked (it was not chosen by `worker_to_notify`).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        self.lock().contains(&worker)
    }

    /// Number of workers currently searching.
    #[allow(dead_code)]
    pub(crate) fn num_searching(&self) -> usize {
        searching(self.state.load(SeqCst))
    }
}
