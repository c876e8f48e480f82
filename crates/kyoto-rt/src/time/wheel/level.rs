//! One level of the timer wheel: 64 slots, each an intrusive list of entries, and a bitmap of the
//! slots that hold at least one entry.
//!
//! Level `i` has slots `64^i` ms wide, so it spans `64^(i+1)` ms. The bitmap finds the next occupied
//! slot with one rotate and one `trailing_zeros`, whatever the number of entries.

/// Slots per level.
pub(crate) const LEVEL_MULT: usize = 64;

/// "No entry": the end of a list.
pub(super) const NIL: usize = usize::MAX;

/// The head and tail of a doubly linked list of slab entries (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct List {
    pub(super) head: usize,
    pub(super) tail: usize,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// The next slot of a level that must be processed, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expiration {
    /// The level the slot belongs to.
    pub(crate) level: usize,
    /// The slot index within the level.
    pub(crate) slot: usize,
    /// The tick at which the slot starts, i.e. at which its entries must be fired or moved down.
    pub(crate) deadline: u64,
}

#[derive(Debug)]
pub(super) struct Level {
    level: usize,
    /// Bit `s` is set iff `slots[s]` is not empty.
    occupied: u64,
    pub(super) slots: [List; LEVEL_MULT],
}

/// Width of one slot of `level`, in ticks: `64^level`.
pub(super) fn slot_range(level: usize) -> u64 {
    1u64 << (6 * level)
}

/// Span of the whole `level`, in ticks: `64^(level + 1)`.
pub(super) fn level_range(level: usize) -> u64 {
    1u64 << (6 * (level + 1))
}

/// The slot of `level` that `when` falls into.
pub(super) fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (6 * level)) % LEVEL_MULT as u64) as usize
}

impl Level {
    pub(super) fn new(level: usize) -> Level {
        Level {
            level,
            occupied: 0,
            slots: [List::EMPTY; LEVEL_MULT],
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    pub(super) fn set_occupied(&mut self, slot: usize) {
        self.occupied |= 1 << slot;
    }

    pub(super) fn clear_occupied(&mut self, slot: usize) {
        self.occupied &= !(1 << slot);
    }

    /// The first occupied slot after the slot `now` falls into, going round the level (so the slot of
    /// `now` itself comes last).
    ///
    /// Below the top level the slot of `now` is never occupied. On the top level it can be, by an
    /// entry more than a full rotation away, whose slot comes round again only after every other one.
    fn next_occupied_slot(&self, now: u64) -> Option<usize> {
        if self.occupied == 0 {
            return None;
        }
        let first = (now / slot_range(self.level) + 1) % LEVEL_MULT as u64;
        let distance = self.occupied.rotate_right(first as u32).trailing_zeros() as u64;
        Some(((first + distance) % LEVEL_MULT as u64) as usize)
    }

    /// When the next occupied slot of this level is due, given that ticks up to `now` have been
    /// processed.
    ///
    /// Entries are placed so that, on every level but the top one, an occupied slot always starts
    /// after `now`. The top level is used as a ring for deadlines beyond the wheel's span: a slot
    /// that appears to start at or before `now` there is really one rotation later.
    pub(super) fn next_expiration(&self, now: u64) -> Option<Expiration> {
        let slot = self.next_occupied_slot(now)?;
        let level_start = now & !(level_range(self.level) - 1);
        let mut deadline = level_start + slot as u64 * slot_range(self.level);
        if deadline <= now {
            debug_assert!(
                self.level == super::NUM_LEVELS - 1,
                "only the top level wraps around (level {}, slot {slot}, now {now})",
                self.level
            );
            deadline += level_range(self.level);
        }
        Some(Expiration {
            level: self.level,
            slot,
            deadline,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slot_and_level_ranges_are_powers_of_sixty_four() {
        assert_eq!(slot_range(0), 1);
        assert_eq!(slot_range(1), 64);
        assert_eq!(slot_range(5), 1 << 30);
        assert_eq!(level_range(0), 64);
        assert_eq!(level_range(5), 1 << 36);
        assert_eq!(slot_for(65, 0), 1);
        assert_eq!(slot_for(65, 1), 1);
        assert_eq!(slot_for(64 * 64 * 3 + 5, 2), 3);
    }

    #[test]
    fn the_next_occupied_slot_wraps_around_the_level() {
        let mut level = Level::new(0);
        assert!(level.next_occupied_slot(0).is_none());
        level.set_occupied(3);
        assert_eq!(level.next_occupied_slot(10), Some(3));
        assert_eq!(level.next_occupied_slot(2), Some(3));
        assert_eq!(level.next_occupied_slot(3), Some(3));
        level.set_occupied(40);
        assert_eq!(
            level.next_occupied_slot(3),
            Some(40),
            "the slot of `now` comes last"
        );
        assert_eq!(level.next_occupied_slot(10), Some(40));
        level.clear_occupied(40);
        assert_eq!(level.next_occupied_slot(10), Some(3));
        level.clear_occupied(3);
        assert!(level.is_empty());
    }

    #[test]
    fn an_occupied_slot_after_now_expires_at_its_start() {
        let mut level = Level::new(1);
        level.set_occupied(5);
        let exp = level.next_expiration(64 * 2 + 7).expect("occupied");
        assert_eq!(exp.slot, 5);
        assert_eq!(exp.deadline, 5 * 64);
    }

    #[test]
    fn a_top_level_slot_of_now_expires_after_every_other_slot() {
        let top = super::super::NUM_LEVELS - 1;
        let mut level = Level::new(top);
        level.set_occupied(0);
        level.set_occupied(32);
        let exp = level.next_expiration(3195).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (32, 32 * slot_range(top)));
        level.clear_occupied(32);
        let exp = level.next_expiration(3195).expect("occupied");
        assert_eq!((exp.slot, exp.deadline), (0, level_range(top)));
    }

    #[test]
    fn a_top_level_slot_before_now_expires_one_rotation_later() {
        let top = super::super::NUM_LEVELS - 1;
        let mut level = Level::new(top);
        level.set_occupied(1);
        let now = 5 * slot_range(top) + 17;
        let exp = level.next_expiration(now).expect("occupied");
        assert_eq!(exp.deadline, level_range(top) + slot_range(top));
    }
}
