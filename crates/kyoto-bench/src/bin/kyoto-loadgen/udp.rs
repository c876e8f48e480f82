//! UDP mode: N connected sockets × K datagrams in flight, each B bytes echoed back and verified.
//!
//! A datagram carries its socket id and sequence number (12-byte header) and a pattern derived from
//! both. One unanswered after `--udp-loss-ms` counts as lost and is replaced, so K stay in flight.
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
    rbuf: Vec<u8>,
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
        rbuf: vec![0; 65_536],
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
        self.buf[..4].copy_from_slice(&id.to_le_bytes());
        self.buf[4..HEADER].copy_from_slice(&seq.to_le_bytes());
        let base = pattern_base(id, seq);
        for (k, b) in self.buf[HEADER..].iter_mut().enumerate() {
            *b = pattern_byte(base, k);
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
        loop {
            let n = match self.socks[i].sock.recv(&mut self.rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.errors.io += 1;
                    break;
                }
            };
            let now = Instant::now();
            let d = &self.rbuf[..n];
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
                continue;
            }
            let s = &mut self.socks[i];
            let Some(pos) = s.inflight.iter().position(|&(q, _)| q == seq) else {
                self.errors.late += 1;
                continue;
            };
            let (_, sent) = s.inflight.swap_remove(pos);
            self.outstanding -= 1;
            if self.measuring {
                self.hist
                    .record(now.saturating_duration_since(sent).as_nanos() as u64);
                self.completed += 1;
                self.bytes_echoed += bytes as u64;
            }
            if self.wants_more() {
                self.issue(i, now);
            }
        }
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
