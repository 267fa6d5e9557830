//! Server side of pulls: one session per pull stream. It streams the log
//! from where the puller's vector says, skipping what the puller holds,
//! turning records that fail the rule's filter into gap markers, and sends
//! forwarded commits once the batches they count are sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshgate_federation::mirror::{
    CommitForward, MirrorFilter, PULL_FRAME_BYTES_MAX, PULL_PROTOCOL_VERSION, PullAck, PullFrame,
    PullRequest, Refusal, RefusalCode,
};
use meshgate_federation::transport::AuthenticatedPeer;
use meshgate_protocol::{frame, vector_entries, vector_from_entries};
use meshgate_storage::{Batch, LocalOffset, OriginSeq, RegionId, SharedLog, VersionVector};
use quinn::{RecvStream, SendStream};
use tokio::sync::{broadcast, mpsc};

use super::{CommitEvent, Mirror, MirrorError, PartitionKey};
use crate::topics::PartitionSlot;

/// Largest pull request accepted.
const REQUEST_BYTES_MAX: usize = 256 << 10;
/// Pull streams served at once per peer connection.
const SESSIONS_PER_PEER_MAX: usize = 4096;

/// Serves pull streams on every accepted peer connection.
pub(super) async fn accept_loop(
    mirror: Arc<Mirror>,
    mut accepted: mpsc::Receiver<AuthenticatedPeer>,
) {
    loop {
        let peer = tokio::select! {
            biased;
            () = mirror.shutdown.cancelled() => return,
            peer = accepted.recv() => match peer {
                Some(peer) => peer,
                None => return,
            },
        };
        tokio::spawn(serve_connection(mirror.clone(), peer));
    }
}

async fn serve_connection(mirror: Arc<Mirror>, peer: AuthenticatedPeer) {
    let node_name = peer.node().to_string();
    let connection = peer.into_connection();
    let sessions = Arc::new(tokio::sync::Semaphore::new(SESSIONS_PER_PEER_MAX));
    loop {
        let stream = tokio::select! {
            biased;
            () = mirror.shutdown.cancelled() => return,
            stream = connection.accept_bi() => stream,
        };
        let Ok((send, recv)) = stream else {
            tracing::debug!(target: "meshgate::mirror", peer = %node_name, "peer connection closed");
            return;
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!(target: "meshgate::mirror", peer = %node_name, "too many pull streams from one peer; refusing one");
            continue;
        };
        let mirror = mirror.clone();
        let peer = node_name.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_stream(mirror, send, recv).await {
                tracing::debug!(target: "meshgate::mirror", %peer, %error, "pull stream ended");
            }
            drop(permit);
        });
    }
}

async fn refuse(
    send: &mut SendStream,
    code: RefusalCode,
    message: String,
) -> Result<(), MirrorError> {
    frame::write(send, &PullFrame::Refused(Refusal { code, message })).await?;
    let _ = send.finish();
    Ok(())
}

/// Checks a pull request against the local topic; the log to serve, or the
/// refusal to send.
fn open_partition(
    mirror: &Mirror,
    request: &PullRequest,
) -> Result<(SharedLog, PartitionKey), (RefusalCode, String)> {
    if request.version != PULL_PROTOCOL_VERSION {
        return Err((
            RefusalCode::UnsupportedVersion,
            format!(
                "pull protocol {} is not spoken; this node speaks {PULL_PROTOCOL_VERSION}",
                request.version
            ),
        ));
    }
    let node = mirror.node().ok_or((
        RefusalCode::ShuttingDown,
        "the node is stopping".to_string(),
    ))?;
    let topic = node.topics().get(&request.topic).map_err(|_| {
        (
            RefusalCode::UnknownTopic,
            format!("no topic {} here", request.topic),
        )
    })?;
    if topic.incarnation().0 != request.incarnation {
        return Err((
            RefusalCode::IncarnationMismatch,
            format!(
                "topic {} here is incarnation {:016x}, not {:016x}",
                request.topic,
                topic.incarnation().0,
                request.incarnation
            ),
        ));
    }
    if topic.partition_count() != request.partitions {
        return Err((
            RefusalCode::PartitionCountMismatch,
            format!(
                "topic {} has {} partitions here, {} at the puller; mirrored topics need the same count",
                request.topic,
                topic.partition_count(),
                request.partitions
            ),
        ));
    }
    match topic.slots().get(request.partition as usize) {
        Some(PartitionSlot::Ready(log)) => Ok((
            log.clone(),
            PartitionKey {
                topic: request.topic.clone(),
                incarnation: request.incarnation,
                partition: request.partition,
            },
        )),
        Some(PartitionSlot::Unavailable(reason)) => Err((RefusalCode::Unavailable, reason.clone())),
        None => Err((
            RefusalCode::InvalidPartition,
            format!("no partition {}", request.partition),
        )),
    }
}

async fn serve_stream(
    mirror: Arc<Mirror>,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), MirrorError> {
    let request: PullRequest = match frame::read(&mut recv, REQUEST_BYTES_MAX).await {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(()),
        Err(error) => return refuse(&mut send, RefusalCode::Malformed, error.to_string()).await,
    };
    let (log, key) = match open_partition(&mirror, &request) {
        Ok(opened) => opened,
        Err((code, message)) => return refuse(&mut send, code, message).await,
    };
    let (Ok(region), Ok(vector)) = (
        RegionId::parse(&request.region),
        vector_from_entries(&request.vector),
    ) else {
        return refuse(
            &mut send,
            RefusalCode::Malformed,
            "invalid region name in the request".into(),
        )
        .await;
    };
    mirror.session_opened(&key, &region);
    let (acks_done, mut acks_ended) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_acks(
        mirror.clone(),
        key.clone(),
        region.clone(),
        recv,
        acks_done,
    ));
    let session = Session {
        mirror: mirror.clone(),
        log,
        key: key.clone(),
        filter: request.filter,
        frame_bytes: (request.frame_bytes_max.max(4 << 10)).min(mirror.config.frame_bytes_max)
            as usize,
        sent: vector,
        commits: VecDeque::new(),
    };
    let result = session.run(&mut send, &mut acks_ended).await;
    reader.abort();
    mirror.session_closed(&key, &region);
    result
}

async fn read_acks(
    mirror: Arc<Mirror>,
    key: PartitionKey,
    region: RegionId,
    mut recv: RecvStream,
    done: tokio::sync::oneshot::Sender<()>,
) {
    while let Ok(Some(ack)) = frame::read::<_, PullAck>(&mut recv, PULL_FRAME_BYTES_MAX).await {
        match vector_from_entries(&ack.vector) {
            Ok(vector) => mirror.record_ack(&key, &region, vector, ack.commits_through),
            Err(error) => {
                tracing::warn!(target: "meshgate::mirror", %error, "malformed pull acknowledgement");
                break;
            }
        }
    }
    let _ = done.send(());
}

struct Session {
    mirror: Arc<Mirror>,
    log: SharedLog,
    key: PartitionKey,
    filter: MirrorFilter,
    frame_bytes: usize,
    /// What the puller holds or was sent, per origin.
    sent: VersionVector,
    commits: VecDeque<CommitEvent>,
}

impl Session {
    async fn run(
        mut self,
        send: &mut SendStream,
        acks_ended: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> Result<(), MirrorError> {
        let mut commit_events = self.mirror.commits.subscribe();
        // Commits made while this puller had no session come first (after
        // the records they cover, like every commit).
        self.commits.extend(self.mirror.latest_commits(&self.key));
        let (mut cursor, gaps) = self.log.lock().mirror_start(&self.sent)?;
        for gap in gaps {
            let (origin, from, to) = (gap.origin, gap.from_seq, gap.to_seq);
            let mut bytes = Vec::new();
            let count = u32::try_from(to - from).unwrap_or(u32::MAX);
            meshgate_storage::batch::encode_gap(
                &mut bytes,
                LocalOffset(0),
                &origin,
                OriginSeq(from),
                count,
                Default::default(),
            );
            frame::write(send, &PullFrame::Batches(Bytes::from(bytes))).await?;
            self.sent.set(origin, from + u64::from(count));
        }
        let idle = Duration::from_millis(self.mirror.config.idle_ms);
        loop {
            let chunk = self.log.read(cursor, self.frame_bytes)?;
            if !chunk.bytes.is_empty() {
                let out = self.select(chunk.bytes)?;
                cursor = chunk.next_offset;
                if !out.is_empty() {
                    frame::write(send, &PullFrame::Batches(Bytes::from(out))).await?;
                }
                self.send_covered_commits(send).await?;
                continue;
            }
            self.send_covered_commits(send).await?;
            let visible_before = self.log.visible_offset();
            tokio::select! {
                biased;
                () = self.mirror.shutdown.cancelled() => {
                    let _ = send.finish();
                    return Ok(());
                }
                _ = &mut *acks_ended => return Ok(()),
                event = commit_events.recv() => match event {
                    Ok(event) if event.key == self.key => self.commits.push_back(event),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // The latest commit of every group covers the ones
                        // missed (positions merge by pointwise max).
                        tracing::warn!(target: "meshgate::mirror", missed, "commit events missed; sending the latest of every group again");
                        self.commits.extend(self.mirror.latest_commits(&self.key));
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                visible = self.log.wait_visible(cursor, idle) => {
                    if visible <= cursor && visible == visible_before {
                        let vector = vector_entries(self.log.lock().vector());
                        frame::write(send, &PullFrame::Idle { vector }).await?;
                    }
                }
            }
        }
    }

    /// The batches of `bytes` the puller lacks, with filtered records
    /// turned into gap markers. Updates `sent`.
    fn select(&mut self, bytes: Bytes) -> Result<Vec<u8>, MirrorError> {
        let mut out = Vec::with_capacity(bytes.len());
        for batch in Batch::parse_all(bytes, meshgate_storage::batch::BATCH_BYTES_LIMIT)? {
            let header = batch.header();
            let held = self.sent.get(&header.origin);
            if header.next_seq().0 <= held {
                continue;
            }
            if header.base_seq.0 > held {
                tracing::error!(target: "meshgate::mirror", origin = %header.origin, held, base = header.base_seq.0, "log skips records of an origin; the puller will refuse the batch");
            }
            if self.filter.is_empty() || header.gap {
                out.extend_from_slice(batch.bytes());
            } else {
                filter_batch(&batch, &self.filter, &mut out)?;
            }
            self.sent.set(header.origin.clone(), header.next_seq().0);
        }
        Ok(out)
    }

    async fn send_covered_commits(&mut self, send: &mut SendStream) -> Result<(), MirrorError> {
        while let Some(event) = self.commits.front() {
            if !event.vector.dominated_by(&self.sent) {
                break;
            }
            let forward = CommitForward {
                id: event.id,
                group: event.group.clone(),
                vector: vector_entries(&event.vector),
                epoch: event.epoch,
            };
            frame::write(send, &PullFrame::Commit(forward)).await?;
            self.commits.pop_front();
        }
        Ok(())
    }
}

/// Re-encodes `batch` into runs: records that pass `filter` as batches,
/// the others as gap markers. Seqs stay contiguous.
fn filter_batch(
    batch: &Batch,
    filter: &MirrorFilter,
    out: &mut Vec<u8>,
) -> Result<(), MirrorError> {
    let header = batch.header();
    let mut run: Vec<meshgate_storage::Record> = Vec::new();
    let mut run_passes = true;
    let mut run_start = header.base_seq.0;
    let mut run_timestamp = header.base_timestamp;
    let flush = |run: &mut Vec<meshgate_storage::Record>,
                 passes: bool,
                 start: u64,
                 timestamp,
                 out: &mut Vec<u8>| {
        if run.is_empty() {
            return;
        }
        if passes {
            meshgate_storage::batch::encode(
                out,
                LocalOffset(0),
                &header.origin,
                OriginSeq(start),
                run,
            );
        } else {
            meshgate_storage::batch::encode_gap(
                out,
                LocalOffset(0),
                &header.origin,
                OriginSeq(start),
                run.len() as u32,
                timestamp,
            );
        }
        run.clear();
    };
    for stored in batch.records() {
        let stored = stored?;
        let passes = filter.passes(&stored.record);
        if passes != run_passes && !run.is_empty() {
            flush(&mut run, run_passes, run_start, run_timestamp, out);
            run_start = stored.origin.seq.0;
        }
        if run.is_empty() {
            run_start = stored.origin.seq.0;
        }
        run_passes = passes;
        run_timestamp = stored.record.timestamp;
        run.push(stored.record);
    }
    flush(&mut run, run_passes, run_start, run_timestamp, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use meshgate_storage::{Header, Incarnation, OriginStream, Record};

    use super::*;

    #[test]
    fn filtered_records_become_gap_markers_and_seqs_stay_contiguous() {
        let origin = OriginStream {
            region: RegionId::parse("us-east").expect("valid"),
            incarnation: Incarnation(1),
        };
        let records: Vec<Record> = (0..6)
            .map(|i| {
                let mut record = Record::from_value(format!("v{i}"));
                let pii = if i % 3 == 0 { "true" } else { "false" };
                record.headers.push(Header {
                    key: "pii".into(),
                    value: Bytes::from(pii),
                });
                record
            })
            .collect();
        let batch = Batch::encode(LocalOffset(0), &origin, OriginSeq(10), &records);
        let filter = MirrorFilter {
            header: Some(("pii".into(), "false".into())),
            key_prefix: None,
        };
        let mut out = Vec::new();
        filter_batch(&batch, &filter, &mut out).expect("filters");
        let batches = Batch::parse_all(Bytes::from(out), 1 << 20).expect("valid batches");
        let runs: Vec<(u64, u32, bool)> = batches
            .iter()
            .map(|b| {
                (
                    b.header().base_seq.0,
                    b.header().record_count,
                    b.header().gap,
                )
            })
            .collect();
        assert_eq!(
            runs,
            vec![(10, 1, true), (11, 2, false), (13, 1, true), (14, 2, false)]
        );
        let values: Vec<Bytes> = batches
            .iter()
            .flat_map(|b| b.records().map(|r| r.expect("decodes").record.value))
            .collect();
        assert_eq!(values, vec!["v1", "v2", "v4", "v5"]);
    }
}
