//! `kyoto/net`'s native half: TCP and UDP sockets on kyoto-rt, with two data paths.
//!
//! - `current_thread` (default on Unix): a current-thread kyoto-rt runtime per env whose poller
//!   descriptor is watched by a `uv_poll` handle on the env's own libuv loop. When it is readable,
//!   the runtime is driven on the JS thread (no thread hop): socket tasks read into the env's queue,
//!   then the whole batch reaches JS in one call, and the writes JS queued meanwhile are flushed by
//!   one native pass after that call (direct `write(2)` on the JS thread).
//! - `multi_thread`: the socket tasks run on a process-wide multi-thread kyoto-rt runtime; their
//!   events reach JS through one threadsafe function per env (one wake-up per batch), and JS flushes
//!   its queued writes with one native call per microtask turn (the tasks write).
//!
//! Both paths share the JS protocol: events are six-int records in a shared `Int32Array` with
//! their bytes in a shared arena (see [`queue`]); writes are five-int records in a shared write
//! table whose bytes JS copied into a shared write arena; per-socket "blocked" flags live in a
//! shared `Uint8Array`. Every synchronous call returns a negative errno instead of throwing.
//!
//! This file holds the per-env machinery (`net_init`, the socket table, batch delivery, the write
//! flush) and the helpers the socket calls share; the calls themselves are in [`ops`] (TCP, UDP and
//! per-handle operations), [`unix`] and `pipe` (Windows named pipes); a socket's task is in [`sock`].
#![allow(clippy::too_many_arguments)]

pub mod frame;
pub mod ops;
#[cfg(windows)]
pub mod pipe;
pub mod queue;
pub mod sock;
#[cfg(unix)]
pub mod unix;
pub mod unsupported;
#[cfg(unix)]
mod uv;
#[cfg(windows)]
mod win_errno;
pub mod zone;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kyoto_rt::net::{SendMsg, TcpListener, TcpStream, UdpSocket};
use kyoto_rt::task::AbortHandle;
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use socket2::{Domain, Protocol, Socket, Type};

use queue::{Ev, Queue, EV_INTS};
use sock::*;

use crate::runtime::NativeRuntime;

const IDX_BITS: u32 = 20;
const IDX_MASK: u32 = (1 << IDX_BITS) - 1;
const WREC_INTS: usize = 5;
const CTL_WCOUNT: usize = 0;
const CTL_WBYTES: usize = 1;
#[cfg(unix)]
const CTL_INTURN: usize = 2;

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<Sock>>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    closed: bool,
    /// Handles of streams taken out because their runtime shut down (see `Shared::remove_killed`).
    killed: std::collections::HashSet<u32>,
}

/// State shared by an env's JS thread and its socket tasks.
pub struct Shared {
    pub q: Queue,
    slab: Mutex<Slab>,
    /// The runtime of sockets created without `{ runtime }`.
    pub handle: kyoto_rt::Handle,
    copies: Mutex<HashMap<u32, (AbortHandle, u32, u32)>>,
}

impl Shared {
    fn slab(&self) -> MutexGuard<'_, Slab> {
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Aborts (and forgets) every native copy with an end `touches` picks; their drops report
    /// to JS. The aborts run after the lock is released.
    fn abort_copies(&self, touches: impl Fn(u32) -> bool) {
        let copies: Vec<AbortHandle> = {
            let mut c = self.copies.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<u32> = c
                .iter()
                .filter(|(_, (_, a, b))| touches(*a) || touches(*b))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| c.remove(&id).map(|x| x.0))
                .collect()
        };
        for a in copies {
            a.abort();
        }
    }

    /// Registers a new socket under a fresh handle and spawns its task on `rt` (whose reactor the
    /// socket is registered with). `None` when the env is gone or the table is full (the socket is
    /// then closed).
    pub fn insert_on(
        self: &Arc<Self>,
        rt: &kyoto_rt::Handle,
        make: impl FnOnce(u32) -> Sock,
    ) -> Option<u32> {
        let on_default = rt.ptr_eq(&self.handle)
            || crate::runtime::started_default_runtime().is_some_and(|d| rt.ptr_eq(d.handle()));
        let sock = {
            let mut s = self.slab();
            if s.closed {
                return None;
            }
            let idx = match s.free.pop() {
                Some(i) => i,
                None => {
                    let i = s.entries.len() as u32;
                    if i > IDX_MASK {
                        return None;
                    }
                    s.entries.push(None);
                    s.gens.push(0);
                    i
                }
            };
            let g = &mut s.gens[idx as usize];
            *g = if *g >= 2047 { 1 } else { *g + 1 };
            let h = (*g << IDX_BITS) | idx;
            let sock = Arc::new(make(h));
            // Flagged before the table shows it: `net_shutdown_default` (JS thread) may look at
            // any moment while a worker registers an accepted stream.
            if on_default {
                sock.set(F_ON_DEFAULT);
            }
            s.entries[idx as usize] = Some(sock.clone());
            sock
        };
        let h = sock.h;
        let jh = rt.spawn(SockTask::new(sock.clone()));
        let mut st = sock.lock();
        // A default shutdown that found no abort handle yet: this task must end too.
        if sock.has(F_KILLED) {
            jh.abort();
        } else {
            st.abort = Some(jh.abort_handle());
        }
        Some(h)
    }

    pub fn get(&self, h: u32) -> Option<Arc<Sock>> {
        let s = self.slab();
        match s.entries.get((h & IDX_MASK) as usize) {
            Some(Some(sock)) if sock.h == h => Some(sock.clone()),
            _ => None,
        }
    }

    fn remove(&self, h: u32) -> Option<Arc<Sock>> {
        let mut s = self.slab();
        s.killed.remove(&h);
        let idx = (h & IDX_MASK) as usize;
        match s.entries.get(idx) {
            Some(Some(sock)) if sock.h == h => {
                let sock = s.entries[idx].take();
                s.free.push(idx as u32);
                sock
            }
            _ => None,
        }
    }

    /// Takes a socket whose runtime shut down out of the table (see `sock::release_killed`),
    /// remembering its handle: JS calls on it fail with [`E_RUNTIME_SHUTDOWN`] until JS closes it.
    pub fn remove_killed(&self, h: u32) -> Option<Arc<Sock>> {
        let sock = self.remove(h);
        if sock.is_some() {
            self.slab().killed.insert(h);
        }
        sock
    }

    /// Whether `h` is a socket [`Shared::remove_killed`] took out (and JS has not closed yet).
    pub fn was_killed(&self, h: u32) -> bool {
        self.slab().killed.contains(&h)
    }
}

fn close_sock(shared: &Shared, sock: &Sock) {
    // What JS wrote before closing goes out: what the socket takes now at once, the rest from the
    // socket's task, which lingers for it instead of stopping (`sock::poll_linger`).
    let mut linger = false;
    if let Kind::Stream(s) = &sock.kind {
        if !sock.has(F_CLOSED | F_WRITE_FAILED) {
            let mut st = sock.lock();
            let so_linger = s.with_ref(|r| r.linger()).ok().flatten();
            // An abortive close (`SO_LINGER` 0: compat's resetAndDestroy) resets at once instead.
            let abortive = so_linger == Some(Duration::ZERO);
            if so_linger.is_some_and(|d| d > Duration::ZERO) {
                // A timed linger makes close(2) block the thread that drops the descriptor (the
                // JS thread, or a runtime worker) until the data went or the time is up. Without
                // it the kernel sends what it holds in the background, and kyoto's task lingers
                // for its own backlog below: nobody's thread stops.
                let _ = s.with_ref(|r| r.set_linger(None));
            }
            if st.backlog() > 0 && !abortive {
                linger = flush_backlog_now(s, &mut st).is_ok() && st.backlog() > 0;
            }
        }
    }
    sock.set(if linger {
        F_CLOSED | F_LINGER
    } else {
        F_CLOSED
    });
    match &sock.kind {
        Kind::Listener(l) => drop(l.take()),
        Kind::Udp(u) => drop(u.take()),
        #[cfg(unix)]
        Kind::UnixDgram(u) => {
            let taken = u.take();
            let mut st = sock.lock();
            let futures = (st.rd.take(), st.wr.take());
            drop(st);
            drop((futures, taken));
        }
        Kind::Stream(_) => {}
    }
    let abort = sock.lock().abort.take();
    if linger {
        sock.wake();
    } else if let Some(a) = abort {
        a.abort();
    }
    shared.abort_copies(|h| h == sock.h);
}

/// JS-thread state of one env.
struct NetEnv {
    env: sys::napi_env,
    threaded: bool,
    shared: Arc<Shared>,
    rt: RefCell<Option<kyoto_rt::Runtime>>,
    cb: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    ev: *mut i32,
    ev_cap: usize,
    rarena: *mut u8,
    rarena_len: usize,
    wtab: *mut i32,
    wtab_cap: usize,
    warena: *mut u8,
    warena_len: usize,
    ctl: *mut i32,
    blocked: *mut u8,
    blocked_len: usize,
    tsfn: Cell<sys::napi_threadsafe_function>,
    #[cfg(unix)]
    uv: RefCell<Option<uv::UvGlue>>,
    spare: RefCell<(Vec<Ev>, Vec<u8>)>,
    refd: Cell<bool>,
    closed: Cell<bool>,
    #[cfg_attr(not(unix), allow(dead_code))]
    in_turn: Cell<bool>,
}

/// The env's state in its thread-local slot. If the thread exits without the env cleanup hook
/// (e.g. `process.exit()` on the main thread), the state is leaked rather than dropped: tearing a
/// runtime down from a thread-local destructor would touch other, already destroyed thread-locals.
struct Slot(Option<Rc<NetEnv>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            std::mem::forget(n);
        }
    }
}

thread_local! {
    static NET: RefCell<Slot> = const { RefCell::new(Slot(None)) };
}

fn net() -> Result<Rc<NetEnv>> {
    NET.with(|n| n.borrow().0.clone())
        .ok_or_else(|| Error::from_reason("kyoto/net is not initialised in this thread"))
}

/// Worker threads of the `multi_thread` socket runtime: one per core but one, at least one. The JS
/// thread is a busy thread of its own (it runs the handler half of every operation), so a worker
/// on every core oversubscribes them; `KYOTO_WORKER_THREADS` still decides when set. On 2 cores
/// (P1, alternating runs) one worker gave 14–15 % more ops/s than two at 50×1×64 B and 200×4×128 B.
fn mt_workers() -> Option<usize> {
    if kyoto_rt::runtime::worker_threads_from_env().is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(cores.saturating_sub(1).max(1))
}

fn mt_runtime() -> io::Result<kyoto_rt::Handle> {
    static RT: OnceLock<std::result::Result<kyoto_rt::Runtime, String>> = OnceLock::new();
    match RT.get_or_init(|| {
        let mut b = kyoto_rt::Builder::new_multi_thread();
        if let Some(n) = mt_workers() {
            b.worker_threads(n);
        }
        b.enable_all()
            .thread_name("kyoto-net")
            .build()
            .map_err(|e| e.to_string())
    }) {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(io::Error::other(e.clone())),
    }
}

fn typed_array(
    env: sys::napi_env,
    v: sys::napi_value,
    want: sys::napi_typedarray_type,
) -> Result<(*mut c_void, usize)> {
    let mut is_ta = false;
    // SAFETY: live env and value of the current call.
    unsafe { sys::napi_is_typedarray(env, v, &mut is_ta) };
    if !is_ta {
        return Err(Error::new(Status::InvalidArg, "expected a typed array"));
    }
    let (mut ty, mut len, mut data, mut ab, mut off) =
        (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
    // SAFETY: `v` is a typed array; all out-pointers are valid.
    unsafe {
        sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off)
    };
    if ty != want {
        return Err(Error::new(Status::InvalidArg, "wrong typed array kind"));
    }
    let mut r = ptr::null_mut();
    // SAFETY: live env and value; the reference keeps the array alive for the env's lifetime.
    unsafe { sys::napi_create_reference(env, v, 1, &mut r) };
    Ok((data, len))
}

/// Initialises `kyoto/net` in this env. `flavor`: `'current_thread'` (uv_poll on this thread's
/// loop; the default where supported) or `'multi_thread'`. Returns the flavor in use.
#[napi(
    catch_unwind,
    ts_args_type = "flavor: string, onBatch: (count: number) => void, ev: Int32Array, rarena: Uint8Array, wtab: Int32Array, warena: Uint8Array, ctl: Int32Array, blocked: Uint8Array"
)]
pub fn net_init(
    env: Env,
    flavor: String,
    on_batch: Unknown,
    ev: Unknown,
    rarena: Unknown,
    wtab: Unknown,
    warena: Unknown,
    ctl: Unknown,
    blocked: Unknown,
) -> Result<String> {
    if let Some(n) = NET.with(|n| n.borrow().0.clone()) {
        return Ok(if n.threaded {
            "multi_thread"
        } else {
            "current_thread"
        }
        .to_owned());
    }
    napi::bindgen_prelude::retain_current_module_for_unload_safety();
    crate::bridge::install_panic_hook();
    let raw = env.raw();
    if on_batch.get_type()? != ValueType::Function {
        return Err(Error::new(Status::InvalidArg, "onBatch must be a function"));
    }
    use sys::TypedarrayType as T;
    let (ev_p, ev_len) = typed_array(raw, ev.raw(), T::int32_array)?;
    let (ra_p, ra_len) = typed_array(raw, rarena.raw(), T::uint8_array)?;
    let (wt_p, wt_len) = typed_array(raw, wtab.raw(), T::int32_array)?;
    let (wa_p, wa_len) = typed_array(raw, warena.raw(), T::uint8_array)?;
    let (ctl_p, ctl_len) = typed_array(raw, ctl.raw(), T::int32_array)?;
    let (bl_p, bl_len) = typed_array(raw, blocked.raw(), T::uint8_array)?;
    if ev_len < EV_INTS || ra_len < READ_CHUNK + 64 || wt_len < WREC_INTS || ctl_len < 4 {
        return Err(Error::new(Status::InvalidArg, "net buffers too small"));
    }
    // Windows has no `uv_poll` on mio's poller (IOCP): always the worker-thread data path.
    #[cfg(unix)]
    let threaded = flavor == "multi_thread" || uv::api().is_none();
    #[cfg(not(unix))]
    let threaded = {
        let _ = flavor;
        true
    };
    let (handle, rt) = if threaded {
        (
            mt_runtime().map_err(|e| Error::from_reason(e.to_string()))?,
            None,
        )
    } else {
        let rt = kyoto_rt::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::from_reason(e.to_string()))?;
        (rt.handle().clone(), Some(rt))
    };
    let shared = Arc::new(Shared {
        q: Queue::new(),
        slab: Mutex::new(Slab::default()),
        handle,
        copies: Mutex::new(HashMap::new()),
    });
    let mut cb = ptr::null_mut();
    // SAFETY: live env; `on_batch` is a function of this call.
    unsafe { sys::napi_create_reference(raw, on_batch.raw(), 1, &mut cb) };
    let mut async_ctx = ptr::null_mut();
    let mut resource = ptr::null_mut();
    let mut name = ptr::null_mut();
    let label = "kyoto.net";
    // SAFETY: live env; valid UTF-8 of the given length; out-pointers valid.
    unsafe {
        sys::napi_create_object(raw, &mut resource);
        sys::napi_create_string_utf8(raw, label.as_ptr().cast(), label.len() as isize, &mut name);
        sys::napi_async_init(raw, resource, name, &mut async_ctx);
    }
    let state = Rc::new(NetEnv {
        env: raw,
        threaded,
        shared: shared.clone(),
        rt: RefCell::new(rt),
        cb,
        async_ctx,
        ev: ev_p.cast(),
        ev_cap: ev_len / EV_INTS,
        rarena: ra_p.cast(),
        rarena_len: ra_len,
        wtab: wt_p.cast(),
        wtab_cap: wt_len / WREC_INTS,
        warena: wa_p.cast(),
        warena_len: wa_len,
        ctl: ctl_p.cast(),
        blocked: bl_p.cast(),
        blocked_len: bl_len,
        tsfn: Cell::new(ptr::null_mut()),
        #[cfg(unix)]
        uv: RefCell::new(None),
        spare: RefCell::new((Vec::with_capacity(256), Vec::with_capacity(64 * 1024))),
        refd: Cell::new(false),
        closed: Cell::new(false),
        in_turn: Cell::new(false),
    });
    if threaded {
        state.create_wake(on_batch.raw())?;
    }
    #[cfg(unix)]
    if !threaded {
        let mut lp = ptr::null_mut();
        // SAFETY: live env on its own thread.
        unsafe { sys::napi_get_uv_event_loop(raw, &mut lp) };
        let fd = state
            .rt
            .borrow()
            .as_ref()
            .and_then(|rt| rt.poller_fd())
            .ok_or_else(|| Error::from_reason("no poller fd"))?;
        let glue = uv::UvGlue::new(lp.cast(), fd, on_poll, on_timer).map_err(Error::from_reason)?;
        *state.uv.borrow_mut() = Some(glue);
    }
    NET.with(|n| n.borrow_mut().0 = Some(state));
    // SAFETY: `env_cleanup` takes no data and is a valid extern "C" function.
    unsafe { sys::napi_add_env_cleanup_hook(raw, Some(env_cleanup), ptr::null_mut()) };
    Ok(if threaded {
        "multi_thread"
    } else {
        "current_thread"
    }
    .to_owned())
}

unsafe extern "C" fn tsfn_finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the Arc leaked in `net_init`; the finalizer runs exactly once.
    let shared = unsafe { Arc::from_raw(data as *const Shared) };
    shared.q.lock().tsfn = ptr::null_mut();
}

unsafe extern "C" fn call_js(
    env: sys::napi_env,
    js_cb: sys::napi_value,
    _context: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() || js_cb.is_null() {
        return;
    }
    let Some(n) = NET.with(|n| n.borrow().0.clone()) else {
        return;
    };
    if n.closed.get() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let delivered = n.deliver(js_cb, false);
        let mut q = n.shared.q.lock();
        if q.evs.is_empty() || q.closed {
            q.armed = false;
        } else if delivered < DEFER_AFTER {
            // More arrived meanwhile: Node dispatches the next call in this loop turn, as before.
            q.wake();
        } else {
            // A large batch, and more behind it: the next waits for a later loop turn (JS re-arms
            // from setImmediate, `net_rearm`), or a producer that keeps the queue full would have
            // Node's dispatch loop deliver up to 1 000 batches back to back, starving timers.
            drop(q);
            n.call(js_cb, 0, false);
        }
    }));
}

/// Bytes one delivery of the threadsafe function may carry before the next one waits for a later
/// turn of the event loop (see `call_js`).
const DEFER_AFTER: usize = 256 * 1024;

/// Re-arms the threadsafe function after a large delivery (JS calls it from `setImmediate` when
/// `onBatch` got a count of 0): delivers what queued meanwhile.
#[napi(catch_unwind)]
pub fn net_rearm() -> Result<()> {
    let n = net()?;
    let mut q = n.shared.q.lock();
    q.armed = false;
    if !q.evs.is_empty() && !q.closed {
        q.wake();
    }
    Ok(())
}

unsafe extern "C" fn env_cleanup(_arg: *mut c_void) {
    let Some(n) = NET.with(|n| n.borrow_mut().0.take()) else {
        return;
    };
    n.closed.set(true);
    n.shared.q.close();
    #[cfg(unix)]
    if let Some(mut uv) = n.uv.borrow_mut().take() {
        uv.close();
    }
    let socks: Vec<Arc<Sock>> = {
        let mut s = n.shared.slab();
        s.closed = true;
        s.free.clear();
        s.entries.drain(..).flatten().collect()
    };
    for s in &socks {
        close_sock(&n.shared, s);
    }
    drop(socks);
    // Dropping the current-thread runtime cancels its tasks, which closes their sockets.
    let rt = n.rt.borrow_mut().take();
    drop(rt);
}

#[cfg(unix)]
unsafe extern "C" fn on_poll(_h: *mut c_void, _status: std::ffi::c_int, _events: std::ffi::c_int) {
    turn();
}

/// The deadline timer's callback, and the "soon" idle handle's (see `uv.rs`).
#[cfg(unix)]
unsafe extern "C" fn on_timer(_h: *mut c_void) {
    turn();
}

/// One turn of the `current_thread` data path, from a libuv callback on the JS thread.
#[cfg(unix)]
fn turn() {
    let Some(n) = NET.with(|n| n.borrow().0.clone()) else {
        return;
    };
    if n.closed.get() {
        return;
    }
    // Whatever called, this turn is the one a pending `run_soon` asked for; the turn asks again
    // at its end if more is left.
    if let Some(uv) = n.uv.borrow().as_ref() {
        uv.soon_done();
    }
    if n.in_turn.get() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| n.turn()));
}

impl NetEnv {
    /// Creates the env's threadsafe function: how events pushed on other threads (the
    /// `multi_thread` data path, sockets on a `{ runtime }`) wake this JS thread, one call per
    /// batch. It holds the loop only while the env is ref'd.
    fn create_wake(&self, on_batch: sys::napi_value) -> Result<()> {
        let raw = self.env;
        let mut name = ptr::null_mut();
        let label = "kyoto.net";
        // SAFETY: live env on its JS thread; valid UTF-8 of the given length.
        unsafe {
            sys::napi_create_string_utf8(
                raw,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name,
            )
        };
        let mut tsfn = ptr::null_mut();
        let finalize_data = Arc::into_raw(self.shared.clone()) as *mut c_void;
        // SAFETY: valid env/function/name; `finalize_data` is an owned Arc reclaimed once in
        // `tsfn_finalize` (or right below if creation fails).
        let st = unsafe {
            sys::napi_create_threadsafe_function(
                raw,
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
        if st != sys::Status::napi_ok {
            // SAFETY: creation failed, the finalizer never runs.
            drop(unsafe { Arc::from_raw(finalize_data as *const Shared) });
            return Err(Error::from_reason("napi_create_threadsafe_function failed"));
        }
        if !self.refd.get() {
            // SAFETY: JS thread, live TSFN: an idle env never holds the loop.
            unsafe { sys::napi_unref_threadsafe_function(raw, tsfn) };
        }
        let mut q = self.shared.q.lock();
        q.tsfn = tsfn;
        if !q.evs.is_empty() && !q.armed {
            q.wake();
        }
        drop(q);
        self.tsfn.set(tsfn);
        Ok(())
    }

    /// The runtime a new socket's task runs on: the env's own, or `runtime` (its events then
    /// reach this thread through the threadsafe function, created on first use).
    fn runtime_for(&self, runtime: Option<&NativeRuntime>) -> Result<kyoto_rt::Handle> {
        let Some(rt) = runtime else {
            return Ok(self.shared.handle.clone());
        };
        if self.tsfn.get().is_null() {
            let mut cb = ptr::null_mut();
            // SAFETY: `cb` is a live reference to the onBatch function; JS thread.
            unsafe { sys::napi_get_reference_value(self.env, self.cb, &mut cb) };
            self.create_wake(cb)?;
        }
        Ok(rt.inner().handle().clone())
    }

    fn ctl(&self, i: usize) -> i32 {
        // SAFETY: `ctl` has at least 4 ints (checked at init), kept alive by a reference; JS thread.
        unsafe { *self.ctl.add(i) }
    }

    fn set_ctl(&self, i: usize, v: i32) {
        // SAFETY: as in `ctl`.
        unsafe { *self.ctl.add(i) = v };
    }

    #[cfg(unix)]
    fn turn(&self) {
        self.in_turn.set(true);
        let mut outcome = None;
        {
            let rt = self.rt.borrow();
            if let Some(rt) = rt.as_ref() {
                // Pushes from inside drive() are delivered by this turn: no wake-up needed.
                let _driving = queue::Driving::enter();
                for _ in 0..3 {
                    let o = rt.drive(1024);
                    let again = o.is_some_and(|o| o.has_ready_tasks);
                    outcome = o;
                    if !again {
                        break;
                    }
                }
            }
        }
        if !self.shared.q.is_empty() {
            let mut scope = ptr::null_mut();
            // SAFETY: JS thread, live env: a handle scope for the values of this delivery.
            unsafe { sys::napi_open_handle_scope(self.env, &mut scope) };
            self.set_ctl(CTL_INTURN, 1);
            let mut cb = ptr::null_mut();
            // SAFETY: `cb` is a live reference to the onBatch function.
            unsafe { sys::napi_get_reference_value(self.env, self.cb, &mut cb) };
            self.deliver(cb, true);
            self.set_ctl(CTL_INTURN, 0);
            // The writes JS queued while handling this batch: one native pass.
            self.flush();
            // SAFETY: the scope opened above.
            unsafe { sys::napi_close_handle_scope(self.env, scope) };
        }
        self.in_turn.set(false);
        if self.closed.get() {
            return;
        }
        let uv = self.uv.borrow();
        let Some(uv) = uv.as_ref() else { return };
        match outcome {
            Some(o) if o.has_ready_tasks || !self.shared.q.is_empty() => uv.run_soon(on_timer),
            Some(o) => uv.run_at(
                on_timer,
                o.next_timer.map(|t| {
                    let d = t.saturating_duration_since(kyoto_rt::time::Instant::now());
                    d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
                }),
            ),
            None => {}
        }
    }

    /// Runs a turn of the env's own `current_thread` runtime soon, queued events or not (tasks
    /// JS woke or aborted from outside a turn).
    fn turn_soon(&self) {
        #[cfg(unix)]
        if !self.threaded && !self.in_turn.get() {
            if let Some(uv) = self.uv.borrow().as_ref() {
                uv.run_soon(on_timer);
            }
        }
    }

    /// After a JS-initiated call: make sure queued events or tasks get a turn soon.
    fn kick(&self) {
        if !self.shared.q.is_empty() {
            self.turn_soon();
        }
    }

    /// Takes the queue and hands it to JS, one call per chunk that fits the shared arrays.
    /// Delivers what is queued to JS; returns the bytes it carried.
    fn deliver(&self, js_cb: sys::napi_value, make_callback: bool) -> usize {
        let (mut evs, mut data) = std::mem::take(&mut *self.spare.borrow_mut());
        {
            let mut g = self.shared.q.lock();
            std::mem::swap(&mut g.evs, &mut evs);
            std::mem::swap(&mut g.data, &mut data);
        }
        let delivered = data.len();
        let mut i = 0;
        while i < evs.len() && !self.closed.get() {
            let base = evs[i].off as usize;
            let mut j = i;
            let mut end = base;
            while j < evs.len() && j - i < self.ev_cap {
                let ev_end = if j + 1 < evs.len() {
                    evs[j + 1].off as usize
                } else {
                    data.len()
                };
                if ev_end - base > self.rarena_len && j > i {
                    break;
                }
                end = ev_end;
                j += 1;
            }
            let end = end.min(base + self.rarena_len);
            // SAFETY: `rarena` holds `rarena_len` bytes and `end - base <= rarena_len`; the
            // source is our own vector; JS thread.
            unsafe {
                ptr::copy_nonoverlapping(data.as_ptr().add(base), self.rarena, end - base);
            }
            for (k, ev) in evs[i..j].iter_mut().enumerate() {
                let rec = [
                    ev.h as i32,
                    ev.kind,
                    ev.a,
                    ev.b,
                    (ev.off as usize - base) as i32,
                    ev.len as i32,
                ];
                // SAFETY: `k < ev_cap`, so the record fits the shared Int32Array.
                unsafe {
                    ptr::copy_nonoverlapping(rec.as_ptr(), self.ev.add(k * EV_INTS), EV_INTS);
                }
                if let Some(s) = ev.sock.take() {
                    s.delivered(ev.len as usize);
                }
            }
            self.call(js_cb, (j - i) as u32, make_callback);
            i = j;
        }
        evs.clear();
        data.clear();
        if data.capacity() > 4 << 20 {
            data = Vec::with_capacity(64 * 1024);
        }
        *self.spare.borrow_mut() = (evs, data);
        delivered
    }

    fn call(&self, js_cb: sys::napi_value, count: u32, make_callback: bool) {
        let env = self.env;
        let mut argv = [ptr::null_mut()];
        let mut ret = ptr::null_mut();
        // SAFETY: JS thread with an open handle scope; `js_cb` is the onBatch function.
        unsafe {
            sys::napi_create_uint32(env, count, &mut argv[0]);
            let st = if make_callback {
                let mut global = ptr::null_mut();
                sys::napi_get_global(env, &mut global);
                sys::napi_make_callback(
                    env,
                    self.async_ctx,
                    global,
                    js_cb,
                    1,
                    argv.as_ptr(),
                    &mut ret,
                )
            } else {
                let mut undefined = ptr::null_mut();
                sys::napi_get_undefined(env, &mut undefined);
                sys::napi_call_function(env, undefined, js_cb, 1, argv.as_ptr(), &mut ret)
            };
            if st != sys::Status::napi_ok {
                let mut pending = false;
                sys::napi_is_exception_pending(env, &mut pending);
                if pending {
                    let mut exc = ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut exc);
                    sys::napi_fatal_exception(env, exc);
                }
            }
        }
    }

    fn set_blocked(&self, h: u32) {
        let idx = (h & IDX_MASK) as usize;
        if idx < self.blocked_len {
            // SAFETY: `idx < blocked_len`; JS thread.
            unsafe { *self.blocked.add(idx) = 1 };
        }
    }

    /// Sends every write JS queued in the shared write table.
    fn flush(&self) {
        let count = (self.ctl(CTL_WCOUNT).max(0) as usize).min(self.wtab_cap);
        if count == 0 {
            return;
        }
        let direct = !self.threaded;
        let mut last: Option<Arc<Sock>> = None;
        let mut msgs: Vec<(u32, usize, usize, Option<SocketAddr>)> = Vec::new();
        let rec = |i: usize| -> [i32; WREC_INTS] {
            let mut r = [0i32; WREC_INTS];
            // SAFETY: `i < count <= wtab_cap`; JS thread.
            unsafe {
                ptr::copy_nonoverlapping(self.wtab.add(i * WREC_INTS), r.as_mut_ptr(), WREC_INTS)
            };
            r
        };
        let arena = |off: usize, len: usize| -> &[u8] {
            let off = off.min(self.warena_len);
            let len = len.min(self.warena_len - off);
            // SAFETY: bounds clamped to the arena; the arena lives for the env; JS thread, and JS
            // does not run during this pass.
            unsafe { std::slice::from_raw_parts(self.warena.add(off), len) }
        };
        let mut i = 0;
        while i < count {
            let r = rec(i);
            let h = r[0] as u32;
            let sock = match &last {
                Some(s) if s.h == h => Some(s.clone()),
                _ => self.shared.get(h),
            };
            let Some(sock) = sock else {
                i += 1;
                continue;
            };
            match &sock.kind {
                Kind::Stream(_) => {
                    let (blocked, wake) =
                        stream_write(&sock, arena(r[1] as usize, r[2] as usize), direct);
                    if blocked {
                        self.set_blocked(h);
                    }
                    if wake {
                        sock.wake();
                    }
                    i += 1;
                }
                Kind::Udp(_) => {
                    // A run of datagrams for this socket: one sendmmsg.
                    msgs.clear();
                    while i < count && msgs.len() < 64 {
                        let r = rec(i);
                        if r[0] as u32 != h {
                            break;
                        }
                        let addr = (r[4] != 0).then(|| {
                            SocketAddr::new(
                                IpAddr::V4(Ipv4Addr::from(r[3] as u32)),
                                (r[4] & 0xffff) as u16,
                            )
                        });
                        msgs.push((h, r[1] as usize, r[2] as usize, addr));
                        i += 1;
                    }
                    let list: Vec<SendMsg<'_>> = msgs
                        .iter()
                        .map(|&(_, off, len, addr)| SendMsg {
                            data: arena(off, len),
                            addr,
                        })
                        .collect();
                    let (blocked, wake) = udp_send(&sock, &list, direct);
                    if blocked {
                        self.set_blocked(h);
                    }
                    if wake {
                        sock.wake();
                    }
                }
                _ => i += 1,
            }
            last = Some(sock);
        }
        self.set_ctl(CTL_WCOUNT, 0);
        self.set_ctl(CTL_WBYTES, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the socket calls (`ops.rs`, `unix.rs`, `pipe.rs`)

fn neg(e: &io::Error) -> i32 {
    -errno(e).max(1)
}

/// `ip` (IPv6 with an optional `%zone`, see [`zone`]) and `port`, or -EINVAL.
fn parse_addr(ip: &str, port: u32) -> std::result::Result<SocketAddr, i32> {
    zone::parse_socket_addr(ip, port as u16).ok_or_else(|| -einval())
}

/// EINVAL as JS reports it (see `sock::errno`).
fn einval() -> i32 {
    errno(&io::Error::from_raw_os_error(EINVAL))
}

/// EBADF as JS reports it.
fn ebadf() -> i32 {
    errno(&io::Error::from_raw_os_error(EBADF))
}

fn domain(ip: &IpAddr) -> Domain {
    match ip {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    }
}

const O_REUSE_ADDR: u32 = 1;
/// SO_REUSEPORT (Unix only; Windows has no such option and the flag is ignored).
#[cfg_attr(not(unix), allow(dead_code))]
const O_REUSE_PORT: u32 = 2;
const O_V6_ONLY: u32 = 4;
const O_NODELAY: u32 = 8;
const O_KEEPALIVE: u32 = 16;

fn apply_common(s: &Socket, flags: u32, sndbuf: u32, rcvbuf: u32, v6: bool) -> io::Result<()> {
    if flags & O_REUSE_ADDR != 0 {
        s.set_reuse_address(true)?;
    }
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if flags & O_REUSE_PORT != 0 {
        s.set_reuse_port(true)?;
    }
    if v6 && flags & O_V6_ONLY != 0 {
        s.set_only_v6(true)?;
    }
    if sndbuf > 0 {
        s.set_send_buffer_size(sndbuf as usize)?;
    }
    if rcvbuf > 0 {
        s.set_recv_buffer_size(rcvbuf as usize)?;
    }
    Ok(())
}

/// A new non-blocking socket of `ip`'s family with the options every kyoto socket takes
/// ([`apply_common`]); the caller adds its own, then binds, listens or connects.
fn open_socket(
    ip: &IpAddr,
    ty: Type,
    proto: Protocol,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
) -> io::Result<Socket> {
    let s = Socket::new(domain(ip), ty, Some(proto))?;
    apply_common(&s, flags, sndbuf, rcvbuf, ip.is_ipv6())?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Registers a new socket of `kind` whose task runs on `rt`: its handle, or -EBADF when the env is
/// gone or its table is full.
fn register(n: &NetEnv, rt: &kyoto_rt::Handle, kind: Kind, flags: u32) -> i32 {
    n.shared
        .insert_on(rt, |h| Sock::new(h, kind, n.shared.clone(), flags))
        .map_or(-ebadf(), |h| h as i32)
}

/// Registers a std socket that `made` holds (set non-blocking) with `rt`'s reactor through
/// `from_std`, as `kind`: its handle, or the negative errno of whichever step failed.
fn adopt<S, T>(
    n: &NetEnv,
    rt: &kyoto_rt::Handle,
    made: io::Result<S>,
    from_std: impl FnOnce(S) -> io::Result<T>,
    kind: impl FnOnce(T) -> Kind,
    flags: u32,
) -> i32 {
    let _g = rt.enter();
    match made.and_then(from_std) {
        Ok(t) => register(n, rt, kind(t), flags),
        Err(e) => neg(&e),
    }
}

fn with_sock<T: Gone>(h: u32, f: impl FnOnce(&NetEnv, &Arc<Sock>) -> T, missing: T) -> Result<T> {
    let n = net()?;
    let Some(sock) = n.shared.get(h) else {
        // A stream whose runtime shut down left the table with its descriptor: its calls fail
        // with the runtime's error, not EBADF.
        return Ok(if n.shared.was_killed(h) {
            missing.gone()
        } else {
            missing
        });
    };
    let out = f(&n, &sock);
    n.kick();
    // A listener's or datagram socket's descriptor closed with its runtime: the same.
    Ok(if sock.has(F_KILLED) { out.gone() } else { out })
}

/// A native call's result: `gone` turns its `EBADF` into [`E_RUNTIME_SHUTDOWN`] for a socket
/// whose runtime shut down (and closed its descriptor).
trait Gone {
    fn gone(self) -> Self;
}

impl Gone for i32 {
    fn gone(self) -> i32 {
        if self == -ebadf() {
            -E_RUNTIME_SHUTDOWN
        } else {
            self
        }
    }
}

impl Gone for f64 {
    fn gone(self) -> f64 {
        if self == f64::from(-ebadf()) {
            f64::from(-E_RUNTIME_SHUTDOWN)
        } else {
            self
        }
    }
}

/// Counts (backlog bytes, buffer stats): nothing to translate.
impl Gone for i64 {
    fn gone(self) -> i64 {
        self
    }
}

impl Gone for Vec<f64> {
    fn gone(self) -> Vec<f64> {
        self
    }
}

impl Gone for String {
    fn gone(self) -> String {
        if self == format!("!{}", ebadf()) {
            format!("!{E_RUNTIME_SHUTDOWN}")
        } else {
            self
        }
    }
}
