//! Shared helpers of the black-box tests: real gateways on 127.0.0.1 port 0
//! with temporary data directories, and clients that trust them.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use meshgate_client::{Client, ClientConfig, RetryPolicy, TopicSettings, Trust};
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;
use meshgate_storage::Durability;

/// A dev configuration on free loopback ports, data in `dir`.
pub(crate) fn config(dir: &Path) -> GatewayConfig {
    let mut config = GatewayConfig {
        data_dir: dir.to_path_buf(),
        ..GatewayConfig::default()
    };
    config.use_ephemeral_ports();
    config
}

/// Starts a gateway with data in `dir`.
pub(crate) async fn start(dir: &Path) -> Gateway {
    Gateway::start(config(dir)).await.expect("gateway starts")
}

/// A client configuration that trusts `gateway`'s CA, with short timeouts
/// so a failing test fails fast.
pub(crate) fn client_config(gateway: &Gateway) -> ClientConfig {
    let mut config = ClientConfig::new(
        [gateway.client_address().to_string()],
        Trust::CaPem(gateway.ca_pem().to_string()),
    )
    .client_id("test");
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        attempts_max: 5,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    config.rng_seed = Some(7);
    config
}

/// A client connected to `gateway`.
pub(crate) async fn client(gateway: &Gateway) -> Client {
    Client::connect(client_config(gateway))
        .await
        .expect("client connects")
}

/// Settings of a test topic: `partitions`, fsync every batch (fast on tmpfs
/// and exact).
pub(crate) fn topic(partitions: u32) -> TopicSettings {
    TopicSettings {
        partitions,
        durability: Some(Durability::IntervalMs(1)),
        ..TopicSettings::default()
    }
}

/// Runs `future` with a bound, so a hang fails the test instead of CI.
pub(crate) async fn bounded<T>(seconds: u64, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), future)
        .await
        .expect("finished in time")
}
