//! `meshgate produce TOPIC`: one record per stdin line, or one `--value`.

use std::collections::VecDeque;
use std::io::BufRead;

use anyhow::Context;
use meshgate_client::{Acks, Delivery, Producer, ProducerConfig, ProducerRecord};

use super::connect::ConnectArgs;

/// Acknowledgements awaited at most at once; past it the reader waits, so
/// an endless stdin is produced with bounded memory.
const PENDING_MAX: usize = 10_000;

/// Flags of `meshgate produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Produce this one value instead of reading lines from stdin.
    #[arg(long)]
    value: Option<String>,
    /// The key of every record (records with one key share a partition).
    #[arg(long, short = 'k')]
    key: Option<String>,
    /// A header `name=value` added to every record; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Write to this partition instead of choosing by key.
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// When the node answers: local (durable here per the topic's policy),
    /// none (written, not yet durable) or mirrored:<k> (also held by k other
    /// regions).
    #[arg(long, value_parser = parse_acks, default_value = "local")]
    acks: Acks,
    /// Print the partition and offset of each record.
    #[arg(long, short = 'v')]
    verbose: bool,
}

/// Parses `NAME=VALUE` (a record header, or a header filter).
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("{text:?} has an empty header name"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses `none`, `local` or `mirrored:<k>` (also `mirrored(<k>)`).
pub(crate) fn parse_acks(text: &str) -> Result<Acks, String> {
    let mirrored = text.strip_prefix("mirrored:").or_else(|| {
        text.strip_prefix("mirrored(")
            .and_then(|rest| rest.strip_suffix(')'))
    });
    match (text, mirrored) {
        ("none", _) => Ok(Acks::None),
        ("local", _) => Ok(Acks::Local),
        (_, Some(regions)) => regions
            .parse()
            .map(Acks::Mirrored)
            .map_err(|_| format!("{regions:?} is not a number of regions")),
        (other, None) => Err(format!("{other:?} is not one of none, local, mirrored:<k>")),
    }
}

/// The text form [`parse_acks`] reads.
pub(crate) fn acks_text(acks: Acks) -> String {
    match acks {
        Acks::None => "none".into(),
        Acks::Local => "local".into(),
        Acks::Mirrored(regions) => format!("mirrored:{regions}"),
    }
}

impl ProduceArgs {
    fn record(&self, value: String) -> ProducerRecord {
        let mut record = ProducerRecord::new(self.topic.clone(), value);
        if let Some(key) = &self.key {
            record = record.key(key.clone());
        }
        for (name, value) in &self.headers {
            record = record.header(name.clone(), value.clone());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        record
    }
}

pub(crate) async fn run(connect: &ConnectArgs, args: ProduceArgs) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: args.acks,
            ..ProducerConfig::default()
        },
    )?;
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    match &args.value {
        Some(value) => pending.push_back(send(&producer, &args, value.clone()).await?),
        None => {
            // Lines come from a blocking reader on its own thread, through a
            // bounded channel.
            let (lines, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1024);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if lines.blocking_send(line).is_err() {
                        return;
                    }
                }
            });
            while let Some(line) = receiver.recv().await {
                let line = line.context("cannot read stdin")?;
                if pending.len() >= PENDING_MAX
                    && let Some(delivery) = pending.pop_front()
                {
                    report(&args, delivery).await?;
                }
                pending.push_back(send(&producer, &args, line).await?);
            }
        }
    }
    producer.flush().await?;
    for delivery in pending {
        report(&args, delivery).await?;
    }
    producer.close().await?;
    Ok(())
}

async fn send(producer: &Producer, args: &ProduceArgs, value: String) -> anyhow::Result<Delivery> {
    producer
        .send(args.record(value))
        .await
        .with_context(|| format!("cannot produce to {}", args.topic))
}

async fn report(args: &ProduceArgs, delivery: Delivery) -> anyhow::Result<()> {
    let delivered = delivery
        .await
        .with_context(|| format!("cannot produce to {}", args.topic))?;
    if args.verbose {
        println!(
            "partition {} offset {}",
            delivered.partition, delivered.offset
        );
    }
    Ok(())
}
