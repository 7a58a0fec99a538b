//! The derived-key cache: tenant keys (key material only, one purpose each) by tenant, key
//! version and purpose, bounded, with the aggregated use counters the audit log reports.
//!
//! The cache is split into [`SHARDS`] shards, each under its own lock and picked by a hash
//! of the tenant id, so that threads serving different tenants rarely contend. Each shard is
//! a segmented LRU: a key enters a *probation* segment, and moves to the *protected*
//! segment (at most 80% of the shard) when it is used again while cached. Eviction takes the
//! least recently used key of probation first, so a scan of tenants seen once (a nightly
//! export, a burst of cold tenants) only churns probation and never evicts a tenant in
//! regular use; the protected segment's least recently used key is demoted back to
//! probation when the segment is full. While the cache is not full nothing is evicted.
//!
//! Lookups take the tenant id as a `&str` (no id is built, nothing is allocated), and a key
//! carries the id, so a new tenant handle shares it instead of allocating one.
//!
//! A record key's entry also holds its record sealer (see [`DerivedKey::sealer`]), built by
//! the first handle that seals or opens with it and reused by every later one. It is held
//! inline, not behind a pointer: with 100,000 tenants the cached keys do not fit in the CPU
//! caches, and each pointer followed per record is a memory access of its own.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use lru::LruCache;

use super::derive::Purpose;
use crate::id::{KeyVersion, TenantId};
use crate::record::RecordKey;
use crate::secret::TenantKey;

/// How many derived tenant keys (one per tenant, key version and purpose) the cache holds
/// by default: 131,072, enough for the record keys of 100,000 active tenants with room for
/// backup keys and a rotation. An entry with its record sealer takes about 750 bytes of
/// resident memory (the derived key, the AES-256-GCM state of the current nonce prefix, the
/// tenant id, the cache's bookkeeping), so a full cache holds about 100 MiB; set
/// [`KeyringOptions::cache_capacity`] for other sizes.
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
    pub(crate) tenant: TenantId,
    pub(crate) version: KeyVersion,
    pub(crate) key: TenantKey,
    /// One more than the last keyring epoch at which this key was checked to be the
    /// tenant's current key for new data (0: never); see [`DerivedKey::sealable_at`].
    sealable: AtomicU64,
    /// The same for "may open" (not shredded, version enabled).
    usable: AtomicU64,
    seals: AtomicU64,
    opens: AtomicU64,
    sealer: OnceLock<RecordKey>,
}

impl DerivedKey {
    pub(crate) fn new(tenant: TenantId, version: KeyVersion, key: TenantKey) -> Self {
        Self {
            tenant,
            version,
            key,
            sealable: AtomicU64::new(0),
            usable: AtomicU64::new(0),
            seals: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            sealer: OnceLock::new(),
        }
    }

    /// Whether this key was checked against a keyring state at least as new as `epoch`'s
    /// and found to be the current key for new data: a handle may then seal with it without
    /// asking the keyring again. The keyring bumps the epoch after every change, so a mark
    /// from before a rotation, a shred or a loss of the store never matches.
    pub(crate) fn sealable_at(&self, epoch: u64) -> bool {
        self.sealable.load(Ordering::Acquire) == epoch.wrapping_add(1)
    }

    /// As [`DerivedKey::sealable_at`], for opening.
    pub(crate) fn usable_at(&self, epoch: u64) -> bool {
        self.usable.load(Ordering::Acquire) == epoch.wrapping_add(1)
    }

    /// Records a check made at `epoch` (read before the state that was checked). Marks only
    /// move forward, so a slow check of an older state never overwrites a newer one.
    pub(crate) fn mark(&self, epoch: u64, sealable: bool) {
        let m = epoch.wrapping_add(1);
        self.usable.fetch_max(m, Ordering::AcqRel);
        if sealable {
            self.sealable.fetch_max(m, Ordering::AcqRel);
        }
    }

    /// The record sealer of this key material, built on first use; it lives (and is wiped)
    /// with the cached key. Only record keys are asked for one.
    pub(crate) fn sealer(&self) -> &RecordKey {
        self.sealer.get_or_init(|| RecordKey::new(&self.key))
    }

    /// Counts one use; reports an aggregated `tracing` audit event on the first use and every
    /// [`AUDIT_EVERY`] uses (never per record, never with values).
    pub(crate) fn count(&self, op: Use) {
        self.count_n(op, 1);
    }

    /// Counts `n` uses at once (a batch); reports as [`DerivedKey::count`] does when the count
    /// reaches 1 or crosses a multiple of [`AUDIT_EVERY`].
    pub(crate) fn count_n(&self, op: Use, n: u64) {
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
            tracing::info!(target: "atrest::audit", event = "record.usage", op, tenant = %self.tenant, key_version = %self.version, count = n);
        }
    }
}

/// What a cache key is made of; implemented by the owned key and by a borrowed probe, so
/// that a lookup by `&str` finds the entry of a [`TenantId`] (hash and equality of both are
/// those of the parts).
trait KeyView {
    fn parts(&self) -> (&str, KeyVersion, Purpose);
}

/// An owned cache key.
struct Key {
    tenant: TenantId,
    version: KeyVersion,
    purpose: Purpose,
}

/// A borrowed cache key: what a lookup builds (nothing allocated).
pub(crate) struct Probe<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) version: KeyVersion,
    pub(crate) purpose: Purpose,
}

impl KeyView for Key {
    fn parts(&self) -> (&str, KeyVersion, Purpose) {
        (self.tenant.as_str(), self.version, self.purpose)
    }
}

impl KeyView for Probe<'_> {
    fn parts(&self) -> (&str, KeyVersion, Purpose) {
        (self.tenant, self.version, self.purpose)
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for Key {}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

type Map = LruCache<Key, Arc<DerivedKey>>;

/// One shard: a segmented LRU (see the module docs).
struct Shard {
    probation: Map,
    protected: Map,
    capacity: usize,
    protected_capacity: usize,
}

impl Shard {
    fn get(&mut self, probe: &dyn KeyView) -> Option<Arc<DerivedKey>> {
        if let Some(v) = self.protected.get(probe) {
            return Some(v.clone());
        }
        if self.protected_capacity == 0 {
            return self.probation.get(probe).cloned();
        }
        // Used again while cached: promote to the protected segment, demoting its least
        // recently used key to probation if it is full.
        let (key, value) = self.probation.pop_entry(probe)?;
        if self.protected.len() >= self.protected_capacity
            && let Some((k, v)) = self.protected.pop_lru()
        {
            self.probation.push(k, v);
        }
        self.protected.push(key, value.clone());
        Some(value)
    }

    /// Inserts `value` unless the key is cached; returns the cached value and what was
    /// evicted (dropped by the caller after the lock is released).
    fn put(&mut self, key: Key, value: Arc<DerivedKey>) -> (Arc<DerivedKey>, Option<Arc<DerivedKey>>) {
        let probe: &dyn KeyView = &key;
        if let Some(v) = self.protected.peek(probe).or_else(|| self.probation.peek(probe)) {
            return (v.clone(), None);
        }
        let mut evicted = None;
        if self.probation.len() + self.protected.len() >= self.capacity {
            evicted = self.probation.pop_lru().or_else(|| self.protected.pop_lru()).map(|(_, v)| v);
        }
        self.probation.push(key, value.clone());
        (value, evicted)
    }

    fn len(&self) -> usize {
        self.probation.len() + self.protected.len()
    }
}

/// A bounded, sharded, scan-resistant map of derived keys.
pub(crate) struct KeyCache {
    shards: Vec<Mutex<Shard>>,
}

/// The shard of a tenant id: FNV-1a of the id (the shards' maps use their own randomized
/// hashers, so a crafted id can at worst make one shard busier, not slower per lookup).
fn shard_of(tenant: &str) -> usize {
    let h = tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    usize::try_from((h ^ (h >> 32)) % SHARDS as u64).unwrap_or(0)
}

impl KeyCache {
    /// A cache of at most `capacity` keys (at least one per shard).
    ///
    /// The maps' indexes are sized for the capacity up front (about 20 bytes per key), so
    /// that no insert pays for growing and rehashing a shard while its lock is held. The
    /// segments never reach the bound `LruCache` enforces: the shard evicts first.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let protected_capacity = per_shard * 4 / 5;
        let bound = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        let shard = || {
            Mutex::new(Shard {
                probation: LruCache::new(bound(per_shard)),
                protected: LruCache::new(bound(protected_capacity)),
                capacity: per_shard,
                protected_capacity,
            })
        };
        Self { shards: (0..SHARDS).map(|_| shard()).collect() }
    }

    fn lock(&self, tenant: &str) -> Option<MutexGuard<'_, Shard>> {
        // A panic while holding the lock cannot leave a cache inconsistent: ignore poisoning.
        self.shards.get(shard_of(tenant)).map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn get(&self, probe: &Probe<'_>) -> Option<Arc<DerivedKey>> {
        self.lock(probe.tenant)?.get(probe)
    }

    /// Caches `value` (for its own tenant and version) unless another thread cached the same
    /// key first; returns the cached one.
    pub(crate) fn put(&self, purpose: Purpose, value: Arc<DerivedKey>) -> Arc<DerivedKey> {
        let key = Key { tenant: value.tenant.clone(), version: value.version, purpose };
        let Some(mut shard) = self.lock(key.tenant.as_str()) else { return value };
        let (cached, evicted) = shard.put(key, value);
        drop(shard);
        // The evicted key (and its cipher) is wiped here, outside the lock.
        drop(evicted);
        cached
    }

    /// How many keys are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    /// Drops every key (after the keyring changed: destroyed or disabled keys must go).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
            s.probation.clear();
            s.protected.clear();
        }
    }
}

#[cfg(test)]
mod tests;
