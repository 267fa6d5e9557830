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
        // A full data volume: nothing was written (the append rolled
        // back); writes work again once there is room.
        StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            ErrorCode::PartitionUnavailable
        }
        StorageError::Io { .. }
        | StorageError::IncarnationMismatch { .. }
        | StorageError::Config { .. } => ErrorCode::Internal,
    };
    WireError::new(code, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_volume_is_a_partition_problem_and_other_io_errors_are_internal() {
        let io = |kind| StorageError::Io {
            op: "write",
            path: "/data/orders/0/0.log".into(),
            source: std::io::Error::new(kind, "boom"),
        };
        let full = storage_error(io(std::io::ErrorKind::StorageFull));
        assert_eq!(full.code, ErrorCode::PartitionUnavailable);
        assert!(
            full.message.contains("/data/orders/0/0.log"),
            "{}",
            full.message
        );
        assert_eq!(
            storage_error(io(std::io::ErrorKind::PermissionDenied)).code,
            ErrorCode::Internal
        );
    }
}
