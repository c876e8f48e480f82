//! TCP: [`TcpListener`], [`TcpStream`] (and its split halves), [`TcpSocket`].
mod listener;
mod socket;
pub mod split;
mod stream;

pub use listener::TcpListener;
pub use socket::TcpSocket;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::TcpStream;
