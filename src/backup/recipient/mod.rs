//! Backup recipients: a public key per tenant and key version to which an encrypt-only host
//! encrypts backup streams, with no root key and no keyring; the keyring side derives the
//! private key again from the tenant's backup key to restore.
//!
//! # Recipient key pair
//!
//! Nothing new is stored. The private half is derived from the tenant's backup key of one
//! key version (see `kem.rs` for the formula): rotating the tenant or the keyring gives a
//! new recipient; disabling, destroying or shredding refuses or erases it exactly as it
//! does every other backup of that version.
//!
//! # Recipient text (version 1)
//!
//! One line of Bech32m with the human-readable part `atrestr` (so `atrestr1...`), about 80
//! characters for X25519 and about 1970 for X-Wing. The payload, big-endian:
//!
//! ```text
//! offset  size  field
//! 0       1     text format version = 0x01
//! 1       1     KEM: 0x02 X-Wing (ML-KEM-768 + X25519), 0x03 X25519
//! 2       2     master key version
//! 4       2     tenant key generation
//! 6       1     tenant id length T (1 ..= 128)
//! 7       T     tenant id (UTF-8)
//! 7+T     P     public key (P = 1216 for X-Wing, 32 for X25519)
//! ```
//!
//! A parser accepts exactly this: another version, KEM, length, an invalid tenant id or a
//! public key its KEM rejects is a typed [`RecipientError`](crate::RecipientError).
//!
//! # Stream header (format version 2, wrapping methods 0x02 and 0x03)
//!
//! A recipient stream is a version 2 stream (see the `backup` module documentation) whose
//! wrapping method at offset 46 is the recipient's KEM byte. The key-naming block after it
//! holds the key version and the HPKE-wrapped data key, and its length follows from the
//! method (E = 1120 for X-Wing, 32 for X25519):
//!
//! ```text
//! offset  size  field
//! 0       46    magic, version 0x02, suite, chunk size, stream salt (as for method 0x01)
//! 46      1     wrapping method = 0x02 (HPKE X-Wing) | 0x03 (HPKE X25519)
//! 47      2     master key version            \
//! 49      2     tenant key generation          |  the only bytes a rewrap changes
//! 51      E     HPKE encapsulated key (enc)    |  (offsets 47 .. 99+E)
//! 51+E    48    wrapped data key (32 + tag 16) /
//! 99+E    32    key commitment
//! 131+E   32    header tag
//! 163+E   2     context length C
//! 165+E   C     context
//! 165+E+C       first chunk
//! ```
//!
//! So a header is 1285 + C bytes (X-Wing) or 197 + C (X25519), against 189 + C for method
//! 0x01. The data key is sealed with HPKE base mode (RFC 9180; KEM as named, HKDF-SHA256,
//! ChaCha20-Poly1305, sequence number 0) to the recipient's public key `pk`, with
//!
//! ```text
//! info = L("atrest/v1/backup/recipient-wrap") || L(tenant id) || B || header[46..51]
//!        || SHA-256(pk)
//! aad  = commitment || header tag || enc
//! ```
//!
//! where `B` is the bound header of version 2 (bytes 0..46 and the context block) and
//! `header[46..51]` the method and key version. Commitment, header tag, chunk keys and
//! chunks are exactly as for method 0x01: only the way the data key is held differs. A
//! reader takes the key version and KEM from the header, derives that one private key from
//! the keyring (no trial decryption), opens the wrap, then checks commitment and tag.

mod kem;
mod text;
mod wrap;

#[cfg(test)]
mod kats;

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};

pub use kem::RecipientKem;
pub(crate) use wrap::{os_rng, placeholder, unwrap_data_key, wrap_data_key};

use super::{BackupContext, BackupOptions, BackupWriter};
use crate::error::{BackupError, RecipientError};
use crate::secret::TenantKey;
use crate::{KeyVersion, TenantId};

/// The public recipient of one tenant's backups under one key version: what an
/// encrypt-only host needs to write backup streams that only the keyring can open.
///
/// Get one from [`Tenant::backup_recipient`](crate::Tenant::backup_recipient), print it
/// ([`Display`](fmt::Display): one line, `atrestr1...`), and parse it on the backup host
/// ([`FromStr`]). Write streams with [`BackupWriter::to_recipient`](crate::BackupWriter::to_recipient)
/// or [`encrypt_backup_to`](crate::encrypt_backup_to); restore them with the keyring as any
/// other stream.
///
/// # Security
/// A recipient is public: it holds a public key, the tenant id and the key version, and
/// lets its holder encrypt, never decrypt. Nothing in the library turns a recipient into
/// plaintext. Check a recipient's origin as you would a public key's: a host given a
/// forged recipient encrypts to someone else.
///
/// # Example
/// ```
/// use atrest::{BackupContext, BackupOptions, Keyring, LocalRootKey, Recipient, RecipientKem};
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// let text = acme.backup_recipient(RecipientKem::X25519)?.to_string();
/// assert!(text.starts_with("atrestr1"));
///
/// // On the backup host: the text only.
/// let recipient: Recipient = text.parse()?;
/// let ctx = BackupContext::full("nightly-2026-05-01");
/// let stream = atrest::encrypt_backup_to(&recipient, &ctx, b"pg_dump output", BackupOptions::default())?;
///
/// // On the restore side: the keyring.
/// assert_eq!(atrest::decrypt_backup(&acme, &ctx, &stream)?, b"pg_dump output");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Recipient {
    tenant: TenantId,
    version: KeyVersion,
    kem: RecipientKem,
    public_key: Vec<u8>,
}

impl Recipient {
    /// The recipient of `tenant`'s backup key `backup_key` of `version`.
    pub(crate) fn derive(tenant: &TenantId, version: KeyVersion, kem: RecipientKem, backup_key: &TenantKey) -> Self {
        Self { tenant: tenant.clone(), version, kem, public_key: kem.public_key(backup_key) }
    }

    /// The tenant whose backups this recipient encrypts.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The key version whose backup key the private half derives from.
    pub fn key_version(&self) -> KeyVersion {
        self.version
    }

    /// The KEM.
    pub fn kem(&self) -> RecipientKem {
        self.kem
    }

    /// The public key bytes (1216 for X-Wing, 32 for X25519).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// SHA-256 of the public key (bound into every stream written to this recipient).
    pub(crate) fn key_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.public_key).into()
    }

    /// A short public fingerprint: the first 8 bytes of SHA-256 of the public key, in hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.key_hash().get(..8).unwrap_or_default())
    }
}

/// Encrypts `plaintext` to `recipient` into a complete backup stream in memory: a
/// [`BackupWriter::to_recipient`] over a buffer sized for the stream. Needs no keyring.
///
/// # Errors
/// [`BackupError::InvalidParameter`] (chunk size, context), [`BackupError::TooLong`],
/// [`BackupError::Rng`].
pub fn encrypt_backup_to(
    recipient: &Recipient,
    ctx: &BackupContext,
    plaintext: &[u8],
    opts: BackupOptions,
) -> Result<Vec<u8>, BackupError> {
    super::encrypt_all(BackupWriter::to_recipient(recipient, ctx, opts, Vec::new())?, plaintext)
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::write(f, self)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("tenant", &self.tenant)
            .field("key_version", &self.version)
            .field("kem", &self.kem)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl FromStr for Recipient {
    type Err = RecipientError;

    /// Parses a recipient text (`atrestr1...`; surrounding whitespace is ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        text::parse(s)
    }
}
