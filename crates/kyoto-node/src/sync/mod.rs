//! `kyoto/sync` across threads: the native shared state behind a primitive after `share()`.
//!
//! Same-thread use never comes here (the TypeScript objects keep their state in JS). `share()`
//! moves the state into one of these objects; every env (main thread or Worker) that revives a
//! handle gets its own JS wrapper around the same `Arc`. A wait is a native waiter entry naming
//! `(env, op id)`: whoever frees the resource completes the op through that env's completion
//! bridge. Aborting a wait runs its canceller on the waiting env's thread, which removes the entry
//! exactly as dropping the Tokio future would. What an env holds is recorded in its [`hold`] table
//! and released by the env's cleanup hook.
mod cells;
pub mod cells_js;
mod chan;
mod hold;
mod notify;
mod registry;
mod ring;
mod sem;
mod value;

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::bridge;
use chan::{Chan, TryRecv};
use hold::Held;
use notify::{Barrier, Notify};
use registry::{Handle, Obj};
use ring::Ring;
use sem::{Sem, TryErr};
use value::Msg;

const KIND_SEMAPHORE: u32 = 1;
const KIND_MUTEX: u32 = 2;
const KIND_RWLOCK: u32 = 3;
const KIND_SENDER: u32 = 4;
const KIND_RECEIVER: u32 = 5;
const KIND_USENDER: u32 = 6;
const KIND_URECEIVER: u32 = 7;
const KIND_NOTIFY: u32 = 8;
const KIND_BARRIER: u32 = 9;

/// The largest count accepted anywhere (2^53 - 1, JS's `Number.MAX_SAFE_INTEGER`).
const MAX_COUNT: f64 = 9_007_199_254_740_991.0;

fn invalid(msg: &str) -> Error {
    Error::new(Status::InvalidArg, msg.to_owned())
}

/// A count argument: an integer in `0..=2^53-1`.
fn count(n: f64) -> Result<u64> {
    if (0.0..=MAX_COUNT).contains(&n) && n.fract() == 0.0 {
        Ok(n as u64)
    } else {
        Err(invalid(
            "kyoto/sync: expected an integer count >= 0 and <= 2^53 - 1",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path: napi-rs class methods pay a type-tag check per call (~300 ns); the hot operations are
// plain functions taking a per-env local id instead. The id indexes this env's table of the shared
// objects its JS wrappers use; a wrapper's finalizer frees its entry. A wrong id finds nothing.

/// What a local id names: a semaphore, or a channel wrapper with its (lazily made) sender ring.
#[derive(Clone)]
enum Local {
    Sem(Arc<SemObj>),
    Chan(Arc<Chan>, RingCell),
}

/// A channel wrapper's sender ring, shared with its local-table entry.
type RingCell = std::rc::Rc<std::cell::RefCell<Option<Arc<Ring>>>>;

thread_local! {
    static LOCAL: std::cell::RefCell<(Vec<Option<Local>>, Vec<u32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn local_add(obj: Local) -> u32 {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        match l.1.pop() {
            Some(i) => {
                l.0[i as usize] = Some(obj);
                i
            }
            None => {
                l.0.push(Some(obj));
                (l.0.len() - 1) as u32
            }
        }
    })
}

fn local_free(id: u32) {
    let _ = LOCAL.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            if let Some(slot) = l.0.get_mut(id as usize) {
                if slot.take().is_some() {
                    l.1.push(id);
                }
            }
        }
    });
}

fn local_get(id: u32) -> Result<Local> {
    LOCAL
        .with(|l| l.borrow().0.get(id as usize).and_then(|o| o.clone()))
        .ok_or_else(|| invalid("kyoto/sync: unknown local id"))
}

fn local_chan(id: u32) -> Result<(Arc<Chan>, RingCell)> {
    match local_get(id)? {
        Local::Chan(c, r) => Ok((c, r)),
        _ => Err(invalid("kyoto/sync: not a channel")),
    }
}

fn local_sem(id: u32) -> Result<Arc<SemObj>> {
    match local_get(id)? {
        Local::Sem(s) => Ok(s),
        _ => Err(invalid("kyoto/sync: not a semaphore")),
    }
}

/// A raw JS value returned as is.
pub struct Raw(sys::napi_value);

impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        Ok(val.0)
    }
}

/// A semaphore plus the value of the Mutex/RwLock it implements.
pub struct SemObj {
    sem: Arc<Sem>,
    max: u64,
    value: Mutex<Msg>,
}

impl SemObj {
    fn value(&self) -> MutexGuard<'_, Msg> {
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn handle_out(h: Handle) -> Vec<f64> {
    vec![
        h.index as f64,
        h.gen as f64,
        (h.secret >> 32) as f64,
        (h.secret & 0xffff_ffff) as f64,
    ]
}

fn handle_in(index: f64, gen: f64, hi: f64, lo: f64) -> Option<Handle> {
    let ok = |x: f64| x.is_finite() && x >= 0.0 && x <= u32::MAX as f64 && x.fract() == 0.0;
    if !(ok(index) && ok(gen) && ok(hi) && ok(lo)) {
        return None;
    }
    Some(Handle {
        index: index as u32,
        gen: gen as u32,
        secret: ((hi as u64) << 32) | lo as u64,
    })
}

/// Installs this env's `deserialize(buffer)` callback, the `EMPTY`/`CLOSED` sentinels that
/// non-blocking receives return, and the arrays batch receives write into (`kinds`: Uint8Array,
/// `nums`: Float64Array of the same length, `others`: Array).
#[napi(
    ts_args_type = "deserialize: (buf: Buffer) => unknown, empty: object, closed: object, kinds: Uint8Array, nums: Float64Array, others: unknown[]"
)]
pub fn sync_init(
    env: Env,
    deserialize: Unknown,
    empty: Unknown,
    closed: Unknown,
    kinds: Unknown,
    nums: Unknown,
    others: Unknown,
) -> Result<()> {
    if deserialize.get_type()? != ValueType::Function {
        return Err(invalid("deserialize must be a function"));
    }
    if others.get_type()? != ValueType::Object {
        return Err(invalid("others must be an array"));
    }
    value::init(
        env.raw(),
        [
            deserialize.raw(),
            empty.raw(),
            closed.raw(),
            kinds.raw(),
            nums.raw(),
            others.raw(),
        ],
    )
}

/// Registers op `id` of this env as a cancellable, ref'd wait whose cancellation runs `cancel`.
fn wait_op(id: u32, cancel: Box<dyn FnOnce()>) -> Result<bridge::Op> {
    let state = bridge::current()?;
    let op = state.op(id, true, true);
    state.set_canceller(id, cancel);
    Ok(op)
}

// ---------------------------------------------------------------------------------------------
// Semaphore / Mutex / RwLock

/// The shared state of a Semaphore, Mutex or RwLock.
#[napi]
pub struct SyncSem {
    obj: Arc<SemObj>,
    lid: u32,
}

impl SyncSem {
    fn new(obj: Arc<SemObj>) -> SyncSem {
        let lid = local_add(Local::Sem(obj.clone()));
        SyncSem { obj, lid }
    }
}

impl Drop for SyncSem {
    fn drop(&mut self) {
        local_free(self.lid);
    }
}

/// Creates the shared state of a semaphore with `permits` free permits and at most `max`.
#[napi]
pub fn sync_sem_create(permits: f64, max: f64, closed: bool) -> Result<SyncSem> {
    let permits = count(permits)?;
    let max = count(max)?;
    Ok(SyncSem::new(Arc::new(SemObj {
        sem: Sem::new(permits, closed),
        max,
        value: Mutex::new(Msg::Undefined),
    })))
}

/// Records `held` as held by this env; returns the holding key. (If the env is already tearing
/// down, `held` is given back at once and an error returned.)
fn hold_insert(held: Held) -> Result<u64> {
    let hold = hold::current()?;
    let key = hold::new_key();
    if let Err(h) = hold.insert(key, held) {
        h.release();
        return Err(invalid("kyoto/sync: this env is shutting down"));
    }
    Ok(key)
}

/// Records `n` permits of `sem` as held by this env; returns the holding key.
fn hold_permits(sem: &Arc<Sem>, n: u64) -> Result<u64> {
    hold_insert(Held::Permits(sem.clone(), n))
}

/// Moves `n` permits out of holding `key` (0 = untracked: nothing to do); returns how many moved.
fn take_from(key: u64, n: u64) -> Result<u64> {
    if key == 0 {
        return Ok(n);
    }
    let hold = hold::current()?;
    Ok(hold
        .update(key, |h| match h {
            Held::Permits(_, m) => {
                let k = n.min(*m);
                *m -= k;
                (k, *m == 0)
            }
            _ => (0, false),
        })
        .unwrap_or(0))
}

#[napi]
impl SyncSem {
    /// This object's local id (for the `syncSem*` fast-path functions).
    #[napi]
    pub fn lid(&self) -> u32 {
        self.lid
    }

    /// Takes `n` free permits now: returns the holding key, -1 (no permits) or -2 (closed).
    #[napi]
    pub fn try_acquire(&self, n: f64) -> Result<f64> {
        sem_try_acquire(&self.obj, n)
    }

    /// Queues op `id` for `n` permits; it completes with the holding key (or rejects closed).
    #[napi]
    pub fn acquire_wait(&self, id: u32, n: f64) -> Result<()> {
        let n = count(n)?;
        let hold = hold::current()?;
        let key = hold::new_key();
        let sem = self.obj.sem.clone();
        let h2 = hold.clone();
        let op = wait_op(id, Box::new(move || sem.cancel(key, &h2)))?;
        self.obj.sem.enqueue(n, op, key, hold);
        Ok(())
    }

    /// Records `n` permits that this env's same-thread objects took before the semaphore moved
    /// into native memory (they are already out of its count) as one holding of this env; returns
    /// its key, which those objects use from now on (so the env's teardown returns them).
    #[napi]
    pub fn adopt(&self, n: f64) -> Result<f64> {
        Ok(hold_permits(&self.obj.sem, count(n)?)? as f64)
    }

    /// Returns `n` permits of holding `key` (0: untracked permits).
    #[napi]
    pub fn release(&self, key: f64, n: f64) -> Result<()> {
        sem_release(&self.obj, key, n)
    }

    /// Drops `n` permits of holding `key` without returning them.
    #[napi]
    pub fn forget(&self, key: f64, n: f64) -> Result<()> {
        take_from(count(key)?, count(n)?)?;
        Ok(())
    }

    /// Moves `n` permits of holding `key` into a new holding; returns its key (0 if untracked).
    #[napi]
    pub fn split(&self, key: f64, n: f64) -> Result<f64> {
        let key = count(key)?;
        if key == 0 {
            return Ok(0.0);
        }
        let k = take_from(key, count(n)?)?;
        Ok(hold_permits(&self.obj.sem, k)? as f64)
    }

    /// Merges holdings `a` (`na` permits) and `b` (`nb`) into one; returns its key.
    #[napi]
    pub fn merge(&self, a: f64, na: f64, b: f64, nb: f64) -> Result<f64> {
        let (a, b) = (count(a)?, count(b)?);
        if a == 0 && b == 0 {
            return Ok(0.0);
        }
        let k = take_from(a, count(na)?)? + take_from(b, count(nb)?)?;
        Ok(hold_permits(&self.obj.sem, k)? as f64)
    }

    /// Free permits.
    #[napi]
    pub fn available(&self) -> f64 {
        self.obj.sem.available() as f64
    }

    /// Adds `n` permits; false if that would pass the maximum.
    #[napi]
    pub fn add_permits(&self, n: f64) -> Result<bool> {
        Ok(self.obj.sem.add_permits(count(n)?, self.obj.max))
    }

    /// Removes up to `n` free permits; returns how many.
    #[napi]
    pub fn forget_permits(&self, n: f64) -> Result<f64> {
        Ok(self.obj.sem.forget_permits(count(n)?) as f64)
    }

    #[napi]
    pub fn close(&self) {
        self.obj.sem.close()
    }

    #[napi]
    pub fn is_closed(&self) -> bool {
        self.obj.sem.is_closed()
    }

    /// The permit count the object was created with as its maximum (RwLock's `maxReaders`).
    #[napi]
    pub fn max(&self) -> f64 {
        self.obj.max as f64
    }

    /// A copy of the stored value (Mutex/RwLock).
    #[napi(ts_return_type = "unknown")]
    pub fn get_value(&self, env: Env) -> Result<Raw> {
        Ok(Raw(self.obj.value().to_js(env.raw())?))
    }

    /// Stores a value (tag: 0 plain, 1 `v8.serialize` output, 2 Buffer).
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn set_value(&self, env: Env, value: Unknown, tag: u32) -> Result<()> {
        let m = value::from_js(env.raw(), value.raw(), tag)?;
        *self.obj.value() = m;
        Ok(())
    }

    /// A handle (`[index, generation, secretHi, secretLo]`) reviving this object as `kind`.
    #[napi]
    pub fn share(&self, kind: u32) -> Result<Vec<f64>> {
        if !matches!(kind, KIND_SEMAPHORE | KIND_MUTEX | KIND_RWLOCK) {
            return Err(invalid("bad kind"));
        }
        Ok(handle_out(registry::share_weak(
            kind,
            &Obj::Sem(self.obj.clone()),
        )))
    }
}

fn sem_try_acquire(obj: &Arc<SemObj>, n: f64) -> Result<f64> {
    let n = count(n)?;
    match obj.sem.try_acquire(n) {
        Ok(()) => Ok(hold_permits(&obj.sem, n)? as f64),
        Err(TryErr::NoPermits) => Ok(-1.0),
        Err(TryErr::Closed) => Ok(-2.0),
    }
}

fn sem_release(obj: &Arc<SemObj>, key: f64, n: f64) -> Result<()> {
    let k = take_from(count(key)?, count(n)?)?;
    obj.sem.release(k);
    Ok(())
}

/// Fast path of `SyncSem.tryAcquire` by local id.
#[napi]
pub fn sync_sem_try_acquire(lid: u32, n: f64) -> Result<f64> {
    sem_try_acquire(&local_sem(lid)?, n)
}

/// Fast path of `SyncSem.release` by local id.
#[napi]
pub fn sync_sem_release(lid: u32, key: f64, n: f64) -> Result<()> {
    sem_release(&local_sem(lid)?, key, n)
}

/// Revives a Semaphore (1), Mutex (2) or RwLock (3) handle; null if it is not a live handle.
#[napi]
pub fn sync_revive_sem(kind: u32, index: f64, gen: f64, hi: f64, lo: f64) -> Option<SyncSem> {
    let h = handle_in(index, gen, hi, lo)?;
    match registry::revive(kind, h)? {
        Obj::Sem(obj) => Some(SyncSem::new(obj)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// mpsc

/// The shared state of an mpsc channel (either end).
#[napi]
pub struct SyncChan {
    chan: Arc<Chan>,
    /// The holding key of the end this wrapper was revived as (0 when created by `share`).
    end: u64,
    lid: u32,
    ring: RingCell,
}

impl SyncChan {
    fn new(chan: Arc<Chan>, end: u64) -> SyncChan {
        let ring = RingCell::default();
        let lid = local_add(Local::Chan(chan.clone(), ring.clone()));
        SyncChan {
            chan,
            end,
            lid,
            ring,
        }
    }
}

impl Drop for SyncChan {
    fn drop(&mut self) {
        local_free(self.lid);
        // The wrapper is gone, so its JS sender writes no more: what its ring holds moves to the
        // queue (still receivable) and the ring leaves the channel.
        let ring = self.ring.try_borrow_mut().ok().and_then(|mut r| r.take());
        if let Some(r) = ring {
            self.chan.remove_ring(&r);
        }
    }
}

/// Releases the `Arc` that an external `ArrayBuffer` over memory inside it kept alive.
unsafe extern "C" fn free_arc_owner<T>(
    _env: sys::napi_env,
    _data: *mut std::ffi::c_void,
    hint: *mut std::ffi::c_void,
) {
    // SAFETY: `hint` is the `Box<Arc<T>>` leaked in `external_in_arc::<T>`; V8 finalizes an external
    // ArrayBuffer exactly once.
    drop(unsafe { Box::from_raw(hint as *mut Arc<T>) });
}

/// A `len`-byte external `ArrayBuffer` over `data`, memory inside `owner` (atomics JS touches only
/// through `Atomics`: a semaphore word, a send counter, a sender ring), which the buffer keeps
/// alive; null when the embedder refuses external buffers.
fn external_in_arc<T>(env: sys::napi_env, owner: Arc<T>, data: *mut u8, len: usize) -> Raw {
    let mut out = std::ptr::null_mut();
    let hint = Box::into_raw(Box::new(owner));
    // Soundness: `data` is `len` bytes of atomics owned by the `Arc<T>` that `*hint` keeps alive
    // (neither an `Arc`'s contents nor a boxed slice it owns ever move) until `free_arc_owner`
    // runs when V8 collects the buffer; JS only touches them through `Atomics` operations.
    // SAFETY: sound by the argument just above.
    let st = unsafe {
        sys::napi_create_external_arraybuffer(
            env,
            data.cast(),
            len,
            Some(free_arc_owner::<T>),
            hint.cast(),
            &mut out,
        )
    };
    if st != sys::Status::napi_ok {
        // SAFETY: creation failed, so the finalizer never runs: reclaim the box here.
        drop(unsafe { Box::from_raw(hint) });
        // SAFETY: live env.
        unsafe { sys::napi_get_null(env, &mut out) };
    }
    Raw(out)
}

/// Creates a shared channel: capacity `cap` (0 = unbounded) of which `free` are free,
/// `txCount` live senders, closed by the receiver or not.
#[napi]
pub fn sync_chan_create(cap: f64, free: f64, tx_count: f64, rx_closed: bool) -> Result<SyncChan> {
    Ok(SyncChan::new(
        Chan::new(count(cap)?, count(free)?, count(tx_count)?, rx_closed),
        0,
    ))
}

#[napi]
impl SyncChan {
    /// This object's local id (for the `syncChan*` fast-path functions).
    #[napi]
    pub fn lid(&self) -> u32 {
        self.lid
    }

    /// Sends now if capacity is free: 0 sent, 1 full, 2 closed.
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn try_send(&self, env: Env, value: Unknown, tag: u32) -> Result<u32> {
        chan_try_send(&self.chan, &self.ring, env, value, tag)
    }

    /// This wrapper's sender ring, as an `ArrayBuffer` over native memory that JS writes simple
    /// values into (see `ring.rs` for the layout); null when this Node refuses external
    /// ArrayBuffers (then every send is a native call). A bounded channel's sender takes a slot
    /// with a CAS on the semaphore word ([`SyncChan::sem_word`]) before it publishes.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn sender_ring(&self, env: Env) -> Result<Raw> {
        let env = env.raw();
        let ring = {
            let mut cell = self.ring.borrow_mut();
            match &*cell {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new(Ring::new());
                    self.chan.add_ring(r.clone());
                    *cell = Some(r.clone());
                    r
                }
            }
        };
        let (data, len) = ring.bytes();
        Ok(external_in_arc(env, ring, data.cast(), len))
    }

    /// The capacity semaphore's state word (bounded channels) as an 8-byte `ArrayBuffer` over
    /// native memory: free slots in the low 62 bits, bit 62 set while senders wait, bit 63 once
    /// closed (see `sem.rs`). A JS sender takes a slot with `Atomics.compareExchange` on it when
    /// no flag is set. Null for unbounded channels or when external ArrayBuffers are refused.
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn sem_word(&self, env: Env) -> Result<Raw> {
        let env = env.raw();
        let Some(sem) = self.chan.sem.clone() else {
            let mut out = std::ptr::null_mut();
            // SAFETY: live env.
            unsafe { sys::napi_get_null(env, &mut out) };
            return Ok(Raw(out));
        };
        let data = sem.word_ptr().cast();
        Ok(external_in_arc(env, sem, data, 8))
    }

    /// The channel's send counter as a 4-byte `ArrayBuffer` over native memory: a JS sender takes
    /// each ring entry's sequence number with `Atomics.add` on it before publishing (see the
    /// module docs of `chan.rs`). Null when external ArrayBuffers are refused (the sender then
    /// does without its ring).
    #[napi(ts_return_type = "ArrayBuffer | null")]
    pub fn seq_word(&self, env: Env) -> Result<Raw> {
        let seq = self.chan.seq.clone();
        let data = seq.ptr().cast();
        Ok(external_in_arc(env.raw(), seq, data, 4))
    }

    /// Puts a message back at the front of the queue (a receiver moving away with messages it
    /// had already taken into its JS buffer; called newest first).
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn push_front(&self, env: Env, value: Unknown, tag: u32) -> Result<()> {
        let m = value::from_js(env.raw(), value.raw(), tag)?;
        self.chan.push_front(m);
        Ok(())
    }

    /// Appends a message without taking capacity (the buffered messages moved in by `share`).
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn push_init(&self, env: Env, value: Unknown, tag: u32) -> Result<()> {
        let m = value::from_js(env.raw(), value.raw(), tag)?;
        self.chan.push(None, m);
        Ok(())
    }

    /// Reserves `n` slots now: the holding key, -1 (full) or -2 (closed).
    #[napi]
    pub fn try_reserve(&self, n: f64) -> Result<f64> {
        let n = count(n)?;
        let Some(sem) = &self.chan.sem else {
            return Err(invalid("unbounded channel"));
        };
        match sem.try_acquire(n) {
            Ok(()) => Ok(hold_permits(sem, n)? as f64),
            Err(TryErr::NoPermits) => Ok(-1.0),
            Err(TryErr::Closed) => Ok(-2.0),
        }
    }

    /// Queues op `id` for `n` slots; it completes with the holding key or rejects when closed.
    #[napi]
    pub fn reserve_wait(&self, id: u32, n: f64) -> Result<()> {
        let n = count(n)?;
        let Some(sem) = self.chan.sem.clone() else {
            return Err(invalid("unbounded channel"));
        };
        let hold = hold::current()?;
        let key = hold::new_key();
        let s2 = sem.clone();
        let h2 = hold.clone();
        let op = wait_op(id, Box::new(move || s2.cancel(key, &h2)))?;
        sem.enqueue(n, op, key, hold);
        Ok(())
    }

    /// Sends through one reserved slot of holding `key` (0: reserved before sharing). Never fails
    /// (after the receiver is gone the value is dropped).
    #[napi(ts_args_type = "key: number, value: unknown, tag: number")]
    pub fn permit_send(&self, env: Env, key: f64, value: Unknown, tag: u32) -> Result<()> {
        let m = value::from_js(env.raw(), value.raw(), tag)?;
        take_from(count(key)?, 1)?;
        let ring = self.ring.borrow().clone();
        self.chan.push(ring.as_deref(), m);
        Ok(())
    }

    /// Returns `n` reserved slots of holding `key` unused.
    #[napi]
    pub fn permit_release(&self, key: f64, n: f64) -> Result<()> {
        let k = take_from(count(key)?, count(n)?)?;
        if let Some(sem) = &self.chan.sem {
            sem.release(k);
        }
        Ok(())
    }

    /// The next message, or the `EMPTY` / `CLOSED` sentinel.
    #[napi(ts_return_type = "unknown")]
    pub fn try_recv(&self, env: Env) -> Result<Raw> {
        chan_try_recv(&self.chan, env)
    }

    /// Up to `limit` messages as an array (empty when none is buffered), or `CLOSED`.
    #[napi(ts_return_type = "unknown")]
    pub fn recv_many(&self, env: Env, limit: u32) -> Result<Raw> {
        chan_recv_many(&self.chan, env, limit)
    }

    /// Queues op `id` to complete when the receiver has something to look at.
    #[napi]
    pub fn recv_wait(&self, id: u32) -> Result<()> {
        let wait = hold::new_key();
        let c = self.chan.clone();
        let op = wait_op(id, Box::new(move || c.cancel_recv(wait)))?;
        self.chan.recv_wait(wait, op);
        Ok(())
    }

    /// Queues op `id` to complete when the receiver closes (`Sender.closed()`).
    #[napi]
    pub fn closed_wait(&self, id: u32) -> Result<()> {
        let wait = hold::new_key();
        let c = self.chan.clone();
        let op = wait_op(id, Box::new(move || c.cancel_closed(wait)))?;
        self.chan.closed_wait(wait, op);
        Ok(())
    }

    /// `Receiver.close()`.
    #[napi]
    pub fn close_rx(&self) {
        self.chan.close_rx()
    }

    /// A new sender clone held by this env; returns its holding key.
    #[napi]
    pub fn add_sender(&self) -> Result<f64> {
        let hold = hold::current()?;
        let key = hold::new_key();
        self.chan.add_sender();
        if let Err(h) = hold.insert(key, Held::Sender(self.chan.clone(), 1)) {
            h.release();
            return Err(invalid("kyoto/sync: this env is shutting down"));
        }
        Ok(key as f64)
    }

    /// Drops one sender of holding `key` (0: an untracked sender).
    #[napi]
    pub fn drop_sender(&self, key: f64) -> Result<()> {
        let key = count(key)?;
        if key == 0 {
            self.chan.drop_sender();
            return Ok(());
        }
        let dropped = hold::current()?.update(key, |h| match h {
            Held::Sender(_, n) => {
                *n = n.saturating_sub(1);
                (true, *n == 0)
            }
            _ => (false, false),
        });
        if dropped == Some(true) {
            self.chan.drop_sender();
        }
        Ok(())
    }

    /// Drops the receiver `key` for good (0: the receiver from before sharing).
    #[napi]
    pub fn drop_receiver(&self, key: f64) -> Result<()> {
        let key = count(key)?;
        if key == 0 {
            self.chan.drop_receiver();
        } else if let Some(h) = hold::current()?.take(key) {
            h.release();
        }
        Ok(())
    }

    /// Whether the receiver closed (what senders see).
    #[napi]
    pub fn rx_closed(&self) -> bool {
        self.chan.rx_closed()
    }

    /// Whether no more messages can arrive (what the receiver sees).
    #[napi]
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    #[napi]
    pub fn len(&self) -> f64 {
        self.chan.len() as f64
    }

    /// Free capacity (bounded).
    #[napi]
    pub fn capacity(&self) -> f64 {
        self.chan.sem.as_ref().map_or(0, |s| s.available()) as f64
    }

    /// The channel's capacity (0 = unbounded).
    #[napi]
    pub fn max_capacity(&self) -> f64 {
        self.chan.cap as f64
    }

    /// The holding key this wrapper was revived with (0 if created by `share`).
    #[napi]
    pub fn end_key(&self) -> f64 {
        self.end as f64
    }

    /// Records in this env's holdings what its same-thread objects hold in a channel it just
    /// moved into native memory: `slots` reserved capacity slots, `senders` sender clones and
    /// (if `receiver`) the receiver. Returns the three holding keys (0 where nothing is held), which
    /// those objects use from now on, so the env's teardown gives all of it back.
    #[napi]
    pub fn adopt(&self, slots: f64, senders: f64, receiver: bool) -> Result<Vec<f64>> {
        let (slots, senders) = (count(slots)?, count(senders)?);
        let mut keys = vec![0.0; 3];
        if slots > 0 {
            if let Some(sem) = &self.chan.sem {
                keys[0] = hold_permits(sem, slots)? as f64;
            }
        }
        if senders > 0 {
            keys[1] = hold_insert(Held::Sender(self.chan.clone(), senders))? as f64;
        }
        if receiver {
            keys[2] = hold_insert(Held::Receiver(self.chan.clone()))? as f64;
        }
        Ok(keys)
    }

    /// A handle carrying one new sender clone (revivable once).
    #[napi]
    pub fn share_sender(&self) -> Vec<f64> {
        self.chan.add_sender();
        let kind = if self.chan.cap == 0 {
            KIND_USENDER
        } else {
            KIND_SENDER
        };
        handle_out(registry::share_once(kind, Obj::Chan(self.chan.clone())))
    }

    /// A handle the receiver (holding `key`, 0 if untracked) moves into (revivable once).
    #[napi]
    pub fn share_receiver(&self, key: f64) -> Result<Vec<f64>> {
        let key = count(key)?;
        if key != 0 {
            // Moved, not released: the token now owns the receiver.
            hold::current()?.take(key);
        }
        let kind = if self.chan.cap == 0 {
            KIND_URECEIVER
        } else {
            KIND_RECEIVER
        };
        Ok(handle_out(registry::share_once(
            kind,
            Obj::Chan(self.chan.clone()),
        )))
    }
}

fn chan_try_send(c: &Chan, ring: &RingCell, env: Env, value: Unknown, tag: u32) -> Result<u32> {
    match &c.sem {
        None => {
            let m = value::from_js(env.raw(), value.raw(), tag)?;
            let r = ring.borrow().clone();
            Ok(if c.send_unbounded(r.as_deref(), m) {
                0
            } else {
                2
            })
        }
        Some(sem) => match sem.try_acquire(1) {
            Ok(()) => match value::from_js(env.raw(), value.raw(), tag) {
                Ok(m) => {
                    let r = ring.borrow().clone();
                    c.push(r.as_deref(), m);
                    Ok(0)
                }
                Err(e) => {
                    sem.release(1);
                    Err(e)
                }
            },
            Err(TryErr::NoPermits) => Ok(1),
            Err(TryErr::Closed) => Ok(2),
        },
    }
}

fn chan_try_recv(c: &Chan, env: Env) -> Result<Raw> {
    let env = env.raw();
    Ok(Raw(match c.try_recv() {
        TryRecv::Value(m) => m.into_js(env)?,
        TryRecv::Empty => value::empty(env)?,
        TryRecv::Closed => value::closed(env)?,
    }))
}

fn chan_recv_many(c: &Chan, env: Env, limit: u32) -> Result<Raw> {
    let env = env.raw();
    let mut msgs = Vec::new();
    c.recv_many(limit as usize, &mut msgs);
    if msgs.is_empty() && c.is_drained_closed() {
        return Ok(Raw(value::closed(env)?));
    }
    let mut arr = std::ptr::null_mut();
    // SAFETY: live env inside a callback scope.
    let st = unsafe { sys::napi_create_array_with_length(env, msgs.len(), &mut arr) };
    if st != sys::Status::napi_ok {
        return Err(invalid("napi_create_array_with_length failed"));
    }
    // Convert every message even if one fails, so no moved bytes leak unaccounted.
    let mut first_err = None;
    for (i, m) in msgs.into_iter().enumerate() {
        match m.into_js(env) {
            // SAFETY: live env; `arr` is the array created above.
            Ok(v) => unsafe {
                sys::napi_set_element(env, arr, i as u32, v);
            },
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Raw(arr)),
    }
}

/// Fast path of `SyncChan.trySend` by local id.
#[napi(ts_args_type = "lid: number, value: unknown, tag: number")]
pub fn sync_chan_try_send(env: Env, lid: u32, value: Unknown, tag: u32) -> Result<u32> {
    let (c, ring) = local_chan(lid)?;
    chan_try_send(&c, &ring, env, value, tag)
}

/// Fast path of `SyncChan.tryRecv` by local id.
#[napi(ts_return_type = "unknown")]
pub fn sync_chan_try_recv(env: Env, lid: u32) -> Result<Raw> {
    let (c, _) = local_chan(lid)?;
    chan_try_recv(&c, env)
}

/// Fast path of `SyncChan.recvMany` by local id.
#[napi(ts_return_type = "unknown")]
pub fn sync_chan_recv_many(env: Env, lid: u32, limit: u32) -> Result<Raw> {
    let (c, _) = local_chan(lid)?;
    chan_recv_many(&c, env, limit)
}

/// Takes up to `limit` messages (at most the batch arrays' length) into this env's batch arrays
/// (see `syncInit`); returns how many, or -1 when the channel is closed and drained.
#[napi]
pub fn sync_chan_recv_batch(env: Env, lid: u32, limit: u32) -> Result<i32> {
    let (c, _) = local_chan(lid)?;
    let env = env.raw();
    let limit = (limit as usize)
        .min(value::batch_cap(env)?)
        .min(i32::MAX as usize);
    let mut msgs = Vec::new();
    c.recv_many(limit, &mut msgs);
    if msgs.is_empty() {
        return Ok(if c.is_drained_closed() { -1 } else { 0 });
    }
    Ok(value::write_batch(env, msgs)? as i32)
}

/// A sender published into its ring and saw the receiver waiting: wakes it.
#[napi]
pub fn sync_chan_kick(lid: u32) -> Result<()> {
    local_chan(lid)?.0.kick();
    Ok(())
}

/// Revives a channel end: 4/6 sender (bounded/unbounded), 5/7 receiver. Null if not a live handle.
#[napi]
pub fn sync_revive_chan(
    kind: u32,
    index: f64,
    gen: f64,
    hi: f64,
    lo: f64,
) -> Result<Option<SyncChan>> {
    let Some(h) = handle_in(index, gen, hi, lo) else {
        return Ok(None);
    };
    let Some(Obj::Chan(chan)) = registry::revive(kind, h) else {
        return Ok(None);
    };
    let hold = hold::current()?;
    let key = hold::new_key();
    let held = match kind {
        KIND_SENDER | KIND_USENDER => Held::Sender(chan.clone(), 1),
        _ => Held::Receiver(chan.clone()),
    };
    if let Err(h) = hold.insert(key, held) {
        h.release();
        return Ok(None);
    }
    Ok(Some(SyncChan::new(chan, key)))
}

/// Drops the channel end an unrevived handle of `kind` (4..=7 mpsc, 10..=15 oneshot / broadcast /
/// watch) carries, as reviving it and dropping the end would: a sender clone counts out, a
/// receiver closes. No env owns such an end (it is in transit), so nothing else ever would if its
/// message is lost. False if the handle is not a live, unrevived channel-end handle of that kind.
#[napi]
pub fn sync_drop_handle(kind: u32, index: f64, gen: f64, hi: f64, lo: f64) -> bool {
    let Some(h) = handle_in(index, gen, hi, lo) else {
        return false;
    };
    let held = match registry::take_once(kind, h) {
        Some(Obj::Chan(chan)) => match kind {
            KIND_SENDER | KIND_USENDER => Held::Sender(chan, 1),
            _ => Held::Receiver(chan),
        },
        Some(Obj::End(end)) => Held::End(end),
        // Only channel ends are shared once (`take_once` finds nothing else).
        _ => return false,
    };
    // Outside the registry lock: releasing wakes waiters.
    held.release();
    true
}

// ---------------------------------------------------------------------------------------------
// Notify, Barrier

/// The shared state of a Notify.
#[napi]
pub struct SyncNotify {
    n: Arc<Notify>,
}

/// Creates a shared Notify (with its stored permit, if any).
#[napi]
pub fn sync_notify_create(permit: bool) -> SyncNotify {
    SyncNotify {
        n: Notify::new(permit),
    }
}

#[napi]
impl SyncNotify {
    /// Consumes the stored permit if there is one.
    #[napi]
    pub fn try_take(&self) -> bool {
        self.n.try_take()
    }

    /// Queues op `id` until notified.
    #[napi]
    pub fn wait(&self, id: u32) -> Result<()> {
        let wait = hold::new_key();
        let how = notify::new_how();
        let (n2, h2) = (self.n.clone(), how.clone());
        let op = wait_op(id, Box::new(move || n2.cancel(wait, &h2)))?;
        self.n.wait(wait, how, op);
        Ok(())
    }

    #[napi]
    pub fn notify_one(&self) {
        self.n.notify_one()
    }

    #[napi]
    pub fn notify_last(&self) {
        self.n.notify_last()
    }

    #[napi]
    pub fn notify_waiters(&self) {
        self.n.notify_waiters()
    }

    #[napi]
    pub fn has_permit(&self) -> bool {
        self.n.has_permit()
    }

    #[napi]
    pub fn share(&self) -> Vec<f64> {
        handle_out(registry::share_weak(
            KIND_NOTIFY,
            &Obj::Notify(self.n.clone()),
        ))
    }
}

/// Revives a Notify handle; null if it is not a live handle.
#[napi]
pub fn sync_revive_notify(index: f64, gen: f64, hi: f64, lo: f64) -> Option<SyncNotify> {
    match registry::revive(KIND_NOTIFY, handle_in(index, gen, hi, lo)?)? {
        Obj::Notify(n) => Some(SyncNotify { n }),
        _ => None,
    }
}

/// The shared state of a Barrier.
#[napi]
pub struct SyncBarrier {
    b: Arc<Barrier>,
}

/// Creates a shared barrier of `n` parties, `arrived` of which are already waiting.
#[napi]
pub fn sync_barrier_create(n: f64, arrived: f64) -> Result<SyncBarrier> {
    Ok(SyncBarrier {
        b: Barrier::new(count(n)?, count(arrived)?),
    })
}

#[napi]
impl SyncBarrier {
    /// Arrives; op `id` completes with 1 for the leader, 0 for the others.
    #[napi]
    pub fn wait(&self, id: u32) -> Result<()> {
        // Not cancel-safe, like Tokio's: a cancelled arrival still counts.
        let op = wait_op(id, Box::new(|| {}))?;
        self.b.wait(op);
        Ok(())
    }

    #[napi]
    pub fn n(&self) -> f64 {
        self.b.n() as f64
    }

    #[napi]
    pub fn share(&self) -> Vec<f64> {
        handle_out(registry::share_weak(
            KIND_BARRIER,
            &Obj::Barrier(self.b.clone()),
        ))
    }
}

/// Revives a Barrier handle; null if it is not a live handle.
#[napi]
pub fn sync_revive_barrier(index: f64, gen: f64, hi: f64, lo: f64) -> Option<SyncBarrier> {
    match registry::revive(KIND_BARRIER, handle_in(index, gen, hi, lo)?)? {
        Obj::Barrier(b) => Some(SyncBarrier { b }),
        _ => None,
    }
}
