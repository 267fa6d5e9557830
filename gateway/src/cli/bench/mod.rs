//! `meshgate bench produce|consume|e2e`: load against a running node, on a
//! topic the benchmark creates (and deletes afterwards), with a progress
//! bar on a terminal, a final table, or one JSON object with `--json`.
//!
//! - `produce`: producers send `--messages` records of `--size` bytes as
//!   fast as acknowledgements allow.
//! - `consume`: the records are produced first (not timed), then consumers
//!   read them all.
//! - `e2e`: producers send at a fixed total `--rate` while consumers read;
//!   each record carries its send time, so the consumers measure
//!   end-to-end latency (send to delivery, acknowledgement and fsync
//!   included, as a consumer only sees durable records).

mod mirror;
mod queues;
mod workloads;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meshgate_client::{Acks, Client, Durability, TopicSettings};
use serde::Serialize;

use super::connect::ConnectArgs;
use super::produce::{acks_text, parse_acks};
use super::topic::parse_durability;

/// Which benchmark.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Produce throughput.
    Produce(BenchArgs),
    /// Consume throughput (the records are produced first, untimed).
    Consume(BenchArgs),
    /// End-to-end latency at a fixed produce rate, consuming in parallel.
    E2e(BenchArgs),
    /// Mirroring throughput and lag between regions, on gateways the
    /// benchmark starts in this process (no --server needed).
    Mirror(mirror::MirrorArgs),
    /// Dispatch-queue fan-out: one hot topic into 1, 10, 100 queues with
    /// active consumers, against as many consumer groups reading the topic
    /// directly; delivered messages/s and log reads per record. Starts its
    /// own gateway in this process (no --server needed).
    Queues(queues::QueuesArgs),
}

/// Flags shared by the benchmarks.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Records to send (all producers together).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Bytes per record value (at least 8 for e2e, which embeds a timestamp).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// e2e: records per second, all producers together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Concurrent producers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Concurrent consumers, each with its own connection, sharing the partitions.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Producer acknowledgements: local (durable per the durability
    /// policy), none, or mirrored:<k>.
    #[arg(long, value_parser = parse_acks, default_value = "local")]
    acks: Acks,
    /// Durability policy of the benchmark topic: every-batch, <n>ms or never.
    #[arg(long, value_parser = parse_durability, default_value = "10ms")]
    durability: Durability,
    /// Producer linger, in milliseconds.
    #[arg(long, default_value_t = 2)]
    linger_ms: u64,
    /// Producer batch size limit, in bytes.
    #[arg(long, default_value_t = 512 * 1024)]
    batch_bytes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the benchmark topic instead of deleting it.
    #[arg(long)]
    keep_topic: bool,
}

/// What a benchmark measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) bench: &'static str,
    pub(crate) topic: String,
    pub(crate) messages: u64,
    pub(crate) size_bytes: usize,
    pub(crate) partitions: u32,
    pub(crate) producers: u32,
    pub(crate) consumers: u32,
    pub(crate) acks: String,
    pub(crate) durability: String,
    pub(crate) seconds: f64,
    pub(crate) msgs_per_s: f64,
    pub(crate) mb_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate_target: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<Latency>,
}

/// End-to-end latency percentiles, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// Percentiles of latencies given in microseconds.
    pub(crate) fn from_micros(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |quantile: f64| {
            let index =
                ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index] as f64 / 1000.0
        };
        Some(Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// A shared counter with a progress bar drawn from it (hidden when stderr
/// is not a terminal).
#[derive(Clone)]
pub(crate) struct Progress {
    pub(crate) done: Arc<AtomicU64>,
    bar: ProgressBar,
}

impl Progress {
    pub(crate) fn new(label: &str, total: u64) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        let progress = Progress {
            done: Arc::new(AtomicU64::new(0)),
            bar,
        };
        let ticker = progress.clone();
        tokio::spawn(async move {
            while !ticker.bar.is_finished() {
                ticker.bar.set_position(ticker.done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        progress
    }

    pub(crate) fn add(&self, count: u64) {
        self.done.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(&self) {
        self.bar.set_position(self.count());
        self.bar.finish_and_clear();
    }
}

pub(crate) async fn run(connect: &ConnectArgs, command: BenchCommand) -> anyhow::Result<()> {
    let (kind, args) = match command {
        BenchCommand::Mirror(args) => return mirror::run(args).await,
        BenchCommand::Queues(args) => return queues::run(args).await,
        BenchCommand::Produce(args) => ("produce", args),
        BenchCommand::Consume(args) => ("consume", args),
        BenchCommand::E2e(args) => ("e2e", args),
    };
    anyhow::ensure!(args.messages > 0, "--messages must be above 0");
    anyhow::ensure!(
        args.producers > 0 && args.consumers > 0,
        "--producers and --consumers must be above 0"
    );
    anyhow::ensure!(
        kind != "e2e" || args.size >= 8,
        "e2e needs --size of at least 8 bytes"
    );
    anyhow::ensure!(kind != "e2e" || args.rate > 0, "--rate must be above 0");
    let admin = connect.connect("meshgate-bench").await?;
    let topic = format!("bench-{:08x}", random_suffix(&admin));
    admin
        .create_topic(
            &topic,
            TopicSettings {
                partitions: args.partitions,
                durability: Some(args.durability),
                ..TopicSettings::default()
            },
        )
        .await
        .with_context(|| format!("cannot create the benchmark topic {topic}"))?;
    let result = match kind {
        "produce" => workloads::produce(connect, &args, &topic).await,
        "consume" => workloads::consume(connect, &args, &topic).await,
        _ => workloads::e2e(connect, &args, &topic).await,
    };
    if !args.keep_topic
        && let Err(error) = admin.delete_topic(&topic).await
    {
        eprintln!("meshgate: could not delete the benchmark topic {topic}: {error}");
    }
    let mut report = result?;
    report.bench = kind;
    report.topic = topic;
    report.size_bytes = args.size;
    report.partitions = args.partitions;
    report.producers = args.producers;
    report.consumers = args.consumers;
    report.acks = acks_text(args.acks);
    report.durability = args.durability.to_string();
    if report.seconds > 0.0 {
        report.msgs_per_s = report.messages as f64 / report.seconds;
        report.mb_per_s = (report.messages as f64 * args.size as f64) / report.seconds / 1e6;
    }
    let text = if args.json {
        format!("{}\n", serde_json::to_string(&report)?)
    } else {
        table(&report)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write the report")
        }
        _ => Ok(()),
    }
}

fn random_suffix(client: &Client) -> u32 {
    // The node id and the process id make the name unique enough for a
    // benchmark topic that is deleted afterwards.
    let node = client.node().map(|n| n.node_id).unwrap_or_default();
    let mut hash: u32 = std::process::id();
    for byte in node.bytes() {
        hash = hash.rotate_left(5) ^ u32::from(byte);
    }
    hash
}

fn table(report: &Report) -> String {
    let mut out = format!(
        "meshgate bench {}: topic {} ({} partitions, durability {}, acks {})\n",
        report.bench, report.topic, report.partitions, report.durability, report.acks
    );
    let mut rows = vec![
        ("messages", report.messages.to_string()),
        ("size", format!("{} B", report.size_bytes)),
        ("producers", report.producers.to_string()),
        ("consumers", report.consumers.to_string()),
        ("seconds", format!("{:.3}", report.seconds)),
        ("msgs/s", format!("{:.0}", report.msgs_per_s)),
        ("MB/s", format!("{:.1}", report.mb_per_s)),
    ];
    if let Some(rate) = report.rate_target {
        rows.push(("target rate/s", rate.to_string()));
    }
    if let Some(latency) = &report.latency_ms {
        for (name, value) in [
            ("latency p50", latency.p50),
            ("latency p90", latency.p90),
            ("latency p99", latency.p99),
            ("latency max", latency.max),
        ] {
            rows.push((name, format!("{value:.2} ms")));
        }
    }
    for (name, value) in rows {
        out.push_str(&format!("  {name:<14} {value:>14}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let latency = Latency::from_micros((1..=100).map(|i| i * 1000).collect()).expect("samples");
        assert_eq!(latency.p50, 50.0);
        assert_eq!(latency.p90, 90.0);
        assert_eq!(latency.p99, 99.0);
        assert_eq!(latency.max, 100.0);
        assert!(Latency::from_micros(Vec::new()).is_none());
    }
}
