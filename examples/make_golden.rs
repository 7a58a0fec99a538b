//! Generates the golden files in `tests/data/golden/` (see the README.md there).
//!
//! They were made once and are committed; `tests/golden.rs` opens them byte-for-byte on
//! every test run. Run this only for a deliberate format change:
//!
//! ```text
//! cargo run --example make_golden -- --force
//! ```
//!
//! Without `--force` it refuses to overwrite existing golden files. The committed test root
//! key (`root.key`) is reused if present, so records stay tied to the same public test key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/golden_spec/mod.rs"]
mod golden_spec;

use std::error::Error;
use std::path::Path;

use atrest::{Keyring, LocalRootKey, RootKey, Suite};
use golden_spec as g;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    std::fs::write(dir.join(name), bytes)?;
    println!("wrote {name} ({} bytes)", bytes.len());
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let force = std::env::args().any(|a| a == "--force");
    let dir = g::dir();
    std::fs::create_dir_all(&dir)?;
    if dir.join(g::KEYRING_FILE).exists() && !force {
        return Err("golden files exist: they are meant to be made once (pass --force for a deliberate change)".into());
    }

    // The public test root key: reuse the committed one, or make it the first time.
    if !dir.join(g::ROOT_KEY_FILE).exists() {
        let text = LocalRootKey::encode(&RootKey::generate()?);
        write(&dir, g::ROOT_KEY_FILE, text.as_bytes())?;
    }

    // v1 primary: the v1 record and the record that will be relabelled to name v2.
    let keyring = Keyring::in_memory(g::root())?;
    let acme = keyring.tenant(g::TENANT)?;
    let ctx = g::context();
    let mut records = Vec::new();
    let v1 = &g::RECORDS[0];
    assert_eq!((v1.master, v1.generation, v1.suite), (1, 0, Suite::XAes256Gcm));
    let v1_record = acme.seal(v1.plaintext, &ctx)?;
    records.push((v1.file, v1_record.clone()));

    // Rotate once (v2 primary, v1 enabled) and rotate one tenant's generation.
    keyring.rotate()?;
    keyring.rotate_tenant(g::ROTATED_TENANT)?;
    for r in &g::RECORDS[1..] {
        assert_eq!(r.master, 2);
        let tenant = keyring.tenant(r.tenant)?.with_suite(r.suite)?;
        assert_eq!(tenant.key_version().generation, r.generation);
        records.push((r.file, tenant.seal(r.plaintext, &ctx)?));
    }
    let keyring_bytes = keyring.to_bytes()?;
    write(&dir, g::KEYRING_FILE, &keyring_bytes)?;
    for (file, bytes) in &records {
        write(&dir, file, bytes)?;
    }

    // Keyring failures.
    write(&dir, g::FAIL_KEYRING_TRUNCATED, &keyring_bytes[..keyring_bytes.len() - 40])?;
    let text = String::from_utf8(keyring_bytes.clone())?;
    let revision = keyring.status().revision;
    let tampered = text.replacen(&format!("\"revision\":{revision}"), &format!("\"revision\":{}", revision + 7), 1);
    assert_ne!(tampered, text);
    assert_eq!(tampered.len(), text.len(), "one character edited");
    write(&dir, g::FAIL_KEYRING_TAMPERED, tampered.as_bytes())?;
    let other = Keyring::in_memory(LocalRootKey::generate()?)?; // that root key is discarded
    write(&dir, g::FAIL_KEYRING_OTHER_ROOT, &other.to_bytes()?)?;

    // Record failures.
    let v2_xaes = &records[1].1;
    let mut flipped = v2_xaes.clone();
    flipped[g::BITFLIP_AT.0] ^= g::BITFLIP_AT.1;
    write(&dir, g::FAIL_RECORD_BITFLIP, &flipped)?;
    write(&dir, g::FAIL_RECORD_TRUNCATED, &v2_xaes[..v2_xaes.len() - 1])?;
    let globex = keyring.tenant(g::OTHER_TENANT)?;
    write(&dir, g::FAIL_RECORD_OTHER_TENANT, &globex.seal(g::RECORDS[1].plaintext, &ctx)?)?;
    write(&dir, g::FAIL_RECORD_OTHER_CONTEXT, &acme.seal(g::RECORDS[1].plaintext, &g::other_context())?)?;
    let mut names_v2 = v1_record;
    names_v2[2..4].copy_from_slice(&2u16.to_be_bytes());
    write(&dir, g::FAIL_RECORD_NAMES_V2, &names_v2)?;
    Ok(())
}
