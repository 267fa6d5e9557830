//! The node's sockets on turmoil's simulated network: quinn over
//! [`TurmoilUdpSocket`] with `quinn::TokioRuntime` and a seeded endpoint
//! RNG, gossip over turmoil's UDP, names resolved by turmoil.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_federation::transport::{
    NodeName, TransportError, TurmoilUdpSocket, derive_rng_seed, new_endpoint,
    seeded_endpoint_config,
};
use meshgate_gateway::net::{
    BoxFuture, MakeMembership, Network, StartedMembership, spawn_membership,
};

/// Sockets of one simulated node.
#[derive(Debug, Clone)]
pub struct TurmoilNetwork {
    seed: u64,
    node: NodeName,
}

impl TurmoilNetwork {
    /// The network of node `node` in a run seeded by `seed`.
    pub fn new(seed: u64, node: NodeName) -> Self {
        Self { seed, node }
    }
}

impl Network for TurmoilNetwork {
    fn quic_endpoint(
        &self,
        address: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> BoxFuture<'_, Result<quinn::Endpoint, TransportError>> {
        Box::pin(async move {
            let socket =
                TurmoilUdpSocket::bind(address)
                    .await
                    .map_err(|source| TransportError::Bind {
                        addr: address,
                        source,
                    })?;
            // Each endpoint of a node gets its own stream of the run's seed.
            let seed = derive_rng_seed(self.seed ^ u64::from(address.port()), &self.node);
            new_endpoint(
                seeded_endpoint_config(seed),
                server,
                Arc::new(socket),
                Arc::new(quinn::TokioRuntime),
            )
        })
    }

    fn start_membership(
        &self,
        address: SocketAddr,
        make: MakeMembership,
    ) -> BoxFuture<'_, io::Result<StartedMembership>> {
        Box::pin(async move {
            let socket = turmoil::net::UdpSocket::bind(address).await?;
            spawn_membership(socket, make)
        })
    }

    fn resolve(&self, name: String) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            let (host, port) = name.rsplit_once(':').ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} is not host:port"),
                )
            })?;
            let port: u16 = port.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad port in {name}"))
            })?;
            Ok(vec![SocketAddr::new(turmoil::lookup(host), port)])
        })
    }

    fn serves_http(&self) -> bool {
        false
    }
}
