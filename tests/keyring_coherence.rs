//! Keyring coherence across processes with the file store: changes made by one process reach
//! long-lived worker processes within the staleness bound (measured: p50/p99/max printed),
//! and an older or foreign keyring file written back in place is refused by running handles
//! and, with a revision anchor, by a fresh open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::path::Path;
use std::time::Duration;

use atrest::{
    Context, DEFAULT_STALENESS, Keyring, KeyringError, KeyringLocation, KeyringOptions, LocalRootKey, MasterVersion,
    record_info,
};

/// The worker role: does nothing unless started by a test as a worker process.
#[test]
fn fleet_child() {
    fleet::child_main();
}

fn root(path: &Path) -> LocalRootKey {
    LocalRootKey::from_file(path).unwrap()
}

#[test]
fn file_store_changes_reach_every_process_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.key");
    LocalRootKey::generate_file(&root_path).unwrap();
    let path = dir.path().join("keyring.atrk");
    Keyring::create(&path, root(&root_path)).unwrap();
    let latencies = fleet::propagation(path.to_str().unwrap(), dir.path(), &root_path, DEFAULT_STALENESS);
    fleet::report("file store", &latencies, DEFAULT_STALENESS);
}

#[test]
fn file_rollback_and_substitution_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.key");
    LocalRootKey::generate_file(&root_path).unwrap();
    let path = dir.path().join("keyring.atrk");
    let loc = KeyringLocation::File(path.clone());
    let anchor = dir.path().join("anchor");
    let opts = KeyringOptions::default().staleness(Duration::from_millis(100)).revision_anchor(&anchor);
    let k = Keyring::create_at(&loc, root(&root_path), opts.clone()).unwrap();
    let old = dir.path().join("old.atrk");
    std::fs::copy(&path, &old).unwrap();
    assert_eq!(k.rotate().unwrap(), MasterVersion::new(2));
    let acme = k.tenant("acme").unwrap();
    let ctx = Context::new().with("row", "1");

    // An authentic but older document is written back in place.
    std::fs::copy(&old, &path).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(k.primary(), MasterVersion::new(2), "the running handle keeps its newer state");
    assert_eq!(record_info(&acme.seal(b"x", &ctx).unwrap()).unwrap().key_version.master, MasterVersion::new(2));
    assert!(matches!(k.reload(), Err(KeyringError::RolledBack { seen: 1, offered: 0 })));
    assert!(matches!(k.rotate(), Err(KeyringError::RolledBack { .. })), "no change builds on the old document");
    // A fresh open with the anchor refuses it too; without an anchor it cannot know.
    let fresh = Keyring::open_at(&loc, root(&root_path), opts.clone());
    assert!(matches!(fresh, Err(KeyringError::RolledBack { seen: 1, offered: 0 })), "{fresh:?}");
    assert_eq!(Keyring::open_at(&loc, root(&root_path), KeyringOptions::default()).unwrap().status().revision, 0);

    // Another keyring under the same root key, at the same path.
    let other = dir.path().join("other.atrk");
    Keyring::create(&other, root(&root_path)).unwrap();
    std::fs::copy(&other, &path).unwrap();
    assert!(matches!(k.reload(), Err(KeyringError::Substituted { .. })));
    assert!(matches!(Keyring::open_at(&loc, root(&root_path), opts), Err(KeyringError::Substituted { .. })));
    assert_eq!(k.primary(), MasterVersion::new(2));
}
