//! Which offsets of one source partition a queue is done with: a floor
//! (every offset below it is done) plus a compact set of done intervals
//! above it. "Done" means acked, dead-lettered, or not routed to the queue
//! at all (filtered out), so the floor advances past everything the queue
//! never needs again. Two sets merge by union ([`AckSet::merge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A floor plus disjoint, non-adjacent half-open intervals above it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckSet {
    /// Every offset below this one is done.
    floor: u64,
    /// start -> end (exclusive), every interval strictly above the floor
    /// (`start > floor`), none touching another.
    intervals: BTreeMap<u64, u64>,
}

impl AckSet {
    /// An empty set whose floor is `floor`.
    pub fn starting_at(floor: u64) -> Self {
        Self {
            floor,
            intervals: BTreeMap::new(),
        }
    }

    /// Every offset below the floor is done.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Number of intervals kept above the floor (the set's memory cost).
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// The intervals above the floor, in order.
    pub fn intervals(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.intervals.iter().map(|(start, end)| (*start, *end))
    }

    /// True when `offset` is done.
    pub fn contains(&self, offset: u64) -> bool {
        if offset < self.floor {
            return true;
        }
        self.intervals
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, end)| offset < *end)
    }

    /// Marks `offset` done.
    pub fn insert(&mut self, offset: u64) {
        self.insert_range(offset, offset.saturating_add(1));
    }

    /// Marks `[start, end)` done.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if end <= start || end <= self.floor {
            return;
        }
        let mut start = start.max(self.floor);
        let mut end = end;
        // Absorb an interval that starts before and reaches `start`.
        if let Some((&before_start, &before_end)) = self.intervals.range(..=start).next_back()
            && before_end >= start
        {
            start = before_start;
            end = end.max(before_end);
            self.intervals.remove(&before_start);
        }
        // Absorb every interval starting inside [start, end].
        while let Some((&next_start, &next_end)) = self.intervals.range(start..=end).next() {
            end = end.max(next_end);
            self.intervals.remove(&next_start);
        }
        if start == self.floor {
            self.floor = end;
        } else {
            self.intervals.insert(start, end);
        }
        self.check();
    }

    /// Adds every offset done in `other` (a union: commutative, idempotent).
    pub fn merge(&mut self, other: &AckSet) {
        self.insert_range(0, other.floor);
        for (start, end) in other.intervals() {
            self.insert_range(start, end);
        }
    }

    /// Checks the invariants after each change, in unit tests only (it
    /// walks every interval).
    fn check(&self) {
        if cfg!(test) {
            let mut last_end = self.floor;
            for (start, end) in self.intervals() {
                assert!(start > last_end, "intervals touch or overlap the floor");
                assert!(end > start, "empty interval");
                last_end = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn contiguous_acks_only_move_the_floor() {
        let mut set = AckSet::default();
        for offset in 0..100 {
            set.insert(offset);
        }
        assert_eq!(set.floor(), 100);
        assert_eq!(set.interval_count(), 0);
    }

    #[test]
    fn a_gap_keeps_intervals_until_it_is_filled() {
        let mut set = AckSet::starting_at(10);
        set.insert(12);
        set.insert(13);
        set.insert(15);
        assert_eq!(set.floor(), 10);
        assert_eq!(
            set.intervals().collect::<Vec<_>>(),
            vec![(12, 14), (15, 16)]
        );
        assert!(!set.contains(11) && set.contains(12) && !set.contains(14));
        set.insert(14);
        set.insert(10);
        assert_eq!(set.floor(), 11);
        set.insert(11);
        assert_eq!(set.floor(), 16);
        assert_eq!(set.interval_count(), 0);
    }

    #[test]
    fn offsets_below_the_floor_are_done_and_ignored() {
        let mut set = AckSet::starting_at(5);
        set.insert(3);
        assert!(set.contains(0) && set.contains(4) && !set.contains(5));
        assert_eq!(set, AckSet::starting_at(5));
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_offsets(ranges in proptest::collection::vec((0u64..200, 1u64..20), 0..60)) {
            let mut set = AckSet::default();
            let mut model = BTreeSet::new();
            for (start, length) in ranges {
                set.insert_range(start, start + length);
                model.extend(start..start + length);
            }
            for offset in 0..240 {
                prop_assert_eq!(set.contains(offset), model.contains(&offset), "offset {}", offset);
            }
            let expected_floor = (0..).find(|offset| !model.contains(offset)).unwrap_or(0);
            prop_assert_eq!(set.floor(), expected_floor);
        }

        #[test]
        fn merge_is_a_commutative_union(
            left in proptest::collection::vec(0u64..100, 0..40),
            right in proptest::collection::vec(0u64..100, 0..40),
        ) {
            let (mut a, mut b) = (AckSet::default(), AckSet::default());
            left.iter().for_each(|offset| a.insert(*offset));
            right.iter().for_each(|offset| b.insert(*offset));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            prop_assert_eq!(&ab, &ba);
            let mut twice = ab.clone();
            twice.merge(&b);
            prop_assert_eq!(&twice, &ab);
            for offset in 0..100 {
                prop_assert_eq!(ab.contains(offset), a.contains(offset) || b.contains(offset));
            }
        }
    }
}
