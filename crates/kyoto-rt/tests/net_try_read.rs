//! `try_read` after a short read: the readiness is cleared without losing data that arrives later.
use kyoto_rt::io::AsyncWriteExt;
use kyoto_rt::net::{TcpListener, TcpStream};
use kyoto_rt::runtime::Builder;
use std::io::ErrorKind;

#[test]
fn a_short_try_read_clears_readiness_and_the_next_data_is_still_reported() {
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        for round in 0..50u8 {
            let msg = [round; 5];
            client.write_all(&msg).await.unwrap();
            let mut got = Vec::new();
            while got.len() < 5 {
                server.readable().await.unwrap();
                match server.try_read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, msg);
            // Drained by a short read: the cached readiness is gone, no system call needed to know.
            assert_eq!(
                server.try_read(&mut buf).unwrap_err().kind(),
                ErrorKind::WouldBlock
            );
        }
    });
}
