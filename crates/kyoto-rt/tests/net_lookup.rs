//! `net::lookup_host`: names resolve on the blocking pool, IP literals at once.
mod common;
use common::run;
use kyoto_rt::net::lookup_host;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[test]
fn lookup_host_of_localhost_resolves_to_loopback_addresses() {
    run(async {
        let addrs: Vec<SocketAddr> = lookup_host("localhost").await.expect("lookup").collect();
        assert!(!addrs.is_empty());
        for a in &addrs {
            assert!(a.ip().is_loopback(), "{a} is a loopback address");
            assert_eq!(a.port(), 0);
        }
        let with_port: Vec<SocketAddr> = lookup_host("localhost:8080")
            .await
            .expect("lookup with port")
            .collect();
        assert!(with_port
            .iter()
            .all(|a| a.port() == 8080 && a.ip().is_loopback()));
    });
}

#[test]
fn lookup_host_of_127_0_0_1_port_80_returns_exactly_that_address() {
    run(async {
        let addrs: Vec<SocketAddr> = lookup_host("127.0.0.1:80").await.expect("lookup").collect();
        assert_eq!(addrs, ["127.0.0.1:80".parse::<SocketAddr>().expect("addr")]);
        let v6: Vec<SocketAddr> = lookup_host("[::1]:443").await.expect("lookup").collect();
        assert_eq!(v6, ["[::1]:443".parse::<SocketAddr>().expect("addr")]);
    });
}

#[test]
fn an_ip_literal_resolves_on_the_first_poll_even_outside_a_runtime() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(lookup_host("10.1.2.3:4"));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(addrs)) => {
            assert_eq!(
                addrs.collect::<Vec<_>>(),
                ["10.1.2.3:4".parse::<SocketAddr>().expect("addr")]
            )
        }
        Poll::Ready(Err(e)) => panic!("literal failed: {e}"),
        Poll::Pending => panic!("a literal must not wait for the blocking pool"),
    }
}

#[test]
fn a_host_name_outside_a_runtime_is_an_error_not_a_panic() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(lookup_host("localhost"));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Err(_)) => {}
        Poll::Ready(Ok(_)) => panic!("resolved without a runtime"),
        Poll::Pending => panic!("pending without a runtime"),
    }
}

#[test]
fn malformed_hosts_are_invalid_input() {
    run(async {
        for bad in ["", "host:notaport", "[::1", "a:b:c"] {
            let err = match lookup_host(bad).await {
                Ok(_) => panic!("{bad:?} resolved"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    });
}
