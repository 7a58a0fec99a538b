//! Moving records (and their blind index values) to the current key version after a
//! rotation.

use zeroize::{Zeroize, Zeroizing};

use super::Tenant;
use crate::context::Context;
use crate::error::{IndexError, OpenError, RewrapError};
use crate::record::{self, BlindIndex, IndexValue, IndexedRecord, RewrapReport};

impl Tenant {
    /// Whether `sealed` names a key version other than the one new records use.
    ///
    /// # Errors
    /// As [`record_info`](crate::record_info): bytes that cannot be a record.
    pub fn needs_rewrap(&self, sealed: &[u8]) -> Result<bool, OpenError> {
        Ok(record::parse(sealed)?.info.key_version != self.key_version())
    }

    /// Opens `sealed` under the key version it names and seals it again under the current
    /// one, with the same context and suite. The plaintext is zeroized before returning.
    ///
    /// # Errors
    /// [`RewrapError::Open`] if the record does not open (any failure of
    /// [`Tenant::open`](crate::Tenant::open)); [`RewrapError::Seal`] otherwise.
    ///
    /// # Example
    /// ```
    /// # use atrest::{Context, Keyring, KeyState, LocalRootKey, DestroyConfirmation, MasterVersion};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let t = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("row", "1");
    /// let old = t.seal(b"data", &ctx)?;
    /// keyring.rotate()?;
    /// let new = t.rewrap(&old, &ctx)?;
    /// let v1 = MasterVersion::new(1);
    /// keyring.set_state(v1, KeyState::Disabled)?;
    /// keyring.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period())?;
    /// assert_eq!(t.open(&new, &ctx)?, b"data");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewrap(&self, sealed: &[u8], context: &Context) -> Result<Vec<u8>, RewrapError> {
        let suite = record::parse(sealed)?.suite;
        let mut plain = self.open(sealed, context)?;
        let tenant = self.clone().with_suite(suite);
        let out = tenant.seal(&plain, context);
        plain.zeroize();
        Ok(out?)
    }

    /// Rewraps many records in place. Records already under the current key version are
    /// left untouched; a record that fails is left as it was and reported. `progress` is
    /// called after each record with the number processed so far.
    pub fn rewrap_batch<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a mut Vec<u8>, &'a Context)>,
        progress: impl FnMut(usize),
    ) -> RewrapReport {
        self.rewrap_each("record.rewrap_batch", records, progress, |(sealed, ctx)| {
            *sealed = self.rewrap(sealed, ctx)?;
            Ok(())
        })
    }

    /// Opens `sealed`, seals it again under the current key version and computes its values
    /// in `indexes` (one-field indexes of the record's plaintext) under that same version:
    /// write both back in one update, and lookups find the row before and after (they
    /// cover the old version until it is disabled). The plaintext is zeroized.
    ///
    /// # Errors
    /// [`RewrapError::Open`], [`RewrapError::Seal`], or [`RewrapError::Index`] (for
    /// example a compound index, or a transform that needs text).
    pub fn rewrap_indexed(
        &self,
        sealed: &[u8],
        context: &Context,
        indexes: &[&BlindIndex],
    ) -> Result<IndexedRecord, RewrapError> {
        let suite = record::parse(sealed)?.suite;
        let plain = Zeroizing::new(self.open(sealed, context)?);
        self.seal_indexed_as(suite, &plain, context, indexes).map_err(|e| match e {
            IndexError::Seal(e) => RewrapError::Seal(e),
            e => RewrapError::Index(e),
        })
    }

    /// [`Tenant::rewrap_batch`] for indexed records: each item is a record, its context and
    /// a vector for its values in `indexes`. A record under an old key version is rewrapped
    /// and the vector set to its new index values (one per index, in order, under the new
    /// version); records already current, and records that fail, are left as they were
    /// (failures reported). Pass empty vectors to tell the rows to write back: those whose
    /// vector was filled. One pass over a table migrates records and index values together
    /// while lookups keep working (see [`Tenant::blind_index_lookup`]).
    ///
    /// # Example
    /// ```
    /// # use atrest::{BlindIndex, Context, Keyring, LocalRootKey, Transform};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let email = BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build()?;
    /// let acme = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("row", "1");
    /// let row = acme.seal_indexed(b"alice@example.com", &ctx, &[&email])?;
    /// let (mut sealed, mut values) = (row.sealed, row.index_values);
    /// keyring.rotate()?;
    /// let report = acme.rewrap_batch_indexed(&[&email], [(&mut sealed, &ctx, &mut values)], |_| {});
    /// assert_eq!(report.rewrapped, 1);
    /// assert_eq!(values[0], acme.blind_index(&email, &["alice@example.com"])?);
    /// assert!(!acme.needs_rewrap(&sealed)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewrap_batch_indexed<'a>(
        &self,
        indexes: &[&BlindIndex],
        records: impl IntoIterator<Item = (&'a mut Vec<u8>, &'a Context, &'a mut Vec<IndexValue>)>,
        progress: impl FnMut(usize),
    ) -> RewrapReport {
        self.rewrap_each("record.rewrap_batch_indexed", records, progress, |(sealed, ctx, values)| {
            let new = self.rewrap_indexed(sealed, ctx, indexes)?;
            *sealed = new.sealed;
            *values = new.index_values;
            Ok(())
        })
    }

    /// The batch loop: `rewrap` is called for each item whose record needs a rewrap.
    fn rewrap_each<T: Rewrappable>(
        &self,
        event: &'static str,
        items: impl IntoIterator<Item = T>,
        mut progress: impl FnMut(usize),
        mut rewrap: impl FnMut(T) -> Result<(), RewrapError>,
    ) -> RewrapReport {
        let mut report = RewrapReport::default();
        for (i, item) in items.into_iter().enumerate() {
            match self.needs_rewrap(item.sealed()) {
                Ok(false) => report.already_current += 1,
                Ok(true) => match rewrap(item) {
                    Ok(()) => report.rewrapped += 1,
                    Err(e) => report.failed.push((i, e)),
                },
                Err(e) => report.failed.push((i, RewrapError::Open(e))),
            }
            progress(i + 1);
        }
        tracing::info!(
            target: "atrest::audit",
            event,
            tenant = %self.id(),
            rewrapped = report.rewrapped,
            already_current = report.already_current,
            failed = report.failed.len()
        );
        report
    }
}

/// A batch item: a record and what goes with it.
trait Rewrappable {
    fn sealed(&self) -> &[u8];
}

impl Rewrappable for (&mut Vec<u8>, &Context) {
    fn sealed(&self) -> &[u8] {
        self.0
    }
}

impl Rewrappable for (&mut Vec<u8>, &Context, &mut Vec<IndexValue>) {
    fn sealed(&self) -> &[u8] {
        self.0
    }
}
