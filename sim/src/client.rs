//! What simulated clients do: requests to a gateway (handled inside its
//! host), producing with a ledger, and a consumer-group member.

use std::collections::BTreeMap;
use std::time::Duration;

use meshgate_protocol::{
    Acks, CommitOffsets, CreateTopic, Fetch, FetchOffsets, GroupProtocol, JoinGroup,
    MirrorRuleSpec, PartitionOffset, Produce, ProduceRecord, Reply, Request, SyncGroup,
    TopicPartitions, TopicSettings, WireError, decode_assignment, encode_subscription,
    vector_from_entries,
};
use meshgate_storage::batch::BATCH_BYTES_LIMIT;
use meshgate_storage::{Batch, StoredRecord, VersionVector};

use crate::check::{Checked, Ledger, Violation, invariant};
use crate::world::{World, eventually};

/// Why a request got no reply.
#[derive(Debug)]
pub enum CallError {
    /// The gateway is down or crashed before answering.
    Down,
    /// The gateway answered with an error.
    Refused(WireError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Down => f.write_str("the gateway is down"),
            CallError::Refused(error) => write!(f, "{error}"),
        }
    }
}

/// Sends `request` to gateway `name`.
pub async fn call(world: &World, name: &str, request: Request) -> Result<Reply, CallError> {
    match world.call(name, request).await {
        Some(Ok(reply)) => Ok(reply),
        Some(Err(error)) => Err(CallError::Refused(error)),
        None => Err(CallError::Down),
    }
}

/// Sends `request`, which must succeed: a failure is a liveness violation.
pub async fn must(world: &World, name: &str, request: Request) -> Result<Reply, Violation> {
    let kind = request.kind();
    call(world, name, request)
        .await
        .map_err(|error| Violation::new(invariant::LIVENESS, format!("{kind} to {name}: {error}")))
}

/// Waits until every gateway of the world is up and sees all the others
/// alive; a liveness violation after `limit`.
pub async fn all_alive(world: &World, limit: Duration) -> Checked {
    let count = world.specs().len();
    eventually(
        limit,
        invariant::LIVENESS,
        || format!("the gateways did not all see each other within {limit:?}"),
        || async {
            let running = world.running();
            if running.len() != count {
                return false;
            }
            for (_, node) in running {
                let members = node.members().await;
                if members.iter().filter(|m| m.state == "alive").count() != count {
                    return false;
                }
            }
            true
        },
    )
    .await
}

/// Creates `topic` with `partitions` at gateway `at`, mirrors it to every
/// region of the world with `topology` and waits until every gateway has it.
pub async fn mirrored_topic(
    world: &World,
    at: &str,
    topic: &str,
    partitions: u32,
    topology: &str,
) -> Checked {
    let create = CreateTopic {
        name: topic.into(),
        settings: TopicSettings {
            partitions,
            ..TopicSettings::default()
        },
    };
    must(world, at, Request::CreateTopic(create)).await?;
    let mut regions: Vec<String> = Vec::new();
    for spec in world.specs() {
        if !regions.contains(&spec.region) {
            regions.push(spec.region.clone());
        }
    }
    let rule = MirrorRuleSpec {
        name: topic.into(),
        topics: topic.into(),
        regions,
        topology: topology.into(),
        filter_header: None,
        filter_key_prefix: None,
    };
    must(world, at, Request::AddMirrorRule(rule)).await?;
    eventually(
        Duration::from_secs(30),
        invariant::LIVENESS,
        || format!("{topic} did not reach every region"),
        || async {
            world.specs().iter().all(|s| {
                world
                    .node(&s.name)
                    .is_some_and(|n| n.topics().get(topic).is_ok())
            })
        },
    )
    .await?;
    world.record(format!(
        "{topic}: {partitions} partitions mirrored, {topology}"
    ));
    Ok(())
}

/// Produces `value` to `partition` at gateway `name` (of `region`) and
/// records it in `ledger`: acknowledged, or unknown when the gateway went
/// down first. A refusal is a liveness violation.
pub async fn produce(
    world: &World,
    name: &str,
    region: &str,
    partition: u32,
    value: String,
    ledger: &mut Ledger,
) -> Result<bool, Violation> {
    let request = Request::Produce(Produce {
        topic: ledger.topic().into(),
        partition,
        records: vec![ProduceRecord {
            key: None,
            value: value.clone().into(),
            headers: Vec::new(),
        }],
        acks: Acks::Local,
        producer: None,
    });
    match call(world, name, request).await {
        Ok(_) => {
            ledger.sent(partition, region, value, true);
            Ok(true)
        }
        Err(CallError::Down) => {
            ledger.sent(partition, region, value, false);
            Ok(false)
        }
        Err(CallError::Refused(error)) => Err(Violation::new(
            invariant::LIVENESS,
            format!("produce to {name} refused: {error}"),
        )),
    }
}

/// Produces records `{region}-{partition}-{i}` for each `i` of `range` at
/// gateway `name`, one acknowledged request each; all must be answered.
pub async fn produce_range(
    world: &World,
    name: &str,
    region: &str,
    partition: u32,
    range: std::ops::Range<u32>,
    ledger: &mut Ledger,
) -> Checked {
    let count = range.len();
    for i in range {
        let value = format!("{region}-{partition}-{i}");
        if !produce(world, name, region, partition, value, ledger).await? {
            return Err(Violation::new(
                invariant::LIVENESS,
                format!("{name} went down under a produce"),
            ));
        }
    }
    world.record(format!(
        "{name}: {count} records to {}/{partition} acknowledged",
        ledger.topic()
    ));
    Ok(())
}

/// One delivered record: partition, origin region, origin sequence.
pub type Delivery = (u32, String, u64);

/// A member of a consumer group at one gateway: joins, resumes from the
/// committed vector, skips what it says was consumed, commits after each
/// record.
#[derive(Debug)]
pub struct Member {
    world: World,
    name: String,
    group: String,
    topic: String,
    member_id: String,
    generation: u32,
    partitions: Vec<u32>,
}

impl Member {
    /// Joins `group` at gateway `name` for `topic`.
    pub async fn join(
        world: &World,
        name: &str,
        group: &str,
        topic: &str,
    ) -> Result<Member, Violation> {
        let join = JoinGroup {
            group: group.into(),
            member_id: None,
            client_id: "sim".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: encode_subscription(&[topic.to_string()]),
            }],
        };
        let Reply::Joined(joined) = must(world, name, Request::JoinGroup(join)).await? else {
            return Err(Violation::new(
                invariant::LIVENESS,
                "join: unexpected reply",
            ));
        };
        let sync = SyncGroup {
            group: group.into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: vec![],
        };
        let Reply::Synced(bytes) = must(world, name, Request::SyncGroup(sync)).await? else {
            return Err(Violation::new(
                invariant::LIVENESS,
                "sync: unexpected reply",
            ));
        };
        let assignment = decode_assignment(&bytes).ok_or_else(|| {
            Violation::new(invariant::LIVENESS, "an assignment that does not decode")
        })?;
        world.record(format!(
            "{name}: joined {group} generation {}",
            joined.generation
        ));
        Ok(Member {
            world: world.clone(),
            name: name.to_string(),
            group: group.into(),
            topic: topic.into(),
            member_id: joined.member_id,
            generation: joined.generation,
            partitions: assignment
                .iter()
                .flat_map(|tp| tp.partitions.clone())
                .collect(),
        })
    }

    async fn positions(&self) -> Result<BTreeMap<u32, (u64, VersionVector)>, Violation> {
        let request = FetchOffsets {
            group: self.group.clone(),
            partitions: Some(vec![TopicPartitions {
                topic: self.topic.clone(),
                partitions: self.partitions.clone(),
            }]),
        };
        let Reply::CommittedOffsets(offsets) =
            must(&self.world, &self.name, Request::FetchOffsets(request)).await?
        else {
            return Err(Violation::new(
                invariant::LIVENESS,
                "offsets: unexpected reply",
            ));
        };
        offsets
            .into_iter()
            .map(|o| {
                let vector = vector_from_entries(&o.vector).map_err(|error| {
                    Violation::new(invariant::LIVENESS, format!("bad vector: {error}"))
                })?;
                Ok((o.partition, (o.offset.unwrap_or(0), vector)))
            })
            .collect()
    }

    /// Consumes up to `limit` records per partition, committing each: it
    /// fetches from the committed offset through the gateway and skips
    /// what the committed vector says was consumed (as the client does).
    pub async fn consume(&self, limit: usize, delivered: &mut Vec<Delivery>) -> Checked {
        for (partition, (offset, consumed)) in self.positions().await? {
            let pending: Vec<StoredRecord> =
                fetch_all(&self.world, &self.name, &self.topic, partition, offset)
                    .await?
                    .into_iter()
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
                    group: self.group.clone(),
                    member: Some((self.generation, self.member_id.clone())),
                    offsets: vec![PartitionOffset {
                        topic: self.topic.clone(),
                        partition,
                        offset: record.offset.0 + 1,
                    }],
                };
                must(&self.world, &self.name, Request::CommitOffsets(commit)).await?;
            }
        }
        Ok(())
    }
}

/// Every record of `topic`/`partition` at gateway `name` from `offset` to
/// the high watermark, fetched through the gateway.
pub async fn fetch_all(
    world: &World,
    name: &str,
    topic: &str,
    partition: u32,
    mut offset: u64,
) -> Result<Vec<StoredRecord>, Violation> {
    let mut records = Vec::new();
    // Bounded: each round moves `offset` forward or stops.
    loop {
        let fetch = Fetch {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        };
        let Reply::Fetched(fetched) = must(world, name, Request::Fetch(fetch)).await? else {
            return Err(Violation::new(
                invariant::LIVENESS,
                "fetch: unexpected reply",
            ));
        };
        let malformed = |error: meshgate_storage::StorageError| {
            Violation::new(
                invariant::LIVENESS,
                format!("{name} sent a malformed batch of {topic}/{partition}: {error}"),
            )
        };
        for batch in Batch::parse_all(fetched.batches, BATCH_BYTES_LIMIT).map_err(malformed)? {
            for stored in batch.records() {
                let stored = stored.map_err(malformed)?;
                if stored.offset.0 >= offset {
                    records.push(stored);
                }
            }
        }
        if fetched.next_offset <= offset || fetched.next_offset >= fetched.high_watermark {
            return Ok(records);
        }
        offset = fetched.next_offset;
    }
}
