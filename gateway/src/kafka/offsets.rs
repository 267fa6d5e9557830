//! OffsetCommit and OffsetFetch on the node's committed positions.
//!
//! A commit of offset X stores the prefix vector of X of this region's log
//! (merged into the group's vector), exactly as a native commit does; the
//! commit's metadata string is not kept. OffsetFetch answers the resume
//! offset of the stored vector in this region's log and registers the
//! failover filter when records after it were consumed elsewhere (see
//! `failover.rs`). A position ahead of what this region holds (its mirror
//! is behind) is answered with a retriable error, so the client waits for
//! the mirror instead of resetting its position: UNSTABLE_OFFSET_COMMIT
//! from v7, COORDINATOR_LOAD_IN_PROGRESS before.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use meshgate_protocol::{
    CommitOffsets, CommittedOffset, FetchOffsets, PartitionOffset, Reply, Request as NodeRequest,
    TopicPartitions, vector_from_entries,
};
use meshgate_storage::{SeqLocation, VersionVector};

use super::KafkaState;
use super::connection::Connection;
use super::dispatch::{Request, text};
use super::errors::{Context, from_wire};
use super::failover::{ClientKey, ConsumedElsewhere, FilterKey};

/// Answers OffsetCommit: partitions that exist and hold the offset are
/// committed together (one atomic change); the others get their error.
pub async fn commit(
    state: &Arc<KafkaState>,
    _request: &Request,
    body: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let node = &state.node;
    let group = body.group_id.0.to_string();
    let member =
        (body.generation_id_or_member_epoch >= 0 && !body.member_id.is_empty()).then(|| {
            (
                body.generation_id_or_member_epoch as u32,
                body.member_id.to_string(),
            )
        });
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(body.topics.len());
    let mut valid = Vec::new();
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let checked = check_commit(
                state,
                &name,
                partition.partition_index,
                partition.committed_offset,
            );
            if checked.is_ok() {
                valid.push(PartitionOffset {
                    topic: name.clone(),
                    partition: partition.partition_index as u32,
                    offset: partition.committed_offset as u64,
                });
            }
            topic_codes.push(checked.err().map_or(0, |error| error.code()));
        }
        codes.push(topic_codes);
    }
    let group_error = if valid.is_empty() {
        0
    } else {
        let commit = CommitOffsets {
            group,
            member,
            offsets: valid,
        };
        match node.handle(NodeRequest::CommitOffsets(commit)).await {
            Ok(_) => 0,
            Err(error) => from_wire(&error, Context::Group).code(),
        }
    };
    let topics = body
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(codes)
                .map(|(partition, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(if code == 0 { group_error } else { code })
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn check_commit(
    state: &KafkaState,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), ResponseError> {
    let topic = state
        .node
        .topics()
        .get(topic)
        .map_err(|error| from_wire(&error, Context::Data))?;
    let partition = u32::try_from(partition).map_err(|_| ResponseError::UnknownTopicOrPartition)?;
    let log = topic
        .partition(partition)
        .map_err(|error| from_wire(&error, Context::Data))?;
    let offset = u64::try_from(offset).map_err(|_| ResponseError::InvalidCommitOffsetSize)?;
    if offset > log.visible_offset().0 {
        return Err(ResponseError::OffsetOutOfRange);
    }
    Ok(())
}

/// One partition's answer: the committed offset (-1 for none) and error.
struct Answer {
    offset: i64,
    error: i16,
}

/// Answers OffsetFetch for one group or (v8+) several.
pub async fn fetch(
    state: &Arc<KafkaState>,
    connection: &Connection,
    request: &Request,
    body: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let client = ClientKey {
        ip: connection.peer.ip(),
        client_id: connection.client_id.clone(),
    };
    let behind = if request.version >= 7 {
        ResponseError::UnstableOffsetCommit
    } else {
        ResponseError::CoordinatorLoadInProgress
    };
    if request.version >= 8 {
        let mut groups = Vec::with_capacity(body.groups.len());
        for group in body.groups {
            let asked = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let answers = fetch_group(state, &client, group.group_id.as_str(), asked, behind).await;
            let topics = answers
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(text(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, answer)| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(answer.offset)
                                        .with_metadata(Some(Default::default()))
                                        .with_error_code(answer.error)
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let answers = fetch_group(state, &client, body.group_id.as_str(), asked, behind).await;
    let topics = answers
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, answer)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(answer.offset)
                                .with_metadata(Some(Default::default()))
                                .with_error_code(answer.error)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// The answers for one group: the asked partitions, or every committed one.
async fn fetch_group(
    state: &KafkaState,
    client: &ClientKey,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
    behind: ResponseError,
) -> Vec<(String, Vec<(i32, Answer)>)> {
    let node = &state.node;
    let Some(asked) = asked else {
        // Every committed partition of the group.
        let request = FetchOffsets {
            group: group.to_string(),
            partitions: None,
        };
        let Ok(Reply::CommittedOffsets(committed)) =
            node.handle(NodeRequest::FetchOffsets(request)).await
        else {
            return Vec::new();
        };
        let mut by_topic: Vec<(String, Vec<(i32, Answer)>)> = Vec::new();
        for offset in committed {
            let answer = answer(state, client, group, &offset, behind);
            match by_topic
                .iter_mut()
                .find(|(topic, _)| *topic == offset.topic)
            {
                Some((_, partitions)) => partitions.push((offset.partition as i32, answer)),
                None => by_topic.push((
                    offset.topic.clone(),
                    vec![(offset.partition as i32, answer)],
                )),
            }
        }
        return by_topic;
    };
    let mut result = Vec::with_capacity(asked.len());
    for (topic, partitions) in asked {
        let valid: Vec<u32> = partitions
            .iter()
            .filter_map(|p| u32::try_from(*p).ok())
            .collect();
        let request = FetchOffsets {
            group: group.to_string(),
            partitions: Some(vec![TopicPartitions {
                topic: topic.clone(),
                partitions: valid,
            }]),
        };
        let answers = match node.handle(NodeRequest::FetchOffsets(request)).await {
            Ok(Reply::CommittedOffsets(committed)) => partitions
                .iter()
                .map(|index| {
                    let answer = committed
                        .iter()
                        .find(|c| c.partition as i32 == *index)
                        .map(|c| answer(state, client, group, c, behind))
                        .unwrap_or(Answer {
                            offset: -1,
                            error: ResponseError::UnknownTopicOrPartition.code(),
                        });
                    (*index, answer)
                })
                .collect(),
            Ok(_) | Err(_) => {
                // The topic or a partition is unknown: Kafka answers "no
                // committed offset" for each.
                partitions
                    .iter()
                    .map(|index| {
                        (
                            *index,
                            Answer {
                                offset: -1,
                                error: 0,
                            },
                        )
                    })
                    .collect()
            }
        };
        result.push((topic, answers));
    }
    result
}

fn answer(
    state: &KafkaState,
    client: &ClientKey,
    group: &str,
    committed: &CommittedOffset,
    behind: ResponseError,
) -> Answer {
    match committed.offset {
        Some(offset) => {
            register_filter(state, client, group, committed, offset);
            Answer {
                offset: offset as i64,
                error: 0,
            }
        }
        None if committed.vector.is_empty() => Answer {
            offset: -1,
            error: 0,
        },
        None => Answer {
            offset: -1,
            error: behind.code(),
        },
    }
}

/// Registers the failover filter of `group` in `committed`'s partition for
/// `client` (or drops a stale one): see `failover.rs`.
fn register_filter(
    state: &KafkaState,
    client: &ClientKey,
    group: &str,
    committed: &CommittedOffset,
    resume: u64,
) {
    let Ok(vector) = vector_from_entries(&committed.vector) else {
        return;
    };
    let Ok(topic) = state.node.topics().get(&committed.topic) else {
        return;
    };
    let Ok(log) = topic.partition(committed.partition) else {
        return;
    };
    let until = consumed_until(&log.lock(), &vector);
    let key = FilterKey {
        client: client.clone(),
        topic: committed.topic.clone(),
        partition: committed.partition,
    };
    let filter = ConsumedElsewhere {
        group: group.to_string(),
        incarnation: topic.incarnation().0,
        vector,
        from: resume,
        until,
    };
    let now_ms = state.node.clock().now_ms();
    state.filters.lock().handle_resume(now_ms, key, filter);
}

/// The offset after the last record of this log that `vector` counts as
/// consumed: no record at or after it was consumed.
pub fn consumed_until(log: &meshgate_storage::Log, vector: &VersionVector) -> u64 {
    let mut until = 0;
    for (origin, consumed) in vector.iter() {
        if consumed == 0 {
            continue;
        }
        if let Ok(SeqLocation::At(offset)) = log.locate(origin, consumed - 1) {
            until = until.max(offset.0 + 1);
        }
    }
    until
}
