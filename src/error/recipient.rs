//! Errors from parsing a backup recipient (beside the other errors in `error/mod.rs`).

use thiserror::Error;

/// Why a text is not a backup recipient ([`Recipient`](crate::Recipient)'s `FromStr`).
///
/// Recipients are public: the messages may quote what was found, never anything secret.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientError {
    /// Not Bech32m text (a character outside the Bech32 alphabet, mixed case, no separator).
    #[error("not a backup recipient: the text is not Bech32m")]
    Encoding,
    /// The Bech32m checksum does not match: the text was mistyped or cut.
    #[error("the backup recipient's checksum does not match: it was mistyped or cut off")]
    Checksum,
    /// The human-readable prefix is not `atrestr`.
    #[error("not an atrest backup recipient: it starts with {0:?}, not \"atrestr1\"")]
    WrongPrefix(String),
    /// The recipient format version is not one this build knows.
    #[error("backup recipient format version {0} is not supported by this build of atrest")]
    UnknownVersion(u8),
    /// The KEM byte names no KEM this build knows.
    #[error("the backup recipient names an unknown KEM ({0:#04x})")]
    UnknownKem(u8),
    /// The payload is shorter or longer than its fields say.
    #[error("the backup recipient is {found} bytes long where its fields need {expected}")]
    WrongLength {
        /// The length the fields need.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The tenant id in it is not a valid tenant id.
    #[error("the backup recipient's tenant id is not valid")]
    InvalidTenant,
    /// The public key is not a valid key of its KEM.
    #[error("the backup recipient's public key is not a valid key of its KEM")]
    InvalidPublicKey,
}
