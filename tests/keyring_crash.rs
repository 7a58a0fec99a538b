//! Crash safety and cross-process safety of keyring saves.
//!
//! - A writer process is killed with SIGKILL at random points while it rotates in a loop;
//!   after every kill the keyring file must load and verify, and be exactly the old or a
//!   newer complete version (never corrupt, never an earlier revision).
//! - Two processes rotating one keyring file at once must not lose each other's updates.
//!
//! The child processes are this test binary itself, re-run with `ATREST_CRASH_CHILD` set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::Child;

use atrest::{KeyState, Keyring, LocalRootKey, RootKey};
use common::child;

const ROOT_ENV: &str = "ATREST_CRASH_ROOT";
/// Set in a child process to its role: `forever` (rotate until killed) or `race`.
const CHILD_ENV: &str = "ATREST_CRASH_CHILD";

fn root_key() -> RootKey {
    RootKey::from_bytes([0x42; 32])
}

fn root() -> LocalRootKey {
    LocalRootKey::new(root_key())
}

fn check_consistent(k: &Keyring) {
    let st = k.status();
    // Every save of the writer is one rotation: v1 plus one version per revision.
    assert_eq!(st.masters.len() as u64, st.revision + 1, "{st:?}");
    let primaries: Vec<_> = st.masters.iter().filter(|m| m.state == KeyState::Primary).collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0].version, st.masters.last().unwrap().version);
}

/// Child entry point (with `ATREST_CRASH_CHILD`), or an in-process check of the same loop.
#[test]
fn writer_loop() {
    match child::role(CHILD_ENV).as_deref() {
        Some("forever" | "race") => {
            let path = PathBuf::from(std::env::var("ATREST_CRASH_KEYRING").unwrap());
            let n: u64 = std::env::var("ATREST_CRASH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            let k = Keyring::open(&path, LocalRootKey::from_env(ROOT_ENV).unwrap()).unwrap();
            // Tell the parent that start-up is over: its kill delays count from here.
            std::fs::write(path.with_file_name("ready"), b"").unwrap();
            for _ in 0..n {
                k.rotate().unwrap();
            }
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k.atrk");
            let k = Keyring::create(&path, root()).unwrap();
            for _ in 0..5 {
                k.rotate().unwrap();
            }
            let reopened = Keyring::open(&path, root()).unwrap();
            assert_eq!(reopened.status().revision, 5);
            check_consistent(&reopened);
        }
    }
}

fn spawn_child(path: &Path, mode: &str, n: Option<u64>) -> Child {
    let mut cmd = child::rerun("writer_loop", CHILD_ENV, mode);
    cmd.env("ATREST_CRASH_KEYRING", path).env(ROOT_ENV, LocalRootKey::encode(&root_key()).trim());
    if let Some(n) = n {
        cmd.env("ATREST_CRASH_N", n.to_string());
    }
    child::spawn_quiet(&mut cmd)
}

#[test]
fn sigkill_during_keyring_save_never_corrupts_or_loses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.atrk");
    Keyring::create(&path, root()).unwrap();
    let mut last_revision = 0;
    let mut progressed = 0;
    let ready = dir.path().join("ready");
    for i in 0..40u64 {
        // Kill at varied points: early (during load) to late (mid-save of a later rotation).
        // Every fourth round kills during start-up; the others count from the end of the
        // child's start-up, so that a loaded machine (slow process start) still kills saves.
        let _ = std::fs::remove_file(&ready);
        let c = spawn_child(&path, "forever", None);
        if i % 4 != 0 {
            let t = std::time::Instant::now();
            while !ready.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        child::kill_after(c, child::kill_delay(i, 2_000, 40_000));
        let k = Keyring::open(&path, root()).unwrap_or_else(|e| panic!("after kill {i}: {e}"));
        check_consistent(&k);
        let rev = k.status().revision;
        assert!(rev >= last_revision, "revision went back from {last_revision} to {rev}");
        if rev > last_revision {
            progressed += 1;
        }
        last_revision = rev;
    }
    assert!(progressed > 5, "the writer made progress in only {progressed} of 40 runs: kills too early to test saves");
    // Stray temporary files from killed writers never affect loading.
    let strays = child::leftovers(dir.path(), ".tmp").len();
    println!(
        "40 kills, final revision {last_revision}, {progressed} runs saved at least once, {strays} stray temp files"
    );
}

#[test]
fn two_processes_racing_rotations_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.atrk");
    Keyring::create(&path, root()).unwrap();
    let n = 15;
    let a = spawn_child(&path, "race", Some(n));
    let b = spawn_child(&path, "race", Some(n));
    for mut c in [a, b] {
        assert!(c.wait().unwrap().success());
    }
    let k = Keyring::open(&path, root()).unwrap();
    let st = k.status();
    assert_eq!(st.revision, 2 * n, "a rotation was lost");
    assert_eq!(st.masters.len() as u64, 2 * n + 1);
    check_consistent(&k);
}
