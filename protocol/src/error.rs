//! Error codes on the wire, and the errors of encoding and decoding frames.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a request failed, as a stable number on the wire. New codes may be
/// added; a peer that does not know a code reads it as [`ErrorCode::Unknown`].
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A code this side does not know.
    Unknown = 0,
    /// The frame could not be decoded: bad MessagePack, unknown message
    /// type, missing fields. Nothing was done.
    MalformedFrame = 1,
    /// The frame is larger than the receiver's limit. Nothing was done.
    FrameTooLarge = 2,
    /// The protocol version is not supported. Nothing was done.
    UnsupportedVersion = 3,
    /// A request came before the `Hello` handshake. Nothing was done.
    HandshakeRequired = 4,
    /// A topic, group or queue name breaks the naming rule.
    InvalidName = 5,
    /// An argument or configuration value is out of its limits.
    InvalidArgument = 6,
    /// The topic does not exist.
    UnknownTopic = 7,
    /// A topic with that name exists already.
    TopicExists = 8,
    /// The partition does not exist in the topic.
    InvalidPartition = 9,
    /// The offset is outside the partition's retained range.
    OffsetOutOfRange = 10,
    /// A record or batch is larger than allowed.
    RecordTooLarge = 11,
    /// The node is saturated; retry after a pause.
    Busy = 12,
    /// The request did not complete in time; it may or may not have taken effect.
    Timeout = 13,
    /// An idempotent producer skipped a sequence number.
    OutOfOrderSequence = 14,
    /// The group member is not known (expired or never joined).
    UnknownMember = 16,
    /// The request carries an old group generation.
    IllegalGeneration = 17,
    /// The group is rebalancing: rejoin.
    RebalanceInProgress = 18,
    /// The members of a group share no assignment protocol.
    InconsistentProtocol = 19,
    /// The partition is quarantined or its log failed; other partitions work.
    PartitionUnavailable = 20,
    /// The node is shutting down; retry on another node.
    ShuttingDown = 22,
    /// The consumer group is now consumed in another region (its lease
    /// moved there); this member must stop.
    Fenced = 23,
    /// A bug or an unexpected failure on the node.
    Internal = 24,
    /// The dispatch queue (or dead-letter queue) does not exist.
    UnknownQueue = 25,
    /// No message is leased under this id (already settled, or never issued).
    UnknownLease = 26,
    /// The lease ran out before the ack or nack; the message is delivered again.
    LeaseExpired = 27,
    /// A dispatch filter does not parse (the message says where and why).
    InvalidFilter = 28,
}

impl ErrorCode {
    /// True when retrying the same request later may succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::Busy | Self::Timeout | Self::RebalanceInProgress | Self::ShuttingDown
        )
    }

    /// The code's number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The code for a number, [`ErrorCode::Unknown`] if unknown.
    pub fn from_number(number: u16) -> Self {
        match number {
            1 => Self::MalformedFrame,
            2 => Self::FrameTooLarge,
            3 => Self::UnsupportedVersion,
            4 => Self::HandshakeRequired,
            5 => Self::InvalidName,
            6 => Self::InvalidArgument,
            7 => Self::UnknownTopic,
            8 => Self::TopicExists,
            9 => Self::InvalidPartition,
            10 => Self::OffsetOutOfRange,
            11 => Self::RecordTooLarge,
            12 => Self::Busy,
            13 => Self::Timeout,
            14 => Self::OutOfOrderSequence,
            16 => Self::UnknownMember,
            17 => Self::IllegalGeneration,
            18 => Self::RebalanceInProgress,
            19 => Self::InconsistentProtocol,
            20 => Self::PartitionUnavailable,
            22 => Self::ShuttingDown,
            23 => Self::Fenced,
            24 => Self::Internal,
            25 => Self::UnknownQueue,
            26 => Self::UnknownLease,
            27 => Self::LeaseExpired,
            28 => Self::InvalidFilter,
            _ => Self::Unknown,
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.number())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(ErrorCode::from_number)
    }
}

/// An error as sent in a response: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What exactly went wrong, for people.
    pub message: String,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl fmt::Display) -> Self {
        Self {
            code,
            message: message.to_string(),
        }
    }
}

/// Failures of reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The stream failed. The stream is unusable; nothing was decoded.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame announced more bytes than the limit; its body was not read.
    /// The stream is unusable (its position is inside the frame).
    #[error("frame of {bytes} bytes exceeds the limit of {bytes_max}")]
    FrameTooLarge {
        /// Announced size.
        bytes: u64,
        /// The limit.
        bytes_max: u64,
    },
    /// The stream ended inside a frame.
    #[error("stream ended {missing} bytes before the end of the frame")]
    Truncated {
        /// Bytes missing.
        missing: u64,
    },
    /// The frame's bytes are not a valid message. The stream stays usable.
    #[error("malformed frame: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// A message could not be encoded (a bug: every message type encodes).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

impl ProtocolError {
    /// The wire error to answer this failure with.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed(_) | Self::Truncated { .. } => ErrorCode::MalformedFrame,
            Self::Io(_) | Self::Encode(_) => ErrorCode::Internal,
        };
        WireError::new(code, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_numbers_stay_readable() {
        let mut known = 0;
        for number in 0..1000 {
            let code = ErrorCode::from_number(number);
            if code != ErrorCode::Unknown {
                assert_eq!(code.number(), number);
                known += 1;
            }
        }
        assert_eq!(
            known, 26,
            "every code but Unknown maps back from its number"
        );
        assert_eq!(ErrorCode::from_number(9999), ErrorCode::Unknown);
    }
}
