//! `kyoto-loadgen`: a native echo load generator, run as its own process.
//!
//! TCP: `--conns N` connections, each with `--inflight K` requests of `--bytes B` outstanding (a
//! request is B bytes written; it completes when the same B bytes have been echoed back, verified
//! byte for byte). UDP (`--udp`): N connected sockets × K datagrams of B bytes in flight. HTTP
//! (`--http PATH`): N keep-alive connections × K pipelined `GET PATH`, each complete when its
//! whole `200` response arrived.
//!
//! The run: connect everything (at most `--max-connecting` handshakes at a time), then `--warmup`
//! seconds of traffic that is not counted, then either `--duration` seconds or `--requests R`
//! completed requests. It prints one line of JSON: ops/s, latency percentiles in µs, its own CPU time
//! (so it can be shown not to be the bottleneck), and error counts.
//!
//! ```text
//! kyoto-loadgen --addr 127.0.0.1:7001 --conns 50 --inflight 1 --bytes 64 --warmup 1 --duration 5
//! kyoto-loadgen --addr 127.0.0.1:7001 --udp --conns 16 --inflight 8 --bytes 64 --duration 5
//! kyoto-loadgen --addr 127.0.0.1:7001 --http / --conns 50 --duration 5
//! ```
//!
//! `--watch-pid PID` also reports that process's CPU time over the measured window (from
//! `/proc/PID/stat`) and its peak RSS, so a driver gets server CPU for exactly the same window.
//!
//! Every loop is bounded in time: connecting by `--connect-timeout`, a request-count run by
//! `--timeout`; UDP datagrams unanswered after `--udp-loss-ms` count as lost and are replaced.
use kyoto_bench::args::Args;
use kyoto_bench::proc_stats;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod hist;
mod http;
mod tcp;
mod udp;

use hist::Histogram;

/// What every worker thread runs with.
pub struct Config {
    pub addr: SocketAddr,
    pub conns: usize,
    pub inflight: usize,
    pub bytes: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connecting: usize,
    pub nodelay: bool,
    pub udp_loss: Duration,
    /// HTTP mode: the request sent for each "echo".
    pub http: Option<Vec<u8>>,
    /// A server process whose CPU time over the measured window is reported too.
    pub watch_pid: Option<u32>,
}

/// Error counters; the JSON reports each.
#[derive(Default, Debug, Clone)]
pub struct Errors {
    /// Connections (or sockets) that could not be established.
    pub connect: u64,
    /// Read/write errors and unexpected EOFs (the connection is then closed).
    pub io: u64,
    /// Echoed bytes that differ from what was sent (or a datagram of the wrong size or origin).
    pub verify: u64,
    /// Requests still unanswered when a `--requests` run hit `--timeout`.
    pub timeout: u64,
    /// UDP datagrams unanswered after `--udp-loss-ms`.
    pub lost: u64,
    /// UDP replies that arrived after being counted lost (or duplicates).
    pub late: u64,
}

impl Errors {
    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.io += o.io;
        self.verify += o.verify;
        self.timeout += o.timeout;
        self.lost += o.lost;
        self.late += o.late;
    }
}

/// What one worker thread measured.
pub struct ThreadResult {
    pub hist: Histogram,
    pub completed: u64,
    pub bytes_echoed: u64,
    pub connected: usize,
    pub errors: Errors,
}

/// Coordination between the main thread and the workers.
pub struct Sync {
    /// All workers connected (+ the main thread).
    pub connected: Barrier,
    /// Set by the main thread once everyone connected: when traffic starts.
    pub t0: OnceLock<Instant>,
    pub go: Barrier,
    /// All workers ended their measured window.
    pub done: Barrier,
    /// Process CPU time (user, sys), the watched server's CPU time, and the instant when the last
    /// worker ended its window.
    pub end: Mutex<Option<End>>,
}

/// Snapshot at the end of the measured window.
pub type End = ((Duration, Duration), Option<Duration>, Instant);

impl Config {
    pub fn measure_start(&self, t0: Instant) -> Instant {
        t0 + self.warmup
    }
}

/// The deterministic payload byte `i` of request `seq` on connection `id`: a reordered, duplicated
/// or corrupted echo does not match.
#[inline]
pub fn pattern_base(id: u32, seq: u64) -> u8 {
    let h =
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (id as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    (h >> 56) as u8
}

#[inline]
pub fn pattern_byte(base: u8, i: usize) -> u8 {
    base.wrapping_add((i as u8).wrapping_mul(7))
}

fn usage() -> &'static str {
    "usage: kyoto-loadgen --addr HOST:PORT [--udp | --http PATH] [--conns 50] [--inflight 1] [--bytes 64] \
     [--threads 1] [--warmup 1] (--duration 5 | --requests N) [--timeout 60] [--connect-timeout 30] \
     [--max-connecting 256] [--no-nodelay] [--udp-loss-ms 200] [--watch-pid PID]"
}

fn parse() -> Result<(Config, bool), String> {
    let a = Args::from_env()?;
    if a.flag("help") {
        return Err(usage().to_string());
    }
    let addr: String = a.get("addr", String::new())?;
    if addr.is_empty() {
        return Err(format!("--addr is required\n{}", usage()));
    }
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| format!("--addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr}: no address"))?;
    let udp = a.flag("udp");
    let secs = |key: &str, default: f64| -> Result<Duration, String> {
        let v: f64 = a.get(key, default)?;
        if !(0.0..=86_400.0).contains(&v) {
            return Err(format!("--{key} must be between 0 and 86400 seconds"));
        }
        Ok(Duration::from_secs_f64(v))
    };
    let requests: Option<u64> = a.opt("requests")?;
    let duration = match (a.opt::<f64>("duration")?, requests) {
        (Some(_), Some(_)) => return Err("give --duration or --requests, not both".into()),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(5)),
        (Some(_), None) => Some(secs("duration", 5.0)?),
    };
    let cfg = Config {
        addr,
        conns: a.get("conns", 50usize)?,
        inflight: a.get("inflight", 1usize)?,
        bytes: a.get("bytes", 64usize)?,
        threads: a.get("threads", 1usize)?,
        warmup: secs("warmup", 1.0)?,
        duration,
        requests,
        timeout: secs("timeout", 60.0)?,
        connect_timeout: secs("connect-timeout", 30.0)?,
        max_connecting: a.get("max-connecting", 256usize)?.max(1),
        nodelay: !a.flag("no-nodelay"),
        udp_loss: Duration::from_millis(a.get("udp-loss-ms", 200u64)?.max(1)),
        http: a.opt::<String>("http")?.map(|p| http::request(&p)),
        watch_pid: a.opt("watch-pid")?,
    };
    a.finish()?;
    if cfg.conns == 0 || cfg.inflight == 0 || cfg.threads == 0 {
        return Err("--conns, --inflight and --threads must be at least 1".into());
    }
    if cfg.conns > 1_000_000 || cfg.inflight > 65_536 {
        return Err("--conns ≤ 1 000 000 and --inflight ≤ 65 536".into());
    }
    if cfg.bytes == 0 || cfg.bytes > 16 << 20 {
        return Err("--bytes must be between 1 and 16 MiB".into());
    }
    if udp && !(udp::HEADER..=65_507).contains(&cfg.bytes) {
        return Err(format!(
            "--udp needs --bytes between {} and 65507",
            udp::HEADER
        ));
    }
    if let Some(req) = &cfg.http {
        if udp {
            return Err("--http and --udp exclude each other".into());
        }
        if !req.starts_with(b"GET /") || req.iter().filter(|&&c| c == b' ').count() != 3 {
            return Err("--http needs a path that starts with / and has no spaces".into());
        }
    }
    if requests == Some(0) {
        return Err("--requests must be at least 1".into());
    }
    Ok((cfg, udp))
}

fn main() {
    let (cfg, udp) = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kyoto-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let threads = cfg.threads.min(cfg.conns);
    // Each connection is one descriptor; leave room for the poll fds and stdio.
    let fd_limit = match proc_stats::raise_fd_limit(cfg.conns as u64 + 64 + 2 * threads as u64) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kyoto-loadgen: cannot raise RLIMIT_NOFILE: {e}");
            0
        }
    };
    if fd_limit < cfg.conns as u64 + 16 {
        eprintln!(
            "kyoto-loadgen: RLIMIT_NOFILE is {fd_limit}, too low for {} connections",
            cfg.conns
        );
        std::process::exit(2);
    }
    let cfg = Arc::new(Config { threads, ..cfg });
    let sync = Arc::new(Sync {
        connected: Barrier::new(threads + 1),
        t0: OnceLock::new(),
        go: Barrier::new(threads + 1),
        done: Barrier::new(threads),
        end: Mutex::new(None),
    });
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Connection ids [lo, hi) for this thread; request quotas split the same way.
        let lo = cfg.conns * t / threads;
        let hi = cfg.conns * (t + 1) / threads;
        let (cfg, sync) = (cfg.clone(), sync.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                if udp {
                    udp::run(&cfg, &sync, lo as u32..hi as u32)
                } else {
                    tcp::run(&cfg, &sync, lo as u32..hi as u32)
                }
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("kyoto-loadgen: cannot start a thread: {e}");
                std::process::exit(1);
            }
        }
    }
    let connect_started = Instant::now();
    sync.connected.wait();
    let connect_time = connect_started.elapsed();
    let t0 = Instant::now() + Duration::from_millis(2);
    let _ = sync.t0.set(t0);
    sync.go.wait();
    let measure_start = cfg.measure_start(t0);
    if let Some(d) = measure_start.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
    let cpu_start = proc_stats::cpu_time();
    let server_start = cfg.watch_pid.and_then(proc_stats::process_cpu_time);

    let mut hist = Histogram::new();
    let mut errors = Errors::default();
    let (mut completed, mut bytes_echoed, mut connected) = (0u64, 0u64, 0usize);
    for h in handles {
        match h.join() {
            Ok(r) => {
                hist.merge(&r.hist);
                errors.add(&r.errors);
                completed += r.completed;
                bytes_echoed += r.bytes_echoed;
                connected += r.connected;
            }
            Err(_) => {
                eprintln!("kyoto-loadgen: a worker thread panicked");
                std::process::exit(1);
            }
        }
    }
    let (cpu_end, server_end, end) = sync
        .end
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(|| {
            (
                proc_stats::cpu_time(),
                cfg.watch_pid.and_then(proc_stats::process_cpu_time),
                Instant::now(),
            )
        });
    let wall = end.saturating_duration_since(measure_start).as_secs_f64();
    let user = cpu_end.0.saturating_sub(cpu_start.0).as_secs_f64();
    let sys = cpu_end.1.saturating_sub(cpu_start.1).as_secs_f64();
    let ops = if wall > 0.0 {
        completed as f64 / wall
    } else {
        0.0
    };
    let us = |ns: u64| ns as f64 / 1e3;
    let total_errors = errors.connect + errors.io + errors.verify + errors.timeout;
    let server = match (cfg.watch_pid, server_start, server_end) {
        (Some(pid), Some(a), Some(b)) => {
            let cpu = b.saturating_sub(a).as_secs_f64();
            format!(
                ",\"server\":{{\"pid\":{pid},\"cpu_s\":{cpu:.3},\"percent\":{:.1},\"peak_rss_kib\":{}}}",
                if wall > 0.01 { 100.0 * cpu / wall } else { 0.0 },
                proc_stats::process_peak_rss_kib(pid).unwrap_or(0)
            )
        }
        _ => String::new(),
    };
    println!(
        "{{\"mode\":\"{}\",\"addr\":\"{}\",\"conns\":{},\"inflight\":{},\"bytes\":{},\"threads\":{},\
\"connected\":{},\"connect_s\":{:.3},\"warmup_s\":{:.3},\"wall_s\":{:.3},\"requests\":{},\
\"ops_per_sec\":{:.1},\"mb_per_sec\":{:.3},\
\"latency_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"mean\":{:.1}}},\
\"cpu\":{{\"user_s\":{:.3},\"sys_s\":{:.3},\"percent\":{:.1}}},\"peak_rss_kib\":{},\
\"errors\":{{\"total\":{},\"connect\":{},\"io\":{},\"verify\":{},\"timeout\":{},\"lost\":{},\"late\":{}}}{}}}",
        match (udp, cfg.http.is_some()) {
            (true, _) => "udp",
            (_, true) => "http",
            _ => "tcp",
        },
        cfg.addr,
        cfg.conns,
        cfg.inflight,
        cfg.bytes,
        cfg.threads,
        connected,
        connect_time.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        wall,
        completed,
        ops,
        bytes_echoed as f64 / wall.max(1e-9) / 1e6,
        us(hist.quantile(0.50)),
        us(hist.quantile(0.90)),
        us(hist.quantile(0.99)),
        us(hist.quantile(0.999)),
        us(hist.max()),
        hist.mean() / 1e3,
        user,
        sys,
        if wall > 0.01 { 100.0 * (user + sys) / wall } else { 0.0 },
        proc_stats::peak_rss_kib().unwrap_or(0),
        total_errors,
        errors.connect,
        errors.io,
        errors.verify,
        errors.timeout,
        errors.lost,
        errors.late,
        server,
    );
    if total_errors > 0 || connected < cfg.conns {
        std::process::exit(1);
    }
}

/// Called by every worker when its measured window ended; the last one records the process CPU
/// time and the end instant (before any teardown work is done).
pub fn end_window(sync: &Sync, watch_pid: Option<u32>) {
    if sync.done.wait().is_leader() {
        let server = watch_pid.and_then(proc_stats::process_cpu_time);
        let mut end = sync.end.lock().unwrap_or_else(|e| e.into_inner());
        *end = Some((proc_stats::cpu_time(), server, Instant::now()));
    }
}
