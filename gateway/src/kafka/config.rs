//! Settings of the Kafka listener (`[kafka]` in the configuration file).
//! Where it listens is the top-level `kafka_listen`; frame size and
//! connection count limits are shared with the native listener
//! (`limits.frame_bytes_max`, `limits.connections_max`).

use serde::{Deserialize, Serialize};

/// The Kafka listener's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Most bytes one produced batch may decompress to; a larger one is
    /// refused with MESSAGE_TOO_LARGE. Bounds the memory a small
    /// compressed request can claim. Default 32 MiB; 64 KiB..=256 MiB.
    pub decompressed_bytes_max: u32,
    /// Close a connection that sends no request for this long, in
    /// milliseconds (Kafka's `connections.max.idle.ms`). Default 600 000;
    /// 1 000..=86 400 000.
    pub connection_idle_ms: u64,
    /// Most failover filters kept (see `kafka::failover`); the oldest is
    /// dropped past it, which can only cause a redelivery. Default 10 000
    /// (about 300 bytes each plus the group's vector); 1..=1 000 000.
    pub failover_filters_max: u32,
    /// Forget a failover filter that no fetch used for this long, in
    /// milliseconds. Default 600 000; 1 000..=86 400 000.
    pub failover_filter_idle_ms: u64,
    /// Cluster id Kafka clients see. Default: `meshgate-<region>`.
    pub cluster_id: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            decompressed_bytes_max: 32 << 20,
            connection_idle_ms: 600_000,
            failover_filters_max: 10_000,
            failover_filter_idle_ms: 600_000,
            cluster_id: None,
        }
    }
}

impl KafkaConfig {
    /// Checks every field against its limits; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let within = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{field}: {value} is outside {min}..={max}"))
            }
        };
        within(
            "decompressed_bytes_max",
            self.decompressed_bytes_max.into(),
            64 << 10,
            256 << 20,
        )?;
        within(
            "connection_idle_ms",
            self.connection_idle_ms,
            1_000,
            86_400_000,
        )?;
        within(
            "failover_filters_max",
            self.failover_filters_max.into(),
            1,
            1_000_000,
        )?;
        within(
            "failover_filter_idle_ms",
            self.failover_filter_idle_ms,
            1_000,
            86_400_000,
        )?;
        if let Some(id) = &self.cluster_id
            && (id.is_empty() || id.len() > 255)
        {
            return Err("cluster_id: 1..=255 bytes".into());
        }
        Ok(())
    }
}
