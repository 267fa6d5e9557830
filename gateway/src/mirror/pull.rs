//! A puller: keeps one pull stream open to a node of a source region for
//! one partition, appends what arrives (idempotently, contiguously),
//! acknowledges what is durable, and applies forwarded commits. On any
//! failure it retries with bounded exponential backoff, resuming from its
//! vector: nothing is re-sent wholesale.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshgate_federation::mirror::{
    CommitForward, MirrorFilter, PULL_FRAME_BYTES_MAX, PULL_PROTOCOL_VERSION, PullAck, PullFrame,
    PullRequest,
};
use meshgate_federation::transport::NodeName;
use meshgate_protocol::{frame, vector_entries, vector_from_entries};
use meshgate_storage::{AppendOutcome, Batch, OriginStream, RegionId, SharedLog, VersionVector};
use parking_lot::Mutex;
use quinn::{RecvStream, SendStream};
use tokio_util::sync::CancellationToken;

use super::{Mirror, MirrorError, PartitionKey};

/// One pull: a partition of a topic from a source region, for a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct PullKey {
    pub(super) rule: String,
    pub(super) partition: PartitionKey,
    pub(super) source_region: RegionId,
}

/// Where and how to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PullTarget {
    pub(super) node: NodeName,
    pub(super) filter: MirrorFilter,
    pub(super) partitions: u32,
}

/// What a puller reports for `mirror status`.
#[derive(Debug, Clone, Default)]
pub(super) struct PullStatus {
    pub(super) state: &'static str,
    pub(super) error: Option<String>,
    pub(super) records_pulled: u64,
    pub(super) gap_records: u64,
    /// What the source said it holds (idle frames).
    pub(super) source_vector: VersionVector,
    /// Since when this node has been behind an origin's head.
    pub(super) behind_since: BTreeMap<OriginStream, tokio::time::Instant>,
}

/// Runs until `cancel` fires.
pub(super) async fn run_puller(
    mirror: Arc<Mirror>,
    key: PullKey,
    target: PullTarget,
    status: Arc<Mutex<PullStatus>>,
    cancel: CancellationToken,
) {
    let initial = Duration::from_millis(mirror.config.retry_initial_ms);
    let longest = Duration::from_millis(mirror.config.retry_max_ms);
    let mut failures: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            outcome = pull_once(&mirror, &key, &target, &status) => outcome,
        };
        let wait = match outcome {
            Ok(()) => {
                failures = 0;
                initial
            }
            Err(error) => {
                let refused = matches!(error, MirrorError::Refused { .. });
                {
                    let mut status = status.lock();
                    status.state = if refused { "refused" } else { "connecting" };
                    status.error = Some(error.to_string());
                }
                tracing::debug!(target: "meshgate::mirror", topic = %key.partition.topic, partition = key.partition.partition, source = %target.node, %error, "pull interrupted");
                failures = failures.saturating_add(1);
                if refused {
                    longest
                } else {
                    initial.saturating_mul(1 << failures.min(16)).min(longest)
                }
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn local_log(mirror: &Mirror, key: &PartitionKey) -> Result<SharedLog, MirrorError> {
    let node = mirror
        .node()
        .ok_or_else(|| MirrorError::Unavailable("the node is stopping".into()))?;
    let topic = node
        .topics()
        .get(&key.topic)
        .map_err(|error| MirrorError::Unavailable(error.message))?;
    if topic.incarnation().0 != key.incarnation {
        return Err(MirrorError::Unavailable(format!(
            "local topic {} is another incarnation",
            key.topic
        )));
    }
    topic
        .partition(key.partition)
        .cloned()
        .map_err(|error| MirrorError::Unavailable(error.message))
}

async fn pull_once(
    mirror: &Arc<Mirror>,
    key: &PullKey,
    target: &PullTarget,
    status: &Mutex<PullStatus>,
) -> Result<(), MirrorError> {
    let log = local_log(mirror, &key.partition)?;
    let Some(connection) = mirror.cluster.links().connection(&target.node) else {
        status.lock().state = "connecting";
        return Err(MirrorError::Connection(format!(
            "no link to {} yet",
            target.node
        )));
    };
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|error| MirrorError::Connection(error.to_string()))?;
    let request = PullRequest {
        version: PULL_PROTOCOL_VERSION,
        region: mirror.region.to_string(),
        topic: key.partition.topic.clone(),
        incarnation: key.partition.incarnation,
        partitions: target.partitions,
        partition: key.partition.partition,
        vector: vector_entries(log.lock().vector()),
        filter: target.filter.clone(),
        frame_bytes_max: mirror.config.frame_bytes_max,
    };
    frame::write(&mut send, &request).await?;
    {
        let mut status = status.lock();
        status.state = "pulling";
        status.error = None;
    }
    let mut commits_through = 0;
    receive(
        mirror,
        key,
        target,
        status,
        &log,
        &mut send,
        &mut recv,
        &mut commits_through,
    )
    .await
}

#[allow(clippy::too_many_arguments)] // one loop over the pieces of one pull
async fn receive(
    mirror: &Arc<Mirror>,
    key: &PullKey,
    target: &PullTarget,
    status: &Mutex<PullStatus>,
    log: &SharedLog,
    send: &mut SendStream,
    recv: &mut RecvStream,
    commits_through: &mut u64,
) -> Result<(), MirrorError> {
    loop {
        let Some(frame) = frame::read::<_, PullFrame>(recv, PULL_FRAME_BYTES_MAX).await? else {
            return Ok(());
        };
        match frame {
            PullFrame::Batches(bytes) => {
                append_batches(mirror, log, bytes, status).await?;
            }
            PullFrame::Commit(commit) => {
                apply_commit(mirror, &key.partition, commit.clone()).await;
                *commits_through = commit.id;
            }
            PullFrame::Idle { vector } => {
                if let Ok(vector) = vector_from_entries(&vector) {
                    status.lock().source_vector = vector;
                }
                continue;
            }
            PullFrame::Refused(refusal) => {
                return Err(MirrorError::Refused {
                    peer: target.node.to_string(),
                    code: refusal.code,
                    message: refusal.message,
                });
            }
        }
        let ack = PullAck {
            vector: vector_entries(log.lock().vector()),
            commits_through: *commits_through,
        };
        frame::write(send, &ack).await?;
    }
}

/// Appends whole batches from the source and waits until they are durable.
async fn append_batches(
    mirror: &Mirror,
    log: &SharedLog,
    bytes: bytes::Bytes,
    status: &Mutex<PullStatus>,
) -> Result<(), MirrorError> {
    let now_ms = mirror.node().map_or(0, |node| node.clock().now_ms());
    let mut last = None;
    let (mut records, mut gaps) = (0u64, 0u64);
    for batch in Batch::parse_all(bytes, meshgate_storage::batch::BATCH_BYTES_LIMIT)? {
        // The source is authenticated, but a damaged record must not enter
        // the log: every record is decoded before the append.
        batch.validate_records()?;
        let pending = log.append_batch(&batch, now_ms)?;
        if let AppendOutcome::Appended { info, .. } = pending.value() {
            let count = info.next_offset.0 - info.base_offset.0;
            if batch.header().gap {
                gaps += count;
                tracing::warn!(target: "meshgate::mirror", origin = %batch.header().origin, from = info.base_seq.0, records = count, "records deleted by retention before they reached this region: gap marker appended");
            } else {
                records += count;
            }
        }
        last = Some(pending);
    }
    if let Some(pending) = last {
        pending.durable().await?;
    }
    let mut status = status.lock();
    status.records_pulled += records;
    status.gap_records += gaps;
    Ok(())
}

async fn apply_commit(mirror: &Mirror, key: &PartitionKey, commit: CommitForward) {
    let Some(node) = mirror.node() else { return };
    if !mirror.commit_epoch_current(&commit.group, commit.epoch) {
        tracing::debug!(target: "meshgate::mirror", group = %commit.group, epoch = commit.epoch, "forwarded commit of an older lease ignored");
        return;
    }
    let Ok(vector) = vector_from_entries(&commit.vector) else {
        tracing::warn!(target: "meshgate::mirror", group = %commit.group, "malformed forwarded commit ignored");
        return;
    };
    let result = crate::offsets::merge_forwarded(
        node.meta(),
        &commit.group,
        &key.topic,
        key.partition,
        key.incarnation,
        &vector,
        node.clock().now_ms(),
    )
    .await;
    if let Err(error) = result {
        tracing::warn!(target: "meshgate::mirror", group = %commit.group, %error, "forwarded commit not stored");
    }
}
