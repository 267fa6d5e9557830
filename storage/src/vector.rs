//! Version vectors: origin stream -> number of records of it (DESIGN.md,
//! "Mirroring and the conflict-free offset mapping").
//!
//! A partition's vector says how much of each origin stream a region holds;
//! a consumer group's committed position is a vector too. Vectors form a
//! join-semilattice under pointwise max, so merging commits from two regions
//! never conflicts and never moves a position backwards.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{OriginSeq, OriginStream};

/// Origin stream -> count of its records (equivalently, the next seq).
/// An origin that is absent counts 0.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionVector {
    counts: BTreeMap<OriginStream, u64>,
}

impl VersionVector {
    /// The empty vector: nothing of any origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records of `origin` counted, i.e. the next seq expected from it.
    pub fn get(&self, origin: &OriginStream) -> u64 {
        self.counts.get(origin).copied().unwrap_or(0)
    }

    /// The next seq expected from `origin`.
    pub fn next_seq(&self, origin: &OriginStream) -> OriginSeq {
        OriginSeq(self.get(origin))
    }

    /// Sets the count of `origin`. A count of 0 removes the entry.
    pub fn set(&mut self, origin: OriginStream, count: u64) {
        if count == 0 {
            self.counts.remove(&origin);
        } else {
            self.counts.insert(origin, count);
        }
    }

    /// Adds `records` to the count of `origin`.
    pub fn add(&mut self, origin: &OriginStream, records: u64) {
        if records == 0 {
            return;
        }
        match self.counts.get_mut(origin) {
            Some(count) => *count += records,
            None => {
                self.counts.insert(origin.clone(), records);
            }
        }
    }

    /// Pointwise max with `other` (the semilattice join).
    pub fn merge(&mut self, other: &VersionVector) {
        for (origin, &count) in &other.counts {
            let entry = self.counts.entry(origin.clone()).or_insert(0);
            *entry = (*entry).max(count);
        }
    }

    /// True when every count here is at most the matching count in `other`.
    pub fn dominated_by(&self, other: &VersionVector) -> bool {
        self.counts
            .iter()
            .all(|(origin, &count)| count <= other.get(origin))
    }

    /// The origins with a non-zero count, in order, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (&OriginStream, u64)> {
        self.counts.iter().map(|(origin, &count)| (origin, count))
    }

    /// Number of origins with a non-zero count.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing of any origin is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.counts.iter().map(|(o, c)| (o.to_string(), c)))
            .finish()
    }
}

impl FromIterator<(OriginStream, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (OriginStream, u64)>>(iter: I) -> Self {
        let mut vector = Self::new();
        for (origin, count) in iter {
            vector.set(origin, count);
        }
        vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Incarnation, RegionId};

    fn origin(name: &str) -> OriginStream {
        OriginStream {
            region: RegionId::parse(name).expect("test names are valid"),
            incarnation: Incarnation(1),
        }
    }

    #[test]
    fn merge_is_pointwise_max_and_never_moves_back() {
        let mut a: VersionVector = [(origin("a"), 5), (origin("b"), 1)].into_iter().collect();
        let b: VersionVector = [(origin("a"), 3), (origin("c"), 7)].into_iter().collect();
        a.merge(&b);
        assert_eq!(a.get(&origin("a")), 5);
        assert_eq!(a.get(&origin("b")), 1);
        assert_eq!(a.get(&origin("c")), 7);
        assert!(b.dominated_by(&a));
        assert!(!a.dominated_by(&b));
    }

    #[test]
    fn zero_counts_are_absent() {
        let mut a = VersionVector::new();
        a.set(origin("a"), 0);
        a.add(&origin("b"), 0);
        assert!(a.is_empty());
        assert_eq!(a, VersionVector::new());
    }
}
