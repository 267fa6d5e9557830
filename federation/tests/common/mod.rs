//! Shared pieces of the turmoil tests: a cluster's certificates, endpoints
//! over turmoil's UDP, and a trace whose hash tells two runs apart.

#![allow(dead_code, unreachable_pub)] // Each test file uses part of this.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use meshgate_federation::transport::{
    CaCertificate, ClusterCa, NodeCert, NodeName, TransportLimits, TurmoilUdpSocket,
    derive_rng_seed, new_endpoint, peer_client_config, peer_server_config, seeded_endpoint_config,
};

/// UDP port of every simulated node's peer endpoint.
pub const PEER_PORT: u16 = 7423;

/// A CA and certificates for the named nodes.
pub struct Cluster {
    pub ca: CaCertificate,
    pub certs: BTreeMap<String, NodeCert>,
}

impl Cluster {
    pub fn new(names: &[&str]) -> Self {
        let ca = ClusterCa::generate().unwrap();
        let certs = names
            .iter()
            .map(|name| {
                let cert = ca.issue_node_cert(&node(name), &[]).unwrap();
                (name.to_string(), cert)
            })
            .collect();
        Self {
            ca: ca.certificate().clone(),
            certs,
        }
    }

    pub fn cert(&self, name: &str) -> NodeCert {
        self.certs[name].clone()
    }
}

pub fn node(name: &str) -> NodeName {
    NodeName::parse(name).unwrap()
}

/// Limits scaled for simulation: a short idle timeout kept alive by pings.
pub fn sim_limits() -> TransportLimits {
    TransportLimits {
        idle_timeout_ms: 4_000,
        keep_alive_interval_ms: 1_000,
        ..TransportLimits::default()
    }
}

/// The peer address of the turmoil host `name`; call inside the simulation.
pub fn peer_addr(name: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(name), PEER_PORT)
}

/// A peer endpoint for `cert` on turmoil's UDP, with a quinn RNG seeded from
/// the simulation seed and the node name; call inside a turmoil host.
pub async fn sim_endpoint(
    seed: u64,
    ca: &CaCertificate,
    cert: &NodeCert,
) -> Result<(quinn::Endpoint, quinn::ClientConfig), Box<dyn std::error::Error>> {
    let limits = sim_limits();
    let socket =
        TurmoilUdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PEER_PORT))).await?;
    let endpoint = new_endpoint(
        seeded_endpoint_config(derive_rng_seed(seed, cert.node())),
        Some(peer_server_config(ca, cert, &limits)?),
        Arc::new(socket),
        Arc::new(quinn::TokioRuntime),
    )?;
    let client = peer_client_config(ca, cert, &limits)?;
    Ok((endpoint, client))
}

/// Events of a run with their simulated time, in the order they happened.
#[derive(Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Records `event` at the current simulated time (microseconds since the
    /// simulation started); call inside the simulation.
    pub fn record(&self, event: impl Into<String>) {
        let now = turmoil::sim_elapsed().expect("inside the simulation");
        let line = format!("{:>12}us {}", now.as_micros(), event.into());
        self.events.lock().unwrap().push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// FNV-1a over the lines: stable across Rust versions and platforms,
    /// unlike `DefaultHasher`.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for line in self.lines() {
            for byte in line.bytes().chain(std::iter::once(b'\n')) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}
