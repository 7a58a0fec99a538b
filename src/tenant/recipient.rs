//! The tenant's backup recipients: the public half of a key pair derived from its backup
//! key of one key version (see the `backup::recipient` module).

use super::Tenant;
use crate::error::{BackupError, OpenError};
use crate::id::KeyVersion;
use crate::{Recipient, RecipientKem};

impl Tenant {
    /// The backup recipient of this tenant's current key version: give its text to an
    /// encrypt-only backup host (see [`Recipient`]).
    ///
    /// # Errors
    /// [`BackupError::Seal`] for a shredded tenant or an unusable current key.
    ///
    /// # Security
    /// A recipient is public. Its private half is derived again from the keyring whenever a
    /// stream is opened; nothing is stored. After a rotation (of the keyring or of this
    /// tenant) give hosts the new recipient: streams written to the old one stay readable
    /// while its version is enabled, and can be moved to the new one with
    /// [`rewrap_backup_header`](crate::rewrap_backup_header).
    pub fn backup_recipient(&self, kem: RecipientKem) -> Result<Recipient, BackupError> {
        let key = self.backup_key_for_seal()?;
        Ok(Recipient::derive(self.id(), key.version, kem, &key.key))
    }

    /// The backup recipient of this tenant's key `version` (an earlier version that is still
    /// enabled, for example).
    ///
    /// # Errors
    /// [`BackupError::Key`] with [`OpenError::KeyDisabled`], [`OpenError::KeyDestroyed`] or
    /// [`OpenError::TenantShredded`]: no recipient is handed out for a key that cannot open
    /// what is written to it; [`BackupError::InvalidParameter`] for a version the keyring
    /// does not have.
    pub fn backup_recipient_at(&self, version: KeyVersion, kem: RecipientKem) -> Result<Recipient, BackupError> {
        let key = self.backup_key_for_open(version).map_err(|e| match e {
            OpenError::Authentication => {
                BackupError::InvalidParameter(format!("key version {version} does not exist in this keyring"))
            }
            other => BackupError::Key(other),
        })?;
        Ok(Recipient::derive(self.id(), key.version, kem, &key.key))
    }
}
