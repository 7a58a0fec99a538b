//! Crash safety of `rewrap_backup_header`: a process that rotates the tenant and rewraps a
//! backup header in a loop is killed with SIGKILL at many points. After every kill the backup
//! must verify with the keyring on disk, its chunk bytes must be untouched, and its header must
//! be the old one or a newer complete one. A later rewrap recovers any journal left behind.
//!
//! The child process is this test binary itself, re-run with `ATREST_REWRAP_CHILD` set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::Child;

use atrest::{
    BACKUP_HEADER_LEN, BackupContext, BackupOptions, Keyring, LocalRootKey, RootKey, encrypt_backup, inspect_backup,
    rewrap_backup_header, verify_backup,
};
use common::child;

const ROOT_ENV: &str = "ATREST_REWRAP_ROOT";
/// Set in the child process (which rotates and rewraps until killed).
const CHILD_ENV: &str = "ATREST_REWRAP_CHILD";

fn root_key() -> RootKey {
    RootKey::from_bytes([0x24; 32])
}

fn snapshot() -> BackupContext {
    BackupContext::full("nightly-2026-11-22")
}

/// One round of the child's loop: a new tenant generation, then a rewrap to it.
fn rotate_and_rewrap(k: &Keyring, backup: &Path) {
    k.rotate_tenant("acme").unwrap();
    let t = k.tenant("acme").unwrap();
    let v = rewrap_backup_header(&t, backup).unwrap();
    assert_eq!(v, t.key_version());
}

/// Child entry point (with `ATREST_REWRAP_CHILD`), or an in-process check of the same loop.
#[test]
fn rewrap_loop() {
    if child::role(CHILD_ENV).is_some() {
        let keyring = PathBuf::from(std::env::var("ATREST_REWRAP_KEYRING").unwrap());
        let backup = PathBuf::from(std::env::var("ATREST_REWRAP_BACKUP").unwrap());
        let k = Keyring::open(&keyring, LocalRootKey::from_env(ROOT_ENV).unwrap()).unwrap();
        // Tell the parent that start-up is over: its kill delays count from here.
        std::fs::write(keyring.with_file_name("ready"), b"").unwrap();
        loop {
            rotate_and_rewrap(&k, &backup);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (k, backup, body) = setup(dir.path());
    for _ in 0..3 {
        rotate_and_rewrap(&k, &backup);
    }
    let bytes = std::fs::read(&backup).unwrap();
    assert_eq!(&bytes[BACKUP_HEADER_LEN..], &body[..]);
    assert_eq!(verify_backup(&k.tenant("acme").unwrap(), &snapshot(), bytes.as_slice()).unwrap(), 200_000);
}

fn setup(dir: &Path) -> (Keyring, PathBuf, Vec<u8>) {
    let k = Keyring::create(&dir.join("k.atrk"), LocalRootKey::new(root_key())).unwrap();
    let t = k.tenant("acme").unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let stream = encrypt_backup(&t, &snapshot(), &data, BackupOptions::default().chunk_size(64 * 1024)).unwrap();
    let path = dir.join("acme.atrb");
    std::fs::write(&path, &stream).unwrap();
    (k, path, stream[BACKUP_HEADER_LEN..].to_vec())
}

fn spawn_child(dir: &Path) -> Child {
    let mut cmd = child::rerun("rewrap_loop", CHILD_ENV, "1");
    cmd.env("ATREST_REWRAP_KEYRING", dir.join("k.atrk"))
        .env("ATREST_REWRAP_BACKUP", dir.join("acme.atrb"))
        .env(ROOT_ENV, LocalRootKey::encode(&root_key()).trim());
    child::spawn_quiet(&mut cmd)
}

#[test]
fn sigkill_during_rewrap_header_never_corrupts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, backup, body) = setup(dir.path());
    let mut last_generation = 0;
    let mut rewrapped_runs = 0;
    let ready = dir.path().join("ready");
    for i in 0..40u64 {
        let _ = std::fs::remove_file(&ready);
        let c = spawn_child(dir.path());
        // Every fourth round kills during start-up; the others once the child is rewrapping,
        // so that a loaded machine (slow process start) still kills in the middle of writes.
        if i % 4 != 0 {
            let t = std::time::Instant::now();
            while !ready.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        child::kill_after(c, child::kill_delay(i, 3_000, 45_000));

        let bytes = std::fs::read(&backup).unwrap();
        assert_eq!(bytes.len(), BACKUP_HEADER_LEN + body.len(), "kill {i}: length changed");
        assert_eq!(&bytes[BACKUP_HEADER_LEN..], &body[..], "kill {i}: chunk bytes changed");
        let k = Keyring::open(&dir.path().join("k.atrk"), LocalRootKey::new(root_key()))
            .unwrap_or_else(|e| panic!("kill {i}: keyring: {e}"));
        let t = k.tenant("acme").unwrap();
        assert_eq!(
            verify_backup(&t, &snapshot(), bytes.as_slice()).unwrap_or_else(|e| panic!("kill {i}: {e}")),
            200_000
        );
        let generation = inspect_backup(bytes.as_slice()).unwrap().key_version.generation;
        assert!(generation >= last_generation, "kill {i}: header went back from {last_generation} to {generation}");
        if generation > last_generation {
            rewrapped_runs += 1;
        }
        last_generation = generation;
    }
    assert!(rewrapped_runs > 5, "only {rewrapped_runs} of 40 runs rewrapped before the kill");

    // A rewrap after the kills recovers any journal and moves the header to the current key.
    let k = Keyring::open(&dir.path().join("k.atrk"), LocalRootKey::new(root_key())).unwrap();
    rotate_and_rewrap(&k, &backup);
    let journals = child::leftovers(dir.path(), ".atrest-rewrap").len();
    assert_eq!(journals, 0);
    let bytes = std::fs::read(&backup).unwrap();
    assert_eq!(&bytes[BACKUP_HEADER_LEN..], &body[..]);
    verify_backup(&k.tenant("acme").unwrap(), &snapshot(), bytes.as_slice()).unwrap();
    println!("40 kills, {rewrapped_runs} runs rewrapped at least once, final generation {last_generation}");
}
