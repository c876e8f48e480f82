//! The per-env event queue of `kyoto/net`: what sockets report to JavaScript.
//!
//! Socket tasks push fixed-size events (six `i32`s) plus their bytes (read data, datagrams,
//! addresses) into one queue per env. The JS thread takes the whole queue at once and delivers it in
//! **one** JS call per chunk: the records are copied into a shared `Int32Array` and the bytes into a
//! shared arena `Uint8Array`, both created once by JS at init and reused for every batch. No JS
//! object, promise or napi value is created per event by this layer.
//!
//! With the `multi_thread` data path, the push that makes the queue non-empty wakes the JS thread
//! through one threadsafe function (one `uv_async_send` per batch). With the `current_thread` data
//! path every push happens on the JS thread inside `Runtime::drive`, and the libuv callback that
//! drove the runtime delivers the batch right after (no wake-up needed).
use std::cell::Cell;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use napi::sys;

use super::sock::Sock;

/// Ints per event record: `[handle, kind, a, b, off, len]`.
pub const EV_INTS: usize = 6;

/// Read data: `off`/`len` in the arena.
pub const K_DATA: i32 = 1;
/// End of stream (the peer sent FIN).
pub const K_EOF: i32 = 2;
/// A socket error: `a` = errno, `b` = syscall code (`SYS_*`).
pub const K_ERROR: i32 = 3;
/// A connection was accepted: `a` = the new stream's handle, `b` = port | family << 16,
/// `off`/`len` = the peer's IP bytes.
pub const K_ACCEPT: i32 = 4;
/// A connect finished.
pub const K_CONNECTED: i32 = 5;
/// The native write backlog was flushed (and a requested shutdown done).
pub const K_DRAIN: i32 = 6;
/// A datagram: `off`/`len` = payload; `a` = IPv4 address as u32 (or -1: the 16 IPv6 bytes follow
/// the payload), `b` = port | family << 16 | truncated << 24.
pub const K_DGRAM: i32 = 7;
/// A native copy ended: `handle` = the copy op id, `a` = errno (0: success), `b` = syscall code
/// | [`COPY_REVERSE`] | [`COPY_NO_FAULT`], `off`/`len` = two little-endian u64 byte counts.
pub const K_COPY: i32 = 8;
/// Frames of a framed stream (`kyoto/io` `framed`): `a` = segment count; `off`/`len` = the
/// segments' bytes followed by `a` pairs of little-endian u32s (start relative to `off`, length with
/// bit 31 set when the segment does not end its frame: the frame continues in a later event).
/// `b` = 1 when the segments' bytes are all ASCII (lines: JS decodes them as one string).
pub const K_FRAMES: i32 = 9;
/// A framed stream broke its codec's rules: `a` = [`super::frame::FrameErr::code`]; `off`/`len` =
/// a little-endian u64 (the announced length of an oversize frame, else 0).
pub const K_FRAME_ERR: i32 = 10;
/// A framed stream's task stopped reading raw data: every `K_DATA` it pushed came before this
/// record, so JS can hand what it buffered to the native framer (`netFrameFeed`).
pub const K_FRAME_SYNC: i32 = 11;

pub const SYS_READ: i32 = 0;
pub const SYS_WRITE: i32 = 1;
pub const SYS_CONNECT: i32 = 2;
pub const SYS_ACCEPT: i32 = 3;
pub const SYS_RECV: i32 = 4;
pub const SYS_SEND: i32 = 5;
pub const SYS_SHUTDOWN: i32 = 6;

/// In a `K_COPY` error: the failing call was of the `b → a` direction of a `copyBidirectional`
/// (so a failed read was `b`'s), not of `a → b`.
pub const COPY_REVERSE: i32 = 0x100;
/// In a `K_COPY` error: no read or write failed; the copy was cancelled (a stream closed, the
/// runtime or env went away), so neither stream keeps the error for its later reads.
pub const COPY_NO_FAULT: i32 = 0x200;

thread_local! {
    static DRIVING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as driving an env's `current_thread` runtime: what its tasks push now is
/// delivered by the same libuv turn, so the push need not wake the JS thread.
pub struct Driving(bool);

impl Driving {
    pub fn enter() -> Driving {
        Driving(DRIVING.replace(true))
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVING.set(self.0);
    }
}

/// One event on its way to JS.
pub struct Ev {
    pub h: u32,
    pub kind: i32,
    pub a: i32,
    pub b: i32,
    pub off: u32,
    pub len: u32,
    /// For data events: the socket whose undelivered-bytes count this event holds.
    pub sock: Option<Arc<Sock>>,
}

impl Ev {
    pub fn new(h: u32, kind: i32, a: i32, b: i32) -> Ev {
        Ev {
            h,
            kind,
            a,
            b,
            off: 0,
            len: 0,
            sock: None,
        }
    }
}

pub struct QInner {
    pub evs: Vec<Ev>,
    pub data: Vec<u8>,
    /// The env's TSFN (multi_thread data path only); null otherwise or once the env is gone.
    pub tsfn: sys::napi_threadsafe_function,
    pub closed: bool,
    /// A TSFN call is on its way or its delivery is running: pushes need not call again. The
    /// delivery clears it (or calls again at once, or has JS re-arm from a later loop turn: see
    /// `call_js` in `mod.rs`), so the JS thread gets one wake-up per batch, not one per push.
    pub armed: bool,
}

impl QInner {
    /// Appends `ev`; a push while no wake-up is armed wakes the JS thread (through the TSFN,
    /// unless this thread is driving the env's own runtime: that turn delivers it).
    fn add(&mut self, ev: Ev) {
        self.evs.push(ev);
        if !self.armed && !DRIVING.get() {
            self.wake();
        }
    }

    /// Calls the TSFN (when there is one) and marks the wake-up armed.
    pub fn wake(&mut self) {
        if self.tsfn.is_null() {
            return;
        }
        self.armed = true;
        // The queue is unbounded, so a non-blocking call never waits.
        // SAFETY: non-null, and nulled under the queue's lock (held by the caller through
        // `&mut self`) before Node may free it.
        unsafe {
            sys::napi_call_threadsafe_function(
                self.tsfn,
                ptr::null_mut(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            );
        }
    }
}

/// The queue shared by an env's socket tasks.
pub struct Queue {
    inner: Mutex<QInner>,
}

// The only non-Send/Sync field is the raw TSFN pointer, which Node documents as callable from any
// thread; it is read and nulled only under the mutex (the env teardown nulls it before Node may
// free it).
// SAFETY: see above.
unsafe impl Send for Queue {}
// SAFETY: see the `Send` impl; every access goes through the mutex.
unsafe impl Sync for Queue {}

impl Default for Queue {
    fn default() -> Queue {
        Queue::new()
    }
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            inner: Mutex::new(QInner {
                evs: Vec::with_capacity(256),
                data: Vec::with_capacity(64 * 1024),
                tsfn: ptr::null_mut(),
                closed: false,
                armed: false,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, QInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `ev` with `bytes` then `extra` appended to the batch data (`off`/`len` cover
    /// `bytes`). Returns false when the env is gone (the event is dropped).
    pub fn push(&self, mut ev: Ev, bytes: &[u8], extra: &[u8]) -> bool {
        let mut g = self.lock();
        if g.closed {
            return false;
        }
        ev.off = g.data.len() as u32;
        ev.len = bytes.len() as u32;
        g.data.extend_from_slice(bytes);
        g.data.extend_from_slice(extra);
        g.add(ev);
        true
    }

    /// Queues `ev` with `parts` concatenated as its bytes (`off`/`len` cover all of them). Returns
    /// false when the env is gone.
    pub fn push_parts(&self, mut ev: Ev, parts: &[&[u8]]) -> bool {
        let mut g = self.lock();
        if g.closed {
            return false;
        }
        ev.off = g.data.len() as u32;
        let mut len = 0;
        for p in parts {
            g.data.extend_from_slice(p);
            len += p.len();
        }
        ev.len = len as u32;
        g.add(ev);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.lock().evs.is_empty()
    }

    /// Marks the env gone: later pushes are dropped.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        g.tsfn = ptr::null_mut();
        g.evs.clear();
        g.data = Vec::new();
    }
}
