//! The node's certificates: the configured files, or development ones made
//! on first start in `<data_dir>/tls/` (a cluster CA and a node certificate
//! it signs).

use std::path::Path;

use meshgate_federation::transport::{
    CaCertificate, ClusterCa, NodeCert, NodeName, TransportError,
};

use crate::config::GatewayConfig;

/// The cluster CA certificate and this node's certificate.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// The CA that signs every node certificate of the cluster.
    pub ca: CaCertificate,
    /// This node's certificate and key.
    pub node: NodeCert,
}

/// Loads the configured certificates, or makes development ones.
pub fn load(config: &GatewayConfig, node_id: &str) -> Result<NodeTls, TransportError> {
    let node_name = NodeName::parse(node_id)?;
    match (&config.tls.ca_cert, &config.tls.cert, &config.tls.key) {
        (Some(ca), Some(cert), Some(key)) => {
            let ca = CaCertificate::from_pem_file(ca)?;
            let node = NodeCert::from_pem(&read(cert)?, &read(key)?)?;
            ca.verify_issued(&node)?;
            Ok(NodeTls { ca, node })
        }
        _ => {
            let dir = config.data_dir.join("tls");
            let (ca, _) = ClusterCa::load_or_generate(&dir)?;
            let sans = vec![config.listen.ip().to_string(), "localhost".to_string()];
            let (node, _) = NodeCert::load_or_issue(&dir, &ca, &node_name, &sans)?;
            Ok(NodeTls {
                ca: ca.certificate().clone(),
                node,
            })
        }
    }
}

fn read(path: &Path) -> Result<String, TransportError> {
    std::fs::read_to_string(path).map_err(|source| TransportError::Io {
        path: path.to_path_buf(),
        source,
    })
}
