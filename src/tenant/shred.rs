//! Crypto-shredding a tenant, with evidence that the tenant exists: atrest keeps no tenant
//! list, so a misspelled id would otherwise be "erased" successfully and nothing else.

use crate::context::Context;
use crate::error::{BackupError, KeyringError, OpenError};
use crate::id::TenantId;
use crate::keyring::Keyring;

/// What shows that a tenant to be shredded exists.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ShredEvidence<'a> {
    /// A record sealed for the tenant, with its context: it must open.
    Record {
        /// The sealed record.
        sealed: &'a [u8],
        /// Its context.
        context: &'a Context,
    },
    /// The beginning of a backup stream of the tenant (at least its header): the header
    /// must authenticate for the tenant.
    Backup(&'a [u8]),
    /// No evidence: the operator asserts that the tenant exists. The audit event says
    /// `tenant.shred.unverified`.
    Unverified,
}

impl ShredEvidence<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ShredEvidence::Record { .. } => "record",
            ShredEvidence::Backup(_) => "backup",
            ShredEvidence::Unverified => "unverified",
        }
    }
}

impl Keyring {
    /// Crypto-shreds a tenant: refused at once by every operation of every handle (within
    /// the staleness bound). The shred is *pending* until every master version that exists
    /// now is destroyed (after rewrapping other tenants' data and after the backup retention
    /// window), then *complete*.
    ///
    /// `evidence` must show that the tenant exists (a record of it that opens, or a backup
    /// whose header authenticates for it), or be
    /// [`ShredEvidence::Unverified`] explicitly.
    ///
    /// # Errors
    /// [`KeyringError::InvalidTenantId`]; [`KeyringError::ShredEvidence`] if the evidence
    /// does not authenticate for this tenant; [`KeyringError::AlreadyShredded`] (nothing
    /// changes); I/O and store errors.
    ///
    /// # Example
    /// ```
    /// use atrest::{Context, Keyring, KeyringError, LocalRootKey, ShredEvidence};
    /// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let ctx = Context::new().with("row", "1");
    /// let sealed = keyring.tenant("acme")?.seal(b"x", &ctx)?;
    /// // A typo is caught: the record does not open for "acmee".
    /// let typo = keyring.shred_tenant("acmee", ShredEvidence::Record { sealed: &sealed, context: &ctx });
    /// assert!(matches!(typo, Err(KeyringError::ShredEvidence(_))));
    /// keyring.shred_tenant("acme", ShredEvidence::Record { sealed: &sealed, context: &ctx })?;
    /// let again = keyring.shred_tenant("acme", ShredEvidence::Unverified);
    /// assert!(matches!(again, Err(KeyringError::AlreadyShredded { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shred_tenant(&self, tenant: &str, evidence: ShredEvidence<'_>) -> Result<(), KeyringError> {
        let id = TenantId::new(tenant)?;
        if let Some(at) = self.shredded_at(&id) {
            return Err(KeyringError::AlreadyShredded { tenant: id.to_string(), shredded_at: at });
        }
        match evidence {
            ShredEvidence::Record { sealed, context } => match self.tenant(tenant)?.open(sealed, context) {
                Ok(mut plain) => zeroize::Zeroize::zeroize(&mut plain),
                Err(OpenError::TenantShredded { tenant, shredded_at }) => {
                    return Err(KeyringError::AlreadyShredded { tenant, shredded_at });
                }
                Err(_) => return Err(refused(&id, evidence.kind())),
            },
            ShredEvidence::Backup(stream) => match crate::backup::authenticate_header(&self.tenant(tenant)?, stream) {
                Ok(()) => {}
                Err(BackupError::Key(OpenError::TenantShredded { tenant, shredded_at })) => {
                    return Err(KeyringError::AlreadyShredded { tenant, shredded_at });
                }
                Err(_) => return Err(refused(&id, evidence.kind())),
            },
            ShredEvidence::Unverified => {}
        }
        self.shred_verified(&id, evidence.kind())
    }
}

/// A shred refused for want of evidence, reported to the audit log too.
fn refused(id: &TenantId, kind: &'static str) -> KeyringError {
    tracing::warn!(target: "atrest::audit", event = "tenant.shred.refused", tenant = %id, evidence = kind);
    KeyringError::ShredEvidence(id.to_string())
}
