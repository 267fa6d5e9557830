//! Metadata, CreateTopics, DeleteTopics and DescribeConfigs.
//!
//! Metadata creates a topic it is asked about when the node's
//! `topic_defaults.auto_create` is on and the client allows it (Kafka's
//! `auto.create.topics.enable` and `allow.auto.create.topics`).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use meshgate_protocol::{CreateTopic, Reply, Request as NodeRequest, TopicSettings, WireError};

use super::KafkaState;
use super::connection::Connection;
use super::dispatch::{Request, text};
use super::errors::{Context, code, from_wire};
use crate::topics::Topic;

/// Topics one CreateTopics or DeleteTopics request may name.
const TOPICS_PER_REQUEST_MAX: usize = 1_000;

/// FNV-1a, 64 bits: a small, stable hash for ids derived from names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The Kafka topic id of a topic: a UUID (version 8, RFC 9562) made of
/// the incarnation and a hash of the name. Incarnations are the same in
/// every region that mirrors a topic, so the id is too; a topic deleted
/// and re-created gets a new one.
pub fn topic_id(name: &str, incarnation: u64) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&incarnation.to_be_bytes());
    bytes[8..].copy_from_slice(&fnv1a(name.as_bytes()).to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn describe_topic(state: &KafkaState, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let broker = BrokerId(state.broker_id);
    let partitions = (0..topic.partition_count())
        .map(|partition| {
            let error = topic
                .partition(partition)
                .err()
                .map(|error| from_wire(&error, Context::Data));
            MetadataResponsePartition::default()
                .with_error_code(code(error))
                .with_partition_index(partition as i32)
                .with_leader_id(broker)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![broker])
                .with_isr_nodes(vec![broker])
        })
        .collect();
    let mut described = MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(topic.name()))))
        .with_partitions(partitions);
    if version >= 10 {
        described.topic_id = topic_id(topic.name(), topic.incarnation().0);
    }
    described
}

fn topic_error(name: Option<&str>, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|name| TopicName(text(name))))
}

/// Answers Metadata: this node as the only broker, and the topics asked
/// for (all when the list is null), creating unknown ones when allowed.
pub async fn metadata(
    state: &Arc<KafkaState>,
    connection: &Connection,
    request: &Request,
    body: MetadataRequest,
) -> MetadataResponse {
    let node = &state.node;
    let topics = node.topics();
    let described = match body.topics {
        None => topics
            .list()
            .iter()
            .map(|topic| describe_topic(state, topic, request.version))
            .collect(),
        Some(asked) => {
            let auto_create = node.config().topic_defaults.auto_create
                && (request.version < 4 || body.allow_auto_topic_creation);
            let mut described = Vec::with_capacity(asked.len());
            for wanted in asked {
                let name = match &wanted.name {
                    Some(name) => Some(name.0.to_string()),
                    None => topics
                        .list()
                        .into_iter()
                        .find(|topic| {
                            topic_id(topic.name(), topic.incarnation().0) == wanted.topic_id
                        })
                        .map(|topic| topic.name().to_string()),
                };
                let Some(name) = name else {
                    described.push(topic_error(None, ResponseError::UnknownTopicId));
                    continue;
                };
                described
                    .push(describe_or_create(state, &name, auto_create, request.version).await);
            }
            described
        }
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(state.broker_id))
        .with_host(text(state.advertised_host(connection)))
        .with_port(i32::from(connection.local.port()));
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(text(state.cluster_id.clone())))
        .with_controller_id(BrokerId(state.broker_id))
        .with_topics(described)
}

async fn describe_or_create(
    state: &KafkaState,
    name: &str,
    auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let node = &state.node;
    if let Ok(topic) = node.topics().get(name) {
        return describe_topic(state, &topic, version);
    }
    if !auto_create {
        return topic_error(Some(name), ResponseError::UnknownTopicOrPartition);
    }
    let created = node
        .handle(NodeRequest::CreateTopic(CreateTopic {
            name: name.to_string(),
            settings: TopicSettings::default(),
        }))
        .await;
    match created {
        // Created by a racing request meanwhile: fine too.
        Ok(_)
        | Err(WireError {
            code: meshgate_protocol::ErrorCode::TopicExists,
            ..
        }) => match node.topics().get(name) {
            Ok(topic) => describe_topic(state, &topic, version),
            Err(_) => topic_error(Some(name), ResponseError::LeaderNotAvailable),
        },
        Err(error) => {
            tracing::debug!(target: "meshgate::kafka", topic = name, %error, "auto-create failed");
            topic_error(Some(name), from_wire(&error, Context::Topic))
        }
    }
}

/// Topic configurations clients may set: how each maps to settings.
fn apply_config(
    settings: &mut TopicSettings,
    name: &str,
    value: Option<&str>,
) -> Result<(), String> {
    let number = |value: Option<&str>| {
        value
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| format!("{name} needs a number"))
    };
    match name {
        "retention.ms" => {
            let ms = number(value)?;
            settings.retention_ms = (ms >= 0).then_some(ms as u64);
        }
        "retention.bytes" => {
            let bytes = number(value)?;
            settings.retention_bytes = (bytes >= 0).then_some(bytes as u64);
        }
        "segment.bytes" => {
            settings.segment_bytes = Some(number(value)?.max(0) as u64);
        }
        // Accepted because they describe what the node does anyway.
        "cleanup.policy" if value == Some("delete") => {}
        "message.timestamp.type" if value == Some("LogAppendTime") => {}
        "compression.type" if value == Some("producer") => {}
        // Replication is mirroring here; these have no meaning on one node.
        "min.insync.replicas" | "unclean.leader.election.enable" => {}
        other => return Err(format!("configuration {other}={value:?} is not supported")),
    }
    Ok(())
}

/// Answers CreateTopics: each topic through the node (mirroring checks
/// included); replica assignments are refused, replication factors
/// accepted and reported as 1.
pub async fn create(
    state: &Arc<KafkaState>,
    request: &Request,
    body: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(body.topics.len());
    for (index, topic) in body.topics.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if index >= TOPICS_PER_REQUEST_MAX {
            Err((
                ResponseError::PolicyViolation,
                format!("at most {TOPICS_PER_REQUEST_MAX} topics per request"),
            ))
        } else {
            create_one(state, &name, topic, body.validate_only).await
        };
        match outcome {
            Ok((partitions, incarnation)) => {
                if request.version >= 5 {
                    result.num_partitions = partitions as i32;
                    result.replication_factor = 1;
                }
                if request.version >= 7 {
                    result.topic_id = topic_id(&name, incarnation);
                }
            }
            Err((error, message)) => {
                result.error_code = error.code();
                if request.version >= 1 {
                    result.error_message = Some(text(message));
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    state: &KafkaState,
    name: &str,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(u32, u64), (ResponseError, String)> {
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignments are not supported".into(),
        ));
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "replication factor must be positive or -1".into(),
        ));
    }
    let mut settings = TopicSettings::default();
    if topic.num_partitions > 0 {
        settings.partitions = topic.num_partitions as u32;
    } else if topic.num_partitions != -1 {
        return Err((
            ResponseError::InvalidPartitions,
            "partitions must be positive or -1".into(),
        ));
    }
    for config in &topic.configs {
        apply_config(&mut settings, config.name.as_str(), config.value.as_deref())
            .map_err(|message| (ResponseError::InvalidConfig, message))?;
    }
    let node = &state.node;
    crate::topics::check_topic_name(name)
        .map_err(|e| (ResponseError::InvalidTopicException, e.message))?;
    let effective = node
        .topics()
        .effective_settings(&settings)
        .map_err(|e| (ResponseError::InvalidPartitions, e.message))?;
    if validate_only {
        if node.topics().get(name).is_ok() {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("topic {name} exists already"),
            ));
        }
        return Ok((effective.partitions, 0));
    }
    match node
        .handle(NodeRequest::CreateTopic(CreateTopic {
            name: name.to_string(),
            settings,
        }))
        .await
    {
        Ok(Reply::Topic(description)) => {
            Ok((description.partitions.len() as u32, description.incarnation))
        }
        Ok(_) => Err((ResponseError::UnknownServerError, "unexpected reply".into())),
        Err(error) => {
            let kafka = match error.code {
                meshgate_protocol::ErrorCode::InvalidArgument => ResponseError::InvalidPartitions,
                _ => from_wire(&error, Context::Topic),
            };
            Err((kafka, error.message))
        }
    }
}

/// Answers DeleteTopics, by name (or by topic id from version 6).
pub async fn delete(
    state: &Arc<KafkaState>,
    request: &Request,
    body: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let node = &state.node;
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if request.version >= 6 {
        body.topics
            .into_iter()
            .map(|topic| (topic.name.map(|n| n.0.to_string()), topic.topic_id))
            .collect()
    } else {
        body.topic_names
            .into_iter()
            .map(|name| (Some(name.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (index, (name, id)) in wanted.into_iter().enumerate() {
        let name = name.or_else(|| {
            node.topics()
                .list()
                .into_iter()
                .find(|topic| topic_id(topic.name(), topic.incarnation().0) == id)
                .map(|topic| topic.name().to_string())
        });
        let mut result =
            DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(text(n))));
        if request.version >= 6 {
            result.topic_id = id;
        }
        let error = match name {
            _ if index >= TOPICS_PER_REQUEST_MAX => Some((
                ResponseError::PolicyViolation,
                "too many topics".to_string(),
            )),
            None => Some((
                ResponseError::UnknownTopicId,
                format!("no topic has id {id}"),
            )),
            Some(name) => {
                if request.version >= 6 && id.is_nil() {
                    result.topic_id = node
                        .topics()
                        .get(&name)
                        .map(|topic| topic_id(&name, topic.incarnation().0))
                        .unwrap_or_default();
                }
                match node
                    .handle(NodeRequest::DeleteTopic(meshgate_protocol::TopicName {
                        name,
                    }))
                    .await
                {
                    Ok(_) => None,
                    Err(error) => Some((from_wire(&error, Context::Topic), error.message)),
                }
            }
        };
        if let Some((error, message)) = error {
            result.error_code = error.code();
            if request.version >= 5 {
                result.error_message = Some(text(message));
            }
        }
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

/// A configuration entry: name, value, source.
type ConfigEntry = (&'static str, String, i8);

/// Resource types of DescribeConfigs.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources: dynamic topic config, and the static broker default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// Answers DescribeConfigs for topics (their settings in Kafka's names)
/// and for this broker (a few read-only facts).
pub fn describe_configs(
    state: &Arc<KafkaState>,
    _request: &Request,
    body: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let node = &state.node;
    let limits = &node.config().limits;
    let results = body
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entries: Result<Vec<ConfigEntry>, (ResponseError, String)> = match resource
                .resource_type
            {
                RESOURCE_TOPIC => match node.topics().get(&name) {
                    Ok(topic) => {
                        let settings = topic.settings();
                        let optional =
                            |value: Option<u64>| value.map_or("-1".to_string(), |v| v.to_string());
                        Ok(vec![
                            ("cleanup.policy", "delete".into(), SOURCE_DEFAULT),
                            ("compression.type", "producer".into(), SOURCE_DEFAULT),
                            (
                                "max.message.bytes",
                                limits.record_bytes_max.to_string(),
                                SOURCE_DEFAULT,
                            ),
                            (
                                "message.timestamp.type",
                                "LogAppendTime".into(),
                                SOURCE_DEFAULT,
                            ),
                            (
                                "retention.bytes",
                                optional(settings.retention_bytes),
                                SOURCE_TOPIC,
                            ),
                            (
                                "retention.ms",
                                optional(settings.retention_ms),
                                SOURCE_TOPIC,
                            ),
                            (
                                "segment.bytes",
                                optional(settings.segment_bytes),
                                SOURCE_TOPIC,
                            ),
                        ])
                    }
                    Err(error) => Err((from_wire(&error, Context::Topic), error.message)),
                },
                RESOURCE_BROKER => Ok(vec![
                    (
                        "auto.create.topics.enable",
                        node.config().topic_defaults.auto_create.to_string(),
                        SOURCE_DEFAULT,
                    ),
                    (
                        "message.max.bytes",
                        limits.record_bytes_max.to_string(),
                        SOURCE_DEFAULT,
                    ),
                    (
                        "num.partitions",
                        node.config().topic_defaults.partitions.to_string(),
                        SOURCE_DEFAULT,
                    ),
                    (
                        "socket.request.max.bytes",
                        limits.frame_bytes_max.to_string(),
                        SOURCE_DEFAULT,
                    ),
                ]),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries {
                Ok(entries) => {
                    let keys = resource.configuration_keys.as_ref();
                    result.configs = entries
                        .into_iter()
                        .filter(|(key, _, _)| {
                            keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == *key))
                        })
                        .map(|(key, value, source)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(key))
                                .with_value(Some(text(value)))
                                .with_read_only(resource.resource_type == RESOURCE_BROKER)
                                .with_config_source(source)
                        })
                        .collect();
                }
                Err((error, message)) => {
                    result.error_code = error.code();
                    result.error_message = Some(text(message));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_depend_on_name_and_incarnation_only() {
        let a = topic_id("orders", 42);
        assert_eq!(a, topic_id("orders", 42));
        assert_ne!(a, topic_id("orders", 43));
        assert_ne!(a, topic_id("payments", 42));
        assert!(!a.is_nil());
        assert_eq!(a.get_version_num(), 8);
    }
}
