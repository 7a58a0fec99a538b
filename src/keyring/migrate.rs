//! Moving a keyring between stores (a file, a PostgreSQL row): the authenticated document is
//! copied as it is, so the copy has the same id, revision and keys, still wrapped under the
//! same root key.

use super::{Keyring, KeyringLocation, KeyringOptions, file};
use crate::error::KeyringError;

impl Keyring {
    /// Copies this keyring, as it is now, to a new store at `to` (never over an existing
    /// keyring there), then opens the copy with `options` and checks that it is the same
    /// keyring at the same revision. Re-reads this keyring's own store first, so the copy is
    /// the latest revision.
    ///
    /// The source is left as it was: point every application at the new location, then
    /// retire the old store (it still holds the wrapped keys: delete it or keep it as a
    /// backup, with the same care as the keyring).
    ///
    /// # Errors
    /// [`KeyringError::AlreadyExists`] if `to` holds a keyring; the errors of
    /// [`Keyring::create_at`] and [`Keyring::open_at`] for the new store;
    /// [`KeyringError::Inconsistent`] if the copy does not read back as this keyring.
    ///
    /// # Example
    /// ```
    /// use atrest::{Keyring, KeyringLocation, KeyringOptions, LocalRootKey};
    /// let dir = tempfile::tempdir()?;
    /// let root = LocalRootKey::generate_file(&dir.path().join("root.key"))?;
    /// let old = Keyring::create(&dir.path().join("old.atrk"), root)?;
    /// let to = KeyringLocation::parse(dir.path().join("new.atrk").to_str().unwrap());
    /// let new = old.copy_to(&to, KeyringOptions::default())?;
    /// assert_eq!(new.id(), old.id());
    /// assert!(old.copy_to(&to, KeyringOptions::default()).is_err()); // never over a keyring
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy_to(&self, to: &KeyringLocation, options: KeyringOptions) -> Result<Keyring, KeyringError> {
        if self.inner.store.is_some() {
            self.refresh()?;
        }
        let state = self.state();
        let doc = file::encode(&state)?;
        let store = to.store()?;
        store.create(doc.as_bytes(), state.revision)?;
        let copy = Keyring::open_at(to, state.root.clone(), options)?;
        if copy.id() != state.id || copy.status().revision != state.revision {
            return Err(KeyringError::Inconsistent("the copied keyring does not read back as the original"));
        }
        tracing::info!(target: "atrest::audit", event = "keyring.copy", keyring = %hex::encode(state.id), revision = state.revision, to = %to);
        Ok(copy)
    }
}
