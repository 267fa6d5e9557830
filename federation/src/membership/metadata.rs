//! Member metadata: what a node says about itself beyond its identity
//! (load, topic heads), versioned so newer replaces older everywhere.
//!
//! A record is stamped `(incarnation, version)`: the node bumps `version` at
//! every change, and a restarted node starts over under a higher
//! incarnation, so its first record still wins against what the cluster
//! remembers of its previous life. Only the node itself writes its record,
//! so the stamp alone orders them.

use std::collections::BTreeMap;

use meshgate_storage::RegionId;
use serde::{Deserialize, Serialize};

use super::identity::{Incarnation, NodeId};

/// An origin stream's head in one partition of a topic, as seen by the node
/// that advertises it; mirroring measures lag against it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct TopicHead {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The region whose origin stream this is.
    pub origin: RegionId,
}

/// What a node publishes about itself. Its encoded size, with the record
/// around it, is bounded by `broadcast_item_bytes_max` (about 20 topic
/// heads with the default): [`super::Membership::set_metadata`] refuses
/// more.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct MemberMetadata {
    /// Free-form load figures by name, such as `cpu` or `connections`.
    pub load: BTreeMap<String, f64>,
    /// Head sequence (next origin seq to be assigned) per topic head.
    pub topic_heads: BTreeMap<TopicHead, u64>,
}

/// A node's metadata with its stamp, as it travels and is stored.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub(crate) struct MetadataRecord {
    pub(crate) node: NodeId,
    pub(crate) incarnation: Incarnation,
    pub(crate) version: u64,
    /// Set in the record a node publishes as it leaves gracefully, so the
    /// cluster can tell "left" from "failed".
    pub(crate) leaving: bool,
    pub(crate) metadata: MemberMetadata,
}

impl MetadataRecord {
    /// The order in which a node's records replace each other.
    pub(crate) fn stamp(&self) -> (Incarnation, u64) {
        (self.incarnation, self.version)
    }
}

/// What merging a record did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MetadataOutcome {
    /// Newer than what was held: stored.
    Applied,
    /// Not newer: ignored.
    Stale,
    /// A node not seen before while `members_max` nodes are held: ignored.
    Full,
}

/// The newest record per node.
#[derive(Debug)]
pub(crate) struct MetadataTable {
    records: BTreeMap<NodeId, MetadataRecord>,
    nodes_max: usize,
}

impl MetadataTable {
    pub(crate) fn new(nodes_max: usize) -> Self {
        assert!(nodes_max > 0, "members_max is validated to be positive");
        Self {
            records: BTreeMap::new(),
            nodes_max,
        }
    }

    pub(crate) fn merge(&mut self, record: MetadataRecord) -> MetadataOutcome {
        let full = self.records.len() >= self.nodes_max;
        match self.records.get_mut(&record.node) {
            Some(current) if record.stamp() > current.stamp() => {
                *current = record;
                MetadataOutcome::Applied
            }
            Some(_) => MetadataOutcome::Stale,
            None if full => MetadataOutcome::Full,
            None => {
                self.records.insert(record.node.clone(), record);
                MetadataOutcome::Applied
            }
        }
    }

    pub(crate) fn get(&self, node: &NodeId) -> Option<&MetadataRecord> {
        self.records.get(node)
    }

    /// Every record, by node id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &MetadataRecord> {
        self.records.values()
    }

    /// Forgets the nodes `keep` says no: used to drop records of nodes the
    /// membership no longer knows.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.records.retain(|node, _| keep(node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, incarnation: u64, version: u64) -> MetadataRecord {
        MetadataRecord {
            node: NodeId::parse(node).unwrap(),
            incarnation: Incarnation(incarnation),
            version,
            leaving: false,
            metadata: MemberMetadata::default(),
        }
    }

    #[test]
    fn newer_version_replaces_older_metadata() {
        let mut table = MetadataTable::new(4);
        assert_eq!(table.merge(record("a", 1, 1)), MetadataOutcome::Applied);
        assert_eq!(table.merge(record("a", 1, 2)), MetadataOutcome::Applied);
        assert_eq!(table.merge(record("a", 1, 1)), MetadataOutcome::Stale);
        assert_eq!(table.get(&NodeId::parse("a").unwrap()).unwrap().version, 2);
    }

    #[test]
    fn restarted_node_replaces_metadata_of_its_previous_life() {
        let mut table = MetadataTable::new(4);
        table.merge(record("a", 1, 40));
        assert_eq!(table.merge(record("a", 2, 1)), MetadataOutcome::Applied);
    }

    #[test]
    fn table_refuses_nodes_beyond_its_limit() {
        let mut table = MetadataTable::new(1);
        table.merge(record("a", 1, 1));
        assert_eq!(table.merge(record("b", 1, 1)), MetadataOutcome::Full);
    }
}
