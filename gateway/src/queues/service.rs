//! The async shell around the queue state machines on one node: the
//! registry of queues, receiving (with long polls), settling, redrive,
//! descriptions, the hot-record cache, and the flush loop that expires
//! leases and persists ack state.
//!
//! # Flush policy
//! Acks, dead-lettering and redrives mark a queue dirty; every `flush_ms`
//! the flush loop writes each dirty queue's state file atomically (see
//! [`super::state_file`]). A crash loses at most the acks of the last
//! `flush_ms` plus the write time: those messages are delivered again
//! (at-least-once). Nothing unacked is lost: unacked messages are not in
//! the ack set, so the dispatcher routes them again after a restart, and
//! leases in flight at the crash come back as deliverable messages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use meshgate_protocol::{
    ErrorCode, QueueDescription, QueueMessage, QueueSpec, Receive, Redrive, Settle, SettleAction,
    WireError,
};
use meshgate_storage::{FileSystem, LocalOffset, StoredRecord};
use parking_lot::{Mutex, RwLock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::domain::{DEAD_LETTER_SUFFIX, Domain, Side};
use super::error::QueueError;
use super::filter::Filter;
use super::queue::LeaseId;
use super::state_file;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::errors::storage_error;
use crate::node::Node;

/// Most messages one receive returns.
pub const RECEIVE_COUNT_MAX: u32 = 1_000;
/// A queue whose floor only moved past records it does not take is
/// written at most this often, in ms (re-reading them after a crash is
/// harmless, only slower).
const LAZY_WRITE_MS: u64 = 5_000;
/// Most leases one settle request carries.
pub const SETTLE_LEASES_MAX: usize = 10_000;

/// Dispatch-queue settings of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// How often dirty ack state is written and leases are expired, in ms.
    /// A crash redelivers at most this much of the latest acks. Default
    /// 250; 10..=60 000.
    pub flush_ms: u64,
    /// Memory for the hot-record cache that serves deliveries without
    /// reading the log, in bytes. Default 64 MiB; 0 turns it off.
    pub cache_bytes_max: u64,
    /// Bytes a dispatcher reads from its partition at a time. Default
    /// 1 MiB; 4 KiB..=16 MiB.
    pub read_bytes_max: u32,
    /// How often rules are re-read besides on every configuration change,
    /// in ms. Default 2 000; 10..=600 000.
    pub reconcile_ms: u64,
    /// Dispatch rules from the configuration file (`[[queues.rules]]`),
    /// published to the cluster at start (last writer wins, as for rules
    /// added with `meshgate queue create`).
    pub rules: Vec<QueueSpec>,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        Self {
            flush_ms: 250,
            cache_bytes_max: 64 << 20,
            read_bytes_max: 1 << 20,
            reconcile_ms: 2_000,
            rules: Vec::new(),
        }
    }
}

impl QueuesConfig {
    /// Checks every field against its limits, rules included.
    pub fn validate(&self) -> Result<(), String> {
        let within = |name: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} = {value} is outside {min}..={max}"))
            }
        };
        within("flush_ms", self.flush_ms, 10, 60_000)?;
        within(
            "read_bytes_max",
            self.read_bytes_max.into(),
            4 << 10,
            16 << 20,
        )?;
        within("reconcile_ms", self.reconcile_ms, 10, 600_000)?;
        for rule in &self.rules {
            super::rules::validate_spec(rule)
                .map_err(|error| format!("rule {}: {error}", rule.name))?;
        }
        Ok(())
    }
}

/// Deliveries per second over windows of about a second.
#[derive(Debug, Default)]
struct RateWindow {
    since_ms: u64,
    delivered: u64,
    per_second: f64,
}

/// What a queue holds under its lock.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) spec: QueueSpec,
    pub(super) filter: Filter,
    pub(super) domain: Domain,
    rate: RateWindow,
    /// When the state file was last written (ms since the epoch).
    written_ms: u64,
    /// Per partition, the offset after the last record routed here since
    /// the queue opened (in memory: after a restart routing resumes at the
    /// ack floor, and routing the same record twice is harmless).
    routed_to: BTreeMap<u32, u64>,
}

impl Slot {
    /// Where the dispatcher must route next for this queue: after what it
    /// routed already, else from the ack floor; `None` for a partition the
    /// queue does not track.
    pub(super) fn next_to_route(&self, partition: u32) -> Option<u64> {
        let floor = self.domain.floor(partition)?;
        Some(
            self.routed_to
                .get(&partition)
                .map_or(floor, |routed| (*routed).max(floor)),
        )
    }

    /// Records below `end` were routed.
    pub(super) fn mark_routed(&mut self, partition: u32, end: u64) {
        let routed = self.routed_to.entry(partition).or_insert(end);
        *routed = (*routed).max(end);
    }
}

/// One queue on this node.
#[derive(Debug)]
pub(super) struct QueueHandle {
    pub(super) topic: String,
    pub(super) incarnation: u64,
    pub(super) slot: Mutex<Slot>,
    /// Woken when messages may have become deliverable.
    pub(super) notify: Notify,
    path: PathBuf,
}

impl QueueHandle {
    pub(super) fn new(
        spec: QueueSpec,
        filter: Filter,
        domain: Domain,
        incarnation: u64,
        path: PathBuf,
    ) -> Self {
        Self {
            topic: spec.topic.clone(),
            incarnation,
            slot: Mutex::new(Slot {
                spec,
                filter,
                domain,
                rate: RateWindow::default(),
                written_ms: 0,
                routed_to: BTreeMap::new(),
            }),
            notify: Notify::new(),
            path,
        }
    }
}

/// Cache key: topic incarnation, partition, offset.
pub(super) type CacheKey = (u64, u32, u64);

/// Dispatch queues on one node.
pub struct Queues {
    pub(super) node: Weak<Node>,
    pub(super) cluster: Arc<Cluster>,
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: QueuesConfig,
    pub(super) long_poll_ms_max: u32,
    /// Queues by name. Lock order: this map, then a queue's slot.
    pub(super) queues: RwLock<BTreeMap<String, Arc<QueueHandle>>>,
    pub(super) dispatchers: Mutex<BTreeMap<(String, u64, u32), CancellationToken>>,
    pub(super) cache: moka::sync::Cache<CacheKey, Arc<StoredRecord>>,
    /// Records read from the log by dispatchers (once per record).
    pub(super) dispatch_reads: AtomicU64,
    /// Records read from the log to serve a delivery (cache misses).
    pub(super) delivery_reads: AtomicU64,
    pub(super) rng: Mutex<SmallRng>,
    pub(super) reconciling: tokio::sync::Mutex<()>,
    pub(super) kick: Notify,
    /// Set once the rules saved before a restart were published again;
    /// until then the saved copy is not overwritten.
    pub(super) restored: std::sync::atomic::AtomicBool,
    /// The rules as last saved to `rules.json`.
    pub(super) saved_rules: Mutex<Vec<QueueSpec>>,
    pub(super) shutdown: CancellationToken,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("queues", &self.queues.read().len())
            .finish()
    }
}

/// Log reads, for the benchmark: records the dispatchers read, and
/// records read again to serve deliveries the cache missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCounts {
    /// Records read by dispatchers.
    pub dispatch: u64,
    /// Records read for deliveries.
    pub delivery: u64,
}

impl Queues {
    /// Starts dispatch queues on a node: loads rules from the cluster
    /// configuration (after publishing the configuration file's), then
    /// keeps them in line.
    pub fn start(
        node: &Arc<Node>,
        cluster: Arc<Cluster>,
        shutdown: CancellationToken,
    ) -> Arc<Queues> {
        let config = node.config().queues.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_bytes_max)
            .weigher(|_key: &CacheKey, record: &Arc<StoredRecord>| {
                (record.record.encoded_len_max() + 64).min(u32::MAX as usize) as u32
            })
            .build();
        let queues = Arc::new(Queues {
            node: Arc::downgrade(node),
            cluster,
            fs: node.fs().clone(),
            dir: node.config().data_dir.join("queues"),
            clock: node.clock().clone(),
            long_poll_ms_max: node.config().limits.long_poll_ms_max,
            config,
            queues: RwLock::new(BTreeMap::new()),
            dispatchers: Mutex::new(BTreeMap::new()),
            cache,
            dispatch_reads: AtomicU64::new(0),
            delivery_reads: AtomicU64::new(0),
            rng: Mutex::new(SmallRng::seed_from_u64(node.clock().now_ms())),
            reconciling: tokio::sync::Mutex::new(()),
            kick: Notify::new(),
            restored: std::sync::atomic::AtomicBool::new(false),
            saved_rules: Mutex::new(Vec::new()),
            shutdown,
        });
        tokio::spawn(super::rules::reconcile_loop(queues.clone()));
        tokio::spawn(flush_loop(queues.clone()));
        queues
    }

    pub(super) fn node(&self) -> Option<Arc<Node>> {
        self.node.upgrade()
    }

    pub(super) fn lease_base(&self) -> u64 {
        // Leave room below the top bit (the dead-letter half) and above.
        self.rng.lock().random::<u64>() >> 2
    }

    /// Asks the reconciler to run (topics changed).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Log reads so far.
    pub fn read_counts(&self) -> ReadCounts {
        ReadCounts {
            dispatch: self.dispatch_reads.load(Ordering::Relaxed),
            delivery: self.delivery_reads.load(Ordering::Relaxed),
        }
    }

    fn lookup(&self, queue: &str) -> Result<(Arc<QueueHandle>, Side), QueueError> {
        let (name, side) = match queue.strip_suffix(DEAD_LETTER_SUFFIX) {
            Some(name) => (name, Side::Dead),
            None => (queue, Side::Main),
        };
        self.queues
            .read()
            .get(name)
            .cloned()
            .map(|handle| (handle, side))
            .ok_or_else(|| QueueError::UnknownQueue(queue.to_string()))
    }

    /// Leases messages, waiting up to the request's `wait_ms` for a first one.
    pub async fn receive(&self, request: Receive) -> Result<Vec<QueueMessage>, WireError> {
        let (handle, side) = self.lookup(&request.queue)?;
        if !(1..=RECEIVE_COUNT_MAX).contains(&request.count_max) {
            return Err(QueueError::InvalidArgument(format!(
                "count_max must be 1..={RECEIVE_COUNT_MAX}"
            ))
            .into());
        }
        let wait = Duration::from_millis(request.wait_ms.min(self.long_poll_ms_max).into());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = handle.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now_ms = self.clock.now_ms();
            let (deliveries, wake_ms) = {
                let mut slot = handle.slot.lock();
                let deliveries = slot.domain.handle_receive(
                    side,
                    now_ms,
                    request.count_max as usize,
                    request.visibility_ms,
                );
                (deliveries, slot.domain.poll_timeout())
            };
            if !deliveries.is_empty() {
                return self.messages(&handle, side, deliveries);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = wake_ms
                .map(|wake_ms| now + Duration::from_millis(wake_ms.saturating_sub(now_ms).max(1)))
                .map_or(deadline, |wake| wake.min(deadline));
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    return Err(WireError::new(ErrorCode::ShuttingDown, "the node is stopping"));
                }
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Reads the records behind deliveries: from the cache, else the log.
    fn messages(
        &self,
        handle: &QueueHandle,
        side: Side,
        deliveries: Vec<super::queue::Delivery>,
    ) -> Result<Vec<QueueMessage>, WireError> {
        let node = self
            .node()
            .ok_or_else(|| WireError::new(ErrorCode::ShuttingDown, "the node is stopping"))?;
        let topic = node.topics().get(&handle.topic)?;
        let mut messages = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let key = (
                handle.incarnation,
                delivery.id.partition,
                delivery.id.offset,
            );
            let record = match self.cache.get(&key) {
                Some(record) => Some(record),
                None => {
                    self.delivery_reads.fetch_add(1, Ordering::Relaxed);
                    let log = topic.partition(delivery.id.partition)?;
                    let chunk = log
                        .read(LocalOffset(delivery.id.offset), 64 << 10)
                        .map_err(storage_error)?;
                    chunk
                        .records_from(LocalOffset(delivery.id.offset))
                        .map_err(storage_error)?
                        .into_iter()
                        .find(|record| record.offset.0 == delivery.id.offset)
                        .map(Arc::new)
                }
            };
            let Some(record) = record else {
                // Retention deleted it: nothing to deliver, so it is done.
                tracing::warn!(target: "meshgate::queues", topic = %handle.topic, partition = delivery.id.partition, offset = delivery.id.offset, "message deleted by retention before delivery");
                let _ =
                    handle
                        .slot
                        .lock()
                        .domain
                        .handle_ack(side, self.clock.now_ms(), delivery.lease);
                continue;
            };
            messages.push(QueueMessage {
                lease: delivery.lease.0,
                partition: delivery.id.partition,
                offset: delivery.id.offset,
                attempt: delivery.attempt,
                deadline_ms: delivery.deadline_ms,
                key: record.record.key.clone(),
                value: record.record.value.clone(),
                headers: record.record.headers.clone(),
                timestamp_ms: record.record.timestamp.millis(),
            });
        }
        Ok(messages)
    }

    /// Acks, nacks or extends leases; per lease, `None` or the error.
    pub fn settle(&self, request: Settle) -> Result<Vec<Option<WireError>>, WireError> {
        let (handle, side) = self.lookup(&request.queue)?;
        if request.leases.len() > SETTLE_LEASES_MAX {
            return Err(QueueError::InvalidArgument(format!(
                "at most {SETTLE_LEASES_MAX} leases per request"
            ))
            .into());
        }
        let now_ms = self.clock.now_ms();
        let outcomes: Vec<Option<WireError>> = {
            let mut slot = handle.slot.lock();
            request
                .leases
                .iter()
                .map(|lease| {
                    let lease = LeaseId(*lease);
                    let result = match request.action {
                        SettleAction::Ack => slot.domain.handle_ack(side, now_ms, lease).map(drop),
                        SettleAction::Nack { delay_ms } => slot
                            .domain
                            .handle_nack(side, now_ms, lease, delay_ms)
                            .map(drop),
                        SettleAction::Extend { ms } => {
                            slot.domain.handle_extend(side, now_ms, lease, ms).map(drop)
                        }
                    };
                    result.err().map(WireError::from)
                })
                .collect()
        };
        if matches!(request.action, SettleAction::Nack { .. }) {
            handle.notify.notify_waiters();
        }
        Ok(outcomes)
    }

    /// Moves dead letters back into their queue.
    pub fn redrive(&self, request: Redrive) -> Result<u64, WireError> {
        let (handle, side) = self.lookup(&request.queue)?;
        if side == Side::Dead {
            return Err(QueueError::InvalidArgument(format!(
                "redrive names the queue, not its dead-letter queue: {}",
                request.queue.trim_end_matches(DEAD_LETTER_SUFFIX)
            ))
            .into());
        }
        let count_max = request.count_max.unwrap_or(u64::MAX).min(usize::MAX as u64) as usize;
        let moved = handle
            .slot
            .lock()
            .domain
            .handle_redrive(self.clock.now_ms(), count_max);
        handle.notify.notify_waiters();
        Ok(moved as u64)
    }

    /// A queue's rule and figures (`NAME.dlq`: those of its dead letters).
    pub fn describe(&self, queue: &str) -> Result<QueueDescription, WireError> {
        let (handle, side) = self.lookup(queue)?;
        let now_ms = self.clock.now_ms();
        let mut slot = handle.slot.lock();
        slot.domain.handle_timeout(now_ms);
        let (stats, dropped) = slot.domain.stats(side, now_ms);
        let (dead, _) = slot.domain.stats(Side::Dead, now_ms);
        Ok(QueueDescription {
            spec: slot.spec.clone(),
            depth: stats.depth,
            in_flight: stats.in_flight,
            oldest_age_ms: stats.oldest_age_ms,
            routed: stats.routed,
            delivered: stats.delivered,
            redeliveries: stats.redeliveries,
            acked: stats.acked,
            dead_lettered: stats.dead_lettered,
            dead_letter_depth: dead.depth + dead.in_flight,
            dead_letters_dropped: dropped,
            delivery_rate_per_s: if side == Side::Main {
                slot.rate.per_second
            } else {
                0.0
            },
        })
    }

    /// Every queue's description, by name.
    pub fn describe_all(&self) -> Vec<QueueDescription> {
        let names: Vec<String> = self.queues.read().keys().cloned().collect();
        names
            .iter()
            .filter_map(|name| self.describe(name).ok())
            .collect()
    }

    /// Expires leases, updates rates and writes dirty state. `force`
    /// writes every queue (at shutdown).
    async fn flush(&self, force: bool) {
        let now_ms = self.clock.now_ms();
        let handles: Vec<Arc<QueueHandle>> = self.queues.read().values().cloned().collect();
        let mut writes = Vec::new();
        for handle in handles {
            let mut slot = handle.slot.lock();
            slot.domain.handle_timeout(now_ms);
            let delivered = slot.domain.stats(Side::Main, now_ms).0.delivered;
            let rate = &mut slot.rate;
            let elapsed_ms = now_ms.saturating_sub(rate.since_ms);
            if elapsed_ms >= 1_000 {
                if rate.since_ms != 0 {
                    rate.per_second = delivered.saturating_sub(rate.delivered) as f64 * 1_000.0
                        / elapsed_ms as f64;
                }
                rate.since_ms = now_ms;
                rate.delivered = delivered;
            }
            let due = now_ms.saturating_sub(slot.written_ms) >= LAZY_WRITE_MS;
            if slot.domain.take_dirty() || force || (due && slot.domain.take_changed()) {
                slot.written_ms = now_ms;
                let mut state = slot.domain.state();
                state.topic_incarnation = handle.incarnation;
                writes.push((handle.path.clone(), state));
            }
            let deliverable = slot.domain.queue(Side::Main).has_deliverable(now_ms)
                || slot.domain.queue(Side::Dead).has_deliverable(now_ms);
            drop(slot);
            if deliverable {
                handle.notify.notify_waiters();
            }
        }
        if writes.is_empty() {
            return;
        }
        let fs = self.fs.clone();
        let dir = self.dir.clone();
        let write = move || {
            if let Err(source) = fs.create_dir_all(&dir) {
                fail_stop(&dir.display().to_string(), &source);
            }
            for (path, state) in writes {
                if let Err(error) = state_file::save(&*fs, &path, &state) {
                    // Acks that cannot be made durable would be redelivered
                    // silently after a restart: stop instead (STYLE.md,
                    // "Failures").
                    fail_stop(&path.display().to_string(), &error);
                }
            }
        };
        if self.fs.blocking_io() {
            let _ = tokio::task::spawn_blocking(write).await;
        } else {
            write();
        }
    }

    /// Writes every queue's state; called once at shutdown.
    pub async fn close(&self) {
        for (_, cancel) in std::mem::take(&mut *self.dispatchers.lock()) {
            cancel.cancel();
        }
        self.flush(true).await;
    }

    /// Per-queue figures for `/metrics`.
    pub fn sample_metrics(&self, snapshot: &crate::metrics::Snapshot) {
        use crate::metrics::QueueLabels;
        for description in self.describe_all() {
            let labels = QueueLabels {
                queue: description.spec.name.clone(),
            };
            let set = |family: &prometheus_client::metrics::family::Family<
                QueueLabels,
                prometheus_client::metrics::gauge::Gauge,
            >,
                       value: u64| {
                family.get_or_create(&labels).set(value as i64);
            };
            set(&snapshot.queue_depth, description.depth);
            set(&snapshot.queue_in_flight, description.in_flight);
            set(
                &snapshot.queue_oldest_age_ms,
                description.oldest_age_ms.unwrap_or(0),
            );
            set(&snapshot.queue_delivered, description.delivered);
            set(&snapshot.queue_redeliveries, description.redeliveries);
            set(&snapshot.queue_dead_lettered, description.dead_lettered);
            set(
                &snapshot.queue_dead_letter_depth,
                description.dead_letter_depth,
            );
            snapshot
                .queue_delivery_rate
                .get_or_create(&labels)
                .set(description.delivery_rate_per_s);
        }
        let reads = self.read_counts();
        snapshot
            .queue_log_reads
            .get_or_create(&crate::metrics::ReadLabels {
                reader: "dispatch".into(),
            })
            .set(reads.dispatch as i64);
        snapshot
            .queue_log_reads
            .get_or_create(&crate::metrics::ReadLabels {
                reader: "delivery".into(),
            })
            .set(reads.delivery as i64);
    }
}

/// Stops the process: ack state that cannot be written cannot be trusted.
fn fail_stop(what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(target: "meshgate::queues", %error, what, "cannot write queue state; stopping");
    eprintln!("meshgate: cannot write queue state {what}: {error}");
    std::process::exit(74)
}

async fn flush_loop(queues: Arc<Queues>) {
    let period = Duration::from_millis(queues.config.flush_ms);
    loop {
        tokio::select! {
            biased;
            () = queues.shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => queues.flush(false).await,
        }
    }
}
