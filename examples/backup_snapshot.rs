//! Encrypted backups of a snapshot chain: a full backup, an incremental one bound to it, a
//! verification, a random-access read, a rotation with an in-place header rewrap, and a
//! restore. The keyring lives in a temporary directory; no setup needed:
//!
//! ```text
//! cargo run --example backup_snapshot
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, Keyring, LocalRootKey, inspect_backup,
    rewrap_backup_header, verify_backup,
};

/// A stand-in for `pg_dump` output: fixed-length numbered lines, a few MiB.
fn dump(rows: usize, tag: &str) -> Vec<u8> {
    (0..rows).flat_map(|i| format!("{tag}\t{i:08}\tcustomer {i:08} <c{i:08}@example.com>\n").into_bytes()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let keyring =
        Keyring::create(&dir.path().join("keyring.atrk"), LocalRootKey::generate_file(&dir.path().join("root.key"))?)?;
    let acme = keyring.tenant("acme")?;
    println!("keyring in {} (primary {})", dir.path().display(), keyring.primary());

    // 1. A full backup, streamed through BackupWriter as a dump tool's output would be.
    let full_ctx = BackupContext::full("acme-2026-05-01");
    let full_data = dump(60_000, "full");
    let full_path = dir.path().join("acme-2026-05-01.full.atrb");
    let mut w =
        BackupWriter::new(&acme, &full_ctx, BackupOptions::default(), BufWriter::new(File::create(&full_path)?))?;
    io::copy(&mut &full_data[..], &mut w)?;
    w.finish()?.into_inner()?.sync_all()?;
    let info = inspect_backup(File::open(&full_path)?)?;
    println!(
        "full backup: {} plaintext bytes -> {} bytes ({} KiB chunks, key {}, stream {})",
        full_data.len(),
        std::fs::metadata(&full_path)?.len(),
        info.chunk_size / 1024,
        info.key_version,
        info.stream_id
    );

    // 2. An incremental backup bound to its parent and its place in the chain.
    let incr_ctx = BackupContext::incremental("acme-2026-05-02", "acme-2026-05-01", 1);
    let incr_data = dump(5_000, "incr");
    let incr_path = dir.path().join("acme-2026-05-02.incr.atrb");
    let opts = BackupOptions::default().chunk_size(64 << 10).threads(2);
    let mut w = BackupWriter::new(&acme, &incr_ctx, opts, File::create(&incr_path)?)?;
    w.write_all(&incr_data)?;
    w.finish()?.sync_all()?;
    println!("incremental backup: {} bytes, parent acme-2026-05-01, sequence 1", incr_data.len());

    // 3. Verify both without keeping any plaintext.
    let n = verify_backup(&acme, &full_ctx, BufReader::new(File::open(&full_path)?))?;
    println!("verified full backup: {n} bytes authentic");
    let n = verify_backup(&acme, &incr_ctx, File::open(&incr_path)?)?;
    println!("verified incremental backup: {n} bytes authentic");

    // The incremental stream is bound to its context: presenting it as another snapshot fails.
    let wrong = BackupContext::incremental("acme-2026-05-02", "acme-2026-04-30", 1);
    match verify_backup(&acme, &wrong, File::open(&incr_path)?) {
        Err(BackupError::Authentication) => println!("the incremental backup does not verify against another parent"),
        other => return Err(format!("context binding broken: {other:?}").into()),
    }

    // 4. Random access: one row from the middle of the full backup, without decrypting the rest.
    let mut r = BackupReader::open_seekable(&acme, &full_ctx, File::open(&full_path)?)?;
    let line_len = full_data.iter().position(|&b| b == b'\n').unwrap() + 1;
    let row = 41_234;
    let mut line = vec![0u8; line_len];
    r.seek(SeekFrom::Start((row * line_len) as u64))?;
    r.read_exact(&mut line)?;
    assert_eq!(line, full_data[row * line_len..(row + 1) * line_len]);
    println!("random access: row {row} of {} bytes: {}", r.len(), String::from_utf8_lossy(&line).trim_end());

    // 5. Rotation: a new master key; the backups' headers are rewrapped in place (only 76
    //    header bytes change), then the old version can be retired.
    let old = keyring.primary();
    let v2 = keyring.rotate()?;
    for path in [&full_path, &incr_path] {
        let v = rewrap_backup_header(&acme, path)?;
        println!("rewrapped {} under {v}", path.file_name().unwrap().to_string_lossy());
    }
    keyring.set_state(old, atrest::KeyState::Disabled)?;
    println!("master {old} disabled, {v2} is primary");

    // 6. Restore: the full backup, then the incremental on top.
    let mut restored = Vec::new();
    BackupReader::new(&acme, &full_ctx, BufReader::new(File::open(&full_path)?))?.read_to_end(&mut restored)?;
    BackupReader::new(&acme, &incr_ctx, File::open(&incr_path)?)?.read_to_end(&mut restored)?;
    assert_eq!(restored.len(), full_data.len() + incr_data.len());
    assert!(restored.starts_with(&full_data) && restored.ends_with(&incr_data));
    println!("restored {} bytes (full + incremental), identical to the originals", restored.len());
    Ok(())
}
