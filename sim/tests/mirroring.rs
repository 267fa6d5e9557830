//! Mirroring under turmoil, with the real node code on a simulated network
//! and disk: scenarios of gateway/tests/mirror.rs as seeded simulations.
//! Active-active producers across a partition and its heal; a chain whose
//! first region crashes; a region crashed with torn writes and restarted; a
//! consumer group failing over from a crashed region. Every region's copy
//! of an origin stream must be a prefix of the origin's while it runs and
//! equal to it at the end, with nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_gateway::node::Node;
use meshgate_protocol::{
    Acks, CommitOffsets, CreateTopic, FetchOffsets, GroupProtocol, JoinGroup, MirrorRuleSpec,
    PartitionOffset, Produce, ProduceRecord, Reply, Request, SyncGroup, TopicPartitions,
    TopicSettings, decode_assignment, encode_subscription, vector_from_entries,
};
use meshgate_sim::{World, within};
use meshgate_storage::{StoredRecord, VersionVector};

const REGIONS: [(&str, &str); 3] = [
    ("use-1", "us-east"),
    ("euw-1", "eu-west"),
    ("aps-1", "ap-south"),
];
const TOPIC: &str = "orders";

fn node(world: &World, name: &str) -> Arc<Node> {
    world
        .node(name)
        .unwrap_or_else(|| panic!("{name} is running"))
}

/// Sends a request to a running gateway (handled inside its host).
async fn call(world: &World, name: &str, request: Request) -> Reply {
    let kind = request.kind();
    match world.call(name, request).await {
        Some(Ok(reply)) => reply,
        Some(Err(error)) => panic!("{kind} to {name} failed: {error}"),
        None => panic!("{kind} to {name}: the gateway is down"),
    }
}

/// Waits until the three regions see each other, creates `orders` in
/// us-east and mirrors it over all three with `topology`.
async fn mirrored_topic(world: &World, partitions: u32, topology: &str) {
    let alive = within(Duration::from_secs(30), || async {
        for (name, _) in REGIONS {
            let Some(node) = world.node(name) else {
                return false;
            };
            let members = node.members().await;
            if members.iter().filter(|m| m.state == "alive").count() != REGIONS.len() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(alive.is_some(), "three regions converge");
    call(
        world,
        "use-1",
        Request::CreateTopic(CreateTopic {
            name: TOPIC.into(),
            settings: TopicSettings {
                partitions,
                ..TopicSettings::default()
            },
        }),
    )
    .await;
    call(
        world,
        "use-1",
        Request::AddMirrorRule(MirrorRuleSpec {
            name: "orders".into(),
            topics: TOPIC.into(),
            regions: REGIONS.iter().map(|(_, r)| r.to_string()).collect(),
            topology: topology.into(),
            filter_header: None,
            filter_key_prefix: None,
        }),
    )
    .await;
    let everywhere = within(Duration::from_secs(30), || async {
        REGIONS.iter().all(|(name, _)| {
            world
                .node(name)
                .is_some_and(|n| n.topics().get(TOPIC).is_ok())
        })
    })
    .await;
    assert!(everywhere.is_some(), "the topic reaches every region");
    world.record("orders mirrored");
}

/// Produces `values` to one partition, one acknowledged request each.
async fn produce(world: &World, name: &str, partition: u32, values: &[String]) {
    for value in values {
        call(
            world,
            name,
            Request::Produce(Produce {
                topic: TOPIC.into(),
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

fn values(region: &str, partition: u32, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{region}-{partition}-{i}")).collect()
}

/// Every visible record of a partition, read straight from the log.
fn records(node: &Node, partition: u32) -> Vec<StoredRecord> {
    let Ok(topic) = node.topics().get(TOPIC) else {
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

/// The values of each origin region's records in one partition, in log
/// order.
fn streams(node: &Node, partition: u32) -> BTreeMap<String, Vec<String>> {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records(node, partition) {
        streams
            .entry(record.origin.stream.region.to_string())
            .or_default()
            .push(String::from_utf8_lossy(&record.record.value).into_owned());
    }
    streams
}

/// Panics unless every running region's copy of each origin stream is a
/// prefix of what the origin wrote (`written`), holding nothing twice.
fn check_prefixes(world: &World, partitions: u32, written: &BTreeMap<(u32, String), Vec<String>>) {
    for (name, _) in REGIONS {
        let Some(node) = world.node(name) else {
            continue;
        };
        for partition in 0..partitions {
            for (origin, held) in streams(&node, partition) {
                let origin_wrote = written
                    .get(&(partition, origin.clone()))
                    .map_or(&[][..], Vec::as_slice);
                assert!(
                    origin_wrote.starts_with(&held),
                    "{name} partition {partition}: its copy of {origin}'s stream is not a prefix \
                     of what {origin} wrote ({} held, {} written)",
                    held.len(),
                    origin_wrote.len()
                );
            }
        }
    }
}

/// Whether every running region holds exactly `written`.
fn converged(
    world: &World,
    partitions: u32,
    written: &BTreeMap<(u32, String), Vec<String>>,
) -> bool {
    REGIONS.iter().all(|(name, _)| {
        let Some(node) = world.node(name) else {
            return true;
        };
        (0..partitions).all(|partition| {
            let held = streams(&node, partition);
            let wanted: BTreeMap<String, Vec<String>> = written
                .iter()
                .filter(|((p, _), _)| *p == partition)
                .map(|((_, origin), values)| (origin.clone(), values.clone()))
                .collect();
            held == wanted
        })
    })
}

fn simulation(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(300))
        .build()
}

/// A fault a client asks for; the test's stepping loop carries it out
/// (turmoil crashes and restarts hosts from outside the simulation).
enum Fault {
    /// Crash the gateway, with torn writes from this seed when given.
    Crash(&'static str, Option<u64>),
    /// Start a crashed gateway again on its disk.
    Restart(&'static str),
}

/// Faults asked by the simulated clients and how many were carried out.
#[derive(Clone, Default)]
struct Faults {
    asked: Arc<Mutex<Vec<Fault>>>,
    done: Arc<AtomicU64>,
}

impl Faults {
    /// Asks for `fault` and waits (in simulated time) until it happened.
    async fn ask(&self, fault: Fault) {
        let before = self.done.load(Ordering::SeqCst);
        self.asked.lock().expect("faults lock").push(fault);
        let done = &self.done;
        let happened = within(Duration::from_secs(10), || async {
            done.load(Ordering::SeqCst) > before
        })
        .await;
        assert!(happened.is_some(), "the fault was carried out");
    }

    /// Runs the simulation to its end, carrying out faults as asked.
    fn drive(&self, world: &World, sim: &mut turmoil::Sim<'_>) {
        loop {
            let asked = std::mem::take(&mut *self.asked.lock().expect("faults lock"));
            for fault in asked {
                match fault {
                    Fault::Crash(name, torn) => world.crash(sim, name, torn),
                    Fault::Restart(name) => world.restart(sim, name),
                }
                self.done.fetch_add(1, Ordering::SeqCst);
            }
            if sim.step().expect("simulation succeeds") {
                return;
            }
        }
    }
}

/// Active-active producers in three regions; us-east is partitioned from
/// the others half-way through and healed later. Prefixes hold throughout;
/// after the heal every region holds every stream, in order, once.
fn active_active_across_a_partition(seed: u64) -> Vec<String> {
    let world = World::new(seed, World::layout(&REGIONS)).expect("world");
    let mut sim = simulation(seed);
    world.install(&mut sim);
    let test = world.clone();
    sim.client("producers", async move {
        mirrored_topic(&test, 2, "full-mesh").await;
        let mut written = BTreeMap::new();
        for round in 0..2u32 {
            if round == 1 {
                turmoil::partition("use-1", "euw-1");
                turmoil::partition("use-1", "aps-1");
                test.record("us-east partitioned");
            }
            for (name, region) in REGIONS {
                for partition in 0..2 {
                    let batch = values(region, partition, round * 20..(round + 1) * 20);
                    produce(&test, name, partition, &batch).await;
                    written
                        .entry((partition, region.to_string()))
                        .or_insert_with(Vec::new)
                        .extend(batch);
                    check_prefixes(&test, 2, &written);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            check_prefixes(&test, 2, &written);
        }
        turmoil::repair("use-1", "euw-1");
        turmoil::repair("use-1", "aps-1");
        test.record("us-east healed");
        let healed = within(Duration::from_secs(60), || async {
            check_prefixes(&test, 2, &written);
            converged(&test, 2, &written)
        })
        .await;
        assert!(healed.is_some(), "every region converges after the heal");
        test.record(format!(
            "converged {} ms after the heal",
            healed.unwrap_or_default().as_millis()
        ));
        Ok(())
    });
    sim.run().expect("simulation succeeds");
    world.trace().lines()
}

#[test]
fn active_active_producers_converge_after_a_partition_heals() {
    for seed in [1, 2] {
        active_active_across_a_partition(seed);
    }
}

/// Chain us-east -> eu-west -> ap-south; us-east writes, eu-west has it,
/// then us-east crashes for good: ap-south gets us-east's records from
/// eu-west.
#[test]
fn a_chain_carries_the_origin_s_records_on_while_the_origin_is_down() {
    for seed in [4, 5] {
        let world = World::new(seed, World::layout(&REGIONS)).expect("world");
        let mut sim = simulation(seed);
        world.install(&mut sim);
        let faults = Faults::default();
        let (test, asks) = (world.clone(), faults.clone());
        sim.client("producer", async move {
            mirrored_topic(&test, 1, "chain:us-east,eu-west,ap-south").await;
            let from_origin = values("us-east", 0, 0..40);
            produce(&test, "use-1", 0, &from_origin).await;
            let written = BTreeMap::from([((0, "us-east".to_string()), from_origin)]);
            let middle = within(Duration::from_secs(30), || async {
                streams(&node(&test, "euw-1"), 0).get("us-east")
                    == written.get(&(0, "us-east".into()))
            })
            .await;
            assert!(middle.is_some(), "eu-west holds us-east's records");
            // ap-south pulls from eu-west only, and only after us-east is
            // gone (eu-west got the records before it crashed).
            asks.ask(Fault::Crash("use-1", None)).await;
            let last = within(Duration::from_secs(60), || async {
                check_prefixes(&test, 1, &written);
                streams(&node(&test, "aps-1"), 0).get("us-east")
                    == written.get(&(0, "us-east".into()))
            })
            .await;
            assert!(
                last.is_some(),
                "ap-south gets us-east's records through eu-west"
            );
            Ok(())
        });
        faults.drive(&world, &mut sim);
    }
}

/// us-east crashes with torn writes right after producing and restarts on
/// what its disk kept while eu-west keeps producing. Every record us-east
/// acknowledged is still there, and all regions converge.
#[test]
fn a_region_crashed_with_torn_writes_restarts_and_converges() {
    for seed in [6, 7] {
        let world = World::new(seed, World::layout(&REGIONS)).expect("world");
        let mut sim = simulation(seed);
        world.install(&mut sim);
        let faults = Faults::default();
        let (test, asks) = (world.clone(), faults.clone());
        sim.client("producers", async move {
            mirrored_topic(&test, 1, "full-mesh").await;
            let acked = values("us-east", 0, 0..30);
            produce(&test, "use-1", 0, &acked).await;
            asks.ask(Fault::Crash("use-1", Some(seed))).await;
            let during = values("eu-west", 0, 0..30);
            produce(&test, "euw-1", 0, &during).await;
            asks.ask(Fault::Restart("use-1")).await;
            let back = within(Duration::from_secs(30), || async {
                test.node("use-1").is_some()
            })
            .await;
            assert!(back.is_some(), "us-east restarts");
            assert_eq!(
                streams(&node(&test, "use-1"), 0).get("us-east"),
                Some(&acked),
                "every record us-east acknowledged survives the crash"
            );
            let after = values("us-east", 0, 30..40);
            produce(&test, "use-1", 0, &after).await;
            let written = BTreeMap::from([
                (
                    (0, "us-east".to_string()),
                    acked.into_iter().chain(after).collect(),
                ),
                ((0, "eu-west".to_string()), during),
            ]);
            let healed = within(Duration::from_secs(60), || async {
                check_prefixes(&test, 1, &written);
                converged(&test, 1, &written)
            })
            .await;
            assert!(healed.is_some(), "every region converges after the restart");
            Ok(())
        });
        faults.drive(&world, &mut sim);
    }
}

/// A group member over a gateway's dispatcher: joins, resumes from the
/// committed vector, skips what it says was consumed, commits after each
/// record.
struct Member {
    world: World,
    name: &'static str,
    member_id: String,
    generation: u32,
    partitions: Vec<u32>,
}

impl Member {
    async fn join(world: &World, name: &'static str) -> Member {
        let join = JoinGroup {
            group: "billing".into(),
            member_id: None,
            client_id: "sim".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: encode_subscription(&[TOPIC.to_string()]),
            }],
        };
        let Reply::Joined(joined) = call(world, name, Request::JoinGroup(join)).await else {
            panic!("join")
        };
        let sync = SyncGroup {
            group: "billing".into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: vec![],
        };
        let Reply::Synced(bytes) = call(world, name, Request::SyncGroup(sync)).await else {
            panic!("sync")
        };
        let assignment = decode_assignment(&bytes).expect("assignment");
        world.record(format!(
            "{name}: joined billing generation {}",
            joined.generation
        ));
        Member {
            world: world.clone(),
            name,
            member_id: joined.member_id,
            generation: joined.generation,
            partitions: assignment
                .iter()
                .flat_map(|tp| tp.partitions.clone())
                .collect(),
        }
    }

    async fn positions(&self) -> BTreeMap<u32, (u64, VersionVector)> {
        let request = FetchOffsets {
            group: "billing".into(),
            partitions: Some(vec![TopicPartitions {
                topic: TOPIC.into(),
                partitions: self.partitions.clone(),
            }]),
        };
        let Reply::CommittedOffsets(offsets) =
            call(&self.world, self.name, Request::FetchOffsets(request)).await
        else {
            panic!("offsets")
        };
        offsets
            .into_iter()
            .map(|o| {
                let vector = vector_from_entries(&o.vector).expect("vector");
                (o.partition, (o.offset.unwrap_or(0), vector))
            })
            .collect()
    }

    /// Consumes up to `limit` records per partition.
    async fn consume(&self, limit: usize, delivered: &mut Vec<(u32, String, u64)>) {
        for (partition, (offset, consumed)) in self.positions().await {
            let pending: Vec<StoredRecord> = records(&node(&self.world, self.name), partition)
                .into_iter()
                .filter(|r| r.offset.0 >= offset)
                .filter(|r| r.origin.seq.0 >= consumed.get(&r.origin.stream))
                .take(limit)
                .collect();
            for record in pending {
                delivered.push((
                    partition,
                    record.origin.stream.region.to_string(),
                    record.origin.seq.0,
                ));
                let commit = CommitOffsets {
                    group: "billing".into(),
                    member: Some((self.generation, self.member_id.clone())),
                    offsets: vec![PartitionOffset {
                        topic: TOPIC.into(),
                        partition,
                        offset: record.offset.0 + 1,
                    }],
                };
                call(&self.world, self.name, Request::CommitOffsets(commit)).await;
            }
        }
    }
}

/// Group `billing` consumes half the topic in us-east, us-east crashes, the
/// group finishes in eu-west: every record exactly once.
#[test]
fn a_group_fails_over_between_regions_with_nothing_lost_or_twice() {
    for seed in [8, 9] {
        let world = World::new(seed, World::layout(&REGIONS)).expect("world");
        let mut sim = simulation(seed);
        world.install(&mut sim);
        let faults = Faults::default();
        let (test, asks) = (world.clone(), faults.clone());
        sim.client("consumers", async move {
            mirrored_topic(&test, 2, "full-mesh").await;
            let mut written = BTreeMap::new();
            for (name, region) in &REGIONS[..2] {
                for partition in 0..2 {
                    let batch = values(region, partition, 0..20);
                    produce(&test, name, partition, &batch).await;
                    written.insert((partition, region.to_string()), batch);
                }
            }
            let mirrored = within(Duration::from_secs(60), || async {
                converged(&test, 2, &written)
            })
            .await;
            assert!(mirrored.is_some(), "the topic is mirrored");
            let mut delivered = Vec::new();
            Member::join(&test, "use-1")
                .await
                .consume(20, &mut delivered)
                .await;
            assert_eq!(delivered.len(), 40, "half the topic consumed in us-east");
            // Commits travel after the records they cover; give them time.
            tokio::time::sleep(Duration::from_secs(2)).await;
            asks.ask(Fault::Crash("use-1", None)).await;
            Member::join(&test, "euw-1")
                .await
                .consume(usize::MAX, &mut delivered)
                .await;
            let unique: BTreeSet<_> = delivered.iter().cloned().collect();
            assert_eq!(unique.len(), delivered.len(), "no record delivered twice");
            let all: BTreeSet<_> = (0..2)
                .flat_map(|partition| {
                    records(&node(&test, "euw-1"), partition)
                        .into_iter()
                        .map(move |r| {
                            (
                                partition,
                                r.origin.stream.region.to_string(),
                                r.origin.seq.0,
                            )
                        })
                })
                .collect();
            assert_eq!(unique, all, "the group delivered the whole topic");
            Ok(())
        });
        faults.drive(&world, &mut sim);
    }
}
