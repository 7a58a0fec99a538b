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
//!
//! To add golden files that the spec (`tests/common/golden.rs`) lists but the folder does
//! not hold yet, without touching any existing file:
//!
//! ```text
//! cargo run --example make_golden -- --only-new
//! ```
//!
//! That mode loads the committed keyring, creates only missing files (a file that exists is
//! never opened for writing), and derives missing `fail_*` files from the committed valid
//! ones. The backup streams were added this way after the keyring and records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/common/golden.rs"]
mod golden;

use std::error::Error;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use atrest::{BackupOptions, Keyring, LocalRootKey, RootKey, Suite, encrypt_backup};
use golden as g;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    std::fs::write(dir.join(name), bytes)?;
    println!("wrote {name} ({} bytes)", bytes.len());
    Ok(())
}

/// How files are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every file is (re)written.
    All,
    /// Only missing files are created; existing ones are kept as they are.
    OnlyNew,
}

/// Writes `name`, or in [`Mode::OnlyNew`] creates it only if it does not exist (never
/// truncating an existing file). Returns whether it was written.
fn put(dir: &Path, mode: Mode, name: &str, bytes: &[u8]) -> Result<bool, Box<dyn Error>> {
    match mode {
        Mode::All => write(dir, name, bytes)?,
        Mode::OnlyNew => {
            let path = dir.join(name);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(bytes)?;
                    f.sync_all()?;
                    println!("added {name} ({} bytes)", bytes.len());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    println!("kept {name}");
                    return Ok(false);
                }
                Err(e) => return Err(format!("{}: {e}", path.display()).into()),
            }
        }
    }
    Ok(true)
}

/// A golden stream: the committed one in [`Mode::OnlyNew`] if it exists, otherwise a new one
/// (written).
fn backup_stream(dir: &Path, mode: Mode, keyring: &Keyring, b: &g::GoldenBackup) -> Result<Vec<u8>, Box<dyn Error>> {
    if mode == Mode::OnlyNew && dir.join(b.file).exists() {
        println!("kept {}", b.file);
        return Ok(g::read(b.file));
    }
    let tenant = keyring.tenant(b.tenant)?;
    let version = tenant.key_version();
    assert_eq!((version.master.get(), version.generation), (b.master, b.generation), "{}", b.file);
    let opts = BackupOptions::default().chunk_size(b.chunk_size).threads(1);
    let stream = encrypt_backup(&tenant, &(b.context)(), &g::backup_plaintext(b.plaintext_len), opts)?;
    assert_eq!(stream.len(), g::BACKUP_HEADER_LEN + b.plaintext_len + 16 * b.chunks, "{}", b.file);
    put(dir, mode, b.file, &stream)?;
    Ok(stream)
}

/// The golden backup streams and their `fail_*` files.
fn make_backups(dir: &Path, mode: Mode, keyring: &Keyring) -> Result<(), Box<dyn Error>> {
    let mut streams = Vec::new();
    for b in g::BACKUPS {
        streams.push(backup_stream(dir, mode, keyring, b)?);
    }
    let (main, tiny) = (&streams[0], &streams[1]);
    assert_eq!(g::BACKUPS[0].file, g::BACKUP_MAIN.file);
    assert_eq!(g::BACKUPS[1].file, g::BACKUP_TINY.file);
    let (h, slot) = (g::BACKUP_HEADER_LEN, g::BACKUP_SLOT);
    assert_eq!(g::BACKUP_MAIN.chunks, 3);

    let mut flipped = main.clone();
    flipped[g::BACKUP_HEADER_BITFLIP_AT.0] ^= g::BACKUP_HEADER_BITFLIP_AT.1;
    put(dir, mode, g::FAIL_BACKUP_HEADER_BITFLIP, &flipped)?;

    let mut flipped = main.clone();
    flipped[g::BACKUP_CHUNK_BITFLIP_AT.0] ^= g::BACKUP_CHUNK_BITFLIP_AT.1;
    put(dir, mode, g::FAIL_BACKUP_CHUNK_BITFLIP, &flipped)?;

    put(dir, mode, g::FAIL_BACKUP_TRUNCATED_BOUNDARY, &main[..h + 2 * slot])?;
    put(dir, mode, g::FAIL_BACKUP_TRUNCATED_MID, &main[..g::BACKUP_TRUNCATED_MID_LEN])?;

    let swapped = [&main[..h], &main[h + slot..h + 2 * slot], &main[h..h + slot], &main[h + 2 * slot..]].concat();
    put(dir, mode, g::FAIL_BACKUP_SWAPPED, &swapped)?;

    put(dir, mode, g::FAIL_BACKUP_APPENDED, &[main.as_slice(), g::BACKUP_APPENDED].concat())?;
    put(dir, mode, g::FAIL_BACKUP_SPLICED_HEADER, &[&tiny[..h], &main[h..]].concat())?;

    for (b, s) in g::BACKUPS.iter().zip(&streams) {
        let info = atrest::inspect_backup(&s[..])?;
        println!("{}: stream_id {} sha256 {}", b.file, info.stream_id, sha256_hex(s));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn main() -> Result<(), Box<dyn Error>> {
    let force = std::env::args().any(|a| a == "--force");
    let only_new = std::env::args().any(|a| a == "--only-new");
    let dir = g::dir();
    std::fs::create_dir_all(&dir)?;
    if only_new {
        if force {
            return Err("--only-new and --force exclude each other".into());
        }
        // Everything new is made under the committed keyring and root key, which are only read.
        let keyring = Keyring::from_bytes(&g::read(g::KEYRING_FILE), Arc::new(g::root()))?;
        return make_backups(&dir, Mode::OnlyNew, &keyring);
    }
    if dir.join(g::KEYRING_FILE).exists() && !force {
        return Err("golden files exist: they are meant to be made once (pass --only-new to add missing files, \
                    --force for a deliberate change)"
            .into());
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
        let suite = atrest::RecordSuite::from_suite(r.suite).ok_or("records use XAES-256-GCM or XChaCha20-Poly1305")?;
        let tenant = keyring.tenant(r.tenant)?.with_suite(suite);
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

    make_backups(&dir, Mode::All, &keyring)
}
