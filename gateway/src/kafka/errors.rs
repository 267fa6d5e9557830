//! Node errors as Kafka error codes. Kafka codes are the
//! [`kafka_protocol::ResponseError`] enum; which one a node error becomes
//! depends a little on what was asked (a name error is about a topic in
//! CreateTopics and about a group in JoinGroup).

use kafka_protocol::ResponseError;
use meshgate_protocol::{ErrorCode, WireError};

use super::records::RecordsError;

/// What kind of request an error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Produce, Fetch, ListOffsets: data in a partition.
    Data,
    /// Metadata, CreateTopics, DeleteTopics: topics.
    Topic,
    /// Group membership and committed offsets.
    Group,
}

/// The Kafka error for a node error.
pub fn from_wire(error: &WireError, context: Context) -> ResponseError {
    use ResponseError as K;
    match (error.code, context) {
        (ErrorCode::UnknownTopic | ErrorCode::InvalidPartition, _) => K::UnknownTopicOrPartition,
        (ErrorCode::TopicExists, _) => K::TopicAlreadyExists,
        (ErrorCode::InvalidName, Context::Group) => K::InvalidGroupId,
        (ErrorCode::InvalidName, _) => K::InvalidTopicException,
        (ErrorCode::InvalidArgument, Context::Topic) => K::InvalidRequest,
        (ErrorCode::InvalidArgument, Context::Group) => K::InvalidSessionTimeout,
        (ErrorCode::InvalidArgument, Context::Data) => K::InvalidRequest,
        (ErrorCode::OffsetOutOfRange, _) => K::OffsetOutOfRange,
        (ErrorCode::RecordTooLarge | ErrorCode::FrameTooLarge, _) => K::MessageTooLarge,
        (ErrorCode::Busy, Context::Group) => K::GroupMaxSizeReached,
        (ErrorCode::Busy | ErrorCode::Timeout, _) => K::RequestTimedOut,
        (ErrorCode::OutOfOrderSequence, _) => K::OutOfOrderSequenceNumber,
        (ErrorCode::UnknownMember, _) => K::UnknownMemberId,
        (ErrorCode::IllegalGeneration, _) => K::IllegalGeneration,
        (ErrorCode::RebalanceInProgress, _) => K::RebalanceInProgress,
        (ErrorCode::InconsistentProtocol, _) => K::InconsistentGroupProtocol,
        (ErrorCode::PartitionUnavailable, _) => K::KafkaStorageError,
        (ErrorCode::ShuttingDown, Context::Group) => K::CoordinatorNotAvailable,
        (ErrorCode::ShuttingDown, _) => K::NotLeaderOrFollower,
        // The group is consumed in another region now: this member must
        // stop, which is what clients do on a fenced static member.
        (ErrorCode::Fenced, _) => K::FencedInstanceId,
        (ErrorCode::UnsupportedVersion, _) => K::UnsupportedVersion,
        (ErrorCode::MalformedFrame | ErrorCode::HandshakeRequired, _) => K::InvalidRequest,
        // Dispatch queues have no Kafka API; these never reach a Kafka client.
        (
            ErrorCode::UnknownQueue
            | ErrorCode::UnknownLease
            | ErrorCode::LeaseExpired
            | ErrorCode::InvalidFilter,
            _,
        ) => K::InvalidRequest,
        (ErrorCode::Internal | ErrorCode::Unknown, _) => K::UnknownServerError,
    }
}

/// The Kafka error for refused record data.
pub fn from_records(error: &RecordsError) -> ResponseError {
    match error {
        RecordsError::Corrupt(_) => ResponseError::CorruptMessage,
        RecordsError::Unsupported(_) => ResponseError::InvalidRecord,
        RecordsError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
        RecordsError::TooLarge(_) => ResponseError::MessageTooLarge,
    }
}

/// The code of an optional error (0 for none).
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |error| error.code())
}
