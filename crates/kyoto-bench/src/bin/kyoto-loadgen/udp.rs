//! UDP mode: N connected sockets × K datagrams in flight, each B bytes echoed back and verified.
//!
//! A datagram carries its socket id and sequence number (12-byte header) and a pattern derived from
//! both. One unanswered after `--udp-loss-ms` counts as lost and is replaced, so K stay in flight.
//!
//! On Linux a readable socket is drained with `recvmmsg` and the replacements for what arrived go
//! out in one `sendmmsg`: the generator then spends about as many syscalls per datagram as a
//! batching server, so it is not what limits the batched benchmark (with one `recv` + one `send` per
//! datagram it ran at 95 % CPU while the server it drove idled). Every answered datagram is still
//! replaced at once, so the offered load (N × K in flight) is unchanged.
use crate::{
    end_window, pattern_base, pattern_byte, Config, Errors, Histogram, Sync, ThreadResult,
};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Socket id (u32 LE) + sequence number (u64 LE).
pub const HEADER: usize = 12;

struct Sock {
    sock: UdpSocket,
    id: u32,
    next_seq: u64,
    /// Outstanding datagrams: (seq, sent at). K is small, so a vector beats a map.
    inflight: Vec<(u64, Instant)>,
    /// Datagrams to send once the socket is writable again.
    backlog: usize,
}

struct Worker<'a> {
    cfg: &'a Config,
    socks: Vec<Sock>,
    hist: Histogram,
    errors: Errors,
    measuring: bool,
    completed: u64,
    bytes_echoed: u64,
    quota: Option<u64>,
    outstanding: u64,
    buf: Vec<u8>,
    /// Received datagrams, `slot` bytes apart; `lens` their lengths.
    rbuf: Vec<u8>,
    slot: usize,
    lens: [usize; batch::MAX],
    /// Outgoing datagrams of one `issue_many`, `cfg.bytes` apart.
    sbuf: Vec<u8>,
}

pub fn run(cfg: &Config, sync: &Sync, ids: Range<u32>) -> ThreadResult {
    let quota = cfg.requests.map(|r| {
        let (lo, hi, n) = (ids.start as u64, ids.end as u64, cfg.conns as u64);
        r * hi / n - r * lo / n
    });
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kyoto-loadgen: epoll: {e}");
            std::process::exit(1);
        }
    };
    let mut errors = Errors::default();
    let mut socks = Vec::with_capacity(ids.len());
    let local: SocketAddr = if cfg.addr.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    for id in ids {
        let made = UdpSocket::bind(local).and_then(|mut s| {
            s.connect(cfg.addr)?;
            poll.registry().register(
                &mut s,
                Token(socks.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match made {
            Ok(sock) => socks.push(Sock {
                sock,
                id,
                next_seq: 0,
                inflight: Vec::with_capacity(cfg.inflight),
                backlog: 0,
            }),
            Err(_) => errors.connect += 1,
        }
    }
    let connected = socks.len();
    let mut w = Worker {
        cfg,
        socks,
        hist: Histogram::new(),
        errors,
        measuring: false,
        completed: 0,
        bytes_echoed: 0,
        quota,
        outstanding: 0,
        buf: vec![0; cfg.bytes],
        // A slot larger than a datagram: an oversize (truncated) echo fails verification.
        rbuf: vec![0; batch::MAX * (cfg.bytes + 64)],
        slot: cfg.bytes + 64,
        lens: [0; batch::MAX],
        sbuf: vec![0; batch::MAX * cfg.bytes],
    };
    let mut events = Events::with_capacity(1024);
    sync.connected.wait();
    sync.go.wait();
    let t0 = *sync.t0.get().unwrap_or(&Instant::now());
    if let Some(d) = t0.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
    let measure_start = cfg.measure_start(t0);
    let deadline = match cfg.duration {
        Some(d) => measure_start + d,
        None => measure_start + cfg.timeout,
    };
    let now = Instant::now();
    for i in 0..w.socks.len() {
        for _ in 0..cfg.inflight {
            w.issue(i, now);
        }
    }
    let mut last_sweep = now;
    loop {
        let now = Instant::now();
        if !w.measuring && now >= measure_start {
            w.measuring = true;
            w.hist = Histogram::new();
            w.completed = 0;
            w.bytes_echoed = 0;
            w.errors.lost = 0;
            w.errors.late = 0;
        }
        if now >= deadline || (w.measuring && w.quota.is_some_and(|q| w.completed >= q)) {
            break;
        }
        if now.duration_since(last_sweep) >= Duration::from_millis(10) {
            last_sweep = now;
            w.sweep_lost(now);
        }
        let next = if w.measuring { deadline } else { measure_start };
        let timeout = next
            .saturating_duration_since(now)
            .min(Duration::from_millis(10));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("kyoto-loadgen: epoll_wait: {e}");
                break;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if ev.is_readable() {
                w.on_readable(i);
            }
            if ev.is_writable() {
                w.drain_backlog(i);
            }
        }
    }
    if w.quota.is_some() {
        w.errors.timeout += w.quota.unwrap_or(0).saturating_sub(w.completed);
    }
    end_window(sync, cfg.watch_pid);
    ThreadResult {
        hist: w.hist,
        completed: w.completed,
        bytes_echoed: w.bytes_echoed,
        connected,
        errors: w.errors,
    }
}

impl Worker<'_> {
    fn wants_more(&self) -> bool {
        match self.quota {
            Some(q) => !self.measuring || self.completed + self.outstanding < q,
            None => true,
        }
    }

    fn fill(&mut self, id: u32, seq: u64) {
        fill(&mut self.buf, id, seq);
    }

    /// Sends `n` new datagrams on socket `i` in one batch; what the socket does not take waits in
    /// its backlog.
    fn issue_many(&mut self, i: usize, n: usize, now: Instant) {
        if n == 1 || self.socks[i].backlog > 0 {
            for _ in 0..n {
                self.issue(i, now);
            }
            return;
        }
        debug_assert!(
            n <= batch::MAX,
            "one batch replaces at most one recvmmsg's worth"
        );
        let len = self.cfg.bytes;
        let (id, seq0) = (self.socks[i].id, self.socks[i].next_seq);
        for k in 0..n {
            fill(&mut self.sbuf[k * len..(k + 1) * len], id, seq0 + k as u64);
        }
        let s = &mut self.socks[i];
        match batch::send(&s.sock, &self.sbuf, len, n) {
            Ok(m) => {
                for k in 0..m {
                    s.inflight.push((seq0 + k as u64, now));
                }
                s.next_seq += m as u64;
                self.outstanding += m as u64;
                s.backlog += n - m;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.backlog += n,
            // As in `issue`: count it; `sweep_lost` tops the socket up to K again.
            Err(_) => self.errors.io += 1,
        }
    }

    /// Sends one new datagram on socket `i` (or queues it if the socket buffer is full).
    fn issue(&mut self, i: usize, now: Instant) {
        let s = &mut self.socks[i];
        if s.backlog > 0 {
            s.backlog += 1;
            return;
        }
        let (id, seq) = (s.id, s.next_seq);
        self.fill(id, seq);
        let s = &mut self.socks[i];
        match s.sock.send(&self.buf) {
            Ok(_) => {
                s.next_seq += 1;
                s.inflight.push((seq, now));
                self.outstanding += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.backlog += 1,
            // ECONNREFUSED from an earlier datagram (no server yet) and the like: count and replace.
            Err(_) => self.errors.io += 1,
        }
    }

    fn drain_backlog(&mut self, i: usize) {
        let now = Instant::now();
        while self.socks[i].backlog > 0 {
            let before = self.socks[i].next_seq;
            self.socks[i].backlog -= 1;
            self.issue(i, now);
            if self.socks[i].next_seq == before {
                break; // still full (re-queued) or failed
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        let bytes = self.cfg.bytes;
        let slot = self.slot;
        let mut rbuf = std::mem::take(&mut self.rbuf);
        loop {
            let n = match batch::recv(&self.socks[i].sock, &mut rbuf, slot, &mut self.lens) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.errors.io += 1;
                    break;
                }
            };
            let now = Instant::now();
            let mut replace = 0;
            for k in 0..n {
                let d = &rbuf[k * slot..k * slot + self.lens[k]];
                if self.on_datagram(i, d, bytes, now) && self.wants_more_after(replace) {
                    replace += 1;
                }
            }
            if replace > 0 {
                self.issue_many(i, replace, now);
            }
            if n < batch::MAX {
                break; // drained: a later datagram raises a new edge
            }
        }
        self.rbuf = rbuf;
    }

    /// Whether one more datagram should go out with `pending` already counted for this batch.
    fn wants_more_after(&self, pending: usize) -> bool {
        match self.quota {
            Some(q) => !self.measuring || self.completed + self.outstanding + (pending as u64) < q,
            None => true,
        }
    }

    /// Verifies and records one echo on socket `i`; true when it answered an outstanding datagram.
    fn on_datagram(&mut self, i: usize, d: &[u8], bytes: usize, now: Instant) -> bool {
        let n = d.len();
        let s = &self.socks[i];
        let ok_header = n == bytes && d[..4] == s.id.to_le_bytes();
        let seq = if n >= HEADER {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[4..HEADER]);
            u64::from_le_bytes(b)
        } else {
            0
        };
        let base = pattern_base(s.id, seq);
        let ok = ok_header
            && d[HEADER..]
                .iter()
                .enumerate()
                .all(|(k, &b)| b == pattern_byte(base, k));
        if !ok {
            self.errors.verify += 1;
            return false;
        }
        let s = &mut self.socks[i];
        let Some(pos) = s.inflight.iter().position(|&(q, _)| q == seq) else {
            self.errors.late += 1;
            return false;
        };
        let (_, sent) = s.inflight.swap_remove(pos);
        self.outstanding -= 1;
        if self.measuring {
            self.hist
                .record(now.saturating_duration_since(sent).as_nanos() as u64);
            self.completed += 1;
            self.bytes_echoed += bytes as u64;
        }
        true
    }

    /// Counts datagrams unanswered for `udp_loss` as lost and sends replacements.
    fn sweep_lost(&mut self, now: Instant) {
        let loss = self.cfg.udp_loss;
        for i in 0..self.socks.len() {
            let before = self.socks[i].inflight.len();
            self.socks[i]
                .inflight
                .retain(|&(_, sent)| now.saturating_duration_since(sent) < loss);
            let lost = before - self.socks[i].inflight.len();
            self.outstanding -= lost as u64;
            self.errors.lost += lost as u64;
            for _ in 0..lost {
                if self.wants_more() {
                    self.issue(i, now);
                }
            }
            // Keep K in flight when sends failed outright (e.g. ECONNREFUSED).
            let missing = self
                .cfg
                .inflight
                .saturating_sub(self.socks[i].inflight.len() + self.socks[i].backlog);
            for _ in 0..missing {
                if self.wants_more() {
                    self.issue(i, now);
                }
            }
        }
    }
}

/// Writes datagram `seq` of socket `id` into `buf` (header, then the pattern).
fn fill(buf: &mut [u8], id: u32, seq: u64) {
    buf[..4].copy_from_slice(&id.to_le_bytes());
    buf[4..HEADER].copy_from_slice(&seq.to_le_bytes());
    let base = pattern_base(id, seq);
    for (k, b) in buf[HEADER..].iter_mut().enumerate() {
        *b = pattern_byte(base, k);
    }
}

/// Batched datagram I/O on a connected socket: `recvmmsg`/`sendmmsg` on Linux.
#[cfg(target_os = "linux")]
mod batch {
    use mio::net::UdpSocket;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::ptr;

    /// Datagrams per call.
    pub const MAX: usize = 32;

    /// `n` iovecs of `stride` bytes each, back to back from `base` (callers pass `n * stride`
    /// within their buffer, so each covers its own part of it).
    fn iovecs(base: *mut u8, stride: usize, n: usize) -> [libc::iovec; MAX] {
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        for (k, v) in iov.iter_mut().enumerate().take(n) {
            v.iov_base = base.wrapping_add(k * stride).cast();
            v.iov_len = stride;
        }
        iov
    }

    fn headers(n: usize, iov: &mut [libc::iovec; MAX]) -> [libc::mmsghdr; MAX] {
        // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths and flags).
        let mut hdrs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()).take(n) {
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        hdrs
    }

    /// Receives up to `MAX` datagrams into `arena`, `slot` bytes apart; lengths go to `lens`.
    pub fn recv(
        sock: &UdpSocket,
        arena: &mut [u8],
        slot: usize,
        lens: &mut [usize; MAX],
    ) -> io::Result<usize> {
        let n = MAX.min(arena.len() / slot);
        let mut iov = iovecs(arena.as_mut_ptr(), slot, n);
        let mut hdrs = headers(n, &mut iov);
        // SAFETY: `hdrs[..n]` point at `iov[..n]`, which cover disjoint slots of `arena`, all alive
        // and exclusively borrowed for the call; the socket owns its descriptor.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for (l, h) in lens.iter_mut().zip(hdrs.iter()).take(r as usize) {
            *l = h.msg_len as usize;
        }
        Ok(r as usize)
    }

    /// Sends the first `n` datagrams of `arena` (`len` bytes each) to the connected peer; returns
    /// how many the socket took.
    pub fn send(sock: &UdpSocket, arena: &[u8], len: usize, n: usize) -> io::Result<usize> {
        let n = n.min(MAX).min(arena.len() / len.max(1));
        // The kernel only reads these iovecs' memory (`sendmmsg`).
        let mut iov = iovecs(arena.as_ptr().cast_mut(), len, n);
        let mut hdrs = headers(n, &mut iov);
        // SAFETY: `hdrs[..n]` point at `iov[..n]`, which cover `arena` (alive for the call; the
        // kernel only reads it); the socket owns its descriptor.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// One datagram per call where `recvmmsg`/`sendmmsg` are not available.
#[cfg(not(target_os = "linux"))]
mod batch {
    use mio::net::UdpSocket;
    use std::io;

    pub const MAX: usize = 1;

    pub fn recv(
        sock: &UdpSocket,
        arena: &mut [u8],
        slot: usize,
        lens: &mut [usize; MAX],
    ) -> io::Result<usize> {
        lens[0] = sock.recv(&mut arena[..slot])?;
        Ok(1)
    }

    pub fn send(sock: &UdpSocket, arena: &[u8], len: usize, n: usize) -> io::Result<usize> {
        let mut sent = 0;
        while sent < n {
            match sock.send(&arena[sent * len..(sent + 1) * len]) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}
