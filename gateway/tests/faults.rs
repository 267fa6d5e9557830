//! Operator mistakes and failing machines: a certificate from the wrong CA
//! or a missing key file, a seed that does not answer, a full data volume.
//! Each gives a clear, typed error; no gateway crashes; nothing
//! acknowledged is lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestCa, call, create_topic, records};
use meshgate_gateway::clock::SystemClock;
use meshgate_gateway::gateway::{Environment, Gateway};
use meshgate_gateway::net::RealNetwork;
use meshgate_protocol::{Acks, ErrorCode, Produce, ProduceRecord, Reply, Request};
use meshgate_storage::MemFs;

#[tokio::test]
async fn a_certificate_of_another_ca_or_a_missing_key_stops_start_up_naming_the_problem() {
    let root = tempfile::tempdir().expect("temp dir");
    let ours = TestCa::new(root.path());
    let theirs = TestCa::new(&root.path().join("other"));

    let mut config = ours.config(root.path(), "use-1", "us-east", Vec::new());
    config.tls.ca_cert = Some(theirs.dir.join("ca.pem"));
    let error = Gateway::start(config)
        .await
        .expect_err("a certificate another CA issued is refused")
        .to_string();
    assert!(error.contains("not issued by"), "{error}");

    let mut config = ours.config(root.path(), "use-2", "us-east", Vec::new());
    let key = root.path().join("use-2/certs/missing.key");
    config.tls.key = Some(key.clone());
    let error = Gateway::start(config)
        .await
        .expect_err("a missing key file is refused")
        .to_string();
    assert!(error.contains(&key.display().to_string()), "{error}");
}

#[tokio::test]
async fn a_seed_that_does_not_answer_leaves_the_node_serving_alone() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    // A UDP port nobody listens on: bind one, note it, let it go.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port");
    let config = ca.config(root.path(), "use-1", "us-east", vec![silent.to_string()]);
    let gateway = Gateway::start(config)
        .await
        .expect("starts without its seed");
    create_topic(&gateway, "orders", 1).await;
    common::produce(&gateway, "orders", 0, &["still serving".into()]).await;
    assert_eq!(records(&gateway, "orders", 0).len(), 1);
    let members = gateway.node().members().await;
    assert_eq!(members.len(), 1, "alone: {members:?}");
    gateway.stop().await;
}

fn produce(value: String) -> Request {
    Request::Produce(Produce {
        topic: "orders".into(),
        partition: 0,
        records: vec![ProduceRecord {
            key: None,
            value: value.into(),
            headers: Vec::new(),
        }],
        acks: Acks::Local,
        producer: None,
    })
}

#[tokio::test]
async fn a_full_data_volume_refuses_writes_with_a_typed_error_and_keeps_what_was_acknowledged() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let fs = MemFs::new();
    let environment = Environment {
        fs: Arc::new(fs.clone()),
        clock: Arc::new(SystemClock),
        network: Arc::new(RealNetwork),
        seed: 7,
        certificates: None,
    };
    let config = ca.config(root.path(), "use-1", "us-east", Vec::new());
    let gateway = Gateway::start_with(config, environment)
        .await
        .expect("starts");
    create_topic(&gateway, "orders", 1).await;
    // Room for a few more records, then the volume is full.
    fs.set_stored_bytes_max(Some(fs.used_bytes() + 2_000));
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for index in 0..200 {
        let value = format!("order-{index:03}-{}", "x".repeat(100));
        match gateway.node().handle(produce(value.clone())).await {
            Ok(Reply::Produced(_)) => acknowledged.push(value),
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
    }
    let refusal = refusal.expect("the volume fills up");
    assert_eq!(refusal.code, ErrorCode::PartitionUnavailable, "{refusal}");
    assert!(refusal.message.contains("no space"), "{refusal}");
    assert!(!acknowledged.is_empty(), "some records fitted");

    // The node still answers, and holds exactly what it acknowledged.
    let held: Vec<String> = records(&gateway, "orders", 0)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect();
    assert_eq!(held, acknowledged);
    let again = gateway.node().handle(produce("still full".into())).await;
    assert_eq!(
        again.expect_err("still full").code,
        ErrorCode::PartitionUnavailable
    );

    // Room again: writes work without a restart.
    fs.set_stored_bytes_max(None);
    let Reply::Produced(_) = call(&gateway, produce("after".into())).await else {
        panic!("not a produce reply");
    };
    assert_eq!(records(&gateway, "orders", 0).len(), acknowledged.len() + 1);
    tokio::time::timeout(Duration::from_secs(10), gateway.stop())
        .await
        .expect("stops");
}
