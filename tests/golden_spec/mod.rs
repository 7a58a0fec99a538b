//! What the committed golden files in `tests/data/golden/` contain: shared by the checks in
//! `tests/golden.rs` and by the generator `examples/make_golden.rs`, which made them once.
//!
//! Changing anything here (or the record or keyring format) makes `tests/golden.rs` fail
//! until the files are deliberately regenerated, which is the point.
#![allow(dead_code, reason = "shared between a test crate and an example that each use part of it")]

use std::path::PathBuf;

use atrest::{Context, LocalRootKey, RootKey};

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
    ];
    v.extend(RECORDS.iter().map(|r| r.file));
    v
}

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
