//! Errors of backup repositories.

use thiserror::Error;

use super::{BackupError, OpenError, SealError};
use crate::repo::store::StoreError;

/// Errors from a backup repository ([`Repository`](crate::Repository)).
///
/// Problems that [`Repository::verify_chain`](crate::Repository::verify_chain) finds are not
/// errors: they are listed in its report. No variant carries key bytes or plaintext.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The location is not a directory path or an `s3://bucket/prefix` URL, or names object
    /// storage in a build without the `s3` feature.
    #[error("repository location: {0}")]
    Location(String),
    /// The object store failed (I/O, network, service, or a refused overwrite).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encrypting or authenticating a backup stream failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The tenant's key for writing catalog entries is not usable.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The tenant's key for a catalog entry's key version is not usable.
    #[error(transparent)]
    Key(#[from] OpenError),
    /// The newest catalog entry does not authenticate, so nothing can be appended after it:
    /// run `verify-chain` (nothing was appended; a stream stored for it is an orphan).
    #[error("catalog entry {index} of tenant '{tenant}' is not authentic: refusing to append after it")]
    CatalogDamaged {
        /// The tenant.
        tenant: String,
        /// The entry index.
        index: u64,
    },
    /// Other writers appended to the tenant's catalog at every attempt: nothing was appended
    /// (the stored stream is an orphan).
    #[error("other writers kept appending to the catalog of tenant '{0}': giving up (no entry was written)")]
    Contention(String),
    /// The catalog has no backup at the requested point.
    #[error("no backup of tenant '{tenant}' {what}")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// What was looked for ("named 'x'", "at or before 1764201600").
        what: String,
    },
    /// A stream named by an authentic catalog entry is missing, or its bytes are not the
    /// ones the entry records (replaced, truncated): it is not released.
    #[error("stream '{snapshot}' of tenant '{tenant}' is not the one the catalog records: {reason}")]
    StreamMismatch {
        /// The tenant.
        tenant: String,
        /// The snapshot id.
        snapshot: String,
        /// Missing, truncated or a different digest.
        reason: &'static str,
    },
    /// The restore chain is broken: an incremental's parent is not in the catalog, or its
    /// sequence does not follow the parent's.
    #[error("the chain of '{snapshot}' of tenant '{tenant}' is broken: {reason}")]
    BrokenChain {
        /// The tenant.
        tenant: String,
        /// The snapshot whose chain is broken.
        snapshot: String,
        /// What is wrong.
        reason: String,
    },
    /// The replica holds catalog entries the source does not (the source lost entries or was
    /// rolled back) or a different entry under the same index (a fork): nothing was copied
    /// over them.
    #[error("replica diverged at catalog entry {index} of tenant '{tenant}': {reason}")]
    ReplicaDiverged {
        /// The tenant.
        tenant: String,
        /// The first entry index that differs.
        index: u64,
        /// What differs.
        reason: &'static str,
    },
    /// A restore consumer (an output file, a command) failed: the restore stopped there.
    #[error("restore of '{snapshot}' stopped: {source}")]
    Consumer {
        /// The snapshot being restored when the consumer failed.
        snapshot: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A parameter is out of range.
    #[error("invalid repository parameter: {0}")]
    InvalidParameter(String),
}

impl RepoError {
    /// Whether data did not authenticate: a catalog entry, a stream's bytes against its entry,
    /// or a stream itself.
    #[must_use]
    pub fn is_authentication(&self) -> bool {
        match self {
            Self::Backup(e) => e.is_authentication(),
            Self::Key(e) => e.is_authentication(),
            Self::CatalogDamaged { .. } | Self::StreamMismatch { .. } => true,
            _ => false,
        }
    }
}
