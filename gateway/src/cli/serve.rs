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
    /// Gossip listener, UDP [default: 127.0.0.1:7422].
    #[arg(long, value_name = "ADDR")]
    gossip_listen: Option<SocketAddr>,
    /// Peer listener for other gateways, QUIC [default: 127.0.0.1:7423].
    #[arg(long, value_name = "ADDR")]
    peer_listen: Option<SocketAddr>,
    /// Kafka wire-protocol listener (TCP), or `off` [default: 127.0.0.1:9092
    /// for the dev node (no --config); off when a config file does not set
    /// `kafka_listen`].
    #[arg(long, value_name = "ADDR|off")]
    kafka_listen: Option<KafkaListen>,
    /// Gossip address of a gateway to join through (repeatable).
    #[arg(long = "seed", value_name = "HOST:PORT")]
    seeds: Vec<String>,
    /// Name or IP others reach this node at (needed with 0.0.0.0 listeners).
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
}

/// The dev node's Kafka listener, when nothing else says where.
const DEV_KAFKA_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9092);

/// `--kafka-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KafkaListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for KafkaListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(KafkaListen::Off);
        }
        text.parse()
            .map(KafkaListen::At)
            .map_err(|_| format!("{text:?} is neither an address (host:port) nor `off`"))
    }
}

/// The Kafka listener rule: the flag wins (an address, or `off`); else a
/// configuration file or `MESHGATE_KAFKA_LISTEN` decides (unset: off);
/// else, for the dev node (no `--config`), 127.0.0.1:9092.
fn kafka_listen(
    flag: Option<KafkaListen>,
    configured: Option<SocketAddr>,
    has_config_file: bool,
) -> Option<SocketAddr> {
    match flag {
        Some(KafkaListen::Off) => None,
        Some(KafkaListen::At(address)) => Some(address),
        None if configured.is_some() => configured,
        None if has_config_file => None,
        None => Some(DEV_KAFKA_LISTEN),
    }
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        let mut overrides = Overrides::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(("data_dir", dir.display().to_string().into()));
        }
        if let Some(region) = &self.region {
            overrides.push(("region", region.clone().into()));
        }
        if let Some(node_id) = &self.node_id {
            overrides.push(("node_id", node_id.clone().into()));
        }
        if let Some(listen) = self.listen {
            overrides.push(("listen", listen.to_string().into()));
        }
        if let Some(listen) = self.http_listen {
            overrides.push(("http_listen", listen.to_string().into()));
        }
        if let Some(listen) = self.gossip_listen {
            overrides.push(("gossip_listen", listen.to_string().into()));
        }
        if let Some(listen) = self.peer_listen {
            overrides.push(("peer_listen", listen.to_string().into()));
        }
        if !self.seeds.is_empty() {
            overrides.push(("seeds", self.seeds.clone().into()));
        }
        if let Some(host) = &self.advertise_host {
            overrides.push(("advertise_host", host.clone().into()));
        }
        overrides
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = config::load(args.config.as_deref(), std::env::vars(), &args.overrides())
        .context("invalid configuration")?;
    config.kafka_listen = kafka_listen(
        args.kafka_listen,
        config.kafka_listen,
        args.config.is_some(),
    );
    let gateway = Gateway::start(config)
        .await
        .context("cannot start the gateway")?;
    let http = gateway
        .http_address()
        .map_or_else(|| "off".to_string(), |address| format!("http://{address}"));
    let addresses = gateway.cluster().addresses();
    let kafka = gateway
        .kafka_address()
        .map_or_else(|| "off".to_string(), |address| address.to_string());
    eprintln!(
        "meshgate: node {} (region {}) serving clients on {} (QUIC), Kafka on {kafka}, admin on {http}, gossip on {}, peers on {}",
        gateway.node().node_id(),
        gateway.node().region(),
        gateway.client_address(),
        addresses.gossip,
        addresses.peer,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_node_listens_for_kafka_and_config_files_must_ask_for_it() {
        let at: SocketAddr = "127.0.0.1:19092".parse().expect("addr");
        assert_eq!(kafka_listen(None, None, false), Some(DEV_KAFKA_LISTEN));
        assert_eq!(kafka_listen(None, None, true), None);
        assert_eq!(kafka_listen(None, Some(at), true), Some(at));
        assert_eq!(kafka_listen(Some(KafkaListen::Off), Some(at), false), None);
        assert_eq!(
            kafka_listen(Some(KafkaListen::At(at)), None, true),
            Some(at)
        );
        assert_eq!("off".parse::<KafkaListen>(), Ok(KafkaListen::Off));
        assert!("nowhere".parse::<KafkaListen>().is_err());
    }
}
