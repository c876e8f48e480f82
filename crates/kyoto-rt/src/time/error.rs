//! Time errors.
use std::fmt;

/// The error of a [`Timeout`](crate::time::Timeout) whose deadline passed before its future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl Elapsed {
    pub(crate) fn new() -> Elapsed {
        Elapsed(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// Why a timer could not run to its deadline.
///
/// kyoto timers never panic for these reasons: a [`Sleep`](crate::time::Sleep) whose runtime shut
/// down simply completes; [`Sleep::poll_elapsed`](crate::time::Sleep::poll_elapsed) reports this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shutdown,
    AtCapacity,
    Invalid,
}

impl Error {
    /// The runtime's timer driver has shut down.
    pub fn shutdown() -> Error {
        Error(Kind::Shutdown)
    }

    /// Whether the timer driver has shut down.
    pub fn is_shutdown(&self) -> bool {
        self.0 == Kind::Shutdown
    }

    /// The timer driver cannot take more timers.
    pub fn at_capacity() -> Error {
        Error(Kind::AtCapacity)
    }

    /// Whether the timer driver cannot take more timers (kyoto's wheel grows as needed, so it never
    /// reports this today).
    pub fn is_at_capacity(&self) -> bool {
        self.0 == Kind::AtCapacity
    }

    /// The timer was configured with an invalid deadline.
    pub fn invalid() -> Error {
        Error(Kind::Invalid)
    }

    /// Whether the timer's deadline was invalid (kyoto clamps deadlines, so it never reports this
    /// today).
    pub fn is_invalid(&self) -> bool {
        self.0 == Kind::Invalid
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Kind::Shutdown => "the timer driver has shut down",
            Kind::AtCapacity => "the timer driver is at capacity",
            Kind::Invalid => "the timer's deadline is invalid",
        })
    }
}

impl std::error::Error for Error {}
