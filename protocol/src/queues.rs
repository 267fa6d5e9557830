//! Dispatch-queue messages of the native protocol: rules (a queue fed from
//! a topic through a filter), receiving with leases, settling, redrive and
//! description.

use bytes::Bytes;
use meshgate_storage::Header;
use serde::{Deserialize, Serialize};

/// Longest lease a consumer can ask for, in milliseconds (12 hours).
pub const VISIBILITY_MS_MAX: u64 = 12 * 60 * 60 * 1000;
/// Largest backlog a queue may be configured with, in messages. A waiting
/// message costs about 120 bytes of memory (id, key handle, times, counts).
pub const BACKLOG_MAX_LIMIT: u64 = 10_000_000;

/// How a queue behaves. Every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueOptions {
    /// How long a received message stays invisible to other consumers
    /// before it is delivered again, in milliseconds, unless the consumer
    /// asks for another value. Default 30000; 1..=12 h.
    pub visibility_timeout_ms: u64,
    /// Deliveries of a message before it moves to the dead-letter queue
    /// (`QUEUE.dlq`). Default 5; at least 1.
    pub max_attempts: u32,
    /// Every message waits this long after it is routed before its first
    /// delivery, in milliseconds. Default 0. A record can also carry a
    /// `deliver-at` header (milliseconds since the epoch, decimal): the
    /// later of the two wins.
    pub delivery_delay_ms: u64,
    /// At most one message per record key in flight, delivered in log
    /// order (records without a key are not ordered). Default false.
    pub fifo_by_key: bool,
    /// Messages waiting (not in flight) at most. When a new message would
    /// exceed it, the waiting message next in line moves to the dead-letter
    /// queue: memory stays bounded and the dispatcher never waits for this
    /// queue, so other queues are unaffected. The dead-letter queue has the
    /// same bound; past it, its oldest entries are dropped and counted.
    /// Default 1000000; 1..=10000000.
    pub max_backlog: u64,
    /// Messages in flight (received, not settled) at most; receives return
    /// fewer or none while the queue is at the bound. Default 10000.
    pub max_in_flight: u64,
    /// A waiting message older than this (since it was routed), in
    /// milliseconds, moves to the dead-letter queue instead of being
    /// delivered. `None` (the default): no limit.
    pub max_message_age_ms: Option<u64>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout_ms: 30_000,
            max_attempts: 5,
            delivery_delay_ms: 0,
            fifo_by_key: false,
            max_backlog: 1_000_000,
            max_in_flight: 10_000,
            max_message_age_ms: None,
        }
    }
}

impl QueueOptions {
    /// Checks every field against its limits; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=VISIBILITY_MS_MAX).contains(&self.visibility_timeout_ms) {
            return Err(format!(
                "visibility_timeout_ms must be 1..={VISIBILITY_MS_MAX}, got {}",
                self.visibility_timeout_ms
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if !(1..=BACKLOG_MAX_LIMIT).contains(&self.max_backlog) {
            return Err(format!(
                "max_backlog must be 1..={BACKLOG_MAX_LIMIT}, got {}",
                self.max_backlog
            ));
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.max_message_age_ms == Some(0) {
            return Err("max_message_age_ms must be at least 1 when set".into());
        }
        Ok(())
    }

    /// The options of a queue's dead-letter queue: no attempt limit (a
    /// dead letter never dies twice), no delay, no ordering, no age limit;
    /// the same leases and bounds.
    pub fn for_dead_letters(&self) -> Self {
        Self {
            max_attempts: u32::MAX,
            delivery_delay_ms: 0,
            fifo_by_key: false,
            max_message_age_ms: None,
            ..self.clone()
        }
    }
}

/// A dispatch rule: the queue `name` takes the records of `topic` that
/// pass the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// The queue (domain), such as `orders.inventory`. Must not end with
    /// `.dlq` (that names its dead-letter queue).
    pub name: String,
    /// The source topic.
    pub topic: String,
    /// Tag expression over the record's `tags` header: `*` (every record)
    /// or `created || paid`.
    #[serde(default = "any_tag")]
    pub tags: String,
    /// Only records carrying this header with this value.
    #[serde(default)]
    pub filter_header: Option<(String, String)>,
    /// Only records whose key starts with this text.
    #[serde(default)]
    pub filter_key_prefix: Option<String>,
    /// Leases, attempts, delay, ordering, limits.
    #[serde(default)]
    pub options: QueueOptions,
}

fn any_tag() -> String {
    "*".into()
}

/// A queue name in a request (`NAME` or `NAME.dlq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueName {
    /// The queue.
    pub queue: String,
}

/// Leases messages of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receive {
    /// The queue (`NAME.dlq` for its dead letters).
    pub queue: String,
    /// Messages wanted at most (at least 1).
    pub count_max: u32,
    /// Wait up to this long for a first message, in ms (capped by the
    /// node's long-poll limit).
    pub wait_ms: u32,
    /// Lease length in ms; the queue's visibility timeout when `None`.
    pub visibility_ms: Option<u64>,
}

/// One leased message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// Settle the message with this lease.
    pub lease: u64,
    /// Source partition of the record.
    pub partition: u32,
    /// Offset of the record in this node's log.
    pub offset: u64,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// The lease runs out at this time (ms since the epoch).
    pub deadline_ms: u64,
    /// The record's key.
    pub key: Option<Bytes>,
    /// The record's value.
    pub value: Bytes,
    /// The record's headers.
    pub headers: Vec<Header>,
    /// The record's timestamp (ms since the epoch).
    pub timestamp_ms: u64,
}

/// What to do with leased messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleAction {
    /// Done with them.
    Ack,
    /// Deliver again, after a delay in ms when given (dead-lettered after
    /// the last attempt).
    Nack {
        /// Wait this long first.
        delay_ms: Option<u64>,
    },
    /// Keep the lease this many ms longer from now.
    Extend {
        /// New lease length from now.
        ms: u64,
    },
}

/// Settles leased messages of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    /// The queue the leases came from.
    pub queue: String,
    /// The leases.
    pub leases: Vec<u64>,
    /// What to do.
    pub action: SettleAction,
}

/// Moves dead letters back into their queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    /// The queue (not its `.dlq`).
    pub queue: String,
    /// Messages to move at most; all waiting ones when `None`.
    pub count_max: Option<u64>,
}

/// A queue's rule and figures on the answering node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDescription {
    /// The rule.
    pub spec: QueueSpec,
    /// Messages waiting (delayed ones included).
    pub depth: u64,
    /// Messages leased and not settled.
    pub in_flight: u64,
    /// Age of the oldest message in the queue, in ms.
    pub oldest_age_ms: Option<u64>,
    /// Messages routed into the queue since start.
    pub routed: u64,
    /// Deliveries since start.
    pub delivered: u64,
    /// Deliveries that were not the first, since start.
    pub redeliveries: u64,
    /// Acks since start.
    pub acked: u64,
    /// Messages moved to the dead-letter queue since start.
    pub dead_lettered: u64,
    /// Messages waiting or in flight in the dead-letter queue.
    pub dead_letter_depth: u64,
    /// Dead letters dropped because the dead-letter queue was full, ever.
    pub dead_letters_dropped: u64,
    /// Deliveries per second, over the last few seconds.
    pub delivery_rate_per_s: f64,
}
