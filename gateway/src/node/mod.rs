//! A gateway node: its identity, metadata, topics, producers and groups.
//! `handle.rs` dispatches client requests; `groups.rs` holds what groups
//! need across regions (leases, fencing, commit forwarding).

mod groups;
mod handle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshgate_protocol::{
    ErrorCode, GroupDescription, GroupSummary, MemberInfo, NodeInfo, WireError,
};
use meshgate_storage::{FileSystem, OpenMode, RegionId, StorageError, fs::write_atomically};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use meshgate_federation::transport::NodeName;

use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::GatewayConfig;
use crate::groups::GroupCoordinator;
use crate::meta::MetaStore;
use crate::metrics::{
    GroupLabels, GroupPartitionLabels, LinkLabels, Metrics, MirrorLabels, PartitionLabels,
    Snapshot, StateLabels,
};
use crate::mirror::Mirror;
use crate::offsets;
use crate::produce::Producers;
use crate::topics::{PartitionSlot, Topics};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory or its metadata could not be opened; nothing runs.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The configuration is invalid; nothing runs.
    #[error("{0}")]
    Config(String),
}

/// One gateway node.
pub struct Node {
    config: GatewayConfig,
    node_id: String,
    region: RegionId,
    clock: Arc<dyn Clock>,
    meta: MetaStore,
    topics: Topics,
    producers: Producers,
    groups: GroupCoordinator,
    metrics: Metrics,
    client_address: parking_lot::Mutex<String>,
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    mirror: std::sync::OnceLock<Arc<Mirror>>,
    queues: std::sync::OnceLock<Arc<crate::queues::Queues>>,
    fs: Arc<dyn FileSystem>,
    /// Members fenced because their group's lease moved to another region.
    fenced: parking_lot::Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("region", &self.region)
            .finish()
    }
}

/// Reads this node's id from `<data>/node-id`, or makes one and keeps it.
fn node_id(
    fs: &dyn FileSystem,
    data_dir: &Path,
    region: &RegionId,
    rng: &mut SmallRng,
) -> Result<String, StorageError> {
    let path = data_dir.join("node-id");
    if fs.exists(&path) {
        let bytes = fs
            .open(&path, OpenMode::Existing)
            .and_then(|file| file.read_all())
            .map_err(|source| StorageError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
        let id = String::from_utf8_lossy(&bytes).trim().to_string();
        if NodeName::parse(&id).is_ok() {
            return Ok(id);
        }
        tracing::warn!(target: "meshgate::node", path = %path.display(), "invalid node id file replaced");
    }
    // Region names allow characters node names (DNS labels) do not.
    let stem: String = region
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    let id = format!("{}-{:08x}", stem.trim_matches('-'), rng.random::<u32>());
    write_atomically(fs, &path, format!("{id}\n").as_bytes()).map_err(|source| {
        StorageError::Io {
            op: "write",
            path,
            source,
        }
    })?;
    Ok(id)
}

impl Node {
    /// Opens the node's data directory: metadata, then every topic.
    /// `rng_seed` seeds topic incarnations and generated ids.
    pub fn open(
        config: GatewayConfig,
        fs: Arc<dyn FileSystem>,
        clock: Arc<dyn Clock>,
        rng_seed: u64,
    ) -> Result<Node, NodeError> {
        config
            .validate()
            .map_err(|error| NodeError::Config(error.to_string()))?;
        let region = RegionId::parse(&config.region)
            .map_err(|error| NodeError::Config(error.to_string()))?;
        let data_dir: PathBuf = config.data_dir.clone();
        fs.create_dir_all(&data_dir)
            .map_err(|source| StorageError::Io {
                op: "create",
                path: data_dir.clone(),
                source,
            })?;
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        let node_id = match &config.node_id {
            Some(id) => id.clone(),
            None => node_id(&*fs, &data_dir, &region, &mut rng)?,
        };
        let meta = MetaStore::open(fs.clone(), data_dir.join("meta"), clock.clone())?;
        let node_fs = fs.clone();
        let topics = Topics::open(
            fs.clone(),
            data_dir.join("topics"),
            meta.clone(),
            clock.clone(),
            config.topic_defaults.clone(),
            config.limits.clone(),
            rng.random(),
        )?;
        let producers = Producers::new(region.clone(), &config.limits);
        // Member ids count from a random start, so ids a client kept from an
        // earlier run are not handed out again.
        let groups =
            GroupCoordinator::new(config.groups.clone(), u64::from(rng.random::<u32>()) << 16)
                .map_err(|error| NodeError::Config(error.to_string()))?;
        Ok(Node {
            client_address: parking_lot::Mutex::new(config.listen.to_string()),
            config,
            node_id,
            region,
            clock,
            meta,
            topics,
            producers,
            groups,
            metrics: Metrics::default(),
            cluster: std::sync::OnceLock::new(),
            mirror: std::sync::OnceLock::new(),
            queues: std::sync::OnceLock::new(),
            fs: node_fs,
            fenced: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's region.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// The node's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The node's metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The node's wall clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Attaches the node's membership and peer links (once, at start).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Attaches mirroring (once, at start).
    pub fn set_mirror(&self, mirror: Arc<Mirror>) {
        let _ = self.mirror.set(mirror);
    }

    /// Attaches dispatch queues (once, at start).
    pub fn set_queues(&self, queues: Arc<crate::queues::Queues>) {
        let _ = self.queues.set(queues);
    }

    /// Dispatch queues, once started.
    pub fn queues(&self) -> Option<&Arc<crate::queues::Queues>> {
        self.queues.get()
    }

    /// The file system the node's data lives on.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// Mirroring, once started.
    pub fn mirror(&self) -> Option<&Arc<Mirror>> {
        self.mirror.get()
    }

    /// Membership and peer links, once started.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// The membership view (just this node before the cluster started).
    pub async fn members(&self) -> Vec<MemberInfo> {
        match self.cluster.get() {
            Some(cluster) => cluster.members().await,
            None => Vec::new(),
        }
    }

    /// Records the address the client listener actually bound.
    pub fn set_client_address(&self, address: String) {
        *self.client_address.lock() = address;
    }

    /// Who this node is.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id.clone(),
            region: self.region.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            client_address: self.client_address.lock().clone(),
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Partition counts of every topic, for group assignment.
    pub fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.topics
            .list()
            .iter()
            .map(|topic| (topic.name().to_string(), topic.partition_count()))
            .collect()
    }

    /// Consumer groups: those with members and those with committed offsets.
    pub async fn list_groups(&self) -> Vec<GroupSummary> {
        let mut groups: BTreeMap<String, GroupSummary> = offsets::groups_with_commits(&self.meta)
            .into_iter()
            .map(|group| {
                let summary = GroupSummary {
                    group: group.clone(),
                    state: "empty".into(),
                    members: 0,
                    protocol: None,
                };
                (group, summary)
            })
            .collect();
        for summary in self.groups.list().await {
            groups.insert(summary.group.clone(), summary);
        }
        groups.into_values().collect()
    }

    /// One consumer group with its members, committed offsets and lag.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, WireError> {
        let offsets = offsets::fetch(&self.meta, &self.topics, group, None)?;
        match self.groups.describe(group).await {
            Some(details) => Ok(details.into_wire(offsets)),
            None if !offsets.is_empty() => Ok(GroupDescription {
                group: group.to_string(),
                state: "empty".into(),
                generation: 0,
                protocol: None,
                members: Vec::new(),
                offsets,
            }),
            None => Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("group {group} is not known"),
            )),
        }
    }

    /// The Prometheus text of the node's metrics and current state.
    pub async fn render_metrics(&self) -> String {
        let snapshot = Snapshot::default();
        if let Some(cluster) = self.cluster.get() {
            cluster.sample_metrics(&snapshot).await;
        }
        if let Some(mirror) = self.mirror.get() {
            for link in mirror.status().await {
                snapshot
                    .mirror_links
                    .get_or_create(&StateLabels {
                        state: link.state.clone(),
                    })
                    .inc();
                if link.state == "conflict" {
                    continue;
                }
                let labels = LinkLabels {
                    topic: link.topic.clone(),
                    partition: link.partition,
                    source: link.source_region.clone(),
                };
                snapshot
                    .mirror_pulled_records
                    .get_or_create(&labels)
                    .set(link.records_pulled as i64);
                snapshot
                    .mirror_gap_records
                    .get_or_create(&labels)
                    .set(link.gap_records as i64);
                for origin in link.origins {
                    let labels = MirrorLabels {
                        topic: link.topic.clone(),
                        partition: link.partition,
                        source: link.source_region.clone(),
                        origin: origin.origin,
                    };
                    snapshot
                        .mirror_lag_records
                        .get_or_create(&labels)
                        .set(origin.lag_records.unwrap_or(0) as i64);
                    snapshot
                        .mirror_lag_ms
                        .get_or_create(&labels)
                        .set(origin.lag_ms as i64);
                }
            }
        }
        if let Some(queues) = self.queues.get() {
            queues.sample_metrics(&snapshot);
        }
        for topic in self.topics.list() {
            for (partition, slot) in topic.slots().iter().enumerate() {
                let labels = PartitionLabels {
                    topic: topic.name().to_string(),
                    partition: partition as u32,
                };
                match slot {
                    PartitionSlot::Ready(log) => {
                        let log = log.lock();
                        snapshot
                            .partition_bytes
                            .get_or_create(&labels)
                            .set(log.size_bytes() as i64);
                        snapshot
                            .high_watermark
                            .get_or_create(&labels)
                            .set(log.visible_offset().0 as i64);
                        snapshot
                            .start_offset
                            .get_or_create(&labels)
                            .set(log.start_offset().0 as i64);
                        snapshot
                            .partition_unavailable
                            .get_or_create(&labels)
                            .set(i64::from(log.failure().is_some()));
                    }
                    PartitionSlot::Unavailable(_) => {
                        snapshot.partition_unavailable.get_or_create(&labels).set(1);
                    }
                }
            }
        }
        for summary in self.list_groups().await {
            snapshot
                .group_members
                .get_or_create(&GroupLabels {
                    group: summary.group.clone(),
                })
                .set(i64::from(summary.members));
            let Ok(offsets) = offsets::fetch(&self.meta, &self.topics, &summary.group, None) else {
                continue;
            };
            for committed in offsets {
                if let Some(lag) = committed.lag {
                    let labels = GroupPartitionLabels {
                        group: summary.group.clone(),
                        topic: committed.topic,
                        partition: committed.partition,
                    };
                    snapshot.group_lag.get_or_create(&labels).set(lag as i64);
                }
            }
        }
        self.metrics.render(snapshot)
    }

    /// Runs retention on every partition.
    pub fn apply_retention(&self) {
        self.topics.apply_retention();
    }

    /// Syncs and closes every log. Called once, at shutdown.
    pub async fn close(&self) {
        self.groups.shutdown();
        if let Some(queues) = self.queues.get() {
            queues.close().await;
        }
        self.topics.close_all().await;
        if let Err(error) = self.meta.close().await {
            tracing::error!(target: "meshgate::node", %error, "closing metadata failed");
        }
    }
}
