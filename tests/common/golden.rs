//! What the committed golden files in `tests/data/golden/` contain: shared by the checks in
//! `tests/golden.rs` and `tests/golden_backup.rs` (as `common::golden`) and by the generator
//! `examples/make_golden.rs` (which includes this file by path and made the files once), so
//! this file uses nothing else from `tests/common/`.
//!
//! Changing anything here (or the record or keyring format) makes `tests/golden.rs` fail
//! until the files are deliberately regenerated, which is the point.
#![allow(dead_code, reason = "shared between a test crate and an example that each use part of it")]

use std::path::PathBuf;

use atrest::{BackupContext, Context, LocalRootKey, RootKey};

/// The folder holding the golden files.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

/// The public test root key, in the key-file format.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The golden keyring: v1 enabled, v2 primary; tenant `initech` rotated to generation 1.
pub const KEYRING_FILE: &str = "keyring.atrk";

/// The tenant every golden record is sealed for.
pub const TENANT: &str = "acme";
/// A tenant rotated once (generation 1) in the golden keyring.
pub const ROTATED_TENANT: &str = "initech";
/// Another tenant, for a record that must not open as [`TENANT`].
pub const OTHER_TENANT: &str = "globex";

/// The context every golden record is bound to.
pub fn context() -> Context {
    Context::new().with("table", "contacts").with("column", "email").with("row", "42")
}

/// Another context, for a record that must not open under [`context`].
pub fn other_context() -> Context {
    Context::new().with("table", "contacts").with("column", "email").with("row", "43")
}

/// A golden record that must open.
pub struct GoldenRecord {
    /// File name.
    pub file: &'static str,
    /// Tenant it opens for.
    pub tenant: &'static str,
    /// Suite name as the header names it.
    pub suite: atrest::Suite,
    /// Master version.
    pub master: u16,
    /// Tenant generation.
    pub generation: u16,
    /// Plaintext.
    pub plaintext: &'static [u8],
}

/// Every golden record that must open, with what it must open to.
pub const RECORDS: &[GoldenRecord] = &[
    GoldenRecord {
        file: "record_v1_xaes.bin",
        tenant: TENANT,
        suite: atrest::Suite::XAes256Gcm,
        master: 1,
        generation: 0,
        plaintext: b"alice@example.com",
    },
    GoldenRecord {
        file: "record_v2_xaes.bin",
        tenant: TENANT,
        suite: atrest::Suite::XAes256Gcm,
        master: 2,
        generation: 0,
        plaintext: b"bob@example.com",
    },
    GoldenRecord {
        file: "record_v2_xchacha.bin",
        tenant: TENANT,
        suite: atrest::Suite::XChaCha20Poly1305,
        master: 2,
        generation: 0,
        plaintext: b"carol@example.com",
    },
    GoldenRecord {
        file: "record_v2_gen1_initech.bin",
        tenant: ROTATED_TENANT,
        suite: atrest::Suite::XAes256Gcm,
        master: 2,
        generation: 1,
        plaintext: b"dave@example.com",
    },
    GoldenRecord {
        file: "record_v2_empty.bin",
        tenant: TENANT,
        suite: atrest::Suite::XAes256Gcm,
        master: 2,
        generation: 0,
        plaintext: b"",
    },
];

/// Keyring cut short: must fail with `KeyringError::Truncated`.
pub const FAIL_KEYRING_TRUNCATED: &str = "fail_keyring_truncated.atrk";
/// Keyring with one character of its JSON edited: `KeyringError::Tampered`.
pub const FAIL_KEYRING_TAMPERED: &str = "fail_keyring_tampered.atrk";
/// A keyring under another root key (that key was discarded): `KeyringError::WrongRootKey`.
pub const FAIL_KEYRING_OTHER_ROOT: &str = "fail_keyring_other_root.atrk";
/// `record_v2_xaes.bin` with one ciphertext bit flipped.
pub const FAIL_RECORD_BITFLIP: &str = "fail_record_bitflip.bin";
/// `record_v2_xaes.bin` without its last byte.
pub const FAIL_RECORD_TRUNCATED: &str = "fail_record_truncated.bin";
/// A valid record of [`OTHER_TENANT`] (same context and plaintext as `record_v2_xaes.bin`).
pub const FAIL_RECORD_OTHER_TENANT: &str = "fail_record_other_tenant.bin";
/// A valid record of [`TENANT`] under [`other_context`].
pub const FAIL_RECORD_OTHER_CONTEXT: &str = "fail_record_other_context.bin";
/// `record_v1_xaes.bin` with its header edited to name master version 2.
pub const FAIL_RECORD_NAMES_V2: &str = "fail_record_names_v2.bin";

/// The byte of `record_v2_xaes.bin` flipped in [`FAIL_RECORD_BITFLIP`] (a ciphertext byte)
/// and the mask.
pub const BITFLIP_AT: (usize, u8) = (33, 0x04);

/// A repository catalog entry (format 1) under a fixed key; made and checked by the unit
/// test `repo::catalog::tests::golden_entry` (src/repo/catalog/tests.rs).
pub const CATALOG_ENTRY: &str = "catalog_entry_v1.bin";

/// Every file the folder must hold (besides `README.md`).
pub fn all_files() -> Vec<&'static str> {
    let mut v = vec![
        ROOT_KEY_FILE,
        KEYRING_FILE,
        FAIL_KEYRING_TRUNCATED,
        FAIL_KEYRING_TAMPERED,
        FAIL_KEYRING_OTHER_ROOT,
        FAIL_RECORD_BITFLIP,
        FAIL_RECORD_TRUNCATED,
        FAIL_RECORD_OTHER_TENANT,
        FAIL_RECORD_OTHER_CONTEXT,
        FAIL_RECORD_NAMES_V2,
        CATALOG_ENTRY,
    ];
    v.extend(RECORDS.iter().map(|r| r.file));
    v.extend(BACKUPS.iter().map(|b| b.file));
    v.extend(FAIL_BACKUPS);
    v.extend([BACKUP_FORMAT2.file, FAIL_BACKUP_FORMAT2_CONTEXT, FAIL_BACKUP_FORMAT2_METHOD]);
    v
}

// ---------------------------------------------------------------------------------------
// Backup streams (added after the keyring and records, by `make_golden -- --only-new`).

/// The chunk size of [`BACKUP_MAIN`] and [`BACKUP_TINY`]: the smallest allowed (64 KiB).
pub const BACKUP_CHUNK_SIZE: usize = 64 << 10;

/// The known plaintext of every golden backup: byte `i` is `i mod 251`. 251 is prime and
/// does not divide the chunk size, so no two chunks hold the same bytes.
pub fn backup_plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

/// The context of [`BACKUP_MAIN`].
pub fn backup_context() -> BackupContext {
    BackupContext::incremental("snap-2", "snap-1", 2)
}

/// The context of [`BACKUP_TINY`].
pub fn backup_tiny_context() -> BackupContext {
    BackupContext::full("snap-tiny")
}

/// The context of [`BACKUP_EMPTY`].
pub fn backup_empty_context() -> BackupContext {
    BackupContext::full("snap-empty")
}

/// A golden backup stream that must decrypt.
pub struct GoldenBackup {
    /// File name.
    pub file: &'static str,
    /// Tenant it opens for.
    pub tenant: &'static str,
    /// The backup context it is bound to.
    pub context: fn() -> BackupContext,
    /// Plaintext bytes per chunk, as the header says.
    pub chunk_size: usize,
    /// The plaintext is [`backup_plaintext`] of this length.
    pub plaintext_len: usize,
    /// Number of chunks.
    pub chunks: usize,
    /// Master version in the header.
    pub master: u16,
    /// Tenant generation in the header.
    pub generation: u16,
    /// The stream id `inspect_backup` reports (hex of the first 16 salt bytes).
    pub stream_id: &'static str,
    /// SHA-256 of the whole file: the committed bytes never change.
    pub sha256: &'static str,
}

/// Tenant `acme`, 150,000 bytes in 64 KiB chunks: two full chunks and a short final one.
pub const BACKUP_MAIN: &GoldenBackup = &GoldenBackup {
    file: "backup_v2_acme_incremental.bin",
    tenant: TENANT,
    context: backup_context,
    chunk_size: BACKUP_CHUNK_SIZE,
    plaintext_len: 150_000,
    chunks: 3,
    master: 2,
    generation: 0,
    stream_id: "a55e1c249a2a3c3d2fb12cce4e0d21af",
    sha256: "db25a77d7f21ed650089b3b2f4ae5482e01aeed1a26bde302dac775f641fd2c9",
};

/// Tenant `acme`, a full backup of 100 bytes: one short chunk.
pub const BACKUP_TINY: &GoldenBackup = &GoldenBackup {
    file: "backup_v2_acme_tiny.bin",
    tenant: TENANT,
    context: backup_tiny_context,
    chunk_size: BACKUP_CHUNK_SIZE,
    plaintext_len: 100,
    chunks: 1,
    master: 2,
    generation: 0,
    stream_id: "f70ed980787d84156385ef240385c428",
    sha256: "b83b1bc17db4828eff086f465c0217ffe9cd4c2567f5d9cd4086c603b5d5fac2",
};

/// Tenant `acme`, a full backup of the empty plaintext (1 MiB chunks): one chunk holding only
/// a tag.
pub const BACKUP_EMPTY: &GoldenBackup = &GoldenBackup {
    file: "backup_v2_acme_empty.bin",
    tenant: TENANT,
    context: backup_empty_context,
    chunk_size: 1 << 20,
    plaintext_len: 0,
    chunks: 1,
    master: 2,
    generation: 0,
    stream_id: "fdb3e98ae80787d71de49ec84fa5a984",
    sha256: "d55f02399a39352d53c2e32205979d668ce4b76d691a38f048f87b18c1f8b9be",
};

/// Every golden backup stream that must decrypt.
pub const BACKUPS: &[&GoldenBackup] = &[BACKUP_MAIN, BACKUP_TINY, BACKUP_EMPTY];

/// [`BACKUP_MAIN`] with one bit of its header flipped ([`BACKUP_HEADER_BITFLIP_AT`]).
pub const FAIL_BACKUP_HEADER_BITFLIP: &str = "fail_backup_header_bitflip.bin";
/// [`BACKUP_MAIN`] with one bit of chunk 1's ciphertext flipped ([`BACKUP_CHUNK_BITFLIP_AT`]).
pub const FAIL_BACKUP_CHUNK_BITFLIP: &str = "fail_backup_chunk_bitflip.bin";
/// [`BACKUP_MAIN`] without its final chunk (cut at a chunk boundary).
pub const FAIL_BACKUP_TRUNCATED_BOUNDARY: &str = "fail_backup_truncated_boundary.bin";
/// [`BACKUP_MAIN`] cut inside chunk 1, [`BACKUP_TRUNCATED_MID_LEN`] bytes long.
pub const FAIL_BACKUP_TRUNCATED_MID: &str = "fail_backup_truncated_mid.bin";
/// [`BACKUP_MAIN`] with chunks 0 and 1 swapped.
pub const FAIL_BACKUP_SWAPPED: &str = "fail_backup_chunks_swapped.bin";
/// [`BACKUP_MAIN`] followed by [`BACKUP_APPENDED`].
pub const FAIL_BACKUP_APPENDED: &str = "fail_backup_appended.bin";
/// The header of [`BACKUP_TINY`] followed by the chunks of [`BACKUP_MAIN`].
pub const FAIL_BACKUP_SPLICED_HEADER: &str = "fail_backup_spliced_header.bin";

/// Every backup stream that must be rejected with `BackupError::Authentication`.
pub const FAIL_BACKUPS: [&str; 7] = [
    FAIL_BACKUP_HEADER_BITFLIP,
    FAIL_BACKUP_CHUNK_BITFLIP,
    FAIL_BACKUP_TRUNCATED_BOUNDARY,
    FAIL_BACKUP_TRUNCATED_MID,
    FAIL_BACKUP_SWAPPED,
    FAIL_BACKUP_APPENDED,
    FAIL_BACKUP_SPLICED_HEADER,
];

/// The header length of a backup stream.
pub const BACKUP_HEADER_LEN: usize = 186;
/// One chunk on disk in [`BACKUP_MAIN`]: plaintext and a 16-byte tag.
pub const BACKUP_SLOT: usize = BACKUP_CHUNK_SIZE + 16;
/// The byte of [`BACKUP_MAIN`] flipped in [`FAIL_BACKUP_HEADER_BITFLIP`] (in the stream salt)
/// and the mask.
pub const BACKUP_HEADER_BITFLIP_AT: (usize, u8) = (30, 0x10);
/// The byte of [`BACKUP_MAIN`] flipped in [`FAIL_BACKUP_CHUNK_BITFLIP`] (chunk 1's
/// ciphertext) and the mask.
pub const BACKUP_CHUNK_BITFLIP_AT: (usize, u8) = (BACKUP_HEADER_LEN + BACKUP_SLOT + 1000, 0x01);
/// The length of [`FAIL_BACKUP_TRUNCATED_MID`]: header, chunk 0, and 30,000 bytes of chunk 1.
pub const BACKUP_TRUNCATED_MID_LEN: usize = BACKUP_HEADER_LEN + BACKUP_SLOT + 30_000;
/// What [`FAIL_BACKUP_APPENDED`] appends after the final chunk.
pub const BACKUP_APPENDED: &[u8] = b"data appended after the final chunk";

// ---------------------------------------------------------------------------------------
// Format version 2 streams (the context in the header), added by `make_golden -- --only-new`.

/// The context of [`BACKUP_FORMAT2`] (stored in its header).
pub fn backup_format2_context() -> BackupContext {
    BackupContext::incremental("2026-11-27T01", "2026-11-27T00", 1)
}

/// A format version 2 stream: tenant `acme`, 70,000 bytes in 64 KiB chunks (two chunks).
pub const BACKUP_FORMAT2: &GoldenBackup = &GoldenBackup {
    file: "backup_format2_acme_incremental.bin",
    tenant: TENANT,
    context: backup_format2_context,
    chunk_size: BACKUP_CHUNK_SIZE,
    plaintext_len: 70_000,
    chunks: 2,
    master: 2,
    generation: 0,
    stream_id: "9cfe6debe8c486129799d456213d00a9",
    sha256: "d7299acdc72c2f3ebdbc4f906b4d4e1f08a8a0320ab6716cce312dcc79a00c34",
};

/// The header length of [`BACKUP_FORMAT2`]: 189 and its 60-byte context.
pub const BACKUP_FORMAT2_HEADER_LEN: usize = 189 + 4 + 4 + 4 + 13 + 1 + 4 + 13 + 1 + 8 + 8;

/// [`BACKUP_FORMAT2`] with the last character of its stored snapshot id edited (`1` to
/// `2`, offset [`BACKUP_FORMAT2_SNAPSHOT_AT`]): fails authentication (the header tag covers
/// the context).
pub const FAIL_BACKUP_FORMAT2_CONTEXT: &str = "fail_backup_format2_context.bin";
/// Offset of the last snapshot-id byte in [`BACKUP_FORMAT2`].
pub const BACKUP_FORMAT2_SNAPSHOT_AT: usize = 189 + 4 + 4 + 4 + 12;
/// [`BACKUP_FORMAT2`] with its wrapping-method byte (offset 46) set to 2: fails
/// authentication (no such method).
pub const FAIL_BACKUP_FORMAT2_METHOD: &str = "fail_backup_format2_method.bin";

const KEY_PREFIX: &str = "ATREST-ROOT-KEY-V1:";

/// Parses the key-file text `ATREST-ROOT-KEY-V1:<64 hex>` (git does not keep mode 0600,
/// so the committed key is parsed here instead of through `LocalRootKey::from_file`).
pub fn parse_root_key(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.trim().strip_prefix(KEY_PREFIX)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut key).ok()?;
    Some(key)
}

/// The committed test root key's bytes.
pub fn root_key_bytes() -> [u8; 32] {
    let path = dir().join(ROOT_KEY_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_root_key(&text).unwrap_or_else(|| panic!("{} is not a root key file", path.display()))
}

/// The committed test root key as a provider.
pub fn root() -> LocalRootKey {
    LocalRootKey::new(RootKey::from_bytes(root_key_bytes()))
}

/// Reads one golden file.
pub fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
