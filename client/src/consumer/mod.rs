//! [`Consumer`]: reads assigned partitions (standalone) or the partitions a
//! group gives it (subscribe), hands out records in offset order per
//! partition, and commits consumed positions.
//!
//! # Layout
//! - this file: positions, `poll`, `seek`, `commit`, rebalances.
//! - `fetcher`: one long-polling fetch task per assigned partition,
//!   prefetching into one bounded channel.
//! - `group`: join, sync, heartbeats, and the rejoin signal.

mod fetcher;
mod group;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use meshgate_protocol::{ErrorCode, OffsetSpec, PartitionOffset, TopicPartitions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use group::Assignor;

use crate::client::Client;
use crate::error::ClientError;
use crate::record::ConsumerRecord;
use fetcher::{FetchSettings, Fetched};
use group::Membership;

/// Where a consumer starts in a partition with no committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The earliest retained record.
    Earliest,
    /// Only records appended from now on.
    #[default]
    Latest,
}

impl OffsetReset {
    fn spec(self) -> OffsetSpec {
        match self {
            Self::Earliest => OffsetSpec::Earliest,
            Self::Latest => OffsetSpec::Latest,
        }
    }
}

/// Where [`Consumer::seek`] moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// This offset.
    Offset(u64),
    /// The earliest retained record.
    Earliest,
    /// The end (records appended from now on).
    Latest,
    /// The first record at or after these milliseconds since the epoch
    /// (the end if none is that recent).
    Timestamp(u64),
}

/// How a consumer fetches, commits and belongs to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The consumer group: needed by `subscribe` and `commit`. Default none.
    pub group: Option<String>,
    /// Where to start without a committed position. Default latest.
    pub reset: OffsetReset,
    /// Bytes one fetch of one partition returns at most (at least one
    /// batch). Default 1 MiB; 1 KiB..=64 MiB.
    pub fetch_bytes_max: u32,
    /// How long a fetch waits at the end of a partition for new records
    /// (long poll). Default 500 ms; at most 30 s.
    pub fetch_wait: Duration,
    /// Fetched chunks (one fetch's records each) buffered ahead of `poll`,
    /// over all partitions. Default 16; 1..=1024. Memory is at most this
    /// times `fetch_bytes_max`.
    pub prefetch_chunks_max: usize,
    /// Commit consumed positions at this period from `poll`, and before a
    /// rebalance or close. Default none (call [`Consumer::commit`]).
    pub auto_commit: Option<Duration>,
    /// A member that sends no heartbeat for this long is evicted; heartbeats
    /// go every third of it. Default 10 s; 100 ms..=10 min.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to rejoin. Default 30 s;
    /// 100 ms..=10 min.
    pub rebalance_timeout: Duration,
    /// The preferred assignment protocol (the other is offered second).
    pub assignor: Assignor,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group: None,
            reset: OffsetReset::Latest,
            fetch_bytes_max: 1 << 20,
            fetch_wait: Duration::from_millis(500),
            prefetch_chunks_max: 16,
            auto_commit: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            assignor: Assignor::Range,
        }
    }
}

impl ConsumerConfig {
    /// Checks every field against its documented limits.
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=64 << 20).contains(&self.fetch_bytes_max) {
            return Err("fetch_bytes_max must be in 1 KiB..=64 MiB".into());
        }
        if self.fetch_wait > Duration::from_secs(30) {
            return Err("fetch_wait must be at most 30 s".into());
        }
        if !(1..=1024).contains(&self.prefetch_chunks_max) {
            return Err("prefetch_chunks_max must be in 1..=1024".into());
        }
        let timeouts = Duration::from_millis(100)..=Duration::from_secs(600);
        if !timeouts.contains(&self.session_timeout) || !timeouts.contains(&self.rebalance_timeout)
        {
            return Err("session_timeout and rebalance_timeout must be in 100 ms..=10 min".into());
        }
        Ok(())
    }
}

type PartitionKey = (Arc<str>, u32);

/// An assigned partition.
struct Assigned {
    /// The next offset to hand out; `None` until resolved (committed
    /// position or reset policy) at the next poll.
    position: Option<u64>,
    /// Last committed position, to commit only what moved.
    committed: Option<u64>,
    /// Which fetch task's records are current.
    epoch: u64,
    fetcher: Option<JoinHandle<()>>,
}

/// Reads records from a gateway. See the module documentation.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assigned: BTreeMap<PartitionKey, Assigned>,
    membership: Option<Membership>,
    fetched: mpsc::Receiver<Fetched>,
    fetched_sender: mpsc::Sender<Fetched>,
    buffered: VecDeque<ConsumerRecord>,
    epochs: u64,
    last_commit: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.config.group)
            .field("assigned", &self.assigned.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for assigned in self.assigned.values_mut() {
            if let Some(task) = assigned.fetcher.take() {
                task.abort();
            }
        }
    }
}

impl Consumer {
    /// A consumer reading through `client`. It reads nothing until
    /// [`Consumer::assign`] or [`Consumer::subscribe`].
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        let (fetched_sender, fetched) = mpsc::channel(config.prefetch_chunks_max);
        Ok(Consumer {
            client,
            config,
            assigned: BTreeMap::new(),
            membership: None,
            fetched,
            fetched_sender,
            buffered: VecDeque::new(),
            epochs: 0,
            last_commit: Instant::now(),
        })
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads exactly these partitions (standalone; no group membership).
    /// Each starts at the group's committed position if a group is
    /// configured and has one, else per the reset policy, unless
    /// [`Consumer::seek`] says otherwise.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = (String, u32)>) {
        self.membership = None;
        let wanted: BTreeMap<PartitionKey, ()> = partitions
            .into_iter()
            .map(|(topic, partition)| ((Arc::from(topic.as_str()), partition), ()))
            .collect();
        self.set_assignment(wanted.into_keys().collect());
    }

    /// Joins the configured group and reads the partitions it assigns from
    /// `topics`; rebalances as members come and go. Takes effect at the
    /// next poll.
    pub fn subscribe(
        &mut self,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), ClientError> {
        let group = self.config.group.clone().ok_or_else(|| {
            ClientError::InvalidUse("subscribe needs a group in the consumer configuration".into())
        })?;
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        self.set_assignment(Vec::new());
        self.membership = Some(Membership::new(
            group,
            topics,
            self.config.session_timeout,
            self.config.rebalance_timeout,
            self.config.assignor,
        ));
        Ok(())
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.assigned
            .keys()
            .map(|(topic, partition)| (topic.to_string(), *partition))
            .collect()
    }

    /// The next offset [`Consumer::poll`] hands out for a partition, once known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.assigned
            .get(&(Arc::from(topic), partition))
            .and_then(|assigned| assigned.position)
    }

    /// The group generation this consumer is a member of, if it is one.
    pub fn generation(&self) -> Option<u32> {
        self.membership.as_ref().and_then(|m| m.generation)
    }

    fn set_assignment(&mut self, partitions: Vec<PartitionKey>) {
        let mut next = BTreeMap::new();
        for key in partitions {
            let assigned = self.assigned.remove(&key).unwrap_or(Assigned {
                position: None,
                committed: None,
                epoch: 0,
                fetcher: None,
            });
            next.insert(key, assigned);
        }
        for (_, mut revoked) in std::mem::replace(&mut self.assigned, next) {
            if let Some(task) = revoked.fetcher.take() {
                task.abort();
            }
        }
        self.buffered.retain(|record| {
            self.assigned
                .contains_key(&(record.topic.clone(), record.partition))
        });
    }

    /// Moves a partition's position; it must be assigned.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: Seek) -> Result<(), ClientError> {
        let key: PartitionKey = (Arc::from(topic), partition);
        if !self.assigned.contains_key(&key) {
            return Err(ClientError::InvalidUse(format!(
                "{topic}/{partition} is not assigned to this consumer"
            )));
        }
        let offset = match to {
            Seek::Offset(offset) => offset,
            Seek::Earliest | Seek::Latest | Seek::Timestamp(_) => {
                let spec = match to {
                    Seek::Earliest => OffsetSpec::Earliest,
                    Seek::Timestamp(millis) => OffsetSpec::Timestamp(millis),
                    _ => OffsetSpec::Latest,
                };
                match self.client.list_offsets(topic, partition, spec).await? {
                    Some(offset) => offset,
                    None => self
                        .client
                        .list_offsets(topic, partition, OffsetSpec::Latest)
                        .await?
                        .unwrap_or(0),
                }
            }
        };
        self.buffered
            .retain(|record| !(*record.topic == *topic && record.partition == partition));
        self.start_fetcher(key, offset);
        Ok(())
    }

    /// (Re)starts the fetch task of a partition at `offset`.
    fn start_fetcher(&mut self, key: PartitionKey, offset: u64) {
        self.epochs += 1;
        let epoch = self.epochs;
        let settings = FetchSettings {
            bytes_max: self.config.fetch_bytes_max,
            wait: self.config.fetch_wait,
            reset: self.config.reset.spec(),
        };
        let task = tokio::spawn(fetcher::run(
            self.client.clone(),
            key.0.clone(),
            key.1,
            offset,
            epoch,
            settings,
            self.fetched_sender.clone(),
        ));
        if let Some(assigned) = self.assigned.get_mut(&key) {
            if let Some(old) = assigned.fetcher.replace(task) {
                old.abort();
            }
            assigned.position = Some(offset);
            assigned.epoch = epoch;
        } else {
            task.abort();
        }
    }

    /// Resolves positions not yet known: the group's committed offsets,
    /// else the reset policy. Starts their fetch tasks.
    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        let unresolved: Vec<PartitionKey> = self
            .assigned
            .iter()
            .filter(|(_, assigned)| assigned.position.is_none())
            .map(|(key, _)| key.clone())
            .collect();
        if unresolved.is_empty() {
            return Ok(());
        }
        let mut committed = BTreeMap::new();
        if let Some(group) = &self.config.group {
            let mut by_topic: BTreeMap<String, Vec<u32>> = BTreeMap::new();
            for (topic, partition) in &unresolved {
                by_topic
                    .entry(topic.to_string())
                    .or_default()
                    .push(*partition);
            }
            let wanted = by_topic
                .into_iter()
                .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                .collect();
            for position in self.client.committed_offsets(group, Some(wanted)).await? {
                if let Some(offset) = position.offset {
                    committed.insert((position.topic, position.partition), offset);
                }
            }
        }
        for key in unresolved {
            let offset = match committed.get(&(key.0.to_string(), key.1)) {
                Some(offset) => *offset,
                None => self
                    .client
                    .list_offsets(&key.0, key.1, self.config.reset.spec())
                    .await?
                    .unwrap_or(0),
            };
            if let Some(assigned) = self.assigned.get_mut(&key) {
                assigned.committed = committed.get(&(key.0.to_string(), key.1)).copied();
            }
            self.start_fetcher(key, offset);
        }
        Ok(())
    }

    /// Rejoins the group if the membership is new or out of date.
    async fn ensure_membership(&mut self) -> Result<(), ClientError> {
        let Some(membership) = &self.membership else {
            return Ok(());
        };
        if !membership.signal.needs_rejoin() {
            return Ok(());
        }
        // Stop reading what may be revoked before anyone else reads it.
        for assigned in self.assigned.values_mut() {
            if let Some(task) = assigned.fetcher.take() {
                task.abort();
            }
        }
        if self.config.auto_commit.is_some()
            && membership.generation.is_some()
            && let Err(error) = self.commit().await
        {
            tracing::debug!(target: "meshgate::client::consumer", %error, "commit before rebalance failed");
        }
        let Some(membership) = self.membership.as_mut() else {
            return Ok(());
        };
        let assignment = membership.join(&self.client).await?;
        let partitions: Vec<PartitionKey> = assignment
            .into_iter()
            .flat_map(|tp| {
                let topic: Arc<str> = Arc::from(tp.topic.as_str());
                tp.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect();
        // Positions are re-read from the committed offsets: another member
        // may have moved them while the partition was elsewhere.
        self.set_assignment(Vec::new());
        self.set_assignment(partitions);
        Ok(())
    }

    /// Waits up to `timeout` for records and returns those that arrived
    /// (possibly none). Keeps the group membership alive, rebalancing when
    /// asked, and auto-commits when configured.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.buffered.is_empty() {
            self.fill(timeout).await?;
        }
        let records: Vec<ConsumerRecord> = self.buffered.drain(..).collect();
        for record in &records {
            self.advance(record);
        }
        Ok(records)
    }

    /// Waits for the next record.
    pub async fn next(&mut self) -> Result<ConsumerRecord, ClientError> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                self.advance(&record);
                return Ok(record);
            }
            self.fill(self.config.fetch_wait).await?;
        }
    }

    /// Moves a partition's position past a record handed out.
    fn advance(&mut self, record: &ConsumerRecord) {
        if let Some(assigned) = self
            .assigned
            .get_mut(&(record.topic.clone(), record.partition))
        {
            assigned.position = Some(record.offset + 1);
        }
    }

    /// Group upkeep, then waits up to `timeout` for fetched records and
    /// buffers them.
    async fn fill(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.ensure_membership().await?;
        self.resolve_positions().await?;
        if let Some(period) = self.config.auto_commit
            && self.last_commit.elapsed() >= period
        {
            self.commit().await?;
        }
        let deadline = Instant::now() + timeout;
        let signal = self.membership.as_ref().map(|m| m.signal.clone());
        let first = tokio::select! {
            biased;
            fetched = self.fetched.recv() => fetched,
            () = async {
                match &signal {
                    Some(signal) => signal.notify.notified().await,
                    None => std::future::pending().await,
                }
            } => None,
            () = tokio::time::sleep_until(deadline) => None,
        };
        if let Some(fetched) = first {
            self.accept(fetched)?;
        }
        // Whatever else is already here, without waiting.
        for _ in 0..self.config.prefetch_chunks_max {
            match self.fetched.try_recv() {
                Ok(fetched) => self.accept(fetched)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Takes in a fetch task's report, dropping it if it is stale.
    fn accept(&mut self, fetched: Fetched) -> Result<(), ClientError> {
        let key = (fetched.topic, fetched.partition);
        let Some(assigned) = self.assigned.get_mut(&key) else {
            return Ok(());
        };
        if assigned.epoch != fetched.epoch {
            return Ok(());
        }
        match fetched.result {
            Ok(records) => {
                self.buffered.extend(records);
                Ok(())
            }
            Err(error) => {
                // The task stopped; it restarts from the position, so what
                // it buffered but was not handed out is fetched again.
                assigned.fetcher = None;
                let (topic, partition) = (key.0.clone(), key.1);
                self.buffered
                    .retain(|record| !(record.topic == topic && record.partition == partition));
                let Some(assigned) = self.assigned.get_mut(&key) else {
                    return Err(error);
                };
                let position = assigned.position;
                assigned.position = None;
                if let Some(offset) = position {
                    self.start_fetcher(key, offset);
                }
                Err(error)
            }
        }
    }

    /// Commits the positions of every assigned partition that moved since
    /// the last commit, and waits until the node made them durable.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let group = self.config.group.clone().ok_or_else(|| {
            ClientError::InvalidUse("commit needs a group in the consumer configuration".into())
        })?;
        self.last_commit = Instant::now();
        let offsets: Vec<PartitionOffset> = self
            .assigned
            .iter()
            .filter_map(|((topic, partition), assigned)| {
                let position = assigned.position?;
                (assigned.committed != Some(position)).then(|| PartitionOffset {
                    topic: topic.to_string(),
                    partition: *partition,
                    offset: position,
                })
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let member = self
            .membership
            .as_ref()
            .and_then(Membership::commit_identity);
        if self.membership.is_some() && member.is_none() {
            return Err(ClientError::InvalidUse(
                "not a member of the group yet: poll first".into(),
            ));
        }
        let result = self
            .client
            .commit_offsets(&group, member, offsets.clone())
            .await;
        if let Err(error) = &result {
            if let Some(membership) = &self.membership {
                membership.signal.raise_for(error);
            }
            return result;
        }
        for offset in offsets {
            if let Some(assigned) = self
                .assigned
                .get_mut(&(Arc::from(offset.topic.as_str()), offset.partition))
            {
                assigned.committed = Some(offset.offset);
            }
        }
        Ok(())
    }

    /// Commits (when auto-commit is on), leaves the group, stops fetching.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.config.auto_commit.is_some() && self.config.group.is_some() {
            match self.commit().await {
                Ok(()) => {}
                Err(error) if error.code() == Some(ErrorCode::RebalanceInProgress) => {}
                Err(error) => return Err(error),
            }
        }
        self.set_assignment(Vec::new());
        if let Some(mut membership) = self.membership.take() {
            membership.leave(&self.client).await?;
        }
        Ok(())
    }
}
