//! Gateway configuration: defaults < TOML file < `MESHGATE_*` environment
//! < command-line flags, layered with the `config` crate and validated on
//! load so a bad value stops start-up with the key and the problem.
//!
//! Environment variables name keys with `__` between levels:
//! `MESHGATE_REGION=eu-west`, `MESHGATE_LIMITS__FRAME_BYTES_MAX=1048576`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meshgate_federation::membership::MembershipConfig;
use meshgate_federation::transport::LinkConfig;
use meshgate_storage::{Durability, RegionId};

use crate::groups::GroupConfig;
use crate::mirror::MirrorConfig;
use serde::{Deserialize, Serialize};

/// Everything a gateway node is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// This node's id, unique in the cluster: a DNS label (1..=63 bytes of
    /// `a-z`, `0-9` and `-`, not starting or ending with `-`), since it is
    /// also the name in the node's certificate. Default: read from
    /// `<data_dir>/node-id`, made on first start as
    /// `<region>-<8 random hex digits>`.
    pub node_id: Option<String>,
    /// The region this node serves. Default `local`.
    pub region: String,
    /// Where logs, metadata and dev certificates live. Default `./data`.
    pub data_dir: PathBuf,
    /// Client listener (QUIC over UDP). Default `127.0.0.1:7420`.
    pub listen: SocketAddr,
    /// Admin HTTP listener (JSON, `/metrics`). Default `127.0.0.1:7421`.
    pub http_listen: SocketAddr,
    /// Gossip (SWIM membership) listener, UDP. Default `127.0.0.1:7422`.
    pub gossip_listen: SocketAddr,
    /// Peer listener for other gateways (QUIC with mutual TLS). Default
    /// `127.0.0.1:7423`.
    pub peer_listen: SocketAddr,
    /// Kafka wire-protocol listener (TCP), or none. Default none: a
    /// configuration file turns it on by setting it. `meshgate serve`
    /// without `--config` (the dev node) listens on `127.0.0.1:9092`
    /// unless told otherwise (`--kafka-listen ADDR|off`).
    pub kafka_listen: Option<SocketAddr>,
    /// Kafka listener settings; see `kafka::KafkaConfig`.
    pub kafka: crate::kafka::KafkaConfig,
    /// Gossip addresses (`host:port`) of gateways to join through. Default
    /// none: the node starts a cluster of its own that others join.
    pub seeds: Vec<String>,
    /// Name or IP that other gateways and clients use to reach this node,
    /// needed when it listens on a wildcard address such as `0.0.0.0`
    /// (resolved at start). Default: the listen address's IP.
    pub advertise_host: Option<String>,
    /// Failure detection and gossip (SWIM); see `MembershipConfig`.
    pub membership: MembershipConfig,
    /// Reconnection of peer links; see `LinkConfig`.
    pub links: LinkConfig,
    /// Certificates. Default: a development CA and node certificate made on
    /// first start in `<data_dir>/tls/`.
    pub tls: TlsSettings,
    /// Settings of topics created without explicit ones.
    pub topic_defaults: TopicDefaults,
    /// Limits on what clients may ask for.
    pub limits: Limits,
    /// Consumer-group timing and limits.
    pub groups: GroupConfig,
    /// Cross-region mirroring.
    pub mirror: MirrorConfig,
    /// Dispatch queues: flush policy, hot-record cache, rules; see
    /// `queues::QueuesConfig`.
    pub queues: crate::queues::QueuesConfig,
    /// How often retention runs, in milliseconds. Default 60 000; 1 000..=86 400 000.
    pub retention_check_ms: u64,
    /// How long a graceful shutdown waits for in-flight requests, in
    /// milliseconds. Default 10 000; at most 600 000.
    pub shutdown_grace_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            region: "local".into(),
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7421)),
            gossip_listen: SocketAddr::from(([127, 0, 0, 1], 7422)),
            peer_listen: SocketAddr::from(([127, 0, 0, 1], 7423)),
            kafka_listen: None,
            kafka: crate::kafka::KafkaConfig::default(),
            seeds: Vec::new(),
            advertise_host: None,
            membership: MembershipConfig::default(),
            links: LinkConfig::default(),
            tls: TlsSettings::default(),
            topic_defaults: TopicDefaults::default(),
            limits: Limits::default(),
            groups: GroupConfig::default(),
            mirror: MirrorConfig::default(),
            queues: crate::queues::QueuesConfig::default(),
            retention_check_ms: 60_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Certificate files. Either all three are set, or none (development
/// certificates are then generated).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster CA certificate (PEM) that signs every node certificate.
    pub ca_cert: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster CA.
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
}

/// Settings of new topics that do not say otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    /// Partitions of a new topic. Default 3; 1..=1024.
    pub partitions: u32,
    /// `every-batch`, `<n>ms` (fsync at most every n ms, acknowledge after
    /// it) or `never`. Default `5ms`.
    pub durability: String,
    /// Bytes kept per partition. Default: no limit.
    pub retention_bytes: Option<u64>,
    /// Age after which data is deleted, in milliseconds. Default 7 days.
    pub retention_ms: Option<u64>,
    /// Segment size in bytes. Default 128 MiB; 4 KiB..=2 GiB.
    pub segment_bytes: u64,
    /// Create a topic with these defaults when a producer writes to an
    /// unknown one. Default false.
    pub auto_create: bool,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            partitions: 3,
            durability: "5ms".into(),
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            segment_bytes: 128 << 20,
            auto_create: false,
        }
    }
}

/// Limits on clients. Each bounds memory or work per connection or node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request frame, in bytes. Default 16 MiB; 1 KiB..=64 MiB.
    pub frame_bytes_max: u32,
    /// Largest single record (key + value + headers), in bytes. Default
    /// 1 MiB; at most `frame_bytes_max`.
    pub record_bytes_max: u32,
    /// Client connections at once. Default 1024.
    pub connections_max: u32,
    /// Requests in flight per connection (QUIC streams). Default 256.
    pub streams_per_connection_max: u32,
    /// Bytes of produce requests being appended or awaiting durability, for
    /// the whole node; past it producers wait, then get `Busy`. Default 256 MiB.
    pub produce_in_flight_bytes_max: u64,
    /// How long a producer waits for room before `Busy`, in ms. Default 5 000.
    pub produce_wait_ms_max: u64,
    /// Most bytes a fetch returns. Default 8 MiB.
    pub fetch_bytes_max: u32,
    /// Longest long-poll wait, in ms. Default 30 000.
    pub long_poll_ms_max: u32,
    /// Topics on the node. Default 10 000.
    pub topics_max: u32,
    /// Idempotent producers remembered for de-duplication. Default 100 000
    /// (about 200 bytes each).
    pub producers_max: u64,
    /// Forget an idempotent producer after this many ms without writes.
    /// Default 900 000 (15 min).
    pub producer_idle_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frame_bytes_max: 16 << 20,
            record_bytes_max: 1 << 20,
            connections_max: 1024,
            streams_per_connection_max: 256,
            produce_in_flight_bytes_max: 256 << 20,
            produce_wait_ms_max: 5_000,
            fetch_bytes_max: 8 << 20,
            long_poll_ms_max: 30_000,
            topics_max: 10_000,
            producers_max: 100_000,
            producer_idle_ms: 900_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed; nothing is started.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A layer could not be merged or a value has the wrong type.
    #[error("configuration: {0}")]
    Layer(String),
    /// A value is outside its limits.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// The key, dotted (`limits.frame_bytes_max`).
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Command-line flags that override every other layer, as (key, value);
/// build values with `config::Value::from` (strings, lists of strings).
pub type Overrides = Vec<(&'static str, config::Value)>;

/// Builds the configuration from the layers. `environment` is the process
/// environment (passed in so tests control it); only `MESHGATE_*` variables
/// naming a configuration key are used.
pub fn load(
    file: Option<&Path>,
    environment: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<GatewayConfig, ConfigError> {
    let layer = |error: config::ConfigError| ConfigError::Layer(error.to_string());
    let defaults = config::Config::try_from(&GatewayConfig::default()).map_err(layer)?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        // Parsed on its own first, so a typo is reported against the file.
        toml::from_str::<GatewayConfig>(&text).map_err(|error| ConfigError::File {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let known = known_top_level_keys();
    let variables: config::Map<String, String> = environment
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix("MESHGATE_")
                .map(|rest| {
                    rest.split("__")
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                })
                .is_some_and(|key| known.contains(&key))
        })
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("MESHGATE")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(variables)),
    );
    for (key, value) in overrides {
        builder = builder.set_override(*key, value.clone()).map_err(layer)?;
    }
    let merged = builder.build().map_err(layer)?;
    let config: GatewayConfig = merged.try_deserialize().map_err(layer)?;
    config.validate()?;
    Ok(config)
}

fn known_top_level_keys() -> Vec<String> {
    match toml::Value::try_from(GatewayConfig::default()) {
        Ok(toml::Value::Table(table)) => {
            let mut keys: Vec<String> = table.keys().cloned().collect();
            keys.extend(["node_id".to_string(), "kafka_listen".to_string()]);
            keys
        }
        _ => Vec::new(),
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

fn within(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, format!("{value} is outside {min}..={max}")))
    }
}

impl GatewayConfig {
    /// Moves every listener to a port the system picks, on the same
    /// address: for tests, examples and benchmarks that start gateways side
    /// by side.
    pub fn use_ephemeral_ports(&mut self) {
        for address in [
            &mut self.listen,
            &mut self.http_listen,
            &mut self.gossip_listen,
            &mut self.peer_listen,
        ] {
            address.set_port(0);
        }
        if let Some(kafka) = &mut self.kafka_listen {
            kafka.set_port(0);
        }
    }

    /// Checks every value against its limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        RegionId::parse(&self.region).map_err(|error| invalid("region", error.to_string()))?;
        if let Some(node_id) = &self.node_id {
            meshgate_federation::transport::NodeName::parse(node_id)
                .map_err(|error| invalid("node_id", error.to_string()))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let tls = &self.tls;
        let set = [&tls.ca_cert, &tls.cert, &tls.key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if set != 0 && set != 3 {
            return Err(invalid("tls", "set all of ca_cert, cert and key, or none"));
        }
        let topics = &self.topic_defaults;
        within(
            "topic_defaults.partitions",
            topics.partitions.into(),
            1,
            1024,
        )?;
        within(
            "topic_defaults.segment_bytes",
            topics.segment_bytes,
            4 << 10,
            2 << 30,
        )?;
        Durability::parse(&topics.durability)
            .map_err(|error| invalid("topic_defaults.durability", error.to_string()))?;
        let limits = &self.limits;
        within(
            "limits.frame_bytes_max",
            limits.frame_bytes_max.into(),
            1 << 10,
            64 << 20,
        )?;
        within(
            "limits.record_bytes_max",
            limits.record_bytes_max.into(),
            1,
            limits.frame_bytes_max.into(),
        )?;
        within(
            "limits.connections_max",
            limits.connections_max.into(),
            1,
            1_000_000,
        )?;
        within(
            "limits.streams_per_connection_max",
            limits.streams_per_connection_max.into(),
            1,
            65_536,
        )?;
        within(
            "limits.produce_in_flight_bytes_max",
            limits.produce_in_flight_bytes_max,
            limits.frame_bytes_max.into(),
            1 << 40,
        )?;
        within(
            "limits.produce_wait_ms_max",
            limits.produce_wait_ms_max,
            0,
            600_000,
        )?;
        within(
            "limits.fetch_bytes_max",
            limits.fetch_bytes_max.into(),
            1 << 10,
            64 << 20,
        )?;
        within(
            "limits.long_poll_ms_max",
            limits.long_poll_ms_max.into(),
            0,
            600_000,
        )?;
        within("limits.topics_max", limits.topics_max.into(), 1, 1_000_000)?;
        within("limits.producers_max", limits.producers_max, 1, 100_000_000)?;
        within(
            "limits.producer_idle_ms",
            limits.producer_idle_ms,
            1_000,
            7 * 24 * 3600 * 1000,
        )?;
        within(
            "retention_check_ms",
            self.retention_check_ms,
            1_000,
            86_400_000,
        )?;
        within("shutdown_grace_ms", self.shutdown_grace_ms, 0, 600_000)?;
        if self.seeds.len() > 64 {
            return Err(invalid("seeds", "at most 64 seeds"));
        }
        if let Some(seed) = self.seeds.iter().find(|s| {
            s.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return Err(invalid("seeds", format!("{seed:?} is not host:port")));
        }
        self.mirror
            .validate()
            .map_err(|problem| invalid("mirror", problem))?;
        self.queues
            .validate()
            .map_err(|problem| invalid("queues", problem))?;
        self.groups
            .validate()
            .map_err(|error| invalid("groups", error.to_string()))?;
        self.kafka
            .validate()
            .map_err(|problem| invalid("kafka", problem))?;
        self.membership
            .validate()
            .map_err(|error| invalid("membership", error.to_string()))?;
        self.links
            .validate()
            .map_err(|error| invalid("links", error.to_string()))?;
        Ok(())
    }

    /// The default durability policy, parsed (validated on load).
    pub fn default_durability(&self) -> Durability {
        Durability::parse(&self.topic_defaults.durability).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = load(None, env(&[]), &Vec::new()).expect("defaults are valid");
        assert_eq!(config, GatewayConfig::default());
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "region = \"eu-west\"\ndata_dir = \"/from/file\"\n[limits]\nframe_bytes_max = 2097152\n",
        )
        .expect("writes");
        let config = load(
            Some(&path),
            env(&[
                ("MESHGATE_DATA_DIR", "/from/env"),
                ("MESHGATE_LIMITS__FETCH_BYTES_MAX", "4096"),
                ("MESHGATE_SERVER", "ignored-client-setting:1"),
            ]),
            &vec![("data_dir", "/from/flag".into())],
        )
        .expect("valid");
        assert_eq!(config.region, "eu-west");
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.limits.frame_bytes_max, 2097152);
        assert_eq!(config.limits.fetch_bytes_max, 4096);
    }

    #[test]
    fn a_typo_in_the_file_names_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "regoin = \"eu-west\"\n").expect("writes");
        let error = load(Some(&path), env(&[]), &Vec::new()).expect_err("typo");
        let text = error.to_string();
        assert!(text.contains("regoin"), "{text}");
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_problem() {
        let error = load(
            None,
            env(&[("MESHGATE_LIMITS__FRAME_BYTES_MAX", "12")]),
            &Vec::new(),
        )
        .expect_err("too small");
        match error {
            ConfigError::Invalid { key, problem } => {
                assert_eq!(key, "limits.frame_bytes_max");
                assert!(problem.contains("12"), "{problem}");
            }
            other => panic!("expected Invalid, got {other}"),
        }
        let error = load(None, env(&[]), &vec![("region", "no spaces".into())]).expect_err("bad");
        assert!(
            matches!(error, ConfigError::Invalid { key: "region", .. }),
            "{error}"
        );
        let error = load(
            None,
            env(&[("MESHGATE_TOPIC_DEFAULTS__DURABILITY", "sometimes")]),
            &Vec::new(),
        )
        .expect_err("bad policy");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    key: "topic_defaults.durability",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn the_kafka_listener_is_off_unless_a_layer_sets_it() {
        let config = load(None, env(&[]), &Vec::new()).expect("defaults");
        assert_eq!(config.kafka_listen, None);
        let config = load(
            None,
            env(&[("MESHGATE_KAFKA_LISTEN", "127.0.0.1:19092")]),
            &Vec::new(),
        )
        .expect("valid");
        assert_eq!(
            config.kafka_listen,
            Some("127.0.0.1:19092".parse().expect("addr"))
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "kafka_listen = \"0.0.0.0:9092\"\n[kafka]\nconnection_idle_ms = 5000\n",
        )
        .expect("writes");
        let config = load(Some(&path), env(&[]), &Vec::new()).expect("valid");
        assert_eq!(
            config.kafka_listen,
            Some("0.0.0.0:9092".parse().expect("addr"))
        );
        assert_eq!(config.kafka.connection_idle_ms, 5000);
    }

    #[test]
    fn a_missing_file_is_reported_with_its_path() {
        let error = load(
            Some(Path::new("/nonexistent/meshgate.toml")),
            env(&[]),
            &Vec::new(),
        )
        .expect_err("missing");
        assert!(
            error.to_string().contains("/nonexistent/meshgate.toml"),
            "{error}"
        );
    }
}
