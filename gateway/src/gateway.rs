//! A running gateway: the node plus its listeners and background tasks,
//! started and stopped as one. Used by `meshgate serve`, by the tests (which
//! start real gateways on 127.0.0.1 port 0) and by the examples.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshgate_federation::transport::{
    TransportError, TransportLimits, client_facing_server_config,
};
use meshgate_storage::{FileSystem, StdFs};
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::cluster::{Cluster, ClusterStart};
use crate::config::GatewayConfig;
use crate::mirror::Mirror;
use crate::net::{Network, RealNetwork};
use crate::node::{Node, NodeError};
use crate::{http, server, tls};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node's data or configuration; nothing was started.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Certificates or the QUIC endpoint; nothing was started.
    #[error("TLS/QUIC: {0}")]
    Transport(#[from] TransportError),
    /// Joining the federation failed (gossip socket, peer endpoint, seeds);
    /// nothing was started.
    #[error("federation: {0}")]
    Cluster(String),
    /// The Kafka listener could not bind; nothing was started.
    #[error("Kafka listener {address}: {source}")]
    Kafka {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin HTTP listener could not bind; nothing was started.
    #[error("admin HTTP listener {address}: {source}")]
    Http {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a node runs on: disk, clock, sockets and a seed for every random
/// choice. Production uses the real ones; the simulation its own.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The file system.
    pub fs: Arc<dyn FileSystem>,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// The sockets.
    pub network: Arc<dyn Network>,
    /// Seeds ids, incarnations and protocol randomness.
    pub seed: u64,
    /// Certificates to use instead of the configured files or development
    /// ones (the simulation makes them in memory).
    pub certificates: Option<tls::NodeTls>,
}

/// A started gateway.
pub struct Gateway {
    node: Arc<Node>,
    cluster: Arc<Cluster>,
    client_address: SocketAddr,
    http_address: Option<SocketAddr>,
    kafka_address: Option<SocketAddr>,
    ca_pem: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("node", &self.node.node_id())
            .field("client_address", &self.client_address)
            .field("http_address", &self.http_address)
            .field("kafka_address", &self.kafka_address)
            .finish()
    }
}

impl Gateway {
    /// Starts a gateway on the real disk and clock.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, StartError> {
        let seed = rand::rngs::SmallRng::from_os_rng().random();
        let environment = Environment {
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
            network: Arc::new(RealNetwork),
            seed,
            certificates: None,
        };
        Gateway::start_with(config, environment).await
    }

    /// Starts a gateway in the given environment (disk, clock, sockets).
    pub async fn start_with(
        config: GatewayConfig,
        environment: Environment,
    ) -> Result<Gateway, StartError> {
        let Environment {
            fs,
            clock,
            network,
            seed,
            certificates,
        } = environment;
        let node = Node::open(config.clone(), fs.clone(), clock, seed)?;
        let certificates = match certificates {
            Some(certificates) => certificates,
            None => tls::load(&config, node.node_id())?,
        };
        let limits = TransportLimits {
            bidi_streams_max: config.limits.streams_per_connection_max,
            ..TransportLimits::default()
        };
        let server_config = client_facing_server_config(&certificates.node, &limits)?;
        let endpoint = network
            .quic_endpoint(config.listen, Some(server_config))
            .await?;
        let client_address = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let http_listener = if network.serves_http() {
            let listener = tokio::net::TcpListener::bind(config.http_listen)
                .await
                .map_err(|source| StartError::Http {
                    address: config.http_listen,
                    source,
                })?;
            Some(listener)
        } else {
            None
        };
        let http_address = match &http_listener {
            Some(listener) => Some(listener.local_addr().map_err(|source| StartError::Http {
                address: config.http_listen,
                source,
            })?),
            None => None,
        };
        // The Kafka listener is TCP on the real network only.
        let kafka_listener = match config.kafka_listen {
            Some(address) if network.serves_http() => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|source| StartError::Kafka { address, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| StartError::Kafka { address, source })?;
                Some((listener, bound))
            }
            _ => None,
        };
        let kafka_address = kafka_listener.as_ref().map(|(_, bound)| *bound);
        let shutdown = CancellationToken::new();
        let cluster = Cluster::start(
            ClusterStart {
                config: &config,
                fs: fs.clone(),
                node_id: node.node_id(),
                region: node.region(),
                tls: &certificates,
                network: &*network,
                client_address,
                seed,
            },
            shutdown.clone(),
        )
        .await?;
        node.set_cluster(cluster.clone());
        node.set_client_address(cluster.addresses().client.to_string());
        let node = Arc::new(node);
        let mirror = Mirror::start(&node, cluster.clone(), shutdown.clone());
        node.set_mirror(mirror);
        let queues = crate::queues::Queues::start(&node, cluster.clone(), shutdown.clone());
        node.set_queues(queues);
        let mut tasks = vec![
            tokio::spawn(server::serve(node.clone(), endpoint, shutdown.clone())),
            tokio::spawn(retention_loop(node.clone(), shutdown.clone())),
        ];
        if let Some((listener, _)) = kafka_listener {
            let state = crate::kafka::KafkaState::new(node.clone(), seed);
            tasks.push(tokio::spawn(crate::kafka::listener::serve(
                state,
                listener,
                shutdown.clone(),
            )));
        }
        if let Some(listener) = http_listener {
            tasks.push(tokio::spawn(http::serve(
                node.clone(),
                listener,
                shutdown.clone(),
            )));
        }
        tracing::info!(
            target: "meshgate::gateway",
            node = node.node_id(),
            region = %node.region(),
            client = %client_address,
            http = ?http_address,
            kafka = ?kafka_address,
            gossip = %cluster.addresses().gossip,
            peer = %cluster.addresses().peer,
            data = %config.data_dir.display(),
            "gateway started"
        );
        Ok(Gateway {
            node,
            cluster,
            client_address,
            http_address,
            kafka_address,
            ca_pem: certificates.ca.pem().to_string(),
            shutdown,
            tasks,
        })
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Where clients connect (QUIC).
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// Where the admin HTTP listener is (none in the simulation).
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http_address
    }

    /// Where the Kafka listener is, when it runs.
    pub fn kafka_address(&self) -> Option<SocketAddr> {
        self.kafka_address
    }

    /// Membership and peer links.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The cluster CA certificate (PEM) clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled, then stops gracefully.
    pub async fn run_until_stopped(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }

    /// Stops at once without leaving the cluster or draining requests, as a
    /// crash would look to the other gateways (for tests). Logs are still
    /// closed, since a process that goes on running cannot lose its page
    /// cache anyway.
    pub async fn kill(self) {
        self.cluster.abort();
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.node.close().await;
    }

    /// Stops accepting, finishes in-flight requests, syncs and closes every log.
    pub async fn stop(self) {
        self.cluster.leave().await;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.node.close().await;
        tracing::info!(target: "meshgate::gateway", node = self.node.node_id(), "gateway stopped");
    }
}

async fn retention_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let period = Duration::from_millis(node.config().retention_check_ms);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => node.apply_retention(),
        }
    }
}
