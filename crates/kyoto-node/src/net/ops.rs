//! The JS-facing socket calls: creating TCP and UDP sockets (bound, listening or connecting) and
//! every per-handle operation — reads on/off, writes, shutdown, close, addresses, options,
//! multicast, native copies, framing and the loop reference. Each returns a negative errno rather
//! than throwing; the per-env machinery they act on is in the parent module.
use super::*;

/// Binds and listens; returns the listener's handle or a negative errno.
#[napi(catch_unwind)]
pub fn net_tcp_listen(
    ip: String,
    port: u32,
    backlog: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let addr = match parse_addr(&ip, port) {
        Ok(a) => a,
        Err(e) => return Ok(e),
    };
    let ip = addr.ip();
    let r = (|| -> io::Result<std::net::TcpListener> {
        let s = open_socket(&ip, Type::STREAM, Protocol::TCP, flags, sndbuf, rcvbuf)?;
        #[cfg(unix)]
        s.set_reuse_address(true)?; // like Node and Tokio: restart while old connections linger
        s.bind(&addr.into())?;
        s.listen(backlog.clamp(1, 65535) as i32)?;
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        TcpListener::from_std,
        |l| Kind::Listener(Closable::new(Listener::Tcp(l))),
        0,
    ))
}

/// Added to the negated errno [`net_tcp_connect`] returns when binding the local address failed
/// (Node reports that as `syscall: 'bind'` with the local address).
pub const CONNECT_BIND_FAILED: i32 = 1 << 16;

/// Added to the negated errno [`net_drain`] and [`net_shutdown`] return when an earlier write
/// failed (the error is the write's, `syscall: 'write'`).
pub const WRITE_FAILED: i32 = 1 << 17;

/// [`failed_write`] with the socket's state already locked.
fn failed_write_locked(s: &Sock, st: &St) -> Option<i32> {
    if !s.has(F_WRITE_FAILED) {
        return None;
    }
    let e = st.write_errno;
    Some(-((if e == 0 { epipe() } else { e }) + WRITE_FAILED))
}

/// `-(errno + WRITE_FAILED)` of the write that failed on `s`, if one did.
fn failed_write(s: &Sock) -> Option<i32> {
    if !s.has(F_WRITE_FAILED) {
        return None;
    }
    let e = s.lock().write_errno;
    Some(-((if e == 0 { epipe() } else { e }) + WRITE_FAILED))
}

/// Starts a connect; returns the stream's handle (K_CONNECTED or K_ERROR follows) or a negative
/// errno (less [`CONNECT_BIND_FAILED`] when the local bind failed).
#[napi(catch_unwind)]
pub fn net_tcp_connect(
    ip: String,
    port: u32,
    local_ip: String,
    local_port: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let addr = match parse_addr(&ip, port) {
        Ok(a) => a,
        Err(e) => return Ok(e),
    };
    let ip = addr.ip();
    let bind_failed = std::cell::Cell::new(false);
    let local = if local_ip.is_empty() {
        None
    } else {
        match parse_addr(&local_ip, local_port) {
            Ok(l) => Some(l),
            Err(e) => return Ok(e),
        }
    };
    let r = (|| -> io::Result<std::net::TcpStream> {
        let s = open_socket(&ip, Type::STREAM, Protocol::TCP, flags, sndbuf, rcvbuf)?;
        if flags & O_NODELAY != 0 {
            s.set_tcp_nodelay(true)?;
        }
        if flags & O_KEEPALIVE != 0 {
            s.set_keepalive(true)?;
        }
        if let Some(l) = local {
            s.bind(&l.into()).inspect_err(|_| bind_failed.set(true))?;
        }
        match s.connect(&addr.into()) {
            Ok(()) => {}
            #[cfg(unix)]
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(s.into())
    })();
    let h = adopt(
        &n,
        &rt,
        r,
        TcpStream::from_std,
        |s| Kind::Stream(Stream::Tcp(s)),
        F_CONNECTING,
    );
    Ok(if h < 0 && bind_failed.get() {
        h - CONNECT_BIND_FAILED
    } else {
        h
    })
}

/// Binds a UDP socket; returns its handle or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_bind(
    ip: String,
    port: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let addr = match parse_addr(&ip, port) {
        Ok(a) => a,
        Err(e) => return Ok(e),
    };
    let ip = addr.ip();
    let r = (|| -> io::Result<std::net::UdpSocket> {
        let s = open_socket(&ip, Type::DGRAM, Protocol::UDP, flags, sndbuf, rcvbuf)?;
        s.bind(&addr.into())?;
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        UdpSocket::from_std,
        |u| Kind::Udp(Closable::new(u)),
        0,
    ))
}

/// Connects a UDP socket (filters what it receives); 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_connect(h: u32, ip: String, port: u32) -> Result<i32> {
    let addr = match parse_addr(&ip, port) {
        Ok(a) => a,
        Err(e) => return Ok(e),
    };
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => u
                .with(|u| {
                    udp_pin_queued_to_peer(s, u);
                    sock_ref_on(u, |r| r.connect(&addr.into()))
                })
                .unwrap_or_else(|| -ebadf()),
            _ => -einval(),
        },
        -ebadf(),
    )
}

/// Runs `f` on a UDP socket's options: 0, or a negative errno (`EBADF` once it was closed).
fn sock_ref_udp(
    u: &Closable<UdpSocket>,
    f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<()>,
) -> i32 {
    u.with(|u| sock_ref_on(u, f)).unwrap_or_else(|| -ebadf())
}

fn sock_ref_on(u: &UdpSocket, f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<()>) -> i32 {
    #[cfg(unix)]
    let r = f(&socket2::SockRef::from(u));
    #[cfg(windows)]
    let r = {
        use std::os::windows::io::{AsRawSocket, BorrowedSocket};
        // SAFETY: the socket is owned by `u`, which outlives this borrow.
        let b = unsafe { BorrowedSocket::borrow_raw(u.as_raw_socket()) };
        f(&socket2::SockRef::from(&b))
    };
    match r {
        Ok(()) => 0,
        Err(e) => neg(&e),
    }
}

/// Listener: accept connections (K_ACCEPT events) while `on`.
#[napi(catch_unwind)]
pub fn net_arm(h: u32, on: bool) -> Result<i32> {
    switch_flag(h, F_ARMED, on)
}

/// Stream/UDP: read (K_DATA / K_DGRAM events) while `on`.
#[napi(catch_unwind)]
pub fn net_read(h: u32, on: bool) -> Result<i32> {
    switch_flag(h, F_READING, on)
}

/// Sets or clears one of a socket's flags; setting it wakes the socket's task if it was clear.
fn switch_flag(h: u32, flag: u32, on: bool) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if on {
                if s.set(flag) & flag == 0 {
                    s.wake();
                }
            } else {
                s.clear(flag);
            }
            0
        },
        -ebadf(),
    )
}

/// Sends the queued write table now (JS calls this once per microtask turn when it queued writes
/// outside a native turn).
#[napi(catch_unwind)]
pub fn net_flush() -> Result<()> {
    let n = net()?;
    n.flush();
    n.kick();
    Ok(())
}

/// Writes `data` (after the queued table): 0 taken, 1 blocked (wait for K_DRAIN), < 0 errno.
#[napi(catch_unwind)]
pub fn net_write(h: u32, data: &[u8]) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |n, s| {
            if s.has(F_WRITE_FAILED) {
                return -epipe();
            }
            let (blocked, wake) = stream_write(s, data, !n.threaded);
            if wake {
                s.wake();
            }
            if blocked {
                n.set_blocked(h);
                1
            } else {
                0
            }
        },
        -ebadf(),
    )
}

fn epipe() -> i32 {
    #[cfg(unix)]
    {
        libc::EPIPE
    }
    #[cfg(not(unix))]
    {
        32
    }
}

/// Sends one datagram to `ip:port` (or the connected peer when `ip` is empty): 0, 1 blocked, or
/// a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_send(h: u32, data: &[u8], ip: String, port: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    let addr = if ip.is_empty() {
        None
    } else {
        match parse_addr(&ip, port) {
            Ok(a) => Some(a),
            Err(e) => return Ok(e),
        }
    };
    with_sock(
        h,
        |n, s| {
            let (blocked, wake) = udp_send(s, &[SendMsg { data, addr }], !n.threaded);
            if wake {
                s.wake();
            }
            if blocked {
                n.set_blocked(h);
                1
            } else {
                0
            }
        },
        -ebadf(),
    )
}

/// Bytes written to a stream that the kernel has not taken yet (its write backlog, after the
/// write table is sent); 0 for a closed handle. What node's `writeQueueSize` is to its idle timeout.
#[napi(catch_unwind)]
pub fn net_backlog(h: u32) -> Result<i64> {
    let n = net()?;
    n.flush();
    with_sock(h, |_, s| s.lock().backlog() as i64, 0)
}

/// 0 when nothing is waiting to be written; 1 when a K_DRAIN will follow; the failed write's
/// error (see [`WRITE_FAILED`]) once one failed.
#[napi(catch_unwind)]
pub fn net_drain(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |_, s| {
            if let Some(r) = failed_write(s) {
                return r;
            }
            let mut st = s.lock();
            if st.backlog() == 0 && st.dout.is_empty() {
                // A runtime worker may have failed the write since the check above: an empty
                // backlog is a drained one only if no write failed (see `poll_stream`).
                failed_write_locked(s, &st).unwrap_or(0)
            } else {
                st.drain_wanted = true;
                drop(st);
                s.wake();
                1
            }
        },
        0,
    )
}

/// Shuts the write direction down after the backlog: 0 done, 1 pending (K_DRAIN follows), < 0
/// errno (the failed write's, see [`WRITE_FAILED`], once one failed: no FIN confirms lost bytes).
#[napi(catch_unwind)]
pub fn net_shutdown(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |_, s| {
            let Some(stream) = s.stream() else {
                return -einval();
            };
            if let Some(r) = failed_write(s) {
                return r;
            }
            let mut st = s.lock();
            if let Some(r) = failed_write_locked(s, &st) {
                return r; // failed on a runtime worker since the check above
            }
            if st.backlog() == 0 {
                drop(st);
                match shutdown_write(stream) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                }
            } else {
                st.shutdown_pending = true;
                drop(st);
                s.wake();
                1
            }
        },
        -ebadf(),
    )
}

/// Closes a socket (after sending what JS queued): its task stops and the descriptor closes.
#[napi(catch_unwind)]
pub fn net_close(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    let Some(sock) = n.shared.remove(h) else {
        return Ok(-ebadf());
    };
    close_sock(&n.shared, &sock);
    n.kick();
    Ok(0)
}

/// `"family|ip|port"` of the local (or peer) address, or `"!errno"`.
#[napi(catch_unwind)]
pub fn net_addr(h: u32, peer: bool) -> Result<String> {
    with_sock(
        h,
        |_, s| {
            let r = match (&s.kind, peer) {
                (Kind::Stream(t), _) => t.addr(peer),
                (Kind::Listener(l), false) => l.try_with(|l| l.addr()),
                (Kind::Udp(u), _) => u
                    .try_with(|u| if peer { u.peer_addr() } else { u.local_addr() })
                    .map(|a| addr_text(&a)),
                #[cfg(unix)]
                (Kind::UnixDgram(u), _) => u
                    .try_with(|u| if peer { u.peer_addr() } else { u.local_addr() })
                    .map(|a| unix_addr_string(&a)),
                _ => Err(io::Error::from_raw_os_error(EINVAL)),
            };
            match r {
                Ok(a) => a,
                Err(e) => format!("!{}", errno(&e)),
            }
        },
        format!("!{}", ebadf()),
    )
}

/// Sets a socket option: 1 nodelay(a), 2 keepalive(a, b = idle ms), 3 linger(a < 0: off, else
/// seconds), 4 ttl(a), 5 broadcast(a), 6 multicast loop v4(a), 7 multicast ttl v4(a), 8 send
/// buffer(a), 9 receive buffer(a), 10 multicast loop v6(a), 11 multicast hops v6(a). 0 or a
/// negative errno.
#[napi(catch_unwind)]
pub fn net_set_opt(h: u32, opt: u32, a: f64, b: f64) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            let on = a != 0.0;
            let f = |r: &socket2::SockRef<'_>| -> io::Result<()> {
                match opt {
                    1 => r.set_tcp_nodelay(on),
                    2 => {
                        r.set_keepalive(on)?;
                        if on && b > 0.0 {
                            // The kernel counts whole seconds, 1..=32767 on Linux: round a delay
                            // up (500 ms is 1 s, not an invalid 0) and clamp it.
                            let secs = (b / 1000.0).ceil().clamp(1.0, 32767.0) as u64;
                            let ka = socket2::TcpKeepalive::new()
                                .with_time(std::time::Duration::from_secs(secs));
                            r.set_tcp_keepalive(&ka)?;
                        }
                        Ok(())
                    }
                    3 => r.set_linger(if a < 0.0 {
                        None
                    } else {
                        Some(
                            std::time::Duration::try_from_secs_f64(a)
                                .map_err(|_| io::Error::from_raw_os_error(EINVAL))?,
                        )
                    }),
                    4 => r
                        .set_ttl_v4(a as u32)
                        .or_else(|e| r.set_unicast_hops_v6(a as u32).map_err(|_| e)),
                    5 => r.set_broadcast(on),
                    6 => r.set_multicast_loop_v4(on),
                    // As a C int, the way libuv passes it (compat/dgram lets -1 through on Windows only).
                    7 => r.set_multicast_ttl_v4(a as i32 as u32),
                    8 => r.set_send_buffer_size(a as usize),
                    9 => r.set_recv_buffer_size(a as usize),
                    10 => r.set_multicast_loop_v6(on),
                    11 => r.set_multicast_hops_v6(a as i32 as u32),
                    _ => Err(io::Error::from_raw_os_error(EINVAL)),
                }
            };
            match &s.kind {
                Kind::Stream(t) => match t.with_ref(f) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                },
                Kind::Udp(u) => sock_ref_udp(u, f),
                #[cfg(unix)]
                Kind::UnixDgram(u) => match u.try_with(|u| f(&socket2::SockRef::from(&**u))) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                },
                Kind::Listener(_) => -einval(),
            }
        },
        -ebadf(),
    )
}

/// Joins (or leaves) an IPv4 multicast group on `iface` (an IPv4 address, `""` = any).
#[napi(catch_unwind)]
pub fn net_multicast(h: u32, join: bool, group: String, iface: String) -> Result<i32> {
    let Ok(IpAddr::V4(g)) = group.parse::<IpAddr>() else {
        return Ok(-einval());
    };
    let Some(i) = parse_iface(&iface) else {
        return Ok(-einval());
    };
    on_udp(h, |r| {
        if join {
            r.join_multicast_v4(&g, &i)
        } else {
            r.leave_multicast_v4(&g, &i)
        }
    })
}

/// Joins (or leaves) an IPv6 multicast group on interface index `iface` (0: the kernel picks).
#[napi(catch_unwind)]
pub fn net_multicast_v6(h: u32, join: bool, group: String, iface: u32) -> Result<i32> {
    let Ok(IpAddr::V6(g)) = group.parse::<IpAddr>() else {
        return Ok(-einval());
    };
    on_udp(h, |r| {
        if join {
            r.join_multicast_v6(&g, iface)
        } else {
            r.leave_multicast_v6(&g, iface)
        }
    })
}

/// Sets the interface of outgoing IPv6 multicast (`IPV6_MULTICAST_IF`; 0 = the default route's).
/// 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_multicast_if_v6(h: u32, iface: u32) -> Result<i32> {
    on_udp(h, |r| r.set_multicast_if_v6(iface))
}

/// The interface index an IPv6 zone names (`eth0` or `2`), or -EINVAL.
#[napi(catch_unwind)]
pub fn net_zone_index(zone: String) -> i32 {
    zone::zone_index(&zone).map_or(-einval(), |i| i as i32)
}

/// The text Node prints after `%` for interface index `index` (its name; the number on Windows).
#[napi(catch_unwind)]
pub fn net_zone_name(index: u32) -> String {
    zone::zone_name(index)
}

/// Runs `f` on UDP socket `h`: 0, or a negative errno (`EINVAL` if `h` is another kind of socket).
fn on_udp(h: u32, f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<()>) -> Result<i32> {
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => sock_ref_udp(u, f),
            _ => -einval(),
        },
        -ebadf(),
    )
}

/// Joins (or leaves) the IPv4 multicast group `group` for datagrams from `source` only
/// (source-specific multicast, `IP_ADD_SOURCE_MEMBERSHIP`) on `iface` (`""` = any).
#[napi(catch_unwind)]
pub fn net_multicast_ssm(
    h: u32,
    join: bool,
    source: String,
    group: String,
    iface: String,
) -> Result<i32> {
    let (Ok(IpAddr::V4(src)), Ok(IpAddr::V4(g))) =
        (source.parse::<IpAddr>(), group.parse::<IpAddr>())
    else {
        return Ok(-einval());
    };
    let Some(i) = parse_iface(&iface) else {
        return Ok(-einval());
    };
    on_udp(h, |r| {
        if join {
            r.join_ssm_v4(&src, &g, &i)
        } else {
            r.leave_ssm_v4(&src, &g, &i)
        }
    })
}

/// An IPv4 interface address (`""`: any).
fn parse_iface(iface: &str) -> Option<Ipv4Addr> {
    if iface.is_empty() {
        Some(Ipv4Addr::UNSPECIFIED)
    } else {
        iface.parse().ok()
    }
}

/// Sets the interface of outgoing IPv4 multicast (`IP_MULTICAST_IF`; `""` = the default route's).
/// 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_multicast_if(h: u32, iface: String) -> Result<i32> {
    let Some(i) = parse_iface(&iface) else {
        return Ok(-einval());
    };
    on_udp(h, |r| r.set_multicast_if_v4(&i))
}

/// Dissolves a UDP socket's association (a `connect` to `AF_UNSPEC`, as libuv does): it sends to
/// and receives from anyone again. 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_disconnect(h: u32) -> Result<i32> {
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => u
                .with(|u| {
                    udp_pin_queued_to_peer(s, u);
                    udp_disconnect(u)
                })
                .unwrap_or_else(|| -ebadf()),
            _ => -einval(),
        },
        -ebadf(),
    )
}

#[cfg(unix)]
fn udp_disconnect(u: &UdpSocket) -> i32 {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `sockaddr` is a valid value of this plain C struct.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `addr` is a valid `sockaddr` of `len` bytes; `u` owns the descriptor for the call.
    let r = unsafe { libc::connect(u.as_raw_fd(), &addr, len) };
    if r == 0 {
        return 0;
    }
    let e = io::Error::last_os_error();
    // macOS reports EAFNOSUPPORT but has dissolved the association (libuv ignores it too).
    if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        0
    } else {
        neg(&e)
    }
}

#[cfg(not(unix))]
fn udp_disconnect(u: &UdpSocket) -> i32 {
    // Winsock dissolves the association on a connect to the any-address, port 0.
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    sock_ref_on(u, |r| r.connect(&any.into()))
}

/// A socket option's value: 8 `SO_SNDBUF`, 9 `SO_RCVBUF` (bytes, as the kernel reports them), or
/// a negative errno.
#[napi(catch_unwind)]
pub fn net_get_opt(h: u32, opt: u32) -> Result<f64> {
    with_sock(
        h,
        |_, s| {
            let f = |r: &socket2::SockRef<'_>| -> io::Result<usize> {
                match opt {
                    8 => r.send_buffer_size(),
                    9 => r.recv_buffer_size(),
                    _ => Err(io::Error::from_raw_os_error(EINVAL)),
                }
            };
            let mut out = Ok(0usize);
            let rc = match &s.kind {
                Kind::Stream(t) => {
                    out = t.with_ref(f);
                    0
                }
                Kind::Udp(u) => sock_ref_udp(u, |r| {
                    out = f(r);
                    Ok(())
                }),
                #[cfg(unix)]
                Kind::UnixDgram(u) => {
                    out = u.try_with(|u| f(&socket2::SockRef::from(&**u)));
                    0
                }
                Kind::Listener(_) => -einval(),
            };
            match (rc, out) {
                (0, Ok(v)) => v as f64,
                (0, Err(e)) => f64::from(neg(&e)),
                (rc, _) => f64::from(rc),
            }
        },
        f64::from(-ebadf()),
    )
}

/// Starts a native copy `src → dst` (and `dst → src` when `bidi`); K_COPY with handle `op`
/// reports the result. 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_copy(op: u32, src: u32, dst: u32, bidi: bool) -> Result<i32> {
    let n = net()?;
    n.flush();
    let (Some(a), Some(b)) = (n.shared.get(src), n.shared.get(dst)) else {
        // A stream whose runtime shut down may already have left the table (its task's drop
        // released it): the copy fails with the runtime's error, as its other calls do.
        let killed = n.shared.was_killed(src) || n.shared.was_killed(dst);
        return Ok(if killed {
            -E_RUNTIME_SHUTDOWN
        } else {
            -ebadf()
        });
    };
    if a.stream().is_none() || b.stream().is_none() {
        return Ok(-einval());
    }
    // Ended by `Runtime.default().shutdown()` since JS began the copy: nothing would drive it.
    if a.has(F_KILLED) || b.has(F_KILLED) {
        return Ok(-E_RUNTIME_SHUTDOWN);
    }
    let (rd, wr) = copy_flags(bidi);
    a.set(rd);
    b.set(wr);
    let task = CopyTask::new(op, n.shared.clone(), a, b, bidi);
    let jh = n.shared.handle.spawn(task);
    n.shared
        .copies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(op, (jh.abort_handle(), src, dst));
    n.kick();
    Ok(0)
}

/// `Runtime.default().shutdown()` on this thread: every socket whose task runs on the env's own
/// runtime or the shared default one ends as if its runtime had shut down. Writes JS queued before
/// go out first; then each socket is marked blocked (so later writes and sends wait instead of
/// being acknowledged) and its task and copies are aborted: their drops report
/// `ERR_RUNTIME_SHUTDOWN` for every wait, and JS fails later calls with it. Sockets made afterwards
/// work as before (the default runtime's next handle). Nothing to do before the env exists.
#[napi(catch_unwind)]
pub fn net_shutdown_default() -> Result<()> {
    let Ok(n) = net() else {
        return Ok(());
    };
    n.flush();
    let socks: Vec<Arc<Sock>> = n
        .shared
        .slab()
        .entries
        .iter()
        .flatten()
        .filter(|s| s.has(F_ON_DEFAULT) && !s.has(F_CLOSED) && !s.has(F_KILLED))
        .cloned()
        .collect();
    if socks.is_empty() {
        return Ok(());
    }
    for s in &socks {
        s.set(F_KILLED);
        n.set_blocked(s.h);
        let abort = s.lock().abort.take();
        if let Some(a) = abort {
            a.abort();
        }
    }
    n.shared.abort_copies(|h| socks.iter().any(|s| s.h == h));
    // An abort only schedules the task: on the env's own runtime nothing may drive it until the
    // next socket event, so ask for a turn now.
    n.turn_soon();
    Ok(())
}

/// Stops a running copy (its read half was closed): the copy task is aborted, and its drop reports
/// K_COPY with `ECANCELED` and no fault, as when one of its streams is closed.
#[napi(catch_unwind)]
pub fn net_copy_abort(op: u32) -> Result<()> {
    let n = net()?;
    let abort = n
        .shared
        .copies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&op);
    if let Some((a, _, _)) = abort {
        a.abort();
        // An abort only schedules the task: on the env's own runtime nothing may drive it until
        // the next socket event.
        n.turn_soon();
    }
    Ok(())
}

/// Forgets a finished copy (JS calls this when it got K_COPY).
#[napi(catch_unwind)]
pub fn net_copy_done(op: u32) -> Result<()> {
    let n = net()?;
    n.shared
        .copies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&op);
    Ok(())
}

/// Holds (or releases) the event loop for the env's ref'd sockets and pending operations.
#[napi(catch_unwind)]
pub fn net_ref(on: bool) -> Result<()> {
    let n = net()?;
    if n.refd.get() == on || n.closed.get() {
        return Ok(());
    }
    n.refd.set(on);
    #[cfg(unix)]
    if let Some(uv) = n.uv.borrow().as_ref() {
        uv.set_ref(on);
    }
    let tsfn = n.tsfn.get();
    if !tsfn.is_null() {
        // SAFETY: JS thread, live TSFN (the env is not closed).
        unsafe {
            if on {
                sys::napi_ref_threadsafe_function(n.env, tsfn);
            } else {
                sys::napi_unref_threadsafe_function(n.env, tsfn);
            }
        }
    }
    Ok(())
}

/// Claims a stream for `kyoto/io`'s `framed()`: from now on its task splits what it reads into
/// frames (`kind` 1: lines of at most `max` bytes; 2: length-delimited with a `fieldBytes`-byte
/// big-endian header and payloads of at most `max` bytes). The task first pushes `K_FRAME_SYNC`
/// and stops reading until JS hands over what it buffered with [`net_frame_feed`]. 0 or a negative
/// errno (`EINVAL`: not a stream, already framed, or a bad codec).
#[napi(catch_unwind)]
pub fn net_frame(h: u32, kind: u32, max: f64, field_bytes: u32) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if s.stream().is_none() || s.has(F_FRAMED) || max.is_nan() || max < 0.0 {
                return -einval();
            }
            // `as` saturates: anything above u64::MAX (or +inf) means no limit.
            let max = max as u64;
            let framer = match kind {
                1 => frame::Framer::lines(max),
                2 => match frame::Framer::length_delimited(field_bytes as usize, max) {
                    Some(f) => f,
                    None => return -einval(),
                },
                _ => return -einval(),
            };
            *s.lock_framer() = Some(framer);
            s.set(F_FRAMED | F_FRAME_HOLD | F_FRAME_SYNC);
            s.wake();
            0
        },
        -ebadf(),
    )
}

/// Hands what JS had buffered of a stream, when it received `K_FRAME_SYNC`, to the stream's framer
/// (before anything read later), then lets the task read through the framer. `end` 1: the stream
/// had ended (the framer finishes and a `K_EOF` follows the frames); 2: it failed with `errno` (a
/// read `K_ERROR` follows). 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_frame_feed(h: u32, data: &[u8], end: u32, errno: i32) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if !s.has(F_FRAMED) || s.has(F_FRAME_ACTIVE) {
                return -einval();
            }
            {
                let mut g = s.lock_framer();
                let Some(f) = g.as_mut() else {
                    return -einval();
                };
                // In read-sized pieces: each event must fit the shared arena.
                for c in data.chunks(READ_CHUNK) {
                    s.push_framed(f, Some(c));
                }
                match end {
                    1 => {
                        s.push_framed(f, None);
                        s.push(Ev::new(s.h, queue::K_EOF, 0, 0));
                    }
                    2 => s.push(Ev::new(s.h, queue::K_ERROR, errno, queue::SYS_READ)),
                    _ => {}
                }
            }
            s.set(F_FRAME_ACTIVE);
            s.clear(F_FRAME_HOLD);
            s.wake();
            0
        },
        -ebadf(),
    )
}

/// `[undelivered bytes, bytes the framer holds]` of a socket, or `[]` (tests: bounded buffering).
#[napi(catch_unwind)]
pub fn net_frame_stats(h: u32) -> Result<Vec<f64>> {
    with_sock(
        h,
        |_, s| {
            let held = s.lock_framer().as_ref().map_or(0, |f| f.held());
            vec![
                s.undelivered.load(std::sync::atomic::Ordering::Acquire) as f64,
                held as f64,
            ]
        },
        Vec::new(),
    )
}

/// Live sockets of this env (tests).
#[napi(catch_unwind)]
pub fn net_live() -> Result<u32> {
    let n = net()?;
    let s = n.shared.slab();
    Ok(s.entries.iter().filter(|e| e.is_some()).count() as u32)
}
