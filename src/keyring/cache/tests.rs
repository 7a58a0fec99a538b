//! The derived-key cache: bounds, scan resistance, sharing, marks, counters.

use super::*;

const V1: KeyVersion = KeyVersion { master: crate::id::MasterVersion::new(1), generation: 0 };

fn name(i: usize) -> String {
    format!("t{i}")
}

fn value(i: usize) -> Arc<DerivedKey> {
    Arc::new(DerivedKey::new(TenantId::new(&name(i)).unwrap(), V1, Purpose::Records, TenantKey::from_bytes([1; 32])))
}

fn probe(name: &str) -> Probe<'_> {
    Probe { tenant: name, version: V1, purpose: Purpose::Records }
}

/// What the keyring does for each use: look up, derive and insert on a miss.
fn touch(cache: &KeyCache, i: usize) -> bool {
    let n = name(i);
    if cache.get(&probe(&n)).is_some() {
        return true;
    }
    cache.put(value(i));
    false
}

#[test]
fn bounded_and_hot_keys_stay() {
    let cache = KeyCache::new(1024);
    for i in 0..10_000 {
        touch(&cache, i);
        // Tenant 0 is hot: used between every two others.
        assert!(i == 0 || touch(&cache, 0), "hot key evicted at {i}");
        assert!(cache.len() <= 1024, "{}", cache.len());
    }
    // Recent keys are there, the early cold ones are gone.
    assert!(cache.get(&probe(&name(9_999))).is_some());
    assert!(cache.get(&probe(&name(1))).is_none());
    // Another version or purpose of a cached tenant is another key.
    assert!(cache.get(&Probe { tenant: "t0", version: V1, purpose: Purpose::Backups }).is_none());
    let v2 = KeyVersion { master: crate::id::MasterVersion::new(2), generation: 0 };
    assert!(cache.get(&Probe { tenant: "t0", version: v2, purpose: Purpose::Records }).is_none());
    cache.clear();
    assert_eq!(cache.len(), 0);
}

/// A scan of ten times the capacity in tenants seen once leaves a hot set in regular use
/// cached (a plain LRU would evict all of it), and nothing is evicted before the cache is
/// full.
#[test]
fn scan_does_not_evict_the_hot_set() {
    let capacity = 1024;
    let cache = KeyCache::new(capacity);
    let hot = 0..256;
    for round in 0..3 {
        for i in hot.clone() {
            assert_eq!(touch(&cache, i), round > 0, "tenant {i} round {round}");
        }
    }
    for i in 1_000_000..1_000_000 + 10 * capacity {
        assert!(!touch(&cache, i));
        assert!(cache.len() <= capacity);
    }
    for i in hot.clone() {
        assert!(touch(&cache, i), "hot tenant {i} evicted by the scan");
    }
    // While not full, every key stays: a working set that fits is never evicted.
    let cache = KeyCache::new(capacity);
    for i in 0..capacity / 2 {
        touch(&cache, i);
    }
    for i in 0..capacity / 2 {
        assert!(touch(&cache, i), "{i} evicted before the cache was full");
    }
}

/// Tenants of shard 0 only, so that per-shard sizes are exact.
fn of_shard_0(n: usize) -> Vec<usize> {
    (0..1_000_000).filter(|i| shard_of(&name(*i)) == 0).take(n).collect()
}

fn queues(c: &KeyCache) -> (usize, usize, usize) {
    let s = c.shards[0].read().unwrap();
    (s.small.len(), s.main.len(), s.ghosts.len())
}

/// S3-FIFO's moves, on one shard of 20 keys (small queue 2): a key used again while in the
/// small queue moves to the main queue when evicted from there; one never used again leaves
/// and is remembered; a remembered key that comes back goes straight to the main queue; the
/// main queue evicts the key not used since its last pass and gives a used one another.
#[test]
fn small_queue_promotes_used_keys_and_remembers_evicted_ones() {
    let cache = KeyCache::new(SHARDS * 20);
    let mine = of_shard_0(100);
    // Fill the shard: 20 keys in the small queue (nothing is evicted while not full); keys
    // 0..10 used a second time.
    for &i in &mine[..20] {
        touch(&cache, i);
    }
    for &i in &mine[..10] {
        assert!(touch(&cache, i));
    }
    assert_eq!(queues(&cache), (20, 0, 0));
    // One more key: the small queue is evicted from, oldest first; 0..10 were used and move
    // to the main queue, 10 (never used again) leaves and is remembered.
    touch(&cache, mine[20]);
    assert_eq!(queues(&cache), (10, 10, 1));
    assert!(!touch(&cache, mine[10]), "key 10 was evicted");
    // It came back while remembered: into the main queue. The small queue lost key 11.
    assert_eq!(queues(&cache), (9, 11, 1));
    assert!(touch(&cache, mine[10]));
    // New keys seen once only replace keys seen once: the main queue is not touched.
    for &i in &mine[21..28] {
        touch(&cache, i);
    }
    let (small, main, _) = queues(&cache);
    assert_eq!(main, 11);
    assert_eq!(small, 9);
    for &i in &mine[..10] {
        assert!(touch(&cache, i), "used key {i} evicted");
    }
}

/// Whether tenant `i`'s key is cached, without counting a use.
fn contains(c: &KeyCache, i: usize) -> bool {
    let n = name(i);
    let p = probe(&n);
    c.shards[shard_of(&n)].read().unwrap().find(c.hasher.hash_one(p.parts()), &p).is_some()
}

/// With the small queue under its share, the main queue evicts in FIFO order, except that
/// each key used since its last pass goes round again (one use fewer).
#[test]
fn main_queue_gives_used_keys_another_chance() {
    let cache = KeyCache::new(SHARDS * 10);
    let mine = of_shard_0(40);
    // Ten keys, each used twice more (credit 2; all in the small queue, the shard not full).
    for &i in &mine[..10] {
        touch(&cache, i);
        touch(&cache, i);
        touch(&cache, i);
    }
    assert_eq!(queues(&cache), (10, 0, 0));
    // An 11th key: all ten move to the main queue (credit 1 each), then the main queue
    // evicts: one round takes every key's credit, the next evicts the oldest, key 0.
    touch(&cache, mine[10]);
    assert_eq!(queues(&cache), (1, 9, 0));
    assert!(!contains(&cache, mine[0]));
    assert!(mine[1..11].iter().all(|&i| contains(&cache, i)));
    // Key 5 is used once more. Then each new key is used once after it came, so that the
    // next one moves it to the main queue, which evicts 1, 2, 3, 4, skips 5 (taking its
    // credit) and evicts 6.
    assert!(touch(&cache, mine[5]));
    for j in 11..16 {
        assert!(touch(&cache, mine[j - 1]));
        assert!(!touch(&cache, mine[j]));
    }
    let kept: Vec<usize> = (1..10).filter(|&i| contains(&cache, mine[i])).collect();
    assert_eq!(kept, [5, 7, 8, 9]);
    assert_eq!(cache.len(), 10);
}

#[test]
fn first_put_wins_and_its_sealer_is_shared() {
    let cache = KeyCache::new(16);
    let first = cache.put(value(1));
    let second = cache.put(value(1));
    assert!(Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&first, &cache.get(&probe("t1")).unwrap()));
    assert!(std::ptr::eq(first.sealer(), second.sealer()));
    // At least one key per shard even for a capacity of zero; a one-key shard (small queue
    // of one, no room for a main queue) still serves hits.
    let tiny = KeyCache::new(0);
    tiny.put(value(1));
    assert_eq!(tiny.len(), 1);
    assert!(touch(&tiny, 1));
    assert!(touch(&tiny, 1));
    assert_eq!(tiny.len(), 1);
}

/// The small queue remembers exactly as many evicted keys as the shard holds, forgetting the
/// oldest first: a key evicted longer ago than that comes back as new (small queue), a more
/// recent one into the main queue.
#[test]
fn ghosts_are_bounded_to_the_shard_capacity() {
    let cache = KeyCache::new(SHARDS * 10);
    let mine = of_shard_0(100);
    // Keys seen once, 10 cached and 30 evicted through the small queue: 10 remembered.
    for &i in &mine[..40] {
        touch(&cache, i);
    }
    assert_eq!(queues(&cache), (10, 0, 10));
    // Key 19 was the 20th in (evicted 10th): forgotten. Key 29 (evicted 20th): remembered.
    assert!(!touch(&cache, mine[19]));
    assert_eq!(queues(&cache).1, 0, "a forgotten key came back into the main queue");
    assert!(!touch(&cache, mine[29]));
    assert_eq!(queues(&cache).1, 1, "a remembered key came back into the small queue");
}

/// A key's credit saturates at `MAX_HITS`: however often it was used, it survives that many
/// passes of the main queue without a new use, no more.
#[test]
fn use_credit_saturates() {
    let v = value(1);
    for _ in 0..10 {
        v.hit();
    }
    let chances = (0..10).take_while(|_| v.take_hit()).count();
    assert_eq!(chances, usize::from(MAX_HITS));
    assert!(!v.take_hit());
    v.hit();
    assert!(v.take_hit() && !v.take_hit());
}

#[test]
fn marks_move_forward_only() {
    let v = value(1);
    assert!(!v.sealable_at(0) && !v.usable_at(0));
    v.mark(3, false);
    assert!(v.usable_at(3) && !v.sealable_at(3) && !v.usable_at(2));
    v.mark(5, true);
    v.mark(4, true);
    assert!(v.sealable_at(5) && v.usable_at(5) && !v.sealable_at(4));
}

#[test]
fn batch_counts_add_up() {
    let v = value(1);
    v.count_n(Use::Seal, AUDIT_EVERY - 1);
    v.count(Use::Seal);
    v.count_n(Use::Open, 0);
    assert_eq!(v.seals.load(Ordering::Relaxed), AUDIT_EVERY);
    assert_eq!(v.opens.load(Ordering::Relaxed), 0);
}
