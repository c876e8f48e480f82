//! Windows named pipes: a server instance and a client, connect before and after the client
//! opened, end of stream, busy and missing names, the first-instance flag.
#![cfg(windows)]
mod common;
use common::run;
use kyoto_rt::io::{AsyncReadExt, AsyncWriteExt};
use kyoto_rt::net::windows::named_pipe::{ClientOptions, ServerOptions};
use std::sync::atomic::{AtomicUsize, Ordering};

/// ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_ACCESS_DENIED.
const NOT_FOUND: i32 = 2;
const PIPE_BUSY: i32 = 231;
const ACCESS_DENIED: i32 = 5;

fn pipe_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(r"\\.\pipe\kyoto-rt-{tag}-{}-{n}", std::process::id())
}

#[test]
fn a_server_instance_connects_to_a_client_and_bytes_flow_both_ways() {
    run(async {
        let name = pipe_name("echo");
        let mut server = ServerOptions::new().create(&name).unwrap();
        let connecting = kyoto_rt::spawn(async move {
            server.connect().await.unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            server.write_all(&buf).await.unwrap();
            server
        });
        let mut client = ClientOptions::new().open(&name).unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(connecting.await.unwrap());
    });
}

#[test]
fn connect_completes_at_once_when_the_client_opened_first() {
    run(async {
        let name = pipe_name("early");
        let server = ServerOptions::new().create(&name).unwrap();
        let _client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        server.connect().await.unwrap();
    });
}

#[test]
fn dropping_the_client_makes_the_server_read_end_of_stream() {
    run(async {
        let name = pipe_name("eof");
        let mut server = ServerOptions::new().create(&name).unwrap();
        let mut client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        client.write_all(b"bye").await.unwrap();
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    });
}

#[test]
fn opening_a_missing_name_fails_and_a_busy_single_instance_reports_busy() {
    run(async {
        let missing = ClientOptions::new().open(pipe_name("missing")).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(NOT_FOUND));
        let name = pipe_name("busy");
        let server = ServerOptions::new().max_instances(1).create(&name).unwrap();
        let _client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        let busy = ClientOptions::new().open(&name).unwrap_err();
        assert_eq!(busy.raw_os_error(), Some(PIPE_BUSY));
    });
}

#[test]
fn first_pipe_instance_refuses_a_name_that_already_has_one() {
    run(async {
        let name = pipe_name("first");
        let _first = ServerOptions::new()
            .first_pipe_instance(true)
            .create(&name)
            .unwrap();
        let again = ServerOptions::new()
            .first_pipe_instance(true)
            .create(&name)
            .unwrap_err();
        assert_eq!(again.raw_os_error(), Some(ACCESS_DENIED));
        ServerOptions::new().create(&name).unwrap();
    });
}
