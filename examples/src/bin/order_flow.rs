//! order_flow: one hot `orders` topic feeding per-domain dispatch queues.
//!
//! An order service produces the life of each order (created, paid,
//! shipped, or cancelled instead of shipped) into `orders`, keyed by order
//! id, with the event in the `tags` header. Three domains read their own
//! queue, each with its own filter, instead of each reading the whole
//! topic:
//!
//! | queue | tags |
//! | --- | --- |
//! | `orders.inventory` | `created \|\| cancelled` (reserve, release stock) |
//! | `orders.payment` | `paid` (per-key FIFO) |
//! | `orders.notification` | `*` (every event) |
//!
//! One paid event is a poison message: the payment domain fails on it
//! (nack) until its third attempt moves it to `orders.payment.dlq`. The
//! program shows the dead letter, "fixes" the payment domain and redrives
//! it. At the end it prints what each domain processed and the end-to-end
//! latency (produce to processed), and checks that every domain processed
//! exactly the events its filter selects, each once.
//!
//! Starts a gateway in this process unless given `--server ADDR` (with
//! `--ca-cert FILE` or `--insecure`).
//!
//! ```sh
//! cargo run -p meshgate-examples --bin order_flow -- [--orders 200]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use meshgate_client::{
    Client, ClientConfig, ErrorCode, Producer, ProducerConfig, ProducerRecord, QueueOptions,
    QueueSpec, TopicSettings, Trust,
};
use meshgate_examples::Local;

const TOPIC: &str = "orders";
const POISON: &str = "order-poison";
const DOMAINS: [(&str, &str); 3] = [
    ("orders.inventory", "created || cancelled"),
    ("orders.payment", "paid"),
    ("orders.notification", "*"),
];

struct Args {
    orders: usize,
    server: Option<String>,
    trust: Trust,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        orders: 100,
        server: None,
        trust: Trust::CaFile("data/tls/ca.pem".into()),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--orders" => {
                parsed.orders = args
                    .next()
                    .context("--orders needs N")?
                    .parse()
                    .context("--orders needs a number")?;
            }
            "--server" => parsed.server = Some(args.next().context("--server needs ADDR")?),
            "--ca-cert" => {
                parsed.trust = Trust::CaFile(args.next().context("--ca-cert needs FILE")?.into());
            }
            "--insecure" => parsed.trust = Trust::Insecure,
            "--help" | "-h" => {
                println!(
                    "usage: order_flow [--orders N] [--server ADDR [--ca-cert FILE | --insecure]]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if parsed.orders == 0 {
        bail!("--orders must be at least 1");
    }
    Ok(parsed)
}

/// Wall-clock microseconds since the epoch: the example measures real
/// latency between a producer and its consumers.
fn now_micros() -> u64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "an example measures wall-clock latency"
    )]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// The events of one order: created, paid, then shipped or (every fifth
/// order) cancelled.
fn events(order: usize) -> [&'static str; 3] {
    if order % 5 == 4 {
        ["created", "paid", "cancelled"]
    } else {
        ["created", "paid", "shipped"]
    }
}

/// Whether a domain's tag expression selects an event (as the gateway's
/// filter does, for the check at the end).
fn selects(tags: &str, event: &str) -> bool {
    tags == "*" || tags.split("||").any(|tag| tag.trim() == event)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (config, local) = match &args.server {
        Some(server) => (
            ClientConfig::new([server.clone()], args.trust.clone()),
            None,
        ),
        None => {
            let local = Local::start().await?;
            println!(
                "started a gateway in this process on {}",
                local.gateway.client_address()
            );
            (local.client_config(), Some(local))
        }
    };
    let result = run(config.client_id("order-flow"), args.orders).await;
    if let Some(local) = local {
        local.stop().await;
    }
    result
}

async fn run(config: ClientConfig, orders: usize) -> anyhow::Result<()> {
    let client = Client::connect(config).await.context("connecting")?;
    let settings = TopicSettings {
        partitions: 3,
        ..TopicSettings::default()
    };
    match client.create_topic(TOPIC, settings).await {
        Ok(_) => {}
        Err(error) if error.code() == Some(ErrorCode::TopicExists) => {
            bail!("topic {TOPIC} exists already: the checks need a fresh one")
        }
        Err(error) => return Err(error).context("creating the topic"),
    }
    for (queue, tags) in DOMAINS {
        let spec = QueueSpec {
            name: queue.to_string(),
            topic: TOPIC.to_string(),
            tags: tags.to_string(),
            filter_header: None,
            filter_key_prefix: None,
            options: QueueOptions {
                max_attempts: 3,
                fifo_by_key: queue == "orders.payment",
                ..QueueOptions::default()
            },
        };
        client
            .create_queue(spec)
            .await
            .context("creating a queue")?;
        println!("queue {queue:<20} <- {TOPIC} where tags: {tags}");
    }

    // The domains start first and wait for work, as services would.
    let payment_fixed = Arc::new(AtomicBool::new(false));
    let mut expected = BTreeMap::new();
    let mut workers = Vec::new();
    for (queue, tags) in DOMAINS {
        let wanted: usize = (0..=orders)
            .map(|order| {
                events(order)
                    .iter()
                    .filter(|event| selects(tags, event))
                    .count()
            })
            .sum();
        expected.insert(queue, wanted);
        workers.push(tokio::spawn(domain(
            client.clone(),
            queue,
            wanted,
            payment_fixed.clone(),
        )));
    }

    // The order service: every order's events, keyed by order id, then
    // the poison one.
    let producer = Producer::new(client.clone(), ProducerConfig::default())?;
    for order in 0..=orders {
        let id = if order == orders {
            POISON.to_string()
        } else {
            format!("order-{order}")
        };
        for event in events(order) {
            let record = ProducerRecord::new(TOPIC, format!("{id} {event}"))
                .key(id.clone())
                .header("tags", event)
                .header("sent-at-us", now_micros().to_string());
            drop(producer.send(record).await?);
        }
    }
    producer.flush().await?;
    producer.close().await?;
    println!(
        "order service: produced {} events of {} orders",
        3 * (orders + 1),
        orders + 1
    );

    // The poison message reaches the dead-letter queue after 3 attempts.
    let dead_letter = wait_for_dead_letter(&client).await?;
    println!(
        "orders.payment.dlq: {} (failed {} times)",
        String::from_utf8_lossy(&dead_letter.0),
        dead_letter.1
    );
    payment_fixed.store(true, Ordering::SeqCst);
    let moved = client.redrive("orders.payment", None).await?;
    println!("payment domain fixed; redrove {moved} message from orders.payment.dlq");
    if moved != 1 {
        bail!("redrive moved {moved} messages, expected 1");
    }

    let mut failed = false;
    println!(
        "{:<20} {:>9} {:>9} {:>10} {:>10}  by event",
        "DOMAIN", "PROCESSED", "EXPECTED", "P50 ms", "P99 ms"
    );
    for (worker, (queue, _)) in workers.into_iter().zip(DOMAINS) {
        let report = worker.await.context("domain task")??;
        let wanted = expected[queue];
        let by_event: Vec<String> = report
            .by_event
            .iter()
            .map(|(event, count)| format!("{event} {count}"))
            .collect();
        println!(
            "{:<20} {:>9} {:>9} {:>10.2} {:>10.2}  {}",
            queue,
            report.processed.len(),
            wanted,
            report.percentile(0.50),
            report.percentile(0.99),
            by_event.join(", ")
        );
        if report.processed.len() != wanted || report.duplicates > 0 {
            println!(
                "  {queue}: {} processed of {wanted}, {} twice",
                report.processed.len(),
                report.duplicates
            );
            failed = true;
        }
    }
    if failed {
        bail!("a domain did not process exactly its events");
    }
    println!("every domain processed exactly the events its filter selects, each once");
    Ok(())
}

/// What a domain did.
#[derive(Default)]
struct Report {
    processed: BTreeSet<String>,
    duplicates: usize,
    by_event: BTreeMap<String, usize>,
    latencies_ms: Vec<f64>,
}

impl Report {
    fn percentile(&self, quantile: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let index = ((sorted.len() - 1) as f64 * quantile).round() as usize;
        sorted[index]
    }
}

/// One domain's consumer: receives, "processes" (the payment domain fails
/// on the poison order until it is fixed), acks or nacks, until it has
/// processed `wanted` events or nothing arrives for a while.
async fn domain(
    client: Client,
    queue: &'static str,
    wanted: usize,
    payment_fixed: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut idle_rounds = 0;
    while report.processed.len() < wanted && idle_rounds < 40 {
        let messages = client
            .receive(queue, 64, Duration::from_millis(250), None)
            .await
            .with_context(|| format!("receiving from {queue}"))?;
        if messages.is_empty() {
            idle_rounds += 1;
            continue;
        }
        idle_rounds = 0;
        for message in messages {
            let value = String::from_utf8_lossy(&message.value).into_owned();
            let poison = value.starts_with(POISON) && value.ends_with("paid");
            if queue == "orders.payment" && poison && !payment_fixed.load(Ordering::SeqCst) {
                client.nack(queue, message.lease, None).await?;
                continue;
            }
            let sent_at = message
                .headers
                .iter()
                .find(|header| header.key.as_str() == "sent-at-us")
                .and_then(|header| std::str::from_utf8(&header.value).ok()?.parse::<u64>().ok());
            if let Some(sent_at) = sent_at {
                report
                    .latencies_ms
                    .push(now_micros().saturating_sub(sent_at) as f64 / 1000.0);
            }
            client.ack(queue, message.lease).await?;
            let event = value.rsplit(' ').next().unwrap_or_default().to_string();
            *report.by_event.entry(event).or_default() += 1;
            if !report.processed.insert(value) {
                report.duplicates += 1;
            }
        }
    }
    Ok(report)
}

/// Waits (bounded) for the poison message in `orders.payment.dlq`; shows
/// it by leasing it briefly and handing it back; returns its value and
/// how often it failed.
async fn wait_for_dead_letter(client: &Client) -> anyhow::Result<(Vec<u8>, u32)> {
    for _ in 0..100 {
        let letters = client
            .receive("orders.payment.dlq", 1, Duration::from_millis(100), None)
            .await?;
        if let Some(letter) = letters.into_iter().next() {
            client
                .nack("orders.payment.dlq", letter.lease, None)
                .await?;
            let description = client.describe_queue("orders.payment").await?;
            return Ok((letter.value.to_vec(), description.spec.options.max_attempts));
        }
    }
    bail!("the poison message never reached orders.payment.dlq")
}
