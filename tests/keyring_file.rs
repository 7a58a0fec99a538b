//! The keyring file under modification: every single-byte change and every truncation of a
//! valid file is rejected (or, if accepted, changes nothing), each failure class has its own
//! error, a keyring round-trips through `to_bytes` / `from_bytes`, and no secret ever reaches
//! `Debug` or `Display` output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::secrets; the rest of the shared kit is unused here")]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use atrest::{
    Context, DestroyConfirmation, KeyState, Keyring, KeyringError, LocalRootKey, MasterVersion, OpenError, RootKey,
    RootKeyError, RootKeyProvider, SecretBytes,
};
use common::secrets::SecretScan;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

/// The known test root key of this file (public: it protects nothing).
const TEST_KEY: [u8; 32] = [
    0x9c, 0x3e, 0x51, 0xd7, 0x08, 0xa4, 0x6b, 0xf2, 0x1d, 0x87, 0xc0, 0x35, 0xee, 0x49, 0x72, 0x1b, 0x5a, 0xd3, 0x60,
    0x0f, 0xb8, 0x24, 0x97, 0xce, 0x43, 0x7d, 0xa9, 0x16, 0xe5, 0x8b, 0x32, 0xf0,
];

fn root() -> Arc<dyn RootKeyProvider> {
    Arc::new(LocalRootKey::new(RootKey::from_bytes(TEST_KEY)))
}

/// A keyring exercising every part of the file: a destroyed version (null material), an
/// enabled one, a disabled one, the primary, a rotated tenant and a shredded one.
static KEYRING: LazyLock<(Keyring, Vec<u8>)> = LazyLock::new(|| {
    let k = Keyring::in_memory(LocalRootKey::new(RootKey::from_bytes(TEST_KEY))).unwrap();
    k.rotate().unwrap();
    k.rotate().unwrap();
    k.rotate().unwrap();
    let v1 = MasterVersion::new(1);
    k.set_state(v1, KeyState::Disabled).unwrap();
    k.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period()).unwrap();
    k.set_state(MasterVersion::new(2), KeyState::Disabled).unwrap();
    k.rotate_tenant("initech").unwrap();
    k.shred_tenant("umbrella", atrest::ShredEvidence::Unverified).unwrap();
    let bytes = k.to_bytes().unwrap();
    (k, bytes)
});

fn original() -> &'static [u8] {
    &KEYRING.1
}

// ---------------------------------------------------------------------------------------
// Secrets never print.

/// The test key's renderings, which must never appear in any output.
static SECRETS: LazyLock<SecretScan> = LazyLock::new(|| SecretScan::new().with("key material", &TEST_KEY));

/// Checks an error's `Display` and `Debug` output, and returns it for matching.
fn checked<E: std::fmt::Display + std::fmt::Debug>(e: E) -> E {
    SECRETS.checked(e)
}

fn load(bytes: &[u8]) -> Result<Keyring, KeyringError> {
    Keyring::from_bytes(bytes, root()).map_err(checked)
}

#[test]
fn the_secret_check_can_fail() {
    // The renderings really are found where the key is printed.
    assert!(SECRETS.find(&format!("{:?}", TEST_KEY.to_vec())).is_some(), "decimal Debug of the key bytes");
    assert!(SECRETS.find(&format!("{TEST_KEY:?}")).is_some());
    assert!(SECRETS.find(&hex::encode_upper(TEST_KEY)).is_some());
    assert!(SECRETS.find(&format!("id={}", hex::encode(&TEST_KEY[10..20]))).is_some(), "a 10-byte slice as hex");
    assert!(SECRETS.find(&hex::encode([0x5a; 32])).is_none());
}

// The backup types (`BackupWriter`, `BackupReader`, `BackupContext`, `BackupInfo`) and every
// `BackupError` of the tamper cases are checked against the real keys of the golden streams
// in `tests/golden_backup.rs` (`backup_secrets_never_print`).
#[test]
fn secrets_never_print() {
    let hex_key = hex::encode(TEST_KEY);
    let k = &KEYRING.0;
    let tenant = k.tenant("acme").unwrap();
    let ctx = Context::new().with("secret-value", &hex_key).with("bytes", TEST_KEY);
    let renders = [
        format!("{:?}", RootKey::from_bytes(TEST_KEY)),
        format!("{:?}", SecretBytes::new(TEST_KEY.to_vec())),
        format!("{:#?}", SecretBytes::new(TEST_KEY.to_vec())),
        format!("{:?}", LocalRootKey::new(RootKey::from_bytes(TEST_KEY))),
        format!("{:#?}", LocalRootKey::new(RootKey::from_bytes(TEST_KEY))),
        format!("{k:?}"),
        format!("{k:#?}"),
        format!("{tenant:?}"),
        format!("{:?}", tenant.id()),
        format!("{ctx:?}"),
        format!("{ctx:#?}"),
        format!("{:?}", k.status()),
        serde_json::to_string(&k.status()).unwrap(),
    ];
    for r in &renders {
        SECRETS.assert_clean(r);
    }
    // The redacted forms are what the type docs promise.
    assert_eq!(renders[0], "RootKey { .. }");
    // (Master, tenant and data keys are crate-private: src/secret.rs tests their Debug.)
    assert!(renders[9].contains("secret-value"), "context keys are shown: {}", renders[9]);
    // The keyring file itself holds no key in the clear either.
    SECRETS.assert_clean(std::str::from_utf8(original()).unwrap());
}

#[test]
fn root_key_errors_never_echo_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let hex_key = hex::encode(TEST_KEY);
    // A key file with one hex digit missing, and one with a stray character: Malformed,
    // without repeating the file's contents.
    for (name, text) in [
        ("short.key", format!("ATREST-ROOT-KEY-V1:{}\n", &hex_key[..63])),
        ("stray.key", format!("ATREST-ROOT-KEY-V1:{}z\n", &hex_key)),
        ("noprefix.key", format!("{hex_key}\n")),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = checked(LocalRootKey::from_file(&p).unwrap_err());
        assert!(matches!(e, RootKeyError::Malformed(_)), "{name}: {e:?}");
    }
    // A well-formed key file readable by others is refused, without printing it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join("open.key");
        std::fs::write(&p, LocalRootKey::encode(&RootKey::from_bytes(TEST_KEY)).as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = checked(LocalRootKey::from_file(&p).unwrap_err());
        assert!(matches!(e, RootKeyError::InsecurePermissions { mode: 0o644, .. }), "{e:?}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(LocalRootKey::from_file(&p).unwrap().key_id(), root().key_id());
    }
    // Unwrap failures.
    let w = root().wrap(&[1; 32], b"aad").unwrap();
    checked(root().unwrap(&w, b"other aad").unwrap_err());
    checked(root().unwrap(&w[..10], b"aad").unwrap_err());
}

#[test]
fn record_and_lifecycle_errors_never_echo_secrets() {
    let k = Keyring::from_bytes(original(), root()).unwrap();
    let ctx = Context::new().with("v", TEST_KEY);
    let t = k.tenant("acme").unwrap();
    let sealed = t.seal(&TEST_KEY, &ctx).unwrap();
    let mut errors: Vec<String> = Vec::new();
    let mut push = |s: String| errors.push(s);
    push(format!("{:?}", checked(t.open(&sealed, &Context::new()).unwrap_err())));
    push(format!("{:?}", checked(t.open(&sealed[..40], &ctx).unwrap_err())));
    let mut bad = sealed.clone();
    bad[0] = 9;
    push(format!("{:?}", checked(t.open(&bad, &ctx).unwrap_err())));
    let mut v2 = sealed.clone();
    v2[2..4].copy_from_slice(&2u16.to_be_bytes());
    let e = checked(t.open(&v2, &ctx).unwrap_err());
    assert!(matches!(e, OpenError::Authentication | OpenError::KeyDisabled(_)), "{e:?}");
    let mut v1 = sealed.clone();
    v1[2..4].copy_from_slice(&1u16.to_be_bytes());
    checked(t.open(&v1, &ctx).unwrap_err());
    checked(k.tenant("umbrella").unwrap_err());
    checked(k.tenant("").unwrap_err());
    checked(k.set_state(MasterVersion::new(4), KeyState::Disabled).unwrap_err());
    checked(k.set_state(MasterVersion::new(1), KeyState::Enabled).unwrap_err());
    checked(k.set_state(MasterVersion::new(9), KeyState::Enabled).unwrap_err());
    checked(
        k.destroy(MasterVersion::new(3), DestroyConfirmation::data_under_this_version_is_lost(MasterVersion::new(2)))
            .unwrap_err(),
    );
    checked(k.reload().unwrap_err());
    assert!(!errors.is_empty());
}

// ---------------------------------------------------------------------------------------
// Modifications of the file.

fn kind(e: &KeyringError) -> &'static str {
    match e {
        KeyringError::NotAKeyring(_) => "NotAKeyring",
        KeyringError::Truncated(_) => "Truncated",
        KeyringError::Corrupted { .. } => "Corrupted",
        KeyringError::UnsupportedFormat(_) => "UnsupportedFormat",
        KeyringError::WrongRootKey { .. } => "WrongRootKey",
        KeyringError::Tampered(_) => "Tampered",
        KeyringError::Root(_) => "Root",
        _ => "other",
    }
}

/// Loads `bytes` (a modification of the original); returns the error kind, or "accepted"
/// when the load succeeded, in which case the keyring must be exactly the original one.
fn load_modified(bytes: &[u8], what: &str) -> &'static str {
    match load(bytes) {
        Err(e) => kind(&e),
        Ok(k) => {
            assert_eq!(k.to_bytes().unwrap(), original(), "{what}: accepted with different content");
            assert_eq!(k.id(), KEYRING.0.id());
            "accepted"
        }
    }
}

/// The byte range of the `mac <hex>` line's hex digits.
fn mac_hex_range() -> std::ops::Range<usize> {
    let text = std::str::from_utf8(original()).unwrap();
    let start = text.rfind("\nmac ").unwrap() + "\nmac ".len();
    start..text.len() - 1
}

#[test]
fn every_single_byte_change_is_rejected_or_changes_nothing() {
    let orig = original();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut checked_changes = 0;
    for i in 0..orig.len() {
        let b = orig[i];
        let mut replacements =
            vec![b ^ 0x01, b ^ 0x02, b ^ 0x20, b ^ 0x80, b'0', b'a', b'"', b'\n', b' ', b'}', 0, 0xff];
        replacements.sort_unstable();
        replacements.dedup();
        for r in replacements.into_iter().filter(|&r| r != b) {
            let mut bad = orig.to_vec();
            bad[i] = r;
            let k = load_modified(&bad, &format!("byte {i}: {b:#04x} -> {r:#04x}"));
            // The MAC must be lower-case hex, so not even a change of hex case is accepted.
            assert_ne!(k, "accepted", "byte {i}: {b:#04x} -> {r:#04x} accepted");
            *counts.entry(k).or_default() += 1;
            checked_changes += 1;
        }
    }
    println!("{} byte file, {checked_changes} single-byte changes: {counts:?}", orig.len());
    assert!(checked_changes > 10 * orig.len());
    // Every class of failure shows up somewhere in the file.
    for k in ["NotAKeyring", "Truncated", "Corrupted", "UnsupportedFormat", "WrongRootKey", "Tampered"] {
        assert!(counts.get(k).copied().unwrap_or(0) > 0, "no change produced {k}: {counts:?}");
    }
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    let orig = original();
    for n in 0..orig.len() {
        let e = load(&orig[..n]).unwrap_err();
        assert!(matches!(e, KeyringError::Truncated(_)), "cut at {n}: {e:?}");
    }
    println!("{} truncations all Truncated", orig.len());
}

#[test]
fn extensions_are_rejected() {
    let orig = original();
    for tail in [&b"\n"[..], b"x", b"mac 00\n", b"\n\n", b"{}\n", b" "] {
        let e = load(&[orig, tail].concat()).unwrap_err();
        assert!(!matches!(e, KeyringError::Root(_)), "{e:?}");
    }
    // A second copy appended.
    assert!(load(&[orig, orig].concat()).is_err());
}

#[test]
fn failure_classes_have_distinct_errors() {
    let orig = original();
    let text = std::str::from_utf8(orig).unwrap();

    let e = load(&orig[..orig.len() / 2]).unwrap_err();
    assert!(matches!(e, KeyringError::Truncated(_)), "{e:?}");

    // One JSON character edited (a digit of the revision): only the MAC can tell.
    let revision = KEYRING.0.status().revision;
    let edited = text.replacen(&format!("\"revision\":{revision}"), &format!("\"revision\":{}", revision + 1), 1);
    assert_ne!(edited, text);
    let e = load(edited.as_bytes()).unwrap_err();
    assert!(matches!(e, KeyringError::Tampered(_)), "{e:?}");
    // A state flipped from "disabled" to "enabled" is tampering too, not a valid change.
    let enabled = text.replacen("\"disabled\"", "\"enabled\"", 1);
    assert_ne!(enabled, text);
    assert!(matches!(load(enabled.as_bytes()).unwrap_err(), KeyringError::Tampered(_)));
    // A wrong MAC.
    let range = mac_hex_range();
    let mut bad_mac = orig.to_vec();
    bad_mac[range.start] = if bad_mac[range.start] == b'0' { b'1' } else { b'0' };
    assert!(matches!(load(&bad_mac).unwrap_err(), KeyringError::Tampered(_)));

    let other: Arc<dyn RootKeyProvider> = Arc::new(LocalRootKey::generate().unwrap());
    let e = checked(Keyring::from_bytes(orig, other.clone()).unwrap_err());
    match &e {
        KeyringError::WrongRootKey { expected, given } => {
            assert_eq!(*expected, root().key_id());
            assert_eq!(*given, other.key_id());
        }
        _ => panic!("{e:?}"),
    }

    for not in [&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], b"hello, world", b"ATREST-ROOT-KEY-V1:00", b"{\"keyring_id\":1}"]
    {
        let e = load(not).unwrap_err();
        assert!(matches!(e, KeyringError::NotAKeyring(_)), "{e:?}");
    }
    let v2 = text.replacen("atrest-keyring v1", "atrest-keyring v2", 1);
    assert!(matches!(load(v2.as_bytes()).unwrap_err(), KeyringError::UnsupportedFormat(2)));
    let (first, rest) = text.split_once('\n').unwrap();
    let mac_line = rest.rsplit_once('\n').unwrap().0.rsplit_once('\n').unwrap().1;
    let not_json = format!("{first}\nnot json\n{mac_line}\n");
    assert!(matches!(load(not_json.as_bytes()).unwrap_err(), KeyringError::Corrupted { .. }));
    let unknown_field = text.replacen("{\"keyring_id\"", "{\"extra\":1,\"keyring_id\"", 1);
    assert!(matches!(load(unknown_field.as_bytes()).unwrap_err(), KeyringError::Corrupted { .. }));
}

#[test]
fn round_trips_through_bytes_and_files() {
    let (k, orig) = &*KEYRING;
    let again = load(orig).unwrap();
    assert_eq!(again.to_bytes().unwrap(), *orig);
    assert_eq!(again.id(), k.id());
    assert_eq!(serde_json::to_value(again.status()).unwrap(), serde_json::to_value(k.status()).unwrap());
    // Keys survive: a record sealed before opens after the round trip; the shred and the
    // tenant generation too.
    let ctx = Context::new().with("row", "1");
    let sealed = k.tenant("acme").unwrap().seal(b"kept", &ctx).unwrap();
    assert_eq!(again.tenant("acme").unwrap().open(&sealed, &ctx).unwrap(), b"kept");
    assert!(matches!(again.tenant("umbrella"), Err(KeyringError::TenantShredded { .. })));
    assert_eq!(again.tenant("initech").unwrap().key_version().generation, 1);

    // Through a file: create, open, the bytes on disk are what to_bytes gives.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    let created = Keyring::create(&p, LocalRootKey::new(RootKey::from_bytes(TEST_KEY))).unwrap();
    created.rotate().unwrap();
    let on_disk = std::fs::read(&p).unwrap();
    assert_eq!(created.to_bytes().unwrap(), on_disk);
    let opened = Keyring::open(&p, LocalRootKey::new(RootKey::from_bytes(TEST_KEY))).unwrap();
    assert_eq!(opened.to_bytes().unwrap(), on_disk);
    assert_eq!(Keyring::from_bytes(&on_disk, root()).unwrap().to_bytes().unwrap(), on_disk);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_byte_change_is_rejected_or_changes_nothing(at in any::<Index>(), value in any::<u8>()) {
        let mut bad = original().to_vec();
        let i = at.index(bad.len());
        prop_assume!(bad[i] != value);
        bad[i] = value;
        prop_assert_ne!(load_modified(&bad, &format!("byte {i} -> {value:#04x}")), "accepted");
    }

    #[test]
    fn any_span_overwritten_is_rejected(at in any::<Index>(), junk in proptest::collection::vec(any::<u8>(), 2..32)) {
        let mut bad = original().to_vec();
        let i = at.index(bad.len());
        let end = (i + junk.len()).min(bad.len());
        prop_assume!(bad[i..end] != junk[..end - i]);
        bad[i..end].copy_from_slice(&junk[..end - i]);
        let what = format!("bytes {i}..{end}");
        prop_assert_ne!(load_modified(&bad, &what), "accepted");
    }

    #[test]
    fn any_truncation_and_any_tail_is_rejected(at in any::<Index>(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let n = at.index(original().len());
        let bytes = [&original()[..n], &tail].concat();
        prop_assume!(bytes != original());
        prop_assert_ne!(load_modified(&bytes, &format!("cut at {n} + {} bytes", tail.len())), "accepted");
    }
}
