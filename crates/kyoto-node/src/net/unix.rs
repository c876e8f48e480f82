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
        UnixDatagram::bind(&path)
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
            Kind::UnixDgram(u) => match u.try_with(|u| u.connect(&path)) {
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
