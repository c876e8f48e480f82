//! Handles: how a shared object is named in a structured-cloneable message. A handle is a slot
//! index, the slot's generation and a random 64-bit secret — never a pointer. A lookup checks all
//! three plus the object kind under the registry lock, so a forged, stale or malformed handle is
//! refused without touching any object.
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::cells::{End, OnceN};
use super::chan::Chan;
use super::notify::{Barrier, Notify};
use super::SemObj;

/// A shared object, strongly held.
#[derive(Clone)]
pub enum Obj {
    Sem(Arc<SemObj>),
    Chan(Arc<Chan>),
    Notify(Arc<Notify>),
    Barrier(Arc<Barrier>),
    Once(Arc<OnceN>),
    /// A oneshot/broadcast/watch channel end (shared once).
    End(End),
}

enum WeakObj {
    Sem(Weak<SemObj>),
    Notify(Weak<Notify>),
    Barrier(Weak<Barrier>),
    Once(Weak<OnceN>),
}

impl WeakObj {
    fn upgrade(&self) -> Option<Obj> {
        match self {
            WeakObj::Sem(w) => w.upgrade().map(Obj::Sem),
            WeakObj::Notify(w) => w.upgrade().map(Obj::Notify),
            WeakObj::Barrier(w) => w.upgrade().map(Obj::Barrier),
            WeakObj::Once(w) => w.upgrade().map(Obj::Once),
        }
    }
}

enum Entry {
    Free,
    /// A primitive: revivable any number of times while it is alive.
    Weak(WeakObj),
    /// A channel end (a counted sender clone or the moved receiver): revivable exactly once.
    Once(Obj),
}

struct Slot {
    gen: u32,
    secret: u64,
    kind: u32,
    entry: Entry,
}

#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// A handle's identity fields.
#[derive(Clone, Copy)]
pub struct Handle {
    pub index: u32,
    pub gen: u32,
    pub secret: u64,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    REG.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS's randomness; SipHash of a fresh counter under that key
    // is unpredictable to anyone without the key.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

impl Registry {
    fn sweep(&mut self) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Entry::Weak(w) = &s.entry {
                if w.upgrade().is_none() {
                    s.entry = Entry::Free;
                    s.gen = s.gen.wrapping_add(1);
                    self.free.push(i as u32);
                }
            }
        }
    }

    fn alloc(&mut self, kind: u32, entry: Entry) -> Handle {
        if self.free.is_empty() && self.slots.len() >= 64 && self.slots.len().is_power_of_two() {
            self.sweep();
        }
        let secret = random_u64();
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    gen: 1,
                    secret: 0,
                    kind: 0,
                    entry: Entry::Free,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[index as usize];
        s.secret = secret;
        s.kind = kind;
        s.entry = entry;
        Handle {
            index,
            gen: s.gen,
            secret,
        }
    }

    fn release(&mut self, index: u32) {
        let s = &mut self.slots[index as usize];
        s.entry = Entry::Free;
        s.gen = s.gen.wrapping_add(1);
        s.secret = 0;
        self.free.push(index);
    }
}

/// Registers a primitive (revivable while alive).
pub fn share_weak(kind: u32, obj: &Obj) -> Handle {
    let w = match obj {
        Obj::Sem(a) => WeakObj::Sem(Arc::downgrade(a)),
        Obj::Notify(a) => WeakObj::Notify(Arc::downgrade(a)),
        Obj::Barrier(a) => WeakObj::Barrier(Arc::downgrade(a)),
        Obj::Once(a) => WeakObj::Once(Arc::downgrade(a)),
        // Channel ends are shared with `share_once`; never reached (callers pass primitives).
        Obj::Chan(_) | Obj::End(_) => {
            return Handle {
                index: u32::MAX,
                gen: 0,
                secret: 0,
            }
        }
    };
    registry().alloc(kind, Entry::Weak(w))
}

/// Registers a channel end revivable exactly once.
pub fn share_once(kind: u32, obj: Obj) -> Handle {
    registry().alloc(kind, Entry::Once(obj))
}

/// Takes the channel end a live, unrevived handle of `kind` carries, so that it can be dropped
/// instead of revived (the handle is dead afterwards, as after a revival). `None` for anything
/// else: a primitive's handle, a handle already revived or taken, a stale or forged one.
pub fn take_once(kind: u32, h: Handle) -> Option<Obj> {
    let mut reg = registry();
    let s = reg.slots.get_mut(h.index as usize)?;
    if s.gen != h.gen || s.secret != h.secret || s.secret == 0 || s.kind != kind {
        return None;
    }
    if !matches!(s.entry, Entry::Once(_)) {
        return None;
    }
    let Entry::Once(o) = std::mem::replace(&mut s.entry, Entry::Free) else {
        return None;
    };
    reg.release(h.index);
    Some(o)
}

/// Looks a handle up. `None` for anything but a live handle of this kind.
pub fn revive(kind: u32, h: Handle) -> Option<Obj> {
    let mut reg = registry();
    let s = reg.slots.get(h.index as usize)?;
    if s.gen != h.gen || s.secret != h.secret || s.secret == 0 || s.kind != kind {
        return None;
    }
    match &s.entry {
        Entry::Free => None,
        Entry::Weak(w) => {
            let o = w.upgrade();
            if o.is_none() {
                reg.release(h.index);
            }
            o
        }
        Entry::Once(_) => {
            let s = &mut reg.slots[h.index as usize];
            let Entry::Once(o) = std::mem::replace(&mut s.entry, Entry::Free) else {
                return None;
            };
            reg.release(h.index);
            Some(o)
        }
    }
}
