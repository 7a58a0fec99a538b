//! The keyring: versioned master keys under a root key, persisted as one authenticated file,
//! and the per-tenant keys derived from them.

mod derive;
mod file;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod root;
mod state;
mod version;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use lru::LruCache;
use serde::Serialize;

#[cfg(feature = "pkcs11")]
pub use pkcs11::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
pub use root::{LocalRootKey, ROOT_KEY_ENV, RootKeyProvider};
pub use version::{KeyState, KeyVersion, MasterVersion};

pub(crate) use derive::Purpose;

use self::state::{KeyRefusal, State};
use crate::Suite;
use crate::context::TenantId;
use crate::error::{KeyringError, OpenError, SealError};
use crate::fs;
use crate::record::RecordKey;
use crate::secret::TenantKey;

/// How many derived tenant key sets the cache holds by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// The keys of one tenant under one key version, derived once and cached.
pub(crate) struct TenantKeys {
    pub(crate) version: KeyVersion,
    pub(crate) record: RecordKey,
    pub(crate) backup: TenantKey,
    pub(crate) usage: Usage,
}

/// Aggregated use counters of one tenant key set, reported as `tracing` audit events on the
/// first use and every [`AUDIT_EVERY`] uses (never per record, never with values).
#[derive(Default)]
pub(crate) struct Usage {
    seals: AtomicU64,
    opens: AtomicU64,
}

/// How many seals (or opens) of one tenant key set pass between two aggregated audit events.
pub const AUDIT_EVERY: u64 = 1 << 16;

impl TenantKeys {
    pub(crate) fn count(&self, tenant: &TenantId, op: &'static str) {
        let counter = if op == "seal" { &self.usage.seals } else { &self.usage.opens };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n % AUDIT_EVERY == 0 {
            tracing::info!(target: "atrest::audit", event = "record.usage", op, tenant = %tenant, key_version = %self.version, count = n);
        }
    }
}

type Cache = LruCache<(TenantId, KeyVersion), Arc<TenantKeys>>;

struct Inner {
    path: Option<PathBuf>,
    state: ArcSwap<State>,
    cache: Mutex<Cache>,
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
/// let keyring = Keyring::create(&dir.path().join("keyring.atrk"), LocalRootKey::generate()?)?;
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
        let s = self.inner.state.load();
        f.debug_struct("Keyring")
            .field("id", &hex::encode(s.id))
            .field("revision", &s.revision)
            .field("primary", &s.primary)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (the cache is only a
    // cache, the writer guard protects no data), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io { path: path.to_path_buf(), source }
}

impl Keyring {
    fn from_state(path: Option<PathBuf>, state: State, capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Arc::new(Inner {
                path,
                state: ArcSwap::from_pointee(state),
                cache: Mutex::new(LruCache::new(cap)),
                epoch: AtomicU64::new(0),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Creates a new keyring file with one master key (v1, primary), wrapped under `root`.
    /// The file is written atomically and never over an existing file.
    ///
    /// # Errors
    /// [`KeyringError::AlreadyExists`], [`KeyringError::Io`], [`KeyringError::Root`].
    pub fn create(path: &Path, root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Self::create_shared(path, Arc::new(root))
    }

    /// [`Keyring::create`] with a shared root key provider.
    ///
    /// # Errors
    /// As [`Keyring::create`].
    pub fn create_shared(path: &Path, root: Arc<dyn RootKeyProvider>) -> Result<Self, KeyringError> {
        let state = State::create(root)?;
        let text = file::encode(&state)?;
        fs::create_new(path, text.as_bytes()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyringError::AlreadyExists(path.to_path_buf())
            } else {
                KeyringError::Io { path: path.to_path_buf(), source: e }
            }
        })?;
        tracing::info!(target: "atrest::audit", event = "keyring.create", keyring = %hex::encode(state.id), path = %path.display());
        Ok(Self::from_state(Some(path.to_path_buf()), state, DEFAULT_CACHE_CAPACITY))
    }

    /// Loads and verifies a keyring file.
    ///
    /// # Errors
    /// Each failure is distinct: [`KeyringError::Io`], [`KeyringError::NotAKeyring`],
    /// [`KeyringError::Truncated`], [`KeyringError::Corrupted`],
    /// [`KeyringError::UnsupportedFormat`], [`KeyringError::WrongRootKey`],
    /// [`KeyringError::Tampered`], [`KeyringError::Root`].
    pub fn open(path: &Path, root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Self::open_shared(path, Arc::new(root))
    }

    /// [`Keyring::open`] with a shared root key provider.
    ///
    /// # Errors
    /// As [`Keyring::open`].
    pub fn open_shared(path: &Path, root: Arc<dyn RootKeyProvider>) -> Result<Self, KeyringError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let state = file::decode(&bytes, path, root)?;
        tracing::info!(target: "atrest::audit", event = "keyring.load", keyring = %hex::encode(state.id), revision = state.revision);
        Ok(Self::from_state(Some(path.to_path_buf()), state, DEFAULT_CACHE_CAPACITY))
    }

    /// Verifies keyring file bytes without a path (for tools and fuzzing): the same checks
    /// as [`Keyring::open`]. The result has no file: changes stay in memory.
    ///
    /// # Errors
    /// As [`Keyring::open`].
    pub fn from_bytes(bytes: &[u8], root: Arc<dyn RootKeyProvider>) -> Result<Self, KeyringError> {
        let state = file::decode(bytes, Path::new("<memory>"), root)?;
        Ok(Self::from_state(None, state, DEFAULT_CACHE_CAPACITY))
    }

    /// A keyring that lives only in memory (tests, ephemeral data): nothing is persisted.
    ///
    /// # Errors
    /// [`KeyringError::Root`] or [`KeyringError::Rng`].
    pub fn in_memory(root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Ok(Self::from_state(None, State::create(Arc::new(root))?, DEFAULT_CACHE_CAPACITY))
    }

    /// The keyring file's current bytes, as [`Keyring::open`] would read them.
    ///
    /// # Errors
    /// [`KeyringError::Corrupted`] only if serialization fails (an atrest bug).
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyringError> {
        Ok(file::encode(&self.inner.state.load())?.into_bytes())
    }

    /// The file this keyring is saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The keyring's random 16-byte id (public).
    pub fn id(&self) -> [u8; 16] {
        self.inner.state.load().id
    }

    /// The primary master version.
    pub fn primary(&self) -> MasterVersion {
        self.inner.state.load().primary
    }

    /// A handle for one tenant. Cheap: keys are derived on first use and cached.
    ///
    /// # Errors
    /// [`KeyringError::InvalidTenantId`], or [`KeyringError::TenantShredded`].
    pub fn tenant(&self, id: &str) -> Result<Tenant, KeyringError> {
        let id = TenantId::new(id)?;
        if let Some(at) = self.inner.state.load().shredded_at(&id) {
            return Err(KeyringError::TenantShredded { tenant: id.to_string(), shredded_at: at });
        }
        Ok(Tenant { keyring: self.clone(), id, suite: Suite::XAes256Gcm, hot: Arc::new(ArcSwapOption::empty()) })
    }

    /// Re-reads the keyring file to pick up changes made by another process.
    ///
    /// # Errors
    /// As [`Keyring::open`]; [`KeyringError::NoFile`] for an in-memory keyring.
    pub fn reload(&self) -> Result<(), KeyringError> {
        let path = self.inner.path.as_deref().ok_or(KeyringError::NoFile)?;
        let root = self.inner.state.load().root.clone();
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let state = file::decode(&bytes, path, root)?;
        self.install(state);
        Ok(())
    }

    fn install(&self, state: State) {
        self.inner.state.store(Arc::new(state));
        lock(&self.inner.cache).clear();
        // Released after the new snapshot is visible: a handle that sees the new epoch
        // also sees the new state.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies a change under the in-process writer lock and, with a file, the file lock:
    /// re-read the file, change, bump the revision, write atomically, swap the snapshot.
    fn mutate<T>(
        &self,
        event: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        let _writer = lock(&self.inner.writer);
        let (mut state, _file_lock) = match &self.inner.path {
            None => ((**self.inner.state.load()).clone(), None),
            Some(path) => {
                let file_lock = fs::Lock::acquire(path, fs::lock_wait()).map_err(io_err(path))?;
                let root = self.inner.state.load().root.clone();
                let bytes = std::fs::read(path).map_err(io_err(path))?;
                (file::decode(&bytes, path, root)?, Some(file_lock))
            }
        };
        let out = f(&mut state)?;
        state.revision = state.revision.saturating_add(1);
        if let Some(path) = &self.inner.path {
            let text = file::encode(&state)?;
            fs::replace(path, text.as_bytes()).map_err(io_err(path))?;
            fs::remove_strays(path);
        }
        tracing::info!(target: "atrest::audit", event, keyring = %hex::encode(state.id), revision = state.revision, primary = %state.primary);
        self.install(state);
        Ok(out)
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
    pub fn rewrap_root(&self, new_root: Arc<dyn RootKeyProvider>) -> Result<(), KeyringError> {
        self.mutate("keyring.rewrap_root", |s| s.rewrap_root(new_root))
    }

    /// A snapshot of the keyring's public facts (no key material).
    pub fn status(&self) -> KeyringStatus {
        let s = self.inner.state.load();
        KeyringStatus {
            id: hex::encode(s.id),
            revision: s.revision,
            created_at: s.created_at,
            root_key_id: s.root_key_id.clone(),
            primary: s.primary,
            masters: s
                .masters
                .iter()
                .map(|(v, m)| MasterStatus {
                    version: *v,
                    state: m.state,
                    created_at: m.created_at,
                    changed_at: m.changed_at,
                })
                .collect(),
            tenants: s
                .tenants
                .iter()
                .map(|(id, t)| TenantStatus {
                    id: id.to_string(),
                    generation: t.generation,
                    rotated_at: t.rotated_at,
                    shred: t.shred.as_ref().map(|sh| ShredStatus {
                        shredded_at: sh.at,
                        pending_versions: sh.pending.iter().copied().collect(),
                        complete: sh.pending.is_empty(),
                    }),
                })
                .collect(),
        }
    }

    /// The keys of `tenant` at `version`, from the cache or derived now.
    fn keys(&self, tenant: &TenantId, version: KeyVersion) -> Result<Arc<TenantKeys>, KeyRefusal> {
        let state = self.inner.state.load();
        let prk = state.usable_prk(tenant, version)?;
        let key = (tenant.clone(), version);
        if let Some(k) = lock(&self.inner.cache).get(&key) {
            return Ok(k.clone());
        }
        let record = derive::tenant_key(&prk, tenant, version.generation, Purpose::Records);
        let backup = derive::tenant_key(&prk, tenant, version.generation, Purpose::Backups);
        let keys = Arc::new(TenantKeys { version, record: RecordKey::new(record), backup, usage: Usage::default() });
        lock(&self.inner.cache).put(key, keys.clone());
        Ok(keys)
    }

    fn current_version(&self, tenant: &TenantId) -> KeyVersion {
        self.inner.state.load().current_version(tenant)
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

/// Public facts about a keyring (see [`Keyring::status`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyringStatus {
    /// Keyring id (hex).
    pub id: String,
    /// Revision, bumped by every change.
    pub revision: u64,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// The root key id the keyring is wrapped under.
    pub root_key_id: String,
    /// The primary master version.
    pub primary: MasterVersion,
    /// Every master version.
    pub masters: Vec<MasterStatus>,
    /// Tenants with a generation above 0 or a shred.
    pub tenants: Vec<TenantStatus>,
}

/// Public facts about a master version.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MasterStatus {
    /// The version.
    pub version: MasterVersion,
    /// Its state.
    pub state: KeyState,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// Time of the last state change (Unix seconds).
    pub changed_at: u64,
}

/// Public facts about a tenant with overrides.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TenantStatus {
    /// Tenant id.
    pub id: String,
    /// Current generation.
    pub generation: u16,
    /// Last per-tenant rotation (Unix seconds).
    pub rotated_at: Option<u64>,
    /// Shred state, if shredded.
    pub shred: Option<ShredStatus>,
}

/// A tenant's shred state.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ShredStatus {
    /// When the tenant was shredded (Unix seconds).
    pub shredded_at: u64,
    /// Master versions that must still be destroyed for the shred to be complete.
    pub pending_versions: Vec<MasterVersion>,
    /// Whether every such version is destroyed.
    pub complete: bool,
}

/// One tenant of a keyring: seals and opens its records and backups.
///
/// Obtained from [`Keyring::tenant`]. Cheap to clone. Always uses the keyring's current
/// primary version and the tenant's current generation for new data.
#[derive(Clone)]
pub struct Tenant {
    keyring: Keyring,
    id: TenantId,
    suite: Suite,
    /// The current keys, valid while the keyring's epoch is unchanged.
    hot: Arc<ArcSwapOption<Hot>>,
}

struct Hot {
    epoch: u64,
    keys: Arc<TenantKeys>,
}

impl core::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl Tenant {
    /// The tenant id.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// The keyring this tenant belongs to.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The suite new records are sealed with ([`Suite::XAes256Gcm`] unless changed).
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Seals new records with `suite` instead (opening always follows the record's header).
    ///
    /// # Errors
    /// [`SealError::UnsupportedSuite`] for [`Suite::Aes256Gcm`]: random 96-bit nonces under
    /// a long-lived key are refused.
    pub fn with_suite(mut self, suite: Suite) -> Result<Self, SealError> {
        if suite == Suite::Aes256Gcm {
            return Err(SealError::UnsupportedSuite(suite));
        }
        self.suite = suite;
        Ok(self)
    }

    /// The key version new data is sealed under.
    pub fn key_version(&self) -> KeyVersion {
        self.keyring.current_version(&self.id)
    }

    /// Derives and caches this tenant's current keys now (for example at startup or on the
    /// first request of a session), so that later seals cost one cache lookup.
    ///
    /// # Errors
    /// [`SealError::TenantShredded`] or [`SealError::KeyUnavailable`].
    pub fn preload(&self) -> Result<KeyVersion, SealError> {
        self.keys_for_seal().map(|k| k.version)
    }

    fn shredded(&self, at: u64) -> (String, u64) {
        (self.id.to_string(), at)
    }

    /// The handle's current keys if the keyring did not change since they were cached.
    fn hot_keys(&self, epoch: u64) -> Option<Arc<TenantKeys>> {
        self.hot.load().as_ref().filter(|h| h.epoch == epoch).map(|h| h.keys.clone())
    }

    /// Keys for sealing new data.
    pub(crate) fn keys_for_seal(&self) -> Result<Arc<TenantKeys>, SealError> {
        let epoch = self.keyring.inner.epoch.load(Ordering::Acquire);
        if let Some(k) = self.hot_keys(epoch) {
            return Ok(k);
        }
        let v = self.key_version();
        let keys = self.keyring.keys(&self.id, v).map_err(|r| match r {
            KeyRefusal::Shredded { at } => {
                let (tenant, shredded_at) = self.shredded(at);
                SealError::TenantShredded { tenant, shredded_at }
            }
            _ => SealError::KeyUnavailable(v),
        })?;
        self.hot.store(Some(Arc::new(Hot { epoch, keys: keys.clone() })));
        Ok(keys)
    }

    /// Keys for opening data sealed under `version` (named by its header).
    pub(crate) fn keys_for_open(&self, version: KeyVersion) -> Result<Arc<TenantKeys>, OpenError> {
        let epoch = self.keyring.inner.epoch.load(Ordering::Acquire);
        if let Some(k) = self.hot_keys(epoch).filter(|k| k.version == version) {
            return Ok(k);
        }
        self.keyring.keys(&self.id, version).map_err(|r| match r {
            KeyRefusal::Shredded { at } => {
                let (tenant, shredded_at) = self.shredded(at);
                OpenError::TenantShredded { tenant, shredded_at }
            }
            KeyRefusal::Unknown => OpenError::Authentication,
            KeyRefusal::Disabled(v) => OpenError::KeyDisabled(v),
            KeyRefusal::Destroyed(v) => OpenError::KeyDestroyed(v),
        })
    }
}

#[cfg(test)]
mod tests;
