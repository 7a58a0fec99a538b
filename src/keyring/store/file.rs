//! The file store: one keyring file, changed under an exclusive lock on `<file>.lock` and
//! replaced atomically, so two processes never lose each other's update.

use std::path::{Path, PathBuf};

use super::{Change, Store};
use crate::error::KeyringError;
use crate::fs;

/// A keyring file.
pub(crate) struct FileStore {
    path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io { path: path.to_path_buf(), source }
}

impl FileStore {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Store for FileStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<Vec<u8>, KeyringError> {
        std::fs::read(&self.path).map_err(io_err(&self.path))
    }

    fn create(&self, doc: &[u8], _revision: u64) -> Result<(), KeyringError> {
        fs::create_new(&self.path, doc).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyringError::AlreadyExists(self.path.clone())
            } else {
                KeyringError::Io { path: self.path.clone(), source: e }
            }
        })
    }

    fn update(&self, change: &mut Change<'_>) -> Result<(), KeyringError> {
        let _lock = fs::Lock::acquire(&self.path, fs::lock_wait()).map_err(io_err(&self.path))?;
        let current = self.read()?;
        if let Some((doc, _revision)) = change(&current)? {
            fs::replace(&self.path, &doc).map_err(io_err(&self.path))?;
            fs::remove_strays(&self.path);
        }
        Ok(())
    }

    fn fingerprint(&self) -> Result<Vec<u8>, KeyringError> {
        let m = std::fs::metadata(&self.path).map_err(io_err(&self.path))?;
        let mut fp = Vec::with_capacity(48);
        fp.extend_from_slice(&m.len().to_be_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            for v in [m.dev(), m.ino()] {
                fp.extend_from_slice(&v.to_be_bytes());
            }
            for v in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
                fp.extend_from_slice(&v.to_be_bytes());
            }
        }
        #[cfg(not(unix))]
        if let Ok(t) = m.modified() {
            fp.extend_from_slice(format!("{t:?}").as_bytes());
        }
        Ok(fp)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}
