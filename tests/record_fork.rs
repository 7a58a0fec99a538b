//! Fork safety of the record sealer: a forked child never seals under its parent's nonce
//! prefix (it would share the parent's thread RNG stream, so suffixes could repeat under
//! the same derived key), while the parent keeps its prefix.
//!
//! The only test in this binary, so that `fork` happens with no other test thread running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::{Context, Keyring, LocalRootKey};

/// The 96-bit nonce prefix of a sealed record (bytes 6..18: after the 6-byte header).
fn prefix(record: &[u8]) -> [u8; 12] {
    record[6..18].try_into().unwrap()
}

#[cfg(unix)]
#[test]
fn forked_child_draws_a_new_prefix_and_parent_keeps_its_own() {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = Context::new().with("row", "1");
    let before = tenant.seal(b"parent, before the fork", &ctx).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.bin");

    match fork::fork().unwrap() {
        fork::Fork::Child => {
            // No panics in the child: report through the exit code.
            let code = match (tenant.seal(b"child 1", &ctx), tenant.seal(b"child 2", &ctx)) {
                (Ok(a), Ok(b)) => match std::fs::write(&path, [a, b].concat()) {
                    Ok(()) => 0,
                    Err(_) => 3,
                },
                _ => 2,
            };
            std::process::exit(code);
        }
        fork::Fork::Parent(pid) => {
            let status = fork::waitpid(pid).unwrap();
            assert_eq!(status, 0, "the child failed (raw wait status {status})");
        }
    }

    let child = std::fs::read(&path).unwrap();
    let (c1, c2) = child.split_at(7 + atrest::RECORD_OVERHEAD);
    let after = tenant.seal(b"parent, after the fork", &ctx).unwrap();
    assert_ne!(prefix(c1), prefix(&before), "the child sealed under its parent's prefix");
    assert_eq!(prefix(c1), prefix(c2), "the child keeps the prefix it drew");
    assert_eq!(prefix(&after), prefix(&before), "the parent's prefix changed without a fork");
    // Everything opens in the parent.
    assert_eq!(tenant.open(c1, &ctx).unwrap(), b"child 1");
    assert_eq!(tenant.open(c2, &ctx).unwrap(), b"child 2");
    assert_eq!(tenant.open(&after, &ctx).unwrap(), b"parent, after the fork");
}
