//! The shared mpsc channel: a FIFO of [`Msg`]s, a sender count, one receiver, and (bounded) a
//! [`Sem`] of capacity permits that return when the receiver takes a message.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ring::Ring;
use super::sem::Sem;
use super::value::Msg;
use crate::bridge::{Op, Value};

struct State {
    queue: VecDeque<Msg>,
    tx_count: u64,
    rx_closed: bool,
    rx_dropped: bool,
    /// The receiver's pending wait: `(wait id, op)`; completed (with no value) when there is
    /// something to look at. The receiver then takes it synchronously.
    rx_waiter: Option<(u64, Op)>,
    closed_waiters: Vec<(u64, Op)>,
    /// The lock-free rings of this channel's sending wrappers (unbounded channels only).
    rings: Vec<Arc<Ring>>,
    /// The ring the next receive starts with (round robin).
    rr: usize,
}

impl State {
    fn rings_len(&self) -> usize {
        self.rings.iter().map(|r| r.len()).sum()
    }

    fn has_messages(&self) -> bool {
        !self.queue.is_empty() || self.rings.iter().any(|r| r.len() > 0)
    }

    /// Takes the receiver's wait (and tells every ring's sender it need not kick any more).
    fn take_rx(&mut self) -> Option<(u64, Op)> {
        let w = self.rx_waiter.take();
        if w.is_some() {
            for r in &self.rings {
                r.set_rx_waiting(false);
            }
        }
        w
    }

    /// Moves `ring`'s published entries to the end of the queue (its sender is about to push
    /// through the queue, or goes away: its order is kept).
    fn drain_ring(&mut self, ring: &Ring) {
        let mut tmp = Vec::new();
        ring.take(usize::MAX, &mut tmp);
        self.queue.extend(tmp);
    }
}

/// A shared mpsc channel.
pub struct Chan {
    st: Mutex<State>,
    /// Capacity permits (bounded channels only).
    pub sem: Option<Arc<Sem>>,
    /// The capacity (0 = unbounded).
    pub cap: u64,
}

/// The outcome of a non-blocking receive.
pub enum TryRecv {
    Value(Msg),
    Empty,
    Closed,
}

fn wake(op: Option<(u64, Op)>) {
    if let Some((_, op)) = op {
        op.complete(Value::Undefined);
    }
}

impl Chan {
    /// A channel of capacity `cap` (0 = unbounded) with `free` free permits, `tx_count` senders.
    pub fn new(cap: u64, free: u64, tx_count: u64, rx_closed: bool) -> Arc<Chan> {
        let sem = (cap > 0).then(|| Sem::new(free, rx_closed));
        let chan = Arc::new(Chan {
            st: Mutex::new(State {
                queue: VecDeque::new(),
                tx_count,
                rx_closed,
                rx_dropped: false,
                rx_waiter: None,
                closed_waiters: Vec::new(),
                rings: Vec::new(),
                rr: 0,
            }),
            sem,
            cap,
        });
        if let Some(sem) = &chan.sem {
            sem.set_chan(Arc::downgrade(&chan));
        }
        chan
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_idle(&self) -> bool {
        self.sem.as_ref().is_none_or(|s| s.available() >= self.cap)
    }

    /// Appends a message whose capacity was already taken (or an unbounded one), after what the
    /// sending wrapper's `ring` holds (sent before it). Returns false (dropping it) if the receiver
    /// is gone.
    pub fn push(&self, ring: Option<&Ring>, msg: Msg) -> bool {
        let waiter = {
            let mut st = self.lock();
            if st.rx_dropped {
                return false;
            }
            if let Some(r) = ring {
                st.drain_ring(r);
            }
            st.queue.push_back(msg);
            st.take_rx()
        };
        wake(waiter);
        true
    }

    /// Puts a message back at the front (it was taken, not consumed, by a receiver that moves).
    pub fn push_front(&self, msg: Msg) {
        let mut st = self.lock();
        if !st.rx_dropped {
            st.queue.push_front(msg);
        }
    }

    /// Unbounded send: fails when the receiver closed. `ring` is the sending wrapper's ring, whose
    /// entries go first (they were sent before).
    pub fn send_unbounded(&self, ring: Option<&Ring>, msg: Msg) -> bool {
        let waiter = {
            let mut st = self.lock();
            if st.rx_closed {
                return false;
            }
            if let Some(r) = ring {
                st.drain_ring(r);
            }
            st.queue.push_back(msg);
            st.take_rx()
        };
        wake(waiter);
        true
    }

    /// Whether the receiver closed the channel (what `Sender.isClosed()` reports).
    pub fn rx_closed(&self) -> bool {
        self.lock().rx_closed
    }

    /// Whether no more messages can arrive (receiver closed or every sender gone).
    pub fn is_closed(&self) -> bool {
        let st = self.lock();
        st.rx_closed || st.tx_count == 0
    }

    /// Closed, empty and with no capacity permit outstanding: `recv` yields the end.
    pub fn is_drained_closed(&self) -> bool {
        let (empty, closed) = {
            let st = self.lock();
            (!st.has_messages(), st.rx_closed || st.tx_count == 0)
        };
        empty && closed && self.is_idle() && self.len() == 0
    }

    /// Buffered messages.
    pub fn len(&self) -> usize {
        let st = self.lock();
        st.queue.len() + st.rings_len()
    }

    /// Registers a sender wrapper's ring (flags set to the channel's current state).
    pub fn add_ring(&self, ring: Arc<Ring>) {
        let mut st = self.lock();
        if st.rx_closed {
            ring.set_closed();
        }
        if st.rx_waiter.is_some() {
            ring.set_rx_waiting(true);
        }
        st.rings.push(ring);
    }

    /// Unregisters a ring whose sender wrapper is gone; what it still holds stays receivable.
    pub fn remove_ring(&self, ring: &Arc<Ring>) {
        let rx = {
            let mut st = self.lock();
            let Some(pos) = st.rings.iter().position(|r| Arc::ptr_eq(r, ring)) else {
                return;
            };
            st.rings.swap_remove(pos);
            if !st.rx_dropped {
                st.drain_ring(ring);
            }
            if st.queue.is_empty() {
                None
            } else {
                st.take_rx()
            }
        };
        wake(rx);
    }

    /// A sender published into its ring while the receiver waited: wake the receiver.
    pub fn kick(&self) {
        let rx = self.lock().take_rx();
        wake(rx);
    }

    /// Takes the oldest message; its capacity permit goes to the oldest waiting sender.
    pub fn try_recv(&self) -> TryRecv {
        let mut one = Vec::with_capacity(1);
        self.recv_many(1, &mut one);
        let closed = {
            let st = self.lock();
            st.rx_closed || st.tx_count == 0
        };
        match one.pop() {
            Some(m) => TryRecv::Value(m),
            None if closed && self.is_drained_closed() => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// Takes up to `limit` messages: the queue first (a sender's queued messages are older than
    /// its ring's), then the rings, round robin. Each returns its capacity permit (bounded).
    pub fn recv_many(&self, limit: usize, out: &mut Vec<Msg>) {
        let before = out.len();
        {
            let mut st = self.lock();
            let k = limit.min(st.queue.len());
            out.extend(st.queue.drain(..k));
            let nr = st.rings.len();
            if k < limit && nr > 0 {
                let start = st.rr % nr;
                for j in 0..nr {
                    let left = limit - (out.len() - before);
                    if left == 0 {
                        break;
                    }
                    st.rings[(start + j) % nr].take(left, out);
                }
                st.rr = start + 1;
            }
        }
        if let Some(sem) = &self.sem {
            sem.release((out.len() - before) as u64);
        }
    }

    /// Registers the receiver's wait; completes it at once if there is something to look at.
    pub fn recv_wait(&self, wait: u64, op: Op) {
        let (now, old) = {
            let mut st = self.lock();
            let has = st.has_messages();
            let ready = has || st.rx_closed || st.tx_count == 0;
            if ready && (has || self.is_idle()) {
                (Some(op), None)
            } else {
                let old = st.rx_waiter.replace((wait, op));
                // Dekker with the senders: raise RXW, then look at the rings again. A sender
                // publishes, then reads RXW; one of us sees the other.
                for r in &st.rings {
                    r.set_rx_waiting(true);
                }
                if st.rings.iter().any(|r| r.len() > 0) {
                    let w = st.take_rx();
                    (w.map(|(_, op)| op), old)
                } else {
                    (None, old)
                }
            }
        };
        wake(old);
        if let Some(op) = now {
            op.complete(Value::Undefined);
        }
    }

    /// Drops the receiver's wait `wait` (its op was cancelled).
    pub fn cancel_recv(&self, wait: u64) {
        let mut st = self.lock();
        if st.rx_waiter.as_ref().is_some_and(|(w, _)| *w == wait) {
            st.take_rx();
        }
    }

    /// `Sender.closed()`: completes when the receiver closes.
    pub fn closed_wait(&self, wait: u64, op: Op) {
        let now = {
            let mut st = self.lock();
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

    /// Drops a `closed()` wait.
    pub fn cancel_closed(&self, wait: u64) {
        self.lock().closed_waiters.retain(|(w, _)| *w != wait);
    }

    /// `Receiver.close()`: no more sends; buffered messages and outstanding permits stay valid.
    pub fn close_rx(&self) {
        let (waiters, rx) = {
            let mut st = self.lock();
            st.rx_closed = true;
            for r in &st.rings {
                r.set_closed();
            }
            (std::mem::take(&mut st.closed_waiters), st.take_rx())
        };
        if let Some(sem) = &self.sem {
            sem.close();
        }
        for (_, op) in waiters {
            op.complete(Value::Undefined);
        }
        wake(rx);
    }

    /// The receiver is gone for good (its env died): close and drop the buffered messages.
    pub fn drop_receiver(&self) {
        self.close_rx();
        let n = {
            let mut st = self.lock();
            st.rx_dropped = true;
            let mut n = st.queue.len();
            st.queue.clear();
            for r in &st.rings {
                n += r.clear();
            }
            n
        };
        if let Some(sem) = &self.sem {
            sem.release(n as u64);
        }
    }

    /// A sender clone appears.
    pub fn add_sender(&self) {
        self.lock().tx_count += 1;
    }

    /// A sender clone is dropped; the last one closes the channel for the receiver.
    pub fn drop_sender(&self) {
        self.drop_senders(1)
    }

    /// `n` sender clones are dropped at once.
    pub fn drop_senders(&self, n: u64) {
        if n == 0 {
            return;
        }
        let rx = {
            let mut st = self.lock();
            st.tx_count = st.tx_count.saturating_sub(n);
            if st.tx_count == 0 {
                st.take_rx()
            } else {
                None
            }
        };
        wake(rx);
    }

    /// Capacity permits came back: a closed channel's receiver may now see the end.
    pub fn permits_returned(&self) {
        let rx = {
            let mut st = self.lock();
            if (st.rx_closed || st.tx_count == 0) && !st.has_messages() {
                st.take_rx()
            } else {
                None
            }
        };
        wake(rx);
    }
}
