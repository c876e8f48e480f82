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
use crate::loom::sync::{Arc, Mutex, MutexGuard};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    value: Option<T>,
    /// The value was taken by the receiver.
    taken: bool,
    rx_waker: Option<Waker>,
    tx_waker: Option<Waker>,
    tx_gone: bool,
    rx_closed: bool,
}

/// Sends the value. Dropping it unsent makes the receiver fail with [`RecvError`].
pub struct Sender<T> {
    inner: Option<Arc<Mutex<Inner<T>>>>,
}

/// Receives the value; a future of `Result<T, RecvError>`.
pub struct Receiver<T> {
    inner: Arc<Mutex<Inner<T>>>,
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
    let inner = Arc::new(Mutex::new(Inner {
        value: None,
        taken: false,
        rx_waker: None,
        tx_waker: None,
        tx_gone: false,
        rx_closed: false,
    }));
    (
        Sender {
            inner: Some(inner.clone()),
        },
        Receiver { inner },
    )
}

fn lock<T>(m: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Sender<T> {
    /// Sends the value; gives it back when the receiver is closed or gone.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let Some(inner) = self.inner.take() else {
            return Err(value);
        };
        let waker = {
            let mut g = lock(&inner);
            if g.rx_closed {
                g.tx_gone = true;
                return Err(value);
            }
            g.value = Some(value);
            g.tx_gone = true;
            g.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the receiver closed or was dropped.
    pub fn is_closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| lock(i).rx_closed)
    }

    /// Completes when the receiver closes or is dropped.
    pub async fn closed(&mut self) {
        std::future::poll_fn(|cx| {
            let Some(inner) = self.inner.as_ref() else {
                return Poll::Ready(());
            };
            let mut g = lock(inner);
            if g.rx_closed {
                return Poll::Ready(());
            }
            g.tx_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let waker = {
                let mut g = lock(&inner);
                g.tx_gone = true;
                g.rx_waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the value if it was sent.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut g = lock(&self.inner);
        if let Some(v) = g.value.take() {
            g.taken = true;
            return Ok(v);
        }
        if g.tx_gone || g.taken {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Refuses the value: a later `send` fails. A value sent before stays receivable.
    pub fn close(&mut self) {
        let waker = {
            let mut g = lock(&self.inner);
            g.rx_closed = true;
            g.tx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // Drop an unreceived value here rather than whenever the sender's side lets go.
        let value = lock(&self.inner).value.take();
        drop(value);
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let coop = std::task::ready!(crate::runtime::coop::poll_proceed(cx));
        let mut g = lock(&self.inner);
        if let Some(v) = g.value.take() {
            g.taken = true;
            coop.made_progress();
            return Poll::Ready(Ok(v));
        }
        if g.tx_gone || g.taken {
            coop.made_progress();
            return Poll::Ready(Err(RecvError(())));
        }
        g.rx_waker = Some(cx.waker().clone());
        Poll::Pending
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
