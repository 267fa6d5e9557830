//! Exact failover for Kafka consumers: the fetch filter.
//!
//! A group's committed position is a version vector `V` (see
//! `crate::offsets`). In this region's log, the group resumes at `R`, the
//! smallest offset below which everything was consumed. Logs interleave
//! origin streams differently in each region, so some records at or after
//! `R` may be ones the group consumed elsewhere: those whose origin seq is
//! below `V[origin]`. A native client skips them itself; a Kafka client
//! cannot, so the fetch path leaves them out (Kafka batches may skip
//! offsets, as a compacted topic's do). They can only lie before `U`, the
//! offset after the last record `V` counts, so the filter covers `[R, U)`
//! and is dropped once the consumer fetches past `U`. When `U <= R`
//! (always, without failover) there is no filter at all.
//!
//! # Tying fetches to the group
//! Kafka fetches do not name a group, and clients fetch on another
//! connection than the one they talk to the coordinator on. So a filter is
//! registered when OffsetFetch answers a group's resume offset, under the
//! client's identity: its IP address and `client.id`, which both of a
//! consumer's connections share. A fetch from that identity for that
//! partition, starting in `[R, U)`, gets the filter. Two groups that
//! register conflicting filters for one identity and partition make it
//! ambiguous: no filter is applied (redelivery rather than loss) and a
//! warning is logged. Give consumers distinct `client.id`s (the Java client
//! does by default) for exact failover.
//!
//! Sans-IO: the caller passes the time; the table is bounded by count and
//! by idle time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use meshgate_storage::{StoredRecord, VersionVector};

use super::records::Skip;

/// Who fetches: a client process, as far as the node can tell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    /// The client's IP address.
    pub ip: IpAddr,
    /// Its `client.id`.
    pub client_id: String,
}

/// One partition as one client fetches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilterKey {
    /// The client.
    pub client: ClientKey,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// Records a group consumed elsewhere, in the offsets where they can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedElsewhere {
    /// The group whose position this is.
    pub group: String,
    /// The topic incarnation the position belongs to.
    pub incarnation: u64,
    /// The committed position.
    pub vector: VersionVector,
    /// The resume offset `R`.
    pub from: u64,
    /// `U`: no record at or after it was consumed.
    pub until: u64,
}

impl Skip for ConsumedElsewhere {
    fn skips(&self, record: &StoredRecord) -> bool {
        (self.from..self.until).contains(&record.offset.0)
            && record.origin.stream.incarnation.0 == self.incarnation
            && record.origin.seq.0 < self.vector.get(&record.origin.stream)
    }
}

#[derive(Debug)]
struct Entry {
    filter: Arc<ConsumedElsewhere>,
    ambiguous: bool,
    used_ms: u64,
}

/// The filters of a node, by client and partition.
#[derive(Debug)]
pub struct Filters {
    entries: BTreeMap<FilterKey, Entry>,
    filters_max: usize,
    idle_ms: u64,
}

impl Filters {
    /// An empty table holding at most `filters_max` filters, each
    /// forgotten after `idle_ms` without use.
    pub fn new(filters_max: usize, idle_ms: u64) -> Self {
        assert!(filters_max > 0, "validated by the configuration");
        Self {
            entries: BTreeMap::new(),
            filters_max,
            idle_ms,
        }
    }

    /// How many filters are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A group's resume position was answered to `key`'s client. Registers
    /// the filter when some records at or after the resume offset were
    /// consumed, and drops a stale one of the same group otherwise.
    pub fn handle_resume(&mut self, now_ms: u64, key: FilterKey, filter: ConsumedElsewhere) {
        self.expire(now_ms);
        if filter.until <= filter.from {
            if self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.filter.group == filter.group)
            {
                self.entries.remove(&key);
            }
            return;
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.filter.group != filter.group {
                tracing::warn!(target: "meshgate::kafka", client = %key.client.client_id, ip = %key.client.ip, topic = %key.topic, partition = key.partition, groups = ?(&entry.filter.group, &filter.group), "two groups resume the same partition for one client id; fetches are not filtered (give consumers distinct client ids)");
                entry.ambiguous = true;
            } else {
                entry.filter = Arc::new(filter);
            }
            entry.used_ms = now_ms;
            return;
        }
        if self.entries.len() >= self.filters_max {
            self.evict_oldest();
        }
        self.entries.insert(
            key,
            Entry {
                filter: Arc::new(filter),
                ambiguous: false,
                used_ms: now_ms,
            },
        );
    }

    /// The filter for a fetch by `key`'s client from `offset` of a topic
    /// of incarnation `incarnation`, if any applies. A fetch past the
    /// filter's range, before it (the consumer seeked back) or of another
    /// incarnation drops it.
    pub fn filter_for(
        &mut self,
        now_ms: u64,
        key: &FilterKey,
        incarnation: u64,
        offset: u64,
    ) -> Option<Arc<ConsumedElsewhere>> {
        let entry = self.entries.get_mut(key)?;
        let filter = &entry.filter;
        if filter.incarnation != incarnation || !(filter.from..filter.until).contains(&offset) {
            self.entries.remove(key);
            return None;
        }
        entry.used_ms = now_ms;
        (!entry.ambiguous).then(|| entry.filter.clone())
    }

    fn expire(&mut self, now_ms: u64) {
        let idle_ms = self.idle_ms;
        self.entries
            .retain(|_, entry| now_ms.saturating_sub(entry.used_ms) < idle_ms);
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.used_ms)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use meshgate_storage::{
        Incarnation, LocalOffset, OriginCoord, OriginSeq, OriginStream, Record, RegionId,
    };

    use super::*;

    fn origin(region: &str) -> OriginStream {
        OriginStream {
            region: RegionId::parse(region).expect("valid"),
            incarnation: Incarnation(1),
        }
    }

    fn record(offset: u64, region: &str, seq: u64) -> StoredRecord {
        StoredRecord {
            offset: LocalOffset(offset),
            origin: OriginCoord {
                stream: origin(region),
                seq: OriginSeq(seq),
            },
            record: Record::from_value("x"),
        }
    }

    fn key(client: &str) -> FilterKey {
        FilterKey {
            client: ClientKey {
                ip: IpAddr::from([127, 0, 0, 1]),
                client_id: client.into(),
            },
            topic: "t".into(),
            partition: 0,
        }
    }

    /// Region b's log: a0 b0 a1 b1 a2. The group consumed a0 a1 a2 and b0
    /// in region a: V = {a: 3, b: 1}; b resumes at offset 3 (b1), and a2 at
    /// offset 4 was consumed: it must be left out.
    fn elsewhere(group: &str) -> ConsumedElsewhere {
        let mut vector = VersionVector::new();
        vector.set(origin("a"), 3);
        vector.set(origin("b"), 1);
        ConsumedElsewhere {
            group: group.into(),
            incarnation: 1,
            vector,
            from: 3,
            until: 5,
        }
    }

    #[test]
    fn records_consumed_in_another_region_are_skipped_only_in_their_range() {
        let filter = elsewhere("g");
        assert!(!filter.skips(&record(3, "b", 1)), "b1 was not consumed");
        assert!(filter.skips(&record(4, "a", 2)), "a2 was");
        assert!(
            !filter.skips(&record(5, "a", 3)),
            "beyond U nothing is skipped"
        );
        assert!(
            !filter.skips(&record(2, "a", 1)),
            "before R is the client's business"
        );
    }

    #[test]
    fn a_filter_applies_to_its_client_and_ends_past_its_range() {
        let mut filters = Filters::new(10, 60_000);
        filters.handle_resume(0, key("c1"), elsewhere("g"));
        assert!(filters.filter_for(1, &key("c2"), 1, 3).is_none());
        assert!(filters.filter_for(1, &key("c1"), 1, 3).is_some());
        assert!(filters.filter_for(2, &key("c1"), 1, 4).is_some());
        assert!(filters.filter_for(3, &key("c1"), 1, 5).is_none());
        assert!(filters.is_empty(), "dropped once fetched past");
    }

    #[test]
    fn conflicting_groups_for_one_client_turn_filtering_off() {
        let mut filters = Filters::new(10, 60_000);
        filters.handle_resume(0, key("c"), elsewhere("g1"));
        filters.handle_resume(0, key("c"), elsewhere("g2"));
        assert!(filters.filter_for(1, &key("c"), 1, 3).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_filters() {
        let mut filters = Filters::new(2, 1_000);
        filters.handle_resume(0, key("a"), elsewhere("g"));
        filters.handle_resume(1, key("b"), elsewhere("g"));
        filters.handle_resume(2, key("c"), elsewhere("g"));
        assert_eq!(filters.len(), 2);
        assert!(
            filters.filter_for(3, &key("a"), 1, 3).is_none(),
            "the oldest went"
        );
        filters.handle_resume(5_000, key("d"), elsewhere("g"));
        assert_eq!(filters.len(), 1, "idle ones expired");
    }

    #[test]
    fn a_resume_without_consumed_records_ahead_registers_nothing() {
        let mut filters = Filters::new(10, 60_000);
        let mut nothing = elsewhere("g");
        nothing.until = nothing.from;
        filters.handle_resume(0, key("c"), nothing);
        assert!(filters.is_empty());
    }
}
