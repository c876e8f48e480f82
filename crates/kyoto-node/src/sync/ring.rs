//! A sender's lock-free ring: the fast path of shared mpsc sends.
//!
//! Each JS wrapper of a shared channel that sends gets one ring in native memory, which
//! its JS thread sees as an external `ArrayBuffer`. Simple values (numbers, booleans, `null`,
//! `undefined`) are written into it by JS with no native call: the slot (kind, value, and the
//! send's sequence number from the channel's counter, which also says whether the receiver closed:
//! see `chan.rs`), then `Atomics.store` of the tail. Whoever takes messages out (the receiver, or
//! the same sender's slow path, always under the channel lock) reads up to the tail and publishes
//! the new head. The ring also carries a flag written by native code: `RXW` (the receiver is
//! waiting: the sender must call `kick` after publishing). On a bounded channel every
//! entry holds one capacity permit, taken by the JS sender with a CAS on the semaphore's word
//! before it publishes (see `sem.rs`) and returned when the receiver takes the entry.
//!
//! Layout (bytes): `[head u32][tail u32][unused u32][rxw u32]`, then `N` kind bytes, then `N` f64
//! slots, then `N` u32 sequence numbers (`RING_N` and this layout are mirrored by `RingView` in
//! `lib/sync/mpsc.ts`). Kinds: 0 number, 1 undefined, 2 null, 3 false, 4 true.
//!
//! One JS thread writes a ring and takes its sequence numbers in program order, so a ring's
//! entries are in sequence order from head to tail. It takes each number and publishes the entry
//! in one straight-line stretch of JS that a terminated Worker cannot stop halfway, so a number
//! taken before the receiver closed is always published (a closed receiver waits for it: see
//! "Closing" in `chan.rs`).
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::value::Msg;

/// Slots per ring (a power of two).
pub const RING_N: u32 = 1024;
const HEAD: usize = 0;
const TAIL: usize = 1;
const RXW: usize = 3;
/// Bytes before the kind bytes.
const CTRL_BYTES: usize = 16;
/// Byte offset of the f64 slots (8-aligned: `RING_N` is a multiple of 8).
const NUMS_AT: usize = CTRL_BYTES + RING_N as usize;
/// Byte offset of the u32 sequence numbers.
const SEQS_AT: usize = NUMS_AT + 8 * RING_N as usize;
/// Bytes of a ring (a multiple of 8).
const BYTES: usize = SEQS_AT + 4 * RING_N as usize;
const _: () = assert!(NUMS_AT % 8 == 0 && BYTES % 8 == 0 && RING_N.is_power_of_two());

/// A message with the sequence number its send took (see `chan.rs`).
pub struct Entry {
    pub seq: u32,
    pub msg: Msg,
}

/// One sender's ring.
pub struct Ring {
    mem: Box<[AtomicU64]>,
}

impl Ring {
    /// An empty ring.
    pub fn new() -> Ring {
        Ring {
            mem: (0..BYTES / 8).map(|_| AtomicU64::new(0)).collect(),
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
        // RING_N here, so the byte is inside `mem`.
        unsafe {
            &*(self.mem.as_ptr() as *const AtomicU8).add(CTRL_BYTES + (i & (RING_N - 1)) as usize)
        }
    }

    fn num(&self, i: u32) -> &AtomicU64 {
        &self.mem[NUMS_AT / 8 + (i & (RING_N - 1)) as usize]
    }

    fn seq_slot(&self, i: u32) -> &AtomicU32 {
        // Soundness: the sequence numbers are RING_N u32s at byte SEQS_AT (4-aligned, inside
        // `mem`: BYTES = SEQS_AT + 4 * RING_N); `i` is masked below RING_N here. An AtomicU32 has
        // the layout of a u32, and `mem` lives as long as `self`.
        // SAFETY: sound by the argument just above.
        unsafe {
            &*(self.mem.as_ptr() as *const AtomicU32).add(SEQS_AT / 4 + (i & (RING_N - 1)) as usize)
        }
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

    /// The head: the next entry to take (only the taker, under the channel lock, moves it).
    pub fn head(&self) -> u32 {
        self.ctrl(HEAD).load(Ordering::Relaxed)
    }

    /// The tail as published by the sender (acquire: the entries before it are visible), clamped
    /// to at most `RING_N` entries past `head`.
    pub fn tail_from(&self, head: u32) -> u32 {
        let tail = self.ctrl(TAIL).load(Ordering::Acquire);
        head.wrapping_add(tail.wrapping_sub(head).min(RING_N))
    }

    /// The sequence number of entry `i` (published: between the head and an acquired tail).
    pub fn seq(&self, i: u32) -> u32 {
        self.seq_slot(i).load(Ordering::Relaxed)
    }

    /// The message of entry `i` (published: between the head and an acquired tail).
    pub fn msg(&self, i: u32) -> Msg {
        match self.kind(i).load(Ordering::Relaxed) {
            0 => Msg::Num(f64::from_bits(self.num(i).load(Ordering::Relaxed))),
            2 => Msg::Null,
            3 => Msg::Bool(false),
            4 => Msg::Bool(true),
            _ => Msg::Undefined,
        }
    }

    /// Gives the entries before `head` back to the sender (release: the taker's reads of them
    /// happen before the sender reuses their slots).
    pub fn set_head(&self, head: u32) {
        self.ctrl(HEAD).store(head, Ordering::Release);
    }

    /// Takes every published entry, in order (caller holds the channel lock: the only consumer).
    pub fn take_all(&self, out: &mut Vec<Entry>) {
        let head = self.head();
        let tail = self.tail_from(head);
        let mut i = head;
        while i != tail {
            out.push(Entry {
                seq: self.seq(i),
                msg: self.msg(i),
            });
            i = i.wrapping_add(1);
        }
        if tail != head {
            self.set_head(tail);
        }
    }

    /// Discards every published entry (the receiver is gone); returns how many.
    pub fn clear(&self) -> usize {
        let head = self.head();
        let tail = self.tail_from(head);
        self.set_head(tail);
        tail.wrapping_sub(head) as usize
    }

    /// Tells the sender whether the receiver waits (it must then `kick` after publishing).
    pub fn set_rx_waiting(&self, on: bool) {
        self.ctrl(RXW).store(on as u32, Ordering::SeqCst);
    }

    /// Publishes `msg` with sequence number `seq` as the JS sender does (slot, then tail with
    /// release); for tests of the receiving side. The ring must have room.
    #[cfg(test)]
    pub fn publish(&self, seq: u32, msg: &Msg) {
        let tail = self.ctrl(TAIL).load(Ordering::Relaxed);
        let (kind, bits) = match msg {
            Msg::Num(x) => (0, x.to_bits()),
            Msg::Null => (2, 0),
            Msg::Bool(false) => (3, 0),
            Msg::Bool(true) => (4, 0),
            _ => (1, 0),
        };
        self.kind(tail).store(kind, Ordering::Relaxed);
        self.num(tail).store(bits, Ordering::Relaxed);
        self.seq_slot(tail).store(seq, Ordering::Relaxed);
        self.ctrl(TAIL)
            .store(tail.wrapping_add(1), Ordering::Release);
    }
}
