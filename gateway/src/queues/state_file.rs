//! The durable state of a domain: one small file per queue, replaced
//! atomically (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory), so a crash leaves either the old or the new
//! state, never a mix.
//!
//! Format: `MGQS`, a little-endian u16 format version, a u32 CRC32C of the
//! body, a u32 body length, then the body ([`DomainState`] as MessagePack).

use std::io;
use std::path::Path;

use meshgate_storage::{FileSystem, OpenMode, fs::write_atomically};

use super::domain::DomainState;

const MAGIC: &[u8; 4] = b"MGQS";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 4 + 2 + 4 + 4;
/// Largest state file read back, in bytes (64 MiB: about four million ack
/// intervals or explicit messages).
pub const STATE_BYTES_MAX: usize = 64 << 20;

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid state file (bad magic, version, checksum or
    /// body). The caller decides what to do; the file is left as it is.
    #[error("state file {path} is corrupt: {problem}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Encodes a state.
pub fn encode(state: &DomainState) -> Vec<u8> {
    // Plain structs of numbers, byte strings and maps always encode.
    let body = rmp_serde::to_vec_named(state).expect("a queue state encodes");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Decodes a state; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<DomainState, String> {
    if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
        return Err("no state file header".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this node reads {VERSION}"
        ));
    }
    let crc = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let length = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    let body = &bytes[HEADER_BYTES..];
    if body.len() != length {
        return Err(format!(
            "body is {} bytes, header says {length}",
            body.len()
        ));
    }
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    rmp_serde::from_slice(body).map_err(|error| format!("body: {error}"))
}

/// Writes `state` to `path` atomically and durably.
pub fn save(fs: &dyn FileSystem, path: &Path, state: &DomainState) -> Result<(), StateFileError> {
    write_atomically(fs, path, &encode(state)).map_err(|source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads the state at `path`; `Ok(None)` when there is none.
pub fn load(fs: &dyn FileSystem, path: &Path) -> Result<Option<DomainState>, StateFileError> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let io_error = |source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = fs.open(path, OpenMode::Existing).map_err(io_error)?;
    if file.len().map_err(io_error)? > STATE_BYTES_MAX as u64 {
        return Err(StateFileError::Corrupt {
            path: path.display().to_string(),
            problem: format!("larger than {STATE_BYTES_MAX} bytes"),
        });
    }
    let bytes = file.read_all().map_err(io_error)?;
    decode(&bytes)
        .map(Some)
        .map_err(|problem| StateFileError::Corrupt {
            path: path.display().to_string(),
            problem,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queues::ack_set::AckSet;
    use crate::queues::queue::{Incoming, MessageId};
    use meshgate_storage::{CrashMode, MemFs};

    fn sample() -> DomainState {
        let mut acks = AckSet::starting_at(10);
        acks.insert(12);
        let mut state = DomainState::default();
        state.main.acks.insert(0, acks);
        state.dead.explicit.push(Incoming {
            id: MessageId {
                partition: 0,
                offset: 11,
            },
            key: Some(bytes::Bytes::from_static(b"k")),
            routed_ms: 5,
            not_before_ms: 0,
            attempts: 0,
        });
        state.dropped = 2;
        state
    }

    #[test]
    fn a_state_round_trips_through_the_file() {
        let fs = MemFs::new();
        let path = Path::new("/q/orders.inventory.state");
        fs.create_dir_all(Path::new("/q")).unwrap();
        assert!(load(&fs, path).unwrap().is_none());
        save(&fs, path, &sample()).unwrap();
        assert_eq!(load(&fs, path).unwrap(), Some(sample()));
    }

    #[test]
    fn a_crash_keeps_the_last_synced_state() {
        let fs = MemFs::new();
        let path = Path::new("/q/a.state");
        fs.create_dir_all(Path::new("/q")).unwrap();
        save(&fs, path, &sample()).unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(load(&fs, path).unwrap(), Some(sample()));
    }

    /// The flush policy end to end on a file system that loses unsynced
    /// data: acks written before the crash are never delivered again, acks
    /// after the last write are (at-least-once), unacked messages all come
    /// back, leases in flight included.
    #[test]
    fn after_a_crash_only_acks_since_the_last_write_are_delivered_again() {
        use crate::queues::domain::{Domain, Side};
        let fs = MemFs::new();
        let path = Path::new("/q/orders.billing.state");
        fs.create_dir_all(Path::new("/q")).unwrap();
        let message = |offset| Incoming {
            id: MessageId {
                partition: 0,
                offset,
            },
            key: None,
            routed_ms: 0,
            not_before_ms: 0,
            attempts: 0,
        };
        let mut domain = Domain::new(Default::default(), 1);
        domain.handle_start(0, 0);
        (0..10).for_each(|offset| domain.handle_routed(0, message(offset)));
        let deliveries = domain.handle_receive(Side::Main, 0, 10, None);
        for delivery in &deliveries[..5] {
            domain.handle_ack(Side::Main, 1, delivery.lease).unwrap();
        }
        save(&fs, path, &domain.state()).unwrap();
        for delivery in &deliveries[5..8] {
            domain.handle_ack(Side::Main, 2, delivery.lease).unwrap();
        }
        fs.crash(CrashMode::LoseUnsynced);
        let state = load(&fs, path).unwrap().expect("written before the crash");
        let mut restored = Domain::restore(Default::default(), 2, state, 10);
        (0..10).for_each(|offset| restored.handle_routed(10, message(offset)));
        let again: Vec<u64> = restored
            .handle_receive(Side::Main, 10, 20, None)
            .iter()
            .map(|delivery| delivery.id.offset)
            .collect();
        assert_eq!(again, vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn every_corrupted_byte_is_detected() {
        let bytes = encode(&sample());
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 0x40;
            assert!(
                decode(&corrupt).is_err(),
                "flip at byte {index} went unnoticed"
            );
        }
        for length in 0..bytes.len() {
            assert!(
                decode(&bytes[..length]).is_err(),
                "cut at {length} went unnoticed"
            );
        }
    }
}
