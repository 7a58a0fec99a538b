#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod backup;
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
mod keyring;
mod record;
mod secret;
mod suite;

pub mod hazmat;

// The public API, in one place.
pub use backup::{
    BACKUP_HEADER_LEN, BackupContext, BackupInfo, BackupKind, BackupOptions, BackupReader, BackupWriter,
    DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_SNAPSHOT_ID_LEN, MIN_CHUNK_SIZE, decrypt_backup, decrypt_backup_with,
    encrypt_backup, inspect_backup, rewrap_backup_header, verify_backup,
};
pub use context::{Context, MAX_TENANT_ID_LEN, TenantId};
pub use error::{BackupError, KeyringError, OpenError, RewrapError, RngError, RootKeyError, SealError};
pub use keyring::{
    AUDIT_EVERY, DEFAULT_CACHE_CAPACITY, DestroyConfirmation, KeyState, KeyVersion, Keyring, KeyringStatus,
    LocalRootKey, MasterStatus, MasterVersion, ROOT_KEY_ENV, RootKeyProvider, ShredStatus, Tenant, TenantStatus,
};
/// Root keys in a PKCS#11 token (feature `pkcs11`).
#[cfg(feature = "pkcs11")]
pub use keyring::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
pub use record::{
    KeyVersionCensus, MAX_RECORD_LEN, RECORD_OVERHEAD, RecordInfo, RewrapReport, key_version_census, key_version_of,
    record_info,
};
pub use secret::{DataKey, MasterKey, RootKey, SecretBytes, TenantKey};
pub use suite::Suite;

/// Re-exported for [`hazmat::XAes256Gcm`]'s trait implementations.
pub use aead;
/// Re-exported because [`SecretBytes`] and key types interoperate with it.
pub use secrecy;
