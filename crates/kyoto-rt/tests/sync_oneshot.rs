//! oneshot: Tokio's semantics for send, close, drop and try_recv.
use kyoto_rt::runtime::Builder;
use kyoto_rt::sync::oneshot::{self, RecvError, TryRecvError};

#[test]
fn a_value_is_received_once_and_the_next_try_recv_says_closed() {
    let (tx, mut rx) = oneshot::channel();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send(1).unwrap();
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn after_close_a_send_fails_and_gives_the_value_back() {
    let (tx, mut rx) = oneshot::channel();
    assert!(!tx.is_closed());
    rx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.send(5), Err(5));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_value_sent_before_close_stays_receivable() {
    let (tx, mut rx) = oneshot::channel();
    tx.send(7).unwrap();
    rx.close();
    assert_eq!(rx.try_recv(), Ok(7));
}

#[test]
fn a_dropped_sender_fails_the_receiver_and_a_closed_receiver_resolves_at_once() {
    let rt = Builder::new_current_thread().build().unwrap();
    let (tx, rx) = oneshot::channel::<u8>();
    drop(tx);
    let err: RecvError = rt.block_on(rx).unwrap_err();
    assert_eq!(err.to_string(), "channel closed");
    let (_tx, mut rx) = oneshot::channel::<u8>();
    rx.close();
    assert!(
        rt.block_on(rx).is_err(),
        "a closed receiver does not wait for a value that cannot come"
    );
}

#[test]
fn sender_closed_completes_when_the_receiver_goes_away() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (mut tx, rx) = oneshot::channel::<u8>();
    rt.block_on(async move {
        let h = kyoto_rt::spawn(async move { tx.closed().await });
        drop(rx);
        h.await.unwrap();
    });
}

#[test]
fn an_unreceived_value_is_dropped_with_the_receiver() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    struct D(Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel();
    assert!(tx.send(D(drops.clone())).is_ok());
    assert_eq!(drops.load(SeqCst), 0);
    drop(rx);
    assert_eq!(drops.load(SeqCst), 1);
}
