//! The [`Tenant`] handle: every public method of it (records, rewraps, blind indexes,
//! backups' keys).
//!
//! The keyring hands out derived key material; this module turns it into the record
//! sealer it caches per handle, and hands backup key material to the backup module. A warm
//! seal crosses three files: this one, `record/sealer.rs` and the AEAD in `hazmat/`.

mod bulk;
mod index;
mod recipient;
mod rewrap;
mod shred;

pub use bulk::BULK_WINDOW;
pub use shred::ShredEvidence;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::context::Context;
use crate::error::{KeyringError, OpenError, SealError};
use crate::id::{KeyVersion, TenantId};
use crate::keyring::{DerivedKey, KeyRefusal, Keyring, Purpose, Use};
use crate::record::{self, RecordKey, RecordSuite};

/// One tenant of a keyring: seals and opens its records and backups.
///
/// Obtained from [`Keyring::tenant`]. Cheap to create and to clone: a handle for a tenant
/// whose key is cached takes the keyring's cached key and id (nothing is derived or
/// allocated), so one [`Keyring::tenant`] call per request costs a cache lookup. Always
/// uses the keyring's current primary version and the tenant's current generation for new
/// data. The record sealer (a derived XAES-256-GCM key and nonce prefix) is attached to the
/// keyring's cached key material, so every handle of a tenant shares one.
pub struct Tenant {
    keyring: Keyring,
    id: TenantId,
    suite: RecordSuite,
    /// The record key new records were first sealed under (or the current one opened
    /// first), checked against the keyring's epoch on every use: a plain load, no lock and
    /// no reference count, also when many threads share the handle.
    first: OnceLock<Arc<DerivedKey>>,
    /// The record key of the first other version opened (records sealed before a rotation).
    first_opened: OnceLock<Arc<DerivedKey>>,
    /// Keys found once the first ones went stale (a rotation during the handle's life),
    /// made only then: an `ArcSwap` costs a walk of every thread's debt list when dropped.
    later: OnceLock<Arc<Later>>,
    /// Blind index keys, made on first use.
    indexes: OnceLock<Arc<index::IndexCache>>,
    /// Whether each seal and open counts itself for the audit log (batches count once per
    /// batch instead: see `bulk.rs`).
    audit_each: bool,
}

/// The record keys a long-lived handle moved on to.
#[derive(Default)]
struct Later {
    sealing: ArcSwapOption<DerivedKey>,
    opened: ArcSwapOption<DerivedKey>,
}

impl Clone for Tenant {
    /// A handle starting with this one's keys (later changes are shared once made).
    fn clone(&self) -> Self {
        Self {
            keyring: self.keyring.clone(),
            id: self.id.clone(),
            suite: self.suite,
            first: self.first.clone(),
            first_opened: self.first_opened.clone(),
            later: self.later.clone(),
            indexes: self.indexes.clone(),
            audit_each: self.audit_each,
        }
    }
}

impl core::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl Keyring {
    /// A handle for one tenant. Cheap: keys are derived on first use and cached; a handle for
    /// a cached tenant allocates nothing.
    ///
    /// # Errors
    /// [`KeyringError::InvalidTenantId`], or [`KeyringError::TenantShredded`].
    pub fn tenant(&self, id: &str) -> Result<Tenant, KeyringError> {
        let (id, key) = match self.cached_sealing_key(id, Purpose::Records) {
            Err(at) => {
                return Err(KeyringError::TenantShredded { tenant: TenantId::new(id)?.to_string(), shredded_at: at });
            }
            // The cached key's id is this one (validated when the key was derived).
            Ok(Some(key)) => (key.tenant.clone(), OnceLock::from(key)),
            Ok(None) => (TenantId::new(id)?, OnceLock::new()),
        };
        Ok(Tenant {
            keyring: self.clone(),
            id,
            suite: RecordSuite::default(),
            first: key,
            first_opened: OnceLock::new(),
            later: OnceLock::new(),
            indexes: OnceLock::new(),
            audit_each: true,
        })
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

    /// The suite new records are sealed with ([`RecordSuite::XAes256Gcm`] unless changed).
    pub fn suite(&self) -> RecordSuite {
        self.suite
    }

    /// Seals new records with `suite` instead (opening always follows the record's header).
    pub fn with_suite(mut self, suite: RecordSuite) -> Self {
        self.suite = suite;
        self
    }

    /// The key version new data is sealed under.
    pub fn key_version(&self) -> KeyVersion {
        self.keyring.current_version(&self.id)
    }

    /// Derives and caches this tenant's current record keys now (for example at startup or
    /// on the first request of a session), so that later seals cost no derivation.
    ///
    /// # Errors
    /// [`SealError::TenantShredded`] or [`SealError::KeyUnavailable`].
    pub fn preload(&self) -> Result<KeyVersion, SealError> {
        self.with_sealing_keys(|k, _| Ok(k.version))
    }

    /// Seals `plaintext` bound to this tenant and `context`.
    ///
    /// # Errors
    /// [`SealError::TenantShredded`], [`SealError::KeyUnavailable`], [`SealError::TooLarge`],
    /// [`SealError::Rng`].
    ///
    /// # Security
    /// The nonce is generated inside; the output names the key version and suite, and
    /// authenticates them together with the tenant id and context.
    ///
    /// # Example
    /// ```
    /// # use atrest::{Context, Keyring, LocalRootKey};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let acme = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("table", "cards").with("column", "holder").with("row", "7");
    /// let sealed = acme.seal(b"Alice Example", &ctx)?;
    /// assert_eq!(sealed.len(), 13 + atrest::RECORD_OVERHEAD);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal(&self, plaintext: &[u8], context: &Context) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(plaintext.len() + record::RECORD_OVERHEAD);
        self.seal_into(plaintext, context, &mut out)?;
        Ok(out)
    }

    /// Seals `plaintext` and appends the record to `out` (reusing its allocation).
    ///
    /// # Errors
    /// As [`Tenant::seal`]; on error `out` is left as it was.
    pub fn seal_into(&self, plaintext: &[u8], context: &Context, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.seal_with(self.suite, plaintext, context, out).map(drop)
    }

    /// [`Tenant::seal_into`] with `suite` (a rewrap keeps the record's suite); returns the key
    /// version that sealed.
    fn seal_with(
        &self,
        suite: RecordSuite,
        plaintext: &[u8],
        context: &Context,
        out: &mut Vec<u8>,
    ) -> Result<KeyVersion, SealError> {
        self.with_sealing_keys(|key, sealer| {
            sealer.seal_record(suite, key.version, &self.id, context, plaintext, out)?;
            if self.audit_each {
                key.count(Use::Seal);
            }
            Ok(key.version)
        })
    }

    /// Verifies and decrypts a record sealed for this tenant and `context`.
    ///
    /// # Errors
    /// [`OpenError::Authentication`] for any modification, truncation, extension, other
    /// tenant, other context or unknown key version (one opaque error);
    /// [`OpenError::UnsupportedFormat`], [`OpenError::KeyDisabled`],
    /// [`OpenError::KeyDestroyed`], [`OpenError::TenantShredded`].
    pub fn open(&self, sealed: &[u8], context: &Context) -> Result<Vec<u8>, OpenError> {
        let mut buf = Vec::new();
        self.open_into(sealed, context, &mut buf)?;
        Ok(buf)
    }

    /// Verifies and decrypts a record, appending the plaintext to `out`.
    ///
    /// # Errors
    /// As [`Tenant::open`]; on error `out` is left as it was, and no unauthenticated byte is
    /// ever written to it.
    pub fn open_into(&self, sealed: &[u8], context: &Context, out: &mut Vec<u8>) -> Result<(), OpenError> {
        self.open_parsed_into(&record::parse(sealed)?, context, out)
    }

    /// [`Tenant::open_into`] of a record already parsed (a batch reads its key version first).
    pub(crate) fn open_parsed_into(
        &self,
        parsed: &record::Parsed<'_>,
        context: &Context,
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        self.with_opening_keys(parsed.info.key_version, |key, sealer| {
            sealer.open_record(parsed, &self.id, context, out)?;
            if self.audit_each {
                key.count(Use::Open);
            }
            Ok(())
        })
    }

    /// Runs `f` with the record key for sealing new records and its sealer. On the warm
    /// path the key is the handle's first one, still sealable at the keyring's epoch: one
    /// atomic load each, no lock, no reference count.
    fn with_sealing_keys<R>(
        &self,
        f: impl FnOnce(&DerivedKey, &RecordKey) -> Result<R, SealError>,
    ) -> Result<R, SealError> {
        let epoch = self.keyring.epoch();
        if let Some(k) = self.first.get().filter(|k| k.sealable_at(epoch)) {
            return with_sealer(k, f);
        }
        if let Some(later) = self.later.get() {
            let guard = later.sealing.load();
            if let Some(k) = guard.as_ref().filter(|k| k.sealable_at(epoch)) {
                return with_sealer(k, f);
            }
        }
        // No first key: this handle was made while its key was not cached (a handle made on a
        // cached key starts with it): the cache was looked in then, so do not look again.
        let just_missed = self.first.get().is_none();
        let key = self
            .keyring
            .sealing_key(&self.id, Purpose::Records, just_missed)
            .map_err(|(r, v)| self.seal_refused(r, v))?;
        if self.first.get().is_none_or(|k| !Arc::ptr_eq(k, &key)) && self.first.set(key.clone()).is_err() {
            self.later().sealing.store(Some(key.clone()));
        }
        with_sealer(&key, f)
    }

    /// Runs `f` with the record key of `version` (named by a record's header) and its sealer,
    /// from the handle's slots on the warm path.
    fn with_opening_keys<R>(
        &self,
        version: KeyVersion,
        f: impl FnOnce(&DerivedKey, &RecordKey) -> Result<R, OpenError>,
    ) -> Result<R, OpenError> {
        let epoch = self.keyring.epoch();
        let fits = |k: &&Arc<DerivedKey>| k.version == version && k.usable_at(epoch);
        for slot in [&self.first, &self.first_opened] {
            if let Some(k) = slot.get().filter(fits) {
                return with_sealer(k, f);
            }
        }
        if let Some(later) = self.later.get() {
            for slot in [&later.sealing, &later.opened] {
                let guard = slot.load();
                if let Some(k) = guard.as_ref().filter(fits) {
                    return with_sealer(k, f);
                }
            }
        }
        let key = match self.keyring.derived_key(&self.id, version, Purpose::Records) {
            // Sealed a moment ago under a version another process just added: look once.
            Err(KeyRefusal::Unknown) if self.keyring.refresh_for_unknown_version() => {
                self.keyring.derived_key(&self.id, version, Purpose::Records)
            }
            other => other,
        }
        .map_err(|r| self.open_refused(r))?;
        let known =
            [&self.first, &self.first_opened].into_iter().any(|s| s.get().is_some_and(|k| Arc::ptr_eq(k, &key)));
        if !known && self.first_opened.set(key.clone()).is_err() {
            self.later().opened.store(Some(key.clone()));
        }
        with_sealer(&key, f)
    }

    /// The slots of keys found after the first ones, made on first need.
    fn later(&self) -> &Later {
        self.later.get_or_init(Arc::default)
    }

    /// The backup key material new backup streams are wrapped under.
    pub(crate) fn backup_key_for_seal(&self) -> Result<Arc<DerivedKey>, SealError> {
        self.keyring.sealing_key(&self.id, Purpose::Backups, false).map_err(|(r, v)| self.seal_refused(r, v))
    }

    /// The backup key material of `version` (named by a backup header).
    pub(crate) fn backup_key_for_open(&self, version: KeyVersion) -> Result<Arc<DerivedKey>, OpenError> {
        match self.keyring.derived_key(&self.id, version, Purpose::Backups) {
            Err(KeyRefusal::Unknown) if self.keyring.refresh_for_unknown_version() => {
                self.keyring.derived_key(&self.id, version, Purpose::Backups)
            }
            other => other,
        }
        .map_err(|r| self.open_refused(r))
    }

    /// Why a key cannot seal, as the caller sees it.
    fn seal_refused(&self, refusal: KeyRefusal, version: KeyVersion) -> SealError {
        match refusal {
            KeyRefusal::Shredded { at } => SealError::TenantShredded { tenant: self.id.to_string(), shredded_at: at },
            KeyRefusal::Unavailable => SealError::KeyringUnavailable,
            _ => SealError::KeyUnavailable(version),
        }
    }

    /// Why a key cannot open, as the caller sees it: an unknown version is an authentication
    /// failure like any other; disabled, destroyed and shredded are reported.
    fn open_refused(&self, refusal: KeyRefusal) -> OpenError {
        match refusal {
            KeyRefusal::Shredded { at } => OpenError::TenantShredded { tenant: self.id.to_string(), shredded_at: at },
            KeyRefusal::Unknown => OpenError::Authentication,
            KeyRefusal::Unavailable => OpenError::KeyringUnavailable,
            KeyRefusal::Disabled(v) => OpenError::KeyDisabled(v),
            KeyRefusal::Destroyed(v) => OpenError::KeyDestroyed(v),
        }
    }
}

/// Runs `f` with `key` and the record sealer attached to it (built and attached by the first
/// handle that needs it), so every handle of the tenant shares one sealer.
fn with_sealer<R>(key: &DerivedKey, f: impl FnOnce(&DerivedKey, &RecordKey) -> R) -> R {
    f(key, key.sealer())
}
