//! Error types, split by operation. Every enum is `#[non_exhaustive]`.
//!
//! Authentication failures collapse into one opaque variant per direction
//! ([`OpenError::Authentication`], [`RootKeyError::Authentication`],
//! [`BackupError::Authentication`]): they never say whether the tag, the header, the key
//! version, the tenant or the context was wrong. No error carries key bytes, plaintext or
//! context values.

mod index;
mod recipient;
mod repo;

use thiserror::Error;

mod keyring;

pub use index::IndexError;
pub use keyring::{KeyringError, RootKeyError};
pub use recipient::RecipientError;
pub use repo::RepoError;

use crate::id::{KeyVersion, MasterVersion};

/// The operating system's random number generator failed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the operating system's random number generator failed")]
pub struct RngError;

/// Errors from sealing a record.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The tenant was crypto-shredded; nothing can be sealed for it any more.
    #[error("tenant '{tenant}' was shredded at {shredded_at} (unix time)")]
    TenantShredded {
        /// The tenant id.
        tenant: String,
        /// When it was shredded, in seconds since the Unix epoch.
        shredded_at: u64,
    },
    /// The plaintext is larger than a record may be.
    #[error("plaintext of {len} bytes is larger than the record limit of {limit} bytes")]
    TooLarge {
        /// The plaintext length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The key that would seal is not usable (for example, the primary was removed by
    /// another process and the keyring must be reloaded).
    #[error("key version {0} is not usable for sealing")]
    KeyUnavailable(KeyVersion),
    /// The keyring's store has been unreadable for longer than the handle may serve its
    /// last verified state.
    #[error("the keyring store has been unreachable for too long: refusing to use possibly revoked keys")]
    KeyringUnavailable,
    /// The random number generator failed.
    #[error(transparent)]
    Rng(#[from] RngError),
}

/// Errors from opening (decrypting) a record.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The sealed bytes are not authentic for this tenant, context and keyring: tampered,
    /// truncated, extended, sealed for another tenant or context, or naming a key version
    /// that does not exist. Deliberately says no more than that.
    #[error("authentication failed: the sealed data, tenant, context or key do not match")]
    Authentication,
    /// The sealed bytes use a format version this build of atrest does not know.
    #[error("sealed record format version {0} is not supported by this build of atrest")]
    UnsupportedFormat(u8),
    /// The record names a master key version that is disabled (reversible).
    #[error("master key version {0} is disabled: enable it again to open data sealed under it")]
    KeyDisabled(MasterVersion),
    /// The record names a master key version that was destroyed (irreversible).
    #[error("master key version {0} was destroyed: data sealed under it is unrecoverable")]
    KeyDestroyed(MasterVersion),
    /// The keyring's store has been unreadable for longer than the handle may serve its
    /// last verified state.
    #[error("the keyring store has been unreachable for too long: refusing to use possibly revoked keys")]
    KeyringUnavailable,
    /// The tenant was crypto-shredded.
    #[error("tenant '{tenant}' was shredded at {shredded_at} (unix time)")]
    TenantShredded {
        /// The tenant id.
        tenant: String,
        /// When it was shredded, in seconds since the Unix epoch.
        shredded_at: u64,
    },
}

/// Errors from re-sealing a record under the current key version.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RewrapError {
    /// The record could not be opened.
    #[error("cannot open the record to rewrap it: {0}")]
    Open(#[from] OpenError),
    /// The record could not be sealed again.
    #[error("cannot seal the record under the current key: {0}")]
    Seal(#[from] SealError),
    /// The record's new blind index values could not be computed (it was not changed).
    #[error("cannot compute the record's blind index values: {0}")]
    Index(#[from] IndexError),
}

/// Errors from writing or reading an encrypted backup stream.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The stream is not authentic for this tenant, keyring and backup context: modified,
    /// truncated, extended, chunks reordered, dropped, duplicated or spliced from another
    /// stream, or opened with the wrong context. Deliberately says no more than that.
    #[error(
        "backup authentication failed: the stream was modified, truncated, or does not match this tenant and snapshot"
    )]
    Authentication,
    /// The stream authenticated (or, for `field` = "tenant", names another tenant in its
    /// header) but its stored backup context is not what the caller expects: a different
    /// backup, not a damaged one. Only version 2 streams store their context.
    #[error("this backup's {field} is {found:?}, not {expected:?}")]
    ContextMismatch {
        /// The field that differs: "tenant", "snapshot", "parent", "kind" or "sequence".
        field: &'static str,
        /// What the stream says.
        found: String,
        /// What the caller expected.
        expected: String,
    },
    /// The input is not an atrest backup stream.
    #[error("not an atrest backup stream")]
    NotABackup,
    /// Read without a key ([`inspect_backup`](crate::inspect_backup)): the header is cut off
    /// or its fields are out of range. Keyed operations report this as `Authentication`.
    #[error("the backup header is truncated or malformed")]
    MalformedHeader,
    /// The stream uses a format version this build does not know.
    #[error("backup format version {0} is not supported by this build of atrest")]
    UnsupportedFormat(u8),
    /// A parameter is out of range (chunk size, context field length).
    #[error("invalid backup parameter: {0}")]
    InvalidParameter(String),
    /// `finish()` was already called, or the writer or reader was used after an error.
    #[error("the backup writer or reader is finished or failed earlier; start over")]
    Finished,
    /// The stream would exceed 2^32 chunks.
    #[error("the backup stream is too long for its chunk size (2^32 chunks at most)")]
    TooLong,
    /// Opening the tenant's keys failed.
    #[error(transparent)]
    Key(#[from] OpenError),
    /// Sealing under the tenant's keys failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A keyring operation failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Reading or writing the underlying stream failed.
    #[error("backup I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The random number generator failed.
    #[error(transparent)]
    Rng(#[from] RngError),
    /// An internal invariant of the backup code failed: a bug in atrest, never caused by
    /// the input or the caller. The stream being written or read must be discarded.
    #[error("internal error in atrest's backup code ({0}): please report it")]
    Internal(&'static str),
}

impl From<BackupError> for std::io::Error {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Io(io) => io,
            BackupError::Authentication => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            other => std::io::Error::other(other),
        }
    }
}

// Whether an error is an authentication failure: data or a key that does not verify
// (modified, truncated, mismatched), as opposed to a missing file, a refused operation or a
// broken token. Tools map it to its own exit status (the `atrest` CLI: 3).

impl OpenError {
    /// Whether this is [`OpenError::Authentication`].
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        matches!(self, Self::Authentication)
    }
}

impl RewrapError {
    /// Whether the record failed to authenticate ([`RewrapError::Open`] of
    /// [`OpenError::Authentication`]).
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        matches!(self, Self::Open(e) if e.is_authentication())
    }
}

impl RootKeyError {
    /// Whether this is [`RootKeyError::Authentication`] (a wrapped key that does not
    /// unwrap under this root key).
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        matches!(self, Self::Authentication)
    }
}

impl KeyringError {
    /// Whether the keyring file failed its integrity check ([`KeyringError::Tampered`]) or a
    /// master key did not unwrap under the root key ([`RootKeyError::Authentication`]).
    /// [`KeyringError::WrongRootKey`] is not: the file names another root key, and nothing
    /// was forged.
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        match self {
            Self::Tampered(_) => true,
            Self::Root(e) => e.is_authentication(),
            _ => false,
        }
    }
}

impl BackupError {
    /// Whether the stream or a key did not authenticate: [`BackupError::Authentication`],
    /// or a nested authentication failure ([`BackupError::Key`], [`BackupError::Keyring`]),
    /// or an I/O error that carries one (a [`BackupReader`](crate::BackupReader) used as a
    /// [`std::io::Read`] reports its failures that way).
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        match self {
            Self::Authentication => true,
            Self::Key(e) => e.is_authentication(),
            Self::Keyring(e) => e.is_authentication(),
            Self::Io(e) => {
                e.get_ref().and_then(|inner| inner.downcast_ref::<Self>()).is_some_and(Self::is_authentication)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_failures_are_recognized_through_nesting() {
        assert!(OpenError::Authentication.is_authentication());
        assert!(!OpenError::UnsupportedFormat(9).is_authentication());
        assert!(RewrapError::Open(OpenError::Authentication).is_authentication());
        assert!(!RewrapError::Seal(SealError::Rng(RngError)).is_authentication());
        assert!(RootKeyError::Authentication.is_authentication());
        assert!(!RootKeyError::WrongPin.is_authentication());
        assert!(KeyringError::Tampered("k".into()).is_authentication());
        assert!(KeyringError::Root(RootKeyError::Authentication).is_authentication());
        let wrong = KeyringError::WrongRootKey { expected: "a".into(), given: "b".into() };
        assert!(!wrong.is_authentication());
        assert!(!KeyringError::NoFile.is_authentication());
        assert!(BackupError::Authentication.is_authentication());
        assert!(BackupError::Key(OpenError::Authentication).is_authentication());
        assert!(!BackupError::Key(OpenError::UnsupportedFormat(2)).is_authentication());
        assert!(BackupError::Keyring(KeyringError::Tampered("k".into())).is_authentication());
        assert!(!BackupError::NotABackup.is_authentication());
        // Through std::io::Error, as a BackupReader used as a Read reports it, and back.
        for inner in [BackupError::Authentication, BackupError::Key(OpenError::Authentication)] {
            let io: std::io::Error = inner.into();
            assert!(BackupError::Io(io).is_authentication());
        }
        let io: std::io::Error = BackupError::NotABackup.into();
        assert!(!BackupError::Io(io).is_authentication());
        assert!(!BackupError::Io(std::io::Error::other("disk full")).is_authentication());
    }
}
