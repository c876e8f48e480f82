//! Time driver (placeholder until the timer wheel lands): parks straight in the I/O driver.
use super::Clock;
use std::time::Duration;

pub(crate) struct Driver {
    park: crate::io::driver::Driver,
}

pub(crate) struct Handle {
    #[allow(dead_code)]
    clock: Clock,
}

impl Driver {
    pub(crate) fn new(park: crate::io::driver::Driver, clock: Clock) -> (Driver, Handle) {
        (Driver { park }, Handle { clock })
    }

    pub(crate) fn park(&mut self, handle: &crate::runtime::driver::Handle, timeout: Option<Duration>) {
        self.park.park(&handle.io, timeout)
    }

    pub(crate) fn shutdown(&mut self, handle: &crate::runtime::driver::Handle) {
        self.park.shutdown(&handle.io)
    }

    pub(crate) fn io(&self) -> &crate::io::driver::Driver {
        &self.park
    }
}
