//! [`FileSystem`] in memory that models what a crash does to a real disk:
//! writes and directory changes that were not synced are lost, or partly
//! kept and torn, as a seeded random choice decides. Used by tests and by
//! the simulation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{FileHandle, FileSystem, OpenMode, parent_of};

/// What a simulated crash keeps of unsynced writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write and directory change is lost.
    LoseUnsynced,
    /// Per file, a random prefix of its unsynced writes survives, the last of
    /// them possibly cut short (a torn write).
    TornWrites {
        /// Seeds the random choices, so a crash reproduces exactly.
        seed: u64,
    },
}

/// An in-memory file system. Clones share the same files, so a simulated
/// node restarted on a clone sees what survived its crash.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// What a reader sees now.
    entries: BTreeMap<PathBuf, Arc<MemFile>>,
    /// The directory entries that survive a crash.
    durable_entries: BTreeMap<PathBuf, Arc<MemFile>>,
    directories: BTreeSet<PathBuf>,
    faults: Faults,
}

#[derive(Default, Clone, Copy)]
struct Faults {
    fail_syncs: bool,
    stored_bytes_max: Option<u64>,
    syncs: u64,
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("MemFs")
            .field("files", &state.entries.len())
            .finish()
    }
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates power loss: every file keeps what was synced (and, with
    /// [`CrashMode::TornWrites`], a random part of what was not); files
    /// created, renamed or removed since their directory was last synced
    /// revert. Handles opened before the crash no longer reach the files.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        let mut rng = match mode {
            CrashMode::LoseUnsynced => None,
            CrashMode::TornWrites { seed } => Some(SmallRng::seed_from_u64(seed)),
        };
        let mut survivors = BTreeMap::new();
        for (path, file) in &state.durable_entries {
            let data = file.after_crash(rng.as_mut());
            survivors.insert(path.clone(), Arc::new(MemFile::with_durable(data)));
        }
        state.entries = survivors.clone();
        state.durable_entries = survivors;
    }

    /// An independent copy in which everything currently visible is durable,
    /// as if synced: for tests that damage one copy many ways.
    pub fn snapshot(&self) -> MemFs {
        let state = self.state.lock();
        let entries: BTreeMap<PathBuf, Arc<MemFile>> = state
            .entries
            .iter()
            .map(|(path, file)| {
                (
                    path.clone(),
                    Arc::new(MemFile::with_durable(file.inner.lock().data.clone())),
                )
            })
            .collect();
        MemFs {
            state: Arc::new(Mutex::new(State {
                durable_entries: entries.clone(),
                entries,
                directories: state.directories.clone(),
                faults: Faults::default(),
            })),
        }
    }

    /// How many `sync_data` calls succeeded so far.
    pub fn sync_count(&self) -> u64 {
        self.state.lock().faults.syncs
    }

    /// Makes every later `sync_data` and `sync_dir` fail (or succeed again).
    pub fn set_fail_syncs(&self, fail: bool) {
        self.state.lock().faults.fail_syncs = fail;
    }

    /// Makes writes fail with "no space" once the files would hold more than
    /// `bytes` in total (`None`: no limit).
    pub fn set_stored_bytes_max(&self, bytes: Option<u64>) {
        self.state.lock().faults.stored_bytes_max = bytes;
    }

    /// Bytes held by all files now (what `set_stored_bytes_max` limits).
    pub fn used_bytes(&self) -> u64 {
        MemFs::stored_bytes(&self.state.lock())
    }

    /// The current contents of a file, for tests.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        state
            .entries
            .get(path)
            .map(|file| file.inner.lock().data.clone())
    }

    /// Replaces the contents of a file as if written and synced, for tests
    /// that damage files on purpose.
    pub fn replace_contents(&self, path: &Path, data: Vec<u8>) {
        let state = self.state.lock();
        if let Some(file) = state.entries.get(path) {
            let mut inner = file.inner.lock();
            inner.data = data.clone();
            inner.durable = data;
            inner.pending.clear();
        }
    }

    fn stored_bytes(state: &State) -> u64 {
        state
            .entries
            .values()
            .map(|file| file.inner.lock().data.len() as u64)
            .sum()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.directories.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        let files = state.entries.keys().map(PathBuf::as_path);
        let directories = state.directories.iter().map(PathBuf::as_path);
        let mut names: Vec<String> = files
            .chain(directories)
            .filter(|entry| entry.parent() == Some(path))
            .filter_map(|entry| entry.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut state = self.state.lock();
        if !state.directories.contains(parent_of(path)) {
            return Err(not_found(parent_of(path)));
        }
        let existing = state.entries.get(path).cloned();
        let file = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            (OpenMode::Existing, None) => return Err(not_found(path)),
            (OpenMode::Existing | OpenMode::CreateOrOpen, Some(file)) => file,
            (OpenMode::Truncate, Some(file)) => {
                file.set_len(0)?;
                file
            }
            (_, None) => {
                let file = Arc::new(MemFile::with_durable(Vec::new()));
                state.entries.insert(path.to_path_buf(), file.clone());
                file
            }
        };
        Ok(Arc::new(MemHandle {
            file,
            fs: self.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state
            .entries
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        // Directory removal is modelled as immediately durable, like the
        // creation of directories.
        state.entries.retain(|entry, _| !entry.starts_with(path));
        state
            .durable_entries
            .retain(|entry, _| !entry.starts_with(path));
        state
            .directories
            .retain(|directory| !directory.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state.entries.remove(from).ok_or_else(|| not_found(from))?;
        state.entries.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.faults.fail_syncs {
            return Err(io::Error::other("injected fsync failure"));
        }
        let in_dir = |entry: &Path| parent_of(entry) == path;
        state.durable_entries.retain(|entry, _| !in_dir(entry));
        let current: Vec<(PathBuf, Arc<MemFile>)> = state
            .entries
            .iter()
            .filter(|(entry, _)| in_dir(entry))
            .map(|(entry, file)| (entry.clone(), file.clone()))
            .collect();
        state.durable_entries.extend(current);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.lock();
        state.entries.contains_key(path) || state.directories.contains(path)
    }

    fn blocking_io(&self) -> bool {
        false
    }
}

#[derive(Debug)]
struct MemHandle {
    file: Arc<MemFile>,
    fs: MemFs,
}

impl FileHandle for MemHandle {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let inner = self.file.inner.lock();
        let Ok(start) = usize::try_from(position) else {
            return Ok(0);
        };
        if start >= inner.data.len() {
            return Ok(0);
        }
        let count = buf.len().min(inner.data.len() - start);
        buf[..count].copy_from_slice(&inner.data[start..start + count]);
        Ok(count)
    }

    fn write_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        {
            let state = self.fs.state.lock();
            if let Some(limit) = state.faults.stored_bytes_max {
                let current = MemFs::stored_bytes(&state);
                let file_len = self.file.inner.lock().data.len() as u64;
                let growth = (position + buf.len() as u64).saturating_sub(file_len);
                if current + growth > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "no space left on device",
                    ));
                }
            }
        }
        self.file.set(Op::Write {
            position,
            bytes: buf.to_vec(),
        })
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.inner.lock().data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut state = self.fs.state.lock();
            if state.faults.fail_syncs {
                return Err(io::Error::other("injected fsync failure"));
            }
            state.faults.syncs += 1;
        }
        let mut inner = self.file.inner.lock();
        let pending = std::mem::take(&mut inner.pending);
        for op in &pending {
            op.apply(&mut inner.durable);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct MemFile {
    inner: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write { position, bytes } => {
                let start = *position as usize;
                let end = start + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
            }
            Op::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

impl MemFile {
    fn with_durable(data: Vec<u8>) -> Self {
        Self {
            inner: Mutex::new(FileState {
                durable: data.clone(),
                data,
                pending: Vec::new(),
            }),
        }
    }

    fn set(&self, op: Op) -> io::Result<()> {
        if let Op::Write { position, bytes } = &op
            && usize::try_from(position + bytes.len() as u64).is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past addressable memory",
            ));
        }
        let mut inner = self.inner.lock();
        op.apply(&mut inner.data);
        inner.pending.push(op);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.set(Op::SetLen(len))
    }

    /// The bytes that survive a crash.
    fn after_crash(&self, rng: Option<&mut SmallRng>) -> Vec<u8> {
        let inner = self.inner.lock();
        let mut data = inner.durable.clone();
        let Some(rng) = rng else {
            return data;
        };
        if inner.pending.is_empty() {
            return data;
        }
        let kept = rng.random_range(0..=inner.pending.len());
        for op in &inner.pending[..kept] {
            op.apply(&mut data);
        }
        // The next write may have been cut short.
        if let Some(Op::Write { position, bytes }) = inner.pending.get(kept) {
            let torn_len = rng.random_range(0..=bytes.len());
            Op::Write {
                position: *position,
                bytes: bytes[..torn_len].to_vec(),
            }
            .apply(&mut data);
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (MemFs, PathBuf) {
        let fs = MemFs::new();
        let dir = PathBuf::from("/d");
        fs.create_dir_all(&dir).expect("mkdir");
        (fs, dir)
    }

    #[test]
    fn unsynced_writes_are_lost_on_crash() {
        let (fs, dir) = setup();
        let path = dir.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        fs.sync_dir(&dir).expect("sync dir");
        file.write_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        file.write_at(b"-lost", 7).expect("write");
        fs.crash(CrashMode::LoseUnsynced);
        assert_eq!(fs.contents(&path).expect("file survives"), b"durable");
    }

    #[test]
    fn files_created_without_a_directory_sync_vanish() {
        let (fs, dir) = setup();
        let path = dir.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_at(b"x", 0).expect("write");
        file.sync_data().expect("sync");
        fs.crash(CrashMode::LoseUnsynced);
        assert!(fs.contents(&path).is_none());
    }

    #[test]
    fn torn_crashes_keep_a_prefix_of_the_writes() {
        for seed in 0..50 {
            let (fs, dir) = setup();
            let path = dir.join("f");
            let file = fs.open(&path, OpenMode::CreateNew).expect("create");
            fs.sync_dir(&dir).expect("sync dir");
            file.write_at(b"aaaa", 0).expect("write");
            file.sync_data().expect("sync");
            file.write_at(b"bbbb", 4).expect("write");
            file.write_at(b"cccc", 8).expect("write");
            fs.crash(CrashMode::TornWrites { seed });
            let data = fs.contents(&path).expect("survives");
            let full = b"aaaabbbbcccc";
            assert!(
                data.len() >= 4 && full.starts_with(&data),
                "seed {seed}: {data:?}"
            );
        }
    }

    #[test]
    fn writes_beyond_the_space_limit_fail() {
        let (fs, dir) = setup();
        fs.set_stored_bytes_max(Some(10));
        let file = fs
            .open(&dir.join("f"), OpenMode::CreateNew)
            .expect("create");
        file.write_at(b"0123456789", 0).expect("fits");
        let error = file.write_at(b"x", 10).expect_err("full");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }
}
