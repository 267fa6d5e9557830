//! Mirroring between real gateways on 127.0.0.1: active-active producers,
//! topologies, a region killed and restarted, exact group failover,
//! `mirrored(k)` acknowledgements, conflicts and bad pull requests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{TestCa, call, create_topic, eventually, origin_values, produce, records};
use meshgate_gateway::gateway::Gateway;
use meshgate_protocol::{
    Acks, CommitOffsets, ErrorCode, FetchOffsets, GroupProtocol, JoinGroup, MirrorRuleSpec,
    PartitionOffset, Produce, ProduceRecord, Reply, Request, SyncGroup, TopicPartitions,
    decode_assignment, encode_subscription, vector_from_entries,
};
use meshgate_storage::VersionVector;

const REGIONS: [(&str, &str); 3] = [
    ("use-1", "us-east"),
    ("euw-1", "eu-west"),
    ("aps-1", "ap-south"),
];

async fn start_regions(
    ca: &TestCa,
    root: &std::path::Path,
    layout: &[(&str, &str)],
) -> Vec<Gateway> {
    let first = Gateway::start(ca.config(root, layout[0].0, layout[0].1, vec![]))
        .await
        .expect("first region starts");
    let seed = first.cluster().addresses().gossip.to_string();
    let mut gateways = vec![first];
    for (node, region) in &layout[1..] {
        let gateway = Gateway::start(ca.config(root, node, region, vec![seed.clone()]))
            .await
            .expect("region starts");
        gateways.push(gateway);
    }
    let count = layout.len();
    let converged = eventually(Duration::from_secs(10), || async {
        for gateway in &gateways {
            let members = gateway.node().members().await;
            if members.iter().filter(|m| m.state == "alive").count() != count {
                return false;
            }
        }
        true
    })
    .await;
    assert!(converged, "regions see each other");
    gateways
}

fn rule(name: &str, topics: &str, regions: &[&str], topology: &str) -> MirrorRuleSpec {
    MirrorRuleSpec {
        name: name.into(),
        topics: topics.into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        topology: topology.into(),
        filter_header: None,
        filter_key_prefix: None,
    }
}

async fn add_rule(gateway: &Gateway, spec: MirrorRuleSpec) {
    call(gateway, Request::AddMirrorRule(spec)).await;
}

/// Waits until every gateway holds, for every partition, exactly the
/// expected values of each origin region, in order.
async fn converged(
    gateways: &[&Gateway],
    topic: &str,
    expected: &BTreeMap<(u32, String), Vec<String>>,
    limit: Duration,
) -> bool {
    eventually(limit, || async {
        for gateway in gateways {
            for ((partition, region), values) in expected {
                if origin_values(&records(gateway, topic, *partition), region) != *values {
                    return false;
                }
            }
        }
        true
    })
    .await
}

fn values(region: &str, partition: u32, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{region}-{partition}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_in_three_regions_converge_on_every_origin_stream_in_order() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let gateways = start_regions(&ca, root.path(), &REGIONS).await;
    create_topic(&gateways[0], "orders", 3).await;
    add_rule(
        &gateways[0],
        rule(
            "orders-all",
            "orders*",
            &["us-east", "eu-west", "ap-south"],
            "full-mesh",
        ),
    )
    .await;
    let created = eventually(Duration::from_secs(10), || async {
        gateways
            .iter()
            .all(|g| g.node().topics().get("orders").is_ok())
    })
    .await;
    assert!(
        created,
        "the mirrored topic is created in every region with the same incarnation"
    );
    let incarnations: BTreeSet<u64> = gateways
        .iter()
        .map(|g| {
            g.node()
                .topics()
                .get("orders")
                .expect("exists")
                .incarnation()
                .0
        })
        .collect();
    assert_eq!(incarnations.len(), 1);

    let mut expected = BTreeMap::new();
    let mut producers = Vec::new();
    for (index, (_, region)) in REGIONS.iter().enumerate() {
        for partition in 0..3 {
            let batch = values(region, partition, 0..40);
            expected.insert((partition, region.to_string()), batch.clone());
            let node = gateways[index].node().clone();
            producers.push(tokio::spawn(async move {
                for value in batch {
                    let request = Request::Produce(Produce {
                        topic: "orders".into(),
                        partition,
                        records: vec![ProduceRecord {
                            key: None,
                            value: value.into(),
                            headers: vec![],
                        }],
                        acks: Acks::Local,
                        producer: None,
                    });
                    node.handle(request).await.expect("produces");
                }
            }));
        }
    }
    for producer in producers {
        producer.await.expect("producer");
    }
    let all: Vec<&Gateway> = gateways.iter().collect();
    assert!(
        converged(&all, "orders", &expected, Duration::from_secs(20)).await,
        "every region holds every origin stream completely and in order"
    );
    // No duplicates: each log holds exactly 3 regions x 40 records per partition.
    for gateway in &gateways {
        for partition in 0..3 {
            assert_eq!(records(gateway, "orders", partition).len(), 120);
        }
    }
    let status = match call(&gateways[1], Request::MirrorStatus).await {
        Reply::MirrorStatus(status) => status,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        status.len(),
        3 * 2,
        "eu-west pulls 3 partitions from 2 regions"
    );
    assert!(
        status.iter().all(|link| link.state == "pulling"),
        "{status:?}"
    );
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_carries_the_first_region_s_records_to_the_last_while_the_first_is_down() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let mut gateways = start_regions(&ca, root.path(), &REGIONS).await;
    create_topic(&gateways[0], "orders", 1).await;
    add_rule(
        &gateways[0],
        rule(
            "chain",
            "orders",
            &["us-east", "eu-west", "ap-south"],
            "chain:us-east,eu-west,ap-south",
        ),
    )
    .await;
    let from_a = values("us-east", 0, 0..60);
    produce(&gateways[0], "orders", 0, &from_a).await;
    // eu-west, the middle of the chain, gets them from us-east ...
    let expected_b = BTreeMap::from([((0, "us-east".to_string()), from_a.clone())]);
    assert!(
        converged(
            &[&gateways[1]],
            "orders",
            &expected_b,
            Duration::from_secs(15)
        )
        .await
    );
    // ... then us-east goes down for good.
    let a = gateways.remove(0);
    a.kill().await;
    // The survivors keep producing.
    let from_b = values("eu-west", 0, 0..20);
    let from_c = values("ap-south", 0, 0..20);
    produce(&gateways[0], "orders", 0, &from_b).await;
    produce(&gateways[1], "orders", 0, &from_c).await;
    let expected = BTreeMap::from([
        ((0, "us-east".to_string()), from_a.clone()),
        ((0, "eu-west".to_string()), from_b),
        ((0, "ap-south".to_string()), from_c),
    ]);
    assert!(
        converged(
            &[&gateways[0], &gateways[1]],
            "orders",
            &expected,
            Duration::from_secs(15)
        )
        .await,
        "ap-south gets us-east's records from eu-west with us-east down"
    );
    // No loops, no duplicates: each record once.
    for gateway in &gateways {
        let all = records(gateway, "orders", 0);
        let unique: BTreeSet<(String, u64)> = all
            .iter()
            .map(|r| (r.origin.stream.region.to_string(), r.origin.seq.0))
            .collect();
        assert_eq!(unique.len(), all.len(), "no record twice");
    }
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_region_restarts_from_its_data_and_converges_without_duplicates() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let layout = &REGIONS[..2];
    let mut gateways = start_regions(&ca, root.path(), layout).await;
    create_topic(&gateways[0], "events", 2).await;
    add_rule(
        &gateways[0],
        rule("events", "events", &["us-east", "eu-west"], ""),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gateways[1].node().topics().get("events").is_ok()
        })
        .await
    );
    for partition in 0..2 {
        produce(
            &gateways[0],
            "events",
            partition,
            &values("us-east", partition, 0..30),
        )
        .await;
        produce(
            &gateways[1],
            "events",
            partition,
            &values("eu-west", partition, 0..30),
        )
        .await;
    }
    // Kill eu-west in the middle of the stream; us-east keeps producing.
    let b = gateways.remove(1);
    b.kill().await;
    for partition in 0..2 {
        produce(
            &gateways[0],
            "events",
            partition,
            &values("us-east", partition, 30..60),
        )
        .await;
    }
    // us-east knows what eu-west lacks while eu-west is away: at least the
    // 30 records of each partition produced since.
    let lag_of_eu_west = |gateway: &Gateway| {
        let node = gateway.node().clone();
        async move {
            let Ok(Reply::MirrorFollowers(followers)) = node.handle(Request::MirrorFollowers).await
            else {
                panic!("not a followers reply");
            };
            followers
                .iter()
                .filter(|f| f.region == "eu-west" && f.topic == "events")
                .flat_map(|f| &f.origins)
                .filter(|o| o.origin == "us-east")
                .map(|o| o.lag_records.unwrap_or(0))
                .collect::<Vec<u64>>()
        }
    };
    let eu_west_connected = |gateway: &Gateway| {
        let node = gateway.node().clone();
        async move {
            let Ok(Reply::MirrorFollowers(followers)) = node.handle(Request::MirrorFollowers).await
            else {
                panic!("not a followers reply");
            };
            followers
                .iter()
                .any(|f| f.region == "eu-west" && f.connected)
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            !eu_west_connected(&gateways[0]).await
        })
        .await,
        "the killed region shows as disconnected"
    );
    let lag = lag_of_eu_west(&gateways[0]).await;
    assert!(lag.len() == 2 && lag.iter().all(|l| *l >= 30), "{lag:?}");
    let seed = gateways[0].cluster().addresses().gossip.to_string();
    let restarted = Gateway::start(ca.config(root.path(), "euw-1", "eu-west", vec![seed]))
        .await
        .expect("restarts on its data");
    for partition in 0..2 {
        produce(
            &restarted,
            "events",
            partition,
            &values("eu-west", partition, 30..50),
        )
        .await;
    }
    gateways.push(restarted);
    let mut expected = BTreeMap::new();
    for partition in 0..2 {
        expected.insert(
            (partition, "us-east".to_string()),
            values("us-east", partition, 0..60),
        );
        expected.insert(
            (partition, "eu-west".to_string()),
            values("eu-west", partition, 0..50),
        );
    }
    let both: Vec<&Gateway> = gateways.iter().collect();
    assert!(
        converged(&both, "events", &expected, Duration::from_secs(20)).await,
        "both regions converge"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            lag_of_eu_west(&gateways[0]).await == [0, 0]
        })
        .await,
        "caught up: {:?}",
        lag_of_eu_west(&gateways[0]).await
    );
    for gateway in &gateways {
        for partition in 0..2 {
            assert_eq!(
                records(gateway, "events", partition).len(),
                110,
                "no duplicates"
            );
        }
    }
    for gateway in gateways {
        gateway.stop().await;
    }
}

/// Produces in both regions while the rule is off, then turns it back on:
/// each region's log holds its own records first, so the two logs
/// interleave the origins differently and a resume offset alone would
/// repeat or skip records.
async fn produce_apart(gateways: &[Gateway]) -> BTreeMap<(u32, String), Vec<String>> {
    call(
        &gateways[0],
        Request::RemoveMirrorRule(meshgate_protocol::RuleName {
            name: "orders".into(),
        }),
    )
    .await;
    // Wait until no puller runs any more.
    let stopped = eventually(Duration::from_secs(10), || async {
        for gateway in gateways {
            let Reply::MirrorStatus(status) = call(gateway, Request::MirrorStatus).await else {
                return false;
            };
            if !status.is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(stopped, "pulls stop with the rule");
    let mut expected = BTreeMap::new();
    for partition in 0..2 {
        produce(
            &gateways[0],
            "orders",
            partition,
            &values("us-east", partition, 0..50),
        )
        .await;
        produce(
            &gateways[1],
            "orders",
            partition,
            &values("eu-west", partition, 0..30),
        )
        .await;
        expected.insert(
            (partition, "us-east".to_string()),
            values("us-east", partition, 0..50),
        );
        expected.insert(
            (partition, "eu-west".to_string()),
            values("eu-west", partition, 0..30),
        );
    }
    add_rule(
        &gateways[0],
        rule("orders", "orders", &["us-east", "eu-west"], ""),
    )
    .await;
    expected
}

/// A minimal group consumer over the dispatcher: joins, gets its
/// partitions, resumes from the committed vector, skips what the vector
/// says was consumed.
struct Consumer<'a> {
    gateway: &'a Gateway,
    group: String,
    member_id: String,
    generation: u32,
    partitions: Vec<u32>,
}

impl<'a> Consumer<'a> {
    async fn join(gateway: &'a Gateway, group: &str, topic: &str) -> Consumer<'a> {
        let join = JoinGroup {
            group: group.into(),
            member_id: None,
            client_id: "test".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: encode_subscription(&[topic.to_string()]),
            }],
        };
        let Reply::Joined(joined) = call(gateway, Request::JoinGroup(join)).await else {
            panic!("join")
        };
        let sync = SyncGroup {
            group: group.into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: vec![],
        };
        let Reply::Synced(bytes) = call(gateway, Request::SyncGroup(sync)).await else {
            panic!("sync")
        };
        let assignment = decode_assignment(&bytes).expect("node assignment");
        Consumer {
            gateway,
            group: group.into(),
            member_id: joined.member_id,
            generation: joined.generation,
            partitions: assignment
                .iter()
                .flat_map(|tp| tp.partitions.clone())
                .collect(),
        }
    }

    /// Where to resume and what is consumed already, per partition.
    async fn positions(&self, topic: &str) -> BTreeMap<u32, (u64, VersionVector)> {
        let request = FetchOffsets {
            group: self.group.clone(),
            partitions: Some(vec![TopicPartitions {
                topic: topic.into(),
                partitions: self.partitions.clone(),
            }]),
        };
        let Reply::CommittedOffsets(offsets) =
            call(self.gateway, Request::FetchOffsets(request)).await
        else {
            panic!("offsets")
        };
        offsets
            .into_iter()
            .map(|o| {
                (
                    o.partition,
                    (
                        o.offset.unwrap_or(0),
                        vector_from_entries(&o.vector).expect("vector"),
                    ),
                )
            })
            .collect()
    }

    /// Consumes up to `limit` records per partition, committing after each.
    async fn consume(&self, topic: &str, limit: usize, delivered: &mut Vec<(u32, String, u64)>) {
        for (partition, (offset, consumed)) in self.positions(topic).await {
            let mut taken = 0;
            for record in records(self.gateway, topic, partition)
                .into_iter()
                .filter(|r| r.offset.0 >= offset)
            {
                if taken == limit {
                    break;
                }
                if record.origin.seq.0 < consumed.get(&record.origin.stream) {
                    continue;
                }
                delivered.push((
                    partition,
                    record.origin.stream.region.to_string(),
                    record.origin.seq.0,
                ));
                taken += 1;
                let commit = CommitOffsets {
                    group: self.group.clone(),
                    member: Some((self.generation, self.member_id.clone())),
                    offsets: vec![PartitionOffset {
                        topic: topic.into(),
                        partition,
                        offset: record.offset.0 + 1,
                    }],
                };
                call(self.gateway, Request::CommitOffsets(commit)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fails_over_to_another_region_with_nothing_lost_or_repeated() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let mut gateways = start_regions(&ca, root.path(), &REGIONS[..2]).await;
    create_topic(&gateways[0], "orders", 2).await;
    add_rule(
        &gateways[0],
        rule("orders", "orders", &["us-east", "eu-west"], ""),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gateways[1].node().topics().get("orders").is_ok()
        })
        .await
    );
    let expected = produce_apart(&gateways).await;
    let both: Vec<&Gateway> = gateways.iter().collect();
    assert!(converged(&both, "orders", &expected, Duration::from_secs(20)).await);

    let mut delivered = Vec::new();
    {
        let consumer = Consumer::join(&gateways[0], "billing", "orders").await;
        assert_eq!(consumer.partitions, vec![0, 1]);
        consumer.consume("orders", 40, &mut delivered).await;
    }
    assert_eq!(
        delivered.len(),
        80,
        "half of the 160 records processed in us-east"
    );
    let a = gateways.remove(0);
    a.kill().await;

    let b = &gateways[0];
    let consumer = Consumer::join(b, "billing", "orders").await;
    consumer.consume("orders", usize::MAX, &mut delivered).await;
    let unique: BTreeSet<&(u32, String, u64)> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "no record delivered twice");
    let mut all = BTreeSet::new();
    for partition in 0..2 {
        for record in records(b, "orders", partition) {
            all.insert((
                partition,
                record.origin.stream.region.to_string(),
                record.origin.seq.0,
            ));
        }
    }
    let delivered: BTreeSet<(u32, String, u64)> = delivered.into_iter().collect();
    assert_eq!(
        delivered, all,
        "the union of deliveries is the topic, record by record"
    );
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_acks_wait_for_other_regions_and_time_out_clearly() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let gateways = start_regions(&ca, root.path(), &REGIONS).await;
    create_topic(&gateways[0], "payments", 1).await;
    add_rule(
        &gateways[0],
        rule(
            "payments",
            "payments",
            &["us-east", "eu-west", "ap-south"],
            "",
        ),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gateways
                .iter()
                .all(|g| g.node().topics().get("payments").is_ok())
        })
        .await
    );
    let produce = |acks| {
        Request::Produce(Produce {
            topic: "payments".into(),
            partition: 0,
            records: vec![ProduceRecord {
                key: None,
                value: "p".into(),
                headers: vec![],
            }],
            acks,
            producer: None,
        })
    };
    let reply = gateways[0].node().handle(produce(Acks::Mirrored(2))).await;
    assert!(matches!(reply, Ok(Reply::Produced(_))), "{reply:?}");
    for gateway in &gateways[1..] {
        assert_eq!(
            records(gateway, "payments", 0).len(),
            1,
            "held by both other regions on return"
        );
    }
    let error = gateways[0]
        .node()
        .handle(produce(Acks::Mirrored(3)))
        .await
        .expect_err("only two others exist");
    assert_eq!(error.code, ErrorCode::Timeout);
    assert!(
        error.message.contains("only 2 of the 3"),
        "{}",
        error.message
    );
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_count_mismatch_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let gateways = start_regions(&ca, root.path(), &REGIONS[..2]).await;
    create_topic(&gateways[0], "orders", 3).await;
    create_topic(&gateways[1], "orders", 2).await;
    add_rule(
        &gateways[0],
        rule("orders", "orders", &["us-east", "eu-west"], ""),
    )
    .await;
    // Both regions defined the topic; the definition that wins the cluster
    // configuration is kept, and the other region reports the conflict.
    let mut conflicted = None;
    for _ in 0..200 {
        for (index, gateway) in gateways.iter().enumerate() {
            let Ok(Reply::MirrorStatus(status)) =
                gateway.node().handle(Request::MirrorStatus).await
            else {
                continue;
            };
            let reports = status.iter().any(|link| {
                link.state == "conflict"
                    && link
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("partitions here and"))
            });
            if reports {
                conflicted = Some(index);
            }
        }
        if conflicted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loser =
        &gateways[conflicted.expect("the losing region reports the partition-count conflict")];
    let (here, there) = if loser.node().region().as_str() == "us-east" {
        (3, 2)
    } else {
        (2, 3)
    };
    // A rule that would mirror the conflicting topic is refused where the
    // conflict is known, naming both counts.
    let refused = loser
        .node()
        .handle(Request::AddMirrorRule(rule(
            "ord",
            "ord*",
            &["us-east", "eu-west"],
            "",
        )))
        .await
        .expect_err("conflicting partition counts");
    assert_eq!(refused.code, ErrorCode::InvalidArgument);
    let expected = format!("{here} partitions here but {there}");
    assert!(refused.message.contains(&expected), "{}", refused.message);
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pull_requests_are_refused_with_typed_errors() {
    use meshgate_federation::mirror::{PullFrame, PullRequest, RefusalCode};
    use meshgate_federation::transport::{
        NodeName, TransportLimits, bind_endpoint, connect_peer, peer_client_config,
    };
    use meshgate_protocol::{VectorEntry, frame};

    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let gateways = start_regions(&ca, root.path(), &REGIONS[..1]).await;
    create_topic(&gateways[0], "orders", 2).await;
    let incarnation = gateways[0]
        .node()
        .topics()
        .get("orders")
        .expect("exists")
        .incarnation()
        .0;

    let name = NodeName::parse("probe").expect("valid");
    let cert = ca.ca.issue_node_cert(&name, &[]).expect("cert");
    let limits = TransportLimits::default();
    let client = peer_client_config(ca.ca.certificate(), &cert, &limits).expect("client config");
    let endpoint = bind_endpoint(
        "127.0.0.1:0".parse().expect("addr"),
        quinn::EndpointConfig::default(),
        None,
    )
    .expect("endpoint");
    let target = NodeName::parse("use-1").expect("valid");
    let peer = connect_peer(
        &endpoint,
        client,
        gateways[0].cluster().addresses().peer,
        &target,
        Duration::from_secs(5),
    )
    .await
    .expect("connects as a cluster peer");

    let request = |topic: &str,
                   incarnation: u64,
                   partitions: u32,
                   partition: u32,
                   vector: Vec<VectorEntry>| PullRequest {
        version: meshgate_federation::mirror::PULL_PROTOCOL_VERSION,
        region: "probe".into(),
        topic: topic.into(),
        incarnation,
        partitions,
        partition,
        vector,
        filter: Default::default(),
        frame_bytes_max: 1 << 20,
    };
    // A puller keeps its side open for acknowledgements; one that finishes
    // it is gone, and its session ends.
    async fn ask(connection: &quinn::Connection, bytes: Vec<u8>) -> PullFrame {
        let (mut send, mut recv) = connection.open_bi().await.expect("stream");
        tokio::io::AsyncWriteExt::write_all(&mut send, &bytes)
            .await
            .expect("writes");
        match frame::read::<_, PullFrame>(&mut recv, 1 << 20).await {
            Ok(Some(frame)) => frame,
            other => panic!("no answer frame: {other:?}"),
        }
    }
    let encoded = |r: &PullRequest| frame::encode(r).expect("encodes").to_vec();
    let cases = [
        (
            encoded(&request("nope", incarnation, 2, 0, vec![])),
            RefusalCode::UnknownTopic,
        ),
        (
            encoded(&request("orders", incarnation ^ 1, 2, 0, vec![])),
            RefusalCode::IncarnationMismatch,
        ),
        (
            encoded(&request("orders", incarnation, 3, 0, vec![])),
            RefusalCode::PartitionCountMismatch,
        ),
        (
            encoded(&request("orders", incarnation, 2, 7, vec![])),
            RefusalCode::InvalidPartition,
        ),
        (vec![0, 0, 0, 3, 0xc1, 0xc1, 0xc1], RefusalCode::Malformed),
        (vec![0x7f, 0xff, 0xff, 0xff], RefusalCode::Malformed),
    ];
    for (bytes, code) in cases {
        let described = format!("{code:?} for {:?}", &bytes[..bytes.len().min(8)]);
        match ask(peer.connection(), bytes).await {
            PullFrame::Refused(refusal) => assert_eq!(refusal.code, code, "{}", refusal.message),
            other => panic!("expected a refusal ({described}), got {other:?}"),
        }
    }
    // A vector naming an origin the server never heard of is served normally.
    let unknown = vec![VectorEntry {
        region: "mars".into(),
        incarnation,
        count: 10,
    }];
    let frame = ask(
        peer.connection(),
        encoded(&request("orders", incarnation, 2, 0, unknown)),
    )
    .await;
    assert!(
        matches!(frame, PullFrame::Idle { .. } | PullFrame::Batches(_)),
        "{frame:?}"
    );
    // The node still works.
    produce(&gateways[0], "orders", 0, &["after".to_string()]).await;
    assert_eq!(records(&gateways[0], "orders", 0).len(), 1);
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_a_region_got_them_arrive_as_an_explicit_gap() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let a = Gateway::start(ca.config(root.path(), "use-1", "us-east", vec![]))
        .await
        .expect("starts");
    call(
        &a,
        Request::CreateTopic(meshgate_protocol::CreateTopic {
            name: "logs".into(),
            settings: meshgate_protocol::TopicSettings {
                partitions: 1,
                retention_bytes: Some(8 << 10),
                segment_bytes: Some(4 << 10),
                ..Default::default()
            },
        }),
    )
    .await;
    add_rule(&a, rule("logs", "logs", &["us-east", "eu-west"], "")).await;
    let all: Vec<String> = (0..300)
        .map(|i| format!("line-{i:04}-{}", "x".repeat(60)))
        .collect();
    produce(&a, "logs", 0, &all).await;
    a.node().apply_retention();
    let kept = records(&a, "logs", 0);
    let deleted = 300 - kept.len();
    assert!(deleted > 100, "retention deleted old segments: {deleted}");

    let seed = a.cluster().addresses().gossip.to_string();
    let b = Gateway::start(ca.config(root.path(), "euw-1", "eu-west", vec![seed]))
        .await
        .expect("starts");
    let caught_up = eventually(Duration::from_secs(15), || async {
        records(&b, "logs", 0).len() == kept.len()
    })
    .await;
    assert!(caught_up, "eu-west gets everything still retained");
    let got: Vec<_> = records(&b, "logs", 0)
        .into_iter()
        .map(|r| (r.origin.seq, r.record.value))
        .collect();
    let expected: Vec<_> = kept
        .iter()
        .map(|r| (r.origin.seq, r.record.value.clone()))
        .collect();
    assert_eq!(got, expected, "same records, same origin seqs");
    let topic = b.node().topics().get("logs").expect("mirrored");
    let log = topic.partition(0).expect("partition");
    let origin = meshgate_storage::OriginStream {
        region: meshgate_storage::RegionId::parse("us-east").expect("valid"),
        incarnation: topic.incarnation(),
    };
    assert_eq!(
        log.lock().vector().get(&origin),
        300,
        "the gap keeps the origin stream contiguous"
    );
    let Reply::MirrorStatus(status) = call(&b, Request::MirrorStatus).await else {
        panic!("status")
    };
    assert_eq!(status[0].gap_records, deleted as u64, "{status:?}");
    let metrics = b.node().render_metrics().await;
    assert!(
        metrics.contains(&format!("meshgate_mirror_gap_records{{topic=\"logs\",partition=\"0\",source=\"us-east\"}} {deleted}")),
        "{metrics}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_s_group_consumer_fails_over_exactly() {
    use meshgate_client::{Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Trust};

    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let mut gateways = start_regions(&ca, root.path(), &REGIONS[..2]).await;
    create_topic(&gateways[0], "orders", 2).await;
    add_rule(
        &gateways[0],
        rule("orders", "orders", &["us-east", "eu-west"], ""),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gateways[1].node().topics().get("orders").is_ok()
        })
        .await
    );
    let expected = produce_apart(&gateways).await;
    let both: Vec<&Gateway> = gateways.iter().collect();
    assert!(converged(&both, "orders", &expected, Duration::from_secs(20)).await);

    let consumer_config = || ConsumerConfig {
        group: Some("billing".into()),
        reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let client = |gateway: &Gateway| {
        let mut config = ClientConfig::new(
            [gateway.client_address().to_string()],
            Trust::CaPem(gateway.ca_pem().to_string()),
        );
        config.discover = false;
        Client::connect(config)
    };
    let mut delivered: Vec<(u32, String, u64)> = Vec::new();
    {
        let mut consumer = Consumer::new(
            client(&gateways[0]).await.expect("connects"),
            consumer_config(),
        )
        .expect("consumer");
        consumer.subscribe(["orders"]).expect("subscribes");
        // Process 40 records one at a time, committing after each: the first
        // partition is left half consumed, in us-east's order of the log.
        while delivered.len() < 40 {
            let record = consumer.next().await.expect("a record");
            delivered.push((
                record.partition,
                record.origin.stream.region.to_string(),
                record.origin.seq.0,
            ));
            consumer.commit().await.expect("commits after processing");
        }
        consumer.close().await.expect("closes");
    }
    let a = gateways.remove(0);
    a.kill().await;
    let b = &gateways[0];
    let mut consumer =
        Consumer::new(client(b).await.expect("connects"), consumer_config()).expect("consumer");
    consumer.subscribe(["orders"]).expect("subscribes");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while delivered.len() < 160 && tokio::time::Instant::now() < deadline {
        for record in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("polls")
        {
            delivered.push((
                record.partition,
                record.origin.stream.region.to_string(),
                record.origin.seq.0,
            ));
        }
        consumer.commit().await.expect("commits");
    }
    // Nothing more arrives: everything was delivered once.
    let extra = consumer
        .poll(Duration::from_millis(500))
        .await
        .expect("polls");
    assert!(extra.is_empty(), "nothing beyond the topic: {extra:?}");
    let unique: BTreeSet<&(u32, String, u64)> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "no record delivered twice");
    assert_eq!(delivered.len(), 160, "every record delivered");
    for gateway in gateways {
        gateway.stop().await;
    }
}

/// Every region killed in turn after a rule was added: the rule lives on,
/// because each gateway keeps its copy of the cluster configuration on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_rules_survive_every_region_being_killed() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let gateways = start_regions(&ca, root.path(), &REGIONS[..2]).await;
    create_topic(&gateways[0], "events", 1).await;
    let wanted = rule("events", "events", &["us-east", "eu-west"], "");
    add_rule(&gateways[0], wanted.clone()).await;
    for gateway in gateways {
        gateway.kill().await;
    }
    let first = Gateway::start(ca.config(root.path(), "use-1", "us-east", vec![]))
        .await
        .expect("us-east restarts on its data");
    let seed = first.cluster().addresses().gossip.to_string();
    let second = Gateway::start(ca.config(root.path(), "euw-1", "eu-west", vec![seed]))
        .await
        .expect("eu-west restarts on its data");
    for gateway in [&first, &second] {
        let kept = eventually(Duration::from_secs(10), || async {
            let Reply::MirrorRules(rules) = call(gateway, Request::ListMirrorRules).await else {
                return false;
            };
            rules.len() == 1 && rules[0].name == wanted.name
        })
        .await;
        assert!(kept, "{} keeps the rule", gateway.node().node_id());
    }
    first.stop().await;
    second.stop().await;
}
