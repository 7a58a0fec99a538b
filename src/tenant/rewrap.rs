//! Moving records to the current key version (after a rotation).

use zeroize::Zeroize;

use super::Tenant;
use crate::context::Context;
use crate::error::{OpenError, RewrapError};
use crate::record::{self, RewrapReport};

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
