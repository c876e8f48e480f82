//! kyoto's Node.js binding (napi-rs v3).
//!
//! The TypeScript layer (`lib/*.ts`) is the public API; this crate exposes the small native surface it
//! needs: the completion bridge ([`bridge`]), runtime handles over `kyoto_rt` ([`runtime`]) and
//! timers registered directly in the runtime's wheel ([`time`]). All JS
//! argument validation happens in TypeScript first; the checks here are a second line so that no
//! input can panic Rust.
#![deny(unsafe_op_in_unsafe_fn)]

mod bridge;
pub mod console;
pub mod env_module;
pub mod net;
mod runtime;
pub mod sync;
mod time;

use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use runtime::NativeRuntime;

fn invalid(msg: &str) -> Error {
    Error::new(Status::InvalidArg, msg.to_owned())
}

/// Installs this thread's completion bridge: `onBatch(count, values)` is called once per batch of
/// completions; the ids and statuses of the batch are in the first `count` slots of `ids` and
/// `statuses` (status 0: resolved with `undefined`; 1: resolved with the next value of `values`; 2:
/// rejected, the next two values are the error's `code` and `message`). Idempotent per thread.
#[napi(
    ts_args_type = "onBatch: (count: number, values: unknown[] | undefined) => void, ids: Uint32Array, statuses: Uint8Array"
)]
pub fn bridge_init(env: Env, on_batch: Unknown, ids: Unknown, statuses: Unknown) -> Result<()> {
    if on_batch.get_type()? != ValueType::Function {
        return Err(invalid("onBatch must be a function"));
    }
    bridge::init(env.raw(), on_batch.raw(), ids.raw(), statuses.raw())
}

/// Adds `delta` (±) to this thread's count of things holding the event loop open (JS-level handles
/// such as an `Interval`). The loop is held while the count of holds and ref'd operations is > 0.
#[napi]
pub fn keep_alive(delta: i32) -> Result<()> {
    bridge::current()?.add_ref(delta as i64);
    Ok(())
}

/// Cancels a cancellable operation; its promise is settled by the caller. Returns whether it was
/// still pending.
#[napi]
pub fn cancel(id: u32) -> Result<bool> {
    Ok(bridge::current()?.cancel(id))
}

/// The number of holds on this thread's event loop (ref'd pending operations + `keepAlive`).
#[napi]
pub fn bridge_refs() -> Result<f64> {
    Ok(bridge::current()?.refs() as f64)
}

/// How many env-teardown hooks this thread holds (a test checks that they stay bounded).
#[napi]
pub fn env_teardown_hooks() -> Result<u32> {
    Ok(bridge::current()?.teardown_hooks() as u32)
}

/// Number of completions queued for this thread and not yet delivered to JS (the paused clock's
/// auto-advance waits until they are: the JS thread is not idle before).
#[napi]
pub fn bridge_queued() -> Result<u32> {
    Ok(bridge::current()?.queued() as u32)
}

/// The default runtime's clock, in milliseconds since the process-wide origin (follows
/// `pause`/`advance`). Starts the default runtime if needed.
#[napi(catch_unwind)]
pub fn now() -> Result<f64> {
    Ok(time::to_ms(
        runtime::default_runtime()?.handle().clock_now(),
    ))
}

/// Test hook: a plain native thread (not a runtime thread) completes `ids` in order, each resolved
/// with `value` when given. The operations are ref'd, as any operation JS awaits: until their
/// completions are drained they hold the event loop, however late the thread gets to run.
#[napi]
pub fn test_complete_from_thread(ids: Vec<u32>, value: Option<String>) -> Result<()> {
    let state = bridge::current()?;
    let ops: Vec<bridge::Op> = ids.iter().map(|&id| state.op(id, true, false)).collect();
    std::thread::Builder::new()
        .name("kyoto-test-producer".into())
        .spawn(move || {
            for op in ops {
                match &value {
                    Some(v) => op.complete(bridge::Value::Str(v.clone())),
                    None => op.complete(bridge::Value::Undefined),
                }
            }
        })
        .map_err(|e| Error::from_reason(e.to_string()))?;
    Ok(())
}

/// Benchmark/test hook: an operation completed at once from the calling (JS) thread, so its round
/// trip measures the bridge alone (queue push, one TSFN wake-up per batch, the batch call).
#[napi]
pub fn bridge_noop(id: u32) -> Result<()> {
    bridge::current()?
        .op(id, true, false)
        .complete(bridge::Value::Undefined);
    Ok(())
}
