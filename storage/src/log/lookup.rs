//! Reads and lookups: by offset, by timestamp, by origin coordinate, and the
//! prefix vector of an offset (DESIGN.md, "the conflict-free offset mapping").

use std::path::PathBuf;

use bytes::Bytes;

use super::Log;
use crate::batch::{self, Batch};
use crate::error::{Result, StorageError};
use crate::fs::read_up_to;
use crate::segment::{self, Segment};
use crate::types::{LocalOffset, OriginStream, StoredRecord, Timestamp};
use crate::vector::VersionVector;

/// A read of whole batches, planned under the log's lock and run without it.
#[derive(Debug)]
pub struct ReadPlan {
    inner: segment::ReadPlan,
    bytes_max: usize,
    batch_bytes_max: usize,
}

/// Whole batches read from a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadChunk {
    /// The batches, as stored. The first may start before the offset asked
    /// for; readers skip the records before it.
    pub bytes: Bytes,
    /// Offset of the first record in `bytes`.
    pub first_offset: LocalOffset,
    /// Offset after the last record in `bytes`.
    pub next_offset: LocalOffset,
}

impl ReadChunk {
    /// The batches, checked.
    pub fn batches(&self, batch_bytes_max: usize) -> Result<Vec<Batch>> {
        Batch::parse_all(self.bytes.clone(), batch_bytes_max)
    }

    /// The records at or after `from`.
    pub fn records_from(&self, from: LocalOffset) -> Result<Vec<StoredRecord>> {
        let mut records = Vec::new();
        for batch in self.batches(batch::BATCH_BYTES_LIMIT)? {
            for record in batch.records() {
                let record = record?;
                if record.offset >= from {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }
}

impl ReadPlan {
    /// Reads the planned range and cuts it at the last whole batch that fits
    /// `bytes_max` (the first batch is returned whatever its size). Every
    /// batch's checksum is verified.
    pub fn execute(self) -> Result<ReadChunk> {
        let plan = self.inner;
        let mut buffer = vec![0; plan.len];
        let read = read_up_to(&*plan.file, &mut buffer, plan.position)
            .map_err(|source| StorageError::io("read", &plan.path, source))?;
        buffer.truncate(read);
        let corrupt = |at: usize, reason: String| StorageError::CorruptSegment {
            path: plan.path.clone(),
            position: plan.position + at as u64,
            reason,
        };
        let mut at = 0;
        let mut first_offset = None;
        let mut next_offset = LocalOffset(0);
        while at < buffer.len() {
            let rest = &buffer[at..];
            let total = match batch::batch_size(rest, self.batch_bytes_max) {
                Ok(Some(total)) if total <= rest.len() => total,
                Ok(_) if at > 0 => break,
                Ok(_) => return Err(corrupt(at, "batch runs past the end of the file".into())),
                Err(error) => return Err(corrupt(at, error.to_string())),
            };
            if at > 0 && at + total > self.bytes_max {
                break;
            }
            let header = batch::parse_header(rest, self.batch_bytes_max)
                .map_err(|e| corrupt(at, e.to_string()))?;
            if !batch::crc_matches(&rest[..total]) {
                return Err(corrupt(at, "batch checksum mismatch".into()));
            }
            first_offset.get_or_insert(header.base_offset);
            next_offset = header.next_offset();
            at += total;
        }
        buffer.truncate(at);
        Ok(ReadChunk {
            bytes: Bytes::from(buffer),
            first_offset: first_offset.unwrap_or(next_offset),
            next_offset,
        })
    }
}

/// Records of an origin that a peer lacks and this log no longer holds:
/// seqs `from_seq..to_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRange {
    /// The origin.
    pub origin: OriginStream,
    /// First missing seq.
    pub from_seq: u64,
    /// Seq after the last missing one.
    pub to_seq: u64,
}

/// Where record `seq` of an origin is in this log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqLocation {
    /// At this local offset.
    At(LocalOffset),
    /// It was held once, but retention deleted it.
    Deleted,
    /// This log does not hold it (yet).
    NotHeld,
}

/// Where a consumer whose committed position is a vector resumes in this
/// log (DESIGN.md, "Failover").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Read from `offset`, skipping records whose seq is below the position
    /// of their origin. `deleted` counts records the position had not yet
    /// consumed that retention deleted before they could be.
    At {
        /// Where to start reading.
        offset: LocalOffset,
        /// Records lost to retention.
        deleted: u64,
    },
    /// The position is ahead of what this log holds of `origin`: wait for
    /// the mirror to bring the rest (never clamp back, never skip).
    Behind {
        /// The origin the log lacks records of.
        origin: OriginStream,
        /// Records of it held here.
        held: u64,
        /// Records of it the position has consumed.
        needed: u64,
    },
}

impl Log {
    /// Index of the segment holding `offset` (or ending at it, for the end).
    fn segment_index(&self, offset: LocalOffset) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    fn check_range(&self, offset: LocalOffset, end: LocalOffset) -> Result<()> {
        if offset < self.start_offset() || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: self.start_offset(),
                end,
            });
        }
        Ok(())
    }

    /// Plans a read of whole batches from the one holding `from`, up to
    /// `bytes_max` bytes (at least one batch), of what is visible. `None`
    /// when `from` is the visible end: nothing to read yet.
    pub fn plan_read(&self, from: LocalOffset, bytes_max: usize) -> Result<Option<ReadPlan>> {
        let visible = self.visible_end();
        self.check_range(from, visible.0)?;
        let mut index = self.segment_index(from);
        loop {
            let segment = &self.segments[index];
            let is_active = index + 1 == self.segments.len();
            let limit = if is_active {
                visible
            } else {
                (segment.next_offset(), segment.size())
            };
            if let Some(inner) = segment.plan_read(from, bytes_max, limit, &self.config)? {
                return Ok(Some(ReadPlan {
                    inner,
                    bytes_max,
                    batch_bytes_max: self.config.batch_bytes_max as usize,
                }));
            }
            // `from` is the end of this segment: an empty sealed segment, or
            // nothing visible yet in the active one.
            if is_active {
                return Ok(None);
            }
            index += 1;
        }
    }

    /// Reads whole batches from `from` (see [`Log::plan_read`]); an empty
    /// chunk when nothing is visible there yet.
    pub fn read(&self, from: LocalOffset, bytes_max: usize) -> Result<ReadChunk> {
        match self.plan_read(from, bytes_max)? {
            Some(plan) => plan.execute(),
            None => Ok(ReadChunk {
                bytes: Bytes::new(),
                first_offset: from,
                next_offset: from,
            }),
        }
    }

    /// The prefix vector of `offset`: how many records of each origin lie in
    /// `[0, offset)` of this log (retained or not). A local offset committed
    /// by a consumer is stored as this vector. Bounded cost: one checkpoint
    /// lookup plus a scan of at most `origin_checkpoint_bytes`.
    pub fn prefix_vector(&self, offset: LocalOffset) -> Result<VersionVector> {
        self.check_range(offset, self.end_offset())?;
        if offset == self.end_offset() {
            return Ok(self.vector.clone());
        }
        self.segments[self.segment_index(offset)].prefix_vector(offset, &self.config)
    }

    /// Where record `seq` of `origin` is in this log.
    pub fn locate(&self, origin: &OriginStream, seq: u64) -> Result<SeqLocation> {
        if seq >= self.vector.get(origin) {
            return Ok(SeqLocation::NotHeld);
        }
        if seq < self.start_vector().get(origin) {
            return Ok(SeqLocation::Deleted);
        }
        // Start vectors grow along the log, so the holder is the last
        // segment whose start vector counts at most `seq` of the origin.
        let index = self
            .segments
            .partition_point(|s| s.start_vector().get(origin) <= seq)
            .saturating_sub(1);
        let segment: &Segment = &self.segments[index];
        match segment.locate(origin, seq, &self.config)? {
            Some(offset) => Ok(SeqLocation::At(offset)),
            None => Err(StorageError::CorruptSegment {
                path: segment.paths().log.clone(),
                position: 0,
                reason: format!("record {seq} of origin {origin} is counted but not found"),
            }),
        }
    }

    /// Where a consumer at vector `position` resumes: the smallest offset
    /// such that every record below it was already consumed.
    pub fn resume_offset(&self, position: &VersionVector) -> Result<Resume> {
        for (origin, needed) in position.iter() {
            let held = self.vector.get(origin);
            if needed > held {
                return Ok(Resume::Behind {
                    origin: origin.clone(),
                    held,
                    needed,
                });
            }
        }
        let mut offset = self.end_offset();
        let mut deleted = 0;
        for (origin, held) in self.vector.iter() {
            let consumed = position.get(origin);
            if consumed >= held {
                continue;
            }
            match self.locate(origin, consumed)? {
                SeqLocation::At(at) => offset = offset.min(at),
                SeqLocation::Deleted => {
                    let first_kept = self.start_vector().get(origin);
                    deleted += first_kept - consumed;
                    offset = offset.min(match self.locate(origin, first_kept)? {
                        SeqLocation::At(at) => at,
                        _ => self.start_offset(),
                    });
                }
                SeqLocation::NotHeld => unreachable!("consumed < held was checked"),
            }
        }
        Ok(Resume::At { offset, deleted })
    }

    /// Where a mirror session serving a peer that holds `peer_vector` starts
    /// reading this log: the smallest offset at or after which every record
    /// the peer lacks lies. Origins the peer holds more of than this log are
    /// ignored (the peer has nothing to get of them here). Also returns, per
    /// origin, records the peer lacks that retention deleted here: the peer
    /// gets a gap marker for them.
    pub fn mirror_start(
        &self,
        peer_vector: &VersionVector,
    ) -> Result<(LocalOffset, Vec<MissingRange>)> {
        let mut offset = self.end_offset();
        let mut gaps = Vec::new();
        for (origin, held) in self.vector.iter() {
            let peer_held = peer_vector.get(origin);
            if peer_held >= held {
                continue;
            }
            match self.locate(origin, peer_held)? {
                SeqLocation::At(at) => offset = offset.min(at),
                SeqLocation::Deleted => {
                    let first_kept = self.start_vector().get(origin);
                    gaps.push(MissingRange {
                        origin: origin.clone(),
                        from_seq: peer_held,
                        to_seq: first_kept,
                    });
                    if first_kept < held
                        && let SeqLocation::At(at) = self.locate(origin, first_kept)?
                    {
                        offset = offset.min(at);
                    }
                }
                SeqLocation::NotHeld => unreachable!("peer_held < held was checked"),
            }
        }
        Ok((offset, gaps))
    }

    /// The first visible offset whose record has a timestamp at or after
    /// `timestamp`, or `None` when no visible record has.
    pub fn offset_for_timestamp(&self, timestamp: Timestamp) -> Result<Option<LocalOffset>> {
        let visible = self.visible_offset();
        for segment in &self.segments {
            if let Some(offset) = segment.offset_for_timestamp(timestamp, &self.config)? {
                return Ok((offset < visible).then_some(offset));
            }
        }
        Ok(None)
    }

    /// The path of the active segment file, for tests and diagnostics.
    pub fn active_segment_path(&self) -> PathBuf {
        self.active().paths().log.clone()
    }
}
