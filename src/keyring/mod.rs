//! The keyring: versioned master keys under a root key, persisted as one authenticated file,
//! and the per-tenant key material derived from them.
//!
//! The keyring hands out derived key material ([`DerivedKey`]) and knows no cipher: records
//! and backups turn that material into ciphers in their own modules.

mod anchor;
#[cfg(feature = "aws-kms")]
mod aws_kms;
mod cache;
mod derive;
mod file;
mod key_state;
mod migrate;
mod options;
mod persist;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod root;
mod state;
mod status;
mod store;
mod uri;
#[cfg(feature = "vault")]
mod vault;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};

#[cfg(feature = "aws-kms")]
pub use aws_kms::AwsKmsRoot;
pub use cache::{AUDIT_EVERY, CACHED_KEY_BYTES, DEFAULT_CACHE_CAPACITY};
pub use key_state::KeyState;
pub use options::{DEFAULT_DESTROY_GRACE, DEFAULT_MAX_UNAVAILABLE, DEFAULT_STALENESS, KeyringOptions};
#[cfg(feature = "pkcs11")]
pub use pkcs11::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
pub use root::{LocalRootKey, ROOT_KEY_ENV, RootKeyProvider};
pub use status::{HandleStatus, KeyringStatus, MasterStatus, ShredStatus, TenantStatus};
pub use store::KeyringLocation;
pub use uri::{KeyUriError, RootKeyUri, root_key_from_uri};
#[cfg(feature = "vault")]
pub use vault::{DEFAULT_VAULT_TIMEOUT, VaultTransitConfig, VaultTransitRoot};

pub(crate) use cache::{DerivedKey, Use};
pub(crate) use derive::Purpose;
pub(crate) use state::KeyRefusal;

use self::anchor::Anchor;
use self::cache::{KeyCache, Probe};
use self::state::State;
use self::store::Store;
use crate::error::KeyringError;
use crate::id::{KeyVersion, MasterVersion, TenantId};

struct Inner {
    /// Where the document lives; `None` for an in-memory keyring.
    store: Option<Arc<dyn Store>>,
    options: KeyringOptions,
    anchor: Option<Anchor>,
    state: ArcSwap<State>,
    /// Digest of the installed document: two documents of one revision must be the same.
    digest: Mutex<[u8; 32]>,
    cache: KeyCache,
    /// Bumped after every snapshot swap or availability change; lets tenant handles keep
    /// their current keys while it holds.
    epoch: AtomicU64,
    /// Set when the store could not be read for longer than `max_unavailable`.
    unavailable: AtomicBool,
    /// When the store last answered with an acceptable document.
    last_ok: Mutex<Instant>,
    /// When a record under an unknown key version last made this handle re-read its store.
    last_forced: Mutex<Option<Instant>>,
    /// Serializes installing snapshots within this process (the store serializes writers).
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
            .field("store", &self.inner.store.as_ref().map(|s| s.describe()))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The writer guard protects no data, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Keyring {
    fn from_state(store: Option<Arc<dyn Store>>, state: State, digest: [u8; 32], options: KeyringOptions) -> Self {
        let anchor = options.anchor.as_deref().map(Anchor::new);
        let cache = KeyCache::new(options.cache_capacity);
        let inner = Arc::new(Inner {
            store,
            options,
            anchor,
            state: ArcSwap::from_pointee(state),
            digest: Mutex::new(digest),
            cache,
            epoch: AtomicU64::new(0),
            unavailable: AtomicBool::new(false),
            last_ok: Mutex::new(Instant::now()),
            last_forced: Mutex::new(None),
            writer: Mutex::new(()),
        });
        watch::spawn(&inner);
        Self { inner }
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
        Self::create_at(&KeyringLocation::File(path.to_path_buf()), root, KeyringOptions::default())
    }

    /// Loads and verifies a keyring file.
    ///
    /// # Errors
    /// Each failure is distinct: [`KeyringError::Io`], [`KeyringError::NotAKeyring`],
    /// [`KeyringError::Truncated`], [`KeyringError::Corrupted`],
    /// [`KeyringError::UnsupportedFormat`], [`KeyringError::WrongRootKey`],
    /// [`KeyringError::Tampered`], [`KeyringError::Root`].
    pub fn open(path: &Path, root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Self::open_at(&KeyringLocation::File(path.to_path_buf()), root, KeyringOptions::default())
    }

    /// Creates a new keyring at `location` (a file, or a PostgreSQL row with the `postgres`
    /// feature), never over an existing one.
    ///
    /// # Errors
    /// As [`Keyring::create`]; [`KeyringError::StoreUnsupported`],
    /// [`KeyringError::Store`] for a database that cannot be reached.
    pub fn create_at(
        location: &KeyringLocation,
        root: impl RootKeyProvider + 'static,
        options: KeyringOptions,
    ) -> Result<Self, KeyringError> {
        let store: Arc<dyn Store> = Arc::from(location.store()?);
        let state = State::create(Arc::new(root))?;
        state.validate()?;
        let doc = file::encode(&state)?;
        store.create(doc.as_bytes(), state.revision)?;
        if let Some(path) = &options.anchor {
            Anchor::new(path).raise(&state.id, state.revision)?;
        }
        tracing::info!(target: "atrest::audit", event = "keyring.create", keyring = %hex::encode(state.id), location = %location);
        Ok(Self::from_state(Some(store), state, persist::digest(doc.as_bytes()), options))
    }

    /// Loads and verifies the keyring at `location`, with `options` (staleness bound,
    /// revision anchor...).
    ///
    /// # Errors
    /// As [`Keyring::open`]; [`KeyringError::RolledBack`] or [`KeyringError::Substituted`]
    /// when a revision anchor is set and the document is older than it or of another keyring.
    pub fn open_at(
        location: &KeyringLocation,
        root: impl RootKeyProvider + 'static,
        options: KeyringOptions,
    ) -> Result<Self, KeyringError> {
        let store: Arc<dyn Store> = Arc::from(location.store()?);
        let (state, digest) = persist::load(store.as_ref(), Arc::new(root))?;
        if let Some(path) = &options.anchor {
            Anchor::new(path).raise(&state.id, state.revision)?;
        }
        tracing::info!(target: "atrest::audit", event = "keyring.load", keyring = %hex::encode(state.id), revision = state.revision);
        Ok(Self::from_state(Some(store), state, digest, options))
    }

    /// Verifies keyring file bytes without a path (for tools and fuzzing): the same checks
    /// as [`Keyring::open`]. The result has no file: changes stay in memory.
    ///
    /// # Errors
    /// As [`Keyring::open`].
    pub fn from_bytes(bytes: &[u8], root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        let state = file::decode(bytes, Path::new("<memory>"), Arc::new(root))?;
        Ok(Self::from_state(None, state, persist::digest(bytes), KeyringOptions::default()))
    }

    /// A keyring that lives only in memory (tests, ephemeral data): nothing is persisted.
    ///
    /// # Errors
    /// [`KeyringError::Root`] or [`KeyringError::Rng`].
    pub fn in_memory(root: impl RootKeyProvider + 'static) -> Result<Self, KeyringError> {
        Self::in_memory_with(root, KeyringOptions::default())
    }

    /// [`Keyring::in_memory`] with `options` (the cache capacity; the store options do not
    /// apply).
    ///
    /// # Errors
    /// As [`Keyring::in_memory`].
    pub fn in_memory_with(root: impl RootKeyProvider + 'static, options: KeyringOptions) -> Result<Self, KeyringError> {
        Ok(Self::from_state(None, State::create(Arc::new(root))?, [0; 32], options))
    }

    /// How many derived tenant keys this handle has cached (at most
    /// [`KeyringOptions::cache_capacity`]).
    pub fn cached_keys(&self) -> usize {
        self.inner.cache.len()
    }

    /// The keyring file's current bytes, as [`Keyring::open`] would read them.
    ///
    /// # Errors
    /// [`KeyringError::Corrupted`] only if serialization fails (an atrest bug).
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyringError> {
        Ok(file::encode(&self.state())?.into_bytes())
    }

    /// The file this keyring is saved to, if it lives in a file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.store.as_deref().and_then(|s| s.path())
    }

    /// The staleness bound of this handle (zero for an in-memory keyring, which has no
    /// other writer).
    pub fn staleness_bound(&self) -> Duration {
        if self.inner.store.is_some() { self.inner.options.staleness } else { Duration::ZERO }
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

    /// Irreversibly erases a master version's key material from the keyring.
    /// Everything sealed under it becomes unrecoverable. `confirm` must name the same version.
    ///
    /// The version must have been disabled (see [`Keyring::set_state`]) for the grace period
    /// ([`KeyringOptions::destroy_grace`], default 24 hours), so that every server has stopped
    /// using it and a mistake can still be undone by enabling it again;
    /// [`DestroyConfirmation::skip_grace_period`] shortens that to the staleness bound for an
    /// emergency (a compromised key).
    ///
    /// # Errors
    /// [`KeyringError::NotConfirmed`], [`KeyringError::PrimaryRefused`],
    /// [`KeyringError::UnknownVersion`], [`KeyringError::NotDisabled`],
    /// [`KeyringError::GracePeriod`].
    ///
    /// # Security
    /// Old copies of the keyring (backups, snapshots of the disk, a database dump) still hold
    /// the wrapped key until they expire: destruction is complete only when those are gone too.
    ///
    /// # Example
    /// ```
    /// use atrest::{DestroyConfirmation, KeyState, Keyring, LocalRootKey, MasterVersion};
    /// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// keyring.rotate()?;
    /// let v1 = MasterVersion::new(1);
    /// keyring.set_state(v1, KeyState::Disabled)?;
    /// let confirm = DestroyConfirmation::data_under_this_version_is_lost(v1);
    /// assert!(keyring.destroy(v1, confirm).is_err()); // disabled less than 24 hours ago
    /// keyring.destroy(v1, confirm.skip_grace_period())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn destroy(&self, version: MasterVersion, confirm: DestroyConfirmation) -> Result<(), KeyringError> {
        if confirm.version != version {
            return Err(KeyringError::NotConfirmed(version));
        }
        let grace = if confirm.skip_grace { self.staleness_bound() } else { self.inner.options.grace() };
        self.mutate("keyring.destroy", |s| s.destroy(version, grace))
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

    /// Crypto-shreds a tenant whose existence the caller has verified (see
    /// `Keyring::shred_tenant` in the tenant module, which checks the evidence).
    pub(crate) fn shred_verified(&self, tenant: &TenantId, evidence: &'static str) -> Result<(), KeyringError> {
        let event = if evidence == "unverified" { "tenant.shred.unverified" } else { "tenant.shred" };
        self.mutate(event, |s| s.shred_tenant(tenant))
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
    /// every state (shred, version state, generation) allows its use; marked usable at the
    /// current epoch (see [`DerivedKey::usable_at`]).
    pub(crate) fn derived_key(
        &self,
        tenant: &TenantId,
        version: KeyVersion,
        purpose: Purpose,
    ) -> Result<Arc<DerivedKey>, KeyRefusal> {
        // The epoch is read before the state it vouches for (see `persist::install`).
        let epoch = self.epoch();
        self.key_in(epoch, &self.state(), tenant, version, purpose, false, true)
    }

    /// The key new data of `tenant` is sealed under for `purpose`, checked and marked
    /// sealable at the current epoch (see [`DerivedKey::sealable_at`]); the refusal names the
    /// version it was for. `just_missed`: the caller looked it up in the cache a moment ago
    /// and did not find it (a new handle of a cold tenant), so it is derived without a second
    /// lookup (if another thread cached it since, the cached key is still the one returned).
    pub(crate) fn sealing_key(
        &self,
        tenant: &TenantId,
        purpose: Purpose,
        just_missed: bool,
    ) -> Result<Arc<DerivedKey>, (KeyRefusal, KeyVersion)> {
        let epoch = self.epoch();
        let state = self.state();
        let version = state.current_version(tenant);
        self.key_in(epoch, &state, tenant, version, purpose, true, !just_missed).map_err(|r| (r, version))
    }

    /// For a new tenant handle: the cached key new data of `tenant` is sealed under for
    /// `purpose`, checked and marked sealable at the current epoch, if it is cached (nothing
    /// is derived or allocated here). `Err` with the time of the shred for a shredded tenant.
    pub(crate) fn cached_sealing_key(&self, tenant: &str, purpose: Purpose) -> Result<Option<Arc<DerivedKey>>, u64> {
        let epoch = self.epoch();
        let state = self.state();
        if let Some(at) = state.shredded_at(tenant) {
            return Err(at);
        }
        let version = state.current_version(tenant);
        if self.inner.unavailable.load(Ordering::Acquire) || state.usable_prk(tenant, version).is_err() {
            return Ok(None);
        }
        let key = self.inner.cache.get(&Probe { tenant, version, purpose });
        if let Some(k) = &key {
            k.mark(epoch, true);
        }
        Ok(key)
    }

    /// The key of `tenant` for `purpose` at `version` under `state` (read after `epoch`),
    /// from the cache (unless `probe` is false: then derived and cached, or the cached one if
    /// another thread cached it first).
    #[allow(clippy::too_many_arguments, reason = "private; three callers")]
    fn key_in(
        &self,
        epoch: u64,
        state: &State,
        tenant: &TenantId,
        version: KeyVersion,
        purpose: Purpose,
        sealable: bool,
        probe: bool,
    ) -> Result<Arc<DerivedKey>, KeyRefusal> {
        if self.inner.unavailable.load(Ordering::Acquire) {
            return Err(KeyRefusal::Unavailable);
        }
        let prk = state.usable_prk(tenant, version)?;
        let cached =
            if probe { self.inner.cache.get(&Probe { tenant: tenant.as_str(), version, purpose }) } else { None };
        let key = match cached {
            Some(k) => k,
            None => {
                let material = derive::tenant_key(prk, tenant, version.generation, purpose);
                self.inner.cache.put(Arc::new(DerivedKey::new(tenant.clone(), version, purpose, material)))
            }
        };
        key.mark(epoch, sealable);
        Ok(key)
    }
}

impl Keyring {
    /// Re-reads the store once because a record or backup named a key version this handle
    /// does not know (another server may have rotated a moment ago). Coalesced: at most one
    /// such re-read per 50 ms, so records naming bogus versions cannot make a handle hammer
    /// its store. Returns whether the caller should look up the version again: always, for a
    /// handle with a store, because the newer document may have been installed by this call,
    /// by the watcher at the same moment, or by the caller that looked 10 ms ago (a `false`
    /// from "nothing new *here*" made a record sealed a moment ago fail to open).
    pub(crate) fn refresh_for_unknown_version(&self) -> bool {
        if self.inner.store.is_none() {
            return false;
        }
        {
            let mut last = lock(&self.inner.last_forced);
            if last.is_some_and(|t| t.elapsed() < Duration::from_millis(50)) {
                return true;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.refresh() {
            tracing::debug!(target: "atrest::keyring", error = %e, "re-read for an unknown key version failed");
        }
        true
    }
}

/// The explicit confirmation [`Keyring::destroy`] requires: it must name the version.
#[derive(Debug, Clone, Copy)]
pub struct DestroyConfirmation {
    version: MasterVersion,
    skip_grace: bool,
}

impl DestroyConfirmation {
    /// Confirms that everything sealed under `version` will be lost for good.
    pub fn data_under_this_version_is_lost(version: MasterVersion) -> Self {
        Self { version, skip_grace: false }
    }

    /// For an emergency (a compromised key): destroy once the version has been disabled for
    /// the staleness bound, instead of the whole grace period.
    pub fn skip_grace_period(self) -> Self {
        Self { skip_grace: true, ..self }
    }
}

#[cfg(test)]
mod tests;
