//! Produce/consume round trips through the Rust client against real
//! gateways, and a restart with data and committed offsets intact.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use meshgate_client::{
    Acks, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, Seek,
};
use meshgate_protocol::{Produce, ProduceRecord, ProducerSequence, partition_for_key};
use support::{bounded, client, start, topic};

/// Reads from every partition of `topic` until `count` records arrived.
async fn read_all(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut records = Vec::new();
    for _ in 0..400 {
        if records.len() >= count {
            break;
        }
        records.extend(
            consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll"),
        );
    }
    records
}

fn standalone(client: &meshgate_client::Client, group: Option<&str>) -> Consumer {
    Consumer::new(
        client.clone(),
        ConsumerConfig {
            group: group.map(str::to_string),
            reset: OffsetReset::Earliest,
            fetch_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
    )
    .expect("consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_keep_their_keys_headers_and_order_across_many_partitions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(8))
            .await
            .expect("created");
        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..400u32 {
            let key = format!("customer-{}", index % 13);
            let record = ProducerRecord::new("orders", format!("order-{index}"))
                .key(key.clone())
                .header("index", index.to_string())
                .header("kind", "created");
            deliveries.push((key, producer.send(record).await.expect("queued")));
        }
        producer.flush().await.expect("flushed");
        for (key, delivery) in deliveries {
            let delivered = delivery.await.expect("delivered");
            assert_eq!(delivered.partition, partition_for_key(key.as_bytes(), 8));
        }

        let mut consumer = standalone(&client, None);
        consumer.assign((0..8).map(|p| ("orders".to_string(), p)));
        let records = read_all(&mut consumer, 400).await;
        assert_eq!(records.len(), 400, "every record once");
        let mut last_index_per_key: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut partitions_used = std::collections::BTreeSet::new();
        for record in &records {
            let key = record.key.clone().expect("keyed").to_vec();
            assert_eq!(record.partition, partition_for_key(&key, 8));
            partitions_used.insert(record.partition);
            let index: u32 = std::str::from_utf8(record.header("index").expect("header"))
                .expect("utf-8")
                .parse()
                .expect("a number");
            assert_eq!(record.value, format!("order-{index}"));
            assert_eq!(record.header("kind").map(|v| &v[..]), Some(&b"created"[..]));
            assert_eq!(*record.topic, *"orders");
            assert_eq!(record.origin.stream.region.as_str(), "local");
            if let Some(previous) = last_index_per_key.insert(key, index) {
                assert!(previous < index, "order within a key (and partition)");
            }
        }
        assert!(
            partitions_used.len() > 4,
            "13 keys spread over the partitions"
        );
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_records_are_batched_and_consumed_in_offset_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("events", topic(3))
            .await
            .expect("created");
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                acks: Acks::None,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..3000u32 {
            let record = ProducerRecord::new("events", index.to_be_bytes().to_vec());
            deliveries.push(producer.send(record).await.expect("queued"));
        }
        producer.close().await.expect("closed");
        let mut offsets = std::collections::BTreeSet::new();
        for delivery in deliveries {
            let delivered = delivery.await.expect("delivered");
            assert!(
                offsets.insert((delivered.partition, delivered.offset)),
                "unique offsets"
            );
        }
        let mut consumer = standalone(&client, None);
        consumer.assign((0..3).map(|p| ("events".to_string(), p)));
        let records = read_all(&mut consumer, 3000).await;
        assert_eq!(records.len(), 3000);
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut last_value: BTreeMap<u32, u32> = BTreeMap::new();
        for record in &records {
            let expected = next.entry(record.partition).or_insert(0);
            assert_eq!(record.offset, *expected, "dense offsets in order");
            *expected += 1;
            let value = u32::from_be_bytes(record.value[..].try_into().expect("4 bytes"));
            if let Some(previous) = last_value.insert(record.partition, value) {
                assert!(previous < value, "send order kept within a partition");
            }
        }
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_idempotent_batch_is_not_appended_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("payments", topic(1))
            .await
            .expect("created");
        let batch = |sequence, value: &'static str| Produce {
            topic: "payments".into(),
            partition: 0,
            records: vec![ProduceRecord {
                value: value.into(),
                ..ProduceRecord::default()
            }],
            acks: Acks::Local,
            producer: Some(ProducerSequence {
                producer_id: 42,
                sequence,
            }),
        };
        let first = client.produce(batch(0, "a")).await.expect("first");
        assert!(!first.duplicate);
        let again = client.produce(batch(0, "a")).await.expect("resend");
        assert!(again.duplicate, "the resend is recognised");
        assert_eq!(again.base_offset, first.base_offset);
        let second = client.produce(batch(1, "b")).await.expect("next");
        assert_eq!(second.base_offset, first.base_offset + 1);
        let description = client.describe_topic("payments").await.expect("described");
        assert_eq!(
            description.partitions[0].high_watermark, 2,
            "two records, not three"
        );
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_records_and_committed_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    {
        let client = client(&gateway).await;
        bounded(30, async {
            client
                .create_topic("ledger", topic(2))
                .await
                .expect("created");
            let producer =
                Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
            for index in 0..100u32 {
                producer
                    .send(
                        ProducerRecord::new("ledger", format!("entry-{index}"))
                            .partition(index % 2),
                    )
                    .await
                    .expect("queued");
            }
            producer.close().await.expect("closed");
            let mut consumer = standalone(&client, Some("auditors"));
            consumer.assign([("ledger".to_string(), 0), ("ledger".to_string(), 1)]);
            let records = read_all(&mut consumer, 100).await;
            assert_eq!(records.len(), 100);
            // Commit a position in the middle of partition 0.
            consumer
                .seek("ledger", 0, Seek::Offset(20))
                .await
                .expect("seek");
            consumer.commit().await.expect("committed");
        })
        .await;
        client.close();
    }
    gateway.stop().await;

    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        let description = client.describe_topic("ledger").await.expect("still there");
        let records: u64 = description
            .partitions
            .iter()
            .map(|p| p.high_watermark)
            .sum();
        assert_eq!(records, 100);
        let committed = client
            .committed_offsets("auditors", None)
            .await
            .expect("offsets");
        let positions: BTreeMap<u32, Option<u64>> =
            committed.iter().map(|c| (c.partition, c.offset)).collect();
        assert_eq!(positions.get(&0), Some(&Some(20)));
        assert_eq!(positions.get(&1), Some(&Some(50)));
        let mut consumer = standalone(&client, Some("auditors"));
        consumer.assign([("ledger".to_string(), 0)]);
        let records = read_all(&mut consumer, 30).await;
        assert_eq!(records.len(), 30, "resumes at the committed offset");
        assert_eq!(records[0].offset, 20);
        assert_eq!(records[0].value, "entry-40");
    })
    .await;
    gateway.stop().await;
}
