//! Topics and their partition logs.
//!
//! A topic's definition (name, incarnation, settings) is kept in the
//! metadata store under `topic/<name>`; its partitions live in
//! `<data>/topics/<name>.<incarnation as 16 hex digits>/<partition>/`, so a
//! topic deleted and re-created never meets its old files. A partition whose
//! log cannot open (quarantined, damaged) is marked unavailable and the rest
//! keep serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use meshgate_protocol::{
    ErrorCode, PartitionInfo, TopicDescription, TopicSettings, TopicSummary, WireError,
    vector_entries,
};
use meshgate_storage::{
    Durability, FileSystem, Incarnation, Log, LogConfig, Retention, SharedLog, validate_name,
};
use parking_lot::{Mutex, RwLock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{Limits, TopicDefaults};
use crate::errors::storage_error;
use crate::meta::MetaStore;

/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions of one topic.
pub const PARTITIONS_MAX: u32 = 1024;

const META_PREFIX: &str = "topic/";

/// A topic's definition as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The name.
    pub name: String,
    /// The incarnation.
    pub incarnation: u64,
    /// Effective settings (every field set).
    pub settings: TopicSettings,
    /// When it was created, ms since the epoch.
    pub created_ms: u64,
}

/// One partition: its log, or why it is unavailable.
#[derive(Debug)]
pub enum PartitionSlot {
    /// Serving.
    Ready(SharedLog),
    /// Quarantined or failed to open; requests get `PartitionUnavailable`.
    Unavailable(String),
}

/// A topic with its open partitions.
#[derive(Debug)]
pub struct Topic {
    record: TopicRecord,
    partitions: Vec<PartitionSlot>,
}

impl Topic {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Its incarnation.
    pub fn incarnation(&self) -> Incarnation {
        Incarnation(self.record.incarnation)
    }

    /// Its effective settings.
    pub fn settings(&self) -> &TopicSettings {
        &self.record.settings
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The log of partition `partition`, or the error a client gets.
    pub fn partition(&self, partition: u32) -> Result<&SharedLog, WireError> {
        match self.partitions.get(partition as usize) {
            Some(PartitionSlot::Ready(log)) => Ok(log),
            Some(PartitionSlot::Unavailable(reason)) => Err(WireError::new(
                ErrorCode::PartitionUnavailable,
                format!("{}/{partition} is unavailable: {reason}", self.name()),
            )),
            None => Err(WireError::new(
                ErrorCode::InvalidPartition,
                format!(
                    "topic {} has partitions 0..{}, not {partition}",
                    self.name(),
                    self.partitions.len()
                ),
            )),
        }
    }

    /// Every partition slot, in order.
    pub fn slots(&self) -> &[PartitionSlot] {
        &self.partitions
    }

    /// The topic and its partitions, for clients.
    pub fn describe(&self) -> TopicDescription {
        let partitions = self
            .partitions
            .iter()
            .enumerate()
            .map(|(index, slot)| match slot {
                PartitionSlot::Ready(log) => {
                    let log = log.lock();
                    PartitionInfo {
                        partition: index as u32,
                        start_offset: log.start_offset().0,
                        high_watermark: log.visible_offset().0,
                        size_bytes: log.size_bytes(),
                        vector: vector_entries(log.vector()),
                        unavailable: log.failure().map(str::to_owned),
                    }
                }
                PartitionSlot::Unavailable(reason) => PartitionInfo {
                    partition: index as u32,
                    start_offset: 0,
                    high_watermark: 0,
                    size_bytes: 0,
                    vector: Vec::new(),
                    unavailable: Some(reason.clone()),
                },
            })
            .collect();
        TopicDescription {
            name: self.record.name.clone(),
            incarnation: self.record.incarnation,
            settings: self.record.settings.clone(),
            partitions,
        }
    }

    /// A line for the topic list.
    pub fn summary(&self) -> TopicSummary {
        let records = self
            .partitions
            .iter()
            .map(|slot| match slot {
                PartitionSlot::Ready(log) => {
                    let log = log.lock();
                    log.visible_offset().0 - log.start_offset().0
                }
                PartitionSlot::Unavailable(_) => 0,
            })
            .sum();
        TopicSummary {
            name: self.record.name.clone(),
            partitions: self.partition_count(),
            records,
        }
    }

    async fn close(&self) {
        for slot in &self.partitions {
            if let PartitionSlot::Ready(log) = slot
                && let Err(error) = log.close().await
            {
                tracing::error!(target: "meshgate::topics", topic = self.name(), %error, "closing a partition failed");
            }
        }
    }
}

/// The node's topics.
pub struct Topics {
    fs: Arc<dyn FileSystem>,
    root: PathBuf,
    meta: MetaStore,
    clock: Arc<dyn Clock>,
    defaults: TopicDefaults,
    limits: Limits,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    rng: Mutex<SmallRng>,
    /// Serialises creations and deletions.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics").field("root", &self.root).finish()
    }
}

fn topic_dir(root: &Path, name: &str, incarnation: u64) -> PathBuf {
    root.join(format!("{name}.{incarnation:016x}"))
}

/// Checks a topic name against the naming rule.
pub fn check_topic_name(name: &str) -> Result<(), WireError> {
    validate_name("topic", name, TOPIC_NAME_BYTES_MAX)
        .map_err(|error| WireError::new(ErrorCode::InvalidName, error))
}

impl Topics {
    /// Loads every topic defined in `meta` and opens its partitions under
    /// `root`; removes directories of topics that no longer exist.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        root: PathBuf,
        meta: MetaStore,
        clock: Arc<dyn Clock>,
        defaults: TopicDefaults,
        limits: Limits,
        rng_seed: u64,
    ) -> Result<Topics, meshgate_storage::StorageError> {
        fs.create_dir_all(&root)
            .map_err(|source| meshgate_storage::StorageError::Io {
                op: "create",
                path: root.clone(),
                source,
            })?;
        let topics = Topics {
            fs,
            root,
            meta,
            clock,
            defaults,
            limits,
            topics: RwLock::new(BTreeMap::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(rng_seed)),
            changes: tokio::sync::Mutex::new(()),
        };
        let mut expected_dirs = BTreeSet::new();
        for (key, value) in topics.meta.with_prefix(META_PREFIX) {
            let record: TopicRecord = match rmp_serde::from_slice(&value) {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(target: "meshgate::topics", %key, %error, "unreadable topic definition skipped");
                    continue;
                }
            };
            let dir = topic_dir(&topics.root, &record.name, record.incarnation);
            expected_dirs.insert(
                dir.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
            );
            let topic = topics.open_partitions(record, &dir);
            topics
                .topics
                .write()
                .insert(topic.record.name.clone(), Arc::new(topic));
        }
        // Directories left by a creation or deletion cut short by a crash.
        let names = topics.fs.list_dir(&topics.root).map_err(|source| {
            meshgate_storage::StorageError::Io {
                op: "list",
                path: topics.root.clone(),
                source,
            }
        })?;
        for name in names.into_iter().filter(|n| !expected_dirs.contains(n)) {
            let path = topics.root.join(&name);
            tracing::warn!(target: "meshgate::topics", path = %path.display(), "removing the files of a topic that no longer exists");
            if let Err(error) = topics.fs.remove_dir_all(&path) {
                tracing::error!(target: "meshgate::topics", path = %path.display(), %error, "could not remove");
            }
        }
        Ok(topics)
    }

    fn log_config(&self, settings: &TopicSettings) -> LogConfig {
        let segment_bytes_max = settings
            .segment_bytes
            .unwrap_or(self.defaults.segment_bytes);
        LogConfig {
            segment_bytes_max,
            // A batch must fit a segment; small segments take small batches.
            batch_bytes_max: u64::from(self.limits.frame_bytes_max).min(segment_bytes_max) as u32,
            durability: settings.durability.unwrap_or_default(),
            retention: Retention {
                bytes_max: settings.retention_bytes,
                age_ms_max: settings.retention_ms,
            },
            ..LogConfig::default()
        }
    }

    fn open_partitions(&self, record: TopicRecord, dir: &Path) -> Topic {
        let config = self.log_config(&record.settings);
        let partitions = (0..record.settings.partitions)
            .map(|partition| {
                let path = dir.join(partition.to_string());
                match Log::open(
                    self.fs.clone(),
                    &path,
                    config.clone(),
                    Some(Incarnation(record.incarnation)),
                    self.clock.now_ms(),
                ) {
                    Ok(log) => PartitionSlot::Ready(SharedLog::new(log)),
                    Err(error) => {
                        tracing::error!(target: "meshgate::topics", topic = %record.name, partition, %error, "partition unavailable");
                        PartitionSlot::Unavailable(error.to_string())
                    }
                }
            })
            .collect();
        Topic { record, partitions }
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        self.topics.read().get(name).cloned().ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownTopic,
                format!("topic {name} does not exist"),
            )
        })
    }

    /// Every topic, by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Fills unset settings from the defaults and checks them.
    pub fn effective_settings(&self, settings: &TopicSettings) -> Result<TopicSettings, WireError> {
        let bad = |message: String| WireError::new(ErrorCode::InvalidArgument, message);
        let partitions = match settings.partitions {
            0 => self.defaults.partitions,
            n => n,
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(bad(format!(
                "partitions must be 1..={PARTITIONS_MAX}, not {partitions}"
            )));
        }
        let segment_bytes = settings
            .segment_bytes
            .unwrap_or(self.defaults.segment_bytes);
        if !(4 << 10..=2 << 30).contains(&segment_bytes) {
            return Err(bad(format!(
                "segment_bytes must be 4096..=2147483648, not {segment_bytes}"
            )));
        }
        let durability = match settings.durability {
            Some(policy) => policy,
            None => Durability::parse(&self.defaults.durability).map_err(|e| bad(e.to_string()))?,
        };
        if let Durability::IntervalMs(ms) = durability
            && !(1..=60_000).contains(&ms)
        {
            return Err(bad(format!(
                "durability interval must be 1..=60000 ms, not {ms}"
            )));
        }
        if settings.retention_bytes == Some(0) || settings.retention_ms == Some(0) {
            return Err(bad("retention limits must be positive".into()));
        }
        Ok(TopicSettings {
            partitions,
            retention_bytes: settings.retention_bytes.or(self.defaults.retention_bytes),
            retention_ms: settings.retention_ms.or(self.defaults.retention_ms),
            durability: Some(durability),
            segment_bytes: Some(segment_bytes),
        })
    }

    /// Creates a topic; its definition is durable before this returns.
    pub async fn create(
        &self,
        name: &str,
        settings: &TopicSettings,
    ) -> Result<Arc<Topic>, WireError> {
        self.create_with(name, settings, None).await
    }

    /// Creates a topic with a given incarnation (a mirrored topic defined
    /// by another region), or a fresh one when `None`.
    pub async fn create_with(
        &self,
        name: &str,
        settings: &TopicSettings,
        incarnation: Option<u64>,
    ) -> Result<Arc<Topic>, WireError> {
        check_topic_name(name)?;
        let settings = self.effective_settings(settings)?;
        let _change = self.changes.lock().await;
        if self.topics.read().contains_key(name) {
            return Err(WireError::new(
                ErrorCode::TopicExists,
                format!("topic {name} exists already"),
            ));
        }
        if self.topics.read().len() >= self.limits.topics_max as usize {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the node holds its maximum of {} topics",
                    self.limits.topics_max
                ),
            ));
        }
        let record = TopicRecord {
            name: name.to_string(),
            incarnation: incarnation.unwrap_or_else(|| self.rng.lock().random()),
            settings,
            created_ms: self.clock.now_ms(),
        };
        let dir = topic_dir(&self.root, name, record.incarnation);
        let topic = Arc::new(self.open_partitions(record.clone(), &dir));
        if let Some(PartitionSlot::Unavailable(reason)) = topic
            .partitions
            .iter()
            .find(|slot| matches!(slot, PartitionSlot::Unavailable(_)))
        {
            let error = WireError::new(
                ErrorCode::Internal,
                format!("cannot create the partitions of {name}: {reason}"),
            );
            topic.close().await;
            let _ = self.fs.remove_dir_all(&dir);
            return Err(error);
        }
        let encoded = rmp_serde::to_vec_named(&record)
            .map_err(|error| WireError::new(ErrorCode::Internal, error))?;
        if let Err(error) = self
            .meta
            .put(format!("{META_PREFIX}{name}"), Bytes::from(encoded))
            .await
        {
            topic.close().await;
            let _ = self.fs.remove_dir_all(&dir);
            return Err(storage_error(error));
        }
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(target: "meshgate::topics", topic = name, partitions = topic.partition_count(), "topic created");
        Ok(topic)
    }

    /// Deletes a topic, its data and the committed offsets that refer to it.
    pub async fn delete(&self, name: &str) -> Result<(), WireError> {
        let _change = self.changes.lock().await;
        let topic = self.get(name)?;
        let mut changes: Vec<(String, Option<Bytes>)> =
            vec![(format!("{META_PREFIX}{name}"), None)];
        changes.extend(
            crate::offsets::keys_of_topic(&self.meta, name)
                .into_iter()
                .map(|key| (key, None)),
        );
        self.meta.apply(changes).await.map_err(storage_error)?;
        self.topics.write().remove(name);
        topic.close().await;
        let dir = topic_dir(&self.root, name, topic.record.incarnation);
        if let Err(error) = self.fs.remove_dir_all(&dir) {
            tracing::warn!(target: "meshgate::topics", path = %dir.display(), %error, "topic files left behind; removed at next start");
        }
        tracing::info!(target: "meshgate::topics", topic = name, "topic deleted");
        Ok(())
    }

    /// Runs retention on every partition.
    pub fn apply_retention(&self) {
        let now_ms = self.clock.now_ms();
        for topic in self.list() {
            for (partition, slot) in topic.partitions.iter().enumerate() {
                if let PartitionSlot::Ready(log) = slot {
                    match log.apply_retention(now_ms) {
                        Ok(report) if report.deleted_segments > 0 => {
                            tracing::info!(target: "meshgate::topics", topic = topic.name(), partition, deleted_bytes = report.deleted_bytes, start_offset = report.start_offset.0, "retention deleted old segments");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!(target: "meshgate::topics", topic = topic.name(), partition, %error, "retention failed");
                        }
                    }
                }
            }
        }
    }

    /// Syncs and closes every partition.
    pub async fn close_all(&self) {
        for topic in self.list() {
            topic.close().await;
        }
    }
}
