//! A sender's lock-free ring: the fast path of shared mpsc sends.
//!
//! Each JS wrapper of a shared channel that sends gets one ring in native memory, which
//! its JS thread sees as an external `ArrayBuffer`. Simple values (numbers, booleans, `null`,
//! `undefined`) are written into it by JS with no native call: the slot, then `Atomics.store` of
//! the tail. Whoever takes messages out (the receiver, or the same sender's slow path, always under
//! the channel lock) reads up to the tail and publishes the new head. The ring also carries two
//! flags written by native code: `CLOSED` (the receiver closed: a send must throw) and `RXW` (the
//! receiver is waiting: the sender must call `kick` after publishing). On a bounded channel every
//! entry holds one capacity permit, taken by the JS sender with a CAS on the semaphore's word
//! before it publishes (see `sem.rs`) and returned when the receiver takes the entry.
//!
//! Layout (bytes): `[head u32][tail u32][closed u32][rxw u32]`, then `N` kind bytes, then `N` f64
//! slots. Kinds: 0 number, 1 undefined, 2 null, 3 false, 4 true.
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::value::Msg;

/// Slots per ring (a power of two).
pub const RING_N: u32 = 1024;
const HEAD: usize = 0;
const TAIL: usize = 1;
const CLOSED: usize = 2;
const RXW: usize = 3;
/// Bytes before the kind bytes.
const CTRL_BYTES: usize = 16;

/// One sender's ring.
pub struct Ring {
    mem: Box<[AtomicU64]>,
}

impl Ring {
    /// An empty ring.
    pub fn new() -> Ring {
        let words = (CTRL_BYTES + RING_N as usize) / 8 + RING_N as usize;
        Ring {
            mem: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn ctrl(&self, i: usize) -> &AtomicU32 {
        let i = i & 3;
        // Soundness: the first 16 bytes of `mem` (two u64 words, 8-aligned) hold four u32 control
        // words; an atomic integer has the same layout as the integer, and `i < 4` stays inside
        // those bytes, which live as long as `self`.
        // SAFETY: sound by the argument just above.
        unsafe { &*(self.mem.as_ptr() as *const AtomicU32).add(i) }
    }

    fn kind(&self, i: u32) -> &AtomicU8 {
        // SAFETY: kind bytes start at byte 16 and there are RING_N of them; `i` is masked below
        // RING_N by every caller, so the byte is inside `mem`.
        unsafe {
            &*(self.mem.as_ptr() as *const AtomicU8).add(CTRL_BYTES + (i & (RING_N - 1)) as usize)
        }
    }

    fn num(&self, i: u32) -> &AtomicU64 {
        let base = (CTRL_BYTES + RING_N as usize) / 8;
        &self.mem[base + (i & (RING_N - 1)) as usize]
    }

    /// The ring's memory, for the external `ArrayBuffer` JS writes through.
    pub fn bytes(&self) -> (*mut u8, usize) {
        (self.mem.as_ptr() as *mut u8, self.mem.len() * 8)
    }

    /// Published, not yet taken entries (clamped to the ring size).
    pub fn len(&self) -> usize {
        let head = self.ctrl(HEAD).load(Ordering::SeqCst);
        let tail = self.ctrl(TAIL).load(Ordering::SeqCst);
        (tail.wrapping_sub(head)).min(RING_N) as usize
    }

    /// Takes up to `max` entries as messages (caller holds the channel lock: the only consumer).
    pub fn take(&self, max: usize, out: &mut Vec<Msg>) -> usize {
        let head = self.ctrl(HEAD).load(Ordering::Relaxed);
        let tail = self.ctrl(TAIL).load(Ordering::Acquire);
        let k = (tail.wrapping_sub(head).min(RING_N) as usize).min(max);
        for j in 0..k as u32 {
            let i = head.wrapping_add(j);
            out.push(match self.kind(i).load(Ordering::Relaxed) {
                0 => Msg::Num(f64::from_bits(self.num(i).load(Ordering::Relaxed))),
                2 => Msg::Null,
                3 => Msg::Bool(false),
                4 => Msg::Bool(true),
                _ => Msg::Undefined,
            });
        }
        if k > 0 {
            self.ctrl(HEAD)
                .store(head.wrapping_add(k as u32), Ordering::Release);
        }
        k
    }

    /// Discards every published entry (the receiver is gone); returns how many.
    pub fn clear(&self) -> usize {
        let head = self.ctrl(HEAD).load(Ordering::Relaxed);
        let tail = self.ctrl(TAIL).load(Ordering::Acquire);
        self.ctrl(HEAD).store(tail, Ordering::Release);
        tail.wrapping_sub(head).min(RING_N) as usize
    }

    /// Marks the channel closed for this ring's sender.
    pub fn set_closed(&self) {
        self.ctrl(CLOSED).store(1, Ordering::SeqCst);
    }

    /// Tells the sender whether the receiver waits (it must then `kick` after publishing).
    pub fn set_rx_waiting(&self, on: bool) {
        self.ctrl(RXW).store(on as u32, Ordering::SeqCst);
    }
}
