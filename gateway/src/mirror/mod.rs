//! Cross-region mirroring on a node: rules and topic definitions from the
//! cluster configuration, one puller per (rule, topic, partition, source
//! region), one server session per pull stream, `mirrored(k)`
//! acknowledgements, commit forwarding and group leases. The semantics and
//! how they are met are in `federation/src/mirror/design.md`.
//!
//! # Layout
//! - this file: [`Mirror`], its configuration, and the acknowledgement book
//!   shared by pullers, sessions, producers and committers.
//! - `reconcile.rs`: rules and topic definitions -> local topics and the
//!   set of running pullers.
//! - `pull.rs`: a puller: opens a pull stream, appends, acknowledges.
//! - `serve.rs`: a server session: streams the log and forwarded commits.
//! - `rules.rs`: rule changes from clients, topic-definition records,
//!   status and lag.
//! - `lease.rs`: group leases across regions.

mod lease;
mod pull;
mod reconcile;
mod rules;
mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use meshgate_federation::mirror::MirrorRule;
use meshgate_protocol::{ErrorCode, WireError};
use meshgate_storage::{OriginStream, RegionId, VersionVector};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::node::Node;

pub use lease::GroupLease;
pub use rules::{TopicDefinition, rule_from_spec, spec_from_rule};

/// Mirroring settings of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// How long a `mirrored(k)` produce waits for k regions, in ms.
    /// Default 10 000; 1..=600 000.
    pub ack_timeout_ms: u64,
    /// How long a commit on a mirrored topic waits for the connected
    /// pullers to hold it, in ms (it is durable here either way).
    /// Default 2 000; 0..=60 000.
    pub commit_wait_ms: u64,
    /// Most bytes of batches per pull frame. Default 1 MiB; 4 KiB..=16 MiB.
    pub frame_bytes_max: u32,
    /// A pull stream with nothing to send sends an idle frame this often,
    /// in ms. Default 1 000; 10..=60 000.
    pub idle_ms: u64,
    /// First wait before a failed pull is retried, in ms; doubles up to
    /// `retry_max_ms`. Default 100.
    pub retry_initial_ms: u64,
    /// Longest wait between pull retries, in ms. Default 5 000.
    pub retry_max_ms: u64,
    /// How often rules, topics and pullers are reconciled besides on every
    /// configuration change, in ms. Default 2 000; 10..=600 000.
    pub reconcile_ms: u64,
    /// How often this node advertises the heads of its origin streams, in
    /// ms. Default 1 000; 10..=600 000.
    pub heads_ms: u64,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 10_000,
            commit_wait_ms: 2_000,
            frame_bytes_max: 1 << 20,
            idle_ms: 1_000,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            reconcile_ms: 2_000,
            heads_ms: 1_000,
        }
    }
}

impl MirrorConfig {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), String> {
        let within = |name: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} = {value} is outside {min}..={max}"))
            }
        };
        within("ack_timeout_ms", self.ack_timeout_ms, 1, 600_000)?;
        within("commit_wait_ms", self.commit_wait_ms, 0, 60_000)?;
        within(
            "frame_bytes_max",
            self.frame_bytes_max.into(),
            4 << 10,
            16 << 20,
        )?;
        within("idle_ms", self.idle_ms, 10, 60_000)?;
        within("retry_initial_ms", self.retry_initial_ms, 1, 60_000)?;
        within(
            "retry_max_ms",
            self.retry_max_ms,
            self.retry_initial_ms,
            600_000,
        )?;
        within("reconcile_ms", self.reconcile_ms, 10, 600_000)?;
        within("heads_ms", self.heads_ms, 10, 600_000)
    }
}

/// Why a pull or a pull session ended.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The stream failed or carried a malformed frame; the pull is retried.
    #[error("pull stream: {0}")]
    Stream(#[from] meshgate_protocol::ProtocolError),
    /// The local log refused or failed; the pull is retried.
    #[error("storage: {0}")]
    Storage(#[from] meshgate_storage::StorageError),
    /// The source refused the pull; retried after the longest backoff.
    #[error("refused by {peer}: {code:?}: {message}")]
    Refused {
        /// The source node.
        peer: String,
        /// Why.
        code: meshgate_federation::mirror::RefusalCode,
        /// Details.
        message: String,
    },
    /// The peer connection could not be used; retried.
    #[error("peer connection: {0}")]
    Connection(String),
    /// The local topic or partition cannot be mirrored now; retried.
    #[error("{0}")]
    Unavailable(String),
}

/// A partition of one incarnation of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The topic.
    pub topic: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// The partition.
    pub partition: u32,
}

/// A committed group position to forward to pullers of its partition.
#[derive(Debug, Clone)]
pub struct CommitEvent {
    /// Increases with every event of this node.
    pub id: u64,
    /// The partition.
    pub key: PartitionKey,
    /// The group.
    pub group: String,
    /// The position as stored.
    pub vector: VersionVector,
    /// The group's lease epoch.
    pub epoch: u64,
}

/// What pullers acknowledged, per partition and pulling region.
#[derive(Debug, Default)]
struct AckBook {
    vectors: BTreeMap<PartitionKey, BTreeMap<RegionId, VersionVector>>,
    commits: BTreeMap<PartitionKey, BTreeMap<RegionId, u64>>,
    /// Pulling regions with a live session, per partition.
    sessions: BTreeMap<PartitionKey, BTreeMap<RegionId, usize>>,
    /// When each pulling region last acknowledged, per partition.
    acked_at: BTreeMap<PartitionKey, BTreeMap<RegionId, tokio::time::Instant>>,
}

/// Mirroring on one node.
pub struct Mirror {
    this: Weak<Mirror>,
    node: Weak<Node>,
    cluster: Arc<Cluster>,
    region: RegionId,
    config: MirrorConfig,
    book: Mutex<AckBook>,
    /// Bumped whenever the book changes; waiters re-check.
    book_changed: watch::Sender<u64>,
    commits: broadcast::Sender<CommitEvent>,
    next_commit_id: Mutex<u64>,
    /// The latest commit of each group, per partition: a pull session that
    /// starts sends them first, so a puller whose session was down when a
    /// commit was made still gets it. In memory: after a restart of this
    /// node, pullers get a group's position again with its next commit. One
    /// entry per group and partition committed here (groups are bounded by
    /// the groups configuration's `groups_max`).
    latest_commits: Mutex<BTreeMap<PartitionKey, BTreeMap<String, CommitEvent>>>,
    state: Mutex<reconcile::State>,
    reconciling: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("region", &self.region)
            .finish()
    }
}

/// Commit events buffered per server session before it falls behind and
/// re-reads the stored positions.
const COMMIT_EVENTS_BUFFERED: usize = 4096;

impl Mirror {
    /// Starts mirroring for `node`: serves pulls on accepted peer
    /// connections, reconciles rules and pullers, advertises heads.
    pub fn start(
        node: &Arc<Node>,
        cluster: Arc<Cluster>,
        shutdown: CancellationToken,
    ) -> Arc<Mirror> {
        let config = node.config().mirror.clone();
        let (book_changed, _) = watch::channel(0);
        let (commits, _) = broadcast::channel(COMMIT_EVENTS_BUFFERED);
        let mirror = Arc::new_cyclic(|this| Mirror {
            this: this.clone(),
            node: Arc::downgrade(node),
            region: node.region().clone(),
            cluster,
            config,
            book: Mutex::new(AckBook::default()),
            book_changed,
            commits,
            next_commit_id: Mutex::new(1),
            latest_commits: Mutex::new(BTreeMap::new()),
            state: Mutex::new(reconcile::State::default()),
            reconciling: tokio::sync::Mutex::new(()),
            shutdown,
        });
        if let Some(accepted) = mirror.cluster.take_accepted() {
            tokio::spawn(serve::accept_loop(mirror.clone(), accepted));
        }
        tokio::spawn(reconcile::reconcile_loop(mirror.clone()));
        tokio::spawn(rules::heads_loop(mirror.clone()));
        mirror
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.node.upgrade()
    }

    /// This node's region.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// The rules currently known.
    pub fn rules(&self) -> Vec<MirrorRule> {
        self.state.lock().rules.values().cloned().collect()
    }

    /// The rules that mirror `topic` with this region.
    pub fn rules_for(&self, topic: &str) -> Vec<MirrorRule> {
        self.state
            .lock()
            .rules
            .values()
            .filter(|rule| rule.regions.contains(&self.region) && rule.topics.matches(topic))
            .cloned()
            .collect()
    }

    fn bump_book(&self) {
        self.book_changed.send_modify(|version| *version += 1);
    }

    fn session_opened(&self, key: &PartitionKey, region: &RegionId) {
        *self
            .book
            .lock()
            .sessions
            .entry(key.clone())
            .or_default()
            .entry(region.clone())
            .or_default() += 1;
        self.bump_book();
    }

    fn session_closed(&self, key: &PartitionKey, region: &RegionId) {
        let mut book = self.book.lock();
        if let Some(sessions) = book.sessions.get_mut(key)
            && let Some(count) = sessions.get_mut(region)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sessions.remove(region);
            }
        }
        drop(book);
        self.bump_book();
    }

    fn record_ack(
        &self,
        key: &PartitionKey,
        region: &RegionId,
        vector: VersionVector,
        commits_through: u64,
    ) {
        let mut book = self.book.lock();
        book.vectors
            .entry(key.clone())
            .or_default()
            .entry(region.clone())
            .or_default()
            .merge(&vector);
        let acked = book
            .commits
            .entry(key.clone())
            .or_default()
            .entry(region.clone())
            .or_default();
        *acked = (*acked).max(commits_through);
        book.acked_at
            .entry(key.clone())
            .or_default()
            .insert(region.clone(), tokio::time::Instant::now());
        drop(book);
        self.bump_book();
    }

    /// Regions other than this one whose acknowledged vector holds records
    /// `..seq_end` of `origin` in `key`.
    fn regions_holding(
        &self,
        key: &PartitionKey,
        origin: &OriginStream,
        seq_end: u64,
    ) -> BTreeSet<RegionId> {
        let book = self.book.lock();
        book.vectors
            .get(key)
            .map(|regions| {
                regions
                    .iter()
                    .filter(|(region, vector)| {
                        **region != self.region && vector.get(origin) >= seq_end
                    })
                    .map(|(region, _)| region.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `k` other regions hold records `..seq_end` of `origin`
    /// in `key` (`acks = mirrored(k)`), or fails with `Timeout` saying how
    /// many do.
    pub async fn wait_mirrored(
        &self,
        key: &PartitionKey,
        origin: &OriginStream,
        seq_end: u64,
        k: u32,
    ) -> Result<(), WireError> {
        if k == 0 {
            return Ok(());
        }
        let mut changes = self.book_changed.subscribe();
        let wait = async {
            loop {
                if self.regions_holding(key, origin, seq_end).len() >= k as usize {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        if tokio::time::timeout(timeout, wait).await.is_ok()
            && self.regions_holding(key, origin, seq_end).len() >= k as usize
        {
            return Ok(());
        }
        let holding = self.regions_holding(key, origin, seq_end);
        Err(WireError::new(
            ErrorCode::Timeout,
            format!(
                "the records are durable here but only {} of the {k} regions asked for hold them after {} ms ({}); they keep mirroring",
                holding.len(),
                self.config.ack_timeout_ms,
                holding
                    .iter()
                    .map(RegionId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// Queues a committed position for every pull stream of its partition
    /// and returns the event id.
    pub fn forward_commit(
        &self,
        key: PartitionKey,
        group: &str,
        vector: VersionVector,
        epoch: u64,
    ) -> u64 {
        let id = {
            let mut next = self.next_commit_id.lock();
            let id = *next;
            *next += 1;
            id
        };
        let event = CommitEvent {
            id,
            key,
            group: group.to_string(),
            vector,
            epoch,
        };
        {
            // Ids are taken before this lock: keep the newer of two racing.
            let mut latest = self.latest_commits.lock();
            let groups = latest.entry(event.key.clone()).or_default();
            if groups
                .get(&event.group)
                .is_none_or(|kept| kept.id < event.id)
            {
                groups.insert(event.group.clone(), event.clone());
            }
        }
        let _ = self.commits.send(event);
        id
    }

    /// The latest commit of every group of `key`, oldest first. Receivers
    /// merge positions by pointwise max, so sending one again is harmless.
    pub(crate) fn latest_commits(&self, key: &PartitionKey) -> Vec<CommitEvent> {
        let mut events: Vec<CommitEvent> = self
            .latest_commits
            .lock()
            .get(key)
            .map(|groups| groups.values().cloned().collect())
            .unwrap_or_default();
        events.sort_by_key(|event| event.id);
        events
    }

    /// Waits (bounded by `commit_wait_ms`) until every region with a live
    /// pull session of `key` acknowledged commit event `id`. A region the
    /// membership holds down is not waited for: its session lingers until
    /// the transport times out, and it gets the commit when it returns.
    pub async fn wait_commit_forwarded(&self, key: &PartitionKey, id: u64) {
        let mut changes = self.book_changed.subscribe();
        let alive = self.alive_regions().await;
        let done = || {
            let book = self.book.lock();
            let Some(sessions) = book.sessions.get(key) else {
                return true;
            };
            sessions
                .keys()
                .filter(|region| alive.contains(*region))
                .all(|region| {
                    book.commits
                        .get(key)
                        .and_then(|acked| acked.get(region))
                        .is_some_and(|acked| *acked >= id)
                })
        };
        let wait = async {
            while !done() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let limit = Duration::from_millis(self.config.commit_wait_ms);
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::debug!(target: "meshgate::mirror", topic = %key.topic, partition = key.partition, id, "commit not yet acknowledged by every puller; it travels on");
        }
    }
}
