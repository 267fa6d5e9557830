//! Consumer groups through the client: members joining and leaving while a
//! producer writes, with commits after processing.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshgate_client::{
    Client, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use parking_lot::Mutex;
use support::{bounded, client, start, topic};
use tokio::time::Instant;

const MESSAGES: u32 = 3000;

fn member(client: &Client, group: &str) -> Consumer {
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            group: Some(group.to_string()),
            reset: OffsetReset::Earliest,
            fetch_wait: Duration::from_millis(50),
            session_timeout: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(5),
            ..ConsumerConfig::default()
        },
    )
    .expect("consumer");
    consumer.subscribe(["work"]).expect("subscribed");
    consumer
}

/// Polls, processes (records the value), then commits, until `stop_at` or
/// until every message was processed.
async fn work(
    mut consumer: Consumer,
    processed: Arc<Mutex<BTreeMap<String, u32>>>,
    stop_at: Option<Instant>,
) {
    loop {
        if stop_at.is_some_and(|stop| Instant::now() >= stop) {
            break;
        }
        if processed.lock().len() as u32 >= MESSAGES {
            break;
        }
        let records = consumer
            .poll(Duration::from_millis(100))
            .await
            .expect("poll");
        if records.is_empty() {
            continue;
        }
        {
            let mut processed = processed.lock();
            for record in &records {
                let value = String::from_utf8(record.value.to_vec()).expect("utf-8");
                *processed.entry(value).or_default() += 1;
            }
        }
        consumer.commit().await.expect("commit after processing");
    }
    consumer.close().await.expect("left the group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_joining_and_leaving_process_every_message_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(60, async {
        client
            .create_topic("work", topic(6))
            .await
            .expect("created");
        let processed = Arc::new(Mutex::new(BTreeMap::new()));
        let writer = {
            let client = client.clone();
            tokio::spawn(async move {
                let producer = Producer::new(client, ProducerConfig::default()).expect("producer");
                for index in 0..MESSAGES {
                    producer
                        .send(
                            ProducerRecord::new("work", format!("m-{index}"))
                                .key(format!("k-{}", index % 50)),
                        )
                        .await
                        .expect("queued");
                    if index % 100 == 99 {
                        producer.flush().await.expect("flushed");
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                }
                producer.close().await.expect("closed");
            })
        };
        let begin = Instant::now();
        let first = tokio::spawn(work(
            member(&client, "workers"),
            processed.clone(),
            Some(begin + Duration::from_millis(1500)),
        ));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = tokio::spawn(work(
            member(&client, "workers"),
            processed.clone(),
            Some(begin + Duration::from_millis(2500)),
        ));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let third = tokio::spawn(work(member(&client, "workers"), processed.clone(), None));
        writer.await.expect("writer");
        for task in [first, second, third] {
            task.await.expect("member");
        }
        let processed = processed.lock();
        assert_eq!(processed.len() as u32, MESSAGES, "every message processed");
        let twice: Vec<_> = processed.iter().filter(|(_, count)| **count > 1).collect();
        assert!(twice.is_empty(), "processed more than once: {twice:?}");
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_where_the_group_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("work", topic(2))
            .await
            .expect("created");
        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        for index in 0..100 {
            producer
                .send(ProducerRecord::new("work", format!("m-{index}")))
                .await
                .expect("queued");
        }
        producer.close().await.expect("closed");

        let mut first = member(&client, "resumers");
        let mut seen = Vec::new();
        while seen.len() < 100 {
            seen.extend(first.poll(Duration::from_millis(100)).await.expect("poll"));
        }
        first.commit().await.expect("committed");
        let description = client.describe_group("resumers").await.expect("described");
        assert_eq!(description.members.len(), 1);
        first.close().await.expect("left");

        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        for index in 100..110 {
            producer
                .send(ProducerRecord::new("work", format!("m-{index}")))
                .await
                .expect("queued");
        }
        producer.close().await.expect("closed");
        let mut second = member(&client, "resumers");
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rest.len() < 10 && Instant::now() < deadline {
            rest.extend(second.poll(Duration::from_millis(100)).await.expect("poll"));
        }
        let values: std::collections::BTreeSet<String> = rest
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect();
        let expected: std::collections::BTreeSet<String> =
            (100..110).map(|i| format!("m-{i}")).collect();
        assert_eq!(values, expected, "only what was not committed");
        second.close().await.expect("left");
    })
    .await;
    gateway.stop().await;
}
