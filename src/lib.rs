#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

// Lowest layer: identifiers, secrets, encodings, errors, file safety. Everything above imports these.
mod backend;
mod context;
mod encoding;
mod error;
// File safety (atomic writes, lock files, secret-file reads). Public only for the `atrest`
// binary, which uses it for its output files: not part of the library's API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod fs;
#[cfg(not(feature = "cli"))]
mod fs;
mod id;
mod secret;
mod suite;

// Primitives, then key management, then what uses the keys.
mod backup;
pub mod hazmat;
mod keyring;
mod record;
// Backup repositories: object stores (directory, S3) and per-tenant catalogs.
mod repo;
mod tenant;

// The public API, in one place.

// Keyrings and tenants: a root key protects versioned master keys; tenants' keys derive from them.
pub use id::{InvalidTenantId, KeyVersion, MAX_TENANT_ID_LEN, MasterVersion, TenantId};
pub use keyring::{
    AUDIT_EVERY, CACHED_KEY_BYTES, DEFAULT_CACHE_CAPACITY, DEFAULT_DESTROY_GRACE, DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_STALENESS, DestroyConfirmation, HandleStatus, KeyState, Keyring, KeyringLocation, KeyringOptions,
    KeyringStatus, LocalRootKey, MasterStatus, ROOT_KEY_ENV, RootKeyProvider, ShredStatus, TenantStatus,
};
// Every root key by one URI syntax: a key file, `env:`, `pkcs11:`, `hcvault://`, `aws-kms://`.
pub use keyring::{KeyUriError, RootKeyUri, root_key_from_uri};
pub use tenant::{BULK_WINDOW, ShredEvidence, Tenant};

// Root keys in a PKCS#11 token (feature `pkcs11`).
#[cfg(feature = "pkcs11")]
pub use keyring::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
/// Re-exported because a PKCS#11 PIN and a Vault token are [`secrecy::SecretString`]s.
#[cfg(any(feature = "pkcs11", feature = "vault", feature = "s3"))]
pub use secrecy;

// Root keys in a Vault / OpenBao transit engine (feature `vault`).
#[cfg(feature = "vault")]
pub use keyring::{DEFAULT_VAULT_TIMEOUT, VaultTransitConfig, VaultTransitRoot};

// Root keys in AWS KMS (feature `aws-kms`).
#[cfg(feature = "aws-kms")]
pub use keyring::AwsKmsRoot;

// Records: small values sealed under a tenant's record key, bound to their context.
pub use context::Context;
pub use record::{
    KeyVersionCensus, MAX_RECORD_LEN, RECORD_OVERHEAD, RecordInfo, RecordSuite, RewrapReport, key_version_census,
    record_info,
};

// Blind indexes: find sealed values by equality, per tenant, across key rotations.
pub use record::{
    BlindIndex, BlindIndexBuilder, CustomTransform, IndexLookup, IndexPlan, IndexPlanner, IndexValue, IndexWarning,
    IndexedRecord, MAX_INDEX_BITS, MAX_INDEX_FIELDS, MAX_INDEX_NAME_LEN, Transform,
};

// Backups: chunked, seekable streams under a fresh data key wrapped by the tenant's backup key.
pub use backup::{
    BACKUP_HEADER_LEN, BackupContext, BackupInfo, BackupKind, BackupOptions, BackupReader, BackupWriter,
    DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_SNAPSHOT_ID_LEN, MIN_CHUNK_SIZE, decrypt_backup, encrypt_backup,
    inspect_backup, rewrap_backup_header, verify_backup,
};
// Backup recipients: encrypt-only hosts write streams to a tenant's public recipient (no keyring).
pub use backup::{Recipient, RecipientKem, encrypt_backup_to};

// Backup repositories: streams and an authenticated, hash-chained catalog per tenant, in a
// directory or S3-compatible object storage (feature `s3`).
pub use repo::store::{DirStore, ObjectMeta, ObjectStore, StoreError, check_key};
pub use repo::{
    CatalogEntry, ChainReport, Problem, PruneReport, ReplicateReport, RepoLocation, Repository, RestorePoint,
    StoredBackup,
};
// S3-compatible object storage for repositories (feature `s3`).
#[cfg(feature = "s3")]
pub use repo::store::{
    DEFAULT_PART_SIZE, DEFAULT_REGION, DEFAULT_S3_TIMEOUT, MAX_PART_SIZE, MIN_PART_SIZE, Retention, RetentionMode,
    S3Config, S3Store,
};

// Errors, split by operation; authentication failures are one opaque variant each.
pub use error::{
    BackupError, IndexError, KeyringError, OpenError, RecipientError, RepoError, RewrapError, RngError, RootKeyError,
    SealError,
};

// Secrets and algorithms: key newtypes that zeroize, the AEAD suites and their backends.
pub use backend::{Backend, BackendUnavailable};
pub use secret::{RootKey, SecretBytes};
pub use suite::Suite;

/// Re-exported for [`hazmat::XAes256Gcm`]'s trait implementations.
pub use aead;
