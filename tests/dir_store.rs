//! The directory store against the same conformance checks as the S3 store
//! (`tests/common/store_conformance.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses common::store_conformance; the rest of the kit is unused here")]
mod common;

use atrest::{DirStore, ObjectStore};
use common::store_conformance::check_store;

#[test]
fn directory_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    check_store(&DirStore::new(dir.path()).unwrap(), "scope");
    // A second store on a sub-directory sees only its own objects.
    let sub = DirStore::new(dir.path().join("other")).unwrap();
    assert!(sub.list("").unwrap().is_empty());
}
