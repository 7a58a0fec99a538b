//! Batches on all cores (`Tenant::seal_batch`, `open_batch`, `rewrap_batch`): results in
//! input order across windows, per-item errors that never stop a batch; the key cache's
//! capacity; one record sealer shared by every handle of a tenant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::{BULK_WINDOW, Context, Keyring, KeyringOptions, LocalRootKey, OpenError, RewrapError};

fn keyring() -> Keyring {
    Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap()
}

fn prefix(record: &[u8]) -> [u8; 12] {
    record[6..18].try_into().unwrap()
}

fn rows(n: usize) -> Vec<(Vec<u8>, Context)> {
    (0..n).map(|i| (format!("value {i}").into_bytes(), Context::new().with("row", i.to_string()))).collect()
}

#[test]
fn seal_and_open_batches_keep_order_and_report_items() {
    let t = keyring().tenant("acme").unwrap();
    let n = 2 * BULK_WINDOW + 17;
    let rows = rows(n);
    let mut sealed = Vec::new();
    let count = t.seal_batch(rows.iter().map(|(v, c)| (v.as_slice(), c)), |i, r| {
        assert_eq!(i, sealed.len());
        sealed.push(r.unwrap());
    });
    assert_eq!(count, n);
    // Spoil some: a flipped byte, a wrong context, garbage.
    let bad = [3usize, BULK_WINDOW, n - 1];
    sealed[3][40] ^= 1;
    let wrong = Context::new().with("row", "elsewhere");
    sealed[n - 1] = b"not a record".to_vec();
    let items =
        sealed.iter().zip(&rows).enumerate().map(|(i, (s, (_, c)))| (s, if i == BULK_WINDOW { &wrong } else { c }));
    let mut seen = 0;
    t.open_batch(items, |i, r| {
        assert_eq!(i, seen);
        seen += 1;
        if bad.contains(&i) {
            assert!(r.is_err(), "item {i} opened");
        } else {
            assert_eq!(r.unwrap(), rows[i].0, "item {i}");
        }
    });
    assert_eq!(seen, n);
    assert!(matches!(t.open(&sealed[3], &rows[3].1), Err(OpenError::Authentication)));
    // Owned items and an empty batch.
    assert_eq!(t.seal_batch(Vec::<(Vec<u8>, Context)>::new(), |_, _| panic!("no items")), 0);
}

#[test]
fn parallel_rewrap_batch_reports_in_order() {
    let keyring = keyring();
    let t = keyring.tenant("acme").unwrap();
    let n = BULK_WINDOW + 100;
    let rows = rows(n);
    let mut sealed: Vec<Vec<u8>> = rows.iter().map(|(v, c)| t.seal(v, c).unwrap()).collect();
    keyring.rotate().unwrap();
    // Some already current, some broken.
    sealed[0] = t.seal(&rows[0].0, &rows[0].1).unwrap();
    sealed[5] = b"garbage".to_vec();
    sealed[BULK_WINDOW + 1][30] ^= 1;
    let before = sealed.clone();
    let mut progress = Vec::new();
    let report = t.rewrap_batch(sealed.iter_mut().zip(rows.iter().map(|(_, c)| c)), |k| progress.push(k));
    assert_eq!(progress, (1..=n).collect::<Vec<_>>());
    assert_eq!(report.already_current, 1);
    assert_eq!(report.rewrapped, n - 3);
    let failed: Vec<usize> = report.failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [5, BULK_WINDOW + 1]);
    assert!(matches!(report.failed[1].1, RewrapError::Open(_)));
    assert_eq!(sealed[5], before[5]);
    assert_eq!(sealed[BULK_WINDOW + 1], before[BULK_WINDOW + 1]);
    for (i, (s, (v, c))) in sealed.iter().zip(&rows).enumerate() {
        if i != 5 && i != BULK_WINDOW + 1 {
            assert!(!t.needs_rewrap(s).unwrap());
            assert_eq!(&t.open(s, c).unwrap(), v);
        }
    }
}

#[test]
fn cache_holds_at_most_its_capacity() {
    let keyring =
        Keyring::in_memory_with(LocalRootKey::generate().unwrap(), KeyringOptions::default().cache_capacity(64))
            .unwrap();
    assert_eq!(KeyringOptions::default().cache_capacity_keys(), atrest::DEFAULT_CACHE_CAPACITY);
    let ctx = Context::new();
    let hot = keyring.tenant("hot").unwrap();
    let sealed = hot.seal(b"x", &ctx).unwrap();
    for i in 0..1000 {
        let t = keyring.tenant(&format!("tenant-{i}")).unwrap();
        let r = t.seal(b"x", &ctx).unwrap();
        assert_eq!(t.open(&r, &ctx).unwrap(), b"x");
        assert!(keyring.cached_keys() <= 64, "{} cached", keyring.cached_keys());
    }
    // Evicted tenants derive again and still open what they sealed.
    assert_eq!(keyring.tenant("hot").unwrap().open(&sealed, &ctx).unwrap(), b"x");
}

#[test]
fn handles_share_one_sealer_while_cached() {
    let keyring = keyring();
    let ctx = Context::new().with("row", "1");
    let a = keyring.tenant("acme").unwrap().seal(b"one", &ctx).unwrap();
    let b = keyring.tenant("acme").unwrap().seal(b"two", &ctx).unwrap();
    let c = keyring.tenant("other").unwrap().seal(b"three", &ctx).unwrap();
    assert_eq!(prefix(&a), prefix(&b), "a new handle built its own sealer");
    assert_ne!(prefix(&a), prefix(&c));
    assert_ne!(a[18..30], b[18..30], "nonce suffixes repeat");
    // After a change of the keyring (cache cleared) the sealer is built again.
    keyring.rotate().unwrap();
    let d = keyring.tenant("acme").unwrap().seal(b"four", &ctx).unwrap();
    assert_ne!(prefix(&a), prefix(&d));
    let t = keyring.tenant("acme").unwrap();
    assert_eq!(t.open(&a, &ctx).unwrap(), b"one");
    assert_eq!(t.open(&d, &ctx).unwrap(), b"four");
}

/// Handles made while their tenant was not cached seal without a second cache lookup; they
/// still end up sharing the one cached key and sealer (whichever seals first caches it),
/// also from threads racing on a tenant's first seal, and a shred between the handle and its
/// first seal is still refused.
#[test]
fn handles_made_before_the_first_seal_share_the_cached_key() {
    let keyring = keyring();
    let ctx = Context::new().with("row", "1");
    let early: Vec<_> = (0..4).map(|_| keyring.tenant("cold").unwrap()).collect();
    assert_eq!(keyring.cached_keys(), 0);
    let sealed: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = early.iter().map(|t| s.spawn(|| t.seal(b"x", &ctx).unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(keyring.cached_keys(), 1);
    let late = keyring.tenant("cold").unwrap().seal(b"y", &ctx).unwrap();
    // Racing first seals may each have derived the key, but the first one cached is the
    // one every handle seals with, so one sealer (racing first seals may still draw a nonce
    // prefix each; later seals all use the first one kept).
    let again: Vec<Vec<u8>> = early.iter().map(|t| t.seal(b"z", &ctx).unwrap()).collect();
    assert!(again.iter().all(|r| prefix(r) == prefix(&late)));
    assert!(sealed.iter().any(|r| prefix(r) == prefix(&late)));
    let t = keyring.tenant("cold").unwrap();
    for r in sealed.iter().chain(&again).chain([&late]) {
        assert!(t.open(r, &ctx).is_ok());
    }
    let doomed = keyring.tenant("doomed").unwrap();
    let evidence = keyring.tenant("doomed").unwrap().seal(b"e", &ctx).unwrap();
    let evidence = atrest::ShredEvidence::Record { sealed: &evidence, context: &ctx };
    keyring.shred_tenant("doomed", evidence).unwrap();
    assert!(matches!(doomed.seal(b"x", &ctx), Err(atrest::SealError::TenantShredded { .. })));
}

/// Handles that took a cached key (`Keyring::tenant` on a cached tenant), long-lived handles
/// and their clones all follow every change of the keyring at once: a rotation, a tenant
/// rotation, a disabled version, a shred. No handle is ever served a key the keyring no
/// longer allows.
#[test]
fn cached_handles_follow_every_change() {
    use atrest::{KeyState, KeyringError, MasterVersion, SealError, ShredEvidence, record_info};
    let keyring = keyring();
    let ctx = Context::new().with("row", "1");
    let version = |r: &[u8]| record_info(r).unwrap().key_version;
    let long = keyring.tenant("acme").unwrap();
    let r1 = long.seal(b"one", &ctx).unwrap();
    // A handle for the now cached tenant, and a clone of the long-lived one.
    let cached = keyring.tenant("acme").unwrap();
    let clone = long.clone();
    assert_eq!(version(&cached.seal(b"x", &ctx).unwrap()), version(&r1));

    keyring.rotate().unwrap();
    let v2 = keyring.tenant("acme").unwrap().key_version();
    assert_eq!(v2.master, MasterVersion::new(2));
    for t in [&long, &cached, &clone] {
        assert_eq!(version(&t.seal(b"x", &ctx).unwrap()), v2);
        assert_eq!(t.open(&r1, &ctx).unwrap(), b"one");
    }
    keyring.rotate_tenant("acme").unwrap();
    let g1 = keyring.tenant("acme").unwrap().key_version();
    assert_eq!(g1.generation, 1);
    for t in [&long, &cached, &clone, &keyring.tenant("acme").unwrap()] {
        assert_eq!(version(&t.seal(b"x", &ctx).unwrap()), g1);
    }
    keyring.set_state(MasterVersion::new(1), KeyState::Disabled).unwrap();
    for t in [&long, &cached, &clone] {
        assert!(matches!(t.open(&r1, &ctx), Err(OpenError::KeyDisabled(_))));
    }
    keyring.set_state(MasterVersion::new(1), KeyState::Enabled).unwrap();
    assert_eq!(long.open(&r1, &ctx).unwrap(), b"one");

    let r2 = cached.seal(b"two", &ctx).unwrap();
    keyring.shred_tenant("acme", ShredEvidence::Record { sealed: &r2, context: &ctx }).unwrap();
    for t in [&long, &cached, &clone] {
        assert!(matches!(t.seal(b"x", &ctx), Err(SealError::TenantShredded { .. })));
        assert!(matches!(t.open(&r2, &ctx), Err(OpenError::TenantShredded { .. })));
        assert!(matches!(t.open(&r1, &ctx), Err(OpenError::TenantShredded { .. })));
    }
    assert!(matches!(keyring.tenant("acme"), Err(KeyringError::TenantShredded { .. })));
    // Other tenants are untouched, and an invalid id is still refused as invalid.
    assert!(keyring.tenant("other").unwrap().seal(b"x", &ctx).is_ok());
    assert!(matches!(keyring.tenant(""), Err(KeyringError::InvalidTenantId(_))));
}

/// Many threads sharing one handle see a rotation: every record sealed after the rotation
/// returned names the new version.
#[test]
fn shared_handle_across_threads_follows_a_rotation() {
    let keyring = keyring();
    let t = keyring.tenant("acme").unwrap();
    let ctx = Context::new();
    t.seal(b"x", &ctx).unwrap();
    let before = t.key_version();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2000 {
                    let r = t.seal(b"x", &ctx).unwrap();
                    assert_eq!(t.open(&r, &ctx).unwrap(), b"x");
                }
            });
        }
        keyring.rotate().unwrap();
    });
    let after = t.key_version();
    assert_ne!(before, after);
    for _ in 0..3 {
        assert_eq!(atrest::record_info(&t.seal(b"x", &ctx).unwrap()).unwrap().key_version, after);
    }
}
