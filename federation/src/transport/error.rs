//! [`TransportError`]: every way the transport can fail, and what each
//! failure does to state.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use quinn::ConnectionError;

/// Application close code a node sends when it refuses a peer after the TLS
/// handshake succeeded, because the peer's certificate names no valid node.
pub const CLOSE_IDENTITY_REFUSED: u32 = 0x4d01;

/// Application close code a node sends when its owner cannot take one more
/// accepted connection (the bounded hand-over channel is full).
pub const CLOSE_BUSY: u32 = 0x4d02;

/// Application close code of a link that its owner removed or shut down.
pub const CLOSE_LINK_REMOVED: u32 = 0x4d03;

/// Which side of a handshake refused the other's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedBy {
    /// This node refused the remote's certificate (it did not verify against
    /// the cluster CA, or did not name the expected node).
    Local,
    /// The remote refused this node's certificate, or refused the identity
    /// it carries.
    Remote,
}

impl fmt::Display for RefusedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusedBy::Local => "this node",
            RefusedBy::Remote => "the remote",
        })
    }
}

/// Errors of the QUIC transport: certificates, TLS configuration, endpoints
/// and peer connections.
///
/// Each variant's doc says what the failure did to state. Nothing in this
/// module leaves shared state half-changed: files are written through a
/// temporary file and a rename, and a failed connection attempt only
/// changes the link's state and counters.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A node name broke the naming rule ([`super::NodeName`]). Nothing was
    /// created; state is unchanged.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The refused name (cut to 64 characters).
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// rcgen failed to generate a key or sign, or to parse a certificate or
    /// key. Nothing was written; state is unchanged.
    #[error("certificate operation failed: {what}")]
    Certificate {
        /// What was being done.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },

    /// A PEM file (or string) did not hold what it should. Nothing was
    /// written; state is unchanged.
    #[error("bad PEM in {}: {what}", path.display())]
    Pem {
        /// The file read (empty when the PEM came from memory).
        path: PathBuf,
        /// What was expected.
        what: &'static str,
        /// The PEM parser's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// A certificate could not be understood (not DER X.509, or missing a
    /// field this module needs). Nothing was written; state is unchanged.
    #[error("bad certificate: {reason}")]
    BadCertificate {
        /// What is wrong with it.
        reason: String,
    },

    /// The CA key does not belong to the CA certificate beside it. Nothing
    /// was written; state is unchanged.
    #[error("CA key in {} does not match its certificate", dir.display())]
    CaKeyMismatch {
        /// The directory holding the pair.
        dir: PathBuf,
    },

    /// Only one of the CA's two files exists. Nothing was written (a
    /// half-present CA is never overwritten: an operator must look at it).
    #[error("CA in {} is incomplete: {} is missing", dir.display(), missing.display())]
    CaIncomplete {
        /// The directory holding the CA.
        dir: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// Importing a CA would replace a different CA already in place.
    /// Nothing was written; the existing CA is kept.
    #[error("a different CA already exists in {}", dir.display())]
    CaConflict {
        /// The directory holding the existing CA.
        dir: PathBuf,
    },

    /// A node certificate was not issued by the cluster CA it is used with.
    /// Nothing was written; state is unchanged.
    #[error("certificate of node {node} was not issued by the cluster CA")]
    NotIssuedByCa {
        /// The node the certificate names.
        node: String,
    },

    /// Reading, writing or syncing a file failed. The target file is either
    /// the old one or the new one (writes go through a temporary file and a
    /// rename); a stray temporary file may remain.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O cause.
        #[source]
        source: io::Error,
    },

    /// rustls refused a configuration (for example a key that does not fit
    /// the certificate). Nothing was built; state is unchanged.
    #[error("TLS configuration failed: {what}")]
    Tls {
        /// Which configuration.
        what: &'static str,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },

    /// rustls could not build a certificate verifier from the trust anchors.
    /// Nothing was built; state is unchanged.
    #[error("certificate verifier could not be built")]
    Verifier {
        /// rustls' error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    /// The TLS configuration lacks the cipher suite QUIC's initial packets
    /// need. Nothing was built; state is unchanged.
    #[error("TLS configuration unusable for QUIC")]
    NoInitialCipherSuite {
        /// quinn's error.
        #[source]
        source: quinn::crypto::rustls::NoInitialCipherSuite,
    },

    /// A transport limit is out of range. Nothing was built; state is
    /// unchanged.
    #[error("invalid transport limits: {reason}")]
    InvalidLimits {
        /// Which limit, and why.
        reason: String,
    },

    /// A peer link could not be added (this node itself, or `peers_max`
    /// reached). No link was added; existing links are unchanged.
    #[error("cannot link to {node}: {reason}")]
    PeerRejected {
        /// The peer that was not added.
        node: String,
        /// Why.
        reason: String,
    },

    /// No async runtime was found for a production endpoint (called outside
    /// tokio). Nothing was bound; state is unchanged.
    #[error("no async runtime found: endpoints must be created inside tokio")]
    NoRuntime,

    /// Binding or wrapping the UDP socket failed. Nothing is listening;
    /// state is unchanged.
    #[error("cannot bind UDP socket on {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O cause.
        #[source]
        source: io::Error,
    },

    /// quinn could not create the endpoint over the socket. The socket is
    /// dropped (closed); state is unchanged.
    #[error("cannot create QUIC endpoint")]
    Endpoint {
        /// The I/O cause.
        #[source]
        source: io::Error,
    },

    /// quinn refused to start a connection (endpoint closing, invalid server
    /// name or address). No packet was sent; the link stays as it was.
    #[error("cannot connect to {addr} as {server_name}")]
    Connect {
        /// The remote address.
        addr: SocketAddr,
        /// The TLS server name asked for.
        server_name: String,
        /// quinn's error.
        #[source]
        source: quinn::ConnectError,
    },

    /// The TLS handshake was refused because a certificate did not verify
    /// (another CA, wrong node name, wrong ALPN) or named no valid node. The
    /// connection is closed; a peer link counts it and backs off.
    #[error("handshake with {addr} refused by {by}")]
    HandshakeRefused {
        /// The remote address.
        addr: SocketAddr,
        /// Which side refused.
        by: RefusedBy,
        /// The connection error that carried the refusal.
        #[source]
        source: ConnectionError,
    },

    /// The handshake (QUIC, TLS and link hello) did not finish in time. The
    /// attempt is abandoned and its connection closed; a peer link backs off.
    #[error("handshake with {addr} timed out after {timeout_ms} ms")]
    HandshakeTimeout {
        /// The remote address.
        addr: SocketAddr,
        /// The bound that expired, in milliseconds.
        timeout_ms: u64,
    },

    /// A connection failed or was lost for another reason (idle timeout,
    /// reset, closed by the application). The connection is gone; a peer
    /// link backs off and reconnects.
    #[error("connection with {addr} failed")]
    Connection {
        /// The remote address.
        addr: SocketAddr,
        /// quinn's error.
        #[source]
        source: ConnectionError,
    },

    /// The remote sent no valid link hello (malformed, too long, or of an
    /// unknown protocol version). The connection is closed; a peer link
    /// counts a failure and backs off.
    #[error("invalid link hello from {addr}: {reason}")]
    HelloInvalid {
        /// The remote address.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },

    /// The remote's certificate or link hello does not identify the node we
    /// expected (or any node). The connection is closed; a peer link counts
    /// it as a refused handshake and backs off.
    #[error("peer at {addr} has an unacceptable identity: {reason}")]
    PeerIdentity {
        /// The remote address.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
}

impl TransportError {
    /// Whether this error is a refusal of a certificate or identity, the
    /// kind counted as `refused_handshakes` in link metrics.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            TransportError::HandshakeRefused { .. } | TransportError::PeerIdentity { .. }
        )
    }

    /// Sorts a quinn connection error: TLS alerts (QUIC crypto error codes
    /// 0x100..=0x1ff) and our identity refusal become
    /// [`TransportError::HandshakeRefused`], the rest
    /// [`TransportError::Connection`].
    pub fn from_connection_error(addr: SocketAddr, source: ConnectionError) -> Self {
        let by = match &source {
            ConnectionError::TransportError(error) if is_crypto_code(error.code) => {
                Some(RefusedBy::Local)
            }
            ConnectionError::ConnectionClosed(close) if is_crypto_code(close.error_code) => {
                Some(RefusedBy::Remote)
            }
            ConnectionError::ApplicationClosed(close)
                if close.error_code == quinn::VarInt::from_u32(CLOSE_IDENTITY_REFUSED) =>
            {
                Some(RefusedBy::Remote)
            }
            _ => None,
        };
        match by {
            Some(by) => TransportError::HandshakeRefused { addr, by, source },
            None => TransportError::Connection { addr, source },
        }
    }
}

/// QUIC maps each TLS alert to the transport error code `0x100 | alert`
/// (RFC 9001, section 4.8).
fn is_crypto_code(code: quinn::TransportErrorCode) -> bool {
    let code = u64::from(code);
    (0x100..=0x1ff).contains(&code)
}
