//! Networking types on the reactor.
