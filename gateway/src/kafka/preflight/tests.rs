//! Every advertised API and version, encoded by `kafka-protocol` with
//! non-empty arrays, passes the walk exactly; truncations and absurd counts
//! do not.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::kafka::versions::SUPPORTED;

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn uuid(version: i16, from: i16) -> uuid::Uuid {
    if version >= from {
        uuid::Uuid::from_u128(0x1234)
    } else {
        uuid::Uuid::nil()
    }
}

fn encode(message: &impl Encodable, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    message
        .encode(&mut out, version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
    out.freeze()
}

/// A request of `api` at `version` with one element in every array.
fn populated(api: ApiKey, v: i16) -> Bytes {
    match api {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if v >= 3 {
                r.client_software_name = s("test");
                r.client_software_version = s("1");
            }
            encode(&r, v)
        }
        ApiKey::Metadata => {
            let mut topic = MetadataRequestTopic::default();
            topic.name = Some(TopicName(s("orders")));
            topic.topic_id = uuid(v, 10);
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![topic]);
            encode(&r, v)
        }
        ApiKey::Produce => {
            let mut partition = PartitionProduceData::default();
            partition.records = Some(Bytes::from_static(b"0123456789"));
            let mut topic = TopicProduceData::default();
            topic.name = TopicName(s("orders"));
            topic.partition_data = vec![partition];
            let mut r = ProduceRequest::default();
            r.acks = -1;
            r.topic_data = vec![topic];
            encode(&r, v)
        }
        ApiKey::Fetch => {
            let mut partition = FetchPartition::default();
            partition.fetch_offset = 5;
            let mut topic = FetchTopic::default();
            topic.topic = TopicName(s("orders"));
            topic.partitions = vec![partition];
            let mut r = FetchRequest::default();
            r.topics = vec![topic];
            if v >= 7 {
                let mut forgotten = ForgottenTopic::default();
                forgotten.topic = TopicName(s("old"));
                forgotten.partitions = vec![1, 2];
                r.forgotten_topics_data = vec![forgotten];
            }
            if v >= 11 {
                r.rack_id = s("rack");
            }
            encode(&r, v)
        }
        ApiKey::ListOffsets => {
            let mut topic = ListOffsetsTopic::default();
            topic.name = TopicName(s("orders"));
            topic.partitions = vec![ListOffsetsPartition::default()];
            let mut r = ListOffsetsRequest::default();
            r.topics = vec![topic];
            encode(&r, v)
        }
        ApiKey::InitProducerId => {
            let mut r = InitProducerIdRequest::default();
            r.transaction_timeout_ms = 1000;
            encode(&r, v)
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if v >= 4 {
                r.coordinator_keys = vec![s("group")];
            } else {
                r.key = s("group");
            }
            encode(&r, v)
        }
        ApiKey::JoinGroup => {
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = s("range");
            protocol.metadata = Bytes::from_static(b"meta");
            let mut r = JoinGroupRequest::default();
            r.group_id = GroupId(s("group"));
            r.protocol_type = s("consumer");
            r.protocols = vec![protocol];
            encode(&r, v)
        }
        ApiKey::SyncGroup => {
            let mut assignment = SyncGroupRequestAssignment::default();
            assignment.member_id = s("m");
            assignment.assignment = Bytes::from_static(b"a");
            let mut r = SyncGroupRequest::default();
            r.group_id = GroupId(s("group"));
            r.assignments = vec![assignment];
            encode(&r, v)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = GroupId(s("group"));
            encode(&r, v)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = GroupId(s("group"));
            if v >= 3 {
                let mut member = MemberIdentity::default();
                member.member_id = s("m");
                r.members = vec![member];
            } else {
                r.member_id = s("m");
            }
            encode(&r, v)
        }
        ApiKey::OffsetCommit => {
            let mut partition = OffsetCommitRequestPartition::default();
            partition.committed_offset = 3;
            let mut topic = OffsetCommitRequestTopic::default();
            topic.name = TopicName(s("orders"));
            topic.partitions = vec![partition];
            let mut r = OffsetCommitRequest::default();
            r.group_id = GroupId(s("group"));
            r.topics = vec![topic];
            encode(&r, v)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if v >= 8 {
                let mut topic = OffsetFetchRequestTopics::default();
                topic.name = TopicName(s("orders"));
                topic.partition_indexes = vec![0, 1];
                let mut group = OffsetFetchRequestGroup::default();
                group.group_id = GroupId(s("group"));
                group.topics = Some(vec![topic]);
                r.groups = vec![group];
            } else {
                let mut topic = OffsetFetchRequestTopic::default();
                topic.name = TopicName(s("orders"));
                topic.partition_indexes = vec![0, 1];
                r.group_id = GroupId(s("group"));
                r.topics = Some(vec![topic]);
            }
            encode(&r, v)
        }
        ApiKey::CreateTopics => {
            let mut assignment = CreatableReplicaAssignment::default();
            assignment.broker_ids = vec![BrokerId(1)];
            let mut config = CreatableTopicConfig::default();
            config.name = s("retention.ms");
            config.value = Some(s("1000"));
            let mut topic = CreatableTopic::default();
            topic.name = TopicName(s("orders"));
            topic.assignments = vec![assignment];
            topic.configs = vec![config];
            let mut r = CreateTopicsRequest::default();
            r.topics = vec![topic];
            encode(&r, v)
        }
        ApiKey::DeleteTopics => {
            let mut r = DeleteTopicsRequest::default();
            if v >= 6 {
                let mut topic = DeleteTopicState::default();
                topic.name = Some(TopicName(s("orders")));
                r.topics = vec![topic];
            } else {
                r.topic_names = vec![TopicName(s("orders"))];
            }
            encode(&r, v)
        }
        ApiKey::DescribeConfigs => {
            let mut resource = DescribeConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = s("orders");
            resource.configuration_keys = Some(vec![s("retention.ms")]);
            let mut r = DescribeConfigsRequest::default();
            r.resources = vec![resource];
            encode(&r, v)
        }
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![GroupId(s("group"))];
            encode(&r, v)
        }
        ApiKey::ListGroups => {
            let mut r = ListGroupsRequest::default();
            if v >= 4 {
                r.states_filter = vec![s("Stable")];
            }
            if v >= 5 {
                r.types_filter = vec![s("classic")];
            }
            encode(&r, v)
        }
        other => panic!("no builder for {other:?}"),
    }
}

#[test]
fn every_advertised_request_version_passes_the_walk_exactly() {
    for api in SUPPORTED {
        // Produce 0-2 is decoded by the legacy codec, not walked.
        let first = if api.key == ApiKey::Produce {
            3
        } else {
            api.min
        };
        for version in first..=api.max {
            let body = populated(api.key, version);
            check(api.key, version, &body)
                .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", api.key));
            for length in 0..body.len() {
                assert!(
                    check(api.key, version, &body[..length]).is_err(),
                    "{:?} v{version} truncated to {length} passed",
                    api.key
                );
            }
        }
    }
}

#[test]
fn absurd_array_counts_are_refused_before_decoding() {
    // Metadata v1: a topics array claiming i32::MAX entries.
    let body = [0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
    assert!(check(ApiKey::Metadata, 1, &body).is_err());
    // Metadata v12: compact array claiming u32::MAX - 1 entries.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
    assert!(check(ApiKey::Metadata, 12, &body).is_err());
    // OffsetFetch v1: partitions claiming 1 billion i32s.
    let mut body = vec![0, 1, b'g', 0, 0, 0, 1, 0, 1, b't'];
    body.extend_from_slice(&1_000_000_000i32.to_be_bytes());
    assert!(check(ApiKey::OffsetFetch, 1, &body).is_err());
}

#[test]
fn more_elements_than_the_budget_are_refused() {
    // DescribeGroups v0 with ELEMENTS_MAX + 1 empty group names.
    let count = ELEMENTS_MAX + 1;
    let mut body = (count as i32).to_be_bytes().to_vec();
    body.extend(std::iter::repeat_n(0u8, count * 2));
    assert_eq!(
        check(ApiKey::DescribeGroups, 0, &body),
        Err(ShapeError::TooManyElements)
    );
}

#[test]
fn random_bytes_never_panic_the_walk() {
    let mut state = 0x9e37_79b9_u32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for _ in 0..20_000 {
        let length = (next() % 64) as usize;
        let body: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        let api = SUPPORTED[(next() as usize) % SUPPORTED.len()];
        let version = api.min + (next() % (api.max - api.min + 1) as u32) as i16;
        let _ = check(api.key, version, &body);
    }
}
