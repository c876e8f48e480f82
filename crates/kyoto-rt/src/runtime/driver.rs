//! The driver stack a parked worker blocks in: the time driver wrapping the I/O driver.
//!
//! `park(timeout)` fires due timers, blocks in `epoll_wait`/`kevent` (through `mio::Poll`) until the
//! next timer, the timeout or an unpark, dispatches readiness to the resources, and fires the timers
//! that came due meanwhile. `unpark` is a `mio::Waker`: it makes the poll return from any thread.
//! Only one thread holds the `Driver` at a time; every thread may hold the `Handle`.
use std::time::Duration;

pub(crate) struct Driver {
    time: crate::time::driver::Driver,
}

/// Shared access to the drivers: registering sockets and timers, unparking.
pub(crate) struct Handle {
    pub(crate) io: crate::io::driver::Handle,
    pub(crate) time: crate::time::driver::Handle,
    /// The clock was paused through `runtime::Handle::pause_clock` (auto-advance held off).
    pub(crate) embedder_paused: std::sync::atomic::AtomicBool,
}

pub(crate) struct Cfg {
    pub(crate) nevents: usize,
    pub(crate) start_paused: bool,
}

impl Driver {
    pub(crate) fn new(cfg: Cfg) -> std::io::Result<(Driver, Handle)> {
        let (io, io_handle) = crate::io::driver::Driver::new(cfg.nevents)?;
        let clock = crate::time::Clock::new(cfg.start_paused);
        let (time, time_handle) = crate::time::driver::Driver::new(io, clock);
        Ok((
            Driver { time },
            Handle {
                io: io_handle,
                time: time_handle,
                embedder_paused: std::sync::atomic::AtomicBool::new(false),
            },
        ))
    }

    /// Blocks until an I/O event, a due timer, `timeout` or an unpark. `Some(ZERO)` only polls.
    pub(crate) fn park(&mut self, handle: &Handle, timeout: Option<Duration>) {
        self.time.park(handle, timeout)
    }

    /// Fires every timer with a shutdown error and wakes every I/O resource with one.
    pub(crate) fn shutdown(&mut self, handle: &Handle) {
        self.time.shutdown(handle)
    }

    /// The poller's descriptor: readable whenever `park(Some(ZERO))` has work. An external event loop
    /// (Node's `uv_poll`) watches it to drive a current-thread runtime.
    #[cfg(unix)]
    pub(crate) fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.time.io().as_raw_fd()
    }
}

impl Handle {
    /// Makes a `park` in progress (or the next one) return at once.
    pub(crate) fn unpark(&self) {
        self.io.unpark()
    }
}
