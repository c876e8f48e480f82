//! libuv glue for the `current_thread` data path: the runtime's poller descriptor is watched by a
//! `uv_poll` handle on the env's own loop, a `uv_idle` runs the runtime again on the next loop
//! iteration (tasks or events still queued), and a `uv_timer` at its next timer deadline.
//!
//! "Again soon" is an idle handle, not a zero timer: libuv before 1.48 (Node 20's 1.46) runs a
//! timer restarted with 0 from its own callback again in the same timers phase, so a turn that
//! always finds more queued (a peer flooding a socket on another runtime) never let the loop
//! reach JS timers or `setImmediate`. An idle callback restarted from itself runs next
//! iteration, and an active idle handle keeps the poll phase from blocking meanwhile. libuv is not linked: Node exports it, so the few
//! functions needed are resolved from the running process with `dlsym(RTLD_DEFAULT, ..)`.
#![cfg(unix)]
use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type TimerCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type TimerInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type TimerStartFn = unsafe extern "C" fn(*mut c_void, TimerCb, u64, u64) -> c_int;
type TimerStopFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type IdleInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type IdleStartFn = unsafe extern "C" fn(*mut c_void, TimerCb) -> c_int;
type IdleStopFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void, Option<CloseCb>);
type RefFn = unsafe extern "C" fn(*mut c_void);

pub struct UvApi {
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    timer_init: TimerInitFn,
    timer_start: TimerStartFn,
    timer_stop: TimerStopFn,
    idle_init: IdleInitFn,
    idle_start: IdleStartFn,
    idle_stop: IdleStopFn,
    close: CloseFn,
    uv_ref: RefFn,
    uv_unref: RefFn,
}

fn sym(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the process's global symbols.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// The libuv functions of the host process, or `None` when it does not export them.
pub fn api() -> Option<&'static UvApi> {
    static API: OnceLock<Option<UvApi>> = OnceLock::new();
    API.get_or_init(|| {
        let poll_init = sym(c"uv_poll_init")?;
        let poll_start = sym(c"uv_poll_start")?;
        let timer_init = sym(c"uv_timer_init")?;
        let timer_start = sym(c"uv_timer_start")?;
        let timer_stop = sym(c"uv_timer_stop")?;
        let idle_init = sym(c"uv_idle_init")?;
        let idle_start = sym(c"uv_idle_start")?;
        let idle_stop = sym(c"uv_idle_stop")?;
        let close = sym(c"uv_close")?;
        let uv_ref = sym(c"uv_ref")?;
        let uv_unref = sym(c"uv_unref")?;
        // SAFETY: these are libuv's exported functions with exactly these C signatures (uv.h, v1).
        unsafe {
            Some(UvApi {
                poll_init: std::mem::transmute::<*mut c_void, PollInitFn>(poll_init),
                poll_start: std::mem::transmute::<*mut c_void, PollStartFn>(poll_start),
                timer_init: std::mem::transmute::<*mut c_void, TimerInitFn>(timer_init),
                timer_start: std::mem::transmute::<*mut c_void, TimerStartFn>(timer_start),
                timer_stop: std::mem::transmute::<*mut c_void, TimerStopFn>(timer_stop),
                idle_init: std::mem::transmute::<*mut c_void, IdleInitFn>(idle_init),
                idle_start: std::mem::transmute::<*mut c_void, IdleStartFn>(idle_start),
                idle_stop: std::mem::transmute::<*mut c_void, IdleStopFn>(idle_stop),
                close: std::mem::transmute::<*mut c_void, CloseFn>(close),
                uv_ref: std::mem::transmute::<*mut c_void, RefFn>(uv_ref),
                uv_unref: std::mem::transmute::<*mut c_void, RefFn>(uv_unref),
            })
        }
    })
    .as_ref()
}

/// Room for any libuv handle struct (uv_poll_t, uv_timer_t and uv_idle_t are < 200 bytes on
/// 64-bit).
const HANDLE_WORDS: usize = 64;

fn alloc_handle() -> *mut c_void {
    Box::into_raw(Box::new([0u64; HANDLE_WORDS])).cast()
}

unsafe extern "C" fn free_handle(h: *mut c_void) {
    // SAFETY: `h` was allocated by `alloc_handle` and libuv is done with it (close callback).
    drop(unsafe { Box::from_raw(h.cast::<[u64; HANDLE_WORDS]>()) });
}

/// The three handles of one env.
pub struct UvGlue {
    api: &'static UvApi,
    poll: *mut c_void,
    soon: *mut c_void,
    timer: *mut c_void,
    closed: bool,
}

const UV_READABLE: c_int = 1;

impl UvGlue {
    /// Starts watching `fd` on `uv_loop`; `on_poll` and `on_timer` run on the loop's thread.
    pub fn new(
        uv_loop: *mut c_void,
        fd: c_int,
        on_poll: PollCb,
        on_timer: TimerCb,
    ) -> Result<UvGlue, String> {
        let api = api().ok_or("libuv symbols not found in the host process")?;
        let (poll, soon, timer) = (alloc_handle(), alloc_handle(), alloc_handle());
        // SAFETY: the handles are zeroed, large enough and stay allocated until their close
        // callbacks; `uv_loop` is the env's live loop and this is its thread.
        unsafe {
            let r = (api.poll_init)(uv_loop, poll, fd);
            if r != 0 {
                free_handle(poll);
                free_handle(soon);
                free_handle(timer);
                return Err(format!("uv_poll_init failed: {r}"));
            }
            (api.idle_init)(uv_loop, soon);
            (api.timer_init)(uv_loop, timer);
            (api.poll_start)(poll, UV_READABLE, on_poll);
            // The idle and timer handles never hold the loop open; the poll handle does only
            // while JS asks (ref()).
            (api.uv_unref)(soon);
            (api.uv_unref)(timer);
            (api.uv_unref)(poll);
        }
        let _ = on_timer;
        Ok(UvGlue {
            api,
            poll,
            soon,
            timer,
            closed: false,
        })
    }

    pub fn set_ref(&self, on: bool) {
        if self.closed {
            return;
        }
        // SAFETY: live handle on its loop's thread.
        unsafe {
            if on {
                (self.api.uv_ref)(self.poll)
            } else {
                (self.api.uv_unref)(self.poll)
            }
        }
    }

    /// Runs `cb` once, in the idle phase of this loop iteration (when called before it) or the
    /// next one (see the module docs). `cb` must call [`UvGlue::soon_done`] first.
    pub fn run_soon(&self, cb: TimerCb) {
        if self.closed {
            return;
        }
        // SAFETY: live handle on its loop's thread; starting an active idle handle is a no-op.
        unsafe { (self.api.idle_start)(self.soon, cb) };
    }

    /// Stops the idle handle of [`UvGlue::run_soon`]: its callback is running, or no longer
    /// needed.
    pub fn soon_done(&self) {
        if self.closed {
            return;
        }
        // SAFETY: live handle on its loop's thread; stopping a stopped idle handle is a no-op.
        unsafe { (self.api.idle_stop)(self.soon) };
    }

    /// Runs `cb` in `ms` milliseconds (replacing an earlier deadline), or never with `None`.
    pub fn run_at(&self, cb: TimerCb, ms: Option<u64>) {
        if self.closed {
            return;
        }
        // SAFETY: live handle on its loop's thread.
        unsafe {
            match ms {
                Some(ms) => (self.api.timer_start)(self.timer, cb, ms, 0),
                None => (self.api.timer_stop)(self.timer),
            }
        };
    }

    /// Closes the handles (their memory is freed by libuv's close callbacks).
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: live handles on their loop's thread, closed exactly once.
        unsafe {
            (self.api.close)(self.poll, Some(free_handle));
            (self.api.close)(self.soon, Some(free_handle));
            (self.api.close)(self.timer, Some(free_handle));
        }
    }
}
