//! How failures inside the node reach clients: as typed wire errors.

use meshgate_protocol::{ErrorCode, WireError};
use meshgate_storage::StorageError;

/// The wire error a client gets for a storage failure.
pub fn storage_error(error: StorageError) -> WireError {
    let code = match &error {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::BatchTooLarge { .. } => ErrorCode::RecordTooLarge,
        StorageError::EmptyBatch | StorageError::InvalidBatch { .. } | StorageError::Gap { .. } => {
            ErrorCode::InvalidArgument
        }
        StorageError::Failed { .. }
        | StorageError::Quarantined { .. }
        | StorageError::CorruptSegment { .. }
        | StorageError::Closed => ErrorCode::PartitionUnavailable,
        StorageError::Io { .. }
        | StorageError::IncarnationMismatch { .. }
        | StorageError::Config { .. } => ErrorCode::Internal,
    };
    WireError::new(code, error)
}
