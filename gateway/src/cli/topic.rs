//! `meshgate topic create|list|describe|delete`.

use anyhow::Context;
use meshgate_client::{Durability, TopicDescription, TopicSettings};

use super::connect::ConnectArgs;

/// Topic administration.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics with their partition and record counts.
    List,
    /// Show a topic's settings and partitions.
    Describe {
        /// The topic.
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic.
        name: String,
    },
}

/// Flags of `meshgate topic create`; unset ones take the node's defaults.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The topic: 1..=249 characters of a-z, A-Z, 0-9, '.', '_' and '-'.
    name: String,
    /// Partitions, fixed at creation (1..=1024) [default: the node's, 3].
    #[arg(long, short = 'p')]
    partitions: Option<u32>,
    /// Keep at most this many bytes per partition.
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<u64>,
    /// Delete records older than this many milliseconds.
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// When appends are durable and acknowledged: every-batch, <n>ms (fsync
    /// at most every n ms, ack after it) or never (no fsync; lost on power
    /// failure) [default: the node's, 5ms].
    #[arg(long, value_parser = parse_durability, value_name = "POLICY")]
    durability: Option<Durability>,
    /// Roll segments at this many bytes.
    #[arg(long, value_name = "BYTES")]
    segment_bytes: Option<u64>,
}

/// Parses a durability policy for clap.
pub(crate) fn parse_durability(text: &str) -> Result<Durability, String> {
    Durability::parse(text).map_err(|error| error.to_string())
}

pub(crate) async fn run(connect: &ConnectArgs, command: TopicCommand) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    match command {
        TopicCommand::Create(args) => {
            let settings = TopicSettings {
                partitions: args.partitions.unwrap_or(0),
                retention_bytes: args.retention_bytes,
                retention_ms: args.retention_ms,
                durability: args.durability,
                segment_bytes: args.segment_bytes,
            };
            let topic = client
                .create_topic(&args.name, settings)
                .await
                .with_context(|| format!("cannot create topic {}", args.name))?;
            println!(
                "created topic {} ({} partitions, durability {})",
                topic.name,
                topic.partitions.len(),
                topic
                    .settings
                    .durability
                    .map_or_else(|| "default".to_string(), |d| d.to_string())
            );
        }
        TopicCommand::List => {
            let topics = client.list_topics().await.context("cannot list topics")?;
            println!("{:<40} {:>10} {:>14}", "TOPIC", "PARTITIONS", "RECORDS");
            for topic in topics {
                println!(
                    "{:<40} {:>10} {:>14}",
                    topic.name, topic.partitions, topic.records
                );
            }
        }
        TopicCommand::Describe { name, json } => {
            let topic = client
                .describe_topic(&name)
                .await
                .with_context(|| format!("cannot describe topic {name}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&topic)?);
            } else {
                print_description(&topic);
            }
        }
        TopicCommand::Delete { name } => {
            client
                .delete_topic(&name)
                .await
                .with_context(|| format!("cannot delete topic {name}"))?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

fn print_description(topic: &TopicDescription) {
    let settings = &topic.settings;
    let or_none = |value: Option<u64>| value.map_or_else(|| "none".to_string(), |v| v.to_string());
    println!("topic          {}", topic.name);
    println!("incarnation    {}", topic.incarnation);
    println!("partitions     {}", topic.partitions.len());
    println!(
        "durability     {}",
        settings
            .durability
            .map_or_else(|| "default".to_string(), |d| d.to_string())
    );
    println!(
        "retention      bytes {}, ms {}",
        or_none(settings.retention_bytes),
        or_none(settings.retention_ms)
    );
    println!("segment bytes  {}", or_none(settings.segment_bytes));
    println!();
    println!(
        "{:>9} {:>14} {:>14} {:>14}  STATUS",
        "PARTITION", "START", "HIGH-WATERMARK", "BYTES"
    );
    for partition in &topic.partitions {
        println!(
            "{:>9} {:>14} {:>14} {:>14}  {}",
            partition.partition,
            partition.start_offset,
            partition.high_watermark,
            partition.size_bytes,
            partition.unavailable.as_deref().unwrap_or("ok")
        );
    }
}
