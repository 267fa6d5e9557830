//! Errors of the storage crate. Each variant's doc says what it does to the
//! log's state.

use std::io;
use std::path::PathBuf;

use crate::types::{Incarnation, LocalOffset, OriginStream};

/// A name (region, topic, queue) that does not follow the naming rule.
/// Nothing is created from an invalid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// What was being named.
        kind: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{kind} name is {bytes} bytes long; the limit is {bytes_max}")]
    TooLong {
        /// What was being named.
        kind: &'static str,
        /// Its length.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The name does not start with a letter or digit.
    #[error("{kind} name must start with an ASCII letter or digit")]
    BadStart {
        /// What was being named.
        kind: &'static str,
    },
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("{kind} name holds {character:?}; allowed are ASCII letters, digits, '-', '_' and '.'")]
    BadCharacter {
        /// What was being named.
        kind: &'static str,
        /// The first offending character.
        character: char,
    },
}

/// Everything that can go wrong in the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system call failed. For appends the log is rolled back to its
    /// state before the call when possible; otherwise the log fails (see
    /// [`StorageError::Failed`]).
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Bytes that should hold a record batch do not: bad length, version,
    /// checksum or record encoding. Raised when decoding untrusted input or
    /// reading a damaged file; nothing is changed.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// What is wrong.
        reason: String,
    },

    /// A segment other than the active one is damaged. Raised by open: the
    /// log is quarantined (a `quarantine.txt` note is written beside it and
    /// later opens fail with [`StorageError::Quarantined`]) and its files are
    /// left untouched for an operator. Other logs are unaffected.
    #[error("corrupt segment {path} at byte {position}: {reason}")]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        position: u64,
        /// What is wrong.
        reason: String,
    },

    /// The log was quarantined earlier and is not opened until an operator
    /// removes `quarantine.txt`. Nothing is changed.
    #[error("log {dir} is quarantined: {reason}")]
    Quarantined {
        /// The log's directory.
        dir: PathBuf,
        /// The reason recorded when it was quarantined.
        reason: String,
    },

    /// An append of origin `origin` started at `got` but the log holds
    /// `expected` records of it: appending would leave a gap. Nothing is
    /// written.
    #[error("gap in origin {origin}: expected seq {expected}, got {got}")]
    Gap {
        /// The origin stream.
        origin: OriginStream,
        /// The next seq the log accepts.
        expected: u64,
        /// The seq the append started at.
        got: u64,
    },

    /// A batch belongs to another incarnation of the topic. Nothing is written.
    #[error("batch of incarnation {got} appended to a log of incarnation {expected}")]
    IncarnationMismatch {
        /// The log's incarnation.
        expected: Incarnation,
        /// The batch's.
        got: Incarnation,
    },

    /// A batch is larger than the log accepts. Nothing is written.
    #[error("batch of {bytes} bytes exceeds the limit of {bytes_max}")]
    BatchTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },

    /// An append with no records. Nothing is written.
    #[error("batch holds no records")]
    EmptyBatch,

    /// A read asked for an offset outside the retained range. Nothing changes.
    #[error("offset {requested} is outside the log's range [{start}, {end})")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: LocalOffset,
        /// The earliest retained offset.
        start: LocalOffset,
        /// The next offset to be written.
        end: LocalOffset,
    },

    /// The log stopped accepting writes after an unrecoverable failure (an
    /// fsync or a rollback failed, so what is on disk is unknown). Reads of
    /// what was durable still work; the process should stop and restart,
    /// when recovery rebuilds a consistent state.
    #[error("log failed: {reason}")]
    Failed {
        /// The first failure.
        reason: String,
    },

    /// A configuration value is out of its limits. Nothing is opened.
    #[error("invalid log configuration: {field}: {problem}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// The log was closed. Nothing changes.
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidBatch {
            reason: reason.into(),
        }
    }
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
