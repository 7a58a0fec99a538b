//! The derived-key cache: tenant keys (key material only, one purpose each) by tenant, key
//! version and purpose, bounded, with the aggregated use counters the audit log reports.
//!
//! The cache is split into [`SHARDS`] least-recently-used maps, each under its own lock and
//! picked by a hash of the key, so that threads serving different tenants rarely contend.
//! Each shard holds its share of the capacity and evicts its least recently used entry:
//! a tenant used since the last `capacity / SHARDS` other tenants of its shard stays cached.
//!
//! An entry may carry one attachment (see [`DerivedKey::attachment`]): the layer that turns
//! the material into a cipher keeps the cipher there, so that a new tenant handle reuses the
//! cipher built by an earlier one. The keyring does not know its type.

use std::any::Any;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use lru::LruCache;

use super::derive::Purpose;
use crate::id::{KeyVersion, TenantId};
use crate::secret::TenantKey;

/// How many derived tenant keys (one per tenant, key version and purpose) the cache holds
/// by default: 131,072, enough for the record keys of 100,000 active tenants with room for
/// backup keys and a rotation. An entry with its record sealer takes about 1.5 KiB, so a
/// full cache holds about 200 MiB; set [`KeyringOptions::cache_capacity`] for other sizes.
///
/// [`KeyringOptions::cache_capacity`]: crate::KeyringOptions::cache_capacity
pub const DEFAULT_CACHE_CAPACITY: usize = 1 << 17;

/// How many independently locked shards the cache is split into.
pub(crate) const SHARDS: usize = 16;

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
    attachment: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl DerivedKey {
    pub(crate) fn new(version: KeyVersion, key: TenantKey) -> Self {
        Self { version, key, seals: AtomicU64::new(0), opens: AtomicU64::new(0), attachment: OnceLock::new() }
    }

    /// The value attached to this key material by the first caller (built by `init` then),
    /// for example the cipher made from it; it lives as long as the material stays cached.
    /// The keyring never looks inside: the caller downcasts it to the type it attached.
    pub(crate) fn attachment(&self, init: impl FnOnce() -> Arc<dyn Any + Send + Sync>) -> &Arc<dyn Any + Send + Sync> {
        self.attachment.get_or_init(init)
    }

    /// Counts one use; reports an aggregated `tracing` audit event on the first use and every
    /// [`AUDIT_EVERY`] uses (never per record, never with values).
    pub(crate) fn count(&self, tenant: &TenantId, op: Use) {
        self.count_n(tenant, op, 1);
    }

    /// Counts `n` uses at once (a batch); reports as [`DerivedKey::count`] does when the count
    /// reaches 1 or crosses a multiple of [`AUDIT_EVERY`].
    pub(crate) fn count_n(&self, tenant: &TenantId, op: Use, n: u64) {
        let (counter, op) = match op {
            Use::Seal => (&self.seals, "seal"),
            Use::Open => (&self.opens, "open"),
        };
        if n == 0 {
            return;
        }
        let before = counter.fetch_add(n, Ordering::Relaxed);
        let n = before + n;
        if before == 0 || n / AUDIT_EVERY != before / AUDIT_EVERY {
            tracing::info!(target: "atrest::audit", event = "record.usage", op, tenant = %tenant, key_version = %self.version, count = n);
        }
    }
}

type Key = (TenantId, KeyVersion, Purpose);

type Shard = Mutex<LruCache<Key, Arc<DerivedKey>>>;

/// A bounded, sharded least-recently-used map of derived keys.
pub(crate) struct KeyCache {
    shards: Vec<Shard>,
    hasher: RandomState,
}

impl KeyCache {
    /// A cache of at most `capacity` keys (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Self { shards: (0..SHARDS).map(|_| Mutex::new(LruCache::new(per_shard))).collect(), hasher: RandomState::new() }
    }

    fn lock(&self, key: &Key) -> Option<MutexGuard<'_, LruCache<Key, Arc<DerivedKey>>>> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // A panic while holding the lock cannot leave a cache inconsistent: ignore poisoning.
        self.shards.get(i).map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<DerivedKey>> {
        self.lock(key)?.get(key).cloned()
    }

    /// Caches `value` unless another thread cached the same key first; returns the cached one.
    pub(crate) fn put(&self, key: Key, value: Arc<DerivedKey>) -> Arc<DerivedKey> {
        match self.lock(&key) {
            Some(mut shard) => shard.get_or_insert(key, || value).clone(),
            None => value,
        }
    }

    /// How many keys are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    /// Drops every key (after the keyring changed: destroyed or disabled keys must go).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        (
            TenantId::new(&format!("t{i}")).unwrap(),
            KeyVersion { master: crate::id::MasterVersion::new(1), generation: 0 },
            Purpose::Records,
        )
    }

    fn value() -> Arc<DerivedKey> {
        Arc::new(DerivedKey::new(
            KeyVersion { master: crate::id::MasterVersion::new(1), generation: 0 },
            TenantKey::from_bytes([1; 32]),
        ))
    }

    #[test]
    fn bounded_and_hot_keys_stay() {
        let cache = KeyCache::new(1024);
        for i in 0..10_000 {
            cache.put(key(i), value());
            // Tenant 0 is hot: used between every two others.
            assert!(cache.get(&key(0)).is_some(), "hot key evicted at {i}");
        }
        assert!(cache.len() <= 1024, "{}", cache.len());
        // Recent keys are there, the early cold ones are gone.
        assert!(cache.get(&key(9_999)).is_some());
        assert!(cache.get(&key(1)).is_none());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn first_put_wins_and_attachment_is_kept() {
        let cache = KeyCache::new(16);
        let first = cache.put(key(1), value());
        let second = cache.put(key(1), value());
        assert!(Arc::ptr_eq(&first, &second));
        let a = first.attachment(|| Arc::new(7u32)).clone();
        let b = second.attachment(|| Arc::new(8u32)).clone();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.downcast_ref::<u32>(), Some(&7));
        // At least one key per shard even for a capacity of zero.
        let tiny = KeyCache::new(0);
        tiny.put(key(1), value());
        assert_eq!(tiny.len(), 1);
    }

    #[test]
    fn batch_counts_add_up() {
        let v = value();
        let t = TenantId::new("acme").unwrap();
        v.count_n(&t, Use::Seal, AUDIT_EVERY - 1);
        v.count(&t, Use::Seal);
        v.count_n(&t, Use::Open, 0);
        assert_eq!(v.seals.load(Ordering::Relaxed), AUDIT_EVERY);
        assert_eq!(v.opens.load(Ordering::Relaxed), 0);
    }
}
