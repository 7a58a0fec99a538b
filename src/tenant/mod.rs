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

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::context::Context;
use crate::error::{KeyringError, OpenError, SealError};
use crate::id::{KeyVersion, TenantId};
use crate::keyring::{DerivedKey, KeyRefusal, Keyring, Purpose, Use};
use crate::record::{self, RecordKey, RecordSuite};

/// One tenant of a keyring: seals and opens its records and backups.
///
/// Obtained from [`Keyring::tenant`]. Cheap to clone (clones share their cached keys).
/// Always uses the keyring's current primary version and the tenant's current generation
/// for new data. A handle keeps its record sealer (a derived XAES-256-GCM key and nonce
/// prefix); the sealer is also attached to the keyring's cached key material, so a new
/// handle for the same tenant (one [`Keyring::tenant`] call per request) reuses it rather
/// than building it again.
#[derive(Clone)]
pub struct Tenant {
    keyring: Keyring,
    id: TenantId,
    suite: RecordSuite,
    /// The record keys new records are sealed under, valid while the keyring's epoch holds.
    current: Arc<ArcSwapOption<RecordKeys>>,
    /// The record keys of the last other version opened (records sealed before a rotation).
    opened: Arc<ArcSwapOption<RecordKeys>>,
    /// Blind index keys.
    indexes: Arc<index::IndexCache>,
}

/// A record sealer with the key material it was built from (for the audit counters).
struct RecordKeys {
    epoch: u64,
    material: Arc<DerivedKey>,
    /// Shared with every handle of this tenant: attached to `material` (see `record_keys`).
    sealer: Arc<RecordKey>,
}

impl core::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl Keyring {
    /// A handle for one tenant. Cheap: keys are derived on first use and cached.
    ///
    /// # Errors
    /// [`KeyringError::InvalidTenantId`], or [`KeyringError::TenantShredded`].
    pub fn tenant(&self, id: &str) -> Result<Tenant, KeyringError> {
        let id = TenantId::new(id)?;
        if let Some(at) = self.shredded_at(&id) {
            return Err(KeyringError::TenantShredded { tenant: id.to_string(), shredded_at: at });
        }
        Ok(Tenant {
            keyring: self.clone(),
            id,
            suite: RecordSuite::default(),
            current: Arc::default(),
            opened: Arc::default(),
            indexes: Arc::default(),
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
        self.with_sealing_keys(|k| Ok(k.material.version))
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
        self.with_sealing_keys(|keys| {
            let version = keys.material.version;
            keys.sealer.seal_record(suite, version, &self.id, context, plaintext, out)?;
            keys.material.count(&self.id, Use::Seal);
            Ok(version)
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
        let parsed = record::parse(sealed)?;
        self.with_opening_keys(parsed.info.key_version, |keys| {
            keys.sealer.open_record(&parsed, &self.id, context, out)?;
            keys.material.count(&self.id, Use::Open);
            Ok(())
        })
    }

    /// Runs `f` with the record keys for sealing new records. On the warm path the keys are
    /// borrowed through the slot's guard: no reference count is touched.
    fn with_sealing_keys<R>(&self, f: impl FnOnce(&RecordKeys) -> Result<R, SealError>) -> Result<R, SealError> {
        let epoch = self.keyring.epoch();
        {
            let guard = self.current.load();
            if let Some(k) = guard.as_ref().filter(|k| k.epoch == epoch) {
                return f(k);
            }
        }
        let version = self.key_version();
        let keys = self.record_keys(epoch, version).map_err(|r| self.seal_refused(r, version))?;
        self.current.store(Some(keys.clone()));
        f(&keys)
    }

    /// Runs `f` with the record keys for opening a record sealed under `version` (named by
    /// its header), borrowed through the slot's guard on the warm path.
    fn with_opening_keys<R>(
        &self,
        version: KeyVersion,
        f: impl FnOnce(&RecordKeys) -> Result<R, OpenError>,
    ) -> Result<R, OpenError> {
        let epoch = self.keyring.epoch();
        for slot in [&self.current, &self.opened] {
            let guard = slot.load();
            if let Some(k) = guard.as_ref().filter(|k| k.epoch == epoch && k.material.version == version) {
                return f(k);
            }
        }
        let keys = match self.record_keys(epoch, version) {
            // Sealed a moment ago under a version another process just added: look once.
            Err(KeyRefusal::Unknown) if self.keyring.refresh_for_unknown_version() => {
                self.record_keys(self.keyring.epoch(), version)
            }
            other => other,
        }
        .map_err(|r| self.open_refused(r))?;
        let slot = if version == self.key_version() { &self.current } else { &self.opened };
        slot.store(Some(keys.clone()));
        f(&keys)
    }

    /// The record keys of `version`: the sealer attached to the cached key material (built
    /// and attached by the first handle that needs it), so handles share one sealer.
    fn record_keys(&self, epoch: u64, version: KeyVersion) -> Result<Arc<RecordKeys>, KeyRefusal> {
        let material = self.keyring.derived_key(&self.id, version, Purpose::Records)?;
        let attached = material.attachment(|| Arc::new(RecordKey::new(&material.key))).clone();
        // Only this module attaches to record key material; a foreign value is not reused.
        let sealer = attached.downcast::<RecordKey>().unwrap_or_else(|_| Arc::new(RecordKey::new(&material.key)));
        Ok(Arc::new(RecordKeys { epoch, material, sealer }))
    }

    /// The backup key material new backup streams are wrapped under.
    pub(crate) fn backup_key_for_seal(&self) -> Result<Arc<DerivedKey>, SealError> {
        let version = self.key_version();
        self.keyring.derived_key(&self.id, version, Purpose::Backups).map_err(|r| self.seal_refused(r, version))
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
