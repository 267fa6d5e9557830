//! The invariants a run must keep, and the ledger of what clients wrote
//! that they are checked against.
//!
//! A check returns a [`Violation`] instead of panicking: the scenario ends
//! with it, and the runner reports the invariant, the seed and how to
//! replay it.

use std::collections::BTreeMap;
use std::fmt;

use meshgate_gateway::node::Node;
use meshgate_storage::{StoredRecord, VersionVector};

use crate::world::World;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (a short, stable name such as `prefix`).
    pub invariant: &'static str,
    /// What exactly was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant`.
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Fails with `invariant` unless `condition` holds.
pub fn ensure(
    condition: bool,
    invariant: &'static str,
    detail: impl FnOnce() -> String,
) -> Checked {
    if condition {
        Ok(())
    } else {
        Err(Violation::new(invariant, detail()))
    }
}

/// The result of a check.
pub type Checked = Result<(), Violation>;

/// Names of the invariants, as reported.
pub mod invariant {
    /// An acknowledged record is missing from its origin region.
    pub const ACKED_LOST: &str = "no-acked-record-lost";
    /// A region's copy of an origin stream is not a prefix of what the
    /// origin wrote (a record out of order, twice, or foreign).
    pub const PREFIX: &str = "prefix";
    /// Regions did not converge after every fault healed.
    pub const CONVERGENCE: &str = "convergence";
    /// A consumer group lost or duplicated a record across a failover.
    pub const GROUP_EXACT: &str = "group-exactly-once";
    /// A queue message was neither acknowledged nor dead-lettered.
    pub const QUEUE_DELIVERY: &str = "queue-delivery";
    /// A task of a node panicked.
    pub const NO_PANIC: &str = "no-panic";
    /// A node could not read its own log.
    pub const LOG_READABLE: &str = "log-readable";
    /// The scenario could not do what it needed (a request failed where it
    /// must not, or the run exceeded its simulated time).
    pub const LIVENESS: &str = "liveness";
}

/// Every visible record of one partition of `topic` at `node`, in log
/// order; none while the topic does not exist there. A log that cannot be
/// read is a violation (a prefix cut short by a read error would pass).
pub fn records(node: &Node, topic: &str, partition: u32) -> Result<Vec<StoredRecord>, Violation> {
    let unreadable = |what: String| {
        Violation::new(
            invariant::LOG_READABLE,
            format!("{} {topic}/{partition}: {what}", node.node_id()),
        )
    };
    let Ok(handle) = node.topics().get(topic) else {
        return Ok(Vec::new());
    };
    let log = handle
        .partition(partition)
        .map_err(|error| unreadable(error.to_string()))?;
    let mut offset = log.lock().start_offset();
    let mut all = Vec::new();
    // Bounded: each round moves `offset` forward or stops.
    loop {
        let chunk = log
            .read(offset, 1 << 20)
            .map_err(|error| unreadable(error.to_string()))?;
        if chunk.bytes.is_empty() || chunk.next_offset <= offset {
            return Ok(all);
        }
        let records = chunk
            .records_from(offset)
            .map_err(|error| unreadable(error.to_string()))?;
        all.extend(records);
        offset = chunk.next_offset;
    }
}

/// The version vector of one partition of `topic` at `node`: how many
/// records of each origin stream it holds (`None` without the topic).
pub fn vector(node: &Node, topic: &str, partition: u32) -> Option<VersionVector> {
    let topic = node.topics().get(topic).ok()?;
    let log = topic.partition(partition).ok()?;
    let vector = log.lock().vector().clone();
    Some(vector)
}

/// The values of each origin region's records in one partition, in log
/// order.
pub fn streams(
    node: &Node,
    topic: &str,
    partition: u32,
) -> Result<BTreeMap<String, Vec<String>>, Violation> {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records(node, topic, partition)? {
        streams
            .entry(record.origin.stream.region.to_string())
            .or_default()
            .push(String::from_utf8_lossy(&record.record.value).into_owned());
    }
    Ok(streams)
}

/// One record a client sent to its origin region.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    value: String,
    /// Acknowledged; otherwise the gateway crashed before answering, and
    /// the record may or may not be in the log.
    acked: bool,
}

/// What clients wrote to one topic, per partition and origin region, in
/// the order the origin acknowledged it. Values are unique.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    topic: String,
    partitions: u32,
    sent: BTreeMap<(u32, String), Vec<Sent>>,
}

impl Ledger {
    /// An empty ledger of `partitions` partitions of `topic`.
    pub fn new(topic: &str, partitions: u32) -> Self {
        Self {
            topic: topic.to_string(),
            partitions,
            sent: BTreeMap::new(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records `value`, written in `region` to `partition`, acknowledged
    /// or not.
    pub fn sent(&mut self, partition: u32, region: &str, value: String, acked: bool) {
        self.sent
            .entry((partition, region.to_string()))
            .or_default()
            .push(Sent { value, acked });
    }

    /// Adds what another client wrote to the same topic, to streams (a
    /// partition and origin) this ledger does not hold: the order within a
    /// stream is known only to the one client that wrote it.
    pub fn merge(&mut self, other: Ledger) {
        debug_assert!(
            other.sent.keys().all(|key| !self.sent.contains_key(key)),
            "ledgers merged over the same stream"
        );
        for (key, sent) in other.sent {
            self.sent.entry(key).or_default().extend(sent);
        }
    }

    /// How many records were sent (acknowledged or not).
    pub fn sent_count(&self) -> usize {
        self.sent.values().map(Vec::len).sum()
    }

    /// How many records were acknowledged.
    pub fn acked(&self) -> usize {
        self.sent.values().flatten().filter(|s| s.acked).count()
    }

    /// Checks that every running region's copy of each origin stream is a
    /// prefix of what the origin wrote (records whose answer was lost in a
    /// crash may be missing), in order, nothing twice, nothing foreign; and
    /// that no two regions hold different records at one place.
    pub fn check_prefixes(&self, world: &World) -> Checked {
        for partition in 0..self.partitions {
            let mut longest: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
            for (name, node) in world.running() {
                for (origin, held) in streams(&node, &self.topic, partition)? {
                    let sent = self
                        .sent
                        .get(&(partition, origin.clone()))
                        .map_or(&[][..], Vec::as_slice);
                    if let Err(detail) = match_prefix(sent, &held) {
                        return Err(Violation::new(
                            invariant::PREFIX,
                            format!(
                                "{name} partition {partition}: its copy of {origin}'s stream \
                                 ({} records) {detail}",
                                held.len()
                            ),
                        ));
                    }
                    let entry = longest
                        .entry(origin.clone())
                        .or_insert_with(|| (name.clone(), Vec::new()));
                    let (short, long) = if held.len() <= entry.1.len() {
                        (&held, &entry.1)
                    } else {
                        (&entry.1, &held)
                    };
                    if !long.starts_with(short) {
                        return Err(Violation::new(
                            invariant::PREFIX,
                            format!(
                                "partition {partition}: {name} and {} hold different copies of \
                                 {origin}'s stream",
                                entry.0
                            ),
                        ));
                    }
                    if held.len() > entry.1.len() {
                        *entry = (name.clone(), held);
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that `node` (of `region`) still holds every record it
    /// acknowledged (their order is [`Ledger::check_prefixes`]' business).
    pub fn check_origin_kept(&self, world: &World, node: &str, region: &str) -> Checked {
        let Some(running) = world.node(node) else {
            return Err(Violation::new(
                invariant::LIVENESS,
                format!("{node} is down where its records are checked"),
            ));
        };
        for partition in 0..self.partitions {
            let held = streams(&running, &self.topic, partition)?
                .remove(region)
                .unwrap_or_default();
            let sent = self
                .sent
                .get(&(partition, region.to_string()))
                .map_or(&[][..], Vec::as_slice);
            let missing: Vec<&str> = sent
                .iter()
                .filter(|s| s.acked && !held.contains(&s.value))
                .map(|s| s.value.as_str())
                .collect();
            ensure(missing.is_empty(), invariant::ACKED_LOST, || {
                format!(
                    "{node} partition {partition}: {} acknowledged records missing, first `{}`",
                    missing.len(),
                    missing[0]
                )
            })?;
        }
        Ok(())
    }

    /// Whether every running region holds the same copy of every origin
    /// stream, with every acknowledged record in it, and the same version
    /// vector.
    pub fn converged(&self, world: &World) -> Result<bool, Violation> {
        let running = world.running();
        for partition in 0..self.partitions {
            let mut copies = Vec::new();
            for (_, node) in &running {
                copies.push(streams(node, &self.topic, partition)?);
            }
            let complete = copies.first().is_some_and(|first| {
                self.sent
                    .iter()
                    .filter(|((p, _), _)| *p == partition)
                    .all(|((_, origin), sent)| {
                        let held = first.get(origin).map_or(&[][..], Vec::as_slice);
                        sent.iter()
                            .filter(|s| s.acked)
                            .all(|s| held.contains(&s.value))
                    })
            });
            let vectors: Vec<Option<VersionVector>> = running
                .iter()
                .map(|(_, node)| vector(node, &self.topic, partition))
                .collect();
            if !complete
                || copies.windows(2).any(|pair| pair[0] != pair[1])
                || vectors.windows(2).any(|pair| pair[0] != pair[1])
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A description of what differs, for a convergence violation.
    pub fn divergence(&self, world: &World) -> String {
        let mut parts = Vec::new();
        for partition in 0..self.partitions {
            for (name, node) in world.running() {
                let counts: Vec<String> = streams(&node, &self.topic, partition)
                    .unwrap_or_default()
                    .iter()
                    .map(|(origin, held)| format!("{origin}={}", held.len()))
                    .collect();
                parts.push(format!("{name} p{partition} [{}]", counts.join(" ")));
            }
        }
        let acked: Vec<String> = self
            .sent
            .iter()
            .map(|((p, origin), sent)| {
                format!("p{p} {origin}={}", sent.iter().filter(|s| s.acked).count())
            })
            .collect();
        format!(
            "holds {}; acknowledged {}",
            parts.join(", "),
            acked.join(" ")
        )
    }
}

/// Whether `held` is a prefix of `sent` where only unacknowledged records
/// may be missing; the error says how it is not.
fn match_prefix(sent: &[Sent], held: &[String]) -> Result<(), String> {
    let mut next = 0;
    for (index, value) in held.iter().enumerate() {
        loop {
            let Some(candidate) = sent.get(next) else {
                return Err(format!(
                    "has `{value}` at {index}, which its origin never wrote there"
                ));
            };
            next += 1;
            if &candidate.value == value {
                break;
            }
            if candidate.acked {
                return Err(format!(
                    "has `{value}` at {index} where the origin acknowledged `{}`",
                    candidate.value
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(items: &[(&str, bool)]) -> Vec<Sent> {
        items
            .iter()
            .map(|(value, acked)| Sent {
                value: (*value).to_string(),
                acked: *acked,
            })
            .collect()
    }

    fn held(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_string()).collect()
    }

    #[test]
    fn a_prefix_may_miss_only_records_whose_answer_was_lost() {
        let wrote = sent(&[("a", true), ("b", false), ("c", true)]);
        assert!(match_prefix(&wrote, &held(&[])).is_ok());
        assert!(match_prefix(&wrote, &held(&["a", "b", "c"])).is_ok());
        assert!(match_prefix(&wrote, &held(&["a", "c"])).is_ok());
        assert!(match_prefix(&wrote, &held(&["a", "b"])).is_ok());
        assert!(match_prefix(&wrote, &held(&["c"])).is_err(), "a skipped");
        assert!(match_prefix(&wrote, &held(&["a", "a"])).is_err(), "twice");
        assert!(match_prefix(&wrote, &held(&["b", "a"])).is_err(), "order");
        assert!(match_prefix(&wrote, &held(&["a", "x"])).is_err(), "foreign");
    }
}
