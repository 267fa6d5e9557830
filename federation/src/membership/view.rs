//! What the membership core hands out: the member view, events, counters,
//! and the outputs a driver must act on (datagrams and timers).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::auth::DropCounters;
use super::cluster_config::ConfigChange;
use super::identity::{MemberId, NodeId};
use super::metadata::MemberMetadata;

/// How this node sees a member.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time. Still
    /// treated as alive.
    Suspect,
    /// Declared down by the failure detector.
    Down,
    /// Announced that it was leaving, then went down.
    Left,
}

impl MemberState {
    /// Whether links to the member should be kept (alive or suspect).
    pub fn is_active(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// One row of the membership view.
#[derive(Clone, PartialEq, Debug)]
pub struct MemberView {
    /// Identity: node, region, incarnation, addresses.
    pub id: MemberId,
    /// Current state.
    pub state: MemberState,
    /// SWIM's refutation counter for this identity; 0 on this node's own
    /// row (foca keeps its own private).
    pub swim_incarnation: u16,
    /// When the last authentic packet from its gossip address arrived, in
    /// the caller's clock; `None` for this node and for members only heard
    /// of through others.
    pub last_heard: Option<Instant>,
    /// Its latest metadata and version, once received.
    pub metadata: Option<(u64, MemberMetadata)>,
    /// Whether this row is this node.
    pub local: bool,
}

/// Something that changed, in the order it was learnt.
#[derive(Clone, PartialEq, Debug)]
pub enum MembershipEvent {
    /// A member became active (joined, or came back under a new identity
    /// after being down).
    MemberUp(MemberId),
    /// A member was declared down by the failure detector.
    MemberDown(MemberId),
    /// A member left gracefully.
    MemberLeft(MemberId),
    /// A newer identity replaced an older one at the same gossip address (a
    /// restart or a renewal); `MemberUp` follows if the old one was down.
    MemberRenamed {
        /// The identity that was replaced.
        previous: MemberId,
        /// The identity that replaced it.
        current: MemberId,
    },
    /// A member published new metadata.
    MetadataChanged(NodeId),
    /// A cluster configuration entry changed (a delete has `value: None`).
    ConfigChanged(ConfigChange),
    /// This node is known by at least one active member.
    Joined,
    /// This node knows no active member any more.
    Isolated,
    /// This node took a new identity (higher incarnation) after the cluster
    /// declared it down or after it found itself isolated.
    IdentityRenewed(MemberId),
}

/// Counters of the membership core, exported as metrics by the shell.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct MembershipStats {
    /// Datagrams handed to the core.
    pub packets_received: u64,
    /// Datagrams the core produced.
    pub packets_sent: u64,
    /// Bytes handed to the core.
    pub bytes_received: u64,
    /// Bytes the core produced.
    pub bytes_sent: u64,
    /// Datagrams the driver failed to send.
    pub send_failures: u64,
    /// Incoming datagrams dropped, by reason.
    pub dropped: DropCounters,
    /// Members (this node excluded) alive.
    pub members_alive: u64,
    /// Members suspect.
    pub members_suspect: u64,
    /// Members down.
    pub members_down: u64,
    /// Members that left.
    pub members_left: u64,
    /// Live configuration entries.
    pub config_entries: u64,
    /// Configuration changes or metadata refused because a table was full.
    pub refused_table_full: u64,
    /// Events lost because a queue was full.
    pub events_dropped: u64,
    /// Errors foca reported on timers or local operations.
    pub swim_errors: u64,
    /// Times this node renewed its identity.
    pub identity_renewals: u64,
    /// Anti-entropy rounds started.
    pub sync_rounds: u64,
    /// Records learnt through anti-entropy rather than gossip.
    pub sync_records_applied: u64,
}

/// A datagram to send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The sealed datagram.
    pub payload: Bytes,
}

/// A timer the driver must hand back through
/// [`super::Membership::handle_timer`] once its delay has passed. Opaque.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MembershipTimer(pub(crate) TimerKind);

#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum TimerKind {
    /// A foca timer, valid only for the foca instance of `epoch`.
    Swim {
        epoch: u32,
        timer: foca::Timer<MemberId>,
    },
    /// Re-announce to the seeds, if `token` is still current.
    Announce { token: u64 },
    /// Anti-entropy round and housekeeping.
    Sync,
}
