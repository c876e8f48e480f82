//! Runtime handles exposed to JS.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::bridge::{self, Value};
use crate::interim;

/// Options of `new Runtime(...)` (validated by the TypeScript layer).
#[napi(object)]
pub struct RuntimeOptions {
    /// `'multi_thread'` (default) or `'current_thread'`.
    pub flavor: Option<String>,
    /// Worker threads of a multi-thread runtime (default: one per core).
    pub worker_threads: Option<u32>,
    /// Prefix of the runtime's thread names.
    pub thread_name: Option<String>,
    /// Scheduler ticks between driver polls.
    pub event_interval: Option<u32>,
    /// Scheduler ticks between global-queue checks.
    pub global_queue_interval: Option<u32>,
    /// Cap of the blocking pool.
    pub max_blocking_threads: Option<u32>,
}

/// A snapshot of a runtime's metrics.
#[napi(object)]
pub struct RuntimeMetrics {
    pub flavor: String,
    pub workers: u32,
    pub alive_tasks: f64,
    pub spawned_tasks: f64,
    pub global_queue_depth: u32,
    pub worker_poll_count: Vec<f64>,
    pub worker_steal_count: Vec<f64>,
    pub worker_park_count: Vec<f64>,
    pub worker_local_queue_depth: Vec<u32>,
    pub io_events: f64,
    pub budget_forced_yields: f64,
    pub blocking_threads: u32,
}

/// A native runtime: either one owned by the env that created it, or the process-wide default.
#[napi]
pub struct NativeRuntime {
    rt: Arc<interim::Runtime>,
    multi_thread: bool,
    owned: bool,
    shut: Arc<AtomicBool>,
}

fn default_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn build(opts: &RuntimeOptions) -> Result<(interim::Runtime, bool)> {
    let multi_thread = match opts.flavor.as_deref() {
        None | Some("multi_thread") => true,
        Some("current_thread") => false,
        Some(_) => return Err(Error::new(Status::InvalidArg, "unknown flavor")),
    };
    let workers = match opts.worker_threads {
        Some(0) => return Err(Error::new(Status::InvalidArg, "workerThreads must be >= 1")),
        Some(n) => n as usize,
        None => default_cores(),
    };
    let rt = interim::Runtime::new(interim::Config {
        multi_thread,
        workers,
        thread_name: opts
            .thread_name
            .clone()
            .unwrap_or_else(|| "kyoto-worker".to_owned()),
    })
    .map_err(|e| Error::from_reason(format!("kyoto: cannot start the runtime: {e}")))?;
    Ok((rt, multi_thread))
}

#[napi]
impl NativeRuntime {
    /// Starts a runtime owned by the calling env (shut down when the env goes away).
    #[napi(constructor)]
    pub fn new(opts: RuntimeOptions) -> Result<Self> {
        let (rt, multi_thread) = build(&opts)?;
        let rt = Arc::new(rt);
        let shut = Arc::new(AtomicBool::new(false));
        let (rt2, shut2) = (rt.clone(), shut.clone());
        bridge::current()?.on_teardown(Box::new(move || {
            if !shut2.swap(true, Ordering::AcqRel) {
                // Never block env teardown on runtime threads.
                let _ = std::thread::Builder::new()
                    .name("kyoto-shutdown".into())
                    .spawn(move || rt2.shutdown(Duration::from_secs(5)));
            }
        }));
        Ok(NativeRuntime {
            rt,
            multi_thread,
            owned: true,
            shut,
        })
    }

    /// The process-wide default runtime, shared by every env; started by the first call (later
    /// calls ignore `opts`). Its `shutdown` only affects the calling env's operations.
    #[napi(factory)]
    pub fn shared(opts: RuntimeOptions) -> Result<Self> {
        static DEFAULT: OnceLock<std::result::Result<(Arc<interim::Runtime>, bool), String>> =
            OnceLock::new();
        let r = DEFAULT.get_or_init(|| {
            build(&opts)
                .map(|(rt, mt)| (Arc::new(rt), mt))
                .map_err(|e| e.reason.clone())
        });
        match r {
            Ok((rt, mt)) => Ok(NativeRuntime {
                rt: rt.clone(),
                multi_thread: *mt,
                owned: false,
                shut: Arc::new(AtomicBool::new(false)),
            }),
            Err(e) => Err(Error::from_reason(e.clone())),
        }
    }

    /// An operation that completes (with `undefined`) from a runtime task: the bridge's round trip.
    #[napi]
    pub fn noop(&self, id: u32) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        self.rt.spawn(move || op.complete(Value::Undefined));
        Ok(())
    }

    /// An operation that resolves with `value` from a runtime task (tests the value path).
    #[napi]
    pub fn echo(&self, id: u32, value: Either<String, f64>) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        let value = match value {
            Either::A(s) => Value::Str(s),
            Either::B(n) => Value::Number(n),
        };
        self.rt.spawn(move || op.complete(value));
        Ok(())
    }

    /// An operation whose task panics: its promise rejects with `ERR_KYOTO_PANIC`.
    #[napi]
    pub fn panic_op(&self, id: u32) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        self.rt.spawn(move || {
            let _op = op;
            panic!("kyoto: panic requested by panicOp");
        });
        Ok(())
    }

    /// Completes operation `id` at `deadline` (ms on the runtime clock, rounded up to 1 ms).
    #[napi]
    pub fn sleep_until(
        &self,
        id: u32,
        deadline: f64,
        refed: bool,
        cancellable: bool,
    ) -> Result<()> {
        let deadline = if deadline.is_nan() {
            return Err(Error::new(Status::InvalidArg, "deadline must be a number"));
        } else {
            deadline.min(f64::MAX)
        };
        let op = bridge::current()?.op(id, refed, cancellable);
        self.rt.sleep_until(op, deadline);
        Ok(())
    }

    /// A snapshot of the runtime's metrics.
    #[napi]
    pub fn metrics(&self) -> RuntimeMetrics {
        let m = self.rt.metrics();
        let n = m.workers;
        RuntimeMetrics {
            flavor: if self.multi_thread {
                "multi_thread"
            } else {
                "current_thread"
            }
            .to_owned(),
            workers: n as u32,
            alive_tasks: m.alive_tasks as f64,
            spawned_tasks: m.spawned_tasks as f64,
            global_queue_depth: m.global_queue_depth as u32,
            worker_poll_count: m.worker_poll_count.iter().map(|&x| x as f64).collect(),
            worker_steal_count: vec![0.0; n],
            worker_park_count: m.worker_park_count.iter().map(|&x| x as f64).collect(),
            worker_local_queue_depth: vec![0; n],
            io_events: 0.0,
            budget_forced_yields: 0.0,
            blocking_threads: 0,
        }
    }

    /// Shuts an owned runtime down (a background thread waits at most `timeoutMs` for its threads)
    /// and completes operation `id` when done. For the shared default runtime only `id` completes.
    #[napi]
    pub fn shutdown(&self, id: u32, timeout_ms: f64) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        if !self.owned || self.shut.swap(true, Ordering::AcqRel) {
            op.complete(Value::Undefined);
            return Ok(());
        }
        let timeout = Duration::from_secs_f64((timeout_ms.max(0.0) / 1000.0).min(1e9));
        let rt = self.rt.clone();
        std::thread::Builder::new()
            .name("kyoto-shutdown".into())
            .spawn(move || {
                rt.shutdown(timeout);
                op.complete(Value::Undefined);
            })
            .map_err(|e| Error::from_reason(e.to_string()))?;
        Ok(())
    }
}

impl Drop for NativeRuntime {
    fn drop(&mut self) {
        // An owned runtime whose JS object was collected without `shutdown()`: stop its threads.
        if self.owned && !self.shut.swap(true, Ordering::AcqRel) {
            let rt = self.rt.clone();
            let _ = std::thread::Builder::new()
                .name("kyoto-shutdown".into())
                .spawn(move || rt.shutdown(Duration::from_secs(5)));
        }
    }
}
