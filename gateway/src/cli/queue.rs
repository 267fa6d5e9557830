//! `meshgate queue create|list|describe|delete|consume|redrive`: dispatch
//! queues fed from a topic.

use std::time::Duration;

use anyhow::Context;
use meshgate_protocol::{QueueDescription, QueueOptions, QueueSpec, SettleAction};

use super::connect::ConnectArgs;

/// Dispatch-queue commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum QueueCommand {
    /// Add (or replace) a dispatch rule: queue NAME takes the records of
    /// --topic that pass the filter. Spread to every gateway; each routes
    /// its own log from now on.
    #[command(
        after_help = "Example:\n  meshgate queue create orders.inventory --topic orders --tags 'created || paid' --max-attempts 3"
    )]
    Create {
        /// The queue (domain), such as `orders.inventory`.
        name: String,
        /// The source topic.
        #[arg(long)]
        topic: String,
        /// Tag expression over the `tags` header: `*` or `created || paid`.
        #[arg(long, default_value = "*")]
        tags: String,
        /// Only records carrying this header with this value.
        #[arg(long, value_name = "KEY=VALUE", value_parser = crate::cli::produce::parse_header)]
        filter_header: Option<(String, String)>,
        /// Only records whose key starts with this prefix.
        #[arg(long, value_name = "PREFIX")]
        filter_key_prefix: Option<String>,
        /// Lease length of a delivery before it is delivered again, in ms.
        #[arg(long, default_value_t = 30_000)]
        visibility_timeout_ms: u64,
        /// Deliveries before a message moves to NAME.dlq.
        #[arg(long, default_value_t = 5)]
        max_attempts: u32,
        /// Delay before a message's first delivery, in ms (a record's
        /// `deliver-at` header, ms since the epoch, can set a later time).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// At most one message per key in flight, in log order.
        #[arg(long)]
        fifo_by_key: bool,
        /// Waiting messages at most; past it the next in line moves to the
        /// dead-letter queue (other queues are never slowed).
        #[arg(long, default_value_t = 1_000_000)]
        max_backlog: u64,
        /// Messages in flight at most.
        #[arg(long, default_value_t = 10_000)]
        max_in_flight: u64,
        /// Waiting messages older than this (ms) move to the dead-letter queue.
        #[arg(long)]
        max_message_age_ms: Option<u64>,
    },
    /// List the dispatch rules.
    List,
    /// A queue's rule and figures on this gateway: depth, in flight,
    /// oldest age, redeliveries, dead letters, delivery rate (`NAME.dlq`:
    /// its dead letters).
    Describe {
        /// The queue.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a dispatch rule with its queue and dead letters.
    Delete {
        /// The queue.
        name: String,
    },
    /// Receive messages (leased), print them, then ack (default), nack or
    /// leave them to time out. `NAME.dlq` reads the dead letters.
    Consume {
        /// The queue.
        name: String,
        /// Stop after this many messages.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Ack each message after printing it (the default).
        #[arg(long, conflicts_with_all = ["nack", "no_ack"])]
        ack: bool,
        /// Nack each message after printing it: it is delivered again
        /// (after --nack-delay-ms), or dead-lettered after its last attempt.
        #[arg(long, conflicts_with = "no_ack")]
        nack: bool,
        /// Delay before a nacked message comes again, in ms.
        #[arg(long, requires = "nack")]
        nack_delay_ms: Option<u64>,
        /// Settle nothing: the leases run out and the messages come again.
        #[arg(long)]
        no_ack: bool,
        /// Give up when no message came for this long, in ms.
        #[arg(long, default_value_t = 5_000)]
        wait_ms: u64,
        /// Lease length, in ms (the queue's visibility timeout by default).
        #[arg(long)]
        visibility_ms: Option<u64>,
        /// Print JSON lines (with lease, partition, offset, attempt, headers).
        #[arg(long)]
        json: bool,
    },
    /// Move the queue's dead letters back into it, with fresh attempts.
    Redrive {
        /// The queue (not its .dlq).
        name: String,
        /// Move at most this many.
        #[arg(long)]
        count: Option<u64>,
    },
}

fn print_rules(rules: &[QueueSpec]) {
    println!(
        "{:<28} {:<20} {:<28} FILTER / OPTIONS",
        "QUEUE", "TOPIC", "TAGS"
    );
    for rule in rules {
        let mut extra = Vec::new();
        if let Some((key, value)) = &rule.filter_header {
            extra.push(format!("{key}={value}"));
        }
        if let Some(prefix) = &rule.filter_key_prefix {
            extra.push(format!("key^{prefix}"));
        }
        extra.push(format!(
            "attempts={} lease={}ms",
            rule.options.max_attempts, rule.options.visibility_timeout_ms
        ));
        if rule.options.fifo_by_key {
            extra.push("fifo-by-key".into());
        }
        if rule.options.delivery_delay_ms > 0 {
            extra.push(format!("delay={}ms", rule.options.delivery_delay_ms));
        }
        println!(
            "{:<28} {:<20} {:<28} {}",
            rule.name,
            rule.topic,
            rule.tags,
            extra.join(" ")
        );
    }
}

fn print_description(description: &QueueDescription) {
    let spec = &description.spec;
    println!("queue              {}", spec.name);
    println!("topic              {}", spec.topic);
    println!("tags               {}", spec.tags);
    println!("depth              {}", description.depth);
    println!("in flight          {}", description.in_flight);
    println!(
        "oldest age         {}",
        description
            .oldest_age_ms
            .map_or("-".to_string(), |age| format!("{age} ms"))
    );
    println!("routed             {}", description.routed);
    println!("delivered          {}", description.delivered);
    println!(
        "delivery rate      {:.1}/s",
        description.delivery_rate_per_s
    );
    println!("redeliveries       {}", description.redeliveries);
    println!("acked              {}", description.acked);
    println!("dead-lettered      {}", description.dead_lettered);
    println!("dead letters now   {}", description.dead_letter_depth);
    println!("dead letters lost  {}", description.dead_letters_dropped);
}

pub(crate) async fn run(connect: &ConnectArgs, command: QueueCommand) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    match command {
        QueueCommand::Create {
            name,
            topic,
            tags,
            filter_header,
            filter_key_prefix,
            visibility_timeout_ms,
            max_attempts,
            delay_ms,
            fifo_by_key,
            max_backlog,
            max_in_flight,
            max_message_age_ms,
        } => {
            let spec = QueueSpec {
                name: name.clone(),
                topic,
                tags,
                filter_header,
                filter_key_prefix,
                options: QueueOptions {
                    visibility_timeout_ms,
                    max_attempts,
                    delivery_delay_ms: delay_ms,
                    fifo_by_key,
                    max_backlog,
                    max_in_flight,
                    max_message_age_ms,
                },
            };
            let rules = client
                .create_queue(spec)
                .await
                .with_context(|| format!("cannot create queue {name}"))?;
            print_rules(&rules);
        }
        QueueCommand::List => {
            print_rules(&client.list_queues().await.context("cannot list queues")?)
        }
        QueueCommand::Describe { name, json } => {
            let description = client
                .describe_queue(&name)
                .await
                .with_context(|| format!("cannot describe queue {name}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&description)?);
            } else {
                print_description(&description);
            }
        }
        QueueCommand::Delete { name } => {
            let rules = client
                .delete_queue(&name)
                .await
                .with_context(|| format!("cannot delete queue {name}"))?;
            print_rules(&rules);
        }
        QueueCommand::Consume {
            name,
            count,
            ack: _,
            nack,
            nack_delay_ms,
            no_ack,
            wait_ms,
            visibility_ms,
            json,
        } => {
            let action = if no_ack {
                None
            } else if nack {
                Some(SettleAction::Nack {
                    delay_ms: nack_delay_ms,
                })
            } else {
                Some(SettleAction::Ack)
            };
            let mut printed = 0;
            while printed < count {
                let want = (count - printed).min(100) as u32;
                let messages = client
                    .receive(
                        &name,
                        want,
                        Duration::from_millis(wait_ms),
                        visibility_ms.map(Duration::from_millis),
                    )
                    .await
                    .with_context(|| format!("cannot receive from {name}"))?;
                if messages.is_empty() {
                    break;
                }
                let mut leases = Vec::with_capacity(messages.len());
                for message in &messages {
                    if json {
                        let headers: serde_json::Map<String, serde_json::Value> = message
                            .headers
                            .iter()
                            .map(|header| {
                                (
                                    header.key.clone(),
                                    String::from_utf8_lossy(&header.value).into(),
                                )
                            })
                            .collect();
                        let line = serde_json::json!({
                            "lease": message.lease,
                            "partition": message.partition,
                            "offset": message.offset,
                            "attempt": message.attempt,
                            "key": message.key.as_ref().map(|key| String::from_utf8_lossy(key).to_string()),
                            "value": String::from_utf8_lossy(&message.value),
                            "headers": headers,
                            "timestamp_ms": message.timestamp_ms,
                        });
                        println!("{line}");
                    } else {
                        println!("{}", String::from_utf8_lossy(&message.value));
                    }
                    leases.push(message.lease);
                }
                printed += messages.len() as u64;
                if let Some(action) = action {
                    let outcomes = client
                        .settle(&name, leases, action)
                        .await
                        .with_context(|| format!("cannot settle messages of {name}"))?;
                    if let Some(error) = outcomes.into_iter().flatten().next() {
                        anyhow::bail!("cannot settle a message of {name}: {error}");
                    }
                }
            }
        }
        QueueCommand::Redrive { name, count } => {
            let moved = client
                .redrive(&name, count)
                .await
                .with_context(|| format!("cannot redrive {name}"))?;
            println!("moved {moved} dead letters back into {name}");
        }
    }
    Ok(())
}
