//! `atrest tenant recipient` and `atrest backup encrypt --recipient`: the encrypt-only side
//! runs with an environment holding no root key and no keyring (and HOME elsewhere), writes
//! a full and an incremental backup, and cannot decrypt them; the keyring side restores
//! both and moves them to a newer version's recipient with `backup rewrap`.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::data; the rest of the shared kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_atrest");

/// The keyring side: a root key and a keyring in `dir`.
fn keyed(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("ATREST_ROOT_KEY_FILE", dir.join("root.key"))
        .env("ATREST_KEYRING", dir.join("keyring.atrk"))
        .stdin(Stdio::null());
    c
}

/// The encrypt-only side: an empty environment (no ATREST_*), run in a directory of its own,
/// HOME there too. Nothing it could find names a keyring or a root key.
fn encrypt_only(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).env_clear().env("HOME", dir).stdin(Stdio::null());
    c
}

fn ok(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: &Output, code: i32, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(err.starts_with("atrest: error: ") && err.lines().count() == 1, "{what}: {err}");
    err
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let (keys, host) = (base.path().join("keys"), base.path().join("host"));
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    ok(keyed(&keys).args(["keygen", "--out", "root.key"]), "keygen");
    ok(keyed(&keys).args(["keyring", "init"]), "keyring init");
    (base, keys, host)
}

#[test]
fn encrypt_only_host_writes_full_and_incremental_keyring_side_restores_and_rewraps() {
    let (_base, keys, host) = setup();
    for kem in ["x-wing", "x25519"] {
        let text = ok(keyed(&keys).args(["tenant", "recipient", "acme", "--kem", kem]), "tenant recipient");
        let text = text.trim().to_owned();
        assert!(text.starts_with("atrestr1") && !text.contains(char::is_whitespace), "{text}");
        std::fs::write(host.join("acme.recipient"), format!("# acme's backup recipient\n\n{text}\n")).unwrap();
        let full = data(200_000, 1);
        let incr = data(30_000, 2);
        std::fs::write(host.join("full.dump"), &full).unwrap();
        std::fs::write(host.join("incr.dump"), &incr).unwrap();
        let (f_out, i_out) = (format!("full-{kem}.atrb"), format!("incr-{kem}.atrb"));
        ok(
            encrypt_only(&host).args([
                "backup",
                "encrypt",
                "--tenant",
                "acme",
                "--snapshot",
                "n1",
                "--recipient",
                &text,
                "-i",
                "full.dump",
                "-o",
                &f_out,
            ]),
            "encrypt-only full",
        );
        ok(
            encrypt_only(&host).args([
                "backup",
                "encrypt",
                "--tenant",
                "acme",
                "--snapshot",
                "n2",
                "--parent",
                "n1",
                "--sequence",
                "1",
                "--recipient-file",
                "acme.recipient",
                "-i",
                "incr.dump",
                "-o",
                &i_out,
                "--threads",
                "2",
            ]),
            "encrypt-only incremental",
        );
        // The encrypting side cannot decrypt: it has no keyring.
        let out = encrypt_only(&host).args(["backup", "decrypt", "--tenant", "acme", "-i", &f_out]).output().unwrap();
        let err = fails(&out, 2, "decrypt on the encrypt-only host");
        assert!(err.contains("no keyring"), "{err}");
        // The keyring side restores both (streams read with the contexts they store).
        for (file, pt) in [(&f_out, &full), (&i_out, &incr)] {
            let src = host.join(file);
            let out = keys.join(format!("{file}.out"));
            ok(
                keyed(&keys).args([
                    "backup",
                    "decrypt",
                    "--tenant",
                    "acme",
                    "-i",
                    src.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                ]),
                "decrypt",
            );
            assert_eq!(&std::fs::read(&out).unwrap(), pt);
        }
        let info =
            ok(keyed(&keys).args(["backup", "inspect", "--json", host.join(&i_out).to_str().unwrap()]), "inspect");
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["wrapping"], format!("recipient-{kem}"));
        assert_eq!(info["parent"], "n1");
    }
    // Rotate; rewrap a recipient stream to the new version's recipient (header only).
    ok(keyed(&keys).args(["keyring", "rotate"]), "rotate");
    let f = host.join("full-x-wing.atrb");
    let before = std::fs::read(&f).unwrap();
    let out =
        ok(keyed(&keys).args(["backup", "rewrap", "--tenant", "acme", "--verify", f.to_str().unwrap()]), "rewrap");
    assert!(out.contains("re-wrapped"), "{out}");
    let after = std::fs::read(&f).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[1300..], before[1300..], "chunks untouched");
    let text = ok(keyed(&keys).args(["tenant", "recipient", "acme", "--json"]), "recipient json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["key_version"].as_str(), v["kem"].as_str()), (Some("v2/g0"), Some("x-wing")));
    // The old version's recipient on request, refused once it is disabled.
    ok(keyed(&keys).args(["tenant", "recipient", "acme", "--key-version", "1"]), "recipient v1");
    ok(keyed(&keys).args(["keyring", "disable", "--version", "1"]), "disable");
    let out = keyed(&keys).args(["tenant", "recipient", "acme", "--key-version", "1"]).output().unwrap();
    let err = fails(&out, 1, "recipient of a disabled version");
    assert!(err.contains("disabled"), "{err}");
}

#[test]
fn recipient_flags_are_checked() {
    let (_base, keys, host) = setup();
    let text = ok(keyed(&keys).args(["tenant", "recipient", "acme", "--kem", "x25519"]), "recipient");
    let text = text.trim();
    std::fs::write(host.join("x"), b"data").unwrap();
    let enc = |args: &[&str]| {
        let mut c = encrypt_only(&host);
        c.args(["backup", "encrypt", "--snapshot", "s", "-i", "x", "-o", "x.atrb"]).args(args);
        c.output().unwrap()
    };
    // Another tenant than the recipient's.
    let err = fails(&enc(&["--tenant", "globex", "--recipient", text]), 2, "tenant mismatch");
    assert!(err.contains("acme"), "{err}");
    // A typo: the checksum.
    let mut typo = text.to_owned();
    typo.replace_range(30..31, if &text[30..31] == "q" { "p" } else { "q" });
    let err = fails(&enc(&["--tenant", "acme", "--recipient", &typo]), 2, "typo");
    assert!(err.contains("checksum"), "{err}");
    let err = fails(&enc(&["--tenant", "acme", "--recipient", "age1xyz"]), 2, "not ours");
    assert!(err.contains("recipient"), "{err}");
    assert!(!host.join("x.atrb").exists());
    // Without a recipient, the encrypt-only host has no keyring: refused, nothing written.
    let out = enc(&["--tenant", "acme"]);
    let err = fails(&out, 2, "no keyring");
    assert!(err.contains("no keyring"), "{err}");
    assert!(!host.join("x.atrb").exists());
    let out = keyed(&keys).args(["tenant", "recipient", "acme", "--kem", "rsa"]).output().unwrap();
    fails(&out, 2, "unknown KEM");
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    common::data::pseudo_random(len, seed)
}
