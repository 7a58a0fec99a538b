//! The derived-key cache: tenant keys (key material only, one purpose each) by tenant, key
//! version and purpose, bounded, with the aggregated use counters the audit log reports.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use super::derive::Purpose;
use crate::id::{KeyVersion, TenantId};
use crate::secret::TenantKey;

/// How many derived tenant keys the cache holds by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// How many seals (or opens) of one tenant key pass between two aggregated audit events.
pub const AUDIT_EVERY: u64 = 1 << 16;

/// What a key was used for, for the aggregated audit counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Use {
    Seal,
    Open,
}

/// One tenant's key for one purpose under one key version.
pub(crate) struct DerivedKey {
    pub(crate) version: KeyVersion,
    pub(crate) key: TenantKey,
    seals: AtomicU64,
    opens: AtomicU64,
}

impl DerivedKey {
    pub(crate) fn new(version: KeyVersion, key: TenantKey) -> Self {
        Self { version, key, seals: AtomicU64::new(0), opens: AtomicU64::new(0) }
    }

    /// Counts one use; reports an aggregated `tracing` audit event on the first use and every
    /// [`AUDIT_EVERY`] uses (never per record, never with values).
    pub(crate) fn count(&self, tenant: &TenantId, op: Use) {
        let (counter, op) = match op {
            Use::Seal => (&self.seals, "seal"),
            Use::Open => (&self.opens, "open"),
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n % AUDIT_EVERY == 0 {
            tracing::info!(target: "atrest::audit", event = "record.usage", op, tenant = %tenant, key_version = %self.version, count = n);
        }
    }
}

type Key = (TenantId, KeyVersion, Purpose);

/// A bounded least-recently-used map of derived keys.
pub(crate) struct KeyCache(Mutex<LruCache<Key, Arc<DerivedKey>>>);

impl KeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self(Mutex::new(LruCache::new(cap)))
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<Key, Arc<DerivedKey>>> {
        // A panic while holding the lock cannot leave a cache inconsistent: ignore poisoning.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<DerivedKey>> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn put(&self, key: Key, value: Arc<DerivedKey>) {
        self.lock().put(key, value);
    }

    /// Drops every key (after the keyring changed: destroyed or disabled keys must go).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
