//! region_failover: a consumer group moves from one region to another in
//! the middle of a stream, and nothing is lost or repeated.
//!
//! Starts us-east and eu-west in this process, mirrors `orders` between
//! them, produces in both regions while mirroring is off (so the two logs
//! interleave the origins differently, the hard case), consumes half of the
//! records in us-east as group `shipping` (committing after each), kills
//! us-east, and lets the group finish in eu-west. It then compares what was
//! delivered with the topic, record by record.
//!
//! ```sh
//! cargo run -p meshgate-examples --bin region_failover -- [--records N]
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use meshgate_client::{
    Consumer, ConsumerConfig, ConsumerRecord, MirrorRuleSpec, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicSettings,
};
use meshgate_examples::Regions;

const TOPIC: &str = "orders";

fn records_flag() -> anyhow::Result<usize> {
    let mut args = std::env::args().skip(1);
    let mut records = 200;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().context("--records needs N")?.parse()?,
            "--help" | "-h" => {
                println!("usage: region_failover [--records N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(records >= 4, "--records must be at least 4");
    Ok(records)
}

fn identity(record: &ConsumerRecord) -> (u32, String, u64) {
    (
        record.partition,
        record.origin.stream.region.to_string(),
        record.origin.seq.0,
    )
}

fn rule() -> MirrorRuleSpec {
    MirrorRuleSpec {
        name: "orders".into(),
        topics: TOPIC.into(),
        regions: vec!["us-east".into(), "eu-west".into()],
        topology: "full-mesh".into(),
        filter_header: None,
        filter_key_prefix: None,
    }
}

fn group() -> ConsumerConfig {
    ConsumerConfig {
        group: Some("shipping".into()),
        reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records = records_flag()?;
    let mut regions = Regions::start(&[("use-1", "us-east"), ("euw-1", "eu-west")]).await?;
    let us = regions.client(0).await?;
    let eu = regions.client(1).await?;
    us.create_topic(
        TOPIC,
        TopicSettings {
            partitions: 2,
            ..TopicSettings::default()
        },
    )
    .await?;
    us.add_mirror_rule(rule()).await?;
    for _ in 0..100 {
        if eu.describe_topic(TOPIC).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Produce in both regions with mirroring off, then turn it on.
    us.remove_mirror_rule("orders").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_region = records / 2;
    for (client, region) in [(&us, "us-east"), (&eu, "eu-west")] {
        let producer = Producer::new(client.clone(), ProducerConfig::default())?;
        for index in 0..per_region {
            let record = ProducerRecord::new(TOPIC, format!("{region}-order-{index}"))
                .key(format!("customer-{}", index % 7));
            drop(producer.send(record).await?);
        }
        producer.flush().await?;
    }
    us.add_mirror_rule(rule()).await?;
    let total = 2 * per_region;
    for (client, region) in [(&us, "us-east"), (&eu, "eu-west")] {
        let mut held = 0;
        for _ in 0..200 {
            let topic = client.describe_topic(TOPIC).await?;
            held = topic
                .partitions
                .iter()
                .map(|p| p.high_watermark)
                .sum::<u64>();
            if held == total as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            held == total as u64,
            "{region} holds {held} of {total} records"
        );
        println!(
            "{region}: holds all {total} orders (each region's log interleaves them its own way)"
        );
    }

    // A record's identity is (partition, origin region, origin seq): the
    // same in every region, whatever its local offset.
    let mut delivered: Vec<(u32, String, u64)> = Vec::new();
    let mut consumer = Consumer::new(us.clone(), group())?;
    consumer.subscribe([TOPIC])?;
    while delivered.len() < total / 2 {
        let record = consumer.next().await?;
        delivered.push(identity(&record));
        consumer.commit().await?;
    }
    consumer.close().await?;
    println!(
        "us-east: group shipping processed {} orders and committed",
        delivered.len()
    );

    let gone = regions.gateways.remove(0);
    gone.kill().await;
    println!("us-east: killed");

    let mut consumer = Consumer::new(eu.clone(), group())?;
    consumer.subscribe([TOPIC])?;
    let resumed_from = delivered.len();
    // A poll may return empty while the group (re)joins: poll until done or
    // nothing came for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered.len() < total {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "eu-west stopped delivering at {} of {total}",
            delivered.len()
        );
        let batch = consumer.poll(Duration::from_secs(1)).await?;
        for record in batch {
            delivered.push(identity(&record));
        }
        consumer.commit().await?;
    }
    let extra = consumer.poll(Duration::from_millis(500)).await?;
    println!(
        "eu-west: group shipping resumed and processed {} orders",
        delivered.len() - resumed_from + extra.len()
    );
    let mut seen = BTreeSet::new();
    let twice: Vec<_> = delivered
        .iter()
        .filter(|item| !seen.insert(*item))
        .collect();
    ensure!(
        twice.is_empty(),
        "{} orders delivered twice: {twice:?}",
        twice.len()
    );
    ensure!(
        extra.is_empty(),
        "{} orders delivered beyond the topic",
        extra.len()
    );
    ensure!(
        seen.len() == total,
        "{} of {total} orders delivered",
        seen.len()
    );
    println!("failover check: {total} orders, each delivered exactly once across the two regions");
    regions.stop().await;
    Ok(())
}
