//! Command-line parsing and the subcommands.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// meshgate: a multi-region federated message mesh gateway.
#[derive(Debug, Parser)]
#[command(name = "meshgate", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a gateway node (with no flags: a dev node in ./data on 127.0.0.1:7420).
    Serve(serve::ServeArgs),
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the chosen subcommand.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
    }
}
