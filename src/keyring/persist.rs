//! Keeping a handle coherent with its store: loading and verifying documents, refusing
//! rollbacks and substitutions, and applying changes (re-read, change, check, bump the
//! revision, write, swap the in-memory snapshot).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::state::State;
use super::store::Store;
use super::{Keyring, RootKeyProvider, file, lock};
use crate::error::KeyringError;

/// The digest that tells two documents of the same revision apart.
pub(super) fn digest(doc: &[u8]) -> [u8; 32] {
    Sha256::digest(doc).into()
}

/// Reads and verifies the document of `store`.
pub(super) fn load(store: &dyn Store, root: Arc<dyn RootKeyProvider>) -> Result<(State, [u8; 32]), KeyringError> {
    let bytes = store.read()?;
    let path = std::path::PathBuf::from(store.describe());
    let state = file::decode(&bytes, &path, root)?;
    Ok((state, digest(&bytes)))
}

impl Keyring {
    /// Re-reads the keyring's store now (handles also do so on their own within the
    /// staleness bound, see [`KeyringOptions`](crate::KeyringOptions)).
    ///
    /// # Errors
    /// As [`Keyring::open`]; [`KeyringError::RolledBack`] or [`KeyringError::Substituted`]
    /// if the store holds an older document or another keyring's (the handle keeps its
    /// newer state); [`KeyringError::NoFile`] for an in-memory keyring.
    pub fn reload(&self) -> Result<(), KeyringError> {
        self.refresh()?;
        // The store answered with a document this handle accepts: it is current.
        self.mark_available();
        Ok(())
    }

    /// Loads the store's document and installs it if it is newer. Returns whether it was.
    pub(super) fn refresh(&self) -> Result<bool, KeyringError> {
        let store = self.inner.store.as_deref().ok_or(KeyringError::NoFile)?;
        let root = self.state().root.clone();
        let (mut state, mut digest) = load(store, root.clone())?;
        if state.id == self.id() && state.revision < self.state().revision {
            // Maybe not a rollback but a read that raced with a newer install (by the
            // watcher, another thread's reload, or a change made here) between our read and
            // now: a real rollback is still there when we look again, after that install.
            (state, digest) = load(store, root)?;
        }
        self.accept(state, digest)
    }

    /// Installs `new` if it is a later revision of the same keyring; an equal revision with
    /// the same digest is nothing new. Anything else is refused, with an audit event.
    fn accept(&self, new: State, digest: [u8; 32]) -> Result<bool, KeyringError> {
        let _writer = lock(&self.inner.writer);
        let cur = self.state();
        let refusal = if new.id != cur.id {
            Some(KeyringError::Substituted { expected: hex::encode(cur.id), found: hex::encode(new.id) })
        } else if new.revision < cur.revision || (new.revision == cur.revision && digest != *lock(&self.inner.digest)) {
            Some(KeyringError::RolledBack { seen: cur.revision, offered: new.revision })
        } else {
            None
        };
        if let Some(e) = refusal {
            tracing::error!(target: "atrest::audit", event = "keyring.refused", keyring = %hex::encode(cur.id), revision = cur.revision, offered = new.revision, reason = %e);
            return Err(e);
        }
        if new.revision == cur.revision {
            return Ok(false);
        }
        if let Some(anchor) = &self.inner.anchor {
            anchor.raise(&new.id, new.revision)?;
        }
        tracing::info!(target: "atrest::audit", event = "keyring.refresh", keyring = %hex::encode(new.id), revision = new.revision, primary = %new.primary);
        drop(cur);
        self.install(new, digest);
        Ok(true)
    }

    /// Makes `state` the current snapshot.
    pub(super) fn install(&self, state: State, digest: [u8; 32]) {
        *lock(&self.inner.digest) = digest;
        self.inner.state.store(Arc::new(state));
        self.inner.cache.clear();
        *lock(&self.inner.last_ok) = Instant::now();
        self.inner.unavailable.store(false, Ordering::Release);
        // Released after the new snapshot is visible: a handle that sees the new epoch
        // also sees the new state.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies a change under the in-process writer lock and the store's exclusion:
    /// re-read the document (refusing a rollback), change, check the structure, bump the
    /// revision, write, swap the snapshot. A change that changes nothing writes nothing.
    pub(super) fn mutate<T>(
        &self,
        event: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        let Some(store) = self.inner.store.as_deref() else {
            let _writer = lock(&self.inner.writer);
            let mut state = State::clone(&self.state());
            let before = file::encode(&state)?;
            let out = f(&mut state)?;
            if file::encode(&state)? != before {
                state.revision = state.revision.saturating_add(1);
                state.validate()?;
                let doc = file::encode(&state)?;
                tracing::info!(target: "atrest::audit", event, keyring = %hex::encode(state.id), revision = state.revision, primary = %state.primary);
                self.install(state, digest(doc.as_bytes()));
            }
            return Ok(out);
        };
        let root = self.state().root.clone();
        let path = std::path::PathBuf::from(store.describe());
        let mut f = Some(f);
        let mut result = None;
        let mut written = None;
        store.update(&mut |current: &[u8]| {
            let mut state = file::decode(current, &path, root.clone())?;
            let cur = self.state();
            if state.id != cur.id {
                return Err(KeyringError::Substituted { expected: hex::encode(cur.id), found: hex::encode(state.id) });
            }
            if state.revision < cur.revision {
                return Err(KeyringError::RolledBack { seen: cur.revision, offered: state.revision });
            }
            drop(cur);
            let before = file::encode(&state)?;
            let f = f.take().ok_or(KeyringError::Inconsistent("a change ran twice"))?;
            result = Some(f(&mut state)?);
            if file::encode(&state)? == before {
                written = Some((state, digest(current)));
                return Ok(None);
            }
            state.revision = state.revision.saturating_add(1);
            state.validate()?;
            let doc = file::encode(&state)?.into_bytes();
            let revision = state.revision;
            written = Some((state, digest(&doc)));
            Ok(Some((doc, revision)))
        })?;
        let (state, digest) = written.ok_or(KeyringError::Inconsistent("the store applied no change"))?;
        if let Some(anchor) = &self.inner.anchor {
            anchor.raise(&state.id, state.revision)?;
        }
        tracing::info!(target: "atrest::audit", event, keyring = %hex::encode(state.id), revision = state.revision, primary = %state.primary);
        let _writer = lock(&self.inner.writer);
        if state.revision > self.state().revision {
            self.install(state, digest);
        }
        result.ok_or(KeyringError::Inconsistent("the store applied no change"))
    }
}
