//! Split halves of a [`TcpStream`]: borrowed ([`ReadHalf`], [`WriteHalf`]) and owned
//! ([`OwnedReadHalf`], [`OwnedWriteHalf`]).
use super::TcpStream;
use std::net::SocketAddr;

crate::net::split::split_halves!(TcpStream, SocketAddr);

impl ReadHalf<'_> {
    /// Reads into `buf` without removing the data from the socket's queue.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.peek(buf).await
    }
}

impl OwnedReadHalf {
    /// Reads into `buf` without removing the data from the socket's queue.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }
}
