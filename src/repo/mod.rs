//! Backup repositories: backup streams in an object store (a directory, or S3-compatible
//! object storage) plus an authenticated, hash-chained catalog per tenant.
//!
//! # Layout
//!
//! ```text
//! tenants/<hex(tenant)>/streams/<32 hex random>.atrb   a backup stream (format v2), never overwritten
//! tenants/<hex(tenant)>/catalog/<index, 20 digits>      catalog entry `index` (format: catalog.rs)
//! ```
//!
//! Storing a backup writes the stream first (streamed into the store as it is encrypted),
//! then appends its catalog entry with a conditional put of the next index. A crash between
//! the two leaves an *orphan* stream (reported as a warning, removable), never an entry
//! without its stream. Two writers that race for one index: the loser re-reads the tail and
//! retries with the next index, so the chain never forks.
//!
//! # What the catalog proves
//!
//! Each entry is authenticated under a key derived from the tenant's backup key, names the
//! previous entry's hash, and records its stream's SHA-256, size and context. Someone who
//! can write the repository but holds no key can delete and copy objects, but cannot add,
//! change, reorder or swap entries or streams, nor delete an entry or a stream from the
//! middle of the catalog, without `verify_chain` naming it. Deleting the *newest* entries
//! (rolling the catalog back to an older tail) is not detectable from the repository alone:
//! compare with a replica ([`Repository::replicate`] refuses a source behind its replica) or
//! with an anchor of the newest entry hash kept elsewhere ([`ChainReport::head`]).

mod catalog;
mod load;
mod pipe;
mod prune;
mod replicate;
mod restore;
pub mod store;
mod verify;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use prune::PruneReport;
pub use replicate::ReplicateReport;
pub use restore::RestorePoint;
pub use verify::{ChainReport, Problem};
pub use write::StoredBackup;

use self::catalog::Body;
use self::load::Slot;
use self::store::{DirStore, ObjectStore};
use crate::error::RepoError;
use crate::{BackupKind, KeyVersion};

/// Where a repository lives: a local directory, or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepoLocation {
    /// A local directory.
    Dir(PathBuf),
    /// S3-compatible object storage: endpoint, region and credentials from the standard AWS
    /// environment variables (feature `s3`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl RepoLocation {
    /// `s3://bucket[/prefix]` or a directory path.
    ///
    /// # Errors
    /// [`RepoError::Location`] for an `s3://` URL without a bucket.
    pub fn parse(text: &str) -> Result<Self, RepoError> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(RepoError::Location(format!("'{text}' names no bucket (s3://bucket/prefix)")));
                }
                Ok(Self::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_end_matches('/').to_owned() })
            }
            None if text.is_empty() => Err(RepoError::Location("empty repository location".into())),
            None => Ok(Self::Dir(PathBuf::from(text))),
        }
    }
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A backup repository: streams and per-tenant catalogs in an [`ObjectStore`].
///
/// # Example
/// ```
/// use atrest::{BackupContext, BackupOptions, Keyring, LocalRootKey, Repository, RestorePoint};
/// let dir = tempfile::tempdir()?;
/// let repo = Repository::open_dir(dir.path())?;
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// repo.store_backup(&acme, &BackupContext::full("d1"), BackupOptions::default(), &b"dump"[..])?;
/// assert!(repo.verify_chain(&acme)?.is_ok());
/// let mut got = Vec::new();
/// repo.restore(&acme, &RestorePoint::Snapshot("d1".into()), |_, r| r.read_to_end(&mut got).map(drop))?;
/// assert_eq!(got, b"dump");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    name: String,
}

impl Repository {
    /// Opens the repository at `location` (a directory is created if missing).
    ///
    /// # Errors
    /// [`RepoError::Location`] for object storage in a build without the `s3` feature;
    /// [`RepoError::Store`] if the store cannot be used.
    pub fn open(location: &RepoLocation) -> Result<Self, RepoError> {
        match location {
            RepoLocation::Dir(p) => Self::open_dir(p),
            #[cfg(feature = "s3")]
            RepoLocation::S3 { bucket, prefix } => {
                let s = store::S3Store::from_env(bucket, prefix)?;
                Ok(Self::with_store(Arc::new(s), location.to_string()))
            }
            #[cfg(not(feature = "s3"))]
            RepoLocation::S3 { .. } => Err(RepoError::Location(format!(
                "{location}: this build of atrest has no S3 support (rebuild with the `s3` feature)"
            ))),
        }
    }

    /// Opens (creating if needed) the repository in a local directory.
    ///
    /// # Errors
    /// [`RepoError::Store`] if the directory cannot be created or used.
    pub fn open_dir(path: impl AsRef<std::path::Path>) -> Result<Self, RepoError> {
        let name = path.as_ref().display().to_string();
        Ok(Self::with_store(Arc::new(DirStore::new(path)?), name))
    }

    /// A repository over any object store; `name` appears in messages.
    pub fn with_store(store: Arc<dyn ObjectStore>, name: String) -> Self {
        Self { store, name }
    }

    /// The location's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object store.
    pub fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    /// The authentic backups in `tenant`'s catalog (those kept by the last prune), oldest
    /// first. Entries that do not authenticate are left out (and named by
    /// [`Repository::verify_chain`]); streams are not read.
    ///
    /// # Errors
    /// [`RepoError::Store`].
    pub fn list(&self, tenant: &crate::Tenant) -> Result<Vec<CatalogEntry>, RepoError> {
        let slots = load::load(self.store(), tenant)?;
        let first = load::first_kept(&slots);
        Ok(slots.iter().filter(|s| s.index >= first).filter_map(CatalogEntry::from_slot).collect())
    }
}

/// One backup in a catalog, as its authentic entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CatalogEntry {
    /// The entry's index in the tenant's catalog.
    pub index: u64,
    /// The snapshot id.
    pub snapshot_id: String,
    /// The parent snapshot id (incremental backups).
    pub parent: Option<String>,
    /// Full or incremental.
    pub kind: BackupKind,
    /// The position in its chain (0 for a full backup).
    pub sequence: u64,
    /// When the stream was started (seconds since the Unix epoch, UTC).
    pub created: u64,
    /// The stream's size in bytes, as stored.
    pub size: u64,
    /// The stream's object key.
    pub object: String,
    /// SHA-256 of the stored stream, hex.
    pub digest: String,
    /// The key version of the entry's MAC.
    pub key_version: KeyVersion,
    /// SHA-256 of the entry itself, hex: what the next entry names, and what an external
    /// anchor of the newest entry records.
    pub entry_hash: String,
}

impl CatalogEntry {
    fn from_slot(slot: &Slot) -> Option<Self> {
        let e = slot.entry()?;
        let Body::Stream { key, digest, size, stored } = &e.body else { return None };
        Some(Self {
            index: slot.index,
            snapshot_id: stored.ctx.snapshot_id().to_owned(),
            parent: stored.ctx.parent().map(str::to_owned),
            kind: stored.ctx.kind(),
            sequence: stored.ctx.sequence(),
            created: stored.created,
            size: *size,
            object: key.clone(),
            digest: hex::encode(digest),
            key_version: e.key_version,
            entry_hash: hex::encode(slot.hash),
        })
    }

    /// The backup context the stream must authenticate with.
    pub fn context(&self) -> crate::BackupContext {
        crate::BackupContext::new(&self.snapshot_id, self.parent.as_deref(), self.kind, self.sequence)
    }
}
