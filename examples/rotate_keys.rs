//! The whole key lifecycle, step by step: rotation, old data still readable, rewrap of records
//! and of a backup header, disabling and re-enabling a version, destroying it, rotating one
//! tenant alone, and crypto-shredding a tenant until the shred is complete.
//!
//! ```text
//! cargo run --example rotate_keys
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use atrest::{
    BackupContext, BackupOptions, Context, DestroyConfirmation, KeyState, Keyring, KeyringError, KeyringLocation,
    KeyringOptions, LocalRootKey, MasterVersion, OpenError, ShredEvidence, decrypt_backup, encrypt_backup,
    key_version_census, rewrap_backup_header,
};

/// Destroys `v` once its grace period has passed (a few seconds in this demo; 24 hours by
/// default, so that every server has stopped using it and the disable can still be undone).
fn destroy_after_grace(keyring: &Keyring, v: MasterVersion) -> Result<(), KeyringError> {
    keyring.set_state(v, KeyState::Disabled)?;
    let confirm = DestroyConfirmation::data_under_this_version_is_lost(v);
    loop {
        match keyring.destroy(v, confirm) {
            Err(KeyringError::GracePeriod { remaining_secs, .. }) => {
                println!("   waiting {remaining_secs} s for {v}'s grace period");
                std::thread::sleep(Duration::from_secs(remaining_secs));
            }
            other => return other,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The root key goes to a file (mode 0600) next to the keyring here; keep it apart from the
    // data in a real deployment. A root key that is never saved cannot reopen the keyring.
    let root = LocalRootKey::generate_file(&dir.path().join("root.key"))?;
    let location = KeyringLocation::File(dir.path().join("keyring.atrk"));
    // A short grace period for the demo (the default is 24 hours).
    let options = KeyringOptions::default().destroy_grace(Duration::from_secs(1));
    let keyring = Keyring::create_at(&location, root, options)?;
    let acme = keyring.tenant("acme")?;
    let globex = keyring.tenant("globex")?;

    // Some data under v1: ten records and a backup.
    let contexts: Vec<Context> =
        (0..10).map(|i| Context::new().with("table", "contacts").with("row", i.to_string())).collect();
    let mut records: Vec<Vec<u8>> =
        contexts.iter().map(|c| acme.seal(b"alice@example.com", c)).collect::<Result<_, _>>()?;
    let snapshot = BackupContext::full("2026-11-22T00:00Z");
    let backup_path = dir.path().join("acme-full.atrb");
    std::fs::write(&backup_path, encrypt_backup(&acme, &snapshot, &vec![7u8; 300_000], BackupOptions::default())?)?;
    println!("1. sealed 10 records and a 300 kB backup under {}", acme.key_version());

    // Rotate: v2 becomes primary, v1 stays enabled (decrypt only).
    let v2 = keyring.rotate()?;
    let v1 = atrest::MasterVersion::new(1);
    println!("2. rotated: primary {v2}; v1 records still open: {}", acme.open(&records[0], &contexts[0]).is_ok());

    // Disable v1 (reversible): data under it is refused, then enable it again.
    keyring.set_state(v1, KeyState::Disabled)?;
    let refused = matches!(acme.open(&records[0], &contexts[0]), Err(OpenError::KeyDisabled(_)));
    keyring.set_state(v1, KeyState::Enabled)?;
    println!(
        "3. disabled v1: refused = {refused}; enabled again: opens = {}",
        acme.open(&records[0], &contexts[0]).is_ok()
    );

    // Find what still uses v1 (headers only), then rewrap records and the backup header.
    let census = key_version_census(records.iter().map(Vec::as_slice));
    let in_use: Vec<String> = census.versions.iter().map(|(v, n)| format!("{v}: {n} records")).collect();
    println!("4. key versions in use before rewrap: {}", in_use.join(", "));
    let report = acme.rewrap_batch(records.iter_mut().zip(contexts.iter()), |_| {});
    let before = std::fs::read(&backup_path)?;
    let new_version = rewrap_backup_header(&acme, &backup_path)?;
    let after = std::fs::read(&backup_path)?;
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    println!(
        "5. rewrapped {} records; backup header now under {new_version} ({changed} of {} bytes changed, all in the header)",
        report.rewrapped,
        after.len()
    );

    // Destroy v1: irreversible; needs it disabled for a grace period, and an explicit confirmation.
    destroy_after_grace(&keyring, v1)?;
    let restored = decrypt_backup(&acme, &snapshot, &std::fs::read(&backup_path)?)?;
    println!(
        "6. destroyed v1; rewrapped records open: {}; backup restores {} bytes",
        records.iter().zip(&contexts).all(|(r, c)| acme.open(r, c).is_ok()),
        restored.len()
    );

    // Rotate one tenant alone.
    let generation = keyring.rotate_tenant("globex")?;
    println!(
        "7. rotated globex alone: generation {generation}, key {}; acme stays at {}",
        globex.key_version(),
        acme.key_version()
    );

    // Crypto-shred acme: refused at once; complete once every version that existed is destroyed.
    // The record proves that "acme" exists: a misspelled id would be refused.
    keyring.shred_tenant("acme", ShredEvidence::Record { sealed: &records[0], context: &contexts[0] })?;
    let shred = || keyring.status().tenants.into_iter().find(|t| t.id == "acme").and_then(|t| t.shred);
    println!("8. shredded acme: open now fails with: {}", acme.open(&records[0], &contexts[0]).unwrap_err());
    let pending: Vec<String> = shred().unwrap().pending_versions.iter().map(ToString::to_string).collect();
    println!("   shred pending until these versions are destroyed: {}", pending.join(", "));
    let v3 = keyring.rotate()?;
    // (Here the application rewraps every other tenant's data to v3 and waits out the backup
    // retention window, then destroys v2.)
    destroy_after_grace(&keyring, v2)?;
    println!("9. rotated to {v3}, destroyed {v2}: shred complete = {}", shred().unwrap().complete);
    Ok(())
}
