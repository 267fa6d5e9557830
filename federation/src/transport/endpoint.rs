//! The one QUIC endpoint constructor, its production helper, and the
//! transport limits every connection runs with.
//!
//! Production and simulation build endpoints the same way (DESIGN.md, "The
//! QUIC seam"): [`new_endpoint`] takes an abstract UDP socket and runtime and
//! always calls [`quinn::Endpoint::new_with_abstract_socket`]. Production
//! passes a bound std socket wrapped by [`quinn::default_runtime`] (see
//! [`bind_endpoint`]); simulation passes a
//! [`super::TurmoilUdpSocket`] and [`quinn::TokioRuntime`], whose `now()`
//! reads tokio's clock, which turmoil pauses and advances.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{AsyncUdpSocket, Endpoint, EndpointConfig, Runtime, ServerConfig, VarInt};
use serde::{Deserialize, Serialize};

use super::error::TransportError;
use super::node_name::NodeName;

/// Limits every QUIC connection runs with, on both sides.
///
/// The defaults suit gateways across regions (WAN round trips of up to a few
/// hundred milliseconds). Memory per connection is bounded by
/// `connection_receive_window_bytes` (received, unread data) plus
/// `send_window_bytes` (sent, unacknowledged data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportLimits {
    /// A connection with no packet received for this long is closed, in
    /// milliseconds. Default 30 000; 1 ..= 600 000. Both sides announce
    /// theirs and the smaller one applies.
    pub idle_timeout_ms: u64,
    /// A ping is sent after this long without sending, so an idle but
    /// healthy connection stays open, in milliseconds. Default 5 000; 0
    /// turns keep-alives off; otherwise below `idle_timeout_ms` (at most
    /// half of it leaves room for one lost ping).
    pub keep_alive_interval_ms: u64,
    /// Bidirectional streams the remote may have open at once. Default 256;
    /// 0 ..= 65 536.
    pub bidi_streams_max: u32,
    /// Unidirectional streams the remote may have open at once. Default
    /// 256; 1 ..= 65 536 (peer links use one for their hello).
    pub uni_streams_max: u32,
    /// Unread bytes buffered per receiving stream (flow-control window), in
    /// bytes. Default 1 MiB; 1 KiB ..= `connection_receive_window_bytes`.
    pub stream_receive_window_bytes: u32,
    /// Unread bytes buffered per connection over all streams, in bytes.
    /// Default 8 MiB; at least `stream_receive_window_bytes`, at most 1 GiB.
    pub connection_receive_window_bytes: u32,
    /// Sent but unacknowledged bytes per connection, in bytes. Default
    /// 8 MiB; 1 KiB ..= 1 GiB.
    pub send_window_bytes: u64,
    /// Incoming connection attempts an endpoint holds before accepting or
    /// refusing them. Default 256; 1 ..= 65 536. Further attempts are
    /// refused by quinn.
    pub incoming_max: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30_000,
            keep_alive_interval_ms: 5_000,
            bidi_streams_max: 256,
            uni_streams_max: 256,
            stream_receive_window_bytes: 1024 * 1024,
            connection_receive_window_bytes: 8 * 1024 * 1024,
            send_window_bytes: 8 * 1024 * 1024,
            incoming_max: 256,
        }
    }
}

/// Upper bound of the stream-count limits.
const STREAMS_MAX: u32 = 65_536;
/// Lower bound of the window limits, in bytes.
const WINDOW_BYTES_MIN: u64 = 1024;
/// Upper bound of the window limits, in bytes.
const WINDOW_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Upper bound of the idle timeout, in milliseconds.
const IDLE_TIMEOUT_MS_MAX: u64 = 600_000;

impl TransportLimits {
    /// Checks every limit against its documented range.
    pub fn validate(&self) -> Result<(), TransportError> {
        let fail = |reason: String| Err(TransportError::InvalidLimits { reason });
        if !(1..=IDLE_TIMEOUT_MS_MAX).contains(&self.idle_timeout_ms) {
            return fail(format!(
                "idle_timeout_ms {} not in 1..={IDLE_TIMEOUT_MS_MAX}",
                self.idle_timeout_ms
            ));
        }
        if self.keep_alive_interval_ms >= self.idle_timeout_ms {
            return fail(format!(
                "keep_alive_interval_ms {} must be below idle_timeout_ms {}",
                self.keep_alive_interval_ms, self.idle_timeout_ms
            ));
        }
        if self.bidi_streams_max > STREAMS_MAX {
            return fail(format!("bidi_streams_max above {STREAMS_MAX}"));
        }
        if !(1..=STREAMS_MAX).contains(&self.uni_streams_max) {
            return fail(format!("uni_streams_max not in 1..={STREAMS_MAX}"));
        }
        if !(1..=STREAMS_MAX).contains(&self.incoming_max) {
            return fail(format!("incoming_max not in 1..={STREAMS_MAX}"));
        }
        let stream = u64::from(self.stream_receive_window_bytes);
        let connection = u64::from(self.connection_receive_window_bytes);
        if stream < WINDOW_BYTES_MIN || stream > connection {
            return fail(format!(
                "stream_receive_window_bytes {stream} not in {WINDOW_BYTES_MIN}..=connection_receive_window_bytes"
            ));
        }
        if connection > WINDOW_BYTES_MAX {
            return fail(format!(
                "connection_receive_window_bytes above {WINDOW_BYTES_MAX}"
            ));
        }
        if !(WINDOW_BYTES_MIN..=WINDOW_BYTES_MAX).contains(&self.send_window_bytes) {
            return fail(format!(
                "send_window_bytes not in {WINDOW_BYTES_MIN}..={WINDOW_BYTES_MAX}"
            ));
        }
        Ok(())
    }

    /// The quinn transport configuration for these limits, validated.
    ///
    /// Unreliable QUIC datagrams are turned off (nothing uses them, and
    /// their receive buffer would be memory without a use).
    pub fn transport_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        self.validate()?;
        let mut config = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms))
            .map_err(|_| TransportError::InvalidLimits {
                reason: "idle_timeout_ms does not fit a QUIC varint".into(),
            })?;
        config.max_idle_timeout(Some(idle));
        config.keep_alive_interval(match self.keep_alive_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        });
        config.max_concurrent_bidi_streams(VarInt::from_u32(self.bidi_streams_max));
        config.max_concurrent_uni_streams(VarInt::from_u32(self.uni_streams_max));
        config.stream_receive_window(VarInt::from_u32(self.stream_receive_window_bytes));
        config.receive_window(VarInt::from_u32(self.connection_receive_window_bytes));
        config.send_window(self.send_window_bytes);
        config.datagram_receive_buffer_size(None);
        Ok(config)
    }
}

/// Builds a QUIC endpoint over any socket and runtime: the one constructor
/// for production and simulation.
///
/// `server` makes the endpoint accept connections (peer or client-facing
/// configuration, such as [`super::peer_server_config`]); without it the
/// endpoint only dials.
/// In simulation, `config` must carry a seed
/// ([`EndpointConfig::rng_seed`], see [`derive_rng_seed`]) and `runtime`
/// must be [`quinn::TokioRuntime`].
pub fn new_endpoint(
    config: EndpointConfig,
    server: Option<ServerConfig>,
    socket: Arc<dyn AsyncUdpSocket>,
    runtime: Arc<dyn Runtime>,
) -> Result<Endpoint, TransportError> {
    Endpoint::new_with_abstract_socket(config, server, socket, runtime)
        .map_err(|source| TransportError::Endpoint { source })
}

/// Production helper: binds a UDP socket on `addr` (port 0 picks a free
/// port), wraps it with the runtime [`quinn::default_runtime`] finds (tokio)
/// and calls [`new_endpoint`]. Must be called inside a tokio runtime.
pub fn bind_endpoint(
    addr: SocketAddr,
    config: EndpointConfig,
    server: Option<ServerConfig>,
) -> Result<Endpoint, TransportError> {
    let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })?;
    let socket = runtime
        .wrap_udp_socket(socket)
        .map_err(|source| TransportError::Bind { addr, source })?;
    new_endpoint(config, server, socket, runtime)
}

/// An endpoint configuration whose quinn RNG is seeded: same seed, same
/// packet-number skips and greasing, so a simulation replays exactly.
pub fn seeded_endpoint_config(rng_seed: [u8; 32]) -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.rng_seed(Some(rng_seed));
    config
}

/// Derives a node's quinn RNG seed from a simulation seed and the node's
/// name (SHA-256 of a label, the seed in little endian and the name), so
/// every node of a run gets its own stream and a run replays exactly.
pub fn derive_rng_seed(seed: u64, node: &NodeName) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"meshgate quinn rng seed\0");
    context.update(&seed.to_le_bytes());
    context.update(node.as_str().as_bytes());
    let digest = context.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        TransportLimits::default().transport_config().unwrap();
    }

    #[test]
    fn keep_alive_must_be_below_idle_timeout() {
        let limits = TransportLimits {
            keep_alive_interval_ms: 30_000,
            ..TransportLimits::default()
        };
        assert!(matches!(
            limits.validate(),
            Err(TransportError::InvalidLimits { .. })
        ));
    }

    #[test]
    fn stream_window_must_fit_in_connection_window() {
        let limits = TransportLimits {
            stream_receive_window_bytes: 16 * 1024 * 1024,
            ..TransportLimits::default()
        };
        assert!(limits.validate().is_err());
    }

    #[test]
    fn rng_seed_differs_per_node_and_seed_but_repeats() {
        let a = NodeName::parse("a").unwrap();
        let b = NodeName::parse("b").unwrap();
        assert_eq!(derive_rng_seed(7, &a), derive_rng_seed(7, &a));
        assert_ne!(derive_rng_seed(7, &a), derive_rng_seed(7, &b));
        assert_ne!(derive_rng_seed(7, &a), derive_rng_seed(8, &a));
    }
}
