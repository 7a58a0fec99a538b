//! Where a repository keeps its objects: a local directory or S3-compatible object storage.
//!
//! A store is a flat namespace of keys (`/`-separated, ASCII) to immutable objects. Its one
//! safety rule, kept by every implementation: **an object, once stored, is never overwritten**.
//! [`ObjectStore::put_new`] fails with [`StoreError::AlreadyExists`] when the key is taken
//! (a directory: link/rename without replace; S3: `If-None-Match: *`), and a crash during a put
//! leaves either no object under the key or the complete one. Deletion exists only for pruning.

use std::io::Read;

mod dir;
pub use dir::DirStore;

use thiserror::Error;

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use s3::{
    DEFAULT_PART_SIZE, DEFAULT_REGION, DEFAULT_S3_TIMEOUT, MAX_PART_SIZE, MIN_PART_SIZE, Retention, RetentionMode,
    S3Config, S3Store,
};

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key (relative to the store's root or prefix).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Errors from an object store. Never carries object contents or credentials.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`ObjectStore::put_new`]: an object with this key exists already; nothing was written.
    #[error("object '{0}' already exists: refusing to overwrite it")]
    AlreadyExists(String),
    /// No object with this key.
    #[error("object '{0}' not found")]
    NotFound(String),
    /// A key that no store accepts (empty, absolute, `..`, non-ASCII or control characters).
    #[error("invalid object key '{0}'")]
    InvalidKey(String),
    /// The store's location could not be used (bad URL, missing bucket, missing credentials).
    #[error("object store configuration: {0}")]
    Config(String),
    /// The service refused or failed the request (HTTP status and the service's error code).
    #[error("object store request for '{key}' failed: HTTP {status} {code}")]
    Service {
        /// The object key.
        key: String,
        /// The HTTP status.
        status: u16,
        /// The service's error code (S3 `<Code>`), or empty.
        code: String,
    },
    /// A local I/O or network error.
    #[error("object store I/O on '{key}': {source}")]
    Io {
        /// The object key (or the store root).
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A flat store of immutable objects. Implementations are `Send + Sync` and may be shared.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `body` under `key` if and only if no object has that key, and returns the
    /// number of bytes stored. Atomic: a failure or a crash leaves no object under `key`
    /// (a partially uploaded object is never visible).
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the key is taken; I/O and service errors otherwise
    /// (including an error returned by `body`).
    fn put_new(&self, key: &str, body: &mut dyn Read) -> Result<u64, StoreError>;

    /// Reads the whole object as a stream.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], I/O and service errors.
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError>;

    /// The object's metadata, or `None` if there is none under `key`.
    ///
    /// # Errors
    /// I/O and service errors.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    ///
    /// # Errors
    /// I/O and service errors.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes the object (used by pruning only). Removing a missing object is not an error.
    ///
    /// # Errors
    /// I/O and service errors; an object under retention (S3 Object Lock) is a service error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Checks an object key: non-empty, relative, ASCII graphic characters only, `/`-separated
/// segments that are neither empty nor `.` nor `..`.
///
/// # Errors
/// [`StoreError::InvalidKey`].
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key.bytes().all(|b| b.is_ascii_graphic())
        && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if ok { Ok(()) } else { Err(StoreError::InvalidKey(key.escape_default().to_string())) }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys() {
        for good in ["a", "tenants/ab/streams/x.atrb", "a-b_c.d"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a b", "é", "a\nb"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
