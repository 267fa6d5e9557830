//! Opening a log: recovery after a crash, quarantine of damaged segments.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CLEAN_MARKER, Log, QUARANTINE_NOTE};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::fs::{FileSystem, OpenMode, write_atomically};
use crate::segment::{Segment, SegmentPaths, Validation, parse_segment_name};
use crate::types::{Incarnation, LocalOffset};
use crate::vector::VersionVector;

impl Log {
    /// Opens the log in `dir`, creating it if empty.
    ///
    /// After a crash (no clean-shutdown marker) the active segment is
    /// checksummed batch by batch and cut after the last valid batch; its
    /// indexes are rebuilt. Sealed segments were fsynced when sealed, so only
    /// their tails are checked; a damaged sealed segment quarantines the log
    /// ([`StorageError::CorruptSegment`]) and leaves the files for an
    /// operator. `incarnation`, when given, is enforced on every append.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        incarnation: Option<Incarnation>,
        now_ms: u64,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::io(op, path, source)
        };
        let note = dir.join(QUARANTINE_NOTE);
        if fs.exists(&note) {
            let reason = fs
                .open(&note, OpenMode::Existing)
                .and_then(|f| f.read_all())
                .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
                .unwrap_or_else(|error| format!("(note unreadable: {error})"));
            return Err(StorageError::Quarantined { dir, reason });
        }
        fs.create_dir_all(&dir).map_err(io("create", &dir))?;
        let names = fs.list_dir(&dir).map_err(io("list", &dir))?;
        let clean = names.iter().any(|name| name == CLEAN_MARKER);
        if clean {
            // Removed before any write, so a crash from now on is seen as one.
            let marker = dir.join(CLEAN_MARKER);
            fs.remove_file(&marker).map_err(io("remove", &marker))?;
            fs.sync_dir(&dir).map_err(io("fsync", &dir))?;
        }
        let bases = segment_bases(&*fs, &dir, &names)?;
        let mut log = Log {
            fs,
            dir,
            config,
            incarnation,
            segments: Vec::with_capacity(bases.len().max(1)),
            vector: VersionVector::new(),
            durable_offset: LocalOffset(0),
            durable_position: 0,
            failed: None,
            closed: false,
            scratch: Vec::new(),
        };
        match log.open_segments(&bases, clean, now_ms) {
            Ok(()) => Ok(log),
            Err(error @ StorageError::CorruptSegment { .. }) => {
                log.quarantine(&error);
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    fn open_segments(&mut self, bases: &[LocalOffset], clean: bool, now_ms: u64) -> Result<()> {
        let fs = self.fs.clone();
        let Some((&active_base, sealed)) = bases.split_last() else {
            let segment = Segment::create(
                &*fs,
                &self.dir,
                LocalOffset(0),
                VersionVector::new(),
                now_ms,
            )?;
            fs.sync_dir(&self.dir)
                .map_err(|source| StorageError::io("fsync", &self.dir, source))?;
            self.durable_position = segment.size();
            self.segments.push(segment);
            return Ok(());
        };
        for &base in sealed {
            let opened = Segment::open(&*fs, &self.dir, base, &self.config, Validation::Tail)?;
            if let Some(stop) = opened.invalid_tail {
                return Err(StorageError::CorruptSegment {
                    path: opened.segment.paths().log.clone(),
                    position: stop.position,
                    reason: stop.reason,
                });
            }
            self.push_checked(opened.segment)?;
        }
        let validation = if clean {
            Validation::Tail
        } else {
            Validation::Full
        };
        let active = match Segment::open(&*fs, &self.dir, active_base, &self.config, validation) {
            Ok(opened) => {
                if let Some(stop) = &opened.invalid_tail {
                    tracing::warn!(
                        target: "meshgate::storage",
                        path = %opened.segment.paths().log.display(),
                        position = stop.position,
                        reason = %stop.reason,
                        "cutting torn tail of the active segment"
                    );
                }
                // Syncs the cut, and whatever the page cache held but the
                // disk may not, before anything is made visible.
                opened.segment.truncate_file_to_size()?;
                opened.segment
            }
            Err(StorageError::CorruptSegment { reason, .. })
                if !clean && (!sealed.is_empty() || active_base == LocalOffset(0)) =>
            {
                // A crash while this segment was being created: its header
                // never became durable, so no append reached it. Recreate it
                // with the vector its predecessor ends with.
                tracing::warn!(target: "meshgate::storage", dir = %self.dir.display(), %reason, "recreating a segment whose creation was cut short");
                let vector = match self.segments.last() {
                    Some(previous) => {
                        previous.prefix_vector(previous.next_offset(), &self.config)?
                    }
                    None => VersionVector::new(),
                };
                let segment = Segment::create(&*fs, &self.dir, active_base, vector, now_ms)?;
                fs.sync_dir(&self.dir)
                    .map_err(|source| StorageError::io("fsync", &self.dir, source))?;
                segment
            }
            Err(error) => return Err(error),
        };
        self.push_checked(active)?;
        let active = self.active();
        let vector = active.prefix_vector(active.next_offset(), &self.config)?;
        let (durable_offset, durable_position) = (active.next_offset(), active.size());
        self.vector = vector;
        self.durable_offset = durable_offset;
        self.durable_position = durable_position;
        Ok(())
    }

    /// Adds the next segment, checking it starts where the previous ended.
    fn push_checked(&mut self, segment: Segment) -> Result<()> {
        if let Some(previous) = self.segments.last()
            && previous.next_offset() != segment.base_offset()
        {
            return Err(StorageError::CorruptSegment {
                path: previous.paths().log.clone(),
                position: previous.size(),
                reason: format!(
                    "segment ends at offset {} but the next starts at {}",
                    previous.next_offset().0,
                    segment.base_offset().0
                ),
            });
        }
        self.segments.push(segment);
        Ok(())
    }

    fn quarantine(&self, error: &StorageError) {
        let note = self.dir.join(QUARANTINE_NOTE);
        let text = format!("{error}\nremove this file after repairing the log to open it again\n");
        match write_atomically(&*self.fs, &note, text.as_bytes()) {
            Ok(()) => {
                tracing::error!(target: "meshgate::storage", dir = %self.dir.display(), %error, "log quarantined")
            }
            Err(write_error) => {
                tracing::error!(target: "meshgate::storage", dir = %self.dir.display(), %error, %write_error, "log is damaged and the quarantine note could not be written")
            }
        }
    }
}

/// The base offsets of the segment files in `dir`, in order. Removes
/// leftovers: temporary files and index files whose segment is gone.
fn segment_bases(fs: &dyn FileSystem, dir: &Path, names: &[String]) -> Result<Vec<LocalOffset>> {
    let bases: BTreeSet<LocalOffset> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    let kept: BTreeSet<PathBuf> = bases
        .iter()
        .flat_map(|&base| SegmentPaths::new(dir, base).all().map(Path::to_path_buf))
        .collect();
    for name in names {
        let path = dir.join(name);
        let derived = [".index", ".timeindex", ".origins", ".tmp"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
        if derived && !kept.contains(&path) {
            fs.remove_file(&path)
                .map_err(|source| StorageError::io("remove", &path, source))?;
        }
    }
    Ok(bases.into_iter().collect())
}
