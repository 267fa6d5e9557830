//! `meshgate consume TOPIC`: prints records, one per line, as text or JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use meshgate_client::{
    Client, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, OffsetSpec, Seek,
};

use super::connect::ConnectArgs;

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// The value alone, one per line.
    Text,
    /// One JSON object per line: topic, partition, offset, key, value,
    /// headers, origin and timestamp.
    Json,
}

/// Flags of `meshgate consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Consume as a member of this group: partitions are shared with the
    /// group's other members and positions are committed after printing.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Start at the earliest record when there is no committed position
    /// (otherwise: only records appended from now on).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end of what
    /// exists.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Read only this partition.
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// In JSON, encode keys, values and header values as base64 (otherwise
    /// as UTF-8, invalid bytes replaced).
    #[arg(long)]
    base64: bool,
}

pub(crate) async fn run(connect: &ConnectArgs, args: ConsumeArgs) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    let topic = client
        .describe_topic(&args.topic)
        .await
        .with_context(|| format!("cannot consume {}", args.topic))?;
    let partitions: Vec<u32> = match args.partition {
        Some(partition) => vec![partition],
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            group: args.group.clone(),
            reset: if args.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            },
            fetch_wait: Duration::from_millis(if args.follow { 1000 } else { 200 }),
            ..ConsumerConfig::default()
        },
    )?;
    if args.group.is_some() && args.partition.is_none() {
        consumer.subscribe([args.topic.clone()])?;
    } else {
        consumer.assign(partitions.iter().map(|p| (args.topic.clone(), *p)));
    }
    let ends = if args.follow {
        BTreeMap::new()
    } else {
        end_offsets(&client, &args.topic, &partitions).await?
    };
    let result = consume_loop(&mut consumer, &args, &ends).await;
    let closed = consumer.close().await;
    result?;
    closed.context("cannot leave the group")?;
    Ok(())
}

async fn end_offsets(
    client: &Client,
    topic: &str,
    partitions: &[u32],
) -> anyhow::Result<BTreeMap<u32, u64>> {
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let end = client
            .list_offsets(topic, *partition, OffsetSpec::Latest)
            .await
            .with_context(|| format!("cannot find the end of {topic}/{partition}"))?
            .unwrap_or(0);
        ends.insert(*partition, end);
    }
    Ok(ends)
}

async fn consume_loop(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    ends: &BTreeMap<u32, u64>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut printed: u64 = 0;
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        let records = consumer.poll(Duration::from_millis(200)).await?;
        // Records of the batch past --count: the group must not commit
        // past them, so their partitions are moved back before committing.
        let mut unprinted: BTreeMap<(&str, u32), u64> = BTreeMap::new();
        {
            let mut out = stdout.lock();
            for record in &records {
                if args.count.is_some_and(|count| printed >= count) {
                    unprinted
                        .entry((&record.topic, record.partition))
                        .and_modify(|offset| *offset = (*offset).min(record.offset))
                        .or_insert(record.offset);
                    continue;
                }
                let line = match args.format {
                    Format::Text => String::from_utf8_lossy(&record.value).into_owned(),
                    Format::Json => json_line(record, args.base64),
                };
                if writeln!(out, "{line}").is_err() {
                    // stdout closed (`| head`): stop quietly.
                    return Ok(());
                }
                printed += 1;
            }
            if out.flush().is_err() {
                return Ok(());
            }
        }
        for ((topic, partition), offset) in unprinted {
            consumer
                .seek(topic, partition, Seek::Offset(offset))
                .await
                .context("cannot move back to the first record not printed")?;
        }
        if args.group.is_some() && !records.is_empty() {
            consumer.commit().await.context("cannot commit")?;
        }
        if !args.follow && at_end(consumer, args, ends) {
            return Ok(());
        }
    }
}

/// True when every assigned partition's position reached its end offset.
fn at_end(consumer: &Consumer, args: &ConsumeArgs, ends: &BTreeMap<u32, u64>) -> bool {
    let assignment = consumer.assignment();
    if assignment.is_empty() {
        // A group member without partitions has nothing to read.
        return consumer.generation().is_some() || args.group.is_none();
    }
    assignment.iter().all(|(topic, partition)| {
        match (consumer.position(topic, *partition), ends.get(partition)) {
            (Some(position), Some(end)) => position >= *end,
            (None, _) => false,
            (Some(_), None) => true,
        }
    })
}

fn json_line(record: &ConsumerRecord, base64: bool) -> String {
    let encode = |bytes: &[u8]| -> serde_json::Value {
        if base64 {
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into()
        } else {
            String::from_utf8_lossy(bytes).into_owned().into()
        }
    };
    let headers: Vec<serde_json::Value> = record
        .headers
        .iter()
        .map(|header| serde_json::json!({ "key": header.key, "value": encode(&header.value) }))
        .collect();
    let value = serde_json::json!({
        "topic": &*record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.as_ref().map(|key| encode(key)),
        "value": encode(&record.value),
        "headers": headers,
        "origin": {
            "region": record.origin.stream.region.as_str(),
            "incarnation": record.origin.stream.incarnation.0,
            "seq": record.origin.seq.0,
        },
        "timestamp_ms": record.timestamp_ms(),
    });
    value.to_string()
}
