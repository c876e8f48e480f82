//! Parking a worker: on the I/O driver if it is free, on a condvar otherwise.
//!
//! One driver serves all workers. A worker that runs out of work tries to take it (`try_lock`); if it
//! succeeds it blocks in the driver (epoll), otherwise it blocks on its own condvar. `unpark` has to
//! know which of the two to poke, so each parker has a small state machine:
//!
//! ```text
//!   EMPTY ──park──▶ PARKED_CONDVAR / PARKED_DRIVER ──unpark──▶ NOTIFIED ──park returns──▶ EMPTY
//!   EMPTY ──unpark──▶ NOTIFIED ──park──▶ EMPTY (returns at once: the wake-up is never lost)
//! ```
//!
//! Invariant (no lost wake-up): `unpark` always leaves `NOTIFIED`; `park` only sleeps after it moved
//! `EMPTY → PARKED_*` with a CAS, and every sleep loop re-checks for `NOTIFIED` under the same lock
//! `unpark` takes before signalling (condvar) or after the state change (driver: the `mio::Waker` is
//! level-triggered, so a wake that lands before `epoll_wait` still ends it).
use crate::loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::loom::sync::{Arc, Condvar, Mutex};
use crate::runtime::driver::{self, Driver};
use std::time::Duration;

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

/// The driver and the lock that makes one worker at a time its owner.
pub(crate) struct SharedDriver {
    driver: Mutex<Option<Driver>>,
    #[cfg(not(loom))]
    pub(crate) handle: std::sync::Arc<driver::Handle>,
    /// `None` only for [`SharedDriver::without_driver`] (loom models), whose parkers never park in
    /// the driver and so never need its handle.
    #[cfg(loom)]
    pub(crate) handle: Option<std::sync::Arc<driver::Handle>>,
}

impl SharedDriver {
    pub(crate) fn new(driver: Driver, handle: std::sync::Arc<driver::Handle>) -> SharedDriver {
        SharedDriver {
            driver: Mutex::new(Some(driver)),
            #[cfg(not(loom))]
            handle,
            #[cfg(loom)]
            handle: Some(handle),
        }
    }

    /// A shared driver slot that is empty from the start, so every park takes the condvar path: lets
    /// the loom models explore park/unpark without an I/O driver (which loom cannot run).
    #[cfg(loom)]
    #[allow(dead_code)]
    pub(crate) fn without_driver() -> SharedDriver {
        SharedDriver {
            driver: Mutex::new(None),
            handle: None,
        }
    }

    #[cfg(not(loom))]
    fn handle(&self) -> &driver::Handle {
        &self.handle
    }

    #[cfg(loom)]
    fn handle(&self) -> &driver::Handle {
        self.handle
            .as_deref()
            .expect("a SharedDriver without a driver is never parked in")
    }

    /// Takes the driver out for good (shutdown), waiting for the worker parked in it to return.
    pub(crate) fn take(&self) -> Option<Driver> {
        self.driver.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

struct Inner {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
    shared: Arc<SharedDriver>,
}

/// Owned by one worker.
pub(crate) struct Parker {
    inner: Arc<Inner>,
}

/// Shared with everyone who may need to wake that worker.
#[derive(Clone)]
pub(crate) struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    pub(crate) fn new(shared: Arc<SharedDriver>) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
                shared,
            }),
        }
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker {
            inner: self.inner.clone(),
        }
    }

    /// Blocks until unparked (or a driver event / timer when this worker holds the driver).
    pub(crate) fn park(&mut self) {
        self.inner.park(None)
    }

    /// Polls the driver without blocking if it is free; never sleeps on the condvar.
    pub(crate) fn park_timeout_zero(&mut self) {
        self.inner.park(Some(Duration::ZERO))
    }
}

impl Unparker {
    pub(crate) fn unpark(&self) {
        self.inner.unpark()
    }
}

impl Inner {
    fn park(&self, timeout: Option<Duration>) {
        // A pending notification is consumed without sleeping.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let guard = self.shared.driver.try_lock();
        match guard {
            Ok(mut guard) if guard.is_some() => {
                if let Some(driver) = guard.as_mut() {
                    self.park_driver(driver, timeout);
                }
            }
            _ => {
                if timeout != Some(Duration::ZERO) {
                    self.park_condvar();
                }
            }
        }
    }

    fn park_condvar(&self) {
        let mut m = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        match self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                self.state.swap(EMPTY, SeqCst);
                return;
            }
            Err(actual) => unreachable!("inconsistent park state {actual}"),
        }
        loop {
            m = self.condvar.wait(m).unwrap_or_else(|e| e.into_inner());
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wake-up: sleep again.
        }
    }

    fn park_driver(&self, driver: &mut Driver, timeout: Option<Duration>) {
        match self
            .state
            .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                self.state.swap(EMPTY, SeqCst);
                return;
            }
            Err(actual) => unreachable!("inconsistent park state {actual}"),
        }
        driver.park(self.shared.handle(), timeout);
        // Either we were notified (NOTIFIED) or the driver returned on its own (PARKED_DRIVER);
        // both end the park.
        match self.state.swap(EMPTY, SeqCst) {
            NOTIFIED | PARKED_DRIVER => {}
            actual => unreachable!("inconsistent park state {actual}"),
        }
    }

    fn unpark(&self) {
        match self.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED_CONDVAR => {
                // Taking the lock orders this notify after the parker's wait began (it holds the lock
                // from its CAS until `wait` releases it), so the signal cannot be missed.
                drop(self.mutex.lock().unwrap_or_else(|e| e.into_inner()));
                self.condvar.notify_one();
            }
            PARKED_DRIVER => self.shared.handle().unpark(),
            actual => unreachable!("inconsistent park state {actual}"),
        }
    }
}
