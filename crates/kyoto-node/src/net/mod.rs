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
#![allow(clippy::too_many_arguments)]

pub mod frame;
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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

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

    /// Registers a new socket under a fresh handle and spawns its task on `rt` (whose reactor the
    /// socket is registered with). `None` when the env is gone or the table is full (the socket is
    /// then closed).
    pub fn insert_on(
        self: &Arc<Self>,
        rt: &kyoto_rt::Handle,
        make: impl FnOnce(u32) -> Sock,
    ) -> Option<u32> {
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
            s.entries[idx as usize] = Some(sock.clone());
            sock
        };
        let h = sock.h;
        let jh = rt.spawn(SockTask::new(sock.clone()));
        sock.lock().abort = Some(jh.abort_handle());
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
}

fn close_sock(shared: &Shared, sock: &Sock) {
    // What JS wrote before closing goes out if the socket takes it now (the task that would
    // flush the backlog later is about to stop).
    if let Kind::Stream(s) = &sock.kind {
        if !sock.has(F_CLOSED | F_WRITE_FAILED) {
            let mut st = sock.lock();
            if st.backlog() > 0 {
                let _ = flush_backlog_now(s, &mut st);
            }
        }
    }
    sock.set(F_CLOSED);
    if let Kind::Listener(l) = &sock.kind {
        let l = l.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(l);
    }
    let abort = sock.lock().abort.take();
    if let Some(a) = abort {
        a.abort();
    }
    let copies: Vec<AbortHandle> = {
        let mut c = shared.copies.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<u32> = c
            .iter()
            .filter(|(_, (_, a, b))| *a == sock.h || *b == sock.h)
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
    let from_env = std::env::var(kyoto_rt::runtime::WORKER_THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    if from_env.is_some() {
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
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| n.deliver(js_cb, false)));
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
    if n.closed.get() || n.in_turn.get() {
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
        self.shared.q.lock().tsfn = tsfn;
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

    /// After a JS-initiated call: make sure queued events or tasks get a turn soon.
    fn kick(&self) {
        #[cfg(unix)]
        if !self.threaded && !self.in_turn.get() && !self.shared.q.is_empty() {
            if let Some(uv) = self.uv.borrow().as_ref() {
                uv.run_soon(on_timer);
            }
        }
    }

    /// Takes the queue and hands it to JS, one call per chunk that fits the shared arrays.
    fn deliver(&self, js_cb: sys::napi_value, make_callback: bool) {
        let (mut evs, mut data) = std::mem::take(&mut *self.spare.borrow_mut());
        {
            let mut g = self.shared.q.lock();
            std::mem::swap(&mut g.evs, &mut evs);
            std::mem::swap(&mut g.data, &mut data);
        }
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

fn neg(e: &io::Error) -> i32 {
    -errno(e).max(1)
}

fn parse_ip(ip: &str) -> std::result::Result<IpAddr, i32> {
    ip.parse::<IpAddr>().map_err(|_| -einval())
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

/// Binds and listens; returns the listener's handle or a negative errno.
#[napi(catch_unwind)]
pub fn net_tcp_listen(
    ip: String,
    port: u32,
    backlog: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let ip = match parse_ip(&ip) {
        Ok(ip) => ip,
        Err(e) => return Ok(e),
    };
    let addr = SocketAddr::new(ip, port as u16);
    let r = (|| -> io::Result<std::net::TcpListener> {
        let s = Socket::new(domain(&ip), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        s.set_reuse_address(true)?; // like Node and Tokio: restart while old connections linger
        apply_common(&s, flags, sndbuf, rcvbuf, ip.is_ipv6())?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(backlog.clamp(1, 65535) as i32)?;
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        TcpListener::from_std,
        |l| Kind::Listener(Mutex::new(Some(Listener::Tcp(l)))),
        0,
    ))
}

/// Starts a connect; returns the stream's handle (K_CONNECTED or K_ERROR follows) or a negative
/// errno.
#[napi(catch_unwind)]
pub fn net_tcp_connect(
    ip: String,
    port: u32,
    local_ip: String,
    local_port: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let ip = match parse_ip(&ip) {
        Ok(ip) => ip,
        Err(e) => return Ok(e),
    };
    let local = if local_ip.is_empty() {
        None
    } else {
        match parse_ip(&local_ip) {
            Ok(l) => Some(SocketAddr::new(l, local_port as u16)),
            Err(e) => return Ok(e),
        }
    };
    let addr = SocketAddr::new(ip, port as u16);
    let r = (|| -> io::Result<std::net::TcpStream> {
        let s = Socket::new(domain(&ip), Type::STREAM, Some(Protocol::TCP))?;
        apply_common(&s, flags, sndbuf, rcvbuf, ip.is_ipv6())?;
        if flags & O_NODELAY != 0 {
            s.set_tcp_nodelay(true)?;
        }
        if flags & O_KEEPALIVE != 0 {
            s.set_keepalive(true)?;
        }
        s.set_nonblocking(true)?;
        if let Some(l) = local {
            s.bind(&l.into())?;
        }
        match s.connect(&addr.into()) {
            Ok(()) => {}
            #[cfg(unix)]
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(s.into())
    })();
    Ok(adopt(
        &n,
        &rt,
        r,
        TcpStream::from_std,
        |s| Kind::Stream(Stream::Tcp(s)),
        F_CONNECTING,
    ))
}

/// Binds a UDP socket; returns its handle or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_bind(
    ip: String,
    port: u32,
    flags: u32,
    sndbuf: u32,
    rcvbuf: u32,
    runtime: Option<&NativeRuntime>,
) -> Result<i32> {
    let n = net()?;
    let rt = n.runtime_for(runtime)?;
    let ip = match parse_ip(&ip) {
        Ok(ip) => ip,
        Err(e) => return Ok(e),
    };
    let addr = SocketAddr::new(ip, port as u16);
    let r = (|| -> io::Result<std::net::UdpSocket> {
        let s = Socket::new(domain(&ip), Type::DGRAM, Some(Protocol::UDP))?;
        apply_common(&s, flags, sndbuf, rcvbuf, ip.is_ipv6())?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        Ok(s.into())
    })();
    Ok(adopt(&n, &rt, r, UdpSocket::from_std, Kind::Udp, 0))
}

fn with_sock<T>(h: u32, f: impl FnOnce(&NetEnv, &Arc<Sock>) -> T, missing: T) -> Result<T> {
    let n = net()?;
    let Some(sock) = n.shared.get(h) else {
        return Ok(missing);
    };
    let out = f(&n, &sock);
    n.kick();
    Ok(out)
}

/// Connects a UDP socket (filters what it receives); 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_connect(h: u32, ip: String, port: u32) -> Result<i32> {
    let ip = match parse_ip(&ip) {
        Ok(ip) => ip,
        Err(e) => return Ok(e),
    };
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => {
                sock_ref_udp(u, |r| r.connect(&SocketAddr::new(ip, port as u16).into()))
            }
            _ => -einval(),
        },
        -ebadf(),
    )
}

fn sock_ref_udp(u: &UdpSocket, f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<()>) -> i32 {
    #[cfg(unix)]
    let r = f(&socket2::SockRef::from(u));
    #[cfg(windows)]
    let r = {
        use std::os::windows::io::{AsRawSocket, BorrowedSocket};
        // SAFETY: the socket is owned by `u`, which outlives this borrow.
        let b = unsafe { BorrowedSocket::borrow_raw(u.as_raw_socket()) };
        f(&socket2::SockRef::from(&b))
    };
    match r {
        Ok(()) => 0,
        Err(e) => neg(&e),
    }
}

/// Listener: accept connections (K_ACCEPT events) while `on`.
#[napi(catch_unwind)]
pub fn net_arm(h: u32, on: bool) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if on {
                if s.set(F_ARMED) & F_ARMED == 0 {
                    s.wake();
                }
            } else {
                s.clear(F_ARMED);
            }
            0
        },
        -ebadf(),
    )
}

/// Stream/UDP: read (K_DATA / K_DGRAM events) while `on`.
#[napi(catch_unwind)]
pub fn net_read(h: u32, on: bool) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if on {
                if s.set(F_READING) & F_READING == 0 {
                    s.wake();
                }
            } else {
                s.clear(F_READING);
            }
            0
        },
        -ebadf(),
    )
}

/// Sends the queued write table now (JS calls this once per microtask turn when it queued writes
/// outside a native turn).
#[napi(catch_unwind)]
pub fn net_flush() -> Result<()> {
    let n = net()?;
    n.flush();
    n.kick();
    Ok(())
}

/// Writes `data` (after the queued table): 0 taken, 1 blocked (wait for K_DRAIN), < 0 errno.
#[napi(catch_unwind)]
pub fn net_write(h: u32, data: &[u8]) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |n, s| {
            if s.has(F_WRITE_FAILED) {
                return -epipe();
            }
            let (blocked, wake) = stream_write(s, data, !n.threaded);
            if wake {
                s.wake();
            }
            if blocked {
                n.set_blocked(h);
                1
            } else {
                0
            }
        },
        -ebadf(),
    )
}

fn epipe() -> i32 {
    #[cfg(unix)]
    {
        libc::EPIPE
    }
    #[cfg(not(unix))]
    {
        32
    }
}

/// Sends one datagram to `ip:port` (or the connected peer when `ip` is empty): 0, 1 blocked, or
/// a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_send(h: u32, data: &[u8], ip: String, port: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    let addr = if ip.is_empty() {
        None
    } else {
        match parse_ip(&ip) {
            Ok(ip) => Some(SocketAddr::new(ip, port as u16)),
            Err(e) => return Ok(e),
        }
    };
    with_sock(
        h,
        |n, s| {
            let (blocked, wake) = udp_send(s, &[SendMsg { data, addr }], !n.threaded);
            if wake {
                s.wake();
            }
            if blocked {
                n.set_blocked(h);
                1
            } else {
                0
            }
        },
        -ebadf(),
    )
}

/// 0 when nothing is waiting to be written; 1 when a K_DRAIN will follow.
#[napi(catch_unwind)]
pub fn net_drain(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |_, s| {
            let mut st = s.lock();
            if st.backlog() == 0 && st.dout.is_empty() {
                0
            } else {
                st.drain_wanted = true;
                drop(st);
                s.wake();
                1
            }
        },
        0,
    )
}

/// Shuts the write direction down after the backlog: 0 done, 1 pending (K_DRAIN follows), < 0
/// errno.
#[napi(catch_unwind)]
pub fn net_shutdown(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    with_sock(
        h,
        |_, s| {
            let Some(stream) = s.stream() else {
                return -einval();
            };
            let mut st = s.lock();
            if st.backlog() == 0 {
                drop(st);
                match shutdown_write(stream) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                }
            } else {
                st.shutdown_pending = true;
                drop(st);
                s.wake();
                1
            }
        },
        -ebadf(),
    )
}

/// Closes a socket (after sending what JS queued): its task stops and the descriptor closes.
#[napi(catch_unwind)]
pub fn net_close(h: u32) -> Result<i32> {
    let n = net()?;
    n.flush();
    let Some(sock) = n.shared.remove(h) else {
        return Ok(-ebadf());
    };
    close_sock(&n.shared, &sock);
    n.kick();
    Ok(0)
}

/// `"family|ip|port"` of the local (or peer) address, or `"!errno"`.
#[napi(catch_unwind)]
pub fn net_addr(h: u32, peer: bool) -> Result<String> {
    with_sock(
        h,
        |_, s| {
            let r = match (&s.kind, peer) {
                (Kind::Stream(t), _) => t.addr(peer),
                (Kind::Listener(l), false) => {
                    match l.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        Some(l) => l.addr(),
                        None => Err(io::Error::from_raw_os_error(EBADF)),
                    }
                }
                (Kind::Udp(u), _) => (if peer { u.peer_addr() } else { u.local_addr() }).map(|a| {
                    format!(
                        "{}|{}|{}",
                        if a.is_ipv4() { 4 } else { 6 },
                        a.ip(),
                        a.port()
                    )
                }),
                #[cfg(unix)]
                (Kind::UnixDgram(u), _) => (if peer { u.peer_addr() } else { u.local_addr() })
                    .map(|a| unix_addr_string(&a)),
                _ => Err(io::Error::from_raw_os_error(EINVAL)),
            };
            match r {
                Ok(a) => a,
                Err(e) => format!("!{}", errno(&e)),
            }
        },
        format!("!{}", ebadf()),
    )
}

/// Sets a socket option: 1 nodelay(a), 2 keepalive(a, b = idle ms), 3 linger(a < 0: off, else
/// seconds), 4 ttl(a), 5 broadcast(a), 6 multicast loop v4(a), 7 multicast ttl v4(a), 8 send
/// buffer(a), 9 receive buffer(a). 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_set_opt(h: u32, opt: u32, a: f64, b: f64) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            let on = a != 0.0;
            let f = |r: &socket2::SockRef<'_>| -> io::Result<()> {
                match opt {
                    1 => r.set_tcp_nodelay(on),
                    2 => {
                        r.set_keepalive(on)?;
                        if on && b > 0.0 {
                            let ka = socket2::TcpKeepalive::new()
                                .with_time(std::time::Duration::from_millis(b as u64));
                            r.set_tcp_keepalive(&ka)?;
                        }
                        Ok(())
                    }
                    3 => r.set_linger(if a < 0.0 {
                        None
                    } else {
                        Some(
                            std::time::Duration::try_from_secs_f64(a)
                                .map_err(|_| io::Error::from_raw_os_error(EINVAL))?,
                        )
                    }),
                    4 => r
                        .set_ttl_v4(a as u32)
                        .or_else(|e| r.set_unicast_hops_v6(a as u32).map_err(|_| e)),
                    5 => r.set_broadcast(on),
                    6 => r.set_multicast_loop_v4(on),
                    7 => r.set_multicast_ttl_v4(a as u32),
                    8 => r.set_send_buffer_size(a as usize),
                    9 => r.set_recv_buffer_size(a as usize),
                    _ => Err(io::Error::from_raw_os_error(EINVAL)),
                }
            };
            match &s.kind {
                Kind::Stream(t) => match t.with_ref(f) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                },
                Kind::Udp(u) => sock_ref_udp(u, f),
                #[cfg(unix)]
                Kind::UnixDgram(u) => match f(&socket2::SockRef::from(&**u)) {
                    Ok(()) => 0,
                    Err(e) => neg(&e),
                },
                Kind::Listener(_) => -einval(),
            }
        },
        -ebadf(),
    )
}

/// Joins (or leaves) an IPv4 multicast group on `iface` (an IPv4 address, `""` = any).
#[napi(catch_unwind)]
pub fn net_multicast(h: u32, join: bool, group: String, iface: String) -> Result<i32> {
    let Ok(IpAddr::V4(g)) = group.parse::<IpAddr>() else {
        return Ok(-einval());
    };
    let Some(i) = parse_iface(&iface) else {
        return Ok(-einval());
    };
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => sock_ref_udp(u, |r| {
                if join {
                    r.join_multicast_v4(&g, &i)
                } else {
                    r.leave_multicast_v4(&g, &i)
                }
            }),
            _ => -einval(),
        },
        -ebadf(),
    )
}

/// An IPv4 interface address (`""`: any).
fn parse_iface(iface: &str) -> Option<Ipv4Addr> {
    if iface.is_empty() {
        Some(Ipv4Addr::UNSPECIFIED)
    } else {
        iface.parse().ok()
    }
}

/// Sets the interface of outgoing IPv4 multicast (`IP_MULTICAST_IF`; `""` = the default route's).
/// 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_multicast_if(h: u32, iface: String) -> Result<i32> {
    let Some(i) = parse_iface(&iface) else {
        return Ok(-einval());
    };
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => sock_ref_udp(u, |r| r.set_multicast_if_v4(&i)),
            _ => -einval(),
        },
        -ebadf(),
    )
}

/// Dissolves a UDP socket's association (a `connect` to `AF_UNSPEC`, as libuv does): it sends to
/// and receives from anyone again. 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_udp_disconnect(h: u32) -> Result<i32> {
    with_sock(
        h,
        |_, s| match &s.kind {
            Kind::Udp(u) => udp_disconnect(u),
            _ => -einval(),
        },
        -ebadf(),
    )
}

#[cfg(unix)]
fn udp_disconnect(u: &UdpSocket) -> i32 {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `sockaddr` is a valid value of this plain C struct.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `addr` is a valid `sockaddr` of `len` bytes; `u` owns the descriptor for the call.
    let r = unsafe { libc::connect(u.as_raw_fd(), &addr, len) };
    if r == 0 {
        return 0;
    }
    let e = io::Error::last_os_error();
    // macOS reports EAFNOSUPPORT but has dissolved the association (libuv ignores it too).
    if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        0
    } else {
        neg(&e)
    }
}

#[cfg(not(unix))]
fn udp_disconnect(u: &UdpSocket) -> i32 {
    // Winsock dissolves the association on a connect to the any-address, port 0.
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    sock_ref_udp(u, |r| r.connect(&any.into()))
}

/// A socket option's value: 8 `SO_SNDBUF`, 9 `SO_RCVBUF` (bytes, as the kernel reports them), or
/// a negative errno.
#[napi(catch_unwind)]
pub fn net_get_opt(h: u32, opt: u32) -> Result<f64> {
    with_sock(
        h,
        |_, s| {
            let f = |r: &socket2::SockRef<'_>| -> io::Result<usize> {
                match opt {
                    8 => r.send_buffer_size(),
                    9 => r.recv_buffer_size(),
                    _ => Err(io::Error::from_raw_os_error(EINVAL)),
                }
            };
            let mut out = Ok(0usize);
            let rc = match &s.kind {
                Kind::Stream(t) => {
                    out = t.with_ref(f);
                    0
                }
                Kind::Udp(u) => sock_ref_udp(u, |r| {
                    out = f(r);
                    Ok(())
                }),
                #[cfg(unix)]
                Kind::UnixDgram(u) => {
                    out = f(&socket2::SockRef::from(&**u));
                    0
                }
                Kind::Listener(_) => -einval(),
            };
            match (rc, out) {
                (0, Ok(v)) => v as f64,
                (0, Err(e)) => f64::from(neg(&e)),
                (rc, _) => f64::from(rc),
            }
        },
        f64::from(-ebadf()),
    )
}

/// Starts a native copy `src → dst` (and `dst → src` when `bidi`); K_COPY with handle `op`
/// reports the result. 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_copy(op: u32, src: u32, dst: u32, bidi: bool) -> Result<i32> {
    let n = net()?;
    n.flush();
    let (Some(a), Some(b)) = (n.shared.get(src), n.shared.get(dst)) else {
        return Ok(-ebadf());
    };
    if a.stream().is_none() || b.stream().is_none() {
        return Ok(-einval());
    }
    a.set(F_COPYING);
    b.set(F_COPYING);
    let task = CopyTask::new(op, n.shared.clone(), a, b, bidi);
    let jh = n.shared.handle.spawn(task);
    n.shared
        .copies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(op, (jh.abort_handle(), src, dst));
    n.kick();
    Ok(0)
}

/// Forgets a finished copy (JS calls this when it got K_COPY).
#[napi(catch_unwind)]
pub fn net_copy_done(op: u32) -> Result<()> {
    let n = net()?;
    n.shared
        .copies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&op);
    Ok(())
}

/// Holds (or releases) the event loop for the env's ref'd sockets and pending operations.
#[napi(catch_unwind)]
pub fn net_ref(on: bool) -> Result<()> {
    let n = net()?;
    if n.refd.get() == on || n.closed.get() {
        return Ok(());
    }
    n.refd.set(on);
    #[cfg(unix)]
    if let Some(uv) = n.uv.borrow().as_ref() {
        uv.set_ref(on);
    }
    let tsfn = n.tsfn.get();
    if !tsfn.is_null() {
        // SAFETY: JS thread, live TSFN (the env is not closed).
        unsafe {
            if on {
                sys::napi_ref_threadsafe_function(n.env, tsfn);
            } else {
                sys::napi_unref_threadsafe_function(n.env, tsfn);
            }
        }
    }
    Ok(())
}

/// Claims a stream for `kyoto/io`'s `framed()`: from now on its task splits what it reads into
/// frames (`kind` 1: lines of at most `max` bytes; 2: length-delimited with a `fieldBytes`-byte
/// big-endian header and payloads of at most `max` bytes). The task first pushes `K_FRAME_SYNC`
/// and stops reading until JS hands over what it buffered with [`net_frame_feed`]. 0 or a negative
/// errno (`EINVAL`: not a stream, already framed, or a bad codec).
#[napi(catch_unwind)]
pub fn net_frame(h: u32, kind: u32, max: f64, field_bytes: u32) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if s.stream().is_none() || s.has(F_FRAMED) || max.is_nan() || max < 0.0 {
                return -einval();
            }
            // `as` saturates: anything above u64::MAX (or +inf) means no limit.
            let max = max as u64;
            let framer = match kind {
                1 => frame::Framer::lines(max),
                2 => match frame::Framer::length_delimited(field_bytes as usize, max) {
                    Some(f) => f,
                    None => return -einval(),
                },
                _ => return -einval(),
            };
            *s.lock_framer() = Some(framer);
            s.set(F_FRAMED | F_FRAME_HOLD | F_FRAME_SYNC);
            s.wake();
            0
        },
        -ebadf(),
    )
}

/// Hands what JS had buffered of a stream, when it received `K_FRAME_SYNC`, to the stream's framer
/// (before anything read later), then lets the task read through the framer. `end` 1: the stream
/// had ended (the framer finishes and a `K_EOF` follows the frames); 2: it failed with `errno` (a
/// read `K_ERROR` follows). 0 or a negative errno.
#[napi(catch_unwind)]
pub fn net_frame_feed(h: u32, data: &[u8], end: u32, errno: i32) -> Result<i32> {
    with_sock(
        h,
        |_, s| {
            if !s.has(F_FRAMED) || s.has(F_FRAME_ACTIVE) {
                return -einval();
            }
            {
                let mut g = s.lock_framer();
                let Some(f) = g.as_mut() else {
                    return -einval();
                };
                // In read-sized pieces: each event must fit the shared arena.
                for c in data.chunks(READ_CHUNK) {
                    s.push_framed(f, Some(c));
                }
                match end {
                    1 => {
                        s.push_framed(f, None);
                        s.push(Ev::new(s.h, queue::K_EOF, 0, 0));
                    }
                    2 => s.push(Ev::new(s.h, queue::K_ERROR, errno, queue::SYS_READ)),
                    _ => {}
                }
            }
            s.set(F_FRAME_ACTIVE);
            s.clear(F_FRAME_HOLD);
            s.wake();
            0
        },
        -ebadf(),
    )
}

/// `[undelivered bytes, bytes the framer holds]` of a socket, or `[]` (tests: bounded buffering).
#[napi(catch_unwind)]
pub fn net_frame_stats(h: u32) -> Result<Vec<f64>> {
    with_sock(
        h,
        |_, s| {
            let held = s.lock_framer().as_ref().map_or(0, |f| f.held());
            vec![
                s.undelivered.load(std::sync::atomic::Ordering::Acquire) as f64,
                held as f64,
            ]
        },
        Vec::new(),
    )
}

/// Live sockets of this env (tests).
#[napi(catch_unwind)]
pub fn net_live() -> Result<u32> {
    let n = net()?;
    let s = n.shared.slab();
    Ok(s.entries.iter().filter(|e| e.is_some()).count() as u32)
}
