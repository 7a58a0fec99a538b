//! The `atrest` binary, driven as a user would: exit codes, messages, files left behind.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::data and common::child; the rest of the kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::child::run_piped;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_atrest");

/// A temp dir with a root key and a keyring, and a way to run atrest against them.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A root key and a keyring, ready.
    fn new() -> Self {
        let env = Self::bare();
        env.ok(&["keygen", "--out", env.path("root.key").to_str().unwrap()]);
        env.ok(&["keyring", "init"]);
        env
    }

    /// Only the temp dir.
    fn bare() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("ATREST_ROOT_KEY_FILE", self.path("root.key"))
            .env("ATREST_KEYRING", self.path("keyring.atrk"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_piped(self.cmd().args(args), input)
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "atrest {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Runs, asserts the exit code and a one-line `atrest: error:` message; returns it.
    fn fails(&self, args: &[&str], code: i32) -> String {
        check_failure(&self.run(args), code, &args)
    }

    /// Destroys a disabled version with `--skip-grace-period`, once the staleness bound (1 s,
    /// counted in whole seconds) has passed since it was disabled.
    fn destroy_in_emergency(&self, version: &str) {
        let args = ["keyring", "destroy", "--version", version, "--yes", "--skip-grace-period"];
        for _ in 0..50 {
            let out = self.run(&args);
            if out.status.success() {
                return;
            }
            assert!(String::from_utf8_lossy(&out.stderr).contains("too recently"), "{out:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("destroy --skip-grace-period never succeeded");
    }

    fn status(&self) -> Value {
        serde_json::from_slice(&self.ok(&["keyring", "status", "--json"])).unwrap()
    }

    /// Names in the temp dir, sorted.
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

fn check_failure(out: &Output, code: i32, what: &dyn std::fmt::Debug) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what:?}: expected exit {code}, stderr: {err}");
    if code != 2 || err.starts_with("atrest: error:") {
        assert!(err.starts_with("atrest: error: "), "{what:?}: stderr: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what:?}: one line expected: {err}");
    }
    err
}

fn states(status: &Value) -> Vec<(u64, String)> {
    status["masters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_u64().unwrap(), m["state"].as_str().unwrap().to_owned()))
        .collect()
}

/// Deterministic test data that does not compress to nothing.
fn data(len: usize) -> Vec<u8> {
    common::data::pseudo_random(len, 1)
}

fn flip_middle_byte(src: &Path, dst: &Path) {
    let mut bytes = std::fs::read(src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(dst, bytes).unwrap();
}

const CTX: [&str; 4] = ["--tenant", "acme", "--snapshot", "snap-1"];

fn args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let env = Env::bare();
    let out = env.ok(&["keygen", "--out", "root.key"]);
    assert!(String::from_utf8(out).unwrap().contains("local:"));
    let key = std::fs::read(env.path("root.key")).unwrap();
    assert!(key.starts_with(b"ATREST-ROOT-KEY-V1:"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("root.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = env.fails(&["keygen", "--out", "root.key"], 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(env.path("root.key")).unwrap(), key, "the key was overwritten");
    assert_eq!(env.files(), ["root.key"]);
}

#[test]
fn keyring_lifecycle() {
    let env = Env::new();
    let s = env.status();
    assert_eq!(s["primary"], 1);
    assert_eq!(states(&s), [(1, "primary".to_owned())]);
    env.fails(&["keyring", "init"], 1);

    env.ok(&["keyring", "rotate"]);
    let s = env.status();
    assert_eq!(s["primary"], 2);
    assert_eq!(states(&s), [(1, "enabled".to_owned()), (2, "primary".to_owned())]);

    env.ok(&["keyring", "disable", "--version", "1"]);
    assert_eq!(states(&env.status())[0].1, "disabled");
    env.ok(&["keyring", "enable", "--version", "v1"]);
    assert_eq!(states(&env.status())[0].1, "enabled");
    let err = env.fails(&["keyring", "disable", "--version", "2"], 1);
    assert!(err.contains("primary"), "{err}");
    env.fails(&["keyring", "disable", "--version", "9"], 1);
    env.fails(&["keyring", "disable", "--version", "0"], 2);

    // Destroy is refused without --yes, and nothing changes.
    let err = env.fails(&["keyring", "destroy", "--version", "1"], 2);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(states(&env.status())[0].1, "enabled");
    env.fails(&["keyring", "destroy", "--version", "2", "--yes"], 1);
    // Destroying needs the version disabled first, for the grace period (24 h).
    let err = env.fails(&["keyring", "destroy", "--version", "1", "--yes"], 1);
    assert!(err.contains("must be disabled"), "{err}");
    env.ok(&["keyring", "disable", "--version", "1"]);
    let err = env.fails(&["keyring", "destroy", "--version", "1", "--yes"], 1);
    assert!(err.contains("disabled too recently"), "{err}");
    assert_eq!(states(&env.status())[0].1, "disabled");
    env.destroy_in_emergency("1");
    assert_eq!(states(&env.status())[0].1, "destroyed");
    env.fails(&["keyring", "enable", "--version", "1"], 1);

    let text = String::from_utf8(env.ok(&["keyring", "status"])).unwrap();
    assert!(text.contains("destroyed") && text.contains("primary    v2"), "{text}");
    assert!(text.contains("just now"), "{text}");
}

#[test]
fn tenant_rotate_and_shred() {
    let env = Env::new();
    env.ok(&["tenant", "rotate", "acme"]);
    env.ok(&["tenant", "rotate", "acme"]);
    let s = env.status();
    let acme = s["tenants"].as_array().unwrap().iter().find(|t| t["id"] == "acme").unwrap().clone();
    assert_eq!(acme["generation"], 2);

    let err = env.fails(&["tenant", "shred", "globex"], 2);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(env.status()["tenants"].as_array().unwrap().len(), 1);

    env.ok(&["keyring", "rotate"]);
    // A shred needs evidence that the tenant exists: a misspelled id is refused.
    let out =
        env.run_with_stdin(&["backup", "encrypt", "--tenant", "globex", "--snapshot", "s0", "-o", "g0.atrb"], b"x");
    assert!(out.status.success());
    let err = env.fails(&["tenant", "shred", "globex", "--yes"], 2);
    assert!(err.contains("--evidence-backup") && err.contains("--unverified"), "{err}");
    let err = env.fails(&["tenant", "shred", "globexx", "--yes", "--evidence-backup", "g0.atrb"], 1);
    assert!(err.contains("does not authenticate"), "{err}");
    assert_eq!(env.status()["tenants"].as_array().unwrap().len(), 1, "a refused shred changes nothing");
    env.ok(&["tenant", "shred", "globex", "--yes", "--evidence-backup", "g0.atrb"]);
    let err = env.fails(&["tenant", "shred", "globex", "--yes", "--unverified"], 1);
    assert!(err.contains("already shredded"), "{err}");
    let s = env.status();
    let globex = s["tenants"].as_array().unwrap().iter().find(|t| t["id"] == "globex").unwrap().clone();
    assert_eq!(globex["shred"]["pending_versions"], serde_json::json!([1, 2]));
    assert_eq!(globex["shred"]["complete"], false);
    let text = String::from_utf8(env.ok(&["keyring", "status"])).unwrap();
    assert!(text.contains("globex") && text.contains("pending until v1, v2 are destroyed"), "{text}");

    // A shredded tenant can neither rotate nor back up.
    env.fails(&["tenant", "rotate", "globex"], 1);
    let out = env.run_with_stdin(&["backup", "encrypt", "--tenant", "globex", "--snapshot", "s", "-o", "g.atrb"], b"x");
    let err = check_failure(&out, 1, &"encrypt for a shredded tenant");
    assert!(err.contains("shredded"), "{err}");
    assert!(!env.path("g.atrb").exists());

    env.ok(&["keyring", "disable", "--version", "1"]);
    env.destroy_in_emergency("1");
    let s = env.status();
    let globex = s["tenants"].as_array().unwrap().iter().find(|t| t["id"] == "globex").unwrap().clone();
    assert_eq!(globex["shred"]["pending_versions"], serde_json::json!([2]));
}

#[test]
fn backup_round_trips_through_pipes_and_files() {
    let env = Env::new();
    let plain = data(700_000);
    std::fs::write(env.path("plain"), &plain).unwrap();

    // stdin -> stdout
    let out = env.run_with_stdin(&args(&["backup", "encrypt", "--chunk-size", "64K"], &CTX), &plain);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stream = out.stdout;
    assert!(stream.len() > plain.len());
    assert!(!stream.windows(64).any(|w| w == &plain[1000..1064]), "plaintext visible in the stream");
    let out = env.run_with_stdin(&args(&["backup", "decrypt"], &CTX), &stream);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == plain, "round trip through pipes differs");

    // files, incremental context
    let inc = ["--tenant", "acme", "--snapshot", "snap-2", "--parent", "snap-1", "--sequence", "7"];
    env.ok(&args(&["backup", "encrypt", "--chunk-size", "1M", "--threads", "2", "-i", "plain", "-o", "b.atrb"], &inc));
    env.ok(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "restored"], &inc));
    assert!(std::fs::read(env.path("restored")).unwrap() == plain);
    let text = String::from_utf8(env.ok(&args(&["backup", "verify", "-i", "b.atrb"], &inc))).unwrap();
    assert!(text.contains("700000"), "{text}");
    // The context must match exactly: kind, parent, sequence, snapshot (exit 4: an authentic
    // backup of another context); --kind full with --parent is a usage error.
    env.fails(&args(&["backup", "verify", "-i", "b.atrb", "--kind", "full"], &inc), 2);
    env.fails(&["backup", "verify", "-i", "b.atrb", "--tenant", "acme", "--snapshot", "snap-2", "--sequence", "7"], 4);
    env.fails(
        &["backup", "verify", "-i", "b.atrb", "--tenant", "acme", "--snapshot", "snap-2", "--parent", "snap-1"],
        4,
    );

    // An empty stream round-trips too.
    env.fails(&args(&["backup", "encrypt", "-i", "/dev/null", "-o", "empty.atrb"], &CTX), 1);
    assert!(!env.path("empty.atrb").exists());
    env.ok(&args(&["backup", "encrypt", "--allow-empty", "-i", "/dev/null", "-o", "empty.atrb"], &CTX));
    let out = env.run(&args(&["backup", "decrypt", "-i", "empty.atrb"], &CTX));
    assert!(out.status.success() && out.stdout.is_empty());

    // Output files replace existing ones only on success.
    std::fs::write(env.path("restored"), b"old").unwrap();
    env.fails(&args(&["backup", "decrypt", "-i", "plain", "-o", "restored"], &CTX), 2);
    env.fails(&args(&["backup", "decrypt", "--force", "-i", "plain", "-o", "restored"], &CTX), 1);
    assert_eq!(std::fs::read(env.path("restored")).unwrap(), b"old");
    assert!(!env.files().iter().any(|f| f.ends_with(".tmp")), "{:?}", env.files());
}

#[test]
fn inspect_needs_no_key() {
    let env = Env::new();
    std::fs::write(env.path("plain"), data(100_000)).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));
    let mut c = env.cmd();
    c.env_remove("ATREST_ROOT_KEY_FILE").env_remove("ATREST_KEYRING");
    let out = c.args(["backup", "inspect", "b.atrb", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format_version"], 2, "{info}");
    assert_eq!(info["tenant"], "acme", "{info}");
    assert_eq!(info["snapshot_id"], "snap-1", "{info}");
    assert_eq!(info["kind"], "full", "{info}");
    assert_eq!(info["sequence"], 0, "{info}");
    assert!(info["created"].as_u64().is_some(), "{info}");
    let out = env.cmd().env_remove("ATREST_ROOT_KEY_FILE").args(["backup", "inspect", "b.atrb"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tenant") && text.contains("acme") && text.contains("snap-1"), "{text}");
    assert!(!text.contains("parent"), "no parent line for a full backup: {text}");
    // Not a backup: a clear failure.
    let err = check_failure(&env.run(&["backup", "inspect", "plain"]), 1, &"inspect plain");
    assert!(err.contains("not an atrest backup"), "{err}");
    env.fails(&["backup", "inspect", "missing"], 1);
}

#[test]
fn tampered_stream_exits_3_and_leaves_no_output_file() {
    let env = Env::new();
    std::fs::write(env.path("plain"), data(1_000_000)).unwrap();
    env.ok(&args(&["backup", "encrypt", "--chunk-size", "64K", "-i", "plain", "-o", "b.atrb"], &CTX));
    flip_middle_byte(&env.path("b.atrb"), &env.path("bad.atrb"));
    let before = env.files();

    let err = env.fails(&args(&["backup", "decrypt", "-i", "bad.atrb", "-o", "out"], &CTX), 3);
    assert!(err.contains("authentication failed"), "{err}");
    assert_eq!(env.files(), before, "decrypt of a tampered stream left a file behind");
    env.fails(&args(&["backup", "verify", "-i", "bad.atrb"], &CTX), 3);

    // To stdout: only authenticated chunks come out, then the failure.
    let bad = std::fs::read(env.path("bad.atrb")).unwrap();
    let out = env.run_with_stdin(&args(&["backup", "decrypt"], &CTX), &bad);
    check_failure(&out, 3, &"decrypt tampered to stdout");
    let plain = std::fs::read(env.path("plain")).unwrap();
    assert!(out.stdout.len() < plain.len() / 2 + 65536, "released {} bytes", out.stdout.len());
    assert!(plain.starts_with(&out.stdout), "released bytes that are not the plaintext");

    // Truncated: cut at a chunk boundary region and at the very end.
    let good = std::fs::read(env.path("b.atrb")).unwrap();
    for cut in [40, good.len() - 1, good.len() / 2] {
        std::fs::write(env.path("cut.atrb"), &good[..cut]).unwrap();
        let out = env.run(&args(&["backup", "decrypt", "-i", "cut.atrb", "-o", "out"], &CTX));
        assert_ne!(out.status.code(), Some(0), "truncation at {cut} accepted");
        assert!(!env.path("out").exists());
    }
    env.fails(&args(&["backup", "decrypt", "-i", "cut.atrb", "-o", "out"], &CTX), 3);
    // Extended.
    let mut long = good.clone();
    long.extend_from_slice(b"trailing");
    std::fs::write(env.path("long.atrb"), &long).unwrap();
    env.fails(&args(&["backup", "decrypt", "-i", "long.atrb", "-o", "out"], &CTX), 3);
    assert!(!env.path("out").exists());
}

#[test]
fn wrong_tenant_or_snapshot_is_a_context_mismatch_exit_4() {
    let env = Env::new();
    std::fs::write(env.path("plain"), data(50_000)).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));
    let err =
        env.fails(&["backup", "decrypt", "--tenant", "globex", "--snapshot", "snap-1", "-i", "b.atrb", "-o", "o"], 4);
    assert!(err.contains("tenant is \"acme\", not \"globex\""), "{err}");
    let err =
        env.fails(&["backup", "decrypt", "--tenant", "acme", "--snapshot", "snap-2", "-i", "b.atrb", "-o", "o"], 4);
    assert!(err.contains("snapshot is \"snap-1\", not \"snap-2\""), "{err}");
    let err = env
        .fails(&["backup", "verify", "--tenant", "acme", "--snapshot", "snap-1", "--sequence", "3", "-i", "b.atrb"], 4);
    assert!(err.contains("sequence is \"0\", not \"3\""), "{err}");
    assert!(!env.path("o").exists());
    // Without --snapshot the stream says what it is.
    env.ok(&["backup", "verify", "--tenant", "acme", "-i", "b.atrb"]);
    let out = env.ok(&["backup", "decrypt", "--tenant", "acme", "-i", "b.atrb"]);
    assert_eq!(out, data(50_000));
    // --kind full with --parent, and context flags without --snapshot, are usage errors.
    env.fails(&args(&["backup", "encrypt", "--kind", "full", "--parent", "p", "-i", "plain", "-o", "x"], &CTX), 2);
    env.fails(&["backup", "verify", "--tenant", "acme", "--sequence", "1", "-i", "b.atrb"], 2);

    // Another keyring (same tenant name) cannot open it: an authentication failure.
    let other = Env::new();
    std::fs::copy(env.path("b.atrb"), other.path("b.atrb")).unwrap();
    let out = other.run(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "o"], &CTX));
    assert_eq!(out.status.code(), Some(3));
    assert!(!other.path("o").exists());
}

#[test]
fn rewrap_moves_a_backup_to_the_current_key() {
    let env = Env::new();
    let plain = data(300_000);
    std::fs::write(env.path("plain"), &plain).unwrap();
    env.ok(&args(&["backup", "encrypt", "--chunk-size", "64K", "-i", "plain", "-o", "b.atrb"], &CTX));
    let before = std::fs::read(env.path("b.atrb")).unwrap();

    env.ok(&["keyring", "rotate"]);
    let text = String::from_utf8(env.ok(&["backup", "rewrap", "b.atrb", "--tenant", "acme"])).unwrap();
    assert!(text.contains("v2"), "{text}");
    let after = std::fs::read(env.path("b.atrb")).unwrap();
    assert!(before != after, "rewrap changed nothing");

    // The old master key can go: the rewrapped backup still opens.
    env.ok(&["keyring", "disable", "--version", "1"]);
    env.destroy_in_emergency("1");
    env.ok(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "restored"], &CTX));
    assert!(std::fs::read(env.path("restored")).unwrap() == plain);
    env.fails(&["backup", "rewrap", "missing.atrb", "--tenant", "acme"], 1);
}

#[test]
fn root_key_sources_and_root_rewrap() {
    let env = Env::new();
    let key_text = std::fs::read_to_string(env.path("root.key")).unwrap();

    // ATREST_ROOT_KEY holds the key text.
    let out = env
        .cmd()
        .env_remove("ATREST_ROOT_KEY_FILE")
        .env("ATREST_ROOT_KEY", key_text.trim())
        .args(["keyring", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // No root key at all: a usage error naming the ways to give one.
    let out = env.cmd().env_remove("ATREST_ROOT_KEY_FILE").args(["keyring", "status"]).output().unwrap();
    let err = check_failure(&out, 2, &"no root key");
    assert!(err.contains("--root-key-file"), "{err}");
    let out = env.cmd().env_remove("ATREST_KEYRING").args(["keyring", "status"]).output().unwrap();
    check_failure(&out, 2, &"no keyring");

    // Root rotation: the new key opens the keyring, the old one no longer does.
    std::fs::write(env.path("plain"), data(10_000)).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));
    env.ok(&["keygen", "--out", "new.key"]);
    env.fails(&["keyring", "rewrap-root"], 2);
    env.ok(&["keyring", "rewrap-root", "--new-root-key-file", "new.key"]);
    let err = env.fails(&["keyring", "status"], 1);
    assert!(err.contains("different root key"), "{err}");
    let out = env
        .cmd()
        .env("ATREST_ROOT_KEY_FILE", env.path("new.key"))
        .args(args(&["backup", "decrypt", "-i", "b.atrb"], &CTX))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data(10_000));

    // A modified keyring file is an authentication failure.
    let k = env.path("keyring.atrk");
    let mut bytes = std::fs::read(&k).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&k, bytes).unwrap();
    let out = env.cmd().env("ATREST_ROOT_KEY_FILE", env.path("new.key")).args(["keyring", "status"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn root_key_uri_flag_and_environment() {
    let env = Env::new();
    let file_uri = format!("file:{}", env.path("root.key").display());
    let key_text = std::fs::read_to_string(env.path("root.key")).unwrap();
    let by_uri = |uri: &str, extra: &[(&str, &str)]| {
        let mut c = env.cmd();
        c.env_remove("ATREST_ROOT_KEY_FILE").env("ATREST_ROOT_KEY_URI", uri).envs(extra.iter().copied());
        c.args(["keyring", "status", "--json"]).output().unwrap()
    };
    // The same key by path, file: URI, env: URI (through ATREST_ROOT_KEY_URI) and --root-key.
    for uri in [env.path("root.key").to_str().unwrap(), &file_uri] {
        let out = by_uri(uri, &[]);
        assert!(out.status.success(), "{uri}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = by_uri("env:MY_ROOT", &[("MY_ROOT", key_text.trim())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        env.cmd().env_remove("ATREST_ROOT_KEY_FILE").args(["--root-key", &file_uri, "keyring", "status"]).output();
    assert!(out.unwrap().status.success());

    // Two sources, a malformed URI, a scheme this build lacks: usage errors (2).
    let err = env.fails(&["--root-key", &file_uri, "keyring", "status"], 2);
    assert!(err.contains("choose one"), "{err}");
    let err = check_failure(&by_uri("pkcs11:token=t;object=k?pin-value=1234", &[]), 2, &"pin-value");
    assert!(err.contains("pin-value is refused") && !err.contains("1234"), "{err}");
    check_failure(&by_uri("nope:x", &[]), 2, &"unknown scheme");
    if !cfg!(feature = "aws-kms") {
        let err = check_failure(&by_uri("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k", &[]), 2, &"feature");
        assert!(err.contains("`aws-kms` feature"), "{err}");
    }
    // A missing variable is an ordinary failure naming it.
    let err = check_failure(&by_uri("env:ATREST_TEST_NOT_SET", &[]), 1, &"unset variable");
    assert!(err.contains("ATREST_TEST_NOT_SET"), "{err}");

    // rewrap-root --new-root-key: the keyring moves to the new key's URI.
    env.ok(&["keygen", "--out", "new.key"]);
    let new_uri = format!("file://{}", env.path("new.key").display());
    env.fails(&["keyring", "rewrap-root", "--new-root-key", &new_uri, "--new-root-key-file", "new.key"], 2);
    env.ok(&["keyring", "rewrap-root", "--new-root-key", &new_uri]);
    assert!(by_uri(&new_uri, &[]).status.success());
    assert_eq!(by_uri(&file_uri, &[]).status.code(), Some(1), "the old root still opens the keyring");
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let out = env.run(&["backup", "encrypt", "--snapshot", "s"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&args(&["backup", "encrypt", "--chunk-size", "12Q"], &CTX));
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["--help"]);
    assert!(out.status.success());
    // An out-of-range chunk size is refused by the library, with no output file.
    std::fs::write(env.path("plain"), b"x").unwrap();
    let err = env.fails(&args(&["backup", "encrypt", "--chunk-size", "1K", "-i", "plain", "-o", "b.atrb"], &CTX), 1);
    assert!(err.contains("chunk"), "{err}");
    assert!(!env.path("b.atrb").exists());
}

#[cfg(unix)]
#[test]
fn interrupted_output_leaves_no_temporary_file() {
    let env = Env::new();
    let before = env.files();
    // stdin stays open and empty, so encryption waits for input with its temporary file open.
    let mut child = env
        .cmd()
        .args(args(&["backup", "encrypt", "-o", "b.atrb"], &CTX))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.files().iter().any(|f| f.ends_with(".tmp")) {
        assert!(std::time::Instant::now() < deadline, "no temporary file appeared: {:?}", env.files());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The shell's builtin kill: no dependency on procps.
    let kill = Command::new("sh").args(["-c", "kill -TERM \"$0\"", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    // Keep stdin open until the child is gone: EOF would let it finish normally.
    let stdin = child.stdin.take();
    let status = child.wait().unwrap();
    drop(stdin);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(env.files(), before);
}

#[cfg(not(feature = "pkcs11"))]
#[test]
fn pkcs11_options_without_the_feature_are_a_clear_error() {
    let env = Env::new();
    let err = env.fails(&["--pkcs11-module", "/nonexistent.so", "keyring", "status"], 2);
    assert!(err.contains("without PKCS#11 support"), "{err}");
}

/// The root key in a real SoftHSM2 token: init on the token, file -> HSM migration and back,
/// PIN from the environment and from a file. Needs SoftHSM2 (`apt-get install softhsm2`);
/// fails, never skips, without it.
#[cfg(feature = "pkcs11")]
#[test]
fn pkcs11_root_key_init_and_migration() {
    const TOKEN: &str = "atrest-cli";
    const PIN: &str = "1234";
    let module = std::env::var_os("ATREST_TEST_PKCS11_MODULE")
        .map_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"), PathBuf::from);
    assert!(module.is_file(), "SoftHSM2 module not found at {}: apt-get install softhsm2", module.display());
    let module = module.to_str().unwrap().to_owned();

    let env = Env::new();
    let tokens = env.path("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = env.path("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokens.display()))
        .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "5678", "--module", &module])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    // A command whose root key is the token's key `label` (no key file in the environment).
    let hsm = |label: &str, a: &[&str]| -> Output {
        let mut c = env.cmd();
        c.env_remove("ATREST_ROOT_KEY_FILE")
            .env("SOFTHSM2_CONF", &conf)
            .env("ATREST_PKCS11_PIN", PIN)
            .args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", label])
            .args(a);
        c.output().unwrap()
    };
    let ok = |out: Output, what: &str| -> Vec<u8> {
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };

    let plain = data(200_000);
    std::fs::write(env.path("plain"), &plain).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));

    // File -> HSM: the new key is generated in the token; the PIN falls back to ATREST_PKCS11_PIN.
    let out = env
        .cmd()
        .env("SOFTHSM2_CONF", &conf)
        .env("ATREST_PKCS11_PIN", PIN)
        .args(["keyring", "rewrap-root", "--new-pkcs11-module", &module, "--new-pkcs11-token", TOKEN])
        .args(["--new-pkcs11-key", "root-hsm"])
        .output()
        .unwrap();
    ok(out, "rewrap-root to the token");
    let err = env.fails(&["keyring", "status"], 1);
    assert!(err.contains("different root key"), "{err}");
    let status: Value =
        serde_json::from_slice(&ok(hsm("root-hsm", &["keyring", "status", "--json"]), "status")).unwrap();
    assert!(status["root_key_id"].as_str().unwrap().starts_with("pkcs11:"), "{status}");
    let out = hsm("root-hsm", &args(&["backup", "decrypt", "-i", "b.atrb"], &CTX));
    assert!(ok(out, "decrypt under the HSM root") == plain);

    // Both a key file and a token: refused.
    let mut c = env.cmd();
    c.env("SOFTHSM2_CONF", &conf).env("ATREST_PKCS11_PIN", PIN);
    c.args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", "root-hsm", "keyring", "status"]);
    check_failure(&c.output().unwrap(), 2, &"file and token");

    // PIN from a 0600 file; a wrong PIN is a clear failure; no PIN at all too.
    let pin_file = env.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut c = env.cmd();
    c.env_remove("ATREST_ROOT_KEY_FILE").env("SOFTHSM2_CONF", &conf);
    c.args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", "root-hsm"]);
    c.arg("--pkcs11-pin-file").arg(&pin_file).args(["keyring", "status"]);
    ok(c.output().unwrap(), "PIN from a file");
    let mut c = env.cmd();
    c.env_remove("ATREST_ROOT_KEY_FILE").env("SOFTHSM2_CONF", &conf).env("ATREST_PKCS11_PIN", "9999");
    c.args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", "root-hsm", "keyring", "status"]);
    let err = check_failure(&c.output().unwrap(), 1, &"wrong PIN");
    assert!(err.contains("PIN"), "{err}");
    let mut c = env.cmd();
    c.env_remove("ATREST_ROOT_KEY_FILE").env("SOFTHSM2_CONF", &conf);
    c.args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", "root-hsm", "keyring", "status"]);
    let err = check_failure(&c.output().unwrap(), 1, &"no PIN");
    assert!(err.contains("ATREST_PKCS11_PIN"), "{err}");

    // A key that does not exist is not generated by ordinary commands.
    let err = check_failure(&hsm("missing", &["keyring", "status"]), 1, &"missing key");
    assert!(err.contains("missing"), "{err}");

    // HSM -> a new key file.
    env.ok(&["keygen", "--out", "back.key"]);
    let new_key = env.path("back.key");
    ok(
        hsm("root-hsm", &["keyring", "rewrap-root", "--new-root-key-file", new_key.to_str().unwrap()]),
        "back to a file",
    );
    let out = env
        .cmd()
        .env("ATREST_ROOT_KEY_FILE", &new_key)
        .args(args(&["backup", "decrypt", "-i", "b.atrb"], &CTX))
        .output()
        .unwrap();
    assert!(ok(out, "decrypt under the new file root") == plain);

    // A new keyring directly on the token.
    let mut c = env.cmd();
    c.env_remove("ATREST_ROOT_KEY_FILE").env("ATREST_KEYRING", env.path("hsm.atrk")).env("SOFTHSM2_CONF", &conf);
    c.env("ATREST_PKCS11_PIN", PIN);
    c.args(["--pkcs11-module", &module, "--pkcs11-token", TOKEN, "--pkcs11-key", "root-2", "keyring", "init"]);
    ok(c.output().unwrap(), "keyring init on the token");
}

// ---- File safety: owners and modes kept, lock files, secret files ----

/// Another user than root.
#[cfg(unix)]
const NOBODY: u32 = 65534;

#[cfg(unix)]
fn is_root() -> bool {
    // The real uid of this process, without unsafe code: the owner of a file it creates.
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap()) == 0
}

#[cfg(unix)]
fn owner_group_mode(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[cfg(unix)]
fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

/// A command run as uid/gid 65534 with no supplementary groups (`setpriv`, util-linux), with
/// the environment of `env` and a copy of the binary that user can run.
#[cfg(unix)]
fn as_nobody(env: &Env, bin_dir: &Path) -> Command {
    let bin = bin_dir.join("atrest");
    if !bin.exists() {
        std::fs::copy(BIN, &bin).unwrap();
        chmod(&bin, 0o755);
        chmod(bin_dir, 0o755);
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .current_dir(env.dir.path())
        .env_clear()
        .env("ATREST_KEYRING", env.path("keyring.atrk"))
        .stdin(Stdio::null());
    c
}

fn revision(env: &Env) -> u64 {
    env.status()["revision"].as_u64().unwrap()
}

/// A keyring change keeps the file's owner, group and mode. As root (CI), the change runs
/// as root on an application's keyring (uid 65534, group 100, mode 0640), and then as that
/// user, switched with `setpriv`: this test fails, never skips, if root cannot switch.
/// Run as another user, it checks what that user can: its own file, mode 0640.
#[cfg(unix)]
#[test]
fn keyring_changes_keep_owner_group_and_mode() {
    let env = Env::new();
    let k = env.path("keyring.atrk");
    chmod(&k, 0o640);
    if !is_root() {
        let before = owner_group_mode(&k);
        env.ok(&["keyring", "rotate"]);
        assert_eq!(owner_group_mode(&k), before);
        return;
    }
    // The application's directory and keyring; root keeps its own copy of the root key.
    chown(env.dir.path(), NOBODY, NOBODY);
    chmod(env.dir.path(), 0o755);
    chown(&k, NOBODY, 100);
    let rev = revision(&env);
    env.ok(&["keyring", "rotate"]);
    assert_eq!(revision(&env), rev + 1);
    assert_eq!(owner_group_mode(&k), (NOBODY, 100, 0o640), "a rotation as root took the keyring from its owner");
    // The lock file root created belongs to the keyring's owner, who can take it.
    assert_eq!(owner_group_mode(&env.path("keyring.atrk.lock")), (NOBODY, 100, 0o600));
    assert!(!env.files().iter().any(|f| f.ends_with(".tmp")), "{:?}", env.files());

    // As the application: its own root key file, mode 0600.
    let bins = tempfile::tempdir().unwrap();
    let id = Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--clear-groups", "id", "-u"]).output();
    let id = id.expect("running as root, setpriv (util-linux) must be able to switch to uid 65534");
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "65534", "setpriv did not switch the user");
    std::fs::copy(env.path("root.key"), env.path("app.key")).unwrap();
    chown(&env.path("app.key"), NOBODY, NOBODY);
    let app_key = env.path("app.key");
    // The user is not in group 100: the group cannot be kept, so nothing changes.
    let before = std::fs::read(&k).unwrap();
    let out = as_nobody(&env, bins.path()).env("ATREST_ROOT_KEY_FILE", &app_key).args(["keyring", "rotate"]).output();
    let err = check_failure(&out.unwrap(), 1, &"rotate as 65534, group 100");
    assert!(err.contains("cannot give") && err.contains("group 100"), "{err}");
    assert_eq!(std::fs::read(&k).unwrap(), before);
    assert_eq!(owner_group_mode(&k), (NOBODY, 100, 0o640));
    // In its own group: the rotation goes through and keeps everything.
    chown(&k, NOBODY, NOBODY);
    let out = as_nobody(&env, bins.path()).env("ATREST_ROOT_KEY_FILE", &app_key).args(["keyring", "rotate"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "rotate as 65534: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(owner_group_mode(&k), (NOBODY, NOBODY, 0o640));
    assert_eq!(revision(&env), rev + 2);
    // The application cannot use root's key file (it cannot read it).
    let out = as_nobody(&env, bins.path())
        .env("ATREST_ROOT_KEY_FILE", env.path("root.key"))
        .args(["keyring", "status"])
        .output();
    check_failure(&out.unwrap(), 1, &"root's key as 65534");
}

#[cfg(unix)]
#[test]
fn lock_file_refuses_a_planted_symlink() {
    let env = Env::new();
    let target = env.path("x");
    std::os::unix::fs::symlink(&target, env.path("keyring.atrk.lock")).unwrap();
    let err = env.fails(&["keyring", "rotate"], 1);
    assert!(err.contains("keyring.atrk.lock") && err.contains("symbolic link"), "{err}");
    assert!(!target.exists(), "the lock followed the link");
    assert_eq!(revision(&env), 0);
}

#[cfg(unix)]
#[test]
fn a_lock_held_by_another_process_times_out_clearly() {
    let env = Env::new();
    let lock = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(env.path("keyring.atrk.lock"));
    let lock = lock.unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let out = env.cmd().env("ATREST_LOCK_WAIT", "0.5").args(["keyring", "rotate"]).output().unwrap();
    let waited = start.elapsed();
    let err = check_failure(&out, 1, &"rotate while locked");
    assert!(err.contains("keyring.atrk.lock") && err.contains("giving up"), "{err}");
    assert!(waited < std::time::Duration::from_secs(20), "{waited:?}");
    lock.unlock().unwrap();
    env.ok(&["keyring", "rotate"]);
    assert_eq!(revision(&env), 1);
}

#[cfg(unix)]
#[test]
fn root_key_file_must_be_private_and_ours() {
    let env = Env::new();
    let key = env.path("root.key");
    for mode in [0o640, 0o604] {
        chmod(&key, mode);
        let err = env.fails(&["keyring", "status"], 1);
        assert!(err.contains("chmod 600"), "{err}");
    }
    chmod(&key, 0o400);
    env.ok(&["keyring", "status"]);
    if is_root() {
        // Owned by another user: refused even for root, who could read it.
        chown(&key, NOBODY, NOBODY);
        let err = env.fails(&["keyring", "status"], 1);
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}

#[test]
fn no_plaintext_reaches_stdout_before_the_whole_stream_authenticated() {
    let env = Env::new();
    let plain = data(1_000_000);
    std::fs::write(env.path("plain"), &plain).unwrap();
    env.ok(&args(&["backup", "encrypt", "--chunk-size", "64K", "-i", "plain", "-o", "b.atrb"], &CTX));
    // One flipped byte three quarters in.
    let mut bad = std::fs::read(env.path("b.atrb")).unwrap();
    let at = bad.len() * 3 / 4;
    bad[at] ^= 0x01;
    std::fs::write(env.path("bad.atrb"), &bad).unwrap();

    // From a file (seekable: verified first) and from a pipe (spooled, then verified).
    let out = env.run(&args(&["backup", "decrypt", "-i", "bad.atrb"], &CTX));
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "{} plaintext bytes released from a file", out.stdout.len());
    let out = env.run_with_stdin(&args(&["backup", "decrypt"], &CTX), &bad);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "{} plaintext bytes released from a pipe", out.stdout.len());
    // Refusing to spool a pipe is a clear usage error, with nothing written.
    let out = env.run_with_stdin(&args(&["backup", "decrypt", "--no-spool"], &CTX), &bad);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stream-unverified"));
    assert!(out.stdout.is_empty());
    // Clean streams still come out whole, both ways.
    let good = std::fs::read(env.path("b.atrb")).unwrap();
    assert!(env.run_with_stdin(&args(&["backup", "decrypt"], &CTX), &good).stdout == plain);
    assert!(env.ok(&args(&["backup", "decrypt", "-i", "b.atrb"], &CTX)) == plain);
    // The opt-in keeps streaming: authenticated chunks before the bad one come out.
    let out = env.run(&args(&["backup", "decrypt", "--stream-unverified", "-i", "bad.atrb"], &CTX));
    assert_eq!(out.status.code(), Some(3));
    assert!(!out.stdout.is_empty() && plain.starts_with(&out.stdout));
}

#[test]
fn producer_mode_commits_only_when_the_producer_succeeds() {
    let env = Env::new();
    let enc = |out: &str, producer: &[&str]| {
        let mut a = args(&["backup", "encrypt", "-o", out], &CTX);
        a.push("--");
        a.extend_from_slice(producer);
        env.run(&a)
    };
    // Success: the producer's stdout is the backup.
    let out = enc("ok.atrb", &["sh", "-c", "printf 'hello from the producer'"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot_id=snap-1"), "a summary line for cron logs");
    assert_eq!(env.ok(&args(&["backup", "decrypt", "-i", "ok.atrb"], &CTX)), b"hello from the producer");
    // A producer that fails after writing: no file, its status.
    let out = enc("fail.atrb", &["sh", "-c", "printf 'partial dump'; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited with status 7"));
    // Killed by a signal: 128 + n.
    let out = enc("killed.atrb", &["sh", "-c", "printf x; kill -9 $$"]);
    assert_eq!(out.status.code(), Some(128 + 9));
    // A producer that cannot start.
    assert_eq!(enc("none.atrb", &["/nonexistent/pg_dump"]).status.code(), Some(1));
    // Empty output of a successful producer is refused unless allowed.
    assert_eq!(enc("empty.atrb", &["true"]).status.code(), Some(1));
    for f in ["fail.atrb", "killed.atrb", "none.atrb", "empty.atrb"] {
        assert!(!env.path(f).exists(), "{f} was left behind");
    }
    assert!(!env.files().iter().any(|f| f.ends_with(".tmp")), "{:?}", env.files());
    // -i and a producer exclude each other.
    let mut a = args(&["backup", "encrypt", "-i", "x", "-o", "y"], &CTX);
    a.extend_from_slice(&["--", "true"]);
    env.fails(&a, 2);
}

#[test]
fn a_failing_dump_in_a_plain_sh_script_leaves_no_backup() {
    // Cron's /bin/sh (dash) has no pipefail: producer mode is what makes the failure visible.
    let env = Env::new();
    let script = format!(
        "{BIN} backup encrypt --tenant acme --snapshot nightly -o nightly.atrb -- sh -c 'echo partial; exit 3' \
         && echo committed"
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .current_dir(env.dir.path())
        .env_clear()
        .env("ATREST_ROOT_KEY_FILE", env.path("root.key"))
        .env("ATREST_KEYRING", env.path("keyring.atrk"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "the script went on: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!env.path("nightly.atrb").exists());
}

#[test]
fn outputs_never_clobber_and_devices_are_written_in_place() {
    let env = Env::new();
    std::fs::write(env.path("plain"), data(300_000)).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));
    let first = std::fs::read(env.path("b.atrb")).unwrap();
    // An existing backup is not replaced without --force.
    let err = env.fails(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX), 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(env.path("b.atrb")).unwrap(), first);
    env.ok(&args(&["backup", "encrypt", "--force", "-i", "plain", "-o", "b.atrb"], &CTX));
    assert_ne!(std::fs::read(env.path("b.atrb")).unwrap(), first);

    // Character devices: /dev/null takes everything, /dev/full fails loudly; neither replaced.
    env.ok(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "/dev/null"], &CTX));
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "/dev/null"], &CTX));
    let err = env.fails(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "/dev/full"], &CTX), 1);
    assert!(err.contains("/dev/full"), "{err}");

    // A FIFO is written in place, and only after the stream authenticated.
    let fifo = env.path("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    env.ok(&args(&["backup", "decrypt", "-i", "b.atrb", "-o", "fifo"], &CTX));
    assert!(reader.join().unwrap() == data(300_000));
    let mut bad = std::fs::read(env.path("b.atrb")).unwrap();
    let at = bad.len() - 100;
    bad[at] ^= 1;
    std::fs::write(env.path("bad.atrb"), &bad).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    env.fails(&args(&["backup", "decrypt", "-i", "bad.atrb", "-o", "fifo"], &CTX), 3);
    // The FIFO was opened (so the reader is released) but nothing unauthenticated reached it.
    assert!(reader.join().unwrap().is_empty());
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    }
}

#[test]
fn of_two_concurrent_writers_one_wins_the_other_fails_loudly() {
    let env = Env::new();
    // Slow producers keep both writers running at the same time.
    let spawn = |what: &str| {
        let mut a = args(&["backup", "encrypt", "-o", "race.atrb"], &CTX);
        let script = format!("sleep 1; echo {what}");
        a.extend_from_slice(&["--", "sh", "-c"]);
        let mut c = env.cmd();
        c.args(&a).arg(script).stdout(Stdio::null()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn("first"), spawn("second"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.iter().any(|c| *c != Some(0)), "{codes:?}");
    let loser = if a.status.success() { &b } else { &a };
    assert!(String::from_utf8_lossy(&loser.stderr).contains("atrest: error:"), "the loser says so");
    let winner = if a.status.success() { "first" } else { "second" };
    let out = env.ok(&args(&["backup", "decrypt", "-i", "race.atrb"], &CTX));
    assert_eq!(String::from_utf8(out).unwrap().trim(), winner);
    assert!(!env.files().iter().any(|f| f.ends_with(".tmp")), "{:?}", env.files());
}

#[test]
fn a_killed_run_leaves_temporary_files_the_next_run_removes() {
    let env = Env::new();
    let mut a = args(&["backup", "encrypt", "-o", "k.atrb"], &CTX);
    a.extend_from_slice(&["--", "sh", "-c", "head -c 3000000 /dev/zero; sleep 30"]);
    let mut child = env.cmd().args(&a).stderr(Stdio::null()).spawn().unwrap();
    // Wait for the temporary file, then SIGKILL (no clean-up runs).
    let tmp = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            env.files().into_iter().find(|f| f.ends_with(".tmp"))
        })
        .expect("a temporary file while writing");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(env.files().contains(&tmp), "SIGKILL leaves the temporary file");
    let again = || {
        let mut a = args(&["backup", "encrypt", "-o", "k.atrb", "--force"], &CTX);
        a.extend_from_slice(&["--", "echo", "again"]);
        env.ok(&a);
    };
    // Modified a moment ago: it could be a concurrent writer's that has not locked it yet.
    again();
    assert!(env.files().contains(&tmp), "a fresh temporary file was taken for a dead one");
    // A minute later (aged here), unlocked: a killed writer's, swept by the next run.
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(65);
    std::fs::File::options().write(true).open(env.path(&tmp)).unwrap().set_modified(long_ago).unwrap();
    again();
    assert!(!env.files().iter().any(|f| f.ends_with(".tmp")), "{:?}", env.files());
}

#[test]
fn a_closed_stdout_pipe_ends_every_command_quietly() {
    let env = Env::new();
    std::fs::write(env.path("plain"), vec![b'y'; 3_000_000]).unwrap();
    env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "b.atrb"], &CTX));
    let run = |cmd: &str| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!("{BIN} {cmd} | head -c 1 >/dev/null; echo \"status ${{PIPESTATUS[0]}}\""))
            .current_dir(env.dir.path())
            .env("ATREST_ROOT_KEY_FILE", env.path("root.key"))
            .env("ATREST_KEYRING", env.path("keyring.atrk"));
        let out = c.output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for cmd in [
        "backup decrypt --tenant acme -i b.atrb",
        "backup decrypt --tenant acme --stream-unverified -i b.atrb",
        "backup encrypt --tenant acme --snapshot s -i plain",
        "backup inspect b.atrb",
        "backup inspect --json b.atrb",
        "backup verify --tenant acme -i b.atrb",
        "keyring status",
        "keyring status --json",
    ] {
        let (stdout, stderr) = run(cmd);
        let status = stdout.trim().strip_prefix("status ").unwrap_or("?").to_owned();
        assert!(["0", "141"].contains(&status.as_str()), "{cmd}: status {status}; stderr {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{cmd}: {stderr}");
    }
}

#[test]
fn summaries_json_and_rewrap_says_what_changed() {
    let env = Env::new();
    std::fs::write(env.path("plain"), data(100_000)).unwrap();
    let out = env.ok(&args(&["backup", "encrypt", "--json", "-i", "plain", "-o", "b.atrb"], &CTX));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["plaintext_bytes"], 100_000);
    assert_eq!(v["snapshot_id"], "snap-1");
    assert_eq!(v["stream_id"].as_str().unwrap().len(), 32, "{v}");
    let text = String::from_utf8(env.ok(&args(&["backup", "encrypt", "-i", "plain", "-o", "c.atrb"], &CTX))).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("stream_id=") && text.contains("snapshot_id=snap-1") && text.contains("plaintext_bytes=100000")
    );
    let v: Value =
        serde_json::from_slice(&env.ok(&["backup", "verify", "--json", "--tenant", "acme", "-i", "b.atrb"])).unwrap();
    assert_eq!((v["authentic"].as_bool(), v["plaintext_bytes"].as_u64()), (Some(true), Some(100_000)));

    let out = String::from_utf8(env.ok(&["backup", "rewrap", "b.atrb", "--tenant", "acme"])).unwrap();
    assert!(out.contains("already under v1"), "{out}");
    env.ok(&["keyring", "rotate"]);
    let out = String::from_utf8(env.ok(&["backup", "rewrap", "b.atrb", "--tenant", "acme", "--verify"])).unwrap();
    assert!(out.contains("from v1") && out.contains("to v2") && out.contains("authentic, 100000"), "{out}");
    let v: Value =
        serde_json::from_slice(&env.ok(&["backup", "rewrap", "b.atrb", "--tenant", "acme", "--json"])).unwrap();
    assert_eq!(v["changed"], false);
    // --verify catches a damaged chunk the header check alone does not see.
    let mut bad = std::fs::read(env.path("c.atrb")).unwrap();
    let at = bad.len() - 10;
    bad[at] ^= 1;
    std::fs::write(env.path("c.atrb"), &bad).unwrap();
    env.fails(&["backup", "rewrap", "c.atrb", "--tenant", "acme", "--verify"], 3);
}

#[test]
fn lifecycle_commands_write_an_audit_log_without_secrets() {
    let env = Env::new();
    let log = env.path("audit.jsonl");
    let with_log = |args: &[&str]| {
        let out = env.cmd().env("ATREST_AUDIT_LOG", &log).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    with_log(&["keyring", "rotate"]);
    with_log(&["keyring", "disable", "--version", "1"]);
    with_log(&["tenant", "rotate", "acme"]);
    with_log(&["tenant", "shred", "acme", "--yes", "--unverified"]);
    let out = env
        .cmd()
        .env("ATREST_AUDIT_LOG", &log)
        .args(["tenant", "shred", "acmee", "--yes", "--evidence-backup", "root.key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for want in
        ["keyring.rotate", "keyring.set_state", "tenant.rotate", "tenant.shred.unverified", "tenant.shred.refused"]
    {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(events.iter().all(|e| e["pid"].is_u64() && e["ts"].is_f64() && e["command"].is_string()));
    assert_eq!(events.iter().find(|e| e["event"] == "keyring.rotate").unwrap()["command"], "keyring rotate");
    // The root key text never appears.
    let key = std::fs::read_to_string(env.path("root.key")).unwrap();
    let hex_key = key.trim().rsplit(':').next().unwrap();
    assert_eq!(hex_key.len(), 64);
    for window in hex_key.as_bytes().windows(12) {
        assert!(!text.contains(std::str::from_utf8(window).unwrap()), "the audit log holds root key material");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // An audit log that cannot be opened stops the command before it changes anything.
    let out =
        env.cmd().env("ATREST_AUDIT_LOG", env.path("no/such/dir/a.log")).args(["keyring", "rotate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.status()["primary"], 2);
}

#[test]
fn tenant_ids_with_invisible_characters_are_refused_and_escaped() {
    let env = Env::new();
    let err = env.fails(&["tenant", "rotate", "ac\u{202e}me"], 1);
    assert!(err.contains("invisible") && err.contains("\\u{202e}"), "{err}");
    assert!(!err.contains('\u{202e}'), "the raw control character reached the terminal");
}
