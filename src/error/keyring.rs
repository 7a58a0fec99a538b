//! Errors of root key providers and keyrings.

use std::path::PathBuf;

use thiserror::Error;

use super::RngError;
use crate::id::{InvalidTenantId, MasterVersion};

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
    /// A key management service (Vault/OpenBao transit, AWS KMS) could not be reached or
    /// did not answer in time: connection refused, DNS, TLS, timeout, a sealed Vault, or
    /// server errors and throttling that outlasted the retries. Transient: try again later.
    #[error("{service} is unreachable: {reason}")]
    KmsUnreachable {
        /// The service and its address, for example `Vault transit at https://vault:8200`.
        service: String,
        /// What failed (no key material, no credentials).
        reason: String,
    },
    /// The key management service refused the caller: a missing, revoked or expired token
    /// or credentials, or a policy that does not allow this operation on this key.
    #[error("{service} denied access to key '{key}': {reason}")]
    KmsPermissionDenied {
        /// The service and its address.
        service: String,
        /// The key.
        key: String,
        /// The service's answer (and its request id, if it gives one).
        reason: String,
    },
    /// The key management service has no such key (or it was deleted).
    #[error("{service} has no key '{key}'")]
    KmsKeyMissing {
        /// The service and its address.
        service: String,
        /// The key.
        key: String,
    },
    /// The key exists but cannot do this: disabled, pending deletion, a key type without
    /// associated data, or a wrapped key under a key version the service no longer decrypts.
    #[error("{service} cannot use key '{key}': {reason}")]
    KmsKeyUnusable {
        /// The service and its address.
        service: String,
        /// The key.
        key: String,
        /// Why, as the service says.
        reason: String,
    },
    /// The key management service answered in a way atrest does not expect (an unknown
    /// error, a malformed response).
    #[error("{service} failed: {reason}")]
    Kms {
        /// The service and its address.
        service: String,
        /// What it answered.
        reason: String,
    },
    /// The key management service is not configured: no address or token, plain HTTP to a
    /// remote host, a CA certificate file that cannot be read, TLS verification switched off.
    #[error("{service} is not configured: {reason}")]
    KmsConfig {
        /// The service.
        service: String,
        /// What is missing or refused.
        reason: String,
    },
    /// A root key URI is malformed, or names a scheme this build does not support.
    #[error(transparent)]
    InvalidUri(#[from] crate::keyring::KeyUriError),
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
