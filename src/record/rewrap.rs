//! Moving records to the current key version (after a rotation), and finding which key
//! versions a set of records still uses, from headers alone.

use std::collections::BTreeMap;

use zeroize::Zeroize;

use super::format::parse;
use crate::context::Context;
use crate::error::RewrapError;
use crate::keyring::{KeyVersion, Tenant};

impl Tenant {
    /// Whether `sealed` names a key version other than the one new records use.
    ///
    /// # Errors
    /// As [`record_info`](crate::record_info): bytes that cannot be a record.
    pub fn needs_rewrap(&self, sealed: &[u8]) -> Result<bool, crate::OpenError> {
        Ok(parse(sealed)?.info.key_version != self.key_version())
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
    /// # use atrest::{Context, Keyring, LocalRootKey, DestroyConfirmation, MasterVersion};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let t = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("row", "1");
    /// let old = t.seal(b"data", &ctx)?;
    /// keyring.rotate()?;
    /// let new = t.rewrap(&old, &ctx)?;
    /// let v1 = MasterVersion::new(1);
    /// keyring.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1))?;
    /// assert_eq!(t.open(&new, &ctx)?, b"data");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewrap(&self, sealed: &[u8], context: &Context) -> Result<Vec<u8>, RewrapError> {
        let suite = parse(sealed)?.info.suite;
        let mut plain = self.open(sealed, context)?;
        let tenant = self.clone().with_suite(suite)?;
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
        mut progress: impl FnMut(usize),
    ) -> RewrapReport {
        let mut report = RewrapReport::default();
        for (i, (sealed, ctx)) in records.into_iter().enumerate() {
            match self.needs_rewrap(sealed) {
                Ok(false) => report.already_current += 1,
                Ok(true) => match self.rewrap(sealed, ctx) {
                    Ok(new) => {
                        *sealed = new;
                        report.rewrapped += 1;
                    }
                    Err(e) => report.failed.push((i, e)),
                },
                Err(e) => report.failed.push((i, RewrapError::Open(e))),
            }
            progress(i + 1);
        }
        tracing::info!(
            target: "atrest::audit",
            event = "record.rewrap_batch",
            tenant = %self.id(),
            rewrapped = report.rewrapped,
            already_current = report.already_current,
            failed = report.failed.len()
        );
        report
    }
}

/// What [`Tenant::rewrap_batch`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RewrapReport {
    /// Records re-sealed under the current key version.
    pub rewrapped: usize,
    /// Records that were already under it.
    pub already_current: usize,
    /// Records that failed (index in the input, error); they were left unchanged.
    pub failed: Vec<(usize, RewrapError)>,
}

/// How many records name each key version (see [`key_version_census`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyVersionCensus {
    /// Records per key version.
    pub versions: BTreeMap<KeyVersion, u64>,
    /// Inputs that are not records of a known format.
    pub unreadable: u64,
}

/// Counts the key versions a set of sealed records uses, from their headers alone (no key
/// needed): after a rotation, shows what still needs a rewrap before a version can be
/// disabled or destroyed.
pub fn key_version_census<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> KeyVersionCensus {
    let mut census = KeyVersionCensus::default();
    for r in records {
        match parse(r) {
            Ok(p) => *census.versions.entry(p.info.key_version).or_default() += 1,
            Err(_) => census.unreadable += 1,
        }
    }
    census
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DestroyConfirmation, Keyring, LocalRootKey, MasterVersion, Suite};

    #[test]
    fn batch_rewrap_then_destroy_old_version() {
        let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
        let t = k.tenant("acme").unwrap();
        let ctxs: Vec<Context> = (0..10).map(|i| Context::new().with("row", i.to_string())).collect();
        let mut recs: Vec<Vec<u8>> = ctxs.iter().map(|c| t.seal(b"v", c).unwrap()).collect();
        recs[3] = t.clone().with_suite(Suite::XChaCha20Poly1305).unwrap().seal(b"v", &ctxs[3]).unwrap();
        k.rotate().unwrap();
        recs[5] = t.seal(b"v", &ctxs[5]).unwrap();
        recs[7][40] ^= 1;
        let census = key_version_census(recs.iter().map(Vec::as_slice));
        assert_eq!(census.versions.values().sum::<u64>(), 10);
        assert_eq!(census.versions.len(), 2);

        let mut calls = 0;
        let report = t.rewrap_batch(recs.iter_mut().zip(ctxs.iter()), |n| calls = n);
        assert_eq!(calls, 10);
        assert_eq!(report.rewrapped, 8);
        assert_eq!(report.already_current, 1);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, 7);
        assert_eq!(crate::record_info(&recs[3]).unwrap().suite, Suite::XChaCha20Poly1305);

        let v1 = MasterVersion::new(1);
        k.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1)).unwrap();
        for (i, (r, c)) in recs.iter().zip(&ctxs).enumerate() {
            if i != 7 {
                assert_eq!(t.open(r, c).unwrap(), b"v");
            }
        }
        let census = key_version_census(recs.iter().map(Vec::as_slice));
        assert_eq!(census.versions.len(), 2, "the failed record still names v1");
    }
}
