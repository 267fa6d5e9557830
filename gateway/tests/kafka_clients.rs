//! Unchanged Kafka clients against a gateway: kcat (librdkafka),
//! confluent-kafka and kafka-python. Records cross between Kafka clients
//! and the native protocol unchanged. Each test skips with a printed
//! reason when its client is not installed, and fails instead under
//! `MESHGATE_REQUIRE_KAFKA_CLIENTS=1` (CI).

mod kafka_common;

use std::time::Duration;

use bytes::Bytes;
use kafka_common::{call, create_topic, kcat, python_with, run, scenario, start};
use meshgate_protocol::{Acks, Fetch, Produce, ProduceRecord, Reply, Request};
use meshgate_storage::{Header, LocalOffset};

const LIMIT: Duration = Duration::from_secs(30);

/// Every record of partition `partition` read through the node's native Fetch.
async fn native_records(
    node: &kafka_common::KafkaGateway,
    topic: &str,
    partition: u32,
) -> Vec<meshgate_storage::StoredRecord> {
    let Reply::Fetched(fetched) = call(
        &node.gateway,
        Request::Fetch(Fetch {
            topic: topic.into(),
            partition,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        }),
    )
    .await
    else {
        panic!("not a fetch reply");
    };
    let chunk = meshgate_storage::ReadChunk {
        bytes: fetched.batches,
        first_offset: LocalOffset(0),
        next_offset: LocalOffset(fetched.next_offset),
    };
    chunk.records_from(LocalOffset(0)).expect("decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_with_every_compression_and_native_fetch_reads_the_same_records() {
    let Some(kcat) = kcat() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "kcat", false).await;
    create_topic(&node.gateway, "orders", 1).await;
    let bootstrap = node.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let input = format!("{codec}-1\n{codec}-2\n");
        run(
            &kcat,
            &[
                "-b", &bootstrap, "-t", "orders", "-P", "-z", codec, "-k", "key", "-H", "trace=a",
                "-H", "trace=b",
            ],
            Some(input.as_bytes()),
            LIMIT,
        )
        .await;
    }
    let records = native_records(&node, "orders", 0).await;
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).to_string())
        .collect();
    let expected: Vec<String> = ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .flat_map(|codec| [format!("{codec}-1"), format!("{codec}-2")])
        .collect();
    assert_eq!(values, expected);
    for record in &records {
        assert_eq!(record.record.key.as_deref(), Some(&b"key"[..]));
        let headers: Vec<(&str, &[u8])> = record
            .record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), &h.value[..]))
            .collect();
        assert_eq!(
            headers,
            vec![("trace", &b"a"[..]), ("trace", &b"b"[..])],
            "repeated header keys survive in order"
        );
    }
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_consumes_records_produced_natively_with_their_headers() {
    let Some(kcat) = kcat() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "kcat", false).await;
    create_topic(&node.gateway, "native", 1).await;
    let records = (0..3)
        .map(|i| ProduceRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Bytes::from(format!("v{i}")),
            headers: vec![
                Header {
                    key: "h".into(),
                    value: Bytes::from_static(b"1"),
                },
                Header {
                    key: "h".into(),
                    value: Bytes::from_static(b"2"),
                },
            ],
        })
        .collect();
    call(
        &node.gateway,
        Request::Produce(Produce {
            topic: "native".into(),
            partition: 0,
            records,
            acks: Acks::Local,
            producer: None,
        }),
    )
    .await;
    let output = run(
        &kcat,
        &[
            "-b",
            &node.bootstrap(),
            "-t",
            "native",
            "-C",
            "-e",
            "-q",
            "-f",
            "%o %k %s %h\n",
        ],
        None,
        LIMIT,
    )
    .await;
    assert_eq!(
        output,
        "0 k0 v0 h=1,h=2\n1 k1 v1 h=1,h=2\n2 k2 v2 h=1,h=2\n"
    );
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_librdkafka_protocol_produces_message_sets_with_compression() {
    let Some(kcat) = kcat() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "kcat", false).await;
    create_topic(&node.gateway, "legacy", 1).await;
    // Without ApiVersions, librdkafka assumes a 0.10.0 broker: Produce v2
    // with message format v1.
    run(
        &kcat,
        &[
            "-b",
            &node.bootstrap(),
            "-t",
            "legacy",
            "-P",
            "-z",
            "gzip",
            "-X",
            "api.version.request=false",
            "-X",
            "broker.version.fallback=0.10.0",
        ],
        Some(b"old-1\nold-2\n"),
        LIMIT,
    )
    .await;
    let values: Vec<String> = native_records(&node, "legacy", 0)
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).to_string())
        .collect();
    assert_eq!(values, vec!["old-1", "old-2"]);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_produces_idempotently_with_every_compression_and_consumes_it_all() {
    let Some(python) = python_with(&["confluent_kafka"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "confluent", true).await;
    let result = scenario(
        &python,
        "confluent-produce-consume",
        &node.bootstrap(),
        "auto",
        &["--count", "40"],
    )
    .await;
    assert_eq!(result["produced"], 200);
    assert_eq!(result["consumed"], 200);
    // Auto-created with the node's defaults, and nothing appended twice.
    let topic = node
        .gateway
        .node()
        .topics()
        .get("auto")
        .expect("auto-created");
    assert_eq!(topic.partition_count(), 3);
    let stored: usize = (0..3)
        .map(|p| kafka_common::records(&node.gateway, "auto", p).len())
        .sum();
    assert_eq!(stored, 200);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_consumes_in_a_group_commits_and_a_new_member_resumes_there() {
    let Some(python) = python_with(&["kafka"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "kafkapy", false).await;
    create_topic(&node.gateway, "resume", 1).await;
    let result = scenario(
        &python,
        "kafka-python-group-resume",
        &node.bootstrap(),
        "resume",
        &["--count", "20"],
    )
    .await;
    assert_eq!(result["first"], 10);
    assert_eq!(result["resumed"], 10);
    // The commit is a native committed position.
    let Reply::CommittedOffsets(offsets) = call(
        &node.gateway,
        Request::FetchOffsets(meshgate_protocol::FetchOffsets {
            group: "resume".into(),
            partitions: None,
        }),
    )
    .await
    else {
        panic!("not committed offsets");
    };
    assert_eq!(
        offsets[0].offset,
        Some(10),
        "the first member committed after ten"
    );
    assert!(!offsets[0].vector.is_empty(), "stored as a version vector");
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_creates_describes_and_deletes_topics() {
    let Some(python) = python_with(&["kafka"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "admin", false).await;
    let result = scenario(
        &python,
        "kafka-python-admin",
        &node.bootstrap(),
        "made-by-kafka",
        &[],
    )
    .await;
    assert_eq!(result["partitions"], 4);
    assert!(
        node.gateway.node().topics().get("made-by-kafka").is_err(),
        "deleted"
    );
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_confluent_consumers_share_partitions_and_two_take_over_when_one_leaves() {
    let Some(python) = python_with(&["confluent_kafka"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "rebalance", false).await;
    create_topic(&node.gateway, "shared", 6).await;
    let result = scenario(
        &python,
        "confluent-rebalance",
        &node.bootstrap(),
        "shared",
        &[],
    )
    .await;
    let three = result["three"].as_object().expect("three members");
    assert_eq!(three.len(), 3);
    assert!(
        three
            .values()
            .all(|parts| parts.as_array().map(Vec::len) == Some(2)),
        "{three:?}"
    );
    let two = result["two"].as_object().expect("two members");
    assert_eq!(two.len(), 2);
    node.gateway.stop().await;
}
