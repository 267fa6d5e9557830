//! The node-computed assignors: Kafka's `RangeAssignor` and
//! `RoundRobinAssignor`, over member subscriptions and partition counts.
//!
//! Both are pure functions of their inputs (sorted maps in, sorted maps out),
//! so every node computes the same assignment for the same group.

use std::collections::{BTreeMap, BTreeSet};

use meshgate_protocol::TopicPartitions;

/// Most partitions a topic may have for the assignors. A count above it is
/// treated as an unknown topic (its partitions are not assigned) rather than
/// allocating an absurd assignment. Topics are created with at most 1024.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 1 << 16;

/// The protocol name of the node-computed range assignor.
pub const RANGE: &str = "range";
/// The protocol name of the node-computed round-robin assignor.
pub const ROUND_ROBIN: &str = "roundrobin";

/// Where the coordinator learns how many partitions a topic has.
///
/// The node implements it over its topic registry. `None` means the topic
/// does not exist (yet): its partitions are not assigned until a later
/// rebalance sees it.
pub trait PartitionCounts {
    /// The number of partitions of `topic`, if it exists.
    fn partitions(&self, topic: &str) -> Option<u32>;
}

impl PartitionCounts for BTreeMap<String, u32> {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self.get(topic).copied()
    }
}

impl<F: Fn(&str) -> Option<u32>> PartitionCounts for F {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self(topic)
    }
}

/// What each member subscribes to: member id -> topics.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// What each member gets: member id -> its partitions by topic (topics and
/// partitions ascending; a member with nothing gets an empty list).
pub type Assignment = BTreeMap<String, Vec<TopicPartitions>>;

/// A node-computed assignment strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assignor {
    /// Kafka's `RangeAssignor`: per topic, contiguous ranges over the
    /// members subscribed to it, sorted by member id; the first
    /// `partitions % members` members get one more.
    Range,
    /// Kafka's `RoundRobinAssignor`: every (topic, partition) pair, sorted,
    /// dealt in turn to the members sorted by id, skipping members not
    /// subscribed to the pair's topic.
    RoundRobin,
}

impl Assignor {
    /// The assignor of a protocol name, if the node computes it.
    pub fn from_protocol(name: &str) -> Option<Self> {
        match name {
            RANGE => Some(Self::Range),
            ROUND_ROBIN => Some(Self::RoundRobin),
            _ => None,
        }
    }

    /// Its protocol name.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Range => RANGE,
            Self::RoundRobin => ROUND_ROBIN,
        }
    }

    /// Assigns the partitions of every subscribed topic with a known count
    /// to the members. Every member of `subscriptions` appears in the result.
    pub fn assign(self, subscriptions: &Subscriptions, counts: &dyn PartitionCounts) -> Assignment {
        match self {
            Self::Range => range(subscriptions, counts),
            Self::RoundRobin => round_robin(subscriptions, counts),
        }
    }
}

/// The partition count of `topic`, or `None` when unknown or over the limit.
fn known_partitions(counts: &dyn PartitionCounts, topic: &str) -> Option<u32> {
    counts
        .partitions(topic)
        .filter(|&count| count <= PARTITIONS_PER_TOPIC_MAX)
}

/// Every topic some member subscribes to, ascending.
fn subscribed_topics(subscriptions: &Subscriptions) -> BTreeSet<&str> {
    subscriptions
        .values()
        .flat_map(|topics| topics.iter().map(String::as_str))
        .collect()
}

/// Builds the result shape: members in order, topics ascending, partitions
/// ascending, empty topics left out.
fn collect(
    subscriptions: &Subscriptions,
    mut owned: BTreeMap<&str, BTreeMap<&str, Vec<u32>>>,
) -> Assignment {
    subscriptions
        .keys()
        .map(|member| {
            let topics = owned.remove(member.as_str()).unwrap_or_default();
            let list = topics
                .into_iter()
                .filter(|(_, partitions)| !partitions.is_empty())
                .map(|(topic, mut partitions)| {
                    partitions.sort_unstable();
                    TopicPartitions {
                        topic: topic.to_string(),
                        partitions,
                    }
                })
                .collect();
            (member.clone(), list)
        })
        .collect()
}

/// Kafka's `RangeAssignor`.
pub fn range(subscriptions: &Subscriptions, counts: &dyn PartitionCounts) -> Assignment {
    let mut owned: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    for topic in subscribed_topics(subscriptions) {
        let Some(partitions) = known_partitions(counts, topic) else {
            continue;
        };
        // Sorted by member id: `subscriptions` is a BTreeMap.
        let members: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member.as_str())
            .collect();
        // At least the member whose subscription named the topic.
        assert!(!members.is_empty(), "a subscribed topic has a subscriber");
        let member_count = u32::try_from(members.len()).unwrap_or(u32::MAX);
        let per_member = partitions / member_count;
        let extra = partitions % member_count;
        for (index, member) in (0u32..).zip(members) {
            let start = per_member * index + index.min(extra);
            let length = per_member + u32::from(index < extra);
            owned
                .entry(member)
                .or_default()
                .entry(topic)
                .or_default()
                .extend(start..start + length);
        }
    }
    collect(subscriptions, owned)
}

/// Kafka's `RoundRobinAssignor`.
pub fn round_robin(subscriptions: &Subscriptions, counts: &dyn PartitionCounts) -> Assignment {
    let mut owned: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    let members: Vec<(&str, &BTreeSet<String>)> = subscriptions
        .iter()
        .map(|(member, topics)| (member.as_str(), topics))
        .collect();
    // Index of the member the next partition is offered to first.
    let mut next = 0usize;
    for topic in subscribed_topics(subscriptions) {
        let Some(partitions) = known_partitions(counts, topic) else {
            continue;
        };
        for partition in 0..partitions {
            // Bounded: some member subscribes to `topic`, so at most one
            // full turn finds it.
            let offset = (0..members.len())
                .find(|offset| members[(next + offset) % members.len()].1.contains(topic))
                .expect("a subscribed topic has a subscriber");
            let chosen = (next + offset) % members.len();
            owned
                .entry(members[chosen].0)
                .or_default()
                .entry(topic)
                .or_default()
                .push(partition);
            next = (chosen + 1) % members.len();
        }
    }
    collect(subscriptions, owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subscriptions(entries: &[(&str, &[&str])]) -> Subscriptions {
        entries
            .iter()
            .map(|(member, topics)| {
                (
                    member.to_string(),
                    topics.iter().map(|topic| topic.to_string()).collect(),
                )
            })
            .collect()
    }

    fn counts(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
        entries
            .iter()
            .map(|(topic, count)| (topic.to_string(), *count))
            .collect()
    }

    fn tp(topic: &str, partitions: &[u32]) -> TopicPartitions {
        TopicPartitions {
            topic: topic.into(),
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn range_splits_seven_partitions_over_three_members_as_three_two_two() {
        let subs = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let result = range(&subs, &counts(&[("t", 7)]));
        assert_eq!(result["a"], vec![tp("t", &[0, 1, 2])]);
        assert_eq!(result["b"], vec![tp("t", &[3, 4])]);
        assert_eq!(result["c"], vec![tp("t", &[5, 6])]);
    }

    #[test]
    fn range_matches_the_kafka_javadoc_example() {
        // RangeAssignor javadoc: C0, C1 on t0, t1 with 3 partitions each.
        let subs = subscriptions(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let result = range(&subs, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(result["C0"], vec![tp("t0", &[0, 1]), tp("t1", &[0, 1])]);
        assert_eq!(result["C1"], vec![tp("t0", &[2]), tp("t1", &[2])]);
    }

    #[test]
    fn round_robin_matches_the_kafka_javadoc_examples() {
        let subs = subscriptions(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let result = round_robin(&subs, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(result["C0"], vec![tp("t0", &[0, 2]), tp("t1", &[1])]);
        assert_eq!(result["C1"], vec![tp("t0", &[1]), tp("t1", &[0, 2])]);

        // Unequal subscriptions: C0 {t0}, C1 {t0, t1}, C2 {t0, t1, t2}.
        let subs = subscriptions(&[
            ("C0", &["t0"]),
            ("C1", &["t0", "t1"]),
            ("C2", &["t0", "t1", "t2"]),
        ]);
        let result = round_robin(&subs, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        assert_eq!(result["C0"], vec![tp("t0", &[0])]);
        assert_eq!(result["C1"], vec![tp("t1", &[0])]);
        assert_eq!(result["C2"], vec![tp("t1", &[1]), tp("t2", &[0, 1, 2])]);
    }

    #[test]
    fn unknown_and_oversized_topics_are_not_assigned_and_idle_members_get_empty_lists() {
        let subs = subscriptions(&[
            ("a", &["known", "missing", "huge"]),
            ("b", &["known"]),
            ("c", &["known"]),
        ]);
        let table = counts(&[("known", 2), ("huge", PARTITIONS_PER_TOPIC_MAX + 1)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let result = assignor.assign(&subs, &table);
            assert_eq!(result.len(), 3);
            assert_eq!(result["a"], vec![tp("known", &[0])]);
            assert_eq!(result["b"], vec![tp("known", &[1])]);
            assert!(result["c"].is_empty());
        }
    }

    #[test]
    fn protocol_names_map_to_assignors_and_back() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            assert_eq!(Assignor::from_protocol(assignor.protocol()), Some(assignor));
        }
        assert_eq!(Assignor::from_protocol("cooperative-sticky"), None);
    }

    /// Checks that every partition of every subscribed, known topic is
    /// owned exactly once, by a subscriber; returns per-member, per-topic
    /// counts.
    fn check_cover(
        subs: &Subscriptions,
        table: &BTreeMap<String, u32>,
        result: &Assignment,
    ) -> BTreeMap<(String, String), usize> {
        let mut owners: BTreeMap<(String, u32), String> = BTreeMap::new();
        let mut sizes = BTreeMap::new();
        for (member, list) in result {
            for entry in list {
                assert!(
                    subs[member].contains(&entry.topic),
                    "{member} owns an unsubscribed topic"
                );
                *sizes
                    .entry((member.clone(), entry.topic.clone()))
                    .or_insert(0) += entry.partitions.len();
                for &partition in &entry.partitions {
                    let previous = owners.insert((entry.topic.clone(), partition), member.clone());
                    assert_eq!(previous, None, "{}-{partition} owned twice", entry.topic);
                }
            }
        }
        let expected: usize = subscribed_topics(subs)
            .into_iter()
            .filter_map(|topic| table.get(topic))
            .map(|&count| count as usize)
            .sum();
        assert_eq!(owners.len(), expected, "every partition is owned");
        sizes
    }

    fn arbitrary_group() -> impl Strategy<Value = (Subscriptions, BTreeMap<String, u32>)> {
        (1usize..12, 1usize..5).prop_flat_map(|(members, topics)| {
            let partitions = proptest::collection::vec(0u32..40, topics);
            let masks = proptest::collection::vec(1u32..(1 << topics), members);
            (partitions, masks).prop_map(move |(partitions, masks)| {
                let table: BTreeMap<String, u32> = partitions
                    .iter()
                    .enumerate()
                    .map(|(index, &count)| (format!("t{index}"), count))
                    .collect();
                let subs = masks
                    .iter()
                    .enumerate()
                    .map(|(index, mask)| {
                        let topics = (0..topics)
                            .filter(|bit| mask & (1 << bit) != 0)
                            .map(|bit| format!("t{bit}"))
                            .collect();
                        (format!("m-{index}"), topics)
                    })
                    .collect();
                (subs, table)
            })
        })
    }

    proptest! {
        #[test]
        fn both_assignors_cover_every_partition_once(group in arbitrary_group()) {
            let (subs, table) = group;
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let result = assignor.assign(&subs, &table);
                prop_assert_eq!(result.len(), subs.len());
                check_cover(&subs, &table, &result);
            }
        }

        #[test]
        fn range_is_balanced_within_each_topic(group in arbitrary_group()) {
            let (subs, table) = group;
            let sizes = check_cover(&subs, &table, &range(&subs, &table));
            for topic in table.keys() {
                let per_member: Vec<usize> = subs
                    .iter()
                    .filter(|(_, topics)| topics.contains(topic))
                    .map(|(member, _)| sizes.get(&(member.clone(), topic.clone())).copied().unwrap_or(0))
                    .collect();
                if let (Some(max), Some(min)) = (per_member.iter().max(), per_member.iter().min()) {
                    prop_assert!(max - min <= 1, "{topic}: {per_member:?}");
                }
            }
        }

        #[test]
        fn round_robin_is_balanced_overall_when_everyone_subscribes_alike(
            members in 1usize..15,
            partitions in proptest::collection::vec(0u32..50, 1..5),
        ) {
            let table: BTreeMap<String, u32> = partitions
                .iter()
                .enumerate()
                .map(|(index, &count)| (format!("t{index}"), count))
                .collect();
            let topics: BTreeSet<String> = table.keys().cloned().collect();
            let subs: Subscriptions = (0..members).map(|index| (format!("m-{index}"), topics.clone())).collect();
            let result = round_robin(&subs, &table);
            check_cover(&subs, &table, &result);
            let totals: Vec<usize> = result
                .values()
                .map(|list| list.iter().map(|entry| entry.partitions.len()).sum())
                .collect();
            let max = totals.iter().max().copied().unwrap_or(0);
            let min = totals.iter().min().copied().unwrap_or(0);
            prop_assert!(max - min <= 1, "{totals:?}");
        }
    }
}
