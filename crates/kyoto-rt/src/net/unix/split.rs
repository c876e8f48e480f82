//! Split halves of a [`UnixStream`]: borrowed ([`ReadHalf`], [`WriteHalf`]) and owned
//! ([`OwnedReadHalf`], [`OwnedWriteHalf`]).
use super::{SocketAddr, UnixStream};

crate::net::split::split_halves!(UnixStream, SocketAddr);
