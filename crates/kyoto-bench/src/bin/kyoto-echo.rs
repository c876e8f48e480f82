//! `kyoto-echo`: a TCP (or UDP) echo server on `kyoto_rt` — native Rust, no Node.
//!
//! TCP: one task per connection running `kyoto_rt::io::copy(read half, write half)`, the P2 shape.
//! UDP (`--udp`): one task per worker, each `recv_from` → `send_to` on a shared socket; with
//! `--batch`, `recv_batch` (`recvmmsg`) → `send_many` (`sendmmsg`) instead — the native ceiling of
//! benchmark P4's batched row.
//!
//! Prints `listening <addr>` on stdout once bound (`--port 0` picks a free port), then serves until
//! killed. `--workers N` sets the multi-thread runtime's worker count (default 2).
use kyoto_bench::args::Args;
use kyoto_bench::proc_stats;
use kyoto_rt::net::{RecvBatch, SendMsg, TcpListener, TcpSocket, UdpSocket};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("kyoto-echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::from_env()?;
    let host: String = a.get("host", "127.0.0.1".to_string())?;
    let port: u16 = a.get("port", 0)?;
    let workers: usize = a.get("workers", 2)?;
    let udp = a.flag("udp");
    let batch = a.flag("batch");
    let nodelay = !a.flag("no-nodelay");
    a.finish()?;
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    // 10 000-connection runs need the descriptors.
    let _ = proc_stats::raise_fd_limit(65_536);
    let rt = kyoto_rt::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("kyoto-echo")
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let addr = format!("{host}:{port}");
    rt.block_on(async move {
        if udp {
            serve_udp(&addr, workers, batch).await
        } else {
            serve_tcp(&addr, nodelay).await
        }
    })
}

fn announce(addr: std::io::Result<std::net::SocketAddr>) -> Result<(), String> {
    let addr = addr.map_err(|e| format!("local_addr: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// Binds with `SO_REUSEADDR` and a backlog of 4096 (as the node:net peer does), so a 10 000-connection
/// ramp-up is not throttled by SYN retransmits on a full accept queue.
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn serve_tcp(addr: &str, nodelay: bool) -> Result<(), String> {
    let listener = listen(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    announce(listener.local_addr())?;
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                if nodelay {
                    let _ = stream.set_nodelay(true);
                }
                drop(kyoto_rt::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    // A reset peer ends the copy with an error; nothing to report for an echo.
                    let _ = kyoto_rt::io::copy(&mut r, &mut w).await;
                }));
            }
            // EMFILE and friends: keep the listener, back off briefly, accept again.
            Err(_) => kyoto_rt::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_udp(addr: &str, tasks: usize, batch: bool) -> Result<(), String> {
    let sock = Arc::new(
        UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?,
    );
    announce(sock.local_addr())?;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let sock = sock.clone();
        if batch {
            handles.push(kyoto_rt::spawn(async move {
                let mut batch = RecvBatch::new(64, 2048);
                loop {
                    if sock.recv_batch(&mut batch).await.is_err() {
                        continue;
                    }
                    let msgs: Vec<SendMsg<'_>> = batch
                        .iter()
                        .map(|(data, meta)| SendMsg::to(data, meta.addr))
                        .collect();
                    let mut sent = 0;
                    while sent < msgs.len() {
                        match sock.send_many(&msgs[sent..]).await {
                            Ok(n) => sent += n,
                            Err(_) => sent += 1, // drop the one that failed, as the JS echo does
                        }
                    }
                }
            }));
            continue;
        }
        handles.push(kyoto_rt::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let _ = sock.send_to(&buf[..n], peer).await;
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}
