//! QUIC transport between gateways (quinn) with mutual TLS from a cluster
//! CA (rustls, rcgen), built so the same code runs on real sockets and under
//! turmoil.
//!
//! # Layout
//! - [`node_name`](NodeName): the validated node name a certificate carries.
//! - `pki`: the cluster CA ([`ClusterCa`]), its public certificate
//!   ([`CaCertificate`]) and node certificates ([`NodeCert`]), saved as PEM
//!   files (keys mode 0600); dev nodes share a CA by export and import.
//! - `tls`: rustls configurations wrapped for quinn: mutual TLS between
//!   peers ([`ALPN_PEER`]), and the client-facing side ([`ALPN_CLIENT`]).
//! - `endpoint`: [`new_endpoint`], the one endpoint constructor over an
//!   abstract socket and runtime, its production helper [`bind_endpoint`],
//!   and the [`TransportLimits`] of every connection.
//! - `turmoil`: [`TurmoilUdpSocket`], the simulated socket behind the same
//!   constructor.
//! - `handshake`: [`connect_peer`] and [`accept_peer`], which authenticate
//!   both ends and exchange the link hello.
//! - `backoff` and `links`: [`PeerLinks`], one reconnecting link per peer
//!   with bounded exponential backoff, an accept loop, states and counters.
//! - `error`: [`TransportError`].
//!
//! # Names and verification
//! Every node certificate carries two DNS names: [`CLUSTER_SERVER_NAME`]
//! (`meshgate.local`) and the node's own name (also its common name).
//! - Peer links dial with the **peer's node name** as TLS server name, so a
//!   link checks both that the remote belongs to the cluster (its
//!   certificate chains to the cluster CA) and that it is the node it meant
//!   to reach. The accepting side requires a client certificate from the
//!   cluster CA and reads the dialer's node name from its common name.
//! - End-user clients do not know node names in advance and dial with
//!   `meshgate.local`: any node of the cluster is acceptable to them.
//!
//! # Driving it
//! Production:
//! ```no_run
//! # async fn run() -> Result<(), meshgate_federation::transport::TransportError> {
//! use meshgate_federation::transport::*;
//! let dir = std::path::Path::new("data/tls");
//! let (ca, _) = ClusterCa::load_or_generate(dir)?;
//! let node = NodeName::parse("us-east-1")?;
//! let (cert, _) = NodeCert::load_or_issue(dir, &ca, &node, &[])?;
//! let limits = TransportLimits::default();
//! let server = peer_server_config(ca.certificate(), &cert, &limits)?;
//! let endpoint = bind_endpoint(
//!     "0.0.0.0:7423".parse().unwrap(),
//!     quinn::EndpointConfig::default(),
//!     Some(server),
//! )?;
//! let client = peer_client_config(ca.certificate(), &cert, &limits)?;
//! let rng = rand::SeedableRng::seed_from_u64(1);
//! let (links, mut accepted) =
//!     PeerLinks::start(node, endpoint, client, LinkConfig::default(), rng)?;
//! links.add_peer(NodeName::parse("eu-west-1")?, "10.0.0.2:7423".parse().unwrap())?;
//! # Ok(()) }
//! ```
//! Simulation is the same with [`TurmoilUdpSocket::bind`],
//! [`quinn::TokioRuntime`] and [`seeded_endpoint_config`] passed to
//! [`new_endpoint`].

mod backoff;
mod endpoint;
mod error;
mod files;
mod handshake;
mod links;
mod node_name;
mod pki;
mod tls;
mod turmoil;

pub use backoff::BackoffConfig;
pub use endpoint::{
    TransportLimits, bind_endpoint, derive_rng_seed, new_endpoint, seeded_endpoint_config,
};
pub use error::{
    CLOSE_BUSY, CLOSE_IDENTITY_REFUSED, CLOSE_LINK_REMOVED, RefusedBy, TransportError,
};
pub use handshake::{
    AuthenticatedPeer, HELLO_BYTES_MAX, LINK_PROTOCOL_VERSION, LinkHello, accept_peer, connect_peer,
};
pub use links::{LinkConfig, LinkState, LinkStats, LinkWatch, PeerLinks};
pub use node_name::{NODE_NAME_BYTES_MAX, NodeName};
pub use pki::{
    CA_CERT_FILE, CA_KEY_FILE, CLUSTER_SERVER_NAME, CaCertificate, ClusterCa, NODE_CERT_FILE,
    NODE_KEY_FILE, NodeCert, Provenance, node_name_from_certificate,
};
pub use tls::{
    ALPN_CLIENT, ALPN_PEER, client_config, client_facing_server_config, insecure_client_config,
    peer_client_config, peer_server_config,
};
pub use turmoil::TurmoilUdpSocket;
