//! Prometheus metrics. Counters live as long as the node; gauges of
//! partitions and groups are read from the node's state at scrape time.

use std::fmt::Write;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The request kind (`produce`, `fetch`, ...).
    pub kind: &'static str,
    /// `ok` or the error code's name.
    pub outcome: String,
}

/// Labels of per-topic counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic.
    pub topic: String,
}

/// Labels of per-partition gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// Labels of per-group gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The group.
    pub group: String,
}

/// Labels of group gauges per partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// The node's long-lived metrics.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Requests handled, by kind and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Records appended by producers, by topic.
    pub produced_records: Family<TopicLabels, Counter>,
    /// Bytes of record values and keys appended by producers, by topic.
    pub produced_bytes: Family<TopicLabels, Counter>,
    /// Bytes of batches returned by fetches, by topic.
    pub fetched_bytes: Family<TopicLabels, Counter>,
    /// Client connections open now.
    pub connections: Gauge,
}

/// Gauges sampled at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bytes on disk per partition.
    pub partition_bytes: Family<PartitionLabels, Gauge>,
    /// High watermark per partition.
    pub high_watermark: Family<PartitionLabels, Gauge>,
    /// Earliest retained offset per partition.
    pub start_offset: Family<PartitionLabels, Gauge>,
    /// Partitions that are quarantined or failed (1) per partition.
    pub partition_unavailable: Family<PartitionLabels, Gauge>,
    /// Records between a group's committed position and the high watermark.
    pub group_lag: Family<GroupPartitionLabels, Gauge>,
    /// Members per group.
    pub group_members: Family<GroupLabels, Gauge>,
    /// Gateways of the cluster by membership state.
    pub cluster_members: Family<StateLabels, Gauge>,
    /// Records behind an origin's head, per pull link.
    pub mirror_lag_records: Family<MirrorLabels, Gauge>,
    /// Milliseconds behind an origin's head, per pull link.
    pub mirror_lag_ms: Family<MirrorLabels, Gauge>,
    /// Records pulled per link since start.
    pub mirror_pulled_records: Family<LinkLabels, Gauge>,
    /// Records never received because retention deleted them first (gap
    /// markers), per link.
    pub mirror_gap_records: Family<LinkLabels, Gauge>,
    /// Pull links by state.
    pub mirror_links: Family<StateLabels, Gauge>,
    /// Peer links by state.
    pub peer_links: Family<StateLabels, Gauge>,
    /// Peer link events (connects, failures, refused handshakes...).
    pub peer_link_events: Family<EventLabels, Gauge>,
    /// Gossip packets dropped, by reason.
    pub gossip_dropped: Family<EventLabels, Gauge>,
    /// Messages waiting per dispatch queue.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// Messages leased and not settled per dispatch queue.
    pub queue_in_flight: Family<QueueLabels, Gauge>,
    /// Age of the oldest message per dispatch queue, in ms.
    pub queue_oldest_age_ms: Family<QueueLabels, Gauge>,
    /// Deliveries per dispatch queue since start.
    pub queue_delivered: Family<QueueLabels, Gauge>,
    /// Redeliveries per dispatch queue since start.
    pub queue_redeliveries: Family<QueueLabels, Gauge>,
    /// Messages moved to the dead-letter queue since start.
    pub queue_dead_lettered: Family<QueueLabels, Gauge>,
    /// Messages in each dead-letter queue.
    pub queue_dead_letter_depth: Family<QueueLabels, Gauge>,
    /// Deliveries per second over the last second or so.
    pub queue_delivery_rate: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Records read from source logs by dispatchers and for deliveries.
    pub queue_log_reads: Family<ReadLabels, Gauge>,
}

/// Labels of a dispatch queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue.
    pub queue: String,
}

/// Who read records from a log.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// `dispatch` or `delivery`.
    pub reader: String,
}

/// Labels of a pull link.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The region pulled from.
    pub source: String,
}

/// Labels of a pull link and origin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The region pulled from.
    pub source: String,
    /// The origin region of the records.
    pub origin: String,
}

/// Labels of a count by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: String,
}

/// Labels of a count by event or reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The event or reason.
    pub event: String,
}

impl Metrics {
    /// Renders these metrics and `snapshot` in the Prometheus text format.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut registry = Registry::with_prefix("meshgate");
        registry.register(
            "requests",
            "Client requests handled, by kind and outcome",
            self.requests.clone(),
        );
        registry.register(
            "produced_records",
            "Records appended by producers",
            self.produced_records.clone(),
        );
        registry.register(
            "produced_bytes",
            "Bytes appended by producers (keys, values, headers)",
            self.produced_bytes.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Bytes of record batches returned to consumers",
            self.fetched_bytes.clone(),
        );
        registry.register(
            "connections",
            "Client connections open",
            self.connections.clone(),
        );
        registry.register(
            "partition_size_bytes",
            "Bytes on disk per partition",
            snapshot.partition_bytes,
        );
        registry.register(
            "partition_high_watermark",
            "Offset after the last durable record",
            snapshot.high_watermark,
        );
        registry.register(
            "partition_start_offset",
            "Earliest retained offset",
            snapshot.start_offset,
        );
        registry.register(
            "partition_unavailable",
            "1 when a partition is quarantined or failed",
            snapshot.partition_unavailable,
        );
        registry.register(
            "group_lag_records",
            "Records between the committed position and the high watermark",
            snapshot.group_lag,
        );
        registry.register(
            "group_members",
            "Members of each consumer group",
            snapshot.group_members,
        );
        registry.register(
            "cluster_members",
            "Gateways in the cluster by membership state",
            snapshot.cluster_members,
        );
        registry.register(
            "mirror_lag_records",
            "Records this region is behind an origin's head, per pull link",
            snapshot.mirror_lag_records,
        );
        registry.register(
            "mirror_lag_ms",
            "Milliseconds this region has been behind an origin's head, per pull link",
            snapshot.mirror_lag_ms,
        );
        registry.register(
            "mirror_pulled_records",
            "Records pulled per link since start",
            snapshot.mirror_pulled_records,
        );
        registry.register(
            "mirror_gap_records",
            "Records never received because retention deleted them first",
            snapshot.mirror_gap_records,
        );
        registry.register("mirror_links", "Pull links by state", snapshot.mirror_links);
        registry.register(
            "peer_links",
            "Peer links to other gateways by state",
            snapshot.peer_links,
        );
        registry.register(
            "peer_link_events",
            "Peer link events since start",
            snapshot.peer_link_events,
        );
        registry.register(
            "gossip_dropped_packets",
            "Gossip packets dropped since start, by reason",
            snapshot.gossip_dropped,
        );
        registry.register(
            "queue_depth",
            "Messages waiting per dispatch queue",
            snapshot.queue_depth,
        );
        registry.register(
            "queue_in_flight",
            "Messages leased and not settled per dispatch queue",
            snapshot.queue_in_flight,
        );
        registry.register(
            "queue_oldest_age_ms",
            "Age of the oldest message per dispatch queue, in milliseconds",
            snapshot.queue_oldest_age_ms,
        );
        registry.register(
            "queue_delivered",
            "Deliveries per dispatch queue since start",
            snapshot.queue_delivered,
        );
        registry.register(
            "queue_redeliveries",
            "Deliveries that were not the first, per dispatch queue since start",
            snapshot.queue_redeliveries,
        );
        registry.register(
            "queue_dead_lettered",
            "Messages moved to the dead-letter queue since start",
            snapshot.queue_dead_lettered,
        );
        registry.register(
            "queue_dead_letter_depth",
            "Messages in each queue's dead-letter queue",
            snapshot.queue_dead_letter_depth,
        );
        registry.register(
            "queue_delivery_rate",
            "Deliveries per second per dispatch queue, over about a second",
            snapshot.queue_delivery_rate,
        );
        registry.register(
            "queue_log_reads",
            "Records read from source logs for dispatch queues, by reader",
            snapshot.queue_log_reads,
        );
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &registry) {
            let _ = writeln!(text, "# encoding failed: {error}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_time_gauges_are_rendered() {
        let snapshot = Snapshot::default();
        let alive = StateLabels {
            state: "alive".into(),
        };
        snapshot.cluster_members.get_or_create(&alive).set(5);
        snapshot
            .peer_links
            .get_or_create(&StateLabels {
                state: "connected".into(),
            })
            .set(4);
        snapshot
            .gossip_dropped
            .get_or_create(&EventLabels {
                event: "malformed".into(),
            })
            .set(2);
        let text = Metrics::default().render(snapshot);
        for expected in [
            "meshgate_cluster_members{state=\"alive\"} 5",
            "meshgate_peer_links{state=\"connected\"} 4",
            "meshgate_gossip_dropped_packets{event=\"malformed\"} 2",
            "meshgate_connections 0",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
    }
}
