//! The shared mpsc channel: a FIFO of [`Msg`]s, a sender count, one receiver, and (bounded) a
//! [`Sem`] of capacity permits that return when the receiver takes a message.
//!
//! # Order
//!
//! Like Tokio's mpsc, a send that completes before another one starts (one thread sends, then
//! tells another through any synchronization, which then sends) is received first, whichever
//! path each took. Messages arrive by two paths: a sending wrapper's lock-free ring (`ring.rs`:
//! simple values, published by JS with no native call) and the native queue (everything else,
//! under the lock). So every send takes a sequence number from one per-channel counter,
//! [`SeqWord`] — JS with `Atomics.add` on an external `ArrayBuffer` over it, native code with
//! `fetch_add` under the lock — *before* it publishes, and records it with the entry; the
//! receiver hands out the smallest published one first (a k-way merge of the queue head and
//! every ring head).
//!
//! Why that is enough: if send A completes before send B starts, A's `fetch_add` happens before
//! B's, so B's number is larger (one atomic's modification order agrees with happens-before).
//! When the receiver sees B published (acquiring B's ring tail, or the lock B pushed under), that
//! synchronizes with B's publish, which happens after A's, so every load the receiver makes
//! *afterwards* sees A — and A, smaller, goes first. Entries whose number was taken but not yet
//! published belong to sends that have not completed, so they are not causally before anything
//! published and may be overtaken.
//!
//! "Afterwards" is the catch: the receiver looks at the rings one by one, so it may load ring A's
//! tail just before A is published there and ring B's just after B is. So a receive loads every
//! ring's tail twice: what the
//! first pass saw (`seen`) is safe to hand out, ordered against what the second pass saw (`now`),
//! which happened after every first-pass acquire. When the smallest entry of the second view was
//! not in the first, the receive stops there (or, having handed out nothing, takes the second view
//! as the first and looks again: each such retry needs a newly published, smaller number, so it
//! ends). Queue entries need no second look: they were pushed under the lock the receiver holds,
//! and anything that happened before a push happened before the receiver took the lock. With one
//! ring there is nothing to look at out of order, and one pass does.
//!
//! Invariants: a ring's entries are in sequence order (one thread writes it, in program order);
//! the queue is in sequence order (native sends take their number under the lock, right before
//! pushing, and a ring moved into the queue — its sender switching to the slow path, or going
//! away — is merged in by number, keeping each entry's number); `front` holds messages the
//! receiver had already taken and put back (it moved to another thread), which go before
//! everything. Sequence numbers have 31 bits (the counter's bit 0 is the closed flag) and are
//! compared by wrapping difference ([`before`]): that is right while the entries compared are
//! fewer than 2^30 sends apart — no entry stays buffered, or taken but unpublished, while a billion
//! later sends take their numbers (a queue that long would hold tens of GiB; a sender stalled
//! between taking its number and its tail store, a few JS statements, for that many sends is the
//! other way). Past that bound only the order among those entries suffers; every message is still
//! delivered once.
//!
//! # Closing
//!
//! As in Tokio, after `close()` the receiver still gets the message of every send that succeeded,
//! and the end (`recv` → `undefined`, `try_recv` → closed) only once none can still arrive. A JS
//! send through a ring learns whether the receiver closed from the same `Atomics.add` that numbers
//! it, and publishes a few statements later: a close landing in between must not let the receiver
//! see "closed, nothing published" as the end. The close sets the counter's bit 0 with one
//! `fetch_or` on the same word, so it is ordered against every number taken; its old value counts
//! the numbers taken before it (`closed_at`). Each of those belongs to a send that publishes (JS:
//! an unbounded send that saw the channel open, a bounded one holding a slot; native sends push
//! under the lock at once); a number taken afterwards belongs to a send that throws (unbounded) or
//! holds a capacity slot (bounded: the end already waits for every slot to come back). So the
//! channel counts (`seen`, mod 2^31 like the numbers, under the lock) the entries numbered before
//! the close as they reach it — pushed to the queue, or taken out of a ring — and the end is:
//! closed, nothing buffered, `seen == closed_at`, and no capacity slot outstanding. Until then
//! `recv` waits (the late publish finds the ring's RXW flag raised and kicks it) and `try_recv`
//! says empty. An entry is placed before or after the close by [`before`], within the bound above.
//!
//! A number taken and never published would hold the end back for good. JS takes the number and
//! publishes it in one stretch with no call and no loop in between (`ringSend` in
//! `lib/sync/mpsc.ts`); V8 stops a script (`Worker.terminate()`, a stack overflow) only at its
//! stack checks, on function entries and loop back edges, so a send either took no number or
//! published it. Failing that, the wait also ends once every sender is gone (`tx_count == 0`): a
//! sender dropped by its own thread finished its sends first, and one dropped by its env's
//! teardown has none that can still succeed.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ring::{Entry, Ring};
use super::sem::Sem;
use super::value::Msg;
use crate::bridge::{Op, Value};

/// Whether sequence number `a` was taken before `b` (31-bit numbers compared by wrapping
/// difference: see the module docs for the bound).
pub fn before(a: u32, b: u32) -> bool {
    // The difference mod 2^31, shifted into the sign bit's reach: negative when at least 2^30.
    ((a.wrapping_sub(b) << 1) as i32) < 0
}

/// Sequence numbers and counts of them are taken mod 2^31.
const SEQ_MASK: u32 = (1 << 31) - 1;

/// A channel's send counter: bit 0 is set once the receiver closed, bits 1..32 count the sends.
/// A send adds 2 and gets, in one atomic operation, its sequence number (the old count, 31 bits,
/// wrapping) and whether it may still send — an unbounded JS sender thus pays no separate load of
/// a closed flag. Its own cache line (every sender of the channel writes it; nothing else should
/// share the line). JS senders see it as a 4-byte external `ArrayBuffer` (see `mod.rs`).
#[repr(align(64))]
pub struct SeqWord(AtomicU32);

impl SeqWord {
    /// The next number. Relaxed is enough: the order between two sends comes from the counter's
    /// modification order (which agrees with happens-before for one atomic), and visibility of
    /// the entry from its publication (ring tail release or the channel lock), not from this RMW.
    fn take(&self) -> u32 {
        self.0.fetch_add(2, Ordering::Relaxed) >> 1
    }

    /// Sets the closed bit: from now on JS senders of an unbounded channel throw instead of
    /// publishing (a bounded one's sender took its capacity before and may still send). Returns
    /// how many numbers were taken before (mod 2^31): see "Closing" in the module docs.
    fn close(&self) -> u32 {
        self.0.fetch_or(1, Ordering::SeqCst) >> 1
    }

    /// The counter, for the external `ArrayBuffer` JS senders take numbers through.
    pub fn ptr(&self) -> *mut u8 {
        self.0.as_ptr().cast()
    }
}

/// Where a receive stands in one ring (see [`State::take_ordered`]).
#[derive(Clone, Copy)]
struct Cursor {
    /// The next entry to hand out.
    head: u32,
    /// The tail the first look saw: entries before it may be handed out.
    seen: u32,
    /// The tail the second look saw: entries before it are compared against.
    now: u32,
}

struct State {
    /// Messages the receiver had taken and put back (it moved to another thread): first out.
    front: VecDeque<Msg>,
    /// Messages sent through native code, in sequence order.
    queue: VecDeque<Entry>,
    tx_count: u64,
    rx_closed: bool,
    rx_dropped: bool,
    /// How many numbers were taken before the close (valid once `rx_closed`).
    closed_at: u32,
    /// How many entries numbered before the close (all of them while open) reached the channel:
    /// pushed to the queue or taken out of a ring. Mod 2^31. See "Closing" in the module docs.
    seen: u32,
    /// The receiver's pending wait: `(wait id, op)`; completed (with no value) when there is
    /// something to look at. The receiver then takes it synchronously.
    rx_waiter: Option<(u64, Op)>,
    closed_waiters: Vec<(u64, Op)>,
    /// The lock-free rings of this channel's sending wrappers.
    rings: Vec<Arc<Ring>>,
    /// One cursor per ring during a receive (kept to spare an allocation per receive).
    cursors: Vec<Cursor>,
}

impl State {
    fn rings_len(&self) -> usize {
        self.rings.iter().map(|r| r.len()).sum()
    }

    fn has_messages(&self) -> bool {
        !self.front.is_empty() || !self.queue.is_empty() || self.rings.iter().any(|r| r.len() > 0)
    }

    /// Counts an entry reaching the channel if its number was taken before the close.
    fn count_seen(&mut self, seq: u32) {
        if !self.rx_closed || before(seq, self.closed_at) {
            self.seen = self.seen.wrapping_add(1);
        }
    }

    /// Whether no send can still bring a message, apart from capacity slots (bounded; the
    /// caller checks those): every sender is gone, or the receiver closed and every number taken
    /// before has reached the channel.
    fn no_more_sends(&self) -> bool {
        self.tx_count == 0
            || (self.rx_closed && self.closed_at.wrapping_sub(self.seen) & SEQ_MASK == 0)
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

    /// Moves `ring`'s published entries into the queue, merged by sequence number (its sender is
    /// about to push through the queue, or goes away). Usually they all come after the queue's
    /// last entry and are appended; otherwise only the queue's entries from the ring's first
    /// number on are merged with them.
    fn drain_ring(&mut self, ring: &Ring) {
        let mut moved = Vec::new();
        ring.take_all(&mut moved);
        let Some(first) = moved.first().map(|e| e.seq) else {
            return;
        };
        for e in &moved {
            self.count_seen(e.seq);
        }
        let at = self.queue.partition_point(|e| before(e.seq, first));
        if at == self.queue.len() {
            self.queue.extend(moved);
            return;
        }
        let later = self.queue.split_off(at);
        let (mut a, mut b) = (later.into_iter().peekable(), moved.into_iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => before(x.seq, y.seq),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let e = if take_a { a.next() } else { b.next() };
            self.queue.extend(e);
        }
    }

    /// Appends a native send: its sequence number is taken here, under the lock, so the queue
    /// stays in order.
    fn push_seq(&mut self, seq: &SeqWord, msg: Msg) {
        let seq = seq.take();
        // Taken under the lock the close takes too: after the close it is never before it.
        self.count_seen(seq);
        self.queue.push_back(Entry { seq, msg });
    }

    /// Takes up to `limit` messages in sequence order (see the module docs): `front`, then a merge
    /// of the queue and the rings. Returns how many.
    fn take_ordered(&mut self, limit: usize, out: &mut Vec<Msg>) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(m) = self.front.pop_front() else {
                break;
            };
            out.push(m);
            n += 1;
        }
        let State {
            queue,
            rings,
            cursors,
            rx_closed,
            closed_at,
            seen,
            ..
        } = self;
        if n == limit {
            return n;
        }
        if rings.is_empty() {
            let k = (limit - n).min(queue.len());
            out.extend(queue.drain(..k).map(|e| e.msg));
            return n + k;
        }
        cursors.clear();
        for r in rings.iter() {
            let head = r.head();
            let seen = r.tail_from(head);
            cursors.push(Cursor {
                head,
                seen,
                now: seen,
            });
            #[cfg(test)]
            tests::between_loads();
        }
        // Ring `QUEUE` stands for the queue.
        const QUEUE: usize = usize::MAX;
        loop {
            if rings.len() > 1 {
                for (c, r) in cursors.iter_mut().zip(rings.iter()) {
                    c.now = r.tail_from(c.head);
                }
            }
            let before_round = n;
            let mut stalled = false;
            while n < limit {
                // The smallest head and the second smallest number among the heads.
                let mut best: Option<(usize, u32)> = None;
                let mut second: Option<u32> = None;
                let mut consider = |src: usize, seq: u32| match best {
                    Some((_, b)) if !before(seq, b) => {
                        if second.is_none_or(|s| before(seq, s)) {
                            second = Some(seq);
                        }
                    }
                    _ => {
                        second = best.map(|(_, b)| b);
                        best = Some((src, seq));
                    }
                };
                if let Some(e) = queue.front() {
                    consider(QUEUE, e.seq);
                }
                for (i, c) in cursors.iter().enumerate() {
                    if c.head != c.now {
                        consider(i, rings[i].seq(c.head));
                    }
                }
                let Some((src, _)) = best else {
                    break;
                };
                // Take a run from `src`: its entries before the second smallest head. (A ring's
                // numbers are read only when there is something to compare them with: with one
                // source, the cache lines the sender writes them to stay on the sender's core.)
                if src == QUEUE {
                    while let Some(e) = queue.pop_front() {
                        out.push(e.msg);
                        n += 1;
                        if n == limit
                            || !queue
                                .front()
                                .is_some_and(|e| second.is_none_or(|s| before(e.seq, s)))
                        {
                            break;
                        }
                    }
                } else {
                    let (c, r) = (&mut cursors[src], &rings[src]);
                    if c.head == c.seen {
                        // Seen only by the second look: something smaller may not be visible yet.
                        stalled = true;
                        break;
                    }
                    loop {
                        out.push(r.msg(c.head));
                        c.head = c.head.wrapping_add(1);
                        n += 1;
                        if n == limit
                            || c.head == c.seen
                            || second.is_some_and(|s| !before(r.seq(c.head), s))
                        {
                            break;
                        }
                    }
                }
            }
            for (c, r) in cursors.iter().zip(rings.iter()) {
                let head = r.head();
                if c.head != head {
                    // Count what left the ring (while open all of it, without reading the
                    // numbers: they stay in the sender's cache lines).
                    if !*rx_closed {
                        *seen = seen.wrapping_add(c.head.wrapping_sub(head));
                    } else {
                        let mut i = head;
                        while i != c.head {
                            if before(r.seq(i), *closed_at) {
                                *seen = seen.wrapping_add(1);
                            }
                            i = i.wrapping_add(1);
                        }
                    }
                    r.set_head(c.head);
                }
            }
            if !stalled || n > before_round {
                return n;
            }
            for c in cursors.iter_mut() {
                c.seen = c.now;
            }
        }
    }
}

/// A shared mpsc channel.
pub struct Chan {
    st: Mutex<State>,
    /// Capacity permits (bounded channels only).
    pub sem: Option<Arc<Sem>>,
    /// The capacity (0 = unbounded).
    pub cap: u64,
    /// The send counter (see the module docs).
    pub seq: Arc<SeqWord>,
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
                front: VecDeque::new(),
                queue: VecDeque::new(),
                tx_count,
                rx_closed,
                rx_dropped: false,
                // Created closed: the counter starts with its closed bit set, no number before.
                closed_at: 0,
                seen: 0,
                rx_waiter: None,
                closed_waiters: Vec::new(),
                rings: Vec::new(),
                cursors: Vec::new(),
            }),
            sem,
            cap,
            seq: Arc::new(SeqWord(AtomicU32::new(rx_closed as u32))),
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

    /// Appends a message whose capacity was already taken (or an unbounded one), with the next
    /// sequence number. What the sending wrapper's `ring` holds moves to the queue first (by number:
    /// the merge would order it anyway; moving it frees the ring for the sender's next values).
    /// Returns false (dropping it) if the receiver is gone.
    pub fn push(&self, ring: Option<&Ring>, msg: Msg) -> bool {
        let waiter = {
            let mut st = self.lock();
            if st.rx_dropped {
                return false;
            }
            if let Some(r) = ring {
                st.drain_ring(r);
            }
            st.push_seq(&self.seq, msg);
            st.take_rx()
        };
        wake(waiter);
        true
    }

    /// Puts a message back at the front (it was taken, not consumed, by a receiver that moves):
    /// it was handed out before anything still buffered, so it goes before all of it.
    pub fn push_front(&self, msg: Msg) {
        let mut st = self.lock();
        if !st.rx_dropped {
            st.front.push_front(msg);
        }
    }

    /// Unbounded send: fails when the receiver closed. `ring` is the sending wrapper's ring, moved
    /// to the queue first as in [`Chan::push`].
    pub fn send_unbounded(&self, ring: Option<&Ring>, msg: Msg) -> bool {
        let waiter = {
            let mut st = self.lock();
            if st.rx_closed {
                return false;
            }
            if let Some(r) = ring {
                st.drain_ring(r);
            }
            st.push_seq(&self.seq, msg);
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

    /// Closed, empty, no send still to publish and no capacity permit outstanding: `recv` yields
    /// the end (see "Closing" in the module docs). Once closed or sender-less, no slot is taken
    /// any more, so looking at the slots after the messages misses no message published between.
    pub fn is_drained_closed(&self) -> bool {
        let st = self.lock();
        !st.has_messages() && st.no_more_sends() && self.is_idle()
    }

    /// Buffered messages.
    pub fn len(&self) -> usize {
        let st = self.lock();
        st.front.len() + st.queue.len() + st.rings_len()
    }

    /// Registers a sender wrapper's ring (flags set to the channel's current state).
    pub fn add_ring(&self, ring: Arc<Ring>) {
        let mut st = self.lock();
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
            if st.has_messages() {
                st.take_rx()
            } else {
                None
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
        match one.pop() {
            Some(m) => TryRecv::Value(m),
            None if self.is_drained_closed() => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// Takes up to `limit` messages, oldest sequence number first (see the module docs). Each
    /// returns its capacity permit (bounded).
    pub fn recv_many(&self, limit: usize, out: &mut Vec<Msg>) {
        let k = self.lock().take_ordered(limit, out);
        if let Some(sem) = &self.sem {
            sem.release(k as u64);
        }
    }

    /// Registers the receiver's wait; completes it at once if there is something to look at.
    pub fn recv_wait(&self, wait: u64, op: Op) {
        let (now, old) = {
            let mut st = self.lock();
            if st.has_messages() || (st.no_more_sends() && self.is_idle()) {
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
            if !st.rx_closed {
                st.rx_closed = true;
                st.closed_at = self.seq.close();
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
            let mut n = st.front.len() + st.queue.len();
            st.front.clear();
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
            if st.no_more_sends() && !st.has_messages() {
                st.take_rx()
            } else {
                None
            }
        };
        wake(rx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::sync::ring::RING_N;

    thread_local! {
        /// Runs on the receiving thread right after the first look loads a ring's tail: lets a
        /// test publish exactly there, as a sender thread might.
        static BETWEEN_LOADS: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            const { std::cell::RefCell::new(None) };
    }

    pub(super) fn between_loads() {
        BETWEEN_LOADS.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f();
            }
        });
    }

    fn num(m: &Msg) -> f64 {
        match m {
            Msg::Num(x) => *x,
            _ => panic!("not a number"),
        }
    }

    fn recv_all(chan: &Chan) -> Vec<f64> {
        let mut out = Vec::new();
        chan.recv_many(usize::MAX, &mut out);
        out.iter().map(num).collect()
    }

    fn ring_of(chan: &Chan) -> Arc<Ring> {
        let r = Arc::new(Ring::new());
        chan.add_ring(r.clone());
        r
    }

    /// What a JS sender does: take the number, then publish.
    fn ring_send(chan: &Chan, ring: &Ring, x: f64) {
        ring.publish(chan.seq.take(), &Msg::Num(x));
    }

    /// The first half of an unbounded JS send (`ringSend` in `lib/sync/mpsc.ts`): the `Atomics.add`
    /// that numbers it and says whether the receiver closed. `None`: closed, the send throws.
    fn js_number(chan: &Chan) -> Option<u32> {
        let w = chan.seq.0.fetch_add(2, Ordering::Relaxed);
        (w & 1 == 0).then_some(w >> 1)
    }

    fn is_value(r: TryRecv, x: f64) -> bool {
        matches!(r, TryRecv::Value(Msg::Num(y)) if y == x)
    }

    #[test]
    fn before_compares_31_bit_numbers_across_the_wrap() {
        let max = (1u32 << 31) - 1;
        assert!(before(1, 2));
        assert!(!before(2, 1));
        assert!(!before(5, 5));
        assert!(before(max, 0));
        assert!(before(max - 3, 2));
        assert!(!before(2, max - 3));
        assert!(before(0, (1 << 30) - 1));
        // What `take` hands out: the counter's bits 1..32, so the wrap of the u32 word is the
        // wrap of the 31-bit numbers.
        let w = SeqWord(AtomicU32::new(u32::MAX - 3));
        let (a, b, c) = (w.take(), w.take(), w.take());
        assert_eq!((a, b, c), (max - 1, max, 0));
        assert!(before(a, b) && before(b, c) && before(a, c));
    }

    #[test]
    fn a_ring_entry_sent_before_a_queued_one_is_received_first() {
        let chan = Chan::new(0, 0, 2, false);
        let a = ring_of(&chan);
        ring_send(&chan, &a, 1.0);
        assert!(chan.send_unbounded(None, Msg::Num(2.0))); // another wrapper, no ring
        ring_send(&chan, &a, 3.0);
        assert_eq!(recv_all(&chan), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn rings_and_the_queue_interleaved_come_out_by_sequence_number() {
        let chan = Chan::new(0, 0, 3, false);
        let (a, b) = (ring_of(&chan), ring_of(&chan));
        let mut sent = Vec::new();
        for i in 0..3000 {
            let x = i as f64;
            match (i * 7 + i / 5) % 3 {
                0 if a.len() < RING_N as usize => ring_send(&chan, &a, x),
                1 if b.len() < RING_N as usize => ring_send(&chan, &b, x),
                _ => assert!(chan.push(None, Msg::Num(x))),
            }
            sent.push(x);
        }
        assert_eq!(chan.len(), 3000);
        let mut got = Vec::new();
        let mut batch = Vec::new();
        while got.len() < sent.len() {
            batch.clear();
            chan.recv_many(7, &mut batch);
            assert!(!batch.is_empty());
            got.extend(batch.iter().map(num));
        }
        assert_eq!(got, sent);
        assert_eq!(chan.len(), 0);
    }

    #[test]
    fn numbers_that_wrap_around_keep_their_order() {
        let chan = Chan::new(0, 0, 2, false);
        chan.seq.0.store(u32::MAX - 9, Ordering::Relaxed);
        let (a, b) = (ring_of(&chan), ring_of(&chan));
        for i in 0..20 {
            match i % 3 {
                0 => ring_send(&chan, &a, i as f64),
                1 => ring_send(&chan, &b, i as f64),
                _ => assert!(chan.push(None, Msg::Num(i as f64))),
            }
        }
        let want: Vec<f64> = (0..20).map(|i| i as f64).collect();
        assert_eq!(recv_all(&chan), want);
    }

    #[test]
    fn a_ring_drained_into_the_queue_is_merged_by_number() {
        let chan = Chan::new(0, 0, 2, false);
        let a = ring_of(&chan);
        ring_send(&chan, &a, 0.0);
        assert!(chan.push(None, Msg::Num(1.0)));
        ring_send(&chan, &a, 2.0);
        assert!(chan.push(None, Msg::Num(3.0)));
        ring_send(&chan, &a, 4.0);
        // `a`'s sender goes through native code: its ring moves into the queue first.
        assert!(chan.push(Some(&a), Msg::Num(5.0)));
        assert_eq!(a.len(), 0);
        let seqs: Vec<u32> = chan.lock().queue.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        ring_send(&chan, &a, 6.0);
        // The wrapper goes away: what its ring holds stays receivable, in order.
        chan.remove_ring(&a);
        assert!(chan.push(None, Msg::Num(7.0)));
        let want: Vec<f64> = (0..8).map(|i| i as f64).collect();
        assert_eq!(recv_all(&chan), want);
    }

    #[test]
    fn messages_put_back_by_a_moving_receiver_come_out_first() {
        let chan = Chan::new(0, 0, 1, false);
        let a = ring_of(&chan);
        ring_send(&chan, &a, 3.0);
        assert!(chan.push(None, Msg::Num(4.0)));
        chan.push_front(Msg::Num(2.0));
        chan.push_front(Msg::Num(1.0));
        assert_eq!(chan.len(), 4);
        assert_eq!(recv_all(&chan), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn a_closed_receiver_sets_the_counters_closed_bit_and_numbers_go_on() {
        let chan = Chan::new(0, 0, 1, false);
        assert_eq!(chan.seq.take(), 0);
        chan.close_rx();
        assert_eq!(chan.seq.0.load(Ordering::Relaxed) & 1, 1);
        assert_eq!(chan.seq.take(), 1);
        assert!(!chan.send_unbounded(None, Msg::Num(1.0)));
        let closed = Chan::new(0, 0, 1, true);
        assert_eq!(closed.seq.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_send_published_while_the_receiver_looks_at_the_rings_does_not_overtake_an_earlier_one() {
        let chan = Chan::new(0, 0, 2, false);
        let (a, b) = (ring_of(&chan), ring_of(&chan));
        // Right after the receiver loaded `a`'s tail (nothing there yet): `a`'s sender sends 0,
        // then — after it, by any synchronization — `b`'s sender sends 1. The receiver then loads
        // `b`'s tail and sees 1: it must not hand 1 out before 0.
        let mut fired = false;
        let (c2, a2, b2) = (chan.clone(), a.clone(), b.clone());
        BETWEEN_LOADS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                if !fired {
                    fired = true;
                    ring_send(&c2, &a2, 0.0);
                    ring_send(&c2, &b2, 1.0);
                }
            }))
        });
        let got = recv_all(&chan);
        BETWEEN_LOADS.with(|h| h.borrow_mut().take());
        assert_eq!(got, [0.0, 1.0]);
    }

    /// Four senders (three rings, one through the queue) take turns through an atomic, so each
    /// send happens after the previous one; a receiver running concurrently must see the turns in
    /// order. This is what the receiver's second look at the rings is for: it may load one ring's
    /// tail just before turn `t` is published there, and the next ring's just after `t + 1` is.
    #[test]
    fn sends_ordered_across_threads_are_received_in_that_order() {
        const TURNS: u64 = 40_000;
        const SENDERS: u64 = 4;
        let chan = Chan::new(0, 0, SENDERS, false);
        let rings: Vec<Arc<Ring>> = (0..SENDERS - 1).map(|_| ring_of(&chan)).collect();
        let turn = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..SENDERS)
            .map(|k| {
                let (chan, turn) = (chan.clone(), turn.clone());
                let ring = rings.get(k as usize).cloned();
                std::thread::spawn(move || {
                    for t in (k..TURNS).step_by(SENDERS as usize) {
                        while turn.load(Ordering::Acquire) != t {
                            std::thread::yield_now();
                        }
                        let x = t as f64;
                        match &ring {
                            Some(r) if r.len() < RING_N as usize => ring_send(&chan, r, x),
                            r => assert!(chan.push(r.as_deref(), Msg::Num(x))),
                        }
                        turn.store(t + 1, Ordering::Release);
                    }
                })
            })
            .collect();
        let mut next = 0.0;
        let mut batch = Vec::new();
        while next < TURNS as f64 {
            batch.clear();
            chan.recv_many(64, &mut batch);
            for m in &batch {
                assert_eq!(num(m), next, "turns received out of order");
                next += 1.0;
            }
            if batch.is_empty() {
                std::thread::yield_now();
            }
        }
        for s in senders {
            s.join().unwrap();
        }
    }

    #[test]
    fn a_send_numbered_before_the_close_and_published_after_it_is_still_received() {
        let chan = Chan::new(0, 0, 1, false);
        let a = ring_of(&chan);
        ring_send(&chan, &a, 1.0);
        // The sender's add sees the channel open; before it publishes, the receiver closes and
        // looks: 1 is there, then nothing, but the in-flight send is not the end.
        let seq = js_number(&chan).expect("the channel is open");
        chan.close_rx();
        assert!(is_value(chan.try_recv(), 1.0));
        assert!(matches!(chan.try_recv(), TryRecv::Empty));
        assert!(!chan.is_drained_closed());
        assert_eq!(recv_all(&chan), [] as [f64; 0]);
        a.publish(seq, &Msg::Num(2.0));
        assert!(is_value(chan.try_recv(), 2.0));
        assert!(matches!(chan.try_recv(), TryRecv::Closed));
        // Sends that find the closed bit take numbers but publish nothing: not waited for.
        assert!(js_number(&chan).is_none());
        assert!(!chan.send_unbounded(Some(&a), Msg::Num(3.0)));
        assert!(chan.is_drained_closed());
    }

    #[test]
    fn a_closed_receiver_waits_for_in_flight_sends_on_every_path_and_across_the_wrap() {
        let chan = Chan::new(0, 0, 3, false);
        // The numbers, and the count of those the channel has seen, wrap during the test.
        let start = u32::MAX - 5;
        chan.seq.0.store(start, Ordering::Relaxed);
        chan.lock().seen = start >> 1;
        let (a, b, c) = (ring_of(&chan), ring_of(&chan), ring_of(&chan));
        ring_send(&chan, &a, 0.0);
        let sa = js_number(&chan).unwrap();
        assert!(chan.send_unbounded(None, Msg::Num(2.0)));
        let sb = js_number(&chan).unwrap();
        ring_send(&chan, &c, 4.0);
        chan.close_rx();
        // In-flight sends may be overtaken (they have not completed), not forgotten.
        assert_eq!(recv_all(&chan), [0.0, 2.0, 4.0]);
        assert!(!chan.is_drained_closed());
        b.publish(sb, &Msg::Num(3.0));
        assert!(is_value(chan.try_recv(), 3.0));
        assert!(matches!(chan.try_recv(), TryRecv::Empty));
        // The last one is published, then its wrapper goes away: it moves to the queue.
        a.publish(sa, &Msg::Num(1.0));
        chan.remove_ring(&a);
        assert!(!chan.is_drained_closed());
        assert_eq!(recv_all(&chan), [1.0]);
        assert!(chan.is_drained_closed());
    }

    #[test]
    fn in_flight_sends_published_while_the_closed_receiver_looks_at_the_rings_are_received() {
        let chan = Chan::new(0, 0, 2, false);
        let (a, b) = (ring_of(&chan), ring_of(&chan));
        let (sa, sb) = (js_number(&chan).unwrap(), js_number(&chan).unwrap());
        chan.close_rx();
        // Right after the receiver loaded `a`'s tail (nothing there yet) both senders publish:
        // `b`'s entry is seen first and must wait for `a`'s, and neither may be counted twice or
        // taken for the end.
        let mut fired = false;
        let (a2, b2) = (a.clone(), b.clone());
        BETWEEN_LOADS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                if !fired {
                    fired = true;
                    a2.publish(sa, &Msg::Num(0.0));
                    b2.publish(sb, &Msg::Num(1.0));
                }
            }))
        });
        let got = recv_all(&chan);
        BETWEEN_LOADS.with(|h| h.borrow_mut().take());
        assert_eq!(got, [0.0, 1.0]);
        assert!(matches!(chan.try_recv(), TryRecv::Closed));
    }

    #[test]
    fn a_bounded_send_holding_a_slot_is_received_after_the_close_whatever_its_number() {
        let chan = Chan::new(2, 2, 1, false);
        let sem = chan.sem.clone().unwrap();
        let a = ring_of(&chan);
        // Two JS sends took their slots; one numbered before the close, one after.
        assert!(sem.try_acquire(2).is_ok());
        let before_close = js_number(&chan).unwrap();
        chan.close_rx();
        let after_close = chan.seq.take();
        assert!(matches!(chan.try_recv(), TryRecv::Empty));
        a.publish(before_close, &Msg::Num(1.0));
        a.publish(after_close, &Msg::Num(2.0));
        assert_eq!(recv_all(&chan), [1.0, 2.0]);
        assert!(matches!(chan.try_recv(), TryRecv::Closed));
    }

    #[test]
    fn a_number_never_published_holds_the_end_only_until_every_sender_is_gone() {
        // A sender's env died between taking a number and publishing (which JS's straight-line
        // send makes impossible; this is the fallback): the end comes with the last sender.
        let chan = Chan::new(0, 0, 2, false);
        js_number(&chan).unwrap();
        chan.close_rx();
        chan.drop_senders(1);
        assert!(matches!(chan.try_recv(), TryRecv::Empty));
        chan.drop_senders(1);
        assert!(matches!(chan.try_recv(), TryRecv::Closed));
    }

    /// Senders race the receiver's close: every send that saw the channel open (JS through a ring,
    /// or native through the queue) is received before the end, and nothing else is.
    #[test]
    fn every_send_that_succeeded_before_a_racing_close_is_received() {
        const SENDERS: usize = 3;
        for round in 0..40u64 {
            let chan = Chan::new(0, 0, SENDERS as u64, false);
            let rings: Vec<Arc<Ring>> = (0..SENDERS).map(|_| ring_of(&chan)).collect();
            let go = Arc::new(AtomicU64::new(0));
            let senders: Vec<_> = (0..SENDERS)
                .map(|k| {
                    let (chan, ring, go) = (chan.clone(), rings[k].clone(), go.clone());
                    std::thread::spawn(move || {
                        while go.load(Ordering::Acquire) == 0 {
                            std::hint::spin_loop();
                        }
                        let mut sent = 0u64;
                        loop {
                            let ok = if k == 0 || ring.len() >= RING_N as usize - 1 {
                                chan.send_unbounded(Some(&ring), Msg::Num(sent as f64))
                            } else if let Some(seq) = js_number(&chan) {
                                // Widen the window between the number and the publish.
                                for _ in 0..(sent % 7) * 20 {
                                    std::hint::spin_loop();
                                }
                                ring.publish(seq, &Msg::Num(sent as f64));
                                true
                            } else {
                                false
                            };
                            if !ok {
                                return sent;
                            }
                            sent += 1;
                        }
                    })
                })
                .collect();
            go.store(1, Ordering::Release);
            let mut got = 0u64;
            let mut batch = Vec::new();
            let close_after = 200 + round * 97 % 3000;
            let mut closed = false;
            // The senders never drop: only the count of numbers taken before the close can end it.
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                assert!(std::time::Instant::now() < give_up, "round {round}: no end");
                batch.clear();
                chan.recv_many(64, &mut batch);
                got += batch.len() as u64;
                if !closed && got >= close_after {
                    chan.close_rx();
                    closed = true;
                }
                if batch.is_empty() {
                    if closed && chan.is_drained_closed() {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
            assert_eq!(got, sent, "round {round}: a send that succeeded was lost");
        }
    }
}
