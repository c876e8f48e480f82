//! Asynchronous I/O: the reactor, the I/O traits and helpers.
//!
//! # Traits
//!
//! kyoto uses the [`futures-io`](https://docs.rs/futures-io) traits, [`AsyncRead`] and
//! [`AsyncWrite`] (re-exported here), rather than defining its own: every kyoto stream
//! ([`TcpStream`](crate::net::TcpStream), its halves, [`UnixStream`](crate::net::UnixStream), ...)
//! implements them, so kyoto streams also work with any library written against `futures-io`.
//! [`AsyncWrite::poll_close`] is the *shutdown* of the write direction (a FIN for sockets).
//!
//! The async methods (`stream.read(&mut buf).await`, `write_all`, `read_exact`, `read_to_end`,
//! `flush`, `shutdown`) come from the extension traits [`AsyncReadExt`] and [`AsyncWriteExt`]: import
//! them (`use kyoto_rt::io::{AsyncReadExt, AsyncWriteExt};`).
//!
//! # The reactor
//!
//! One `mio::Poll` per runtime (`driver`). Each registered resource has a `ScheduledIo` caching its
//! readiness together with the driver tick of the event that set it; an operation clears readiness
//! only after `WouldBlock`, and only if no newer event arrived meanwhile. Readers and writers of one
//! resource have separate wakers, so the two halves of a split stream can wait in different tasks.
pub(crate) mod driver;
mod interest;
pub(crate) mod poll_evented;
mod ready;
pub(crate) mod registration;
pub(crate) mod scheduled_io;
pub mod util;

pub use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
pub use interest::Interest;
pub use ready::Ready;
pub use scheduled_io::is_shutdown_error;
pub use util::{
    copy, copy_bidirectional, copy_bidirectional_with_sizes, AsyncReadExt, AsyncWriteExt,
};

pub use util::{
    codec, duplex, AsyncBufReadExt, BufReader, DuplexReadHalf, DuplexStream, DuplexWriteHalf,
    Framed, FramedParts, FramedRead, FramedWrite, Lines,
};
