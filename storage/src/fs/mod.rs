//! The file-system seam. The log reaches the disk only through
//! [`FileSystem`] and [`FileHandle`], so every test and the simulation can run
//! the real log on [`MemFs`], which loses unsynced data and tears writes on a
//! simulated crash, while production runs on [`StdFs`].

mod mem;
mod std_fs;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use mem::{CrashMode, MemFs};
pub use std_fs::StdFs;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; fail if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    Existing,
    /// Open for reading and writing, creating it empty if missing.
    CreateOrOpen,
    /// Create or replace with an empty file.
    Truncate,
}

/// A directory tree of files. Paths are whatever the log builds from its
/// directory; implementations need not support anything else.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it. Not atomic: a crash may
    /// leave part of it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True if the path names an existing file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// True when calls may block the thread for long (a real disk): the
    /// async shell then runs fsyncs on a blocking thread. False for memory.
    fn blocking_io(&self) -> bool;
}

/// An open file with positional I/O, shareable between a writer and readers.
pub trait FileHandle: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `position`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `position`.
    fn write_at(&self, buf: &[u8], position: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `position`.
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let read = self.read_at(&mut buf[done..], position + done as u64)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ends {} bytes early", buf.len() - done),
                ));
            }
            done += read;
        }
        Ok(())
    }

    /// Reads the whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.len()?;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0; len];
        let read = read_up_to(self, &mut buf, 0)?;
        buf.truncate(read);
        Ok(buf)
    }
}

/// Reads as much of `buf` as the file holds from `position`, returning the
/// count (short only at end of file).
pub fn read_up_to(
    file: &(impl FileHandle + ?Sized),
    buf: &mut [u8],
    position: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let read = file.read_at(&mut buf[done..], position + done as u64)?;
        if read == 0 {
            break;
        }
        done += read;
    }
    Ok(done)
}

/// Writes `bytes` to `path` durably: to a temporary file, fsynced, renamed
/// over the target, directory fsynced.
pub fn write_atomically(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let file = fs.open(&temporary, OpenMode::Truncate)?;
    file.write_at(bytes, 0)?;
    file.sync_data()?;
    fs.rename(&temporary, path)?;
    fs.sync_dir(parent_of(path))
}

/// The directory holding `path` ("." when it has none).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
