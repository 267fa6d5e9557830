//! meshgate-gateway: one gateway node: topics and their partition logs,
//! producers, consumer groups, the client listener, admin HTTP, metrics,
//! configuration, and the `meshgate` command line.
//!
//! # Layout
//! - [`config`]: layered configuration (defaults, TOML, environment, flags).
//! - [`node`]: a node and the dispatch of client requests.
//! - [`meta`]: durable metadata in an internal log.
//! - [`topics`]: topics and their partition logs.
//! - [`produce`], [`fetch`], [`offsets`]: the data path and committed
//!   positions (as version vectors).
//! - [`groups`]: the consumer-group coordinator.
//! - [`mirror`]: cross-region mirroring, commit forwarding, group leases.
//! - [`queues`]: dispatch queues fed from hot topics.
//! - [`gateway`]: a running node with its listeners, started and stopped as one.
//! - [`server`]: the QUIC client listener; [`tls`]: the node's certificates.
//! - [`kafka`]: the Apache Kafka wire-protocol listener.
//! - [`http`]: admin HTTP and the web console; [`metrics`]: Prometheus.
//! - [`cluster`]: SWIM membership and QUIC peer links to other gateways.
//! - [`net`]: the socket seam (real or simulated); [`clock`]: the wall clock.
#![deny(missing_docs)]

pub mod clock;
pub mod cluster;
mod cluster_files;
pub mod config;
pub mod errors;
pub mod fetch;
pub mod gateway;
pub mod groups;
pub mod http;
pub mod kafka;
pub mod meta;
pub mod metrics;
pub mod mirror;
pub mod net;
pub mod node;
pub mod offsets;
pub mod produce;
pub mod queues;
pub mod server;
pub mod tls;
pub mod topics;
