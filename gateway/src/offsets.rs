//! Committed consumer-group positions, stored as version vectors
//! (DESIGN.md: "A local offset X commits as the vector of the prefix [0, X)
//! of that region's log"). Commits merge by pointwise max, so a position
//! never moves backwards and commits made in two regions never conflict.
//! Reading a position back maps the vector to this node's log with
//! `resume_offset`: the smallest offset below which everything is consumed.
//!
//! Key: `offsets/<group>/<topic>/<partition>`; value: [`CommittedRecord`].

use bytes::Bytes;
use meshgate_protocol::{
    CommittedOffset, ErrorCode, PartitionOffset, TopicPartitions, VectorEntry, WireError,
    vector_entries, vector_from_entries,
};
use meshgate_storage::{LocalOffset, Resume, VersionVector};
use serde::{Deserialize, Serialize};

use crate::errors::storage_error;
use crate::meta::MetaStore;
use crate::topics::Topics;

const PREFIX: &str = "offsets/";

/// A committed position as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedRecord {
    /// The topic incarnation it refers to; positions of an older
    /// incarnation are ignored.
    pub incarnation: u64,
    /// The position: origin -> records consumed.
    pub vector: Vec<VectorEntry>,
    /// When it was last committed, ms since the epoch.
    pub committed_ms: u64,
}

fn key(group: &str, topic: &str, partition: u32) -> String {
    format!("{PREFIX}{group}/{topic}/{partition}")
}

fn decode(bytes: &[u8]) -> Option<CommittedRecord> {
    rmp_serde::from_slice(bytes).ok()
}

/// The stored position of one partition, if any (of the current incarnation).
pub fn committed_vector(
    meta: &MetaStore,
    group: &str,
    topic: &str,
    partition: u32,
    incarnation: u64,
) -> Option<VersionVector> {
    let record = decode(&meta.get(&key(group, topic, partition))?)?;
    if record.incarnation != incarnation {
        return None;
    }
    vector_from_entries(&record.vector).ok()
}

/// Commits offsets of `group` as prefix vectors merged into the stored
/// ones, as one atomic change; returns once durable.
pub async fn commit(
    meta: &MetaStore,
    topics: &Topics,
    group: &str,
    offsets: &[PartitionOffset],
    now_ms: u64,
) -> Result<(), WireError> {
    let mut changes = Vec::with_capacity(offsets.len());
    for position in offsets {
        let topic = topics.get(&position.topic)?;
        let log = topic.partition(position.partition)?;
        let incarnation = topic.incarnation().0;
        let vector = {
            let log = log.lock();
            let high_watermark = log.visible_offset();
            if position.offset > high_watermark.0 {
                return Err(WireError::new(
                    ErrorCode::OffsetOutOfRange,
                    format!(
                        "cannot commit offset {} of {}/{}: the high watermark is {}",
                        position.offset, position.topic, position.partition, high_watermark.0
                    ),
                ));
            }
            // A position below the retained start means everything before
            // the start was consumed or lost; the start's vector says so.
            let offset = LocalOffset(position.offset).max(log.start_offset());
            log.prefix_vector(offset).map_err(storage_error)?
        };
        let mut merged = committed_vector(
            meta,
            group,
            &position.topic,
            position.partition,
            incarnation,
        )
        .unwrap_or_default();
        merged.merge(&vector);
        let record = CommittedRecord {
            incarnation,
            vector: vector_entries(&merged),
            committed_ms: now_ms,
        };
        let encoded =
            rmp_serde::to_vec_named(&record).map_err(|e| WireError::new(ErrorCode::Internal, e))?;
        changes.push((
            key(group, &position.topic, position.partition),
            Some(Bytes::from(encoded)),
        ));
    }
    meta.apply(changes).await.map_err(storage_error)
}

/// Merges a position committed elsewhere (forwarded by mirroring) into the
/// stored one of `group`; returns once durable. Positions of another
/// incarnation are ignored.
pub async fn merge_forwarded(
    meta: &MetaStore,
    group: &str,
    topic: &str,
    partition: u32,
    incarnation: u64,
    vector: &VersionVector,
    now_ms: u64,
) -> Result<(), WireError> {
    let mut merged =
        committed_vector(meta, group, topic, partition, incarnation).unwrap_or_default();
    if vector.dominated_by(&merged) {
        return Ok(());
    }
    merged.merge(vector);
    let record = CommittedRecord {
        incarnation,
        vector: vector_entries(&merged),
        committed_ms: now_ms,
    };
    let encoded =
        rmp_serde::to_vec_named(&record).map_err(|e| WireError::new(ErrorCode::Internal, e))?;
    meta.put(key(group, topic, partition), Bytes::from(encoded))
        .await
        .map_err(storage_error)
}

/// The committed positions of `group`: the asked partitions, or all.
pub fn fetch(
    meta: &MetaStore,
    topics: &Topics,
    group: &str,
    partitions: Option<&[TopicPartitions]>,
) -> Result<Vec<CommittedOffset>, WireError> {
    let wanted: Vec<(String, u32)> = match partitions {
        Some(list) => list
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
            .collect(),
        None => meta
            .with_prefix(&format!("{PREFIX}{group}/"))
            .into_iter()
            .filter_map(|(key, _)| {
                let rest = key.strip_prefix(&format!("{PREFIX}{group}/"))?;
                let (topic, partition) = rest.rsplit_once('/')?;
                Some((topic.to_string(), partition.parse().ok()?))
            })
            .collect(),
    };
    let mut result = Vec::with_capacity(wanted.len());
    for (topic_name, partition) in wanted {
        let topic = match topics.get(&topic_name) {
            Ok(topic) => topic,
            // Asked for explicitly: say the topic is unknown. Listing all:
            // skip positions of topics deleted meanwhile.
            Err(error) if partitions.is_some() => return Err(error),
            Err(_) => continue,
        };
        let log = topic.partition(partition)?;
        let vector = committed_vector(meta, group, &topic_name, partition, topic.incarnation().0);
        let (offset, lag) = match &vector {
            None => (None, None),
            Some(vector) => {
                let log = log.lock();
                match log.resume_offset(vector).map_err(storage_error)? {
                    Resume::At { offset, .. } => {
                        let lag = log.visible_offset().0.saturating_sub(offset.0);
                        (Some(offset.0), Some(lag))
                    }
                    Resume::Behind { .. } => (None, None),
                }
            }
        };
        result.push(CommittedOffset {
            topic: topic_name,
            partition,
            offset,
            vector: vector.as_ref().map(vector_entries).unwrap_or_default(),
            lag,
        });
    }
    Ok(result)
}

/// Every stored key of committed positions in `topic`, of any group.
pub fn keys_of_topic(meta: &MetaStore, topic: &str) -> Vec<String> {
    meta.with_prefix(PREFIX)
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| {
            key.strip_prefix(PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(_, rest)| rest.rsplit_once('/'))
                .is_some_and(|(t, _)| t == topic)
        })
        .collect()
}

/// Names of groups with committed positions.
pub fn groups_with_commits(meta: &MetaStore) -> Vec<String> {
    let mut groups: Vec<String> = meta
        .with_prefix(PREFIX)
        .into_iter()
        .filter_map(|(key, _)| Some(key.strip_prefix(PREFIX)?.split_once('/')?.0.to_string()))
        .collect();
    groups.dedup();
    groups
}
