//! Networking on the reactor: TCP, UDP, (on Unix) Unix-domain sockets and (on Windows) named
//! pipes.
//!
//! Semantics follow Tokio's `tokio::net`:
//!
//! - [`TcpListener::bind`] sets `SO_REUSEADDR` on Unix; `bind` and [`TcpStream::connect`] try every
//!   resolved address and return the last error.
//! - Dropping a [`tcp::OwnedWriteHalf`] (or [`unix::OwnedWriteHalf`]) shuts the write direction
//!   down (a FIN); `shutdown()` is idempotent.
//! - A connected [`UdpSocket`] only receives from its peer; a datagram larger than the buffer is
//!   truncated (the excess is discarded); an ICMP "port unreachable" surfaces as `ECONNREFUSED` from a
//!   later `recv` on a connected socket (Linux, BSD, macOS).
//!
//! Every socket belongs to the runtime entered on the thread that created it (accepted streams to
//! their listener's runtime). Creating one outside a runtime returns an error. Once that runtime shuts
//! down, every pending and later operation fails with "the runtime has shut down".
//!
//! Addresses are resolved with `std::net::ToSocketAddrs`, re-exported here: IP-literal addresses
//! (`"127.0.0.1:80"`, a `SocketAddr`) never block, but a host name passed to `bind`/`connect` is
//! resolved synchronously on the calling thread; resolve names first with [`lookup_host`], which
//! runs the lookup on the blocking pool.
//!
//! Read and write methods of streams come from [`AsyncReadExt`](crate::io::AsyncReadExt) and
//! [`AsyncWriteExt`](crate::io::AsyncWriteExt).
mod lookup_host;
mod split;
pub mod tcp;
pub mod udp;
#[cfg(unix)]
pub mod unix;
#[cfg(windows)]
pub mod windows;

pub use lookup_host::lookup_host;
pub use std::net::ToSocketAddrs;
pub use tcp::{TcpListener, TcpSocket, TcpStream};
pub use udp::{RecvBatch, RecvMeta, SendMsg, UdpSocket};
#[cfg(unix)]
pub use unix::{UCred, UnixDatagram, UnixListener, UnixStream};

use std::io;
use std::net::SocketAddr;

/// Resolves `addr` (without blocking for IP literals).
pub(crate) fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<std::vec::IntoIter<SocketAddr>> {
    Ok(addr.to_socket_addrs()?.collect::<Vec<_>>().into_iter())
}

/// The error when an address resolved to nothing.
pub(crate) fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any address",
    )
}
