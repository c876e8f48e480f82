//! [`lookup_host`]: resolve a host name without blocking a worker thread.
use crate::runtime::Handle;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Resolves `host` to socket addresses, running the system resolver on the blocking pool so a slow
/// DNS lookup never blocks a worker thread.
///
/// `host` is `"name:port"`, `"[v6]:port"`, an IP address with or without a port (`"127.0.0.1:80"`,
/// `"::1"`, `"[::1]"`) or a bare host name (`"localhost"`). Without a port, the addresses carry port
/// 0. IP literals are parsed at once, without the blocking pool.
///
/// Resolving a host name needs a runtime (an error outside one). Cancelling the returned future
/// does not stop a lookup that already started on the pool.
///
/// ```
/// # kyoto_rt::Runtime::new().unwrap().block_on(async {
/// let addrs: Vec<_> = kyoto_rt::net::lookup_host("127.0.0.1:80").await?.collect();
/// assert_eq!(addrs, ["127.0.0.1:80".parse().unwrap()]);
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub async fn lookup_host(host: &str) -> io::Result<impl Iterator<Item = SocketAddr>> {
    let (name, port) = match parse(host)? {
        Parsed::Literal(addr) => return Ok(vec![addr].into_iter()),
        Parsed::Name(name, port) => (name.to_owned(), port),
    };
    let handle = Handle::try_current().map_err(|e| io::Error::other(e.to_string()))?;
    let lookup = handle.spawn_blocking(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    });
    match lookup.await {
        Ok(result) => Ok(result?.into_iter()),
        Err(e) if e.is_cancelled() => Err(io::Error::other(
            "the host lookup was cancelled: the runtime is shutting down",
        )),
        Err(e) => Err(io::Error::other(format!("the host lookup failed: {e}"))),
    }
}

#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    Literal(SocketAddr),
    Name(&'a str, u16),
}

fn invalid(host: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid host to look up: {host:?}"),
    )
}

fn parse(host: &str) -> io::Result<Parsed<'_>> {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(Parsed::Literal(addr));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Parsed::Literal(SocketAddr::new(ip, 0)));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<IpAddr>() {
            Ok(ip) => Ok(Parsed::Literal(SocketAddr::new(ip, 0))),
            Err(_) => Err(invalid(host)),
        };
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => match port.parse::<u16>() {
            Ok(port) => (name, port),
            Err(_) => return Err(invalid(host)),
        },
        None => (host, 0),
    };
    if name.is_empty() || name.contains([':', '[', ']']) {
        return Err(invalid(host));
    }
    Ok(Parsed::Name(name, port))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lookup_host_parses_literals_names_and_ports() {
        let lit = |s: &str| Parsed::Literal(s.parse().expect("literal"));
        assert_eq!(parse("127.0.0.1:80").ok(), Some(lit("127.0.0.1:80")));
        assert_eq!(parse("127.0.0.1").ok(), Some(lit("127.0.0.1:0")));
        assert_eq!(parse("::1").ok(), Some(lit("[::1]:0")));
        assert_eq!(parse("[::1]").ok(), Some(lit("[::1]:0")));
        assert_eq!(parse("[::1]:443").ok(), Some(lit("[::1]:443")));
        assert_eq!(parse("localhost").ok(), Some(Parsed::Name("localhost", 0)));
        assert_eq!(
            parse("example.com:8080").ok(),
            Some(Parsed::Name("example.com", 8080))
        );
        for bad in ["", ":80", "host:port", "host:70000", "[nope]", "a:b:c"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
