//! The shared batch semaphore (Tokio's `batch_semaphore`): FIFO waiters, free permits assigned
//! incrementally to the head waiter, a cancelled waiter returns what it was assigned. Backs shared
//! Semaphore, Mutex (1 permit), RwLock (`maxReaders` permits, a write takes all) and the capacity
//! of bounded mpsc channels.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
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
    waiters: VecDeque<Waiter>,
}

/// Why `try_acquire` failed.
pub enum TryErr {
    NoPermits,
    Closed,
}

/// `word`: the semaphore is closed.
pub const CLOSED: u64 = 1 << 63;
/// `word`: acquires are queued (the head may hold a partial assignment); the free count is 0.
pub const WAITERS: u64 = 1 << 62;
/// `word`: the free permits.
pub const AVAIL: u64 = WAITERS - 1;

/// A shared semaphore.
///
/// Its state is one atomic word (free permits, [`CLOSED`], [`WAITERS`]) next to a mutex-guarded
/// FIFO of waiters. Taking free permits while nobody waits is a compare-and-swap on the word — by
/// [`Sem::try_acquire`], or directly from JS by the senders of a shared bounded channel (the word
/// is exposed to them as an 8-byte external `ArrayBuffer`; see `mod.rs`). Everything involving
/// the queue happens under the mutex, still through CAS loops on the word because those JS
/// decrements can land at any time while [`WAITERS`] is clear. Invariants: [`WAITERS`] is set
/// exactly while the queue is non-empty (changed only under the mutex), and then the free count is
/// 0 — every free permit has been assigned to the head waiter — so no CAS can take a permit past a
/// waiter, and a permit that comes back goes to the oldest waiter.
pub struct Sem {
    word: AtomicU64,
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
            word: AtomicU64::new(permits.min(AVAIL) | if closed { CLOSED } else { 0 }),
            st: Mutex::new(State {
                waiters: VecDeque::new(),
            }),
            chan: OnceLock::new(),
        })
    }

    /// Ties this semaphore to the channel whose capacity it counts.
    pub fn set_chan(&self, chan: Weak<Chan>) {
        let _ = self.chan.set(chan);
    }

    /// The state word, for the external `ArrayBuffer` JS senders take permits through.
    pub fn word_ptr(&self) -> *mut u8 {
        self.word.as_ptr().cast()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the word until the CAS succeeds; returns the previous word.
    fn update(&self, mut f: impl FnMut(u64) -> u64) -> u64 {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            match self
                .word
                .compare_exchange_weak(w, f(w), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(old) => return old,
                Err(now) => w = now,
            }
        }
    }

    /// Under the mutex, with a non-empty queue: takes every free permit out of the word and sets
    /// [`WAITERS`]. Returns what was taken.
    fn drain_word(&self) -> u64 {
        self.update(|w| (w & CLOSED) | WAITERS) & AVAIL
    }

    /// Serves the queue from `free` permits (head first, partially), then settles the word: with
    /// the queue empty, the rest becomes free and [`WAITERS`] clears; otherwise nothing is left
    /// (the head took it) and [`WAITERS`] stays. Under the mutex.
    fn serve(self: &Arc<Self>, st: &mut State, mut free: u64, done: &mut Done) {
        while free > 0 {
            let Some(w) = st.waiters.front_mut() else {
                break;
            };
            let take = free.min(w.need - w.assigned);
            w.assigned += take;
            free -= take;
            if w.assigned < w.need {
                break;
            }
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            match w.hold.insert(w.key, Held::Permits(self.clone(), w.need)) {
                Ok(()) => done.push((w.op, Value::Number(w.key as f64))),
                // The waiting env is gone: its wait is void, the permits go to the next waiter.
                Err(_) => free += w.need,
            }
        }
        if st.waiters.is_empty() {
            self.update(|w| (w & CLOSED) | (w & AVAIL).saturating_add(free).min(AVAIL));
        }
    }

    fn after_return(&self) {
        if let Some(chan) = self.chan.get().and_then(Weak::upgrade) {
            chan.permits_returned();
        }
    }

    /// Takes `n` permits now, if they are free and nobody waits ahead.
    pub fn try_acquire(&self, n: u64) -> Result<(), TryErr> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if w & CLOSED != 0 {
                return Err(TryErr::Closed);
            }
            if n == 0 {
                return Ok(());
            }
            if w & WAITERS != 0 || w & AVAIL < n {
                return Err(TryErr::NoPermits);
            }
            match self
                .word
                .compare_exchange_weak(w, w - n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }

    /// Queues a wait for `n` permits; `op` completes with `key` once they are recorded in `hold`.
    pub fn enqueue(self: &Arc<Self>, n: u64, op: Op, key: u64, hold: Arc<EnvHold>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            match self.try_acquire(n) {
                Err(TryErr::Closed) => done.push((op, closed_error())),
                // Free now (nobody waits): granted without ever showing as a waiter.
                Ok(()) => match hold.insert(key, Held::Permits(self.clone(), n)) {
                    Ok(()) => done.push((op, Value::Number(key as f64))),
                    Err(_) => {
                        drop(st);
                        self.release(n);
                        return;
                    }
                },
                Err(TryErr::NoPermits) => {
                    st.waiters.push_back(Waiter {
                        key,
                        need: n,
                        assigned: 0,
                        op,
                        hold,
                    });
                    let free = self.drain_word();
                    self.serve(&mut st, free, &mut done);
                }
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
                    let back = st.waiters.remove(pos).map_or(0, |w| w.assigned);
                    self.serve(&mut st, back, &mut done);
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
        // Nobody waits: a CAS. Else the oldest waiters are served under the mutex.
        let mut w = self.word.load(Ordering::Acquire);
        let queued = loop {
            if w & WAITERS != 0 {
                break true;
            }
            let new = (w & CLOSED) | (w & AVAIL).saturating_add(n).min(AVAIL);
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break false,
                Err(now) => w = now,
            }
        };
        if queued {
            let mut done = Vec::new();
            {
                let mut st = self.lock();
                if st.waiters.is_empty() {
                    // The queue emptied meanwhile (WAITERS is clear again).
                    self.update(|w| (w & CLOSED) | (w & AVAIL).saturating_add(n).min(AVAIL));
                } else {
                    self.serve(&mut st, n, &mut done);
                }
            }
            finish(done);
        }
        self.after_return();
    }

    /// Free (unassigned) permits.
    pub fn available(&self) -> u64 {
        self.word.load(Ordering::Acquire) & AVAIL
    }

    /// Adds `n` permits unless that would exceed `max` free permits.
    pub fn add_permits(self: &Arc<Self>, n: u64, max: u64) -> bool {
        if self.available().saturating_add(n) > max {
            return false;
        }
        self.release(n);
        true
    }

    /// Removes up to `n` free permits; returns how many.
    pub fn forget_permits(&self, n: u64) -> u64 {
        let old = self.update(|w| w - (w & AVAIL).min(n));
        (old & AVAIL).min(n)
    }

    /// Fails every waiter and every later acquire.
    pub fn close(self: &Arc<Self>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            self.word.fetch_or(CLOSED, Ordering::AcqRel);
            let mut back = 0u64;
            while let Some(w) = st.waiters.pop_front() {
                back = back.saturating_add(w.assigned);
                done.push((w.op, closed_error()));
            }
            self.serve(&mut st, back, &mut done);
        }
        finish(done);
        self.after_return();
    }

    /// Whether [`Sem::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.word.load(Ordering::Acquire) & CLOSED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racing_try_acquire_and_release_conserve_the_permits() {
        let sem = Sem::new(8, false);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sem = sem.clone();
                std::thread::spawn(move || {
                    let mut held = 0u64;
                    for i in 0..200_000u64 {
                        let n = 1 + (i + t) % 3;
                        if (i + t) % 2 == 0 && sem.try_acquire(n).is_ok() {
                            held += n;
                        } else if held > 0 {
                            let k = held.min(n);
                            sem.release(k);
                            held -= k;
                        }
                    }
                    sem.release(held);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sem.available(), 8);
        assert!(!sem.is_closed());
    }

    #[test]
    fn close_keeps_the_count_and_fails_later_acquires() {
        let sem = Sem::new(3, false);
        assert!(sem.try_acquire(2).is_ok());
        assert_eq!(sem.forget_permits(5), 1);
        sem.close();
        assert!(matches!(sem.try_acquire(1), Err(TryErr::Closed)));
        sem.release(2);
        assert_eq!(sem.available(), 2);
        assert!(sem.is_closed());
        assert!(sem.add_permits(1, 3));
        assert!(!sem.add_permits(1, 3));
        assert!(matches!(sem.try_acquire(0), Err(TryErr::Closed)));
    }
}
