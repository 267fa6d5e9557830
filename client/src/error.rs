//! The client's errors.

use meshgate_federation::transport::TransportError;
use meshgate_protocol::{ErrorCode, ProtocolError, WireError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is invalid. Nothing was started.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// No seed answered: none resolved, or every connection attempt failed
    /// (the last failure is kept). No connection is open; the next request
    /// tries again.
    #[error("cannot connect to any of {seeds}: {reason}")]
    Connect {
        /// The seeds tried.
        seeds: String,
        /// Why the last one failed.
        reason: String,
    },
    /// The CA certificate could not be read or trusted, or TLS could not be
    /// set up. Nothing was started.
    #[error("TLS setup: {0}")]
    Tls(#[source] TransportError),
    /// The connection was lost while the request was in flight: it may or
    /// may not have taken effect. The client reconnects on the next attempt.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The node's answer could not be decoded, or broke the protocol (a
    /// reply of the wrong kind). The connection stays usable.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A frame could not be read or written.
    #[error("malformed frame: {0}")]
    Malformed(#[source] ProtocolError),
    /// The node refused the request with a typed error; see [`ClientError::code`].
    /// What it did to the node's state is in the code's documentation.
    #[error("server error {}: {}", .0.code.number(), .0)]
    Server(WireError),
    /// The request did not complete in time: it may or may not have taken effect.
    #[error("timed out after {millis} ms: {what}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// How long was waited.
        millis: u64,
    },
    /// A request or record is larger than the node accepts. Nothing was sent.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The producer or consumer was closed; nothing was done.
    #[error("closed: {0}")]
    Closed(&'static str),
    /// A consumer call that needs a group was made without one, or a group
    /// call in the wrong state. Nothing was done.
    #[error("invalid use: {0}")]
    InvalidUse(String),
}

impl ClientError {
    /// The node's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server(error) => Some(error.code),
            _ => None,
        }
    }

    /// True when the same request may succeed if tried again: a retriable
    /// server code, a lost connection or a timeout.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Server(error) => error.code.is_retriable(),
            Self::ConnectionLost(_) | Self::Timeout { .. } | Self::Connect { .. } => true,
            _ => false,
        }
    }
}

impl ClientError {
    /// A copy to hand to each record of a failed batch: variants that hold
    /// non-cloneable causes keep their message.
    pub(crate) fn share(&self) -> ClientError {
        match self {
            Self::Config(reason) => Self::Config(reason.clone()),
            Self::Connect { seeds, reason } => Self::Connect {
                seeds: seeds.clone(),
                reason: reason.clone(),
            },
            Self::ConnectionLost(reason) => Self::ConnectionLost(reason.clone()),
            Self::Protocol(reason) => Self::Protocol(reason.clone()),
            Self::Server(error) => Self::Server(error.clone()),
            Self::Timeout { what, millis } => Self::Timeout {
                what,
                millis: *millis,
            },
            Self::TooLarge(reason) => Self::TooLarge(reason.clone()),
            Self::Closed(what) => Self::Closed(what),
            Self::InvalidUse(reason) => Self::InvalidUse(reason.clone()),
            Self::Tls(_) | Self::Malformed(_) => Self::Protocol(self.to_string()),
        }
    }
}

impl From<WireError> for ClientError {
    fn from(error: WireError) -> Self {
        Self::Server(error)
    }
}
