//! A running gateway: the node plus its listeners and background tasks,
//! started and stopped as one. Used by `meshgate serve`, by the tests (which
//! start real gateways on 127.0.0.1 port 0) and by the examples.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshgate_federation::transport::{
    TransportError, TransportLimits, bind_endpoint, client_facing_server_config,
};
use meshgate_storage::{FileSystem, StdFs};
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::GatewayConfig;
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

/// A started gateway.
pub struct Gateway {
    node: Arc<Node>,
    client_address: SocketAddr,
    http_address: SocketAddr,
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
            .finish()
    }
}

impl Gateway {
    /// Starts a gateway on the real disk and clock.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, StartError> {
        let seed = rand::rngs::SmallRng::from_os_rng().random();
        Gateway::start_with(config, Arc::new(StdFs), Arc::new(SystemClock), seed).await
    }

    /// Starts a gateway on the given file system and clock; `seed` seeds
    /// every random choice the node makes.
    pub async fn start_with(
        config: GatewayConfig,
        fs: Arc<dyn FileSystem>,
        clock: Arc<dyn Clock>,
        seed: u64,
    ) -> Result<Gateway, StartError> {
        let node = Node::open(config.clone(), fs, clock, seed)?;
        let certificates = tls::load(&config, node.node_id())?;
        let limits = TransportLimits {
            bidi_streams_max: config.limits.streams_per_connection_max,
            ..TransportLimits::default()
        };
        let server_config = client_facing_server_config(&certificates.node, &limits)?;
        let endpoint = bind_endpoint(
            config.listen,
            quinn::EndpointConfig::default(),
            Some(server_config),
        )?;
        let client_address = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        node.set_client_address(client_address.to_string());
        let http_listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartError::Http {
                address: config.http_listen,
                source,
            })?;
        let http_address = http_listener
            .local_addr()
            .map_err(|source| StartError::Http {
                address: config.http_listen,
                source,
            })?;
        let node = Arc::new(node);
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(server::serve(node.clone(), endpoint, shutdown.clone())),
            tokio::spawn(http::serve(node.clone(), http_listener, shutdown.clone())),
            tokio::spawn(retention_loop(node.clone(), shutdown.clone())),
        ];
        tracing::info!(
            target: "meshgate::gateway",
            node = node.node_id(),
            region = %node.region(),
            client = %client_address,
            http = %http_address,
            data = %config.data_dir.display(),
            "gateway started"
        );
        Ok(Gateway {
            node,
            client_address,
            http_address,
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

    /// Where the admin HTTP listener is.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
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

    /// Stops accepting, finishes in-flight requests, syncs and closes every log.
    pub async fn stop(self) {
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
