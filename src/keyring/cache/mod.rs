//! The derived-key cache: tenant keys (key material only, one purpose each) by tenant, key
//! version and purpose, bounded, with the aggregated use counters the audit log reports.
//!
//! The cache is split into [`SHARDS`] shards, each under its own read-write lock and picked
//! by a hash of the tenant id, so that threads serving different tenants rarely contend and
//! lookups of one shard run side by side. Each shard evicts as S3-FIFO does (Yang et al.,
//! "FIFO queues are all you need for cache eviction", SOSP 2023): a new key enters a small
//! FIFO queue (a tenth of the shard); when the queue is evicted from, a key used again while
//! in it moves to the main queue, the others leave (their hashes are remembered for a while,
//! and a remembered key that comes back goes straight to the main queue). The main queue
//! gives each key used since its last pass a second chance (up to three). So a scan of
//! tenants seen once (a nightly export, a burst of cold tenants) only churns the small queue
//! and never evicts a tenant in regular use. While the cache is not full nothing is evicted.
//!
//! A hit only bumps the key's use count (no list is reordered, nothing is written but one
//! byte of the key), and a shard keeps one hash table: with 100,000 tenants, whose keys do
//! not fit in the CPU caches, each lookup costs few memory accesses. Lookups take the tenant
//! id as a `&str` (nothing is allocated), and a key carries the id inline (ids of up to 56
//! bytes, see [`TenantId`]) near the start of its allocation, so comparing it and handing
//! it to a new tenant handle read no other memory than the key's first lines.
//!
//! A record key's entry also holds its record sealer (see [`DerivedKey::sealer`]), built by
//! the first handle that seals or opens with it and reused by every later one. It is held
//! inline, not behind a pointer, for the same reason.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use hashbrown::{DefaultHashBuilder, HashSet, HashTable};

use super::derive::Purpose;
use crate::id::{KeyVersion, TenantId};
use crate::record::RecordKey;
use crate::secret::TenantKey;

/// How many derived tenant keys (one per tenant, key version and purpose) the cache holds
/// by default: 131,072, enough for the record keys of 100,000 active tenants with room for
/// backup keys and a rotation. An entry with its record sealer takes about 700 bytes of
/// resident memory (the derived key, the AES-256-GCM state of the current nonce prefix, the
/// tenant id, the cache's bookkeeping; 1.3 KiB with AWS-LC), so a full cache holds about
/// 100 MiB (170 MiB); set
/// [`KeyringOptions::cache_capacity`] for other sizes.
///
/// [`KeyringOptions::cache_capacity`]: crate::KeyringOptions::cache_capacity
pub const DEFAULT_CACHE_CAPACITY: usize = 1 << 17;

/// The memory one cached record key takes on the default backend, for sizing the cache by
/// memory ([`KeyringOptions::cache_memory`]): the resident memory measured per key with its
/// record sealer (`benches/tenants.rs`) plus the cache's index and queues, rounded up. 768
/// bytes on RustCrypto (698 measured); 1,408 with feature `aws-lc`, whose AES-GCM context
/// is larger (1,320 measured). For tenant ids of up to 56 bytes (held inline); a longer id
/// adds its own allocation, up to about 160 bytes.
///
/// [`KeyringOptions::cache_memory`]: crate::KeyringOptions::cache_memory
pub const CACHED_KEY_BYTES: usize = if cfg!(feature = "aws-lc") { 1408 } else { 768 };

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
///
/// Laid out in declaration order (`repr(C)`): what a lookup compares, a new handle copies
/// and every seal reads or counts comes first, in the first 112 bytes of the allocation
/// (two or three cache lines, after the reference counts), so that with 100,000 tenants a
/// request waits on memory for the key's head once (the field order the compiler picks put
/// the id last, 560 bytes on).
#[repr(C)]
pub(crate) struct DerivedKey {
    pub(crate) version: KeyVersion,
    pub(crate) purpose: Purpose,
    /// Uses since the cache last looked at this key when evicting (0 to [`MAX_HITS`]).
    hits: AtomicU8,
    /// One more than the last keyring epoch at which this key was checked to be the
    /// tenant's current key for new data (0: never); see [`DerivedKey::sealable_at`].
    sealable: AtomicU64,
    /// The same for "may open" (not shredded, version enabled).
    usable: AtomicU64,
    seals: AtomicU64,
    /// Inline for ids of up to 56 bytes (see [`TenantId`]).
    pub(crate) tenant: TenantId,
    opens: AtomicU64,
    pub(crate) key: TenantKey,
    sealer: OnceLock<RecordKey>,
}

impl DerivedKey {
    pub(crate) fn new(tenant: TenantId, version: KeyVersion, purpose: Purpose, key: TenantKey) -> Self {
        Self {
            tenant,
            version,
            purpose,
            key,
            hits: AtomicU8::new(0),
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
        // Read first: a key checked again at the same epoch (the usual case) is not written.
        if self.usable.load(Ordering::Acquire) < m {
            self.usable.fetch_max(m, Ordering::AcqRel);
        }
        if sealable && self.sealable.load(Ordering::Acquire) < m {
            self.sealable.fetch_max(m, Ordering::AcqRel);
        }
    }

    /// Counts a cache hit for eviction (saturating at [`MAX_HITS`]; racing threads may lose
    /// a count, which only makes eviction slightly less informed).
    fn hit(&self) {
        let h = self.hits.load(Ordering::Relaxed);
        if h < MAX_HITS {
            self.hits.store(h + 1, Ordering::Relaxed);
        }
    }

    /// Takes one hit back if there is one (a second chance given); whether there was.
    fn take_hit(&self) -> bool {
        let h = self.hits.load(Ordering::Relaxed);
        if h > 0 {
            self.hits.store(h - 1, Ordering::Relaxed);
        }
        h > 0
    }

    fn parts(&self) -> (&str, KeyVersion, Purpose) {
        (self.tenant.as_str(), self.version, self.purpose)
    }

    /// Reads the record sealer's state now, while the lookup waits for the key's first
    /// line anyway: with 100,000 tenants the sealer's lines then arrive from memory with it
    /// instead of after it (the lookup's atomic operations would otherwise wait for the
    /// first line before the seal asks for the others). A plain read; nothing changes.
    fn warm(&self) {
        if let Some(s) = self.sealer.get() {
            s.warm();
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

/// The most uses a key is credited with: it survives that many passes of the main queue's
/// eviction without being used again.
const MAX_HITS: u8 = 3;

/// What a lookup is for.
pub(crate) struct Probe<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) version: KeyVersion,
    pub(crate) purpose: Purpose,
}

impl Probe<'_> {
    fn parts(&self) -> (&str, KeyVersion, Purpose) {
        (self.tenant, self.version, self.purpose)
    }
}

/// One shard: an S3-FIFO cache (see the module docs). Every key is in the table and in
/// exactly one of the two queues.
struct Shard {
    table: HashTable<Arc<DerivedKey>>,
    small: VecDeque<Arc<DerivedKey>>,
    main: VecDeque<Arc<DerivedKey>>,
    /// Hashes of keys recently evicted from the small queue, oldest first (`ghosts` holds
    /// the same set, for lookups); at most `capacity` of them.
    ghost_order: VecDeque<u64>,
    ghosts: HashSet<u64>,
    capacity: usize,
    small_capacity: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            table: HashTable::with_capacity(capacity),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost_order: VecDeque::new(),
            ghosts: HashSet::new(),
            capacity,
            small_capacity: (capacity / 10).max(1),
        }
    }

    fn find(&self, hash: u64, probe: &Probe<'_>) -> Option<&Arc<DerivedKey>> {
        self.table.find(hash, |k| k.parts() == probe.parts())
    }

    /// Inserts `value` unless its key is cached; returns the cached value and what was
    /// evicted (dropped by the caller after the lock is released).
    fn put(
        &mut self,
        hasher: &DefaultHashBuilder,
        hash: u64,
        value: Arc<DerivedKey>,
    ) -> (Arc<DerivedKey>, Option<Arc<DerivedKey>>) {
        let (tenant, version, purpose) = value.parts();
        if let Some(k) = self.find(hash, &Probe { tenant, version, purpose }) {
            return (k.clone(), None);
        }
        let evicted = if self.table.len() >= self.capacity { self.evict(hasher) } else { None };
        self.table.insert_unique(hash, value.clone(), |k| hasher.hash_one(k.parts()));
        if self.ghosts.remove(&hash) {
            self.main.push_back(value.clone());
        } else {
            self.small.push_back(value.clone());
        }
        (value, evicted)
    }

    /// Removes one key: from the small queue while it holds its share (a key used there
    /// moves to the main queue instead), else from the main queue (a key used since its last
    /// pass goes round again, one use fewer).
    fn evict(&mut self, hasher: &DefaultHashBuilder) -> Option<Arc<DerivedKey>> {
        loop {
            if self.small.len() >= self.small_capacity || self.main.is_empty() {
                let k = self.small.pop_front()?;
                if k.take_hit() {
                    // Uses beyond the one that earned the move stay to its credit.
                    self.main.push_back(k);
                    continue;
                }
                let hash = hasher.hash_one(k.parts());
                self.remember(hash);
                return Some(self.remove(hash, k));
            }
            let k = self.main.pop_front()?;
            if k.take_hit() {
                self.main.push_back(k);
                continue;
            }
            let hash = hasher.hash_one(k.parts());
            return Some(self.remove(hash, k));
        }
    }

    /// Drops `key` (just taken off its queue) from the table.
    fn remove(&mut self, hash: u64, key: Arc<DerivedKey>) -> Arc<DerivedKey> {
        if let Ok(entry) = self.table.find_entry(hash, |k| Arc::ptr_eq(k, &key)) {
            entry.remove();
        }
        key
    }

    fn remember(&mut self, hash: u64) {
        if self.ghosts.insert(hash) {
            self.ghost_order.push_back(hash);
        }
        while self.ghost_order.len() > self.capacity {
            if let Some(old) = self.ghost_order.pop_front() {
                self.ghosts.remove(&old);
            }
        }
    }

    fn clear(&mut self) {
        self.table.clear();
        self.small.clear();
        self.main.clear();
        self.ghost_order.clear();
        self.ghosts.clear();
    }
}

/// A bounded, sharded, scan-resistant map of derived keys.
pub(crate) struct KeyCache {
    shards: Vec<RwLock<Shard>>,
    hasher: DefaultHashBuilder,
}

/// The shard of a tenant id: FNV-1a of the id (the shards' tables use a randomized hasher,
/// so a crafted id can at worst make one shard busier, not slower per lookup).
fn shard_of(tenant: &str) -> usize {
    let h = tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    usize::try_from((h ^ (h >> 32)) % SHARDS as u64).unwrap_or(0)
}

impl KeyCache {
    /// A cache of at most `capacity` keys (at least one per shard).
    ///
    /// The tables are sized for the capacity up front (about 9 bytes per key), so that no
    /// insert pays for growing and rehashing a shard while its lock is held.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self { shards: (0..SHARDS).map(|_| RwLock::new(Shard::new(per_shard))).collect(), hasher: Default::default() }
    }

    fn shard(&self, tenant: &str) -> Option<&RwLock<Shard>> {
        self.shards.get(shard_of(tenant))
    }

    pub(crate) fn get(&self, probe: &Probe<'_>) -> Option<Arc<DerivedKey>> {
        let hash = self.hasher.hash_one(probe.parts());
        // A panic while holding the lock cannot leave a shard inconsistent: ignore poisoning.
        let shard = self.shard(probe.tenant)?.read().unwrap_or_else(PoisonError::into_inner);
        let k = shard.find(hash, probe)?;
        k.warm();
        k.hit();
        Some(k.clone())
    }

    /// Caches `value` (for its own tenant, version and purpose) unless another thread cached
    /// the same key first; returns the cached one.
    pub(crate) fn put(&self, value: Arc<DerivedKey>) -> Arc<DerivedKey> {
        let hash = self.hasher.hash_one(value.parts());
        let Some(shard) = self.shard(value.tenant.as_str()) else { return value };
        let (cached, evicted) = shard.write().unwrap_or_else(PoisonError::into_inner).put(&self.hasher, hash, value);
        // The evicted key (and its sealer) is wiped here, outside the lock.
        drop(evicted);
        cached
    }

    /// How many keys are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(PoisonError::into_inner).table.len()).sum()
    }

    /// Drops every key (after the keyring changed: destroyed or disabled keys must go).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.write().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

#[cfg(test)]
mod tests;
