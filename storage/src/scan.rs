//! Sequential reading of batches from a segment file: the one loop that
//! recovery, index rebuilds, lookups and reads share. Reads in large chunks
//! so walking headers costs one `pread` per chunk, not per batch.

use crate::batch::{self, BATCH_HEADER_BYTES_MAX, BatchHeader};
use crate::error::StorageError;
use crate::fs::{FileHandle, read_up_to};

/// Bytes read per `pread` by a long scan (recovery, rebuilds).
pub(crate) const LONG_SCAN_CHUNK_BYTES: usize = 256 << 10;

/// Where and why a scan met bytes that are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanStop {
    /// File position of the first invalid byte range.
    pub(crate) position: u64,
    /// What is wrong.
    pub(crate) reason: String,
}

/// Walks the batches of `file` between two positions.
pub(crate) struct Scanner<'a> {
    file: &'a dyn crate::fs::FileHandle,
    position: u64,
    end: u64,
    verify_crc: bool,
    batch_bytes_max: usize,
    chunk_bytes: usize,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl<'a> Scanner<'a> {
    /// Scans `[start, end)` of `file`, reading `chunk_bytes` at a time.
    /// With `verify_crc`, each batch's checksum is checked (the whole batch
    /// is read); without, only headers.
    pub(crate) fn new(
        file: &'a dyn FileHandle,
        (start, end): (u64, u64),
        verify_crc: bool,
        batch_bytes_max: usize,
        chunk_bytes: usize,
    ) -> Self {
        Self {
            file,
            position: start,
            end,
            verify_crc,
            batch_bytes_max,
            chunk_bytes,
            buffer: Vec::new(),
            buffer_start: start,
        }
    }

    /// The next batch's position and header; `Ok(None)` at the end;
    /// `Err` at the first range that is not a valid batch.
    pub(crate) fn next_header(&mut self) -> Result<Option<(u64, BatchHeader)>, ScanStop> {
        if self.position >= self.end {
            return Ok(None);
        }
        let position = self.position;
        let remaining = self.end - position;
        let stop = |reason: String| ScanStop { position, reason };
        let header_want = (BATCH_HEADER_BYTES_MAX as u64).min(remaining) as usize;
        let batch_bytes_max = self.batch_bytes_max;
        let available = self.fill(header_want).map_err(|e| stop(e.to_string()))?;
        let total = match batch::batch_size(available, batch_bytes_max) {
            Ok(Some(total)) => total,
            Ok(None) => return Err(stop(format!("{remaining} trailing bytes"))),
            Err(error) => return Err(stop(error.to_string())),
        };
        if total as u64 > remaining {
            return Err(stop(format!(
                "batch of {total} bytes but only {remaining} remain"
            )));
        }
        let header =
            batch::parse_header(available, batch_bytes_max).map_err(|e| stop(e.to_string()))?;
        if self.verify_crc {
            let whole = self.fill(total).map_err(|e| stop(e.to_string()))?;
            if !batch::crc_matches(&whole[..total]) {
                return Err(stop("batch checksum mismatch".into()));
            }
        }
        self.position += total as u64;
        Ok(Some((position, header)))
    }

    /// Makes at least `want` bytes from `self.position` available in the
    /// buffer (fewer only at end of file) and returns them.
    fn fill(&mut self, want: usize) -> Result<&[u8], StorageError> {
        let offset_in_buffer = self.position.checked_sub(self.buffer_start);
        let have = match offset_in_buffer {
            Some(offset) if (offset as usize) <= self.buffer.len() => {
                self.buffer.len() - offset as usize
            }
            _ => 0,
        };
        if have < want {
            let remaining = (self.end - self.position) as usize;
            let read_len = want
                .max(self.chunk_bytes)
                .min(remaining)
                .max(want.min(remaining));
            self.buffer.resize(read_len, 0);
            let read = read_up_to(self.file, &mut self.buffer, self.position)
                .map_err(|source| StorageError::io("read", "segment", source))?;
            self.buffer.truncate(read);
            self.buffer_start = self.position;
        }
        let start = (self.position - self.buffer_start) as usize;
        let end = (start + want).min(self.buffer.len());
        Ok(&self.buffer[start..end])
    }
}
