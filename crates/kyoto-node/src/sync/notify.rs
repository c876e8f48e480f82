//! Shared Notify and Barrier.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bridge::{Op, Value};

const WAITING: u8 = 0;
const BY_ONE: u8 = 1;
const BY_ALL: u8 = 2;

struct NWaiter {
    wait: u64,
    how: Arc<AtomicU8>,
    op: Op,
}

struct NState {
    permit: bool,
    waiters: VecDeque<NWaiter>,
}

/// A shared Notify: at most one stored permit; FIFO (`notify_one`) or LIFO (`notify_last`).
pub struct Notify {
    st: Mutex<NState>,
}

impl Notify {
    pub fn new(permit: bool) -> Arc<Notify> {
        Arc::new(Notify {
            st: Mutex::new(NState {
                permit,
                waiters: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, NState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the stored permit if there is one (a `notified()` that completes at once).
    pub fn try_take(&self) -> bool {
        std::mem::take(&mut self.lock().permit)
    }

    /// Registers a waiter; `how` records how it was woken (for cancellation). The op completes
    /// with that too (`BY_ONE`, `BY_ALL`): a waiter aborted after its completion reached JS passes
    /// a `notify_one` on from there.
    pub fn wait(&self, wait: u64, how: Arc<AtomicU8>, op: Op) {
        let now = {
            let mut st = self.lock();
            if std::mem::take(&mut st.permit) {
                how.store(BY_ONE, Ordering::Release);
                Some(op)
            } else {
                st.waiters.push_back(NWaiter { wait, how, op });
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Number(BY_ONE as f64));
        }
    }

    fn one(&self, last: bool) {
        let w = {
            let mut st = self.lock();
            let w = if last {
                st.waiters.pop_back()
            } else {
                st.waiters.pop_front()
            };
            if w.is_none() {
                st.permit = true;
            }
            w
        };
        if let Some(w) = w {
            w.how.store(BY_ONE, Ordering::Release);
            w.op.complete(Value::Number(BY_ONE as f64));
        }
    }

    pub fn notify_one(&self) {
        self.one(false)
    }

    pub fn notify_last(&self) {
        self.one(true)
    }

    pub fn notify_waiters(&self) {
        let ws: Vec<NWaiter> = self.lock().waiters.drain(..).collect();
        for w in ws {
            w.how.store(BY_ALL, Ordering::Release);
            w.op.complete(Value::Number(BY_ALL as f64));
        }
    }

    /// A wait was dropped: it leaves the queue; a `notify_one` it had received passes on.
    pub fn cancel(&self, wait: u64, how: &AtomicU8) {
        let removed = {
            let mut st = self.lock();
            let before = st.waiters.len();
            st.waiters.retain(|w| w.wait != wait);
            before != st.waiters.len()
        };
        if !removed && how.load(Ordering::Acquire) == BY_ONE {
            self.notify_one();
        }
    }

    pub fn has_permit(&self) -> bool {
        self.lock().permit
    }
}

pub fn new_how() -> Arc<AtomicU8> {
    Arc::new(AtomicU8::new(WAITING))
}

struct BState {
    n: u64,
    arrived: u64,
    waiters: Vec<Op>,
}

/// A shared Barrier: the `n`-th arrival releases its generation and is the leader.
pub struct Barrier {
    st: Mutex<BState>,
}

impl Barrier {
    pub fn new(n: u64, arrived: u64) -> Arc<Barrier> {
        Arc::new(Barrier {
            st: Mutex::new(BState {
                n: n.max(1),
                arrived,
                waiters: Vec::new(),
            }),
        })
    }

    pub fn n(&self) -> u64 {
        self.st.lock().unwrap_or_else(|e| e.into_inner()).n
    }

    /// An arrival: completes every waiter of the generation (leader: 1, others: 0) when full.
    pub fn wait(&self, op: Op) {
        let done = {
            let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
            st.arrived += 1;
            if st.arrived >= st.n {
                st.arrived = 0;
                Some(std::mem::take(&mut st.waiters))
            } else {
                st.waiters.push(op);
                return;
            }
        };
        if let Some(ws) = done {
            for w in ws {
                w.complete(Value::Number(0.0));
            }
            op.complete(Value::Number(1.0));
        }
    }
}
