//! `mio-echo`: a single-threaded TCP echo server straight on `mio` (epoll on Linux) — no runtime, no
//! tasks, no JS. It is benchmark P1's ceiling row: PERFORMANCE.md's "C epoll echo" measured 1.55×
//! `node:net` at 50 × 1 × 64 B on this class of machine, and P1 runs this beside the JS servers so
//! every run shows how much of the machine's headroom kyoto's JS path reaches.
//!
//! Per readable edge: one `read` (a short read means the socket was drained at that moment, so the
//! edge is spent — the same rule kyoto's reactor uses) and one `write` of what arrived; bytes the
//! kernel did not take wait in the connection's buffer until the socket is writable, and reading
//! pauses meanwhile so a peer that never reads cannot grow it.
//!
//! Prints `listening <addr>` on stdout once bound (`--port 0` picks a free port), then serves until
//! killed.
use kyoto_bench::args::Args;
use kyoto_bench::proc_stats;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(0);
const READ_BUF: usize = 16 * 1024;

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written (empty in the steady state of an echo).
    pending: Vec<u8>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mio-echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::from_env()?;
    let host: String = a.get("host", "127.0.0.1".to_string())?;
    let port: u16 = a.get("port", 0)?;
    a.finish()?;
    let _ = proc_stats::raise_fd_limit(65_536);
    let addr: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| format!("register: {e}"))?;
    {
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {local}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1usize;
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&mut listener, &poll, &mut conns, &mut next);
                continue;
            }
            let token = ev.token();
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            if serve(conn, token, &poll, &mut buf, ev.is_writable()).is_err() {
                let mut conn = conns.remove(&token).expect("present");
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Accepts until the backlog is empty; EMFILE and friends end this round (the next readable edge
/// retries), as a long-running server must.
fn accept_all(
    listener: &mut TcpListener,
    poll: &Poll,
    conns: &mut HashMap<Token, Conn>,
    next: &mut usize,
) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let token = Token(*next);
                *next += 1;
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    conns.insert(
                        token,
                        Conn {
                            stream,
                            pending: Vec::new(),
                        },
                    );
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Echoes what arrives; bytes the kernel would not take wait in `pending`, with the socket registered
/// for writability (only then: a writable interest held all the time would wake the loop on every
/// ACK). `Err` closes the connection (EOF, reset).
fn serve(
    conn: &mut Conn,
    token: Token,
    poll: &Poll,
    buf: &mut [u8],
    writable: bool,
) -> Result<(), ()> {
    if !conn.pending.is_empty() {
        if !writable || !write_out(&mut conn.stream, &mut conn.pending)? {
            return Ok(()); // still blocked on the peer; reading waits too
        }
        poll.registry()
            .reregister(&mut conn.stream, token, Interest::READABLE)
            .map_err(|_| ())?;
    }
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Err(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        };
        conn.pending.extend_from_slice(&buf[..n]);
        if !write_out(&mut conn.stream, &mut conn.pending)? {
            return poll
                .registry()
                .reregister(
                    &mut conn.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|_| ());
        }
        if n < buf.len() {
            return Ok(()); // a short read drained the socket: this edge is spent
        }
    }
}

/// Writes `pending` out; `Ok(false)` if the kernel would not take it all.
fn write_out(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Result<bool, ()> {
    while !pending.is_empty() {
        match stream.write(pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
    Ok(true)
}
