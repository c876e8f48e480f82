//! `OwnedTasks`: every live task of one scheduler, so shutdown can reach the ones in no queue.
//!
//! Sharded by task id to keep `spawn` and completion on different workers from contending on one lock.
//! Once closed (at shutdown) it refuses new tasks: a task spawned during shutdown is cancelled at once.
use super::{Id, Task};
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SHARDS: usize = 16;

/// Ids are unique sequential numbers: they hash to themselves.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 ids are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<Id, Task, BuildHasherDefault<IdHasher>>;

pub(crate) struct OwnedTasks {
    shards: Box<[Mutex<Shard>]>,
    closed: AtomicBool,
    alive: AtomicUsize,
    spawned: AtomicU64,
}

impl OwnedTasks {
    pub(crate) fn new() -> OwnedTasks {
        OwnedTasks {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            closed: AtomicBool::new(false),
            alive: AtomicUsize::new(0),
            spawned: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: Id) -> crate::loom::sync::MutexGuard<'_, Shard> {
        self.shards[id.0 as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a task. Returns false (and keeps nothing) when the list is closed: the caller must then
    /// shut the task down instead of scheduling it.
    pub(crate) fn bind(&self, task: &Task) -> bool {
        let id = task.id();
        let mut shard = self.shard(id);
        // Checked under the shard lock: `close_and_shutdown_all` takes every shard lock after setting
        // `closed`, so a task is either refused here or drained there.
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        shard.insert(id, task.clone());
        self.alive.fetch_add(1, Ordering::Relaxed);
        self.spawned.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Removes a completed task.
    pub(crate) fn remove(&self, id: Id) -> Option<Task> {
        let removed = self.shard(id).remove(&id);
        if removed.is_some() {
            self.alive.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Closes the list and cancels every task in it. Tasks being polled right now finish their
    /// cancellation when that poll returns.
    pub(crate) fn close_and_shutdown_all(&self) {
        self.closed.store(true, Ordering::Release);
        for shard in self.shards.iter() {
            // Take the tasks out first: shutting one down re-enters `remove` on the same shard.
            let tasks: Vec<Task> = {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.values().cloned().collect()
            };
            for task in tasks {
                task.shutdown();
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Tasks spawned and not yet completed.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Tasks ever spawned.
    pub(crate) fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }
}
