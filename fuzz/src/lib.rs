//! Fixtures shared by the atrest fuzz targets and their seed generator.
//!
//! Everything here is deterministic: a fixed test root key, and keyring files and sealed data
//! made once with it and committed under `fuzz/data/` (sealing draws random nonces, so the
//! files cannot be recomputed byte for byte; `examples/gen_seeds.rs --new-fixtures` makes a
//! new set). Because forging needs the keys, a fuzzer can only reach an `Ok` from an open or
//! a load with one of these committed inputs: the targets assert exactly that.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, LazyLock};

use atrest::{
    BACKUP_HEADER_LEN, BackupContext, Context, Keyring, LocalRootKey, RootKey, RootKeyError, RootKeyProvider,
    SecretBytes,
};

/// The fixed root key of every fixture (test only, never a real key).
pub const TEST_ROOT_KEY: [u8; 32] = *b"atrest fuzz fixture root key v1!";

/// Another fixed root key, for "wrong root key" checks.
pub const OTHER_ROOT_KEY: [u8; 32] = *b"atrest fuzz some other root key!";

/// The root key provider of the fixtures.
pub fn root() -> Arc<dyn RootKeyProvider> {
    Arc::new(LocalRootKey::new(RootKey::from_bytes(TEST_ROOT_KEY)))
}

/// A provider with another key and another id.
pub fn other_root() -> Arc<dyn RootKeyProvider> {
    Arc::new(LocalRootKey::new(RootKey::from_bytes(OTHER_ROOT_KEY)))
}

/// A provider that claims the fixtures' root key id but holds another key: loading any
/// keyring with it must fail (at the integrity key unwrap at the latest).
pub struct Impostor {
    id: String,
    inner: LocalRootKey,
}

/// The impostor of [`root`].
pub fn impostor_root() -> Arc<dyn RootKeyProvider> {
    Arc::new(Impostor { id: root().key_id(), inner: LocalRootKey::new(RootKey::from_bytes(OTHER_ROOT_KEY)) })
}

impl RootKeyProvider for Impostor {
    fn key_id(&self) -> String {
        self.id.clone()
    }
    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        self.inner.wrap(key, aad)
    }
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        self.inner.unwrap(wrapped, aad)
    }
}

/// The main keyring fixture: v1 enabled, v2 destroyed, v3 disabled, v4 primary; tenant
/// `acme` at generation 1, tenant `beta` at generation 2, tenant `gone` shredded. The record
/// and backup fixtures belong to `acme` in it.
pub const KEYRING: &[u8] = include_bytes!("../data/keyring.atrk");
/// A freshly created keyring: v1 primary, no tenants.
pub const KEYRING_FRESH: &[u8] = include_bytes!("../data/keyring-fresh.atrk");
/// Every committed valid keyring of the fuzz fixtures (all under [`TEST_ROOT_KEY`]).
pub const VALID_KEYRINGS: &[&[u8]] = &[KEYRING, KEYRING_FRESH];

/// The crate's golden keyring (`tests/data/golden/keyring.atrk`), under [`golden_root`].
pub const GOLDEN_KEYRING: &[u8] = include_bytes!("../../tests/data/golden/keyring.atrk");

/// The crate's public golden test root key (`tests/data/golden/root.key`).
pub fn golden_root() -> Arc<dyn RootKeyProvider> {
    let text = include_str!("../../tests/data/golden/root.key");
    let digits = text.trim().strip_prefix("ATREST-ROOT-KEY-V1:").expect("golden root key file format");
    let mut key = [0u8; 32];
    hex::decode_to_slice(digits, &mut key).expect("golden root key hex");
    Arc::new(LocalRootKey::new(RootKey::from_bytes(key)))
}

/// A root key provider that does not encrypt: "wrapping" returns the key as is. With it a
/// harness knows a keyring's integrity key, so it can compute the MAC of any file body and
/// reach the checks that run on authentic files (the `keyring_authentic` target).
pub struct TransparentRoot;

/// The key id of [`TransparentRoot`].
pub const TRANSPARENT_ROOT_ID: &str = "fuzz:transparent";

impl RootKeyProvider for TransparentRoot {
    fn key_id(&self) -> String {
        TRANSPARENT_ROOT_ID.to_owned()
    }
    fn wrap(&self, key: &[u8], _aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        Ok(key.to_vec())
    }
    fn unwrap(&self, wrapped: &[u8], _aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        Ok(SecretBytes::new(wrapped.to_vec()))
    }
}

/// Builds a complete keyring file around `json` (line 2), with the MAC the format specifies
/// (`HMAC-SHA256(integrity key, "atrest/v1/keyring-file\n" || line 1 || "\n" || line 2)`),
/// taking the integrity key from the JSON's `integrity_key` as [`TransparentRoot`] stores it.
/// A JSON without a readable integrity key gets a MAC under an empty key.
pub fn authentic_keyring_file(json: &str) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    const FIRST_LINE: &str = "atrest-keyring v1";
    let key = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("integrity_key")?.as_str().and_then(|h| hex::decode(h).ok()))
        .unwrap_or_default();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(b"atrest/v1/keyring-file\n");
    mac.update(FIRST_LINE.as_bytes());
    mac.update(b"\n");
    mac.update(json.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{FIRST_LINE}\n{json}\nmac {}\n", hex::encode(tag)).into_bytes()
}

/// The tenant the record and backup fixtures belong to.
pub const TENANT: &str = "acme";

/// The context of every record fixture.
pub fn record_context() -> Context {
    Context::new().with("table", "fuzz").with("row", "1")
}

/// A committed sealed record and what opening it with [`TENANT`] and [`record_context`]
/// under [`KEYRING`] must give.
pub struct KnownRecord {
    /// File name under `fuzz/data/records/`.
    pub name: &'static str,
    /// The sealed bytes.
    pub sealed: &'static [u8],
    /// The plaintext, or `None` if the record must not open (key disabled or destroyed).
    pub plaintext: Option<&'static [u8]>,
    /// (master version, generation) its header names.
    pub version: (u16, u16),
    /// Suite id in its header.
    pub suite_id: u8,
}

macro_rules! record {
    ($name:literal, $plain:expr, $version:expr, $suite:expr) => {
        KnownRecord {
            name: $name,
            sealed: include_bytes!(concat!("../data/records/", $name)),
            plaintext: $plain,
            version: $version,
            suite_id: $suite,
        }
    };
}

/// A 1000-byte plaintext for one of the records.
pub const LONG_PLAINTEXT: &[u8; 1000] = &{
    let mut a = [0u8; 1000];
    let mut i = 0;
    while i < a.len() {
        a[i] = (i % 251) as u8;
        i += 1;
    }
    a
};

/// Every committed record: (name, sealed bytes, expected plaintext, key version, suite).
pub const RECORDS: &[KnownRecord] = &[
    record!("v1g0-xaes.rec", Some(b"alice@example.com"), (1, 0), 0x01),
    record!("v1g0-xchacha.rec", Some(b"bob@example.com"), (1, 0), 0x03),
    record!("v2g0-destroyed.rec", None, (2, 0), 0x01),
    record!("v3g1-disabled.rec", None, (3, 1), 0x01),
    record!("v4g1-empty.rec", Some(b""), (4, 1), 0x01),
    record!("v4g1-long.rec", Some(LONG_PLAINTEXT), (4, 1), 0x01),
];

/// [`KEYRING`], loaded once.
pub static FIXTURE_KEYRING: LazyLock<Keyring> = LazyLock::new(|| {
    let k = Keyring::from_bytes(KEYRING, root()).expect("the committed keyring fixture loads");
    check_record_fixtures(&k);
    check_backup_fixtures(&k);
    k
});

/// Panics unless every committed record opens (or fails) as [`RECORDS`] says.
pub fn check_record_fixtures(keyring: &Keyring) {
    let t = keyring.tenant(TENANT).unwrap();
    let ctx = record_context();
    for r in RECORDS {
        let info = atrest::record_info(r.sealed).unwrap();
        assert_eq!((info.key_version.master.get(), info.key_version.generation), r.version, "{}", r.name);
        assert_eq!(info.suite.id(), r.suite_id, "{}", r.name);
        match (t.open(r.sealed, &ctx), r.plaintext) {
            (Ok(p), Some(want)) => assert_eq!(p, want, "{}", r.name),
            (Err(_), None) => {}
            (got, _) => panic!("record fixture {} opened as {:?}", r.name, got.map(|p| p.len())),
        }
    }
}

/// The known record with exactly these bytes, if any.
pub fn known_record(bytes: &[u8]) -> Option<&'static KnownRecord> {
    RECORDS.iter().find(|r| r.sealed == bytes)
}

/// The contexts of the backup fixtures: a full backup, and an incremental one on top of it.
pub fn backup_contexts() -> [BackupContext; 2] {
    [BackupContext::full("fuzz-snapshot-1"), BackupContext::incremental("fuzz-snapshot-2", "fuzz-snapshot-1", 1)]
}

/// The chunk size of every backup fixture (the smallest allowed, 64 KiB).
pub const BACKUP_CHUNK_SIZE: usize = 64 << 10;

/// The plaintext of the two-chunk backup fixture: one full 64 KiB chunk and a short one.
pub const BACKUP_PLAINTEXT: &[u8; 70_000] = &{
    let mut a = [0u8; 70_000];
    let mut i = 0;
    while i < a.len() {
        a[i] = ((i % 253) ^ (i >> 8)) as u8;
        i += 1;
    }
    a
};

/// A committed backup stream of tenant [`TENANT`] under [`KEYRING`].
pub struct KnownBackup {
    /// File name under `fuzz/data/backups/`.
    pub name: &'static str,
    /// The stream bytes.
    pub stream: &'static [u8],
    /// Index into [`backup_contexts`] of the context it was written with.
    pub context: usize,
    /// The plaintext, or `None` if it must not open (key version disabled).
    pub plaintext: Option<&'static [u8]>,
    /// (master version, generation) its header names.
    pub version: (u16, u16),
}

macro_rules! backup {
    ($name:literal, $ctx:expr, $plain:expr, $version:expr) => {
        KnownBackup {
            name: $name,
            stream: include_bytes!(concat!("../data/backups/", $name)),
            context: $ctx,
            plaintext: $plain,
            version: $version,
        }
    };
}

/// Every committed backup stream (64 KiB chunks).
pub const BACKUPS: &[KnownBackup] = &[
    backup!("v1g0-small.atbk", 0, Some(b"hello, backup"), (1, 0)),
    backup!("v3g1-disabled.atbk", 0, None, (3, 1)),
    backup!("v4g1-two-chunks.atbk", 0, Some(BACKUP_PLAINTEXT), (4, 1)),
    backup!("v4g1-empty-incremental.atbk", 1, Some(b""), (4, 1)),
    backup!("v4g1-small-incremental.atbk", 1, Some(b"incremental changes"), (4, 1)),
];

/// The committed stream whose 186-byte header starts `bytes`, if any (an authenticated
/// header identifies its stream).
pub fn known_backup_by_header(bytes: &[u8]) -> Option<&'static KnownBackup> {
    let header = bytes.get(..BACKUP_HEADER_LEN)?;
    BACKUPS.iter().find(|b| &b.stream[..BACKUP_HEADER_LEN] == header)
}

/// Panics unless every committed backup stream decrypts (or fails) as [`BACKUPS`] says.
pub fn check_backup_fixtures(keyring: &Keyring) {
    let t = keyring.tenant(TENANT).unwrap();
    let ctxs = backup_contexts();
    for b in BACKUPS {
        let info = atrest::inspect_backup(b.stream).unwrap();
        assert_eq!((info.key_version.master.get(), info.key_version.generation), b.version, "{}", b.name);
        assert_eq!(info.chunk_size as usize, BACKUP_CHUNK_SIZE, "{}", b.name);
        match (atrest::decrypt_backup(&t, &ctxs[b.context], b.stream), b.plaintext) {
            (Ok(p), Some(want)) => assert_eq!(p, want, "{}", b.name),
            (Err(_), None) => {}
            (got, _) => panic!("backup fixture {} decrypted as {:?}", b.name, got.map(|p| p.len())),
        }
    }
}
