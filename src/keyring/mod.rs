//! The keyring: versioned master keys under a root key, persisted as one authenticated file,
//! and the per-tenant key material derived from them.
//!
//! The keyring hands out derived key material ([`DerivedKey`]) and knows no cipher: records
//! and backups turn that material into ciphers in their own modules.

#[cfg(feature = "aws-kms")]
mod aws_kms;
mod cache;
mod derive;
mod file;
mod key_state;
mod persist;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod root;
mod state;
mod status;
mod uri;
#[cfg(feature = "vault")]
mod vault;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::{ArcSwap, Guard};

#[cfg(feature = "aws-kms")]
pub use aws_kms::AwsKmsRoot;
pub use cache::{AUDIT_EVERY, DEFAULT_CACHE_CAPACITY};
pub use key_state::KeyState;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
pub use root::{LocalRootKey, ROOT_KEY_ENV, RootKeyProvider};
pub use status::{KeyringStatus, MasterStatus, ShredStatus, TenantStatus};
pub use uri::{KeyUriError, RootKeyUri, root_key_from_uri};
#[cfg(feature = "vault")]
pub use vault::{DEFAULT_VAULT_TIMEOUT, VaultTransitConfig, VaultTransitRoot};

pub(crate) use cache::{DerivedKey, Use};
pub(crate) use derive::Purpose;
pub(crate) use state::KeyRefusal;

use self::cache::KeyCache;
use self::state::State;
use crate::error::KeyringError;
use crate::id::{KeyVersion, MasterVersion, TenantId};

struct Inner {
    path: Option<PathBuf>,
    state: ArcSwap<State>,
    cache: KeyCache,
    /// Bumped after every snapshot swap; lets tenant handles keep their current keys.
    epoch: AtomicU64,
    /// Serializes changes within this process (the file lock does so across processes).
    writer: Mutex<()>,
}

/// A keyring: versioned master keys protected by a root key, one of them primary.
///
/// Cheap to clone (a shared handle), `Send + Sync`. Readers never block on a change: every
/// change builds a new snapshot and swaps it in. Changes to a keyring with a file are made
/// under an exclusive lock on `<file>.lock`, re-read the file first and write it atomically,
/// so two processes changing one keyring never lose each other's update.
///
/// # Example
/// ```
/// use atrest::{Context, Keyring, LocalRootKey};
/// let dir = tempfile::tempdir()?;
/// let root = LocalRootKey::generate_file(&dir.path().join("root.key"))?;
/// let keyring = Keyring::create(&dir.path().join("keyring.atrk"), root)?;
/// let acme = keyring.tenant("acme")?;
/// let ctx = Context::new().with("table", "contacts").with("row", "42");
/// let sealed = acme.seal(b"alice@example.com", &ctx)?;
/// assert_eq!(acme.open(&sealed, &ctx)?, b"alice@example.com");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

impl core::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state();
        f.debug_struct("Keyring")
            .field("id", &hex::encode(s.id))
            .field("revision", &s.revision)
            .field("primary", &s.primary)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The writer guard protects no data, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Keyring {
    fn from_state(path: Option<PathBuf>, state: State) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                state: ArcSwap::from_pointee(state),
                cache: KeyCache::new(DEFAULT_CACHE_CAPACITY),
                epoch: AtomicU64::new(0),
                writer: Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> Guard<Arc<State>> {
        self.inner.state.load()
    }

    /// Creates a new keyring file with one master key (v1, primary), wrapped under `root`.
    /// The file is written atomically and never over an existing file.
    ///
    /// `root` may be shared (`Arc<P>` is a provider too).
    ///
    /// # Errors
    /// [`KeyringError::AlreadyExists`], [`KeyringError::Io`], [`KeyringError::Root`].
    pub fn create(path: &Path, root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        let state = State::create(Arc::new(root))?;
        persist::create(path, &state)?;
        tracing::info!(target: "atrest::audit", event = "keyring.create", keyring = %hex::encode(state.id), path = %path.display());
        Ok(Self::from_state(Some(path.to_path_buf()), state))
    }

    /// Loads and verifies a keyring file.
    ///
    /// # Errors
    /// Each failure is distinct: [`KeyringError::Io`], [`KeyringError::NotAKeyring`],
    /// [`KeyringError::Truncated`], [`KeyringError::Corrupted`],
    /// [`KeyringError::UnsupportedFormat`], [`KeyringError::WrongRootKey`],
    /// [`KeyringError::Tampered`], [`KeyringError::Root`].
    pub fn open(path: &Path, root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        let state = persist::load(path, Arc::new(root))?;
        tracing::info!(target: "atrest::audit", event = "keyring.load", keyring = %hex::encode(state.id), revision = state.revision);
        Ok(Self::from_state(Some(path.to_path_buf()), state))
    }

    /// Verifies keyring file bytes without a path (for tools and fuzzing): the same checks
    /// as [`Keyring::open`]. The result has no file: changes stay in memory.
    ///
    /// # Errors
    /// As [`Keyring::open`].
    pub fn from_bytes(bytes: &[u8], root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        let state = file::decode(bytes, Path::new("<memory>"), Arc::new(root))?;
        Ok(Self::from_state(None, state))
    }

    /// A keyring that lives only in memory (tests, ephemeral data): nothing is persisted.
    ///
    /// # Errors
    /// [`KeyringError::Root`] or [`KeyringError::Rng`].
    pub fn in_memory(root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Ok(Self::from_state(None, State::create(Arc::new(root))?))
    }

    /// The keyring file's current bytes, as [`Keyring::open`] would read them.
    ///
    /// # Errors
    /// [`KeyringError::Corrupted`] only if serialization fails (an atrest bug).
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyringError> {
        Ok(file::encode(&self.state())?.into_bytes())
    }

    /// The file this keyring is saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The keyring's random 16-byte id (public).
    pub fn id(&self) -> [u8; 16] {
        self.state().id
    }

    /// The primary master version.
    pub fn primary(&self) -> MasterVersion {
        self.state().primary
    }

    /// Adds a new master key version and makes it primary; the previous primary stays
    /// enabled (decrypt only).
    ///
    /// # Errors
    /// [`KeyringError::Exhausted`] after 65535 versions; I/O and root key errors.
    pub fn rotate(&self) -> Result<MasterVersion, KeyringError> {
        self.mutate("keyring.rotate", State::rotate)
    }

    /// Sets a version's state: `Enabled` or `Disabled` (reversible), `Primary` (promote), or
    /// `Destroyed` (prefer [`Keyring::destroy`], which asks for a confirmation).
    ///
    /// # Errors
    /// [`KeyringError::UnknownVersion`], [`KeyringError::PrimaryRefused`] (the primary cannot
    /// be disabled), [`KeyringError::Destroyed`].
    pub fn set_state(&self, version: MasterVersion, state: KeyState) -> Result<(), KeyringError> {
        self.mutate("keyring.set_state", |s| s.set_state(version, state))
    }

    /// Irreversibly erases a master version's key material from the keyring file.
    /// Everything sealed under it becomes unrecoverable. `confirm` must name the same version.
    ///
    /// # Errors
    /// [`KeyringError::NotConfirmed`], [`KeyringError::PrimaryRefused`],
    /// [`KeyringError::UnknownVersion`].
    ///
    /// # Security
    /// Old copies of the keyring file (backups, snapshots of the disk) still hold the wrapped
    /// key until they expire: destruction is complete only when those are gone too.
    pub fn destroy(&self, version: MasterVersion, confirm: DestroyConfirmation) -> Result<(), KeyringError> {
        if confirm.0 != version {
            return Err(KeyringError::NotConfirmed(version));
        }
        self.mutate("keyring.destroy", |s| s.destroy(version))
    }

    /// Rotates one tenant alone: bumps its generation, so new data is sealed under new
    /// derived keys. Older generations still open until their master version is retired.
    ///
    /// # Errors
    /// [`KeyringError::TenantShredded`], [`KeyringError::InvalidTenantId`], I/O errors.
    pub fn rotate_tenant(&self, tenant: &str) -> Result<u16, KeyringError> {
        let id = TenantId::new(tenant)?;
        self.mutate("tenant.rotate", |s| s.rotate_tenant(&id))
    }

    /// Crypto-shreds a tenant: refused at once by every operation. The shred is *pending*
    /// until every master version that existed now is destroyed (after rewrapping other
    /// tenants' data and after the backup retention window), then *complete*.
    ///
    /// # Errors
    /// [`KeyringError::InvalidTenantId`], I/O errors.
    pub fn shred_tenant(&self, tenant: &str) -> Result<(), KeyringError> {
        let id = TenantId::new(tenant)?;
        self.mutate("tenant.shred", |s| s.shred_tenant(&id))
    }

    /// Re-wraps every live master key under a new root key provider (root rotation, or a
    /// migration from a key file to an HSM and back), atomically. The old root is not needed
    /// afterwards.
    ///
    /// # Errors
    /// Root key errors from either provider; I/O errors.
    pub fn rewrap_root(&self, new_root: impl RootKeyProvider + 'static) -> Result<(), KeyringError> {
        let new_root: Arc<dyn RootKeyProvider> = Arc::new(new_root);
        self.mutate("keyring.rewrap_root", |s| s.rewrap_root(new_root))
    }

    // Key material for the tenant layer.

    /// Changes whenever the keyring's state changes: handles keep keys while it is the same.
    pub(crate) fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// When `tenant` was shredded, if it was.
    pub(crate) fn shredded_at(&self, tenant: &TenantId) -> Option<u64> {
        self.state().shredded_at(tenant)
    }

    /// The key version new data of `tenant` is sealed under.
    pub(crate) fn current_version(&self, tenant: &TenantId) -> KeyVersion {
        self.state().current_version(tenant)
    }

    /// The key of `tenant` for `purpose` at `version`, from the cache or derived now, if
    /// every state (shred, version state, generation) allows its use.
    pub(crate) fn derived_key(
        &self,
        tenant: &TenantId,
        version: KeyVersion,
        purpose: Purpose,
    ) -> Result<Arc<DerivedKey>, KeyRefusal> {
        let prk = self.state().usable_prk(tenant, version)?;
        let cache_key = (tenant.clone(), version, purpose);
        if let Some(k) = self.inner.cache.get(&cache_key) {
            return Ok(k);
        }
        let key = Arc::new(DerivedKey::new(version, derive::tenant_key(&prk, tenant, version.generation, purpose)));
        self.inner.cache.put(cache_key, key.clone());
        Ok(key)
    }
}

/// The explicit confirmation [`Keyring::destroy`] requires: it must name the version.
#[derive(Debug, Clone, Copy)]
pub struct DestroyConfirmation(MasterVersion);

impl DestroyConfirmation {
    /// Confirms that everything sealed under `version` will be lost for good.
    pub fn data_under_this_version_is_lost(version: MasterVersion) -> Self {
        Self(version)
    }
}

#[cfg(test)]
mod tests;
