//! Fetch (versions 4 to 12) and ListOffsets (1 to 7).
//!
//! A fetch reads whole stored batches from the one holding the fetch
//! offset (at least one batch per partition while the request's byte
//! budget lasts) and converts each into a Kafka batch at the same offsets.
//! When nothing is there yet it long-polls: it waits up to `max_wait_ms`
//! (capped by `limits.long_poll_ms_max`) for any asked partition to grow.
//! There are no transactions, so the last stable offset is the high
//! watermark and the aborted list is empty; there are no fetch sessions,
//! so every response says session 0 (clients then send full fetches).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::*;
use meshgate_protocol::{ListOffsets, OffsetSpec, Reply, Request as NodeRequest};
use meshgate_storage::{LocalOffset, SharedLog, Timestamp};

use super::KafkaState;
use super::connection::Connection;
use super::dispatch::Request;
use super::errors::{Context, from_wire};
use super::failover::{ClientKey, FilterKey};
use super::records::{Skip, SkipNothing, encode_batch};

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// One asked partition.
struct Wanted {
    topic: usize,
    partition: i32,
    offset: i64,
    bytes_max: usize,
}

fn partition_error(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
}

/// Reads one partition, within `budget` bytes (0: report offsets only).
fn read_partition(
    state: &KafkaState,
    client: &ClientKey,
    topic_name: &str,
    wanted: &Wanted,
    budget: usize,
) -> (PartitionData, usize) {
    let node = &state.node;
    let topic = match node.topics().get(topic_name) {
        Ok(topic) => topic,
        Err(error) => {
            return (
                partition_error(wanted.partition, from_wire(&error, Context::Data)),
                0,
            );
        }
    };
    let Ok(partition) = u32::try_from(wanted.partition) else {
        return (
            partition_error(wanted.partition, ResponseError::UnknownTopicOrPartition),
            0,
        );
    };
    let log = match topic.partition(partition) {
        Ok(log) => log,
        Err(error) => {
            return (
                partition_error(wanted.partition, from_wire(&error, Context::Data)),
                0,
            );
        }
    };
    let (start, visible) = {
        let log = log.lock();
        (log.start_offset().0 as i64, log.visible_offset().0 as i64)
    };
    let base = PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(visible)
        .with_last_stable_offset(visible)
        .with_log_start_offset(start)
        .with_aborted_transactions(Some(Vec::new()));
    if wanted.offset < start || wanted.offset > visible {
        return (
            base.with_error_code(ResponseError::OffsetOutOfRange.code()),
            0,
        );
    }
    if wanted.offset == visible || budget == 0 {
        return (base.with_records(Some(Default::default())), 0);
    }
    let offset = wanted.offset as u64;
    let chunk = match log.read(LocalOffset(offset), budget.min(wanted.bytes_max).max(1)) {
        Ok(chunk) => chunk,
        Err(error) => {
            tracing::warn!(target: "meshgate::kafka", topic = topic_name, partition, %error, "read failed");
            return (
                base.with_error_code(ResponseError::KafkaStorageError.code()),
                0,
            );
        }
    };
    let key = FilterKey {
        client: client.clone(),
        topic: topic_name.to_string(),
        partition,
    };
    let filter =
        state
            .filters
            .lock()
            .filter_for(node.clock().now_ms(), &key, topic.incarnation().0, offset);
    let skip: &dyn Skip = match &filter {
        Some(filter) => &**filter,
        None => &SkipNothing,
    };
    let mut out = BytesMut::with_capacity(chunk.bytes.len() + 64);
    let converted = chunk
        .batches(meshgate_storage::batch::BATCH_BYTES_LIMIT)
        .and_then(|batches| {
            batches
                .iter()
                .try_for_each(|batch| encode_batch(&mut out, batch, skip))
        });
    if let Err(error) = converted {
        tracing::warn!(target: "meshgate::kafka", topic = topic_name, partition, %error, "stored batch unreadable");
        return (
            base.with_error_code(ResponseError::KafkaStorageError.code()),
            0,
        );
    }
    let bytes = out.len();
    (base.with_records(Some(out.freeze())), bytes)
}

/// The logs of the asked partitions that exist, to wait on.
fn logs_of(
    state: &KafkaState,
    topics: &[String],
    wanted: &[Wanted],
) -> Vec<(SharedLog, LocalOffset)> {
    wanted
        .iter()
        .filter_map(|w| {
            let topic = state.node.topics().get(&topics[w.topic]).ok()?;
            let log = topic
                .partition(u32::try_from(w.partition).ok()?)
                .ok()?
                .clone();
            Some((log, LocalOffset(u64::try_from(w.offset).ok()?)))
        })
        .collect()
}

/// Waits until one of `logs` shows something at or after its offset, or
/// `wait` passes.
async fn wait_any(logs: Vec<(SharedLog, LocalOffset)>, wait: Duration) {
    if logs.is_empty() {
        tokio::time::sleep(wait).await;
        return;
    }
    let mut waits = tokio::task::JoinSet::new();
    for (log, offset) in logs {
        waits.spawn(async move { log.wait_visible(offset, wait).await });
    }
    let _ = waits.join_next().await;
    // Dropping the set aborts the other waits.
}

/// Answers Fetch.
pub async fn fetch(
    state: &Arc<KafkaState>,
    connection: &Connection,
    request: &Request,
    body: FetchRequest,
) -> FetchResponse {
    if request.version >= 7 && (body.session_id != 0 || body.session_epoch > 0) {
        let error = if body.session_id != 0 {
            ResponseError::FetchSessionIdNotFound
        } else {
            ResponseError::InvalidFetchSessionEpoch
        };
        return FetchResponse::default().with_error_code(error.code());
    }
    let limits = &state.node.config().limits;
    let client = ClientKey {
        ip: connection.peer.ip(),
        client_id: connection.client_id.clone(),
    };
    let topics: Vec<String> = body.topics.iter().map(|t| t.topic.0.to_string()).collect();
    let mut wanted = Vec::new();
    for (index, topic) in body.topics.iter().enumerate() {
        for partition in &topic.partitions {
            wanted.push(Wanted {
                topic: index,
                partition: partition.partition,
                offset: partition.fetch_offset,
                bytes_max: partition.partition_max_bytes.max(1) as usize,
            });
        }
    }
    let bytes_max = (body.max_bytes.max(1) as u32).min(limits.fetch_bytes_max) as usize;
    let min_bytes = body.min_bytes.max(1) as usize;
    let wait = Duration::from_millis(
        u64::from(body.max_wait_ms.max(0) as u32).min(u64::from(limits.long_poll_ms_max)),
    );
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut budget = bytes_max;
        let mut errors = false;
        let mut read = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let (data, bytes) = read_partition(state, &client, &topics[w.topic], w, budget);
            budget = budget.saturating_sub(bytes);
            errors |= data.error_code != 0;
            read.push(data);
        }
        let total = bytes_max - budget;
        let now = tokio::time::Instant::now();
        if total >= min_bytes || errors || now >= deadline || wanted.is_empty() {
            return response(&body, read);
        }
        wait_any(logs_of(state, &topics, &wanted), deadline - now).await;
        if tokio::time::Instant::now() >= deadline {
            // One last read below, then answer whatever it finds.
            let mut budget = bytes_max;
            let read = wanted
                .iter()
                .map(|w| {
                    let (data, bytes) = read_partition(state, &client, &topics[w.topic], w, budget);
                    budget = budget.saturating_sub(bytes);
                    data
                })
                .collect();
            return response(&body, read);
        }
    }
}

fn response(body: &FetchRequest, read: Vec<PartitionData>) -> FetchResponse {
    let mut read = read.into_iter();
    let responses = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .filter_map(|_| read.next())
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

/// Answers ListOffsets: earliest (-2), latest (-1), the record with the
/// largest timestamp (-3, v7: the newest record, since timestamps are
/// append times), or the first record at or after a timestamp.
pub async fn list_offsets(
    state: &Arc<KafkaState>,
    request: &Request,
    body: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let mut response = ListOffsetsPartitionResponse::default()
                .with_partition_index(partition.partition_index);
            match list_one(state, &name, partition.partition_index, partition.timestamp).await {
                Ok((offset, timestamp)) => {
                    response.offset = offset;
                    response.timestamp = timestamp;
                    if request.version >= 4 {
                        response.leader_epoch = 0;
                    }
                }
                Err(error) => {
                    response.error_code = error.code();
                    response.offset = -1;
                    response.timestamp = -1;
                }
            }
            partitions.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn list_one(
    state: &KafkaState,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), ResponseError> {
    let partition = u32::try_from(partition).map_err(|_| ResponseError::UnknownTopicOrPartition)?;
    let at = match timestamp {
        LATEST | MAX_TIMESTAMP => OffsetSpec::Latest,
        EARLIEST => OffsetSpec::Earliest,
        millis if millis >= 0 => OffsetSpec::Timestamp(millis as u64),
        _ => return Err(ResponseError::InvalidRequest),
    };
    let reply = state
        .node
        .handle(NodeRequest::ListOffsets(ListOffsets {
            topic: topic.to_string(),
            partition,
            at,
        }))
        .await
        .map_err(|error| from_wire(&error, Context::Data))?;
    let Reply::Offset(offset) = reply else {
        return Err(ResponseError::UnknownServerError);
    };
    match (timestamp, offset) {
        (LATEST | EARLIEST, Some(offset)) => Ok((offset as i64, -1)),
        (MAX_TIMESTAMP, Some(0)) | (_, None) => Ok((-1, -1)),
        (MAX_TIMESTAMP, Some(end)) => record_timestamp(state, topic, partition, end - 1),
        (_, Some(offset)) => record_timestamp(state, topic, partition, offset),
    }
}

/// The offset and timestamp (ms) of the record at `offset`.
fn record_timestamp(
    state: &KafkaState,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<(i64, i64), ResponseError> {
    let topic = state
        .node
        .topics()
        .get(topic)
        .map_err(|e| from_wire(&e, Context::Data))?;
    let log = topic
        .partition(partition)
        .map_err(|e| from_wire(&e, Context::Data))?;
    let chunk = log
        .read(LocalOffset(offset), 1)
        .map_err(|_| ResponseError::KafkaStorageError)?;
    let records = chunk
        .records_from(LocalOffset(offset))
        .map_err(|_| ResponseError::KafkaStorageError)?;
    let timestamp = records
        .first()
        .map_or(Timestamp(0), |record| record.record.timestamp);
    Ok((offset as i64, timestamp.millis() as i64))
}
