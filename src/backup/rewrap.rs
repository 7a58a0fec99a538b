//! Re-wrapping a stream's data key under the tenant's current key version, in place.
//!
//! # Why in place, with a journal
//!
//! A rewrap changes 76 header bytes (offsets 46..122) of a file that may be many gigabytes.
//! Copying the whole file to a temporary and renaming it over the original would double the
//! disk space needed, rewrite every chunk, and replace the inode (breaking hard links and
//! handles other processes hold). Instead the header is rewritten in place, made crash-safe
//! with a small journal beside the file:
//!
//! 1. lock the file (advisory, exclusive), recover any journal left by a crash (below);
//! 2. read and fully authenticate the header (data key unwrap, commitment, header tag);
//! 3. write `<file>.atrest-rewrap` = `"ATRSTRWJ" || old header (186) || SHA-256 of both`,
//!    fsync it and its directory;
//! 4. write the new 186-byte header at offset 0 in one positioned write, fsync the file;
//! 5. remove the journal, fsync the directory.
//!
//! Recovery: a journal that is incomplete or fails its checksum was cut off before step 4,
//! so the header is untouched and the journal is removed. A complete journal means the crash
//! came during or after step 4: if the header on disk authenticates (old or new, both are
//! valid) it is kept, otherwise (a torn write) the old header is restored from the journal.
//! Either way the file ends with a valid header, and no chunk byte is ever written.
//!
//! Readers that open the file while a rewrap writes the header may see a torn header and
//! fail authentication; retry after the rewrap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::frame::read_full;
use super::header::{HEADER_LEN, Header, MUTABLE_RANGE};
use super::keys;
use crate::error::BackupError;
use crate::fs::{create_private, parent_dir, sync_dir};
use crate::{KeyVersion, Tenant};

const JOURNAL_MAGIC: &[u8; 8] = b"ATRSTRWJ";
const JOURNAL_LEN: usize = 8 + HEADER_LEN + 32;

fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".atrest-rewrap");
    PathBuf::from(p)
}

/// Re-wraps the data key of the backup stream in the file at `path` under the tenant's
/// current key version, rewriting only the header's key version, wrap nonce and wrapped key
/// (bytes 46..122) in place. Returns the key version the header names afterwards.
///
/// The header is read and fully authenticated under the key version it names (so a damaged
/// or forged header is never rewrapped); if it already names the current version, nothing is
/// written. After a rotation, rewrap every stream, then the old master version can be
/// disabled and, after the retention window, destroyed.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::UnsupportedFormat`],
/// [`BackupError::Authentication`] (damaged header, other tenant or keyring),
/// [`BackupError::Key`] (the old version is disabled or destroyed, shredded tenant),
/// [`BackupError::Seal`] (no usable current key), [`BackupError::InvalidParameter`] (a
/// journal beside the file belongs to another stream), [`BackupError::Io`].
///
/// # Crash safety
/// The header is rewritten in place (a copy of a multi-gigabyte file through a temporary
/// and a rename would double the disk space, rewrite every chunk and replace the inode).
/// Before the 186-byte header is overwritten in one positioned write, the old header is
/// saved in a journal `<path>.atrest-rewrap` (with a checksum), which is fsynced with its
/// directory; after the header is written and fsynced the journal is removed. The next
/// rewrap of the file first recovers from an interrupted one: an incomplete journal means
/// the header was never touched; with a complete one the header on disk is kept if it
/// authenticates (old or new), else (a torn write) the old header is restored. The file is
/// locked (advisory) during the rewrap. Chunk bytes are never written.
///
/// A reader that opens the file while its header is being rewritten may fail
/// authentication: retry after the rewrap.
///
/// # Example
/// ```
/// use atrest::{BackupContext, BackupOptions, Keyring, LocalRootKey, encrypt_backup, rewrap_backup_header};
/// let dir = tempfile::tempdir()?;
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// let path = dir.path().join("nightly.atrb");
/// std::fs::write(&path, encrypt_backup(&acme, &BackupContext::full("n1"), b"data", BackupOptions::default())?)?;
/// let v2 = keyring.rotate()?;
/// assert_eq!(rewrap_backup_header(&acme, &path)?.master, v2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn rewrap_backup_header(tenant: &Tenant, path: &Path) -> Result<KeyVersion, BackupError> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    file.lock()?;
    let journal = journal_path(path);
    recover(tenant, &mut file, &journal)?;

    let (old_bytes, header) = read_header(&mut file)?;
    let Some(new) = keys::rewrap_header(tenant, &header)? else {
        return Ok(header.key_version());
    };
    let new_bytes = new.encode();
    // The invariant that keeps every chunk valid: only the key version and wrapping change.
    let outside = old_bytes.iter().zip(&new_bytes).enumerate().any(|(i, (a, b))| a != b && !MUTABLE_RANGE.contains(&i));
    if outside || new_bytes.len() != HEADER_LEN {
        return Err(BackupError::Internal("rewrap would change immutable header bytes"));
    }
    write_journal(&journal, &old_bytes)?;
    write_header(&mut file, &new_bytes)?;
    fs::remove_file(&journal)?;
    sync_dir(parent_dir(path))?;
    tracing::info!(target: "atrest::audit", event = "backup.rewrap", tenant = %tenant.id(), path = %path.display(), from = %header.key_version(), to = %new.key_version());
    Ok(new.key_version())
}

fn read_header(file: &mut File) -> Result<([u8; HEADER_LEN], Header), BackupError> {
    let mut bytes = [0u8; HEADER_LEN];
    file.seek(SeekFrom::Start(0))?;
    let n = read_full(file, &mut bytes)?;
    let header = Header::parse_prefix(bytes.get(..n).unwrap_or_default())?;
    Ok((bytes, header))
}

/// Writes `bytes` at offset 0 in one positioned write and syncs the file.
fn write_header(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(bytes, 0)?;
    }
    #[cfg(not(unix))]
    {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(bytes)?;
    }
    file.sync_data()
}

fn journal_checksum(header: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(JOURNAL_MAGIC);
    h.update(header);
    h.finalize().into()
}

fn write_journal(journal: &Path, old: &[u8; HEADER_LEN]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(JOURNAL_LEN);
    bytes.extend_from_slice(JOURNAL_MAGIC);
    bytes.extend_from_slice(old);
    bytes.extend_from_slice(&journal_checksum(old));
    let mut f = create_private(journal)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    sync_dir(parent_dir(journal))
}

/// The old header saved in a complete, intact journal.
fn parse_journal(bytes: &[u8]) -> Option<[u8; HEADER_LEN]> {
    if bytes.len() != JOURNAL_LEN {
        return None;
    }
    let (magic, rest) = bytes.split_first_chunk::<8>()?;
    let (header, sum) = rest.split_first_chunk::<HEADER_LEN>()?;
    (magic == JOURNAL_MAGIC && sum == journal_checksum(header)).then_some(*header)
}

/// Finishes or undoes a rewrap that a crash interrupted (see the module documentation).
fn recover(tenant: &Tenant, file: &mut File, journal: &Path) -> Result<(), BackupError> {
    let mut bytes = Vec::new();
    match File::open(journal) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(saved) = parse_journal(&bytes) {
        let saved_header = Header::parse_prefix(&saved)?;
        let (_, current) = read_header(file).map_err(|_| stale_journal(journal))?;
        if !current.same_stream(&saved_header) {
            return Err(stale_journal(journal));
        }
        match keys::open_header(tenant, &current) {
            Ok(()) => {}
            // A torn header: put the old one back.
            Err(BackupError::Authentication) => write_header(file, &saved)?,
            Err(other) => return Err(other),
        }
        tracing::warn!(target: "atrest::audit", event = "backup.rewrap.recovered", journal = %journal.display());
    }
    fs::remove_file(journal)?;
    sync_dir(parent_dir(journal))?;
    Ok(())
}

fn stale_journal(journal: &Path) -> BackupError {
    BackupError::InvalidParameter(format!(
        "rewrap journal {} does not belong to this backup stream: remove it if the stream is intact",
        journal.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupContext, BackupOptions, Keyring, LocalRootKey, decrypt_backup, encrypt_backup};

    fn setup() -> (tempfile::TempDir, Keyring, PathBuf, Vec<u8>, BackupContext) {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
        let ctx = BackupContext::full("s1");
        let t = keyring.tenant("acme").unwrap();
        let stream = encrypt_backup(&t, &ctx, &[7u8; 100_000], BackupOptions::default().chunk_size(64 << 10)).unwrap();
        let path = dir.path().join("b.atrb");
        fs::write(&path, &stream).unwrap();
        (dir, keyring, path, stream, ctx)
    }

    #[test]
    fn torn_header_is_restored_from_the_journal() {
        let (_dir, keyring, path, stream, ctx) = setup();
        let t = keyring.tenant("acme").unwrap();
        keyring.rotate().unwrap();
        // Simulate a crash in the middle of step 4: the journal is complete, the header torn.
        let old: [u8; HEADER_LEN] = stream[..HEADER_LEN].try_into().unwrap();
        write_journal(&journal_path(&path), &old).unwrap();
        let mut torn = stream.clone();
        torn[60..80].fill(0x55);
        fs::write(&path, &torn).unwrap();
        assert!(decrypt_backup(&t, &ctx, &fs::read(&path).unwrap()).is_err());
        let v = rewrap_backup_header(&t, &path).unwrap();
        assert_eq!(v, t.key_version());
        assert!(!journal_path(&path).exists());
        let after = fs::read(&path).unwrap();
        assert_eq!(after[HEADER_LEN..], stream[HEADER_LEN..]);
        assert_eq!(decrypt_backup(&t, &ctx, &after).unwrap(), vec![7u8; 100_000]);
    }

    #[test]
    fn intact_header_is_kept_and_partial_journal_ignored() {
        let (_dir, keyring, path, stream, ctx) = setup();
        let t = keyring.tenant("acme").unwrap();
        // A journal cut off before the header was written: ignored and removed.
        fs::write(journal_path(&path), &JOURNAL_MAGIC[..]).unwrap();
        assert_eq!(rewrap_backup_header(&t, &path).unwrap(), t.key_version());
        assert!(!journal_path(&path).exists());
        assert_eq!(fs::read(&path).unwrap(), stream, "nothing to rewrap: the file is unchanged");
        // A complete journal and a header that authenticates: kept as it is.
        let old: [u8; HEADER_LEN] = stream[..HEADER_LEN].try_into().unwrap();
        write_journal(&journal_path(&path), &old).unwrap();
        keyring.rotate().unwrap();
        let v = rewrap_backup_header(&t, &path).unwrap();
        assert_eq!(v.master.get(), 2);
        assert_eq!(decrypt_backup(&t, &ctx, &fs::read(&path).unwrap()).unwrap(), vec![7u8; 100_000]);
    }

    #[test]
    fn journal_of_another_stream_is_refused() {
        let (dir, keyring, path, _, ctx) = setup();
        let t = keyring.tenant("acme").unwrap();
        let other = encrypt_backup(&t, &ctx, b"x", BackupOptions::default()).unwrap();
        let old: [u8; HEADER_LEN] = other[..HEADER_LEN].try_into().unwrap();
        write_journal(&journal_path(&path), &old).unwrap();
        let before = fs::read(&path).unwrap();
        assert!(matches!(rewrap_backup_header(&t, &path), Err(BackupError::InvalidParameter(_))));
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(journal_path(&path).exists());
        drop(dir);
    }
}
