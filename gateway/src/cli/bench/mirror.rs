//! `meshgate bench mirror`: mirroring throughput and lag between regions on
//! this machine. Starts its own gateways in this process (one per region,
//! on loopback, with a throwaway CA and data directories), like the NATS
//! mirror peer benchmark starts its own servers, and measures:
//!
//! 1. backlog catch-up: `--messages` records produced in region A before
//!    the mirroring rule exists; the rule is added and the time until every
//!    other region holds them all is measured;
//! 2. live mirroring: `--messages` more produced in A while mirroring; the
//!    time from the first send until every other region holds them all;
//! 3. lag: records produced at `--rate` for `--lag-seconds`, each carrying
//!    its send time; the time until each is visible in region B (durable
//!    there) gives p50/p99.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use meshgate_client::{
    Acks, Client, ClientConfig, Durability, Producer, ProducerConfig, ProducerRecord,
    TopicSettings, Trust,
};
use meshgate_federation::membership::{ClusterSecret, MembershipConfig};
use meshgate_federation::transport::{ClusterCa, NodeName};
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;
use meshgate_gateway::mirror::MirrorConfig;
use meshgate_protocol::MirrorRuleSpec;
use meshgate_storage::{LocalOffset, OriginStream, RegionId, SharedLog};
use serde::Serialize;
use tokio::time::Instant;

use super::Latency;
use crate::cli::topic::parse_durability;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
const TOPIC: &str = "mirror-bench";
/// Longest wait for a region to catch up before the benchmark fails.
const STALL: Duration = Duration::from_secs(60);

/// Flags of `meshgate bench mirror`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MirrorArgs {
    /// Records per throughput phase.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Bytes per record value (at least 8).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Regions in all: 2 (A into B, like the NATS peer) or 3 (A into B and C).
    #[arg(long, default_value_t = 2)]
    regions: usize,
    /// Partitions of the mirrored topic.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Durability policy of the topic in every region: every-batch, <n>ms or never.
    #[arg(long, value_parser = parse_durability, default_value = "10ms")]
    durability: Durability,
    /// Lag phase: records per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Lag phase: seconds of producing.
    #[arg(long, default_value_t = 5)]
    lag_seconds: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    system: &'static str,
    phase: &'static str,
    regions: usize,
    messages: u64,
    size: usize,
    durability: String,
    seconds: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<Latency>,
}

struct Cluster {
    gateways: Vec<Gateway>,
    _dir: tempfile::TempDir,
}

async fn start_cluster(regions: usize) -> anyhow::Result<Cluster> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let ca = ClusterCa::generate()?;
    ca.save(&dir.path().join("ca"))?;
    let mut gateways: Vec<Gateway> = Vec::new();
    for region in &REGIONS[..regions] {
        let node = format!("{region}-bench");
        let certs = dir.path().join(&node);
        ca.issue_node_cert(&NodeName::parse(&node)?, &["127.0.0.1".into()])?
            .save(&certs)?;
        let mut config = GatewayConfig {
            node_id: Some(node.clone()),
            region: (*region).to_string(),
            data_dir: certs.join("data"),
            seeds: gateways
                .first()
                .map(|g| vec![g.cluster().addresses().gossip.to_string()])
                .unwrap_or_default(),
            membership: MembershipConfig {
                cluster_key: Some(ClusterSecret::new("meshgate-bench-throwaway-cluster-key")),
                ..MembershipConfig::fast()
            },
            mirror: MirrorConfig {
                reconcile_ms: 100,
                heads_ms: 200,
                ..MirrorConfig::default()
            },
            ..GatewayConfig::default()
        };
        config.use_ephemeral_ports();
        config.tls.ca_cert = Some(dir.path().join("ca/ca.pem"));
        config.tls.cert = Some(certs.join("node.pem"));
        config.tls.key = Some(certs.join("node.key"));
        gateways.push(
            Gateway::start(config)
                .await
                .with_context(|| format!("cannot start {region}"))?,
        );
    }
    let deadline = Instant::now() + STALL;
    loop {
        let mut all = true;
        for gateway in &gateways {
            let alive = gateway
                .node()
                .members()
                .await
                .iter()
                .filter(|m| m.state == "alive")
                .count();
            all &= alive == regions;
        }
        if all {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the benchmark regions did not find each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Cluster {
        gateways,
        _dir: dir,
    })
}

/// The log of a partition of the benchmark topic in `gateway`, once it exists.
async fn log_of(gateway: &Gateway, partition: u32) -> anyhow::Result<SharedLog> {
    let deadline = Instant::now() + STALL;
    loop {
        if let Ok(topic) = gateway.node().topics().get(TOPIC) {
            return Ok(topic
                .partition(partition)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .clone());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{TOPIC} never reached {}",
            gateway.node().region()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every follower holds `count` records of `origin` in total
/// over the partitions.
async fn wait_held(
    followers: &[&Gateway],
    partitions: u32,
    origin: &OriginStream,
    count: u64,
) -> anyhow::Result<()> {
    let mut logs = Vec::new();
    for gateway in followers {
        for partition in 0..partitions {
            logs.push(log_of(gateway, partition).await?);
        }
    }
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let held: u64 = logs
            .iter()
            .map(|log| {
                let log = log.lock();
                // Visible records only: durable in the follower.
                log.prefix_vector(log.visible_offset())
                    .map(|v| v.get(origin))
                    .unwrap_or(0)
            })
            .sum();
        if held >= count * followers.len() as u64 {
            return Ok(());
        }
        if held != last {
            (last, since) = (held, Instant::now());
        }
        anyhow::ensure!(
            since.elapsed() < STALL,
            "mirroring stalled at {held} of {}",
            count * followers.len() as u64
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A producer: lingering 2 ms for throughput, not at all for the lag
/// phase (where a record should leave as soon as it is sent).
fn producer(client: &Client, linger: Duration) -> anyhow::Result<Producer> {
    Ok(Producer::new(
        client.clone(),
        ProducerConfig {
            linger,
            acks: Acks::Local,
            ..ProducerConfig::default()
        },
    )?)
}

async fn produce(
    producer: &Producer,
    messages: u64,
    size: usize,
    partitions: u32,
) -> anyhow::Result<()> {
    let value = Bytes::from(vec![b'x'; size]);
    let mut pending = std::collections::VecDeque::new();
    for index in 0..messages {
        let record = ProducerRecord::new(TOPIC, value.clone())
            .partition((index % u64::from(partitions)) as u32);
        pending.push_back(producer.send(record).await?);
        if pending.len() >= 50_000
            && let Some(delivery) = pending.pop_front()
        {
            delivery.await?;
        }
    }
    for delivery in pending {
        delivery.await?;
    }
    Ok(())
}

pub(crate) async fn run(args: MirrorArgs) -> anyhow::Result<()> {
    anyhow::ensure!((2..=3).contains(&args.regions), "--regions is 2 or 3");
    anyhow::ensure!(
        args.size >= 8,
        "--size must be at least 8 (the lag phase embeds a timestamp)"
    );
    let cluster = start_cluster(args.regions).await?;
    let source = &cluster.gateways[0];
    let followers: Vec<&Gateway> = cluster.gateways[1..].iter().collect();
    let mut config = ClientConfig::new(
        [source.client_address().to_string()],
        Trust::CaPem(source.ca_pem().to_string()),
    );
    config.discover = false;
    let client = Client::connect(config).await?;
    let topic = client
        .create_topic(
            TOPIC,
            TopicSettings {
                partitions: args.partitions,
                durability: Some(args.durability),
                ..TopicSettings::default()
            },
        )
        .await?;
    let origin = OriginStream {
        region: RegionId::parse(REGIONS[0])?,
        incarnation: meshgate_storage::Incarnation(topic.incarnation),
    };
    let producer = producer(&client, Duration::from_millis(2))?;
    let mut phases = Vec::new();
    let mb = |messages: u64, seconds: f64| messages as f64 * args.size as f64 / seconds / 1e6;
    let phase = |name: &'static str, messages: u64, seconds: f64, lag_ms: Option<Latency>| Phase {
        system: "meshgate",
        phase: name,
        regions: args.regions,
        messages,
        size: args.size,
        durability: args.durability.to_string(),
        seconds,
        msgs_per_s: if seconds > 0.0 {
            messages as f64 / seconds
        } else {
            0.0
        },
        mb_per_s: if seconds > 0.0 {
            mb(messages, seconds)
        } else {
            0.0
        },
        lag_ms,
    };

    // 1. Backlog catch-up.
    produce(&producer, args.messages, args.size, args.partitions).await?;
    let rule = MirrorRuleSpec {
        name: "bench".into(),
        topics: TOPIC.into(),
        regions: REGIONS[..args.regions]
            .iter()
            .map(|r| (*r).to_string())
            .collect(),
        topology: "full-mesh".into(),
        filter_header: None,
        filter_key_prefix: None,
    };
    let start = Instant::now();
    client.add_mirror_rule(rule).await?;
    wait_held(&followers, args.partitions, &origin, args.messages).await?;
    phases.push(phase(
        "backlog_catchup",
        args.messages,
        start.elapsed().as_secs_f64(),
        None,
    ));

    // 2. Live mirroring.
    let start = Instant::now();
    produce(&producer, args.messages, args.size, args.partitions).await?;
    wait_held(&followers, args.partitions, &origin, 2 * args.messages).await?;
    phases.push(phase(
        "live_mirror",
        args.messages,
        start.elapsed().as_secs_f64(),
        None,
    ));

    // 3. Lag at a fixed rate: send time in the value, visibility in region B.
    let producer = self::producer(&client, Duration::ZERO)?;
    let count = args.rate * args.lag_seconds;
    let base = Arc::new(Instant::now());
    let watchers = {
        let mut handles = Vec::new();
        for partition in 0..args.partitions {
            let log = log_of(followers[0], partition).await?;
            let base = base.clone();
            let from = log.visible_offset();
            handles.push(tokio::spawn(watch_lag(log, from, base, count)));
        }
        handles
    };
    let period = Duration::from_secs(1).as_nanos() as u64 / args.rate.max(1);
    let start = Instant::now();
    for index in 0..count {
        let due = start + Duration::from_nanos(period * index);
        tokio::time::sleep_until(due).await;
        let mut value = BytesMut::with_capacity(args.size);
        value.put_u64_le(base.elapsed().as_micros() as u64);
        value.resize(args.size, b'x');
        let record = ProducerRecord::new(TOPIC, value.freeze())
            .partition((index % u64::from(args.partitions)) as u32);
        // The lag is measured where the record appears, not from its ack.
        drop(producer.send(record).await?);
    }
    producer.flush().await?;
    let mut samples = Vec::new();
    let lag_deadline = Instant::now() + STALL;
    for watcher in watchers {
        let remaining = lag_deadline.saturating_duration_since(Instant::now());
        let mut part = tokio::time::timeout(remaining, watcher)
            .await
            .context("lag watcher stalled")???;
        samples.append(&mut part);
    }
    anyhow::ensure!(
        samples.len() as u64 >= count,
        "only {} of {count} records became visible",
        samples.len()
    );
    phases.push(phase(
        "lag",
        count,
        start.elapsed().as_secs_f64(),
        Latency::from_micros(samples),
    ));

    for phase in &phases {
        if args.json {
            println!("{}", serde_json::to_string(phase)?);
        } else {
            let lag = phase.lag_ms.as_ref().map_or(String::new(), |l| {
                format!(
                    "  lag p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
                    l.p50, l.p99, l.max
                )
            });
            println!(
                "{:<16} {} regions  {:>9} x {} B  {:<11} {:>8.3} s  {:>10.0} msg/s  {:>7.1} MB/s{lag}",
                phase.phase,
                phase.regions,
                phase.messages,
                phase.size,
                phase.durability,
                phase.seconds,
                phase.msgs_per_s,
                phase.mb_per_s
            );
        }
    }
    drop(producer);
    for gateway in cluster.gateways {
        gateway.stop().await;
    }
    Ok(())
}

/// Reads records as they become visible in `log` from `from`, returning the
/// send-to-visible latency of each, in microseconds, once `count` (over all
/// partitions) could have arrived — it stops when the phase's records of
/// this partition stop coming.
async fn watch_lag(
    log: SharedLog,
    mut from: LocalOffset,
    base: Arc<Instant>,
    count: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut samples = Vec::new();
    let mut quiet_since = Instant::now();
    while (samples.len() as u64) < count {
        let visible = log.wait_visible(from, Duration::from_millis(50)).await;
        let now_us = base.elapsed().as_micros() as u64;
        if visible <= from {
            if quiet_since.elapsed() > Duration::from_secs(3) && !samples.is_empty() {
                break;
            }
            continue;
        }
        quiet_since = Instant::now();
        let chunk = log.read(from, 4 << 20)?;
        for record in chunk.records_from(from)? {
            let value = &record.record.value;
            if value.len() >= 8 {
                let sent = u64::from_le_bytes(value[..8].try_into().unwrap_or_default());
                samples.push(now_us.saturating_sub(sent));
            }
        }
        from = chunk.next_offset;
    }
    Ok(samples)
}
