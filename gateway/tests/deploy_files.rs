//! The deployment files in deploy/ hold what they claim: the region
//! configurations load, the Kubernetes manifests parse and describe one
//! region completely, the compose file names three regions with their own
//! volumes, and the systemd unit passes `systemd-analyze verify` where it runs.

use std::path::{Path, PathBuf};

use meshgate_gateway::config;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn every_region_configuration_loads_and_names_the_other_regions_as_seeds() {
    for region in ["us-east", "eu-west", "ap-south"] {
        let path = deploy().join("config").join(format!("{region}.toml"));
        let loaded = config::load(Some(&path), Vec::new(), &Vec::new())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(loaded.region, region);
        assert_eq!(loaded.advertise_host.as_deref(), Some(region));
        assert_eq!(loaded.seeds.len(), 2, "{region} seeds the two others");
        assert!(!loaded.seeds.iter().any(|seed| seed.starts_with(region)));
        assert!(
            loaded.tls.ca_cert.is_some() && loaded.tls.cert.is_some() && loaded.tls.key.is_some()
        );
    }
}

fn documents(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn kubernetes_manifests_describe_one_region_completely() {
    let docs = documents(&deploy().join("k8s/meshgate.yaml"));
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    for doc in &docs {
        assert!(
            doc["apiVersion"].as_str().is_some(),
            "every document has an apiVersion"
        );
        assert!(
            doc["metadata"]["name"].as_str().is_some(),
            "every document has a name"
        );
    }
    let service = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Service"))
        .expect("service");
    assert_eq!(
        service["spec"]["clusterIP"].as_str(),
        Some("None"),
        "headless"
    );
    let set = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .expect("statefulset");
    assert_eq!(set["spec"]["serviceName"].as_str(), Some("meshgate"));
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_vec()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(mounts.contains(&"/data"), "data on a persistent volume");
    assert!(
        set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .is_some()
    );
    // The configuration embedded in the ConfigMap loads.
    let map = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .expect("configmap");
    let toml = map["data"]["meshgate.toml"]
        .as_str()
        .expect("embedded configuration");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("meshgate.toml");
    std::fs::write(&path, toml).expect("writes");
    config::load(Some(&path), Vec::new(), &Vec::new())
        .expect("the embedded configuration is valid");
}

#[test]
fn the_compose_file_runs_three_regions_each_with_its_own_volume() {
    let docs = documents(&deploy().join("compose/docker-compose.yml"));
    let services = docs[0]["services"].as_hash().expect("services");
    let mut volumes = Vec::new();
    for region in ["us-east", "eu-west", "ap-south"] {
        let service = &docs[0]["services"][region];
        assert!(!service.is_badvalue(), "{region} service");
        let mounts: Vec<String> = service["volumes"]
            .as_vec()
            .expect("volumes")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let data = mounts
            .iter()
            .find(|m| m.ends_with(":/data"))
            .expect("a data volume");
        volumes.push(data.clone());
        assert!(
            mounts
                .iter()
                .any(|m| m.contains(&format!("config/{region}.toml"))),
            "{region} config"
        );
    }
    volumes.dedup();
    assert_eq!(volumes.len(), 3, "one volume per region");
    assert_eq!(services.len(), 3);
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed; unit not verified");
        return;
    };
    assert!(output.status.success());
    let unit = std::fs::read_to_string(deploy().join("systemd/meshgate.service")).expect("unit");
    // Verify against the binary this test was built with.
    let unit = unit.replace("/usr/local/bin/meshgate", env!("CARGO_BIN_EXE_meshgate"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("meshgate.service");
    std::fs::write(&path, unit).expect("writes");
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    // Without a running systemd (containers) verify may fail to connect;
    // only complaints about the unit itself count.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("meshgate.service") && !l.contains("Failed to connect"))
        .collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify: {stderr}");
}
