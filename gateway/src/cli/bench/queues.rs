//! `meshgate bench queues`: one hot topic fanned out to 1, 10, 100 queues
//! with an active consumer each, against the same number of consumer
//! groups reading the topic directly. Starts its own gateway in this
//! process (loopback, throwaway data directory), like the RabbitMQ peer
//! benchmark starts its own server, so it can count log reads.
//!
//! Each case produces `--messages` records while the consumers run, and
//! measures from the first send until every consumer has every record:
//! delivered messages per second, all consumers together. Queue consumers
//! receive up to 500 messages at a time and ack them in one request;
//! group consumers fetch from the log. Log reads per record: records the
//! dispatchers read (plus re-reads for deliveries the hot-record cache
//! missed) per record produced, for queues; bytes fetched per byte of the
//! topic, for groups.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use meshgate_client::{Client, ClientConfig, Durability, QueueSpec, TopicSettings, Trust};
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;
use meshgate_protocol::{Acks, Fetch, Produce, ProduceRecord, SettleAction};
use meshgate_storage::{Batch, batch::BATCH_BYTES_LIMIT};
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::topic::parse_durability;

const TOPIC: &str = "queues-bench";
/// Longest a consumer may go without a message before the benchmark fails.
const STALL: Duration = Duration::from_secs(60);
/// Records per produce request.
const PRODUCE_BATCH: u64 = 500;

/// Flags of `meshgate bench queues`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QueuesArgs {
    /// Records produced per case.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Queue counts to run (each also as that many consumer groups).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    queues: Vec<usize>,
    /// Durability policy of the hot topic: every-batch, <n>ms or never.
    #[arg(long, value_parser = parse_durability, default_value = "10ms")]
    durability: Durability,
    /// How often queue ack state is written, in ms.
    #[arg(long, default_value_t = 250)]
    flush_ms: u64,
    /// Skip the consumer-group cases.
    #[arg(long)]
    queues_only: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Case {
    system: &'static str,
    mode: &'static str,
    queues: usize,
    messages: u64,
    size: usize,
    durability: String,
    deliveries: u64,
    seconds: f64,
    deliveries_per_s: f64,
    log_reads_per_record: f64,
}

pub(crate) async fn run(args: QueuesArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut config = GatewayConfig {
        data_dir: dir.path().to_path_buf(),
        ..GatewayConfig::default()
    };
    config.queues.flush_ms = args.flush_ms;
    config.limits.long_poll_ms_max = 1_000;
    config.use_ephemeral_ports();
    let gateway = Gateway::start(config).await.context("gateway starts")?;
    let client_config = ClientConfig::new(
        [gateway.client_address().to_string()],
        Trust::CaPem(gateway.ca_pem().to_string()),
    )
    .client_id("bench-queues");
    let producer = Client::connect(client_config.clone()).await?;
    let consumer = Client::connect(client_config).await?;
    if !args.json {
        println!(
            "{:<8} {:>7} {:>10} {:>12} {:>9} {:>14} {:>16}",
            "MODE",
            "QUEUES",
            "MESSAGES",
            "DELIVERIES",
            "SECONDS",
            "DELIVERED/S",
            "LOG READS/RECORD"
        );
    }
    let mut modes = vec!["queues"];
    if !args.queues_only {
        modes.push("groups");
    }
    for &count in &args.queues {
        for mode in &modes {
            let case = match *mode {
                "queues" => queues_case(&gateway, &producer, &consumer, &args, count).await?,
                _ => groups_case(&gateway, &producer, &consumer, &args, count).await?,
            };
            if args.json {
                println!("{}", serde_json::to_string(&case)?);
            } else {
                println!(
                    "{:<8} {:>7} {:>10} {:>12} {:>9.2} {:>14.0} {:>16.2}",
                    case.mode,
                    case.queues,
                    case.messages,
                    case.deliveries,
                    case.seconds,
                    case.deliveries_per_s,
                    case.log_reads_per_record
                );
            }
        }
    }
    gateway.stop().await;
    Ok(())
}

async fn fresh_topic(client: &Client, args: &QueuesArgs) -> anyhow::Result<()> {
    let _ = client.delete_topic(TOPIC).await;
    client
        .create_topic(
            TOPIC,
            TopicSettings {
                partitions: 1,
                durability: Some(args.durability),
                ..TopicSettings::default()
            },
        )
        .await
        .context("creates the hot topic")?;
    Ok(())
}

/// Produces the case's records in batches; returns when all are acked.
async fn produce_all(client: Client, messages: u64, size: usize) -> anyhow::Result<()> {
    let value = Bytes::from(vec![b'x'; size]);
    let mut sent = 0;
    while sent < messages {
        let count = PRODUCE_BATCH.min(messages - sent);
        let records = (0..count)
            .map(|_| ProduceRecord {
                key: None,
                value: value.clone(),
                headers: Vec::new(),
            })
            .collect();
        client
            .produce(Produce {
                topic: TOPIC.into(),
                partition: 0,
                records,
                acks: Acks::Local,
                producer: None,
            })
            .await
            .context("produce")?;
        sent += count;
    }
    Ok(())
}

fn case(
    mode: &'static str,
    args: &QueuesArgs,
    count: usize,
    seconds: f64,
    log_reads_per_record: f64,
) -> Case {
    let deliveries = args.messages * count as u64;
    Case {
        system: "meshgate",
        mode,
        queues: count,
        messages: args.messages,
        size: args.size,
        durability: format!("{:?} (ack after fsync)", args.durability),
        deliveries,
        seconds,
        deliveries_per_s: deliveries as f64 / seconds,
        log_reads_per_record,
    }
}

async fn queues_case(
    gateway: &Gateway,
    producer: &Client,
    consumer: &Client,
    args: &QueuesArgs,
    count: usize,
) -> anyhow::Result<Case> {
    fresh_topic(producer, args).await?;
    for existing in consumer.list_queues().await? {
        consumer.delete_queue(&existing.name).await?;
    }
    let names: Vec<String> = (0..count)
        .map(|index| format!("bench.domain-{index:03}"))
        .collect();
    for name in &names {
        consumer
            .create_queue(QueueSpec {
                name: name.clone(),
                topic: TOPIC.into(),
                tags: "*".into(),
                filter_header: None,
                filter_key_prefix: None,
                options: Default::default(),
            })
            .await?;
    }
    let queues = gateway.node().queues().context("queues run")?.clone();
    let before = queues.read_counts();
    let started = Instant::now();
    let produce = tokio::spawn(produce_all(producer.clone(), args.messages, args.size));
    let mut consumers = Vec::new();
    for name in names {
        let client = consumer.clone();
        let messages = args.messages;
        consumers.push(tokio::spawn(async move {
            let mut received = 0;
            let mut last = Instant::now();
            while received < messages {
                let batch = client
                    .receive(&name, 500, Duration::from_millis(500), None)
                    .await?;
                if batch.is_empty() {
                    anyhow::ensure!(last.elapsed() < STALL, "{name} stalled at {received}");
                    continue;
                }
                last = Instant::now();
                received += batch.len() as u64;
                let leases = batch.iter().map(|message| message.lease).collect();
                client.settle(&name, leases, SettleAction::Ack).await?;
            }
            anyhow::Ok(())
        }));
    }
    produce.await??;
    for consumer in consumers {
        consumer.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = queues.read_counts();
    let reads = (after.dispatch - before.dispatch) + (after.delivery - before.delivery);
    for existing in consumer.list_queues().await? {
        consumer.delete_queue(&existing.name).await?;
    }
    Ok(case(
        "queues",
        args,
        count,
        seconds,
        reads as f64 / args.messages as f64,
    ))
}

async fn groups_case(
    gateway: &Gateway,
    producer: &Client,
    consumer: &Client,
    args: &QueuesArgs,
    count: usize,
) -> anyhow::Result<Case> {
    fresh_topic(producer, args).await?;
    // Every byte a group fetches was read from the log for it.
    let fetched_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let produce = tokio::spawn(produce_all(producer.clone(), args.messages, args.size));
    let mut consumers = Vec::new();
    for _ in 0..count {
        let client = consumer.clone();
        let messages = args.messages;
        let fetched_bytes = fetched_bytes.clone();
        consumers.push(tokio::spawn(async move {
            let (mut offset, mut received) = (0, 0);
            let mut last = Instant::now();
            while received < messages {
                let fetched = client
                    .fetch(Fetch {
                        topic: TOPIC.into(),
                        partition: 0,
                        offset,
                        max_bytes: 1 << 20,
                        max_wait_ms: 500,
                    })
                    .await?;
                if fetched.batches.is_empty() {
                    anyhow::ensure!(last.elapsed() < STALL, "group stalled at {received}");
                    continue;
                }
                last = Instant::now();
                fetched_bytes.fetch_add(
                    fetched.batches.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                for batch in Batch::parse_all(fetched.batches, BATCH_BYTES_LIMIT)? {
                    for record in batch.records() {
                        if record?.offset.0 >= offset {
                            received += 1;
                        }
                    }
                }
                offset = fetched.next_offset;
            }
            anyhow::Ok(())
        }));
    }
    produce.await??;
    for consumer in consumers {
        consumer.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let topic_bytes = gateway
        .node()
        .topics()
        .get(TOPIC)
        .map_err(|error| anyhow::anyhow!("{error}"))?
        .partition(0)
        .map_err(|error| anyhow::anyhow!("{error}"))?
        .lock()
        .size_bytes()
        .max(1);
    let reads =
        fetched_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / topic_bytes as f64;
    Ok(case("groups", args, count, seconds, reads))
}
