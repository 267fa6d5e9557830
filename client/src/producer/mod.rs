//! [`Producer`]: batches records per partition, sends them with linger and
//! size limits, numbers batches for idempotence, and holds callers back when
//! its buffer is full.
//!
//! One driver task owns every partition's batches (see `driver`); `send`
//! only picks the partition, waits for buffer room and hands the record
//! over. Each partition has at most one batch in flight, so batches reach
//! the node in sequence order; while one is in flight the next one grows,
//! so batches get larger exactly when the load is high.

mod driver;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meshgate_protocol::{Acks, ProduceRecord, partition_for_key};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::ClientError;
use crate::record::{Delivered, ProducerRecord};

/// How a producer batches and acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent, when its
    /// partition has nothing in flight. Default 2 ms; at most 10 s.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes of records. Default
    /// 512 KiB; 1 KiB..=8 MiB (below the node's frame limit).
    pub batch_bytes_max: usize,
    /// A batch is sent once it holds this many records. Default 10 000;
    /// 1..=1 000 000.
    pub batch_records_max: usize,
    /// Bytes of records accepted but not yet acknowledged; `send` waits for
    /// room past it (backpressure). Default 64 MiB; at least
    /// `batch_bytes_max`, at most 1 GiB.
    pub buffer_bytes_max: usize,
    /// When the node answers: [`Acks::Local`] (durable per the topic's
    /// policy, the default) or [`Acks::None`] (written, not yet durable).
    pub acks: Acks,
    /// Number batches so a resend after a lost answer is not appended twice.
    /// Default true.
    pub idempotent: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(2),
            batch_bytes_max: 512 << 10,
            batch_records_max: 10_000,
            buffer_bytes_max: 64 << 20,
            acks: Acks::Local,
            idempotent: true,
        }
    }
}

impl ProducerConfig {
    /// Checks every field against its documented limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.linger > Duration::from_secs(10) {
            return Err("linger must be at most 10 s".into());
        }
        if !(1024..=8 << 20).contains(&self.batch_bytes_max) {
            return Err("batch_bytes_max must be in 1 KiB..=8 MiB".into());
        }
        if !(1..=1_000_000).contains(&self.batch_records_max) {
            return Err("batch_records_max must be in 1..=1000000".into());
        }
        if self.buffer_bytes_max < self.batch_bytes_max || self.buffer_bytes_max > 1 << 30 {
            return Err("buffer_bytes_max must be in batch_bytes_max..=1 GiB".into());
        }
        Ok(())
    }
}

/// Records handed to the driver but not yet taken, at most. Each holds
/// buffer permits, so memory stays within `buffer_bytes_max` anyway.
const COMMANDS_MAX: usize = 4096;
/// Topics whose partition counts are cached, at most; the cache is cleared
/// when full.
const TOPICS_CACHED_MAX: usize = 10_000;

/// Partition counts of topics, cached; the driver forgets a topic when a
/// batch to it fails as unknown or with an invalid partition (deleted and
/// re-created with another count).
pub(crate) type PartitionCounts = Arc<parking_lot::Mutex<HashMap<String, u32>>>;

/// The future of one sent record: where it landed, or why it failed.
#[derive(Debug)]
pub struct Delivery {
    receiver: oneshot::Receiver<Result<Delivered, ClientError>>,
}

impl Future for Delivery {
    type Output = Result<Delivered, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(ClientError::Closed("producer"))))
    }
}

/// Sends records to a gateway in batches. Share it behind an `Arc` to send
/// from several tasks; drop it (or [`Producer::close`]) to flush and stop.
#[derive(Debug)]
pub struct Producer {
    client: Client,
    config: ProducerConfig,
    commands: mpsc::Sender<driver::Command>,
    buffer: Arc<Semaphore>,
    partition_counts: PartitionCounts,
    producer_id: u64,
    driver: JoinHandle<()>,
}

impl Producer {
    /// A producer sending through `client`. Must be called inside a tokio runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        let (commands, receiver) = mpsc::channel(COMMANDS_MAX);
        let producer_id = client.random_u64();
        let partition_counts = PartitionCounts::default();
        let driver = tokio::spawn(driver::run(
            client.clone(),
            config.clone(),
            producer_id,
            partition_counts.clone(),
            receiver,
        ));
        Ok(Producer {
            buffer: Arc::new(Semaphore::new(config.buffer_bytes_max)),
            client,
            config,
            commands,
            partition_counts,
            producer_id,
            driver,
        })
    }

    /// This producer's idempotence id (random, from the client's RNG).
    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// The number of partitions of `topic`, cached.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        if let Some(count) = self.partition_counts.lock().get(topic) {
            return Ok(*count);
        }
        let description = self.client.describe_topic(topic).await?;
        let count = description.partitions.len() as u32;
        let mut counts = self.partition_counts.lock();
        if counts.len() >= TOPICS_CACHED_MAX {
            counts.clear();
        }
        counts.insert(topic.to_string(), count);
        Ok(count)
    }

    /// Queues a record. Waits while the buffer is full (backpressure), then
    /// returns a [`Delivery`] that resolves once the node acknowledged it.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        let size = record.size_bytes();
        if let Some(node) = self.client.node()
            && size >= node.frame_bytes_max as usize
        {
            return Err(ClientError::TooLarge(format!(
                "a record of {size} bytes cannot fit the node's frame limit of {}",
                node.frame_bytes_max
            )));
        }
        let partitions = self.partition_count(&record.topic).await?;
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => Some(partition),
            (None, Some(key)) => Some(partition_for_key(key, partitions)),
            (None, None) => None,
        };
        // Accounting only: the batch, not the buffer, holds the bytes, so a
        // record larger than the whole buffer takes all of it.
        let permits = size.clamp(1, self.config.buffer_bytes_max) as u32;
        let permit = self
            .buffer
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        let (reply, receiver) = oneshot::channel();
        let command = driver::Command::Send(driver::Queued {
            topic: Arc::from(record.topic.as_str()),
            partition,
            partitions,
            record: ProduceRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
            },
            size,
            permit,
            reply,
        });
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        Ok(Delivery { receiver })
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<Delivered, ClientError> {
        self.send(record).await?.await
    }

    /// Sends every buffered record now and waits until each sent before
    /// (and during) the flush is acknowledged or failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(driver::Command::Flush(done))
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        wait.await.map_err(|_| ClientError::Closed("producer"))
    }

    /// Flushes, then stops the driver.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.commands);
        self.driver
            .await
            .map_err(|_| ClientError::Closed("producer driver panicked"))
    }
}
