//! Golden files: a keyring and sealed records made once (by `examples/make_golden.rs`) and
//! committed in `tests/data/golden/`, opened byte-for-byte here on every run, plus `fail_*`
//! files that must be rejected with the documented error. See the README.md there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::golden; the rest of the shared kit is unused here")]
mod common;

use std::sync::Arc;

use atrest::{
    DestroyConfirmation, KeyState, KeyVersion, Keyring, KeyringError, LocalRootKey, MasterVersion, OpenError,
    RECORD_OVERHEAD, RootKeyProvider, Suite, record_info,
};
use common::golden as g;

fn root() -> Arc<dyn RootKeyProvider> {
    Arc::new(g::root())
}

fn keyring() -> Keyring {
    Keyring::from_bytes(&g::read(g::KEYRING_FILE), root()).unwrap()
}

fn open_as(k: &Keyring, tenant: &str, file: &str, ctx: &atrest::Context) -> Result<Vec<u8>, OpenError> {
    k.tenant(tenant).unwrap().open(&g::read(file), ctx)
}

#[test]
fn folder_holds_exactly_the_listed_files() {
    let mut listed: Vec<String> = g::all_files().iter().map(|s| s.to_string()).collect();
    listed.push("README.md".into());
    listed.sort();
    let mut present: Vec<String> =
        std::fs::read_dir(g::dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    present.sort();
    assert_eq!(present, listed, "every golden file must be listed in tests/common/golden.rs and checked");
    for f in g::all_files() {
        assert!(!g::read(f).is_empty(), "{f} is empty");
    }
}

#[test]
fn root_key_file_is_a_key_file_for_the_keyring() {
    let text = String::from_utf8(g::read(g::ROOT_KEY_FILE)).unwrap();
    assert!(text.starts_with("ATREST-ROOT-KEY-V1:"));
    assert_eq!(text.trim_end().len(), "ATREST-ROOT-KEY-V1:".len() + 64);
    let bytes = g::root_key_bytes();
    // The crate's own encoder writes exactly this text.
    assert_eq!(*LocalRootKey::encode(&atrest::RootKey::from_bytes(bytes)), text);
    // A 0600 copy loads through from_file as the same key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        std::fs::write(&p, &text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(LocalRootKey::from_file(&p).unwrap().key_id(), g::root().key_id());
    }
    assert_eq!(keyring().status().root_key_id, g::root().key_id());
}

#[test]
fn keyring_loads_and_re_encodes_byte_for_byte() {
    let bytes = g::read(g::KEYRING_FILE);
    let k = Keyring::from_bytes(&bytes, root()).unwrap();
    assert_eq!(k.to_bytes().unwrap(), bytes, "re-encoding the golden keyring changed its bytes");

    // And from the committed path (reading only: a load never writes).
    let from_path = Keyring::open(&g::dir().join(g::KEYRING_FILE), g::root()).unwrap();
    assert_eq!(from_path.id(), k.id());
    assert_eq!(from_path.to_bytes().unwrap(), bytes);

    let s = k.status();
    assert_eq!(s.primary, MasterVersion::new(2));
    assert_eq!(k.primary(), MasterVersion::new(2));
    let masters: Vec<_> = s.masters.iter().map(|m| (m.version.get(), m.state)).collect();
    assert_eq!(masters, [(1, KeyState::Enabled), (2, KeyState::Primary)]);
    let tenants: Vec<_> = s.tenants.iter().map(|t| (t.id.as_str(), t.generation, t.shred.is_some())).collect();
    assert_eq!(tenants, [(g::ROTATED_TENANT, 1, false)]);
    assert_eq!(s.revision, 2);
}

#[test]
fn records_open_to_the_known_plaintext() {
    let k = keyring();
    for r in g::RECORDS {
        let sealed = g::read(r.file);
        let version = KeyVersion { master: MasterVersion::new(r.master), generation: r.generation };

        // The header, byte for byte: format 1, suite id, master and generation big-endian.
        let [m0, m1] = r.master.to_be_bytes();
        let [g0, g1] = r.generation.to_be_bytes();
        assert_eq!(sealed[..6], [1, r.suite.id(), m0, m1, g0, g1], "{}: header", r.file);
        assert_eq!(sealed.len(), r.plaintext.len() + RECORD_OVERHEAD, "{}", r.file);

        let info = record_info(&sealed).unwrap();
        assert_eq!(info.format_version, 1);
        assert_eq!(info.suite, r.suite, "{}", r.file);
        assert_eq!(info.key_version, version, "{}", r.file);
        assert_eq!(info.plaintext_len, r.plaintext.len());
        assert_eq!(record_info(&sealed).unwrap().key_version, version);

        let tenant = k.tenant(r.tenant).unwrap();
        assert_eq!(tenant.open(&sealed, &g::context()).unwrap(), r.plaintext, "{}", r.file);
        // Bound to its tenant and context.
        let other = if r.tenant == g::TENANT { g::OTHER_TENANT } else { g::TENANT };
        assert!(matches!(k.tenant(other).unwrap().open(&sealed, &g::context()), Err(OpenError::Authentication)));
        assert!(matches!(tenant.open(&sealed, &g::other_context()), Err(OpenError::Authentication)));
        assert!(matches!(tenant.open(&sealed, &atrest::Context::new()), Err(OpenError::Authentication)));
    }
    // One record under each master version, and one per suite.
    for m in [1, 2] {
        assert!(g::RECORDS.iter().any(|r| r.master == m));
    }
    for s in [Suite::XAes256Gcm, Suite::XChaCha20Poly1305] {
        assert!(g::RECORDS.iter().any(|r| r.suite == s));
    }
}

#[test]
fn records_follow_the_key_states() {
    // In memory only: from_bytes keyrings have no file to write to.
    let k = keyring();
    let v1 = g::read(g::RECORDS[0].file);
    assert_eq!(g::RECORDS[0].master, 1);
    let acme = k.tenant(g::TENANT).unwrap();
    k.set_state(MasterVersion::new(1), KeyState::Disabled).unwrap();
    assert!(matches!(acme.open(&v1, &g::context()), Err(OpenError::KeyDisabled(v)) if v == MasterVersion::new(1)));
    k.set_state(MasterVersion::new(1), KeyState::Enabled).unwrap();
    assert_eq!(acme.open(&v1, &g::context()).unwrap(), g::RECORDS[0].plaintext);
    let v1n = MasterVersion::new(1);
    k.set_state(v1n, KeyState::Disabled).unwrap();
    k.destroy(v1n, DestroyConfirmation::data_under_this_version_is_lost(v1n).skip_grace_period()).unwrap();
    assert!(matches!(acme.open(&v1, &g::context()), Err(OpenError::KeyDestroyed(v)) if v == v1n));
    // v2 records are untouched.
    assert_eq!(acme.open(&g::read(g::RECORDS[1].file), &g::context()).unwrap(), g::RECORDS[1].plaintext);
    // The committed file is unchanged by any of this.
    assert_eq!(keyring().status().masters.len(), 2);
}

#[test]
fn fail_keyring_truncated() {
    let e = Keyring::from_bytes(&g::read(g::FAIL_KEYRING_TRUNCATED), root()).unwrap_err();
    assert!(matches!(e, KeyringError::Truncated(_)), "{e:?}");
    let good = g::read(g::KEYRING_FILE);
    assert!(good.starts_with(&g::read(g::FAIL_KEYRING_TRUNCATED)), "the fail file is a prefix of the keyring");
}

#[test]
fn fail_keyring_tampered() {
    let bad = g::read(g::FAIL_KEYRING_TAMPERED);
    let good = g::read(g::KEYRING_FILE);
    assert_eq!(bad.len(), good.len());
    assert_eq!(bad.iter().zip(&good).filter(|(a, b)| a != b).count(), 1, "exactly one character differs");
    let e = Keyring::from_bytes(&bad, root()).unwrap_err();
    assert!(matches!(e, KeyringError::Tampered(_)), "{e:?}");
}

#[test]
fn fail_keyring_other_root() {
    let e = Keyring::from_bytes(&g::read(g::FAIL_KEYRING_OTHER_ROOT), root()).unwrap_err();
    assert!(matches!(&e, KeyringError::WrongRootKey { given, .. } if *given == g::root().key_id()), "{e:?}");
    // And the golden keyring under any other root key.
    let other: Arc<dyn RootKeyProvider> = Arc::new(LocalRootKey::generate().unwrap());
    let e = Keyring::from_bytes(&g::read(g::KEYRING_FILE), other).unwrap_err();
    assert!(matches!(e, KeyringError::WrongRootKey { .. }), "{e:?}");
}

#[test]
fn fail_record_bitflip() {
    let bad = g::read(g::FAIL_RECORD_BITFLIP);
    let good = g::read(g::RECORDS[1].file);
    let (at, mask) = g::BITFLIP_AT;
    assert_eq!(bad[at] ^ good[at], mask);
    assert_eq!(bad.iter().zip(&good).filter(|(a, b)| a != b).count(), 1);
    let r = open_as(&keyring(), g::TENANT, g::FAIL_RECORD_BITFLIP, &g::context());
    assert!(matches!(r, Err(OpenError::Authentication)), "{r:?}");
}

#[test]
fn fail_record_truncated() {
    let bad = g::read(g::FAIL_RECORD_TRUNCATED);
    let good = g::read(g::RECORDS[1].file);
    assert_eq!(bad.len() + 1, good.len());
    assert!(good.starts_with(&bad));
    let r = open_as(&keyring(), g::TENANT, g::FAIL_RECORD_TRUNCATED, &g::context());
    assert!(matches!(r, Err(OpenError::Authentication)), "{r:?}");
}

#[test]
fn fail_record_other_tenant() {
    let k = keyring();
    let r = open_as(&k, g::TENANT, g::FAIL_RECORD_OTHER_TENANT, &g::context());
    assert!(matches!(r, Err(OpenError::Authentication)), "{r:?}");
    // It is otherwise a good record: it opens for the tenant it was sealed for.
    assert_eq!(
        open_as(&k, g::OTHER_TENANT, g::FAIL_RECORD_OTHER_TENANT, &g::context()).unwrap(),
        g::RECORDS[1].plaintext
    );
}

#[test]
fn fail_record_other_context() {
    let k = keyring();
    let r = open_as(&k, g::TENANT, g::FAIL_RECORD_OTHER_CONTEXT, &g::context());
    assert!(matches!(r, Err(OpenError::Authentication)), "{r:?}");
    assert_eq!(
        open_as(&k, g::TENANT, g::FAIL_RECORD_OTHER_CONTEXT, &g::other_context()).unwrap(),
        g::RECORDS[1].plaintext
    );
}

#[test]
fn fail_record_names_v2() {
    let bad = g::read(g::FAIL_RECORD_NAMES_V2);
    let v1 = g::read(g::RECORDS[0].file);
    assert_eq!(bad[2..4], [0, 2]);
    assert_eq!((&bad[..2], &bad[4..]), (&v1[..2], &v1[4..]), "only the master version differs");
    assert_eq!(record_info(&bad).unwrap().key_version.master, MasterVersion::new(2));
    let r = open_as(&keyring(), g::TENANT, g::FAIL_RECORD_NAMES_V2, &g::context());
    assert!(matches!(r, Err(OpenError::Authentication)), "{r:?}");
}
