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
//! keeps one random 96-bit prefix (from the OS RNG, through a per-thread buffer refilled 64
//! prefixes at a time and discarded in a forked child: see `record/prefixes.rs`) and its
//! derived AES-256-GCM instance,
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
mod index;
mod prefixes;
mod rewrap;
mod sealer;

pub use format::{RecordInfo, record_info};
pub use index::{
    BlindIndex, BlindIndexBuilder, CustomTransform, IndexLookup, IndexPlan, IndexPlanner, IndexValue, IndexWarning,
    IndexedRecord, MAX_INDEX_BITS, MAX_INDEX_FIELDS, MAX_INDEX_NAME_LEN, Transform,
};
pub use rewrap::{KeyVersionCensus, RewrapReport, key_version_census};

pub(crate) use format::{Parsed, parse};
pub(crate) use index::IndexKey;
pub(crate) use sealer::RecordKey;

use crate::Suite;

/// The largest plaintext a record may hold (1 GiB); use a backup stream for more.
pub const MAX_RECORD_LEN: usize = 1 << 30;

/// Bytes a sealed record adds to its plaintext (46 for every suite).
pub const RECORD_OVERHEAD: usize = format::OVERHEAD;

/// The AEAD suites a record can be sealed with: only suites with 192-bit random nonces, so
/// AES-256-GCM with random 96-bit nonces under a long-lived key cannot even be named here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RecordSuite {
    /// XAES-256-GCM (default).
    #[default]
    XAes256Gcm,
    /// XChaCha20-Poly1305, for CPUs without AES instructions.
    XChaCha20Poly1305,
}

impl RecordSuite {
    /// The record suite for `suite`, if records may use it.
    pub const fn from_suite(suite: Suite) -> Option<Self> {
        match suite {
            Suite::XAes256Gcm => Some(RecordSuite::XAes256Gcm),
            Suite::XChaCha20Poly1305 => Some(RecordSuite::XChaCha20Poly1305),
            _ => None,
        }
    }
}

impl From<RecordSuite> for Suite {
    fn from(s: RecordSuite) -> Suite {
        match s {
            RecordSuite::XAes256Gcm => Suite::XAes256Gcm,
            RecordSuite::XChaCha20Poly1305 => Suite::XChaCha20Poly1305,
        }
    }
}

impl core::fmt::Display for RecordSuite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&Suite::from(*self), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_suites_are_the_random_nonce_suites() {
        assert_eq!(RecordSuite::from_suite(Suite::Aes256Gcm), None);
        for r in [RecordSuite::XAes256Gcm, RecordSuite::XChaCha20Poly1305] {
            assert_eq!(RecordSuite::from_suite(Suite::from(r)), Some(r));
            assert_eq!(r.to_string(), Suite::from(r).name());
        }
        assert_eq!(Suite::from(RecordSuite::default()), Suite::XAes256Gcm);
    }
}
