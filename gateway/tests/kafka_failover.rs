//! Exact failover of a Kafka consumer group between regions, with a
//! hand-made interleaving. Region b's log of `orders/0` holds, in order:
//! a0 b0 a1 b1 a2 b2 (a* mirrored from region a, b* produced here). The
//! group consumed a0 a1 a2 and b0 in region a, so its committed position is
//! {a: 3, b: 1}. In region b it resumes at offset 3 (b1); a2 at offset 4
//! was consumed already and must not be delivered again, although a Kafka
//! client cannot skip it itself.

mod kafka_common;

use bytes::Bytes;
use kafka_common::{RawClient, create_topic, python_with, scenario, start};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use meshgate_protocol::{Acks, Produce, ProduceRecord, Request};
use meshgate_storage::{
    Batch, LocalOffset, OriginSeq, OriginStream, Record, RegionId, Timestamp, VersionVector,
};

async fn interleave(node: &kafka_common::KafkaGateway) {
    create_topic(&node.gateway, "orders", 1).await;
    let topic = node.gateway.node().topics().get("orders").expect("topic");
    let log = topic.partition(0).expect("partition").clone();
    let origin_a = OriginStream {
        region: RegionId::parse("a").expect("valid"),
        incarnation: topic.incarnation(),
    };
    for seq in 0..3u64 {
        let record = Record {
            value: Bytes::from(format!("a{seq}")),
            timestamp: Timestamp::from_millis(1_700_000_000_000 + seq),
            ..Record::default()
        };
        let batch = Batch::encode(LocalOffset(0), &origin_a, OriginSeq(seq), &[record]);
        log.append_batch(&batch, 0)
            .expect("appends")
            .durable()
            .await
            .expect("durable");
        kafka_common::call(
            &node.gateway,
            Request::Produce(Produce {
                topic: "orders".into(),
                partition: 0,
                records: vec![ProduceRecord {
                    value: Bytes::from(format!("b{seq}")),
                    ..ProduceRecord::default()
                }],
                acks: Acks::Local,
                producer: None,
            }),
        )
        .await;
    }
    let origin_b = OriginStream {
        region: RegionId::parse("b").expect("valid"),
        incarnation: topic.incarnation(),
    };
    let mut position = VersionVector::new();
    position.set(origin_a, 3);
    position.set(origin_b, 1);
    // As a commit forwarded from region a would arrive.
    meshgate_gateway::offsets::merge_forwarded(
        node.gateway.node().meta(),
        "g",
        "orders",
        0,
        topic.incarnation().0,
        &position,
        0,
    )
    .await
    .expect("merged");
}

async fn resume_offset(client: &mut RawClient) -> i64 {
    let topics = OffsetFetchRequestTopics::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partition_indexes(vec![0]);
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(Some(vec![topics])),
    ]);
    let response: OffsetFetchResponse = client.request(ApiKey::OffsetFetch, 8, &request).await;
    let partition = &response.groups[0].topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.committed_offset
}

async fn fetch_offsets(client: &mut RawClient, offset: i64) -> Vec<(i64, String)> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_min_bytes(1)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = client.request(ApiKey::Fetch, 12, &request).await;
    let mut records = response.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
        .expect("batches")
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|record| record.offset >= offset)
        .map(|record| {
            let value =
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).to_string();
            (record.offset, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resuming_in_another_region_gets_neither_a_gap_nor_a_duplicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "b", false).await;
    interleave(&node).await;
    // The consumer's coordinator and fetch connections share its client id.
    let mut coordinator = RawClient::connect(node.kafka).await;
    coordinator.client_id = "consumer-1".into();
    assert_eq!(resume_offset(&mut coordinator).await, 3, "resumes at b1");
    let mut fetcher = RawClient::connect(node.kafka).await;
    fetcher.client_id = "consumer-1".into();
    assert_eq!(
        fetch_offsets(&mut fetcher, 3).await,
        vec![(3, "b1".to_string()), (5, "b2".to_string())],
        "a2 (offset 4) was consumed in region a"
    );
    // Past the interleaving the filter is gone; another client (not
    // resuming this group) sees everything.
    let mut other = RawClient::connect(node.kafka).await;
    other.client_id = "someone-else".into();
    let all: Vec<i64> = fetch_offsets(&mut other, 3)
        .await
        .iter()
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(all, vec![3, 4, 5]);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confluent_consumer_resumes_a_failed_over_group_exactly() {
    let Some(python) = python_with(&["confluent_kafka"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "b", false).await;
    interleave(&node).await;
    let result = scenario(
        &python,
        "confluent-group-consume",
        &node.bootstrap(),
        "orders",
        &["--group", "g"],
    )
    .await;
    let values: Vec<&str> = result["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, vec!["b1", "b2"]);
    node.gateway.stop().await;
}
