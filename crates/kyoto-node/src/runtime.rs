//! Runtime handles exposed to JS: a [`kyoto_rt::Runtime`] per `new Runtime()`, and the
//! process-wide default runtime.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kyoto_rt::runtime::{Builder, RuntimeFlavor};
use kyoto_rt::Handle;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::bridge::{self, TeardownKey, Value};
use crate::time;

/// Options of `new Runtime(...)` (validated by the TypeScript layer, checked again here).
#[napi(object)]
pub struct RuntimeOptions {
    /// `'multi_thread'` (default) or `'current_thread'`.
    pub flavor: Option<String>,
    /// Worker threads of a multi-thread runtime (default: `KYOTO_WORKER_THREADS`, else one per
    /// core).
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

/// A snapshot of a runtime's metrics (`kyoto_rt::runtime::RuntimeMetrics`).
#[napi(object)]
pub struct RuntimeMetrics {
    /// `'multi_thread'` or `'current_thread'`.
    pub flavor: String,
    /// Worker threads.
    pub workers: u32,
    /// Tasks spawned and not yet completed.
    pub alive_tasks: f64,
    /// Tasks ever spawned.
    pub spawned_tasks: f64,
    /// Tasks in the global queue.
    pub global_queue_depth: u32,
    /// Task polls per worker.
    pub worker_poll_count: Vec<f64>,
    /// Tasks stolen per worker.
    pub worker_steal_count: Vec<f64>,
    /// Parks per worker.
    pub worker_park_count: Vec<f64>,
    /// Local queue depth per worker.
    pub worker_local_queue_depth: Vec<u32>,
    /// I/O readiness events dispatched.
    pub io_events: f64,
    /// Polls cut short by the coop budget.
    pub budget_forced_yields: f64,
    /// Threads of the blocking pool.
    pub blocking_threads: u32,
}

/// A future that completes when [`Stop::stop`] is called: what the thread driving a
/// current-thread runtime blocks on.
#[derive(Default)]
struct Stop {
    inner: Mutex<(bool, Option<Waker>)>,
}

impl Stop {
    fn stop(&self) {
        let waker = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.0 = true;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct StopFuture(Arc<Stop>);

impl Future for StopFuture {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

enum Owner {
    /// A multi-thread runtime: its workers run on their own.
    Multi(Option<kyoto_rt::Runtime>),
    /// A current-thread runtime driven by a dedicated thread in `block_on`; stopping it makes that
    /// thread shut the runtime down (with the timeout sent) and report on `done`.
    Current {
        stop: Arc<Stop>,
        timeout: mpsc::Sender<Duration>,
        done: Option<mpsc::Receiver<()>>,
    },
    Gone,
}

/// A running runtime: its handle for submitting work, and what it takes to stop it.
pub struct RtInner {
    handle: Handle,
    flavor: RuntimeFlavor,
    /// Milliseconds in `[0, 1)` between whole ms since the origin and the wheel's ticks.
    phase: f64,
    max_blocking_threads: Option<u32>,
    owner: Mutex<Owner>,
    /// Bumped by every successful pause and resume: an env's teardown resumes the clock only if
    /// its own pause is still the latest change (see `NativeRuntime::pause_clock`).
    pause_gen: AtomicU64,
}

impl RtInner {
    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the runtime (tasks cancelled, timers completed with a shutdown error), waiting at
    /// most `timeout` for its threads. Blocks: call it off the JS thread.
    fn shutdown(&self, timeout: Duration) {
        let owner = std::mem::replace(
            &mut *self.owner.lock().unwrap_or_else(|e| e.into_inner()),
            Owner::Gone,
        );
        match owner {
            Owner::Multi(Some(rt)) => rt.shutdown_timeout(timeout),
            Owner::Current {
                stop,
                timeout: tx,
                done,
            } => {
                let _ = tx.send(timeout);
                stop.stop();
                if let Some(done) = done {
                    // The driving thread itself bounds the wait for blocking tasks; allow a
                    // little more for it to get there.
                    let _ = done.recv_timeout(timeout + Duration::from_millis(100));
                }
            }
            _ => {}
        }
    }
}

fn arg_error(msg: &str) -> Error {
    Error::new(Status::InvalidArg, msg.to_owned())
}

fn build(opts: &RuntimeOptions) -> Result<Arc<RtInner>> {
    let flavor = match opts.flavor.as_deref() {
        None | Some("multi_thread") => RuntimeFlavor::MultiThread,
        Some("current_thread") => RuntimeFlavor::CurrentThread,
        Some(_) => return Err(arg_error("unknown flavor")),
    };
    let mut b = match flavor {
        RuntimeFlavor::MultiThread => Builder::new_multi_thread(),
        RuntimeFlavor::CurrentThread => Builder::new_current_thread(),
    };
    let name = opts
        .thread_name
        .clone()
        .unwrap_or_else(|| "kyoto-worker".to_owned());
    // std's thread spawn panics on a name with a NUL (it becomes a C string).
    if name.contains('\0') {
        return Err(arg_error("threadName must not contain a NUL character"));
    }
    b.thread_name(name.clone());
    // The builder's asserts are checked here first, so they never panic.
    if let Some(n) = opts.worker_threads {
        if n == 0 {
            return Err(arg_error("workerThreads must be >= 1"));
        }
        b.worker_threads(n as usize);
    }
    if let Some(n) = opts.event_interval {
        if n == 0 {
            return Err(arg_error("eventInterval must be >= 1"));
        }
        b.event_interval(n);
    }
    if let Some(n) = opts.global_queue_interval {
        if n == 0 {
            return Err(arg_error("globalQueueInterval must be >= 1"));
        }
        b.global_queue_interval(n);
    }
    if let Some(n) = opts.max_blocking_threads {
        if n == 0 {
            return Err(arg_error("maxBlockingThreads must be >= 1"));
        }
        b.max_blocking_threads(n as usize);
    }
    let rt = b
        .build()
        .map_err(|e| Error::from_reason(format!("kyoto: cannot start the runtime: {e}")))?;
    let handle = rt.handle().clone();
    let owner = match flavor {
        RuntimeFlavor::MultiThread => Owner::Multi(Some(rt)),
        RuntimeFlavor::CurrentThread => {
            let stop = Arc::new(Stop::default());
            let (tx, rx) = mpsc::channel::<Duration>();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let fut = StopFuture(stop.clone());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    rt.block_on(fut);
                    let timeout = rx.recv().unwrap_or(Duration::from_secs(5));
                    rt.shutdown_timeout(timeout);
                    let _ = done_tx.send(());
                })
                .map_err(|e| {
                    Error::from_reason(format!("kyoto: cannot start the runtime thread: {e}"))
                })?;
            Owner::Current {
                stop,
                timeout: tx,
                done: Some(done_rx),
            }
        }
    };
    let phase = time::tick_phase(&handle);
    Ok(Arc::new(RtInner {
        handle,
        flavor,
        phase,
        max_blocking_threads: opts.max_blocking_threads,
        owner: Mutex::new(owner),
        pause_gen: AtomicU64::new(0),
    }))
}

static DEFAULT: OnceLock<std::result::Result<Arc<RtInner>, String>> = OnceLock::new();

/// The default runtime if something started it (never starts it).
pub fn started_default_runtime() -> Option<&'static Arc<RtInner>> {
    DEFAULT.get().and_then(|r| r.as_ref().ok())
}

/// The process-wide default runtime (multi-thread, `KYOTO_WORKER_THREADS` or one worker per
/// core), started on first use and shared by every env; never shut down natively.
pub fn default_runtime() -> Result<&'static Arc<RtInner>> {
    DEFAULT
        .get_or_init(|| {
            build(&RuntimeOptions {
                flavor: None,
                worker_threads: None,
                thread_name: Some("kyoto-worker".to_owned()),
                event_interval: None,
                global_queue_interval: None,
                max_blocking_threads: None,
            })
            .map_err(|e| e.reason.clone())
        })
        .as_ref()
        .map_err(|e| Error::from_reason(e.clone()))
}

fn spawn_shutdown(rt: Arc<RtInner>, timeout: Duration, then: Option<bridge::Op>) -> Result<()> {
    std::thread::Builder::new()
        .name("kyoto-shutdown".into())
        .spawn(move || {
            rt.shutdown(timeout);
            if let Some(op) = then {
                op.complete(Value::Undefined);
            }
        })
        .map(|_| ())
        .map_err(|e| Error::from_reason(e.to_string()))
}

/// A native runtime: either one owned by the env that created it, or the process-wide default.
#[napi]
pub struct NativeRuntime {
    rt: Arc<RtInner>,
    owned: bool,
    shut: Arc<AtomicBool>,
}

fn ms_duration(ms: f64) -> Duration {
    Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1e9))
}

#[napi]
impl NativeRuntime {
    /// Starts a runtime owned by the calling env (shut down when the env goes away).
    #[napi(constructor, catch_unwind)]
    pub fn new(opts: RuntimeOptions) -> Result<Self> {
        let env = bridge::current()?;
        let rt = build(&opts)?;
        let shut = Arc::new(AtomicBool::new(false));
        // Weak: the hook lives as long as the env, and a strong reference would keep a runtime
        // that was shut down and collected (its epoll and eventfd descriptors) until then.
        // `shutdown()` and `Drop` take the hook back, so runtimes made and ended in a loop leave
        // nothing behind in the env.
        let (rt2, shut2) = (Arc::downgrade(&rt), shut.clone());
        env.on_teardown(
            TeardownKey::Runtime(Arc::as_ptr(&rt) as usize),
            Box::new(move || {
                if let Some(rt2) = rt2.upgrade() {
                    if !shut2.swap(true, Ordering::AcqRel) {
                        // Never block env teardown on runtime threads.
                        let _ = spawn_shutdown(rt2, Duration::from_secs(5), None);
                    }
                }
            }),
        );
        Ok(NativeRuntime {
            rt,
            owned: true,
            shut,
        })
    }

    /// The process-wide default runtime, shared by every env. Its `shutdown` only completes `id`.
    #[napi(factory, catch_unwind)]
    pub fn shared() -> Result<Self> {
        Ok(NativeRuntime {
            rt: default_runtime()?.clone(),
            owned: false,
            shut: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `'multi_thread'` or `'current_thread'`.
    #[napi(getter)]
    pub fn flavor(&self) -> &'static str {
        match self.rt.flavor {
            RuntimeFlavor::MultiThread => "multi_thread",
            RuntimeFlavor::CurrentThread => "current_thread",
        }
    }

    /// The `maxBlockingThreads` option, if given.
    #[napi(getter)]
    pub fn max_blocking_threads(&self) -> Option<u32> {
        self.rt.max_blocking_threads
    }

    /// Offset in ms (in `[0, 1)`) of the timer wheel's 1 ms ticks from whole ms of `now()`.
    #[napi(getter)]
    pub fn tick_phase(&self) -> f64 {
        self.rt.phase
    }

    /// An operation completed (with `undefined`) by a task spawned on the runtime: the bridge's
    /// round trip.
    #[napi(catch_unwind)]
    pub fn noop(&self, id: u32) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        drop(
            self.rt
                .handle
                .spawn(async move { op.complete(Value::Undefined) }),
        );
        Ok(())
    }

    /// An operation resolved with `value` by a runtime task (tests the value path).
    #[napi(catch_unwind)]
    pub fn echo(&self, id: u32, value: Either<String, f64>) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        let value = match value {
            Either::A(s) => Value::Str(s),
            Either::B(n) => Value::Number(n),
        };
        drop(self.rt.handle.spawn(async move { op.complete(value) }));
        Ok(())
    }

    /// Test hook: `count` runtime tasks, each completing after `ms` on the runtime's clock; the
    /// operation `id` completes when all have (so metrics can be read while they are alive).
    #[napi(catch_unwind)]
    pub fn spawn_sleepers(&self, id: u32, count: u32, ms: f64) -> Result<()> {
        let op = Arc::new(Mutex::new(Some(bridge::current()?.op(id, true, false))));
        let left = Arc::new(std::sync::atomic::AtomicU32::new(count));
        let d = ms_duration(ms);
        if count == 0 {
            if let Some(op) = op.lock().unwrap_or_else(|e| e.into_inner()).take() {
                op.complete(Value::Undefined);
            }
        }
        for _ in 0..count {
            let (op, left) = (op.clone(), left.clone());
            drop(self.rt.handle.spawn(async move {
                kyoto_rt::time::sleep(d).await;
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    if let Some(op) = op.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        op.complete(Value::Undefined);
                    }
                }
            }));
        }
        Ok(())
    }

    /// An operation whose task panics: its promise rejects with `ERR_KYOTO_PANIC`.
    #[napi(catch_unwind)]
    pub fn panic_op(&self, id: u32) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        drop(self.rt.handle.spawn(async move {
            let _op = op;
            panic!("kyoto: panic requested by panicOp");
        }));
        Ok(())
    }

    /// Completes operation `id` at `deadline` (ms since the origin on this runtime's clock): a
    /// timer registered directly in the runtime's wheel, no task.
    #[napi(catch_unwind)]
    pub fn sleep_until(
        &self,
        id: u32,
        deadline: f64,
        refed: bool,
        cancellable: bool,
    ) -> Result<()> {
        if deadline.is_nan() {
            return Err(arg_error("deadline must be a number"));
        }
        let env = bridge::current()?;
        let op = env.op(id, refed, cancellable);
        let cancel = time::register(&self.rt.handle, op, deadline);
        if cancellable {
            env.set_canceller(id, cancel);
        }
        Ok(())
    }

    /// This runtime's clock, in ms since the process-wide origin.
    #[napi]
    pub fn now(&self) -> f64 {
        time::to_ms(self.rt.handle.clock_now())
    }

    /// Pauses this runtime's clock; false if it was already paused.
    ///
    /// The clock of the default runtime is shared by every thread, and only the thread that paused
    /// it knows when its test is over: when that thread's env goes away (a worker that ended or was
    /// terminated) with the clock still paused by it, the clock resumes, so other threads' timers
    /// never wait forever on a clock nobody will advance.
    #[napi(catch_unwind)]
    pub fn pause_clock(&self) -> Result<bool> {
        let env = bridge::current()?;
        if self.rt.handle.pause_clock().is_err() {
            return Ok(false);
        }
        let gen = self.rt.pause_gen.fetch_add(1, Ordering::AcqRel) + 1;
        // Weak, as in `new`: the hook must not keep the runtime. Keyed by runtime: this pause's
        // hook replaces the env's last one for this runtime, whose pause has ended (this one could
        // not have started otherwise).
        let rt = Arc::downgrade(&self.rt);
        env.on_teardown(
            TeardownKey::ClockPause(Arc::as_ptr(&self.rt) as usize),
            Box::new(move || {
                if let Some(rt) = rt.upgrade() {
                    if rt.pause_gen.load(Ordering::Acquire) == gen {
                        let _ = rt.handle.resume_clock();
                    }
                }
            }),
        );
        Ok(true)
    }

    /// Restarts this runtime's clock; false if it was not paused.
    #[napi]
    pub fn resume_clock(&self) -> bool {
        let resumed = self.rt.handle.resume_clock().is_ok();
        if resumed {
            // The pausing env's teardown hook no longer applies.
            self.rt.pause_gen.fetch_add(1, Ordering::AcqRel);
        }
        resumed
    }

    /// Whether this runtime's clock is paused.
    #[napi]
    pub fn is_clock_paused(&self) -> bool {
        self.rt.handle.is_clock_paused()
    }

    /// Moves the paused clock by `ms` and fires what came due; false if it is not paused.
    #[napi(catch_unwind)]
    pub fn advance_clock(&self, ms: f64) -> Result<bool> {
        if !ms.is_finite() || ms < 0.0 {
            return Err(arg_error("ms must be a finite number >= 0"));
        }
        // ms_duration would clamp a longer advance silently.
        if ms > time::MAX_AHEAD_MS {
            return Err(Error::new(
                Status::InvalidArg,
                format!("ms must be <= {}", time::MAX_AHEAD_MS),
            ));
        }
        match self.rt.handle.advance_clock(ms_duration(ms)) {
            Ok(()) => Ok(true),
            Err(kyoto_rt::runtime::ClockError::NotPaused) => Ok(false),
            Err(e) => Err(Error::new(Status::InvalidArg, e.to_string())),
        }
    }

    /// On a paused clock, jumps to the next timer and fires it (called by JS when its thread is
    /// idle), however far away it is. Returns whether the clock moved or a timer fired.
    #[napi]
    pub fn advance_to_next_timer(&self) -> bool {
        self.rt.handle.advance_clock_to_next_timer()
    }

    /// A snapshot of the runtime's metrics.
    #[napi]
    pub fn metrics(&self) -> RuntimeMetrics {
        let m = self.rt.handle.metrics();
        let f = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        RuntimeMetrics {
            flavor: self.flavor().to_owned(),
            workers: m.workers as u32,
            alive_tasks: m.alive_tasks as f64,
            spawned_tasks: m.spawned_tasks as f64,
            global_queue_depth: m.global_queue_depth as u32,
            worker_poll_count: f(&m.worker_poll_count),
            worker_steal_count: f(&m.worker_steal_count),
            worker_park_count: f(&m.worker_park_count),
            worker_local_queue_depth: m
                .worker_local_queue_depth
                .iter()
                .map(|&x| x as u32)
                .collect(),
            io_events: m.io_events as f64,
            budget_forced_yields: m.budget_forced_yields as f64,
            blocking_threads: m.blocking_threads as u32,
        }
    }

    /// Shuts an owned runtime down on a background thread (waiting at most `timeoutMs` for its
    /// threads; never blocks the JS thread) and completes operation `id` when done. For the shared
    /// default runtime only `id` completes.
    #[napi(catch_unwind)]
    pub fn shutdown(&self, id: u32, timeout_ms: f64) -> Result<()> {
        let op = bridge::current()?.op(id, true, false);
        if !self.owned || self.shut.swap(true, Ordering::AcqRel) {
            op.complete(Value::Undefined);
            return Ok(());
        }
        self.forget_teardown();
        spawn_shutdown(self.rt.clone(), ms_duration(timeout_ms), Some(op))
    }
}

impl NativeRuntime {
    /// Takes back this env's hooks for an owned runtime that ended: nothing is left to do for it
    /// at env teardown.
    fn forget_teardown(&self) {
        if !self.owned {
            return;
        }
        // No env: it is being torn down, and its hooks were taken out already.
        if let Ok(env) = bridge::current() {
            let at = Arc::as_ptr(&self.rt) as usize;
            env.cancel_teardown(TeardownKey::Runtime(at));
            env.cancel_teardown(TeardownKey::ClockPause(at));
        }
    }

    /// The runtime behind this handle (for other modules of the binding).
    #[allow(dead_code)]
    pub fn inner(&self) -> &Arc<RtInner> {
        &self.rt
    }
}

impl Drop for NativeRuntime {
    fn drop(&mut self) {
        // An owned runtime whose JS object was collected without `shutdown()`: stop its threads.
        if self.owned && !self.shut.swap(true, Ordering::AcqRel) {
            let _ = spawn_shutdown(self.rt.clone(), Duration::from_secs(5), None);
        }
        self.forget_teardown();
    }
}
