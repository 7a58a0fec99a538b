//! Persistence of a keyring: loading its file, and applying a change under the file lock
//! (re-read, change, bump the revision, write atomically, swap the in-memory snapshot).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::state::State;
use super::{Keyring, RootKeyProvider, file, lock};
use crate::atomic_file;
use crate::error::KeyringError;

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io { path: path.to_path_buf(), source }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// An exclusive advisory lock on `<keyring>.lock`, released on drop.
struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self, KeyringError> {
        let lp = lock_path(path);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(&lp).map_err(io_err(&lp))?;
        f.lock().map_err(io_err(&lp))?;
        Ok(Self(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Reads and verifies the keyring file at `path`.
pub(super) fn load(path: &Path, root: Arc<dyn RootKeyProvider>) -> Result<State, KeyringError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    file::decode(&bytes, path, root)
}

/// Writes a new keyring file, never over an existing one.
pub(super) fn create(path: &Path, state: &State) -> Result<(), KeyringError> {
    let text = file::encode(state)?;
    atomic_file::write(path, text.as_bytes(), atomic_file::Mode::CreateNew).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyringError::AlreadyExists(path.to_path_buf())
        } else {
            KeyringError::Io { path: path.to_path_buf(), source: e }
        }
    })
}

impl Keyring {
    /// Re-reads the keyring file to pick up changes made by another process.
    ///
    /// # Errors
    /// As [`Keyring::open`]; [`KeyringError::NoFile`] for an in-memory keyring.
    pub fn reload(&self) -> Result<(), KeyringError> {
        let path = self.inner.path.as_deref().ok_or(KeyringError::NoFile)?;
        let state = load(path, self.state().root.clone())?;
        self.install(state);
        Ok(())
    }

    /// Makes `state` the current snapshot.
    fn install(&self, state: State) {
        self.inner.state.store(Arc::new(state));
        self.inner.cache.clear();
        // Released after the new snapshot is visible: a handle that sees the new epoch
        // also sees the new state.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies a change under the in-process writer lock and, with a file, the file lock:
    /// re-read the file, change, bump the revision, write atomically, swap the snapshot.
    pub(super) fn mutate<T>(
        &self,
        event: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        let _writer = lock(&self.inner.writer);
        let (mut state, _file_lock) = match &self.inner.path {
            None => (State::clone(&self.state()), None),
            Some(path) => {
                let file_lock = FileLock::acquire(path)?;
                (load(path, self.state().root.clone())?, Some(file_lock))
            }
        };
        let out = f(&mut state)?;
        state.revision = state.revision.saturating_add(1);
        if let Some(path) = &self.inner.path {
            let text = file::encode(&state)?;
            atomic_file::write(path, text.as_bytes(), atomic_file::Mode::Replace).map_err(io_err(path))?;
            atomic_file::remove_strays(path);
        }
        tracing::info!(target: "atrest::audit", event, keyring = %hex::encode(state.id), revision = state.revision, primary = %state.primary);
        self.install(state);
        Ok(out)
    }
}
