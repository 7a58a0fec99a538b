//! Crash safety and cross-process safety of keyring saves.
//!
//! - A writer process is killed with SIGKILL at random points while it rotates in a loop;
//!   after every kill the keyring file must load and verify, and be exactly the old or a
//!   newer complete version (never corrupt, never an earlier revision).
//! - Two processes rotating one keyring file at once must not lose each other's updates.
//!
//! The child processes are this test binary itself, re-run with `ATREST_CRASH_CHILD` set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atrest::{KeyState, Keyring, LocalRootKey, RootKey};

const ROOT_ENV: &str = "ATREST_CRASH_ROOT";

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
    match std::env::var("ATREST_CRASH_CHILD").as_deref() {
        Ok("forever") | Ok("race") => {
            let path = PathBuf::from(std::env::var("ATREST_CRASH_KEYRING").unwrap());
            let n: u64 = std::env::var("ATREST_CRASH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            let k = Keyring::open(&path, LocalRootKey::from_env(ROOT_ENV).unwrap()).unwrap();
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
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "writer_loop", "--test-threads=1", "--nocapture"])
        .env("ATREST_CRASH_CHILD", mode)
        .env("ATREST_CRASH_KEYRING", path)
        .env(ROOT_ENV, LocalRootKey::encode(&root_key()).trim())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = n {
        cmd.env("ATREST_CRASH_N", n.to_string());
    }
    cmd.spawn().unwrap()
}

#[test]
fn sigkill_during_keyring_save_never_corrupts_or_loses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.atrk");
    Keyring::create(&path, root()).unwrap();
    let mut last_revision = 0;
    let mut progressed = 0;
    for i in 0..40u64 {
        let mut child = spawn_child(&path, "forever", None);
        // Kill at varied points: early (during load) to late (mid-save of a later rotation).
        std::thread::sleep(Duration::from_micros(2_000 + (i * 7_919) % 40_000));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
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
    let strays = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
        .count();
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
