//! Produce (versions 0 to 11) and InitProducerId.
//!
//! Each partition's records go through the node's producers, so limits,
//! backpressure, durability and the idempotence window are the native
//! ones. An idempotent Kafka producer is keyed by its (producer id, epoch)
//! and its batches by their record sequence numbers: a resent batch gets
//! the offsets of its first append, a gap gets OUT_OF_ORDER_SEQUENCE_NUMBER.
//! Partitions of one request are appended concurrently. Acks 0 gets no
//! response (as in Kafka); acks 1 and -1 are answered once the records are
//! durable per the topic's policy. Transactions are not supported.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use meshgate_protocol::{Acks, Produce, ProduceRecord};

use super::dispatch::{Outcome, Request, respond, text};
use super::errors::{Context, from_records, from_wire};
use super::records::{DecodeLimits, decode_batches};
use super::topics::fnv1a;
use super::{KafkaState, legacy};
use crate::produce::SequenceRun;

/// Where one partition's records landed, or why they did not.
#[derive(Debug, Clone)]
struct PartitionOutcome {
    error: Option<(ResponseError, String)>,
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

impl PartitionOutcome {
    fn failed(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error: Some((error, message.into())),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// The records of one partition, decoded.
struct PartitionRecords {
    topic: String,
    partition: i32,
    records: Result<(Vec<ProduceRecord>, Option<SequenceRun>), (ResponseError, String)>,
}

fn acks_of(acks: i16) -> Option<Acks> {
    match acks {
        0 => Some(Acks::None),
        1 | -1 => Some(Acks::Local),
        _ => None,
    }
}

/// The idempotence-window key of a Kafka producer id and epoch.
fn producer_key(producer_id: i64, epoch: i16) -> u64 {
    let mut bytes = b"kafka".to_vec();
    bytes.extend_from_slice(&producer_id.to_be_bytes());
    bytes.extend_from_slice(&epoch.to_be_bytes());
    fnv1a(&bytes)
}

fn decode_partition(
    state: &KafkaState,
    version: i16,
    records: Option<&Bytes>,
) -> Result<(Vec<ProduceRecord>, Option<SequenceRun>), (ResponseError, String)> {
    let refused = |error: super::records::RecordsError| (from_records(&error), error.to_string());
    let data = records.map(|b| &b[..]).unwrap_or_default();
    let limits = DecodeLimits {
        decompressed_bytes_max: state.config.decompressed_bytes_max as usize,
        zstd_allowed: version >= 7,
    };
    if version < 3 {
        let records =
            legacy::decode_message_set(data, limits.decompressed_bytes_max).map_err(refused)?;
        return Ok((records, None));
    }
    let mut batches = decode_batches(data, limits).map_err(refused)?;
    // Kafka takes exactly one batch per partition from Produce v3 on.
    if batches.len() != 1 {
        return Err((
            ResponseError::InvalidRecord,
            format!("{} record batches; exactly one is expected", batches.len()),
        ));
    }
    let batch = batches.remove(0);
    let run = match batch.producer_id {
        None => None,
        Some(_) if batch.base_sequence < 0 => {
            return Err((
                ResponseError::InvalidRecord,
                "idempotent batch without a sequence".into(),
            ));
        }
        Some(producer_id) => Some(SequenceRun {
            producer: producer_key(producer_id, batch.producer_epoch),
            first: batch.base_sequence as u64,
            count: batch.records.len() as u64,
        }),
    };
    Ok((batch.records, run))
}

async fn append(state: Arc<KafkaState>, acks: Acks, decoded: PartitionRecords) -> PartitionOutcome {
    let (records, run) = match decoded.records {
        Ok(decoded) => decoded,
        Err((error, message)) => return PartitionOutcome::failed(error, message),
    };
    let Ok(partition) = u32::try_from(decoded.partition) else {
        return PartitionOutcome::failed(
            ResponseError::UnknownTopicOrPartition,
            "negative partition",
        );
    };
    let node = &state.node;
    let produce = Produce {
        topic: decoded.topic.clone(),
        partition,
        records,
        acks,
        producer: None,
    };
    match node.produce_run(produce, run).await {
        Ok(produced) => {
            let log_start_offset = node
                .topics()
                .get(&decoded.topic)
                .ok()
                .and_then(|topic| {
                    topic
                        .partition(partition)
                        .ok()
                        .map(|log| log.lock().start_offset().0 as i64)
                })
                .unwrap_or(-1);
            PartitionOutcome {
                error: None,
                base_offset: produced.ok.base_offset as i64,
                log_append_time_ms: node.clock().now_ms() as i64,
                log_start_offset,
            }
        }
        Err(error) => PartitionOutcome::failed(from_wire(&error, Context::Data), error.message),
    }
}

/// Appends every partition concurrently; outcomes in request order.
async fn append_all(
    state: &Arc<KafkaState>,
    acks: Acks,
    partitions: Vec<PartitionRecords>,
) -> Vec<PartitionOutcome> {
    let count = partitions.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, decoded) in partitions.into_iter().enumerate() {
        let state = state.clone();
        tasks.spawn(async move { (index, append(state, acks, decoded).await) });
    }
    let mut outcomes =
        vec![PartitionOutcome::failed(ResponseError::UnknownServerError, "not run"); count];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, outcome)) => outcomes[index] = outcome,
            Err(error) => {
                tracing::error!(target: "meshgate::kafka", %error, "a produce task failed")
            }
        }
    }
    outcomes
}

/// Answers Produce v3 and later.
pub async fn produce(
    state: &Arc<KafkaState>,
    request: &Request,
    body: ProduceRequest,
) -> anyhow::Result<Outcome> {
    let acks = acks_of(body.acks);
    let mut decoded = Vec::new();
    let mut shape = Vec::with_capacity(body.topic_data.len());
    for topic in &body.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in &topic.partition_data {
            partitions.push(partition.index);
            let records = if body.transactional_id.is_some() {
                Err((
                    ResponseError::UnsupportedForMessageFormat,
                    "transactions are not supported".into(),
                ))
            } else if acks.is_none() {
                Err((
                    ResponseError::InvalidRequiredAcks,
                    format!("acks {} is not 0, 1 or -1", body.acks),
                ))
            } else {
                decode_partition(state, request.version, partition.records.as_ref())
            };
            decoded.push(PartitionRecords {
                topic: topic.name.0.to_string(),
                partition: partition.index,
                records,
            });
        }
        shape.push((topic.name.clone(), partitions));
    }
    let outcomes = append_all(state, acks.unwrap_or(Acks::Local), decoded).await;
    if acks == Some(Acks::None) {
        return Ok(Outcome::Silent);
    }
    let mut outcomes = outcomes.into_iter();
    let responses = shape
        .into_iter()
        .map(|(name, partitions)| {
            let partition_responses = partitions
                .into_iter()
                .map(|index| {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        PartitionOutcome::failed(ResponseError::UnknownServerError, "")
                    });
                    let mut response = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_base_offset(outcome.base_offset)
                        .with_log_append_time_ms(outcome.log_append_time_ms)
                        .with_log_start_offset(outcome.log_start_offset);
                    if let Some((error, message)) = outcome.error {
                        response.error_code = error.code();
                        if request.version >= 8 {
                            response.error_message = Some(text(message));
                        }
                    }
                    response
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    respond(
        request,
        &ProduceResponse::default().with_responses(responses),
    )
}

/// Answers Produce v0 to v2 (message sets).
pub async fn legacy(
    state: &Arc<KafkaState>,
    request: &Request,
    body: &Bytes,
) -> anyhow::Result<Outcome> {
    let decoded_request = match legacy::decode_produce(body) {
        Ok(decoded) => decoded,
        Err(error) => anyhow::bail!("{error}"),
    };
    let acks = acks_of(decoded_request.acks);
    let mut decoded = Vec::new();
    let mut shape = Vec::new();
    for topic in &decoded_request.topics {
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            partitions.push(partition.index);
            let records = match acks {
                None => Err((
                    ResponseError::InvalidRequiredAcks,
                    "acks must be 0, 1 or -1".into(),
                )),
                Some(_) => decode_partition(state, request.version, Some(&partition.records)),
            };
            decoded.push(PartitionRecords {
                topic: topic.name.clone(),
                partition: partition.index,
                records,
            });
        }
        shape.push((topic.name.clone(), partitions));
    }
    let outcomes = append_all(state, acks.unwrap_or(Acks::Local), decoded).await;
    if acks == Some(Acks::None) {
        return Ok(Outcome::Silent);
    }
    let mut outcomes = outcomes.into_iter();
    let topics: Vec<(String, Vec<legacy::LegacyPartitionResponse>)> = shape
        .into_iter()
        .map(|(name, partitions)| {
            let responses = partitions
                .into_iter()
                .map(|index| {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        PartitionOutcome::failed(ResponseError::UnknownServerError, "")
                    });
                    legacy::LegacyPartitionResponse {
                        index,
                        error_code: outcome.error.map_or(0, |(error, _)| error.code()),
                        base_offset: outcome.base_offset,
                        log_append_time_ms: outcome.log_append_time_ms,
                    }
                })
                .collect();
            (name, responses)
        })
        .collect();
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(request.correlation_id);
    legacy::encode_produce_response(request.version, &topics, &mut out);
    let length = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(Outcome::Respond(out.freeze()))
}

/// Answers InitProducerId: a new producer id, or the next epoch of the
/// one the client names (v3+). Transactional ids are refused.
pub fn init_producer_id(
    state: &Arc<KafkaState>,
    request: &Request,
    body: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if body.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::UnsupportedForMessageFormat.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let (producer_id, epoch) = if request.version >= 3
        && body.producer_id.0 >= 0
        && body.producer_epoch >= 0
        && body.producer_epoch < i16::MAX - 1
    {
        (body.producer_id.0, body.producer_epoch + 1)
    } else {
        (state.allocate_producer_id(), 0)
    };
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_keys_differ_by_epoch() {
        assert_ne!(producer_key(7, 0), producer_key(7, 1));
        assert_ne!(producer_key(7, 0), producer_key(8, 0));
        assert_eq!(producer_key(7, 0), producer_key(7, 0));
    }
}
