//! Unix domain sockets (streams, listeners, datagrams): the `netUnix*` functions. Other
//! platforms get the same functions from `unsupported.rs`, so the generated typings match.
use std::io;
use std::sync::Arc;

use kyoto_rt::net::{UnixDatagram, UnixListener, UnixStream};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use socket2::{Domain, Socket, Type};

use super::sock::*;
use super::*;
use crate::runtime::NativeRuntime;

fn register_stream(n: &NetEnv, rt: &kyoto_rt::Handle, s: UnixStream, flags: u32) -> i32 {
    register(n, rt, Kind::Stream(Stream::Unix(s)), flags)
}

/// What [`net_adopt_fd`] made of a descriptor (the second element of its result).
const ADOPTED_TCP_STREAM: i32 = 1;
const ADOPTED_UNIX_STREAM: i32 = 2;
const ADOPTED_TCP_LISTENER: i32 = 3;
const ADOPTED_UNIX_LISTENER: i32 = 4;

/// An `int` socket option of `fd` (`SOL_SOCKET`).
fn int_opt(fd: i32, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals of the sizes passed; the kernel writes at most `len`
    // bytes to `v`. `fd` is only a number to the kernel (EBADF/ENOTSOCK if it names no socket).
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The address family of the socket `fd`.
fn family(fd: i32) -> io::Result<libc::c_int> {
    // SAFETY: all-zero is a valid `sockaddr_storage`.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` is a live local of `len` bytes; the kernel writes at most `len` bytes to it.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(libc::c_int::from(ss.ss_family))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A duplicate of descriptor `fd` (close-on-exec), or -errno: for a socket that another owner (a
/// libuv handle node:cluster passed over IPC) will close, so that [`net_adopt_fd`] can own a copy.
#[napi(catch_unwind)]
pub fn net_dup_fd(fd: i32) -> Result<i32> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd` (an invalid one is EBADF) and returns a new descriptor
    // that nothing else owns yet.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    Ok(if r >= 0 {
        r
    } else {
        neg(&io::Error::last_os_error())
    })
}

/// Takes over an open stream socket descriptor (`new net.Socket({ fd })`, `server.listen({ fd })`
/// of `kyoto/compat/net`, e.g. one inherited from systemd): `[handle, kind]` (kind: 1 TCP stream,
/// 2 Unix stream, 3 TCP listener, 4 Unix listener) or `[-errno]`. With `listen`, a socket not yet
/// listening is made to listen with `backlog`. From then on kyoto owns the descriptor and closes
/// it with the socket, as node:net does. `ENOTSOCK` for a descriptor that is not a socket,
/// `EINVAL` for one that is not a stream, or that is a listener when `listen` is false.
#[napi(catch_unwind)]
pub fn net_adopt_fd(
    fd: i32,
    listen: bool,
    backlog: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<Vec<i32>> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    // Checked before anything takes ownership: a bad descriptor is an error, never closed.
    let checked = (|| -> io::Result<(libc::c_int, bool)> {
        if int_opt(fd, libc::SO_TYPE)? != libc::SOCK_STREAM {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let fam = family(fd)?;
        if fam != libc::AF_INET && fam != libc::AF_INET6 && fam != libc::AF_UNIX {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let accepting = int_opt(fd, libc::SO_ACCEPTCONN)? != 0;
        if accepting && !listen {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok((fam, accepting))
    })();
    let (fam, accepting) = match checked {
        Ok(c) => c,
        Err(e) => return Ok(vec![neg(&e)]),
    };
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is an open stream socket (the checks above succeeded on it), and the caller
    // hands its ownership over: from here it is closed exactly once, when this socket is dropped.
    let sock = unsafe { Socket::from_raw_fd(fd) };
    let _g = rt.enter();
    let made = (|| -> io::Result<(Kind, i32)> {
        sock.set_nonblocking(true)?;
        let unix = fam == libc::AF_UNIX;
        if listen {
            if !accepting {
                sock.listen(backlog.clamp(1, 65535) as i32)?;
            }
            Ok(if unix {
                let l = UnixListener::from_std(sock.into())?;
                (
                    Kind::Listener(Closable::new(Listener::Unix(l))),
                    ADOPTED_UNIX_LISTENER,
                )
            } else {
                let l = kyoto_rt::net::TcpListener::from_std(sock.into())?;
                (
                    Kind::Listener(Closable::new(Listener::Tcp(l))),
                    ADOPTED_TCP_LISTENER,
                )
            })
        } else if unix {
            Ok((
                Kind::Stream(Stream::Unix(UnixStream::from_std(sock.into())?)),
                ADOPTED_UNIX_STREAM,
            ))
        } else {
            let s = kyoto_rt::net::TcpStream::from_std(sock.into())?;
            Ok((Kind::Stream(Stream::Tcp(s)), ADOPTED_TCP_STREAM))
        }
    })();
    Ok(match made {
        Ok((kind, what)) => vec![register(&n, &rt, kind, 0), what],
        Err(e) => vec![neg(&e)],
    })
}

/// Takes over an open, bound UDP socket descriptor (one node:cluster's primary shares with its
/// workers): the handle or a negative errno. `EINVAL` for a descriptor that is not an IPv4/IPv6
/// datagram socket, which is then left open; from then on kyoto owns it.
#[napi(catch_unwind)]
pub fn net_adopt_udp_fd(fd: i32, runtime: Option<&NativeRuntime>) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    // Checked before anything takes ownership, as in `net_adopt_fd`.
    let checked = (|| -> io::Result<()> {
        let fam = family(fd)?;
        if int_opt(fd, libc::SO_TYPE)? != libc::SOCK_DGRAM
            || (fam != libc::AF_INET && fam != libc::AF_INET6)
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return Ok(neg(&e));
    }
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is an open UDP socket (checked above) whose ownership the caller hands over:
    // from here it is closed exactly once, when this socket is dropped.
    let sock = unsafe { Socket::from_raw_fd(fd) };
    let _g = rt.enter();
    let made = sock
        .set_nonblocking(true)
        .map(|()| std::net::UdpSocket::from(sock));
    Ok(adopt(
        &n,
        &rt,
        made,
        UdpSocket::from_std,
        |u| Kind::Udp(Closable::new(u)),
        0,
    ))
}

/// Binds and listens on a Unix socket path; the handle or a negative errno.
#[napi(catch_unwind)]
pub fn net_unix_listen(path: String, backlog: u32, runtime: Option<&NativeRuntime>) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let r = (|| -> io::Result<std::os::unix::net::UnixListener> {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        s.bind(&socket2::SockAddr::unix(&path)?)?;
        s.listen(backlog.clamp(1, 65535) as i32)?;
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        UnixListener::from_std,
        |l| Kind::Listener(Closable::new(Listener::Unix(l))),
        0,
    ))
}

/// Connects to a Unix socket path; the handle (K_CONNECTED or K_ERROR follows) or a negative errno.
#[napi(catch_unwind)]
pub fn net_unix_connect(path: String, runtime: Option<&NativeRuntime>) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let r = (|| -> io::Result<std::os::unix::net::UnixStream> {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        match s.connect(&socket2::SockAddr::unix(&path)?) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        UnixStream::from_std,
        |s| Kind::Stream(Stream::Unix(s)),
        F_CONNECTING,
    ))
}

/// A connected pair of Unix streams: `[a, b]` handles, or `[-errno]`.
#[napi(catch_unwind)]
pub fn net_unix_pair(runtime: Option<&NativeRuntime>) -> Result<Vec<i32>> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let _g = rt.enter();
    match UnixStream::pair() {
        Ok((a, b)) => Ok(vec![
            register_stream(&n, &rt, a, 0),
            register_stream(&n, &rt, b, 0),
        ]),
        Err(e) => Ok(vec![neg(&e)]),
    }
}

/// `"pid|uid|gid"` of a Unix stream's peer (pid -1 when unknown), or `"!errno"`.
#[napi(catch_unwind)]
pub fn net_peer_cred(h: u32) -> Result<String> {
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Stream(Stream::Unix(u)) => match u.peer_cred() {
                Ok(c) => format!("{}|{}|{}", c.pid().unwrap_or(-1), c.uid(), c.gid()),
                Err(e) => format!("!{}", errno(&e)),
            },
            _ => format!("!{}", einval()),
        },
        format!("!{}", ebadf()),
    )
}

fn register_dgram(n: &NetEnv, rt: &kyoto_rt::Handle, u: UnixDatagram) -> i32 {
    register(n, rt, Kind::UnixDgram(Closable::new(Arc::new(u))), 0)
}

/// A Unix datagram socket bound to `path` (unbound when `path` is empty); handle or -errno.
#[napi(catch_unwind)]
pub fn net_unix_dgram(path: String, runtime: Option<&NativeRuntime>) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let _g = rt.enter();
    let r = if path.is_empty() {
        UnixDatagram::unbound()
    } else {
        // Through socket2, which (unlike std's path API) takes a Linux abstract name.
        (|| {
            let s = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
            s.bind(&unix_sock_addr(path.as_ref())?)?;
            UnixDatagram::from_std(s.into())
        })()
    };
    Ok(match r {
        Ok(u) => register_dgram(&n, &rt, u),
        Err(e) => neg(&e),
    })
}

/// A connected pair of Unix datagram sockets: `[a, b]`, or `[-errno]`.
#[napi(catch_unwind)]
pub fn net_unix_dgram_pair(runtime: Option<&NativeRuntime>) -> Result<Vec<i32>> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let _g = rt.enter();
    match UnixDatagram::pair() {
        Ok((a, b)) => Ok(vec![register_dgram(&n, &rt, a), register_dgram(&n, &rt, b)]),
        Err(e) => Ok(vec![neg(&e)]),
    }
}

/// Connects a Unix datagram socket to `path`: 0 or -errno.
#[napi(catch_unwind)]
pub fn net_unix_dgram_connect(h: u32, path: String) -> Result<i32> {
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::UnixDgram(u) => match u
                .try_with(|u| socket2::SockRef::from(u).connect(&unix_sock_addr(path.as_ref())?))
            {
                Ok(()) => 0,
                Err(e) => neg(&e),
            },
            _ => -einval(),
        },
        -ebadf(),
    )
}

/// Sends a Unix datagram to `path` (the connected peer when empty): 0, 1 blocked, or -errno.
#[napi(catch_unwind)]
pub fn net_unix_dgram_send(h: u32, data: &[u8], path: String) -> Result<i32> {
    let path = (!path.is_empty()).then(|| std::path::PathBuf::from(path));
    with_sock(
        h,
        |n, s| match unix_dgram_send(s, data, path) {
            Ok((blocked, wake)) => {
                if wake {
                    s.wake();
                }
                if blocked {
                    n.set_blocked(h);
                    1
                } else {
                    0
                }
            }
            Err(e) => neg(&e),
        },
        -ebadf(),
    )
}
