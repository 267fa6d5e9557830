//! Retention: whole sealed segments deleted from the front by size and age.

use super::Log;
use crate::error::Result;
use crate::segment::Segment;
use crate::types::LocalOffset;
use crate::vector::VersionVector;

/// What a retention pass deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// The earliest retained offset afterwards.
    pub start_offset: LocalOffset,
    /// Records of each origin before the earliest retained offset
    /// afterwards: what a peer or consumer behind it can no longer read.
    pub start_vector: VersionVector,
}

impl Log {
    /// Deletes the sealed segments that lie wholly below `offset` (used to
    /// drop history once a snapshot after it is durable). The active segment
    /// is never deleted.
    pub fn delete_segments_before(&mut self, offset: LocalOffset) -> Result<RetentionReport> {
        self.delete_front_while(|segment, _| segment.next_offset() <= offset)
    }

    /// Deletes sealed segments from the front while the log is over its size
    /// limit (Kafka's rule: a segment goes if the rest still holds at least
    /// `bytes_max`) or the segment's newest record is older than
    /// `age_ms_max`. The active segment is never deleted. `now_ms` is the
    /// wall clock in milliseconds since the epoch.
    pub fn apply_retention(&mut self, now_ms: u64) -> Result<RetentionReport> {
        let retention = self.config.retention;
        self.delete_front_while(|oldest, total| {
            let over_size = retention
                .bytes_max
                .is_some_and(|bytes_max| total - oldest.size() >= bytes_max);
            let too_old = retention
                .age_ms_max
                .is_some_and(|age| oldest.max_timestamp().millis().saturating_add(age) < now_ms);
            over_size || too_old
        })
    }

    /// Deletes sealed segments from the front while `doomed(oldest, total
    /// bytes)` says so.
    fn delete_front_while(
        &mut self,
        doomed: impl Fn(&Segment, u64) -> bool,
    ) -> Result<RetentionReport> {
        let mut total = self.size_bytes();
        let mut deleted_segments = 0;
        let mut deleted_bytes = 0;
        while self.segments.len() > 1 && doomed(&self.segments[0], total) {
            let segment = self.segments.remove(0);
            total -= segment.size();
            deleted_bytes += segment.size();
            deleted_segments += 1;
            segment.delete(&*self.fs)?;
            tracing::debug!(
                target: "meshgate::storage",
                dir = %self.dir.display(),
                base_offset = segment.base_offset().0,
                "retention deleted a segment"
            );
        }
        Ok(RetentionReport {
            deleted_segments,
            deleted_bytes,
            start_offset: self.start_offset(),
            start_vector: self.start_vector().clone(),
        })
    }
}
