//! Error types, split by operation. Every enum is `#[non_exhaustive]`.
//!
//! Authentication failures collapse into one opaque variant per direction
//! ([`OpenError::Authentication`], [`RootKeyError::Authentication`],
//! [`BackupError::Authentication`]): they never say whether the tag, the header, the key
//! version, the tenant or the context was wrong. No error carries key bytes, plaintext or
//! context values.

mod index;

use std::path::PathBuf;

use thiserror::Error;

use crate::id::{InvalidTenantId, KeyVersion, MasterVersion};
pub use index::IndexError;

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

/// Errors from a root key provider (key file, environment variable, PKCS#11 token).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RootKeyError {
    /// Unwrapping failed: the wrapped key was modified, or belongs to another root key or
    /// another keyring slot.
    #[error("unwrapping under the root key failed: wrong root key or modified wrapped key")]
    Authentication,
    /// Reading or writing a key file failed.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A root key file may be read by other users.
    #[error("root key file {path} has mode {mode:o}: it must not be readable by group or others (chmod 600)")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A root key file must not be overwritten.
    #[error("root key file {0} already exists: refusing to overwrite a key")]
    AlreadyExists(PathBuf),
    /// The key file or variable does not hold an atrest root key.
    #[error("{0} does not contain an atrest root key (expected ATREST-ROOT-KEY-V1:<64 hex digits>)")]
    Malformed(String),
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The PKCS#11 module could not be loaded.
    #[error("PKCS#11 module {path} could not be loaded: {reason}")]
    ModuleNotFound {
        /// The module path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No token with this label is present.
    #[error("PKCS#11 token '{0}' was not found")]
    TokenNotFound(String),
    /// The token refused the PIN.
    #[error("the PKCS#11 token refused the PIN")]
    WrongPin,
    /// No key with this label exists in the token.
    #[error("PKCS#11 key '{0}' was not found in the token")]
    KeyMissing(String),
    /// The root key may leave the token, and that was not explicitly allowed.
    #[error("PKCS#11 key '{0}' is extractable: refusing it as a root key unless explicitly allowed")]
    KeyExtractable(String),
    /// The root key cannot leave the token now but could earlier (`CKA_NEVER_EXTRACTABLE` or
    /// `CKA_ALWAYS_SENSITIVE` is false: it was created extractable or readable and changed
    /// later), so a copy may exist outside the token; and that was not explicitly allowed.
    #[error(
        "PKCS#11 key '{0}' was extractable or readable before (CKA_NEVER_EXTRACTABLE or CKA_ALWAYS_SENSITIVE is \
         false), so a copy may exist outside the token: refusing it as a root key unless explicitly allowed"
    )]
    KeyWasExtractable(String),
    /// The token does not support a mechanism atrest needs.
    #[error("the PKCS#11 token does not support {0}")]
    MechanismUnsupported(String),
    /// The token went away during an operation.
    #[error("the PKCS#11 token was removed or the session was closed")]
    TokenRemoved,
    /// Any other PKCS#11 failure (the return value name, never key material).
    #[error("PKCS#11 error: {0}")]
    Pkcs11(String),
    /// The random number generator failed.
    #[error(transparent)]
    Rng(#[from] RngError),
}

/// Errors from creating, loading, saving or changing a keyring.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// Reading or writing the keyring file failed.
    #[error("keyring file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Refusing to create a keyring over an existing file.
    #[error("keyring file {0} already exists: refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// The file is not an atrest keyring.
    #[error("{0} is not an atrest keyring file")]
    NotAKeyring(PathBuf),
    /// The file ends early (cut off during a copy, or a partial write by a non-atrest tool).
    #[error("keyring file {0} is truncated")]
    Truncated(PathBuf),
    /// The file's structure is invalid.
    #[error("keyring file {path} is corrupted: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong (structure only, never key material).
        reason: String,
    },
    /// The file uses a format version this build does not know.
    #[error("keyring file format version {0} is not supported by this build of atrest")]
    UnsupportedFormat(u32),
    /// The keyring is protected by another root key than the one given.
    #[error("keyring file is for a different root key (file: {expected}, given: {given})")]
    WrongRootKey {
        /// The root key id recorded in the file.
        expected: String,
        /// The id of the root key given.
        given: String,
    },
    /// The file was modified outside atrest: its integrity check failed.
    #[error("keyring file {0} was modified or damaged: integrity check failed")]
    Tampered(PathBuf),
    /// The root key provider failed.
    #[error(transparent)]
    Root(#[from] RootKeyError),
    /// A tenant id is not acceptable.
    #[error("invalid tenant id: {0}")]
    InvalidTenantId(#[from] InvalidTenantId),
    /// The tenant was crypto-shredded.
    #[error("tenant '{tenant}' was shredded at {shredded_at} (unix time)")]
    TenantShredded {
        /// The tenant id.
        tenant: String,
        /// When it was shredded, in seconds since the Unix epoch.
        shredded_at: u64,
    },
    /// No master key with this version exists in the keyring.
    #[error("master key version {0} does not exist in this keyring")]
    UnknownVersion(MasterVersion),
    /// The operation is not allowed on the primary version.
    #[error("master key version {0} is the primary: rotate first, then {1} it")]
    PrimaryRefused(MasterVersion, &'static str),
    /// The version was destroyed; its state can no longer change.
    #[error("master key version {0} was destroyed and cannot change state")]
    Destroyed(MasterVersion),
    /// Destroying a version needs an explicit confirmation.
    #[error("destroying master key version {0} is irreversible: confirm it explicitly")]
    NotConfirmed(MasterVersion),
    /// A version or generation counter would overflow.
    #[error("too many {0}: the counter is exhausted")]
    Exhausted(&'static str),
    /// The operation needs a keyring file, and this keyring has none.
    #[error("this keyring has no file to save to")]
    NoFile,
    /// The store offered an older keyring document than this handle (or its revision
    /// anchor) has seen: a restored snapshot or a file written back. Refused; the handle
    /// keeps its newer state.
    #[error("keyring rollback refused: revision {offered} is older than revision {seen} already seen")]
    RolledBack {
        /// The revision already seen.
        seen: u64,
        /// The revision offered by the store.
        offered: u64,
    },
    /// The store holds another keyring (another id) than the one this handle or its
    /// revision anchor is pinned to. Refused.
    #[error("keyring substitution refused: expected keyring {expected}, found keyring {found}")]
    Substituted {
        /// The pinned keyring id (hex).
        expected: String,
        /// The keyring id found (hex).
        found: String,
    },
    /// Destroying needs the version disabled first.
    #[error("master key version {0} must be disabled before it can be destroyed")]
    NotDisabled(MasterVersion),
    /// The version has not been disabled for the grace period yet.
    #[error(
        "master key version {version} was disabled too recently: destroy it in {remaining_secs} s (the grace period lets every server and backup notice)"
    )]
    GracePeriod {
        /// The version.
        version: MasterVersion,
        /// Seconds until it may be destroyed.
        remaining_secs: u64,
    },
    /// The tenant was already shredded: nothing was changed.
    #[error("tenant '{tenant}' was already shredded at {shredded_at} (unix time): nothing changed")]
    AlreadyShredded {
        /// The tenant id.
        tenant: String,
        /// When it was shredded, in seconds since the Unix epoch.
        shredded_at: u64,
    },
    /// The evidence offered for a shred does not show that the tenant exists (a record or
    /// backup that authenticates for it): refused, so that a misspelled tenant id cannot look
    /// like a completed erasure.
    #[error(
        "shred refused: the evidence does not authenticate for tenant '{0}' (check the tenant id, or shred explicitly unverified)"
    )]
    ShredEvidence(String),
    /// A change would leave the keyring in a state that must never be written (an atrest
    /// bug or a bad document); nothing was written.
    #[error("keyring consistency check failed: {0}")]
    Inconsistent(&'static str),
    /// This build cannot open that kind of keyring location.
    #[error("{0}")]
    StoreUnsupported(&'static str),
    /// The keyring store (a database) failed or could not be reached.
    #[error("keyring store {location}: {reason}")]
    Store {
        /// The location (without password).
        location: String,
        /// What failed.
        reason: String,
    },
    /// The random number generator failed.
    #[error(transparent)]
    Rng(#[from] RngError),
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
