//! `meshgate serve`: runs a gateway until SIGTERM or SIGINT, then stops
//! gracefully (stop accepting, finish in-flight requests, fsync, exit 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use meshgate_gateway::config::{self, Overrides};
use meshgate_gateway::gateway::Gateway;

/// Flags of `meshgate serve`; each overrides the file and the environment.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where data lives [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This node's region [default: local].
    #[arg(long)]
    region: Option<String>,
    /// This node's id (a DNS label) [default: kept in <data-dir>/node-id].
    #[arg(long)]
    node_id: Option<String>,
    /// Client listener, QUIC over UDP [default: 127.0.0.1:7420].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin HTTP listener [default: 127.0.0.1:7421].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        let mut overrides = Overrides::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(("data_dir", dir.display().to_string()));
        }
        if let Some(region) = &self.region {
            overrides.push(("region", region.clone()));
        }
        if let Some(node_id) = &self.node_id {
            overrides.push(("node_id", node_id.clone()));
        }
        if let Some(listen) = self.listen {
            overrides.push(("listen", listen.to_string()));
        }
        if let Some(listen) = self.http_listen {
            overrides.push(("http_listen", listen.to_string()));
        }
        overrides
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(args.config.as_deref(), std::env::vars(), &args.overrides())
        .context("invalid configuration")?;
    let gateway = Gateway::start(config)
        .await
        .context("cannot start the gateway")?;
    eprintln!(
        "meshgate: node {} (region {}) serving clients on {} (QUIC), admin on http://{}",
        gateway.node().node_id(),
        gateway.node().region(),
        gateway.client_address(),
        gateway.http_address(),
    );
    let stop = gateway.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(target: "meshgate::serve", "signal received; stopping");
        stop.cancel();
    });
    gateway.run_until_stopped().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(target: "meshgate::serve", %error, "cannot watch SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
