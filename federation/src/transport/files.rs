//! Small file helpers for PEM files: crash-safe writes with explicit
//! permissions, and bounded reads.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::TransportError;

/// Largest PEM file read, in bytes. A CA or node certificate with its chain
/// is a few kilobytes; anything larger is not ours.
pub(crate) const PEM_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Unix permissions of files holding a private key: owner read and write.
pub(crate) const KEY_FILE_MODE: u32 = 0o600;

/// Unix permissions of files holding a certificate: world-readable, it is
/// public.
pub(crate) const CERT_FILE_MODE: u32 = 0o644;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |source| TransportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a PEM file whole, refusing files over [`PEM_FILE_BYTES_MAX`].
pub(crate) fn read_pem_file(path: &Path) -> Result<String, TransportError> {
    let file = fs::File::open(path).map_err(io_error(path))?;
    let mut text = String::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io_error(path))?;
    if text.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TransportError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {PEM_FILE_BYTES_MAX} bytes"),
            ),
        });
    }
    Ok(text)
}

/// Writes `contents` to `path` so that a crash leaves either the old file or
/// the new one: write a temporary file with `mode`, fsync it, rename it over
/// `path`, fsync the directory. The directory is created if missing.
pub(crate) fn write_file_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<(), TransportError> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&temporary).map_err(io_error(&temporary))?;
        // `mode` only applies when the file is created: a stale temporary
        // file from a crash keeps its old mode, so set it again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_error(&temporary))?;
        }
        file.write_all(contents).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
    }
    fs::rename(&temporary, path).map_err(io_error(path))?;
    sync_dir(&dir)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a directory so a rename or a created file in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), TransportError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether `path` exists, failing on errors other than "not found" (such as
/// permission denied), which must not be mistaken for absence.
pub(crate) fn exists(path: &Path) -> Result<bool, TransportError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(TransportError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
