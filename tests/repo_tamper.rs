//! What verify-chain names when someone who can write the repository (but holds no key)
//! changes it: each case asserts the exact problem, not only a failure. Also: the tail
//! rollback that the repository alone cannot see, and that a replica refuses; concurrent
//! writers that never fork the chain; an unfinished stream that leaves no object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Read;
use std::path::{Path, PathBuf};

use atrest::{
    BackupContext, BackupOptions, CatalogEntry, Keyring, LocalRootKey, Problem, RepoError, Repository, RestorePoint,
    Tenant,
};

/// A repository with a full backup s0 and incrementals s1..s5 of equal size.
fn setup() -> (tempfile::TempDir, Repository, Tenant, Vec<CatalogEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open_dir(dir.path()).unwrap();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    for i in 0..6u64 {
        let snap = format!("s{i}");
        let ctx = if i == 0 {
            BackupContext::full(&snap)
        } else {
            BackupContext::incremental(&snap, &format!("s{}", i - 1), i)
        };
        let data = format!("data of hour {i}, the same length each hour");
        let opts = BackupOptions::default().created_at(1_000 + i);
        repo.store_backup(&t, &ctx, opts, data.as_bytes()).unwrap();
    }
    let entries = repo.list(&t).unwrap();
    assert_eq!(entries.len(), 6);
    assert!(repo.verify_chain(&t).unwrap().problems.is_empty());
    (dir, repo, t, entries)
}

fn file(dir: &Path, key: &str) -> PathBuf {
    dir.join(key)
}

fn catalog(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("tenants/61636d65/catalog/{index:020}"))
}

fn problems(repo: &Repository, t: &Tenant) -> Vec<Problem> {
    let r = repo.verify_chain(t).unwrap();
    assert!(!r.is_ok());
    r.problems
}

#[test]
fn deleted_incremental_stream() {
    let (dir, repo, t, e) = setup();
    std::fs::remove_file(file(dir.path(), &e[3].object)).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(p, [Problem::MissingStream { index: 3, snapshot: "s3".into() }]);
}

#[test]
fn stream_replaced_by_another_of_the_same_tenant() {
    let (dir, repo, t, e) = setup();
    std::fs::copy(file(dir.path(), &e[4].object), file(dir.path(), &e[2].object)).unwrap();
    assert_eq!(problems(&repo, &t), [Problem::StreamReplaced { index: 2, snapshot: "s2".into() }]);
    // A restore through s2 refuses before releasing anything of s2.
    let mut seen = Vec::new();
    let err = repo
        .restore(&t, &RestorePoint::Snapshot("s3".into()), |e, _| {
            seen.push(e.snapshot_id.clone());
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, RepoError::StreamMismatch { ref snapshot, .. } if snapshot == "s2"), "{err}");
    assert!(err.is_authentication());
    assert_eq!(seen, ["s0", "s1"]);
}

#[test]
fn truncated_object() {
    let (dir, repo, t, e) = setup();
    let path = file(dir.path(), &e[5].object);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(p, [Problem::Truncated { index: 5, snapshot: "s5".into(), expected: len, found: len - 10 }]);
}

#[test]
fn reordered_catalog() {
    let (dir, repo, t, _) = setup();
    let (a, b) = (std::fs::read(catalog(dir.path(), 2)).unwrap(), std::fs::read(catalog(dir.path(), 3)).unwrap());
    std::fs::write(catalog(dir.path(), 2), b).unwrap();
    std::fs::write(catalog(dir.path(), 3), a).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(
        p,
        [
            Problem::Reordered { index: 2, claims: 3 },
            Problem::Reordered { index: 3, claims: 2 },
            // Entries out of place are not used: the chain of s4 has lost its parent.
            Problem::ParentMissing { index: 4, snapshot: "s4".into(), parent: "s3".into() },
        ]
    );
}

#[test]
fn entry_removed_from_the_middle() {
    let (dir, repo, t, _) = setup();
    std::fs::remove_file(catalog(dir.path(), 3)).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(
        p,
        [
            Problem::EntryMissing { index: 3 },
            Problem::ParentMissing { index: 4, snapshot: "s4".into(), parent: "s3".into() },
            Problem::Orphan { object: unnamed_stream(&dir) },
        ]
    );
}

/// The object key of the one stream that no remaining catalog entry names.
fn unnamed_stream(dir: &tempfile::TempDir) -> String {
    let streams = dir.path().join("tenants/61636d65/streams");
    let named: Vec<String> = std::fs::read_dir(dir.path().join("tenants/61636d65/catalog"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .flat_map(|b| {
            std::fs::read_dir(&streams)
                .unwrap()
                .map(|s| format!("tenants/61636d65/streams/{}", s.unwrap().file_name().to_string_lossy()))
                .filter(move |k| b.windows(k.len()).any(|w| w == k.as_bytes()))
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir(&streams)
        .unwrap()
        .map(|s| format!("tenants/61636d65/streams/{}", s.unwrap().file_name().to_string_lossy()))
        .find(|k| !named.contains(k))
        .unwrap()
}

#[test]
fn bad_mac() {
    let (dir, repo, t, _) = setup();
    let path = catalog(dir.path(), 1);
    let mut b = std::fs::read(&path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    std::fs::write(&path, b).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(
        p,
        [
            Problem::BadEntry { index: 1 },
            Problem::ParentMissing { index: 2, snapshot: "s2".into(), parent: "s1".into() }
        ]
    );
    // Nothing can be appended after an unauthentic tail either.
    std::fs::copy(&path, catalog(dir.path(), 6)).unwrap();
    let err = repo.store_backup(&t, &BackupContext::full("s6"), BackupOptions::default(), &b"x"[..]).unwrap_err();
    assert!(matches!(err, RepoError::CatalogDamaged { index: 6, .. }), "{err}");
}

#[test]
fn replaced_entry_breaks_the_next_link() {
    // An authentic entry cannot be forged, but an old copy of one can be put back: here
    // entry 2 of another repository of the same tenant, at the same index.
    let (dir, repo, t, _) = setup();
    let other = tempfile::tempdir().unwrap();
    let r2 = Repository::open_dir(other.path()).unwrap();
    for i in 0..3u64 {
        let ctx = if i == 0 {
            BackupContext::full("x0")
        } else {
            BackupContext::incremental(&format!("x{i}"), &format!("x{}", i - 1), i)
        };
        r2.store_backup(&t, &ctx, BackupOptions::default(), &b"other"[..]).unwrap();
    }
    std::fs::copy(catalog(other.path(), 2), catalog(dir.path(), 2)).unwrap();
    let p = problems(&repo, &t);
    assert!(p.contains(&Problem::BrokenLink { index: 2 }), "{p:?}");
    assert!(p.contains(&Problem::BrokenLink { index: 3 }), "{p:?}");
}

#[test]
fn gap_in_sequence_and_duplicate_snapshot() {
    // Stored as given (a writer with keys may make mistakes): verify-chain names them.
    let (_dir, repo, t, _) = setup();
    let opts = BackupOptions::default();
    repo.store_backup(&t, &BackupContext::incremental("s7", "s5", 7), opts, &b"x"[..]).unwrap();
    repo.store_backup(&t, &BackupContext::full("s3"), opts, &b"x"[..]).unwrap();
    let p = problems(&repo, &t);
    assert_eq!(
        p,
        [
            Problem::GapInSequence { index: 6, snapshot: "s7".into(), expected: 6, found: 7 },
            Problem::DuplicateSnapshot { index: 7, snapshot: "s3".into() },
        ]
    );
    // A restore at s7 refuses the broken chain.
    let err = repo.restore_plan(&t, &RestorePoint::Snapshot("s7".into())).unwrap_err();
    assert!(matches!(err, RepoError::BrokenChain { .. }), "{err}");
}

#[test]
fn tail_rollback_is_invisible_alone_but_a_replica_refuses_it() {
    let (dir, repo, t, e) = setup();
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Repository::open_dir(replica_dir.path()).unwrap();
    assert!(repo.replicate(&t, &replica).unwrap().verify.is_ok());
    // Delete the newest entry and its stream: the repository alone still verifies.
    std::fs::remove_file(catalog(dir.path(), 5)).unwrap();
    std::fs::remove_file(file(dir.path(), &e[5].object)).unwrap();
    assert!(repo.verify_chain(&t).unwrap().problems.is_empty());
    let err = repo.replicate(&t, &replica).unwrap_err();
    assert!(matches!(err, RepoError::ReplicaDiverged { index: 5, .. }), "{err}");
}

#[test]
fn concurrent_writers_never_fork_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open_dir(dir.path()).unwrap();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    std::thread::scope(|s| {
        for w in 0..4 {
            let (repo, t) = (&repo, &t);
            s.spawn(move || {
                for i in 0..5 {
                    let ctx = BackupContext::full(&format!("w{w}-{i}"));
                    repo.store_backup(t, &ctx, BackupOptions::default().threads(1), &b"x"[..]).unwrap();
                }
            });
        }
    });
    let list = repo.list(&t).unwrap();
    assert_eq!(list.iter().map(|e| e.index).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    assert!(repo.verify_chain(&t).unwrap().problems.is_empty());
}

#[test]
fn an_unfinished_stream_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open_dir(dir.path()).unwrap();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    let data = vec![7u8; 3 << 20];
    let err = repo.store_backup_if(&t, &BackupContext::full("s0"), BackupOptions::default(), &data[..], |_| false);
    assert!(err.is_err());
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 > 2 << 20 {
                return Err(std::io::Error::other("the dump failed"));
            }
            buf.fill(1);
            self.0 += buf.len();
            Ok(buf.len())
        }
    }
    assert!(repo.store_backup(&t, &BackupContext::full("s0"), BackupOptions::default(), Broken(0)).is_err());
    let files: Vec<_> = walk(dir.path());
    assert!(files.is_empty(), "{files:?}");
    assert!(repo.list(&t).unwrap().is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
