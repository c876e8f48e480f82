//! What each env (main thread or Worker) holds in shared objects: permits (semaphore permits,
//! mutex/rwlock guards, reserved channel slots), sender clones and receivers. The env's cleanup
//! hook releases all of it, so a Worker that exits or is terminated never leaves other threads
//! waiting on something it held.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::cells::{End, OnceN, Watch};
use super::chan::Chan;
use super::sem::Sem;

/// One thing an env holds.
pub enum Held {
    /// `n` permits of a semaphore (a permit, a guard, or reserved channel capacity).
    Permits(Arc<Sem>, u64),
    /// `n` sender clones of an mpsc channel (one for a revived or cloned sender; every clone that
    /// existed when a channel made here was shared, for those from before sharing).
    Sender(Arc<Chan>, u64),
    /// The receiver of an mpsc channel.
    Receiver(Arc<Chan>),
    /// One end of a oneshot, broadcast or watch channel.
    End(End),
    /// The right to finish a shared OnceCell's initialisation (key).
    OnceInit(Arc<OnceN>, u64),
    /// A watch channel's write lock, taken by `sendModify` while its function runs.
    WatchWrite(Arc<Watch>),
}

impl Held {
    /// Gives the held thing back (returns permits, drops the sender or receiver).
    pub fn release(self) {
        match self {
            Held::Permits(sem, n) => sem.release(n),
            Held::Sender(chan, n) => chan.drop_senders(n),
            Held::Receiver(chan) => chan.drop_receiver(),
            Held::End(end) => end.release(),
            Held::OnceInit(cell, key) => cell.abandon(key),
            Held::WatchWrite(w) => w.unlock_write(),
        }
    }
}

struct Inner {
    dead: bool,
    items: HashMap<u64, Held>,
}

/// The holdings of one env. Shared with other threads, which record grants into it.
pub struct EnvHold {
    inner: Mutex<Inner>,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A fresh holding key (process-wide unique; stays below 2^53 for any realistic run).
pub fn new_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

impl EnvHold {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `held` under `key`; gives it back if the env is already gone.
    pub fn insert(&self, key: u64, held: Held) -> Result<(), Held> {
        let mut g = self.lock();
        if g.dead {
            return Err(held);
        }
        g.items.insert(key, held);
        Ok(())
    }

    /// Removes and returns the holding `key`.
    pub fn take(&self, key: u64) -> Option<Held> {
        self.lock().items.remove(&key)
    }

    /// Runs `f` on holding `key` (if present); removes it when `f` returns true.
    pub fn update<R>(&self, key: u64, f: impl FnOnce(&mut Held) -> (R, bool)) -> Option<R> {
        let mut g = self.lock();
        let h = g.items.get_mut(&key)?;
        let (r, remove) = f(h);
        if remove {
            g.items.remove(&key);
        }
        Some(r)
    }

    /// Releases everything (env teardown). Later inserts are refused.
    pub fn kill(&self) {
        let items: Vec<Held> = {
            let mut g = self.lock();
            g.dead = true;
            g.items.drain().map(|(_, h)| h).collect()
        };
        for h in items {
            h.release();
        }
    }
}

thread_local! {
    static HOLD: RefCell<Option<Arc<EnvHold>>> = const { RefCell::new(None) };
}

/// This env's holdings (created on first use; its teardown is registered with the bridge).
pub fn current() -> napi::Result<Arc<EnvHold>> {
    if let Some(h) = HOLD.with(|h| h.borrow().clone()) {
        return Ok(h);
    }
    let state = crate::bridge::current()?;
    let hold = Arc::new(EnvHold {
        inner: Mutex::new(Inner {
            dead: false,
            items: HashMap::new(),
        }),
    });
    let h2 = hold.clone();
    state.on_teardown(
        crate::bridge::TeardownKey::Holds,
        Box::new(move || {
            HOLD.with(|h| h.borrow_mut().take());
            h2.kill();
        }),
    );
    HOLD.with(|h| *h.borrow_mut() = Some(hold.clone()));
    Ok(hold)
}
