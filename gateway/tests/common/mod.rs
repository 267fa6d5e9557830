//! Shared helpers of the black-box tests: real gateways on 127.0.0.1 port 0
//! with certificates from one test CA, and small clients over the node's
//! request dispatcher.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset of these helpers

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshgate_federation::membership::MembershipConfig;
use meshgate_federation::transport::{ClusterCa, NodeName};
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;
use meshgate_gateway::mirror::MirrorConfig;
use meshgate_protocol::{Acks, CreateTopic, Produce, ProduceRecord, Reply, Request, TopicSettings};
use meshgate_storage::StoredRecord;

/// A temporary cluster CA that issues node certificates.
pub struct TestCa {
    pub ca: ClusterCa,
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new(root: &Path) -> Self {
        let dir = root.join("ca");
        let ca = ClusterCa::generate().expect("CA");
        ca.save(&dir).expect("saves CA");
        Self { ca, dir }
    }

    /// A configuration for node `node` of `region` with data under `root`,
    /// every port 0, fast timings, certificates from this CA.
    pub fn config(
        &self,
        root: &Path,
        node: &str,
        region: &str,
        seeds: Vec<String>,
    ) -> GatewayConfig {
        let base = root.join(node);
        let certs = base.join("certs");
        std::fs::create_dir_all(&certs).expect("cert dir");
        let name = NodeName::parse(node).expect("valid node name");
        let cert = self
            .ca
            .issue_node_cert(&name, &["127.0.0.1".into()])
            .expect("issues");
        cert.save(&certs).expect("saves");
        let mut config = GatewayConfig {
            node_id: Some(node.into()),
            region: region.into(),
            data_dir: base.join("data"),
            seeds,
            membership: MembershipConfig::fast(),
            mirror: MirrorConfig {
                reconcile_ms: 200,
                heads_ms: 200,
                idle_ms: 100,
                retry_initial_ms: 50,
                retry_max_ms: 500,
                ack_timeout_ms: 5_000,
                ..MirrorConfig::default()
            },
            ..GatewayConfig::default()
        };
        config.use_ephemeral_ports();
        config.tls.ca_cert = Some(self.dir.join("ca.pem"));
        config.tls.cert = Some(certs.join("node.pem"));
        config.tls.key = Some(certs.join("node.key"));
        config
    }
}

/// Polls `condition` every 50 ms for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sends a request to a gateway's dispatcher and unwraps the reply.
pub async fn call(gateway: &Gateway, request: Request) -> Reply {
    let kind = request.kind();
    match gateway.node().handle(request).await {
        Ok(reply) => reply,
        Err(error) => panic!("{kind} failed: {error}"),
    }
}

pub async fn create_topic(gateway: &Gateway, name: &str, partitions: u32) {
    call(
        gateway,
        Request::CreateTopic(CreateTopic {
            name: name.into(),
            settings: TopicSettings {
                partitions,
                ..TopicSettings::default()
            },
        }),
    )
    .await;
}

/// Produces `values` to one partition, one request each.
pub async fn produce(gateway: &Gateway, topic: &str, partition: u32, values: &[String]) {
    for value in values {
        call(
            gateway,
            Request::Produce(Produce {
                topic: topic.into(),
                partition,
                records: vec![ProduceRecord {
                    key: None,
                    value: value.clone().into(),
                    headers: Vec::new(),
                }],
                acks: Acks::Local,
                producer: None,
            }),
        )
        .await;
    }
}

/// Every visible record of a partition, read straight from the log.
pub fn records(gateway: &Gateway, topic: &str, partition: u32) -> Vec<StoredRecord> {
    let Ok(topic) = gateway.node().topics().get(topic) else {
        return Vec::new();
    };
    let log = topic.partition(partition).expect("partition").clone();
    let mut offset = log.lock().start_offset();
    let mut all = Vec::new();
    loop {
        let chunk = log.read(offset, 1 << 20).expect("reads");
        if chunk.bytes.is_empty() {
            return all;
        }
        all.extend(chunk.records_from(offset).expect("decodes"));
        offset = chunk.next_offset;
    }
}

/// The values of one origin region's records, in log order.
pub fn origin_values(records: &[StoredRecord], region: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.origin.stream.region.as_str() == region)
        .map(|r| String::from_utf8_lossy(&r.record.value).to_string())
        .collect()
}
