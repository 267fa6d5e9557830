//! Records as a producer sends them and as a consumer receives them.

use std::sync::Arc;

use bytes::Bytes;
use meshgate_storage::{Header, OriginCoord, StoredRecord, Timestamp};

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partitioning key: records with the same key land in the same
    /// partition (`meshgate_protocol::partition_for_key`).
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers; keys may repeat.
    pub headers: Vec<Header>,
    /// A fixed partition, overriding the key.
    pub partition: Option<u32>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            value: value.into(),
            headers: Vec::new(),
            partition: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Fixes the partition.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Bytes of key, value and headers: what the node's record limit counts.
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}

/// Where a produced record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The partition.
    pub partition: u32,
    /// Its offset in the connected node's log.
    pub offset: u64,
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// Its offset in the connected node's log.
    pub offset: u64,
    /// Its global identity: origin region, topic incarnation and sequence.
    pub origin: OriginCoord,
    /// The partitioning key.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// When it was appended at its origin (hybrid logical clock).
    pub timestamp: Timestamp,
}

impl ConsumerRecord {
    pub(crate) fn from_stored(topic: Arc<str>, partition: u32, stored: StoredRecord) -> Self {
        Self {
            topic,
            partition,
            offset: stored.offset.0,
            origin: stored.origin,
            key: stored.record.key,
            value: stored.record.value,
            headers: stored.record.headers,
            timestamp: stored.record.timestamp,
        }
    }

    /// The first header value with this key.
    pub fn header(&self, key: &str) -> Option<&Bytes> {
        self.headers.iter().find(|h| h.key == key).map(|h| &h.value)
    }

    /// The timestamp's wall-clock part, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp.millis()
    }
}
