//! `OwnedTasks`: every live task of one scheduler, so shutdown can reach the ones in no queue.
//!
//! Sharded by task id to keep `spawn` and completion on different workers from contending on one lock.
//! Once closed (at shutdown) it refuses new tasks: a task spawned during shutdown is cancelled at once.
use super::{Id, Task};
use crate::loom::sync::atomic::{AtomicBool, Ordering};
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

/// One shard: its tasks, and how many it ever took (counted under the lock it already holds, so
/// `spawn` pays no extra atomic for the metric).
#[derive(Default)]
struct Shard {
    tasks: HashMap<Id, Task, BuildHasherDefault<IdHasher>>,
    spawned: u64,
}

pub(crate) struct OwnedTasks {
    shards: Box<[Mutex<Shard>]>,
    closed: AtomicBool,
}

impl OwnedTasks {
    pub(crate) fn new() -> OwnedTasks {
        OwnedTasks {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            closed: AtomicBool::new(false),
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
        shard.tasks.insert(id, task.clone());
        shard.spawned += 1;
        true
    }

    /// Removes a completed task.
    pub(crate) fn remove(&self, id: Id) -> Option<Task> {
        self.shard(id).tasks.remove(&id)
    }

    /// Closes the list and cancels every task in it. Tasks being polled right now finish their
    /// cancellation when that poll returns.
    pub(crate) fn close_and_shutdown_all(&self) {
        self.closed.store(true, Ordering::Release);
        for shard in self.shards.iter() {
            // Take the tasks out first: shutting one down re-enters `remove` on the same shard.
            let tasks: Vec<Task> = {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.tasks.values().cloned().collect()
            };
            for task in tasks {
                task.shutdown();
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock_all(&self) -> impl Iterator<Item = crate::loom::sync::MutexGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Tasks spawned and not yet completed (a metric: takes every shard lock in turn).
    pub(crate) fn alive(&self) -> usize {
        self.lock_all().map(|s| s.tasks.len()).sum()
    }

    /// Tasks ever spawned (a metric).
    pub(crate) fn spawned(&self) -> u64 {
        self.lock_all().map(|s| s.spawned).sum()
    }
}
