//! The blocking pool: threads for work that would stall a scheduler worker.
mod pool;

pub(crate) use pool::{BlockingPool, Spawner};
