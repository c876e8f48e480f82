//! The shared batch semaphore (Tokio's `batch_semaphore`): FIFO waiters, free permits assigned
//! incrementally to the head waiter, a cancelled waiter returns what it was assigned. Backs shared
//! Semaphore, Mutex (1 permit), RwLock (`maxReaders` permits, a write takes all) and the capacity
//! of bounded mpsc channels.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::chan::Chan;
use super::hold::{EnvHold, Held};
use crate::bridge::{Op, Value};

struct Waiter {
    key: u64,
    need: u64,
    assigned: u64,
    op: Op,
    hold: Arc<EnvHold>,
}

struct State {
    permits: u64,
    closed: bool,
    waiters: VecDeque<Waiter>,
}

/// Why `try_acquire` failed.
pub enum TryErr {
    NoPermits,
    Closed,
}

/// A shared semaphore.
pub struct Sem {
    st: Mutex<State>,
    /// The channel whose capacity this is (woken when permits return after close).
    chan: OnceLock<Weak<Chan>>,
}

type Done = Vec<(Op, Value)>;

fn finish(done: Done) {
    for (op, v) in done {
        op.complete(v);
    }
}

fn closed_error() -> Value {
    Value::Error {
        code: "ERR_SEMAPHORE_CLOSED",
        message: "semaphore closed".to_owned(),
    }
}

impl Sem {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: u64, closed: bool) -> Arc<Sem> {
        Arc::new(Sem {
            st: Mutex::new(State {
                permits,
                closed,
                waiters: VecDeque::new(),
            }),
            chan: OnceLock::new(),
        })
    }

    /// Ties this semaphore to the channel whose capacity it counts.
    pub fn set_chan(&self, chan: Weak<Chan>) {
        let _ = self.chan.set(chan);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the queue from the free permits (head first, partially).
    fn assign(self: &Arc<Self>, st: &mut State, done: &mut Done) {
        while st.permits > 0 {
            let Some(w) = st.waiters.front_mut() else {
                break;
            };
            let take = st.permits.min(w.need - w.assigned);
            w.assigned += take;
            st.permits -= take;
            if w.assigned < w.need {
                break;
            }
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            match w.hold.insert(w.key, Held::Permits(self.clone(), w.need)) {
                Ok(()) => done.push((w.op, Value::Number(w.key as f64))),
                // The waiting env is gone: its wait is void, the permits go to the next waiter.
                Err(_) => st.permits += w.need,
            }
        }
    }

    fn after_return(&self) {
        if let Some(chan) = self.chan.get().and_then(Weak::upgrade) {
            chan.permits_returned();
        }
    }

    /// Takes `n` permits now, if they are free and nobody waits ahead.
    pub fn try_acquire(&self, n: u64) -> Result<(), TryErr> {
        let mut st = self.lock();
        if st.closed {
            return Err(TryErr::Closed);
        }
        if st.permits >= n && (n == 0 || st.waiters.is_empty()) {
            st.permits -= n;
            Ok(())
        } else {
            Err(TryErr::NoPermits)
        }
    }

    /// Queues a wait for `n` permits; `op` completes with `key` once they are recorded in `hold`.
    pub fn enqueue(self: &Arc<Self>, n: u64, op: Op, key: u64, hold: Arc<EnvHold>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            if st.closed {
                done.push((op, closed_error()));
            } else {
                st.waiters.push_back(Waiter {
                    key,
                    need: n,
                    assigned: 0,
                    op,
                    hold,
                });
                self.assign(&mut st, &mut done);
            }
        }
        finish(done);
    }

    /// Cancels the wait `key` of `hold`'s env: it leaves the queue and returns what it was
    /// assigned; if it was already granted (the completion is in flight), the grant is returned.
    pub fn cancel(self: &Arc<Self>, key: u64, hold: &EnvHold) {
        let mut done = Vec::new();
        let found = {
            let mut st = self.lock();
            match st.waiters.iter().position(|w| w.key == key) {
                Some(pos) => {
                    if let Some(w) = st.waiters.remove(pos) {
                        st.permits += w.assigned;
                    }
                    self.assign(&mut st, &mut done);
                    true
                }
                None => false,
            }
        };
        finish(done);
        if found {
            self.after_return();
        } else if let Some(h) = hold.take(key) {
            h.release();
        }
    }

    /// Returns `n` permits.
    pub fn release(self: &Arc<Self>, n: u64) {
        if n == 0 {
            return;
        }
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            st.permits = st.permits.saturating_add(n);
            self.assign(&mut st, &mut done);
        }
        finish(done);
        self.after_return();
    }

    /// Free (unassigned) permits.
    pub fn available(&self) -> u64 {
        self.lock().permits
    }

    /// Adds `n` permits unless that would exceed `max` free permits.
    pub fn add_permits(self: &Arc<Self>, n: u64, max: u64) -> bool {
        {
            let st = self.lock();
            if st.permits.saturating_add(n) > max {
                return false;
            }
        }
        self.release(n);
        true
    }

    /// Removes up to `n` free permits; returns how many.
    pub fn forget_permits(&self, n: u64) -> u64 {
        let mut st = self.lock();
        let k = n.min(st.permits);
        st.permits -= k;
        k
    }

    /// Fails every waiter and every later acquire.
    pub fn close(self: &Arc<Self>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            st.closed = true;
            while let Some(w) = st.waiters.pop_front() {
                st.permits += w.assigned;
                done.push((w.op, closed_error()));
            }
        }
        finish(done);
        self.after_return();
    }

    /// Whether [`Sem::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}
