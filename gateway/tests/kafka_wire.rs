//! The Kafka listener at the wire level, with raw frames: version
//! negotiation, errors for what it does not serve, bad and hostile input
//! (never a panic, never an allocation the frame does not justify), and
//! the produce/fetch/idempotence semantics clients rely on.

mod kafka_common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_common::{RawClient, error_only, start};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;

async fn api_versions(client: &mut RawClient) -> ApiVersionsResponse {
    client
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
}

fn served(response: &ApiVersionsResponse, key: ApiKey) -> Option<(i16, i16)> {
    response
        .api_keys
        .iter()
        .find(|api: &&ApiVersion| api.api_key == key as i16)
        .map(|api| (api.min_version, api.max_version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_exactly_the_served_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    let mut client = RawClient::connect(node.kafka).await;
    let response = api_versions(&mut client).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(served(&response, ApiKey::Produce), Some((0, 11)));
    assert_eq!(served(&response, ApiKey::Fetch), Some((4, 12)));
    assert_eq!(served(&response, ApiKey::Metadata), Some((1, 12)));
    assert_eq!(served(&response, ApiKey::ApiVersions), Some((0, 3)));
    assert_eq!(response.api_keys.len(), 18);
    assert_eq!(served(&response, ApiKey::SaslHandshake), None);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_api_versions_is_answered_in_v0_form_with_the_served_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    let mut client = RawClient::connect(node.kafka).await;
    // ApiVersions v9: the body is unknown; the answer is v0 with error 35.
    let correlation = client
        .send_raw(ApiKey::ApiVersions as i16, 9, &[0, 0])
        .await;
    let mut frame = client.read_frame().await.expect("answered");
    let header = ResponseHeader::decode(&mut frame, 0).expect("v0 header");
    assert_eq!(header.correlation_id, correlation);
    let response = ApiVersionsResponse::decode(&mut frame, 0).expect("v0 body");
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert!(!response.api_keys.is_empty());
    // The connection is still usable.
    assert_eq!(api_versions(&mut client).await.error_code, 0);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_keys_and_versions_get_unsupported_version_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    let mut client = RawClient::connect(node.kafka).await;
    for (api, version) in [
        (999i16, 0i16),                         // unknown key
        (-5, 0),                                // negative key
        (ApiKey::Fetch as i16, 3),              // below the served range
        (ApiKey::Metadata as i16, 13),          // above it
        (ApiKey::SaslHandshake as i16, 1),      // known, not served
        (ApiKey::AddPartitionsToTxn as i16, 3), // transactions
    ] {
        let correlation = client.send_raw(api, version, &[1, 2, 3]).await;
        let frame = client.read_frame().await.expect("answered, not closed");
        assert_eq!(
            error_only(frame),
            (correlation, UNSUPPORTED_VERSION),
            "{api} v{version}"
        );
    }
    assert_eq!(api_versions(&mut client).await.error_code, 0);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_and_tiny_frame_lengths_are_refused_before_allocating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    for length in [i32::MAX, -1, i32::MIN, 3, 0, 64 << 20] {
        let mut client = RawClient::connect(node.kafka).await;
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 77]);
        client.send_bytes(&bytes).await;
        let frame = client
            .read_frame()
            .await
            .expect("an error before the close");
        let (correlation, code) = error_only(frame);
        assert_eq!(code, INVALID_REQUEST, "length {length}");
        if length > 8 {
            assert_eq!(correlation, 77, "the header was read for length {length}");
        }
        assert!(
            client.read_frame().await.is_none(),
            "closed after length {length}"
        );
    }
    // The listener still serves.
    let mut client = RawClient::connect(node.kafka).await;
    assert_eq!(api_versions(&mut client).await.error_code, 0);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_claiming_more_elements_than_bytes_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    let mut client = RawClient::connect(node.kafka).await;
    // Metadata v1 with 2^31-1 topics in 7 bytes, then v12 with a compact
    // array of 4 billion: kafka-protocol alone would try to allocate
    // hundreds of gigabytes for these.
    let correlation = client
        .send_raw(
            ApiKey::Metadata as i16,
            1,
            &[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'],
        )
        .await;
    assert_eq!(
        error_only(client.read_frame().await.expect("answered")),
        (correlation, INVALID_REQUEST)
    );
    let correlation = client
        .send_raw(
            ApiKey::Metadata as i16,
            12,
            &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0],
        )
        .await;
    assert_eq!(
        error_only(client.read_frame().await.expect("answered")),
        (correlation, INVALID_REQUEST)
    );
    // Produce v0 (the hand-written decoder) with an absurd topic count.
    let mut body = vec![0, 1, 0, 0, 0x03, 0xe8];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    let correlation = client.send_raw(ApiKey::Produce as i16, 0, &body).await;
    assert_eq!(
        error_only(client.read_frame().await.expect("answered")),
        (correlation, INVALID_REQUEST)
    );
    assert_eq!(api_versions(&mut client).await.error_code, 0);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_for_every_served_api_get_answers_and_never_take_the_node_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    let mut client = RawClient::connect(node.kafka).await;
    let served = api_versions(&mut client).await.api_keys;
    let mut state = 0x2545_f491_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut answered = 0;
    for round in 0..1500 {
        let api = &served[(next() as usize) % served.len()];
        // JoinGroup and SyncGroup may legitimately wait for a rebalance.
        if [ApiKey::JoinGroup as i16, ApiKey::SyncGroup as i16].contains(&api.api_key) {
            continue;
        }
        let span = (api.max_version - api.min_version + 1) as u32;
        let version = api.min_version + (next() % span) as i16;
        let length = (next() % 48) as usize;
        let mut body: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        if round % 3 == 0 && body.len() >= 4 {
            // Small counts and lengths get further into the decoders.
            body[..4].copy_from_slice(&1i32.to_be_bytes());
        }
        client.send_raw(api.api_key, version, &body).await;
        let frame = client.read_frame().await;
        assert!(
            frame.is_some(),
            "api {} v{version} closed the connection",
            api.api_key
        );
        answered += 1;
    }
    assert!(answered > 1000);
    assert_eq!(api_versions(&mut client).await.error_code, 0);
    node.gateway.stop().await;
}

fn batch(values: &[&str], producer: Option<(i64, i32)>) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(index, value)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |p| p.0),
            producer_epoch: if producer.is_some() { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: producer.map_or(-1, |p| p.1 + index as i32),
            timestamp: 0,
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encodes");
    out.freeze()
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records));
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![partition]),
        ])
}

fn first_partition(response: &ProduceResponse) -> (i16, i64) {
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_idempotent_batch_is_appended_once_and_a_gap_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    kafka_common::create_topic(&node.gateway, "idem", 1).await;
    let mut client = RawClient::connect(node.kafka).await;
    let init: InitProducerIdResponse = client
        .request(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(1000),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let producer = init.producer_id.0;
    let send = |values: &'static [&'static str], sequence| {
        produce_request("idem", batch(values, Some((producer, sequence))))
    };
    let first: ProduceResponse = client
        .request(ApiKey::Produce, 9, &send(&["a", "b"], 0))
        .await;
    assert_eq!(first_partition(&first), (0, 0));
    let again: ProduceResponse = client
        .request(ApiKey::Produce, 9, &send(&["a", "b"], 0))
        .await;
    assert_eq!(
        first_partition(&again),
        (0, 0),
        "the resend gets the first offsets"
    );
    let next: ProduceResponse = client.request(ApiKey::Produce, 9, &send(&["c"], 2)).await;
    assert_eq!(first_partition(&next), (0, 2));
    let gap: ProduceResponse = client.request(ApiKey::Produce, 9, &send(&["e"], 9)).await;
    assert_eq!(first_partition(&gap).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    let values: Vec<String> = kafka_common::records(&node.gateway, "idem", 0)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).to_string())
        .collect();
    assert_eq!(values, vec!["a", "b", "c"]);
    node.gateway.stop().await;
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![partition]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_at_the_end_long_polls_until_a_record_arrives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    kafka_common::create_topic(&node.gateway, "poll", 1).await;
    let mut consumer = RawClient::connect(node.kafka).await;
    // Nothing there: the fetch waits its whole max wait.
    let started = tokio::time::Instant::now();
    let empty: FetchResponse = consumer
        .request(ApiKey::Fetch, 12, &fetch_request("poll", 0, 300))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    let partition = &empty.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark), (0, 0));
    assert_eq!(empty.session_id, 0);
    // A record produced meanwhile ends the wait early.
    let kafka = node.kafka;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut producer = RawClient::connect(kafka).await;
        let _: ProduceResponse = producer
            .request(
                ApiKey::Produce,
                7,
                &produce_request("poll", batch(&["late"], None)),
            )
            .await;
    });
    let started = tokio::time::Instant::now();
    let fetched: FetchResponse = consumer
        .request(ApiKey::Fetch, 12, &fetch_request("poll", 0, 10_000))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the record"
    );
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 1);
    assert_eq!(partition.last_stable_offset, 1);
    assert_eq!(
        partition.aborted_transactions.as_deref().map(<[_]>::len),
        Some(0)
    );
    let mut records = partition.records.clone().expect("records");
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).expect("a batch");
    assert_eq!(set.records[0].value.as_deref(), Some(&b"late"[..]));
    producer.await.expect("produced");
    // Out of range offsets are reported as such.
    let out: FetchResponse = consumer
        .request(ApiKey::Fetch, 12, &fetch_request("poll", 5, 0))
        .await;
    assert_eq!(out.responses[0].partitions[0].error_code, 1);
    node.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v2_message_sets_are_stored_as_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "wire", false).await;
    kafka_common::create_topic(&node.gateway, "old", 1).await;
    let mut set = BytesMut::new();
    meshgate_gateway::kafka::legacy::encode_message(&mut set, 1, 0, Some(b"k"), b"one");
    meshgate_gateway::kafka::legacy::encode_message(&mut set, 1, 0, None, b"two");
    let mut body = BytesMut::new();
    body.put_i16(1);
    body.put_i32(1000);
    body.put_i32(1);
    body.put_i16(3);
    body.put_slice(b"old");
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(set.len() as i32);
    body.put_slice(&set);
    let mut client = RawClient::connect(node.kafka).await;
    let correlation = client.send_raw(ApiKey::Produce as i16, 2, &body).await;
    let frame = client.read_frame().await.expect("answered");
    // correlation, 1 topic "old", 1 partition: index, error, base offset, append time; throttle.
    assert_eq!(&frame[..4], &correlation.to_be_bytes());
    assert_eq!(&frame[4..8], &1i32.to_be_bytes());
    let partition = &frame[8 + 2 + 3 + 4..];
    assert_eq!(&partition[4..6], &0i16.to_be_bytes(), "no error");
    assert_eq!(&partition[6..14], &0i64.to_be_bytes(), "base offset 0");
    let values: Vec<String> = kafka_common::records(&node.gateway, "old", 0)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).to_string())
        .collect();
    assert_eq!(values, vec!["one", "two"]);
    node.gateway.stop().await;
}
