//! Shared oneshot, broadcast and watch channels and OnceCell (the state behind `share()`).
//!
//! Every channel end an env holds is an [`End`] recorded in its holdings, so a Worker that exits or
//! is terminated drops its ends: its oneshot sender closes (the receiver gets `RecvError`), its
//! broadcast/watch receivers unsubscribe, its senders are counted out. A OnceCell initialisation in
//! progress in a dying env is abandoned so another thread retries.
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::value::Msg;
use crate::bridge::{Op, Value};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn complete_all(ops: Vec<(u64, Op)>) {
    for (_, op) in ops {
        op.complete(Value::Undefined);
    }
}

/// One end of a shared oneshot, broadcast or watch channel.
#[derive(Clone)]
pub enum End {
    OneshotTx(Arc<Oneshot>),
    OneshotRx(Arc<Oneshot>),
    BcastTx(Arc<Bcast>),
    /// A broadcast receiver and its id.
    BcastRx(Arc<Bcast>, u64),
    WatchTx(Arc<Watch>),
    /// A watch receiver and the version it has seen (carried by a handle).
    WatchRx(Arc<Watch>, f64),
}

impl End {
    /// Drops the end.
    pub fn release(self) {
        match self {
            End::OneshotTx(o) => o.close_tx(),
            End::OneshotRx(o) => o.close_rx(),
            End::BcastTx(b) => b.drop_tx(),
            End::BcastRx(b, id) => b.drop_rx(id),
            End::WatchTx(w) => w.drop_tx(),
            End::WatchRx(w, _) => w.drop_rx(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// oneshot

#[derive(Default)]
struct OsState {
    value: Option<Msg>,
    tx_closed: bool,
    rx_closed: bool,
    taken: bool,
    rx_waiters: Vec<(u64, Op)>,
    closed_waiters: Vec<(u64, Op)>,
}

/// A shared oneshot channel.
pub struct Oneshot {
    st: Mutex<OsState>,
}

/// What a oneshot receive found.
pub enum OsRecv {
    Value(Msg),
    Empty,
    Closed,
}

impl Oneshot {
    /// A oneshot in the given state (moved from JS).
    pub fn new(value: Option<Msg>, tx_closed: bool, rx_closed: bool, taken: bool) -> Arc<Oneshot> {
        Arc::new(Oneshot {
            st: Mutex::new(OsState {
                value,
                tx_closed,
                rx_closed,
                taken,
                ..Default::default()
            }),
        })
    }

    /// `send`: false (value dropped) if the receiver closed or a value was sent already.
    pub fn send(&self, m: Msg) -> bool {
        let ws = {
            let mut st = lock(&self.st);
            if st.rx_closed || st.tx_closed {
                return false;
            }
            st.tx_closed = true;
            st.value = Some(m);
            std::mem::take(&mut st.rx_waiters)
        };
        complete_all(ws);
        true
    }

    /// The sender goes away (sent or not).
    pub fn close_tx(&self) {
        let ws = {
            let mut st = lock(&self.st);
            if st.tx_closed {
                return;
            }
            st.tx_closed = true;
            std::mem::take(&mut st.rx_waiters)
        };
        complete_all(ws);
    }

    /// The receiver closes (a value already sent stays receivable by `try_recv`). A receive
    /// already waiting wakes too: nothing can be sent any more, so it finds `Closed` (Tokio: a
    /// receiver polled after `close()` with no value gets `RecvError`).
    pub fn close_rx(&self) {
        let ws = {
            let mut st = lock(&self.st);
            if st.rx_closed {
                return;
            }
            st.rx_closed = true;
            let mut ws = std::mem::take(&mut st.closed_waiters);
            ws.append(&mut st.rx_waiters);
            ws
        };
        complete_all(ws);
    }

    /// Whether the receiver is closed.
    pub fn rx_closed(&self) -> bool {
        lock(&self.st).rx_closed
    }

    /// Takes the value: receiving closes the receiver (the sender's `closed()` resolves).
    pub fn try_recv(&self) -> OsRecv {
        let (r, ws) = {
            let mut st = lock(&self.st);
            match st.value.take() {
                Some(m) => {
                    st.taken = true;
                    st.tx_closed = true;
                    st.rx_closed = true;
                    (OsRecv::Value(m), std::mem::take(&mut st.closed_waiters))
                }
                None if st.tx_closed || st.taken || st.rx_closed => (OsRecv::Closed, Vec::new()),
                None => (OsRecv::Empty, Vec::new()),
            }
        };
        complete_all(ws);
        r
    }

    /// Completes `op` once there is a value or the channel closed.
    pub fn recv_wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.value.is_some() || st.tx_closed || st.rx_closed {
                Some(op)
            } else {
                st.rx_waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Completes `op` when the receiver closes.
    pub fn closed_wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.rx_closed {
                Some(op)
            } else {
                st.closed_waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Drops a cancelled wait.
    pub fn cancel(&self, wait: u64) {
        let mut st = lock(&self.st);
        st.rx_waiters.retain(|(w, _)| *w != wait);
        st.closed_waiters.retain(|(w, _)| *w != wait);
    }
}

// ---------------------------------------------------------------------------------------------
// broadcast

struct BState {
    buf: Vec<Option<Msg>>,
    /// Per slot, the receivers that have still to read its value (Tokio's `rem`): the last read
    /// (or the last of them going away) empties the slot, so the ring does not keep what every
    /// receiver has read.
    rem: Vec<u64>,
    tail: u64,
    tx: u64,
    /// Receiver id → the position of the next value it reads.
    rxs: HashMap<u64, u64>,
    /// `(receiver id, wait id, op)`.
    waiters: Vec<(u64, u64, Op)>,
    closed_waiters: Vec<(u64, Op)>,
}

impl BState {
    /// Ring slot `i`, growing the ring up to it first (it never grows past the capacity: `i` is
    /// a position masked by it).
    fn slot(&mut self, i: usize) -> &mut Option<Msg> {
        if self.buf.len() <= i {
            self.buf.resize_with(i + 1, || None);
            self.rem.resize(i + 1, 0);
        }
        &mut self.buf[i]
    }

    /// One receiver is done with ring slot `i` (read it, or went away before reading it); the
    /// value, if that was the last receiver to read it.
    fn release(&mut self, i: usize) -> Option<Msg> {
        let r = self.rem.get_mut(i)?;
        if *r == 0 {
            return None;
        }
        *r -= 1;
        if *r == 0 {
            self.buf[i].take()
        } else {
            None
        }
    }
}

/// A shared broadcast channel (a ring of `cap` values, `cap` a power of two).
pub struct Bcast {
    st: Mutex<BState>,
    cap: u64,
}

/// What a broadcast receive found.
pub enum BRecv {
    Value(Msg),
    Empty,
    Closed,
    Lagged(u64),
}

impl Bcast {
    /// A channel of capacity `cap` (a power of two) whose next value is number `tail`.
    pub fn new(cap: u64, tail: u64, tx: u64) -> Arc<Bcast> {
        let cap = cap.clamp(1, 1 << 30).next_power_of_two();
        Arc::new(Bcast {
            st: Mutex::new(BState {
                // Grown as values arrive (`slot`), so a huge capacity costs nothing up front.
                buf: Vec::new(),
                rem: Vec::new(),
                tail,
                tx,
                rxs: HashMap::new(),
                waiters: Vec::new(),
                closed_waiters: Vec::new(),
            }),
            cap,
        })
    }

    /// The capacity.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Stores a retained value at position `pos` (moving a JS channel's ring in).
    pub fn put_init(&self, pos: u64, m: Msg) {
        let mut st = lock(&self.st);
        let i = (pos & (self.cap - 1)) as usize;
        *st.slot(i) = Some(m);
    }

    /// Sends to every current receiver; `None` (value dropped) when there is none.
    pub fn send(&self, m: Msg) -> Option<u64> {
        let (n, ws) = {
            let mut st = lock(&self.st);
            if st.rxs.is_empty() {
                return None;
            }
            let i = (st.tail & (self.cap - 1)) as usize;
            *st.slot(i) = Some(m);
            st.rem[i] = st.rxs.len() as u64;
            st.tail += 1;
            (st.rxs.len() as u64, std::mem::take(&mut st.waiters))
        };
        for (_, _, op) in ws {
            op.complete(Value::Undefined);
        }
        Some(n)
    }

    /// Registers receiver `id` reading from `next` (None: from the tail).
    pub fn add_rx(&self, id: u64, next: Option<u64>) -> u64 {
        let mut st = lock(&self.st);
        let n = next.unwrap_or(st.tail).min(st.tail);
        st.rxs.insert(id, n);
        // It has still to read the retained values from `n` on (a JS channel's ring moved in).
        for pos in n.max(st.tail.saturating_sub(self.cap))..st.tail {
            let i = (pos & (self.cap - 1)) as usize;
            if let Some(r) = st.rem.get_mut(i) {
                *r += 1;
            }
        }
        n
    }

    /// Receiver `id` goes away.
    pub fn drop_rx(&self, id: u64) {
        let mut unread = Vec::new();
        let (mine, closed) = {
            let mut st = lock(&self.st);
            let Some(next) = st.rxs.remove(&id) else {
                return;
            };
            // What it has not read it never will (values are dropped after the lock).
            for pos in next.max(st.tail.saturating_sub(self.cap))..st.tail {
                unread.extend(st.release((pos & (self.cap - 1)) as usize));
            }
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
                .into_iter()
                .partition(|w| w.0 == id);
            st.waiters = rest;
            let closed = if st.rxs.is_empty() {
                std::mem::take(&mut st.closed_waiters)
            } else {
                Vec::new()
            };
            (mine, closed)
        };
        drop(unread);
        for (_, _, op) in mine {
            op.complete(Value::Undefined);
        }
        complete_all(closed);
    }

    /// A sender clone appears.
    pub fn add_tx(&self) {
        lock(&self.st).tx += 1;
    }

    /// A sender goes away; the last one closes the channel.
    pub fn drop_tx(&self) {
        let ws = {
            let mut st = lock(&self.st);
            st.tx = st.tx.saturating_sub(1);
            if st.tx > 0 {
                return;
            }
            std::mem::take(&mut st.waiters)
        };
        for (_, _, op) in ws {
            op.complete(Value::Undefined);
        }
    }

    /// Receiver `id`'s next value (a copy: every receiver gets its own; the last to read a value
    /// takes it out of the ring).
    pub fn try_recv(&self, id: u64) -> BRecv {
        let mut st = lock(&self.st);
        let tail = st.tail;
        let closed = st.tx == 0;
        let Some(next) = st.rxs.get_mut(&id) else {
            return BRecv::Closed;
        };
        if *next < tail {
            let oldest = tail.saturating_sub(self.cap);
            if *next < oldest {
                let skipped = oldest - *next;
                *next = oldest;
                return BRecv::Lagged(skipped);
            }
            let i = (*next & (self.cap - 1)) as usize;
            *next += 1;
            if let Some(m) = st.release(i) {
                return BRecv::Value(m);
            }
            return match st.buf.get(i) {
                Some(Some(m)) => BRecv::Value(m.clone()),
                _ => BRecv::Value(Msg::Undefined),
            };
        }
        if closed {
            BRecv::Closed
        } else {
            BRecv::Empty
        }
    }

    /// Completes `op` when receiver `id` has something to look at.
    pub fn recv_wait(&self, id: u64, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            let ready = match st.rxs.get(&id) {
                Some(next) => *next < st.tail || st.tx == 0,
                None => true,
            };
            if ready {
                Some(op)
            } else {
                st.waiters.push((id, wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Completes `op` when there are no receivers.
    pub fn closed_wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.rxs.is_empty() {
                Some(op)
            } else {
                st.closed_waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Drops a cancelled wait.
    pub fn cancel(&self, wait: u64) {
        let mut st = lock(&self.st);
        st.waiters.retain(|w| w.1 != wait);
        st.closed_waiters.retain(|w| w.0 != wait);
    }

    pub fn rx_count(&self) -> u64 {
        lock(&self.st).rxs.len() as u64
    }

    /// Values not yet seen by every receiver (at most the capacity).
    pub fn len(&self) -> u64 {
        let st = lock(&self.st);
        let min = st.rxs.values().copied().min().unwrap_or(st.tail);
        (st.tail - min.min(st.tail)).min(self.cap)
    }

    /// Values receiver `id` has not seen.
    pub fn rx_len(&self, id: u64) -> u64 {
        let st = lock(&self.st);
        st.rxs.get(&id).map_or(0, |n| st.tail.saturating_sub(*n))
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.st).tx == 0
    }
}

// ---------------------------------------------------------------------------------------------
// watch

struct WState {
    value: Msg,
    version: u64,
    tx: u64,
    rx: u64,
    waiters: Vec<(u64, Op)>,
    closed_waiters: Vec<(u64, Op)>,
}

/// A shared watch channel. Every write (send, sendReplace, sendModify) holds the write lock, so
/// a `sendModify` running its JS function in one thread is atomic with respect to other writers.
pub struct Watch {
    st: Mutex<WState>,
    /// The env (holdings address) holding the write lock, if any.
    wl: Mutex<Option<usize>>,
    wl_cv: Condvar,
}

/// Why a write could not take the lock.
pub struct Reentrant;

impl Watch {
    pub fn new(value: Msg, version: u64, tx: u64) -> Arc<Watch> {
        Arc::new(Watch {
            st: Mutex::new(WState {
                value,
                version,
                tx,
                rx: 0,
                waiters: Vec::new(),
                closed_waiters: Vec::new(),
            }),
            wl: Mutex::new(None),
            wl_cv: Condvar::new(),
        })
    }

    /// Takes the write lock for env `owner`, waiting while another env holds it. Fails if `owner`
    /// holds it already (a write from inside `sendModify`'s function would deadlock).
    pub fn lock_write(&self, owner: usize) -> Result<(), Reentrant> {
        let mut g = lock(&self.wl);
        loop {
            match *g {
                None => break,
                Some(o) if o == owner => return Err(Reentrant),
                Some(_) => g = self.wl_cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            }
        }
        *g = Some(owner);
        Ok(())
    }

    pub fn unlock_write(&self) {
        *lock(&self.wl) = None;
        self.wl_cv.notify_one();
    }

    /// Stores `m` (under the write lock); notifies when `notify`. Returns the previous value.
    pub fn store(&self, m: Msg, notify: bool) -> Msg {
        let (old, ws) = {
            let mut st = lock(&self.st);
            let old = std::mem::replace(&mut st.value, m);
            let ws = if notify {
                st.version += 1;
                std::mem::take(&mut st.waiters)
            } else {
                Vec::new()
            };
            (old, ws)
        };
        complete_all(ws);
        old
    }

    /// A copy of the value and its version.
    pub fn borrow(&self) -> (Msg, u64) {
        let st = lock(&self.st);
        (st.value.clone(), st.version)
    }

    pub fn version(&self) -> u64 {
        lock(&self.st).version
    }

    pub fn rx_count(&self) -> u64 {
        lock(&self.st).rx
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.st).tx == 0
    }

    pub fn add_rx(&self) {
        lock(&self.st).rx += 1;
    }

    pub fn drop_rx(&self) {
        let ws = {
            let mut st = lock(&self.st);
            st.rx = st.rx.saturating_sub(1);
            if st.rx > 0 {
                return;
            }
            std::mem::take(&mut st.closed_waiters)
        };
        complete_all(ws);
    }

    pub fn add_tx(&self) {
        lock(&self.st).tx += 1;
    }

    pub fn drop_tx(&self) {
        let ws = {
            let mut st = lock(&self.st);
            st.tx = st.tx.saturating_sub(1);
            if st.tx > 0 {
                return;
            }
            std::mem::take(&mut st.waiters)
        };
        complete_all(ws);
    }

    /// Completes `op` once the version differs from `seen` or the channel is closed.
    pub fn changed_wait(&self, seen: f64, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.version as f64 != seen || st.tx == 0 {
                Some(op)
            } else {
                st.waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Completes `op` when there are no receivers.
    pub fn closed_wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.rx == 0 {
                Some(op)
            } else {
                st.closed_waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    pub fn cancel(&self, wait: u64) {
        let mut st = lock(&self.st);
        st.waiters.retain(|w| w.0 != wait);
        st.closed_waiters.retain(|w| w.0 != wait);
    }
}

// ---------------------------------------------------------------------------------------------
// OnceCell

#[derive(Default)]
struct OState {
    value: Option<Msg>,
    /// The key of the initialisation in progress (0: none).
    init: u64,
    waiters: Vec<(u64, Op)>,
}

/// A shared OnceCell.
pub struct OnceN {
    st: Mutex<OState>,
}

/// What `try_begin` decided.
pub enum Begin {
    /// The value is set.
    Set,
    /// Another initialisation is in progress: wait.
    Busy,
    /// The caller initialises, under this key.
    Mine,
}

impl OnceN {
    pub fn new(value: Option<Msg>, init: u64) -> Arc<OnceN> {
        Arc::new(OnceN {
            st: Mutex::new(OState {
                value,
                init,
                waiters: Vec::new(),
            }),
        })
    }

    /// Set, busy, or (claiming `key`) the caller's turn to initialise.
    pub fn try_begin(&self, key: u64) -> Begin {
        let mut st = lock(&self.st);
        if st.value.is_some() {
            Begin::Set
        } else if st.init != 0 {
            Begin::Busy
        } else {
            st.init = key;
            Begin::Mine
        }
    }

    /// The initialisation `key` produced `m`: store it and wake every waiter. False if `key` is
    /// not the initialisation in progress (its env was declared dead meanwhile).
    pub fn finish(&self, key: u64, m: Msg) -> bool {
        let ws = {
            let mut st = lock(&self.st);
            if st.init != key || st.value.is_some() {
                return false;
            }
            st.init = 0;
            st.value = Some(m);
            std::mem::take(&mut st.waiters)
        };
        complete_all(ws);
        true
    }

    /// The initialisation `key` failed (or its env died): every waiter retries.
    pub fn abandon(&self, key: u64) {
        let ws = {
            let mut st = lock(&self.st);
            if st.init != key {
                return;
            }
            st.init = 0;
            std::mem::take(&mut st.waiters)
        };
        complete_all(ws);
    }

    /// `set`: 0 stored, 1 already initialised, 2 initialising.
    pub fn set(&self, m: Msg) -> u32 {
        let ws = {
            let mut st = lock(&self.st);
            if st.value.is_some() {
                return 1;
            }
            if st.init != 0 {
                return 2;
            }
            st.value = Some(m);
            std::mem::take(&mut st.waiters)
        };
        complete_all(ws);
        0
    }

    /// A copy of the value, if set.
    pub fn get(&self) -> Option<Msg> {
        lock(&self.st).value.clone()
    }

    /// Completes `op` when the value is set or the initialisation in progress ends.
    pub fn wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = lock(&self.st);
            if st.value.is_some() || st.init == 0 {
                Some(op)
            } else {
                st.waiters.push((wait, op));
                None
            }
        };
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    pub fn cancel(&self, wait: u64) {
        lock(&self.st).waiters.retain(|w| w.0 != wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(b: &Bcast) -> usize {
        lock(&b.st).buf.iter().filter(|s| s.is_some()).count()
    }

    fn is_num(r: BRecv, x: f64) -> bool {
        matches!(r, BRecv::Value(Msg::Num(y)) if y == x)
    }

    #[test]
    fn a_broadcast_slot_empties_once_every_receiver_read_it_or_went_away() {
        let b = Bcast::new(4, 0, 1);
        b.add_rx(1, None);
        b.add_rx(2, None);
        b.send(Msg::Num(1.0));
        assert!(is_num(b.try_recv(1), 1.0));
        assert_eq!(held(&b), 1, "receiver 2 has still to read it");
        assert!(is_num(b.try_recv(2), 1.0));
        assert_eq!(held(&b), 0);
        b.send(Msg::Num(2.0));
        assert!(is_num(b.try_recv(1), 2.0));
        b.drop_rx(2);
        assert_eq!(held(&b), 0, "the receiver that had not read it went away");
        // Lag is reported as before.
        for i in 0..6 {
            b.send(Msg::Num(f64::from(i)));
        }
        assert!(matches!(b.try_recv(1), BRecv::Lagged(2)));
        assert!(is_num(b.try_recv(1), 2.0));
    }

    #[test]
    fn receivers_moved_in_behind_the_tail_keep_the_values_they_have_to_read() {
        // A JS channel moved to native memory: its retained values, then its receivers.
        let b = Bcast::new(4, 2, 1);
        b.put_init(0, Msg::Num(0.0));
        b.put_init(1, Msg::Num(1.0));
        b.add_rx(1, Some(0));
        b.add_rx(2, Some(1));
        assert!(is_num(b.try_recv(1), 0.0));
        assert_eq!(
            held(&b),
            1,
            "value 0 is read by its only reader; value 1 is kept"
        );
        assert!(is_num(b.try_recv(2), 1.0));
        assert_eq!(held(&b), 1, "receiver 1 has still to read value 1");
        assert!(is_num(b.try_recv(1), 1.0));
        assert_eq!(held(&b), 0);
    }
}
