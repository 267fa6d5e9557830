//! The producer's driver task: per-partition lanes of batches, linger,
//! sticky partitioning of unkeyed records, one batch in flight per lane,
//! sequence numbers, flush and close.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use meshgate_protocol::{ErrorCode, Produce, ProduceOk, ProduceRecord, ProducerSequence};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;

use super::{PartitionCounts, ProducerConfig};
use crate::client::Client;
use crate::error::ClientError;
use crate::record::Delivered;

/// A record accepted by `Producer::send`.
pub(super) struct Queued {
    pub(super) topic: Arc<str>,
    /// `None` for unkeyed records: the driver picks (sticky per batch).
    pub(super) partition: Option<u32>,
    pub(super) partitions: u32,
    pub(super) record: ProduceRecord,
    pub(super) size: usize,
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) reply: oneshot::Sender<Result<Delivered, ClientError>>,
}

pub(super) enum Command {
    Send(Queued),
    Flush(oneshot::Sender<()>),
}

type LaneKey = (Arc<str>, u32);

/// Who waits for each record of a batch, and the buffer room it holds.
type Waiter = (
    oneshot::Sender<Result<Delivered, ClientError>>,
    OwnedSemaphorePermit,
);

struct Batch {
    records: Vec<ProduceRecord>,
    waiters: Vec<Waiter>,
    bytes: usize,
    opened: Instant,
}

/// One partition's batches.
struct Lane {
    open: Option<Batch>,
    ready: VecDeque<Batch>,
    in_flight: bool,
    producer_id: u64,
    next_sequence: u64,
}

struct Completion {
    key: LaneKey,
    waiters: Vec<Waiter>,
    result: Result<ProduceOk, ClientError>,
}

struct Driver {
    client: Client,
    config: ProducerConfig,
    lanes: BTreeMap<LaneKey, Lane>,
    /// The partition unkeyed records of a topic currently go to, and the
    /// topic's partition count.
    sticky: BTreeMap<Arc<str>, (u32, u32)>,
    completions: mpsc::UnboundedSender<Completion>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
    producer_id: u64,
    partition_counts: PartitionCounts,
}

/// Runs until the producer is dropped or closed and everything sent is
/// acknowledged.
pub(super) async fn run(
    client: Client,
    config: ProducerConfig,
    producer_id: u64,
    partition_counts: PartitionCounts,
    mut commands: mpsc::Receiver<Command>,
) {
    // Unbounded but bounded in practice: each lane has at most one batch
    // in flight, so at most one completion per lane is ever queued.
    let (completions, mut completed) = mpsc::unbounded_channel();
    let mut driver = Driver {
        client,
        config,
        lanes: BTreeMap::new(),
        sticky: BTreeMap::new(),
        completions,
        flush_waiters: Vec::new(),
        closing: false,
        producer_id,
        partition_counts,
    };
    loop {
        let deadline = driver.next_deadline();
        tokio::select! {
            biased;
            Some(completion) = completed.recv() => driver.handle_completion(completion),
            command = commands.recv(), if !driver.closing => match command {
                Some(Command::Send(queued)) => driver.handle_send(queued),
                Some(Command::Flush(done)) => driver.flush_waiters.push(done),
                None => driver.closing = true,
            },
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
        driver.dispatch_all(Instant::now());
        if driver.is_idle() {
            for done in driver.flush_waiters.drain(..) {
                let _ = done.send(());
            }
            if driver.closing {
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

impl Driver {
    fn flushing(&self) -> bool {
        self.closing || !self.flush_waiters.is_empty()
    }

    fn is_idle(&self) -> bool {
        self.lanes
            .values()
            .all(|lane| !lane.in_flight && lane.open.is_none() && lane.ready.is_empty())
    }

    /// When the earliest open batch of an idle lane is due.
    fn next_deadline(&self) -> Option<Instant> {
        self.lanes
            .values()
            .filter(|lane| !lane.in_flight && lane.ready.is_empty())
            .filter_map(|lane| lane.open.as_ref())
            .map(|batch| batch.opened + self.config.linger)
            .min()
    }

    fn handle_send(&mut self, queued: Queued) {
        let partition = match queued.partition {
            Some(partition) => partition,
            None => {
                let partitions = queued.partitions.max(1);
                let client = &self.client;
                self.sticky
                    .entry(queued.topic.clone())
                    .or_insert_with(|| {
                        let start = (client.random_u64() % u64::from(partitions)) as u32;
                        (start, partitions)
                    })
                    .0
            }
        };
        let key = (queued.topic.clone(), partition);
        let producer_id = self.producer_id;
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            open: None,
            ready: VecDeque::new(),
            in_flight: false,
            producer_id,
            next_sequence: 0,
        });
        let batch = lane.open.get_or_insert_with(|| Batch {
            records: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        });
        batch.records.push(queued.record);
        batch.waiters.push((queued.reply, queued.permit));
        batch.bytes += queued.size;
        if batch.bytes >= self.config.batch_bytes_max
            || batch.records.len() >= self.config.batch_records_max
        {
            if let Some(full) = lane.open.take() {
                lane.ready.push_back(full);
            }
            self.advance_sticky(&key);
        }
    }

    /// Sticky partitioning: once the batch unkeyed records were filling is
    /// closed, the next ones of its topic go to the next partition.
    fn advance_sticky(&mut self, closed: &LaneKey) {
        if let Some((current, partitions)) = self.sticky.get_mut(&closed.0)
            && *current == closed.1
        {
            *current = (*current + 1) % *partitions;
        }
    }

    fn handle_completion(&mut self, completion: Completion) {
        let Completion {
            key,
            waiters,
            result,
        } = completion;
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        lane.in_flight = false;
        match result {
            Ok(ok) => {
                for (index, (reply, permit)) in waiters.into_iter().enumerate() {
                    let _ = reply.send(Ok(Delivered {
                        partition: key.1,
                        offset: ok.base_offset + index as u64,
                    }));
                    drop(permit);
                }
            }
            Err(error) => {
                // The batch may or may not have been appended: start a fresh
                // sequence under a fresh id, so the next batch is neither
                // refused as a gap nor mistaken for a resend.
                lane.producer_id = self.client.random_u64();
                lane.next_sequence = 0;
                if matches!(
                    error.code(),
                    Some(ErrorCode::UnknownTopic | ErrorCode::InvalidPartition)
                ) {
                    self.partition_counts.lock().remove(&*key.0);
                }
                tracing::debug!(target: "meshgate::client::producer", topic = %key.0, partition = key.1, %error, "batch failed");
                for (reply, permit) in waiters {
                    let _ = reply.send(Err(error.share()));
                    drop(permit);
                }
            }
        }
    }

    /// Sends the next batch of every lane that has nothing in flight and a
    /// batch that is full, lingered long enough, or flushed.
    fn dispatch_all(&mut self, now: Instant) {
        let flushing = self.flushing();
        let linger = self.config.linger;
        let mut to_send = Vec::new();
        for (key, lane) in &mut self.lanes {
            if lane.in_flight {
                continue;
            }
            let (batch, lingered) = match lane.ready.pop_front() {
                Some(batch) => (batch, false),
                None => match &lane.open {
                    Some(open) if flushing || now >= open.opened + linger => {
                        match lane.open.take() {
                            Some(batch) => (batch, true),
                            None => continue,
                        }
                    }
                    _ => continue,
                },
            };
            lane.in_flight = true;
            let sequence = ProducerSequence {
                producer_id: lane.producer_id,
                sequence: lane.next_sequence,
            };
            lane.next_sequence += 1;
            to_send.push((key.clone(), batch, sequence, lingered));
        }
        for (key, batch, sequence, lingered) in to_send {
            if lingered {
                self.advance_sticky(&key);
            }
            self.send_batch(key, batch, sequence);
        }
    }

    fn send_batch(&self, key: LaneKey, batch: Batch, sequence: ProducerSequence) {
        let produce = Produce {
            topic: key.0.to_string(),
            partition: key.1,
            records: batch.records,
            acks: self.config.acks,
            producer: self.config.idempotent.then_some(sequence),
        };
        let client = self.client.clone();
        let completions = self.completions.clone();
        let waiters = batch.waiters;
        tokio::spawn(async move {
            let result = client.produce(produce).await;
            let _ = completions.send(Completion {
                key,
                waiters,
                result,
            });
        });
    }
}
