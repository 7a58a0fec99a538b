//! Sealed records: small values (a field, a row) sealed under a tenant's record key and
//! bound to their context.
//!
//! # Format (version 1)
//!
//! ```text
//! offset  size  field
//! 0       1     format version = 0x01
//! 1       1     suite id: 0x01 XAES-256-GCM (default), 0x03 XChaCha20-Poly1305
//! 2       2     master key version, big-endian
//! 4       2     tenant key generation, big-endian
//! 6       24    nonce (random, generated inside the library)
//! 30      n     ciphertext (same length as the plaintext)
//! 30+n    16    tag
//! ```
//!
//! Overhead: 46 bytes for every suite. The AEAD key is the tenant's record key (see
//! `keyring` key derivation) for the named master version and generation; the associated
//! data is
//!
//! ```text
//! len||"atrest/v1/record" || bytes 0..6 of the record || len||tenant id || context
//! ```
//!
//! where `len||x` is a 4-byte big-endian length and `x`, and `context` is
//! [`Context::canonical_bytes`](crate::Context::canonical_bytes). The whole header is
//! therefore authenticated, and a record moved to another tenant, context, key version or
//! suite fails to open.
//!
//! # Nonces and limits (XAES-256-GCM)
//!
//! XAES-256-GCM derives an AES-256-GCM key from the first 96 bits of the nonce. A record key
//! keeps one random 96-bit prefix (from the OS RNG) and its derived AES-256-GCM instance,
//! and draws the other 96 bits of each nonce from a CSPRNG (`rand::rng()`, ChaCha seeded by
//! the OS). The output is standard XAES-256-GCM with uniformly random suffixes. The prefix
//! is replaced after 2^28 records and in any process forked from the one that drew it: a
//! forked child never reuses its parent's prefix and RNG stream together (the thread RNG is
//! copied by `fork`). Forks are detected without a system call per record: a
//! `pthread_atfork` child handler (crate `forkguard`) bumps a counter inside `fork()`, before
//! the child runs any code of its own, and each seal compares that counter; if the handler
//! cannot be registered the sealer compares process ids instead. A process made by a raw
//! `clone(2)` system call or glibc's `_Fork()` skips `pthread_atfork` handlers: such a child
//! must not seal records with keys inherited from its parent. With
//! at most q = 2^28 random 96-bit nonces per derived key, the chance of any nonce repeating
//! under one derived key is at most q^2 / 2^97 = 2^-41; distinct prefixes give independent
//! keys (prefix collisions are a 96-bit birthday event). There is therefore no practical
//! limit on the number of records per tenant key.

mod format;
mod key;
mod rewrap;

pub use format::{RecordInfo, key_version_of, record_info};
pub use rewrap::{KeyVersionCensus, RewrapReport, key_version_census};

pub(crate) use key::RecordKey;

use zeroize::Zeroize;

use crate::context::Context;
use crate::error::{OpenError, SealError};
use crate::keyring::Tenant;

/// The largest plaintext a record may hold (1 GiB); use a backup stream for more.
pub const MAX_RECORD_LEN: usize = 1 << 30;

impl Tenant {
    /// Seals `plaintext` bound to this tenant and `context`.
    ///
    /// # Errors
    /// [`SealError::TenantShredded`], [`SealError::TooLarge`], [`SealError::Rng`].
    ///
    /// # Security
    /// The nonce is generated inside; the output names the key version and suite, and
    /// authenticates them together with the tenant id and context.
    ///
    /// # Example
    /// ```
    /// # use atrest::{Context, Keyring, LocalRootKey};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let acme = keyring.tenant("acme")?;
    /// let ctx = Context::new().with("table", "cards").with("column", "holder").with("row", "7");
    /// let sealed = acme.seal(b"Alice Example", &ctx)?;
    /// assert_eq!(sealed.len(), 13 + atrest::RECORD_OVERHEAD);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal(&self, plaintext: &[u8], context: &Context) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(plaintext.len() + format::OVERHEAD);
        self.seal_into(plaintext, context, &mut out)?;
        Ok(out)
    }

    /// Seals `plaintext` and appends the record to `out` (reusing its allocation).
    ///
    /// # Errors
    /// As [`Tenant::seal`]; on error `out` is left as it was.
    pub fn seal_into(&self, plaintext: &[u8], context: &Context, out: &mut Vec<u8>) -> Result<(), SealError> {
        if plaintext.len() > MAX_RECORD_LEN {
            return Err(SealError::TooLarge { len: plaintext.len(), limit: MAX_RECORD_LEN });
        }
        let keys = self.keys_for_seal()?;
        let header = format::header(self.suite(), keys.version);
        let aad = format::aad(&header, self.id(), context);
        let start = out.len();
        // The record's bytes, then the plaintext is encrypted straight into the body.
        out.resize(start + plaintext.len() + format::OVERHEAD, 0);
        let record = out.get_mut(start..).unwrap_or_default();
        let (head, rest) = record.split_at_mut(format::HEADER_LEN);
        head.copy_from_slice(&header);
        let (nonce, rest) = rest.split_at_mut(format::NONCE_LEN);
        let (body, tag_out) = rest.split_at_mut(plaintext.len());
        match keys.record.seal_detached(self.suite(), nonce, &aad, plaintext, body) {
            Ok(tag) => {
                tag_out.copy_from_slice(&tag);
                keys.count(self.id(), "seal");
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Seals the plaintext held in `buf` in place: on success `buf` holds the record.
    ///
    /// # Errors
    /// As [`Tenant::seal`]; on error `buf` still holds the plaintext.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, context: &Context) -> Result<(), SealError> {
        let mut out = Vec::with_capacity(buf.len() + format::OVERHEAD);
        self.seal_into(buf, context, &mut out)?;
        buf.zeroize();
        *buf = out;
        Ok(())
    }

    /// Verifies and decrypts a record sealed for this tenant and `context`.
    ///
    /// # Errors
    /// [`OpenError::Authentication`] for any modification, truncation, extension, other
    /// tenant, other context or unknown key version (one opaque error);
    /// [`OpenError::UnsupportedFormat`], [`OpenError::KeyDisabled`],
    /// [`OpenError::KeyDestroyed`], [`OpenError::TenantShredded`].
    pub fn open(&self, sealed: &[u8], context: &Context) -> Result<Vec<u8>, OpenError> {
        let mut buf = Vec::new();
        self.open_into(sealed, context, &mut buf)?;
        Ok(buf)
    }

    /// Verifies and decrypts a record, appending the plaintext to `out`.
    ///
    /// # Errors
    /// As [`Tenant::open`]; on error `out` is left as it was, and no unauthenticated byte is
    /// ever written to it.
    pub fn open_into(&self, sealed: &[u8], context: &Context, out: &mut Vec<u8>) -> Result<(), OpenError> {
        let parsed = format::parse(sealed)?;
        let keys = self.keys_for_open(parsed.info.key_version)?;
        let aad = format::aad(parsed.header, self.id(), context);
        let start = out.len();
        out.resize(start + parsed.ciphertext.len(), 0);
        let body = out.get_mut(start..).unwrap_or_default();
        let info = parsed.info;
        match keys.record.open_detached(info.suite, parsed.nonce, &aad, parsed.ciphertext, parsed.tag, body) {
            Ok(()) => {
                keys.count(self.id(), "open");
                Ok(())
            }
            Err(e) => {
                // open_detached already zeroed the bytes; drop them too.
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Opens the record held in `buf` in place: on success `buf` holds the plaintext; on
    /// failure it is cleared.
    ///
    /// # Errors
    /// As [`Tenant::open`].
    pub fn open_in_place(&self, buf: &mut Vec<u8>, context: &Context) -> Result<(), OpenError> {
        let mut out = Vec::with_capacity(buf.len());
        let r = self.open_into(buf, context, &mut out);
        buf.zeroize();
        buf.clear();
        if r.is_ok() {
            *buf = out;
        }
        r
    }
}

/// Bytes a sealed record adds to its plaintext (46 for every suite).
pub const RECORD_OVERHEAD: usize = format::OVERHEAD;
