//! The derived-key cache: bounds, scan resistance, sharing, marks, counters.

use super::*;

const V1: KeyVersion = KeyVersion { master: crate::id::MasterVersion::new(1), generation: 0 };

fn name(i: usize) -> String {
    format!("t{i}")
}

fn value(i: usize) -> Arc<DerivedKey> {
    Arc::new(DerivedKey::new(TenantId::new(&name(i)).unwrap(), V1, TenantKey::from_bytes([1; 32])))
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
    cache.put(Purpose::Records, value(i));
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

/// A full protected segment demotes its least recently used key to probation (it is not
/// dropped), and a key used again there is promoted back.
#[test]
fn protected_segment_demotes_to_probation() {
    let cache = KeyCache::new(SHARDS * 10);
    // Tenants of one shard only, so the per-shard sizes (10, protected 8) are exact.
    let mine: Vec<usize> = (0..10_000).filter(|i| shard_of(&name(*i)) == 0).take(20).collect();
    for &i in &mine[..9] {
        touch(&cache, i);
        assert!(touch(&cache, i));
    }
    let shard = |c: &KeyCache| {
        let s = c.shards[0].lock().unwrap();
        (s.probation.len(), s.protected.len())
    };
    assert_eq!(shard(&cache), (1, 8));
    // The 9th promotion demoted the first tenant; it is still cached.
    assert!(touch(&cache, mine[0]));
    assert_eq!(shard(&cache), (1, 8));
    // A full shard evicts from probation first.
    for &i in &mine[9..] {
        touch(&cache, i);
        assert_eq!(shard(&cache).1, 8);
    }
    // mine[1] was demoted to probation and evicted from there; the protected ones stay.
    for &i in mine[2..9].iter().chain(&mine[..1]) {
        assert!(touch(&cache, i), "protected tenant {i} evicted");
    }
}

#[test]
fn first_put_wins_and_its_sealer_is_shared() {
    let cache = KeyCache::new(16);
    let first = cache.put(Purpose::Records, value(1));
    let second = cache.put(Purpose::Records, value(1));
    assert!(Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&first, &cache.get(&probe("t1")).unwrap()));
    assert!(std::ptr::eq(first.sealer(), second.sealer()));
    // At least one key per shard even for a capacity of zero; a tiny shard has no
    // protected segment and still serves hits.
    let tiny = KeyCache::new(0);
    tiny.put(Purpose::Records, value(1));
    assert_eq!(tiny.len(), 1);
    assert!(touch(&tiny, 1));
    assert!(touch(&tiny, 1));
    assert_eq!(tiny.len(), 1);
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
