//! One segment: a file of batches named by its base offset
//! (`00000000000000001000.log`), with its derived index files.
//!
//! The segment file starts with a header:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `MESHGSEG` |
//! | 8..12 | header length in bytes |
//! | 12..16 | CRC32C of bytes 16..header length |
//! | 16..18 | format version (1) |
//! | 18..20 | reserved (0) |
//! | 20..28 | base offset |
//! | 28..36 | creation time, ms since the epoch |
//! | 36.. | start vector: the partition's version vector before this segment |
//!
//! The start vector makes every segment self-describing: retention may delete
//! the segments before it and the log still knows how much of each origin
//! came before its first retained record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, Batch, BatchHeader};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::fs::{FileHandle, FileSystem, OpenMode, read_up_to};
use crate::index::{
    self, Checkpoint, IndexEntry, encode_checkpoint, encode_offset_entry, encode_time_entry,
};
use crate::scan::{LONG_SCAN_CHUNK_BYTES, ScanStop, Scanner};
use crate::types::{LocalOffset, OriginStream, Timestamp};
use crate::vector::VersionVector;

const MAGIC: &[u8; 8] = b"MESHGSEG";
const SEGMENT_FORMAT_VERSION: u16 = 1;
const HEADER_FIXED_BYTES: usize = 36;
/// Largest segment header accepted when reading; bounds damaged lengths.
const HEADER_BYTES_MAX: usize = 8 << 20;

/// The file names of a segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPaths {
    pub(crate) log: PathBuf,
    pub(crate) index: PathBuf,
    pub(crate) time_index: PathBuf,
    pub(crate) origins: PathBuf,
}

impl SegmentPaths {
    pub(crate) fn new(dir: &Path, base_offset: LocalOffset) -> Self {
        let stem = format!("{:020}", base_offset.0);
        Self {
            log: dir.join(format!("{stem}.log")),
            index: dir.join(format!("{stem}.index")),
            time_index: dir.join(format!("{stem}.timeindex")),
            origins: dir.join(format!("{stem}.origins")),
        }
    }

    pub(crate) fn all(&self) -> [&Path; 4] {
        [&self.log, &self.index, &self.time_index, &self.origins]
    }
}

/// Parses a segment file name back into its base offset.
pub(crate) fn parse_segment_name(name: &str) -> Option<LocalOffset> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(LocalOffset)
}

/// How much of a segment to check when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// Trust the derived files; checksum the batches after the last index
    /// entry. For sealed segments and after a clean shutdown.
    Tail,
    /// Checksum every batch and rebuild all derived files. For the active
    /// segment after a crash.
    Full,
}

/// A segment opened from disk, and where its valid data stops if it does
/// not reach the end of the file.
pub(crate) struct Opened {
    pub(crate) segment: Segment,
    pub(crate) invalid_tail: Option<ScanStop>,
}

pub(crate) struct Segment {
    paths: SegmentPaths,
    base_offset: LocalOffset,
    created_ms: u64,
    header_bytes: u64,
    start_vector: VersionVector,
    file: Arc<dyn FileHandle>,
    index_file: Arc<dyn FileHandle>,
    time_index_file: Arc<dyn FileHandle>,
    origins_file: Arc<dyn FileHandle>,
    origins_file_bytes: u64,
    size: u64,
    next_offset: LocalOffset,
    max_timestamp: Timestamp,
    index: Vec<IndexEntry>,
    checkpoints: Vec<Checkpoint>,
}

/// Everything needed to read a range of a segment without holding the log.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    pub(crate) file: Arc<dyn FileHandle>,
    pub(crate) path: PathBuf,
    pub(crate) position: u64,
    /// Bytes to read from `position`: at least the first batch, at most up
    /// to the visible end.
    pub(crate) len: usize,
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::io(op, path, source)
}

impl Segment {
    /// Creates a new, empty segment and syncs its file. The caller syncs
    /// the directory.
    pub(crate) fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: LocalOffset,
        start_vector: VersionVector,
        created_ms: u64,
    ) -> Result<Segment> {
        let paths = SegmentPaths::new(dir, base_offset);
        let file = fs
            .open(&paths.log, OpenMode::Truncate)
            .map_err(io_error("create", &paths.log))?;
        let header = encode_header(base_offset, created_ms, &start_vector);
        file.write_at(&header, 0)
            .map_err(io_error("write", &paths.log))?;
        file.sync_data().map_err(io_error("fsync", &paths.log))?;
        let open_derived = |path: &Path| {
            fs.open(path, OpenMode::Truncate)
                .map_err(io_error("create", path))
        };
        Ok(Segment {
            index_file: open_derived(&paths.index)?,
            time_index_file: open_derived(&paths.time_index)?,
            origins_file: open_derived(&paths.origins)?,
            origins_file_bytes: 0,
            base_offset,
            created_ms,
            header_bytes: header.len() as u64,
            start_vector,
            file,
            size: header.len() as u64,
            next_offset: base_offset,
            max_timestamp: Timestamp::default(),
            index: Vec::new(),
            checkpoints: Vec::new(),
            paths,
        })
    }

    /// Opens an existing segment, checking it as `validation` says. Fails
    /// when the header is unreadable; reports an invalid tail in
    /// [`Opened::invalid_tail`] with the segment trimmed (in memory) to its
    /// valid prefix.
    pub(crate) fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: LocalOffset,
        config: &LogConfig,
        validation: Validation,
    ) -> Result<Opened> {
        let paths = SegmentPaths::new(dir, base_offset);
        let file = fs
            .open(&paths.log, OpenMode::Existing)
            .map_err(io_error("open", &paths.log))?;
        let file_bytes = file.len().map_err(io_error("stat", &paths.log))?;
        let (header_base, created_ms, start_vector, header_bytes) =
            read_header(&*file, &paths.log)?;
        if header_base != base_offset {
            return Err(StorageError::CorruptSegment {
                path: paths.log.clone(),
                position: 20,
                reason: format!("header says base offset {}", header_base.0),
            });
        }
        let open_derived = |path: &Path| {
            fs.open(path, OpenMode::CreateOrOpen)
                .map_err(io_error("open", path))
        };
        let index_file = open_derived(&paths.index)?;
        let time_index_file = open_derived(&paths.time_index)?;
        let origins_file = open_derived(&paths.origins)?;
        let mut segment = Segment {
            index_file,
            time_index_file,
            origins_file,
            origins_file_bytes: 0,
            base_offset,
            created_ms,
            header_bytes,
            start_vector,
            file,
            size: file_bytes,
            next_offset: base_offset,
            max_timestamp: Timestamp::default(),
            index: Vec::new(),
            checkpoints: Vec::new(),
            paths,
        };
        if validation == Validation::Tail && segment.load_derived()? {
            let invalid_tail = segment.scan_tail(config)?;
            if invalid_tail.is_none() {
                return Ok(Opened {
                    segment,
                    invalid_tail,
                });
            }
        }
        let invalid_tail = segment.rebuild(config)?;
        Ok(Opened {
            segment,
            invalid_tail,
        })
    }

    /// Loads the index and checkpoint files; false when any is missing,
    /// damaged or inconsistent with the segment.
    fn load_derived(&mut self) -> Result<bool> {
        let read = |file: &Arc<dyn FileHandle>, path: &Path| {
            file.read_all().map_err(io_error("read", path))
        };
        let offsets = read(&self.index_file, &self.paths.index)?;
        let times = read(&self.time_index_file, &self.paths.time_index)?;
        let Some(entries) = index::load_index(&offsets, &times, self.header_bytes, self.size)
        else {
            return Ok(false);
        };
        let origins = read(&self.origins_file, &self.paths.origins)?;
        let (checkpoints, complete) = index::load_checkpoints(&origins, self.base_offset);
        let checkpoints_fit = checkpoints.iter().all(|c| {
            c.position > self.header_bytes && c.position < self.size && c.offset > self.base_offset
        });
        if !complete || !checkpoints_fit {
            return Ok(false);
        }
        self.origins_file_bytes = origins.len() as u64;
        self.index = entries;
        self.checkpoints = checkpoints;
        Ok(true)
    }

    /// Checksums the batches after the last index entry, setting the end
    /// offset, size and largest timestamp.
    fn scan_tail(&mut self, config: &LogConfig) -> Result<Option<ScanStop>> {
        let (start_position, start_offset, timestamp) = match self.index.last() {
            Some(entry) => (
                u64::from(entry.position),
                LocalOffset(self.base_offset.0 + u64::from(entry.relative_offset)),
                entry.timestamp_before,
            ),
            None => (self.header_bytes, self.base_offset, Timestamp::default()),
        };
        self.max_timestamp = timestamp;
        self.next_offset = start_offset;
        let file = self.file.clone();
        let mut scanner = Scanner::new(
            &*file,
            (start_position, self.size),
            true,
            config.batch_bytes_max as usize,
            LONG_SCAN_CHUNK_BYTES,
        );
        loop {
            match scanner.next_header() {
                Ok(Some((position, header))) => {
                    if header.base_offset != self.next_offset {
                        return Ok(Some(
                            self.trim_at(position, offset_break(&header, self.next_offset)),
                        ));
                    }
                    self.next_offset = header.next_offset();
                    self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
                }
                Ok(None) => return Ok(None),
                Err(stop) => return Ok(Some(self.trim_at(stop.position, stop.reason))),
            }
        }
    }

    /// Checksums every batch, checks offsets and origin seqs are contiguous,
    /// and rewrites all derived files from what it found.
    fn rebuild(&mut self, config: &LogConfig) -> Result<Option<ScanStop>> {
        self.index.clear();
        self.checkpoints.clear();
        self.next_offset = self.base_offset;
        self.max_timestamp = Timestamp::default();
        let mut vector = self.start_vector.clone();
        let file = self.file.clone();
        let file_bytes = self.size;
        self.size = self.header_bytes;
        let mut scanner = Scanner::new(
            &*file,
            (self.header_bytes, file_bytes),
            true,
            config.batch_bytes_max as usize,
            LONG_SCAN_CHUNK_BYTES,
        );
        let mut stop = None;
        loop {
            match scanner.next_header() {
                Ok(Some((position, header))) => {
                    if header.base_offset != self.next_offset {
                        stop = Some(ScanStop {
                            position,
                            reason: offset_break(&header, self.next_offset),
                        });
                        break;
                    }
                    let expected_seq = vector.get(&header.origin);
                    if header.base_seq.0 != expected_seq {
                        stop = Some(ScanStop {
                            position,
                            reason: format!(
                                "origin {} jumps from seq {expected_seq} to {}",
                                header.origin, header.base_seq.0
                            ),
                        });
                        break;
                    }
                    self.note_batch(position, &header, &vector, config);
                    vector.add(&header.origin, u64::from(header.record_count));
                }
                Ok(None) => break,
                Err(scan_stop) => {
                    stop = Some(scan_stop);
                    break;
                }
            }
        }
        self.rewrite_derived_files()?;
        Ok(stop)
    }

    /// Forgets everything from `position` on (in memory only).
    fn trim_at(&mut self, position: u64, reason: String) -> ScanStop {
        self.size = position;
        ScanStop { position, reason }
    }

    /// Updates in-memory state for a batch placed at `position`, adding
    /// index entries and checkpoints when due. Returns the entries added.
    fn note_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        vector_before: &VersionVector,
        config: &LogConfig,
    ) -> (Option<IndexEntry>, Option<Checkpoint>) {
        let relative_offset = (header.base_offset.0 - self.base_offset.0) as u32;
        let last_index_position = self
            .index
            .last()
            .map_or(self.header_bytes, |e| u64::from(e.position));
        let mut new_entry = None;
        if position > self.header_bytes
            && position - last_index_position >= u64::from(config.index_interval_bytes)
        {
            let entry = IndexEntry {
                relative_offset,
                position: position as u32,
                timestamp_before: self.max_timestamp,
            };
            self.index.push(entry);
            new_entry = Some(entry);
        }
        let last_checkpoint_position = self
            .checkpoints
            .last()
            .map_or(self.header_bytes, |c| c.position);
        let mut new_checkpoint = None;
        if position > self.header_bytes
            && position - last_checkpoint_position >= u64::from(config.origin_checkpoint_bytes)
        {
            let checkpoint = Checkpoint {
                offset: header.base_offset,
                position,
                vector: vector_before.clone(),
            };
            self.checkpoints.push(checkpoint.clone());
            new_checkpoint = Some(checkpoint);
        }
        self.size = position + u64::from(header.total_bytes);
        self.next_offset = header.next_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        (new_entry, new_checkpoint)
    }

    fn rewrite_derived_files(&mut self) -> Result<()> {
        let offsets: Vec<u8> = self.index.iter().flat_map(encode_offset_entry).collect();
        let times: Vec<u8> = self
            .index
            .iter()
            .flat_map(|e| encode_time_entry(e.timestamp_before, e.relative_offset))
            .collect();
        let origins: Vec<u8> = self
            .checkpoints
            .iter()
            .flat_map(|c| encode_checkpoint(self.base_offset, c))
            .collect();
        for (file, path, bytes) in [
            (&self.index_file, &self.paths.index, &offsets),
            (&self.time_index_file, &self.paths.time_index, &times),
            (&self.origins_file, &self.paths.origins, &origins),
        ] {
            file.set_len(0).map_err(io_error("truncate", path))?;
            file.write_at(bytes, 0).map_err(io_error("write", path))?;
        }
        self.origins_file_bytes = origins.len() as u64;
        Ok(())
    }

    /// Cuts the file at its valid end (after recovery found a torn tail)
    /// and makes that durable.
    pub(crate) fn truncate_file_to_size(&self) -> Result<()> {
        self.file
            .set_len(self.size)
            .map_err(io_error("truncate", &self.paths.log))?;
        self.file
            .sync_data()
            .map_err(io_error("fsync", &self.paths.log))
    }

    /// Appends one encoded batch. On a write error the file is cut back to
    /// its previous size; if that fails too, the error says the log must stop.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        vector_before: &VersionVector,
        config: &LogConfig,
    ) -> Result<(), AppendFailure> {
        assert_eq!(
            header.base_offset, self.next_offset,
            "appends are contiguous"
        );
        assert_eq!(bytes.len(), header.total_bytes as usize, "one whole batch");
        let position = self.size;
        if let Err(source) = self.file.write_at(bytes, position) {
            let error = StorageError::io("write", &self.paths.log, source);
            return match self.file.set_len(position) {
                Ok(()) => Err(AppendFailure::RolledBack(error)),
                Err(rollback) => Err(AppendFailure::Fatal(format!(
                    "{error}; rolling back failed too: {rollback}"
                ))),
            };
        }
        let (entry, checkpoint) = self.note_batch(position, header, vector_before, config);
        // The derived files are rebuilt by recovery if these writes are lost
        // or fail, so a failure here is logged, not returned.
        if let Some(entry) = entry {
            let at = (self.index.len() - 1) as u64;
            let offset_result = self
                .index_file
                .write_at(&encode_offset_entry(&entry), at * 8);
            let time_result = self.time_index_file.write_at(
                &encode_time_entry(entry.timestamp_before, entry.relative_offset),
                at * 12,
            );
            if let Err(error) = offset_result.and(time_result) {
                tracing::warn!(target: "meshgate::storage", path = %self.paths.index.display(), %error, "index write failed; recovery will rebuild it");
            }
        }
        if let Some(checkpoint) = checkpoint {
            let encoded = encode_checkpoint(self.base_offset, &checkpoint);
            match self
                .origins_file
                .write_at(&encoded, self.origins_file_bytes)
            {
                Ok(()) => self.origins_file_bytes += encoded.len() as u64,
                Err(error) => {
                    tracing::warn!(target: "meshgate::storage", path = %self.paths.origins.display(), %error, "checkpoint write failed; recovery will rebuild it");
                }
            }
        }
        Ok(())
    }

    /// Makes the segment and its derived files durable (before it is sealed).
    pub(crate) fn sync_all(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(io_error("fsync", &self.paths.log))?;
        for (file, path) in [
            (&self.index_file, &self.paths.index),
            (&self.time_index_file, &self.paths.time_index),
            (&self.origins_file, &self.paths.origins),
        ] {
            file.sync_data().map_err(io_error("fsync", path))?;
        }
        Ok(())
    }

    pub(crate) fn file(&self) -> &Arc<dyn FileHandle> {
        &self.file
    }

    pub(crate) fn paths(&self) -> &SegmentPaths {
        &self.paths
    }

    pub(crate) fn base_offset(&self) -> LocalOffset {
        self.base_offset
    }

    pub(crate) fn next_offset(&self) -> LocalOffset {
        self.next_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn created_ms(&self) -> u64 {
        self.created_ms
    }

    pub(crate) fn max_timestamp(&self) -> Timestamp {
        self.max_timestamp
    }

    pub(crate) fn start_vector(&self) -> &VersionVector {
        &self.start_vector
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    /// The position and header of the batch holding `offset`, scanning from
    /// the nearest index entry. `None` when the segment ends first.
    pub(crate) fn find_batch(
        &self,
        offset: LocalOffset,
        config: &LogConfig,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let relative = offset.0.saturating_sub(self.base_offset.0);
        let entry = self
            .index
            .partition_point(|e| u64::from(e.relative_offset) <= relative)
            .checked_sub(1)
            .map(|i| self.index[i]);
        let start = entry.map_or(self.header_bytes, |e| u64::from(e.position));
        let chunk = (config.index_interval_bytes as usize).saturating_mul(2);
        let mut scanner = Scanner::new(
            &*self.file,
            (start, self.size),
            false,
            config.batch_bytes_max as usize,
            chunk.max(batch::BATCH_HEADER_BYTES_MAX),
        );
        while let Some((position, header)) =
            scanner.next_header().map_err(|stop| self.corrupt(stop))?
        {
            if header.next_offset() > offset {
                return Ok(Some((position, header)));
            }
        }
        Ok(None)
    }

    /// Plans a read of whole batches from the one holding `offset`, up to
    /// `bytes_max` (but at least one batch), not past `visible_end`.
    pub(crate) fn plan_read(
        &self,
        offset: LocalOffset,
        bytes_max: usize,
        visible_end: (LocalOffset, u64),
        config: &LogConfig,
    ) -> Result<Option<ReadPlan>> {
        let (visible_offset, visible_position) = visible_end;
        if offset >= visible_offset.min(self.next_offset) {
            return Ok(None);
        }
        let Some((position, header)) = self.find_batch(offset, config)? else {
            return Ok(None);
        };
        let limit = visible_position.min(self.size);
        let len = (limit - position).min(bytes_max.max(header.total_bytes as usize) as u64);
        Ok(Some(ReadPlan {
            file: self.file.clone(),
            path: self.paths.log.clone(),
            position,
            len: len as usize,
        }))
    }

    /// The prefix vector at `offset` (which must be within this segment or
    /// its end): the nearest checkpoint plus a scan of at most one
    /// checkpoint interval.
    pub(crate) fn prefix_vector(
        &self,
        offset: LocalOffset,
        config: &LogConfig,
    ) -> Result<VersionVector> {
        let checkpoint = self
            .checkpoints
            .partition_point(|c| c.offset <= offset)
            .checked_sub(1)
            .map(|i| &self.checkpoints[i]);
        let (mut vector, start) = match checkpoint {
            Some(c) => (c.vector.clone(), c.position),
            None => (self.start_vector.clone(), self.header_bytes),
        };
        let mut scanner = Scanner::new(
            &*self.file,
            (start, self.size),
            false,
            config.batch_bytes_max as usize,
            config.origin_checkpoint_bytes as usize + batch::BATCH_HEADER_BYTES_MAX,
        );
        while let Some((_, header)) = scanner.next_header().map_err(|stop| self.corrupt(stop))? {
            if header.base_offset >= offset {
                break;
            }
            let held = (offset.0 - header.base_offset.0).min(u64::from(header.record_count));
            vector.add(&header.origin, held);
        }
        Ok(vector)
    }

    /// The local offset of record `seq` of `origin`, if this segment holds it.
    pub(crate) fn locate(
        &self,
        origin: &OriginStream,
        seq: u64,
        config: &LogConfig,
    ) -> Result<Option<LocalOffset>> {
        let checkpoint = self
            .checkpoints
            .partition_point(|c| c.vector.get(origin) <= seq)
            .checked_sub(1)
            .map(|i| &self.checkpoints[i]);
        let start = checkpoint.map_or(self.header_bytes, |c| c.position);
        let mut scanner = Scanner::new(
            &*self.file,
            (start, self.size),
            false,
            config.batch_bytes_max as usize,
            config.origin_checkpoint_bytes as usize + batch::BATCH_HEADER_BYTES_MAX,
        );
        while let Some((_, header)) = scanner.next_header().map_err(|stop| self.corrupt(stop))? {
            if &header.origin == origin && header.base_seq.0 <= seq && seq < header.next_seq().0 {
                return Ok(Some(LocalOffset(
                    header.base_offset.0 + (seq - header.base_seq.0),
                )));
            }
        }
        Ok(None)
    }

    /// The first offset at or after `from` whose record's timestamp is at
    /// least `timestamp`, if this segment holds one.
    pub(crate) fn offset_for_timestamp(
        &self,
        timestamp: Timestamp,
        config: &LogConfig,
    ) -> Result<Option<LocalOffset>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let entry = self
            .index
            .partition_point(|e| e.timestamp_before < timestamp)
            .checked_sub(1)
            .map(|i| self.index[i]);
        let start = entry.map_or(self.header_bytes, |e| u64::from(e.position));
        let mut scanner = Scanner::new(
            &*self.file,
            (start, self.size),
            false,
            config.batch_bytes_max as usize,
            LONG_SCAN_CHUNK_BYTES,
        );
        while let Some((position, header)) =
            scanner.next_header().map_err(|stop| self.corrupt(stop))?
        {
            if header.max_timestamp < timestamp {
                continue;
            }
            let batch = self.read_batch(position, header.total_bytes as usize, config)?;
            for record in batch.records() {
                let record = record?;
                if record.record.timestamp >= timestamp {
                    return Ok(Some(record.offset));
                }
            }
        }
        Ok(None)
    }

    fn read_batch(&self, position: u64, total: usize, config: &LogConfig) -> Result<Batch> {
        let mut buffer = vec![0; total];
        self.file
            .read_exact_at(&mut buffer, position)
            .map_err(io_error("read", &self.paths.log))?;
        let mut bytes = Bytes::from(buffer);
        Batch::split_first(&mut bytes, config.batch_bytes_max as usize).map_err(|error| {
            StorageError::CorruptSegment {
                path: self.paths.log.clone(),
                position,
                reason: error.to_string(),
            }
        })
    }

    fn corrupt(&self, stop: ScanStop) -> StorageError {
        StorageError::CorruptSegment {
            path: self.paths.log.clone(),
            position: stop.position,
            reason: stop.reason,
        }
    }

    /// Removes the segment's files. Readers holding the file keep reading.
    pub(crate) fn delete(&self, fs: &dyn FileSystem) -> Result<()> {
        for path in self.paths.all() {
            match fs.remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(StorageError::io("remove", path, error)),
            }
        }
        Ok(())
    }
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// Nothing was written.
    RolledBack(StorageError),
    /// The file may hold a partial write: the log must stop.
    Fatal(String),
}

fn offset_break(header: &BatchHeader, expected: LocalOffset) -> String {
    format!(
        "batch at offset {} where {} was expected",
        header.base_offset.0, expected.0
    )
}

fn encode_header(
    base_offset: LocalOffset,
    created_ms: u64,
    start_vector: &VersionVector,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_FIXED_BYTES + 32 * start_vector.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 8]); // length and CRC, filled in below
    out.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&base_offset.0.to_le_bytes());
    out.extend_from_slice(&created_ms.to_le_bytes());
    index::encode_vector(&mut out, start_vector);
    let len = out.len() as u32;
    out[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and checks a segment header: base offset, creation time, start
/// vector and header length.
fn read_header(
    file: &dyn FileHandle,
    path: &Path,
) -> Result<(LocalOffset, u64, VersionVector, u64)> {
    let corrupt = |position: u64, reason: &str| StorageError::CorruptSegment {
        path: path.to_path_buf(),
        position,
        reason: reason.to_string(),
    };
    let mut prefix = [0u8; 16];
    let read = read_up_to(file, &mut prefix, 0).map_err(io_error("read", path))?;
    if read < 16 || &prefix[..8] != MAGIC {
        return Err(corrupt(0, "missing or damaged segment header"));
    }
    let len = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as usize;
    if !(HEADER_FIXED_BYTES + 4..=HEADER_BYTES_MAX).contains(&len) {
        return Err(corrupt(8, "segment header length out of range"));
    }
    let mut header = vec![0; len];
    let read = read_up_to(file, &mut header, 0).map_err(io_error("read", path))?;
    if read < len {
        return Err(corrupt(read as u64, "segment header truncated"));
    }
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[16..]) != crc {
        return Err(corrupt(12, "segment header checksum mismatch"));
    }
    let version = u16::from_le_bytes(header[16..18].try_into().expect("2 bytes"));
    if version != SEGMENT_FORMAT_VERSION {
        return Err(corrupt(16, "unknown segment format version"));
    }
    let base = u64::from_le_bytes(header[20..28].try_into().expect("8 bytes"));
    let created_ms = u64::from_le_bytes(header[28..36].try_into().expect("8 bytes"));
    let (vector, used) = index::decode_vector(&header[HEADER_FIXED_BYTES..])
        .map_err(|_| corrupt(HEADER_FIXED_BYTES as u64, "damaged start vector"))?;
    if HEADER_FIXED_BYTES + used != len {
        return Err(corrupt(
            HEADER_FIXED_BYTES as u64,
            "trailing bytes in segment header",
        ));
    }
    Ok((LocalOffset(base), created_ms, vector, len as u64))
}
