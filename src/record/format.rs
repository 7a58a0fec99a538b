//! The record layout and its parser (see the module documentation of `record` for the
//! format); records are built in `sealer`.

use super::RecordSuite;
use crate::Suite;
use crate::error::OpenError;
use crate::id::{KeyVersion, MasterVersion};

pub(crate) const FORMAT_VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 6;
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
pub(crate) const AAD_LABEL: &[u8] = b"atrest/v1/record";

/// What a record's header says, readable without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordInfo {
    /// The format version (1).
    pub format_version: u8,
    /// The suite that sealed it.
    pub suite: Suite,
    /// The key version that sealed it.
    pub key_version: KeyVersion,
    /// The plaintext length.
    pub plaintext_len: usize,
}

pub(crate) struct Parsed<'a> {
    pub(crate) info: RecordInfo,
    pub(crate) suite: RecordSuite,
    pub(crate) header: &'a [u8; HEADER_LEN],
    pub(crate) nonce: &'a [u8],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8],
}

pub(crate) fn parse(sealed: &[u8]) -> Result<Parsed<'_>, OpenError> {
    let (header, rest) = sealed.split_first_chunk::<HEADER_LEN>().ok_or(OpenError::Authentication)?;
    let [version, suite, m0, m1, g0, g1] = *header;
    if version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat(version));
    }
    let suite = Suite::from_id(suite).and_then(RecordSuite::from_suite).ok_or(OpenError::Authentication)?;
    let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or(OpenError::Authentication)?;
    let ct_len = rest.len().checked_sub(TAG_LEN).ok_or(OpenError::Authentication)?;
    let (ciphertext, tag) = rest.split_at(ct_len);
    let key_version = KeyVersion {
        master: MasterVersion::new(u16::from_be_bytes([m0, m1])),
        generation: u16::from_be_bytes([g0, g1]),
    };
    Ok(Parsed {
        info: RecordInfo { format_version: version, suite: suite.into(), key_version, plaintext_len: ct_len },
        suite,
        header,
        nonce,
        ciphertext,
        tag,
    })
}

/// Reads a sealed record's header without any key: format, suite, key version, length.
///
/// Use it to find records that still need a rewrap after a rotation. The header is only
/// authenticated when the record is opened.
///
/// # Errors
/// [`OpenError::Authentication`] if the bytes cannot be a record;
/// [`OpenError::UnsupportedFormat`] for an unknown format version.
pub fn record_info(sealed: &[u8]) -> Result<RecordInfo, OpenError> {
    parse(sealed).map(|p| p.info)
}
