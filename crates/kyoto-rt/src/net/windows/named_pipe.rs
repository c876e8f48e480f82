//! Windows named pipes: [`NamedPipeServer`] (one server-side pipe instance) and
//! [`NamedPipeClient`], on mio's IOCP-backed `NamedPipe`.
//!
//! Semantics follow Tokio's `tokio::net::windows::named_pipe`:
//!
//! - A server *instance* serves one client. [`ServerOptions::create`] makes an instance (the first
//!   one may insist on being first with [`ServerOptions::first_pipe_instance`]), and
//!   [`NamedPipeServer::connect`] waits until a client opens it. To serve the next client, create
//!   the next instance *before* handing the connected one off, so a client never finds no instance
//!   (it would get `ERROR_FILE_NOT_FOUND`).
//! - [`ClientOptions::open`] opens the pipe at once or fails: `ERROR_PIPE_BUSY` when every instance
//!   is serving a client (retry after a short sleep), `ERROR_FILE_NOT_FOUND` when no instance exists.
//!   It never blocks the thread (`WaitNamedPipe` is not used).
//! - Both ends are byte streams with the readiness, `try_*` and `AsyncRead`/`AsyncWrite` methods of
//!   the socket types. Pipes have no half-close: `shutdown`/`poll_close` succeed without telling the
//!   peer anything; the peer sees end of stream (a read of 0) when this end is dropped.
//! - Remote (SMB) clients are rejected unless [`ServerOptions::reject_remote_clients`] is turned off;
//!   clients open with `SECURITY_IDENTIFICATION`, so a server cannot impersonate them.
//!
//! mio turns IOCP completions into readiness with its own buffers: a write is copied into a
//! buffer and completes later, a read returns bytes an earlier overlapped read already took. An
//! unconnected server instance gets no writable readiness until its connect completes, which is what
//! [`NamedPipeServer::connect`] waits for.
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;
use crate::io::{AsyncRead, AsyncWrite, Interest, Ready};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, RawHandle};
use std::pin::Pin;
use std::task::{Context, Poll};
use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
    SECURITY_IDENTIFICATION,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES,
};

/// How [`ServerOptions::create`] makes a pipe instance.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    first_pipe_instance: bool,
    reject_remote_clients: bool,
    max_instances: u32,
    in_buffer_size: u32,
    out_buffer_size: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::new()
    }
}

impl ServerOptions {
    /// Byte mode, unlimited instances, 64 KiB buffers each way, remote clients rejected.
    pub fn new() -> ServerOptions {
        ServerOptions {
            first_pipe_instance: false,
            reject_remote_clients: true,
            max_instances: PIPE_UNLIMITED_INSTANCES,
            in_buffer_size: 65536,
            out_buffer_size: 65536,
        }
    }

    /// Fail with `ERROR_ACCESS_DENIED` unless this is the pipe's first instance (so no other
    /// process already serves the name).
    pub fn first_pipe_instance(&mut self, first: bool) -> &mut Self {
        self.first_pipe_instance = first;
        self
    }

    /// Refuse clients on other machines (the default).
    pub fn reject_remote_clients(&mut self, reject: bool) -> &mut Self {
        self.reject_remote_clients = reject;
        self
    }

    /// The most instances the name may have at once: 1 to 254, or 255 for unlimited.
    ///
    /// # Panics
    /// If `instances` is 0 or above 255.
    pub fn max_instances(&mut self, instances: u32) -> &mut Self {
        assert!(
            (1..=PIPE_UNLIMITED_INSTANCES).contains(&instances),
            "max_instances must be 1..=255"
        );
        self.max_instances = instances;
        self
    }

    /// Bytes the system reserves for the input buffer (advisory).
    pub fn in_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.in_buffer_size = bytes;
        self
    }

    /// Bytes the system reserves for the output buffer (advisory).
    pub fn out_buffer_size(&mut self, bytes: u32) -> &mut Self {
        self.out_buffer_size = bytes;
        self
    }

    /// Creates a pipe instance named `addr` (`\\.\pipe\<name>`) and registers it with the current
    /// runtime. It accepts a client from now on; [`NamedPipeServer::connect`] waits for one.
    pub fn create(&self, addr: impl AsRef<OsStr>) -> io::Result<NamedPipeServer> {
        let name: Vec<u16> = addr.as_ref().encode_wide().chain(Some(0)).collect();
        if name[..name.len() - 1].contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pipe name contains a NUL character",
            ));
        }
        let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
        if self.first_pipe_instance {
            open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
        }
        let mut pipe_mode = PIPE_TYPE_BYTE;
        if self.reject_remote_clients {
            pipe_mode |= PIPE_REJECT_REMOTE_CLIENTS;
        }
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; the security
        // attributes pointer may be null (default security); the other arguments are plain values.
        let h = unsafe {
            CreateNamedPipeW(
                name.as_ptr(),
                open_mode,
                pipe_mode,
                self.max_instances,
                self.out_buffer_size,
                self.in_buffer_size,
                0,
                std::ptr::null(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `h` is a valid pipe handle we own (just created, overlapped), given to mio once.
        let pipe = unsafe { mio::windows::NamedPipe::from_raw_handle(h as RawHandle) };
        Ok(NamedPipeServer {
            io: PollEvented::new(pipe)?,
        })
    }
}

/// How [`ClientOptions::open`] opens a pipe.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    _private: (),
}

impl ClientOptions {
    /// Read-write, overlapped, identification-level impersonation only.
    pub fn new() -> ClientOptions {
        ClientOptions { _private: () }
    }

    /// Opens the pipe named `addr` and registers it with the current runtime. Fails at once with
    /// `ERROR_PIPE_BUSY` when every instance serves a client, and `ERROR_FILE_NOT_FOUND` when there
    /// is no instance.
    pub fn open(&self, addr: impl AsRef<OsStr>) -> io::Result<NamedPipeClient> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(FILE_FLAG_OVERLAPPED)
            .security_qos_flags(SECURITY_IDENTIFICATION)
            .open(addr.as_ref())?;
        // SAFETY: the handle comes from `into_raw_handle` (we own it, opened overlapped) and is given
        // to mio exactly once.
        let pipe = unsafe { mio::windows::NamedPipe::from_raw_handle(file.into_raw_handle()) };
        Ok(NamedPipeClient {
            io: PollEvented::new(pipe)?,
        })
    }
}

/// The server end of one pipe instance.
pub struct NamedPipeServer {
    io: PollEvented<mio::windows::NamedPipe>,
}

/// The client end of a pipe.
pub struct NamedPipeClient {
    io: PollEvented<mio::windows::NamedPipe>,
}

impl NamedPipeServer {
    /// Waits until a client has opened this instance (at once if one already did). The outcome of a
    /// failed connection is the error.
    pub async fn connect(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_connect(cx)).await
    }

    /// Polls [`connect`](Self::connect): starts `ConnectNamedPipe` on the first call, then waits for
    /// its completion (reported as writable readiness).
    pub fn poll_connect(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io.connect() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
        // Pending or already issued: each wake runs `connect` again, which returns `Ok` once the
        // client is there (`ERROR_PIPE_CONNECTED`) and `WouldBlock` while the first call runs.
        let r = std::task::ready!(self
            .io
            .registration()
            .poll_io(cx, Direction::Write, || self.io.connect()));
        Poll::Ready(match r {
            Ok(()) => match self.io.take_error()? {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Err(e) => Err(e),
        })
    }

    /// Disconnects the current client (`DisconnectNamedPipe`); unread data is lost. The instance
    /// can then [`connect`](Self::connect) to another client.
    pub fn disconnect(&self) -> io::Result<()> {
        self.io.disconnect()
    }
}

/// The readiness, `try_*` and trait methods both pipe ends share.
macro_rules! pipe_end {
    ($t:ident) => {
        impl $t {
            /// Takes the pending connect error, if any.
            pub fn take_error(&self) -> io::Result<Option<io::Error>> {
                self.io.take_error()
            }

            /// Waits until any of `interest` is ready. Any number of tasks may wait.
            pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
                Ok(self.io.registration().readiness(interest).await?.ready)
            }

            /// Waits until the pipe is readable.
            pub async fn readable(&self) -> io::Result<()> {
                self.ready(Interest::READABLE).await.map(|_| ())
            }

            /// Waits until the pipe is writable.
            pub async fn writable(&self) -> io::Result<()> {
                self.ready(Interest::WRITABLE).await.map(|_| ())
            }

            /// Polls for read readiness (single waker).
            pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.io.registration().poll_read_ready(cx).map_ok(|_| ())
            }

            /// Polls for write readiness (single waker).
            pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.io.registration().poll_write_ready(cx).map_ok(|_| ())
            }

            /// Reads without waiting: `WouldBlock` unless cached as readable.
            pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.io
                    .registration()
                    .try_io(Interest::READABLE, || (&mut &*self.io).read(buf))
            }

            /// Writes without waiting: `WouldBlock` unless cached as writable.
            pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                self.io
                    .registration()
                    .try_io(Interest::WRITABLE, || (&mut &*self.io).write(buf))
            }

            /// Writes without consulting cached readiness: mio's pipe itself reports `WouldBlock`
            /// while an earlier write is in flight (for a last flush before closing).
            pub fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
                (&mut &*self.io).write(buf)
            }

            /// Runs a custom non-blocking operation if `interest` is cached as ready.
            pub fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                self.io.registration().try_io(interest, f)
            }

            /// Waits for `interest` and runs `f`, again after each `WouldBlock`.
            pub async fn async_io<R>(
                &self,
                interest: Interest,
                f: impl FnMut() -> io::Result<R>,
            ) -> io::Result<R> {
                self.io.registration().async_io(interest, f).await
            }
        }

        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.io.poll_read(cx, buf)
            }

            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.io.poll_read_vectored(cx, bufs)
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.io.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.io.poll_write_vectored(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Pipes have no half-close: succeeds without telling the peer (see the module docs).
            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }

        impl AsRawHandle for $t {
            fn as_raw_handle(&self) -> RawHandle {
                self.io.as_raw_handle()
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("handle", &self.as_raw_handle())
                    .finish()
            }
        }
    };
}

pipe_end!(NamedPipeServer);
pipe_end!(NamedPipeClient);
