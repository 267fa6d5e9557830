//! Small shared types: request tokens, assignment modes, group states and
//! the read-only views returned by `describe`, `list` and `stats`.

use std::fmt;

use bytes::Bytes;
use meshgate_protocol::{CommittedOffset, GroupDescription, MemberDescription, TopicPartitions};

/// Names a long-lived request (a join or a sync) whose answer comes later
/// through `poll_output`. Chosen by the caller; it must not reuse a token
/// while its request is unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub u64);

/// Who computes a group's assignment. Chosen by the listener a join comes
/// through, not by the client, because a protocol name alone cannot tell:
/// a Kafka client's `range` protocol carries Kafka-encoded metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignmentMode {
    /// The node computes the assignment (native clients). Only the
    /// protocols `range` and `roundrobin` count, their metadata must be
    /// `encode_subscription(topics)`, and a sync answers at once with
    /// `encode_assignment(..)` of the member's partitions.
    Node,
    /// The group's leader computes the assignment (Kafka clients). Protocol
    /// names and metadata are opaque; the leader's join answer carries every
    /// member's metadata and its sync carries every member's assignment.
    Leader,
}

impl AssignmentMode {
    /// The mode as lower snake case text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Leader => "leader",
        }
    }
}

impl fmt::Display for AssignmentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a group is in Kafka's classic membership protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join; heartbeats answer
    /// `RebalanceInProgress`.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignments (leader mode only).
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The state as lower snake case text, as in group summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::PreparingRebalance => "preparing_rebalance",
            Self::CompletingRebalance => "completing_rebalance",
            Self::Stable => "stable",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group in detail, as `describe` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetails {
    /// The group.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// Its generation (0 before the first completed join).
    pub generation: u32,
    /// Who assigns, while it has members.
    pub mode: Option<AssignmentMode>,
    /// The protocol of the current generation.
    pub protocol: Option<String>,
    /// The leader of the current generation.
    pub leader: Option<String>,
    /// Its members, by member id.
    pub members: Vec<MemberDetails>,
}

/// A member in detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDetails {
    /// Its id.
    pub member_id: String,
    /// Its client's name.
    pub client_id: String,
    /// Its session timeout, in milliseconds.
    pub session_timeout_ms: u32,
    /// Its rebalance timeout, in milliseconds.
    pub rebalance_timeout_ms: u32,
    /// Its metadata for the group's protocol (empty before a protocol is chosen).
    pub metadata: Bytes,
    /// Its assignment as a sync returns it (empty until assigned).
    pub assignment: Bytes,
    /// Its partitions, when the node computed them (node mode).
    pub partitions: Vec<TopicPartitions>,
}

impl GroupDetails {
    /// The wire description, with the committed offsets the node keeps.
    pub fn into_wire(self, offsets: Vec<CommittedOffset>) -> GroupDescription {
        GroupDescription {
            group: self.group,
            state: self.state.as_str().to_string(),
            generation: self.generation,
            protocol: self.protocol,
            members: self
                .members
                .into_iter()
                .map(|member| MemberDescription {
                    member_id: member.member_id,
                    client_id: member.client_id,
                    assignment: member.partitions,
                })
                .collect(),
            offsets,
        }
    }
}

/// Counters and gauges for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups held, with or without members.
    pub groups: u64,
    /// Groups in the stable state.
    pub groups_stable: u64,
    /// Members of all groups.
    pub members: u64,
    /// Joins and syncs waiting for an answer.
    pub requests_pending: u64,
    /// Join phases completed (generations formed), since start.
    pub rebalances_completed: u64,
    /// Members removed because their session timed out, since start.
    pub sessions_expired: u64,
    /// Members removed because they did not rejoin or sync within the
    /// rebalance timeout, or their pending join was cancelled, since start.
    pub members_dropped: u64,
}
