//! Custom broadcasts: member metadata and configuration changes riding on
//! foca's gossip, and the state they merge into.
//!
//! foca owns its [`BroadcastHandler`] and offers no way back to it, so the
//! handler and [`super::Membership`] share the state through a mutex. Only
//! the thread driving one `Membership` ever takes it, so it is never
//! contended; it exists to keep `Membership` `Send`.

use std::collections::VecDeque;
use std::sync::Arc;

use foca::{BroadcastHandler, Invalidates};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::cluster_config::{ConfigChange, ConfigChangeWire, ConfigTable, MergeOutcome};
use super::codec::WireError;
use super::identity::{Incarnation, MemberId, NodeId};
use super::metadata::{MetadataOutcome, MetadataRecord, MetadataTable};

/// One custom broadcast item, MessagePack-encoded.
#[derive(Serialize, Deserialize)]
pub(crate) enum BroadcastItem {
    /// A node's metadata.
    Metadata(MetadataRecord),
    /// A configuration change.
    Config(ConfigChangeWire),
}

impl BroadcastItem {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers, maps and bytes into
        // a Vec cannot fail.
        rmp_serde::to_vec(self).expect("broadcast items always serialize")
    }

    pub(crate) fn decode(bytes: &[u8], bytes_max: usize) -> Result<Self, WireError> {
        if bytes.len() > bytes_max {
            return Err(WireError::ItemTooLarge {
                bytes: bytes.len(),
                bytes_max,
            });
        }
        rmp_serde::from_slice(bytes).map_err(WireError::Item)
    }
}

/// What a queued broadcast is about, so foca can drop an older queued item
/// as soon as a newer one about the same thing arrives.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum BroadcastKey {
    /// A node's metadata at a stamp.
    Metadata {
        node: NodeId,
        stamp: (Incarnation, u64),
    },
    /// A configuration key at a stamp.
    Config { key: String, stamp: (u64, NodeId) },
}

impl Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                BroadcastKey::Metadata { node, stamp },
                BroadcastKey::Metadata {
                    node: other_node,
                    stamp: other_stamp,
                },
            ) => node == other_node && stamp >= other_stamp,
            (
                BroadcastKey::Config { key, stamp },
                BroadcastKey::Config {
                    key: other_key,
                    stamp: other_stamp,
                },
            ) => key == other_key && stamp >= other_stamp,
            _ => false,
        }
    }
}

/// Something that changed in the shared state, for the core to turn into
/// events.
#[derive(Clone, Debug)]
pub(crate) enum StateChange {
    /// A configuration entry changed.
    Config(ConfigChange),
    /// A node's metadata changed.
    Metadata(NodeId),
}

/// Most state changes queued between two drains. The core drains after
/// every input, and one input carries at most one packet of items, so this
/// is never reached in practice; beyond it changes are still applied but
/// their events are dropped and counted.
const CHANGES_QUEUED_MAX: usize = 4096;

/// The replicated state: configuration and metadata tables.
#[derive(Debug)]
pub(crate) struct ClusterState {
    pub(crate) config: ConfigTable,
    pub(crate) metadata: MetadataTable,
    changes: VecDeque<StateChange>,
    /// Changes refused because a table was full.
    pub(crate) refused_full: u64,
    /// Events lost because `changes` was full.
    pub(crate) changes_dropped: u64,
}

impl ClusterState {
    pub(crate) fn new(config_entries_max: usize, members_max: usize) -> Self {
        Self {
            config: ConfigTable::new(config_entries_max),
            metadata: MetadataTable::new(members_max),
            changes: VecDeque::new(),
            refused_full: 0,
            changes_dropped: 0,
        }
    }

    /// Merges an item; returns its key when it was news (and so should be
    /// gossiped on).
    pub(crate) fn merge(&mut self, item: BroadcastItem) -> Result<Option<BroadcastKey>, WireError> {
        match item {
            BroadcastItem::Metadata(record) => {
                let key = BroadcastKey::Metadata {
                    node: record.node.clone(),
                    stamp: record.stamp(),
                };
                let node = record.node.clone();
                match self.metadata.merge(record) {
                    MetadataOutcome::Applied => {
                        self.push_change(StateChange::Metadata(node));
                        Ok(Some(key))
                    }
                    MetadataOutcome::Stale => Ok(None),
                    MetadataOutcome::Full => {
                        self.refused_full = self.refused_full.saturating_add(1);
                        Ok(None)
                    }
                }
            }
            BroadcastItem::Config(wire) => {
                let change = ConfigChange::try_from(wire).map_err(WireError::ConfigKey)?;
                let key = BroadcastKey::Config {
                    key: change.key.clone(),
                    stamp: (change.version, change.author.clone()),
                };
                match self.config.merge(change.clone()) {
                    MergeOutcome::Applied => {
                        self.push_change(StateChange::Config(change));
                        Ok(Some(key))
                    }
                    MergeOutcome::Stale => Ok(None),
                    MergeOutcome::Full => {
                        self.refused_full = self.refused_full.saturating_add(1);
                        Ok(None)
                    }
                }
            }
        }
    }

    fn push_change(&mut self, change: StateChange) {
        if self.changes.len() >= CHANGES_QUEUED_MAX {
            self.changes_dropped = self.changes_dropped.saturating_add(1);
            return;
        }
        self.changes.push_back(change);
    }

    pub(crate) fn pop_change(&mut self) -> Option<StateChange> {
        self.changes.pop_front()
    }

    /// Every record as an encoded broadcast item, in a fixed order
    /// (configuration by key, then metadata by node): what anti-entropy
    /// digests and sends.
    pub(crate) fn encoded_items(&self) -> Vec<Vec<u8>> {
        let config = self
            .config
            .iter()
            .map(|change| BroadcastItem::Config(change.into()).encode());
        let metadata = self
            .metadata
            .iter()
            .map(|record| BroadcastItem::Metadata(record.clone()).encode());
        config.chain(metadata).collect()
    }
}

/// The state shared by the core and the broadcast handler.
pub(crate) type SharedState = Arc<Mutex<ClusterState>>;

/// foca's handler for our custom broadcasts.
pub(crate) struct GossipHandler {
    state: SharedState,
    item_bytes_max: usize,
}

impl GossipHandler {
    pub(crate) fn new(state: SharedState, item_bytes_max: usize) -> Self {
        Self {
            state,
            item_bytes_max,
        }
    }
}

impl BroadcastHandler<MemberId> for GossipHandler {
    type Key = BroadcastKey;
    type Error = WireError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&MemberId>,
    ) -> Result<Option<Self::Key>, Self::Error> {
        let item = BroadcastItem::decode(data, self.item_bytes_max)?;
        self.state.lock().merge(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::metadata::MemberMetadata;

    fn metadata(version: u64) -> BroadcastItem {
        BroadcastItem::Metadata(MetadataRecord {
            node: NodeId::parse("a").unwrap(),
            incarnation: Incarnation(1),
            version,
            leaving: false,
            metadata: MemberMetadata::default(),
        })
    }

    #[test]
    fn handler_gossips_news_once_and_ignores_repeats() {
        let state = Arc::new(Mutex::new(ClusterState::new(8, 8)));
        let mut handler = GossipHandler::new(state.clone(), 1024);
        let bytes = metadata(1).encode();
        assert!(handler.receive_item(&bytes, None).unwrap().is_some());
        assert!(handler.receive_item(&bytes, None).unwrap().is_none());
        assert!(matches!(
            state.lock().pop_change(),
            Some(StateChange::Metadata(_))
        ));
        assert!(state.lock().pop_change().is_none());
    }

    #[test]
    fn newer_broadcast_invalidates_the_queued_older_one() {
        let older = BroadcastKey::Metadata {
            node: NodeId::parse("a").unwrap(),
            stamp: (Incarnation(1), 1),
        };
        let newer = BroadcastKey::Metadata {
            node: NodeId::parse("a").unwrap(),
            stamp: (Incarnation(1), 2),
        };
        assert!(newer.invalidates(&older));
        assert!(!older.invalidates(&newer));
    }

    #[test]
    fn oversized_item_is_refused_before_decoding() {
        let state = Arc::new(Mutex::new(ClusterState::new(8, 8)));
        let mut handler = GossipHandler::new(state, 4);
        assert!(matches!(
            handler.receive_item(&metadata(1).encode(), None),
            Err(WireError::ItemTooLarge { .. })
        ));
    }
}
