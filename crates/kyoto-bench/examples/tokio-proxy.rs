//! `tokio-proxy`: a TCP proxy on the `tokio` crate, the Rust peer of benchmark P3 (tokio is a
//! dev-dependency of this crate, never a normal one). One task per accepted connection: connect to
//! `--upstream HOST:PORT`, then `tokio::io::copy_bidirectional(client, upstream)`; `--workers N`
//! (default 1) worker threads. Nagle off on both sides, as the other P3 proxies do.
//!
//! Prints `listening <addr>` once bound, then serves until killed.
//!
//! Build: `cargo build --release -p kyoto-bench --example tokio-proxy`.
use kyoto_bench::args::Args;
use kyoto_bench::proc_stats;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn main() {
    if let Err(e) = run() {
        eprintln!("tokio-proxy: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::from_env()?;
    let host: String = a.get("host", "127.0.0.1".to_string())?;
    let port: u16 = a.get("port", 0)?;
    let workers: usize = a.get("workers", 1)?;
    let upstream: String = a.get("upstream", String::new())?;
    a.finish()?;
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let upstream: SocketAddr = upstream
        .parse()
        .map_err(|e| format!("--upstream HOST:PORT is required ({e})"))?;
    let _ = proc_stats::raise_fd_limit(65_536);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tokio-proxy")
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let addr = format!("{host}:{port}");
    rt.block_on(serve(addr, upstream))
}

/// Binds with `SO_REUSEADDR` and a backlog of 4096, like the other P3 proxies.
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr
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

async fn serve(addr: String, upstream: SocketAddr) -> Result<(), String> {
    let listener = listen(&addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {local}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    loop {
        match listener.accept().await {
            Ok((mut client, _)) => {
                drop(tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    // A connect that hangs must not pin the task forever.
                    let connect =
                        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(upstream));
                    let Ok(Ok(mut up)) = connect.await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
