use super::*;
use crate::BackupContext;

fn key() -> CatalogKey {
    CatalogKey::derive(&TenantKey::from_bytes([7; 32]), &TenantId::new("acme").unwrap())
}

fn stream_entry() -> Entry {
    let stored = Stored {
        tenant: TenantId::new("acme").unwrap(),
        ctx: BackupContext::incremental("2026-11-27T01", "2026-11-27T00", 1),
        created: 1_764_205_200,
    };
    Entry {
        index: 1,
        prev: [0xab; 32],
        key_version: KeyVersion { master: MasterVersion::new(2), generation: 3 },
        body: Body::Stream { key: "tenants/61636d65/streams/00.atrb".into(), digest: [0xcd; 32], size: 4242, stored },
    }
}

#[test]
fn round_trip_and_layout() {
    let e = stream_entry();
    let b = e.encode(&key()).unwrap();
    assert_eq!(&b[0..8], b"ATRESTCT");
    assert_eq!(b[8], 1);
    assert_eq!(b[9], 1);
    assert_eq!(&b[10..18], &1u64.to_be_bytes());
    assert_eq!(&b[18..50], &[0xab; 32]);
    assert_eq!(&b[50..54], &[0, 2, 0, 3]);
    let body_len = u32::from_be_bytes(b[54..58].try_into().unwrap()) as usize;
    assert_eq!(b.len(), 58 + body_len + 32);
    let back = Entry::parse(&b).unwrap().authenticate(&key()).unwrap();
    assert_eq!(back, e);
    let prune = Entry {
        index: 9,
        prev: [1; 32],
        key_version: e.key_version,
        body: Body::Prune { tenant: TenantId::new("acme").unwrap(), first_kept: 5, cutoff: 77 },
    };
    let pb = prune.encode(&key()).unwrap();
    assert_eq!(pb[9], 2);
    assert_eq!(Entry::parse(&pb).unwrap().authenticate(&key()).unwrap(), prune);
}

#[test]
fn every_bit_flip_truncation_and_extension_is_rejected() {
    let b = stream_entry().encode(&key()).unwrap();
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut t = b.clone();
            t[i] ^= 1 << bit;
            assert!(Entry::parse(&t).and_then(|p| p.authenticate(&key())).is_none(), "byte {i} bit {bit}");
        }
    }
    for cut in 0..b.len() {
        assert!(Entry::parse(&b[..cut]).and_then(|p| p.authenticate(&key())).is_none(), "cut {cut}");
    }
    let mut ext = b.clone();
    ext.push(0);
    assert!(Entry::parse(&ext).and_then(|p| p.authenticate(&key())).is_none());
    // Another tenant's key (or another backup key) does not verify it.
    let other = CatalogKey::derive(&TenantKey::from_bytes([7; 32]), &TenantId::new("acme2").unwrap());
    assert!(Entry::parse(&b).unwrap().authenticate(&other).is_none());
    let other = CatalogKey::derive(&TenantKey::from_bytes([8; 32]), &TenantId::new("acme").unwrap());
    assert!(Entry::parse(&b).unwrap().authenticate(&other).is_none());
}

/// The committed golden entry: the format never changes by accident.
#[test]
fn golden_entry() {
    let b = stream_entry().encode(&key()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden/catalog_entry_v1.bin");
    if std::env::var_os("ATREST_WRITE_GOLDEN").is_some() {
        std::fs::write(path, &b).unwrap();
    }
    let golden = std::fs::read(path).unwrap();
    assert_eq!(hex::encode(&b), hex::encode(&golden));
    assert_eq!(Entry::parse(&golden).unwrap().authenticate(&key()).unwrap(), stream_entry());
}

#[test]
fn keys_and_names() {
    assert_eq!(entry_key("tenants/61/", 7), "tenants/61/catalog/00000000000000000007");
    assert_eq!(index_of("tenants/61/", "tenants/61/catalog/00000000000000000007"), Some(7));
    assert_eq!(index_of("tenants/61/", "tenants/61/catalog/7"), None);
    assert_eq!(index_of("tenants/61/", "tenants/62/catalog/00000000000000000007"), None);
    assert_eq!(index_of("tenants/61/", "tenants/61/catalog/0000000000000000000x"), None);
    assert_eq!(index_of("tenants/61/", "tenants/61/catalog/99999999999999999999"), None);
}

#[test]
fn the_largest_entry_fits_the_read_limit() {
    // The limit a reader applies before parsing: the fixed part, the largest body, the MAC.
    assert_eq!(MAX_ENTRY_LEN, 58 + 4096 + 32);
    let long = "x".repeat(crate::MAX_SNAPSHOT_ID_LEN);
    let tenant = TenantId::new(&"t".repeat(MAX_TENANT_ID_LEN)).unwrap();
    let key = CatalogKey::derive(&TenantKey::from_bytes([7; 32]), &tenant);
    let stored = Stored { tenant, ctx: BackupContext::incremental(&long, &long, u64::MAX), created: u64::MAX };
    let e = Entry {
        index: u64::MAX,
        prev: [0xff; 32],
        key_version: KeyVersion { master: MasterVersion::new(u16::MAX), generation: u16::MAX },
        body: Body::Stream { key: "k".repeat(1024), digest: [0xff; 32], size: u64::MAX, stored },
    };
    let b = e.encode(&key).unwrap();
    assert!(b.len() <= MAX_ENTRY_LEN, "{}", b.len());
    assert_eq!(Entry::parse(&b).unwrap().authenticate(&key).unwrap(), e);
    // A stream key longer than an object key may be (1024 bytes) does not parse.
    let mut too_long = e.clone();
    too_long.body = Body::Stream { key: "k".repeat(1025), digest: [0; 32], size: 0, stored: stored_of(&e) };
    assert!(Entry::parse(&too_long.encode(&key).unwrap_or_default()).is_none());
}

fn stored_of(e: &Entry) -> Stored {
    match &e.body {
        Body::Stream { stored, .. } => stored.clone(),
        Body::Prune { .. } => unreachable!(),
    }
}
