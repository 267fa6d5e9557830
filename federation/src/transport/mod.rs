//! QUIC transport between gateways (quinn) with mutual TLS from a cluster
//! CA (rustls, rcgen).
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
//! - `error`: [`TransportError`].

mod endpoint;
mod error;
mod files;
mod node_name;
mod pki;
mod tls;

pub use endpoint::{
    TransportLimits, bind_endpoint, derive_rng_seed, new_endpoint, seeded_endpoint_config,
};
pub use error::{
    CLOSE_BUSY, CLOSE_IDENTITY_REFUSED, CLOSE_LINK_REMOVED, RefusedBy, TransportError,
};
pub use node_name::{NODE_NAME_BYTES_MAX, NodeName};
pub use pki::{
    CA_CERT_FILE, CA_KEY_FILE, CLUSTER_SERVER_NAME, CaCertificate, ClusterCa, NODE_CERT_FILE,
    NODE_KEY_FILE, NodeCert, Provenance, node_name_from_certificate,
};
pub use tls::{
    ALPN_CLIENT, ALPN_PEER, client_config, client_facing_server_config, insecure_client_config,
    peer_client_config, peer_server_config,
};
