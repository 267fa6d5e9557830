//! The cluster CA and node certificates (rcgen), kept as PEM files.
//!
//! Every gateway holds a node certificate issued by the cluster CA. The
//! certificate's common name is the node's [`NodeName`]; its DNS
//! subject-alternative names are [`CLUSTER_SERVER_NAME`], the node name and
//! any extra names or IP addresses the operator gives. See the module
//! documentation of [`super`] for how those names are verified.
//!
//! Files: `ca.pem` + `ca.key` for the CA, `node.pem` + `node.key` for a node.
//! Keys are written with mode 0600, certificates with 0644, each through a
//! temporary file, an fsync and a rename.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::TransportError;
use super::files::{self, CERT_FILE_MODE, KEY_FILE_MODE};
use super::node_name::NodeName;

/// The TLS server name every node certificate carries. End-user clients
/// connect with it, since any gateway of the cluster will do for them.
/// Peer links connect with the peer's [`NodeName`] instead, which every node
/// certificate also carries, so a link verifies it reached the node it
/// meant to reach.
pub const CLUSTER_SERVER_NAME: &str = "meshgate.local";

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a node certificate inside a node directory.
pub const NODE_CERT_FILE: &str = "node.pem";
/// File name of a node private key inside a node directory (mode 0600).
pub const NODE_KEY_FILE: &str = "node.key";

/// Common name of a CA made by [`ClusterCa::generate`].
const CA_COMMON_NAME: &str = "meshgate cluster CA";

/// Where a CA or node certificate came from when loaded or created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Read from existing files.
    Loaded,
    /// Generated or issued now, and saved.
    Created,
}

/// The cluster CA's certificate alone: what a node or client needs to verify
/// others, without the power to issue certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: CertificateDer<'static>,
    pem: String,
}

impl CaCertificate {
    /// Parses the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, TransportError> {
        Self::from_pem_at(pem, Path::new(""))
    }

    /// Reads a CA certificate PEM file, such as an exported `ca.pem`.
    pub fn from_pem_file(path: &Path) -> Result<Self, TransportError> {
        let text = files::read_pem_file(path)?;
        Self::from_pem_at(&text, path)
    }

    fn from_pem_at(pem: &str, path: &Path) -> Result<Self, TransportError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| {
            TransportError::Pem {
                path: path.to_path_buf(),
                what: "a CERTIFICATE block",
                source,
            }
        })?;
        let parsed = parse_certificate(&der)?;
        if !parsed.is_ca() {
            return Err(TransportError::BadCertificate {
                reason: "not a CA certificate (basic constraints CA:FALSE or missing)".into(),
            });
        }
        Ok(Self {
            der,
            pem: pem.to_owned(),
        })
    }

    /// The certificate in DER, as a rustls trust anchor input.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Checks that `cert` was signed by this CA.
    pub fn verify_issued(&self, cert: &NodeCert) -> Result<(), TransportError> {
        let ca = parse_certificate(&self.der)?;
        let node = parse_certificate(&cert.cert)?;
        node.verify_signature(Some(ca.public_key()))
            .map_err(|_| TransportError::NotIssuedByCa {
                node: cert.node.to_string(),
            })
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("der_bytes", &self.der.len())
            .finish()
    }
}

/// The cluster CA: its certificate and its signing key.
///
/// Only dev nodes (and an operator's tooling) hold it; a node needs only a
/// [`CaCertificate`] and its own [`NodeCert`] to take part in the cluster.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    certificate: CaCertificate,
    /// Where keys come from: `None` for fresh random ECDSA keys, a seed for
    /// Ed25519 keys derived from it ([`ClusterCa::seeded`]).
    seed: Option<[u8; 32]>,
}

impl ClusterCa {
    /// Generates a new CA with an ECDSA P-256 key.
    pub fn generate() -> Result<Self, TransportError> {
        Self::generate_from(None)
    }

    /// A CA whose key and whose node keys all follow from `seed` (Ed25519,
    /// whose signatures are deterministic too): the same seed gives the
    /// same certificates byte for byte. For simulations, where a run must
    /// replay exactly; never for a real cluster, whose keys must be secret.
    pub fn seeded(seed: u64) -> Result<Self, TransportError> {
        Self::generate_from(Some(derive_key_seed(
            &seed.to_le_bytes(),
            b"meshgate-sim-ca",
        )))
    }

    fn generate_from(seed: Option<[u8; 32]>) -> Result<Self, TransportError> {
        let key = new_key(seed.as_ref(), b"ca", "generate the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshgate");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let cert = params
            .self_signed(&key)
            .map_err(|source| TransportError::Certificate {
                what: "self-sign the CA certificate",
                source,
            })?;
        let certificate = CaCertificate {
            der: cert.der().clone(),
            pem: cert.pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            certificate,
            seed,
        })
    }

    /// Builds a CA from its certificate and PKCS#8 key in PEM, checking that
    /// the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TransportError> {
        Self::from_pem_at(cert_pem, key_pem, Path::new(""))
    }

    fn from_pem_at(cert_pem: &str, key_pem: &str, dir: &Path) -> Result<Self, TransportError> {
        let certificate = CaCertificate::from_pem_at(cert_pem, &dir.join(CA_CERT_FILE))?;
        let key = KeyPair::from_pem(key_pem).map_err(|source| TransportError::Certificate {
            what: "parse the CA key",
            source,
        })?;
        let parsed = parse_certificate(&certificate.der)?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TransportError::CaKeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&certificate.der, key).map_err(|source| {
            TransportError::Certificate {
                what: "read the CA certificate as an issuer",
                source,
            }
        })?;
        Ok(Self {
            issuer,
            certificate,
            seed: None,
        })
    }

    /// Loads `dir/ca.pem` and `dir/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, TransportError> {
        let cert_pem = files::read_pem_file(&dir.join(CA_CERT_FILE))?;
        let key_pem = files::read_pem_file(&dir.join(CA_KEY_FILE))?;
        Self::from_pem_at(&cert_pem, &key_pem, dir)
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca.key` (0600), creating `dir`.
    /// The key is written first, so a crash between the two never leaves a
    /// certificate whose key is lost.
    pub fn save(&self, dir: &Path) -> Result<(), TransportError> {
        files::write_file_atomic(
            &dir.join(CA_KEY_FILE),
            self.key_pem().as_bytes(),
            KEY_FILE_MODE,
        )?;
        files::write_file_atomic(
            &dir.join(CA_CERT_FILE),
            self.certificate.pem.as_bytes(),
            CERT_FILE_MODE,
        )
    }

    /// The dev default: loads the CA in `dir`, or generates and saves one if
    /// `dir` holds none. A directory holding only one of the two files is an
    /// error ([`TransportError::CaIncomplete`]); nothing is overwritten.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, Provenance), TransportError> {
        if present(dir)? {
            return Ok((Self::load(dir)?, Provenance::Loaded));
        }
        let ca = Self::generate()?;
        ca.save(dir)?;
        tracing::info!(
            target: "meshgate::federation::transport",
            dir = %dir.display(),
            "generated a new cluster CA"
        );
        Ok((ca, Provenance::Created))
    }

    /// Exports this CA (certificate and key) into `bundle_dir`, for other dev
    /// nodes to [`ClusterCa::import`]. Exporting the same CA twice is fine;
    /// a bundle holding a different CA is never overwritten
    /// ([`TransportError::CaConflict`]).
    pub fn export(&self, bundle_dir: &Path) -> Result<(), TransportError> {
        self.save_unless_conflicting(bundle_dir)
    }

    /// Imports the CA exported into `bundle_dir` into a node's `data_dir`,
    /// and returns it. If `data_dir` already holds the same CA nothing is
    /// written; if it holds a different one, nothing is written and
    /// [`TransportError::CaConflict`] is returned (remove it first, and the
    /// node certificates it issued).
    pub fn import(bundle_dir: &Path, data_dir: &Path) -> Result<Self, TransportError> {
        let ca = Self::load(bundle_dir)?;
        ca.save_unless_conflicting(data_dir)?;
        Ok(ca)
    }

    fn save_unless_conflicting(&self, dir: &Path) -> Result<(), TransportError> {
        if present(dir)? {
            let existing = Self::load(dir)?;
            if existing.certificate.der == self.certificate.der {
                return Ok(());
            }
            return Err(TransportError::CaConflict {
                dir: dir.to_path_buf(),
            });
        }
        self.save(dir)
    }

    /// The CA certificate, for verifying peers.
    pub fn certificate(&self) -> &CaCertificate {
        &self.certificate
    }

    /// The CA private key in PKCS#8 PEM. A secret: whoever holds it can
    /// join the cluster.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a certificate for `node`, with a fresh ECDSA P-256 key.
    ///
    /// Its common name is the node name; its subject-alternative names are
    /// [`CLUSTER_SERVER_NAME`], the node name, then each of `sans` (an IP
    /// address if it parses as one, else a DNS name), without duplicates.
    /// It is valid for both TLS server and client authentication, since
    /// peers both accept and dial.
    pub fn issue_node_cert(
        &self,
        node: &NodeName,
        sans: &[String],
    ) -> Result<NodeCert, TransportError> {
        let mut names: Vec<String> = vec![CLUSTER_SERVER_NAME.to_owned(), node.to_string()];
        for san in sans {
            if !names.contains(san) {
                names.push(san.clone());
            }
        }
        let mut params =
            CertificateParams::new(names).map_err(|source| TransportError::Certificate {
                what: "use the subject-alternative names",
                source,
            })?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let key = new_key(
            self.seed.as_ref(),
            node.as_str().as_bytes(),
            "generate a node key",
        )?;
        let cert =
            params
                .signed_by(&key, &self.issuer)
                .map_err(|source| TransportError::Certificate {
                    what: "sign the node certificate",
                    source,
                })?;
        Ok(NodeCert {
            node: node.clone(),
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// A node's certificate and private key.
pub struct NodeCert {
    node: NodeName,
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

impl NodeCert {
    /// Builds a node certificate from its PEM certificate and PKCS#8 key;
    /// the node name is read from the certificate's common name.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TransportError> {
        Self::from_pem_at(cert_pem, key_pem, Path::new(""))
    }

    fn from_pem_at(cert_pem: &str, key_pem: &str, dir: &Path) -> Result<Self, TransportError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TransportError::Pem {
                path: dir.join(NODE_CERT_FILE),
                what: "a CERTIFICATE block",
                source,
            }
        })?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| {
            TransportError::Pem {
                path: dir.join(NODE_KEY_FILE),
                what: "a PKCS#8 PRIVATE KEY block",
                source,
            }
        })?;
        let node = node_name_from_certificate(&cert)?;
        let key_pair = KeyPair::try_from(&key).map_err(|source| TransportError::Certificate {
            what: "parse the node key",
            source,
        })?;
        let parsed = parse_certificate(&cert)?;
        if parsed.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(TransportError::BadCertificate {
                reason: format!("key in {} does not match its certificate", dir.display()),
            });
        }
        Ok(Self {
            node,
            cert,
            cert_pem: cert_pem.to_owned(),
            key,
            key_pem: key_pem.to_owned(),
        })
    }

    /// Loads `dir/node.pem` and `dir/node.key`.
    pub fn load(dir: &Path) -> Result<Self, TransportError> {
        let cert_pem = files::read_pem_file(&dir.join(NODE_CERT_FILE))?;
        let key_pem = files::read_pem_file(&dir.join(NODE_KEY_FILE))?;
        Self::from_pem_at(&cert_pem, &key_pem, dir)
    }

    /// Writes `dir/node.pem` (0644) and `dir/node.key` (0600), key first.
    pub fn save(&self, dir: &Path) -> Result<(), TransportError> {
        files::write_file_atomic(
            &dir.join(NODE_KEY_FILE),
            self.key_pem.as_bytes(),
            KEY_FILE_MODE,
        )?;
        files::write_file_atomic(
            &dir.join(NODE_CERT_FILE),
            self.cert_pem.as_bytes(),
            CERT_FILE_MODE,
        )
    }

    /// The dev default for a node that holds the CA: loads the node
    /// certificate in `dir` if it names `node` and was issued by `ca`;
    /// otherwise issues a new one and saves it (replacing a stale one, for
    /// instance after a shared CA was imported).
    pub fn load_or_issue(
        dir: &Path,
        ca: &ClusterCa,
        node: &NodeName,
        sans: &[String],
    ) -> Result<(Self, Provenance), TransportError> {
        if files::exists(&dir.join(NODE_CERT_FILE))? && files::exists(&dir.join(NODE_KEY_FILE))? {
            let existing = Self::load(dir)?;
            let issued = ca.certificate().verify_issued(&existing).is_ok();
            if issued && &existing.node == node {
                return Ok((existing, Provenance::Loaded));
            }
            tracing::info!(
                target: "meshgate::federation::transport",
                dir = %dir.display(),
                old_node = %existing.node,
                %node,
                issued_by_ca = issued,
                "replacing a stale node certificate"
            );
        }
        let cert = ca.issue_node_cert(node, sans)?;
        cert.save(dir)?;
        Ok((cert, Provenance::Created))
    }

    /// The node this certificate names.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The certificate in DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key in PKCS#8 PEM. A secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate chain and key, as rustls wants them.
    pub(crate) fn rustls_parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

impl Clone for NodeCert {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            cert: self.cert.clone(),
            cert_pem: self.cert_pem.clone(),
            key: self.key.clone_key(),
            key_pem: self.key_pem.clone(),
        }
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Reads the node name from a certificate's common name.
///
/// Called on a peer's certificate after rustls verified it against the
/// cluster CA, so the name is as trustworthy as the CA.
pub fn node_name_from_certificate(cert: &CertificateDer<'_>) -> Result<NodeName, TransportError> {
    let parsed = parse_certificate(cert)?;
    let mut names = parsed.subject().iter_common_name();
    let name = names
        .next()
        .ok_or_else(|| TransportError::BadCertificate {
            reason: "no common name".into(),
        })?
        .as_str()
        .map_err(|error| TransportError::BadCertificate {
            reason: format!("common name is not text: {error}"),
        })?;
    if names.next().is_some() {
        return Err(TransportError::BadCertificate {
            reason: "more than one common name".into(),
        });
    }
    NodeName::parse(name)
}

fn parse_certificate<'a>(
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, TransportError> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|error| {
        TransportError::BadCertificate {
            reason: format!("not an X.509 certificate: {error}"),
        }
    })?;
    if !rest.is_empty() {
        return Err(TransportError::BadCertificate {
            reason: "trailing bytes after the certificate".into(),
        });
    }
    Ok(parsed)
}

/// Whether a CA directory holds a CA: both files (true), neither (false),
/// or only one ([`TransportError::CaIncomplete`]).
fn present(dir: &Path) -> Result<bool, TransportError> {
    let cert = dir.join(CA_CERT_FILE);
    let key = dir.join(CA_KEY_FILE);
    match (files::exists(&cert)?, files::exists(&key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(incomplete(dir, key)),
        (false, true) => Err(incomplete(dir, cert)),
    }
}

fn incomplete(dir: &Path, missing: PathBuf) -> TransportError {
    TransportError::CaIncomplete {
        dir: dir.to_path_buf(),
        missing,
    }
}

/// A fresh random ECDSA P-256 key, or with `seed` the Ed25519 key derived
/// from it and `label`.
fn new_key(
    seed: Option<&[u8; 32]>,
    label: &[u8],
    what: &'static str,
) -> Result<KeyPair, TransportError> {
    let Some(seed) = seed else {
        return KeyPair::generate().map_err(|source| TransportError::Certificate { what, source });
    };
    // PKCS#8 v1 of an Ed25519 private key (RFC 8410): a fixed prefix, then
    // the 32-byte private key.
    const ED25519_PKCS8_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&derive_key_seed(seed, label));
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &rcgen::PKCS_ED25519)
        .map_err(|source| TransportError::Certificate { what, source })
}

/// SHA-256 of `seed` and `label`: 32 bytes of key material.
fn derive_key_seed(seed: &[u8], label: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(seed);
    context.update(label);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Validity of generated certificates: 2025-01-01 to 2125-01-01, fixed.
///
/// Generating a certificate must not read the wall clock (core code runs on
/// simulated time), and a dev CA that silently expires is worse than one
/// that does not. Production clusters bring their own CA through
/// [`ClusterCa::from_pem`] or [`ClusterCa::import`] with whatever policy
/// they need; node certificates issued by it still use this window.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_ca_issues_the_same_certificates_for_the_same_seed() {
        let node = NodeName::parse("use-1").expect("name");
        let issue = |seed| {
            let ca = ClusterCa::seeded(seed).expect("ca");
            let cert = ca.issue_node_cert(&node, &[]).expect("cert");
            (
                ca.certificate().der.to_vec(),
                cert.cert.to_vec(),
                cert.key_pem,
            )
        };
        assert_eq!(issue(7), issue(7));
        assert_ne!(issue(7).0, issue(8).0);
        assert_ne!(issue(7).1, issue(8).1);
    }
}
