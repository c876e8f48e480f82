//! The completion bridge: how results produced on runtime threads reach JavaScript.
//!
//! Per Node environment (the main thread and every `worker_threads` Worker) there is exactly one
//! [`Sink`] and one threadsafe function (TSFN). A runtime thread that finishes an operation pushes a
//! [`Completion`] into the sink's queue; only the push that makes the queue non-empty calls the TSFN
//! (one `uv_async_send`). On the JS thread, [`call_js`] swaps the whole queue out and makes **one**
//! call into JS per batch (chunked at the shared buffer's capacity): operation ids and statuses are
//! written into typed arrays JS handed over at init, the few values that exist go into one array.
//! JS keeps the promise resolvers keyed by id. No TSFN, no `napi_deferred` and no JS object is
//! created per operation by this layer.
//!
//! Event-loop citizenship: the TSFN is created unref'd. Ref'd operations count up on submission and
//! down when their completion is drained (or when they are cancelled from JS); the TSFN is ref'd only
//! while that count is positive, so an idle runtime never holds the loop open.
//!
//! Teardown: an env cleanup hook closes the sink under its lock (later completions are dropped),
//! claims every cancellable operation and shuts down the runtimes the env created. The TSFN's
//! finalizer closes the sink as well, in case Node finalizes it first.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::sys;

/// Status written for a completion: resolved with `undefined`.
pub const ST_OK: u8 = 0;
/// Status written for a completion: resolved with the next value of the values array.
pub const ST_VALUE: u8 = 1;
/// Status written for a completion: rejected; the next two values are `code` and `message`.
pub const ST_ERROR: u8 = 2;

/// What an operation produced.
pub enum Value {
    Undefined,
    Number(f64),
    Str(String),
    Error { code: &'static str, message: String },
}

/// One finished operation on its way to JS.
pub struct Completion {
    id: u32,
    refed: bool,
    value: Value,
}

struct SinkInner {
    queue: Vec<Completion>,
    /// The env's TSFN; null once the env is gone (then completions are dropped).
    tsfn: sys::napi_threadsafe_function,
}

/// The per-env completion queue shared with runtime threads.
pub struct Sink {
    inner: Mutex<SinkInner>,
}

// Soundness: the only non-Send/Sync field is the raw TSFN pointer. Node documents
// `napi_call_threadsafe_function` as callable from any thread, and the pointer is only read under
// the mutex, which the teardown paths also take before nulling it.
// SAFETY: sound by the argument just above.
unsafe impl Send for Sink {}
// SAFETY: see the `Send` impl; all access goes through the mutex.
unsafe impl Sync for Sink {}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, SinkInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a completion; wakes the JS thread only on the empty → non-empty transition.
    fn push(&self, c: Completion) {
        let mut g = self.lock();
        if g.tsfn.is_null() {
            return; // the env is gone: drop it
        }
        let was_empty = g.queue.is_empty();
        g.queue.push(c);
        if was_empty {
            // Soundness: `tsfn` is non-null, and it is nulled under this same lock (cleanup hook,
            // finalizer) before Node may free it, so it is alive for the duration of this call. The
            // queue is unbounded, so a non-blocking call never waits.
            // SAFETY: sound by the argument just above.
            unsafe {
                sys::napi_call_threadsafe_function(
                    g.tsfn,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                );
            }
        }
    }

    fn close(&self) {
        let mut g = self.lock();
        g.tsfn = ptr::null_mut();
        g.queue.clear();
    }
}

/// A submitted operation: the right (and the duty) to complete it exactly once.
///
/// Dropping an `Op` that was never completed (its task was dropped by a runtime shutdown, or a panic
/// unwound through it) completes it with an error, so JS never waits forever and the ref count the
/// op holds is always returned.
pub struct Op {
    sink: Arc<Sink>,
    id: u32,
    refed: bool,
    claim: Option<Arc<AtomicBool>>,
    done: bool,
}

impl Op {
    /// Whether JS cancelled this operation (its completion would be dropped).
    #[allow(dead_code)] // part of the Op API for the binding's modules
    pub fn is_cancelled(&self) -> bool {
        self.claim
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Acquire))
    }

    /// Completes the operation (no-op if it was cancelled from JS first).
    pub fn complete(mut self, value: Value) {
        self.finish(value);
    }

    fn finish(&mut self, value: Value) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(claim) = &self.claim {
            if claim.swap(true, Ordering::AcqRel) {
                return; // cancelled from JS: it already settled the promise and returned the ref
            }
        }
        self.sink.push(Completion {
            id: self.id,
            refed: self.refed,
            value,
        });
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records the message of a panic on the panicking
/// thread, so the `Op` dropped while unwinding can reject its promise with it.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "Box<dyn Any>".to_owned()
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
        }));
    });
}

impl Drop for Op {
    fn drop(&mut self) {
        if !self.done {
            let value = if std::thread::panicking() {
                let msg = LAST_PANIC
                    .with(|p| p.borrow().clone())
                    .unwrap_or_else(|| "unknown".to_owned());
                Value::Error {
                    code: "ERR_KYOTO_PANIC",
                    message: format!("a native operation panicked: {msg}"),
                }
            } else {
                Value::Error {
                    code: "ERR_RUNTIME_SHUTDOWN",
                    message: "the runtime was shut down".to_owned(),
                }
            };
            self.finish(value);
        }
    }
}

/// Something that stops a cancellable operation's native work (e.g. aborts its task).
pub type Canceller = Box<dyn FnOnce()>;

struct Cancellable {
    claim: Arc<AtomicBool>,
    refed: bool,
    cancel: Option<Canceller>,
}

/// JS-thread-only state of one env.
pub struct EnvState {
    env: sys::napi_env,
    sink: Arc<Sink>,
    tsfn: sys::napi_threadsafe_function,
    refs: Cell<u64>,
    tsfn_refed: Cell<bool>,
    ids: *mut u32,
    statuses: *mut u8,
    cap: usize,
    spare: RefCell<Vec<Completion>>,
    cancellable: RefCell<HashMap<u32, Cancellable>>,
    teardown: RefCell<Vec<(TeardownKey, TeardownHook)>>,
    closed: Cell<bool>,
}

type TeardownHook = Box<dyn FnOnce()>;

/// What a teardown hook is for: an env keeps at most one hook per key, so a hook registered again
/// (each `pauseClock()`) replaces the last instead of piling up, and one whose object went away
/// first (a runtime shut down or collected) can be taken back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TeardownKey {
    /// The env's holdings of shared sync objects.
    Holds,
    /// Shutting down the runtime at this address, which the env owns.
    Runtime(usize),
    /// Resuming the clock the env paused on the runtime at this address.
    ClockPause(usize),
}

thread_local! {
    static ENV: RefCell<Option<Rc<EnvState>>> = const { RefCell::new(None) };
}

/// The current thread's env state (the bridge must have been initialised).
pub fn current() -> napi::Result<Rc<EnvState>> {
    ENV.with(|e| e.borrow().clone()).ok_or_else(|| {
        napi::Error::new(
            napi::Status::GenericFailure,
            "kyoto: the bridge is not initialised in this thread",
        )
    })
}

pub(crate) fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::GenericFailure,
            format!("kyoto: {what} failed (napi status {status})"),
        ))
    }
}

/// Creates this env's sink and TSFN. `on_batch(count, values)` is called on every batch; `ids` and
/// `statuses` are a `Uint32Array` and a `Uint8Array` of equal length that receive each batch.
pub fn init(
    env: sys::napi_env,
    on_batch: sys::napi_value,
    ids: sys::napi_value,
    statuses: sys::napi_value,
) -> napi::Result<()> {
    if ENV.with(|e| e.borrow().is_some()) {
        return Ok(());
    }
    // Runtime threads are shared by all envs and outlive any one of them: the image must not be
    // unmapped when the env that loaded it goes away.
    napi::bindgen_prelude::retain_current_module_for_unload_safety();
    install_panic_hook();

    let (ids_ptr, ids_len) = typed_array_data(env, ids, sys::TypedarrayType::uint32_array)?;
    let (st_ptr, st_len) = typed_array_data(env, statuses, sys::TypedarrayType::uint8_array)?;
    if ids_len == 0 || ids_len != st_len {
        return Err(napi::Error::new(
            napi::Status::InvalidArg,
            "kyoto: bridge buffers must be non-empty and of equal length",
        ));
    }
    // Keep both arrays alive for the env's lifetime (the refs are reclaimed with the env).
    for v in [ids, statuses] {
        let mut r = ptr::null_mut();
        // SAFETY: `env` and `v` are the live env and a value of the current callback scope.
        check(
            unsafe { sys::napi_create_reference(env, v, 1, &mut r) },
            "napi_create_reference",
        )?;
    }

    let sink = Arc::new(Sink {
        inner: Mutex::new(SinkInner {
            queue: Vec::with_capacity(64),
            tsfn: ptr::null_mut(),
        }),
    });
    let mut name = ptr::null_mut();
    let label = "kyoto.bridge";
    // SAFETY: `label` is valid UTF-8 of the given length; `name` receives the string.
    check(
        unsafe {
            sys::napi_create_string_utf8(
                env,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name,
            )
        },
        "napi_create_string_utf8",
    )?;
    let finalize_data = Arc::into_raw(sink.clone()) as *mut c_void;
    let mut tsfn = ptr::null_mut();
    // SAFETY: all pointers are valid; `finalize_data` is an owned `Arc<Sink>` reclaimed exactly once
    // in `tsfn_finalize` (or right below if creation fails).
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            env,
            on_batch,
            ptr::null_mut(),
            name,
            0,
            1,
            finalize_data,
            Some(tsfn_finalize),
            ptr::null_mut(),
            Some(call_js),
            &mut tsfn,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: creation failed, so the finalizer will never run; reclaim the Arc here.
        drop(unsafe { Arc::from_raw(finalize_data as *const Sink) });
        check(status, "napi_create_threadsafe_function")?;
    }
    // SAFETY: JS thread, live TSFN. An idle bridge must not hold the event loop.
    check(
        unsafe { sys::napi_unref_threadsafe_function(env, tsfn) },
        "napi_unref_threadsafe_function",
    )?;
    sink.lock().tsfn = tsfn;

    let state = Rc::new(EnvState {
        env,
        sink,
        tsfn,
        refs: Cell::new(0),
        tsfn_refed: Cell::new(false),
        ids: ids_ptr.cast(),
        statuses: st_ptr.cast(),
        cap: ids_len,
        spare: RefCell::new(Vec::with_capacity(64)),
        cancellable: RefCell::new(HashMap::new()),
        teardown: RefCell::new(Vec::new()),
        closed: Cell::new(false),
    });
    ENV.with(|e| *e.borrow_mut() = Some(state));
    // SAFETY: `env_cleanup` takes no data and is a valid `extern "C"` function.
    check(
        unsafe { sys::napi_add_env_cleanup_hook(env, Some(env_cleanup), ptr::null_mut()) },
        "napi_add_env_cleanup_hook",
    )?;
    Ok(())
}

fn typed_array_data(
    env: sys::napi_env,
    v: sys::napi_value,
    want: sys::napi_typedarray_type,
) -> napi::Result<(*mut c_void, usize)> {
    let mut is_ta = false;
    // SAFETY: live env and value.
    check(
        unsafe { sys::napi_is_typedarray(env, v, &mut is_ta) },
        "napi_is_typedarray",
    )?;
    if !is_ta {
        return Err(napi::Error::new(
            napi::Status::InvalidArg,
            "kyoto: expected a typed array",
        ));
    }
    let mut ty = 0;
    let mut len = 0usize;
    let mut data = ptr::null_mut();
    let mut ab = ptr::null_mut();
    let mut off = 0usize;
    // SAFETY: live env; `v` was checked to be a typed array; all out-pointers are valid.
    check(
        unsafe {
            sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off)
        },
        "napi_get_typedarray_info",
    )?;
    if ty != want {
        return Err(napi::Error::new(
            napi::Status::InvalidArg,
            "kyoto: wrong typed array kind",
        ));
    }
    Ok((data, len))
}

impl EnvState {
    /// Registers a new operation submitted from JS. `cancellable` ops can later be cancelled with
    /// [`EnvState::cancel`]; the returned `Op` goes to the runtime thread that completes it.
    pub fn op(&self, id: u32, refed: bool, cancellable: bool) -> Op {
        if refed {
            self.add_ref(1);
        }
        let claim = if cancellable {
            let claim = Arc::new(AtomicBool::new(false));
            self.cancellable.borrow_mut().insert(
                id,
                Cancellable {
                    claim: claim.clone(),
                    refed,
                    cancel: None,
                },
            );
            Some(claim)
        } else {
            None
        };
        Op {
            sink: self.sink.clone(),
            id,
            refed,
            claim,
            done: false,
        }
    }

    /// Attaches the native canceller (e.g. a task abort) to a cancellable op.
    pub fn set_canceller(&self, id: u32, cancel: Canceller) {
        if let Some(c) = self.cancellable.borrow_mut().get_mut(&id) {
            c.cancel = Some(cancel);
        }
    }

    /// Cancels an operation from JS (which settles its promise itself). Returns whether the op was
    /// still pending. The op's ref is returned synchronously.
    pub fn cancel(&self, id: u32) -> bool {
        let entry = self.cancellable.borrow_mut().remove(&id);
        let Some(c) = entry else { return false };
        let won = !c.claim.swap(true, Ordering::AcqRel);
        if let Some(cancel) = c.cancel {
            cancel();
        }
        if won && c.refed {
            self.add_ref(-1);
        }
        won
    }

    /// Adjusts the number of things holding the event loop open (ops and JS-level handles).
    pub fn add_ref(&self, delta: i64) {
        let refs = (self.refs.get() as i64 + delta).max(0) as u64;
        self.refs.set(refs);
        if self.closed.get() {
            return;
        }
        if refs > 0 && !self.tsfn_refed.get() {
            // SAFETY: JS thread of this env; the TSFN lives until env teardown (`closed` is false).
            unsafe { sys::napi_ref_threadsafe_function(self.env, self.tsfn) };
            self.tsfn_refed.set(true);
        } else if refs == 0 && self.tsfn_refed.get() {
            // SAFETY: as above.
            unsafe { sys::napi_unref_threadsafe_function(self.env, self.tsfn) };
            self.tsfn_refed.set(false);
        }
    }

    /// The number of ref'd holds (for tests).
    pub fn refs(&self) -> u64 {
        self.refs.get()
    }

    /// Number of completions queued for JS and not yet delivered.
    pub fn queued(&self) -> usize {
        self.sink.lock().queue.len()
    }

    /// Runs `f` when the env is torn down (e.g. shut down a runtime the env created), in place of
    /// any hook already registered under `key`.
    pub fn on_teardown(&self, key: TeardownKey, f: Box<dyn FnOnce()>) {
        let mut hooks = self.teardown.borrow_mut();
        match hooks.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = f,
            None => hooks.push((key, f)),
        }
    }

    /// Forgets the hook registered under `key`, if any, without running it.
    pub fn cancel_teardown(&self, key: TeardownKey) {
        // The old hook drops after the borrow ends: what it captured may have drop code of its own.
        let taken = {
            let mut hooks = self.teardown.borrow_mut();
            hooks
                .iter()
                .position(|(k, _)| *k == key)
                .map(|i| hooks.remove(i))
        };
        drop(taken);
    }

    /// How many teardown hooks are registered (for tests of their bound).
    pub fn teardown_hooks(&self) -> usize {
        self.teardown.borrow().len()
    }

    /// Drains the queue and delivers it to JS in as few calls as possible.
    fn deliver(&self, env: sys::napi_env, js_cb: sys::napi_value) {
        let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
        {
            let mut g = self.sink.lock();
            std::mem::swap(&mut g.queue, &mut batch);
        }
        let mut released: i64 = 0;
        if !self.cancellable.borrow().is_empty() {
            let mut map = self.cancellable.borrow_mut();
            for c in &batch {
                map.remove(&c.id);
            }
        }
        let mut i = 0;
        while i < batch.len() {
            let end = (i + self.cap).min(batch.len());
            let mut values: sys::napi_value = ptr::null_mut();
            let mut nvalues = 0u32;
            for (slot, c) in batch[i..end].iter().enumerate() {
                if c.refed {
                    released += 1;
                }
                let status = match &c.value {
                    Value::Undefined => ST_OK,
                    Value::Number(_) | Value::Str(_) => ST_VALUE,
                    Value::Error { .. } => ST_ERROR,
                };
                // SAFETY: `slot < cap`; the arrays are kept alive by references for the env's
                // lifetime and are only touched on this (the JS) thread.
                unsafe {
                    *self.ids.add(slot) = c.id;
                    *self.statuses.add(slot) = status;
                }
                if status != ST_OK {
                    if values.is_null() {
                        // SAFETY: JS thread inside the TSFN's callback scope.
                        unsafe { sys::napi_create_array(env, &mut values) };
                    }
                    match &c.value {
                        Value::Number(n) => push_value(env, values, &mut nvalues, Js::Num(*n)),
                        Value::Str(s) => push_value(env, values, &mut nvalues, Js::Str(s)),
                        Value::Error { code, message } => {
                            push_value(env, values, &mut nvalues, Js::Str(code));
                            push_value(env, values, &mut nvalues, Js::Str(message));
                        }
                        Value::Undefined => {}
                    }
                }
            }
            let mut argv = [ptr::null_mut(); 2];
            let mut undefined = ptr::null_mut();
            let mut ret = ptr::null_mut();
            // SAFETY: JS thread inside the TSFN's callback scope; `js_cb` is the function the TSFN
            // was created with; `argv` holds two valid values.
            unsafe {
                sys::napi_get_undefined(env, &mut undefined);
                sys::napi_create_uint32(env, (end - i) as u32, &mut argv[0]);
                argv[1] = if values.is_null() { undefined } else { values };
                let st = sys::napi_call_function(env, undefined, js_cb, 2, argv.as_ptr(), &mut ret);
                if st == sys::Status::napi_pending_exception {
                    // The TS layer never throws here; if it did, surface it as uncaught.
                    let mut exc = ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut exc);
                    sys::napi_fatal_exception(env, exc);
                }
            }
            i = end;
        }
        batch.clear();
        *self.spare.borrow_mut() = batch;
        if released > 0 {
            self.add_ref(-released);
        }
    }
}

enum Js<'a> {
    Num(f64),
    Str(&'a str),
}

fn push_value(env: sys::napi_env, arr: sys::napi_value, n: &mut u32, v: Js<'_>) {
    let mut jv = ptr::null_mut();
    // SAFETY: JS thread inside a callback scope; `arr` is a live array; strings are valid UTF-8 of
    // the given length.
    unsafe {
        match v {
            Js::Num(x) => sys::napi_create_double(env, x, &mut jv),
            Js::Str(s) => {
                sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut jv)
            }
        };
        sys::napi_set_element(env, arr, *n, jv);
    }
    *n += 1;
}

unsafe extern "C" fn call_js(
    env: sys::napi_env,
    js_cb: sys::napi_value,
    _context: *mut c_void,
    _data: *mut c_void,
) {
    // A null env means Node is draining the queue during teardown: nothing to deliver to.
    if env.is_null() || js_cb.is_null() {
        return;
    }
    let state = ENV.with(|e| e.borrow().clone());
    if let Some(state) = state {
        if !state.closed.get() {
            state.deliver(env, js_cb);
        }
    }
}

unsafe extern "C" fn tsfn_finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the `Arc<Sink>` leaked in `init`; the finalizer runs exactly once.
    let sink = unsafe { Arc::from_raw(data as *const Sink) };
    sink.close();
}

unsafe extern "C" fn env_cleanup(_arg: *mut c_void) {
    let Some(state) = ENV.with(|e| e.borrow_mut().take()) else {
        return;
    };
    state.closed.set(true);
    state.sink.close();
    for (_, c) in state.cancellable.borrow_mut().drain() {
        c.claim.store(true, Ordering::Release);
        if let Some(cancel) = c.cancel {
            cancel();
        }
    }
    // Taken out first: a hook may drop objects whose `Drop` cancels hooks of their own.
    let hooks = std::mem::take(&mut *state.teardown.borrow_mut());
    for (_, f) in hooks {
        f();
    }
}
