//! Cluster-wide configuration entries and their last-writer-wins merge.
//!
//! # Semantics
//! The cluster configuration is a map from key (`mirror-rule/orders-all`)
//! to a value (opaque bytes; later issues put mirroring rules, dispatch
//! rules and topic definitions here). Every write, including a delete, is a
//! [`ConfigChange`] stamped with `(version, author)`. For each key a node
//! keeps the change with the greatest stamp, comparing `version` first,
//! then `author` (node ids compare as byte strings), then the value itself
//! (absent < present, then bytewise) so even a buggy duplicate stamp has
//! one winner. Merging is commutative, associative and idempotent, so every
//! node that has received the same set of changes, in any order and any
//! number of times, holds the same map.
//!
//! A local write takes `version = the key's current version + 1`, so it
//! wins against everything this node has seen for that key. Two nodes that
//! write the same key concurrently may pick the same version; the higher
//! node id wins and the other write is lost. That is the price of not
//! coordinating: use it for rules an operator sets, not for counters.
//!
//! Deletes are tombstones (`value: None`) and are kept, so a delayed older
//! write cannot bring the entry back. Tombstones and entries count against
//! `config_entries_max`; at the limit changes to new keys are refused and
//! counted (every node has the same limit, so an operator who hits it sees
//! it everywhere).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::identity::NodeId;

/// Longest configuration key, in bytes.
pub const CONFIG_KEY_BYTES_MAX: usize = 255;

/// One write to the cluster configuration.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ConfigChange {
    /// The entry, such as `mirror-rule/orders-all`: 1 to 255 bytes of
    /// printable ASCII without spaces.
    pub key: String,
    /// Per-key version; the greater `(version, author)` wins.
    pub version: u64,
    /// The node that wrote it.
    pub author: NodeId,
    /// The new value, or `None` when the entry was deleted.
    pub value: Option<Vec<u8>>,
}

impl ConfigChange {
    /// Whether this change wins against `other` for the same key (see the
    /// module documentation).
    pub fn wins_over(&self, other: &ConfigChange) -> bool {
        (self.version, &self.author, &self.value) > (other.version, &other.author, &other.value)
    }
}

/// Why a configuration key was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ConfigKeyError {
    /// The key is empty.
    #[error("configuration key is empty")]
    Empty,
    /// The key is longer than [`CONFIG_KEY_BYTES_MAX`].
    #[error("configuration key is {bytes} bytes; the limit is {CONFIG_KEY_BYTES_MAX}")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// The key holds a space, a control character or non-ASCII text.
    #[error("configuration key holds a character other than printable ASCII")]
    BadCharacter,
}

/// Checks a configuration key against the rule in [`ConfigChange::key`].
pub fn validate_config_key(key: &str) -> Result<(), ConfigKeyError> {
    if key.is_empty() {
        return Err(ConfigKeyError::Empty);
    }
    if key.len() > CONFIG_KEY_BYTES_MAX {
        return Err(ConfigKeyError::TooLong { bytes: key.len() });
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ConfigKeyError::BadCharacter);
    }
    Ok(())
}

/// The wire form of a change: the value travels as a MessagePack binary
/// rather than an array of integers.
#[derive(Serialize, Deserialize)]
pub(crate) struct ConfigChangeWire {
    key: String,
    version: u64,
    author: NodeId,
    value: Option<Bytes>,
}

impl From<&ConfigChange> for ConfigChangeWire {
    fn from(change: &ConfigChange) -> Self {
        Self {
            key: change.key.clone(),
            version: change.version,
            author: change.author.clone(),
            value: change.value.as_deref().map(Bytes::copy_from_slice),
        }
    }
}

impl TryFrom<ConfigChangeWire> for ConfigChange {
    type Error = ConfigKeyError;

    fn try_from(wire: ConfigChangeWire) -> Result<Self, Self::Error> {
        validate_config_key(&wire.key)?;
        Ok(Self {
            key: wire.key,
            version: wire.version,
            author: wire.author,
            value: wire.value.map(|value| value.to_vec()),
        })
    }
}

/// What merging one change did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MergeOutcome {
    /// The change won and replaced (or created) the entry.
    Applied,
    /// The entry already holds this change or a winning one; nothing changed.
    Stale,
    /// The key is new and the table is at `config_entries_max`; nothing
    /// changed.
    Full,
}

/// The merged configuration: the winning change per key, tombstones
/// included.
#[derive(Debug)]
pub(crate) struct ConfigTable {
    entries: BTreeMap<String, ConfigChange>,
    entries_max: usize,
}

impl ConfigTable {
    pub(crate) fn new(entries_max: usize) -> Self {
        assert!(
            entries_max > 0,
            "config_entries_max is validated to be positive"
        );
        Self {
            entries: BTreeMap::new(),
            entries_max,
        }
    }

    /// Merges `change` by last-writer-wins.
    pub(crate) fn merge(&mut self, change: ConfigChange) -> MergeOutcome {
        let full = self.entries.len() >= self.entries_max;
        match self.entries.get_mut(&change.key) {
            Some(current) if change.wins_over(current) => {
                *current = change;
                MergeOutcome::Applied
            }
            Some(_) => MergeOutcome::Stale,
            None if full => MergeOutcome::Full,
            None => {
                self.entries.insert(change.key.clone(), change);
                MergeOutcome::Applied
            }
        }
    }

    /// The version a local write of `key` takes.
    pub(crate) fn next_version(&self, key: &str) -> u64 {
        self.entries
            .get(key)
            .map_or(1, |current| current.version.saturating_add(1))
    }

    /// The winning change for `key`, tombstone included.
    pub(crate) fn get(&self, key: &str) -> Option<&ConfigChange> {
        self.entries.get(key)
    }

    /// Every winning change, tombstones included, by key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ConfigChange> {
        self.entries.values()
    }

    /// Entries that hold a value, by key.
    pub(crate) fn live(&self) -> impl Iterator<Item = &ConfigChange> {
        self.entries
            .values()
            .filter(|change| change.value.is_some())
    }

    /// Entries plus tombstones.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn change(key: &str, version: u64, author: &str, value: Option<&str>) -> ConfigChange {
        ConfigChange {
            key: key.to_string(),
            version,
            author: NodeId::parse(author).unwrap(),
            value: value.map(|value| value.as_bytes().to_vec()),
        }
    }

    fn live(table: &ConfigTable) -> Vec<(String, Vec<u8>)> {
        table
            .live()
            .map(|change| (change.key.clone(), change.value.clone().unwrap()))
            .collect()
    }

    #[test]
    fn newer_version_replaces_older_whatever_the_author() {
        let mut table = ConfigTable::new(10);
        assert_eq!(
            table.merge(change("k", 1, "z", Some("old"))),
            MergeOutcome::Applied
        );
        assert_eq!(
            table.merge(change("k", 2, "a", Some("new"))),
            MergeOutcome::Applied
        );
        assert_eq!(
            table.merge(change("k", 1, "z", Some("old"))),
            MergeOutcome::Stale
        );
        assert_eq!(live(&table), vec![("k".into(), b"new".to_vec())]);
    }

    #[test]
    fn concurrent_writers_of_one_version_resolve_to_the_higher_node_id() {
        let from_a = change("k", 5, "node-a", Some("a"));
        let from_b = change("k", 5, "node-b", Some("b"));
        let mut first = ConfigTable::new(10);
        first.merge(from_a.clone());
        first.merge(from_b.clone());
        let mut second = ConfigTable::new(10);
        second.merge(from_b);
        second.merge(from_a);
        assert_eq!(live(&first), vec![("k".into(), b"b".to_vec())]);
        assert_eq!(live(&first), live(&second));
    }

    #[test]
    fn delete_is_a_tombstone_that_an_older_write_cannot_undo() {
        let mut table = ConfigTable::new(10);
        table.merge(change("k", 1, "a", Some("v1")));
        assert_eq!(
            table.merge(change("k", 2, "a", None)),
            MergeOutcome::Applied
        );
        assert_eq!(
            table.merge(change("k", 1, "b", Some("late"))),
            MergeOutcome::Stale
        );
        assert!(live(&table).is_empty());
        assert_eq!(table.len(), 1, "the tombstone is kept");
        assert_eq!(table.next_version("k"), 3);
    }

    #[test]
    fn write_newer_than_a_delete_brings_the_entry_back() {
        let mut table = ConfigTable::new(10);
        table.merge(change("k", 2, "a", None));
        table.merge(change("k", 3, "b", Some("again")));
        assert_eq!(live(&table), vec![("k".into(), b"again".to_vec())]);
    }

    #[test]
    fn full_table_refuses_new_keys_but_accepts_updates() {
        let mut table = ConfigTable::new(1);
        table.merge(change("a", 1, "n", Some("1")));
        assert_eq!(
            table.merge(change("b", 1, "n", Some("1"))),
            MergeOutcome::Full
        );
        assert_eq!(
            table.merge(change("a", 2, "n", Some("2"))),
            MergeOutcome::Applied
        );
    }

    #[test]
    fn keys_with_spaces_or_control_characters_are_refused() {
        assert_eq!(validate_config_key("mirror-rule/orders-all"), Ok(()));
        assert_eq!(validate_config_key(""), Err(ConfigKeyError::Empty));
        assert_eq!(
            validate_config_key("a b"),
            Err(ConfigKeyError::BadCharacter)
        );
        assert_eq!(
            validate_config_key("a\nb"),
            Err(ConfigKeyError::BadCharacter)
        );
        assert_eq!(
            validate_config_key(&"k".repeat(256)),
            Err(ConfigKeyError::TooLong { bytes: 256 })
        );
    }

    fn arbitrary_change() -> impl Strategy<Value = ConfigChange> {
        (
            prop::sample::select(vec!["a", "b", "c"]),
            0u64..4,
            prop::sample::select(vec!["n1", "n2", "n3"]),
            prop::option::of(prop::sample::select(vec!["x", "y"])),
        )
            .prop_map(|(key, version, author, value)| change(key, version, author, value))
    }

    proptest! {
        #[test]
        fn replicas_converge_whatever_the_order_and_duplication(
            changes in prop::collection::vec(arbitrary_change(), 0..30),
            seed in any::<u64>(),
        ) {
            let mut in_order = ConfigTable::new(100);
            for change in &changes {
                in_order.merge(change.clone());
            }
            // A deterministic shuffle with duplicates: every change at least
            // once, some twice.
            let mut shuffled: Vec<ConfigChange> = changes.iter().chain(changes.iter().step_by(2)).cloned().collect();
            let mut state = seed;
            for index in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(index, (state >> 33) as usize % (index + 1));
            }
            let mut reordered = ConfigTable::new(100);
            for change in shuffled {
                reordered.merge(change);
            }
            let first: Vec<_> = in_order.iter().cloned().collect();
            let second: Vec<_> = reordered.iter().cloned().collect();
            prop_assert_eq!(first, second);
        }
    }
}
