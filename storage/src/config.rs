//! Per-log configuration: segment sizes, index density, durability and
//! retention. Every field documents its unit, default and limits.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync after every batch of appends; concurrent appends share one
    /// fsync (group commit). Acknowledged records survive power loss.
    EveryBatch,
    /// fsync every `n` milliseconds while there is unsynced data; an append
    /// is acknowledged after the fsync that covers it. Acknowledged records
    /// survive power loss. Limits: 1..=60_000.
    IntervalMs(u64),
    /// Never fsync except when a segment rolls; acknowledge after the write
    /// reaches the page cache. Survives a process crash but not power loss,
    /// and a record read by a consumer may vanish after power loss. Opt-in.
    Never,
}

impl Default for Durability {
    fn default() -> Self {
        Self::IntervalMs(5)
    }
}

impl Durability {
    /// Parses `every-batch`, `never`, `5ms`, or `interval:5`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || StorageError::Config {
            field: "durability",
            problem: format!("{text:?} is not one of every-batch, never, <n>ms"),
        };
        let policy = match text.trim() {
            "every-batch" | "every_batch" | "always" => Self::EveryBatch,
            "never" => Self::Never,
            other => {
                let digits = other
                    .strip_suffix("ms")
                    .or_else(|| other.strip_prefix("interval:"))
                    .ok_or_else(bad)?;
                Self::IntervalMs(digits.trim().parse().map_err(|_| bad())?)
            }
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(self) -> Result<()> {
        if let Self::IntervalMs(ms) = self
            && !(1..=60_000).contains(&ms)
        {
            return Err(StorageError::Config {
                field: "durability",
                problem: format!("interval {ms} ms is outside 1..=60000"),
            });
        }
        Ok(())
    }

    /// True when an acknowledgement waits for an fsync.
    pub fn waits_for_sync(self) -> bool {
        !matches!(self, Self::Never)
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EveryBatch => f.write_str("every-batch"),
            Self::IntervalMs(ms) => write!(f, "{ms}ms"),
            Self::Never => f.write_str("never"),
        }
    }
}

/// What the log keeps. Whole segments are deleted from the front when either
/// limit is passed; the active segment is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    /// Keep at most this many bytes (`None`: no size limit). Default none.
    pub bytes_max: Option<u64>,
    /// Delete segments whose newest record is older than this many
    /// milliseconds (`None`: no age limit). Default none.
    pub age_ms_max: Option<u64>,
}

/// Configuration of one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Roll the active segment when it would exceed this many bytes.
    /// Default 128 MiB; limits 4 KiB..=2 GiB (positions are 32-bit).
    pub segment_bytes_max: u64,
    /// Roll the active segment when its first append is older than this many
    /// milliseconds. Default 7 days; `None` never rolls by age.
    pub segment_age_ms_max: Option<u64>,
    /// Add an offset-index and time-index entry every this many bytes of
    /// batches. Default 16 KiB; limits 256..=16 MiB. Memory: 8 + 12 bytes
    /// per entry, e.g. 160 KiB for a full 128 MiB segment.
    pub index_interval_bytes: u32,
    /// Add an origin checkpoint (the prefix vector at that point) every this
    /// many bytes. Bounds the scan of `prefix_vector` and `locate`. Default
    /// 1 MiB; limits 256..=64 MiB.
    pub origin_checkpoint_bytes: u32,
    /// Refuse batches larger than this. Default 8 MiB; limits 1 KiB..=64 MiB.
    pub batch_bytes_max: u32,
    /// When appends become durable.
    pub durability: Durability,
    /// What to keep.
    pub retention: Retention,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 128 << 20,
            segment_age_ms_max: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 16 << 10,
            origin_checkpoint_bytes: 1 << 20,
            batch_bytes_max: 8 << 20,
            durability: Durability::default(),
            retention: Retention::default(),
        }
    }
}

impl LogConfig {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<()> {
        check(
            "segment_bytes_max",
            self.segment_bytes_max,
            4 << 10,
            2 << 30,
        )?;
        check(
            "index_interval_bytes",
            self.index_interval_bytes.into(),
            256,
            16 << 20,
        )?;
        check(
            "origin_checkpoint_bytes",
            self.origin_checkpoint_bytes.into(),
            256,
            64 << 20,
        )?;
        check(
            "batch_bytes_max",
            self.batch_bytes_max.into(),
            1 << 10,
            64 << 20,
        )?;
        if u64::from(self.batch_bytes_max) > self.segment_bytes_max {
            return Err(StorageError::Config {
                field: "batch_bytes_max",
                problem: "larger than segment_bytes_max".into(),
            });
        }
        if self.segment_age_ms_max == Some(0) {
            return Err(StorageError::Config {
                field: "segment_age_ms_max",
                problem: "must be positive".into(),
            });
        }
        self.durability.validate()
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(StorageError::Config {
            field,
            problem: format!("{value} is outside {min}..={max}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_the_documented_forms() {
        assert_eq!(
            Durability::parse("every-batch").ok(),
            Some(Durability::EveryBatch)
        );
        assert_eq!(Durability::parse("never").ok(), Some(Durability::Never));
        assert_eq!(
            Durability::parse("10ms").ok(),
            Some(Durability::IntervalMs(10))
        );
        assert!(matches!(
            Durability::parse("0ms"),
            Err(StorageError::Config {
                field: "durability",
                ..
            })
        ));
        assert!(Durability::parse("sometimes").is_err());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let config = LogConfig {
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        match config.validate() {
            Err(StorageError::Config { field, .. }) => assert_eq!(field, "index_interval_bytes"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}
