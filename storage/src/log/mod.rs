//! The log of one partition: an ordered list of segments, the last one
//! active. Synchronous and single-owner; [`crate::writer::SharedLog`] is the
//! async shell that shares it between producers, consumers and the fsync
//! loop.
//!
//! Durability is tracked as two ends: everything below the *written* end is
//! in the files, everything below the *durable* end is fsynced. Readers see
//! up to the durable end (the written end under [`Durability::Never`]), so
//! no consumer or mirror ever sees a record that a crash could take back.

mod lookup;
mod open;
mod retention;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, Batch, BatchHeader};
use crate::config::{Durability, LogConfig};
use crate::error::{Result, StorageError};
use crate::fs::{FileHandle, FileSystem};
use crate::segment::{AppendFailure, Segment};
use crate::types::{Incarnation, LocalOffset, OriginSeq, OriginStream, Record};
use crate::vector::VersionVector;

pub use lookup::{MissingRange, ReadChunk, ReadPlan, Resume, SeqLocation};
pub use retention::RetentionReport;

/// Name of the marker written by a clean close.
const CLEAN_MARKER: &str = ".clean";
/// Name of the note that quarantines a log.
const QUARANTINE_NOTE: &str = "quarantine.txt";

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first appended record.
    pub base_offset: LocalOffset,
    /// Offset after the last appended record.
    pub next_offset: LocalOffset,
    /// Origin seq of the first appended record.
    pub base_seq: OriginSeq,
    /// Bytes written.
    pub bytes: usize,
}

/// What an append of an existing batch (mirroring) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Records were appended; `skipped` leading records were duplicates.
    Appended {
        /// Where they landed.
        info: AppendInfo,
        /// Leading records already held, dropped.
        skipped: u32,
    },
    /// Every record was already held; nothing was written.
    Duplicate,
}

/// An fsync to run, possibly on another thread, then report with
/// [`Log::handle_synced`].
#[derive(Debug, Clone)]
pub struct SyncPlan {
    file: Arc<dyn FileHandle>,
    path: PathBuf,
    segment_base: LocalOffset,
    offset: LocalOffset,
    position: u64,
}

impl SyncPlan {
    /// Runs the fsync. Blocks on a real disk.
    pub fn execute(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|source| StorageError::io("fsync", &self.path, source))
    }

    /// The offset that is durable once this plan has run.
    pub fn offset(&self) -> LocalOffset {
        self.offset
    }
}

/// The log of one partition.
pub struct Log {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: LogConfig,
    incarnation: Option<Incarnation>,
    /// Oldest first; the last is active. Never empty.
    segments: Vec<Segment>,
    /// The version vector of everything written.
    vector: VersionVector,
    durable_offset: LocalOffset,
    /// File position in the active segment up to which it is durable.
    durable_position: u64,
    failed: Option<String>,
    closed: bool,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("start", &self.start_offset())
            .field("end", &self.end_offset())
            .field("durable", &self.durable_offset)
            .finish()
    }
}

impl Log {
    /// The directory holding the log's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn fs_blocking_io(&self) -> bool {
        self.fs.blocking_io()
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The earliest retained offset.
    pub fn start_offset(&self) -> LocalOffset {
        self.segments[0].base_offset()
    }

    /// The offset the next append gets (the written end).
    pub fn end_offset(&self) -> LocalOffset {
        self.active().next_offset()
    }

    /// Everything below this offset is fsynced.
    pub fn durable_offset(&self) -> LocalOffset {
        self.durable_offset
    }

    /// What readers see: the durable end, or the written end under
    /// [`Durability::Never`]. Kafka calls this the high watermark.
    pub fn visible_offset(&self) -> LocalOffset {
        self.visible_end().0
    }

    fn visible_end(&self) -> (LocalOffset, u64) {
        match self.config.durability {
            Durability::Never => (self.end_offset(), self.active().size()),
            _ => (self.durable_offset, self.durable_position),
        }
    }

    /// The version vector of everything written: origin -> records held.
    pub fn vector(&self) -> &VersionVector {
        &self.vector
    }

    /// Records of each origin that came before the earliest retained offset
    /// (deleted by retention, or never held here).
    pub fn start_vector(&self) -> &VersionVector {
        self.segments[0].start_vector()
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The first failure that stopped writes, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty: open creates a segment when none exists
        // and retention never removes the active one.
        self.segments.last().expect("a log has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log has an active segment")
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed);
        }
        match &self.failed {
            Some(reason) => Err(StorageError::Failed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, reason: String) -> StorageError {
        tracing::error!(target: "meshgate::storage", dir = %self.dir.display(), %reason, "log failed; writes stop");
        let first = self.failed.get_or_insert(reason).clone();
        StorageError::Failed { reason: first }
    }

    /// Appends records that originate here: they get the next seqs of
    /// `origin` and the next local offsets. `now_ms` is the wall clock, used
    /// for rolling by age.
    pub fn append_local(
        &mut self,
        origin: &OriginStream,
        records: &[Record],
        now_ms: u64,
    ) -> Result<AppendInfo> {
        self.check_writable()?;
        if records.is_empty() {
            return Err(StorageError::EmptyBatch);
        }
        self.check_incarnation(origin)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let base_seq = self.vector.next_seq(origin);
        batch::encode(&mut scratch, self.end_offset(), origin, base_seq, records);
        let result = batch::parse_header(&scratch, batch::BATCH_BYTES_LIMIT)
            .and_then(|header| self.append_encoded(&scratch, &header, now_ms));
        self.scratch = scratch;
        result
    }

    /// Appends a batch read from another region's log (mirroring). Its
    /// records keep their origin coordinates and timestamps. Accepted only
    /// if it continues its origin stream: a batch starting past the held
    /// count is a gap and refused; records already held are dropped.
    pub fn append_batch(&mut self, batch: &Batch, now_ms: u64) -> Result<AppendOutcome> {
        self.check_writable()?;
        let header = batch.header();
        self.check_incarnation(&header.origin)?;
        let held = self.vector.get(&header.origin);
        if header.base_seq.0 > held {
            return Err(StorageError::Gap {
                origin: header.origin.clone(),
                expected: held,
                got: header.base_seq.0,
            });
        }
        #[cfg(feature = "mutation")]
        if crate::mutation::duplicates_kept() && !header.gap && header.base_seq.0 < held {
            // The mutation the simulation must catch: records already held
            // are appended again, as new ones.
            let records: Vec<Record> = batch
                .records()
                .map(|r| r.map(|stored| stored.record))
                .collect::<Result<_>>()?;
            let placed =
                Batch::encode(self.end_offset(), &header.origin, OriginSeq(held), &records);
            let info = self.append_encoded(placed.bytes(), placed.header(), now_ms)?;
            return Ok(AppendOutcome::Appended { info, skipped: 0 });
        }
        if header.next_seq().0 <= held {
            return Ok(AppendOutcome::Duplicate);
        }
        let skipped = held - header.base_seq.0;
        let end = self.end_offset();
        let placed = if skipped == 0 {
            batch.with_base_offset(end)
        } else if header.gap {
            let count = header.record_count - skipped as u32;
            Batch::encode_gap(
                end,
                &header.origin,
                OriginSeq(held),
                count,
                header.max_timestamp,
            )
        } else {
            let records: Vec<Record> = batch
                .records()
                .skip(skipped as usize)
                .map(|r| r.map(|stored| stored.record))
                .collect::<Result<_>>()?;
            Batch::encode(end, &header.origin, OriginSeq(held), &records)
        };
        let info = self.append_encoded(placed.bytes(), placed.header(), now_ms)?;
        Ok(AppendOutcome::Appended {
            info,
            skipped: skipped as u32,
        })
    }

    /// Appends a gap marker: records `held..up_to_seq` of `origin` are gone
    /// for good (retention deleted them wherever they were held before they
    /// reached this log). Keeps the origin stream contiguous so later records
    /// of it can follow. Returns `None` when nothing is missing.
    pub fn append_gap(
        &mut self,
        origin: &OriginStream,
        up_to_seq: u64,
        timestamp: crate::types::Timestamp,
        now_ms: u64,
    ) -> Result<Option<AppendInfo>> {
        self.check_writable()?;
        self.check_incarnation(origin)?;
        let held = self.vector.get(origin);
        if up_to_seq <= held {
            return Ok(None);
        }
        let count = u32::try_from(up_to_seq - held).map_err(|_| StorageError::InvalidBatch {
            reason: format!(
                "gap of {} records is too long for one marker",
                up_to_seq - held
            ),
        })?;
        let gap = Batch::encode_gap(self.end_offset(), origin, OriginSeq(held), count, timestamp);
        self.append_encoded(gap.bytes(), gap.header(), now_ms)
            .map(Some)
    }

    fn check_incarnation(&self, origin: &OriginStream) -> Result<()> {
        match self.incarnation {
            Some(expected) if expected != origin.incarnation => {
                Err(StorageError::IncarnationMismatch {
                    expected,
                    got: origin.incarnation,
                })
            }
            _ => Ok(()),
        }
    }

    fn append_encoded(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        now_ms: u64,
    ) -> Result<AppendInfo> {
        if bytes.len() > self.config.batch_bytes_max as usize {
            return Err(StorageError::BatchTooLarge {
                bytes: bytes.len(),
                bytes_max: self.config.batch_bytes_max as usize,
            });
        }
        assert_eq!(
            header.base_offset,
            self.end_offset(),
            "batch placed at the end"
        );
        assert_eq!(
            header.base_seq,
            self.vector.next_seq(&header.origin),
            "origin streams stay contiguous"
        );
        if self.roll_due(bytes.len(), now_ms) {
            self.roll(now_ms)?;
        }
        let config = self.config.clone();
        let vector = std::mem::take(&mut self.vector);
        let result = self.active_mut().append(bytes, header, &vector, &config);
        self.vector = vector;
        match result {
            Ok(()) => {}
            Err(AppendFailure::RolledBack(error)) => return Err(error),
            Err(AppendFailure::Fatal(reason)) => return Err(self.fail(reason)),
        }
        self.vector
            .add(&header.origin, u64::from(header.record_count));
        Ok(AppendInfo {
            base_offset: header.base_offset,
            next_offset: header.next_offset(),
            base_seq: header.base_seq,
            bytes: bytes.len(),
        })
    }

    fn roll_due(&self, batch_bytes: usize, now_ms: u64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let too_big = active.size() + batch_bytes as u64 > self.config.segment_bytes_max;
        let too_old = self
            .config
            .segment_age_ms_max
            .is_some_and(|age| now_ms.saturating_sub(active.created_ms()) >= age);
        too_big || too_old
    }

    /// Seals the active segment and starts a new one now, unless the active
    /// segment is empty. Used before writing a snapshot that lets older
    /// segments go.
    pub fn roll_now(&mut self, now_ms: u64) -> Result<()> {
        self.check_writable()?;
        if self.active().is_empty() {
            return Ok(());
        }
        self.roll(now_ms)
    }

    /// Seals the active segment (fsynced, so every sealed segment is wholly
    /// durable and only the active one can have a torn tail) and starts a
    /// new one.
    fn roll(&mut self, now_ms: u64) -> Result<()> {
        if let Err(error) = self.active().sync_all() {
            return Err(self.fail(format!("fsync before rolling: {error}")));
        }
        self.durable_offset = self.end_offset();
        let end = self.end_offset();
        let segment = Segment::create(&*self.fs, &self.dir, end, self.vector.clone(), now_ms)?;
        if let Err(error) = self.fs.sync_dir(&self.dir) {
            return Err(self.fail(format!("fsync of {}: {error}", self.dir.display())));
        }
        self.durable_position = segment.size();
        self.segments.push(segment);
        Ok(())
    }

    /// The fsync that would make everything written durable, or `None` when
    /// it already is (or the log failed).
    pub fn plan_sync(&self) -> Option<SyncPlan> {
        if self.failed.is_some() || self.durable_offset == self.end_offset() {
            return None;
        }
        let active = self.active();
        Some(SyncPlan {
            file: active.file().clone(),
            path: active.paths().log.clone(),
            segment_base: active.base_offset(),
            offset: active.next_offset(),
            position: active.size(),
        })
    }

    /// Records the result of a [`SyncPlan`]. A failed fsync fails the log:
    /// after one, the kernel may have dropped the dirty pages, so nothing
    /// written since the last good fsync can be trusted.
    pub fn handle_synced(&mut self, plan: &SyncPlan, result: Result<()>) -> Result<LocalOffset> {
        if let Err(error) = result {
            return Err(self.fail(format!("fsync failed: {error}")));
        }
        if plan.offset > self.durable_offset {
            self.durable_offset = plan.offset;
            if plan.segment_base == self.active().base_offset() {
                self.durable_position = plan.position;
            }
        }
        Ok(self.durable_offset)
    }

    /// Stops writes, syncs everything (blocking) and leaves the
    /// clean-shutdown marker so the next open skips the full scan of the
    /// active segment. Reads keep working. Closing twice is harmless.
    pub fn close(&mut self) -> Result<()> {
        if self.closed || self.failed.is_some() {
            self.closed = true;
            return Ok(());
        }
        self.closed = true;
        if let Err(error) = self.active().sync_all() {
            return Err(self.fail(format!("fsync at close: {error}")));
        }
        self.durable_offset = self.end_offset();
        self.durable_position = self.active().size();
        crate::fs::write_atomically(&*self.fs, &self.dir.join(CLEAN_MARKER), b"clean\n")
            .map_err(|source| StorageError::io("write", self.dir.join(CLEAN_MARKER), source))
    }

    /// True after [`Log::close`].
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
