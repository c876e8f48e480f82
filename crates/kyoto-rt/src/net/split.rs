//! The split halves shared by TCP and Unix streams, generated per stream type.
//!
//! The stream type must provide the crate-private methods `poll_read_priv`,
//! `poll_read_vectored_priv`, `poll_write_priv`, `poll_write_vectored_priv`, `shutdown_write`, and
//! the public `ready`, `try_read`, `try_write`, `poll_read_ready`, `poll_write_ready`, `local_addr`,
//! `peer_addr`.

macro_rules! split_halves {
    ($stream:ident, $addr:ty) => {
        use crate::io::{AsyncRead, AsyncWrite, Interest, Ready};
        use crate::loom::sync::Arc;
        use std::fmt;
        use std::io::{self, IoSlice, IoSliceMut};
        use std::pin::Pin;
        use std::task::{Context, Poll};

        /// The read half of a borrowed stream, from `split()`.
        #[derive(Debug)]
        pub struct ReadHalf<'a>(pub(crate) &'a $stream);

        /// The write half of a borrowed stream, from `split()`. `shutdown()` on it sends a FIN;
        /// dropping it does not.
        #[derive(Debug)]
        pub struct WriteHalf<'a>(pub(crate) &'a $stream);

        /// The owned read half of a stream, from `into_split()`.
        #[derive(Debug)]
        pub struct OwnedReadHalf {
            pub(crate) inner: Arc<$stream>,
        }

        /// The owned write half of a stream, from `into_split()`.
        ///
        /// Dropping it shuts the write direction down (the peer reads end of stream), unless
        /// [`forget`](OwnedWriteHalf::forget) was called.
        #[derive(Debug)]
        pub struct OwnedWriteHalf {
            pub(crate) inner: Arc<$stream>,
            pub(crate) shutdown_on_drop: bool,
        }

        /// The halves passed to `reunite` came from different streams; both are given back.
        #[derive(Debug)]
        pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

        impl fmt::Display for ReuniteError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tried to reunite halves that are not from the same stream")
            }
        }

        impl std::error::Error for ReuniteError {}

        pub(crate) fn split(stream: &mut $stream) -> (ReadHalf<'_>, WriteHalf<'_>) {
            (ReadHalf(&*stream), WriteHalf(&*stream))
        }

        pub(crate) fn into_split(stream: $stream) -> (OwnedReadHalf, OwnedWriteHalf) {
            let inner = Arc::new(stream);
            (
                OwnedReadHalf {
                    inner: inner.clone(),
                },
                OwnedWriteHalf {
                    inner,
                    shutdown_on_drop: true,
                },
            )
        }

        impl ReadHalf<'_> {
            /// Waits for any of `interest` (see the stream's `ready`).
            pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
                self.0.ready(interest).await
            }
            /// Waits until the stream is readable.
            pub async fn readable(&self) -> io::Result<()> {
                self.0.ready(Interest::READABLE).await.map(|_| ())
            }
            /// Reads without waiting; `WouldBlock` when no data is cached as ready.
            pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.try_read(buf)
            }
            /// Polls for read readiness (single waker).
            pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.0.poll_read_ready(cx)
            }
            /// The local address of the stream.
            pub fn local_addr(&self) -> io::Result<$addr> {
                self.0.local_addr()
            }
            /// The peer address of the stream.
            pub fn peer_addr(&self) -> io::Result<$addr> {
                self.0.peer_addr()
            }
        }

        impl WriteHalf<'_> {
            /// Waits for any of `interest` (see the stream's `ready`).
            pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
                self.0.ready(interest).await
            }
            /// Waits until the stream is writable.
            pub async fn writable(&self) -> io::Result<()> {
                self.0.ready(Interest::WRITABLE).await.map(|_| ())
            }
            /// Writes without waiting; `WouldBlock` when the stream is not cached as writable.
            pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                self.0.try_write(buf)
            }
            /// Polls for write readiness (single waker).
            pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.0.poll_write_ready(cx)
            }
            /// The local address of the stream.
            pub fn local_addr(&self) -> io::Result<$addr> {
                self.0.local_addr()
            }
            /// The peer address of the stream.
            pub fn peer_addr(&self) -> io::Result<$addr> {
                self.0.peer_addr()
            }
        }

        impl OwnedReadHalf {
            /// Puts the stream back together; fails if `other` came from another stream.
            pub fn reunite(self, other: OwnedWriteHalf) -> Result<$stream, ReuniteError> {
                if !Arc::ptr_eq(&self.inner, &other.inner) {
                    return Err(ReuniteError(self, other));
                }
                let mut other = other;
                other.shutdown_on_drop = false;
                drop(other);
                Arc::try_unwrap(self.inner).map_err(|inner| {
                    // Unreachable in practice: the two halves were the only owners.
                    ReuniteError(
                        OwnedReadHalf {
                            inner: inner.clone(),
                        },
                        OwnedWriteHalf {
                            inner,
                            shutdown_on_drop: false,
                        },
                    )
                })
            }
            /// Waits for any of `interest` (see the stream's `ready`).
            pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
                self.inner.ready(interest).await
            }
            /// Waits until the stream is readable.
            pub async fn readable(&self) -> io::Result<()> {
                self.inner.ready(Interest::READABLE).await.map(|_| ())
            }
            /// Reads without waiting; `WouldBlock` when no data is cached as ready.
            pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.inner.try_read(buf)
            }
            /// Polls for read readiness (single waker).
            pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.inner.poll_read_ready(cx)
            }
            /// The local address of the stream.
            pub fn local_addr(&self) -> io::Result<$addr> {
                self.inner.local_addr()
            }
            /// The peer address of the stream.
            pub fn peer_addr(&self) -> io::Result<$addr> {
                self.inner.peer_addr()
            }
        }

        impl OwnedWriteHalf {
            /// Puts the stream back together; fails if `other` came from another stream.
            pub fn reunite(self, other: OwnedReadHalf) -> Result<$stream, ReuniteError> {
                other.reunite(self)
            }
            /// Drops the half *without* shutting the write direction down.
            pub fn forget(mut self) {
                self.shutdown_on_drop = false;
            }
            /// Waits for any of `interest` (see the stream's `ready`).
            pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
                self.inner.ready(interest).await
            }
            /// Waits until the stream is writable.
            pub async fn writable(&self) -> io::Result<()> {
                self.inner.ready(Interest::WRITABLE).await.map(|_| ())
            }
            /// Writes without waiting; `WouldBlock` when the stream is not cached as writable.
            pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                self.inner.try_write(buf)
            }
            /// Polls for write readiness (single waker).
            pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.inner.poll_write_ready(cx)
            }
            /// The local address of the stream.
            pub fn local_addr(&self) -> io::Result<$addr> {
                self.inner.local_addr()
            }
            /// The peer address of the stream.
            pub fn peer_addr(&self) -> io::Result<$addr> {
                self.inner.peer_addr()
            }
        }

        impl Drop for OwnedWriteHalf {
            fn drop(&mut self) {
                if self.shutdown_on_drop {
                    // Best effort, as a close would be: errors (a reset peer) have no one to go to.
                    let _ = self.inner.shutdown_write();
                }
            }
        }

        impl AsyncRead for ReadHalf<'_> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_read_priv(cx, buf)
            }
            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_read_vectored_priv(cx, bufs)
            }
        }

        impl AsyncRead for OwnedReadHalf {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.inner.poll_read_priv(cx, buf)
            }
            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.inner.poll_read_vectored_priv(cx, bufs)
            }
        }

        impl AsyncWrite for WriteHalf<'_> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_write_priv(cx, buf)
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_write_vectored_priv(cx, bufs)
            }
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.0.shutdown_write())
            }
        }

        impl AsyncWrite for OwnedWriteHalf {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.inner.poll_write_priv(cx, buf)
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.inner.poll_write_vectored_priv(cx, bufs)
            }
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.inner.shutdown_write())
            }
        }

        impl AsRef<$stream> for ReadHalf<'_> {
            fn as_ref(&self) -> &$stream {
                self.0
            }
        }

        impl AsRef<$stream> for WriteHalf<'_> {
            fn as_ref(&self) -> &$stream {
                self.0
            }
        }

        impl AsRef<$stream> for OwnedReadHalf {
            fn as_ref(&self) -> &$stream {
                &self.inner
            }
        }

        impl AsRef<$stream> for OwnedWriteHalf {
            fn as_ref(&self) -> &$stream {
                &self.inner
            }
        }
    };
}

pub(crate) use split_halves;
