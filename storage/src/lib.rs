//! meshgate-storage: the crash-safe, segmented, append-only log that holds
//! each partition of each topic on a gateway, with the per-origin
//! bookkeeping that the conflict-free offset mapping needs.
//!
//! # Layout
//! - [`types`]: regions, origin streams and coordinates, offsets, hybrid
//!   logical timestamps, records.
//! - [`vector`]: version vectors (origin -> records held), merged by max.
//! - [`batch`]: the record batch codec: length, CRC32C, format version,
//!   one origin run per batch.
//! - `segment`, `index`, `scan`: segment files named by base offset, their
//!   sparse offset, time and origin-checkpoint indexes, sequential scans.
//! - [`log`]: the partition log: append, roll, recovery, reads by offset and
//!   timestamp, prefix vectors and origin lookups, retention.
//! - [`writer`]: the async shell: shared access and group commit.
//! - [`fs`]: the file-system seam, real ([`StdFs`]) and simulated
//!   ([`MemFs`], which loses unsynced data and tears writes on a crash).
//! - [`config`]: per-log configuration and durability policy.
//!
//! # Driving it
//! ```
//! # async fn example() -> Result<(), meshgate_storage::StorageError> {
//! use std::sync::Arc;
//! use meshgate_storage::*;
//!
//! let fs = Arc::new(MemFs::new());
//! let log = Log::open(fs, "/data/orders-0", LogConfig::default(), None, 0)?;
//! let log = SharedLog::new(log);
//! let origin = OriginStream { region: RegionId::parse("us-east").unwrap(), incarnation: Incarnation(1) };
//! let info = log.append_local(&origin, &[Record::from_value("hello")], 0)?.durable().await?;
//! let chunk = log.read(info.base_offset, 1 << 20)?;
//! assert_eq!(chunk.records_from(info.base_offset)?[0].record.value, "hello");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod config;
mod error;
pub mod fs;
mod index;
pub mod log;
#[cfg(feature = "mutation")]
#[doc(hidden)]
pub mod mutation;
mod scan;
mod segment;
pub mod types;
pub mod vector;
pub mod writer;

pub use batch::{Batch, BatchHeader};
pub use config::{Durability, LogConfig, Retention};
pub use error::{NameError, Result, StorageError};
pub use fs::{CrashMode, FileHandle, FileSystem, MemFs, OpenMode, StdFs};
pub use log::{AppendInfo, AppendOutcome, Log, ReadChunk, Resume, RetentionReport, SeqLocation};
pub use types::{
    Header, HybridClock, Incarnation, LocalOffset, OriginCoord, OriginSeq, OriginStream, Record,
    RegionId, StoredRecord, Timestamp, validate_name,
};
pub use vector::VersionVector;
pub use writer::{Pending, SharedLog};
