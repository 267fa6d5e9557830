//! The cluster CA and node certificates on disk: round trips, the dev
//! default, sharing one CA between dev nodes, and refusals.

use std::fs;
use std::path::Path;

use meshgate_federation::transport::{
    CA_CERT_FILE, CA_KEY_FILE, CLUSTER_SERVER_NAME, CaCertificate, ClusterCa, NODE_CERT_FILE,
    NODE_KEY_FILE, NodeCert, NodeName, Provenance, TransportError,
};
use x509_parser::extensions::GeneralName;

fn node(name: &str) -> NodeName {
    NodeName::parse(name).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_saved_then_loaded_is_the_same_ca_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate().unwrap();
    ca.save(dir.path()).unwrap();

    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.certificate(), ca.certificate());
    assert_eq!(loaded.key_pem(), ca.key_pem());
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(CA_CERT_FILE)), 0o644);
    }
    // A loaded CA still issues certificates that verify against the original.
    let cert = loaded.issue_node_cert(&node("a"), &[]).unwrap();
    ca.certificate().verify_issued(&cert).unwrap();
}

#[test]
fn load_or_generate_creates_the_ca_once_then_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let (first, provenance) = ClusterCa::load_or_generate(dir.path()).unwrap();
    assert_eq!(provenance, Provenance::Created);
    assert!(dir.path().join(CA_CERT_FILE).exists());
    assert!(dir.path().join(CA_KEY_FILE).exists());

    let (second, provenance) = ClusterCa::load_or_generate(dir.path()).unwrap();
    assert_eq!(provenance, Provenance::Loaded);
    assert_eq!(second.certificate(), first.certificate());
}

#[test]
fn exported_ca_imported_by_another_node_issues_certs_both_trust() {
    let node_a_dir = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let node_b_dir = tempfile::tempdir().unwrap();
    let (ca_a, _) = ClusterCa::load_or_generate(node_a_dir.path()).unwrap();
    ca_a.export(bundle.path()).unwrap();
    // Exporting the same CA again is harmless.
    ca_a.export(bundle.path()).unwrap();

    let ca_b = ClusterCa::import(bundle.path(), node_b_dir.path()).unwrap();
    assert_eq!(ca_b.certificate(), ca_a.certificate());
    #[cfg(unix)]
    assert_eq!(mode(&node_b_dir.path().join(CA_KEY_FILE)), 0o600);
    // Importing again into the same place is a no-op.
    ClusterCa::import(bundle.path(), node_b_dir.path()).unwrap();
    // After import, the dev default loads the shared CA instead of making one.
    let (reloaded, provenance) = ClusterCa::load_or_generate(node_b_dir.path()).unwrap();
    assert_eq!(provenance, Provenance::Loaded);
    assert_eq!(reloaded.certificate(), ca_a.certificate());

    let cert_b = ca_b.issue_node_cert(&node("b"), &[]).unwrap();
    ca_a.certificate().verify_issued(&cert_b).unwrap();
    // A client only needs the exported certificate file.
    let trusted = CaCertificate::from_pem_file(&bundle.path().join(CA_CERT_FILE)).unwrap();
    trusted.verify_issued(&cert_b).unwrap();
}

#[test]
fn import_never_replaces_a_different_ca() {
    let data = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let (existing, _) = ClusterCa::load_or_generate(data.path()).unwrap();
    ClusterCa::generate()
        .unwrap()
        .export(bundle.path())
        .unwrap();
    let before = fs::read(data.path().join(CA_KEY_FILE)).unwrap();

    let error = ClusterCa::import(bundle.path(), data.path()).unwrap_err();
    assert!(
        matches!(error, TransportError::CaConflict { .. }),
        "{error}"
    );
    assert_eq!(fs::read(data.path().join(CA_KEY_FILE)).unwrap(), before);
    let kept = ClusterCa::load(data.path()).unwrap();
    assert_eq!(kept.certificate(), existing.certificate());
}

#[test]
fn half_present_ca_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    ClusterCa::generate().unwrap().save(dir.path()).unwrap();
    fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
    let certificate_before = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();

    let error = ClusterCa::load_or_generate(dir.path()).unwrap_err();
    assert!(
        matches!(&error, TransportError::CaIncomplete { missing, .. } if missing.ends_with(CA_KEY_FILE)),
        "{error}"
    );
    assert!(!dir.path().join(CA_KEY_FILE).exists());
    assert_eq!(
        fs::read(dir.path().join(CA_CERT_FILE)).unwrap(),
        certificate_before
    );
}

#[test]
fn ca_with_another_cas_key_is_refused() {
    let one = ClusterCa::generate().unwrap();
    let other = ClusterCa::generate().unwrap();
    let error = ClusterCa::from_pem(one.certificate().pem(), &other.key_pem()).unwrap_err();
    assert!(
        matches!(error, TransportError::CaKeyMismatch { .. }),
        "{error}"
    );
}

#[test]
fn node_cert_names_its_node_and_the_cluster_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let sans = vec!["gw1.example.com".to_owned(), "10.1.2.3".to_owned()];
    let cert = ca.issue_node_cert(&node("us-east-1"), &sans).unwrap();
    cert.save(dir.path()).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join(NODE_KEY_FILE)), 0o600);

    let loaded = NodeCert::load(dir.path()).unwrap();
    assert_eq!(loaded.node(), &node("us-east-1"));
    assert_eq!(loaded.certificate_der(), cert.certificate_der());
    ca.certificate().verify_issued(&loaded).unwrap();

    let (_, parsed) = x509_parser::parse_x509_certificate(loaded.certificate_der()).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            CLUSTER_SERVER_NAME.to_owned(),
            "us-east-1".to_owned(),
            "gw1.example.com".to_owned(),
            "ip:[10, 1, 2, 3]".to_owned(),
        ]
    );
}

#[test]
fn load_or_issue_reissues_a_node_cert_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = ClusterCa::generate().unwrap();
    let (old, provenance) = NodeCert::load_or_issue(dir.path(), &old_ca, &node("a"), &[]).unwrap();
    assert_eq!(provenance, Provenance::Created);
    let (same, provenance) = NodeCert::load_or_issue(dir.path(), &old_ca, &node("a"), &[]).unwrap();
    assert_eq!(provenance, Provenance::Loaded);
    assert_eq!(same.certificate_der(), old.certificate_der());

    let shared_ca = ClusterCa::generate().unwrap();
    let (new, provenance) =
        NodeCert::load_or_issue(dir.path(), &shared_ca, &node("a"), &[]).unwrap();
    assert_eq!(provenance, Provenance::Created);
    shared_ca.certificate().verify_issued(&new).unwrap();
    let error = shared_ca.certificate().verify_issued(&old).unwrap_err();
    assert!(
        matches!(error, TransportError::NotIssuedByCa { .. }),
        "{error}"
    );
    assert_eq!(
        NodeCert::load(dir.path()).unwrap().certificate_der(),
        new.certificate_der()
    );
    assert!(dir.path().join(NODE_CERT_FILE).exists());
}

#[test]
fn a_node_certificate_is_not_accepted_as_a_ca() {
    let ca = ClusterCa::generate().unwrap();
    let cert = ca.issue_node_cert(&node("a"), &[]).unwrap();
    let error = CaCertificate::from_pem(cert.cert_pem()).unwrap_err();
    assert!(
        matches!(error, TransportError::BadCertificate { .. }),
        "{error}"
    );
}
