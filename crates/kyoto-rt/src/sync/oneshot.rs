//! A channel for sending exactly one value between tasks (or threads).
//!
//! ```
//! let rt = kyoto_rt::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     let (tx, rx) = kyoto_rt::sync::oneshot::channel();
//!     kyoto_rt::spawn(async move { let _ = tx.send(7); });
//!     assert_eq!(rx.await, Ok(7));
//! });
//! ```
//!
//! # Design
//!
//! One allocation holds a state word, the value slot and one waker slot per side; no lock. The state
//! word's bits say who may touch which slot:
//!
//! - `COMPLETE`: the sender is done (it stored a value, or was dropped without one). Before it, only
//!   the sender touches `value`; after it, only the receiver does. It is never set once `CLOSED` is:
//!   a sender that finds the channel closed keeps (and returns) its value instead.
//! - `CLOSED`: the receiver closed or was dropped; `send` fails from then on.
//! - `RX_WAKER` / `TX_WAKER`: the receiver's (sender's) waker slot holds a waker the other side may
//!   take and wake. A side writes its slot only while its bit is clear, and clears the bit (with a
//!   read-modify-write that tells it whether the other side got there first) before rewriting it.
//!
//! The models in `loom_tests` below explore send racing receive, close and drop.
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};
use crate::loom::sync::Arc;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

const RX_WAKER: usize = 0b0001;
const COMPLETE: usize = 0b0010;
const CLOSED: usize = 0b0100;
const TX_WAKER: usize = 0b1000;

struct Inner<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
    rx_waker: UnsafeCell<Option<Waker>>,
    tx_waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the cells are only accessed under the state protocol described in the module docs, which
// gives each access exclusive ownership of its slot; `T` and `Waker` move between threads.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Sync for Inner<T> {}

/// Sends the value. Dropping it unsent makes the receiver fail with [`RecvError`].
pub struct Sender<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// Receives the value; a future of `Result<T, RecvError>`.
pub struct Receiver<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError(());

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No value yet.
    Empty,
    /// The sender is gone (or the value was already received).
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("channel empty"),
            TryRecvError::Closed => f.write_str("channel closed"),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// Creates a one-shot channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicUsize::new(0),
        value: UnsafeCell::new(None),
        rx_waker: UnsafeCell::new(None),
        tx_waker: UnsafeCell::new(None),
    });
    (
        Sender {
            inner: Some(inner.clone()),
        },
        Receiver { inner: Some(inner) },
    )
}

impl<T> Inner<T> {
    /// Takes the value. The caller owns the value slot (see the module docs).
    fn take_value(&self) -> Option<T> {
        // SAFETY: the caller owns the value slot: the receiver after observing COMPLETE, or the
        // sender before setting COMPLETE / after seeing CLOSED in the word it replaced.
        self.value.with_mut(|v| unsafe { (*v).take() })
    }

    /// Marks the sender done and wakes the receiver. Returns the previous state. On a closed
    /// channel `COMPLETE` is *not* set: the receiver may still be polling, and it must never read
    /// the value slot while the sender takes its value back.
    fn complete(&self) -> usize {
        let mut prev = self.state.load(Acquire);
        loop {
            if prev & CLOSED != 0 {
                return prev;
            }
            match self
                .state
                .compare_exchange_weak(prev, prev | COMPLETE, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => prev = actual,
            }
        }
        if prev & RX_WAKER != 0 {
            // Woken in place: cloning first would cost two more atomics per message.
            // Soundness: RX_WAKER was set, so the receiver wrote its waker and will not touch the slot
            // again before clearing the bit, which it only does while COMPLETE is clear; we just set
            // COMPLETE, so the slot is ours to read.
            let slot = &self.rx_waker;
            // SAFETY: sound by the argument just above.
            slot.with(|w| unsafe { (*w).as_ref().map(Waker::wake_by_ref) });
        }
        prev
    }

    /// Registers `waker` in the slot guarded by `bit`, unless `done` is set meanwhile. Returns the
    /// state after registration; the caller checks `done` in it.
    fn register(
        &self,
        slot: &UnsafeCell<Option<Waker>>,
        bit: usize,
        done: usize,
        waker: &Waker,
    ) -> usize {
        let mut state = self.state.load(Acquire);
        if state & done != 0 {
            return state;
        }
        if state & bit != 0 {
            // SAFETY: our bit is set, so we wrote the slot and the other side only reads it after
            // setting `done` (checked clear just now; a read racing us is of an unchanged slot).
            let same = slot.with(|w| unsafe { (*w).as_ref().is_some_and(|w| w.will_wake(waker)) });
            if same {
                return state;
            }
            state = self.state.fetch_and(!bit, AcqRel);
            if state & done != 0 {
                // The other side finished first and may be reading our old waker: leave the slot.
                self.state.fetch_or(bit, AcqRel);
                return state | bit;
            }
        }
        // SAFETY: our bit is clear, so the other side never reads the slot: it is ours to write.
        slot.with_mut(|w| unsafe { *w = Some(waker.clone()) });
        self.state.fetch_or(bit, AcqRel) | bit
    }
}

impl<T> Sender<T> {
    /// Sends the value; gives it back when the receiver is closed or gone.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let Some(inner) = self.inner.take() else {
            return Err(value);
        };
        if inner.state.load(Acquire) & CLOSED != 0 {
            return Err(value);
        }
        // SAFETY: COMPLETE is not set yet, so the value slot belongs to the sender.
        inner.value.with_mut(|v| unsafe { *v = Some(value) });
        let prev = inner.complete();
        if prev & CLOSED != 0 {
            // Closed first: COMPLETE was not set, the receiver never reads the slot; take it back.
            if let Some(v) = inner.take_value() {
                return Err(v);
            }
        }
        Ok(())
    }

    /// Whether the receiver closed or was dropped.
    pub fn is_closed(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.state.load(Acquire) & CLOSED != 0)
    }

    /// Polls for the receiver closing (see [`closed`](Self::closed)).
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(inner) = self.inner.as_ref() else {
            return Poll::Ready(());
        };
        let state = inner.register(&inner.tx_waker, TX_WAKER, CLOSED, cx.waker());
        if state & CLOSED != 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes when the receiver closes or is dropped.
    pub async fn closed(&mut self) {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.complete();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the value if it was sent.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let Some(inner) = self.inner.as_ref() else {
            return Err(TryRecvError::Closed);
        };
        let state = inner.state.load(Acquire);
        if state & COMPLETE == 0 {
            return if state & CLOSED != 0 {
                Err(TryRecvError::Closed)
            } else {
                Err(TryRecvError::Empty)
            };
        }
        let value = inner.take_value();
        self.inner = None;
        value.ok_or(TryRecvError::Closed)
    }

    /// Refuses the value: a later `send` fails. A value sent before stays receivable.
    pub fn close(&mut self) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        let prev = inner.state.fetch_or(CLOSED, AcqRel);
        if prev & (TX_WAKER | COMPLETE) == TX_WAKER {
            // Soundness: TX_WAKER set: the sender wrote its waker and only rewrites the slot after
            // clearing the bit while CLOSED is clear; we just set CLOSED, so the slot is ours to read.
            let slot = &inner.tx_waker;
            // SAFETY: sound by the argument just above.
            slot.with(|w| unsafe { (*w).as_ref().map(Waker::wake_by_ref) });
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        // COMPLETE is only ever set before CLOSED, so if it is set now the value slot is ours.
        if inner.state.load(Acquire) & COMPLETE != 0 {
            drop(inner.take_value());
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let coop = std::task::ready!(crate::runtime::coop::poll_proceed(cx));
        let this = self.get_mut();
        let Some(inner) = this.inner.as_ref() else {
            panic!("oneshot::Receiver polled after completion");
        };
        if inner.state.load(Acquire) & (COMPLETE | CLOSED) == CLOSED {
            // Closed before any value: none will come (a later send fails).
            coop.made_progress();
            this.inner = None;
            return Poll::Ready(Err(RecvError(())));
        }
        let state = inner.register(&inner.rx_waker, RX_WAKER, COMPLETE, cx.waker());
        if state & COMPLETE == 0 {
            return Poll::Pending;
        }
        coop.made_progress();
        let value = inner.take_value();
        this.inner = None;
        Poll::Ready(value.ok_or(RecvError(())))
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Receiver").finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use loom::future::block_on;
    use loom::thread;

    /// Counts drops, so the models can check a value is dropped exactly once.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn loom_oneshot_a_value_sent_from_another_thread_is_received_exactly_once() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel();
            let d = drops.clone();
            let t = thread::spawn(move || {
                assert!(tx.send(Counted(d)).is_ok());
            });
            let v = block_on(rx).expect("sent");
            t.join().unwrap();
            drop(v);
            assert_eq!(drops.load(SeqCst), 1);
        });
    }

    #[test]
    fn loom_oneshot_a_sender_dropped_unsent_wakes_the_receiver_with_an_error() {
        loom::model(|| {
            let (tx, rx) = channel::<u8>();
            let t = thread::spawn(move || drop(tx));
            assert_eq!(block_on(rx), Err(RecvError(())));
            t.join().unwrap();
        });
    }

    #[test]
    fn loom_oneshot_send_racing_the_receivers_drop_drops_the_value_exactly_once() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel();
            let d = drops.clone();
            let t = thread::spawn(move || {
                // Either delivered (and dropped with the receiver) or handed back (dropped here).
                let _ = tx.send(Counted(d));
            });
            drop(rx);
            t.join().unwrap();
            assert_eq!(drops.load(SeqCst), 1);
        });
    }

    #[test]
    fn loom_oneshot_close_racing_send_either_delivers_or_returns_the_value() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = channel();
            let d = drops.clone();
            let t = thread::spawn(move || tx.send(Counted(d)).is_ok());
            rx.close();
            let got = rx.try_recv();
            let sent = t.join().unwrap();
            // A value whose send succeeded stays receivable after close (it arrived first);
            // otherwise `send` handed it back.
            if let Ok(v) = got {
                assert!(sent);
                drop(v);
            }
            drop(rx);
            assert_eq!(drops.load(SeqCst), 1);
        });
    }

    #[test]
    fn loom_oneshot_closed_completes_when_the_receiver_is_dropped() {
        loom::model(|| {
            let (mut tx, rx) = channel::<u8>();
            let t = thread::spawn(move || drop(rx));
            block_on(tx.closed());
            assert!(tx.is_closed());
            t.join().unwrap();
        });
    }

    #[test]
    fn loom_oneshot_a_receiver_repolled_with_a_new_waker_still_gets_the_value() {
        loom::model(|| {
            let (tx, mut rx) = channel::<u8>();
            let t = thread::spawn(move || {
                let _ = tx.send(3);
            });
            // First poll with one waker, then finish with block_on's waker: the re-registration
            // path (clearing RX_WAKER) races the send.
            let noop = Waker::noop();
            let mut cx = Context::from_waker(noop);
            let first = Pin::new(&mut rx).poll(&mut cx);
            let v = match first {
                Poll::Ready(v) => v,
                Poll::Pending => block_on(rx),
            };
            assert_eq!(v, Ok(3));
            t.join().unwrap();
        });
    }
}
