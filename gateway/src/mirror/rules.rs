//! Rule changes from clients, topic definitions in the cluster
//! configuration, `mirror status` with lag, and the advertisement of this
//! node's origin heads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meshgate_federation::membership::{MemberMetadata, TopicHead};
use meshgate_federation::mirror::{
    MirrorFilter, MirrorRule, RULE_KEY_PREFIX, TopicPattern, Topology,
};
use meshgate_protocol::{
    ErrorCode, MirrorFollowerStatus, MirrorLinkStatus, MirrorRuleSpec, OriginLag, TopicSettings,
    WireError,
};
use meshgate_storage::{OriginStream, RegionId, VersionVector};
use serde::{Deserialize, Serialize};

use super::Mirror;

/// The cluster-configuration key prefix of topic definitions.
pub(super) const TOPIC_KEY_PREFIX: &str = "topic/";
/// Most origin heads one node advertises (they travel in its gossip
/// metadata, one datagram).
const HEADS_ADVERTISED_MAX: usize = 16;

/// A topic as one region defined it, spread so that every region of a
/// mirroring rule holds the same incarnation and partition count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDefinition {
    /// The topic.
    pub name: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its settings (partitions among them).
    pub settings: TopicSettings,
    /// Deleted where it was defined: regions holding this incarnation
    /// delete theirs.
    pub deleted: bool,
}

fn bad(message: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, message)
}

/// Validates a rule as a client wrote it.
pub fn rule_from_spec(spec: &MirrorRuleSpec) -> Result<MirrorRule, WireError> {
    let regions: BTreeSet<RegionId> = spec
        .regions
        .iter()
        .map(|r| RegionId::parse(r.trim()).map_err(bad))
        .collect::<Result<_, _>>()?;
    let topology = match spec.topology.trim() {
        "" | "full-mesh" | "mesh" => Topology::FullMesh,
        other => match other.split_once(':') {
            Some(("chain", order)) => Topology::Chain(
                order
                    .split(',')
                    .map(|r| RegionId::parse(r.trim()).map_err(bad))
                    .collect::<Result<_, _>>()?,
            ),
            Some(("hub", hub)) => Topology::Hub(RegionId::parse(hub.trim()).map_err(bad)?),
            _ => {
                return Err(bad(format!(
                    "topology {other:?} is not full-mesh, chain:a,b,c or hub:a"
                )));
            }
        },
    };
    let rule = MirrorRule {
        name: spec.name.clone(),
        topics: TopicPattern::parse(&spec.topics).map_err(bad)?,
        regions,
        topology,
        filter: MirrorFilter {
            header: spec.filter_header.clone(),
            key_prefix: spec.filter_key_prefix.clone(),
        },
    };
    rule.validate().map_err(bad)?;
    Ok(rule)
}

/// A rule as clients see it.
pub fn spec_from_rule(rule: &MirrorRule) -> MirrorRuleSpec {
    let topology = match &rule.topology {
        Topology::FullMesh => "full-mesh".to_string(),
        Topology::Chain(order) => format!(
            "chain:{}",
            order
                .iter()
                .map(RegionId::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Topology::Hub(hub) => format!("hub:{hub}"),
    };
    MirrorRuleSpec {
        name: rule.name.clone(),
        topics: rule.topics.as_str().to_string(),
        regions: rule.regions.iter().map(ToString::to_string).collect(),
        topology,
        filter_header: rule.filter.header.clone(),
        filter_key_prefix: rule.filter.key_prefix.clone(),
    }
}

impl Mirror {
    /// Adds or replaces a rule and spreads it. Refused when a local topic
    /// it covers conflicts with another region's definition.
    pub async fn add_rule(&self, spec: &MirrorRuleSpec) -> Result<Vec<MirrorRuleSpec>, WireError> {
        let rule = rule_from_spec(spec)?;
        if let Some(node) = self.node() {
            let definitions = self.definitions().await;
            for topic in node.topics().list() {
                if !rule.topics.matches(topic.name()) {
                    continue;
                }
                if let Some(definition) = definitions.get(topic.name())
                    && !definition.deleted
                    && definition.settings.partitions != topic.partition_count()
                {
                    return Err(bad(format!(
                        "topic {} has {} partitions here but {} where it was defined; mirrored topics need the same count everywhere",
                        topic.name(),
                        topic.partition_count(),
                        definition.settings.partitions
                    )));
                }
            }
        }
        let value =
            rmp_serde::to_vec_named(&rule).map_err(|e| WireError::new(ErrorCode::Internal, e))?;
        self.cluster
            .publish_config(rule.key(), Some(value))
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e))?;
        self.reconcile().await;
        Ok(self.rules().iter().map(spec_from_rule).collect())
    }

    /// Removes a rule everywhere; its pulls stop, mirrored data stays.
    pub async fn remove_rule(&self, name: &str) -> Result<Vec<MirrorRuleSpec>, WireError> {
        if !self.state.lock().rules.contains_key(name) {
            return Err(bad(format!("no mirroring rule {name}")));
        }
        self.cluster
            .publish_config(format!("{RULE_KEY_PREFIX}{name}"), None)
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e))?;
        self.reconcile().await;
        Ok(self.rules().iter().map(spec_from_rule).collect())
    }

    /// Topic definitions known to the cluster, by name.
    pub(super) async fn definitions(&self) -> BTreeMap<String, TopicDefinition> {
        let entries = self
            .cluster
            .membership()
            .config_entries()
            .await
            .unwrap_or_default();
        entries
            .into_iter()
            .filter(|entry| entry.key.starts_with(TOPIC_KEY_PREFIX))
            .filter_map(|entry| {
                rmp_serde::from_slice::<TopicDefinition>(entry.value.as_deref()?).ok()
            })
            .map(|definition| (definition.name.clone(), definition))
            .collect()
    }

    /// Refuses to create a topic that a rule mirrors with this region when
    /// another region defined it with another partition count.
    pub async fn check_topic_create(&self, name: &str, partitions: u32) -> Result<(), WireError> {
        if self.rules_for(name).is_empty() {
            return Ok(());
        }
        match self.definitions().await.get(name) {
            Some(definition)
                if !definition.deleted && definition.settings.partitions != partitions =>
            {
                Err(bad(format!(
                    "topic {name} is mirrored and has {} partitions where it was defined; create it with {} (or let mirroring create it)",
                    definition.settings.partitions, definition.settings.partitions
                )))
            }
            _ => Ok(()),
        }
    }

    /// Publishes a definition for a local topic a rule mirrors.
    pub(super) async fn publish_definition(&self, definition: &TopicDefinition) {
        let Ok(value) = rmp_serde::to_vec_named(definition) else {
            return;
        };
        let key = format!("{TOPIC_KEY_PREFIX}{}", definition.name);
        if let Err(error) = self.cluster.publish_config(key, Some(value)).await {
            tracing::warn!(target: "meshgate::mirror", topic = %definition.name, %error, "topic definition not published");
        }
    }

    /// Spreads the deletion of a mirrored topic.
    pub async fn topic_deleted(&self, name: &str, incarnation: u64, settings: TopicSettings) {
        if self.rules_for(name).is_empty() {
            return;
        }
        let definition = TopicDefinition {
            name: name.to_string(),
            incarnation,
            settings,
            deleted: true,
        };
        self.publish_definition(&definition).await;
    }

    /// Every pull link of this node with its state and lag.
    pub async fn status(&self) -> Vec<MirrorLinkStatus> {
        let heads = self.advertised_heads().await;
        let Some(node) = self.node() else {
            return Vec::new();
        };
        let mut result = Vec::new();
        let state = self.state.lock();
        for (key, puller) in &state.pullers {
            let held = held_vector(&node, &key.partition);
            let status = puller.status.lock();
            let now = tokio::time::Instant::now();
            let origins = origin_lags(
                &held,
                &status.source_vector,
                &heads,
                key,
                &status.behind_since,
                now,
            );
            result.push(MirrorLinkStatus {
                rule: key.rule.clone(),
                topic: key.partition.topic.clone(),
                partition: key.partition.partition,
                source_region: key.source_region.to_string(),
                source_node: puller.target.as_ref().map(|t| t.node.to_string()),
                state: if puller.target.is_none() {
                    "waiting"
                } else {
                    status.state
                }
                .to_string(),
                error: status.error.clone(),
                records_pulled: status.records_pulled,
                gap_records: status.gap_records,
                origins,
            });
        }
        for (topic, reason) in &state.conflicts {
            result.push(MirrorLinkStatus {
                rule: String::new(),
                topic: topic.clone(),
                partition: 0,
                source_region: String::new(),
                source_node: None,
                state: "conflict".into(),
                error: Some(reason.clone()),
                records_pulled: 0,
                gap_records: 0,
                origins: Vec::new(),
            });
        }
        result
    }

    /// The other regions of which the membership holds a node alive.
    pub(super) async fn alive_regions(&self) -> BTreeSet<RegionId> {
        self.cluster
            .membership()
            .members()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|member| !member.local && member.state.is_active())
            .map(|member| member.id.region().clone())
            .collect()
    }

    /// Every region that pulled a partition from this node since start:
    /// what it acknowledged against what is held here, connected or not.
    /// A region counts as connected while it has a session open and the
    /// membership holds one of its nodes alive (a cut link keeps its
    /// session until the transport times out).
    pub async fn followers(&self) -> Vec<MirrorFollowerStatus> {
        let Some(node) = self.node() else {
            return Vec::new();
        };
        let alive = self.alive_regions().await;
        let now = tokio::time::Instant::now();
        let book = self.book.lock();
        let mut result = Vec::new();
        for (key, regions) in &book.vectors {
            let held = held_vector(&node, key);
            for (region, acked) in regions {
                let last_ack = book
                    .acked_at
                    .get(key)
                    .and_then(|at| at.get(region))
                    .map(|at| now.saturating_duration_since(*at).as_millis() as u64);
                let origins = held
                    .iter()
                    .map(|(origin, count)| {
                        let theirs = acked.get(origin);
                        let behind = count > theirs;
                        OriginLag {
                            origin: origin.region.to_string(),
                            held: theirs,
                            head: Some(count),
                            lag_records: Some(count.saturating_sub(theirs)),
                            lag_ms: if behind { last_ack.unwrap_or(0) } else { 0 },
                        }
                    })
                    .collect();
                result.push(MirrorFollowerStatus {
                    topic: key.topic.clone(),
                    partition: key.partition,
                    region: region.to_string(),
                    connected: alive.contains(region)
                        && book
                            .sessions
                            .get(key)
                            .is_some_and(|sessions| sessions.contains_key(region)),
                    last_ack_ms_ago: last_ack,
                    origins,
                });
            }
        }
        result
    }

    /// Origin heads advertised by every member: (topic, partition, region) -> head.
    pub(super) async fn advertised_heads(&self) -> BTreeMap<(String, u32, RegionId), u64> {
        let members = self
            .cluster
            .membership()
            .members()
            .await
            .unwrap_or_default();
        let mut heads = BTreeMap::new();
        for member in members {
            if let Some((_, metadata)) = member.metadata {
                for (head, seq) in metadata.topic_heads {
                    let entry = heads
                        .entry((head.topic, head.partition, head.origin))
                        .or_insert(0);
                    *entry = (*entry).max(seq);
                }
            }
        }
        heads
    }

    /// Refreshes how long each puller has been behind each origin's head.
    pub(super) async fn refresh_lag(&self) {
        let heads = self.advertised_heads().await;
        let Some(node) = self.node() else { return };
        let state = self.state.lock();
        let now = tokio::time::Instant::now();
        for (key, puller) in &state.pullers {
            let held = held_vector(&node, &key.partition);
            let mut status = puller.status.lock();
            let behind: Vec<OriginStream> = origin_heads(&held, &status.source_vector, &heads, key)
                .into_iter()
                .filter(|(origin, head)| *head > held.get(origin))
                .map(|(origin, _)| origin)
                .collect();
            status
                .behind_since
                .retain(|origin, _| behind.contains(origin));
            for origin in behind {
                status.behind_since.entry(origin).or_insert(now);
            }
        }
    }
}

/// What this node holds of a mirrored partition (empty if it is gone).
fn held_vector(node: &crate::node::Node, key: &super::PartitionKey) -> VersionVector {
    node.topics()
        .get(&key.topic)
        .ok()
        .and_then(|topic| {
            topic
                .partition(key.partition)
                .ok()
                .map(|log| log.lock().vector().clone())
        })
        .unwrap_or_default()
}

/// Each origin's best known head: what gossip advertises for it, or what the
/// source said it holds, whichever is larger.
fn origin_heads(
    held: &VersionVector,
    source: &VersionVector,
    heads: &BTreeMap<(String, u32, RegionId), u64>,
    key: &super::pull::PullKey,
) -> BTreeMap<OriginStream, u64> {
    let mut result: BTreeMap<OriginStream, u64> =
        held.iter().map(|(o, _)| (o.clone(), 0)).collect();
    for (origin, count) in source.iter() {
        let entry = result.entry(origin.clone()).or_insert(0);
        *entry = (*entry).max(count);
    }
    for ((topic, partition, region), seq) in heads {
        if *topic == key.partition.topic && *partition == key.partition.partition {
            let origin = OriginStream {
                region: region.clone(),
                incarnation: meshgate_storage::Incarnation(key.partition.incarnation),
            };
            let entry = result.entry(origin).or_insert(0);
            *entry = (*entry).max(*seq);
        }
    }
    result
}

fn origin_lags(
    held: &VersionVector,
    source: &VersionVector,
    heads: &BTreeMap<(String, u32, RegionId), u64>,
    key: &super::pull::PullKey,
    behind_since: &BTreeMap<OriginStream, tokio::time::Instant>,
    now: tokio::time::Instant,
) -> Vec<OriginLag> {
    origin_heads(held, source, heads, key)
        .into_iter()
        .map(|(origin, head)| {
            let count = held.get(&origin);
            // What is held here was once the head, at least.
            let head = head.max(count);
            OriginLag {
                origin: origin.region.to_string(),
                held: count,
                head: Some(head),
                lag_records: Some(head - count),
                lag_ms: behind_since.get(&origin).map_or(0, |since| {
                    now.saturating_duration_since(*since).as_millis() as u64
                }),
            }
        })
        .collect()
}

/// Advertises the heads of this node's origin streams of mirrored topics,
/// and refreshes lag figures, every `heads_ms`.
pub(super) async fn heads_loop(mirror: Arc<Mirror>) {
    let period = Duration::from_millis(mirror.config.heads_ms);
    let mut advertised: Option<BTreeMap<TopicHead, u64>> = None;
    loop {
        tokio::select! {
            biased;
            () = mirror.shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(node) = mirror.node() else { return };
        let mut heads = BTreeMap::new();
        for topic in node.topics().list() {
            if mirror.rules_for(topic.name()).is_empty() {
                continue;
            }
            let origin = OriginStream {
                region: mirror.region.clone(),
                incarnation: topic.incarnation(),
            };
            for partition in 0..topic.partition_count() {
                if let Ok(log) = topic.partition(partition) {
                    let head = log.lock().vector().get(&origin);
                    let key = TopicHead {
                        topic: topic.name().to_string(),
                        partition,
                        origin: mirror.region.clone(),
                    };
                    heads.insert(key, head);
                }
            }
        }
        if heads.len() > HEADS_ADVERTISED_MAX {
            // Lag of the rest is measured against what sources report.
            heads = heads.into_iter().take(HEADS_ADVERTISED_MAX).collect();
        }
        if advertised.as_ref() != Some(&heads) {
            let metadata = MemberMetadata {
                topic_heads: heads.clone(),
                ..MemberMetadata::default()
            };
            if mirror
                .cluster
                .membership()
                .set_metadata(metadata)
                .await
                .is_ok()
            {
                advertised = Some(heads);
            }
        }
        mirror.refresh_lag().await;
    }
}
