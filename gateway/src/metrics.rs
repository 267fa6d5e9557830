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
