//! The I/O reactor: one `mio::Poll` per runtime, readiness cached per registered resource.
pub(crate) mod driver;
