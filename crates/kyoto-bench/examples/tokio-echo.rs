//! `tokio-echo`: the `kyoto-echo` server on the `tokio` crate, for benchmark P2 only (tokio is a
//! dev-dependency of this crate, never a normal one). Same shape: one task per connection running
//! `tokio::io::copy(read half, write half)`; `--workers N` (default 2) worker threads.
//!
//! Build: `cargo build --release -p kyoto-bench --example tokio-echo`.
use kyoto_bench::args::Args;
use kyoto_bench::proc_stats;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

fn main() {
    if let Err(e) = run() {
        eprintln!("tokio-echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::from_env()?;
    let host: String = a.get("host", "127.0.0.1".to_string())?;
    let port: u16 = a.get("port", 0)?;
    let workers: usize = a.get("workers", 2)?;
    let udp = a.flag("udp");
    let nodelay = !a.flag("no-nodelay");
    a.finish()?;
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let _ = proc_stats::raise_fd_limit(65_536);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tokio-echo")
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let addr = format!("{host}:{port}");
    rt.block_on(async move {
        if udp {
            serve_udp(&addr, workers).await
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
                drop(tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_udp(addr: &str, tasks: usize) -> Result<(), String> {
    let sock = Arc::new(
        UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?,
    );
    announce(sock.local_addr())?;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let sock = sock.clone();
        handles.push(tokio::spawn(async move {
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
