//! The runtime's clock (placeholder until the time module lands).

/// A point in time of the runtime's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Instant);

impl Instant {
    /// Now.
    pub fn now() -> Instant {
        Instant(std::time::Instant::now())
    }
}

pub(crate) struct Clock {}

impl Clock {
    pub(crate) fn new(_start_paused: bool) -> Clock {
        Clock {}
    }
}
