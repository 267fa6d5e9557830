//! Shared pieces of the example programs: starting one dev gateway, or
//! several regions with one throwaway cluster CA, in this process, on
//! loopback ports the system picks, each with its data in a temporary
//! directory.

use std::time::Duration;

use anyhow::Context;
use meshgate_client::{Client, ClientConfig, Trust};
use meshgate_federation::membership::{ClusterSecret, MembershipConfig};
use meshgate_federation::transport::{ClusterCa, NodeName};
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;
use meshgate_gateway::mirror::MirrorConfig;

/// A dev gateway started in this process, with its data in a temporary
/// directory (removed when this is dropped).
pub struct Local {
    /// The gateway.
    pub gateway: Gateway,
    _dir: tempfile::TempDir,
}

impl Local {
    /// Starts a dev gateway with the embedded defaults on free ports.
    pub async fn start() -> anyhow::Result<Local> {
        let dir = tempfile::tempdir().context("temporary data directory")?;
        let mut config = GatewayConfig {
            data_dir: dir.path().to_path_buf(),
            ..GatewayConfig::default()
        };
        config.use_ephemeral_ports();
        let gateway = Gateway::start(config).await.context("starting a gateway")?;
        Ok(Local { gateway, _dir: dir })
    }

    /// A client configuration for this gateway, trusting its CA.
    pub fn client_config(&self) -> ClientConfig {
        let trust = Trust::CaPem(self.gateway.ca_pem().to_string());
        ClientConfig::new([self.gateway.client_address().to_string()], trust)
    }

    /// Stops the gateway gracefully.
    pub async fn stop(self) {
        self.gateway.stop().await;
    }
}

/// Gateways started in this process, one per region.
pub struct Regions {
    /// The gateways, in the order asked for.
    pub gateways: Vec<Gateway>,
    /// Their cluster CA (PEM), for clients to trust.
    pub ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Regions {
    /// Starts one gateway per `(node id, region)`, joined into one cluster,
    /// and waits until they all see each other.
    pub async fn start(layout: &[(&str, &str)]) -> anyhow::Result<Regions> {
        let dir = tempfile::tempdir()?;
        let ca = ClusterCa::generate()?;
        ca.save(&dir.path().join("ca"))?;
        let mut gateways: Vec<Gateway> = Vec::new();
        for (node, region) in layout {
            let certs = dir.path().join(node);
            ca.issue_node_cert(&NodeName::parse(node)?, &["127.0.0.1".into()])?
                .save(&certs)?;
            let mut config = GatewayConfig {
                node_id: Some((*node).to_string()),
                region: (*region).to_string(),
                data_dir: certs.join("data"),
                seeds: gateways
                    .first()
                    .map(|g| vec![g.cluster().addresses().gossip.to_string()])
                    .unwrap_or_default(),
                membership: MembershipConfig {
                    cluster_key: Some(ClusterSecret::new("examples-throwaway-cluster-key")),
                    ..MembershipConfig::fast()
                },
                mirror: MirrorConfig {
                    reconcile_ms: 200,
                    heads_ms: 200,
                    idle_ms: 200,
                    ..MirrorConfig::default()
                },
                ..GatewayConfig::default()
            };
            config.use_ephemeral_ports();
            config.tls.ca_cert = Some(dir.path().join("ca/ca.pem"));
            config.tls.cert = Some(certs.join("node.pem"));
            config.tls.key = Some(certs.join("node.key"));
            let gateway = Gateway::start(config)
                .await
                .with_context(|| format!("cannot start {region}"))?;
            gateways.push(gateway);
        }
        let regions = Regions {
            ca_pem: ca.certificate().pem().to_string(),
            gateways,
            _dir: dir,
        };
        for _ in 0..200 {
            if regions.converged().await {
                return Ok(regions);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the regions did not find each other within 10 s")
    }

    async fn converged(&self) -> bool {
        for gateway in &self.gateways {
            let alive = gateway
                .node()
                .members()
                .await
                .iter()
                .filter(|m| m.state == "alive")
                .count();
            if alive != self.gateways.len() {
                return false;
            }
        }
        true
    }

    /// A client of the gateway at `index`, staying on it.
    pub async fn client(&self, index: usize) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(
            [self.gateways[index].client_address().to_string()],
            Trust::CaPem(self.ca_pem.clone()),
        );
        config.discover = false;
        Ok(Client::connect(config).await?)
    }

    /// Stops every gateway still running.
    pub async fn stop(self) {
        for gateway in self.gateways {
            gateway.stop().await;
        }
    }
}
