//! Command-line parsing and the subcommands.
//!
//! `serve` runs a node; every other subcommand is a client of one, reached
//! with the global `--server`, `--ca-cert` and `--insecure` flags
//! ([`connect::ConnectArgs`]). Errors print to stderr (with the node's error
//! code and message) and exit with status 1.

mod bench;
mod certs;
mod connect;
mod consume;
mod group;
mod health;
mod members;
mod mirror;
mod produce;
mod queue;
mod serve;
mod sim;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// meshgate: a multi-region federated message mesh gateway.
///
/// `meshgate serve` runs a node (with no flags: a dev node with data in
/// ./data, listening on 127.0.0.1:7420). The other commands talk to a node:
/// by default the one on 127.0.0.1:7420, trusting ./data/tls/ca.pem.
#[derive(Debug, Parser)]
#[command(name = "meshgate", version, about, long_about)]
pub(crate) struct Cli {
    #[command(flatten)]
    connect: connect::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a gateway node (with no flags: a dev node in ./data on 127.0.0.1:7420).
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce records: one per stdin line, or one --value.
    Produce(produce::ProduceArgs),
    /// Print records of a topic, one per line (text or JSON).
    Consume(consume::ConsumeArgs),
    /// List and describe consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Measure produce and consume throughput and end-to-end latency
    /// against a running node.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The cluster's membership as the gateway sees it.
    Members(members::MembersArgs),
    /// Mirroring rules between regions, and this gateway's pull links.
    #[command(subcommand)]
    Mirror(mirror::MirrorCommand),
    /// Dispatch queues fed from a topic: create, list, describe, delete,
    /// consume (with leases, ack or nack), redrive dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Create the cluster CA and node certificates; share a dev CA.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Exit 0 when a gateway's admin HTTP answers healthy (for containers).
    Health(health::HealthArgs),
    /// Deterministic failure simulation: `sim list`, `sim run --scenario
    /// NAME|all --seeds 1..500 [--jobs N]`, `sim run --scenario NAME --seed S
    /// --trace` (runs the meshgate-sim program; `sim --help` for more).
    #[command(disable_help_flag = true)]
    Sim(sim::SimArgs),
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info` for `serve`,
/// `warn` for the client commands, whose output is their result).
pub(crate) fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the chosen subcommand.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let connect = cli.connect;
    match cli.command {
        Command::Serve(args) => return serve::run(args).await,
        Command::Health(args) => return Ok(health::run(args)),
        Command::Sim(args) => return sim::run(args),
        Command::Certs(command) => certs::run(command)?,
        Command::Members(args) => members::run(&connect, args).await?,
        Command::Mirror(command) => mirror::run(&connect, command).await?,
        Command::Queue(command) => queue::run(&connect, command).await?,
        Command::Topic(command) => topic::run(&connect, command).await?,
        Command::Produce(args) => produce::run(&connect, args).await?,
        Command::Consume(args) => consume::run(&connect, args).await?,
        Command::Group(command) => group::run(&connect, command).await?,
        Command::Bench(command) => bench::run(&connect, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}
