//! quickstart: the client in five steps.
//!
//! Starts a gateway in this process (data in a temporary directory), or
//! talks to a running one with `--server ADDR` (trusting `--ca-cert FILE`,
//! or `--insecure` for a dev node). Creates a topic, produces ten orders
//! keyed by customer, reads them back as a member of a consumer group,
//! commits, and shows the group's committed positions.
//!
//! ```sh
//! cargo run -p meshgate-examples --bin quickstart
//! cargo run -p meshgate-examples --bin quickstart -- --server 127.0.0.1:7420 --ca-cert data/tls/ca.pem
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use meshgate_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, ErrorCode, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicSettings, Trust,
};
use meshgate_examples::Local;

const TOPIC: &str = "quickstart-orders";
const GROUP: &str = "quickstart-billing";
const ORDERS: usize = 10;

/// Where the gateway comes from.
enum Target {
    /// A running gateway.
    Remote { server: String, trust: Trust },
    /// One started here, with its data directory.
    InProcess,
}

fn parse_args() -> anyhow::Result<Target> {
    let mut args = std::env::args().skip(1);
    let (mut server, mut ca_cert, mut insecure) = (None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" => server = Some(args.next().context("--server needs ADDR")?),
            "--ca-cert" => ca_cert = Some(args.next().context("--ca-cert needs FILE")?),
            "--insecure" => insecure = true,
            "--help" | "-h" => {
                println!("usage: quickstart [--server ADDR [--ca-cert FILE | --insecure]]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(match server {
        None => Target::InProcess,
        Some(server) => {
            let trust = match (ca_cert, insecure) {
                (Some(path), _) => Trust::CaFile(path.into()),
                (None, true) => Trust::Insecure,
                (None, false) => Trust::CaFile("data/tls/ca.pem".into()),
            };
            Target::Remote { server, trust }
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target = parse_args()?;
    let (config, local) = match target {
        Target::Remote { server, trust } => (ClientConfig::new([server], trust), None),
        Target::InProcess => {
            let local = Local::start().await?;
            println!(
                "1. started a gateway in this process on {}",
                local.gateway.client_address()
            );
            (local.client_config(), Some(local))
        }
    };
    let result = run(config.client_id("quickstart")).await;
    if let Some(local) = local {
        local.stop().await;
        println!("stopped the in-process gateway");
    }
    result
}

async fn run(config: ClientConfig) -> anyhow::Result<()> {
    let client = Client::connect(config).await.context("connecting")?;
    let node = client.node_info().await?;
    println!(
        "2. connected to node {} in region {}",
        node.node_id, node.region
    );

    let settings = TopicSettings {
        partitions: 3,
        ..TopicSettings::default()
    };
    match client.create_topic(TOPIC, settings).await {
        Ok(topic) => println!(
            "3. created topic {TOPIC} with {} partitions",
            topic.partitions.len()
        ),
        Err(error) if error.code() == Some(ErrorCode::TopicExists) => {
            println!("3. topic {TOPIC} exists already; using it");
        }
        Err(error) => return Err(error).context("creating the topic"),
    }

    let producer = Producer::new(client.clone(), ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for index in 0..ORDERS {
        let customer = format!("customer-{}", index % 3);
        let record = ProducerRecord::new(TOPIC, format!("order {index} for {customer}"))
            .key(customer)
            .header("kind", "created");
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    println!("4. produced {ORDERS} orders (same customer, same partition):");
    for delivery in deliveries {
        let delivered = delivery.await?;
        println!(
            "     partition {} offset {}",
            delivered.partition, delivered.offset
        );
    }
    producer.close().await?;

    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            group: Some(GROUP.into()),
            reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )?;
    consumer.subscribe([TOPIC])?;
    let mut received = 0;
    println!("5. consuming as a member of group {GROUP}:");
    for _ in 0..50 {
        if received >= ORDERS {
            break;
        }
        for record in consumer.poll(Duration::from_millis(200)).await? {
            received += 1;
            println!(
                "     {}/{} offset {}: {}",
                record.topic,
                record.partition,
                record.offset,
                String::from_utf8_lossy(&record.value)
            );
        }
        consumer.commit().await?;
    }
    let group = client.describe_group(GROUP).await?;
    println!("   committed positions of {GROUP}:");
    for offset in group.offsets {
        println!(
            "     {}/{} next offset {} (lag {})",
            offset.topic,
            offset.partition,
            offset.offset.map_or_else(|| "-".into(), |o| o.to_string()),
            offset.lag.map_or_else(|| "-".into(), |l| l.to_string())
        );
    }
    consumer.close().await?;
    if received < ORDERS {
        bail!("received {received} of {ORDERS} orders");
    }
    Ok(())
}
