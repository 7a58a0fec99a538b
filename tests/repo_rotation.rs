//! Catalog entries across key rotations: each entry keeps its key version, so a catalog
//! written before `keyring rotate` and `tenant rotate` still verifies and restores after
//! them; a disabled version makes its entries unverifiable, named as such.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::{BackupContext, BackupOptions, KeyState, Keyring, LocalRootKey, Problem, Repository, RestorePoint};

#[test]
fn entries_verify_after_rotations_and_name_a_disabled_version() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open_dir(dir.path()).unwrap();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let store = |i: u64| {
        let t = keyring.tenant("acme").unwrap();
        let ctx = if i == 0 {
            BackupContext::full("s0")
        } else {
            BackupContext::incremental(&format!("s{i}"), &format!("s{}", i - 1), i)
        };
        repo.store_backup(&t, &ctx, BackupOptions::default(), format!("hour {i}\n").as_bytes()).unwrap();
    };
    store(0);
    let v1 = keyring.tenant("acme").unwrap().key_version();
    let v2 = keyring.rotate().unwrap();
    store(1);
    keyring.rotate_tenant("acme").unwrap();
    store(2);
    let t = keyring.tenant("acme").unwrap();
    let versions: Vec<String> = repo.list(&t).unwrap().iter().map(|e| e.key_version.to_string()).collect();
    assert_eq!(versions, [v1.to_string(), format!("{v2}/g0"), format!("{v2}/g1")]);
    let report = repo.verify_chain(&t).unwrap();
    assert_eq!(report.problems, []);
    assert_eq!(report.streams_verified, 3);
    let mut restored = Vec::new();
    repo.restore(&t, &RestorePoint::Snapshot("s2".into()), |_, r| r.read_to_end(&mut restored).map(drop)).unwrap();
    assert_eq!(restored, b"hour 0\nhour 1\nhour 2\n");

    // The first master version disabled: its entry (and stream) can no longer be checked.
    keyring.set_state(v1.master, KeyState::Disabled).unwrap();
    let t = keyring.tenant("acme").unwrap();
    let p = repo.verify_chain(&t).unwrap().problems;
    assert_eq!(p[0], Problem::KeyUnavailable { index: 0, version: v1 });
    assert!(p.contains(&Problem::ParentMissing { index: 1, snapshot: "s1".into(), parent: "s0".into() }), "{p:?}");
}
