//! Reconciliation: from the cluster configuration (rules, topic
//! definitions, leases) and the membership view to local topics and the
//! set of running pullers. Runs on every configuration or membership
//! change and every `reconcile_ms`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meshgate_federation::membership::MemberState;
use meshgate_federation::mirror::{MirrorRule, RULE_KEY_PREFIX};
use meshgate_federation::transport::NodeName;
use meshgate_storage::RegionId;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::lease::{GroupLease, LEASE_KEY_PREFIX};
use super::pull::{PullKey, PullStatus, PullTarget, run_puller};
use super::rules::{TOPIC_KEY_PREFIX, TopicDefinition};
use super::{Mirror, PartitionKey};

/// What reconciliation keeps between runs.
#[derive(Default)]
pub(super) struct State {
    pub(super) rules: BTreeMap<String, MirrorRule>,
    pub(super) leases: BTreeMap<String, GroupLease>,
    /// Topics that cannot mirror, with the reason.
    pub(super) conflicts: BTreeMap<String, String>,
    pub(super) pullers: BTreeMap<PullKey, RunningPuller>,
}

/// A wanted pull, running or waiting for a live source node.
pub(super) struct RunningPuller {
    pub(super) target: Option<PullTarget>,
    pub(super) status: Arc<Mutex<PullStatus>>,
    cancel: Option<CancellationToken>,
}

impl Drop for RunningPuller {
    fn drop(&mut self) {
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
    }
}

pub(super) async fn reconcile_loop(mirror: Arc<Mirror>) {
    let mut events = mirror.cluster.membership().subscribe();
    let period = Duration::from_millis(mirror.config.reconcile_ms);
    loop {
        mirror.reconcile().await;
        tokio::select! {
            biased;
            () = mirror.shutdown.cancelled() => {
                mirror.state.lock().pullers.clear();
                return;
            }
            event = events.recv() => {
                if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    tokio::time::sleep(period).await;
                }
            }
            () = tokio::time::sleep(period) => {}
        }
    }
}

impl Mirror {
    /// Brings local topics and pullers in line with the rules. Serialised:
    /// concurrent callers wait for each other.
    pub(super) async fn reconcile(&self) {
        let _running = self.reconciling.lock().await;
        let Some(node) = self.node() else { return };
        let entries = self
            .cluster
            .membership()
            .config_entries()
            .await
            .unwrap_or_default();
        let mut rules = BTreeMap::new();
        let mut definitions = BTreeMap::new();
        let mut leases = BTreeMap::new();
        for entry in &entries {
            let Some(value) = entry.value.as_deref() else {
                continue;
            };
            if let Some(name) = entry.key.strip_prefix(RULE_KEY_PREFIX) {
                match rmp_serde::from_slice::<MirrorRule>(value) {
                    Ok(rule) if rule.validate().is_ok() => {
                        rules.insert(name.to_string(), rule);
                    }
                    _ => {
                        tracing::warn!(target: "meshgate::mirror", key = %entry.key, "invalid mirroring rule ignored")
                    }
                }
            } else if entry.key.starts_with(TOPIC_KEY_PREFIX) {
                if let Ok(definition) = rmp_serde::from_slice::<TopicDefinition>(value) {
                    definitions.insert(definition.name.clone(), definition);
                }
            } else if let Some(group) = entry.key.strip_prefix(LEASE_KEY_PREFIX)
                && let Ok(lease) = rmp_serde::from_slice::<GroupLease>(value)
            {
                leases.insert(group.to_string(), lease);
            }
        }
        self.apply_leases(&node, &leases).await;
        {
            let mut state = self.state.lock();
            state.rules = rules.clone();
            state.leases = leases;
        }
        let sources = self.live_nodes_by_region().await;
        let mut wanted: BTreeMap<PullKey, Option<PullTarget>> = BTreeMap::new();
        let mut conflicts = BTreeMap::new();
        for rule in rules
            .values()
            .filter(|rule| rule.regions.contains(&self.region))
        {
            let mut names: BTreeSet<String> = definitions
                .values()
                .filter(|d| !d.deleted && rule.topics.matches(&d.name))
                .map(|d| d.name.clone())
                .collect();
            names.extend(
                node.topics()
                    .list()
                    .iter()
                    .filter(|t| rule.topics.matches(t.name()))
                    .map(|t| t.name().to_string()),
            );
            for name in names {
                match self.align_topic(&node, &name, definitions.get(&name)).await {
                    Ok(Some((incarnation, partitions))) => {
                        for partition in 0..partitions {
                            for source in rule.sources_for(&self.region) {
                                let key = PullKey {
                                    rule: rule.name.clone(),
                                    partition: PartitionKey {
                                        topic: name.clone(),
                                        incarnation,
                                        partition,
                                    },
                                    source_region: source.clone(),
                                };
                                let target = sources.get(&source).map(|node| PullTarget {
                                    node: node.clone(),
                                    filter: rule.filter.clone(),
                                    partitions,
                                });
                                wanted.insert(key, target);
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        conflicts.insert(name.clone(), reason);
                    }
                }
            }
        }
        self.apply_pullers(wanted, conflicts);
    }

    /// Makes the local topic match the cluster's definition: creates it,
    /// publishes its definition, deletes it, or reports a conflict. Returns
    /// its incarnation and partition count when it can mirror.
    async fn align_topic(
        &self,
        node: &crate::node::Node,
        name: &str,
        definition: Option<&TopicDefinition>,
    ) -> Result<Option<(u64, u32)>, String> {
        let local = node.topics().get(name).ok();
        match (local, definition) {
            (None, Some(definition)) if !definition.deleted => {
                match node
                    .topics()
                    .create_with(name, &definition.settings, Some(definition.incarnation))
                    .await
                {
                    Ok(topic) => {
                        node.topics_changed();
                        tracing::info!(target: "meshgate::mirror", topic = name, partitions = topic.partition_count(), "created a mirrored topic defined by another region");
                        Ok(Some((topic.incarnation().0, topic.partition_count())))
                    }
                    Err(error) => Err(format!(
                        "cannot create the mirrored topic: {}",
                        error.message
                    )),
                }
            }
            (None, _) => Ok(None),
            (Some(topic), Some(definition)) if definition.deleted => {
                if topic.incarnation().0 == definition.incarnation {
                    if let Err(error) = node.topics().delete(name).await {
                        return Err(format!("deleted elsewhere but not here: {}", error.message));
                    }
                    node.topics_changed();
                    tracing::info!(target: "meshgate::mirror", topic = name, "deleted a mirrored topic deleted by another region");
                    return Ok(None);
                }
                self.publish_definition(&local_definition(&topic)).await;
                Ok(Some((topic.incarnation().0, topic.partition_count())))
            }
            (Some(topic), Some(definition)) => {
                if topic.partition_count() != definition.settings.partitions {
                    return Err(format!(
                        "topic {name} has {} partitions here and {} where it was defined; mirrored topics need the same count",
                        topic.partition_count(),
                        definition.settings.partitions
                    ));
                }
                if topic.incarnation().0 != definition.incarnation {
                    return Err(format!(
                        "topic {name} here is incarnation {:016x} but the cluster defines {:016x}; delete one of them",
                        topic.incarnation().0,
                        definition.incarnation
                    ));
                }
                Ok(Some((topic.incarnation().0, topic.partition_count())))
            }
            (Some(topic), None) => {
                self.publish_definition(&local_definition(&topic)).await;
                Ok(Some((topic.incarnation().0, topic.partition_count())))
            }
        }
    }

    /// The live node to pull from in each region: the alive (or suspect)
    /// member with the smallest node id.
    async fn live_nodes_by_region(&self) -> BTreeMap<RegionId, NodeName> {
        let members = self
            .cluster
            .membership()
            .members()
            .await
            .unwrap_or_default();
        let mut result: BTreeMap<RegionId, NodeName> = BTreeMap::new();
        for member in members
            .iter()
            .filter(|m| !m.local && matches!(m.state, MemberState::Alive | MemberState::Suspect))
        {
            let Ok(name) = NodeName::parse(member.id.node().as_str()) else {
                continue;
            };
            let region = member.id.region().clone();
            match result.get(&region) {
                Some(current) if current.as_str() <= name.as_str() => {}
                _ => {
                    result.insert(region, name);
                }
            }
        }
        result
    }

    /// Starts, keeps or stops pullers to match `wanted`.
    fn apply_pullers(
        &self,
        wanted: BTreeMap<PullKey, Option<PullTarget>>,
        conflicts: BTreeMap<String, String>,
    ) {
        let mut state = self.state.lock();
        for (topic, reason) in &conflicts {
            if state.conflicts.get(topic) != Some(reason) {
                tracing::error!(target: "meshgate::mirror", %topic, %reason, "topic cannot mirror");
            }
        }
        state.conflicts = conflicts;
        state.pullers.retain(|key, _| wanted.contains_key(key));
        for (key, target) in wanted {
            if let Some(running) = state.pullers.get(&key)
                && running.target == target
            {
                continue;
            }
            let status = Arc::new(Mutex::new(PullStatus {
                state: if target.is_some() {
                    "connecting"
                } else {
                    "waiting"
                },
                ..PullStatus::default()
            }));
            let cancel = target.as_ref().and_then(|target| {
                let this = self.this.upgrade()?;
                let cancel = self.shutdown.child_token();
                tokio::spawn(run_puller(
                    this,
                    key.clone(),
                    target.clone(),
                    status.clone(),
                    cancel.clone(),
                ));
                Some(cancel)
            });
            state.pullers.insert(
                key,
                RunningPuller {
                    target,
                    status,
                    cancel,
                },
            );
        }
    }

    /// Fences this node's members of groups whose lease moved elsewhere.
    async fn apply_leases(&self, node: &crate::node::Node, leases: &BTreeMap<String, GroupLease>) {
        let moved: Vec<String> = {
            let state = self.state.lock();
            leases
                .iter()
                .filter(|(group, lease)| {
                    lease.region != self.region.as_str()
                        && state
                            .leases
                            .get(*group)
                            .is_none_or(|old| old.epoch < lease.epoch)
                })
                .map(|(group, _)| group.clone())
                .collect()
        };
        for group in moved {
            node.fence_group(&group).await;
        }
    }
}

fn local_definition(topic: &crate::topics::Topic) -> TopicDefinition {
    TopicDefinition {
        name: topic.name().to_string(),
        incarnation: topic.incarnation().0,
        settings: topic.settings().clone(),
        deleted: false,
    }
}
