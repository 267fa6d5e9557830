//! Opening and accepting authenticated peer connections.
//!
//! A peer connection is established in two steps, both bounded by one
//! timeout:
//! 1. the QUIC handshake with mutual TLS: each side verifies the other's
//!    certificate against the cluster CA, and the dialing side verifies the
//!    accepting side's certificate names the node it dialed;
//! 2. the **link hello**: the accepting side, having verified the dialer's
//!    certificate and read its node name, opens the connection's first
//!    unidirectional stream and sends a [`LinkHello`] (rmp-serde, at most
//!    [`HELLO_BYTES_MAX`] bytes).
//!
//! Step 2 exists because in QUIC with TLS 1.3 the dialing side completes its
//! handshake *before* the accepting side has checked the dialer's
//! certificate: without it a dialer refused by its peer would briefly
//! believe it was connected. Receiving the hello proves the peer accepted
//! us. Owners therefore never see the first server-initiated
//! unidirectional stream of a peer connection.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, Endpoint, ReadError, ReadToEndError, VarInt};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::error::{CLOSE_IDENTITY_REFUSED, TransportError};
use super::node_name::NodeName;
use super::pki::node_name_from_certificate;
use super::tls::ALPN_PEER;

/// Version of the link hello and of the peer protocol it opens.
pub const LINK_PROTOCOL_VERSION: u16 = 1;

/// Longest encoded link hello, in bytes (a version and a node name of at
/// most 63 bytes fit in well under 100).
pub const HELLO_BYTES_MAX: usize = 256;

/// The first message on a peer connection, sent by the accepting side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHello {
    /// [`LINK_PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The sender's node name, as in its certificate.
    pub node: NodeName,
}

/// A connection to a peer whose certificate verified against the cluster CA
/// and named `node`.
#[derive(Clone, Debug)]
pub struct AuthenticatedPeer {
    node: NodeName,
    connection: Connection,
}

impl AuthenticatedPeer {
    /// The peer's node name, read from its verified certificate.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The QUIC connection, by value.
    pub fn into_connection(self) -> Connection {
        self.connection
    }
}

/// Dials `expected` at `addr` and waits for its link hello, all within
/// `timeout` (tokio time).
///
/// `config` comes from [`super::peer_client_config`]; the TLS server name is
/// the expected node's name, so a certificate for another node is refused
/// like one from another CA ([`TransportError::HandshakeRefused`] with
/// [`super::RefusedBy::Local`]). A peer that refuses our certificate shows as
/// [`TransportError::HandshakeRefused`] with [`super::RefusedBy::Remote`].
pub async fn connect_peer(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    expected: &NodeName,
    timeout: Duration,
) -> Result<AuthenticatedPeer, TransportError> {
    let connecting = endpoint
        .connect_with(config, addr, expected.as_str())
        .map_err(|source| TransportError::Connect {
            addr,
            server_name: expected.to_string(),
            source,
        })?;
    let handshake = async {
        let connection = connecting
            .await
            .map_err(|error| TransportError::from_connection_error(addr, error))?;
        match check_dialed(&connection, addr, expected).await {
            Ok(()) => Ok(AuthenticatedPeer {
                node: expected.clone(),
                connection,
            }),
            Err(error) => {
                if matches!(error, TransportError::PeerIdentity { .. }) {
                    connection.close(VarInt::from_u32(CLOSE_IDENTITY_REFUSED), b"identity");
                }
                Err(error)
            }
        }
    };
    // Dropping the handshake on timeout drops the connection, which closes it.
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or(Err(TransportError::HandshakeTimeout {
            addr,
            timeout_ms: duration_ms(timeout),
        }))
}

/// The dialing side's checks after the QUIC handshake: the certificate names
/// the expected node, and the link hello arrives and agrees.
async fn check_dialed(
    connection: &Connection,
    addr: SocketAddr,
    expected: &NodeName,
) -> Result<(), TransportError> {
    let certified = peer_node_name(connection, addr)?;
    if &certified != expected {
        return Err(TransportError::PeerIdentity {
            addr,
            reason: format!("certificate names {certified}, expected {expected}"),
        });
    }
    let hello = receive_hello(connection, addr).await?;
    if hello.version != LINK_PROTOCOL_VERSION {
        return Err(TransportError::HelloInvalid {
            addr,
            reason: format!(
                "protocol version {} (this node speaks {LINK_PROTOCOL_VERSION})",
                hello.version
            ),
        });
    }
    if &hello.node != expected {
        return Err(TransportError::PeerIdentity {
            addr,
            reason: format!("hello names {}, expected {expected}", hello.node),
        });
    }
    Ok(())
}

/// Accepts an incoming peer connection: completes the handshake (quinn and
/// rustls verify the dialer's certificate against the cluster CA), reads the
/// dialer's node name from its certificate and sends the link hello, all
/// within `timeout` (tokio time).
///
/// A dialer without a valid certificate fails with
/// [`TransportError::HandshakeRefused`] ([`super::RefusedBy::Local`]); one
/// whose certificate names no valid node, or this node, is closed with
/// [`CLOSE_IDENTITY_REFUSED`] and fails with
/// [`TransportError::PeerIdentity`].
pub async fn accept_peer(
    incoming: quinn::Incoming,
    local: &NodeName,
    timeout: Duration,
) -> Result<AuthenticatedPeer, TransportError> {
    let addr = incoming.remote_address();
    let handshake = async {
        let connecting = incoming
            .accept()
            .map_err(|error| TransportError::from_connection_error(addr, error))?;
        let connection = connecting
            .await
            .map_err(|error| TransportError::from_connection_error(addr, error))?;
        let node = match identify_dialer(&connection, addr, local) {
            Ok(node) => node,
            Err(error) => {
                connection.close(VarInt::from_u32(CLOSE_IDENTITY_REFUSED), b"identity");
                return Err(error);
            }
        };
        send_hello(&connection, addr, local).await?;
        Ok(AuthenticatedPeer { node, connection })
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or(Err(TransportError::HandshakeTimeout {
            addr,
            timeout_ms: duration_ms(timeout),
        }))
}

fn identify_dialer(
    connection: &Connection,
    addr: SocketAddr,
    local: &NodeName,
) -> Result<NodeName, TransportError> {
    let protocol = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    if protocol.as_deref() != Some(ALPN_PEER) {
        return Err(TransportError::PeerIdentity {
            addr,
            reason: "did not negotiate the peer protocol (ALPN)".into(),
        });
    }
    let node = peer_node_name(connection, addr)?;
    if &node == local {
        return Err(TransportError::PeerIdentity {
            addr,
            reason: format!("certificate names this node ({local})"),
        });
    }
    Ok(node)
}

/// The node name in the verified certificate the remote presented.
fn peer_node_name(connection: &Connection, addr: SocketAddr) -> Result<NodeName, TransportError> {
    let identity = |reason: String| TransportError::PeerIdentity { addr, reason };
    let chain = connection
        .peer_identity()
        .ok_or_else(|| identity("presented no certificate".into()))?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| identity("identity is not a certificate chain".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| identity("empty certificate chain".into()))?;
    node_name_from_certificate(leaf).map_err(|error| identity(error.to_string()))
}

async fn send_hello(
    connection: &Connection,
    addr: SocketAddr,
    local: &NodeName,
) -> Result<(), TransportError> {
    let hello = LinkHello {
        version: LINK_PROTOCOL_VERSION,
        node: local.clone(),
    };
    // Encoding a u16 and a short string into a Vec cannot fail.
    let bytes = rmp_serde::to_vec(&hello).expect("link hello encodes");
    assert!(bytes.len() <= HELLO_BYTES_MAX, "link hello fits its bound");
    let lost = |error| TransportError::from_connection_error(addr, error);
    let mut stream = connection.open_uni().await.map_err(lost)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|error| match error {
            quinn::WriteError::ConnectionLost(error) => lost(error),
            other => TransportError::HelloInvalid {
                addr,
                reason: format!("cannot send the hello: {other}"),
            },
        })?;
    if stream.finish().is_err() {
        // Nothing else finishes or resets a stream we just opened; only a
        // connection lost meanwhile can have closed it.
        return Err(match connection.close_reason() {
            Some(error) => lost(error),
            None => TransportError::HelloInvalid {
                addr,
                reason: "hello stream closed before it was finished".into(),
            },
        });
    }
    Ok(())
}

async fn receive_hello(
    connection: &Connection,
    addr: SocketAddr,
) -> Result<LinkHello, TransportError> {
    let lost = |error| TransportError::from_connection_error(addr, error);
    let mut stream = connection.accept_uni().await.map_err(lost)?;
    let bytes = stream
        .read_to_end(HELLO_BYTES_MAX)
        .await
        .map_err(|error| match error {
            ReadToEndError::Read(ReadError::ConnectionLost(error)) => lost(error),
            other => TransportError::HelloInvalid {
                addr,
                reason: format!("cannot read the hello: {other}"),
            },
        })?;
    rmp_serde::from_slice(&bytes).map_err(|error| TransportError::HelloInvalid {
        addr,
        reason: format!("undecodable hello: {error}"),
    })
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
