//! Fork safety of the per-thread nonce prefix buffer: a forked child inherits a copy of its
//! parent's buffer of unused prefixes, and must discard it rather than hand out the prefixes
//! the parent will hand out next.
//!
//! The only test in this binary, so that `fork` happens with no other test thread running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::{Context, Keyring, LocalRootKey};

#[cfg(unix)]
#[test]
fn forked_child_does_not_reuse_the_parents_buffered_prefixes() {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let ctx = Context::new().with("row", "1");
    // The first new tenant key fills this thread's buffer and takes its first prefix.
    let first = keyring.tenant("t-0").unwrap().seal(b"parent", &ctx).unwrap();
    // The 96-bit nonce prefix of a record: bytes 6..18, after the 6-byte header.
    let prefix = |r: &[u8]| -> [u8; 12] { r[6..18].try_into().unwrap() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.bin");

    match fork::fork().unwrap() {
        fork::Fork::Child => {
            // New tenant keys in the child: their prefixes would be the parent's next ones
            // if the inherited buffer were used. No panics here: report through the exit code.
            let mut out = Vec::new();
            let mut code = 0;
            for i in 1..=4 {
                match keyring.tenant(&format!("t-{i}")).map(|t| t.seal(b"child", &ctx)) {
                    Ok(Ok(r)) => out.extend_from_slice(&r[6..18]),
                    _ => code = 2,
                }
            }
            if code == 0 && std::fs::write(&path, out).is_err() {
                code = 3;
            }
            std::process::exit(code);
        }
        fork::Fork::Parent(pid) => {
            let status = fork::waitpid(pid).unwrap();
            assert_eq!(status, 0, "the child failed (raw wait status {status})");
        }
    }

    let child = std::fs::read(&path).unwrap();
    assert_eq!(child.len(), 4 * 12);
    let child: Vec<[u8; 12]> = child.chunks(12).map(|c| c.try_into().unwrap()).collect();
    let parent: Vec<[u8; 12]> =
        (1..=4).map(|i| prefix(&keyring.tenant(&format!("t-{i}")).unwrap().seal(b"parent", &ctx).unwrap())).collect();
    for p in &parent {
        assert!(!child.contains(p), "the child handed out a prefix its parent handed out too");
    }
    assert!(!child.contains(&prefix(&first)));
    // All distinct within each process too.
    let mut all = [child, parent].concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 8);
}
