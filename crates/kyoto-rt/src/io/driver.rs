//! I/O driver (placeholder until the reactor lands): a `mio::Poll` and a `mio::Waker` to unpark it.
use std::time::Duration;

const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

pub(crate) struct Driver {
    poll: mio::Poll,
    events: mio::Events,
}

pub(crate) struct Handle {
    #[allow(dead_code)]
    registry: mio::Registry,
    waker: mio::Waker,
}

impl Driver {
    pub(crate) fn new(nevents: usize) -> std::io::Result<(Driver, Handle)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        Ok((
            Driver {
                poll,
                events: mio::Events::with_capacity(nevents),
            },
            Handle { registry, waker },
        ))
    }

    pub(crate) fn park(&mut self, _handle: &Handle, timeout: Option<Duration>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("unexpected error from the I/O poller: {e}"),
        }
    }

    pub(crate) fn shutdown(&mut self, _handle: &Handle) {}

    #[cfg(unix)]
    pub(crate) fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }
}

impl Handle {
    pub(crate) fn unpark(&self) {
        // A failed wake leaves the poller to its timeout; nothing better can be done.
        let _ = self.waker.wake();
    }

    pub(crate) fn io_events(&self) -> u64 {
        0
    }
}
