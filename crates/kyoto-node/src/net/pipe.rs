//! Windows named pipes: `netPipeCreate` (a server instance, waiting for its client from the
//! start, so the connect completes as `K_CONNECTED` like a TCP connect) and `netPipeOpen` (a
//! client). Both ends then are ordinary streams of `sock.rs`. Other platforms get the same
//! functions from `unsupported.rs`, so the generated typings match.
use kyoto_rt::net::windows::named_pipe::{ClientOptions, ServerOptions};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::sock::*;
use super::*;
use crate::runtime::NativeRuntime;

/// Creates a server instance of the pipe `path` and starts waiting for a client (`K_CONNECTED`
/// or a `connect` `K_ERROR` follows); the handle or a negative errno. `max_instances` 1–255 (255:
/// unlimited).
#[napi(catch_unwind)]
pub fn net_pipe_create(
    path: String,
    first_instance: bool,
    max_instances: u32,
    in_buffer_size: u32,
    out_buffer_size: u32,
    reject_remote_clients: bool,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    if !(1..=255).contains(&max_instances) {
        return Ok(-einval());
    }
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let _g = rt.enter();
    let server = ServerOptions::new()
        .first_pipe_instance(first_instance)
        .max_instances(max_instances)
        .in_buffer_size(in_buffer_size)
        .out_buffer_size(out_buffer_size)
        .reject_remote_clients(reject_remote_clients)
        .create(&path);
    match server {
        Ok(p) => Ok(register(
            &n,
            &rt,
            Kind::Stream(Stream::PipeServer(p)),
            F_CONNECTING,
        )),
        Err(e) => Ok(neg(&e)),
    }
}

/// Opens the pipe `path` as a client: the handle (`K_CONNECTED` follows), or a negative errno
/// (`EBUSY` when every instance serves a client, `ENOENT` when there is none).
#[napi(catch_unwind)]
pub fn net_pipe_open(path: String, runtime: Option<&NativeRuntime>) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let _g = rt.enter();
    match ClientOptions::new().open(&path) {
        // Connected already; registered as connecting all the same, so the first writable
        // readiness reports K_CONNECTED as for a socket (what compat's connect tracking awaits).
        Ok(p) => Ok(register(
            &n,
            &rt,
            Kind::Stream(Stream::PipeClient(p)),
            F_CONNECTING,
        )),
        Err(e) => Ok(neg(&e)),
    }
}
