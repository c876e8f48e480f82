//! Time: a hierarchical timer wheel, `sleep`, `interval`, `timeout`, `Instant` and a pausable clock.
mod clock;
pub(crate) mod driver;

pub use clock::Instant;
pub(crate) use clock::Clock;
