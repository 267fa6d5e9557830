//! Why a group request failed, and the wire code each failure maps to.

use meshgate_protocol::{ErrorCode, WireError};
use meshgate_storage::NameError;

/// A refused group request. Unless a variant says otherwise, the request
/// changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group name breaks the naming rule. Does not affect state.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A numeric argument is outside its limits. Does not affect state.
    #[error("{field} is {value}; allowed are {min}..={max}")]
    OutOfRange {
        /// The request field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A string, list or byte field is larger than allowed. Does not affect
    /// state.
    #[error("{what} is {size} long; the limit is {size_max}")]
    TooLarge {
        /// What was too large, with its unit.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        size_max: usize,
    },
    /// A request argument is malformed (a node-computed protocol whose
    /// metadata is not a subscription, a duplicate assignment, ...). Does
    /// not affect state.
    #[error("{0}")]
    Malformed(String),
    /// The member (or the group) is not known: it never joined, left, or
    /// was removed. Does not affect state; the client joins again without
    /// a member id.
    #[error("member {member:?} is not in group {group:?}")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id sent.
        member: String,
    },
    /// A standalone commit (without generation and member id) for a group
    /// that has members: it would race their commits. Does not affect state.
    #[error(
        "group {group:?} has active members; commit as one of them, with its generation and member id"
    )]
    ActiveGroup {
        /// The group.
        group: String,
    },
    /// The request carries a generation other than the group's current
    /// one. Does not affect state; the client rejoins.
    #[error("group {group:?} is at generation {current}, not {generation}")]
    IllegalGeneration {
        /// The group.
        group: String,
        /// The generation sent.
        generation: u32,
        /// The group's generation.
        current: u32,
    },
    /// The group is rebalancing: the member must rejoin. A heartbeat that
    /// gets it still refreshed the member's session.
    #[error("group {group:?} is rebalancing; rejoin")]
    RebalanceInProgress {
        /// The group.
        group: String,
    },
    /// A pending join or sync was replaced by a newer one of the same
    /// member; the newer request carries on. Only answers the old request.
    #[error("request of member {member:?} superseded by a newer one of the same member")]
    Superseded {
        /// The member.
        member: String,
    },
    /// The member's protocols (or its assignment mode) share nothing with
    /// the group's other members. Does not affect state.
    #[error("group {group:?}: {reason}")]
    InconsistentProtocol {
        /// The group.
        group: String,
        /// What does not match.
        reason: String,
    },
    /// The coordinator holds `groups_max` groups with members. Does not
    /// affect state; retry later.
    #[error("the node coordinates {groups_max} groups already")]
    TooManyGroups {
        /// The limit.
        groups_max: u32,
    },
    /// The group holds `members_per_group_max` members. Does not affect
    /// state; retry later.
    #[error("group {group:?} has {members_max} members already")]
    GroupFull {
        /// The group.
        group: String,
        /// The limit.
        members_max: u32,
    },
    /// The coordinator's driver stopped; the request may or may not have
    /// taken effect before it did.
    #[error("the group coordinator is shutting down")]
    ShuttingDown,
}

impl GroupError {
    /// The wire code that reports this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName(_) => ErrorCode::InvalidName,
            Self::OutOfRange { .. } | Self::TooLarge { .. } | Self::Malformed(_) => {
                ErrorCode::InvalidArgument
            }
            // Kafka answers a standalone commit to an active group with
            // UNKNOWN_MEMBER_ID.
            Self::UnknownMember { .. } | Self::ActiveGroup { .. } => ErrorCode::UnknownMember,
            Self::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            // A superseded request's client has sent a newer one already;
            // should it still listen, rejoining is the right reaction.
            Self::RebalanceInProgress { .. } | Self::Superseded { .. } => {
                ErrorCode::RebalanceInProgress
            }
            Self::InconsistentProtocol { .. } => ErrorCode::InconsistentProtocol,
            // No dedicated code exists (Kafka's GROUP_MAX_SIZE_REACHED);
            // both clear up when members leave.
            Self::TooManyGroups { .. } | Self::GroupFull { .. } => ErrorCode::Busy,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

impl From<GroupError> for WireError {
    fn from(error: GroupError) -> Self {
        WireError::new(error.code(), &error)
    }
}
