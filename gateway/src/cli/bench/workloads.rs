//! The three benchmark workloads. Each producer and consumer has its own
//! client (own QUIC connection), like separate services would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use meshgate_client::{
    Client, ClientError, Consumer, ConsumerConfig, Delivery, OffsetReset, Producer, ProducerConfig,
    ProducerRecord,
};
use tokio::time::Instant;

use super::{BenchArgs, Latency, Progress, Report};
use crate::cli::connect::ConnectArgs;

/// Acknowledgements a throughput producer awaits at most at once.
const WINDOW_MAX: usize = 100_000;

fn producer_config(args: &BenchArgs) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        batch_bytes_max: args.batch_bytes,
        acks: args.acks,
        ..ProducerConfig::default()
    }
}

/// Splits `total` over `parts`, the remainder to the first ones.
fn share(total: u64, parts: u32, index: u32) -> u64 {
    total / u64::from(parts) + u64::from(u64::from(index) < total % u64::from(parts))
}

async fn clients(connect: &ConnectArgs, count: u32, role: &str) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count as usize);
    for index in 0..count {
        clients.push(
            connect
                .connect(&format!("meshgate-bench-{role}-{index}"))
                .await?,
        );
    }
    Ok(clients)
}

/// Produces `args.messages` records as fast as acknowledgements allow.
pub(super) async fn produce(
    connect: &ConnectArgs,
    args: &BenchArgs,
    topic: &str,
) -> anyhow::Result<Report> {
    let seconds = produce_all(connect, args, topic, "produce").await?;
    Ok(Report {
        messages: args.messages,
        seconds,
        ..Report::default()
    })
}

async fn produce_all(
    connect: &ConnectArgs,
    args: &BenchArgs,
    topic: &str,
    label: &str,
) -> anyhow::Result<f64> {
    let progress = Progress::new(label, args.messages);
    let clients = clients(connect, args.producers, "producer").await?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let count = share(args.messages, args.producers, index as u32);
        let producer = Producer::new(client, producer_config(args))?;
        let (topic, payload, progress) = (topic.to_string(), payload.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut window = std::collections::VecDeque::with_capacity(WINDOW_MAX);
            for _ in 0..count {
                if window.len() >= WINDOW_MAX
                    && let Some(delivery) = window.pop_front()
                {
                    delivery.await?;
                    progress.add(1);
                }
                window.push_back(
                    producer
                        .send(ProducerRecord::new(topic.clone(), payload.clone()))
                        .await?,
                );
            }
            producer.flush().await?;
            for delivery in window {
                delivery.await?;
                progress.add(1);
            }
            producer.close().await?;
            Ok::<_, meshgate_client::ClientError>(())
        }));
    }
    for task in tasks {
        task.await.context("producer task")?.context("produce")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    Ok(seconds)
}

/// Produces the records (untimed), then reads them all back.
pub(super) async fn consume(
    connect: &ConnectArgs,
    args: &BenchArgs,
    topic: &str,
) -> anyhow::Result<Report> {
    produce_all(connect, args, topic, "prepare").await?;
    let admin = connect.connect("meshgate-bench").await?;
    let description = admin.describe_topic(topic).await?;
    let clients = clients(connect, args.consumers, "consumer").await?;
    let progress = Progress::new("consume", args.messages);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let mine: Vec<(u32, u64)> = description
            .partitions
            .iter()
            .filter(|p| p.partition % args.consumers == index as u32)
            .map(|p| (p.partition, p.high_watermark))
            .collect();
        let expected: u64 = mine.iter().map(|(_, end)| end).sum();
        let mut consumer = Consumer::new(client, consumer_config())?;
        consumer.assign(mine.iter().map(|(p, _)| (topic.to_string(), *p)));
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut received = 0;
            let deadline = Instant::now() + Duration::from_secs(600);
            while received < expected && Instant::now() < deadline {
                let records = consumer.poll(Duration::from_millis(100)).await?;
                received += records.len() as u64;
                progress.add(records.len() as u64);
            }
            Ok::<_, meshgate_client::ClientError>(received)
        }));
    }
    let mut received = 0;
    for task in tasks {
        received += task.await.context("consumer task")?.context("consume")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    anyhow::ensure!(
        received == args.messages,
        "consumed {received} of {} records",
        args.messages
    );
    Ok(Report {
        messages: received,
        seconds,
        ..Report::default()
    })
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        reset: OffsetReset::Earliest,
        fetch_bytes_max: 4 << 20,
        fetch_wait: Duration::from_millis(100),
        prefetch_chunks_max: 32,
        ..ConsumerConfig::default()
    }
}

/// Produces at a fixed rate while consuming; measures send-to-delivery latency.
pub(super) async fn e2e(
    connect: &ConnectArgs,
    args: &BenchArgs,
    topic: &str,
) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let progress = Progress::new("e2e", args.messages);
    let consumer_clients = clients(connect, args.consumers, "consumer").await?;
    let producer_clients = clients(connect, args.producers, "producer").await?;
    let ready = Arc::new(tokio::sync::Barrier::new(args.consumers as usize + 1));
    let pace = LatencyReader {
        origin,
        received: Arc::new(AtomicU64::new(0)),
        total: args.messages,
        bound: Duration::from_secs(args.messages / args.rate + 60),
        progress: progress.clone(),
        ready: ready.clone(),
    };
    let mut consumers = Vec::new();
    for (index, client) in consumer_clients.into_iter().enumerate() {
        let mut consumer = Consumer::new(client, consumer_config())?;
        consumer.assign(
            (0..args.partitions)
                .filter(|p| p % args.consumers == index as u32)
                .map(|p| (topic.to_string(), p)),
        );
        consumers.push(tokio::spawn(pace.clone().read(consumer)));
    }
    ready.wait().await;
    let start = Instant::now();
    let mut producers = Vec::new();
    for (index, client) in producer_clients.into_iter().enumerate() {
        let producer = Producer::new(client, producer_config(args))?;
        let paced = PacedProducer {
            origin,
            start,
            count: share(args.messages, args.producers, index as u32),
            rate: args.rate as f64 / f64::from(args.producers),
            size: args.size,
            topic: topic.to_string(),
        };
        producers.push(tokio::spawn(paced.run(producer)));
    }
    for task in producers {
        task.await.context("producer task")?.context("produce")?;
    }
    let mut latencies = Vec::new();
    let mut last = start;
    for task in consumers {
        let (mine, finished) = task.await.context("consumer task")?.context("consume")?;
        latencies.extend(mine);
        last = last.max(finished);
    }
    progress.finish();
    let consumed = latencies.len() as u64;
    anyhow::ensure!(
        consumed == args.messages,
        "consumed {consumed} of {} records",
        args.messages
    );
    Ok(Report {
        messages: consumed,
        seconds: (last - start).as_secs_f64(),
        rate_target: Some(args.rate),
        latency_ms: Latency::from_micros(latencies),
        ..Report::default()
    })
}

/// One e2e consumer's side: reads until every record arrived (all
/// consumers together) or the bound passed, noting each record's latency.
#[derive(Clone)]
struct LatencyReader {
    origin: Instant,
    received: Arc<AtomicU64>,
    total: u64,
    bound: Duration,
    progress: Progress,
    ready: Arc<tokio::sync::Barrier>,
}

impl LatencyReader {
    /// Returns the latencies in microseconds and when the last record came.
    async fn read(self, mut consumer: Consumer) -> Result<(Vec<u64>, Instant), ClientError> {
        let mut latencies = Vec::new();
        // The first poll resolves the positions; producers wait for it.
        let first = consumer.poll(Duration::from_millis(1)).await;
        self.ready.wait().await;
        let mut pending = first?;
        let deadline = Instant::now() + self.bound;
        let mut last = Instant::now();
        loop {
            let now_micros = self.origin.elapsed().as_micros() as u64;
            for record in &pending {
                let sent = record.value[..8].try_into().map_or(0, u64::from_le_bytes);
                latencies.push(now_micros.saturating_sub(sent));
            }
            let count = pending.len() as u64;
            if count > 0 {
                last = Instant::now();
            }
            self.progress.add(count);
            let seen = self.received.fetch_add(count, Ordering::Relaxed) + count;
            if seen >= self.total || Instant::now() >= deadline {
                return Ok((latencies, last));
            }
            pending = consumer.poll(Duration::from_millis(50)).await?;
        }
    }
}

/// One e2e producer: sends `count` records at `rate` per second, each
/// carrying its send time (microseconds since `origin`, little endian).
struct PacedProducer {
    origin: Instant,
    start: Instant,
    count: u64,
    rate: f64,
    size: usize,
    topic: String,
}

impl PacedProducer {
    async fn run(self, producer: Producer) -> Result<(), ClientError> {
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(self.count as usize);
        let mut sent = 0u64;
        // Timers have millisecond resolution: send what is due every tick.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < self.count {
            tick.tick().await;
            let due = ((self.start.elapsed().as_secs_f64() * self.rate) as u64).min(self.count);
            while sent < due {
                let mut value = BytesMut::with_capacity(self.size);
                value.put_u64_le(self.origin.elapsed().as_micros() as u64);
                value.resize(self.size, b'x');
                let record = ProducerRecord::new(self.topic.clone(), value.freeze());
                deliveries.push(producer.send(record).await?);
                sent += 1;
            }
        }
        producer.flush().await?;
        for delivery in deliveries {
            delivery.await?;
        }
        producer.close().await
    }
}
