//! The flags every client subcommand shares: which node, and how to trust it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use meshgate_client::{Client, ClientConfig, Trust};

/// Where a dev node started in the current directory keeps its CA.
const DEV_CA_CERT: &str = "./data/tls/ca.pem";

/// How to reach and trust a gateway.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The gateway to talk to, host:port (QUIC, UDP).
    #[arg(
        long,
        global = true,
        env = "MESHGATE_SERVER",
        default_value = "127.0.0.1:7420",
        value_name = "ADDR"
    )]
    server: String,
    /// The cluster CA certificate (PEM) the gateway's certificate must chain
    /// to [default: ./data/tls/ca.pem if it exists, as a dev node started in
    /// this directory writes it].
    #[arg(long, global = true, env = "MESHGATE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Accept any gateway certificate: encrypted but not authenticated, for
    /// development only.
    #[arg(long, global = true)]
    insecure: bool,
}

impl ConnectArgs {
    /// The client configuration these flags describe.
    pub(crate) fn client_config(&self, client_id: &str) -> anyhow::Result<ClientConfig> {
        let trust = if self.insecure {
            Trust::Insecure
        } else if let Some(path) = &self.ca_cert {
            Trust::CaFile(path.clone())
        } else if Path::new(DEV_CA_CERT).exists() {
            Trust::CaFile(PathBuf::from(DEV_CA_CERT))
        } else {
            anyhow::bail!(
                "no CA certificate to trust: pass --ca-cert FILE (a dev node keeps it in \
                 <data-dir>/tls/ca.pem), set MESHGATE_CA_CERT, or use --insecure for development"
            );
        };
        let mut config = ClientConfig::new([self.server.clone()], trust).client_id(client_id);
        config.connect_timeout = Duration::from_secs(3);
        Ok(config)
    }

    /// Connects to the gateway.
    pub(crate) async fn connect(&self, client_id: &str) -> anyhow::Result<Client> {
        let config = self.client_config(client_id)?;
        Client::connect(config)
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.server))
    }
}
