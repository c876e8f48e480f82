//! The JS surface of the shared oneshot, broadcast and watch channels and OnceCell: one wrapper
//! class, [`SyncCell`], whose methods are prefixed by the primitive they apply to (`os*`, `bc*`,
//! `w*`, `o*`); a method of another primitive throws `InvalidArg`.
use std::cell::Cell;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::cells::{BRecv, Bcast, Begin, End, OnceN, Oneshot, OsRecv, Watch};
use super::hold::{self, Held};
use super::registry::{self, Obj};
use super::value::{self, Msg};
use super::{count, handle_in, handle_out, invalid, wait_op, Raw};

/// Handle kinds (10..=16; 1..=9 are the other primitives').
pub const OS_TX: u32 = 10;
pub const OS_RX: u32 = 11;
pub const BC_TX: u32 = 12;
pub const BC_RX: u32 = 13;
pub const W_TX: u32 = 14;
pub const W_RX: u32 = 15;
pub const ONCE: u32 = 16;

#[derive(Clone)]
enum CellObj {
    Oneshot(Arc<Oneshot>),
    Bcast(Arc<Bcast>),
    Watch(Arc<Watch>),
    Once(Arc<OnceN>),
}

thread_local! {
    static LAGGED: Cell<u64> = const { Cell::new(0) };
}

/// The shared state of a oneshot, broadcast or watch channel, or a OnceCell, as seen by one env.
#[napi]
pub struct SyncCell {
    obj: CellObj,
    /// The holding key of the end this wrapper was revived as (0 otherwise).
    key: u64,
    /// Broadcast receiver id / watch receiver's seen version, for a revived receiver.
    aux: f64,
}

fn from_js(env: &Env, value: &Unknown, tag: u32) -> Result<Msg> {
    value::from_js(env.raw(), value.raw(), tag)
}

fn hold_insert(h: Held) -> Result<u64> {
    let hold = hold::current()?;
    let key = hold::new_key();
    if let Err(h) = hold.insert(key, h) {
        h.release();
        return Err(invalid("kyoto/sync: this env is shutting down"));
    }
    Ok(key)
}

fn no_value(env: &Env) -> Result<Raw> {
    Ok(Raw(value::empty(env.raw())?))
}

impl SyncCell {
    fn os(&self) -> Result<&Arc<Oneshot>> {
        match &self.obj {
            CellObj::Oneshot(o) => Ok(o),
            _ => Err(invalid("kyoto/sync: not a oneshot")),
        }
    }
    fn bc(&self) -> Result<&Arc<Bcast>> {
        match &self.obj {
            CellObj::Bcast(o) => Ok(o),
            _ => Err(invalid("kyoto/sync: not a broadcast channel")),
        }
    }
    fn w(&self) -> Result<&Arc<Watch>> {
        match &self.obj {
            CellObj::Watch(o) => Ok(o),
            _ => Err(invalid("kyoto/sync: not a watch channel")),
        }
    }
    fn once(&self) -> Result<&Arc<OnceN>> {
        match &self.obj {
            CellObj::Once(o) => Ok(o),
            _ => Err(invalid("kyoto/sync: not a OnceCell")),
        }
    }

    /// The end `which` of this object (`aux`: receiver id or seen version).
    fn end(&self, which: u32, aux: f64) -> Result<End> {
        Ok(match (which, &self.obj) {
            (OS_TX, CellObj::Oneshot(o)) => End::OneshotTx(o.clone()),
            (OS_RX, CellObj::Oneshot(o)) => End::OneshotRx(o.clone()),
            (BC_TX, CellObj::Bcast(b)) => End::BcastTx(b.clone()),
            (BC_RX, CellObj::Bcast(b)) => End::BcastRx(b.clone(), count(aux)?),
            (W_TX, CellObj::Watch(w)) => End::WatchTx(w.clone()),
            (W_RX, CellObj::Watch(w)) => End::WatchRx(w.clone(), aux),
            _ => return Err(invalid("kyoto/sync: bad end kind")),
        })
    }

    fn env_id() -> Result<usize> {
        Ok(Arc::as_ptr(&hold::current()?) as usize)
    }
}

/// Creates a shared oneshot in the given state.
#[napi(
    ts_args_type = "has: boolean, value: unknown, tag: number, txClosed: boolean, rxClosed: boolean, taken: boolean"
)]
pub fn sync_oneshot_create(
    env: Env,
    has: bool,
    value: Unknown,
    tag: u32,
    tx_closed: bool,
    rx_closed: bool,
    taken: bool,
) -> Result<SyncCell> {
    let v = if has {
        Some(from_js(&env, &value, tag)?)
    } else {
        None
    };
    Ok(SyncCell {
        obj: CellObj::Oneshot(Oneshot::new(v, tx_closed, rx_closed, taken)),
        key: 0,
        aux: 0.0,
    })
}

/// Creates a shared broadcast channel of capacity `cap` whose next value is number `tail`, with
/// `tx` senders (each adopted with `adoptEnd`).
#[napi]
pub fn sync_bcast_create(cap: f64, tail: f64, tx: f64) -> Result<SyncCell> {
    Ok(SyncCell {
        obj: CellObj::Bcast(Bcast::new(count(cap)?, count(tail)?, count(tx)?)),
        key: 0,
        aux: 0.0,
    })
}

/// Creates a shared watch channel holding `value` at `version`, with `tx` senders.
#[napi(ts_args_type = "value: unknown, tag: number, version: number, tx: number")]
pub fn sync_watch_create(
    env: Env,
    value: Unknown,
    tag: u32,
    version: f64,
    tx: f64,
) -> Result<SyncCell> {
    Ok(SyncCell {
        obj: CellObj::Watch(Watch::new(
            from_js(&env, &value, tag)?,
            count(version)?,
            count(tx)?,
        )),
        key: 0,
        aux: 0.0,
    })
}

/// Creates a shared OnceCell, set (`has`) or not.
#[napi(ts_args_type = "has: boolean, value: unknown, tag: number")]
pub fn sync_once_create(env: Env, has: bool, value: Unknown, tag: u32) -> Result<SyncCell> {
    let v = if has {
        Some(from_js(&env, &value, tag)?)
    } else {
        None
    };
    Ok(SyncCell {
        obj: CellObj::Once(OnceN::new(v, 0)),
        key: 0,
        aux: 0.0,
    })
}

/// Revives a handle of kind 10..=16; null if it is not a live handle of that kind.
#[napi]
pub fn sync_revive_cell(
    kind: u32,
    index: f64,
    gen: f64,
    hi: f64,
    lo: f64,
) -> Result<Option<SyncCell>> {
    let Some(h) = handle_in(index, gen, hi, lo) else {
        return Ok(None);
    };
    if !(OS_TX..=ONCE).contains(&kind) {
        return Ok(None);
    }
    Ok(match registry::revive(kind, h) {
        Some(Obj::Once(o)) => Some(SyncCell {
            obj: CellObj::Once(o),
            key: 0,
            aux: 0.0,
        }),
        Some(Obj::End(end)) => {
            let (obj, aux) = match &end {
                End::OneshotTx(o) | End::OneshotRx(o) => (CellObj::Oneshot(o.clone()), 0.0),
                End::BcastTx(b) => (CellObj::Bcast(b.clone()), 0.0),
                End::BcastRx(b, id) => (CellObj::Bcast(b.clone()), *id as f64),
                End::WatchTx(w) => (CellObj::Watch(w.clone()), 0.0),
                End::WatchRx(w, seen) => (CellObj::Watch(w.clone()), *seen),
            };
            let key = match hold_insert(Held::End(end)) {
                Ok(k) => k,
                Err(_) => return Ok(None),
            };
            Some(SyncCell { obj, key, aux })
        }
        _ => None,
    })
}

/// The skipped count of the last broadcast receive of this thread that found a lag (then reset);
/// 0 when that receive found nothing.
#[napi]
pub fn sync_bc_lagged() -> f64 {
    LAGGED.with(|l| l.replace(0)) as f64
}

#[napi]
impl SyncCell {
    /// The holding key this wrapper was revived with (0 if created here).
    #[napi]
    pub fn key(&self) -> f64 {
        self.key as f64
    }

    /// A revived broadcast receiver's id, or a revived watch receiver's seen version.
    #[napi]
    pub fn aux(&self) -> f64 {
        self.aux
    }

    /// Records end `which` (already counted at creation) as held by this env; returns its key.
    #[napi]
    pub fn adopt_end(&self, which: u32, aux: f64) -> Result<f64> {
        Ok(hold_insert(Held::End(self.end(which, aux)?))? as f64)
    }

    /// A new end `which` (a sender clone, a watch receiver clone with seen version `aux`, or a
    /// broadcast receiver reading from position `aux`, or from the tail if `aux < 0`) held by this
    /// env. Returns `[key, id]` (id: the broadcast receiver's id, else 0).
    #[napi]
    pub fn new_end(&self, which: u32, aux: f64) -> Result<Vec<f64>> {
        match (which, &self.obj) {
            (BC_RX, CellObj::Bcast(b)) => {
                let id = hold::new_key();
                let next = if aux < 0.0 { None } else { Some(count(aux)?) };
                b.add_rx(id, next);
                let key = hold_insert(Held::End(End::BcastRx(b.clone(), id)))?;
                Ok(vec![key as f64, id as f64])
            }
            (BC_TX, CellObj::Bcast(b)) => {
                b.add_tx();
                Ok(vec![
                    hold_insert(Held::End(End::BcastTx(b.clone())))? as f64,
                    0.0,
                ])
            }
            (W_TX, CellObj::Watch(w)) => {
                w.add_tx();
                Ok(vec![
                    hold_insert(Held::End(End::WatchTx(w.clone())))? as f64,
                    0.0,
                ])
            }
            (W_RX, CellObj::Watch(w)) => {
                w.add_rx();
                Ok(vec![
                    hold_insert(Held::End(End::WatchRx(w.clone(), aux)))? as f64,
                    0.0,
                ])
            }
            _ => Err(invalid("kyoto/sync: bad end kind")),
        }
    }

    /// Drops the end held under `key` (nothing if it is not held).
    #[napi]
    pub fn drop_end(&self, key: f64) -> Result<()> {
        if let Some(h) = hold::current()?.take(count(key)?) {
            h.release();
        }
        Ok(())
    }

    /// Moves the end held under `key` into a handle of kind `which` (revivable once).
    #[napi]
    pub fn share_end(&self, key: f64, which: u32) -> Result<Vec<f64>> {
        match hold::current()?.take(count(key)?) {
            Some(Held::End(end)) => Ok(handle_out(registry::share_once(which, Obj::End(end)))),
            Some(other) => {
                other.release();
                Err(invalid("kyoto/sync: not a channel end"))
            }
            None => Err(invalid("kyoto/sync: that end is not held here")),
        }
    }

    /// A handle carrying a new end `which` (sender clone, or watch receiver clone with seen
    /// version `aux`), revivable once.
    #[napi]
    pub fn share_new(&self, which: u32, aux: f64) -> Result<Vec<f64>> {
        let end = match (which, &self.obj) {
            (BC_TX, CellObj::Bcast(b)) => {
                b.add_tx();
                End::BcastTx(b.clone())
            }
            (W_TX, CellObj::Watch(w)) => {
                w.add_tx();
                End::WatchTx(w.clone())
            }
            (W_RX, CellObj::Watch(w)) => {
                w.add_rx();
                End::WatchRx(w.clone(), aux)
            }
            _ => return Err(invalid("kyoto/sync: bad end kind")),
        };
        Ok(handle_out(registry::share_once(which, Obj::End(end))))
    }

    /// A handle to this OnceCell (revivable while it is alive).
    #[napi]
    pub fn share_cell(&self) -> Result<Vec<f64>> {
        Ok(handle_out(registry::share_weak(
            ONCE,
            &Obj::Once(self.once()?.clone()),
        )))
    }

    // -- oneshot ---------------------------------------------------------------------------------

    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn os_send(&self, env: Env, value: Unknown, tag: u32) -> Result<bool> {
        let o = self.os()?;
        if o.rx_closed() {
            return Ok(false);
        }
        Ok(o.send(from_js(&env, &value, tag)?))
    }

    /// The value, or the `EMPTY` / `CLOSED` sentinel.
    #[napi(ts_return_type = "unknown")]
    pub fn os_try_recv(&self, env: Env) -> Result<Raw> {
        Ok(Raw(match self.os()?.try_recv() {
            OsRecv::Value(m) => m.into_js(env.raw())?,
            OsRecv::Empty => value::empty(env.raw())?,
            OsRecv::Closed => value::closed(env.raw())?,
        }))
    }

    #[napi]
    pub fn os_recv_wait(&self, id: u32) -> Result<()> {
        let o = self.os()?.clone();
        let wait = hold::new_key();
        let o2 = o.clone();
        o.recv_wait(wait, wait_op(id, Box::new(move || o2.cancel(wait)))?);
        Ok(())
    }

    #[napi]
    pub fn os_closed_wait(&self, id: u32) -> Result<()> {
        let o = self.os()?.clone();
        let wait = hold::new_key();
        let o2 = o.clone();
        o.closed_wait(wait, wait_op(id, Box::new(move || o2.cancel(wait)))?);
        Ok(())
    }

    #[napi]
    pub fn os_rx_closed(&self) -> Result<bool> {
        Ok(self.os()?.rx_closed())
    }

    #[napi]
    pub fn os_close_rx(&self) -> Result<()> {
        self.os()?.close_rx();
        Ok(())
    }

    #[napi]
    pub fn os_close_tx(&self) -> Result<()> {
        self.os()?.close_tx();
        Ok(())
    }

    // -- broadcast -------------------------------------------------------------------------------

    /// Stores a retained value at position `pos` (moving a JS channel in).
    #[napi(ts_args_type = "pos: number, value: unknown, tag: number")]
    pub fn bc_put(&self, env: Env, pos: f64, value: Unknown, tag: u32) -> Result<()> {
        let b = self.bc()?;
        b.put_init(count(pos)?, from_js(&env, &value, tag)?);
        Ok(())
    }

    /// Sends; returns the receiver count, or -1 (value dropped) with no receivers.
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn bc_send(&self, env: Env, value: Unknown, tag: u32) -> Result<f64> {
        let b = self.bc()?;
        if b.rx_count() == 0 {
            return Ok(-1.0);
        }
        Ok(b.send(from_js(&env, &value, tag)?)
            .map_or(-1.0, |n| n as f64))
    }

    /// Receiver `id`'s next value, `CLOSED`, or `EMPTY` (then `syncBcLagged()` tells a lag).
    #[napi(ts_return_type = "unknown")]
    pub fn bc_try_recv(&self, env: Env, id: f64) -> Result<Raw> {
        Ok(Raw(match self.bc()?.try_recv(count(id)?) {
            BRecv::Value(m) => m.into_js(env.raw())?,
            BRecv::Empty => value::empty(env.raw())?,
            BRecv::Closed => value::closed(env.raw())?,
            BRecv::Lagged(n) => {
                LAGGED.with(|l| l.set(n));
                value::empty(env.raw())?
            }
        }))
    }

    #[napi]
    pub fn bc_recv_wait(&self, op_id: u32, id: f64) -> Result<()> {
        let b = self.bc()?.clone();
        let rx = count(id)?;
        let wait = hold::new_key();
        let b2 = b.clone();
        b.recv_wait(rx, wait, wait_op(op_id, Box::new(move || b2.cancel(wait)))?);
        Ok(())
    }

    #[napi]
    pub fn bc_closed_wait(&self, op_id: u32) -> Result<()> {
        let b = self.bc()?.clone();
        let wait = hold::new_key();
        let b2 = b.clone();
        b.closed_wait(wait, wait_op(op_id, Box::new(move || b2.cancel(wait)))?);
        Ok(())
    }

    #[napi]
    pub fn bc_rx_count(&self) -> Result<f64> {
        Ok(self.bc()?.rx_count() as f64)
    }

    #[napi]
    pub fn bc_len(&self) -> Result<f64> {
        Ok(self.bc()?.len() as f64)
    }

    #[napi]
    pub fn bc_rx_len(&self, id: f64) -> Result<f64> {
        Ok(self.bc()?.rx_len(count(id)?) as f64)
    }

    #[napi]
    pub fn bc_is_closed(&self) -> Result<bool> {
        Ok(self.bc()?.is_closed())
    }

    #[napi]
    pub fn bc_cap(&self) -> Result<f64> {
        Ok(self.bc()?.cap() as f64)
    }

    // -- watch -----------------------------------------------------------------------------------

    /// Stores and notifies (under the write lock). With `requireRx` and no receivers: returns 1
    /// and stores nothing; 0 otherwise.
    #[napi(ts_args_type = "value: unknown, tag: number, requireRx: boolean")]
    pub fn w_send(&self, env: Env, value: Unknown, tag: u32, require_rx: bool) -> Result<u32> {
        let w = self.w()?;
        if require_rx && w.rx_count() == 0 {
            return Ok(1);
        }
        let m = from_js(&env, &value, tag)?;
        w.lock_write(SyncCell::env_id()?)
            .map_err(|_| invalid("kyoto/sync: a watch send from inside sendModify's function"))?;
        w.store(m, true);
        w.unlock_write();
        Ok(0)
    }

    /// Stores and notifies; returns the previous value.
    #[napi(
        ts_args_type = "value: unknown, tag: number",
        ts_return_type = "unknown"
    )]
    pub fn w_replace(&self, env: Env, value: Unknown, tag: u32) -> Result<Raw> {
        let w = self.w()?;
        let m = from_js(&env, &value, tag)?;
        w.lock_write(SyncCell::env_id()?)
            .map_err(|_| invalid("kyoto/sync: a watch send from inside sendModify's function"))?;
        let old = w.store(m, true);
        w.unlock_write();
        Ok(Raw(old.into_js(env.raw())?))
    }

    /// Takes the write lock (waiting for another thread's `sendModify`) and returns a copy of the
    /// value; `wModifyEnd` must follow. Returns the holding key of the lock in `[value, key]`.
    #[napi(ts_return_type = "[unknown, number]")]
    pub fn w_modify_begin(&self, env: Env) -> Result<Vec<Raw>> {
        let w = self.w()?;
        w.lock_write(SyncCell::env_id()?)
            .map_err(|_| invalid("kyoto/sync: sendModify re-entered from its own function"))?;
        let key = match hold_insert(Held::WatchWrite(w.clone())) {
            Ok(k) => k,
            Err(e) => {
                w.unlock_write();
                return Err(e);
            }
        };
        let v = match w.borrow().0.into_js(env.raw()) {
            Ok(v) => v,
            Err(e) => {
                if let Some(h) = hold::current()?.take(key) {
                    h.release();
                }
                return Err(e);
            }
        };
        let mut k = std::ptr::null_mut();
        // SAFETY: live env inside a native call.
        unsafe { napi::sys::napi_create_double(env.raw(), key as f64, &mut k) };
        Ok(vec![Raw(v), Raw(k)])
    }

    /// Ends `wModifyBegin` (lock key `key`): stores the value if `store`, notifies if `notify`,
    /// and releases the lock (also when storing fails).
    #[napi(
        ts_args_type = "key: number, store: boolean, value: unknown, tag: number, notify: boolean"
    )]
    pub fn w_modify_end(
        &self,
        env: Env,
        key: f64,
        store: bool,
        value: Unknown,
        tag: u32,
        notify: bool,
    ) -> Result<()> {
        let w = self.w()?;
        let held = hold::current()?.take(count(key)?);
        if held.is_none() {
            return Err(invalid("kyoto/sync: the write lock is not held"));
        }
        let r = if store {
            from_js(&env, &value, tag).map(|m| {
                w.store(m, notify);
            })
        } else {
            Ok(())
        };
        w.unlock_write();
        r
    }

    /// `[value copy, version]`.
    #[napi(ts_return_type = "[unknown, number]")]
    pub fn w_borrow(&self, env: Env) -> Result<Vec<Raw>> {
        let (m, ver) = self.w()?.borrow();
        let v = m.into_js(env.raw())?;
        let mut k = std::ptr::null_mut();
        // SAFETY: live env inside a native call.
        unsafe { napi::sys::napi_create_double(env.raw(), ver as f64, &mut k) };
        Ok(vec![Raw(v), Raw(k)])
    }

    #[napi]
    pub fn w_version(&self) -> Result<f64> {
        Ok(self.w()?.version() as f64)
    }

    #[napi]
    pub fn w_rx_count(&self) -> Result<f64> {
        Ok(self.w()?.rx_count() as f64)
    }

    #[napi]
    pub fn w_is_closed(&self) -> Result<bool> {
        Ok(self.w()?.is_closed())
    }

    /// Completes op `id` once the version differs from `seen` or the channel is closed.
    #[napi]
    pub fn w_changed_wait(&self, id: u32, seen: f64) -> Result<()> {
        let w = self.w()?.clone();
        let wait = hold::new_key();
        let w2 = w.clone();
        w.changed_wait(seen, wait, wait_op(id, Box::new(move || w2.cancel(wait)))?);
        Ok(())
    }

    #[napi]
    pub fn w_closed_wait(&self, id: u32) -> Result<()> {
        let w = self.w()?.clone();
        let wait = hold::new_key();
        let w2 = w.clone();
        w.closed_wait(wait, wait_op(id, Box::new(move || w2.cancel(wait)))?);
        Ok(())
    }

    // -- OnceCell --------------------------------------------------------------------------------

    /// -2: the value is set; -1: another initialisation runs (wait with `oWait`); else the key of
    /// the initialisation this env now runs (finish with `oFinish` or `oAbandon`).
    #[napi]
    pub fn o_try_begin(&self) -> Result<f64> {
        let o = self.once()?;
        let key = hold::new_key();
        Ok(match o.try_begin(key) {
            Begin::Set => -2.0,
            Begin::Busy => -1.0,
            Begin::Mine => {
                let hold = hold::current()?;
                if let Err(h) = hold.insert(key, Held::OnceInit(o.clone(), key)) {
                    h.release();
                    return Err(invalid("kyoto/sync: this env is shutting down"));
                }
                key as f64
            }
        })
    }

    /// Stores the initialised value; false if the initialisation was no longer this env's.
    #[napi(ts_args_type = "key: number, value: unknown, tag: number")]
    pub fn o_finish(&self, env: Env, key: f64, value: Unknown, tag: u32) -> Result<bool> {
        let o = self.once()?;
        let key = count(key)?;
        let r = from_js(&env, &value, tag);
        hold::current()?.take(key);
        match r {
            Ok(m) => Ok(o.finish(key, m)),
            Err(e) => {
                o.abandon(key);
                Err(e)
            }
        }
    }

    /// The initialisation `key` failed: the next caller retries.
    #[napi]
    pub fn o_abandon(&self, key: f64) -> Result<()> {
        let key = count(key)?;
        if let Some(h) = hold::current()?.take(key) {
            h.release();
        }
        Ok(())
    }

    /// 0 stored, 1 already initialised, 2 initialising.
    #[napi(ts_args_type = "value: unknown, tag: number")]
    pub fn o_set(&self, env: Env, value: Unknown, tag: u32) -> Result<u32> {
        let o = self.once()?;
        if o.get().is_some() {
            return Ok(1);
        }
        Ok(o.set(from_js(&env, &value, tag)?))
    }

    /// A copy of the value, or the `EMPTY` sentinel.
    #[napi(ts_return_type = "unknown")]
    pub fn o_get(&self, env: Env) -> Result<Raw> {
        match self.once()?.get() {
            Some(m) => Ok(Raw(m.into_js(env.raw())?)),
            None => no_value(&env),
        }
    }

    #[napi]
    pub fn o_wait(&self, id: u32) -> Result<()> {
        let o = self.once()?.clone();
        let wait = hold::new_key();
        let o2 = o.clone();
        o.wait(wait, wait_op(id, Box::new(move || o2.cancel(wait)))?);
        Ok(())
    }
}
