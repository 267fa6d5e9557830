//! rustls configurations for peers and clients, wrapped for quinn.
//!
//! | function | side | authenticates | ALPN |
//! | --- | --- | --- | --- |
//! | [`peer_server_config`] | accepting gateway | client cert from the cluster CA (mutual TLS) | [`ALPN_PEER`] |
//! | [`peer_client_config`] | dialing gateway | server cert from the cluster CA; presents its own | [`ALPN_PEER`] |
//! | [`client_facing_server_config`] | gateway, for end-user clients | none asked of the client | [`ALPN_CLIENT`] |
//! | [`client_config`] | end-user client | server cert from a CA file | [`ALPN_CLIENT`] |
//! | [`insecure_client_config`] | end-user client, dev only | nothing: any server cert | [`ALPN_CLIENT`] |
//!
//! All use TLS 1.3 only (QUIC requires it), the *ring* provider passed
//! explicitly (no process-wide default), no 0-RTT (a replayed peer request
//! would be replayed work), and the [`TransportLimits`] given.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::endpoint::TransportLimits;
use super::error::TransportError;
use super::pki::{CaCertificate, NodeCert};

/// ALPN protocol of gateway-to-gateway connections.
pub const ALPN_PEER: &[u8] = b"meshgate-peer/1";

/// ALPN protocol of the native client protocol.
pub const ALPN_CLIENT: &[u8] = b"meshgate/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CaCertificate) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|source| TransportError::Tls {
            what: "trust the cluster CA",
            source,
        })?;
    Ok(Arc::new(roots))
}

fn tls13_server_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TransportError> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TransportError::Tls {
            what: "enable TLS 1.3",
            source,
        })
}

fn tls13_client_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TransportError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TransportError::Tls {
            what: "enable TLS 1.3",
            source,
        })
}

fn quinn_server(
    tls: rustls::ServerConfig,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|source| TransportError::NoInitialCipherSuite { source })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(limits.transport_config()?));
    config.max_incoming(limits.incoming_max as usize);
    Ok(config)
}

fn quinn_client(
    tls: rustls::ClientConfig,
    limits: &TransportLimits,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|source| TransportError::NoInitialCipherSuite { source })?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(limits.transport_config()?));
    Ok(config)
}

/// Server side of peer links: presents `node`'s certificate and requires
/// the dialing gateway to present one issued by `ca` (mutual TLS).
pub fn peer_server_config(
    ca: &CaCertificate,
    node: &NodeCert,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|source| TransportError::Verifier { source })?;
    let (chain, key) = node.rustls_parts();
    let mut tls = tls13_server_builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TransportError::Tls {
            what: "use the node certificate (peer server)",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN_PEER.to_vec()];
    quinn_server(tls, limits)
}

/// Client side of peer links: presents `node`'s certificate and verifies the
/// accepting gateway's against `ca`. Connect with the peer's node name as
/// server name, so the link also verifies it reached the right node.
pub fn peer_client_config(
    ca: &CaCertificate,
    node: &NodeCert,
    limits: &TransportLimits,
) -> Result<quinn::ClientConfig, TransportError> {
    let (chain, key) = node.rustls_parts();
    let mut tls = tls13_client_builder()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(|source| TransportError::Tls {
            what: "use the node certificate (peer client)",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN_PEER.to_vec()];
    quinn_client(tls, limits)
}

/// Server side of the native client protocol: presents `node`'s certificate
/// and asks nothing of the client (clients authenticate, later, inside the
/// protocol).
pub fn client_facing_server_config(
    node: &NodeCert,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let (chain, key) = node.rustls_parts();
    let mut tls = tls13_server_builder()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TransportError::Tls {
            what: "use the node certificate (client-facing server)",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    quinn_server(tls, limits)
}

/// End-user client: verifies the gateway's certificate against `ca` (read
/// it with [`CaCertificate::from_pem_file`]). Connect with
/// [`super::CLUSTER_SERVER_NAME`] or a node name as server name.
pub fn client_config(
    ca: &CaCertificate,
    limits: &TransportLimits,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = tls13_client_builder()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    quinn_client(tls, limits)
}

/// End-user client that accepts **any** server certificate. For dev only:
/// it is encrypted but not authenticated, so anyone on the path can
/// impersonate the gateway. The handshake signature is still checked, so it
/// only accepts a server that holds the key of the certificate it shows.
pub fn insecure_client_config(
    limits: &TransportLimits,
) -> Result<quinn::ClientConfig, TransportError> {
    let verifier = Arc::new(AcceptAnyServerCertificate {
        provider: provider(),
    });
    let mut tls = tls13_client_builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    quinn_client(tls, limits)
}

/// The verifier behind [`insecure_client_config`]: any chain, any name.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
