//! A hierarchical timer wheel: 6 levels × 64 slots, 1 tick = 1 ms.
//!
//! # Layout
//!
//! Entries live in a slab (`Vec` of occupied or vacant cells, with a free list), and each slot of each
//! level is a doubly linked list threaded through the slab by index. So inserting, cancelling and moving
//! an entry are O(1), and no entry is ever referenced by pointer: a cancelled key is simply unlinked.
//!
//! Level `i` holds the entries whose deadline first differs from `elapsed` (the last processed tick)
//! in the bits `6i..6i+6`: level 0 covers the current 64 ms, level 1 the current 4 s in 64 ms slots,
//! and so on up to level 5, whose slots are 2^30 ms wide and which spans 2^36 ms (about 2.2 years).
//! A deadline further away than that still goes into the top level, in the slot its bits `30..36`
//! name; the top level then acts as a ring, and such an entry is moved back into the top level each
//! time its slot comes round until it is close enough to be placed exactly.
//!
//! # Processing
//!
//! [`Wheel::poll`] finds the next slot due (the first occupied slot of the lowest non-empty level,
//! found with each level's 64-bit occupancy bitmap), advances `elapsed` to that slot's start and
//! empties it: entries whose deadline has been reached go to the `pending` list, the others are
//! re-inserted relative to the new `elapsed`, which puts them on a lower level. Entries are then
//! handed out from `pending` one at a time, so a caller can fire them in bounded batches.
//!
//! Invariant: every entry on a level below the top one sits in a slot that starts after `elapsed`,
//! and every entry in the wheel (not in `pending`) has a deadline after `elapsed`.
mod level;

use level::{slot_for, Expiration, Level, List, LEVEL_MULT, NIL};

/// Number of levels.
pub(crate) const NUM_LEVELS: usize = 6;

/// The span of the wheel, in ticks: deadlines further than this from `elapsed` are parked in the top
/// level and re-cascaded.
pub(crate) const MAX_DURATION: u64 = 1 << (6 * NUM_LEVELS);

/// The largest tick the wheel accepts; later deadlines are clamped to it (it is ~146 million years
/// of milliseconds, and leaves headroom so that no deadline computation overflows).
pub(crate) const MAX_TICK: u64 = 1 << 62;

/// Identifies an entry in the wheel until it is removed or handed out by [`Wheel::poll`]. Keys are
/// reused afterwards, so a holder must check that the entry is still its own (see [`Wheel::get`]).
pub(crate) type Key = usize;

/// Where an entry is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Slot { level: u8, slot: u8 },
    Pending,
}

#[derive(Debug)]
struct Node<T> {
    when: u64,
    prev: usize,
    next: usize,
    location: Location,
    value: T,
}

#[derive(Debug)]
enum Cell<T> {
    Vacant { next_free: usize },
    Occupied(Node<T>),
}

/// The timer wheel. `T` is the payload of an entry (the timer's shared state in the driver).
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    /// Every tick up to and including `elapsed` has been processed.
    elapsed: u64,
    levels: Vec<Level>,
    /// Entries whose deadline has been reached, waiting to be handed out by `poll`.
    pending: List,
    slab: Vec<Cell<T>>,
    free_head: usize,
    len: usize,
}

/// The level an entry due at `when` belongs to, given that ticks up to `elapsed` have been processed.
fn level_for(elapsed: u64, when: u64) -> usize {
    const SLOT_MASK: u64 = (1 << 6) - 1;
    // The highest bit in which `when` and `elapsed` differ decides the level; a difference below
    // bit 6 (or none) is level 0.
    let mut masked = (elapsed ^ when) | SLOT_MASK;
    if masked >= MAX_DURATION {
        masked = MAX_DURATION - 1;
    }
    let significant = 63 - masked.leading_zeros() as usize;
    significant / 6
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Wheel::new()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel at tick 0.
    pub(crate) fn new() -> Wheel<T> {
        Wheel {
            elapsed: 0,
            levels: (0..NUM_LEVELS).map(Level::new).collect(),
            pending: List::EMPTY,
            slab: Vec::new(),
            free_head: NIL,
            len: 0,
        }
    }

    /// The last processed tick.
    #[allow(dead_code)]
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of entries (in slots or pending).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no entry.
    #[allow(dead_code)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry due at tick `when` (clamped to [`MAX_TICK`]).
    ///
    /// Returns the value back if `when` has already been processed: the caller must fire it now.
    pub(crate) fn insert(&mut self, when: u64, value: T) -> Result<Key, T> {
        let when = when.min(MAX_TICK);
        if when <= self.elapsed {
            return Err(value);
        }
        let node = Node {
            when,
            prev: NIL,
            next: NIL,
            location: Location::Pending,
            value,
        };
        let key = self.alloc(node);
        let location = self.location_for(when);
        self.link(key, location);
        self.len += 1;
        Ok(key)
    }

    /// The value of the entry `key`, if it is in the wheel.
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slab.get(key) {
            Some(Cell::Occupied(node)) => Some(&node.value),
            _ => None,
        }
    }

    /// The deadline of the entry `key`, if it is in the wheel.
    #[allow(dead_code)]
    pub(crate) fn deadline(&self, key: Key) -> Option<u64> {
        match self.slab.get(key) {
            Some(Cell::Occupied(node)) => Some(node.when),
            _ => None,
        }
    }

    /// Cancels the entry `key`, returning its value; `None` if there is no such entry.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        if !matches!(self.slab.get(key), Some(Cell::Occupied(_))) {
            return None;
        }
        self.unlink(key);
        self.len -= 1;
        let cell = std::mem::replace(
            &mut self.slab[key],
            Cell::Vacant {
                next_free: self.free_head,
            },
        );
        self.free_head = key;
        match cell {
            Cell::Occupied(node) => Some(node.value),
            Cell::Vacant { .. } => None,
        }
    }

    /// The tick at which [`poll`](Self::poll) next has something to do: the deadline of the earliest
    /// entry, or an earlier tick at which entries must be moved to a lower level. `Some(elapsed)` if
    /// entries are pending; `None` if the wheel is empty.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.elapsed);
        }
        self.next_slot_expiration().map(|e| e.deadline)
    }

    /// The deadline of the earliest entry, exactly (unlike [`next_expiration`](Self::next_expiration),
    /// which may name an earlier cascade point); `Some(elapsed)` if entries are pending; `None` if the
    /// wheel is empty. Polling at the returned tick hands that entry out.
    ///
    /// Costs a walk of one slot's list, or of the whole top level when only it holds entries (which
    /// is a ring there: its next occupied slot may hold an entry rotations away, another slot a nearer
    /// one).
    pub(crate) fn earliest_deadline(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.elapsed);
        }
        let level = self.levels.iter().position(|l| !l.is_empty())?;
        let slots: &[List] = if level < NUM_LEVELS - 1 {
            // Below the top, the next occupied slot of the lowest non-empty level holds the earliest
            // entries (see the module invariant).
            let exp = self.levels[level].next_expiration(self.elapsed)?;
            std::slice::from_ref(&self.levels[level].slots[exp.slot])
        } else {
            &self.levels[level].slots
        };
        let mut earliest = None;
        for list in slots {
            let mut key = list.head;
            while key != NIL {
                let Cell::Occupied(node) = &self.slab[key] else {
                    unreachable!("a slot list links only occupied cells")
                };
                earliest = Some(earliest.map_or(node.when, |e: u64| e.min(node.when)));
                key = node.next;
            }
        }
        earliest
    }

    /// Hands out one entry whose deadline is at or before `now`, or `None` once there is none left,
    /// at which point every tick up to `now` has been processed. A `now` before the last processed
    /// tick is treated as that tick (time never goes backwards for the wheel).
    pub(crate) fn poll(&mut self, now: u64) -> Option<T> {
        loop {
            if !self.pending.is_empty() {
                let key = self.pending.head;
                return self.remove(key);
            }
            match self.next_slot_expiration() {
                Some(exp) if exp.deadline <= now => {
                    if exp.level == NUM_LEVELS - 1
                        && now - self.elapsed >= MAX_DURATION
                        && self.rebase_top_level(now)
                    {
                        continue;
                    }
                    self.process_expiration(exp)
                }
                _ => {
                    if now > self.elapsed {
                        self.elapsed = now.min(MAX_TICK);
                    }
                    return None;
                }
            }
        }
    }

    /// Removes every entry, in no particular order.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let slab = std::mem::take(&mut self.slab);
        let elapsed = self.elapsed;
        *self = Wheel::new();
        self.elapsed = elapsed;
        slab.into_iter()
            .filter_map(|cell| match cell {
                Cell::Occupied(node) => Some(node.value),
                Cell::Vacant { .. } => None,
            })
            .collect()
    }

    fn next_slot_expiration(&self) -> Option<Expiration> {
        // Entries on a lower level are always due before those on a higher one.
        self.levels
            .iter()
            .find(|l| !l.is_empty())
            .and_then(|l| l.next_expiration(self.elapsed))
    }

    /// Empties the slot `exp` names: due entries become pending, the others move down.
    fn process_expiration(&mut self, exp: Expiration) {
        let list = std::mem::replace(&mut self.levels[exp.level].slots[exp.slot], List::EMPTY);
        self.levels[exp.level].clear_occupied(exp.slot);
        if exp.deadline > self.elapsed {
            self.elapsed = exp.deadline;
        }
        let mut key = list.head;
        while key != NIL {
            let (next, when) = match &self.slab[key] {
                Cell::Occupied(node) => (node.next, node.when),
                Cell::Vacant { .. } => unreachable!("a slot list links only occupied cells"),
            };
            let location = if when <= self.elapsed {
                Location::Pending
            } else {
                self.location_for(when)
            };
            self.link(key, location);
            key = next;
        }
    }

    /// Time jumped by more than a rotation and only the top level holds entries: instead of walking
    /// the top level one rotation at a time, move `elapsed` straight to just before the earliest
    /// deadline (or to `now`) and re-place every top-level entry from there. Only called when the
    /// levels below the top and `pending` are empty. Returns whether `elapsed` moved.
    fn rebase_top_level(&mut self, now: u64) -> bool {
        let top = NUM_LEVELS - 1;
        let mut earliest = u64::MAX;
        for slot in 0..LEVEL_MULT {
            let mut key = self.levels[top].slots[slot].head;
            while key != NIL {
                let node = self.node_mut(key);
                earliest = earliest.min(node.when);
                key = node.next;
            }
        }
        let target = now.min(earliest.saturating_sub(1));
        if target <= self.elapsed {
            return false;
        }
        self.elapsed = target;
        let lists = std::mem::replace(&mut self.levels[top], Level::new(top)).slots;
        for list in lists {
            let mut key = list.head;
            while key != NIL {
                let (next, when) = {
                    let node = self.node_mut(key);
                    (node.next, node.when)
                };
                // `when > target >= elapsed`: nothing becomes pending here.
                let location = self.location_for(when);
                self.link(key, location);
                key = next;
            }
        }
        true
    }

    fn location_for(&self, when: u64) -> Location {
        let level = level_for(self.elapsed, when);
        Location::Slot {
            level: level as u8,
            slot: slot_for(when, level) as u8,
        }
    }

    fn alloc(&mut self, node: Node<T>) -> Key {
        if self.free_head != NIL {
            let key = self.free_head;
            if let Cell::Vacant { next_free } = self.slab[key] {
                self.free_head = next_free;
            }
            self.slab[key] = Cell::Occupied(node);
            key
        } else {
            self.slab.push(Cell::Occupied(node));
            self.slab.len() - 1
        }
    }

    fn node_mut(&mut self, key: Key) -> &mut Node<T> {
        match &mut self.slab[key] {
            Cell::Occupied(node) => node,
            Cell::Vacant { .. } => unreachable!("lists link only occupied cells"),
        }
    }

    fn list_mut(&mut self, location: Location) -> &mut List {
        match location {
            Location::Slot { level, slot } => &mut self.levels[level as usize].slots[slot as usize],
            Location::Pending => &mut self.pending,
        }
    }

    /// Appends `key` (not currently linked anywhere) to the list at `location`.
    fn link(&mut self, key: Key, location: Location) {
        let tail = self.list_mut(location).tail;
        {
            let node = self.node_mut(key);
            node.prev = tail;
            node.next = NIL;
            node.location = location;
        }
        if tail == NIL {
            self.list_mut(location).head = key;
        } else {
            self.node_mut(tail).next = key;
        }
        self.list_mut(location).tail = key;
        if let Location::Slot { level, slot } = location {
            self.levels[level as usize].set_occupied(slot as usize);
        }
    }

    /// Removes `key` from the list it is linked in.
    fn unlink(&mut self, key: Key) {
        let (prev, next, location) = {
            let node = self.node_mut(key);
            (node.prev, node.next, node.location)
        };
        if prev == NIL {
            self.list_mut(location).head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.list_mut(location).tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
        if let Location::Slot { level, slot } = location {
            if self.levels[level as usize].slots[slot as usize].is_empty() {
                self.levels[level as usize].clear_occupied(slot as usize);
            }
        }
        let node = self.node_mut(key);
        node.prev = NIL;
        node.next = NIL;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Drains every entry due at or before `now`.
    fn fire(wheel: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        std::iter::from_fn(|| wheel.poll(now)).collect()
    }

    /// A small deterministic generator (xorshift64*), so the randomised tests are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn the_level_of_a_deadline_is_given_by_its_highest_bit_differing_from_elapsed() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, (1 << 30) + 1), 5);
        assert_eq!(level_for(0, 1 << 36), 5, "beyond the span: the top level");
        assert_eq!(level_for(0, MAX_TICK), 5);
    }

    #[test]
    fn a_timer_fires_exactly_at_its_deadline_and_not_before() {
        for when in [
            1u64,
            5,
            63,
            64,
            65,
            100,
            4095,
            4096,
            10_000,
            300_000,
            1 << 31,
        ] {
            let mut wheel = Wheel::new();
            wheel.insert(when, when).expect("in the future");
            assert!(fire(&mut wheel, when - 1).is_empty(), "{when} fired early");
            assert_eq!(wheel.elapsed(), when - 1);
            assert_eq!(fire(&mut wheel, when), vec![when], "{when} did not fire");
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn a_timer_cancelled_before_its_deadline_never_fires() {
        let mut wheel = Wheel::new();
        let key = wheel.insert(100, 100).expect("in the future");
        let other = wheel.insert(100, 101).expect("in the future");
        assert_eq!(wheel.remove(key), Some(100));
        assert_eq!(wheel.remove(key), None, "a second cancel is a no-op");
        assert_eq!(fire(&mut wheel, 1000), vec![101]);
        assert_eq!(wheel.remove(other), None, "a fired entry is gone");
        assert!(wheel.is_empty());
    }

    #[test]
    fn inserting_a_deadline_that_was_already_processed_is_refused() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.insert(0, 7), Err(7));
        assert!(fire(&mut wheel, 50).is_empty());
        assert_eq!(wheel.insert(50, 8), Err(8));
        assert_eq!(wheel.insert(49, 9), Err(9));
        assert!(wheel.insert(51, 10).is_ok());
    }

    #[test]
    fn the_next_expiration_is_never_after_the_earliest_deadline() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.next_expiration(), None);
        wheel.insert(5000, 5000).expect("in the future");
        wheel.insert(70, 70).expect("in the future");
        let next = wheel.next_expiration().expect("not empty");
        assert!(next <= 70, "{next}");
        assert_eq!(fire(&mut wheel, 69), Vec::<u64>::new());
        assert_eq!(wheel.next_expiration(), Some(70));
        assert_eq!(fire(&mut wheel, 70), vec![70]);
        assert!(wheel.next_expiration().expect("not empty") <= 5000);
    }

    #[test]
    fn polling_with_a_time_in_the_past_does_not_move_elapsed_backwards() {
        let mut wheel = Wheel::new();
        wheel.insert(30, 30).expect("in the future");
        assert!(fire(&mut wheel, 20).is_empty());
        assert!(fire(&mut wheel, 10).is_empty());
        assert_eq!(wheel.elapsed(), 20);
        assert_eq!(fire(&mut wheel, 30), vec![30]);
    }

    #[test]
    fn many_timers_in_one_slot_all_fire_and_removing_one_from_the_middle_keeps_the_others() {
        let mut wheel = Wheel::new();
        let keys: Vec<Key> = (0..10)
            .map(|i| wheel.insert(200, i).expect("in the future"))
            .collect();
        assert_eq!(wheel.remove(keys[5]), Some(5));
        assert_eq!(wheel.remove(keys[0]), Some(0));
        assert_eq!(wheel.remove(keys[9]), Some(9));
        let mut fired = fire(&mut wheel, 200);
        fired.sort_unstable();
        assert_eq!(fired, vec![1, 2, 3, 4, 6, 7, 8]);
    }

    #[test]
    fn a_freed_key_is_reused_and_the_old_holder_can_tell() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10, 1).expect("in the future");
        assert_eq!(wheel.remove(a), Some(1));
        let b = wheel.insert(20, 2).expect("in the future");
        assert_eq!(a, b);
        assert_eq!(
            wheel.get(a),
            Some(&2),
            "the holder of `a` must compare values"
        );
        assert_eq!(wheel.deadline(b), Some(20));
    }

    #[test]
    fn a_deadline_beyond_the_wheel_span_is_recascaded_until_it_is_due() {
        for when in [
            MAX_DURATION + 5,
            3 * MAX_DURATION + (7 << 30) + 11,
            MAX_DURATION - 1,
        ] {
            let mut wheel = Wheel::new();
            wheel.insert(when, when).expect("in the future");
            let mut steps = 0;
            // Walk from expiration to expiration, as a parked driver would.
            loop {
                let next = wheel.next_expiration().expect("not fired yet");
                assert!(next <= when, "next expiration {next} after deadline {when}");
                let fired = fire(&mut wheel, next);
                steps += 1;
                assert!(steps < 1000, "no progress towards {when}");
                if !fired.is_empty() {
                    assert_eq!(fired, vec![when]);
                    assert_eq!(next, when, "fired at the exact tick");
                    break;
                }
            }
        }
    }

    #[test]
    fn a_far_entry_in_the_current_top_slot_does_not_hide_a_nearer_top_level_entry() {
        let mut wheel = Wheel::new();
        assert!(fire(&mut wheel, 3195).is_empty());
        let far = MAX_DURATION + 100; // top level, slot 0: the slot of `elapsed`
        let near = 35_283_986_758; // top level, slot 32
        wheel.insert(far, far).expect("in the future");
        wheel.insert(near, near).expect("in the future");
        assert_eq!(fire(&mut wheel, 40_000_000_000), vec![near]);
        assert!(fire(&mut wheel, far - 1).is_empty());
        assert_eq!(fire(&mut wheel, far), vec![far]);
    }

    #[test]
    fn the_latest_deadline_is_clamped_and_still_fires() {
        let mut wheel = Wheel::new();
        wheel.insert(u64::MAX, 1).expect("in the future");
        assert!(fire(&mut wheel, MAX_TICK - 1).is_empty());
        assert_eq!(fire(&mut wheel, MAX_TICK), vec![1]);
    }

    #[test]
    fn timers_on_every_level_fire_in_deadline_order_when_time_advances_slowly() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut wheel = Wheel::new();
        let mut deadlines = Vec::new();
        for _ in 0..2000 {
            let level = rng.below(3) as u32;
            let when = 1 + rng.below(64u64.pow(level + 1));
            wheel.insert(when, when).expect("in the future");
            deadlines.push(when);
        }
        deadlines.sort_unstable();
        let mut fired = Vec::new();
        let mut now = 0;
        while fired.len() < deadlines.len() {
            now += 1 + rng.below(40);
            for when in fire(&mut wheel, now) {
                assert!(when <= now, "{when} fired early at {now}");
                assert!(when + 41 > now, "{when} fired late at {now}");
                fired.push(when);
            }
        }
        fired.sort_unstable();
        assert_eq!(fired, deadlines);
    }

    #[test]
    fn a_randomised_mix_of_inserts_cancels_and_polls_matches_a_sorted_map() {
        for seed in [42, 7, 0xdead_beef] {
            randomised_mix(seed, 5_000);
        }
    }

    fn randomised_mix(seed: u64, ops: u64) {
        let mut rng = Rng(seed);
        let mut wheel: Wheel<u64> = Wheel::new();
        // id -> (key, when)
        let mut live: BTreeMap<u64, (Key, u64)> = BTreeMap::new();
        let mut now = 0u64;
        for id in 0..ops {
            match rng.below(10) {
                0..=5 => {
                    let span = [64u64, 4096, 1 << 20, 1 << 38][rng.below(4) as usize];
                    let when = now + rng.below(span);
                    match wheel.insert(when, id) {
                        Ok(key) => {
                            live.insert(id, (key, when));
                        }
                        Err(v) => assert!(when <= now && v == id),
                    }
                }
                6..=7 => {
                    if let Some((&victim, &(key, _))) = live.iter().nth(rng.below(8) as usize) {
                        assert_eq!(wheel.remove(key), Some(victim));
                        live.remove(&victim);
                    }
                }
                _ => {
                    let span = if rng.below(100) == 0 { 1 << 37 } else { 300 };
                    now += rng.below(span);
                    while let Some(id) = wheel.poll(now) {
                        let (_, when) = live.remove(&id).expect("fired entry is live");
                        assert!(when <= now, "entry due at {when} fired at {now}");
                    }
                    for &(_, when) in live.values() {
                        assert!(when > now, "entry due at {when} not fired at {now}");
                    }
                }
            }
            assert_eq!(wheel.len(), live.len());
            assert_eq!(
                wheel.earliest_deadline(),
                live.values().map(|&(_, when)| when).min(),
                "the earliest deadline is exact"
            );
        }
    }

    #[test]
    fn draining_empties_the_wheel_and_keeps_elapsed() {
        let mut wheel = Wheel::new();
        fire(&mut wheel, 10);
        for w in [20u64, 2000, 1 << 40] {
            wheel.insert(w, w).expect("in the future");
        }
        let mut drained = wheel.drain();
        drained.sort_unstable();
        assert_eq!(drained, vec![20, 2000, 1 << 40]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
        assert_eq!(wheel.elapsed(), 10);
    }
}
