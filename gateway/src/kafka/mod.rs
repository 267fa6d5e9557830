//! The Apache Kafka wire-protocol listener: unchanged Kafka clients
//! produce and consume at their nearest gateway.
//!
//! # Design
//! - Listener ([`listener`], [`connection`]): TCP, a connection limit
//!   (`limits.connections_max`), 4-byte length-prefixed frames whose
//!   length is checked against `limits.frame_bytes_max` before anything is
//!   allocated, a node-wide budget of request bytes in flight, one request
//!   at a time per connection, answered in order.
//! - Requests ([`dispatch`]): the header names API and version; an API or
//!   version not in [`versions::SUPPORTED`] gets UNSUPPORTED_VERSION (35),
//!   never a closed connection. The body's shape is walked first
//!   ([`preflight`]) because `kafka-protocol` would otherwise trust array
//!   counts with allocations; then it is decoded with `kafka-protocol`.
//! - This gateway is the whole cluster for its clients: one broker that
//!   leads every partition, is every group's coordinator, and advertises
//!   the address the client reached (or `advertise_host`). Topic ids are
//!   derived from the topic's name and incarnation ([`topics::topic_id`]),
//!   so they are the same in every region that mirrors the topic.
//! - Records ([`records`], [`legacy`], [`compression`]): Kafka batches and
//!   native records are the same records; key, value and headers (repeated
//!   keys kept in order) cross unchanged, timestamps are the node's append
//!   time in milliseconds. Produce reuses the node's producers (with its
//!   idempotence window: a Kafka producer's (id, epoch) and record
//!   sequence numbers), so a record produced by kcat is read by a native
//!   consumer and the other way round.
//! - Groups ([`groups`], [`offsets`]): Kafka groups live in the node's
//!   coordinator in leader-assigned mode; committed offsets are stored as
//!   the prefix vectors native groups use, so a Kafka group fails over
//!   between regions like a native one. Fetches are filtered after a
//!   failover ([`failover`]) so no record is delivered twice.
//!
//! # Layout
//! `config.rs` settings; `listener.rs`, `connection.rs` sockets;
//! `dispatch.rs` requests; `versions.rs` the served versions;
//! `preflight.rs` shape checks; `topics.rs` Metadata, CreateTopics,
//! DeleteTopics, DescribeConfigs; `produce.rs` Produce and InitProducerId;
//! `fetch.rs` Fetch and ListOffsets; `groups.rs` coordinator APIs;
//! `offsets.rs` OffsetCommit and OffsetFetch; `failover.rs` the fetch
//! filter; `records.rs`, `legacy.rs`, `compression.rs` record formats;
//! `errors.rs` error codes.

pub mod compression;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod errors;
pub mod failover;
pub mod fetch;
pub mod groups;
pub mod legacy;
pub mod listener;
pub mod offsets;
pub mod preflight;
pub mod produce;
pub mod records;
pub mod topics;
pub mod versions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

pub use config::KafkaConfig;

use crate::node::Node;

/// Members whose client address is remembered for DescribeGroups.
const MEMBER_HOSTS_MAX: usize = 100_000;

/// What every Kafka connection of a node shares.
pub struct KafkaState {
    node: Arc<Node>,
    config: KafkaConfig,
    broker_id: i32,
    cluster_id: String,
    filters: Mutex<failover::Filters>,
    next_producer_id: AtomicI64,
    request_bytes: Arc<Semaphore>,
    member_hosts: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for KafkaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaState")
            .field("broker_id", &self.broker_id)
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

impl KafkaState {
    /// The shared state of a node's Kafka listener. `seed` picks where
    /// producer ids start.
    pub fn new(node: Arc<Node>, seed: u64) -> Arc<Self> {
        let config = node.config().kafka.clone();
        let cluster_id = config
            .cluster_id
            .clone()
            .unwrap_or_else(|| format!("meshgate-{}", node.region()));
        // A stable, non-negative broker id per node.
        let broker_id = (topics::fnv1a(node.node_id().as_bytes()) & 0x3fff_ffff) as i32;
        let filters = failover::Filters::new(
            config.failover_filters_max as usize,
            config.failover_filter_idle_ms,
        );
        let permits = (node.config().limits.produce_in_flight_bytes_max
            / connection::PERMIT_BYTES as u64)
            .clamp(1, u64::from(u32::MAX >> 3)) as usize;
        Arc::new(Self {
            broker_id,
            cluster_id,
            filters: Mutex::new(filters),
            // Producer ids start at a random point below 2^46 and count up,
            // so ids from an earlier run are unlikely to be handed out again.
            next_producer_id: AtomicI64::new(((seed >> 20) & ((1 << 46) - 1)) as i64 + 1),
            request_bytes: Arc::new(Semaphore::new(permits)),
            member_hosts: Mutex::new(BTreeMap::new()),
            config,
            node,
        })
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The broker id clients see.
    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    fn allocate_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    fn remember_member_host(&self, member_id: &str, host: String) {
        let mut hosts = self.member_hosts.lock();
        if hosts.len() >= MEMBER_HOSTS_MAX && !hosts.contains_key(member_id) {
            // Forget an arbitrary (the smallest) one: only a description suffers.
            hosts.pop_first();
        }
        hosts.insert(member_id.to_string(), host);
    }

    fn member_host(&self, member_id: &str) -> String {
        self.member_hosts
            .lock()
            .get(member_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The host clients should connect to, as seen from `connection`.
    fn advertised_host(&self, connection: &connection::Connection) -> String {
        self.node
            .config()
            .advertise_host
            .clone()
            .unwrap_or_else(|| connection.local.ip().to_string())
    }
}
