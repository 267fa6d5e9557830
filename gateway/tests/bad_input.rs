//! Bad input, each answered with its exact error code, and the node
//! unchanged and serving afterwards: raw frames on QUIC streams (garbage,
//! truncated, oversize, unknown message type, no hello, wrong version) and
//! bad requests through the client (unknown topic, invalid names,
//! partitions and offsets, records too large).

mod support;

use std::time::Duration;

use meshgate_client::{Client, ClientError, ErrorCode, ProducerRecord};
use meshgate_federation::transport::{
    CLUSTER_SERVER_NAME, CaCertificate, TransportLimits, bind_endpoint, client_config,
};
use meshgate_gateway::gateway::Gateway;
use meshgate_protocol::{
    Acks, Fetch, Hello, PROTOCOL_VERSION, Produce, ProduceRecord, Reply, Request, Response, frame,
};
use support::{bounded, client, start, topic};

/// A raw QUIC connection to `gateway`, without any handshake.
async fn raw_connection(gateway: &Gateway) -> (quinn::Endpoint, quinn::Connection) {
    let ca = CaCertificate::from_pem(gateway.ca_pem()).expect("CA");
    let config = client_config(&ca, &TransportLimits::default()).expect("TLS config");
    let endpoint = bind_endpoint(
        "127.0.0.1:0".parse().expect("address"),
        quinn::EndpointConfig::default(),
        None,
    )
    .expect("endpoint");
    let connection = endpoint
        .connect_with(config, gateway.client_address(), CLUSTER_SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    (endpoint, connection)
}

/// Writes `bytes` on a new stream, finishes it, and decodes the answer.
async fn exchange(connection: &quinn::Connection, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    // The node may stop reading early (oversize frames); the answer still comes.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let answer = recv.read_to_end(1 << 20).await.expect("an answer");
    frame::decode(&answer).expect("a response frame")
}

fn hello(version: u16) -> Vec<u8> {
    let request = Request::Hello(Hello {
        version,
        client_id: "raw".into(),
    });
    frame::encode(&request).expect("encodes").to_vec()
}

async fn greeted(gateway: &Gateway) -> (quinn::Endpoint, quinn::Connection) {
    let (endpoint, connection) = raw_connection(gateway).await;
    let answer = exchange(&connection, &hello(PROTOCOL_VERSION)).await;
    assert!(matches!(answer, Ok(Reply::Hello(_))), "{answer:?}");
    (endpoint, connection)
}

fn code_of(response: Response) -> ErrorCode {
    match response {
        Err(error) => error.code,
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

fn client_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(error) => error
            .code()
            .unwrap_or_else(|| panic!("expected a server error, got {error}")),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

/// The node still answers, and holds exactly the topic `kept` with
/// `records` records.
async fn assert_unchanged(client: &Client, records: u64) {
    let topics = client.list_topics().await.expect("list topics");
    assert_eq!(topics.len(), 1, "{topics:?}");
    assert_eq!(topics[0].name, "kept");
    let description = client.describe_topic("kept").await.expect("describe");
    assert_eq!(description.partitions[0].high_watermark, records);
}

/// A node with one topic `kept` holding one record.
async fn prepared_node(dir: &std::path::Path) -> (Gateway, Client) {
    let gateway = start(dir).await;
    let client = client(&gateway).await;
    client
        .create_topic("kept", topic(1))
        .await
        .expect("created");
    client
        .produce(Produce {
            topic: "kept".into(),
            partition: 0,
            records: vec![ProduceRecord {
                value: "v".into(),
                ..ProduceRecord::default()
            }],
            acks: Acks::Local,
            producer: None,
        })
        .await
        .expect("produced");
    (gateway, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (gateway, client) = prepared_node(dir.path()).await;
    bounded(30, async {
        let (_endpoint, connection) = greeted(&gateway).await;

        // Garbage: a plausible length, then bytes that are not MessagePack.
        let mut garbage = 12u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xc1; 12]);
        assert_eq!(
            code_of(exchange(&connection, &garbage).await),
            ErrorCode::MalformedFrame
        );
        assert_unchanged(&client, 1).await;

        // Truncated: the prefix announces 100 bytes, 10 come, then the end.
        let mut truncated = 100u32.to_be_bytes().to_vec();
        truncated.extend_from_slice(&[0x90; 10]);
        assert_eq!(
            code_of(exchange(&connection, &truncated).await),
            ErrorCode::MalformedFrame
        );
        assert_unchanged(&client, 1).await;

        // Oversize: 1 GiB announced, far above the 16 MiB limit.
        let mut oversize = (1u32 << 30).to_be_bytes().to_vec();
        oversize.extend_from_slice(&[0; 64]);
        assert_eq!(
            code_of(exchange(&connection, &oversize).await),
            ErrorCode::FrameTooLarge
        );
        assert_unchanged(&client, 1).await;

        // Unknown message type: valid MessagePack, a variant nobody knows.
        let unknown = rmp_serde::to_vec_named(&std::collections::BTreeMap::from([(
            "self_destruct",
            ("now", 1u8),
        )]))
        .expect("encodes");
        let mut framed = (unknown.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&unknown);
        assert_eq!(
            code_of(exchange(&connection, &framed).await),
            ErrorCode::MalformedFrame
        );
        assert_unchanged(&client, 1).await;

        // The raw connection itself still works after all of it.
        let list = frame::encode(&Request::ListTopics).expect("encodes");
        assert!(matches!(exchange(&connection, &list).await, Ok(Reply::Topics(t)) if t.len() == 1));
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_hello_and_wrong_versions_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (gateway, client) = prepared_node(dir.path()).await;
    bounded(30, async {
        let (_endpoint, connection) = raw_connection(&gateway).await;
        let delete = frame::encode(&Request::DeleteTopic(meshgate_protocol::TopicName {
            name: "kept".into(),
        }))
        .expect("encodes");
        assert_eq!(
            code_of(exchange(&connection, &delete).await),
            ErrorCode::HandshakeRequired
        );
        assert_unchanged(&client, 1).await;

        let (_endpoint, connection) = raw_connection(&gateway).await;
        assert_eq!(
            code_of(exchange(&connection, &hello(PROTOCOL_VERSION + 1)).await),
            ErrorCode::UnsupportedVersion
        );
        // A refused hello does not count as one.
        assert_eq!(
            code_of(exchange(&connection, &delete).await),
            ErrorCode::HandshakeRequired
        );
        assert_unchanged(&client, 1).await;
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_exact_codes_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (gateway, client) = prepared_node(dir.path()).await;
    bounded(30, async {
        assert_eq!(
            client_code(client.describe_topic("missing").await),
            ErrorCode::UnknownTopic
        );
        let produce = |topic: &str, partition: u32, value: Vec<u8>| Produce {
            topic: topic.into(),
            partition,
            records: vec![ProduceRecord {
                value: value.into(),
                ..ProduceRecord::default()
            }],
            acks: Acks::Local,
            producer: None,
        };
        assert_eq!(
            client_code(client.produce(produce("missing", 0, b"v".to_vec())).await),
            ErrorCode::UnknownTopic
        );
        assert_unchanged(&client, 1).await;

        for name in ["", &"x".repeat(250), "bad name!", "a/b", ".."] {
            assert_eq!(
                client_code(client.create_topic(name, topic(1)).await),
                ErrorCode::InvalidName,
                "name {name:?}"
            );
        }
        assert_unchanged(&client, 1).await;

        assert_eq!(
            client_code(client.produce(produce("kept", 5, b"v".to_vec())).await),
            ErrorCode::InvalidPartition
        );
        let fetch = |partition, offset| Fetch {
            topic: "kept".into(),
            partition,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        };
        assert_eq!(
            client_code(client.fetch(fetch(5, 0)).await),
            ErrorCode::InvalidPartition
        );
        assert_eq!(
            client_code(client.fetch(fetch(0, 100)).await),
            ErrorCode::OffsetOutOfRange
        );
        assert_unchanged(&client, 1).await;

        // 2 MiB: above the 1 MiB record limit, below the 16 MiB frame limit.
        assert_eq!(
            client_code(client.produce(produce("kept", 0, vec![7; 2 << 20])).await),
            ErrorCode::RecordTooLarge
        );
        let producer =
            meshgate_client::Producer::new(client.clone(), Default::default()).expect("producer");
        let refused = producer
            .send_and_wait(ProducerRecord::new("kept", vec![7; 2 << 20]))
            .await;
        assert_eq!(client_code(refused), ErrorCode::RecordTooLarge);
        assert_unchanged(&client, 1).await;

        // And a normal request still works.
        let fine = producer
            .send_and_wait(ProducerRecord::new("kept", "fine"))
            .await
            .expect("normal produce");
        assert_eq!(fine.offset, 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_unchanged(&client, 2).await;
    })
    .await;
    gateway.stop().await;
}
