//! IPv6 zone ids (RFC 4007): `fe80::1%eth0` names the link a link-local address lives on.
//!
//! Addresses from JS may carry a `%zone`: an interface name or a number, parsed as libuv's
//! `uv_ip6_addr` does (names through `if_nametoindex` on Unix, numbers only on Windows). An unknown
//! name is an error here, where libuv would quietly drop the zone and leave the kernel to refuse
//! the address later.
//!
//! Addresses to JS carry a zone the way Node's `AddressToJS` writes one: only on a link-local
//! address whose scope id is set, as the interface's name on Unix and the number on Windows.
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `ip` (an IPv6 one may end in `%zone`) and `port` as a socket address; None when the text is not
/// an address or names no interface.
pub fn parse_socket_addr(ip: &str, port: u16) -> Option<SocketAddr> {
    match ip.split_once('%') {
        None => ip
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port)),
        Some((ip, zone)) => {
            let ip: Ipv6Addr = ip.parse().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                0,
                zone_index(zone)?,
            )))
        }
    }
}

/// The interface index a zone names: its number, or (Unix) the index of the interface so named.
pub fn zone_index(zone: &str) -> Option<u32> {
    if let Ok(n) = zone.parse::<u32>() {
        return Some(n);
    }
    sys::name_to_index(zone)
}

/// The scope id Node would print after `%` for `addr`: a link-local IPv6 address's non-zero one.
pub fn printed_scope(addr: &SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V6(a) if a.scope_id() != 0 && a.ip().is_unicast_link_local() => {
            Some(a.scope_id())
        }
        _ => None,
    }
}

/// `addr`'s IP as Node prints it: with `%zone` on a scoped link-local address.
pub fn ip_text(addr: &SocketAddr) -> String {
    match printed_scope(addr) {
        Some(scope) => format!("{}%{}", addr.ip(), zone_name(scope)),
        None => addr.ip().to_string(),
    }
}

/// The text after `%` for interface `index`: its name on Unix (the number if it has none).
pub fn zone_name(index: u32) -> String {
    sys::index_to_name(index).unwrap_or_else(|| index.to_string())
}

#[cfg(unix)]
mod sys {
    use std::ffi::{CStr, CString};

    pub fn name_to_index(name: &str) -> Option<u32> {
        let c = CString::new(name).ok()?;
        // SAFETY: `c` is a NUL-terminated string that lives across the call; the function only
        // reads it.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        (i != 0).then_some(i)
    }

    pub fn index_to_name(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `buf` has the IF_NAMESIZE bytes the function may write (name and NUL).
        let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success `buf` holds a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }
}

#[cfg(not(unix))]
mod sys {
    /// libuv takes only numeric zones on Windows.
    pub fn name_to_index(_name: &str) -> Option<u32> {
        None
    }

    /// Node prints the number on Windows.
    pub fn index_to_name(_index: u32) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_zone_becomes_the_scope_id() {
        let a = parse_socket_addr("fe80::1%7", 80).unwrap();
        let SocketAddr::V6(v6) = a else {
            panic!("not v6")
        };
        assert_eq!(v6.scope_id(), 7);
        assert_eq!(v6.port(), 80);
    }

    #[test]
    fn addresses_without_a_zone_parse_as_before() {
        assert_eq!(
            parse_socket_addr("127.0.0.1", 1),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("::1", 2),
            Some("[::1]:2".parse().unwrap())
        );
    }

    #[test]
    fn a_zone_on_ipv4_or_an_empty_or_unknown_zone_is_rejected() {
        assert_eq!(parse_socket_addr("127.0.0.1%1", 1), None);
        assert_eq!(parse_socket_addr("fe80::1%", 1), None);
        assert_eq!(parse_socket_addr("fe80::1%no-such-interface0", 1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_interface_name_resolves_to_its_index_and_back() {
        let a = parse_socket_addr("fe80::1%lo", 0).unwrap();
        let SocketAddr::V6(v6) = a else {
            panic!("not v6")
        };
        assert_eq!(v6.scope_id(), 1);
        assert_eq!(ip_text(&a), "fe80::1%lo");
    }

    #[test]
    fn only_scoped_link_local_addresses_print_a_zone() {
        let scoped_global =
            SocketAddr::V6(SocketAddrV6::new("2001:db8::1".parse().unwrap(), 0, 0, 3));
        assert_eq!(ip_text(&scoped_global), "2001:db8::1");
        let unscoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 0, 0, 0));
        assert_eq!(ip_text(&unscoped), "fe80::1");
        assert_eq!(ip_text(&"10.0.0.1:5".parse().unwrap()), "10.0.0.1");
    }
}
