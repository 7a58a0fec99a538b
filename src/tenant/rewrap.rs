//! Moving records to the current key version (after a rotation).

use zeroize::Zeroize;

use super::Tenant;
use crate::context::Context;
use crate::error::{OpenError, RewrapError};
use crate::record;

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
        let mut out = Vec::with_capacity(plain.len() + record::RECORD_OVERHEAD);
        let sealed = self.seal_with(suite, &plain, context, &mut out);
        plain.zeroize();
        sealed?;
        Ok(out)
    }
}
