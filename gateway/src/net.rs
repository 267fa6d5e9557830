//! How a node reaches the network: real sockets in production, turmoil's
//! simulated ones in the simulation. Everything the node binds goes through
//! [`Network`], so the same node code runs in both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use meshgate_federation::membership::{
    GossipSocket, Membership, MembershipDriver, MembershipError, MembershipHandle,
};
use meshgate_federation::transport::{TransportError, bind_endpoint};

/// A boxed future, for the object-safe [`Network`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A started membership: its handle, the bound gossip address, and the
/// driver task (aborted to simulate a crash).
pub type StartedMembership = (MembershipHandle, SocketAddr, tokio::task::JoinHandle<()>);

/// Builds the membership core once the gossip socket's address is known
/// (with port 0 it is chosen by the system).
pub type MakeMembership = Box<dyn FnOnce(SocketAddr) -> Result<Membership, MembershipError> + Send>;

/// The sockets a node uses.
pub trait Network: Send + Sync + std::fmt::Debug + 'static {
    /// A QUIC endpoint bound to `address`. The network chooses the
    /// endpoint configuration (the simulation seeds its RNG).
    fn quic_endpoint(
        &self,
        address: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> BoxFuture<'_, Result<quinn::Endpoint, TransportError>>;

    /// Binds the gossip socket on `address`, builds the membership core
    /// with the bound address and spawns its driver.
    fn start_membership(
        &self,
        address: SocketAddr,
        make: MakeMembership,
    ) -> BoxFuture<'_, io::Result<StartedMembership>>;

    /// Resolves `host:port` names (seeds, advertised hosts).
    fn resolve(&self, name: String) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>>;

    /// Whether the admin HTTP listener runs (not in the simulation).
    fn serves_http(&self) -> bool;
}

/// Builds the membership core for a bound gossip socket and spawns its
/// driver; shared by every [`Network`].
pub fn spawn_membership<S: GossipSocket>(
    socket: S,
    make: MakeMembership,
) -> io::Result<StartedMembership> {
    let bound = socket.local_addr()?;
    let core = make(bound).map_err(io::Error::other)?;
    let (driver, handle) = MembershipDriver::new(core, socket);
    let task = tokio::spawn(async move {
        if let Err(error) = driver.run().await {
            tracing::debug!(target: "meshgate::cluster", %error, "membership stopped");
        }
    });
    Ok((handle, bound, task))
}

/// Real sockets: UDP and TCP from the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealNetwork;

impl Network for RealNetwork {
    fn quic_endpoint(
        &self,
        address: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> BoxFuture<'_, Result<quinn::Endpoint, TransportError>> {
        Box::pin(async move { bind_endpoint(address, quinn::EndpointConfig::default(), server) })
    }

    fn start_membership(
        &self,
        address: SocketAddr,
        make: MakeMembership,
    ) -> BoxFuture<'_, io::Result<StartedMembership>> {
        Box::pin(async move {
            let socket = tokio::net::UdpSocket::bind(address).await?;
            spawn_membership(socket, make)
        })
    }

    fn resolve(&self, name: String) -> BoxFuture<'_, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host(name).await?.collect()) })
    }

    fn serves_http(&self) -> bool {
        true
    }
}
