//! meshgate-client: the Rust client of meshgate. Connects to a gateway over
//! QUIC, produces with batching, linger and idempotence, consumes alone or
//! in consumer groups, and makes admin calls.
//!
//! # Layout
//! - [`config`]: [`ClientConfig`] (seeds, [`Trust`], timeouts,
//!   [`RetryPolicy`]).
//! - `nearest`: ranking gateways: preferred region, then measured round
//!   trip; the ranking a client falls back on when its gateway dies.
//! - `client`: [`Client`]: chooses a node among the seeds, says hello,
//!   sends each request on its own QUIC stream (so requests pipeline),
//!   retries with bounded exponential backoff and reconnects; admin calls.
//! - `connection`: one QUIC connection and its request/response exchange.
//! - `producer`: [`Producer`]: per-partition batches, linger and size
//!   limits, keyed or sticky partitioning, one batch in flight per
//!   partition with idempotent sequence numbers, bounded buffer.
//! - `consumer`: [`Consumer`]: assigned partitions or group subscriptions,
//!   long-poll prefetching, offset commits, rebalances.
//! - `record`: [`ProducerRecord`], [`Delivered`], [`ConsumerRecord`].
//! - `error`: [`ClientError`].
//!
//! # Driving it
//! ```no_run
//! # async fn example() -> Result<(), meshgate_client::ClientError> {
//! use std::time::Duration;
//! use meshgate_client::*;
//!
//! let config = ClientConfig::new(["127.0.0.1:7420"], Trust::CaFile("data/tls/ca.pem".into()));
//! let client = Client::connect(config).await?;
//! client.create_topic("orders", TopicSettings { partitions: 3, ..Default::default() }).await?;
//!
//! let producer = Producer::new(client.clone(), ProducerConfig::default())?;
//! let delivered = producer
//!     .send(ProducerRecord::new("orders", "created").key("order-1"))
//!     .await?
//!     .await?;
//! println!("partition {} offset {}", delivered.partition, delivered.offset);
//!
//! let mut consumer = Consumer::new(
//!     client,
//!     ConsumerConfig { group: Some("billing".into()), reset: OffsetReset::Earliest, ..Default::default() },
//! )?;
//! consumer.subscribe(["orders"])?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}/{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! consumer.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - Records with the same key go to the same partition
//!   ([`meshgate_protocol::partition_for_key`], Kafka's murmur2), in every
//!   region.
//! - Within a partition, a producer's records are appended in `send` order.
//!   With idempotence on (the default) a batch resent after a lost answer
//!   is recognised by the node and not appended twice.
//! - A consumer hands out each partition's records in offset order and
//!   commits the position after the last record it handed out.
#![deny(missing_docs)]

mod client;
pub mod config;
mod connection;
mod consumer;
mod error;
mod nearest;
mod producer;
mod queues;
mod record;

pub use client::Client;
pub use config::{ClientConfig, RetryPolicy, Trust};
pub use consumer::{Assignor, Consumer, ConsumerConfig, OffsetReset, Seek};
pub use error::ClientError;
pub use producer::{Delivery, Producer, ProducerConfig};
pub use record::{ConsumerRecord, Delivered, ProducerRecord};

pub use meshgate_protocol::{
    Acks, ErrorCode, GroupDescription, GroupSummary, MemberInfo, MirrorFollowerStatus,
    MirrorLinkStatus, MirrorRuleSpec, NodeInfo, OffsetSpec, QueueDescription, QueueMessage,
    QueueOptions, QueueSpec, SettleAction, TopicDescription, TopicSettings, TopicSummary,
    WireError,
};
pub use meshgate_storage::{Durability, Header, OriginCoord, Timestamp};
