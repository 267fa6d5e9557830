//! The errors of queue operations.

use meshgate_protocol::{ErrorCode, WireError};

use super::filter::FilterError;

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// No queue (or dead-letter queue) has this name. Does not affect state.
    #[error("queue {0} is not known")]
    UnknownQueue(String),
    /// No message is leased under this id: never issued, already acked or
    /// nacked, or issued before a restart. Does not affect state.
    #[error("lease {0} is not known (already settled, or never issued)")]
    UnknownLease(u64),
    /// The lease ran out before the ack or nack came: the message is (or
    /// will be) delivered again, or was dead-lettered. Does not affect state.
    #[error("lease {0} expired before it was settled; the message is delivered again")]
    LeaseExpired(u64),
    /// A filter does not parse. Nothing is created.
    #[error("invalid filter: {0}")]
    InvalidFilter(#[from] FilterError),
    /// A name, option or argument is out of its limits. Nothing changes.
    #[error("{0}")]
    InvalidArgument(String),
}

impl QueueError {
    /// The code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownQueue(_) => ErrorCode::UnknownQueue,
            Self::UnknownLease(_) => ErrorCode::UnknownLease,
            Self::LeaseExpired(_) => ErrorCode::LeaseExpired,
            Self::InvalidFilter(_) => ErrorCode::InvalidFilter,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
        }
    }
}

impl From<QueueError> for WireError {
    fn from(error: QueueError) -> Self {
        WireError::new(error.code(), error)
    }
}
