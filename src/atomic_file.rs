//! Crash-safe file replacement: write a temporary file in the same directory, fsync it,
//! rename (or link, when the target must not exist) over the target, fsync the directory.
//!
//! After a crash at any point the target is either the complete old file or the complete
//! new one; at worst a stray `.tmp` file is left beside it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How the target is treated if it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Replace it atomically.
    Replace,
    /// Fail with `AlreadyExists`: never overwrite (key files).
    CreateNew,
}

fn temp_path(target: &Path) -> io::Result<PathBuf> {
    let name =
        target.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let suffix: [u8; 8] = crate::secret::random_array().map_err(io::Error::other)?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.tmp", hex::encode(suffix)));
    Ok(target.with_file_name(tmp))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so a rename or link in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens a new file for writing with owner-only permissions (0600 on Unix).
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Removes temporary files that writers of `target` left behind when they were killed.
///
/// Call only while holding a lock that excludes every other writer of `target`.
pub(crate) fn remove_strays(target: &Path) {
    let (Some(name), Ok(entries)) = (target.file_name(), fs::read_dir(parent_dir(target))) else { return };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") && n.len() == prefix.len() + 16 + 4 {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes `contents` to `target` atomically with owner-only permissions.
pub(crate) fn write(target: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    let tmp = temp_path(target)?;
    let result = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        match mode {
            Mode::Replace => fs::rename(&tmp, target)?,
            Mode::CreateNew => {
                // link() fails if the target exists, so a key is never overwritten.
                fs::hard_link(&tmp, target)?;
                fs::remove_file(&tmp)?;
            }
        }
        sync_dir(parent_dir(target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_create_new() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write(&p, b"one", Mode::CreateNew).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        let e = write(&p, b"two", Mode::CreateNew).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write(&p, b"three", Mode::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
