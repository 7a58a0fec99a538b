//! Errors from blind indexes (beside the other errors in `error.rs`).

use thiserror::Error;

use super::SealError;
use crate::id::KeyVersion;

/// Errors from defining a blind index or computing its values.
///
/// Index names are public identifiers and appear in messages; field values never do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index name is empty or longer than 128 bytes.
    #[error("a blind index name must be 1 to 128 bytes long")]
    InvalidName,
    /// The output size is out of range (or was not set).
    #[error("a blind index outputs 1 to 256 bits, not {0}")]
    InvalidBits(u32),
    /// An index combines too many fields.
    #[error("a blind index combines at most 16 fields, not {0}")]
    TooManyFields(usize),
    /// A custom transform's name is empty or longer than 64 bytes.
    #[error("a custom transform name must be 1 to 64 bytes long")]
    InvalidTransformName,
    /// `Transform::LastDigits(0)`.
    #[error("a last-digits transform keeps at least one digit")]
    InvalidDigitCount,
    /// The number of fields given is not the number the index combines.
    #[error("blind index '{index}' combines {expected} field(s), {given} given")]
    FieldCount {
        /// The index name.
        index: String,
        /// Fields the index combines.
        expected: usize,
        /// Fields given.
        given: usize,
    },
    /// A field is not UTF-8, and its transform works on text.
    #[error("field {field} of blind index '{index}' is not UTF-8 text, which its transform needs")]
    NotText {
        /// The index name.
        index: String,
        /// The field's position (0-based).
        field: usize,
    },
    /// A field is longer than 2^32 - 1 bytes (after its transform).
    #[error("field {field} of blind index '{index}' is longer than 4 GiB")]
    FieldTooLong {
        /// The index name.
        index: String,
        /// The field's position (0-based).
        field: usize,
    },
    /// An index value wider than 64 bits does not fit an integer column.
    #[error("a {0}-bit blind index value does not fit a 64-bit integer: store it as bytes (bytea)")]
    TooWideForInteger(u16),
    /// The planner's false-positive target is not a positive finite number.
    #[error("acceptable false positives per lookup must be a positive, finite number")]
    InvalidFalsePositives,
    /// The tenant was crypto-shredded.
    #[error("tenant '{tenant}' was shredded at {shredded_at} (unix time)")]
    TenantShredded {
        /// The tenant id.
        tenant: String,
        /// When it was shredded, in seconds since the Unix epoch.
        shredded_at: u64,
    },
    /// The key version cannot compute index values (disabled, destroyed or unknown).
    #[error("key version {0} is not usable for blind index values")]
    KeyUnavailable(KeyVersion),
    /// The keyring's store has been unreadable for longer than the handle may serve its
    /// last verified state.
    #[error("the keyring store has been unreachable for too long: refusing to use possibly revoked keys")]
    KeyringUnavailable,
    /// Sealing the indexed record failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}
