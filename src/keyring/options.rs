//! How a keyring handle keeps up with its store, and the lifecycle safety margins.

use std::path::PathBuf;
use std::time::Duration;

/// Options of a keyring handle: how stale it may be, how long it serves its last verified
/// state while its store is unreachable, the grace period before a destroy, and an optional
/// revision anchor. [`KeyringOptions::default`] fits most deployments.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use atrest::KeyringOptions;
/// let opts = KeyringOptions::default().staleness(Duration::from_millis(250));
/// assert_eq!(opts.staleness_bound(), Duration::from_millis(250));
/// ```
#[derive(Debug, Clone)]
pub struct KeyringOptions {
    pub(crate) staleness: Duration,
    pub(crate) max_unavailable: Duration,
    pub(crate) destroy_grace: Duration,
    pub(crate) anchor: Option<PathBuf>,
    pub(crate) cache_capacity: usize,
    /// Tests only: start no watchdog, so that the watcher's own rules are seen alone.
    #[cfg(test)]
    pub(crate) no_watchdog: bool,
}

/// The default staleness bound: a change reaches every open handle within this time.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(1);
/// How long a handle serves its last verified state while its store is unreachable.
pub const DEFAULT_MAX_UNAVAILABLE: Duration = Duration::from_secs(300);
/// How long a version must have been disabled before it can be destroyed.
pub const DEFAULT_DESTROY_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Default for KeyringOptions {
    fn default() -> Self {
        Self {
            staleness: DEFAULT_STALENESS,
            max_unavailable: DEFAULT_MAX_UNAVAILABLE,
            destroy_grace: DEFAULT_DESTROY_GRACE,
            anchor: None,
            cache_capacity: super::DEFAULT_CACHE_CAPACITY,
            #[cfg(test)]
            no_watchdog: false,
        }
    }
}

impl KeyringOptions {
    /// Every change made by another process reaches this handle within `bound` (default
    /// 1 s; at least 10 ms). The handle checks its store in the background, never per record.
    pub fn staleness(mut self, bound: Duration) -> Self {
        self.staleness = bound.max(Duration::from_millis(10));
        self
    }

    /// The staleness bound in force.
    pub fn staleness_bound(&self) -> Duration {
        self.staleness
    }

    /// While the store cannot be read (or a call to it does not return), the handle serves
    /// its last verified state for at most `limit` (default 5 minutes), then refuses to seal
    /// and open until the store answers again: a handle must not keep using a key another
    /// process may have disabled.
    pub fn max_unavailable(mut self, limit: Duration) -> Self {
        self.max_unavailable = limit;
        self
    }

    /// A version must have been disabled for `grace` (default 24 hours) before it can be
    /// destroyed; never less than the staleness bound.
    pub fn destroy_grace(mut self, grace: Duration) -> Self {
        self.destroy_grace = grace;
        self
    }

    /// The grace period in force: at least the staleness bound.
    pub(crate) fn grace(&self) -> Duration {
        self.destroy_grace.max(self.staleness)
    }

    /// How many derived tenant keys (one per tenant, key version and purpose, each with the
    /// cipher built from it) the handle keeps (default
    /// [`DEFAULT_CACHE_CAPACITY`](crate::DEFAULT_CACHE_CAPACITY), 131,072: the record keys of
    /// 100,000 active tenants with room for backup keys and a rotation). A cached key with
    /// its record sealer takes about 700 bytes of resident memory (698 measured by
    /// `benches/tenants.rs`; 1,320 with AWS-LC; [`CACHED_KEY_BYTES`](crate::CACHED_KEY_BYTES)
    /// with the cache's index), so the default holds about 100 MiB when full (170 MiB with
    /// AWS-LC); the index is allocated up front
    /// (about 18 bytes per key of capacity). Size it to the tenants active within minutes: a
    /// tenant evicted from the cache costs one key derivation and a new sealer on its next
    /// use. Eviction is scan-resistant (a tenant used again while cached is kept over tenants
    /// seen once; see the keyring's cache). At least 16. See also
    /// [`KeyringOptions::cache_memory`].
    pub fn cache_capacity(mut self, keys: usize) -> Self {
        self.cache_capacity = keys;
        self
    }

    /// Sizes the key cache by memory instead of by count: as many keys as `bytes` holds at
    /// [`CACHED_KEY_BYTES`](crate::CACHED_KEY_BYTES) each, the figure of the default
    /// backend (on RustCrypto 100 MiB holds 136,533 keys; with AWS-LC, 74,472).
    ///
    /// ```
    /// use atrest::{CACHED_KEY_BYTES, KeyringOptions};
    /// let opts = KeyringOptions::default().cache_memory(100 << 20);
    /// assert_eq!(opts.cache_capacity_keys(), (100 << 20) / CACHED_KEY_BYTES);
    /// ```
    pub fn cache_memory(self, bytes: usize) -> Self {
        self.cache_capacity(bytes / super::CACHED_KEY_BYTES)
    }

    /// The cache capacity in force.
    pub fn cache_capacity_keys(&self) -> usize {
        self.cache_capacity
    }

    /// Keeps a revision anchor in `path`, apart from the keyring (another disk, another
    /// host's mount): the highest revision this keyring was seen at, so that a restarted
    /// process refuses an older keyring document too (a restored disk snapshot, a file
    /// written back). See [`KeyringError::RolledBack`](crate::KeyringError::RolledBack).
    pub fn revision_anchor(mut self, path: impl Into<PathBuf>) -> Self {
        self.anchor = Some(path.into());
        self
    }
}
