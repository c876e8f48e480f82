//! TCP mode: N connections × K requests in flight, each request B bytes echoed back and verified
//! (or, with `--http`, an HTTP GET answered by a whole response: see `http.rs`).
use crate::http::{Next, ResponseReader};
use crate::{
    end_window, pattern_base, pattern_byte, Config, Errors, Histogram, Sync, ThreadResult,
};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::time::{Duration, Instant};

#[derive(PartialEq, Eq, Clone, Copy)]
enum State {
    Idle,
    Connecting,
    Ready,
    Dead,
}

struct Conn {
    stream: Option<TcpStream>,
    id: u32,
    state: State,
    /// Request bytes not yet accepted by the kernel.
    wbuf: Vec<u8>,
    woff: usize,
    next_seq: u64,
    /// The request whose echo is arriving, and how many of its bytes arrived.
    recv_seq: u64,
    recv_off: usize,
    recv_base: u8,
    /// When each outstanding request was issued, oldest first.
    sent_at: VecDeque<Instant>,
    /// HTTP mode: the responses arriving.
    responses: ResponseReader,
}

struct Worker<'a> {
    cfg: &'a Config,
    poll: Poll,
    conns: Vec<Conn>,
    hist: Histogram,
    errors: Errors,
    measuring: bool,
    /// Completions (and echoed bytes) in the measured window.
    completed: u64,
    bytes_echoed: u64,
    /// Requests outstanding over all connections of this thread.
    outstanding: u64,
    /// Request-count runs: completions this thread owes.
    quota: Option<u64>,
    rbuf: Vec<u8>,
}

pub fn run(cfg: &Config, sync: &Sync, ids: Range<u32>) -> ThreadResult {
    let quota = cfg.requests.map(|r| {
        // Split the total like the connections.
        let (lo, hi) = (ids.start as u64, ids.end as u64);
        let n = cfg.conns as u64;
        r * hi / n - r * lo / n
    });
    let mut w = match Poll::new() {
        Ok(poll) => Worker {
            cfg,
            poll,
            conns: ids
                .clone()
                .map(|id| Conn {
                    stream: None,
                    id,
                    state: State::Idle,
                    wbuf: Vec::with_capacity(cfg.bytes * cfg.inflight),
                    woff: 0,
                    next_seq: 0,
                    recv_seq: 0,
                    recv_off: 0,
                    recv_base: pattern_base(id, 0),
                    sent_at: VecDeque::with_capacity(cfg.inflight),
                    responses: ResponseReader::default(),
                })
                .collect(),
            hist: Histogram::new(),
            errors: Errors::default(),
            measuring: false,
            completed: 0,
            bytes_echoed: 0,
            outstanding: 0,
            quota,
            rbuf: vec![0; 64 * 1024],
        },
        Err(e) => {
            eprintln!("kyoto-loadgen: epoll: {e}");
            std::process::exit(1);
        }
    };
    let mut events = Events::with_capacity(1024);
    w.connect_all(&mut events);
    let connected = w.conns.iter().filter(|c| c.state == State::Ready).count();

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
    for i in 0..w.conns.len() {
        if w.conns[i].state == State::Ready {
            for _ in 0..cfg.inflight {
                w.issue(i, now);
            }
            w.flush(i);
        }
    }
    loop {
        let now = Instant::now();
        if !w.measuring && now >= measure_start {
            w.measuring = true;
            w.hist = Histogram::new();
            w.completed = 0;
            w.bytes_echoed = 0;
        }
        if now >= deadline {
            break;
        }
        if w.measuring && w.quota.is_some_and(|q| w.completed >= q) {
            break;
        }
        if w.quota.is_none()
            && w.outstanding == 0
            && w.conns.iter().all(|c| c.state != State::Ready)
        {
            break; // every connection died: nothing left to measure
        }
        let next = if w.measuring { deadline } else { measure_start };
        let timeout = next
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        if let Err(e) = w.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("kyoto-loadgen: epoll_wait: {e}");
                break;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                w.on_readable(i);
            }
            if ev.is_writable() {
                w.flush(i);
            }
        }
    }
    if w.quota.is_some() {
        // Unanswered requests of a request-count run.
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
    /// Connects every connection, at most `max_connecting` handshakes at a time, within
    /// `connect_timeout`.
    fn connect_all(&mut self, events: &mut Events) {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        let mut next = 0;
        let mut connecting = 0;
        let mut done = 0;
        while done < self.conns.len() {
            while connecting < self.cfg.max_connecting && next < self.conns.len() {
                match self.start_connect(next) {
                    Ok(()) => connecting += 1,
                    Err(_) => {
                        self.errors.connect += 1;
                        self.conns[next].state = State::Dead;
                        done += 1;
                    }
                }
                next += 1;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let timeout = (deadline - now).min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let c = &mut self.conns[i];
                if c.state != State::Connecting || !(ev.is_writable() || ev.is_error()) {
                    continue;
                }
                let Some(stream) = c.stream.as_ref() else {
                    continue;
                };
                match (stream.take_error(), stream.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        c.state = State::Ready;
                        if self.cfg.nodelay {
                            let _ = stream.set_nodelay(true);
                        }
                    }
                    // Not connected yet: a spurious wake-up, keep waiting.
                    (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => continue,
                    _ => {
                        c.state = State::Dead;
                        c.stream = None;
                        self.errors.connect += 1;
                    }
                }
                connecting -= 1;
                done += 1;
            }
        }
        for c in &mut self.conns {
            if matches!(c.state, State::Connecting | State::Idle) {
                c.state = State::Dead;
                c.stream = None;
                self.errors.connect += 1;
            }
        }
    }

    fn start_connect(&mut self, i: usize) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.cfg.addr)?;
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = &mut self.conns[i];
        c.stream = Some(stream);
        c.state = State::Connecting;
        Ok(())
    }

    /// Queues one request on connection `i` (written by the next `flush`).
    fn issue(&mut self, i: usize, now: Instant) {
        let bytes = self.cfg.bytes;
        let c = &mut self.conns[i];
        let base = pattern_base(c.id, c.next_seq);
        c.next_seq += 1;
        if c.woff > 0 && c.woff == c.wbuf.len() {
            c.wbuf.clear();
            c.woff = 0;
        }
        match &self.cfg.http {
            Some(request) => c.wbuf.extend_from_slice(request),
            None => c.wbuf.extend((0..bytes).map(|k| pattern_byte(base, k))),
        }
        c.sent_at.push_back(now);
        self.outstanding += 1;
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state != State::Ready {
            return;
        }
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while c.woff < c.wbuf.len() {
            match stream.write(&c.wbuf[c.woff..]) {
                Ok(0) => {
                    self.kill(i);
                    return;
                }
                Ok(n) => c.woff += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.kill(i);
                    return;
                }
            }
        }
        c.wbuf.clear();
        c.woff = 0;
    }

    /// Closes connection `i` after an I/O error or unexpected EOF.
    fn kill(&mut self, i: usize) {
        if self.conns[i].state != State::Dead {
            self.errors.io += 1;
        }
        self.close(i);
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state == State::Dead {
            return;
        }
        self.outstanding -= c.sent_at.len() as u64;
        c.sent_at.clear();
        c.state = State::Dead;
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn on_readable(&mut self, i: usize) {
        if self.conns[i].state != State::Ready {
            return;
        }
        let mut rbuf = std::mem::take(&mut self.rbuf);
        let mut issued = false;
        while let Some(stream) = self.conns[i].stream.as_mut() {
            let n = match stream.read(&mut rbuf) {
                Ok(0) => {
                    // The server closed a connection we still use.
                    self.kill(i);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.kill(i);
                    break;
                }
            };
            let now = Instant::now();
            if !self.consume(i, &rbuf[..n], now, &mut issued) {
                self.errors.verify += 1;
                self.close(i);
                break;
            }
            if n < rbuf.len() {
                break; // short read: the socket is drained (saves an EAGAIN read)
            }
        }
        self.rbuf = rbuf;
        if issued {
            self.flush(i);
        }
    }

    /// Verifies echoed bytes (or HTTP responses) and completes requests. False on a mismatch.
    fn consume(&mut self, i: usize, mut data: &[u8], now: Instant, issued: &mut bool) -> bool {
        if self.cfg.http.is_some() {
            return self.consume_http(i, data, now, issued);
        }
        let bytes = self.cfg.bytes;
        while !data.is_empty() {
            let c = &mut self.conns[i];
            if c.sent_at.is_empty() {
                return false; // bytes nobody asked for
            }
            let take = (bytes - c.recv_off).min(data.len());
            let base = c.recv_base;
            let off = c.recv_off;
            if data[..take]
                .iter()
                .enumerate()
                .any(|(k, &b)| b != pattern_byte(base, off + k))
            {
                return false;
            }
            data = &data[take..];
            c.recv_off += take;
            if c.recv_off < bytes {
                continue;
            }
            c.recv_off = 0;
            c.recv_seq += 1;
            c.recv_base = pattern_base(c.id, c.recv_seq);
            self.complete(i, bytes, now, issued);
        }
        true
    }

    fn consume_http(&mut self, i: usize, data: &[u8], now: Instant, issued: &mut bool) -> bool {
        self.conns[i].responses.push(data);
        loop {
            match self.conns[i].responses.next() {
                Next::Partial => return true,
                Next::Bad => return false,
                Next::Response { body } => {
                    if self.conns[i].sent_at.is_empty() {
                        return false; // a response nobody asked for
                    }
                    self.complete(i, body, now, issued);
                }
            }
        }
    }

    /// Completes connection `i`'s oldest request (`bytes` answered) and issues the next one.
    fn complete(&mut self, i: usize, bytes: usize, now: Instant, issued: &mut bool) {
        let sent = self.conns[i].sent_at.pop_front().unwrap_or(now);
        self.outstanding -= 1;
        if self.measuring {
            self.hist
                .record(now.saturating_duration_since(sent).as_nanos() as u64);
            self.completed += 1;
            self.bytes_echoed += bytes as u64;
        }
        let more = match self.quota {
            Some(q) => !self.measuring || self.completed + self.outstanding < q,
            None => true,
        };
        if more {
            self.issue(i, now);
            *issued = true;
        }
    }
}
