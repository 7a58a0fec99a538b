//! A tenant's blind indexes (the format is in `record/index`): values under the current key
//! version, lookups over every key version in use, and the indexed seal that puts a record
//! and its index values under one key version. The indexed rewrap is in `rewrap.rs`.
//!
//! Index keys are cached per handle (shared by its clones) while the keyring's epoch holds,
//! so a warm index value costs one HMAC-SHA256 of its input.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::Tenant;
use crate::context::Context;
use crate::error::IndexError;
use crate::id::KeyVersion;
use crate::keyring::{KeyRefusal, KeyState, MasterStatus, Purpose};
use crate::record::{BlindIndex, IndexKey, IndexLookup, IndexValue, IndexedRecord, RecordSuite};

/// How many index keys (index definition x key version) a handle keeps.
const MAX_CACHED_INDEX_KEYS: usize = 64;

/// The index keys of one tenant handle, valid for one keyring epoch.
#[derive(Default)]
pub(super) struct IndexCache(ArcSwapOption<Snapshot>);

struct Snapshot {
    epoch: u64,
    current: KeyVersion,
    /// The versions lookups cover, the current one first.
    usable: Vec<KeyVersion>,
    /// Most recently derived first.
    keys: Vec<Arc<IndexKey>>,
}

/// Every key version that can still open this tenant's records: each primary or enabled
/// master version with each generation up to the current one; `current` first, then the
/// newest master versions and generations first.
fn usable_versions(masters: &[MasterStatus], current: KeyVersion) -> Vec<KeyVersion> {
    let mut out = vec![current];
    let live = masters.iter().rev().filter(|m| matches!(m.state, KeyState::Primary | KeyState::Enabled));
    for m in live {
        for generation in (0..=current.generation).rev() {
            let v = KeyVersion { master: m.version, generation };
            if v != current {
                out.push(v);
            }
        }
    }
    out
}

impl Tenant {
    /// The value of `fields` in `index` under the current key version.
    ///
    /// When the row's record is sealed at the same time, use [`Tenant::seal_indexed`]
    /// instead: it guarantees that the record and its index values share a key version.
    ///
    /// # Errors
    /// [`IndexError::FieldCount`], [`IndexError::NotText`], [`IndexError::FieldTooLong`];
    /// [`IndexError::TenantShredded`], [`IndexError::KeyUnavailable`].
    ///
    /// # Example
    /// ```
    /// # use atrest::{BlindIndex, Keyring, LocalRootKey, Transform};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let email = BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build()?;
    /// let acme = keyring.tenant("acme")?;
    /// let a = acme.blind_index(&email, &["Alice@Example.com "])?;
    /// assert_eq!(a, acme.blind_index(&email, &["alice@example.com"])?);
    /// assert_ne!(a, keyring.tenant("globex")?.blind_index(&email, &["alice@example.com"])?);
    /// let column: i64 = a.to_i64()?; // a `bigint` column
    /// # let _ = column;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blind_index<F: AsRef<[u8]>>(&self, index: &BlindIndex, fields: &[F]) -> Result<IndexValue, IndexError> {
        self.index_key(index, None)?.value(index, fields)
    }

    /// The value of `fields` in `index` under `version`: for an index over fields of
    /// several records (a compound index), computed under the key version of the row's
    /// records (`record_info(&sealed)?.key_version`).
    ///
    /// # Errors
    /// As [`Tenant::blind_index`]; [`IndexError::KeyUnavailable`] for a version that is
    /// disabled, destroyed or unknown.
    pub fn blind_index_at<F: AsRef<[u8]>>(
        &self,
        index: &BlindIndex,
        fields: &[F],
        version: KeyVersion,
    ) -> Result<IndexValue, IndexError> {
        self.index_key(index, Some(version))?.value(index, fields)
    }

    /// The values to look `fields` up with: one per key version that can still open this
    /// tenant's records ([`Tenant::blind_index_versions`]), the current one first. Query
    /// with all of them (`WHERE tenant = $1 AND idx = ANY($2)`), then open the candidates:
    /// rows whose record does not hold the value are false positives.
    ///
    /// # Errors
    /// As [`Tenant::blind_index`].
    pub fn blind_index_lookup<F: AsRef<[u8]>>(
        &self,
        index: &BlindIndex,
        fields: &[F],
    ) -> Result<IndexLookup, IndexError> {
        let versions = self.index_snapshot()?.usable.clone();
        self.lookup(index, fields, &versions)
    }

    /// As [`Tenant::blind_index_lookup`], for the given key versions only: for applications
    /// that know which versions their rows use (for example from a
    /// [`key_version_census`](crate::key_version_census)), so lookups stay small after
    /// tenant rotations.
    ///
    /// # Errors
    /// As [`Tenant::blind_index_at`].
    pub fn blind_index_lookup_in<F: AsRef<[u8]>>(
        &self,
        index: &BlindIndex,
        fields: &[F],
        versions: &[KeyVersion],
    ) -> Result<IndexLookup, IndexError> {
        let mut unique: Vec<KeyVersion> = Vec::with_capacity(versions.len());
        for v in versions {
            if !unique.contains(v) {
                unique.push(*v);
            }
        }
        self.lookup(index, fields, &unique)
    }

    /// The key versions a lookup covers: every primary or enabled master version with
    /// every tenant generation up to the current one, the current version first.
    /// Disabling a master version after its rows are rewrapped removes it.
    ///
    /// # Errors
    /// [`IndexError::TenantShredded`].
    pub fn blind_index_versions(&self) -> Result<Vec<KeyVersion>, IndexError> {
        Ok(self.index_snapshot()?.usable.clone())
    }

    /// Seals `plaintext` as [`Tenant::seal`] does and computes its value in each of
    /// `indexes` (one-field indexes) under the same key version, so that
    /// [`Tenant::needs_rewrap`] on the record also tells whether its index values are
    /// current. Nothing is sealed if an index cannot take the plaintext.
    ///
    /// # Errors
    /// [`IndexError::FieldCount`] for a compound index; [`IndexError::NotText`];
    /// [`IndexError::Seal`] if sealing fails; as [`Tenant::blind_index`].
    ///
    /// # Example
    /// ```
    /// # use atrest::{BlindIndex, Context, Keyring, LocalRootKey, Transform};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let email = BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build()?;
    /// let acme = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "42");
    /// let row = acme.seal_indexed(b"alice@example.com", &ctx, &[&email])?;
    /// // INSERT INTO contacts (tenant, id, email, email_idx) VALUES ('acme', 42, $1, $2)
    /// //   with $1 = row.sealed, $2 = row.index_values[0].to_i64()?
    /// let found = acme.blind_index_lookup(&email, &["ALICE@example.com"])?;
    /// assert!(found.matches(row.index_values[0].as_bytes()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal_indexed(
        &self,
        plaintext: &[u8],
        context: &Context,
        indexes: &[&BlindIndex],
    ) -> Result<IndexedRecord, IndexError> {
        self.seal_indexed_as(self.suite, plaintext, context, indexes)
    }

    /// [`Tenant::seal_indexed`] with `suite`.
    pub(super) fn seal_indexed_as(
        &self,
        suite: RecordSuite,
        plaintext: &[u8],
        context: &Context,
        indexes: &[&BlindIndex],
    ) -> Result<IndexedRecord, IndexError> {
        let inputs = indexes.iter().map(|i| i.input_of(&[plaintext])).collect::<Result<Vec<_>, _>>()?;
        let mut sealed = Vec::with_capacity(plaintext.len() + crate::record::RECORD_OVERHEAD);
        let version = self.seal_with(suite, plaintext, context, &mut sealed)?;
        let index_values = indexes
            .iter()
            .zip(&inputs)
            .map(|(index, input)| Ok(self.index_key(index, Some(version))?.value_of_input(input)))
            .collect::<Result<_, IndexError>>()?;
        Ok(IndexedRecord { sealed, index_values })
    }

    fn lookup<F: AsRef<[u8]>>(
        &self,
        index: &BlindIndex,
        fields: &[F],
        versions: &[KeyVersion],
    ) -> Result<IndexLookup, IndexError> {
        let input = index.input_of(fields)?;
        let values = versions
            .iter()
            .map(|v| Ok(self.index_key(index, Some(*v))?.value_of_input(&input)))
            .collect::<Result<_, IndexError>>()?;
        Ok(IndexLookup::new(values))
    }

    /// This handle's index key cache (made on first use, shared by clones made after).
    fn index_cache(&self) -> &IndexCache {
        self.indexes.get_or_init(Arc::default)
    }

    /// This handle's index snapshot for the keyring's current epoch.
    fn index_snapshot(&self) -> Result<Arc<Snapshot>, IndexError> {
        let epoch = self.keyring.epoch();
        if let Some(s) = self.index_cache().0.load_full().filter(|s| s.epoch == epoch) {
            return Ok(s);
        }
        if let Some(at) = self.keyring.shredded_at(&self.id) {
            return Err(IndexError::TenantShredded { tenant: self.id.to_string(), shredded_at: at });
        }
        let current = self.key_version();
        let usable = usable_versions(&self.keyring.status().masters, current);
        let snapshot = Arc::new(Snapshot { epoch, current, usable, keys: Vec::new() });
        self.index_cache().0.store(Some(snapshot.clone()));
        Ok(snapshot)
    }

    /// The key of `index` under `version` (the current version if `None`), cached.
    fn index_key(&self, index: &BlindIndex, version: Option<KeyVersion>) -> Result<Arc<IndexKey>, IndexError> {
        let snap = self.index_snapshot()?;
        let version = version.unwrap_or(snap.current);
        if let Some(k) = snap.keys.iter().find(|k| k.is_for(index, version)) {
            return Ok(k.clone());
        }
        let material = match self.keyring.derived_key(&self.id, version, Purpose::Indexes) {
            // A version another process added a moment ago (named by a record): look once.
            Err(KeyRefusal::Unknown) if self.keyring.refresh_for_unknown_version() => {
                self.keyring.derived_key(&self.id, version, Purpose::Indexes)
            }
            other => other,
        }
        .map_err(|r| match r {
            KeyRefusal::Shredded { at } => IndexError::TenantShredded { tenant: self.id.to_string(), shredded_at: at },
            KeyRefusal::Unavailable => IndexError::KeyringUnavailable,
            _ => IndexError::KeyUnavailable(version),
        })?;
        let key = Arc::new(IndexKey::derive(&material.key, index, version));
        tracing::debug!(target: "atrest::audit", event = "index.key", tenant = %self.id, index = index.name(), key_version = %version);
        let mut keys = Vec::with_capacity(MAX_CACHED_INDEX_KEYS);
        keys.push(key.clone());
        keys.extend(snap.keys.iter().take(MAX_CACHED_INDEX_KEYS - 1).cloned());
        let next = Snapshot { epoch: snap.epoch, current: snap.current, usable: snap.usable.clone(), keys };
        self.index_cache().0.store(Some(Arc::new(next)));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MasterVersion;

    fn status(version: u16, state: KeyState) -> MasterStatus {
        MasterStatus { version: MasterVersion::new(version), state, created_at: 0, changed_at: 0 }
    }

    fn kv(m: u16, g: u16) -> KeyVersion {
        KeyVersion { master: MasterVersion::new(m), generation: g }
    }

    #[test]
    fn usable_versions_are_live_masters_times_generations() {
        let masters = [
            status(1, KeyState::Destroyed),
            status(2, KeyState::Enabled),
            status(3, KeyState::Disabled),
            status(4, KeyState::Primary),
        ];
        assert_eq!(usable_versions(&masters, kv(4, 1)), [kv(4, 1), kv(4, 0), kv(2, 1), kv(2, 0)]);
        assert_eq!(usable_versions(&masters[3..], kv(4, 0)), [kv(4, 0)]);
    }
}
