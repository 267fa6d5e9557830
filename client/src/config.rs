//! How a [`crate::Client`] connects: seeds, trust, timeouts and retries.

use std::path::PathBuf;
use std::time::Duration;

use meshgate_federation::transport::TransportLimits;

/// Default client port of a gateway.
pub const DEFAULT_PORT: u16 = 7420;

/// Which gateway certificates the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Certificates issued by the cluster CA in this PEM file (a dev node
    /// keeps it in `<data-dir>/tls/ca.pem`).
    CaFile(PathBuf),
    /// Certificates issued by the cluster CA given as PEM text.
    CaPem(String),
    /// Any certificate. Encrypted but not authenticated: for development only.
    Insecure,
}

/// Bounded exponential backoff between attempts of one request.
///
/// Attempt `n` (from 0) waits `min(initial * 2^n, max)`, minus up to half of
/// it at random (jitter, so clients that failed together do not retry
/// together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one request in all, the first included. Default 8;
    /// 1 turns retries off; at most 100.
    pub attempts_max: u32,
    /// Pause before the first retry. Default 50 ms.
    pub backoff_initial: Duration,
    /// Longest pause between attempts. Default 2 s.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 8,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries: every request is attempted once.
    pub fn none() -> Self {
        Self {
            attempts_max: 1,
            ..Self::default()
        }
    }

    /// The pause before retry `retry` (0 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Everything a client is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Gateways to try, as `host:port` (a missing port means 7420), in order
    /// of preference. At least one; at most [`SEEDS_MAX`].
    pub seeds: Vec<String>,
    /// Which certificates to accept.
    pub trust: Trust,
    /// A name for this client in the gateway's logs. Default `meshgate-client`.
    pub client_id: String,
    /// How long one attempt of a request may take before it fails with
    /// [`crate::ClientError::Timeout`]. Long polls and group joins add their
    /// own wait to it. Default 30 s.
    pub request_timeout: Duration,
    /// How long connecting to one seed (QUIC and TLS handshake plus hello)
    /// may take. Default 5 s.
    pub connect_timeout: Duration,
    /// Retries on retriable errors and lost connections.
    pub retry: RetryPolicy,
    /// Largest response frame accepted, in bytes. Default 64 MiB (a fetch
    /// answers at most the node's `fetch_bytes_max`, 8 MiB by default).
    pub response_bytes_max: usize,
    /// QUIC limits of the connection.
    pub transport: TransportLimits,
    /// Seeds the client's random choices (idempotent producer ids, backoff
    /// jitter, round-robin starts). `None`: seeded from the OS.
    pub rng_seed: Option<u64>,
}

/// Most seeds a configuration may list.
pub const SEEDS_MAX: usize = 64;

impl ClientConfig {
    /// A configuration with defaults for `seeds` and `trust`.
    pub fn new(seeds: impl IntoIterator<Item = impl Into<String>>, trust: Trust) -> Self {
        Self {
            seeds: seeds.into_iter().map(Into::into).collect(),
            trust,
            client_id: "meshgate-client".into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            response_bytes_max: 64 << 20,
            transport: TransportLimits::default(),
            rng_seed: None,
        }
    }

    /// Sets the client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Checks every field against its documented limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.seeds.is_empty() {
            return Err("at least one seed address is needed".into());
        }
        if self.seeds.len() > SEEDS_MAX {
            return Err(format!(
                "at most {SEEDS_MAX} seeds, got {}",
                self.seeds.len()
            ));
        }
        if !(1..=100).contains(&self.retry.attempts_max) {
            return Err("retry.attempts_max must be in 1..=100".into());
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("timeouts must be above zero".into());
        }
        if self.response_bytes_max < 1024 {
            return Err("response_bytes_max must be at least 1 KiB".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(3), Duration::from_millis(400));
        assert_eq!(policy.backoff(10), Duration::from_secs(2));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn configurations_without_seeds_are_refused() {
        let config = ClientConfig::new(Vec::<String>::new(), Trust::Insecure);
        assert!(config.validate().is_err());
        let config = ClientConfig::new(["127.0.0.1:7420"], Trust::Insecure);
        assert!(config.validate().is_ok());
    }
}
