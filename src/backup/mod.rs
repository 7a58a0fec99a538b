//! Encrypted backup streams: a chunked, seekable, parallel STREAM construction over
//! AES-256-GCM, with a fresh random data key per stream wrapped under the tenant's backup key.
//!
//! # Format (version 1)
//!
//! (Version 2, written by this build, follows.) A stream is a 186-byte header followed by one or more chunks. All integers are big-endian.
//!
//! ## Header
//!
//! ```text
//! offset  size  field
//! 0       8     magic = "ATRESTBK" (41 54 52 45 53 54 42 4b)
//! 8       1     format version = 0x01
//! 9       1     suite id = 0x02 (AES-256-GCM, for the chunks)
//! 10      4     chunk size in bytes (65536 ..= 16777216)
//! 14      32    stream salt (random)
//! 46      2     master key version            \
//! 48      2     tenant key generation          |  the only bytes a rewrap changes
//! 50      24    wrap nonce (random)            |  (offsets 46..122)
//! 74      48    wrapped data key (32 + tag 16) /
//! 122     32    key commitment
//! 154     32    header tag
//! 186           first chunk
//! ```
//!
//! Bytes `0..46`, `122..154` and `154..186` never change after a stream is written: they are
//! the *immutable header*. Bytes `46..122` name the key that wraps the data key and hold the
//! wrapping; [`rewrap_backup_header`] replaces them in place.
//!
//! ## Keys
//!
//! Each stream has a fresh random 32-byte data key `DK`. With `salt` the stream salt and
//! `L(x)` = 4-byte length of `x` followed by `x`:
//!
//! ```text
//! prk          = HKDF-Extract(salt, DK)                                  (HKDF-SHA256)
//! chunk key    = HKDF-Expand(prk, L("atrest/v1/backup") || L("chunk key"), 32)
//! nonce prefix = HKDF-Expand(prk, L("atrest/v1/backup") || L("nonce prefix"), 32)[0..7]
//! commitment   = HKDF-Expand(prk, L("atrest/v1/backup") || L("commitment"), 32)
//! mac key      = HKDF-Expand(prk, L("atrest/v1/backup") || L("header mac"), 32)
//! header tag   = HMAC-SHA256(mac key, L("atrest/v1/backup/header") || header[0..46] || commitment)
//! ```
//!
//! The data key is wrapped with XAES-256-GCM under the tenant's backup key for the key
//! version at offset 46, with the random wrap nonce and
//!
//! ```text
//! wrap AAD = L("atrest/v1/backup/wrap") || L(tenant id) || header[0..46]
//!            || key version (4 bytes, as at offset 46) || commitment || header tag
//! ```
//!
//! The wrap binds the immutable header and the key version, but not the backup context, so
//! a rewrap touches only header bytes. A reader unwraps the data key, then checks the
//! commitment (constant time) and the header tag before it opens any chunk.
//!
//! ## Chunks
//!
//! The plaintext is cut into chunks of `chunk size` bytes; the last chunk holds 1 ..= chunk
//! size bytes (0 bytes only when the whole plaintext is empty, so every stream has at least
//! one chunk). Chunk `i` (counting from 0) is at offset `186 + i * (chunk size + 16)` and is
//! `AES-256-GCM(chunk key, nonce_i, AAD, plaintext_i)` = ciphertext (same length) || 16-byte
//! tag, where
//!
//! ```text
//! nonce_i = nonce prefix (7) || i as u32 (4) || 0x01 if this is the final chunk else 0x00
//! AAD     = SHA-256( L("atrest/v1/backup/chunk") || header[0..46] || commitment || header tag
//!                    || L(tenant id) || L(snapshot id)
//!                    || 0x00 (no parent) | 0x01 || L(parent snapshot id)
//!                    || kind (0x01 full, 0x02 incremental) || sequence (u64) )
//! ```
//!
//! computed once per stream. At most 2^32 chunks per stream. The final-chunk flag in the
//! nonce makes truncation at a chunk boundary and appending after the final chunk
//! detectable; the index makes reordering, dropping and duplicating detectable; the
//! per-stream key makes splicing from another stream fail; the AAD binds every chunk to the
//! tenant, the backup context and the immutable header.
//!
//! # Format version 2
//!
//! New streams are version 2; version 1 streams stay readable. Version 2 stores the backup
//! context in the header and adds a wrapping-method byte; keys, chunks and the formulas
//! above are the same, with `B` (the *bound header*) in place of `header[0..46]` in the
//! header tag, the wrap AAD and the chunk AAD:
//!
//! ```text
//! offset  size  field
//! 0       8     magic = "ATRESTBK"
//! 8       1     format version = 0x02
//! 9       1     suite id = 0x02 (AES-256-GCM)
//! 10      4     chunk size (65536 ..= 16777216)
//! 14      32    stream salt (random)
//! 46      1     wrapping method = 0x01 (XAES-256-GCM under the tenant's backup key)
//! 47      2     master key version            \
//! 49      2     tenant key generation          |  the only bytes a rewrap changes
//! 51      24    wrap nonce (random)            |  (offsets 47..123)
//! 75      48    wrapped data key (32 + tag 16) /
//! 123     32    key commitment
//! 155     32    header tag
//! 187     2     context length C (at most 2206)
//! 189     C     context
//! 189+C         first chunk
//!
//! context = L(tenant id) || L(snapshot id) || 0x00 (no parent) | 0x01 || L(parent id)
//!           || kind (0x01 full, 0x02 incremental) || sequence (u64) || created (u64,
//!           seconds since 1970-01-01 UTC)
//! B       = header[0..46] || header[187..189+C]          (the context block)
//! header tag = HMAC-SHA256(mac key, L("atrest/v1/backup/header") || B || commitment)
//! wrap AAD   = L("atrest/v1/backup/wrap") || L(tenant id) || B || header[46..51]
//!              || commitment || header tag
//! chunk AAD  = SHA-256( L("atrest/v1/backup/chunk") || B || commitment || header tag
//!                       || L(tenant id) || the context's snapshot .. sequence encoding above )
//! ```
//!
//! (`L(x)` has a 4-byte length; the chunk AAD's context part is the version 1 encoding of
//! the stored snapshot, parent, kind and sequence.) A parser accepts exactly what a writer
//! produces: method 0x01, a valid tenant id, UTF-8 ids of 1 ..= 1024 bytes, an incremental
//! backup with a parent, and nothing left over in the context; anything else fails
//! authentication. Chunk `i` is at offset `189 + C + i * (chunk size + 16)`.
//!
//! A reader takes the context from the header. What a caller passes is an expectation:
//! after the header authenticated, the stored snapshot, parent, kind and sequence are
//! compared with it, and a difference is [`BackupError::ContextMismatch`] naming the field.
//! The tenant is compared before any key is used (a stream of another tenant cannot
//! authenticate for this one); that comparison trusts the header's claim. Methods 0x02 and
//! 0x03 (the data key sealed to a public recipient, `src/backup/recipient/mod.rs`) put
//! their own key-naming block, whose length follows from the method, at offsets 47..123.
//!
//! # Reading
//!
//! A chunk's plaintext is released only after its tag verified. Sequential readers learn
//! which chunk is final from the end of the input (they read one byte ahead), so a stream cut
//! anywhere fails at its end with [`BackupError::Authentication`], never with a clean end of
//! file. Seekable readers authenticate the final chunk first; after that the length is
//! trusted and any offset is reached in O(1).

mod chunk;
mod frame;
mod header;
mod info;
mod keys;
mod pipeline;
mod reader;
mod recipient;
mod rewrap;
mod stored;
mod writer;

#[cfg(test)]
mod tests;

use serde::Serialize;
use zeroize::Zeroizing;

pub use info::{BackupInfo, inspect_backup};
pub use reader::BackupReader;
pub use recipient::{Recipient, RecipientKem, encrypt_backup_to};
pub use rewrap::rewrap_backup_header;
pub(crate) use stored::Stored;
pub use writer::BackupWriter;

use crate::error::BackupError;
use crate::{Backend, Tenant};

/// The default chunk size: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// The smallest chunk size: 64 KiB.
pub const MIN_CHUNK_SIZE: usize = 64 << 10;
/// The largest chunk size: 16 MiB.
pub const MAX_CHUNK_SIZE: usize = 16 << 20;
/// The longest snapshot id (and parent snapshot id), in bytes.
pub const MAX_SNAPSHOT_ID_LEN: usize = 1024;
/// The length of a version 1 backup stream header, in bytes (version 2: 189, or 1285 / 197
/// with a recipient, plus the context; see [`BackupInfo::header_len`]).
pub const BACKUP_HEADER_LEN: usize = header::HEADER_LEN;

/// Whether a backup holds everything or only the changes since its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// A complete snapshot.
    Full,
    /// The changes since a parent snapshot (which must be named).
    Incremental,
}

impl BackupKind {
    /// "full" or "incremental".
    pub fn name(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        }
    }

    fn id(self) -> u8 {
        match self {
            BackupKind::Full => 1,
            BackupKind::Incremental => 2,
        }
    }
}

/// What a backup stream is bound to: its snapshot id, its parent snapshot id (for an
/// incremental backup), its kind and its sequence number in a chain.
///
/// Every chunk of a stream authenticates the context. Version 2 streams store it in their
/// header (see [`inspect_backup`] and [`BackupReader::open`]): a stream read with another
/// expected context fails with [`BackupError::ContextMismatch`]. Version 1 streams do not
/// store it: read with another context they fail with [`BackupError::Authentication`].
///
/// Snapshot ids are public identifiers (they may appear in logs); they must not be secret.
///
/// # Example
/// ```
/// use atrest::BackupContext;
/// let full = BackupContext::full("db-2026-05-01");
/// let incr = BackupContext::incremental("db-2026-05-02", "db-2026-05-01", 1);
/// assert_ne!(full, incr);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupContext {
    snapshot_id: String,
    parent: Option<String>,
    kind: BackupKind,
    sequence: u64,
}

impl BackupContext {
    /// A full backup with sequence 0 and no parent.
    pub fn full(snapshot_id: &str) -> Self {
        Self::new(snapshot_id, None, BackupKind::Full, 0)
    }

    /// An incremental backup of `snapshot_id` on top of `parent_snapshot_id`, number
    /// `sequence` in its chain.
    pub fn incremental(snapshot_id: &str, parent_snapshot_id: &str, sequence: u64) -> Self {
        Self::new(snapshot_id, Some(parent_snapshot_id), BackupKind::Incremental, sequence)
    }

    /// Any combination; checked when a stream is written or read (see [`BackupWriter::new`]).
    pub fn new(snapshot_id: &str, parent: Option<&str>, kind: BackupKind, sequence: u64) -> Self {
        Self { snapshot_id: snapshot_id.to_owned(), parent: parent.map(str::to_owned), kind, sequence }
    }

    /// The snapshot id.
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// The parent snapshot id, if any.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The kind.
    pub fn kind(&self) -> BackupKind {
        self.kind
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Checks the field lengths and that an incremental backup names its parent.
    fn validate(&self) -> Result<(), BackupError> {
        let check = |what: &str, id: &str| {
            if id.is_empty() {
                Err(BackupError::InvalidParameter(format!("the {what} is empty")))
            } else if id.len() > MAX_SNAPSHOT_ID_LEN {
                Err(BackupError::InvalidParameter(format!("the {what} is longer than {MAX_SNAPSHOT_ID_LEN} bytes")))
            } else {
                Ok(())
            }
        };
        check("snapshot id", &self.snapshot_id)?;
        match (&self.parent, self.kind) {
            (Some(p), _) => check("parent snapshot id", p),
            (None, BackupKind::Incremental) => {
                Err(BackupError::InvalidParameter("an incremental backup must name its parent snapshot".into()))
            }
            (None, BackupKind::Full) => Ok(()),
        }
    }

    /// The canonical encoding that enters every chunk's associated data (see the format).
    fn encode_into(&self, out: &mut Vec<u8>) {
        crate::encoding::put_lp(out, self.snapshot_id.as_bytes());
        match &self.parent {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                crate::encoding::put_lp(out, p.as_bytes());
            }
        }
        out.push(self.kind.id());
        out.extend_from_slice(&self.sequence.to_be_bytes());
    }
}

/// Options for writing (and, for the thread count and backend, reading) a backup stream.
///
/// Defaults: [`DEFAULT_CHUNK_SIZE`] (1 MiB) chunks, all cores, the default AES-256-GCM
/// [`Backend`].
///
/// # Example
/// ```
/// use atrest::BackupOptions;
/// let opts = BackupOptions::default().chunk_size(4 << 20).threads(2);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupOptions {
    chunk_size: usize,
    threads: usize,
    backend: Backend,
    created: Option<u64>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self { chunk_size: DEFAULT_CHUNK_SIZE, threads: 0, backend: Backend::default(), created: None }
    }
}

impl BackupOptions {
    /// The plaintext bytes per chunk, [`MIN_CHUNK_SIZE`] ..= [`MAX_CHUNK_SIZE`] (checked when
    /// the stream starts). Readers take the chunk size from the header.
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// How many threads encrypt chunks in parallel; 0 (the default) means all cores (the
    /// global rayon pool), 1 means the calling thread only, and n >= 2 a pool of n threads
    /// made for the stream. The output is byte-for-byte the same for any count. The
    /// streaming writer and reader hold two batches of four chunks per thread (one chunk each
    /// on a single thread): memory in flight is about `8 * threads * chunk size` (at most
    /// 512 MiB unless one chunk is larger), allocated once per stream.
    #[must_use]
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// The AES-256-GCM implementation for the chunks (default: [`Backend::default()`]). The
    /// stream's bytes do not depend on it. A backend not compiled into this build makes the
    /// stream fail to start with [`BackupError::InvalidParameter`].
    #[must_use]
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The creation time a version 2 stream stores, in seconds since the Unix epoch (UTC);
    /// default: the system clock when the stream starts. For imports of older dumps and for
    /// tests on simulated time (a repository orders and prunes backups by this time).
    #[must_use]
    pub fn created_at(mut self, unix_seconds: u64) -> Self {
        self.created = Some(unix_seconds);
        self
    }

    fn checked_chunk_size(&self) -> Result<usize, BackupError> {
        if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            Ok(self.chunk_size)
        } else {
            Err(BackupError::InvalidParameter(format!(
                "chunk size {} is outside {MIN_CHUNK_SIZE} ..= {MAX_CHUNK_SIZE} bytes",
                self.chunk_size
            )))
        }
    }
}

/// Encrypts `plaintext` into a complete backup stream in memory: a [`BackupWriter`] over a
/// buffer sized for the stream (chunks encrypted in parallel, straight from `plaintext`).
///
/// For data that does not fit in memory, use [`BackupWriter`].
///
/// # Errors
/// [`BackupError::InvalidParameter`] (chunk size, context), [`BackupError::Seal`] (shredded
/// tenant, unusable primary key), [`BackupError::TooLong`], [`BackupError::Rng`].
///
/// # Example
/// ```
/// use atrest::{BackupContext, BackupOptions, Keyring, LocalRootKey, decrypt_backup, encrypt_backup};
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// let ctx = BackupContext::full("nightly-2026-05-01");
/// let stream = encrypt_backup(&acme, &ctx, b"pg_dump output", BackupOptions::default())?;
/// assert_eq!(decrypt_backup(&acme, &ctx, &stream)?, b"pg_dump output");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encrypt_backup(
    tenant: &Tenant,
    ctx: &BackupContext,
    plaintext: &[u8],
    opts: BackupOptions,
) -> Result<Vec<u8>, BackupError> {
    encrypt_all(BackupWriter::new(tenant, ctx, opts, Vec::new())?, plaintext)
}

/// Writes all of `plaintext` through `w` (whose output holds the header) and finishes it,
/// the output reserved up front for the whole stream.
fn encrypt_all(mut w: BackupWriter<Vec<u8>>, plaintext: &[u8]) -> Result<Vec<u8>, BackupError> {
    let body = w.frame().sealing(0, plaintext.len(), true)?.bytes();
    if let Some(out) = w.out.as_mut() {
        out.reserve_exact(body);
    }
    w.write_all_of(plaintext)?;
    w.finish()
}

/// Verifies and decrypts a complete backup stream held in memory: a [`BackupReader`] whose
/// [`copy_to`](BackupReader::copy_to) fills a buffer sized for the plaintext.
///
/// Returns the plaintext only if every chunk, the final-chunk marker and the header verified;
/// on any failure nothing is returned (and what was decrypted is wiped).
///
/// # Errors
/// [`BackupError::Authentication`] for any modification, truncation, extension, other
/// keyring, or (version 1) context; [`BackupError::ContextMismatch`] for a version 2 stream
/// of another tenant or context; [`BackupError::NotABackup`],
/// [`BackupError::UnsupportedFormat`]; [`BackupError::Key`] for a disabled or destroyed key
/// version or a shredded tenant; [`BackupError::InvalidParameter`] for a malformed context.
pub fn decrypt_backup(tenant: &Tenant, ctx: &BackupContext, stream: &[u8]) -> Result<Vec<u8>, BackupError> {
    decrypt_with(tenant, ctx, stream, BackupOptions::default())
}

/// [`decrypt_backup`] with the thread count and backend of `opts`.
fn decrypt_with(
    tenant: &Tenant,
    ctx: &BackupContext,
    stream: &[u8],
    opts: BackupOptions,
) -> Result<Vec<u8>, BackupError> {
    let mut reader = BackupReader::with_options(tenant, ctx, stream, opts)?;
    // The plaintext is shorter than the stream: the buffer never moves, so no copy of the
    // plaintext is left behind, and on failure what was written is wiped.
    let mut out = Zeroizing::new(Vec::with_capacity(stream.len().saturating_sub(BACKUP_HEADER_LEN)));
    reader.copy_to(&mut *out)?;
    Ok(std::mem::take(&mut *out))
}

/// Reads a whole stream, verifying every chunk, and returns the plaintext length. Nothing
/// is kept: memory stays bounded for any stream length.
///
/// # Errors
/// As [`BackupReader::new`] and reading it: [`BackupError::Authentication`] for any
/// modification, truncation or extension; [`BackupError::Io`] from `input`.
pub fn verify_backup<R: std::io::Read>(tenant: &Tenant, ctx: &BackupContext, input: R) -> Result<u64, BackupError> {
    BackupReader::new(tenant, ctx, input)?.verify_to_end()
}

/// Authenticates the header at the start of `stream` for `tenant` (data key unwrap,
/// commitment, header tag): evidence that the stream is a backup of this tenant.
pub(crate) fn authenticate_header(tenant: &Tenant, stream: &[u8]) -> Result<(), BackupError> {
    keys::open_header(tenant, &header::Header::parse_prefix(stream)?)
}
